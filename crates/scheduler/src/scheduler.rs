//! The scheduler at run time: informer handlers that keep the cache and the queue up to
//! date, the scheduling loop (one pod at a time: filter, score, assume), and the API work
//! each decision leads to, issued concurrently so the loop never waits on the network:
//! bindings (`POST pods/{name}/binding`), the `Scheduled` and `FailedScheduling` events,
//! the `PodScheduled=False` condition and `nominatedNodeName`, and preemption's evictions.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use controllers::runtime::{EventType, Informers, Recorder};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, Pod, ReplicationController, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

use crate::Options;
use crate::cache::Cache;
use crate::framework::PluginSet;
use crate::nodeinfo::PodInfo;
use crate::plugins::{ClusterInfo, CycleState, inter_pod_affinity};
use crate::preemption::{self, Candidate, Outcome, Pdb};
use crate::queue::{ClusterEvent, QueuedPod, SchedulingQueue};
use crate::schedule::{Algorithm, ERR_NO_NODES_AVAILABLE, ScheduleError};
use crate::selector::LabelSelector;

/// Longest event message, as upstream truncates them.
const MAX_EVENT_MESSAGE: usize = 1024;

struct State {
    cache: Cache,
    next_start: usize,
    rng: StdRng,
}

/// How long an identical FailedScheduling event is not repeated.
const EVENT_DEDUP_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);

/// Remembers the last FailedScheduling message per pod, so that retries of a pod that keeps
/// failing the same way do not write a new Event each time (upstream's recorder aggregates
/// them into one).
#[derive(Default)]
struct EventDedup(Mutex<std::collections::HashMap<String, (String, Instant)>>);

impl EventDedup {
    fn first_time(&self, pod_uid: &str, message: &str) -> bool {
        let now = Instant::now();
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((msg, at)) = m.get(pod_uid)
            && msg == message
            && now.duration_since(*at) < EVENT_DEDUP_WINDOW
        {
            return false;
        }
        if m.len() > 50_000 {
            m.retain(|_, (_, at)| now.duration_since(*at) < EVENT_DEDUP_WINDOW);
        }
        m.insert(pod_uid.to_string(), (message.to_string(), now));
        true
    }
}

/// How many event writes may be in flight (upstream writes them one at a time); bindings
/// get the rest of the API server's attention.
const EVENT_WRITERS: usize = 1;
/// Events beyond this many waiting are dropped (as upstream's broadcaster drops them when
/// its channel is full) rather than piling up without bound.
const MAX_PENDING_EVENTS: usize = 20_000;

/// Writes events in the background with few writers, so that during a burst bindings are
/// not slowed by the events about them; the events catch up afterwards.
#[derive(Clone)]
struct EventSink {
    recorder: Recorder,
    writers: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
    inflight: Arc<Inflight>,
}

impl EventSink {
    fn emit(&self, pod: &Pod, type_: EventType, reason: &'static str, message: &str) {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING_EVENTS {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(reason, "too many pending events, dropping one");
            return;
        }
        let reference = controllers::runtime::events::reference(pod);
        let message = message.to_string();
        let me = self.clone();
        spawn_tracked(&self.inflight, async move {
            if let Ok(_permit) = me.writers.acquire().await {
                me.recorder.record(&reference, type_, reason, &message).await;
            }
            me.pending.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

fn spawn_tracked<F: std::future::Future<Output = ()> + Send + 'static>(inflight: &Arc<Inflight>, fut: F) {
    let inflight = inflight.clone();
    inflight.n.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        fut.await;
        if inflight.n.fetch_sub(1, Ordering::SeqCst) == 1 {
            inflight.idle.notify_waiters();
        }
    });
}

/// Counts spawned API work so tests (and shutdown) can wait for it.
#[derive(Default)]
struct Inflight {
    n: AtomicUsize,
    idle: Notify,
}

/// What to do with `status.nominatedNodeName` after a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Nomination {
    Keep,
    Set(String),
    Clear,
}

/// Counters of what the scheduler did since it started.
#[derive(Debug, Default)]
pub struct Stats {
    /// Scheduling cycles run.
    pub attempts: AtomicU64,
    /// Pods bound.
    pub scheduled: AtomicU64,
    /// Cycles that found no node.
    pub unschedulable: AtomicU64,
    /// Bindings the API server refused or that failed.
    pub bind_errors: AtomicU64,
}

/// The scheduler: its cache, queue and clients.
pub struct Scheduler {
    /// What the scheduler did so far.
    pub stats: Arc<Stats>,
    client: Client,
    options: Options,
    state: Arc<Mutex<State>>,
    queue: Arc<SchedulingQueue>,
    informers: Informers,
    events: EventSink,
    algorithm: Algorithm,
    binds: Arc<Semaphore>,
    inflight: Arc<Inflight>,
    dedup: Arc<EventDedup>,
}

