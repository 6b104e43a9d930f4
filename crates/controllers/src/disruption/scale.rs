//! The expected number of pods behind a budget: the sum of the scales of the pods'
//! controllers (`getExpectedScale`). ReplicationControllers, Deployments (through their
//! ReplicaSets), ReplicaSets and StatefulSets are read from the caches; any other
//! controller through its `scale` subresource, found by discovery.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::runtime::reflector::ObjectRef;

use super::State;
use crate::runtime::controller_of;

/// Splits `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
fn group_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

fn is(r: &OwnerReference, kind: &str, groups: &[&str]) -> bool {
    r.kind == kind && groups.contains(&group_version(&r.api_version).0)
}

/// (controller uid, replicas) of the controller a pod's controllerRef names, if found: from
/// the caches for the built-in workload kinds, else (or when the cache has no match, as for
/// a ReplicaSet whose Deployment is gone) through the scale subresource.
async fn find(r: &OwnerReference, ns: &str, st: &State) -> Result<Option<(String, i32)>, String> {
    match cached(r, ns, st) {
        Some(found) => Ok(Some(found)),
        None => scale_subresource(r, ns, st).await,
    }
}

fn cached(r: &OwnerReference, ns: &str, st: &State) -> Option<(String, i32)> {
    let inf = &st.ctx.informers;
    if is(r, "ReplicationController", &[""]) {
        let rc = inf.get::<ReplicationController>().store.get(&ObjectRef::new(&r.name).within(ns));
        return rc
            .filter(|rc| rc.metadata.uid.as_deref() == Some(r.uid.as_str()))
            .map(|rc| (r.uid.clone(), rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)));
    }
    if is(r, "ReplicaSet", &["apps", "extensions"]) {
        let rs = inf.get::<ReplicaSet>().store.get(&ObjectRef::new(&r.name).within(ns))?;
        if rs.metadata.uid.as_deref() != Some(r.uid.as_str()) {
            return None;
        }
        // A ReplicaSet of a Deployment counts as its Deployment.
        if let Some(owner) = controller_of(rs.as_ref()) {
            if is(owner, "Deployment", &["apps", "extensions"]) {
                let d = inf.get::<Deployment>().store.get(&ObjectRef::new(&owner.name).within(ns));
                return d
                    .filter(|d| d.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                    .map(|d| (owner.uid.clone(), d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)));
            }
            if owner.kind == "Deployment" {
                return None;
            }
        }
        return Some((r.uid.clone(), rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)));
    }
    if is(r, "StatefulSet", &["apps"]) {
        let ss = inf.get::<StatefulSet>().store.get(&ObjectRef::new(&r.name).within(ns));
        return ss
            .filter(|ss| ss.metadata.uid.as_deref() == Some(r.uid.as_str()))
            .map(|ss| (r.uid.clone(), ss.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)));
    }
    None
}

/// A controller's `scale` subresource, when its kind serves one.
async fn scale_subresource(
    r: &OwnerReference,
    ns: &str,
    st: &State,
) -> Result<Option<(String, i32)>, String> {
    let (group, version) = group_version(&r.api_version);
    let gvk = GroupVersionKind::gvk(group, version, &r.kind);
    let (ar, caps) = kube::discovery::pinned_kind(&st.ctx.client, &gvk)
        .await
        .map_err(|_| format!("no matches for kind \"{}\" in version \"{}\"", r.kind, r.api_version))?;
    let api: Api<DynamicObject> = Api::namespaced_with(st.ctx.client.clone(), ns, &ar);
    match api.get_scale(&r.name).await {
        Ok(scale) if scale.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
            Ok(Some((r.uid.clone(), scale.spec.and_then(|s| s.replicas).unwrap_or(0))))
        }
        Ok(_) => Ok(None),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            if caps.subresources.iter().any(|(sub, _)| sub.plural == "scale") {
                Ok(None)
            } else {
                let gr = if group.is_empty() { ar.plural.clone() } else { format!("{}.{group}", ar.plural) };
                Err(format!("{gr} does not implement the scale subresource"))
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The sum of the scales of the controllers of `pods`, and the names of pods that have
/// no controller (left out of the sum).
pub async fn expected_scale(pods: &[Arc<Pod>], st: &State) -> Result<(i32, Vec<String>), String> {
    let mut scales: BTreeMap<String, i32> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(r) = controller_of(pod.as_ref()) else {
            unmanaged.push(name);
            continue;
        };
        if scales.contains_key(&r.uid) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        match find(r, &ns, st).await? {
            Some((uid, replicas)) => {
                scales.insert(uid, replicas);
            }
            None => return Err(format!("found no controllers for pod {name:?}")),
        }
    }
    Ok((scales.values().sum(), unmanaged))
}
