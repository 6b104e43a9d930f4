//! DefaultPreemption: when a pod fits nowhere, find nodes where evicting lower-priority
//! pods would make it fit, keep as many of those pods as possible (PodDisruptionBudget
//! violators first, highest priority first), and pick the node whose victims hurt least.
//! Pure: the scheduler performs the evictions and sets `status.nominatedNodeName`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use rand::Rng;

use crate::cache::Cache;
use crate::framework::{Code, Diagnosis, FitError, Plugin, Status};
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::plugins::{CycleState, run_filters_with_nominated};
use crate::selector::LabelSelector;

pub const MSG_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const MSG_NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const MSG_POLICY_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const MSG_TERMINATING_ON_NOMINATED: &str = "not eligible due to a terminating pod on the nominated node.";

/// At least this share of potential nodes is dry-run (percent)...
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// ...and at least this many.
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// A PodDisruptionBudget as preemption reads it.
#[derive(Clone, Debug)]
pub struct Pdb {
    pub namespace: String,
    pub selector: LabelSelector,
    pub disruptions_allowed: i64,
    pub disrupted_pods: HashSet<String>,
}

impl Pdb {
    pub fn from_api(p: &PodDisruptionBudget) -> Self {
        Self {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            selector: LabelSelector::from_api(p.spec.as_ref().and_then(|s| s.selector.as_ref())),
            disruptions_allowed: p.status.as_ref().map(|s| s.disruptions_allowed as i64).unwrap_or(0),
            disrupted_pods: p
                .status
                .as_ref()
                .and_then(|s| s.disrupted_pods.as_ref())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// A node where the preemptor fits once `victims` are gone.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<PodInfo>>,
    pub pdb_violations: usize,
}

/// What preemption decided.
#[derive(Debug)]
pub enum Outcome {
    /// The pod may not preempt; the message (e.g. "not eligible due to
    /// preemptionPolicy=Never.") goes after "preemption: ".
    NotEligible(String),
    /// No node would help; the pod's nomination is cleared.
    NoCandidate(FitError),
    /// Evict the victims and nominate the node.
    Nominate(Candidate),
}

impl Outcome {
    /// The PostFilter message that ends the FitError ("" after a successful nomination).
    pub fn message(&self) -> String {
        match self {
            Outcome::NotEligible(m) => format!("preemption: {m}"),
            Outcome::NoCandidate(e) => format!("preemption: {e}"),
            Outcome::Nominate(_) => String::new(),
        }
    }
}

fn start_time(p: &PodInfo, now: jiff::Timestamp) -> jiff::Timestamp {
    p.start_time.unwrap_or(now)
}

/// Higher priority first; among equals, the one that started earlier.
pub fn more_important(a: &PodInfo, b: &PodInfo, now: jiff::Timestamp) -> std::cmp::Ordering {
    b.priority.cmp(&a.priority).then_with(|| start_time(a, now).cmp(&start_time(b, now)))
}

/// Splits pods into those whose eviction would violate a PodDisruptionBudget (counting the
/// evictions before them) and the rest, keeping the order.
pub fn split_by_pdb(pods: &[Arc<PodInfo>], pdbs: &[Pdb]) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
    let mut allowed: Vec<i64> = pdbs.iter().map(|p| p.disruptions_allowed).collect();
    let (mut violating, mut ok) = (Vec::new(), Vec::new());
    for p in pods {
        let mut violated = false;
        if !p.labels().is_empty() {
            for (i, pdb) in pdbs.iter().enumerate() {
                if pdb.namespace != p.namespace
                    || pdb.selector.is_empty()
                    || !pdb.selector.matches(p.labels())
                {
                    continue;
                }
                // Already being disrupted: the API server has counted it.
                if pdb.disrupted_pods.contains(&p.name) {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated { violating.push(p.clone()) } else { ok.push(p.clone()) }
    }
    (violating, ok)
}

/// Whether the pod may preempt at all.
pub fn eligible(pod: &PodInfo, cache: &Cache, diagnosis: &Diagnosis) -> Result<(), String> {
    let policy = pod.pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref());
    if policy == Some("Never") {
        return Err(MSG_POLICY_NEVER.into());
    }
    let nominated = pod.nominated_node_name();
    if !nominated.is_empty() {
        if diagnosis
            .node_to_status
            .get(nominated)
            .is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable)
        {
            return Ok(());
        }
        if let Some(n) = cache.node(nominated)
            && n.pods.iter().any(|p| p.priority < pod.priority && p.terminating && p.preempted)
        {
            return Err(MSG_TERMINATING_ON_NOMINATED.into());
        }
    }
    Ok(())
}

/// The fewest, least important pods to evict from `node` for the pod to fit, and how many
/// of them violate a budget; or the status saying why no eviction helps.
pub fn select_victims(
    state: &CycleState,
    node: &NodeInfo,
    nominated: &[Arc<PodInfo>],
    pdbs: &[Pdb],
    now: jiff::Timestamp,
) -> Result<(Vec<Arc<PodInfo>>, usize), Status> {
    let mut node = node.clone();
    let mut st = state.clone();
    let prio = state.pod.priority;
    let mut potential: Vec<Arc<PodInfo>> = node.pods.iter().filter(|p| p.priority < prio).cloned().collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(Plugin::DefaultPreemption, MSG_NO_VICTIMS));
    }
    for p in &potential {
        node.remove_pod(&p.key);
        st.update_with_pod(p, &node, -1);
    }
    let s = run_filters_with_nominated(&st, &node, nominated);
    if !s.is_success() {
        return Err(s);
    }
    potential.sort_by(|a, b| more_important(a, b, now));
    let (violating, non_violating) = split_by_pdb(&potential, pdbs);
    let mut victims = Vec::new();
    let mut reprieve = |p: &Arc<PodInfo>, node: &mut NodeInfo, st: &mut CycleState| -> bool {
        node.add_pod(p.clone());
        st.update_with_pod(p, node, 1);
        if run_filters_with_nominated(st, node, nominated).is_success() {
            return true;
        }
        node.remove_pod(&p.key);
        st.update_with_pod(p, node, -1);
        victims.push(p.clone());
        false
    };
    let mut violations = 0;
    for p in &violating {
        if !reprieve(p, &mut node, &mut st) {
            violations += 1;
        }
    }
    for p in &non_violating {
        reprieve(p, &mut node, &mut st);
    }
    victims.sort_by(|a, b| more_important(a, b, now));
    Ok((victims, violations))
}