fn truncate(msg: &str) -> String {
    if msg.len() <= MAX_EVENT_MESSAGE {
        return msg.to_string();
    }
    let mut end = MAX_EVENT_MESSAGE - 3;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &msg[..end])
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"))
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl Scheduler {
    /// A scheduler over `client`; `informers` provides Services, controllers, budgets and
    /// namespaces (pods and nodes are watched by the scheduler itself).
    pub fn new(client: Client, informers: Informers, options: Options) -> Arc<Self> {
        let inflight = Arc::new(Inflight::default());
        Arc::new(Self {
            stats: Arc::new(Stats::default()),
            events: EventSink {
                recorder: Recorder::new(client.clone(), &options.scheduler_name),
                writers: Arc::new(Semaphore::new(EVENT_WRITERS)),
                pending: Arc::new(AtomicUsize::new(0)),
                inflight: inflight.clone(),
            },
            algorithm: Algorithm { percentage_of_nodes_to_score: options.percentage_of_nodes_to_score },
            binds: Arc::new(Semaphore::new(options.parallel_binds.max(1))),
            client,
            options,
            state: Arc::new(Mutex::new(State {
                cache: Cache::new(),
                next_start: 0,
                rng: StdRng::from_os_rng(),
            })),
            queue: Arc::new(SchedulingQueue::new()),
            informers,
            inflight,
            dedup: Arc::new(EventDedup::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn responsible_for(&self, pod: &Pod) -> bool {
        let name = pod.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).unwrap_or("default-scheduler");
        name == self.options.scheduler_name
    }

    /// Handles a pod the API server reports (added or updated).
    pub fn on_pod(&self, pod: Arc<Pod>) {
        let info = Arc::new(PodInfo::new(pod));
        let key = info.key.clone();
        tracing::trace!(pod = %key, node = info.node_name(), "pod event");
        let now = Instant::now();
        if !info.node_name().is_empty() {
            self.queue.with(|q| q.delete(&key));
            let event = {
                let mut st = self.lock();
                if is_terminal(&info.pod) {
                    st.cache.remove_pod(&key).map(ClusterEvent::AssignedPodDelete)
                } else {
                    match st.cache.add_pod(info.clone()) {
                        None => Some(ClusterEvent::AssignedPodAdd(info)),
                        Some(old) if old.node_name().is_empty() => Some(ClusterEvent::AssignedPodAdd(info)),
                        Some(old) if old.pod.metadata.labels != info.pod.metadata.labels => {
                            Some(ClusterEvent::AssignedPodUpdate(info))
                        }
                        Some(_) => None,
                    }
                }
            };
            if let Some(ev) = event {
                self.queue.with(|q| q.on_event(ev, now));
            }
            return;
        }
        if !self.responsible_for(&info.pod) || is_terminal(&info.pod) || info.terminating {
            self.queue.with(|q| q.delete(&key));
            self.lock().cache.remove_nominated(&key);
            return;
        }
        {
            let mut st = self.lock();
            // Bound by us: the informer has not caught up with the binding yet.
            if st.cache.is_assumed(&key) {
                return;
            }
            let nominated = info.nominated_node_name().to_string();
            if nominated.is_empty() {
                st.cache.remove_nominated(&key);
            } else {
                st.cache.nominate(info.clone(), &nominated);
            }
        }
        self.queue.with(|q| q.add_or_update(info, now));
    }

    /// Handles a pod's deletion.
    pub fn on_pod_deleted(&self, key: &str) {
        self.queue.with(|q| q.delete(key));
        let old = self.lock().cache.remove_pod(key);
        if let Some(old) = old {
            self.queue.with(|q| q.on_event(ClusterEvent::AssignedPodDelete(old), Instant::now()));
        }
    }

    /// Handles a node the API server reports (added or updated).
    pub fn on_node(&self, node: Arc<Node>) {
        let change = self.lock().cache.add_node(node);
        let ev = if change.added {
            Some(ClusterEvent::NodeAdd)
        } else if change.any() {
            Some(ClusterEvent::NodeUpdate(change))
        } else {
            None
        };
        if let Some(ev) = ev {
            self.queue.with(|q| q.on_event(ev, Instant::now()));
        }
    }

    /// Handles a node's deletion.
    pub fn on_node_deleted(&self, name: &str) {
        if self.lock().cache.remove_node(name) {
            self.queue.with(|q| q.on_event(ClusterEvent::NodeDelete, Instant::now()));
        }
    }

    /// Watches pods and nodes, starts the queue's flushers and schedules until dropped.
    pub async fn run(self: Arc<Self>) {
        let (pods_tx, mut pods_synced) = watch::channel(false);
        let (nodes_tx, mut nodes_synced) = watch::channel(false);
        let mut tasks = vec![
            tokio::spawn(self.clone().watch_pods(pods_tx)),
            tokio::spawn(self.clone().watch_nodes(nodes_tx)),
            tokio::spawn(self.queue.clone().run_flushers()),
        ];
        // Start every informer the plugins read before scheduling anything.
        let services = self.informers.get::<Service>();
        let namespaces = self.informers.get::<Namespace>();
        let pdbs = self.informers.get::<PodDisruptionBudget>();
        let rss = self.informers.get::<ReplicaSet>();
        let stss = self.informers.get::<StatefulSet>();
        let rcs = self.informers.get::<ReplicationController>();
        let _ = pods_synced.wait_for(|s| *s).await;
        let _ = nodes_synced.wait_for(|s| *s).await;
        // These only refine scores and preemption: after a while, schedule without them
        // rather than not at all (e.g. if the server does not serve one of the kinds).
        let wait = std::time::Duration::from_secs(30);
        let ready = [
            ("services", tokio::time::timeout(wait, services.store.wait_until_ready()).await),
            ("namespaces", tokio::time::timeout(wait, namespaces.store.wait_until_ready()).await),
            ("poddisruptionbudgets", tokio::time::timeout(wait, pdbs.store.wait_until_ready()).await),
            ("replicasets", tokio::time::timeout(wait, rss.store.wait_until_ready()).await),
            ("statefulsets", tokio::time::timeout(wait, stss.store.wait_until_ready()).await),
            ("replicationcontrollers", tokio::time::timeout(wait, rcs.store.wait_until_ready()).await),
        ];
        for (kind, r) in ready {
            if !matches!(r, Ok(Ok(()))) {
                tracing::warn!(kind, "informer cache not ready; scheduling without it for now");
            }
        }
        tracing::info!(scheduler = %self.options.scheduler_name, "caches synced, scheduling");
        let me = self.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let qp = me.queue.pop().await;
                me.schedule_one(qp);
                // Let informer handlers and bindings run between cycles.
                tokio::task::yield_now().await;
            }
        }));
        let _abort_on_drop = AbortAll(tasks);
        futures::future::pending::<()>().await;
    }

    async fn watch_pods(self: Arc<Self>, synced: watch::Sender<bool>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let mut stream =
            watcher::watcher(api, watcher::Config::default().any_semantic()).default_backoff().boxed();
        let mut known: HashSet<String> = HashSet::new();
        let mut relist: Option<HashSet<String>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => relist = Some(HashSet::new()),
                Ok(Event::InitApply(p)) | Ok(Event::Apply(p)) => {
                    let key = format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(key.clone());
                    }
                    known.insert(key);
                    self.on_pod(Arc::new(p));
                }
                Ok(Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        for gone in known.difference(&seen) {
                            self.on_pod_deleted(gone);
                        }
                        known = seen;
                    }
                    let _ = synced.send(true);
                }
                Ok(Event::Delete(p)) => {
                    let key = format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any());
                    known.remove(&key);
                    self.on_pod_deleted(&key);
                }
                Err(e) => tracing::debug!(error = %e, "scheduler pod watch failed, retrying"),
            }
        }
    }

    async fn watch_nodes(self: Arc<Self>, synced: watch::Sender<bool>) {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut stream =
            watcher::watcher(api, watcher::Config::default().any_semantic()).default_backoff().boxed();
        let mut known: HashSet<String> = HashSet::new();
        let mut relist: Option<HashSet<String>> = None;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => relist = Some(HashSet::new()),
                Ok(Event::InitApply(n)) | Ok(Event::Apply(n)) => {
                    let name = n.name_any();
                    if let Some(seen) = relist.as_mut() {
                        seen.insert(name.clone());
                    }
                    known.insert(name);
                    self.on_node(Arc::new(n));
                }
                Ok(Event::InitDone) => {
                    if let Some(seen) = relist.take() {
                        for gone in known.difference(&seen) {
                            self.on_node_deleted(gone);
                        }
                        known = seen;
                    }
                    let _ = synced.send(true);
                }
                Ok(Event::Delete(n)) => {
                    known.remove(&n.name_any());
                    self.on_node_deleted(&n.name_any());
                }
                Err(e) => tracing::debug!(error = %e, "scheduler node watch failed, retrying"),
            }
        }
    }

    /// What the plugins need from outside the cache for this pod.
    fn cluster_info(&self, pod: &PodInfo) -> ClusterInfo {
        let ns_store = self.informers.get::<Namespace>().store;
        let pod_namespace_labels = ns_store
            .get(&ObjectRef::new(&pod.namespace))
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        let namespaces = if inter_pod_affinity::needs_namespaces(pod) {
            ns_store
                .state()
                .iter()
                .map(|n| (n.name_any(), n.metadata.labels.clone().unwrap_or_default()))
                .collect()
        } else {
            Vec::new()
        };
        let has_constraints = pod
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .is_some_and(|c| !c.is_empty());
        let default_spread_selector = if has_constraints { None } else { self.default_selector(pod) };
        ClusterInfo { pod_namespace_labels, namespaces, default_spread_selector }
    }

    /// The union of the selectors of the Services selecting the pod and of its controller.
    fn default_selector(&self, pod: &PodInfo) -> Option<LabelSelector> {
        let mut set: BTreeMap<String, String> = BTreeMap::new();
        for svc in self.informers.get::<Service>().store.state() {
            if svc.namespace().as_deref() != Some(pod.namespace.as_str()) {
                continue;
            }
            if let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref())
                && LabelSelector::from_map(sel).matches(pod.labels())
            {
                set.extend(sel.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        let mut selector = LabelSelector::from_map(&set);
        let owner = pod.pod.owner_references().iter().find(|r| r.controller == Some(true));
        if let Some(o) = owner {
            match (o.api_version.as_str(), o.kind.as_str()) {
                ("v1", "ReplicationController") => {
                    let rc = self
                        .informers
                        .get::<ReplicationController>()
                        .store
                        .get(&ObjectRef::new(&o.name).within(&pod.namespace));
                    if let Some(sel) = rc.and_then(|rc| rc.spec.as_ref().and_then(|s| s.selector.clone())) {
                        set.extend(sel);
                        selector = LabelSelector::from_map(&set);
                    }
                }
                ("apps/v1", "ReplicaSet") => {
                    let rs = self
                        .informers
                        .get::<ReplicaSet>()
                        .store
                        .get(&ObjectRef::new(&o.name).within(&pod.namespace));
                    if let Some(rs) = rs.and_then(|rs| rs.spec.clone()) {
                        selector.and(&LabelSelector::from_api(Some(&rs.selector)));
                    }
                }
                ("apps/v1", "StatefulSet") => {
                    let st = self
                        .informers
                        .get::<StatefulSet>()
                        .store
                        .get(&ObjectRef::new(&o.name).within(&pod.namespace));
                    if let Some(ss) = st.and_then(|s| s.spec.clone()) {
                        selector.and(&LabelSelector::from_api(Some(&ss.selector)));
                    }
                }
                _ => {}
            }
        }
        if selector.is_empty() || selector.matches_nothing() { None } else { Some(selector) }
    }

    fn pdbs(&self) -> Vec<Pdb> {
        self.informers.get::<PodDisruptionBudget>().store.state().iter().map(|p| Pdb::from_api(p)).collect()
    }

    /// Pops the next active pod, if any, and runs one scheduling cycle for it (for tests
    /// and callers driving the scheduler by hand). Returns whether a pod was scheduled.
    pub fn schedule_next(&self) -> bool {
        match self.queue.with(|q| q.pop(Instant::now())) {
            Some(qp) => {
                self.schedule_one(qp);
                true
            }
            None => false,
        }
    }

    /// One scheduling cycle: decides synchronously and spawns the API work.
    pub fn schedule_one(&self, qp: QueuedPod) {
        let info = qp.info.clone();
        let key = info.key.clone();
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        if info.terminating {
            self.queue.with(|q| q.done(&key));
            return;
        }
        let cluster = Arc::new(self.cluster_info(&info));
        let now = Instant::now();
        let mut st = self.lock();
        if st.cache.contains_pod(&key) {
            drop(st);
            self.queue.with(|q| q.done(&key));
            return;
        }
        let state = CycleState::new(info.clone(), cluster, st.cache.nodes());
        let State { cache, next_start, rng } = &mut *st;
        let result = self.algorithm.schedule(cache, &state, next_start, rng);
        match &result {
            Ok(r) => tracing::debug!(pod = %key, node = %r.node, "scheduling cycle: fits"),
            Err(ScheduleError::Fit(e)) => {
                tracing::debug!(pod = %key, reason = %e, "scheduling cycle: fits nowhere")
            }
            Err(ScheduleError::NoNodes) => tracing::debug!(pod = %key, "scheduling cycle: no nodes"),
        }
        match result {
            Ok(r) => {
                cache.assume(info.clone(), &r.node);
                drop(st);
                self.queue.with(|q| q.binding(&key));
                self.spawn_bind(info, r.node);
            }
            Err(ScheduleError::NoNodes) => {
                drop(st);
                self.stats.unschedulable.fetch_add(1, Ordering::Relaxed);
                self.queue.with(|q| q.add_unschedulable(&key, PluginSet::EMPTY, now));
                let clear =
                    if info.nominated_node_name().is_empty() { Nomination::Keep } else { Nomination::Clear };
                self.spawn_failure(
                    info,
                    "Unschedulable",
                    ERR_NO_NODES_AVAILABLE.to_string(),
                    clear,
                    None,
                    Vec::new(),
                );
            }
            Err(ScheduleError::Fit(mut e)) => {
                let pdbs = self.pdbs();
                let outcome =
                    preemption::preempt(cache, &state, &e.diagnosis, &pdbs, jiff::Timestamp::now(), rng);
                e.diagnosis.post_filter_msg = outcome.message();
                let rejectors = e.diagnosis.unschedulable_plugins;
                let (nomination, preempt, lower) = match outcome {
                    Outcome::Nominate(c) => {
                        cache.nominate(info.clone(), &c.node);
                        let lower: Vec<Arc<PodInfo>> = cache
                            .nominated_for(&c.node)
                            .iter()
                            .filter(|p| p.priority < info.priority)
                            .cloned()
                            .collect();
                        for p in &lower {
                            cache.remove_nominated(&p.key);
                        }
                        (Nomination::Set(c.node.clone()), Some(c), lower)
                    }
                    Outcome::NoCandidate(_) => {
                        cache.remove_nominated(&key);
                        let n = if info.nominated_node_name().is_empty() {
                            Nomination::Keep
                        } else {
                            Nomination::Clear
                        };
                        (n, None, Vec::new())
                    }
                    Outcome::NotEligible(_) => (Nomination::Keep, None, Vec::new()),
                };
                drop(st);
                self.stats.unschedulable.fetch_add(1, Ordering::Relaxed);
                self.queue.with(|q| q.add_unschedulable(&key, rejectors, now));
                self.spawn_failure(info, "Unschedulable", e.to_string(), nomination, preempt, lower);
            }
        }
    }

    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, fut: F) {
        spawn_tracked(&self.inflight, fut);
    }

    /// Waits until every spawned binding, status update and eviction has finished.
    pub async fn settle(&self) {
        loop {
            let idle = self.inflight.idle.notified();
            if self.inflight.n.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    fn spawn_bind(&self, info: Arc<PodInfo>, node: String) {
        let client = self.client.clone();
        let events = self.events.clone();
        let binds = self.binds.clone();
        let queue = self.queue.clone();
        let state = self.state.clone();
        let stats = self.stats.clone();
        self.spawn(async move {
            let Ok(_permit) = binds.acquire_owned().await else { return };
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(info.name.clone()),
                    namespace: Some(info.namespace.clone()),
                    uid: Some(info.uid.clone()).filter(|u| !u.is_empty()),
                    ..Default::default()
                },
                target: ObjectReference {
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..Default::default()
                },
            };
            let api: Api<Pod> = Api::namespaced(client.clone(), &info.namespace);
            match api
                .create_subresource::<_, Value>("binding", &info.name, &PostParams::default(), &binding)
                .await
            {
                Ok(_) => {
                    stats.scheduled.fetch_add(1, Ordering::Relaxed);
                    queue.with(|q| q.done(&info.key));
                    let msg = format!("Successfully assigned {} to {}", info.key, node);
                    events.emit(&info.pod, EventType::Normal, "Scheduled", &msg);
                }
                Err(e) => {
                    stats.bind_errors.fetch_add(1, Ordering::Relaxed);
                    state.lock().unwrap_or_else(|e| e.into_inner()).cache.forget(&info.key);
                    if api_code(&e) == Some(404) {
                        queue.with(|q| q.delete(&info.key));
                        return;
                    }
                    tracing::info!(pod = %info.key, %node, error = %e, "binding failed");
                    queue.with(|q| q.add_backoff(&info.key, Instant::now()));
                    let msg = format!("binding rejected: running Bind plugin \"DefaultBinder\": {e}");
                    report_failure(&client, &events, None, &info, "SchedulerError", &msg, &Nomination::Keep)
                        .await;
                }
            }
        });
    }

    fn spawn_failure(
        &self,
        info: Arc<PodInfo>,
        reason: &'static str,
        message: String,
        nomination: Nomination,
        preempt: Option<Candidate>,
        lower: Vec<Arc<PodInfo>>,
    ) {
        let client = self.client.clone();
        let events = self.events.clone();
        let scheduler_name = self.options.scheduler_name.clone();
        let dedup = self.dedup.clone();
        self.spawn(async move {
            if let Some(c) = &preempt {
                for victim in &c.victims {
                    evict(&client, &events, &scheduler_name, &info, victim, &c.node).await;
                }
                for p in &lower {
                    clear_nomination(&client, p).await;
                }
            }
            report_failure(&client, &events, Some(&dedup), &info, reason, &message, &nomination).await;
        });
    }
}

