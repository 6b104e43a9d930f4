//! The default plugin set, in upstream order: filters (NodeUnschedulable, NodeName,
//! TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, PodTopologySpread,
//! InterPodAffinity) and scores with upstream default weights (TaintToleration 3,
//! NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2, NodeResourcesFit 1,
//! NodeResourcesBalancedAllocation 1, ImageLocality 1).

pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::framework::Status;
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::selector::LabelSelector;

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

pub const WEIGHT_TAINT_TOLERATION: i64 = 3;
pub const WEIGHT_NODE_AFFINITY: i64 = 2;
pub const WEIGHT_POD_TOPOLOGY_SPREAD: i64 = 2;
pub const WEIGHT_INTER_POD_AFFINITY: i64 = 2;
pub const WEIGHT_NODE_RESOURCES_FIT: i64 = 1;
pub const WEIGHT_BALANCED_ALLOCATION: i64 = 1;
pub const WEIGHT_IMAGE_LOCALITY: i64 = 1;

/// Scales scores to 0..=100 by the highest one; `reverse` turns high into low.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// What a cycle knows from outside the node cache.
#[derive(Clone, Debug, Default)]
pub struct ClusterInfo {
    /// Labels of the pod's namespace.
    pub pod_namespace_labels: BTreeMap<String, String>,
    /// Every namespace with its labels (listed only when a term has a namespace selector).
    pub namespaces: Vec<(String, BTreeMap<String, String>)>,
    /// The union of the selectors of the Services selecting the pod and of its controller
    /// (ReplicaSet, StatefulSet, ReplicationController), for default spreading.
    pub default_spread_selector: Option<LabelSelector>,
}

/// One scheduling cycle's state: the pod and what the pre-filters computed.
#[derive(Clone, Debug)]
pub struct CycleState {
    pub pod: Arc<PodInfo>,
    pub cluster: Arc<ClusterInfo>,
    pub terms: inter_pod_affinity::ResolvedTerms,
    pub spread: Option<pod_topology_spread::FilterState>,
    pub affinity: Option<inter_pod_affinity::FilterState>,
}

impl CycleState {
    /// Runs the pre-filters over all nodes.
    pub fn new(pod: Arc<PodInfo>, cluster: Arc<ClusterInfo>, nodes: &[NodeInfo]) -> Self {
        let terms = inter_pod_affinity::ResolvedTerms::of(&pod, &cluster.namespaces);
        let spread = pod_topology_spread::FilterState::new(&pod, nodes);
        let affinity = inter_pod_affinity::FilterState::new(
            &pod,
            terms.clone(),
            cluster.pod_namespace_labels.clone(),
            nodes,
        );
        Self { pod, cluster, terms, spread, affinity }
    }

    /// Accounts for `p` added to (`n = 1`) or removed from (`n = -1`) `node` in the
    /// pre-filter state.
    pub fn update_with_pod(&mut self, p: &PodInfo, node: &NodeInfo, n: i64) {
        if let Some(s) = self.spread.as_mut() {
            s.update_with_pod(&self.pod, p, node, n);
        }
        if let Some(s) = self.affinity.as_mut() {
            s.update_with_pod(&self.pod, p, node, n);
        }
    }
}

/// Runs every filter on one node, stopping at the first failure.
pub fn run_filters(state: &CycleState, node: &NodeInfo) -> Status {
    let pod = &state.pod;
    let checks: [&dyn Fn() -> Status; 6] = [
        &|| node_unschedulable::filter(pod, node),
        &|| node_name::filter(pod, node),
        &|| taint_toleration::filter(pod, node),
        &|| node_affinity::filter(pod, node),
        &|| node_ports::filter(pod, node),
        &|| node_resources::filter(pod, node),
    ];
    for check in checks {
        let s = check();
        if !s.is_success() {
            return s;
        }
    }
    if let Some(spread) = &state.spread {
        let s = pod_topology_spread::filter(spread, pod, node);
        if !s.is_success() {
            return s;
        }
    }
    if let Some(aff) = &state.affinity {
        let s = inter_pod_affinity::filter(aff, pod, node);
        if !s.is_success() {
            return s;
        }
    }
    Status::success()
}

/// Runs the filters with the pods nominated to this node that are at least as important as
/// the incoming one counted as if they were already there, then (if any) without them, so
/// that a pod does not take the room a preemptor is waiting for.
pub fn run_filters_with_nominated(state: &CycleState, node: &NodeInfo, nominated: &[Arc<PodInfo>]) -> Status {
    let relevant: Vec<&Arc<PodInfo>> =
        nominated.iter().filter(|p| p.key != state.pod.key && p.priority >= state.pod.priority).collect();
    if !relevant.is_empty() {
        let mut with = node.clone();
        let mut st = state.clone();
        for p in relevant {
            with.add_pod(p.clone());
            st.update_with_pod(p, &with, 1);
        }
        let s = run_filters(&st, &with);
        if !s.is_success() {
            return s;
        }
    }
    run_filters(state, node)
}

/// Weighted sum of every score plugin for the feasible nodes.
pub fn run_scores(
    state: &CycleState,
    feasible: &[&NodeInfo],
    all: &[NodeInfo],
    image_spread: &HashMap<String, usize>,
) -> Vec<i64> {
    let pod = &state.pod;
    let mut total = vec![0i64; feasible.len()];
    let mut add = |scores: Vec<i64>, weight: i64| {
        for (t, s) in total.iter_mut().zip(scores) {
            *t += s * weight;
        }
    };
    add(taint_toleration::score(pod, feasible), WEIGHT_TAINT_TOLERATION);
    if let Some(s) = node_affinity::score(pod, feasible) {
        add(s, WEIGHT_NODE_AFFINITY);
    }
    if let Some(s) =
        pod_topology_spread::score(pod, state.cluster.default_spread_selector.as_ref(), feasible, all)
    {
        add(s, WEIGHT_POD_TOPOLOGY_SPREAD);
    }
    if let Some(s) =
        inter_pod_affinity::score(pod, &state.terms, &state.cluster.pod_namespace_labels, feasible, all)
    {
        add(s, WEIGHT_INTER_POD_AFFINITY);
    }
    add(
        feasible.iter().map(|n| node_resources::least_allocated_score(pod, n)).collect(),
        WEIGHT_NODE_RESOURCES_FIT,
    );
    if node_resources::balanced_allocation_applies(pod) {
        add(
            feasible.iter().map(|n| node_resources::balanced_allocation_score(pod, n)).collect(),
            WEIGHT_BALANCED_ALLOCATION,
        );
    }
    add(image_locality::score(pod, feasible, image_spread, all.len()), WEIGHT_IMAGE_LOCALITY);
    total
}