/// The best candidate: fewest budget violations, then the lowest highest-priority victim,
/// the lowest sum of priorities, the fewest victims, the latest start among the most
/// important victims, and finally the first.
pub fn pick_one(cands: &[Candidate], now: jiff::Timestamp) -> Option<usize> {
    if cands.is_empty() {
        return None;
    }
    if let Some(i) = cands.iter().position(|c| c.victims.is_empty()) {
        return Some(i);
    }
    let mut idx: Vec<usize> = (0..cands.len()).collect();
    let keep_min = |idx: &mut Vec<usize>, f: &dyn Fn(&Candidate) -> i128| {
        let best = idx.iter().map(|i| f(&cands[*i])).min().unwrap_or(0);
        idx.retain(|i| f(&cands[*i]) == best);
    };
    keep_min(&mut idx, &|c| c.pdb_violations as i128);
    keep_min(&mut idx, &|c| c.victims.first().map(|v| v.priority as i128).unwrap_or(i128::MIN));
    keep_min(&mut idx, &|c| c.victims.iter().map(|v| v.priority as i128 + i32::MAX as i128 + 1).sum());
    keep_min(&mut idx, &|c| c.victims.len() as i128);
    // Latest start wins: minimize the negated earliest start among the top-priority victims.
    keep_min(&mut idx, &|c| {
        let top = c.victims.first().map(|v| v.priority).unwrap_or(0);
        let earliest =
            c.victims.iter().filter(|v| v.priority == top).map(|v| start_time(v, now)).min().unwrap_or(now);
        -(earliest.as_nanosecond())
    });
    idx.first().copied()
}

