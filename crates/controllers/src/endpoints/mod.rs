//! The Endpoints controller (upstream `pkg/controller/endpoint`): for every Service with a
//! selector, an Endpoints object of the same name whose subsets list the matching pods'
//! IPs — ready pods under `addresses`, the others under `notReadyAddresses` (unless the
//! service publishes not-ready addresses) — with each address's nodeName and targetRef,
//! and ports resolved from each service port's `targetPort` (a number, or the name of a
//! container port). Services without a selector (like `default/kubernetes`, whose
//! Endpoints the API server writes) and ExternalName services are left alone; the
//! Endpoints of a deleted Service are deleted.
//!
//! Keys are service keys, synced from a workqueue rather than a typed controller because a
//! key must still be synced after its Service is gone.

pub mod subsets;
pub mod util;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use crate::Context;
use crate::garbagecollector::workqueue::{self, Outcome, WorkQueue};
use crate::runtime::{EventType, Recorder};
use util::{HEADLESS_LABEL, LAST_CHANGE_TRIGGER_TIME, Memberships, TriggerTimeTracker, key, split_key};

/// Concurrent syncs (kube-controller-manager's `--concurrent-endpoint-syncs`).
pub const WORKERS: usize = 5;
/// Failed syncs of a key before it is dropped until its next change.
pub const MAX_RETRIES: u32 = 15;
/// The annotation leader election used to put on Endpoints; such objects are never deleted.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

/// Errors of one sync; the key is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
}

/// The controller's state.
pub struct EndpointsController {
    ctx: Arc<Context>,
    triggers: TriggerTimeTracker,
    recorder: Recorder,
    pub queue: Arc<WorkQueue<String>>,
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Whether a create failed because the namespace is being deleted.
pub fn namespace_terminating(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 403
                && s.details
                    .as_ref()
                    .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
        }
        _ => false,
    }
}

/// The address of a pod for a service, in the service's IP family.
fn pod_address(svc: &Service, p: &Pod) -> Option<EndpointAddress> {
    let spec = svc.spec.as_ref();
    let want_v6 = match spec.and_then(|s| s.ip_families.as_ref()).and_then(|f| f.first()) {
        Some(f) => f == "IPv6",
        None => match spec.and_then(|s| s.cluster_ip.as_deref()) {
            Some(ip) if !ip.is_empty() && ip != "None" => ip.contains(':'),
            _ => p.status.as_ref().and_then(|s| s.pod_ip.as_deref()).is_some_and(|ip| ip.contains(':')),
        },
    };
    let status = p.status.as_ref()?;
    let mut ips: Vec<&str> = status.pod_ips.iter().flatten().map(|i| i.ip.as_str()).collect();
    if ips.is_empty() {
        ips.extend(status.pod_ip.as_deref());
    }
    let ip = ips.into_iter().find(|ip| ip.contains(':') == want_v6)?;
    Some(EndpointAddress {
        ip: ip.to_string(),
        node_name: Some(p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()),
        target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("Pod".into()),
            namespace: p.metadata.namespace.clone(),
            name: p.metadata.name.clone(),
            uid: p.metadata.uid.clone(),
            ..Default::default()
        }),
        hostname: None,
    })
}

/// The subsets a service's pods make, before repacking.
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let tolerate_unready = spec.publish_not_ready_addresses.unwrap_or(false);
    let mut out = Vec::new();
    for p in pods {
        if !util::should_pod_be_in_endpoints(p, tolerate_unready) {
            continue;
        }
        let Some(mut addr) = pod_address(svc, p) else { continue };
        if util::should_set_hostname(p, svc) {
            addr.hostname = p.spec.as_ref().and_then(|s| s.hostname.clone());
        }
        let ready = tolerate_unready || util::is_pod_ready(p);
        let subset = |ports: Option<Vec<EndpointPort>>| {
            if ready {
                EndpointSubset { addresses: Some(vec![addr.clone()]), ports, not_ready_addresses: None }
            } else {
                EndpointSubset { not_ready_addresses: Some(vec![addr.clone()]), ports, addresses: None }
            }
        };
        let ports = spec.ports.clone().unwrap_or_default();
        if ports.is_empty() {
            // A headless service may have no ports.
            if spec.cluster_ip.as_deref() == Some("None") {
                out.push(subset(None));
            }
            continue;
        }
        for sp in &ports {
            let Some(port) = util::find_port(p, sp) else { continue };
            out.push(subset(Some(vec![EndpointPort {
                name: sp.name.clone(),
                port,
                protocol: sp.protocol.clone(),
                app_protocol: sp.app_protocol.clone(),
            }])));
        }
    }
    subsets::repack(out)
}

fn labels_equal(a: Option<&BTreeMap<String, String>>, b: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    a.unwrap_or(&empty) == b.unwrap_or(&empty)
}

