//! The node agent (kubelet) over CRI: registers this machine as a Node and keeps it
//! current ([`node`]), watches the pods bound to it (`spec.nodeName=<node>`), and runs
//! each through a CRI v1 runtime with one worker per pod ([`pod_worker`]): sandbox,
//! init containers, sidecars, app containers, restarts with back-off, probes
//! ([`probes`]), hooks and graceful termination ([`lifecycle`]), volumes ([`volumes`]),
//! and the pod status ([`status`]). A relist of the runtime every second (the kubelet's
//! PLEG) wakes the worker of any pod whose containers changed state; leftovers of pods
//! the API no longer has are removed.

mod backoff;
mod containers;
mod events;
mod fieldpath;
mod images;
pub mod lifecycle;
pub mod logs;
pub mod node;
pub mod pod_worker;
pub mod probes;
pub mod runtime_pod;
pub mod sandbox;
pub mod server;
pub mod status;
#[cfg(test)]
mod testing;
pub mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cri::{Images, Runtime};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::{Notify, watch};

pub use events::{EventType, Recorder};

use backoff::Backoff;
use fieldpath::Allocatable;
use node::MachineInfo;
use probes::ProbeManager;
use runtime_pod::keys;
use sandbox::HostDns;

/// Where the agent's time comes from, so tests can move it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Node's name.
    pub node_name: String,
    /// The agent's own directory (`<data-dir>/agent`): pods' volumes and logs.
    pub root_dir: PathBuf,
    /// The node's InternalIP (and pods' hostIP).
    pub node_ip: Option<String>,
    /// The node's pod CIDR, recorded on the Node.
    pub pod_cidr: Option<String>,
    /// Cluster DNS servers for `dnsPolicy: ClusterFirst`; empty when the cluster has none.
    pub cluster_dns: Vec<String>,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// Extra labels of the Node.
    pub node_labels: BTreeMap<String, String>,
    /// The pods capacity.
    pub max_pods: u32,
    /// The node's resolv.conf, for `dnsPolicy: Default`.
    pub resolv_conf: PathBuf,
    /// The cgroup (cgroupfs driver) under which pods' cgroups go.
    pub cgroup_root: String,
    /// The port of the agent's own API, as the Node advertises it (0 with `api_tls`:
    /// any free port).
    pub kubelet_port: u16,
    /// TLS for the agent's own API (`pods/log`), requiring client certificates of the
    /// cluster CA; `None` serves no API.
    pub api_tls: Option<Arc<rustls::ServerConfig>>,
}

impl Config {
    /// Defaults for a node named `node_name` keeping its files in `root_dir`.
    pub fn new(node_name: &str, root_dir: &Path) -> Self {
        Self {
            node_name: node_name.to_owned(),
            root_dir: root_dir.to_owned(),
            node_ip: None,
            pod_cidr: None,
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            node_labels: BTreeMap::new(),
            max_pods: 110,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            cgroup_root: "/kubepods".into(),
            kubelet_port: 0,
            api_tls: None,
        }
    }
}

/// What can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The container runtime refused or failed a call.
    #[error("{0}")]
    Runtime(#[from] cri::Error),
    /// A file operation on the node failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Containers of a pod outlived being stopped.
    #[error("containers of pod {pod} are still running after being stopped")]
    StillRunning { pod: String },
}

/// Why a container could not be started: the waiting reason and message its status
/// shows (`ErrImagePull`, `CreateContainerConfigError`, `CrashLoopBackOff`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct StartError {
    pub reason: String,
    pub message: String,
}

impl StartError {
    pub fn new(reason: &str, message: impl Into<String>) -> Self {
        Self { reason: reason.to_owned(), message: message.into() }
    }
}

