//! The taint eviction controller (upstream `pkg/controller/tainteviction`): deletes pods
//! from nodes with NoExecute taints they do not tolerate, at once, or when the shortest
//! `tolerationSeconds` of the tolerations they rely on runs out. Before deleting it sets
//! the pod condition `DisruptionTarget` (reason `DeletionByTaintManager`); events
//! `TaintManagerEviction` record the decision and its cancellation.
//!
//! As upstream, the toleration period is counted from when this controller first saw the
//! pod on the tainted node (in memory: a restart starts the count again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;

use super::taints::{self, NO_EXECUTE};
use crate::runtime::{EventType, Recorder};
use crate::{Context, ERROR_REQUEUE, Error, Result};

/// The taint eviction controller's state: when each pod's eviction was scheduled.
pub struct State {
    pub ctx: Arc<Context>,
    recorder: Recorder,
    /// Pod uid to (node, when its toleration period started).
    scheduled: Mutex<HashMap<String, (String, jiff::Timestamp)>>,
}

impl State {
    pub fn new(ctx: Arc<Context>) -> Self {
        let recorder = Recorder::new(ctx.client.clone(), "taint-eviction-controller");
        State { ctx, recorder, scheduled: Mutex::new(HashMap::new()) }
    }

    fn scheduled(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, jiff::Timestamp)>> {
        self.scheduled.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        ..Default::default()
    }
}

/// Forgets a scheduled eviction; records the cancellation when there was one.
async fn cancel(st: &State, pod: &Pod) {
    let uid = pod.uid().unwrap_or_default();
    if st.scheduled().remove(&uid).is_some() {
        let msg = format!("Cancelling deletion of Pod {}", crate::runtime::key_of(pod));
        st.recorder.record(&pod_ref(pod), EventType::Normal, "TaintManagerEviction", &msg).await;
    }
}

/// Marks the pod as a disruption target and deletes it.
async fn evict(st: &State, pod: &Pod) -> Result<()> {
    let msg = format!("Marking for deletion Pod {}", crate::runtime::key_of(pod));
    st.recorder.record(&pod_ref(pod), EventType::Normal, "TaintManagerEviction", &msg).await;
    let api: Api<Pod> = Api::namespaced(st.ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let now = st.ctx.clock.now();
    let mut updated = pod.clone();
    let conds = updated.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new);
    let wanted = PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    };
    let changed = match conds.iter_mut().find(|c| c.type_ == "DisruptionTarget") {
        Some(c) if c.status == "True" && c.reason == wanted.reason && c.message == wanted.message => false,
        Some(c) => {
            let transition = if c.status == "True" {
                c.last_transition_time.clone()
            } else {
                wanted.last_transition_time.clone()
            };
            *c = PodCondition { last_transition_time: transition, ..wanted };
            true
        }
        None => {
            conds.push(wanted);
            true
        }
    };
    if changed {
        match api.replace_status(&pod.name_any(), &PostParams::default(), &updated).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    match api.delete(&pod.name_any(), &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Decides one pod: keep it, evict it now, or look again when its toleration runs out.
pub async fn reconcile(pod: Arc<Pod>, st: Arc<State>) -> Result<Action> {
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    if node_name.is_empty() || pod.metadata.deletion_timestamp.is_some() {
        st.scheduled().remove(&pod.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }
    let Some(node) = st.ctx.informers.get::<Node>().store.get(&ObjectRef::new(&node_name)) else {
        st.scheduled().remove(&pod.uid().unwrap_or_default());
        return Ok(Action::await_change());
    };
    let no_execute: Vec<_> =
        taints::taints_of(&node).iter().filter(|t| t.effect == NO_EXECUTE).cloned().collect();
    if no_execute.is_empty() {
        cancel(&st, &pod).await;
        return Ok(Action::await_change());
    }
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
    let (all, used) = taints::matching_tolerations(&no_execute, &tolerations);
    let now = st.ctx.clock.now();
    let uid = pod.uid().unwrap_or_default();
    let wait = if !all {
        0
    } else {
        match taints::min_toleration_seconds(&used) {
            None => {
                cancel(&st, &pod).await;
                return Ok(Action::await_change());
            }
            Some(s) => s,
        }
    };
    let start = {
        let mut scheduled = st.scheduled();
        let entry = scheduled.entry(uid.clone()).or_insert_with(|| (node_name.clone(), now));
        if entry.0 != node_name {
            *entry = (node_name.clone(), now);
        }
        entry.1
    };
    let due = if all { start + jiff::SignedDuration::from_secs(wait) } else { now };
    if due > now {
        return Ok(Action::requeue(due.duration_since(now).unsigned_abs()));
    }
    evict(&st, &pod).await?;
    st.scheduled().remove(&uid);
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Pod>, err: &Error, _: Arc<State>) -> Action {
    tracing::debug!(error = %err, "taint eviction controller: will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs the taint eviction controller.
pub async fn run(ctx: Arc<Context>) {
    let st = Arc::new(State::new(ctx.clone()));
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    if !crate::disruption::cache_synced(&nodes.store).await
        || !crate::disruption::cache_synced(&pods.store).await
    {
        return;
    }
    let pod_store = pods.store.clone();
    Controller::for_shared_stream(pods.changes(), pods.store.clone())
        .watches_shared_stream(nodes.changes(), move |node: Arc<Node>| {
            let name = node.name_any();
            pod_store
                .state()
                .iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()))
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, st)
        .for_each(|_| async {})
        .await;
}
