//! The disruption controller: keeps each PodDisruptionBudget's status (expected, healthy
//! and desired pod counts, disruptions allowed, the `DisruptionAllowed` condition) in step
//! with its pods, as upstream `pkg/controller/disruption` does. The API server's eviction
//! subresource reads that status to allow or refuse evictions (`kubectl drain`).
//!
//! Also resets stale `DisruptionTarget` pod conditions: a pod marked for disruption that is
//! still not being deleted two minutes later gets the condition set back to False.

mod scale;
mod stale;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::runtime::{EventType, Recorder};
use crate::{Context, ERROR_REQUEUE, Error, Result};

/// How long a pod listed in `status.disruptedPods` is expected to take to be deleted.
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
/// The condition type on PodDisruptionBudgets.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
/// After a failed sync (for example a pod whose controller cannot be found), look again this soon.
const FAILED_RETRY: Duration = Duration::from_secs(30);

/// Waits until an informer's cache has listed everything once; false if it never will.
///
/// `Store::wait_until_ready` keeps only the waker of the task that polled it last, so when
/// several controllers wait on one shared cache at once some are never woken; polling it
/// again every 100ms sidesteps that. Every store a controller here reads is waited for with
/// this before the controller starts (the `Controller` runner's own wait then finds the
/// store ready at once).
pub(crate) async fn cache_synced<K>(store: &Store<K>) -> bool
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await {
            Ok(ready) => return ready.is_ok(),
            Err(_) => continue,
        }
    }
}

/// The disruption controller's shared state.
pub struct State {
    pub ctx: Arc<Context>,
    recorder: Recorder,
}

impl State {
    pub fn new(ctx: Arc<Context>) -> Self {
        let recorder = Recorder::new(ctx.client.clone(), "controllermanager");
        State { ctx, recorder }
    }
}

/// Whether a pod has condition Ready=True (`IsPodReady`).
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `intstr.GetScaledValueFromIntOrPercent`: an integer as is, a percentage of `total`
/// rounded up.
pub fn scaled_value(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(num) = s.strip_suffix('%') else {
                return Err("invalid value for IntOrString: invalid type: string is not a percentage".into());
            };
            let p: i64 = num
                .parse()
                .map_err(|e| format!("invalid value for IntOrString: invalid value {s:?}: {e}"))?;
            Ok(((p * total as i64) as f64 / 100.0).ceil() as i32)
        }
    }
}

/// The pods a budget covers: those of its namespace its selector matches (no selector
/// matches none, an empty one every pod).
pub fn pods_for(pdb: &PodDisruptionBudget, pods: &Store<Pod>) -> Result<Vec<Arc<Pod>>, String> {
    let ns = pdb.namespace().unwrap_or_default();
    let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
    let sel = match selector {
        None => apimachinery::labels::Selector::nothing(),
        Some(s) => {
            let v = serde_json::to_value(s).map_err(|e| e.to_string())?;
            apimachinery::labels::Selector::from_label_selector(&v).map_err(|e| e.to_string())?
        }
    };
    Ok(pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| sel.matches(p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
        .collect())
}

/// The status a budget should have, before the condition is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub expected: i32,
    pub desired: i32,
    pub current_healthy: i32,
    pub disrupted: BTreeMap<String, Time>,
    /// When an entry of `disrupted` expires and the budget must be looked at again.
    pub recheck: Option<jiff::Timestamp>,
}

/// `expectedCount` and `desiredHealthy` (`getExpectedPodCount`), plus the names of pods
/// without a controller, which a percentage or maxUnavailable cannot account for.
async fn expected_counts(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    st: &State,
) -> Result<(i32, i32, Vec<String>), String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max_unavailable) = &spec.max_unavailable {
        let (expected, unmanaged) = scale::expected_scale(pods, st).await?;
        let max = scaled_value(max_unavailable, expected)?;
        return Ok((expected, (expected - max).max(0), unmanaged));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((pods.len() as i32, *n, Vec::new())),
        Some(min @ IntOrString::String(_)) => {
            let (expected, unmanaged) = scale::expected_scale(pods, st).await?;
            Ok((expected, scaled_value(min, expected)?, unmanaged))
        }
        None => Ok((0, 0, Vec::new())),
    }
}

/// Keeps the `disruptedPods` entries of pods that exist, are not being deleted yet, and
/// were evicted less than [`DELETION_TIMEOUT`] ago; returns the expired ones too.
pub fn disrupted_pods(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    now: jiff::Timestamp,
) -> (BTreeMap<String, Time>, Option<jiff::Timestamp>, Vec<Arc<Pod>>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<jiff::Timestamp> = None;
    let mut expired = Vec::new();
    let Some(listed) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (kept, recheck, expired);
    };
    let timeout =
        jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or(jiff::SignedDuration::from_secs(120));
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(when) = listed.get(&pod.name_any()) else { continue };
        let expected_deletion = when.0 + timeout;
        if expected_deletion < now {
            expired.push(pod.clone());
        } else {
            recheck = Some(recheck.map_or(expected_deletion, |r| r.min(expected_deletion)));
            kept.insert(pod.name_any(), when.clone());
        }
    }
    (kept, recheck, expired)
}

