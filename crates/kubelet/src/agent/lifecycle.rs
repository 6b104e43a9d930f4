//! Lifecycle hooks and stopping containers, as the kubelet does them: `postStart` right
//! after a container starts (a failure kills it), `preStop` before it is stopped within
//! the grace period, then `StopContainer` with what is left of the grace period (at
//! least two seconds: SIGTERM, then SIGKILL). A pod is stopped regular containers
//! first, then its sidecars (restartable init containers) in reverse order, then its
//! sandbox.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};

use super::events::EventType;
use super::probes::{self, ProbeResult};
use super::runtime_pod::RuntimePod;
use super::{Shared, format_pod, grpc_message};

/// The shortest stop the kubelet gives a container, so it can run its shutdown.
pub const MIN_GRACE_SECONDS: i64 = 2;
/// The grace period of pods that do not set one.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// Why a container is being killed, which picks its grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillReason {
    Unknown,
    LivenessProbe,
    StartupProbe,
    FailedPostStartHook,
}

/// The grace period for killing `container`: the pod's deletion grace period while it
/// is being deleted, else the failed probe's own `terminationGracePeriodSeconds`, else
/// the pod's `terminationGracePeriodSeconds`.
pub fn grace_period(pod: &Pod, container: Option<&Container>, reason: KillReason) -> i64 {
    if let Some(g) = pod.metadata.deletion_grace_period_seconds {
        return g;
    }
    let pod_grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds);
    let probe_grace = container.and_then(|c| match reason {
        KillReason::LivenessProbe => {
            c.liveness_probe.as_ref().and_then(|p| p.termination_grace_period_seconds)
        }
        KillReason::StartupProbe => c.startup_probe.as_ref().and_then(|p| p.termination_grace_period_seconds),
        _ => None,
    });
    probe_grace.or(pod_grace).unwrap_or(DEFAULT_GRACE_SECONDS)
}

/// Runs a hook handler against a running container; the error is the kubelet's message.
pub async fn run_hook(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    container_id: &str,
    handler: &LifecycleHandler,
    pod_ip: &str,
    timeout: Duration,
) -> Result<(), String> {
    let name = &container.name;
    let pod_name = format_pod(pod);
    if let Some(exec) = &handler.exec {
        let command = probes::static_expand(exec.command.clone().unwrap_or_default(), container);
        let shown = format!("[{}]", command.join(" "));
        let joined = command.join(" ");
        return match shared.runtime.exec_sync(container_id, command, timeout).await {
            Ok(r) if r.exit_code == 0 => Ok(()),
            Ok(r) => {
                let mut out = r.stdout.clone();
                out.extend_from_slice(&r.stderr);
                let stderr = String::from_utf8_lossy(&r.stderr).into_owned();
                Err(format!(
                    "Exec lifecycle hook ({shown}) for Container \"{name}\" in Pod \"{pod_name}\" failed - error: command '{joined}' exited with {}: {stderr}, message: {:?}",
                    r.exit_code,
                    String::from_utf8_lossy(&out)
                ))
            }
            Err(e) => Err(format!(
                "Exec lifecycle hook ({shown}) for Container \"{name}\" in Pod \"{pod_name}\" failed - error: {}, message: \"\"",
                grpc_message(&e)
            )),
        };
    }
    if let Some(h) = &handler.http_get {
        let target = probes::http_target(h, container, pod_ip)?;
        let outcome = probes::http_get(&target, timeout.max(Duration::from_secs(1))).await;
        return match outcome.result {
            ProbeResult::Success => Ok(()),
            ProbeResult::Failure => Err(format!(
                "HTTP lifecycle hook ({}) for Container \"{name}\" in Pod \"{pod_name}\" failed - error: {}",
                target.path, outcome.output
            )),
        };
    }
    if let Some(s) = &handler.sleep {
        let wanted = Duration::from_secs(s.seconds.max(0) as u64);
        tokio::time::sleep(wanted.min(timeout)).await;
        return Ok(());
    }
    if handler.tcp_socket.is_some() {
        // Deprecated and never implemented by the kubelet: accepted and ignored.
        return Ok(());
    }
    Err(format!("Invalid handler for Container \"{name}\" in Pod \"{pod_name}\""))
}

