//! One worker per pod, doing what the kubelet's pod worker and `SyncPod` do, level
//! triggered: each sync reads what the runtime has for the pod, computes the actions
//! that bring it to the pod's spec (the kubelet's `computePodActions`: a new sandbox
//! when there is none or it died, the next init container, sidecars kept running, app
//! containers started or restarted as the restart policy says, containers killed when a
//! liveness or startup probe failed or their definition changed, the whole pod stopped
//! once nothing more will run), carries them out (with CrashLoopBackOff and
//! ImagePullBackOff back-offs), and writes the pod's status when it changed.
//!
//! A pod being deleted is stopped within its grace period (preStop hooks, then SIGTERM,
//! then SIGKILL), its final status written, its volumes torn down, its sandbox removed,
//! and the pod object deleted with grace period 0, as the kubelet does. A pod that
//! vanished from the API (forced deletion) is stopped and removed at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cri::api::ContainerState;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use super::containers::{self, container_hash};
use super::events::EventType;
use super::fieldpath::Addresses;
use super::lifecycle::{self, KillReason};
use super::probes::{ProbeKind, ProbeResult};
use super::runtime_pod::{self, RuntimePod};
use super::sandbox::{self, SandboxParams};
use super::status::{self, Reasons, is_sidecar, restart_policy, should_restart};
use super::volumes::{self, HostVolume};
use super::{Error, Shared, StartError, format_pod, go_duration, grpc_message};

/// How often a pod is synced when nothing wakes its worker sooner.
pub const RESYNC: Duration = Duration::from_secs(10);
/// How often API data volumes (ConfigMaps, Secrets, downward API) are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(60);
/// How soon a failed sync is retried.
const RETRY: Duration = Duration::from_secs(2);

/// A container to stop, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct KillInfo {
    pub id: String,
    pub name: String,
    pub message: Option<String>,
    pub reason: KillReason,
}

/// What a sync must do (the kubelet's `podActions`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Actions {
    pub kill_pod: bool,
    pub create_sandbox: bool,
    /// The current (or dying) sandbox.
    pub sandbox_id: String,
    /// The attempt number of the sandbox to create.
    pub attempt: u32,
    /// Init containers to start, by index, in order.
    pub init_to_start: Vec<usize>,
    /// App containers to start, by index.
    pub to_start: Vec<usize>,
    pub to_kill: Vec<KillInfo>,
}

/// Whether the pod needs a new sandbox: none, several ready, the newest not ready, or
/// no IP for a pod on the pod network. Returns (needed, attempt, current id).
pub fn sandbox_changed(pod: &Pod, rt: &RuntimePod) -> (bool, u32, String) {
    let Some(latest) = rt.sandboxes.first() else { return (true, 0, String::new()) };
    let ready = rt.sandboxes.iter().filter(|s| s.ready).count();
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    if ready > 1 || !latest.ready || (!host_network && latest.ip.is_empty()) {
        return (true, latest.attempt + 1, latest.id.clone());
    }
    (false, latest.attempt, latest.id.clone())
}

type ProbeLookup<'a> = &'a dyn Fn(&str, ProbeKind) -> Option<ProbeResult>;

fn hash_changed(c: &Container, latest: &runtime_pod::Container) -> bool {
    !latest.hash.is_empty() && latest.hash != container_hash(c)
}

