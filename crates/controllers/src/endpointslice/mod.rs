//! The EndpointSlice controller (upstream `pkg/controller/endpointslice`): for every
//! Service with a selector, EndpointSlices named `<service>-<random>` labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io`, owned by the Service (so the garbage collector removes
//! them with it), one address type each (IPv4 for an IPv4 service), holding at most 100
//! endpoints with their ready/serving/terminating conditions, nodeName, zone and targetRef,
//! and the ports resolved for those pods.
//!
//! The cache may lag behind this controller's own writes; slices it wrote and has not seen
//! yet make the sync fail and retry instead of creating duplicates (upstream
//! `EndpointSliceTracker`).

pub mod reconciler;
mod tracker;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::Context;
use crate::endpoints::namespace_terminating;
use crate::endpoints::util::{
    self, LAST_CHANGE_TRIGGER_TIME, Memberships, TriggerTimeTracker, key, split_key,
};
use crate::garbagecollector::workqueue::{self, Outcome, WorkQueue};
use crate::runtime::{EventType, Recorder};
use reconciler::{CONTROLLER_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, MAX_ENDPOINTS_PER_SLICE};
use tracker::SliceTracker;

/// Concurrent syncs (kube-controller-manager's `--concurrent-service-endpoint-syncs`).
pub const WORKERS: usize = 5;
/// Failed syncs of a key before it is dropped until its next change.
pub const MAX_RETRIES: u32 = 15;

/// Errors of one sync; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("EndpointSlice informer cache is out of date")]
    StaleCache,
    #[error("{}", .0.join(", "))]
    Skipped(Vec<String>),
    #[error("failed to {op} EndpointSlice {name} for Service {service}: {source}")]
    Write {
        op: &'static str,
        name: String,
        service: String,
        #[source]
        source: kube::Error,
    },
}

/// The controller's state.
pub struct EndpointSliceController {
    ctx: Arc<Context>,
    triggers: TriggerTimeTracker,
    tracker: SliceTracker,
    recorder: Recorder,
    max_per_slice: usize,
    pub queue: Arc<WorkQueue<String>>,
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// The service key a slice belongs to, if this controller manages it.
pub fn service_key_of(slice: &EndpointSlice) -> Option<String> {
    let labels = slice.labels();
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    let svc = labels.get(LABEL_SERVICE_NAME).filter(|s| !s.is_empty())?;
    Some(key(&slice.namespace().unwrap_or_default(), svc))
}

fn set_trigger_time(slice: &mut EndpointSlice, trigger: Option<jiff::Timestamp>) {
    let annotations = slice.metadata.annotations.get_or_insert_with(Default::default);
    match trigger {
        Some(t) => {
            annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), util::format_time(t));
        }
        None => {
            annotations.remove(LAST_CHANGE_TRIGGER_TIME);
        }
    }
}

