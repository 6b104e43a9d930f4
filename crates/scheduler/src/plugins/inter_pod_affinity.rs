//! InterPodAffinity: required pod affinity (some matching pod in the node's topology
//! domain), required anti-affinity (none there), and existing pods' anti-affinity towards
//! the incoming pod (filter); preferred terms of both sides, and existing pods' required
//! affinity at weight 1, move scores (score).

use std::collections::{BTreeMap, HashMap};

use crate::framework::{Plugin, Status};
use crate::nodeinfo::{AffinityTerm, NodeInfo, PodInfo, WeightedTerm};
use crate::selector::LabelSelector;

pub const ERR_REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ERR_REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";

/// The weight of an existing pod's required affinity term when scoring the incoming pod.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Counts per topology key and value.
#[derive(Clone, Debug, Default)]
pub struct Counts(HashMap<String, HashMap<String, i64>>);

impl Counts {
    fn add(&mut self, key: &str, value: &str, n: i64) {
        let m = self.0.entry(key.to_string()).or_default();
        let e = m.entry(value.to_string()).or_insert(0);
        *e += n;
        if *e == 0 {
            m.remove(value);
            if m.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0.get(key).and_then(|m| m.get(value)).copied().unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The incoming pod's terms with namespace selectors resolved into namespace names.
#[derive(Clone, Debug, Default)]
pub struct ResolvedTerms {
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<WeightedTerm>,
    pub preferred_anti_affinity: Vec<WeightedTerm>,
}

fn resolve(t: &AffinityTerm, namespaces: &[(String, BTreeMap<String, String>)]) -> AffinityTerm {
    let mut t = t.clone();
    if !t.namespace_selector.matches_nothing() {
        for (ns, labels) in namespaces {
            if t.namespace_selector.matches(labels) {
                t.namespaces.insert(ns.clone());
            }
        }
        t.namespace_selector = LabelSelector::nothing();
    }
    t
}

impl ResolvedTerms {
    /// Resolves the pod's terms against every namespace (name and labels).
    pub fn of(pod: &PodInfo, namespaces: &[(String, BTreeMap<String, String>)]) -> Self {
        let w = |ts: &[WeightedTerm]| -> Vec<WeightedTerm> {
            ts.iter().map(|w| WeightedTerm { weight: w.weight, term: resolve(&w.term, namespaces) }).collect()
        };
        Self {
            required_affinity: pod.required_affinity.iter().map(|t| resolve(t, namespaces)).collect(),
            required_anti_affinity: pod
                .required_anti_affinity
                .iter()
                .map(|t| resolve(t, namespaces))
                .collect(),
            preferred_affinity: w(&pod.preferred_affinity),
            preferred_anti_affinity: w(&pod.preferred_anti_affinity),
        }
    }
}

/// Whether any term of the pod has a namespace selector (then namespaces must be listed).
pub fn needs_namespaces(pod: &PodInfo) -> bool {
    let sel = |t: &AffinityTerm| !t.namespace_selector.matches_nothing();
    pod.required_affinity.iter().any(sel)
        || pod.required_anti_affinity.iter().any(sel)
        || pod.preferred_affinity.iter().any(|w| sel(&w.term))
        || pod.preferred_anti_affinity.iter().any(|w| sel(&w.term))
}

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// What the filter needs, computed once per scheduling cycle over all nodes.
#[derive(Clone, Debug)]
pub struct FilterState {
    terms: ResolvedTerms,
    /// Labels of the incoming pod's namespace.
    ns_labels: BTreeMap<String, String>,
    existing_anti_affinity: Counts,
    affinity: Counts,
    anti_affinity: Counts,
}

fn matches_all(terms: &[AffinityTerm], p: &PodInfo) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(p, &NO_LABELS))
}

impl FilterState {
    /// Counts, over all nodes, the existing pods whose required anti-affinity selects the
    /// incoming pod and the pods the incoming pod's required terms select. None when there
    /// is nothing to check (the plugin is skipped).
    pub fn new(
        pod: &PodInfo,
        terms: ResolvedTerms,
        ns_labels: BTreeMap<String, String>,
        nodes: &[NodeInfo],
    ) -> Option<Self> {
        let mut s = FilterState {
            terms,
            ns_labels,
            existing_anti_affinity: Counts::default(),
            affinity: Counts::default(),
            anti_affinity: Counts::default(),
        };
        let own = !s.terms.required_affinity.is_empty() || !s.terms.required_anti_affinity.is_empty();
        for node in nodes {
            if node.pods_with_required_anti_affinity > 0 {
                for ep in node.pods.iter().filter(|p| !p.required_anti_affinity.is_empty()) {
                    s.count_existing(ep, node, pod, 1);
                }
            }
            if own {
                for ep in &node.pods {
                    s.count_own(ep, node, 1);
                }
            }
        }
        if !own && s.existing_anti_affinity.is_empty() {
            return None;
        }
        Some(s)
    }