/// The kubelet's `computeInitContainerActions`; returns whether the pod is initialized.
fn init_actions(pod: &Pod, rt: &RuntimePod, probe: ProbeLookup<'_>, a: &mut Actions) -> bool {
    let spec = pod.spec.clone().unwrap_or_default();
    let inits = spec.init_containers.clone().unwrap_or_default();
    if inits.is_empty() {
        return true;
    }
    let mut initialized = spec.containers.iter().any(|c| {
        rt.latest(&c.name).is_some_and(|l| {
            matches!(l.state, ContainerState::ContainerCreated | ContainerState::ContainerRunning)
        })
    });
    let mut previously = initialized;
    let restart_on_failure = restart_policy(pod) != "Never";
    let last = inits.len() - 1;
    for i in (0..inits.len()).rev() {
        let c = &inits[i];
        let sidecar = is_sidecar(c);
        let Some(status) = rt.latest(&c.name) else {
            if previously && sidecar {
                a.init_to_start.push(i);
            }
            continue;
        };
        if previously && !sidecar {
            continue;
        }
        match status.state {
            ContainerState::ContainerCreated => a.init_to_start.push(i),
            ContainerState::ContainerRunning if sidecar => 'sidecar: {
                if c.startup_probe.is_some() {
                    match probe(&status.id, ProbeKind::Startup) {
                        None => break 'sidecar,
                        Some(ProbeResult::Failure) => {
                            a.to_kill.push(KillInfo {
                                id: status.id.clone(),
                                name: c.name.clone(),
                                message: Some(format!("Init container {} failed startup probe", c.name)),
                                reason: KillReason::StartupProbe,
                            });
                            a.init_to_start.push(i);
                            break 'sidecar;
                        }
                        Some(ProbeResult::Success) => {}
                    }
                }
                if i == last {
                    initialized = true;
                } else if !previously {
                    a.init_to_start.push(i + 1);
                }
                if hash_changed(c, status) {
                    a.to_kill.push(KillInfo {
                        id: status.id.clone(),
                        name: c.name.clone(),
                        message: Some(format!("Init container {} definition changed", c.name)),
                        reason: KillReason::Unknown,
                    });
                    a.init_to_start.push(i);
                    break 'sidecar;
                }
                if c.liveness_probe.is_some()
                    && probe(&status.id, ProbeKind::Liveness) == Some(ProbeResult::Failure)
                {
                    a.to_kill.push(KillInfo {
                        id: status.id.clone(),
                        name: c.name.clone(),
                        message: Some(format!("Init container {} failed liveness probe", c.name)),
                        reason: KillReason::LivenessProbe,
                    });
                    a.init_to_start.push(i);
                }
            }
            ContainerState::ContainerRunning => {}
            ContainerState::ContainerExited => {
                if sidecar {
                    a.init_to_start.push(i);
                } else if status.exit_code != 0 {
                    if !restart_on_failure {
                        a.kill_pod = true;
                        a.init_to_start.clear();
                        return false;
                    }
                    a.init_to_start.push(i);
                } else if i == last {
                    initialized = true;
                } else {
                    a.init_to_start.push(i + 1);
                }
            }
            ContainerState::ContainerUnknown => {
                if !sidecar && !restart_on_failure {
                    a.kill_pod = true;
                    a.init_to_start.clear();
                    return false;
                }
                a.to_kill.push(KillInfo {
                    id: status.id.clone(),
                    name: c.name.clone(),
                    message: Some(
                        "Init container is in \"unknown\" state, try killing it before restart".into(),
                    ),
                    reason: KillReason::Unknown,
                });
                a.init_to_start.push(i);
            }
        }
        previously = true;
    }
    if !previously {
        a.init_to_start.push(0);
    }
    a.init_to_start.reverse();
    a.init_to_start.dedup();
    initialized
}

/// The kubelet's `computePodActions`.
pub fn compute_actions(pod: &Pod, rt: &RuntimePod, probe: ProbeLookup<'_>) -> Actions {
    let spec = pod.spec.clone().unwrap_or_default();
    let (create, attempt, sandbox_id) = sandbox_changed(pod, rt);
    let mut a =
        Actions { kill_pod: create, create_sandbox: create, sandbox_id, attempt, ..Default::default() };
    let policy = restart_policy(pod).to_owned();
    let restart_on_failure = policy != "Never";
    let has_sidecars = spec.init_containers.iter().flatten().any(is_sidecar);
    if create {
        if !restart_on_failure && attempt != 0 && !rt.containers.is_empty() {
            a.create_sandbox = false;
            return a;
        }
        let succeeded = |c: &Container| rt.latest(&c.name).is_some_and(|l| l.exited() && l.exit_code == 0);
        let to_start: Vec<usize> = spec
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| !(policy == "OnFailure" && succeeded(c)))
            .map(|(i, _)| i)
            .collect();
        if to_start.is_empty() {
            let initialized = if has_sidecars {
                spec.containers.iter().any(|c| rt.latest(&c.name).is_some())
            } else {
                let inits = spec.init_containers.clone().unwrap_or_default();
                inits
                    .last()
                    .is_none_or(|c| rt.latest(&c.name).is_some_and(|l| l.exited() && l.exit_code == 0))
            };
            if initialized {
                a.create_sandbox = false;
                return a;
            }
        }
        if spec.init_containers.as_ref().is_some_and(|i| !i.is_empty()) {
            a.init_to_start = vec![0];
            return a;
        }
        a.to_start = to_start;
        return a;
    }
    let initialized = init_actions(pod, rt, probe, &mut a);
    if a.kill_pod || !initialized {
        return a;
    }
    let mut keep = 0;
    for (idx, c) in spec.containers.iter().enumerate() {
        let latest = rt.latest(&c.name);
        match latest {
            Some(l) if l.running() => {
                let mut restart = restart_on_failure;
                let (message, reason) = if hash_changed(c, l) {
                    restart = true;
                    (format!("Container {} definition changed", c.name), KillReason::Unknown)
                } else if probe(&l.id, ProbeKind::Liveness) == Some(ProbeResult::Failure) {
                    (format!("Container {} failed liveness probe", c.name), KillReason::LivenessProbe)
                } else if probe(&l.id, ProbeKind::Startup) == Some(ProbeResult::Failure) {
                    (format!("Container {} failed startup probe", c.name), KillReason::StartupProbe)
                } else {
                    keep += 1;
                    continue;
                };
                let message = if restart {
                    a.to_start.push(idx);
                    format!("{message}, will be restarted")
                } else {
                    message
                };
                a.to_kill.push(KillInfo {
                    id: l.id.clone(),
                    name: c.name.clone(),
                    message: Some(message),
                    reason,
                });
            }
            _ => {
                if should_restart(pod, c, rt, false) {
                    a.to_start.push(idx);
                    if let Some(l) = latest
                        && l.state == ContainerState::ContainerUnknown
                    {
                        a.to_kill.push(KillInfo {
                            id: l.id.clone(),
                            name: c.name.clone(),
                            message: Some(format!(
                                "Container is in {:?} state, try killing it before restart",
                                "unknown"
                            )),
                            reason: KillReason::Unknown,
                        });
                    }
                }
            }
        }
    }
    if keep == 0 && a.to_start.is_empty() {
        a.kill_pod = true;
        a.init_to_start.clear();
    }
    a
}