/// A pod as the kubelet names it in messages: `name_namespace(uid)`.
pub fn format_pod(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// A runtime error as Go's gRPC client prints it (`rpc error: code = NotFound desc =
/// ...`), which is what users see in Kubernetes messages.
pub fn grpc_message(e: &cri::Error) -> String {
    match e {
        cri::Error::Rpc { status, .. } => {
            format!("rpc error: code = {:?} desc = {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}

/// A duration as Go prints it: `10s`, `1m20s`, `523.412ms`, `1.5s`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let trim = |s: String| -> String {
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim(format!("{:.3}", nanos as f64 / 1e3)));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim(format!("{:.6}", nanos as f64 / 1e6)));
    }
    let total_secs = d.as_secs();
    let (h, m, s) = (total_secs / 3600, (total_secs / 60) % 60, total_secs % 60);
    let frac = d.subsec_nanos();
    let secs = if frac == 0 { format!("{s}") } else { trim(format!("{s}.{frac:09}")) };
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

/// Services of the cluster, for the service environment variables of containers.
#[derive(Default)]
struct ServiceCache {
    synced: bool,
    items: HashMap<(String, String), Service>,
    buffer: Option<HashMap<(String, String), Service>>,
}

fn service_key(s: &Service) -> (String, String) {
    (s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name.clone().unwrap_or_default())
}

/// State shared by the node loop, the dispatcher and every pod worker.
pub struct Shared {
    pub client: Client,
    pub runtime: Arc<dyn Runtime>,
    pub images: Arc<dyn Images>,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub recorder: Recorder,
    pub machine: MachineInfo,
    pub allocatable: Allocatable,
    pub host_dns: HostDns,
    pub probes: ProbeManager,
    /// Set once the missing TokenRequest API was reported.
    pub warned_token_request: AtomicBool,
    runtime_version: Mutex<(String, String)>,
    restart_backoff: Mutex<Backoff>,
    pull_backoff: Mutex<Backoff>,
    pull_errors: Mutex<HashMap<String, String>>,
    tokens: Mutex<HashMap<String, (String, Timestamp)>>,
    services: Mutex<ServiceCache>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The shared state of an agent (reads the machine's facts and resolv.conf).
    pub fn new(
        client: Client,
        runtime: Arc<dyn Runtime>,
        images: Arc<dyn Images>,
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let machine = MachineInfo::read(&config.root_dir);
        let host_dns = HostDns::read(&config.resolv_conf);
        Self::with_machine(client, runtime, images, config, clock, machine, host_dns)
    }

    /// The shared state with the machine's facts given (tests).
    pub fn with_machine(
        client: Client,
        runtime: Arc<dyn Runtime>,
        images: Arc<dyn Images>,
        config: Config,
        clock: Arc<dyn Clock>,
        machine: MachineInfo,
        host_dns: HostDns,
    ) -> Self {
        let recorder = Recorder::new(client.clone(), &config.node_name, clock.clone());
        Self {
            allocatable: machine.allocatable_values(),
            machine,
            host_dns,
            recorder,
            client,
            runtime,
            images,
            config,
            clock,
            probes: ProbeManager::default(),
            warned_token_request: AtomicBool::new(false),
            runtime_version: Mutex::new(("containerd".into(), String::new())),
            restart_backoff: Mutex::new(Backoff::default()),
            pull_backoff: Mutex::new(Backoff::default()),
            pull_errors: Mutex::default(),
            tokens: Mutex::default(),
            services: Mutex::default(),
        }
    }

    /// Records the runtime's name and version (from CRI `Version`).
    pub fn set_runtime_version(&self, name: &str, version: &str) {
        *lock(&self.runtime_version) = (name.to_owned(), version.to_owned());
    }

    /// The runtime's name, the scheme of container ids (`containerd`).
    pub fn runtime_name(&self) -> String {
        lock(&self.runtime_version).0.clone()
    }

    /// `containerd://1.6.20`, as nodeInfo shows it.
    pub fn runtime_version(&self) -> String {
        let v = lock(&self.runtime_version);
        format!("{}://{}", v.0, v.1)
    }

    pub(crate) fn restart_backoff(&self) -> MutexGuard<'_, Backoff> {
        lock(&self.restart_backoff)
    }

    pub(crate) fn pull_backoff(&self) -> MutexGuard<'_, Backoff> {
        lock(&self.pull_backoff)
    }

    pub(crate) fn pull_errors(&self) -> MutexGuard<'_, HashMap<String, String>> {
        lock(&self.pull_errors)
    }

    pub(crate) fn tokens(&self) -> MutexGuard<'_, HashMap<String, (String, Timestamp)>> {
        lock(&self.tokens)
    }

    /// The cluster's Services, or the kubelet's error while they were never listed.
    pub fn services(&self) -> Result<Vec<Service>, String> {
        let cache = lock(&self.services);
        if !cache.synced {
            return Err("services have not yet been read at least once, cannot construct envvars".into());
        }
        Ok(cache.items.values().cloned().collect())
    }

    /// Marks the Services as listed (tests, where there are none).
    pub fn set_services(&self, services: Vec<Service>) {
        let mut cache = lock(&self.services);
        cache.items = services.into_iter().map(|s| (service_key(&s), s)).collect();
        cache.synced = true;
    }

    fn apply_service_event(&self, event: Event<Service>) {
        let mut cache = lock(&self.services);
        match event {
            Event::Init => cache.buffer = Some(HashMap::new()),
            Event::InitApply(s) => {
                let key = service_key(&s);
                cache.buffer.get_or_insert_with(HashMap::new).insert(key, s);
            }
            Event::InitDone => {
                cache.items = cache.buffer.take().unwrap_or_default();
                cache.synced = true;
            }
            Event::Apply(s) => {
                cache.items.insert(service_key(&s), s);
            }
            Event::Delete(s) => {
                cache.items.remove(&service_key(&s));
            }
        }
    }
}

