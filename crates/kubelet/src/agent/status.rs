//! The pod status the node agent writes, computed as the kubelet's
//! `generateAPIPodStatus`: container statuses from the newest two instances of each
//! container (state and `lastState`, exit codes and reasons as the runtime reports them:
//! Completed, Error, OOMKilled), the reason a container waits (ContainerCreating,
//! PodInitializing, or the last start failure: CrashLoopBackOff, ErrImagePull,
//! ImagePullBackOff, CreateContainerConfigError, ...), `restartCount`, `started` and
//! `ready` from the probes; the phase from the containers and the restart policy; and
//! the PodReadyToStartContainers, Initialized, Ready, ContainersReady and PodScheduled
//! conditions, with transition times kept while a condition's status does not change.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus, VolumeMountStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::probes::{ProbeKind, ProbeResult};
use super::runtime_pod::{self, RuntimePod};

/// Why a container is not running, kept from the last attempt to start it (the
/// kubelet's reason cache): e.g. `("CrashLoopBackOff", "back-off 10s restarting ...")`.
pub type Reasons = HashMap<String, (String, String)>;

/// Everything the status is computed from.
pub struct Inputs<'a> {
    pub pod: &'a Pod,
    pub rt: &'a RuntimePod,
    pub reasons: &'a Reasons,
    pub probe: &'a dyn Fn(&str, ProbeKind) -> Option<ProbeResult>,
    /// `containerd`, for container ids (`containerd://<id>`).
    pub runtime_name: &'a str,
    pub host_ips: &'a [String],
    pub start_time: Timestamp,
    pub now: Timestamp,
    /// The pod will run nothing more (it completed, failed, or was deleted and its
    /// containers stopped): its phase becomes Succeeded or Failed.
    pub terminal: bool,
}

