//! A DaemonSet's ControllerRevisions (upstream's `daemon/update.go` history half): the
//! revision matching the current template is found (or snapshotted as `<ds>-<hash>`,
//! bumping `status.collisionCount` on a name clash), duplicates are folded into the
//! newest, and old revisions beyond `revisionHistoryLimit` are deleted unless a live pod
//! still carries their hash.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::template::{self, HASH_LABEL};
use crate::history;
use crate::runtime::controller_ref;
use crate::{Error, Result};

/// The revision data of a DaemonSet: a strategic merge patch replacing `spec.template`.
pub fn patch_of(ds: &DaemonSet) -> Result<Value> {
    let t = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut t = serde_json::to_value(&t).map_err(|e| Error::Invalid(format!("encoding template: {e}")))?;
    if let Value::Object(m) = &mut t {
        m.insert("$patch".into(), json!("replace"));
    }
    Ok(history::canonical(&json!({"spec": {"template": t}})))
}

/// Whether the revision holds the DaemonSet's current template.
pub fn matches(ds: &DaemonSet, revision: &ControllerRevision) -> Result<bool> {
    let patch = patch_of(ds)?;
    Ok(revision.data.as_ref().is_some_and(|d| history::canonical(&d.0) == patch))
}

fn hash_of(r: &ControllerRevision) -> &str {
    r.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)).map(String::as_str).unwrap_or("")
}

/// The current revision and the old ones, creating or renumbering the current one so it
/// is the newest.
pub async fn construct(
    client: &Client,
    ds: &DaemonSet,
    revisions: Vec<Arc<ControllerRevision>>,
    pods: &[Arc<Pod>],
) -> Result<(ControllerRevision, Vec<Arc<ControllerRevision>>)> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ds.namespace().unwrap_or_default());
    let mut current = Vec::new();
    let mut old = Vec::new();
    for mut r in revisions {
        if !r.metadata.labels.as_ref().is_some_and(|l| l.contains_key(HASH_LABEL)) {
            // Revisions from before the hash label carry their name as the hash.
            let mut updated = (*r).clone();
            updated
                .metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(HASH_LABEL.into(), r.name_any());
            r = Arc::new(api.replace(&r.name_any(), &PostParams::default(), &updated).await?);
        }
        if matches(ds, &r)? { current.push(r) } else { old.push(r) }
    }
    let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let cur = if current.is_empty() {
        snapshot(client, ds, next).await?
    } else {
        let cur = dedup(client, ds, current, pods).await?;
        if cur.revision < next {
            let mut updated = cur.clone();
            updated.revision = next;
            api.replace(&cur.name_any(), &PostParams::default(), &updated).await?
        } else {
            cur
        }
    };
    Ok((cur, old))
}

/// Keeps the newest of several revisions holding the current template: pods labelled
/// with the others' hashes are relabelled, and the others deleted.
async fn dedup(
    client: &Client,
    ds: &DaemonSet,
    current: Vec<Arc<ControllerRevision>>,
    pods: &[Arc<Pod>],
) -> Result<ControllerRevision> {
    let Some(keep) = current.iter().max_by_key(|r| r.revision).cloned() else {
        return Err(Error::Invalid("no current revision to keep".into()));
    };
    if current.len() == 1 {
        return Ok((*keep).clone());
    }
    let ns = ds.namespace().unwrap_or_default();
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let keep_hash = hash_of(&keep).to_string();
    for r in current.iter().filter(|r| r.name_any() != keep.name_any()) {
        for pod in pods {
            let label = pod.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)).map(String::as_str);
            if label != Some(keep_hash.as_str()) {
                let patch = json!({"metadata": {"labels": {HASH_LABEL: keep_hash}}});
                pod_api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(&patch)).await?;
            }
        }
        history::delete_revision(client, r).await?;
    }
    Ok((*keep).clone())
}

/// Creates the revision of the current template. A different revision holding the name
/// bumps `status.collisionCount` (on a fresh read of the DaemonSet) and fails, so the
/// next sync hashes with the new count.
async fn snapshot(client: &Client, ds: &DaemonSet, number: i64) -> Result<ControllerRevision> {
    let patch = patch_of(ds)?;
    let collision = ds.status.as_ref().and_then(|s| s.collision_count);
    let t = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let hash = template::compute_hash(&t, collision);
    let name = format!("{}-{hash}", ds.name_any());
    let mut labels = t.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash);
    let revision = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone().filter(|a| !a.is_empty()),
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        data: Some(RawExtension(patch)),
        revision: number,
    };
    let ns = ds.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let outer = match api.create(&PostParams::default(), &revision).await {
        Ok(r) => return Ok(r),
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => s,
        Err(e) => return Err(e.into()),
    };
    let existing = api.get(&name).await?;
    if matches(ds, &existing)? {
        return Ok(existing);
    }
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    let mut fresh = sets.get(&ds.name_any()).await?;
    let fresh_count = fresh.status.as_ref().and_then(|s| s.collision_count);
    if fresh_count != collision {
        return Err(Error::Invalid(format!(
            "found a stale collision count ({collision:?}, expected {fresh_count:?}) of DaemonSet {:?} while processing; will retry until it is updated",
            ds.name_any()
        )));
    }
    let status = fresh.status.get_or_insert_with(Default::default);
    status.collision_count = Some(collision.unwrap_or(0) + 1);
    sets.replace_status(&ds.name_any(), &PostParams::default(), &fresh).await?;
    tracing::info!(ds = %crate::runtime::key_of(ds), "daemonset: hash collision, bumped collisionCount");
    Err(Error::Kube(kube::Error::Api(outer)))
}

/// Deletes the oldest old revisions beyond `revisionHistoryLimit`, sparing those whose
/// hash a live pod (terminal ones included) still carries.
pub async fn cleanup(
    client: &Client,
    ds: &DaemonSet,
    mut old: Vec<Arc<ControllerRevision>>,
    pods: &[Arc<Pod>],
) -> Result<()> {
    let limit = ds.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10).max(0) as usize;
    let mut to_kill = old.len().saturating_sub(limit);
    if to_kill == 0 {
        return Ok(());
    }
    let live: HashSet<&str> = pods
        .iter()
        .filter_map(|p| p.metadata.labels.as_ref()?.get(HASH_LABEL).map(String::as_str))
        .filter(|h| !h.is_empty())
        .collect();
    old.sort_by_key(|r| r.revision);
    for r in &old {
        if to_kill == 0 {
            break;
        }
        if live.contains(hash_of(r)) {
            continue;
        }
        history::delete_revision(client, r).await?;
        to_kill -= 1;
    }
    Ok(())
}
