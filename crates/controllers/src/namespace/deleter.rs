//! Emptying a terminating namespace (upstream `namespaced_resources_deleter.go`): every
//! namespaced resource that discovery reports as deletable is deleted by collection (or
//! item by item where deletecollection is not served), with Background propagation so the
//! garbage collector adds no orphan finalizer; what remains is counted, and pods' grace
//! periods give an estimate of how long to wait before looking again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, PropagationPolicy};

use super::conditions::Updater;
use crate::garbagecollector::discovery::{self, ResourceInfo};

/// How long to wait for objects whose finalizers other controllers must remove.
pub const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

/// What deleting one resource's content left behind.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Remaining {
    /// Seconds to wait before the content is expected gone; 0 when nothing is expected.
    pub estimate: i64,
    pub count: usize,
    pub finalizers: BTreeMap<String, usize>,
}

/// A failed step of a deletion run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("unexpected items still remain in namespace: {namespace} for gvr: {gvr}")]
    ItemsRemain { namespace: String, gvr: String },
    #[error("{0}")]
    Discovery(String),
}

fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn is_status(e: &kube::Error, codes: &[u16]) -> bool {
    matches!(e, kube::Error::Api(s) if codes.contains(&s.code))
}

/// `group/version, Resource=plural`, as Go prints a GroupVersionResource.
pub fn gvr_string(r: &ResourceInfo) -> String {
    format!("{}/{}, Resource={}", r.group, r.version, r.plural)
}

/// The longest grace period of the namespace's pods that are still running, or 0 once
/// that long has passed since the namespace was deleted.
pub async fn estimate_pod_grace(
    client: &kube::Client,
    namespace: &str,
    deleted_at: jiff::Timestamp,
    now: jiff::Timestamp,
) -> Result<i64, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut estimate = 0;
    for p in pods.list(&ListParams::default()).await?.items {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        if phase == "Succeeded" || phase == "Failed" {
            continue;
        }
        if let Some(grace) = p.spec.as_ref().and_then(|s| s.termination_grace_period_seconds) {
            estimate = estimate.max(grace);
        }
    }
    let elapsed = now.duration_since(deleted_at).as_secs();
    Ok(if elapsed >= estimate { 0 } else { estimate })
}

/// Deletes the content of one resource in `namespace` and reports what remains.
pub async fn delete_resource_content(
    client: &kube::Client,
    r: &ResourceInfo,
    namespace: &str,
    deleted_at: jiff::Timestamp,
    now: jiff::Timestamp,
) -> (Remaining, Result<(), Error>) {
    let estimate = if r.group.is_empty() && r.plural == "pods" {
        match estimate_pod_grace(client, namespace, deleted_at, now).await {
            Ok(e) => e,
            Err(e) => return (Remaining::default(), Err(e.into())),
        }
    } else {
        0
    };
    let with_estimate = |e: Error| (Remaining { estimate, ..Default::default() }, Err(e));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &r.api_resource());
    let background =
        DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
    let mut collection_done = false;
    if r.supports("deletecollection") {
        match api.delete_collection(&background, &ListParams::default()).await {
            Ok(_) => collection_done = true,
            Err(e) if is_status(&e, &[404, 405]) => {}
            Err(e) => return with_estimate(e.into()),
        }
    }
    if !collection_done {
        if !r.supports("list") {
            return (Remaining { estimate, ..Default::default() }, Ok(()));
        }
        let items = match api.list_metadata(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(e) if is_status(&e, &[404, 405]) => {
                return (Remaining { estimate, ..Default::default() }, Ok(()));
            }
            Err(e) => return with_estimate(e.into()),
        };
        for item in items {
            let name = item.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &background).await {
                Ok(_) => {}
                Err(e) if is_status(&e, &[404, 405]) => {}
                Err(e) => return with_estimate(e.into()),
            }
        }
    }
    if !r.supports("list") {
        return (Remaining { estimate, ..Default::default() }, Ok(()));
    }
    let left = match api.list_metadata(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) if is_status(&e, &[404, 405]) => {
            return (Remaining { estimate, ..Default::default() }, Ok(()));
        }
        Err(e) => return with_estimate(e.into()),
    };
    if left.is_empty() {
        return (Remaining::default(), Ok(()));
    }
    let mut finalizers = BTreeMap::new();
    for item in &left {
        for f in item.metadata.finalizers.iter().flatten() {
            *finalizers.entry(f.clone()).or_insert(0) += 1;
        }
    }
    let count = left.len();
    if estimate != 0 {
        return (Remaining { estimate, count, finalizers }, Ok(()));
    }
    if !finalizers.is_empty() {
        return (Remaining { estimate: FINALIZER_ESTIMATE_SECONDS, count, finalizers }, Ok(()));
    }
    // Nothing explains why these are still here.
    (
        Remaining { estimate: 0, count, finalizers },
        Err(Error::ItemsRemain { namespace: namespace.to_string(), gvr: gvr_string(r) }),
    )
}

/// Deletes everything in the namespace; returns the estimate of seconds until the rest is
/// gone (0 when empty) and the run's errors. Writes the namespace's deletion conditions
/// when they change.
pub async fn delete_all_content(
    client: &kube::Client,
    ns: &Namespace,
    now: jiff::Timestamp,
) -> (i64, Vec<Error>) {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let deleted_at = ns.metadata.deletion_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let mut errors = Vec::new();
    let mut updater = Updater::default();
    let resources = match discovery::discover(client).await {
        Ok(found) => {
            if let Some(msg) = found.failure_message() {
                updater.discovery_failed(format!(
                    "Discovery failed for some groups, {} failing: {msg}",
                    found.failed.len()
                ));
                errors.push(Error::Discovery(msg));
            }
            found.preferred.into_iter().filter(|r| r.namespaced && r.supports("delete")).collect()
        }
        Err(e) => {
            updater.discovery_failed(message(&e));
            errors.push(Error::Discovery(message(&e)));
            Vec::new()
        }
    };
    let mut estimate = 0;
    let mut by_resource = BTreeMap::new();
    let mut by_finalizer = BTreeMap::new();
    for r in &resources {
        let (left, result) = delete_resource_content(client, r, &name, deleted_at, now).await;
        if let Err(e) = result {
            updater.content_failed(e.to_string());
            errors.push(e);
        }
        estimate = estimate.max(left.estimate);
        if left.count > 0 {
            by_resource.insert(r.group_resource(), left.count);
            for (f, n) in left.finalizers {
                *by_finalizer.entry(f).or_insert(0) += n;
            }
        }
    }
    updater.remaining(&by_resource, &by_finalizer);
    let mut updated = ns.clone();
    if updater.update(updated.status.get_or_insert_with(Default::default), now) {
        let api: Api<Namespace> = Api::all(client.clone());
        if let Err(e) = api.replace_status(&name, &PostParams::default(), &updated).await {
            tracing::warn!(namespace = %name, error = %e, "namespace controller: couldn't update status conditions");
        }
    }
    (estimate, errors)
}