/// The key the kubelet keeps a container's restart back-off under.
fn backoff_key(pod: &Pod, c: &Container) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}_{}_{}_{}",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default(),
        c.name,
        container_hash(c)
    )
}

fn nanos_to_ts(n: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(n)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The restart count of a container that has no instance left in the runtime: one more
/// than the highest `<n>.log` in its log directory, as the kubelet counts.
fn restart_count_from_logs(dir: &std::path::Path) -> i32 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.split('.').next()?.parse::<i32>().ok()?;
            name.contains(".log").then_some(n + 1)
        })
        .max()
        .unwrap_or(0)
}

/// The state of one pod's worker.
pub struct PodWorker {
    shared: Arc<Shared>,
    uid: String,
    wake: Arc<Notify>,
    reasons: Reasons,
    volumes: Option<HashMap<String, HostVolume>>,
    volumes_at: Option<Timestamp>,
    last_status: Option<Value>,
    start_time: Option<Timestamp>,
    /// Nothing of the pod runs any more and nothing will be started.
    terminal: bool,
    /// The pod was stopped, cleaned up and deleted from the API.
    finished: bool,
}

impl PodWorker {
    /// A worker for the pod `uid`; `wake` makes its task sync again.
    pub fn new(shared: Arc<Shared>, uid: &str, wake: Arc<Notify>) -> Self {
        Self {
            shared,
            uid: uid.to_owned(),
            wake,
            reasons: Reasons::new(),
            volumes: None,
            volumes_at: None,
            last_status: None,
            start_time: None,
            terminal: false,
            finished: false,
        }
    }

    fn pod_dir(&self) -> PathBuf {
        volumes::pod_dir(&self.shared.config.root_dir, &self.uid)
    }

    fn host_ips(&self) -> Vec<String> {
        self.shared.config.node_ip.iter().cloned().collect()
    }

    async fn inspect(&self) -> Result<RuntimePod, Error> {
        Ok(runtime_pod::inspect(self.shared.runtime.as_ref(), &self.uid).await?)
    }