/// Ready pods that are neither being deleted nor recently evicted (`countHealthyPods`).
pub fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: jiff::Timestamp) -> i32 {
    let timeout =
        jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or(jiff::SignedDuration::from_secs(120));
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| disrupted.get(&p.name_any()).is_none_or(|t| t.0 + timeout <= now))
        .filter(|p| is_pod_ready(p))
        .count() as i32
}

/// Sets a condition as `meta.SetStatusCondition` does: the transition time moves only when
/// the status changes.
pub fn set_condition(conditions: &mut Vec<Condition>, cond: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(existing) => {
            if existing.status != cond.status {
                existing.status = cond.status;
                existing.last_transition_time = cond.last_transition_time;
            }
            existing.reason = cond.reason;
            existing.message = cond.message;
            existing.observed_generation = cond.observed_generation;
        }
        None => conditions.push(cond),
    }
}

fn allowed_condition(status: &PodDisruptionBudgetStatus, now: jiff::Timestamp) -> Condition {
    let ok = status.disruptions_allowed > 0;
    Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: if ok { "SufficientPods" } else { "InsufficientPods" }.into(),
        message: String::new(),
        observed_generation: status.observed_generation,
        last_transition_time: Time(now),
    }
}

/// Whether the condition already says what the counts say (`ConditionsAreUpToDate`).
fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = &pdb.status else { return false };
    let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == DISRUPTION_ALLOWED) else {
        return false;
    };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        c.status == "True" && c.reason == "SufficientPods"
    } else {
        c.status == "False" && c.reason == "InsufficientPods"
    }
}

enum SyncError {
    /// The status write lost a race; retry without the fail-safe.
    Conflict(kube::Error),
    Failed(String),
}

async fn write_status(pdb: &PodDisruptionBudget, st: &State) -> Result<(), kube::Error> {
    let api: Api<PodDisruptionBudget> =
        Api::namespaced(st.ctx.client.clone(), &pdb.namespace().unwrap_or_default());
    api.replace_status(&pdb.name_any(), &PostParams::default(), pdb).await.map(|_| ())
}

async fn try_sync(
    pdb: &PodDisruptionBudget,
    st: &State,
    now: jiff::Timestamp,
) -> Result<Option<jiff::Timestamp>, SyncError> {
    let pods = pods_for(pdb, &st.ctx.informers.get::<Pod>().store).map_err(SyncError::Failed)?;
    let (expected, desired, unmanaged) = match expected_counts(pdb, &pods, st).await {
        Ok(v) => v,
        Err(e) => {
            st.recorder
                .publish(
                    pdb,
                    EventType::Warning,
                    "CalculateExpectedPodCountFailed",
                    &format!("Failed to calculate the number of expected pods: {e}"),
                )
                .await;
            return Err(SyncError::Failed(e));
        }
    };
    let (disrupted, recheck, expired) = disrupted_pods(pdb, &pods, now);
    let healthy = count_healthy(&pods, &disrupted, now);
    let mut allowed = healthy - desired;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let old_disrupted = old.disrupted_pods.clone().unwrap_or_default();
    if old.current_healthy == healthy
        && old.desired_healthy == desired
        && old.expected_pods == expected
        && old.disruptions_allowed == allowed
        && old_disrupted == disrupted
        && old.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb)
    {
        return Ok(recheck);
    }
    // Events accompany a change of status, so a steady budget does not repeat them.
    if pods.is_empty() {
        st.recorder.publish(pdb, EventType::Normal, "NoPods", "No matching pods found").await;
    }
    if !unmanaged.is_empty() {
        let selector =
            pdb.spec.as_ref().and_then(|s| s.selector.as_ref()).map(|s| format!("{s:?}")).unwrap_or_default();
        st.recorder
            .publish(
                pdb,
                EventType::Warning,
                "UnmanagedPods",
                &format!(
                    "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
                ),
            )
            .await;
    }
    for pod in &expired {
        st.recorder
            .publish(
                pod.as_ref(),
                EventType::Warning,
                "NotDeleted",
                &format!(
                    "Pod was expected by PDB {}/{} to be deleted but it wasn't",
                    pdb.namespace().unwrap_or_default(),
                    pdb.name_any()
                ),
            )
            .await;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: if disrupted.is_empty() { None } else { Some(disrupted) },
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions.clone(),
    };
    let mut conditions = status.conditions.take().unwrap_or_default();
    set_condition(&mut conditions, allowed_condition(&status, now));
    status.conditions = Some(conditions);
    let mut updated = pdb.clone();
    updated.status = Some(status);
    match write_status(&updated, st).await {
        Ok(()) => Ok(recheck),
        Err(kube::Error::Api(e)) if e.code == 409 => Err(SyncError::Conflict(kube::Error::Api(e))),
        Err(e) => Err(SyncError::Failed(e.to_string())),
    }
}