fn ts(nanos: i64) -> Time {
    Time(Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Whether `name` is an init container with `restartPolicy: Always` (a sidecar).
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's restart policy (default Always).
pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

/// Whether the container should be (re)started now, the kubelet's
/// `ShouldContainerBeRestarted`: never once the pod is being deleted; always when it
/// never ran or is stuck created; else as its restart policy says for the exit code.
pub fn should_restart(pod: &Pod, container: &Container, rt: &RuntimePod, sidecar: bool) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(latest) = rt.latest(&container.name) else { return true };
    use cri::api::ContainerState as S;
    match latest.state {
        S::ContainerRunning => false,
        S::ContainerCreated | S::ContainerUnknown => true,
        S::ContainerExited => {
            let policy = if sidecar { "Always" } else { restart_policy(pod) };
            match policy {
                "Never" => false,
                "OnFailure" => latest.exit_code != 0,
                _ => true,
            }
        }
    }
}

fn convert(c: &runtime_pod::Container, runtime_name: &str, old: Option<&ContainerStatus>) -> ContainerStatus {
    use cri::api::ContainerState as S;
    let cid = format!("{runtime_name}://{}", c.id);
    let state = match c.state {
        S::ContainerRunning => ContainerState {
            running: Some(ContainerStateRunning { started_at: Some(ts(c.started_at)) }),
            ..Default::default()
        },
        S::ContainerExited => ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: c.exit_code,
                reason: Some(c.reason.clone()).filter(|r| !r.is_empty()),
                message: Some(c.message.clone()).filter(|m| !m.is_empty()),
                started_at: (c.started_at > 0).then(|| ts(c.started_at)),
                finished_at: (c.finished_at > 0).then(|| ts(c.finished_at)),
                container_id: Some(cid.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        S::ContainerUnknown if old.and_then(|o| o.state.as_ref()).is_some_and(|s| s.running.is_some()) => {
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("ContainerStatusUnknown".into()),
                    message: Some("The container could not be located when the pod was terminated".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        _ => ContainerState { waiting: Some(ContainerStateWaiting::default()), ..Default::default() },
    };
    ContainerStatus {
        name: c.name.clone(),
        restart_count: c.restart_count,
        image: c.image.clone(),
        image_id: c.image_ref.clone(),
        container_id: Some(cid),
        state: Some(state),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<&str>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message: message.map(str::to_owned).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    }
}

fn volume_mount_status(c: &Container) -> Option<Vec<VolumeMountStatus>> {
    let mounts = c.volume_mounts.as_ref()?;
    if mounts.is_empty() {
        return None;
    }
    Some(
        mounts
            .iter()
            .map(|m| {
                let read_only = m.read_only.unwrap_or(false);
                VolumeMountStatus {
                    name: m.name.clone(),
                    mount_path: m.mount_path.clone(),
                    read_only: read_only.then_some(true),
                    recursive_read_only: read_only.then(|| "Disabled".to_owned()),
                }
            })
            .collect(),
    )
}

/// The kubelet's `convertToAPIContainerStatuses` for one list of containers.
fn container_statuses(
    inputs: &Inputs<'_>,
    containers: &[Container],
    old: &[ContainerStatus],
    is_init: bool,
) -> Vec<ContainerStatus> {
    let pod = inputs.pod;
    let rt = inputs.rt;
    let has_init = pod.spec.as_ref().and_then(|s| s.init_containers.as_ref()).is_some_and(|i| !i.is_empty());
    let default_reason = if has_init { "PodInitializing" } else { "ContainerCreating" };
    let old: HashMap<&str, &ContainerStatus> = old.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut out: Vec<ContainerStatus> = Vec::new();
    for c in containers {
        let old_status = old.get(c.name.as_str()).copied();
        let mut status = ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            state: Some(waiting(default_reason, None)),
            ..Default::default()
        };
        if let Some(o) = old_status {
            if o.state.as_ref().is_some_and(|s| s.terminated.is_some()) {
                status = o.clone();
            } else {
                status.restart_count = o.restart_count;
                status.last_state = o.last_state.clone();
            }
        }
        let instances: Vec<&runtime_pod::Container> =
            rt.containers.iter().filter(|x| x.name == c.name).take(2).collect();
        if let Some(latest) = instances.first() {
            status = convert(latest, inputs.runtime_name, old_status);
            if let Some(prev) = instances.get(1) {
                status.last_state = convert(prev, inputs.runtime_name, None).state;
            }
        }
        let sidecar = is_init && is_sidecar(c);
        let succeeded_init =
            is_init && !sidecar && instances.first().is_some_and(|l| l.exited() && l.exit_code == 0);
        if !succeeded_init
            && !inputs.terminal
            && should_restart(pod, c, rt, sidecar)
            && let Some((reason, message)) = inputs.reasons.get(&c.name)
        {
            if status.state.as_ref().is_some_and(|s| s.terminated.is_some()) {
                status.last_state = status.state.clone();
            }
            status.state = Some(waiting(reason, Some(message)));
        }
        status.volume_mounts = volume_mount_status(c);
        let running = status.state.as_ref().is_some_and(|s| s.running.is_some());
        let cid = instances.first().map(|l| l.id.clone()).unwrap_or_default();
        let started = running
            && match (inputs.probe)(&cid, ProbeKind::Startup) {
                Some(r) => r == ProbeResult::Success,
                None => c.startup_probe.is_none(),
            };
        status.started = Some(started);
        status.ready = if is_init && !sidecar {
            status.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code == 0)
        } else {
            started
                && match (inputs.probe)(&cid, ProbeKind::Readiness) {
                    Some(r) => r == ProbeResult::Success,
                    None => c.readiness_probe.is_none(),
                }
        };
        out.push(status);
    }
    if !is_init {
        out.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}

fn is_terminated(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.state.as_ref().and_then(|st| st.terminated.as_ref())
}

fn last_terminated(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.last_state.as_ref().and_then(|st| st.terminated.as_ref())
}

/// The kubelet's `getPhase`.
pub fn phase(
    pod: &Pod,
    init: &[ContainerStatus],
    regular: &[ContainerStatus],
    terminal: bool,
    initialized_before: bool,
) -> &'static str {
    let spec = pod.spec.clone().unwrap_or_default();
    let find = |list: &[ContainerStatus], name: &str| list.iter().find(|s| s.name == name).cloned();
    let (mut pending_init, mut pending_sidecars, mut failed_init) = (0, 0, 0);
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in spec.init_containers.iter().flatten() {
        let Some(s) = find(init, &c.name) else {
            if is_sidecar(c) {
                unknown += 1;
            } else {
                pending_init += 1;
            }
            continue;
        };
        let st = s.state.clone().unwrap_or_default();
        if is_sidecar(c) {
            if st.running.is_some() {
                if s.started != Some(true) {
                    pending_sidecars += 1;
                }
                running += 1;
            } else if st.terminated.is_some() {
            } else if st.waiting.is_some() {
                if last_terminated(&s).is_none() {
                    pending_sidecars += 1;
                    waiting += 1;
                }
            } else {
                pending_sidecars += 1;
                unknown += 1;
            }
            continue;
        }
        if st.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &st.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if st.waiting.is_some() {
            match last_terminated(&s) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    for c in &spec.containers {
        let Some(s) = find(regular, &c.name) else {
            unknown += 1;
            continue;
        };
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if st.waiting.is_some() {
            if last_terminated(&s).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecars > 0 && !initialized_before) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            return if stopped == succeeded { "Succeeded" } else { "Failed" };
        }
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: kind.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        ..Default::default()
    }
}

fn list(names: &[String]) -> String {
    format!("[{}]", names.join(" "))
}

fn initialized_condition(pod: &Pod, all: &[ContainerStatus], phase: &str) -> PodCondition {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut unknown = Vec::new();
    let mut incomplete = Vec::new();
    for c in spec.init_containers.iter().flatten() {
        let Some(s) = all.iter().find(|s| s.name == c.name) else {
            unknown.push(c.name.clone());
            continue;
        };
        if is_sidecar(c) {
            if s.started != Some(true) {
                incomplete.push(c.name.clone());
            }
            continue;
        }
        if is_terminated(s).is_none_or(|t| t.exit_code != 0) {
            incomplete.push(c.name.clone());
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("Initialized", true, Some("PodCompleted"), None);
    }
    let regular_started = spec.containers.iter().any(|c| {
        all.iter()
            .find(|s| s.name == c.name)
            .and_then(|s| s.state.as_ref())
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    });
    if regular_started {
        return condition("Initialized", true, None, None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!("containers with unknown status: {}", list(&unknown)));
    }
    if !incomplete.is_empty() {
        messages.push(format!("containers with incomplete status: {}", list(&incomplete)));
    }
    if messages.is_empty() {
        return condition("Initialized", true, None, None);
    }
    condition("Initialized", false, Some("ContainersNotInitialized"), Some(messages.join(", ")))
}

fn containers_ready_condition(pod: &Pod, all: &[ContainerStatus], phase: &str) -> PodCondition {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut unknown = Vec::new();
    let mut unready = Vec::new();
    let sidecars = spec.init_containers.iter().flatten().filter(|c| is_sidecar(c));
    for c in sidecars.chain(spec.containers.iter()) {
        match all.iter().find(|s| s.name == c.name) {
            Some(s) if !s.ready => unready.push(c.name.clone()),
            Some(_) => {}
            None => unknown.push(c.name.clone()),
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("ContainersReady", false, Some("PodCompleted"), None);
    }
    if phase == "Failed" {
        return condition("ContainersReady", false, Some("PodFailed"), None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!("containers with unknown status: {}", list(&unknown)));
    }
    if !unready.is_empty() {
        messages.push(format!("containers with unready status: {}", list(&unready)));
    }
    if messages.is_empty() {
        return condition("ContainersReady", true, None, None);
    }
    condition("ContainersReady", false, Some("ContainersNotReady"), Some(messages.join(", ")))
}

fn ready_condition(pod: &Pod, containers_ready: &PodCondition, conditions: &[PodCondition]) -> PodCondition {
    if containers_ready.status != "True" {
        return PodCondition { type_: "Ready".into(), ..containers_ready.clone() };
    }
    let mut messages = Vec::new();
    for gate in pod.spec.as_ref().and_then(|s| s.readiness_gates.clone()).unwrap_or_default() {
        match conditions.iter().find(|c| c.type_ == gate.condition_type) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate \"{}\" does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    if messages.is_empty() {
        condition("Ready", true, None, None)
    } else {
        condition("Ready", false, Some("ReadinessGatesNotReady"), Some(messages.join(", ")))
    }
}

/// Whether the pod has a usable sandbox (the PodReadyToStartContainers condition).
pub fn sandbox_usable(pod: &Pod, rt: &RuntimePod) -> bool {
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let ready: Vec<_> = rt.sandboxes.iter().filter(|s| s.ready).collect();
    ready.len() == 1
        && rt.sandboxes.first().is_some_and(|s| s.ready)
        && (host_network || !ready[0].ip.is_empty())
}

/// The kubelet-owned conditions.
const KUBELET_CONDITIONS: &[&str] =
    &["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"];

/// Computes the pod's status.
pub fn generate(inputs: &Inputs<'_>) -> PodStatus {
    let pod = inputs.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let init = container_statuses(
        inputs,
        &init_specs,
        old.init_container_statuses.as_deref().unwrap_or_default(),
        true,
    );
    let regular = container_statuses(
        inputs,
        &spec.containers,
        old.container_statuses.as_deref().unwrap_or_default(),
        false,
    );
    let initialized_before = spec.containers.iter().any(|c| inputs.rt.latest(&c.name).is_some());
    let mut phase = phase(pod, &init, &regular, inputs.terminal, initialized_before).to_owned();
    if let Some(old_phase) = old.phase.as_deref()
        && matches!(old_phase, "Succeeded" | "Failed")
    {
        phase = old_phase.to_owned();
    }
    let all: Vec<ContainerStatus> = init.iter().chain(regular.iter()).cloned().collect();
    let mut conditions: Vec<PodCondition> = old
        .conditions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
        .collect();
    let terminal_phase = matches!(phase.as_str(), "Succeeded" | "Failed");
    conditions.push(condition(
        "PodReadyToStartContainers",
        !terminal_phase && sandbox_usable(pod, inputs.rt),
        None,
        None,
    ));
    conditions.push(initialized_condition(pod, &all, &phase));
    let containers_ready = containers_ready_condition(pod, &all, &phase);
    let ready = ready_condition(pod, &containers_ready, &conditions);
    conditions.push(ready);
    conditions.push(containers_ready);
    conditions.push(condition("PodScheduled", true, None, None));
    let old_conditions = old.conditions.clone().unwrap_or_default();
    for c in &mut conditions {
        let previous = old_conditions.iter().find(|o| o.type_ == c.type_);
        c.last_transition_time = match previous {
            Some(o) if o.status == c.status && o.last_transition_time.is_some() => {
                o.last_transition_time.clone()
            }
            _ => Some(Time(inputs.now)),
        };
        if let Some(o) = previous
            && c.last_probe_time.is_none()
        {
            c.last_probe_time = o.last_probe_time.clone();
        }
    }
    let host_network = spec.host_network.unwrap_or(false);
    let mut pod_ips: Vec<String> = if host_network {
        inputs.host_ips.to_vec()
    } else {
        inputs.rt.ready_sandbox().map(|s| s.ip.clone()).filter(|ip| !ip.is_empty()).into_iter().collect()
    };
    if pod_ips.is_empty() {
        pod_ips = old.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
    }
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: inputs.host_ips.first().cloned(),
        host_ips: (!inputs.host_ips.is_empty())
            .then(|| inputs.host_ips.iter().map(|ip| HostIP { ip: ip.clone() }).collect()),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty()).then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: Some(old.start_time.clone().unwrap_or(Time(inputs.start_time))),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(regular),
        qos_class: old.qos_class.clone().or_else(|| Some(super::sandbox::qos_class(pod))),
        message: old.message.clone(),
        reason: old.reason.clone(),
        nominated_node_name: old.nominated_node_name.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::runtime_pod::{Container as RtContainer, Sandbox};
    use cri::api::ContainerState as S;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": spec}),
        )
        .unwrap()
    }

    fn rt_container(name: &str, state: S, exit: i32, restarts: i32, created: i64) -> RtContainer {
        RtContainer {
            id: format!("{name}-{created}"),
            name: name.into(),
            sandbox_id: "s1".into(),
            state,
            restart_count: restarts,
            hash: String::new(),
            created_at: created,
            started_at: created + 1,
            finished_at: if state == S::ContainerExited { created + 2 } else { 0 },
            exit_code: exit,
            reason: match (state, exit) {
                (S::ContainerExited, 0) => "Completed".into(),
                (S::ContainerExited, _) => "Error".into(),
                _ => String::new(),
            },
            message: String::new(),
            image: "docker.io/library/busybox:latest".into(),
            image_ref: "docker.io/library/busybox@sha256:abc".into(),
            log_path: String::new(),
        }
    }

    fn sandbox() -> Sandbox {
        Sandbox { id: "s1".into(), attempt: 0, ready: true, created_at: 1, ip: "10.42.0.5".into() }
    }

    fn status_of(pod: &Pod, rt: &RuntimePod, reasons: &Reasons, terminal: bool) -> PodStatus {
        let probe = |_: &str, _: ProbeKind| None;
        generate(&Inputs {
            pod,
            rt,
            reasons,
            probe: &probe,
            runtime_name: "containerd",
            host_ips: &["10.0.0.1".to_string()],
            start_time: Timestamp::UNIX_EPOCH,
            now: Timestamp::UNIX_EPOCH,
            terminal,
        })
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn a_pod_with_nothing_running_yet_is_pending_and_creating() {
        let p = pod(json!({"containers": [{"name": "c", "image": "busybox"}]}));
        let s = status_of(&p, &RuntimePod::default(), &Reasons::new(), false);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            c.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(),
            Some("ContainerCreating")
        );
        assert_eq!(c.image, "busybox");
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
        assert_eq!(cond(&s, "Ready").message.as_deref(), Some("containers with unready status: [c]"));
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("ContainersNotReady"));
        let types: Vec<_> = s.conditions.as_ref().unwrap().iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        );
    }

    #[test]
    fn a_running_container_makes_the_pod_running_and_ready() {
        let p = pod(json!({"containers": [{"name": "c", "image": "busybox"}]}));
        let rt = RuntimePod {
            sandboxes: vec![sandbox()],
            containers: vec![rt_container("c", S::ContainerRunning, 0, 0, 10)],
        };
        let s = status_of(&p, &rt, &Reasons::new(), false);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.5"));
        assert_eq!(s.host_ip.as_deref(), Some("10.0.0.1"));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready && c.started == Some(true));
        assert_eq!(c.container_id.as_deref(), Some("containerd://c-10"));
        assert_eq!(c.image_id, "docker.io/library/busybox@sha256:abc");
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "True");
    }

    #[test]
    fn a_crash_looping_container_waits_with_its_last_termination() {
        let p = pod(json!({"containers": [{"name": "c", "image": "busybox"}]}));
        let rt = RuntimePod {
            sandboxes: vec![sandbox()],
            containers: vec![
                rt_container("c", S::ContainerExited, 1, 3, 20),
                rt_container("c", S::ContainerExited, 1, 2, 10),
            ],
        };
        let mut reasons = Reasons::new();
        reasons.insert(
            "c".into(),
            ("CrashLoopBackOff".into(), "back-off 40s restarting failed container=c pod=p_ns(u)".into()),
        );
        let s = status_of(&p, &rt, &reasons, false);
        let c = &s.container_statuses.as_ref().unwrap()[0];
        let w = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert_eq!(c.restart_count, 3);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert!(!c.ready);
    }

    #[test]
    fn phases_follow_restart_policy_and_exit_codes() {
        let never = pod(json!({"restartPolicy": "Never", "containers": [{"name": "c"}]}));
        let ok = RuntimePod {
            sandboxes: vec![sandbox()],
            containers: vec![rt_container("c", S::ContainerExited, 0, 0, 1)],
        };
        let bad = RuntimePod {
            sandboxes: vec![sandbox()],
            containers: vec![rt_container("c", S::ContainerExited, 2, 0, 1)],
        };
        let s = status_of(&never, &ok, &Reasons::new(), false);
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        assert_eq!(cond(&s, "Initialized").reason.as_deref(), Some("PodCompleted"));
        assert_eq!(status_of(&never, &bad, &Reasons::new(), false).phase.as_deref(), Some("Failed"));
        let on_failure = pod(json!({"restartPolicy": "OnFailure", "containers": [{"name": "c"}]}));
        assert_eq!(status_of(&on_failure, &bad, &Reasons::new(), false).phase.as_deref(), Some("Running"));
        assert_eq!(status_of(&on_failure, &ok, &Reasons::new(), false).phase.as_deref(), Some("Succeeded"));
        let always = pod(json!({"containers": [{"name": "c"}]}));
        assert_eq!(status_of(&always, &ok, &Reasons::new(), false).phase.as_deref(), Some("Running"));
        // Once deleted and stopped, an always-restarting pod is terminal.
        let killed = RuntimePod {
            sandboxes: vec![],
            containers: vec![rt_container("c", S::ContainerExited, 137, 0, 1)],
        };
        assert_eq!(status_of(&always, &killed, &Reasons::new(), true).phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn init_containers_gate_initialization() {
        let p = pod(
            json!({"initContainers": [{"name": "init", "image": "busybox"}], "containers": [{"name": "c"}]}),
        );
        let rt = RuntimePod {
            sandboxes: vec![sandbox()],
            containers: vec![rt_container("init", S::ContainerRunning, 0, 0, 1)],
        };
        let s = status_of(&p, &rt, &Reasons::new(), false);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = cond(&s, "Initialized");
        assert_eq!(
            (init.status.as_str(), init.message.as_deref()),
            ("False", Some("containers with incomplete status: [init]"))
        );
        let app = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            app.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(),
            Some("PodInitializing")
        );
        let done = RuntimePod {
            sandboxes: vec![sandbox()],
            containers: vec![rt_container("init", S::ContainerExited, 0, 0, 1)],
        };
        let s = status_of(&p, &done, &Reasons::new(), false);
        assert_eq!(cond(&s, "Initialized").status, "True");
        let init_status = &s.init_container_statuses.as_ref().unwrap()[0];
        assert!(init_status.ready);
        assert_eq!(
            init_status.state.as_ref().unwrap().terminated.as_ref().unwrap().reason.as_deref(),
            Some("Completed")
        );
        // A failed init container fails a Never pod.
        let never = pod(
            json!({"restartPolicy": "Never", "initContainers": [{"name": "init"}], "containers": [{"name": "c"}]}),
        );
        let failed = RuntimePod {
            sandboxes: vec![sandbox()],
            containers: vec![rt_container("init", S::ContainerExited, 1, 0, 1)],
        };
        assert_eq!(status_of(&never, &failed, &Reasons::new(), false).phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn transition_times_stay_while_the_status_does_not_change() {
        let mut p = pod(json!({"containers": [{"name": "c"}]}));
        p.status = Some(PodStatus {
            conditions: Some(vec![
                PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(Timestamp::from_second(100).unwrap())),
                    ..Default::default()
                },
                PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        });
        let s = status_of(&p, &RuntimePod::default(), &Reasons::new(), false);
        assert_eq!(
            cond(&s, "PodScheduled").last_transition_time,
            Some(Time(Timestamp::from_second(100).unwrap()))
        );
        assert_eq!(cond(&s, "Ready").last_transition_time, Some(Time(Timestamp::UNIX_EPOCH)));
        assert_eq!(s.conditions.as_ref().unwrap()[0].type_, "DisruptionTarget");
    }
}
