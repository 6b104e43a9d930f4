//! How the workload controllers judge and build pods: phase, readiness and availability
//! (upstream's `podutil.IsPodReady` / `IsPodAvailable`) and a pod from a template
//! (upstream's `controller.GetPodFromTemplate`).

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The pod's phase, `""` when the status has none.
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Succeeded or Failed: the pod's containers will not run again.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Whether the pod has a deletion timestamp.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Whether the pod has been ready for at least `min_ready_seconds` at `now` (any ready
/// pod when `min_ready_seconds` is 0). A ready condition without a transition time
/// never becomes available under a positive `min_ready_seconds`, as upstream.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    let Some(c) = ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    match &c.last_transition_time {
        Some(t) => t.0 + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds)) < now,
        None => false,
    }
}

/// How long until a pod that is ready (but not yet available) becomes available, for
/// requeueing; `None` when it is not ready or already available.
pub fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> Option<std::time::Duration> {
    let c = ready_condition(pod).filter(|c| c.status == "True")?;
    if min_ready_seconds <= 0 {
        return None;
    }
    let at =
        c.last_transition_time.as_ref()?.0 + jiff::SignedDuration::from_secs(i64::from(min_ready_seconds));
    let left = at.duration_since(now);
    if left.is_negative() {
        return None;
    }
    Some(std::time::Duration::try_from(left).unwrap_or_default() + std::time::Duration::from_millis(100))
}

/// The pod a controller creates from its template: the template's labels, annotations,
/// finalizers and spec, `generateName` `<parent>-` and the controller reference.
pub fn from_template(
    template: &PodTemplateSpec,
    parent_name: &str,
    controller: Option<OwnerReference>,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    let prefix = format!("{parent_name}-");
    // A prefix that is no longer a valid name falls back to the bare parent name.
    let generate_name = if prefix.len() <= 253 { prefix } else { parent_name.to_string() };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            labels: meta.labels.filter(|l| !l.is_empty()),
            annotations: meta.annotations.filter(|a| !a.is_empty()),
            finalizers: meta.finalizers.filter(|f| !f.is_empty()),
            owner_references: controller.map(|c| vec![c]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(ready: bool, since: Option<jiff::Timestamp>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: since.map(Time),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn availability_waits_for_min_ready_seconds_after_readiness() {
        let t0: jiff::Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let p = pod(true, Some(t0));
        assert!(is_available(&p, 0, t0));
        assert!(!is_available(&p, 10, t0 + jiff::SignedDuration::from_secs(10)));
        assert!(is_available(&p, 10, t0 + jiff::SignedDuration::from_secs(11)));
        assert!(!is_available(&pod(false, Some(t0)), 0, t0));
        assert!(!is_available(&pod(true, None), 5, t0));
        assert!(until_available(&p, 10, t0).is_some());
        assert!(until_available(&p, 10, t0 + jiff::SignedDuration::from_secs(11)).is_none());
    }
}
