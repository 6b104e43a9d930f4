//! The DaemonSet controller (upstream's `pkg/controller/daemon`): one daemon pod on every
//! node the template selects and tolerates (nodes that join included, pods on nodes
//! that leave or stop qualifying deleted), each pod bound to its node by node affinity
//! `matchFields metadata.name In [node]` so the default scheduler places it, rolled to
//! new templates through ControllerRevisions (RollingUpdate with maxUnavailable /
//! maxSurge, or OnDelete), with upstream's status counts and Events.

pub mod expectations;
pub mod history;
pub mod manage;
pub mod predicates;
pub mod rolling;
pub mod status;
pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apimachinery::labels::Selector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::history::claim::RefManager;
use crate::runtime::{EventType, Recorder, controller_of, key_of};
use crate::{Context, ERROR_REQUEUE, Error, Result};
use expectations::Expectations;
use manage::{FailedPodsBackoff, Plan, Syncer};

/// The component name on this controller's Events.
pub const COMPONENT: &str = "daemonset-controller";

/// What the DaemonSet controller keeps between syncs.
pub struct State {
    pub ctx: Arc<Context>,
    pub expectations: Expectations,
    pub backoff: FailedPodsBackoff,
}

impl State {
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx, expectations: Expectations::default(), backoff: FailedPodsBackoff::default() }
    }
}

fn selector_of(ds: &DaemonSet) -> Option<std::result::Result<Selector, apimachinery::labels::Error>> {
    let raw = serde_json::to_value(&ds.spec.as_ref()?.selector).unwrap_or_default();
    Some(Selector::from_label_selector(&raw))
}

fn selects_everything(ds: &DaemonSet) -> bool {
    ds.spec.as_ref().is_some_and(|s| {
        s.selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.selector.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    })
}

fn min_duration(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Syncs one DaemonSet: claims its revisions and pods, finds the current revision, makes
/// sure every eligible node has one pod (and others none), advances the rolling update,
/// prunes history and records the status.
pub async fn reconcile(ds: Arc<DaemonSet>, state: Arc<State>) -> Result<Action> {
    let ctx = &state.ctx;
    let key = key_of(ds.as_ref());
    let recorder = Recorder::new(ctx.client.clone(), COMPONENT);
    if selects_everything(&ds) {
        recorder
            .publish(
                ds.as_ref(),
                EventType::Warning,
                "SelectingAll",
                "This daemon set is selecting all pods. A non-empty selector is required.",
            )
            .await;
        return Ok(Action::await_change());
    }
    let selector = match selector_of(&ds) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            tracing::warn!(ds = %key, error = %e, "daemonset: invalid selector");
            return Ok(Action::await_change());
        }
        None => return Ok(Action::await_change()),
    };
    // Whether its revisions still exist once it is being deleted is unknowable; leave it.
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_default();
    let mut nodes = ctx.informers.get::<Node>().store.state();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let pod_store = ctx.informers.get::<Pod>().store;
    let refs = RefManager::new(ctx.client.clone(), ds.as_ref(), &selector);
    let uid = ds.metadata.uid.clone().unwrap_or_default();

    let revisions: Vec<_> = ctx
        .informers
        .get::<ControllerRevision>()
        .store
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let (revisions, errs) = refs.claim(revisions, |_| true).await;
    if let Some(e) = errs.into_iter().next() {
        return Err(e);
    }
    let candidates: Vec<_> = pod_store
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| controller_of(p.as_ref()).is_none_or(|c| c.uid == uid))
        .collect();
    let (claimed, errs) = refs.claim(candidates, |_| true).await;
    if let Some(e) = errs.into_iter().next() {
        return Err(e);
    }

    let (current, old) = history::construct(&ctx.client, &ds, revisions, &claimed).await?;
    let hash = current.labels().get(template::HASH_LABEL).cloned().unwrap_or_default();
    let now = ctx.clock.now();
    let by_node = manage::pods_by_node(&claimed, false);

    if !state.expectations.satisfied(&key, &pod_store) {
        let counts = status::count(&ds, &nodes, &by_node, &hash, now);
        status::store(&ctx.client, &ds, &counts, false).await?;
        return Ok(Action::requeue(Duration::from_secs(5)));
    }

    let syncer = Syncer { client: ctx.client.clone(), recorder, backoff: &state.backoff, now };
    let by_name: HashMap<String, Arc<Pod>> = claimed.iter().map(|p| (p.name_any(), p.clone())).collect();
    let mut requeue = None;
    let result = update(&state, &syncer, &ds, &nodes, &by_node, &by_name, &hash, &key, &mut requeue).await;
    let result = match result {
        Ok(()) => history::cleanup(&ctx.client, &ds, old, &claimed)
            .await
            .map_err(|e| Error::Invalid(format!("failed to clean up revisions of DaemonSet: {e}"))),
        Err(e) => Err(e),
    };
    let counts = status::count(&ds, &nodes, &by_node, &hash, now);
    let status_result = status::store(&ctx.client, &ds, &counts, true).await;
    result?;
    status_result?;

    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    if min_ready > 0 && counts.ready != counts.available {
        requeue = min_duration(requeue, Some(Duration::from_secs(min_ready as u64)));
    }
    Ok(requeue.map(Action::requeue).unwrap_or_else(Action::await_change))
}