impl EndpointSliceController {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        let recorder = Recorder::new(ctx.client.clone(), "endpoint-slice-controller");
        Arc::new(Self {
            ctx,
            triggers: TriggerTimeTracker::default(),
            tracker: SliceTracker::default(),
            recorder,
            max_per_slice: MAX_ENDPOINTS_PER_SLICE,
            queue: WorkQueue::new(),
        })
    }

    /// Brings the service's slices in line with its pods.
    pub async fn sync(&self, service_key: &str) -> Result<(), Error> {
        let (ns, name) = split_key(service_key);
        let Some(svc) = self.ctx.informers.get::<Service>().store.get(&ObjectRef::new(name).within(ns))
        else {
            // The slices go with their owner (garbage collector).
            self.triggers.delete(ns, name);
            self.tracker.forget_service(service_key);
            return Ok(());
        };
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") || spec.selector.is_none() {
            return Ok(());
        }
        let pods = util::pods_for_service(&self.ctx.informers.get::<Pod>().store, &svc);
        let mut slices: Vec<EndpointSlice> = self
            .ctx
            .informers
            .get::<EndpointSlice>()
            .store
            .state()
            .into_iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(ns) && service_key_of(s).as_deref() == Some(service_key)
            })
            .map(|s| (*s).clone())
            .collect();
        let pending_deletion = |s: &EndpointSlice| s.metadata.deletion_timestamp.is_some();
        slices.retain(|s| !pending_deletion(s));
        slices.sort_by_key(|s| s.name_any());
        if self.tracker.stale(service_key, &slices) {
            return Err(Error::StaleCache);
        }
        let trigger = self.triggers.compute(&svc, &pods);
        let nodes: BTreeMap<String, Arc<Node>> =
            self.ctx.informers.get::<Node>().store.state().into_iter().map(|n| (n.name_any(), n)).collect();
        let plan = reconciler::reconcile(&svc, &pods, &slices, &nodes, self.max_per_slice);
        let result = self.apply(&svc, plan.create, plan.update, plan.delete, trigger).await;
        if let Err(e) = &result {
            let message = format!("Error updating Endpoint Slices for Service {service_key}: {e}");
            self.recorder
                .publish(svc.as_ref(), EventType::Warning, "FailedToUpdateEndpointSlices", &message)
                .await;
        }
        result?;
        if !plan.skipped.is_empty() {
            return Err(Error::Skipped(plan.skipped));
        }
        Ok(())
    }

    async fn apply(
        &self,
        svc: &Service,
        create: Vec<EndpointSlice>,
        update: Vec<EndpointSlice>,
        delete: Vec<EndpointSlice>,
        trigger: Option<jiff::Timestamp>,
    ) -> Result<(), Error> {
        let ns = svc.namespace().unwrap_or_default();
        let service_key = key(&ns, &svc.name_any());
        let api: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), &ns);
        let write_error = |op, name: &str, source| Error::Write {
            op,
            name: name.to_string(),
            service: service_key.clone(),
            source,
        };
        // New slices racing the garbage collector of a service being deleted are pointless.
        if svc.metadata.deletion_timestamp.is_none() {
            for mut s in create {
                set_trigger_time(&mut s, trigger);
                match api.create(&PostParams::default(), &s).await {
                    Ok(created) => self.tracker.wrote(&service_key, &created),
                    Err(e) if namespace_terminating(&e) => return Ok(()),
                    Err(e) => return Err(write_error("create", "", e)),
                }
            }
        }
        for mut s in update {
            set_trigger_time(&mut s, trigger);
            let name = s.name_any();
            match api.replace(&name, &PostParams::default(), &s).await {
                Ok(updated) => self.tracker.wrote(&service_key, &updated),
                Err(e) => return Err(write_error("update", &name, e)),
            }
        }
        for s in delete {
            let name = s.name_any();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => self.tracker.deleted(&service_key, &name),
                Err(e) if is_status(&e, 404) => self.tracker.deleted(&service_key, &name),
                Err(e) => return Err(write_error("delete", &name, e)),
            }
        }
        Ok(())
    }

    async fn worker(&self, service_key: String) -> Outcome {
        match self.sync(&service_key).await {
            Ok(()) => Outcome::Forget,
            Err(e) if self.queue.num_requeues(&service_key) < MAX_RETRIES => {
                tracing::debug!(service = %service_key, error = %e, "endpointslice controller: error syncing, retrying");
                Outcome::Requeue
            }
            Err(e) => {
                tracing::info!(service = %service_key, error = %e, "endpointslice controller: dropping service out of the queue");
                Outcome::Forget
            }
        }
    }
}

/// Runs the EndpointSlice controller.
pub async fn run(ctx: Arc<Context>) {
    let c = EndpointSliceController::new(ctx.clone());
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let slices = ctx.informers.get::<EndpointSlice>();
    let nodes = ctx.informers.get::<Node>();
    let (svc_changes, pod_changes, slice_changes) = (services.changes(), pods.changes(), slices.changes());
    let memberships = Memberships::default();
    let q = c.queue.clone();
    let on_services = svc_changes.for_each(|s| {
        q.add(key(&s.namespace().unwrap_or_default(), &s.name_any()));
        async {}
    });
    let on_pods = pod_changes.for_each(|p| {
        let gone = pods.store.get(&ObjectRef::from_obj(&*p)).is_none();
        for k in memberships.affected(&services.store, &p, gone) {
            q.add(k);
        }
        async {}
    });
    let on_slices = slice_changes.for_each(|s| {
        if let Some(k) = service_key_of(&s) {
            if slices.store.get(&ObjectRef::from_obj(&*s)).is_none() {
                c.tracker.deleted_elsewhere(&k, &s.name_any());
            }
            q.add(k);
        }
        async {}
    });
    let startup = async {
        if !util::wait_for_cache(&services.store).await
            || !util::wait_for_cache(&pods.store).await
            || !util::wait_for_cache(&slices.store).await
            || !util::wait_for_cache(&nodes.store).await
        {
            return;
        }
        for s in services.store.state() {
            q.add(key(&s.namespace().unwrap_or_default(), &s.name_any()));
        }
        let worker = c.clone();
        workqueue::run_workers(q.clone(), WORKERS, move |k: String| {
            let worker = worker.clone();
            async move { worker.worker(k).await }
        })
        .await;
    };
    tokio::join!(on_services, on_pods, on_slices, startup);
}

#[cfg(test)]
mod tests;