impl EndpointsController {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        let recorder = Recorder::new(ctx.client.clone(), "endpoint-controller");
        Arc::new(Self { ctx, triggers: TriggerTimeTracker::default(), recorder, queue: WorkQueue::new() })
    }

    /// Brings the Endpoints of the service `key` in line with its pods.
    pub async fn sync(&self, service_key: &str) -> Result<(), Error> {
        let (ns, name) = split_key(service_key);
        let services = self.ctx.informers.get::<Service>();
        let Some(svc) = services.store.get(&ObjectRef::new(name).within(ns)) else {
            let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), ns);
            let leader = self
                .ctx
                .informers
                .get::<Endpoints>()
                .store
                .get(&ObjectRef::new(name).within(ns))
                .is_some_and(|e| e.annotations().contains_key(LEADER_ANNOTATION));
            if !leader {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.triggers.delete(ns, name);
            return Ok(());
        };
        let spec = svc.spec.clone().unwrap_or_default();
        if spec.type_.as_deref() == Some("ExternalName") || spec.selector.is_none() {
            return Ok(());
        }
        let pods = util::pods_for_service(&self.ctx.informers.get::<Pod>().store, &svc);
        // Computed even when nothing is written, to keep the tracker's state current.
        let trigger = self.triggers.compute(&svc, &pods);
        let subsets = desired_subsets(&svc, &pods);
        let cached = self.ctx.informers.get::<Endpoints>().store.get(&ObjectRef::new(name).within(ns));
        let current = match cached {
            Some(e) => (*e).clone(),
            None => Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    namespace: Some(ns.to_string()),
                    labels: svc.metadata.labels.clone(),
                    ..Default::default()
                },
                subsets: None,
            },
        };
        let create = current.metadata.resource_version.as_deref().unwrap_or("").is_empty();
        let mut compare_labels = current.metadata.labels.clone();
        if let Some(l) = compare_labels.as_mut() {
            l.remove(HEADLESS_LABEL);
        }
        let current_subsets = current.subsets.clone().unwrap_or_default();
        if !create
            && subsets::equal_ignoring_resource_version(&current_subsets, &subsets)
            && labels_equal(compare_labels.as_ref(), svc.metadata.labels.as_ref())
            && subsets::capacity_annotation_correct(current.metadata.annotations.as_ref(), &current_subsets)
        {
            return Ok(());
        }
        let mut new = current.clone();
        let mut subsets = subsets;
        let mut annotations = new.metadata.annotations.take().unwrap_or_default();
        match trigger {
            Some(t) => {
                annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), util::format_time(t));
            }
            None => {
                annotations.remove(LAST_CHANGE_TRIGGER_TIME);
            }
        }
        if subsets::truncate(&mut subsets) {
            annotations.insert(subsets::OVER_CAPACITY.into(), "truncated".into());
        } else {
            annotations.remove(subsets::OVER_CAPACITY);
        }
        new.metadata.annotations = Some(annotations);
        new.subsets = (!subsets.is_empty()).then_some(subsets);
        let mut labels = svc.metadata.labels.clone().unwrap_or_default();
        if util::is_service_ip_set(&svc) {
            labels.remove(HEADLESS_LABEL);
        } else {
            labels.insert(HEADLESS_LABEL.into(), String::new());
        }
        new.metadata.labels = Some(labels);
        let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), ns);
        let result = if create {
            api.create(&PostParams::default(), &new).await
        } else {
            api.replace(name, &PostParams::default(), &new).await
        };
        match result {
            Ok(_) => Ok(()),
            // Creates keep failing in a terminating namespace: drop the key.
            Err(e) if create && namespace_terminating(&e) => Ok(()),
            Err(e) => {
                let (reason, message) = if create {
                    (
                        "FailedToCreateEndpoint",
                        format!("Failed to create endpoint for service {ns}/{name}: {e}"),
                    )
                } else {
                    ("FailedToUpdateEndpoint", format!("Failed to update endpoint {ns}/{name}: {e}"))
                };
                self.recorder.publish(&new, EventType::Warning, reason, &message).await;
                Err(e.into())
            }
        }
    }

    async fn worker(&self, service_key: String) -> Outcome {
        match self.sync(&service_key).await {
            Ok(()) => Outcome::Forget,
            Err(e) if self.queue.num_requeues(&service_key) < MAX_RETRIES => {
                tracing::debug!(service = %service_key, error = %e, "endpoint controller: error syncing, retrying");
                Outcome::Requeue
            }
            Err(e) => {
                tracing::info!(service = %service_key, error = %e, "endpoint controller: dropping service out of the queue");
                Outcome::Forget
            }
        }
    }
}

/// Runs the Endpoints controller.
pub async fn run(ctx: Arc<Context>) {
    let c = EndpointsController::new(ctx.clone());
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let endpoints = ctx.informers.get::<Endpoints>();
    let (svc_changes, pod_changes, ep_changes) = (services.changes(), pods.changes(), endpoints.changes());
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
    // Only deletions matter: the Endpoints of a live service are rewritten by its sync.
    let on_endpoints = ep_changes.for_each(|e| {
        if endpoints.store.get(&ObjectRef::from_obj(&*e)).is_none() {
            q.add(key(&e.namespace().unwrap_or_default(), &e.name_any()));
        }
        async {}
    });
    let startup = async {
        if !util::wait_for_cache(&services.store).await
            || !util::wait_for_cache(&pods.store).await
            || !util::wait_for_cache(&endpoints.store).await
        {
            return;
        }
        // Every service once, and every Endpoints object in case its service is gone.
        for s in services.store.state() {
            q.add(key(&s.namespace().unwrap_or_default(), &s.name_any()));
        }
        for e in endpoints.store.state() {
            q.add(key(&e.namespace().unwrap_or_default(), &e.name_any()));
        }
        let worker = c.clone();
        workqueue::run_workers(q.clone(), WORKERS, move |k: String| {
            let worker = worker.clone();
            async move { worker.worker(k).await }
        })
        .await;
    };
    tokio::join!(on_services, on_pods, on_endpoints, startup);
}

#[cfg(test)]
mod tests;