/// Keeps the Service cache current.
async fn watch_services(shared: Arc<Shared>) {
    let api: Api<Service> = Api::all(shared.client.clone());
    let mut stream = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(e) => shared.apply_service_event(e),
            Err(error) => tracing::debug!(%error, "watching services"),
        }
    }
}

struct WorkerHandle {
    updates: watch::Sender<Option<Arc<Pod>>>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// Routes pod updates to their workers and runs the runtime relist.
struct Dispatcher {
    shared: Arc<Shared>,
    workers: HashMap<String, WorkerHandle>,
    known: HashMap<String, Arc<Pod>>,
    relist: HashMap<String, (String, i32)>,
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

impl Dispatcher {
    fn spawn(&mut self, uid: &str, pod: Option<Arc<Pod>>) {
        let (tx, rx) = watch::channel(pod);
        let wake = Arc::new(Notify::new());
        let worker = pod_worker::PodWorker::new(self.shared.clone(), uid, wake.clone());
        let task = tokio::spawn(pod_worker::run(worker, rx));
        self.workers.insert(uid.to_owned(), WorkerHandle { updates: tx, wake, task });
    }

    fn reap(&mut self) {
        self.workers.retain(|_, w| !w.task.is_finished());
    }

    fn upsert(&mut self, pod: Pod) {
        let uid = uid_of(&pod);
        if uid.is_empty() {
            return;
        }
        let pod = Arc::new(pod);
        self.known.insert(uid.clone(), pod.clone());
        self.reap();
        match self.workers.get(&uid) {
            Some(w) => {
                w.updates.send_replace(Some(pod));
            }
            None => self.spawn(&uid, Some(pod)),
        }
    }

    fn remove(&mut self, uid: &str) {
        self.known.remove(uid);
        if let Some(w) = self.workers.get(uid) {
            w.updates.send_replace(None);
        }
    }

    /// One relist of the runtime: wakes the workers of pods whose containers or
    /// sandboxes changed state, and starts cleanup workers for pods of the runtime the
    /// API does not know (when `cleanup`).
    async fn relist(&mut self, cleanup: bool) {
        let runtime = self.shared.runtime.clone();
        let (containers, sandboxes) =
            match tokio::join!(runtime.list_containers(None), runtime.list_pod_sandbox(None)) {
                (Ok(c), Ok(s)) => (c, s),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %e, "relisting the runtime failed");
                    return;
                }
            };
        let mut current: HashMap<String, (String, i32)> = HashMap::new();
        for c in &containers {
            if let Some(uid) = c.labels.get(keys::POD_UID) {
                current.insert(c.id.clone(), (uid.clone(), c.state));
            }
        }
        for s in &sandboxes {
            if let Some(uid) = s.labels.get(keys::POD_UID) {
                current.insert(s.id.clone(), (uid.clone(), 100 + s.state));
            }
        }
        let mut changed: HashSet<String> = HashSet::new();
        for (id, (uid, state)) in &current {
            if self.relist.get(id).map(|(_, s)| s) != Some(state) {
                changed.insert(uid.clone());
            }
        }
        for (id, (uid, _)) in &self.relist {
            if !current.contains_key(id) {
                changed.insert(uid.clone());
            }
        }
        self.relist = current;
        for uid in &changed {
            if let Some(w) = self.workers.get(uid) {
                w.wake.notify_one();
            }
        }
        if cleanup {
            self.reap();
            let orphans: HashSet<String> = self
                .relist
                .values()
                .map(|(uid, _)| uid.clone())
                .filter(|uid| !self.known.contains_key(uid) && !self.workers.contains_key(uid))
                .collect();
            for uid in orphans {
                tracing::info!(pod_uid = %uid, "removing a pod the API no longer has from the runtime");
                self.spawn(&uid, None);
            }
        }
    }

