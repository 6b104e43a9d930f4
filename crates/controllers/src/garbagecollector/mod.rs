//! The garbage collector (upstream `pkg/controller/garbagecollector`): deletes objects
//! whose owners are gone, and carries out the propagation policies the API server records
//! as finalizers on delete. It works for every resource, built-in and custom: discovery
//! (every 30s and whenever a CustomResourceDefinition changes) yields the resources that
//! can be listed, watched and deleted, a metadata-only watch per resource ("monitor")
//! feeds the dependency graph built from `metadata.ownerReferences` (matched by uid), and
//! two workqueues act on it:
//! - attempt-to-delete: an object none of whose owners exists any more (verified with a
//!   live GET, so a stale cache never deletes anything) is deleted with the propagation its
//!   own finalizers ask for, Background by default; an owner deleted in foreground
//!   (`foregroundDeletion` finalizer) has its dependents deleted and loses the finalizer
//!   once no dependent with `blockOwnerDeletion: true` remains, so the API server can
//!   remove it;
//! - attempt-to-orphan: an owner with the `orphan` finalizer has its ownerReference removed
//!   from every dependent, then loses the finalizer.

pub mod discovery;
pub mod graph;
mod monitors;
mod operations;
pub mod workqueue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;

use crate::Context;
use discovery::Resources;
use graph::{Graph, Node, Work};
use monitors::Monitor;
use workqueue::WorkQueue;

/// Workers per queue (kube-controller-manager's `--concurrent-gc-syncs` default).
pub const WORKERS: usize = 20;
/// How often discovery is refreshed to pick up new and removed resources.
pub const RESYNC_PERIOD: Duration = Duration::from_secs(30);
/// How long a monitor may take to list its resource before the collector stops waiting
/// for it (a resource whose watch never works must not stop collection everywhere).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors of one garbage-collection step; the item is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request for {identity} failed: {source}")]
    Kube {
        identity: String,
        #[source]
        source: kube::Error,
    },
    /// The kind of a reference is not (yet) known to discovery.
    #[error("unable to get REST mapping for {api_version}/{kind}")]
    Mapping { api_version: String, kind: String },
    /// A cluster-scoped object named a namespaced owner; retrying cannot help.
    #[error("cluster-scoped object {0} refers to a namespaced owner")]
    NamespacedOwnerOfClusterScoped(String),
}

/// The collector's shared state.
pub struct GarbageCollector {
    client: Client,
    graph: Mutex<Graph>,
    resources: RwLock<Arc<Resources>>,
    attempt_to_delete: Arc<WorkQueue<String>>,
    attempt_to_orphan: Arc<WorkQueue<String>>,
    monitors: Mutex<HashMap<String, Monitor>>,
}

impl GarbageCollector {
    /// A collector with an empty graph and no monitors.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            graph: Mutex::new(Graph::default()),
            resources: RwLock::new(Arc::new(Resources::default())),
            attempt_to_delete: WorkQueue::new(),
            attempt_to_orphan: WorkQueue::new(),
            monitors: Mutex::new(HashMap::new()),
        }
    }

    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resources(&self) -> Arc<Resources> {
        self.resources.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_resources(&self, r: Resources) {
        *self.resources.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(r);
    }

    /// A copy of the node of `uid`, if the graph has it.
    fn snapshot(&self, uid: &str) -> Option<Node> {
        self.graph().get(uid).cloned()
    }

    /// Applies a change to the graph and queues the work it causes.
    pub fn apply(&self, change: graph::Change) {
        let work = self.graph().apply(change);
        self.enqueue(work);
    }

    fn enqueue(&self, work: Vec<Work>) {
        for w in work {
            match w {
                Work::AttemptToDelete(uid) => self.attempt_to_delete.add(uid),
                Work::AttemptToDeleteLater(uid) => self.attempt_to_delete.add_rate_limited(uid),
                Work::AttemptToOrphan(uid) => self.attempt_to_orphan.add(uid),
            }
        }
    }
}

/// Runs the garbage collector until the future is dropped.
pub async fn run(ctx: Arc<Context>) {
    let gc = Arc::new(GarbageCollector::new(ctx.client.clone()));
    let crds = ctx.informers.get::<CustomResourceDefinition>();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let deleter = gc.clone();
    let orphaner = gc.clone();
    let workers = async {
        gc.wait_for_monitors().await;
        tracing::info!("garbage collector: all resource monitors have synced, proceeding to collect garbage");
        tokio::join!(
            workqueue::run_workers(gc.attempt_to_delete.clone(), WORKERS, move |uid: String| {
                let gc = deleter.clone();
                async move { gc.attempt_to_delete_worker(&uid).await }
            }),
            workqueue::run_workers(gc.attempt_to_orphan.clone(), WORKERS, move |uid: String| {
                let gc = orphaner.clone();
                async move { gc.attempt_to_orphan_worker(&uid).await }
            }),
        );
    };
    tokio::join!(gc.clone().sync_monitors(crds.changes(), tx), gc.clone().process_graph_changes(rx), workers);
}

#[cfg(test)]
mod tests;