/// Runs preemption for a pod that fit nowhere.
pub fn preempt(
    cache: &Cache,
    state: &CycleState,
    diagnosis: &Diagnosis,
    pdbs: &[Pdb],
    now: jiff::Timestamp,
    rng: &mut impl Rng,
) -> Outcome {
    if let Err(m) = eligible(&state.pod, cache, diagnosis) {
        return Outcome::NotEligible(m);
    }
    let nodes = cache.nodes();
    let not_helpful = || Some(Status::unresolvable(Plugin::DefaultPreemption, MSG_NOT_HELPFUL));
    let potential: Vec<&NodeInfo> = nodes
        .iter()
        .filter(|n| diagnosis.node_to_status.get(&n.name).is_some_and(|s| s.code == Code::Unschedulable))
        .collect();
    if potential.is_empty() {
        return Outcome::NoCandidate(FitError {
            num_all_nodes: nodes.len(),
            diagnosis: Diagnosis { absent: not_helpful(), ..Default::default() },
        });
    }
    let n = potential.len();
    let want = (n * MIN_CANDIDATE_NODES_PERCENTAGE / 100).max(MIN_CANDIDATE_NODES_ABSOLUTE).min(n);
    let offset = rng.random_range(0..n);
    let mut statuses: BTreeMap<String, Status> = BTreeMap::new();
    let (mut non_violating, mut violating) = (Vec::new(), Vec::new());
    for i in 0..n {
        let node = potential[(offset + i) % n];
        match select_victims(state, node, cache.nominated_for(&node.name), pdbs, now) {
            Ok((victims, v)) => {
                let c = Candidate { node: node.name.clone(), victims, pdb_violations: v };
                if v == 0 {
                    non_violating.push(c)
                } else {
                    violating.push(c)
                }
                if !non_violating.is_empty() && non_violating.len() + violating.len() >= want {
                    break;
                }
            }
            Err(s) => {
                statuses.insert(node.name.clone(), s);
            }
        }
    }
    let mut cands = non_violating;
    cands.extend(violating);
    match pick_one(&cands, now) {
        Some(i) => Outcome::Nominate(cands.swap_remove(i)),
        None => Outcome::NoCandidate(FitError {
            num_all_nodes: nodes.len(),
            diagnosis: Diagnosis { node_to_status: statuses, absent: not_helpful(), ..Default::default() },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{Algorithm, ScheduleError, cycle_state};
    use crate::testing::{bound, node_with_resources, pod_with_requests, with_priority};
    use rand::SeedableRng;

    fn place(cache: &mut Cache, node: &str, name: &str, cpu: &str, prio: i32) {
        let p = with_priority(bound(pod_with_requests(name, cpu, ""), node), prio);
        cache.add_pod(Arc::new(PodInfo::new(p.into())));
    }

    fn run(cache: &Cache, pod: k8s_openapi::api::core::v1::Pod, pdbs: &[Pdb]) -> (FitError, Outcome) {
        let state = cycle_state(cache, Arc::new(PodInfo::new(pod.into())), Default::default());
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let Err(ScheduleError::Fit(e)) = Algorithm::default().schedule(cache, &state, &mut 0, &mut rng)
        else {
            panic!("expected a fit error")
        };
        let out = preempt(cache, &state, &e.diagnosis, pdbs, jiff::Timestamp::now(), &mut rng);
        (e, out)
    }

    fn two_nodes() -> Cache {
        let mut c = Cache::new();
        c.add_node(node_with_resources("n1", "2", "8Gi", "110").into());
        c.add_node(node_with_resources("n2", "2", "8Gi", "110").into());
        c
    }

    #[test]
    fn the_node_with_the_least_important_victims_is_chosen() {
        let mut c = two_nodes();
        place(&mut c, "n1", "a", "1", 10);
        place(&mut c, "n1", "b", "1", 10);
        place(&mut c, "n2", "c", "1", 5);
        place(&mut c, "n2", "d", "1", 20);
        let (_, out) = run(&c, with_priority(pod_with_requests("p", "1", ""), 100), &[]);
        let Outcome::Nominate(cand) = out else { panic!("{out:?}") };
        assert_eq!(cand.node, "n2");
        assert_eq!(cand.victims.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), vec!["c"]);
    }

    #[test]
    fn only_as_many_victims_as_needed_are_evicted() {
        let mut c = two_nodes();
        place(&mut c, "n1", "a", "500m", 1);
        place(&mut c, "n1", "b", "500m", 2);
        place(&mut c, "n1", "c", "1", 3);
        place(&mut c, "n2", "d", "2", 50);
        let (_, out) = run(&c, with_priority(pod_with_requests("p", "1", ""), 10), &[]);
        let Outcome::Nominate(cand) = out else { panic!("{out:?}") };
        assert_eq!(cand.node, "n1");
        // c (priority 3) is reprieved first, and then neither a nor b fits back.
        let mut names: Vec<&str> = cand.victims.iter().map(|v| v.name.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["a", "b"]);
    }

    #[test]
    fn higher_priority_pods_are_never_victims() {
        let mut c = two_nodes();
        place(&mut c, "n1", "a", "2", 100);
        place(&mut c, "n2", "b", "2", 100);
        let (e, out) = run(&c, with_priority(pod_with_requests("p", "1", ""), 10), &[]);
        let mut e = e;
        e.diagnosis.post_filter_msg = out.message();
        assert_eq!(
            e.to_string(),
            "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: \
             2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn unresolvable_nodes_are_not_helped_by_preemption() {
        let mut c = two_nodes();
        place(&mut c, "n1", "a", "2", 0);
        let mut tainted = node_with_resources("n2", "2", "8Gi", "110");
        tainted.spec.get_or_insert_with(Default::default).taints =
            Some(vec![crate::testing::taint("node-role.kubernetes.io/control-plane", "", "NoSchedule")]);
        c.add_node(tainted.into());
        let (e, out) = run(&c, with_priority(pod_with_requests("p", "1", ""), 0), &[]);
        let mut e = e;
        e.diagnosis.post_filter_msg = out.message();
        assert_eq!(
            e.to_string(),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint \
             {node-role.kubernetes.io/control-plane: }. preemption: 0/2 nodes are available: \
             1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn preemption_policy_never_forbids_preempting() {
        let mut c = two_nodes();
        place(&mut c, "n1", "a", "2", 0);
        place(&mut c, "n2", "b", "2", 0);
        let mut p = with_priority(pod_with_requests("p", "1", ""), 100);
        p.spec.as_mut().unwrap().preemption_policy = Some("Never".into());
        let (_, out) = run(&c, p, &[]);
        assert_eq!(out.message(), "preemption: not eligible due to preemptionPolicy=Never.");
    }

    #[test]
    fn budgets_steer_preemption_to_nodes_without_violations() {
        let mut c = two_nodes();
        let mut a = with_priority(bound(pod_with_requests("a", "2", ""), "n1"), 1);
        a.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        c.add_pod(Arc::new(PodInfo::new(a.into())));
        place(&mut c, "n2", "b", "2", 1);
        let pdb = Pdb {
            namespace: "default".into(),
            selector: LabelSelector::from_map(&[("app".to_string(), "db".to_string())].into()),
            disruptions_allowed: 0,
            disrupted_pods: HashSet::new(),
        };
        let (_, out) = run(&c, with_priority(pod_with_requests("p", "1", ""), 10), &[pdb]);
        let Outcome::Nominate(cand) = out else { panic!("{out:?}") };
        assert_eq!(cand.node, "n2");
        assert_eq!(cand.pdb_violations, 0);
    }
}