/// The manage loop, then (once the cache has caught up) the rolling update.
#[allow(clippy::too_many_arguments)]
async fn update(
    state: &State,
    syncer: &Syncer<'_>,
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    by_name: &HashMap<String, Arc<Pod>>,
    hash: &str,
    key: &str,
    requeue: &mut Option<Duration>,
) -> Result<()> {
    let ns = ds.namespace().unwrap_or_default();
    let mut plan = Plan::default();
    for node in nodes {
        syncer.node_plan(ds, node, by_node, hash, &mut plan).await;
    }
    plan.delete.extend(manage::unscheduled_pods_without_node(nodes, by_node));
    *requeue = min_duration(*requeue, plan.requeue);
    let (created, deleted, errs) = syncer.sync_nodes(ds, &plan.delete, &plan.create_on, hash, by_name).await;
    state.expectations.expect(key, &ns, created, deleted);
    if let Some(e) = aggregate(errs) {
        return Err(e);
    }

    let pod_store = state.ctx.informers.get::<Pod>().store;
    if !state.expectations.satisfied(key, &pod_store) || template::is_on_delete(ds) {
        return Ok(());
    }
    let step = rolling::plan(ds, nodes, by_node.clone(), hash, syncer.now)?;
    let (created, deleted, errs) = syncer.sync_nodes(ds, &step.delete, &step.create_on, hash, by_name).await;
    state.expectations.expect(key, &ns, created, deleted);
    match aggregate(errs) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn aggregate(mut errs: Vec<Error>) -> Option<Error> {
    match errs.len() {
        0 => None,
        1 => Some(errs.remove(0)),
        _ => Some(Error::Invalid(format!(
            "[{}]",
            errs.iter().map(crate::history::error_text).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn error_policy(ds: Arc<DaemonSet>, err: &Error, _: Arc<State>) -> Action {
    tracing::debug!(ds = %key_of(ds.as_ref()), error = %err, "daemonset controller: will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// The DaemonSets a pod concerns: its controller if that is a DaemonSet, else (an
/// orphan) every DaemonSet in its namespace whose selector matches it.
fn sets_for_pod(sets: &Store<DaemonSet>, pod: &Pod) -> Vec<ObjectRef<DaemonSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(c) = controller_of(pod) {
        if c.kind == "DaemonSet" && c.api_version == "apps/v1" {
            return vec![ObjectRef::new(&c.name).within(&ns)];
        }
        return Vec::new();
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sets.state()
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|s| matches!(selector_of(s), Some(Ok(sel)) if !sel.is_empty() && sel.matches(&labels)))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// What of a node decides where daemon pods run: its labels and taints. Heartbeats and
/// other status changes leave it unchanged, so they do not resync every DaemonSet.
fn node_fingerprint(node: &Node) -> String {
    let labels = serde_json::to_string(&node.metadata.labels).unwrap_or_default();
    let taints = serde_json::to_string(&node.spec.as_ref().map(|s| &s.taints)).unwrap_or_default();
    format!("{labels}|{taints}")
}

/// Runs the DaemonSet controller until its streams end.
pub async fn run(ctx: Arc<Context>) {
    let sets = ctx.informers.get::<DaemonSet>();
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let revisions = ctx.informers.get::<ControllerRevision>();
    // A sync over a cache that has not listed yet would create pods that exist.
    for ready in [
        crate::history::cache_synced(&sets.store).await,
        crate::history::cache_synced(&pods.store).await,
        crate::history::cache_synced(&nodes.store).await,
        crate::history::cache_synced(&revisions.store).await,
    ] {
        if !ready {
            tracing::warn!("daemonset controller: an informer stopped before it was ready");
            return;
        }
    }
    let set_store = sets.store.clone();
    let node_store = nodes.store.clone();
    let seen: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let node_changes = nodes.changes().filter_map(move |node: Arc<Node>| {
        let name = node.name_any();
        let present = node_store.get(&ObjectRef::new(&name)).is_some();
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let changed = if present {
            let fp = node_fingerprint(&node);
            seen.insert(name, fp.clone()).is_none_or(|old| old != fp)
        } else {
            seen.remove(&name).is_some()
        };
        futures::future::ready(changed.then_some(()))
    });
    Controller::for_shared_stream(sets.changes(), sets.store.clone())
        .owns_shared_stream(revisions.changes())
        .watches_shared_stream(pods.changes(), move |pod: Arc<Pod>| sets_for_pod(&set_store, &pod))
        .reconcile_all_on(node_changes)
        .run(reconcile, error_policy, Arc::new(State::new(ctx)))
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests;
