//! Stale `DisruptionTarget` conditions: a pod marked True (by an eviction or preemption)
//! that is still not terminating after two minutes gets the condition set back to False,
//! as upstream's disruption controller does.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};

use super::State;
use crate::{ERROR_REQUEUE, Error, Result};

/// How long a DisruptionTarget=True condition may stand on a pod that is not terminating.
pub const STALE_TIMEOUT: Duration = Duration::from_secs(120);

/// When the pod's DisruptionTarget condition goes stale: `None` when it has none that can.
pub fn stale_at(pod: &Pod) -> Option<jiff::Timestamp> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
        return None;
    }
    let c = status.conditions.as_ref()?.iter().find(|c| c.type_ == "DisruptionTarget")?;
    // The kubelet's own marks stay until the pod terminates.
    if c.status != "True" || c.reason.as_deref() == Some("TerminationByKubelet") {
        return None;
    }
    let since = c.last_transition_time.as_ref().map(|t| t.0).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    Some(
        since + jiff::SignedDuration::try_from(STALE_TIMEOUT).unwrap_or(jiff::SignedDuration::from_secs(120)),
    )
}

/// Resets the pod's stale DisruptionTarget condition to False, or waits until it is stale.
pub async fn reconcile(pod: Arc<Pod>, st: Arc<State>) -> Result<Action> {
    let Some(at) = stale_at(&pod) else { return Ok(Action::await_change()) };
    let now = st.ctx.clock.now();
    if at > now {
        return Ok(Action::requeue(at.duration_since(now).unsigned_abs()));
    }
    let mut updated = (*pod).clone();
    if let Some(conds) = updated.status.as_mut().and_then(|s| s.conditions.as_mut()) {
        for c in conds.iter_mut().filter(|c| c.type_ == "DisruptionTarget") {
            *c = PodCondition {
                type_: "DisruptionTarget".into(),
                status: "False".into(),
                last_transition_time: Some(Time(now)),
                ..Default::default()
            };
        }
    }
    let api: Api<Pod> = Api::namespaced(st.ctx.client.clone(), &pod.namespace().unwrap_or_default());
    match api.replace_status(&pod.name_any(), &PostParams::default(), &updated).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(Error::Kube(e)),
    }
}

fn error_policy(_: Arc<Pod>, err: &Error, _: Arc<State>) -> Action {
    tracing::debug!(error = %err, "stale disruption condition cleanup: will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs the cleanup over every pod.
pub async fn run(st: Arc<State>) {
    let pods = st.ctx.informers.get::<Pod>();
    Controller::for_shared_stream(pods.changes(), pods.store.clone())
        .run(reconcile, error_policy, st)
        .for_each(|_| async {})
        .await;
}
