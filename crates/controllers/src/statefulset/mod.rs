//! The StatefulSet controller (upstream's `pkg/controller/statefulset`): members with stable
//! ordinal names, hostnames and claims, created in order and each Running and Ready before
//! the next (OrderedReady) or all at once (Parallel), removed from the highest ordinal
//! down, and rolled to new templates through ControllerRevisions (RollingUpdate with a
//! partition, or OnDelete).

pub mod control;
pub mod identity;
pub mod pod_control;
pub mod rolling;

use std::sync::Arc;
use std::time::Duration;

use apimachinery::labels::Selector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::history::{self, claim::RefManager};
use crate::runtime::{Recorder, controller_of};
use crate::{Context, ERROR_REQUEUE, Error, Result};
use control::Control;
use pod_control::PodControl;

/// The component name on this controller's Events.
pub const COMPONENT: &str = "statefulset-controller";

/// The set's selector; `None` (logged) when it cannot be parsed, which no retry fixes.
fn selector_of(set: &StatefulSet) -> Option<Selector> {
    let raw = set.spec.as_ref().map(|s| serde_json::to_value(&s.selector).unwrap_or_default())?;
    match Selector::from_label_selector(&raw) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(set = %crate::runtime::key_of(set), error = %e, "statefulset: invalid selector");
            None
        }
    }
}

/// Syncs one StatefulSet: adopts orphaned revisions, claims its pods, runs the update
/// logic, records the status and prunes history.
pub async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action> {
    tracing::debug!(set = %crate::runtime::key_of(set.as_ref()), "statefulset: sync");
    let Some(selector) = selector_of(&set) else { return Ok(Action::await_change()) };
    let ns = set.namespace().unwrap_or_default();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let revision_store = ctx.informers.get::<ControllerRevision>().store;

    // Orphaned revisions the set selects become its own.
    let owned = history::list_revisions(&revision_store, &ns, &selector, &uid);
    let orphans: Vec<_> = owned.iter().filter(|r| controller_of(r.as_ref()).is_none()).cloned().collect();
    let refs = RefManager::new(ctx.client.clone(), set.as_ref(), &selector);
    if !orphans.is_empty() {
        let (_, errs) = refs.claim(orphans, |_| true).await;
        if let Some(e) = errs.into_iter().next() {
            return Err(Error::Invalid(format!("can't adopt ControllerRevisions: {e}")));
        }
    }

    let pod_store = ctx.informers.get::<Pod>().store;
    let in_ns: Vec<Arc<Pod>> = pod_store
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let (claimed, errs) = refs.claim(in_ns, |p| identity::is_member_of(&set, p)).await;
    if let Some(e) = errs.into_iter().next() {
        return Err(e);
    }

    let pc = PodControl {
        client: ctx.client.clone(),
        recorder: Recorder::new(ctx.client.clone(), COMPONENT),
        claims: ctx.informers.get::<PersistentVolumeClaim>().store,
    };
    let ctl = Control { client: ctx.client.clone(), pods: &pc, now: ctx.clock.now() };
    let mut revisions = history::list_revisions(&revision_store, &ns, &selector, &uid);
    history::sort_revisions(&mut revisions);

    let (current, update, collision_count) = match control::revisions(&ctx.client, &set, &revisions).await {
        Ok(r) => r,
        Err(e) => {
            if let Err(te) = control::truncate_history(&ctx.client, &set, &claimed, &revisions, &[]).await {
                tracing::debug!(error = %te, "statefulset: pruning history failed");
            }
            return Err(e);
        }
    };
    let (status, result) = ctl.update_set(&set, &current, &update, collision_count, &claimed).await;
    let mut status_result = Ok(None);
    if let Some(status) = status {
        status_result = control::write_status(&ctx.client, &set, status).await.map(Some);
    }
    let live =
        [current.metadata.name.as_deref().unwrap_or(""), update.metadata.name.as_deref().unwrap_or("")];
    let truncated = control::truncate_history(&ctx.client, &set, &claimed, &revisions, &live).await;
    result?;
    let status = status_result?;
    truncated?;

    let min_ready = set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    if let Some(status) = status
        && min_ready > 0
        && status.available_replicas != identity::replicas(&set)
    {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::await_change())
}

fn error_policy(set: Arc<StatefulSet>, err: &Error, _: Arc<Context>) -> Action {
    tracing::debug!(set = %crate::runtime::key_of(set.as_ref()), error = %err, "statefulset controller: will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// The sets a pod concerns: its controller if that is a StatefulSet, else (an orphan)
/// every set in its namespace whose selector matches it.
fn sets_for_pod(sets: &Store<StatefulSet>, pod: &Pod) -> Vec<ObjectRef<StatefulSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(c) = controller_of(pod) {
        if c.kind == "StatefulSet" && c.api_version == "apps/v1" {
            return vec![ObjectRef::new(&c.name).within(&ns)];
        }
        return Vec::new();
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sets.state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|s| selector_of(s).is_some_and(|sel| !sel.is_empty() && sel.matches(&labels)))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The sets a claim concerns: a set that owns it, or the set of a member pod that owns it.
fn sets_for_claim(claim: &PersistentVolumeClaim) -> Vec<ObjectRef<StatefulSet>> {
    let ns = claim.namespace().unwrap_or_default();
    claim
        .owner_references()
        .iter()
        .filter_map(|r| match r.kind.as_str() {
            "StatefulSet" => Some(r.name.clone()),
            "Pod" => {
                let (parent, ordinal) = identity::parent_and_ordinal(&r.name);
                (ordinal >= 0).then(|| parent.to_string())
            }
            _ => None,
        })
        .map(|name| ObjectRef::new(&name).within(&ns))
        .collect()
}

/// Runs the StatefulSet controller until its streams end.
pub async fn run(ctx: Arc<Context>) {
    let sets = ctx.informers.get::<StatefulSet>();
    let pods = ctx.informers.get::<Pod>();
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let revisions = ctx.informers.get::<ControllerRevision>();
    // A sync over a cache that has not listed yet would recreate what exists.
    for ready in [
        history::cache_synced(&sets.store).await,
        history::cache_synced(&pods.store).await,
        history::cache_synced(&claims.store).await,
        history::cache_synced(&revisions.store).await,
    ] {
        if !ready {
            tracing::warn!("statefulset controller: an informer stopped before it was ready");
            return;
        }
    }
    tracing::debug!("statefulset controller: caches synced, starting");
    let set_store = sets.store.clone();
    Controller::for_shared_stream(sets.changes(), sets.store.clone())
        .watches_shared_stream(pods.changes(), move |pod: Arc<Pod>| sets_for_pod(&set_store, &pod))
        .watches_shared_stream(claims.changes(), |claim: Arc<PersistentVolumeClaim>| sets_for_claim(&claim))
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests;
