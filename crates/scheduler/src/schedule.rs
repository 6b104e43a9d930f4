//! One scheduling decision over the cache: run the filters over nodes (starting where the
//! previous cycle stopped, and stopping once enough feasible nodes are found, as
//! `percentageOfNodesToScore` prescribes), score the feasible ones, and pick the best
//! (ties broken at random). Pure: no API calls.

use std::sync::Arc;

use rand::Rng;

use crate::cache::Cache;
use crate::framework::{Diagnosis, FitError};
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::plugins::{self, ClusterInfo, CycleState};

/// Below this many nodes, every node is evaluated.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// The message when the cluster has no node at all.
pub const ERR_NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

/// How many feasible nodes to look for before scoring: all nodes below 100; otherwise
/// `percentage` of them (adaptive when 0: 50% minus 1% per 125 nodes, at least 5%), and
/// never fewer than 100.
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let mut pct = percentage as usize;
    if pct == 0 {
        pct = 50usize.saturating_sub(num_all_nodes / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
    }
    let pct = pct.min(100);
    (num_all_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Where the pod goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleResult {
    pub node: String,
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
}

/// Why the pod goes nowhere.
#[derive(Debug)]
pub enum ScheduleError {
    /// The cluster has no node.
    NoNodes,
    /// No node passed the filters.
    Fit(FitError),
}

/// Settings of the algorithm.
#[derive(Clone, Debug, Default)]
pub struct Algorithm {
    /// 0 means adaptive.
    pub percentage_of_nodes_to_score: u32,
}

/// Builds the cycle state (pre-filters over all nodes).
pub fn cycle_state(cache: &Cache, pod: Arc<PodInfo>, cluster: Arc<ClusterInfo>) -> CycleState {
    CycleState::new(pod, cluster, cache.nodes())
}

impl Algorithm {
    /// Picks a node for the pod. `next_start` is where filtering starts (updated so that
    /// the next cycle starts after the nodes this one looked at).
    pub fn schedule(
        &self,
        cache: &Cache,
        state: &CycleState,
        next_start: &mut usize,
        rng: &mut impl Rng,
    ) -> Result<ScheduleResult, ScheduleError> {
        let nodes = cache.nodes();
        if nodes.is_empty() {
            return Err(ScheduleError::NoNodes);
        }
        let pod = &state.pod;
        // A pod nominated by an earlier preemption tries its nominated node first.
        let nominated = pod.nominated_node_name();
        if !nominated.is_empty()
            && let Some(n) = cache.node(nominated)
            && plugins::run_filters_with_nominated(state, n, cache.nominated_for(&n.name)).is_success()
        {
            return Ok(ScheduleResult { node: n.name.clone(), evaluated_nodes: 1, feasible_nodes: 1 });
        }
        let want = num_feasible_nodes_to_find(self.percentage_of_nodes_to_score, nodes.len());
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(nodes.len()));
        let mut diagnosis = Diagnosis::default();
        let start = *next_start % nodes.len();
        let mut processed = 0;
        for i in 0..nodes.len() {
            let node = &nodes[(start + i) % nodes.len()];
            processed += 1;
            let status = plugins::run_filters_with_nominated(state, node, cache.nominated_for(&node.name));
            if status.is_success() {
                feasible.push(node);
                if feasible.len() >= want {
                    break;
                }
            } else {
                if let Some(p) = status.plugin {
                    diagnosis.unschedulable_plugins.insert(p);
                }
                diagnosis.node_to_status.insert(node.name.clone(), status);
            }
        }
        *next_start = (start + processed) % nodes.len();
        if feasible.is_empty() {
            return Err(ScheduleError::Fit(FitError { num_all_nodes: nodes.len(), diagnosis }));
        }
        if feasible.len() == 1 {
            return Ok(ScheduleResult {
                node: feasible[0].name.clone(),
                evaluated_nodes: processed,
                feasible_nodes: 1,
            });
        }
        let scores = plugins::run_scores(state, &feasible, nodes, cache.image_spread());
        let node = select_host(&feasible, &scores, rng);
        Ok(ScheduleResult { node, evaluated_nodes: processed, feasible_nodes: feasible.len() })
    }
}

/// The node with the highest score; among equals, one chosen uniformly at random.
pub fn select_host(nodes: &[&NodeInfo], scores: &[i64], rng: &mut impl Rng) -> String {
    let mut best = 0;
    let mut ties = 1;
    for i in 1..nodes.len() {
        if scores[i] > scores[best] {
            best = i;
            ties = 1;
        } else if scores[i] == scores[best] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    nodes[best].name.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node_with_resources, pod_with_requests};
    use rand::SeedableRng;

    #[test]
    fn the_number_of_nodes_to_find_adapts_to_cluster_size() {
        let cases = [
            (0, 50, 50),
            (0, 99, 99),
            (0, 100, 100),
            (0, 1000, 420),
            (0, 5000, 500),
            (0, 6000, 300),
            (10, 5000, 500),
            (50, 150, 100),
            (100, 1000, 1000),
        ];
        for (pct, nodes, want) in cases {
            assert_eq!(num_feasible_nodes_to_find(pct, nodes), want, "{pct}% of {nodes}");
        }
    }

    fn cluster(n: usize) -> Cache {
        let mut c = Cache::new();
        for i in 0..n {
            c.add_node(node_with_resources(&format!("node-{i}"), "4", "8Gi", "110").into());
        }
        c
    }

    #[test]
    fn filtering_stops_after_enough_feasible_nodes_and_resumes_there() {
        let cache = cluster(1000);
        let pod = Arc::new(PodInfo::new(pod_with_requests("p", "100m", "100Mi").into()));
        let state = cycle_state(&cache, pod, Default::default());
        let mut start = 0;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let r = Algorithm::default().schedule(&cache, &state, &mut start, &mut rng).unwrap();
        assert_eq!(r.evaluated_nodes, 420);
        assert_eq!(r.feasible_nodes, 420);
        assert_eq!(start, 420);
    }

    #[test]
    fn a_pod_that_fits_nowhere_reports_every_node() {
        let cache = cluster(3);
        let pod = Arc::new(PodInfo::new(pod_with_requests("p", "5", "").into()));
        let state = cycle_state(&cache, pod, Default::default());
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        match Algorithm::default().schedule(&cache, &state, &mut 0, &mut rng) {
            Err(ScheduleError::Fit(e)) => {
                assert_eq!(e.to_string(), "0/3 nodes are available: 3 Insufficient cpu.");
                assert!(
                    e.diagnosis.unschedulable_plugins.contains(crate::framework::Plugin::NodeResourcesFit)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn the_emptiest_node_wins() {
        let mut cache = cluster(3);
        for (i, name) in ["node-0", "node-1"].iter().enumerate() {
            let p = crate::testing::bound(pod_with_requests(&format!("e{i}"), "2", "4Gi"), name);
            cache.add_pod(Arc::new(PodInfo::new(p.into())));
        }
        let pod = Arc::new(PodInfo::new(pod_with_requests("p", "1", "1Gi").into()));
        let state = cycle_state(&cache, pod, Default::default());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let r = Algorithm::default().schedule(&cache, &state, &mut 0, &mut rng).unwrap();
        assert_eq!(r.node, "node-2");
    }

    #[test]
    fn no_nodes_is_its_own_error() {
        let cache = Cache::new();
        let pod = Arc::new(PodInfo::new(pod_with_requests("p", "1", "").into()));
        let state = cycle_state(&cache, pod, Default::default());
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!(matches!(
            Algorithm::default().schedule(&cache, &state, &mut 0, &mut rng),
            Err(ScheduleError::NoNodes)
        ));
    }
}
