//! PodTopologySpread: DoNotSchedule constraints bound the skew of matching pods between
//! topology domains (filter); ScheduleAnyway constraints, or the default spreading by
//! hostname and zone for pods selected by a Service or owned by a ReplicaSet, StatefulSet
//! or ReplicationController, favour the less crowded domains (score).

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;

use super::taint_toleration::untolerated_hard_taint;
use crate::framework::{Plugin, Status};
use crate::nodeinfo::{LABEL_HOSTNAME, NodeInfo, PodInfo};
use crate::selector::LabelSelector;

pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// The zone label.
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

/// A spread constraint, compiled.
#[derive(Clone, Debug)]
pub struct Constraint {
    pub max_skew: i64,
    pub topology_key: String,
    pub selector: LabelSelector,
    pub min_domains: i64,
    /// nodeAffinityPolicy Honor (the default): only nodes matching the pod's node
    /// selector and required node affinity count.
    pub honor_node_affinity: bool,
    /// nodeTaintsPolicy Honor (default Ignore): only nodes whose taints the pod tolerates count.
    pub honor_node_taints: bool,
}

impl Constraint {
    fn from_api(c: &TopologySpreadConstraint, pod: &PodInfo) -> Self {
        let mut selector = LabelSelector::from_api(c.label_selector.as_ref());
        for k in c.match_label_keys.iter().flatten() {
            if let Some(v) = pod.labels().get(k) {
                selector.require(k, v);
            }
        }
        Self {
            max_skew: c.max_skew as i64,
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: c.min_domains.map(i64::from).unwrap_or(1),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    fn includes_node(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        if self.honor_node_affinity && !pod.node_affinity.matches(&node.name, node.labels()) {
            return false;
        }
        if self.honor_node_taints && untolerated_hard_taint(node.taints(), pod.tolerations()).is_some() {
            return false;
        }
        true
    }
}

/// The pod's constraints with the given `whenUnsatisfiable`.
pub fn constraints_of(pod: &PodInfo, when: &str) -> Vec<Constraint> {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
        .into_iter()
        .flatten()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| Constraint::from_api(c, pod))
        .collect()
}

fn has_constraints(pod: &PodInfo) -> bool {
    pod.pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_ref()).is_some_and(|c| !c.is_empty())
}

/// The cluster-level default constraints (hostname skew 3, zone skew 5, ScheduleAnyway)
/// over `selector`, the union of the selectors of the pod's Services and controller.
pub fn default_constraints(selector: &LabelSelector) -> Vec<Constraint> {
    [(LABEL_HOSTNAME, 3), (LABEL_ZONE, 5)]
        .into_iter()
        .map(|(key, skew)| Constraint {
            max_skew: skew,
            topology_key: key.into(),
            selector: selector.clone(),
            min_domains: 1,
            honor_node_affinity: true,
            honor_node_taints: false,
        })
        .collect()
}

fn node_has_all_keys(node: &NodeInfo, cs: &[Constraint]) -> bool {
    let l = node.labels();
    cs.iter().all(|c| l.contains_key(&c.topology_key))
}

/// Matching pods on a node: same namespace, not terminating, selected.
fn count_matching(node: &NodeInfo, selector: &LabelSelector, ns: &str) -> i64 {
    node.pods.iter().filter(|p| !p.terminating && p.namespace == ns && selector.matches(p.labels())).count()
        as i64
}

/// Per DoNotSchedule constraint, the matching pods in each domain, over all nodes.
#[derive(Clone, Debug)]
pub struct FilterState {
    constraints: Vec<Constraint>,
    counts: Vec<HashMap<String, i64>>,
}