    async fn run(mut self) -> Result<(), Error> {
        let node = self.shared.config.node_name.clone();
        let api: Api<Pod> = Api::all(self.shared.client.clone());
        let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
        let mut pods = watcher::watcher(api, config).default_backoff().boxed();
        let mut init: Option<HashSet<String>> = None;
        let mut synced = false;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        // Give the Service cache a moment, so first containers get their variables.
        for _ in 0..50 {
            if self.shared.services().is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        loop {
            tokio::select! {
                event = pods.next() => {
                    let Some(event) = event else { return Ok(()) };
                    match event {
                        Ok(Event::Init) => init = Some(HashSet::new()),
                        Ok(Event::InitApply(pod)) => {
                            init.get_or_insert_with(HashSet::new).insert(uid_of(&pod));
                            self.upsert(pod);
                        }
                        Ok(Event::InitDone) => {
                            let seen = init.take().unwrap_or_default();
                            let gone: Vec<String> = self.known.keys().filter(|u| !seen.contains(*u)).cloned().collect();
                            for uid in gone {
                                self.remove(&uid);
                            }
                            if !synced {
                                synced = true;
                                self.relist(true).await;
                            }
                        }
                        Ok(Event::Apply(pod)) => self.upsert(pod),
                        Ok(Event::Delete(pod)) => self.remove(&uid_of(&pod)),
                        Err(error) => tracing::warn!(%error, "watching this node's pods"),
                    }
                }
                _ = tick.tick() => {
                    ticks += 1;
                    // Leftovers are looked for every 10 seconds, once the pods were listed.
                    self.relist(synced && ticks.is_multiple_of(10)).await;
                    if ticks.is_multiple_of(60) {
                        let now = self.shared.clock.now();
                        self.shared.restart_backoff().gc(now);
                        self.shared.pull_backoff().gc(now);
                    }
                }
            }
        }
    }
}

/// Runs the node agent until the process ends: the Node and its Lease, and every pod
/// bound to it, through `runtime` and `images`.
pub async fn run(
    client: Client,
    runtime: Arc<dyn Runtime>,
    images: Arc<dyn Images>,
    config: Config,
) -> Result<(), Error> {
    let version = runtime.version().await?;
    let root = config.root_dir.clone();
    tokio::fs::create_dir_all(&root).await.map_err(|source| Error::Io {
        what: "creating the agent directory",
        path: root.clone(),
        source,
    })?;
    let mut config = config;
    let api = match config.api_tls.clone() {
        Some(tls) => {
            let host = config.node_ip.clone().unwrap_or_else(|| "0.0.0.0".into());
            let addr = format!("{host}:{}", config.kubelet_port);
            let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|source| Error::Io {
                what: "listening for the agent API on",
                path: PathBuf::from(&addr),
                source,
            })?;
            if let Ok(local) = listener.local_addr() {
                config.kubelet_port = local.port();
            }
            Some((listener, tls))
        }
        None => None,
    };
    let shared = Arc::new(Shared::new(client, runtime, images, config, Arc::new(SystemClock)));
    if let Some((listener, tls)) = api {
        tracing::info!(port = shared.config.kubelet_port, "agent API serving");
        tokio::spawn(server::serve(shared.clone(), listener, tls));
    }
    shared.set_runtime_version(&version.runtime_name, &version.runtime_version);
    tracing::info!(
        node = %shared.config.node_name,
        runtime = %shared.runtime_version(),
        "node agent started"
    );
    tokio::spawn(watch_services(shared.clone()));
    tokio::spawn(node::run(shared.clone()));
    let dispatcher =
        Dispatcher { shared, workers: HashMap::new(), known: HashMap::new(), relist: HashMap::new() };
    dispatcher.run().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(80), "1m20s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_micros(523_412), "523.412ms"),
            (Duration::from_secs(3725), "1h2m5s"),
            (Duration::ZERO, "0s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn runtime_errors_read_like_go_grpc_errors() {
        let e =
            cri::Error::Rpc { op: "PullImage", status: Box::new(tonic::Status::not_found("no such image")) };
        assert_eq!(grpc_message(&e), "rpc error: code = NotFound desc = no such image");
    }
}