/// Aborts the scheduler's own tasks when it stops (leadership lost).
struct AbortAll(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn now_time() -> Value {
    serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()))
        .unwrap_or(Value::Null)
}

/// The FailedScheduling event and the PodScheduled=False condition (patched only when it
/// or the nomination changes, as upstream does).
async fn report_failure(
    client: &Client,
    events: &EventSink,
    dedup: Option<&EventDedup>,
    info: &PodInfo,
    reason: &str,
    message: &str,
    nomination: &Nomination,
) {
    let message = truncate(message);
    if dedup.is_none_or(|d| d.first_time(&info.uid, &message)) {
        events.emit(&info.pod, EventType::Warning, "FailedScheduling", &message);
    }
    let current = info
        .pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let same = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message.as_str())
    });
    let nominated = info.nominated_node_name();
    let nnn = match nomination {
        Nomination::Set(n) if n != nominated => Some(json!(n)),
        Nomination::Clear if !nominated.is_empty() => Some(Value::Null),
        _ => None,
    };
    if same && nnn.is_none() {
        return;
    }
    let transition = match current {
        Some(c) if c.status == "False" => c
            .last_transition_time
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .unwrap_or_else(now_time),
        _ => now_time(),
    };
    let mut status = json!({
        "conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": transition,
        }]
    });
    if let Some(n) = nnn {
        status["nominatedNodeName"] = n;
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), &info.namespace);
    match api
        .patch_status(&info.name, &PatchParams::default(), &Patch::Strategic(json!({ "status": status })))
        .await
    {
        Ok(_) => {}
        Err(e) if api_code(&e) == Some(404) => {}
        Err(e) => tracing::info!(pod = %info.key, error = %e, "updating the PodScheduled condition failed"),
    }
}