impl FilterState {
    /// None when the pod has no DoNotSchedule constraint (the plugin is skipped).
    pub fn new(pod: &PodInfo, nodes: &[NodeInfo]) -> Option<Self> {
        let constraints = constraints_of(pod, "DoNotSchedule");
        if constraints.is_empty() {
            return None;
        }
        let mut counts = vec![HashMap::new(); constraints.len()];
        for node in nodes {
            if !node_has_all_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes_node(pod, node) {
                    continue;
                }
                let v = &node.labels()[&c.topology_key];
                *counts[i].entry(v.clone()).or_insert(0) += count_matching(node, &c.selector, &pod.namespace);
            }
        }
        Some(Self { constraints, counts })
    }

    fn min_match(&self, i: usize) -> i64 {
        let c = &self.constraints[i];
        if (self.counts[i].len() as i64) < c.min_domains {
            return 0;
        }
        self.counts[i].values().copied().min().unwrap_or(0)
    }

    /// Accounts for `p` being added (`+1`) to or removed (`-1`) from `node`.
    pub fn update_with_pod(&mut self, incoming: &PodInfo, p: &PodInfo, node: &NodeInfo, n: i64) {
        if p.namespace != incoming.namespace || !node_has_all_keys(node, &self.constraints) {
            return;
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if !c.selector.matches(p.labels()) || !c.includes_node(incoming, node) {
                continue;
            }
            let v = &node.labels()[&c.topology_key];
            *self.counts[i].entry(v.clone()).or_insert(0) += n;
        }
    }
}

pub fn filter(state: &FilterState, pod: &PodInfo, node: &NodeInfo) -> Status {
    for (i, c) in state.constraints.iter().enumerate() {
        let Some(v) = node.labels().get(&c.topology_key) else {
            return Status::unresolvable(Plugin::PodTopologySpread, ERR_REASON_NODE_LABEL_NOT_MATCH);
        };
        let self_match = i64::from(c.selector.matches(pod.labels()));
        let matched = state.counts[i].get(v).copied().unwrap_or(0);
        if matched + self_match - state.min_match(i) > c.max_skew {
            return Status::unschedulable(Plugin::PodTopologySpread, ERR_REASON_CONSTRAINTS_NOT_MATCH);
        }
    }
    Status::success()
}