/// Sets `disruptionsAllowed` to 0 with a `SyncFailed` condition carrying the error, so the
/// eviction API refuses evictions while the budget cannot be computed (`failSafe`).
async fn fail_safe(
    pdb: &PodDisruptionBudget,
    st: &State,
    message: String,
    now: jiff::Timestamp,
) -> Result<()> {
    let mut updated = pdb.clone();
    let mut status = updated.status.take().unwrap_or_default();
    status.disruptions_allowed = 0;
    let mut conditions = status.conditions.take().unwrap_or_default();
    set_condition(
        &mut conditions,
        Condition {
            type_: DISRUPTION_ALLOWED.into(),
            status: "False".into(),
            reason: "SyncFailed".into(),
            message,
            observed_generation: status.observed_generation,
            last_transition_time: Time(now),
        },
    );
    status.conditions = Some(conditions);
    updated.status = Some(status);
    write_status(&updated, st).await.map_err(Error::Kube)
}

/// Recomputes one budget's status.
pub async fn reconcile(pdb: Arc<PodDisruptionBudget>, st: Arc<State>) -> Result<Action> {
    let now = st.ctx.clock.now();
    match try_sync(&pdb, &st, now).await {
        Ok(Some(recheck)) => {
            let wait = recheck.duration_since(now).unsigned_abs();
            Ok(Action::requeue(wait.max(Duration::from_millis(100))))
        }
        Ok(None) => Ok(Action::await_change()),
        Err(SyncError::Conflict(e)) => Err(Error::Kube(e)),
        Err(SyncError::Failed(msg)) => {
            tracing::debug!(pdb = %pdb.name_any(), error = %msg, "disruption budget sync failed");
            fail_safe(&pdb, &st, msg, now).await?;
            Ok(Action::requeue(FAILED_RETRY))
        }
    }
}

fn error_policy(_: Arc<PodDisruptionBudget>, err: &Error, _: Arc<State>) -> Action {
    tracing::debug!(error = %err, "disruption controller: will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// The budgets of a namespace, for changes of objects that can change their counts.
fn budgets_in(store: &Store<PodDisruptionBudget>, ns: Option<&str>) -> Vec<ObjectRef<PodDisruptionBudget>> {
    store
        .state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == ns)
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Runs the disruption controller (and the stale disruption condition cleanup).
pub async fn run(ctx: Arc<Context>) {
    let st = Arc::new(State::new(ctx.clone()));
    let pdbs = ctx.informers.get::<PodDisruptionBudget>();
    let pods = ctx.informers.get::<Pod>();
    // A budget computed from an unsynced pod cache could allow evictions it should refuse.
    if !cache_synced(&pods.store).await || !cache_synced(&pdbs.store).await {
        return;
    }
    let synced = [
        cache_synced(&ctx.informers.get::<Deployment>().store).await,
        cache_synced(&ctx.informers.get::<ReplicaSet>().store).await,
        cache_synced(&ctx.informers.get::<StatefulSet>().store).await,
        cache_synced(&ctx.informers.get::<ReplicationController>().store).await,
    ];
    if synced.contains(&false) {
        return;
    }
    tracing::info!("disruption controller started");
    let pod_budgets = {
        let store = pdbs.store.clone();
        move |pod: Arc<Pod>| {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            store
                .state()
                .iter()
                .filter(|p| p.metadata.namespace == pod.metadata.namespace)
                .filter(|p| {
                    let sel = p.spec.as_ref().and_then(|s| s.selector.as_ref());
                    sel.and_then(|s| serde_json::to_value(s).ok())
                        .and_then(|v| apimachinery::labels::Selector::from_label_selector(&v).ok())
                        .is_some_and(|s| s.matches(&labels))
                })
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let by_ns =
        |store: Store<PodDisruptionBudget>| move |ns: Option<String>| budgets_in(&store, ns.as_deref());
    let (s1, s2, s3, s4) = (
        by_ns(pdbs.store.clone()),
        by_ns(pdbs.store.clone()),
        by_ns(pdbs.store.clone()),
        by_ns(pdbs.store.clone()),
    );
    let budgets = Controller::for_shared_stream(pdbs.changes(), pdbs.store.clone())
        .watches_shared_stream(pods.changes(), pod_budgets)
        .watches_shared_stream(ctx.informers.get::<Deployment>().changes(), move |d: Arc<Deployment>| {
            s1(d.namespace())
        })
        .watches_shared_stream(ctx.informers.get::<ReplicaSet>().changes(), move |d: Arc<ReplicaSet>| {
            s2(d.namespace())
        })
        .watches_shared_stream(ctx.informers.get::<StatefulSet>().changes(), move |d: Arc<StatefulSet>| {
            s3(d.namespace())
        })
        .watches_shared_stream(
            ctx.informers.get::<ReplicationController>().changes(),
            move |d: Arc<ReplicationController>| s4(d.namespace()),
        )
        .run(reconcile, error_policy, st.clone())
        .for_each(|_| async {});
    let stale = stale::run(st);
    futures::future::join(budgets, stale).await;
}

#[cfg(test)]
mod tests;
