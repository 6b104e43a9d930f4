//! krust's controller-manager: level-triggered control loops that watch the API server
//! and drive actual state toward desired state. Every controller is an API client (a
//! `kube::Client`, in-process over the loopback transport or remote over HTTPS), so the
//! same code also runs against any Kubernetes cluster.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod garbagecollector;
pub mod history;
pub mod job;
pub mod namespace;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod rootcacert;
pub mod runtime;
pub mod serviceaccount;
pub mod statefulset;
pub mod ttlafterfinished;
pub mod volume;

pub use runtime::{Clock, Informers, SystemClock};

/// What every controller shares.
pub struct Context {
    pub client: Client,
    pub informers: Informers,
    pub clock: Arc<dyn Clock>,
    pub options: Options,
}

/// Settings of the controller-manager.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The cluster CA (PEM) published as the `kube-root-ca.crt` ConfigMap in every namespace.
    pub root_ca_pem: Option<String>,
    /// This process's name in the leader-election Lease.
    pub identity: String,
    /// How long a node may go without a heartbeat (Lease renewal or status change) before
    /// the node lifecycle controller marks it Unknown (`--node-monitor-grace-period`);
    /// 40s when unset.
    pub node_monitor_grace_period: Option<Duration>,
    /// The directory on each node where the local-path provisioner puts volumes
    /// (`<data-dir>/storage`); `/var/lib/krust/storage` when unset.
    pub local_path_dir: Option<std::path::PathBuf>,
}

/// Errors a reconcile can end with; the controller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Default requeue after an error.
pub const ERROR_REQUEUE: Duration = Duration::from_secs(5);

/// Runs every controller while this process holds the controller-manager lease.
pub async fn run(client: Client, options: Options) {
    let leader = runtime::leader::elect(client.clone(), "kube-controller-manager", &options.identity);
    runtime::leader::run_while_leader(leader, move || {
        let ctx = Arc::new(Context {
            client: client.clone(),
            informers: Informers::new(client.clone()),
            clock: Arc::new(SystemClock),
            options: options.clone(),
        });
        async move {
            let tasks = vec![
                tokio::spawn(serviceaccount::run(ctx.clone())),
                tokio::spawn(nodelifecycle::run(ctx.clone())),
                tokio::spawn(disruption::run(ctx.clone())),
                tokio::spawn(resourcequota::run(ctx.clone())),
                tokio::spawn(volume::run(ctx.clone())),
                tokio::spawn(job::run(ctx.clone())),
                tokio::spawn(cronjob::run(ctx.clone())),
                tokio::spawn(ttlafterfinished::run(ctx.clone())),
                tokio::spawn(statefulset::run(ctx.clone())),
                tokio::spawn(daemonset::run(ctx.clone())),
                tokio::spawn(garbagecollector::run(ctx.clone())),
                tokio::spawn(namespace::run(ctx.clone())),
                tokio::spawn(podgc::run(ctx.clone())),
                tokio::spawn(endpoints::run(ctx.clone())),
                tokio::spawn(endpointslice::run(ctx.clone())),
                tokio::spawn(rootcacert::run(ctx.clone())),
                tokio::spawn(replicaset::run(ctx.clone())),
                tokio::spawn(deployment::run(ctx.clone())),
            ];
            futures::future::join_all(tasks).await;
        }
    })
    .await;
}
