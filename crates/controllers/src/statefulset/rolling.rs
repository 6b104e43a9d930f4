//! The RollingUpdate strategy of a StatefulSet: from the highest ordinal down to the
//! partition, delete one member that is not at the update revision, and wait for each
//! replaced member to be healthy (and available for `minReadySeconds`) before the next.
//! (OnDelete replaces nothing: members pick up the new revision when a user deletes them.)

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;

use super::control::Status;
use super::identity as id;
use super::pod_control::PodControl;
use crate::Result;
use crate::history::pods;

/// One step of the rolling update over the members in range (`replicas`, indexed from the
/// start ordinal): deletes at most one pod, decrementing `status.current_replicas`.
pub async fn update(
    pc: &PodControl,
    set: &StatefulSet,
    replicas: &[Arc<Pod>],
    update_revision: &str,
    status: &mut Status,
    now: jiff::Timestamp,
) -> Result<()> {
    let update_min = id::partition(set).unwrap_or(0).max(0) as usize;
    let min_ready = set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    for target in (update_min..replicas.len()).rev() {
        let pod = &replicas[target];
        if id::pod_revision(pod) != update_revision && !pods::is_terminating(pod) {
            tracing::debug!(pod = ?pod.metadata.name, "statefulset: terminating pod for update");
            match pc.delete_pod(set, pod).await {
                Ok(()) => {}
                Err(crate::Error::Kube(kube::Error::Api(s))) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
            status.current_replicas -= 1;
            return Ok(());
        }
        if id::is_unavailable(pod, min_ready, now) {
            tracing::debug!(pod = ?pod.metadata.name, "statefulset: waiting for pod to update");
            return Ok(());
        }
    }
    Ok(())
}