    fn count_existing(&mut self, ep: &PodInfo, node: &NodeInfo, incoming: &PodInfo, n: i64) {
        for t in &ep.required_anti_affinity {
            if t.matches(incoming, &self.ns_labels)
                && let Some(v) = node.labels().get(&t.topology_key)
            {
                self.existing_anti_affinity.add(&t.topology_key, v, n);
            }
        }
    }

    fn count_own(&mut self, ep: &PodInfo, node: &NodeInfo, n: i64) {
        let labels = node.labels();
        if matches_all(&self.terms.required_affinity, ep) {
            for t in &self.terms.required_affinity {
                if let Some(v) = labels.get(&t.topology_key) {
                    self.affinity.add(&t.topology_key, v, n);
                }
            }
        }
        for t in &self.terms.required_anti_affinity {
            if t.matches(ep, &NO_LABELS)
                && let Some(v) = labels.get(&t.topology_key)
            {
                self.anti_affinity.add(&t.topology_key, v, n);
            }
        }
    }

    /// Accounts for `p` being added to (`+1`) or removed from (`-1`) `node` (preemption's
    /// what-if and nominated pods).
    pub fn update_with_pod(&mut self, incoming: &PodInfo, p: &PodInfo, node: &NodeInfo, n: i64) {
        self.count_existing(p, node, incoming, n);
        self.count_own(p, node, n);
    }
}

pub fn filter(state: &FilterState, pod: &PodInfo, node: &NodeInfo) -> Status {
    let labels = node.labels();
    if !state.existing_anti_affinity.is_empty()
        && labels.iter().any(|(k, v)| state.existing_anti_affinity.get(k, v) > 0)
    {
        return Status::unschedulable(Plugin::InterPodAffinity, ERR_REASON_EXISTING_ANTI_AFFINITY);
    }
    let aff = &state.terms.required_affinity;
    if !aff.is_empty() {
        let mut pods_exist = true;
        for t in aff {
            match labels.get(&t.topology_key) {
                Some(v) => {
                    if state.affinity.get(&t.topology_key, v) <= 0 {
                        pods_exist = false;
                    }
                }
                None => return Status::unresolvable(Plugin::InterPodAffinity, ERR_REASON_AFFINITY),
            }
        }
        // The first pod of a group that selects itself may go anywhere the topology exists.
        let first_of_group = state.affinity.is_empty() && matches_all(aff, pod);
        if !pods_exist && !first_of_group {
            return Status::unresolvable(Plugin::InterPodAffinity, ERR_REASON_AFFINITY);
        }
    }
    for t in &state.terms.required_anti_affinity {
        if let Some(v) = labels.get(&t.topology_key)
            && state.anti_affinity.get(&t.topology_key, v) > 0
        {
            return Status::unschedulable(Plugin::InterPodAffinity, ERR_REASON_ANTI_AFFINITY);
        }
    }
    Status::success()
}

/// Normalized scores, or None when skipped (the pod prefers nothing and no existing pod
/// has affinity).
pub fn score(
    pod: &PodInfo,
    terms: &ResolvedTerms,
    ns_labels: &BTreeMap<String, String>,
    feasible: &[&NodeInfo],
    all: &[NodeInfo],
) -> Option<Vec<i64>> {
    let has_constraints = !terms.preferred_affinity.is_empty() || !terms.preferred_anti_affinity.is_empty();
    let mut topo = Counts::default();
    fn process(
        topo: &mut Counts,
        ts: &[WeightedTerm],
        target: &PodInfo,
        nsl: &BTreeMap<String, String>,
        node: &NodeInfo,
        sign: i64,
    ) {
        for w in ts {
            if w.term.matches(target, nsl)
                && let Some(v) = node.labels().get(&w.term.topology_key)
            {
                topo.add(&w.term.topology_key, v, w.weight * sign);
            }
        }
    }
    for node in all {
        if !has_constraints && node.pods_with_affinity == 0 {
            continue;
        }
        if node.labels().is_empty() {
            continue;
        }
        for ep in &node.pods {
            if !has_constraints && !ep.has_affinity() {
                continue;
            }
            process(&mut topo, &terms.preferred_affinity, ep, &NO_LABELS, node, 1);
            process(&mut topo, &terms.preferred_anti_affinity, ep, &NO_LABELS, node, -1);
            for t in &ep.required_affinity {
                if t.matches(pod, ns_labels)
                    && let Some(v) = node.labels().get(&t.topology_key)
                {
                    topo.add(&t.topology_key, v, HARD_POD_AFFINITY_WEIGHT);
                }
            }
            process(&mut topo, &ep.preferred_affinity, pod, ns_labels, node, 1);
            process(&mut topo, &ep.preferred_anti_affinity, pod, ns_labels, node, -1);
        }
    }
    if topo.is_empty() {
        return None;
    }
    let raw: Vec<i64> =
        feasible.iter().map(|n| n.labels().iter().map(|(k, v)| topo.get(k, v)).sum()).collect();
    let min = raw.iter().copied().min().unwrap_or(0);
    let max = raw.iter().copied().max().unwrap_or(0);
    let diff = max - min;
    Some(
        raw.into_iter()
            .map(|s| {
                if diff > 0 {
                    (super::MAX_NODE_SCORE as f64 * ((s - min) as f64 / diff as f64)) as i64
                } else {
                    0
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{affinity_term, node_with_labels, pod_in, with_pod_affinity};

    fn zone_node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo::new(
            node_with_labels(
                name,
                &[("topology.kubernetes.io/zone", zone), ("kubernetes.io/hostname", name)],
            )
            .into(),
        )
    }

    fn place(nodes: &mut [NodeInfo], node: &str, p: k8s_openapi::api::core::v1::Pod) {
        let n = nodes.iter_mut().find(|n| n.name == node).unwrap();
        n.add_pod(PodInfo::new(p.into()).into());
    }

    fn run(pod: &PodInfo, nodes: &[NodeInfo]) -> Vec<(String, Status)> {
        let state = FilterState::new(pod, ResolvedTerms::of(pod, &[]), BTreeMap::new(), nodes);
        nodes
            .iter()
            .map(|n| {
                (n.name.clone(), state.as_ref().map(|s| filter(s, pod, n)).unwrap_or_else(Status::success))
            })
            .collect()
    }

    fn ok_nodes(results: &[(String, Status)]) -> Vec<&str> {
        results.iter().filter(|(_, s)| s.is_success()).map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn required_affinity_needs_a_matching_pod_in_the_same_zone() {
        // The documentation's example: affinity to security=S1 by zone.
        let mut nodes = vec![zone_node("a", "z1"), zone_node("b", "z1"), zone_node("c", "z2")];
        place(&mut nodes, "a", pod_in("default", "s1", &[("security", "S1")]));
        let p = PodInfo::new(
            with_pod_affinity(
                pod_in("default", "p", &[]),
                vec![affinity_term(&[("security", "S1")], "topology.kubernetes.io/zone")],
                vec![],
            )
            .into(),
        );
        let r = run(&p, &nodes);
        assert_eq!(ok_nodes(&r), vec!["a", "b"]);
        assert_eq!(r[2].1.reasons, vec![ERR_REASON_AFFINITY.to_string()]);
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_may_go_anywhere() {
        let nodes = vec![zone_node("a", "z1"), zone_node("b", "z2")];
        let p = PodInfo::new(
            with_pod_affinity(
                pod_in("default", "p", &[("app", "cache")]),
                vec![affinity_term(&[("app", "cache")], "topology.kubernetes.io/zone")],
                vec![],
            )
            .into(),
        );
        assert_eq!(ok_nodes(&run(&p, &nodes)), vec!["a", "b"]);
        // A pod that does not select itself has nowhere to go.
        let q = PodInfo::new(
            with_pod_affinity(
                pod_in("default", "q", &[("app", "web")]),
                vec![affinity_term(&[("app", "cache")], "topology.kubernetes.io/zone")],
                vec![],
            )
            .into(),
        );
        assert!(ok_nodes(&run(&q, &nodes)).is_empty());
    }

    #[test]
    fn required_anti_affinity_keeps_replicas_on_distinct_hosts() {
        // The documentation's redis-cache example: one replica per node.
        let mut nodes = vec![zone_node("a", "z1"), zone_node("b", "z1"), zone_node("c", "z2")];
        place(&mut nodes, "a", pod_in("default", "cache-1", &[("app", "store")]));
        let p = PodInfo::new(
            with_pod_affinity(
                pod_in("default", "cache-2", &[("app", "store")]),
                vec![],
                vec![affinity_term(&[("app", "store")], "kubernetes.io/hostname")],
            )
            .into(),
        );
        let r = run(&p, &nodes);
        assert_eq!(ok_nodes(&r), vec!["b", "c"]);
        assert_eq!(r[0].1.reasons, vec![ERR_REASON_ANTI_AFFINITY.to_string()]);
    }

    #[test]
    fn existing_pods_anti_affinity_repels_the_incoming_pod() {
        let mut nodes = vec![zone_node("a", "z1"), zone_node("b", "z1"), zone_node("c", "z2")];
        place(
            &mut nodes,
            "a",
            with_pod_affinity(
                pod_in("default", "loner", &[]),
                vec![],
                vec![affinity_term(&[("app", "web")], "topology.kubernetes.io/zone")],
            ),
        );
        let p = PodInfo::new(pod_in("default", "web-1", &[("app", "web")]).into());
        let r = run(&p, &nodes);
        assert_eq!(ok_nodes(&r), vec!["c"]);
        assert_eq!(r[1].1.reasons, vec![ERR_REASON_EXISTING_ANTI_AFFINITY.to_string()]);
        // Other namespaces are not selected by a term without namespaces.
        let other = PodInfo::new(pod_in("other", "web-2", &[("app", "web")]).into());
        assert_eq!(ok_nodes(&run(&other, &nodes)), vec!["a", "b", "c"]);
    }

    #[test]
    fn namespace_selectors_resolve_against_namespace_labels() {
        let mut nodes = vec![zone_node("a", "z1"), zone_node("b", "z2")];
        place(&mut nodes, "a", pod_in("team-a", "db", &[("app", "db")]));
        let mut term = affinity_term(&[("app", "db")], "topology.kubernetes.io/zone");
        term.namespace_selector = Some(Default::default());
        let p = PodInfo::new(with_pod_affinity(pod_in("default", "p", &[]), vec![term], vec![]).into());
        let namespaces =
            vec![("team-a".to_string(), BTreeMap::new()), ("default".to_string(), BTreeMap::new())];
        let state =
            FilterState::new(&p, ResolvedTerms::of(&p, &namespaces), BTreeMap::new(), &nodes).unwrap();
        assert!(filter(&state, &p, &nodes[0]).is_success());
        assert!(!filter(&state, &p, &nodes[1]).is_success());
    }

    #[test]
    fn preferred_terms_score_nodes_in_matching_domains_higher() {
        let mut nodes = vec![zone_node("a", "z1"), zone_node("b", "z1"), zone_node("c", "z2")];
        place(&mut nodes, "a", pod_in("default", "s1", &[("security", "S1")]));
        place(&mut nodes, "c", pod_in("default", "s2", &[("security", "S2")]));
        let mut p = pod_in("default", "p", &[]);
        p.spec.as_mut().unwrap().affinity = Some(k8s_openapi::api::core::v1::Affinity {
            pod_affinity: Some(k8s_openapi::api::core::v1::PodAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    k8s_openapi::api::core::v1::WeightedPodAffinityTerm {
                        weight: 5,
                        pod_affinity_term: affinity_term(
                            &[("security", "S1")],
                            "topology.kubernetes.io/zone",
                        ),
                    },
                ]),
                ..Default::default()
            }),
            pod_anti_affinity: Some(k8s_openapi::api::core::v1::PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    k8s_openapi::api::core::v1::WeightedPodAffinityTerm {
                        weight: 5,
                        pod_affinity_term: affinity_term(
                            &[("security", "S2")],
                            "topology.kubernetes.io/zone",
                        ),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let p = PodInfo::new(p.into());
        let terms = ResolvedTerms::of(&p, &[]);
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        assert_eq!(score(&p, &terms, &BTreeMap::new(), &feasible, &nodes), Some(vec![100, 100, 0]));
    }
}