/// Normalized scores for the feasible nodes, or None when the pod has no soft constraint
/// (and no default spreading applies).
pub fn score(
    pod: &PodInfo,
    default_selector: Option<&LabelSelector>,
    feasible: &[&NodeInfo],
    all: &[NodeInfo],
) -> Option<Vec<i64>> {
    let explicit = has_constraints(pod);
    let constraints = if explicit {
        constraints_of(pod, "ScheduleAnyway")
    } else {
        match default_selector {
            Some(s) if !s.is_empty() && !s.matches_nothing() => default_constraints(s),
            _ => Vec::new(),
        }
    };
    if constraints.is_empty() || all.is_empty() {
        return None;
    }
    // Only explicit constraints require every topology key on a node; default spreading
    // still spreads by hostname over nodes without a zone.
    let require_all = explicit;
    // Default spreading counts the pods of the same owner (an index per node) instead of
    // matching the derived selector against every pod, as newer kube-schedulers do.
    let by_owner = if explicit { None } else { pod.owner_uid.as_deref() };
    let count = |node: &NodeInfo, c: &Constraint| -> i64 {
        match by_owner {
            Some(uid) => node.owner_counts.get(uid).copied().unwrap_or(0),
            None => count_matching(node, &c.selector, &pod.namespace),
        }
    };
    let mut ignored = vec![false; feasible.len()];
    let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
    for (j, node) in feasible.iter().enumerate() {
        if require_all && !node_has_all_keys(node, &constraints) {
            ignored[j] = true;
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            if c.topology_key == LABEL_HOSTNAME {
                continue;
            }
            let v = node.labels().get(&c.topology_key).cloned().unwrap_or_default();
            counts[i].entry(v).or_insert(0);
        }
    }
    let considered = ignored.iter().filter(|i| !**i).count();
    let weights: Vec<f64> = constraints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let size = if c.topology_key == LABEL_HOSTNAME { considered } else { counts[i].len() };
            ((size + 2) as f64).ln()
        })
        .collect();
    for node in all {
        if require_all && !node_has_all_keys(node, &constraints) {
            continue;
        }
        for (i, c) in constraints.iter().enumerate() {
            // Per-node counts are taken when scoring each node.
            if c.topology_key == LABEL_HOSTNAME || !c.includes_node(pod, node) {
                continue;
            }
            // Nodes without the key form the "" domain, which is never scored.
            let Some(v) = node.labels().get(&c.topology_key) else { continue };
            if let Some(slot) = counts[i].get_mut(v.as_str()) {
                *slot += count(node, c);
            }
        }
    }
    let raw: Vec<i64> = feasible
        .iter()
        .enumerate()
        .map(|(j, node)| {
            if ignored[j] {
                return 0;
            }
            let mut s = 0.0;
            for (i, c) in constraints.iter().enumerate() {
                if let Some(v) = node.labels().get(&c.topology_key) {
                    let cnt = if c.topology_key == LABEL_HOSTNAME {
                        count(node, c)
                    } else {
                        counts[i].get(v).copied().unwrap_or(0)
                    };
                    s += cnt as f64 * weights[i] + (c.max_skew - 1) as f64;
                }
            }
            s.round() as i64
        })
        .collect();
    let mut min = i64::MAX;
    let mut max = 0;
    for (j, s) in raw.iter().enumerate() {
        if ignored[j] {
            continue;
        }
        min = min.min(*s);
        max = max.max(*s);
    }
    Some(
        raw.iter()
            .enumerate()
            .map(|(j, s)| {
                if ignored[j] {
                    0
                } else if max == 0 {
                    super::MAX_NODE_SCORE
                } else {
                    super::MAX_NODE_SCORE * (max + min - s) / max
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node_with_labels, pod_in, spread};

    fn zone_node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo::new(node_with_labels(name, &[(LABEL_ZONE, zone), (LABEL_HOSTNAME, name)]).into())
    }

    fn cluster(layout: &[(&str, &str, usize)]) -> Vec<NodeInfo> {
        layout
            .iter()
            .map(|(name, zone, pods)| {
                let mut n = zone_node(name, zone);
                for i in 0..*pods {
                    n.add_pod(
                        PodInfo::new(pod_in("default", &format!("{name}-{i}"), &[("foo", "bar")]).into())
                            .into(),
                    );
                }
                n
            })
            .collect()
    }

    fn fits(pod: &PodInfo, nodes: &[NodeInfo]) -> Vec<String> {
        let state = FilterState::new(pod, nodes).unwrap();
        nodes.iter().filter(|n| filter(&state, pod, n).is_success()).map(|n| n.name.clone()).collect()
    }

    #[test]
    fn one_constraint_keeps_the_zone_skew_within_max_skew() {
        // The documentation's example: zoneA has node1 (2 pods) and node2 (1 pod)... here
        // zoneA holds 3 matching pods and zoneB 0: with maxSkew 1 only zoneB fits.
        let nodes = cluster(&[
            ("node1", "zoneA", 2),
            ("node2", "zoneA", 1),
            ("node3", "zoneB", 0),
            ("node4", "zoneB", 0),
        ]);
        let p = PodInfo::new(
            spread(pod_in("default", "mypod", &[("foo", "bar")]), &[(1, LABEL_ZONE, "DoNotSchedule")]).into(),
        );
        assert_eq!(fits(&p, &nodes), vec!["node3", "node4"]);
    }

    #[test]
    fn two_constraints_must_both_hold() {
        // The documentation's example with zone and node constraints: zoneA {node1: 2,
        // node2: 1}, zoneB {node3: 1, node4: 0}... The pod may go only to node4.
        let nodes = cluster(&[
            ("node1", "zoneA", 2),
            ("node2", "zoneA", 1),
            ("node3", "zoneB", 1),
            ("node4", "zoneB", 0),
        ]);
        let p = PodInfo::new(
            spread(
                pod_in("default", "mypod", &[("foo", "bar")]),
                &[(1, LABEL_ZONE, "DoNotSchedule"), (1, LABEL_HOSTNAME, "DoNotSchedule")],
            )
            .into(),
        );
        assert_eq!(fits(&p, &nodes), vec!["node4"]);
    }

    #[test]
    fn nodes_without_the_topology_key_are_unresolvable() {
        let mut nodes = cluster(&[("node1", "zoneA", 0)]);
        nodes.push(NodeInfo::new(node_with_labels("bare", &[]).into()));
        let p = PodInfo::new(
            spread(pod_in("default", "p", &[("foo", "bar")]), &[(1, LABEL_ZONE, "DoNotSchedule")]).into(),
        );
        let state = FilterState::new(&p, &nodes).unwrap();
        let s = filter(&state, &p, &nodes[1]);
        assert_eq!(s.reasons, vec![ERR_REASON_NODE_LABEL_NOT_MATCH.to_string()]);
        assert_eq!(s.code, crate::framework::Code::UnschedulableAndUnresolvable);
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        // Two zones with one pod each, minDomains 3: the global minimum is 0, so a third
        // pod in either zone would make skew 2 > 1.
        let nodes = cluster(&[("node1", "zoneA", 1), ("node2", "zoneB", 1)]);
        let mut raw = spread(pod_in("default", "p", &[("foo", "bar")]), &[(1, LABEL_ZONE, "DoNotSchedule")]);
        raw.spec.as_mut().unwrap().topology_spread_constraints.as_mut().unwrap()[0].min_domains = Some(3);
        let p = PodInfo::new(raw.into());
        assert!(fits(&p, &nodes).is_empty());
        let nodes = cluster(&[("node1", "zoneA", 1), ("node2", "zoneB", 1), ("node3", "zoneC", 0)]);
        assert_eq!(fits(&p, &nodes), vec!["node3"]);
    }

    #[test]
    fn node_affinity_policy_honor_ignores_nodes_the_pod_cannot_use() {
        // zoneB's only node is excluded by the pod's nodeSelector, so zoneB is no domain and
        // zoneA's count alone is the minimum.
        let mut nodes = cluster(&[("node1", "zoneA", 1), ("node2", "zoneB", 0)]);
        for n in &mut nodes {
            let mut raw = (*n.node).clone();
            if n.name == "node1" {
                raw.metadata.labels.as_mut().unwrap().insert("pool".into(), "a".into());
            }
            n.set_node(raw.into());
        }
        let mut raw = spread(pod_in("default", "p", &[("foo", "bar")]), &[(1, LABEL_ZONE, "DoNotSchedule")]);
        raw.spec.as_mut().unwrap().node_selector = Some([("pool".to_string(), "a".to_string())].into());
        let p = PodInfo::new(raw.into());
        assert_eq!(fits(&p, &nodes), vec!["node1", "node2"]);
        // With Ignore, zoneB counts as an empty domain and zoneA is too crowded.
        let mut raw = (*p.pod).clone();
        raw.spec.as_mut().unwrap().topology_spread_constraints.as_mut().unwrap()[0].node_affinity_policy =
            Some("Ignore".into());
        let p = PodInfo::new(raw.into());
        assert_eq!(fits(&p, &nodes), vec!["node2"]);
    }

    #[test]
    fn soft_constraints_prefer_the_emptier_domain() {
        let nodes = cluster(&[("node1", "zoneA", 2), ("node2", "zoneA", 1), ("node3", "zoneB", 0)]);
        let p = PodInfo::new(
            spread(pod_in("default", "p", &[("foo", "bar")]), &[(1, LABEL_ZONE, "ScheduleAnyway")]).into(),
        );
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let s = score(&p, None, &feasible, &nodes).unwrap();
        assert_eq!(s[0], s[1]);
        assert_eq!(s[2], 100);
        assert!(s[0] < s[2]);
    }

    #[test]
    fn default_spreading_applies_only_with_a_selector() {
        let nodes = cluster(&[("node1", "zoneA", 2), ("node2", "zoneB", 0)]);
        let p = PodInfo::new(pod_in("default", "p", &[("foo", "bar")]).into());
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        assert_eq!(score(&p, None, &feasible, &nodes), None);
        let sel = LabelSelector::from_map(&[("foo".to_string(), "bar".to_string())].into());
        let s = score(&p, Some(&sel), &feasible, &nodes).unwrap();
        assert!(s[0] < s[1], "{s:?}");
    }
}
