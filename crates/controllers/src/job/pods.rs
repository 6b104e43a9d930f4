//! What the Job controller reads from its pods: active, terminating, ready, finished,
//! the order in which surplus pods are deleted, the tracking finalizer, and the pod a
//! Job's template makes.

use std::cmp::Ordering;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::indexes::COMPLETION_INDEX;
use crate::runtime::controller_ref;

/// The finalizer that keeps a finished pod around until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub fn is_succeeded(p: &Pod) -> bool {
    phase(p) == "Succeeded"
}

pub fn is_failed_phase(p: &Pod) -> bool {
    phase(p) == "Failed"
}

/// Succeeded or Failed.
pub fn is_terminal(p: &Pod) -> bool {
    is_succeeded(p) || is_failed_phase(p)
}

pub fn is_deleting(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

/// Neither terminal nor being deleted (`controller.FilterActivePods`).
pub fn is_active(p: &Pod) -> bool {
    !is_terminal(p) && !is_deleting(p)
}

/// Being deleted but not yet terminal.
pub fn is_terminating(p: &Pod) -> bool {
    !is_terminal(p) && is_deleting(p)
}

fn ready_condition(p: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// The pod's Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    ready_condition(p).is_some_and(|c| c.status == "True")
}

fn ready_since(p: &Pod) -> Option<Timestamp> {
    ready_condition(p)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

fn max_restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn node_name(p: &Pod) -> &str {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

fn phase_ordinal(p: &Pod) -> i32 {
    match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

/// `t1` after `t2`, where a missing time sorts first.
fn after_or_zero(t1: Option<Timestamp>, t2: Option<Timestamp>) -> bool {
    match (t1, t2) {
        (Some(a), Some(b)) => a > b,
        (a, _) => a.is_none(),
    }
}

/// The order in which pods are deleted first (`controller.ActivePods`): unscheduled
/// before scheduled, Pending before Unknown before Running, not ready before ready,
/// ready for less time before more, more restarts before fewer, newer before older.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let less = |x: &Pod, y: &Pod| -> bool {
        let (nx, ny) = (node_name(x), node_name(y));
        if nx != ny && (nx.is_empty() || ny.is_empty()) {
            return nx.is_empty();
        }
        if phase_ordinal(x) != phase_ordinal(y) {
            return phase_ordinal(x) < phase_ordinal(y);
        }
        if is_ready(x) != is_ready(y) {
            return !is_ready(x);
        }
        if is_ready(x) && is_ready(y) && ready_since(x) != ready_since(y) {
            return after_or_zero(ready_since(x), ready_since(y));
        }
        if max_restarts(x) != max_restarts(y) {
            return max_restarts(x) > max_restarts(y);
        }
        let (cx, cy) = (
            x.metadata.creation_timestamp.as_ref().map(|t| t.0),
            y.metadata.creation_timestamp.as_ref().map(|t| t.0),
        );
        if cx != cy {
            return after_or_zero(cx, cy);
        }
        false
    };
    if less(a, b) {
        Ordering::Less
    } else if less(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

pub fn has_tracking_finalizer(p: &Pod) -> bool {
    p.metadata.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f == TRACKING_FINALIZER))
}

pub fn uid(p: &Pod) -> &str {
    p.metadata.uid.as_deref().unwrap_or("")
}

pub fn name(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or("")
}

/// When the pod finished: the last container to terminate, else the time its Ready
/// condition turned False, else its deletion time less the grace period, else its
/// creation time.
pub fn finished_time(p: &Pod) -> Option<Timestamp> {
    let statuses = p.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    if let Some(cs) = statuses.filter(|cs| !cs.is_empty()) {
        let mut latest: Option<Timestamp> = None;
        let mut all = true;
        for c in cs {
            match c.state.as_ref().and_then(|s| s.terminated.as_ref()).and_then(|t| t.finished_at.as_ref()) {
                Some(t) => latest = Some(latest.map_or(t.0, |l| l.max(t.0))),
                None => {
                    all = false;
                    break;
                }
            }
        }
        if all && let Some(t) = latest {
            return Some(t);
        }
    }
    if let Some(c) = ready_condition(p)
        && c.status == "False"
        && let Some(t) = &c.last_transition_time
    {
        return Some(t.0);
    }
    if let Some(d) = &p.metadata.deletion_timestamp {
        let grace = p.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return d.0.checked_sub(jiff::SignedDuration::from_secs(grace)).ok();
    }
    p.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// The pod a Job creates: the template's labels, annotations and spec, the tracking
/// finalizer, the Job as controller, `generateName` `<job>-` (or the indexed prefix);
/// for an index, its annotation and label, the hostname `<job>-<index>` and the
/// `JOB_COMPLETION_INDEX` variable taken from the label.
pub fn pod_from_template(job: &Job, index: Option<i32>, generate_name: String) -> Pod {
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.to_string());
    }
    if let Some(ix) = index {
        annotations.insert(COMPLETION_INDEX.into(), ix.to_string());
        labels.insert(COMPLETION_INDEX.into(), ix.to_string());
        spec.hostname = Some(format!("{}-{ix}", job.metadata.name.as_deref().unwrap_or("")));
        let containers = spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut());
        for c in containers {
            let env = c.env.get_or_insert_with(Vec::new);
            if !env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                env.push(EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: format!("metadata.labels['{COMPLETION_INDEX}']"),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref(job)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, node: &str, phase: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(PodSpec { node_name: (!node.is_empty()).then(|| node.into()), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time("2024-05-01T00:00:00Z".parse().unwrap())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn surplus_pods_in_earlier_stages_are_deleted_first() {
        let mut pods = [
            pod("running-ready", "n1", "Running", true),
            pod("running", "n1", "Running", false),
            pod("pending-scheduled", "n1", "Pending", false),
            pod("unscheduled", "", "Pending", false),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<&str> = pods.iter().map(name).collect();
        assert_eq!(names, ["unscheduled", "pending-scheduled", "running", "running-ready"]);
    }

    #[test]
    fn finished_time_prefers_container_termination() {
        let mut p = pod("a", "n", "Failed", false);
        assert_eq!(finished_time(&p).unwrap().to_string(), "2024-05-01T00:00:00Z");
        let status = p.status.as_mut().unwrap();
        status.container_statuses = Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
            name: "c".into(),
            state: Some(k8s_openapi::api::core::v1::ContainerState {
                terminated: Some(k8s_openapi::api::core::v1::ContainerStateTerminated {
                    exit_code: 1,
                    finished_at: Some(Time("2024-05-01T00:00:07Z".parse().unwrap())),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        assert_eq!(finished_time(&p).unwrap().to_string(), "2024-05-01T00:00:07Z");
    }
}