/// Evicts one preemption victim: marks it DisruptionTarget (PreemptionByScheduler),
/// deletes it, and records a Preempted event on it.
async fn evict(
    client: &Client,
    events: &EventSink,
    scheduler_name: &str,
    preemptor: &PodInfo,
    victim: &PodInfo,
    node: &str,
) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &victim.namespace);
    let has_condition = victim
        .pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "DisruptionTarget" && c.status == "True"));
    if !has_condition {
        let patch = json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": format!("{scheduler_name}: preempting to accommodate a higher priority pod"),
            "lastProbeTime": null,
            "lastTransitionTime": now_time(),
        }]}});
        match api.patch_status(&victim.name, &PatchParams::default(), &Patch::Strategic(patch)).await {
            Ok(_) => {}
            Err(e) if api_code(&e) == Some(404) => return,
            Err(e) => {
                tracing::warn!(victim = %victim.key, error = %e, "could not mark the preemption victim");
                return;
            }
        }
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(victim.uid.clone()).filter(|u| !u.is_empty()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&victim.name, &dp).await {
        Ok(_) => {}
        Err(e) if api_code(&e) == Some(404) => return,
        Err(e) => {
            tracing::warn!(victim = %victim.key, error = %e, "could not delete the preemption victim");
            return;
        }
    }
    let msg = format!("Preempted by pod {} on node {}", preemptor.uid, node);
    events.emit(&victim.pod, EventType::Normal, "Preempted", &msg);
}