/// Stops one container instance: the `Killing` event, its `preStop` hook within the
/// grace period, then `StopContainer` with the rest (at least two seconds).
/// `grace_override` replaces the computed grace period (a forced deletion).
#[allow(clippy::too_many_arguments)]
pub async fn kill_container(
    shared: &Shared,
    pod: &Pod,
    container: Option<&Container>,
    container_id: &str,
    name: &str,
    message: Option<String>,
    reason: KillReason,
    grace_override: Option<i64>,
    pod_ip: &str,
) -> cri::Result<()> {
    let mut grace = grace_period(pod, container, reason);
    let message = message.unwrap_or_else(|| format!("Stopping container {name}"));
    shared.recorder.pod(pod, Some(name), EventType::Normal, "Killing", &message).await;
    if let Some(g) = grace_override {
        grace = g;
    }
    if let Some(c) = container
        && let Some(pre_stop) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
        && grace > 0
    {
        let started = Instant::now();
        let budget = Duration::from_secs(grace as u64);
        let hook = run_hook(shared, pod, c, container_id, pre_stop, pod_ip, budget);
        match tokio::time::timeout(budget, hook).await {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => {
                tracing::info!(pod = %format_pod(pod), container = name, message = %msg, "preStop hook failed");
                shared
                    .recorder
                    .pod(pod, Some(name), EventType::Warning, "FailedPreStopHook", "PreStopHook failed")
                    .await;
            }
            Err(_) => {
                tracing::info!(pod = %format_pod(pod), container = name, "preStop hook did not finish within the grace period")
            }
        }
        grace -= started.elapsed().as_secs() as i64;
    }
    let grace = grace.max(MIN_GRACE_SECONDS);
    match shared.runtime.stop_container(container_id, Duration::from_secs(grace as u64)).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_sidecar(pod: &Pod, name: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always")))
}

/// Stops every running container of the pod (regular ones together, then sidecars in
/// reverse order), then its sandboxes. Errors of single containers are returned after
/// everything was tried.
pub async fn kill_pod(
    shared: &Shared,
    pod: &Pod,
    rt: &RuntimePod,
    grace_override: Option<i64>,
) -> cri::Result<()> {
    let pod_ip = rt.ready_sandbox().map(|s| s.ip.clone()).unwrap_or_default();
    let running: Vec<_> = rt.running().cloned().collect();
    let started = Instant::now();
    let regular = running.iter().filter(|c| !is_sidecar(pod, &c.name)).map(|c| {
        let spec = super::fieldpath::find_container(pod, &c.name);
        kill_container(shared, pod, spec, &c.id, &c.name, None, KillReason::Unknown, grace_override, &pod_ip)
    });
    let mut first_error = None;
    for r in futures::future::join_all(regular).await {
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    let order: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.clone())
        .unwrap_or_default()
        .into_iter()
        .rev()
        .map(|c| c.name)
        .collect();
    for name in order {
        let Some(c) = running.iter().find(|c| c.name == name && is_sidecar(pod, &c.name)) else { continue };
        let spec = super::fieldpath::find_container(pod, &c.name);
        let used = started.elapsed().as_secs() as i64;
        let remaining = grace_override.unwrap_or_else(|| grace_period(pod, spec, KillReason::Unknown)) - used;
        if let Err(e) = kill_container(
            shared,
            pod,
            spec,
            &c.id,
            &c.name,
            None,
            KillReason::Unknown,
            Some(remaining.max(0)),
            &pod_ip,
        )
        .await
        {
            first_error.get_or_insert(e);
        }
    }
    for s in &rt.sandboxes {
        if !s.ready {
            continue;
        }
        match shared.runtime.stop_pod_sandbox(&s.id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grace_periods_come_from_deletion_then_probe_then_pod() {
        let mut pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
            "terminationGracePeriodSeconds": 20,
            "containers": [{"name": "c", "livenessProbe": {"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 3}}]}}))
        .unwrap();
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        assert_eq!(grace_period(&pod, Some(&c), KillReason::Unknown), 20);
        assert_eq!(grace_period(&pod, Some(&c), KillReason::LivenessProbe), 3);
        pod.metadata.deletion_grace_period_seconds = Some(7);
        assert_eq!(grace_period(&pod, Some(&c), KillReason::LivenessProbe), 7);
        let bare: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": []}})).unwrap();
        assert_eq!(grace_period(&bare, None, KillReason::Unknown), DEFAULT_GRACE_SECONDS);
    }
}