    fn probe_lookup(&self) -> impl Fn(&str, ProbeKind) -> Option<ProbeResult> + '_ {
        |id: &str, kind: ProbeKind| self.shared.probes.result(id, kind)
    }

    /// One sync of a pod that is not being deleted. Returns when to sync again at the
    /// latest.
    pub async fn sync(&mut self, pod: &Arc<Pod>) -> Result<Duration, Error> {
        let now = self.shared.clock.now();
        self.start_time.get_or_insert(now);
        let api_phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if self.terminal || matches!(api_phase.as_str(), "Succeeded" | "Failed") {
            // A finished pod runs nothing; make sure nothing of it is left running.
            let rt = self.inspect().await?;
            if rt.running().next().is_some() || rt.sandboxes.iter().any(|s| s.ready) {
                lifecycle::kill_pod(&self.shared, pod, &rt, None).await?;
            }
            self.shared.probes.remove_pod(&self.uid);
            if self.terminal && self.last_status.is_some() {
                let rt = self.inspect().await?;
                self.write_status(pod, &rt, true).await?;
            }
            self.terminal = true;
            return Ok(RESYNC * 6);
        }

        let rt = self.inspect().await?;
        let pod_ip = rt.ready_sandbox().map(|s| s.ip.clone()).unwrap_or_default();
        let addresses = Addresses {
            host_ips: self.host_ips(),
            pod_ips: if pod_ip.is_empty() { vec![] } else { vec![pod_ip.clone()] },
        };
        if let Err(e) = self.ensure_volumes(pod, &addresses).await {
            self.shared.recorder.pod(pod, None, EventType::Warning, "FailedMount", &e.event_message()).await;
            self.write_status(pod, &rt, false).await?;
            return Ok(RETRY * 2);
        }

        let probe = self.probe_lookup();
        let actions = compute_actions(pod, &rt, &probe);
        drop(probe);
        let changed = self.execute(pod, &rt, &actions).await;
        let rt = if changed { self.inspect().await? } else { rt };
        let pod_ip = rt.ready_sandbox().map(|s| s.ip.clone()).unwrap_or_default();
        self.shared.probes.sync_pod(&self.shared, pod, &rt, &pod_ip, &self.wake);

        let written = self.write_status(pod, &rt, false).await?;
        let phase = written
            .as_ref()
            .and_then(|s| s.get("phase"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if matches!(phase.as_str(), "Succeeded" | "Failed") {
            // Done: stop what is left (sidecars, the sandbox) and write the final status.
            self.terminal = true;
            lifecycle::kill_pod(&self.shared, pod, &rt, None).await?;
            self.shared.probes.remove_pod(&self.uid);
            let rt = self.inspect().await?;
            self.write_status(pod, &rt, true).await?;
            return Ok(RESYNC * 6);
        }
        Ok(self.next_wake(pod, &rt))
    }

    /// When a back-off of one of the pod's containers (or images) ends, capped at the
    /// resync interval.
    fn next_wake(&self, pod: &Pod, rt: &RuntimePod) -> Duration {
        let now = self.shared.clock.now();
        let mut next = RESYNC;
        let spec = pod.spec.clone().unwrap_or_default();
        let backoff = self.shared.restart_backoff();
        for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            if let Some(l) = rt.latest(&c.name).filter(|l| l.exited())
                && let Some(left) = backoff.remaining(&backoff_key(pod, c), nanos_to_ts(l.finished_at), now)
            {
                next = next.min(left + Duration::from_millis(50));
            }
        }
        drop(backoff);
        if self.reasons.values().any(|(r, _)| r == "ImagePullBackOff" || r == "ErrImagePull") {
            next = next.min(Duration::from_secs(2));
        }
        next.max(Duration::from_millis(100))
    }

    async fn ensure_volumes(&mut self, pod: &Pod, addresses: &Addresses) -> Result<(), volumes::VolumeError> {
        let now = self.shared.clock.now();
        let fresh = self.volumes_at.is_some_and(|at| {
            now.duration_since(at) < jiff::SignedDuration::try_from(VOLUME_REFRESH).unwrap_or_default()
        });
        if self.volumes.is_some() && fresh {
            return Ok(());
        }
        let dir = self.pod_dir();
        let make = dir.clone();
        let _ = tokio::task::spawn_blocking(move || std::fs::create_dir_all(make)).await;
        let vols = volumes::setup(&self.shared, pod, addresses).await?;
        self.volumes = Some(vols);
        self.volumes_at = Some(now);
        Ok(())
    }

    /// Carries out `actions`; returns whether the runtime state may have changed.
    async fn execute(&mut self, pod: &Arc<Pod>, rt: &RuntimePod, a: &Actions) -> bool {
        let mut changed = false;
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_ip = rt.ready_sandbox().map(|s| s.ip.clone()).unwrap_or_default();
        if a.kill_pod {
            changed |= rt.running().next().is_some() || rt.sandboxes.iter().any(|s| s.ready);
            if let Err(e) = lifecycle::kill_pod(&self.shared, pod, rt, None).await {
                tracing::warn!(pod = %format_pod(pod), error = %e, "stopping the pod failed");
                self.shared
                    .recorder
                    .pod(
                        pod,
                        None,
                        EventType::Warning,
                        "FailedKillPod",
                        &format!("error killing pod: {}", grpc_message(&e)),
                    )
                    .await;
                return true;
            }
            if a.create_sandbox {
                // Containers of the dead sandbox go with it.
                for c in &rt.containers {
                    let _ = self.shared.runtime.remove_container(&c.id).await;
                }
            }
        } else {
            for k in &a.to_kill {
                changed = true;
                let c = super::fieldpath::find_container(pod, &k.name);
                if let Err(e) = lifecycle::kill_container(
                    &self.shared,
                    pod,
                    c,
                    &k.id,
                    &k.name,
                    k.message.clone(),
                    k.reason,
                    None,
                    &pod_ip,
                )
                .await
                {
                    tracing::warn!(pod = %format_pod(pod), container = %k.name, error = %e, "stopping a container failed");
                }
            }
        }
        if a.kill_pod && !a.create_sandbox {
            return changed;
        }
        self.prune_init_containers(pod, rt).await;

        let mut sandbox_id = rt.ready_sandbox().map(|s| s.id.clone()).unwrap_or_default();
        let mut pod_ip = pod_ip;
        let mut attempt = rt.sandboxes.first().map(|s| s.attempt).unwrap_or(0);
        if a.create_sandbox {
            changed = true;
            if !a.sandbox_id.is_empty() {
                self.shared
                    .recorder
                    .pod(
                        pod,
                        None,
                        EventType::Normal,
                        "SandboxChanged",
                        "Pod sandbox changed, it will be killed and re-created.",
                    )
                    .await;
            }
            attempt = a.attempt;
            let config = self.sandbox_config(pod, attempt, true).await;
            let logs = PathBuf::from(&config.log_directory);
            let _ = tokio::task::spawn_blocking(move || std::fs::create_dir_all(logs)).await;
            match self.shared.runtime.run_pod_sandbox(config, &self.runtime_handler(pod)).await {
                Ok(id) => {
                    sandbox_id = id;
                    match self.shared.runtime.pod_sandbox_status(&sandbox_id, false).await {
                        Ok(s) => pod_ip = s.status.and_then(|s| s.network).map(|n| n.ip).unwrap_or_default(),
                        Err(e) => {
                            tracing::warn!(pod = %format_pod(pod), error = %e, "reading the new sandbox's status failed")
                        }
                    }
                }
                Err(e) => {
                    let msg = format!("Failed to create pod sandbox: {}", grpc_message(&e));
                    self.shared
                        .recorder
                        .pod(pod, None, EventType::Warning, "FailedCreatePodSandBox", &msg)
                        .await;
                    return true;
                }
            }
        }
        if sandbox_id.is_empty() {
            return changed;
        }
        self.write_hosts_file(pod, &pod_ip).await;
        let sandbox_config = self.sandbox_config(pod, attempt, false).await;
        let addresses = Addresses {
            host_ips: self.host_ips(),
            pod_ips: if pod_ip.is_empty() { vec![] } else { vec![pod_ip.clone()] },
        };
        let start = StartContext {
            sandbox_id: &sandbox_id,
            sandbox_config: &sandbox_config,
            pod_ip: &pod_ip,
            addresses: &addresses,
        };
        let inits = spec.init_containers.clone().unwrap_or_default();
        for &idx in &a.init_to_start {
            let Some(c) = inits.get(idx) else { continue };
            changed = true;
            if self.start_container(pod, c, rt, &start).await.is_err() && !is_sidecar(c) {
                return changed;
            }
        }
        for &idx in &a.to_start {
            let Some(c) = spec.containers.get(idx) else { continue };
            changed = true;
            let _ = self.start_container(pod, c, rt, &start).await;
        }
        changed
    }

    /// Keeps only the newest exited instance of each init container.
    async fn prune_init_containers(&self, pod: &Pod, rt: &RuntimePod) {
        let inits = pod.spec.as_ref().and_then(|s| s.init_containers.clone()).unwrap_or_default();
        for c in inits {
            let exited: Vec<_> = rt.containers.iter().filter(|x| x.name == c.name && x.exited()).collect();
            for old in exited.iter().skip(1) {
                if let Err(e) = self.shared.runtime.remove_container(&old.id).await
                    && !e.is_not_found()
                {
                    tracing::debug!(container = %old.id, error = %e, "removing an old init container failed");
                }
            }
        }
    }

    fn runtime_handler(&self, pod: &Pod) -> String {
        // RuntimeClass handlers are not resolved yet: the runtime's default handler runs
        // every pod.
        let _ = pod;
        String::new()
    }

    /// The sandbox config for `attempt`; `creating` records the MissingClusterDNS
    /// warning the kubelet gives when the pod asks for cluster DNS the node lacks.
    async fn sandbox_config(&self, pod: &Pod, attempt: u32, creating: bool) -> cri::api::PodSandboxConfig {
        let cfg = &self.shared.config;
        let host = self.shared.host_dns.clone();
        let cluster =
            sandbox::ClusterDns { servers: cfg.cluster_dns.clone(), domain: cfg.cluster_domain.clone() };
        let dns = sandbox::dns_config(pod, &cluster, &host);
        if dns.missing_cluster_dns && creating {
            let msg = format!(
                "pod: \"{}\". kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.",
                format_pod(pod)
            );
            self.shared.recorder.pod(pod, None, EventType::Warning, "MissingClusterDNS", &msg).await;
        }
        let logs_root = cfg.root_dir.join("logs");
        sandbox::sandbox_config(
            pod,
            &SandboxParams {
                attempt,
                logs_root: &logs_root,
                cgroup_root: &cfg.cgroup_root,
                dns: dns.config,
                cluster_domain: &cfg.cluster_domain,
            },
        )
    }

    async fn write_hosts_file(&self, pod: &Pod, pod_ip: &str) {
        if pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false) {
            return;
        }
        let ips: Vec<String> = if pod_ip.is_empty() { vec![] } else { vec![pod_ip.to_owned()] };
        let text = sandbox::hosts_file(pod, &ips, &self.shared.config.cluster_domain);
        let path = self.pod_dir().join("etc-hosts");
        let _ = tokio::task::spawn_blocking(move || {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, text)?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
    }

    /// Starts one container: back-off check, image, config, create, start, postStart.
    /// A failure is remembered as the container's waiting reason.
    async fn start_container(
        &mut self,
        pod: &Arc<Pod>,
        c: &Container,
        rt: &RuntimePod,
        ctx: &StartContext<'_>,
    ) -> Result<(), ()> {
        match self.try_start(pod, c, rt, ctx).await {
            Ok(()) => {
                self.reasons.remove(&c.name);
                Ok(())
            }
            Err(e) => {
                tracing::debug!(pod = %format_pod(pod), container = %c.name, reason = %e.reason, message = %e.message, "container did not start");
                self.reasons.insert(c.name.clone(), (e.reason, e.message));
                Err(())
            }
        }
    }

    async fn try_start(
        &self,
        pod: &Arc<Pod>,
        c: &Container,
        rt: &RuntimePod,
        ctx: &StartContext<'_>,
    ) -> Result<(), StartError> {
        let shared = &self.shared;
        let name = c.name.as_str();
        let pod_name = format_pod(pod);
        let latest = rt.latest(name);
        // The newest exited instance (an older one when the newest was just killed by a
        // failed probe): its finish time is where the back-off counts from.
        if let Some(l) = rt.containers.iter().find(|x| x.name == name && x.exited()) {
            let key = backoff_key(pod, c);
            let now = shared.clock.now();
            let finished = nanos_to_ts(l.finished_at);
            let in_backoff = {
                let mut b = shared.restart_backoff();
                if b.is_in_backoff_since(&key, finished, now) {
                    Some(b.get(&key))
                } else {
                    b.next(&key, finished, now);
                    None
                }
            };
            if let Some(delay) = in_backoff {
                let msg = format!("Back-off restarting failed container {name} in pod {pod_name}");
                shared.recorder.pod(pod, Some(name), EventType::Warning, "BackOff", &msg).await;
                return Err(StartError::new(
                    "CrashLoopBackOff",
                    format!(
                        "back-off {} restarting failed container={name} pod={pod_name}",
                        go_duration(delay)
                    ),
                ));
            }
        }
        let image_ref = match super::images::ensure_image(shared, pod, c, ctx.sandbox_config).await {
            Ok(r) => r,
            Err(e) => {
                shared
                    .recorder
                    .pod(pod, Some(name), EventType::Warning, "Failed", &format!("Error: {}", e.reason))
                    .await;
                return Err(e);
            }
        };
        let restart_count = match latest {
            Some(l) => l.restart_count + 1,
            None => restart_count_from_logs(&PathBuf::from(&ctx.sandbox_config.log_directory).join(name)),
        };
        let volumes = self.volumes.clone().unwrap_or_default();
        let config = containers::generate(
            shared,
            pod,
            c,
            &image_ref,
            restart_count,
            ctx.addresses,
            &volumes,
            &self.pod_dir(),
        )
        .await;
        let config = match config {
            Ok(cfg) => cfg,
            Err(msg) => {
                shared
                    .recorder
                    .pod(pod, Some(name), EventType::Warning, "Failed", &format!("Error: {msg}"))
                    .await;
                return Err(StartError::new("CreateContainerConfigError", msg));
            }
        };
        let log_dir = PathBuf::from(&ctx.sandbox_config.log_directory).join(name);
        let _ = tokio::task::spawn_blocking(move || std::fs::create_dir_all(log_dir)).await;
        let id =
            match shared.runtime.create_container(ctx.sandbox_id, config, ctx.sandbox_config.clone()).await {
                Ok(id) => id,
                Err(e) => {
                    let msg = grpc_message(&e);
                    shared
                        .recorder
                        .pod(pod, Some(name), EventType::Warning, "Failed", &format!("Error: {msg}"))
                        .await;
                    return Err(StartError::new("CreateContainerError", msg));
                }
            };
        shared
            .recorder
            .pod(pod, Some(name), EventType::Normal, "Created", &format!("Created container: {name}"))
            .await;
        if let Err(e) = shared.runtime.start_container(&id).await {
            let msg = grpc_message(&e);
            shared
                .recorder
                .pod(pod, Some(name), EventType::Warning, "Failed", &format!("Error: {msg}"))
                .await;
            return Err(StartError::new("RunContainerError", msg));
        }
        shared
            .recorder
            .pod(pod, Some(name), EventType::Normal, "Started", &format!("Started container {name}"))
            .await;
        if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let result = lifecycle::run_hook(shared, pod, c, &id, hook, ctx.pod_ip, Duration::ZERO).await;
            if let Err(msg) = result {
                tracing::info!(pod = %pod_name, container = name, message = %msg, "postStart hook failed");
                shared
                    .recorder
                    .pod(pod, Some(name), EventType::Warning, "FailedPostStartHook", "PostStartHook failed")
                    .await;
                if let Err(e) = lifecycle::kill_container(
                    shared,
                    pod,
                    Some(c),
                    &id,
                    name,
                    Some("FailedPostStartHook".into()),
                    KillReason::FailedPostStartHook,
                    None,
                    ctx.pod_ip,
                )
                .await
                {
                    tracing::warn!(pod = %pod_name, container = name, error = %e, "stopping a container whose postStart failed");
                }
                return Err(StartError::new("PostStartHookError", msg));
            }
        }
        Ok(())
    }

    /// Computes the status and writes it when it differs from what was written last.
    /// Returns the status as written (or as it stands).
    async fn write_status(
        &mut self,
        pod: &Pod,
        rt: &RuntimePod,
        terminal: bool,
    ) -> Result<Option<Value>, Error> {
        let probe = self.probe_lookup();
        let host_ips = self.host_ips();
        let runtime_name = self.shared.runtime_name();
        let now = self.shared.clock.now();
        let generated = status::generate(&status::Inputs {
            pod,
            rt,
            reasons: &self.reasons,
            probe: &probe,
            runtime_name: &runtime_name,
            host_ips: &host_ips,
            start_time: self.start_time.unwrap_or(now),
            now,
            terminal,
        });
        drop(probe);
        let value = serde_json::to_value(&generated).unwrap_or(Value::Null);
        let current = pod.status.as_ref().and_then(|s| serde_json::to_value(s).ok());
        if self.last_status.as_ref() == Some(&value) || current.as_ref() == Some(&value) {
            self.last_status = Some(value.clone());
            return Ok(Some(value));
        }
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"uid": self.uid}, "status": value});
        match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => {
                self.last_status = Some(value.clone());
                Ok(Some(value))
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                // The pod is gone or was replaced; the watch brings the news.
                Ok(Some(value))
            }
            Err(e) => {
                Err(Error::Api { what: format!("updating the status of pod {}", format_pod(pod)), source: e })
            }
        }
    }

    /// One step of deleting a pod: stop everything within the grace period, write the
    /// final status, tear down volumes and the sandbox, and delete the pod object with
    /// grace period 0. `updates` brings newer versions of the pod while it stops: a
    /// shorter grace period (or the pod's removal) kills what still runs at once.
    pub async fn terminate(
        &mut self,
        pod: &Arc<Pod>,
        updates: &mut watch::Receiver<Option<Arc<Pod>>>,
    ) -> Result<(), Error> {
        if self.finished {
            return Ok(());
        }
        let rt = self.inspect().await?;
        let grace = pod.metadata.deletion_grace_period_seconds;
        let shared = self.shared.clone();
        let kill = lifecycle::kill_pod(&shared, pod, &rt, None);
        tokio::pin!(kill);
        let outcome = loop {
            tokio::select! {
                r = &mut kill => break r,
                changed = updates.changed() => {
                    let newer = if changed.is_ok() { updates.borrow().clone() } else { None };
                    let shorter = match &newer {
                        Some(p) => p.metadata.deletion_grace_period_seconds.unwrap_or(0) < grace.unwrap_or(i64::MAX),
                        None => true,
                    };
                    if shorter {
                        for c in rt.running() {
                            let _ = shared.runtime.stop_container(&c.id, Duration::ZERO).await;
                        }
                    }
                    if changed.is_err() {
                        // The dispatcher is gone (agent shutting down); finish the stop.
                        break kill.await;
                    }
                }
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(pod = %format_pod(pod), error = %e, "stopping a deleted pod failed");
        }
        self.terminal = true;
        self.shared.probes.remove_pod(&self.uid);
        let rt = self.inspect().await?;
        if rt.running().next().is_some() {
            return Err(Error::StillRunning { pod: format_pod(pod) });
        }
        self.write_status(pod, &rt, true).await?;
        self.remove_from_node(&rt).await?;
        let api: Api<Pod> = Api::namespaced(
            self.shared.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(self.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                return Err(Error::Api { what: format!("deleting pod {}", format_pod(pod)), source: e });
            }
        }
        self.finished = true;
        Ok(())
    }

    /// The pod vanished from the API (or was never known, for leftovers found in the
    /// runtime): stops what runs at once (`last` gives its grace period, else one
    /// second) and removes everything of it from the node.
    pub async fn remove(&mut self, last: Option<&Pod>) -> Result<(), Error> {
        let rt = self.inspect().await?;
        let grace =
            last.and_then(|p| p.metadata.deletion_grace_period_seconds).filter(|g| *g > 0).unwrap_or(1);
        for c in rt.running() {
            match last {
                Some(pod) => {
                    let spec = super::fieldpath::find_container(pod, &c.name);
                    let pod_ip = rt.ready_sandbox().map(|s| s.ip.clone()).unwrap_or_default();
                    let _ = lifecycle::kill_container(
                        &self.shared,
                        pod,
                        spec,
                        &c.id,
                        &c.name,
                        None,
                        KillReason::Unknown,
                        Some(grace),
                        &pod_ip,
                    )
                    .await;
                }
                None => {
                    if let Err(e) =
                        self.shared.runtime.stop_container(&c.id, Duration::from_secs(grace as u64)).await
                        && !e.is_not_found()
                    {
                        tracing::warn!(container = %c.id, error = %e, "stopping a leftover container failed");
                    }
                }
            }
        }
        self.shared.probes.remove_pod(&self.uid);
        let rt = self.inspect().await?;
        self.remove_from_node(&rt).await?;
        self.finished = true;
        Ok(())
    }

    /// Removes the pod's sandboxes and containers, volumes and cgroups.
    async fn remove_from_node(&self, rt: &RuntimePod) -> Result<(), Error> {
        for s in &rt.sandboxes {
            if s.ready {
                match self.shared.runtime.stop_pod_sandbox(&s.id).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
            match self.shared.runtime.remove_pod_sandbox(&s.id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Removing a sandbox removes its containers; what is left belonged to none.
        for c in rt.containers.iter().filter(|c| !rt.sandboxes.iter().any(|s| s.id == c.sandbox_id)) {
            match self.shared.runtime.remove_container(&c.id).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let dir = self.pod_dir();
        let cgroup = format!("pod{}", self.uid);
        let root = self.shared.config.cgroup_root.clone();
        let removed = tokio::task::spawn_blocking(move || {
            remove_pod_cgroups(&root, &cgroup);
            volumes::teardown(&dir)
        })
        .await;
        match removed {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                Err(Error::Io { what: "removing the pod directory", path: self.pod_dir(), source: e })
            }
            Err(e) => Err(Error::Io {
                what: "removing the pod directory",
                path: self.pod_dir(),
                source: std::io::Error::other(e),
            }),
        }
    }

    /// Whether the pod was stopped, cleaned up and deleted.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The last status this worker wrote.
    pub fn last_status(&self) -> Option<&Value> {
        self.last_status.as_ref()
    }

    /// The waiting reasons kept from the last start attempts.
    pub fn reasons(&self) -> &Reasons {
        &self.reasons
    }
}

/// Removes the pod's (empty) cgroup directories under `root` in every hierarchy.
fn remove_pod_cgroups(root: &str, pod_cgroup: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else { return };
    for h in hierarchies.flatten() {
        let base = h.path().join(root.trim_start_matches('/'));
        for qos in ["", "burstable", "besteffort"] {
            let dir = base.join(qos).join(pod_cgroup);
            if dir.is_dir() {
                // Fails, harmlessly, while something still uses it.
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }
}

struct StartContext<'a> {
    sandbox_id: &'a str,
    sandbox_config: &'a cri::api::PodSandboxConfig,
    pod_ip: &'a str,
    addresses: &'a Addresses,
}

/// Runs a pod's worker until the pod is gone: syncs on every update, wake-up (container
/// state change, probe result) or timer, terminates it when it is being deleted, and
/// removes it from the node when it leaves the API.
pub async fn run(mut worker: PodWorker, mut updates: watch::Receiver<Option<Arc<Pod>>>) {
    let mut last: Option<Arc<Pod>> = None;
    loop {
        let current = updates.borrow_and_update().clone();
        let delay = match current {
            None => {
                if let Err(e) = worker.remove(last.as_deref()).await {
                    tracing::warn!(pod = %worker.uid, error = %e, "removing a pod from the node failed; retrying");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                return;
            }
            Some(pod) => {
                last = Some(pod.clone());
                if pod.metadata.deletion_timestamp.is_some() {
                    match worker.terminate(&pod, &mut updates).await {
                        Ok(()) => RESYNC * 6,
                        Err(e) => {
                            tracing::warn!(pod = %format_pod(&pod), error = %e, "terminating the pod failed; retrying");
                            RETRY
                        }
                    }
                } else {
                    match worker.sync(&pod).await {
                        Ok(next) => next,
                        Err(e) => {
                            tracing::warn!(pod = %format_pod(&pod), error = %e, "syncing the pod failed; retrying");
                            RETRY
                        }
                    }
                }
            }
        };
        let wake = worker.wake.clone();
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    // The agent is shutting down; pods keep running.
                    return;
                }
            }
            _ = wake.notified() => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
#[path = "pod_worker_tests.rs"]
mod tests;