/// Clears the nomination of a lower-priority pod that can no longer count on the node.
async fn clear_nomination(client: &Client, p: &PodInfo) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
    let patch = json!({"status": {"nominatedNodeName": null}});
    if let Err(e) = api.patch_status(&p.name, &PatchParams::default(), &Patch::Strategic(patch)).await
        && api_code(&e) != Some(404)
    {
        tracing::info!(pod = %p.key, error = %e, "clearing nominatedNodeName failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{bound, node_with_resources, pod_with_requests, taint, with_priority};
    use fakeapi::{Call, FakeApi};

    /// A scheduler over a fake API whose status patches answer with a pod.
    fn scheduler() -> (Arc<Scheduler>, FakeApi) {
        let api = FakeApi::new();
        api.on_prefix(
            "PATCH",
            "/api/v1/namespaces/",
            200,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}}),
        );
        let client = api.client();
        let informers = Informers::offline(client.clone());
        (Scheduler::new(client, informers, Options::default()), api)
    }

    fn events(calls: &[Call]) -> Vec<(String, String, String)> {
        calls
            .iter()
            .filter(|c| c.path.contains("/events"))
            .map(|c| {
                (
                    c.body["type"].as_str().unwrap_or("").to_string(),
                    c.body["reason"].as_str().unwrap_or("").to_string(),
                    c.body["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_pending_pod_is_bound_to_the_node_that_fits() {
        let (s, calls) = scheduler();
        s.on_node(Arc::new(node_with_resources("node-1", "1", "4Gi", "110")));
        s.on_node(Arc::new(node_with_resources("node-2", "4", "4Gi", "110")));
        s.on_pod(Arc::new(pod_with_requests("web-1", "2", "1Gi")));
        assert!(s.schedule_next());
        s.settle().await;
        let writes = calls.writes();
        let binding = writes.iter().find(|c| c.path.contains("/binding")).expect("a binding");
        assert_eq!(binding.method, "POST");
        assert!(binding.path.starts_with("/api/v1/namespaces/default/pods/web-1/binding"));
        assert_eq!(binding.body["kind"], "Binding");
        assert_eq!(binding.body["metadata"]["name"], "web-1");
        assert_eq!(binding.body["metadata"]["uid"], "uid-default-web-1");
        assert_eq!(binding.body["target"]["kind"], "Node");
        assert_eq!(binding.body["target"]["name"], "node-2");
        assert_eq!(
            events(&writes),
            vec![(
                "Normal".into(),
                "Scheduled".into(),
                "Successfully assigned default/web-1 to node-2".into()
            )]
        );
        let ev = writes.iter().find(|c| c.path.contains("/events")).unwrap();
        assert_eq!(ev.body["source"]["component"], "default-scheduler");
        assert_eq!(ev.body["involvedObject"]["name"], "web-1");
        assert!(!s.schedule_next(), "the queue is empty");
    }

    #[tokio::test]
    async fn an_unschedulable_pod_gets_the_condition_and_a_failed_scheduling_event() {
        let (s, calls) = scheduler();
        s.on_node(Arc::new(node_with_resources("node-1", "2", "4Gi", "110")));
        s.on_pod(Arc::new(bound(pod_with_requests("db-0", "1", ""), "node-1")));
        for name in ["node-2", "node-3"] {
            let mut n = node_with_resources(name, "8", "4Gi", "110");
            n.spec.get_or_insert_with(Default::default).taints =
                Some(vec![taint("node-role.kubernetes.io/control-plane", "", "NoSchedule")]);
            s.on_node(Arc::new(n));
        }
        s.on_pod(Arc::new(pod_with_requests("web-1", "2", "")));
        assert!(s.schedule_next());
        s.settle().await;
        let writes = calls.writes();
        let msg = "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint \
                   {node-role.kubernetes.io/control-plane: }. preemption: 0/3 nodes are available: \
                   1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.";
        assert_eq!(events(&writes), vec![("Warning".into(), "FailedScheduling".into(), msg.into())]);
        let patch = writes.iter().find(|c| c.path.contains("/status")).expect("a status patch");
        assert_eq!(patch.method, "PATCH");
        assert!(patch.path.starts_with("/api/v1/namespaces/default/pods/web-1/status"));
        assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
        let cond = &patch.body["status"]["conditions"][0];
        assert_eq!(cond["type"], "PodScheduled");
        assert_eq!(cond["status"], "False");
        assert_eq!(cond["reason"], "Unschedulable");
        assert_eq!(cond["message"], msg);
        assert!(patch.body["status"].get("nominatedNodeName").is_none());
        assert!(!writes.iter().any(|c| c.path.contains("/binding")));
        // It waits in the unschedulable set until the cluster changes.
        assert_eq!(s.queue.with(|q| q.counts()), (0, 0, 1, 0));
        s.on_node(Arc::new(node_with_resources("node-4", "4", "4Gi", "110")));
        assert_eq!(s.queue.with(|q| q.counts()), (0, 1, 0, 0));
    }

    #[tokio::test]
    async fn the_condition_is_not_patched_again_when_nothing_changed() {
        let (s, calls) = scheduler();
        s.on_node(Arc::new(node_with_resources("node-1", "1", "4Gi", "110")));
        let mut p = pod_with_requests("web-1", "2", "");
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some(
                    "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: \
                     1 Preemption is not helpful for scheduling."
                        .into(),
                ),
                ..Default::default()
            }]),
            ..Default::default()
        });
        s.on_pod(Arc::new(p));
        s.schedule_next();
        s.settle().await;
        let writes = calls.writes();
        assert_eq!(events(&writes).len(), 1);
        assert!(!writes.iter().any(|c| c.path.contains("/status")));
    }

    #[tokio::test]
    async fn a_pod_failing_the_same_way_again_records_no_new_event() {
        let (s, calls) = scheduler();
        s.on_node(Arc::new(node_with_resources("node-1", "1", "4Gi", "110")));
        s.on_pod(Arc::new(pod_with_requests("web-1", "2", "")));
        assert!(s.schedule_next());
        s.settle().await;
        // A new node that does not help either: the pod is retried after its backoff.
        s.on_node(Arc::new(node_with_resources("node-2", "1", "4Gi", "110")));
        s.queue.with(|q| q.flush_backoff(Instant::now() + std::time::Duration::from_secs(11)));
        assert!(s.schedule_next());
        s.settle().await;
        let failed: Vec<_> =
            events(&calls.writes()).into_iter().filter(|e| e.1 == "FailedScheduling").collect();
        assert_eq!(failed.len(), 2, "the message changed (2 nodes now): {failed:?}");
        s.on_node(Arc::new(node_with_resources("node-2", "1", "8Gi", "110")));
        s.queue.with(|q| q.flush_unschedulable(Instant::now() + std::time::Duration::from_secs(600)));
        s.queue.with(|q| q.flush_backoff(Instant::now() + std::time::Duration::from_secs(600)));
        assert!(s.schedule_next());
        s.settle().await;
        let failed = events(&calls.writes()).into_iter().filter(|e| e.1 == "FailedScheduling").count();
        assert_eq!(failed, 2, "same message, no new event");
    }

    #[tokio::test]
    async fn a_burst_of_pods_does_not_oversubscribe_a_node() {
        let (s, calls) = scheduler();
        s.on_node(Arc::new(node_with_resources("node-1", "2", "4Gi", "110")));
        for i in 0..3 {
            s.on_pod(Arc::new(pod_with_requests(&format!("web-{i}"), "1", "")));
        }
        while s.schedule_next() {}
        s.settle().await;
        let writes = calls.writes();
        assert_eq!(writes.iter().filter(|c| c.path.contains("/binding")).count(), 2);
        let failed: Vec<_> = events(&writes).into_iter().filter(|e| e.1 == "FailedScheduling").collect();
        assert_eq!(failed.len(), 1);
        assert!(failed[0].2.starts_with("0/1 nodes are available: 1 Insufficient cpu."), "{}", failed[0].2);
    }

    #[tokio::test]
    async fn preemption_evicts_lower_priority_pods_and_nominates_the_node() {
        let (s, calls) = scheduler();
        s.on_node(Arc::new(node_with_resources("node-1", "2", "4Gi", "110")));
        s.on_pod(Arc::new(with_priority(bound(pod_with_requests("batch-1", "2", ""), "node-1"), 0)));
        s.on_pod(Arc::new(with_priority(pod_with_requests("web-1", "1", ""), 1000)));
        assert!(s.schedule_next());
        s.settle().await;
        let writes = calls.writes();
        let victim_patch =
            writes.iter().find(|c| c.path.contains("/pods/batch-1/status")).expect("victim marked");
        let cond = &victim_patch.body["status"]["conditions"][0];
        assert_eq!(cond["type"], "DisruptionTarget");
        assert_eq!(cond["reason"], "PreemptionByScheduler");
        assert_eq!(cond["message"], "default-scheduler: preempting to accommodate a higher priority pod");
        let delete = writes.iter().find(|c| c.method == "DELETE").expect("victim deleted");
        assert!(delete.path.starts_with("/api/v1/namespaces/default/pods/batch-1"));
        assert_eq!(delete.body["preconditions"]["uid"], "uid-default-batch-1");
        let evs = events(&writes);
        assert!(evs.contains(&(
            "Normal".into(),
            "Preempted".into(),
            "Preempted by pod uid-default-web-1 on node node-1".into()
        )));
        assert!(evs.contains(&(
            "Warning".into(),
            "FailedScheduling".into(),
            "0/1 nodes are available: 1 Insufficient cpu.".into()
        )));
        let own = writes.iter().find(|c| c.path.contains("/pods/web-1/status")).expect("preemptor patched");
        assert_eq!(own.body["status"]["nominatedNodeName"], "node-1");
        // The victim's deletion retries the preemptor (after its backoff).
        s.on_pod_deleted("default/batch-1");
        assert_eq!(s.queue.with(|q| q.counts()), (0, 1, 0, 0));
    }

    #[tokio::test]
    async fn pods_for_other_schedulers_and_bound_pods_are_not_queued() {
        let (s, calls) = scheduler();
        s.on_node(Arc::new(node_with_resources("node-1", "2", "4Gi", "110")));
        let mut other = pod_with_requests("x", "1", "");
        other.spec.as_mut().unwrap().scheduler_name = Some("my-scheduler".into());
        s.on_pod(Arc::new(other));
        s.on_pod(Arc::new(bound(pod_with_requests("y", "1", ""), "node-1")));
        assert!(!s.schedule_next());
        s.settle().await;
        assert!(calls.writes().is_empty());
        assert_eq!(s.lock().cache.node("node-1").unwrap().requested.milli_cpu, 1000);
    }

    #[tokio::test]
    async fn a_failed_binding_forgets_the_assumed_pod() {
        // A client whose every request fails with a server error.
        let api = FakeApi::new();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            api.fail(method, "/", 500, "InternalError", "boom");
        }
        let client = api.client();
        let s = Scheduler::new(client.clone(), Informers::offline(client), Options::default());
        s.on_node(Arc::new(node_with_resources("node-1", "2", "4Gi", "110")));
        s.on_pod(Arc::new(pod_with_requests("web-1", "1", "")));
        assert!(s.schedule_next());
        s.settle().await;
        assert_eq!(s.lock().cache.node("node-1").unwrap().requested.milli_cpu, 0);
        assert_eq!(s.queue.with(|q| q.counts()), (0, 1, 0, 0));
    }
}
