//! The ReplicaSet controller, which also serves ReplicationControllers (as upstream's
//! replication manager wraps the ReplicaSet controller): it keeps `spec.replicas` active
//! pods stamped from the template, adopts matching orphans and releases pods that no
//! longer match, and reports replicas, fullyLabeledReplicas, readyReplicas,
//! availableReplicas and the ReplicaFailure condition in the status.

pub mod expectations;
pub mod pods;
pub mod reconcile;
#[cfg(test)]
pub mod testing;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::Arc;

use apimachinery::labels::Selector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    Pod, PodTemplateSpec, ReplicationController, ReplicationControllerCondition, ReplicationControllerStatus,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::runtime::{Recorder, controller_of};
use crate::{Context, ERROR_REQUEUE, Error};

pub use expectations::PodExpectations;

/// What the shared ReplicaSet logic needs from a kind that keeps N pod replicas.
pub trait Replicated:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The component that signs this controller's events.
    const COMPONENT: &'static str;

    /// `spec.replicas` (1 when unset, the API default).
    fn desired_replicas(&self) -> i32;

    /// The pod selector; an error for a selector that cannot be parsed.
    fn pod_selector(&self) -> Result<Selector, String>;

    /// The pod template, if any.
    fn pod_template(&self) -> Option<&PodTemplateSpec>;

    /// `spec.minReadySeconds`.
    fn min_ready_seconds(&self) -> i32;

    /// The status, in ReplicaSet form.
    fn replica_status(&self) -> ReplicaSetStatus;

    /// A copy of the object carrying `status` (given in ReplicaSet form).
    fn with_replica_status(&self, status: ReplicaSetStatus) -> Self;
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";

    fn desired_replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn pod_selector(&self) -> Result<Selector, String> {
        let Some(spec) = self.spec.as_ref() else { return Ok(Selector::nothing()) };
        let value = serde_json::to_value(&spec.selector).map_err(|e| e.to_string())?;
        Selector::from_label_selector(&value).map_err(|e| e.to_string())
    }

    fn pod_template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }

    fn replica_status(&self) -> ReplicaSetStatus {
        self.status.clone().unwrap_or_default()
    }

    fn with_replica_status(&self, status: ReplicaSetStatus) -> Self {
        let mut rs = self.clone();
        rs.status = Some(status);
        rs
    }
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";

    fn desired_replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn pod_selector(&self) -> Result<Selector, String> {
        let empty = BTreeMap::new();
        let set = self.spec.as_ref().and_then(|s| s.selector.as_ref()).unwrap_or(&empty);
        Ok(Selector::from_set(set))
    }

    fn pod_template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }

    fn replica_status(&self) -> ReplicaSetStatus {
        let s = self.status.clone().unwrap_or_default();
        ReplicaSetStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
            conditions: s.conditions.map(|cs| {
                cs.into_iter()
                    .map(|c| ReplicaSetCondition {
                        type_: c.type_,
                        status: c.status,
                        last_transition_time: c.last_transition_time,
                        reason: c.reason,
                        message: c.message,
                    })
                    .collect()
            }),
            terminating_replicas: None,
        }
    }

    fn with_replica_status(&self, s: ReplicaSetStatus) -> Self {
        let mut rc = self.clone();
        rc.status = Some(ReplicationControllerStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
            conditions: s.conditions.map(|cs| {
                cs.into_iter()
                    .map(|c| ReplicationControllerCondition {
                        type_: c.type_,
                        status: c.status,
                        last_transition_time: c.last_transition_time,
                        reason: c.reason,
                        message: c.message,
                    })
                    .collect()
            }),
        });
        rc
    }
}

/// State of one running controller (ReplicaSets or ReplicationControllers).
pub struct Shared<K> {
    pub ctx: Arc<Context>,
    pub expectations: Arc<PodExpectations>,
    pub recorder: Recorder,
    kind: PhantomData<fn() -> K>,
}

impl<K: Replicated> Shared<K> {
    pub fn new(ctx: Arc<Context>) -> Self {
        let recorder = Recorder::new(ctx.client.clone(), K::COMPONENT);
        Shared { ctx, expectations: Arc::new(PodExpectations::new()), recorder, kind: PhantomData }
    }
}

/// The owners to wake for a pod event: its controller if that is a `K`, otherwise
/// (an orphan) every `K` in its namespace whose selector matches it. Also feeds the
/// event to the owner's expectations.
pub fn owners_of_pod<K: Replicated>(
    pod: &Pod,
    owners: &Store<K>,
    exp: &PodExpectations,
) -> Vec<ObjectRef<K>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(r) = controller_of(pod) {
        if r.kind != K::kind(&()) {
            return Vec::new();
        }
        let owner = ObjectRef::<K>::new(&r.name).within(&ns);
        match owners.get(&owner) {
            Some(o) if o.meta().uid.as_deref() == Some(r.uid.as_str()) => {
                exp.observe(&format!("{ns}/{}", r.name), pod);
                vec![owner]
            }
            _ => Vec::new(),
        }
    } else {
        if pod.metadata.deletion_timestamp.is_some() {
            return Vec::new();
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        owners
            .state()
            .iter()
            .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
            .filter(|o| o.pod_selector().is_ok_and(|s| !s.is_empty() && s.matches(&labels)))
            .map(|o| ObjectRef::from_obj(&**o))
            .collect()
    }
}

fn error_policy<K: Replicated>(obj: Arc<K>, err: &Error, _: Arc<Shared<K>>) -> Action {
    tracing::debug!(kind = %K::kind(&()), name = %obj.name_any(), error = %err, "will retry");
    Action::requeue(ERROR_REQUEUE)
}

async fn run_kind<K: Replicated>(ctx: Arc<Context>) {
    let owners = ctx.informers.get::<K>();
    let pods = ctx.informers.get::<Pod>();
    let shared = Arc::new(Shared::<K>::new(ctx.clone()));
    let exp = shared.expectations.clone();
    let store = owners.store.clone();
    Controller::for_shared_stream(
        crate::runtime::informer::coalesce_by_uid(owners.changes(), std::time::Duration::from_millis(100)),
        owners.store.clone(),
    )
    .watches_shared_stream(
        crate::runtime::informer::coalesce_by_owner(pods.changes(), std::time::Duration::from_millis(100)),
        move |pod: Arc<Pod>| owners_of_pod::<K>(&pod, &store, &exp),
    )
    .run(reconcile::reconcile::<K>, error_policy::<K>, shared)
    .for_each(|_| async {})
    .await;
}

/// Runs the ReplicaSet and the ReplicationController controllers.
pub async fn run(ctx: Arc<Context>) {
    futures::future::join(run_kind::<ReplicaSet>(ctx.clone()), run_kind::<ReplicationController>(ctx)).await;
}
