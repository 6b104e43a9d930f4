//! krust's scheduler (kube-scheduler): watches pods without a node and assigns each to a
//! node through the binding subresource, following kube-scheduler 1.33's default profile:
//! a priority queue with backoff and an unschedulable set, the default filter and score
//! plugins with upstream weights, DefaultPreemption, and an assume cache so that bursts of
//! pods do not oversubscribe nodes. Leader-elected over the Lease `kube-system/kube-scheduler`.
//!
//! The plugins, the queue and the cache are pure and unit-tested without a client; the
//! [`scheduler`] module wires them to informers and the API.

pub mod cache;
pub mod framework;
pub mod nodeinfo;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod schedule;
pub mod scheduler;
pub mod selector;
#[cfg(test)]
pub mod testing;

use kube::Client;

pub use scheduler::Scheduler;

/// The name of the Lease the schedulers of a cluster elect their leader with.
pub const LEASE_NAME: &str = "kube-scheduler";

/// Settings of the scheduler.
#[derive(Clone, Debug)]
pub struct Options {
    /// This process's name in the leader-election Lease.
    pub identity: String,
    /// Pods whose `spec.schedulerName` is this are scheduled (default `default-scheduler`);
    /// it is also the source of the scheduler's events.
    pub scheduler_name: String,
    /// `percentageOfNodesToScore`: 0 adapts to the cluster size (50% minus 1% per 125
    /// nodes, at least 5%, never fewer than 100 nodes).
    pub percentage_of_nodes_to_score: u32,
    /// How many binding calls may be in flight at once.
    pub parallel_binds: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            identity: String::new(),
            scheduler_name: "default-scheduler".into(),
            percentage_of_nodes_to_score: 0,
            parallel_binds: 16,
        }
    }
}

/// Runs the scheduler while this process holds the `kube-system/kube-scheduler` lease;
/// stops scheduling when the lease is lost and starts afresh (new caches) when regained.
pub async fn run(client: Client, options: Options) {
    let leader = controllers::runtime::leader::elect(client.clone(), LEASE_NAME, &options.identity);
    controllers::runtime::leader::run_while_leader(leader, move || {
        let informers = controllers::Informers::new(client.clone());
        let sched = Scheduler::new(client.clone(), informers, options.clone());
        sched.run()
    })
    .await;
}
