//! One sync of a StatefulSet (upstream's `defaultStatefulSetControl`): find or create the
//! current and update ControllerRevisions, create missing members (in ordinal order and
//! one at a time under OrderedReady, all at once under Parallel), repair identities and
//! storage, delete members beyond the range (highest ordinal first), hand over to the
//! update strategy, write the status, and prune old revisions.

use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::identity::{self as id, ordinal_of};
use super::pod_control::PodControl;
use super::rolling;
use crate::history::{self, pods};
use crate::{Error, Result};

/// The most writes a Parallel set issues at once.
const MAX_BATCH: usize = 500;

/// The status the controller computes, as plain numbers (absent fields read as 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub observed_generation: i64,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub current_replicas: i32,
    pub updated_replicas: i32,
    pub current_revision: String,
    pub update_revision: String,
    pub collision_count: i32,
}

impl Status {
    /// Reads a stored status.
    pub fn of(set: &StatefulSet) -> Self {
        let s = set.status.clone().unwrap_or_default();
        Status {
            observed_generation: s.observed_generation.unwrap_or(0),
            replicas: s.replicas,
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            current_replicas: s.current_replicas.unwrap_or(0),
            updated_replicas: s.updated_replicas.unwrap_or(0),
            current_revision: s.current_revision.unwrap_or_default(),
            update_revision: s.update_revision.unwrap_or_default(),
            collision_count: s.collision_count.unwrap_or(0),
        }
    }

    /// The API form: zero counts and empty names omitted as upstream's `omitempty` does
    /// (`replicas`, `availableReplicas` and `collisionCount` always written).
    pub fn to_api(&self) -> StatefulSetStatus {
        let nz = |v: i32| (v != 0).then_some(v);
        let ne = |s: &str| (!s.is_empty()).then(|| s.to_string());
        StatefulSetStatus {
            observed_generation: (self.observed_generation != 0).then_some(self.observed_generation),
            replicas: self.replicas,
            ready_replicas: nz(self.ready_replicas),
            available_replicas: Some(self.available_replicas),
            current_replicas: nz(self.current_replicas),
            updated_replicas: nz(self.updated_replicas),
            current_revision: ne(&self.current_revision),
            update_revision: ne(&self.update_revision),
            collision_count: Some(self.collision_count),
            conditions: None,
        }
    }
}

/// What a sync needs besides the set and its pods.
pub struct Control<'a> {
    pub client: Client,
    pub pods: &'a PodControl,
    pub now: jiff::Timestamp,
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// The revision data of a set: a strategic merge patch replacing `spec.template`.
pub fn revision_data(set: &StatefulSet) -> Result<Value> {
    let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut t =
        serde_json::to_value(&template).map_err(|e| Error::Invalid(format!("encoding template: {e}")))?;
    if let Value::Object(m) = &mut t {
        m.insert("$patch".into(), json!("replace"));
    }
    Ok(history::canonical(&json!({"spec": {"template": t}})))
}

/// The set as it was at `revision`: its template replaced by the revision's.
pub fn apply_revision(set: &StatefulSet, revision: &ControllerRevision) -> Result<StatefulSet> {
    let mut template =
        revision.data.as_ref().and_then(|d| d.0.pointer("/spec/template")).cloned().ok_or_else(|| {
            Error::Invalid(format!("ControllerRevision {} has no spec.template", revision.name_any()))
        })?;
    if let Value::Object(m) = &mut template {
        m.remove("$patch");
    }
    let template: PodTemplateSpec = serde_json::from_value(template)
        .map_err(|e| Error::Invalid(format!("ControllerRevision {}: {e}", revision.name_any())))?;
    let mut clone = set.clone();
    if let Some(spec) = clone.spec.as_mut() {
        spec.template = template;
    }
    Ok(clone)
}

/// A new (uncreated) revision of the set with the given number.
fn new_revision(set: &StatefulSet, number: i64, collision_count: i32) -> Result<ControllerRevision> {
    let labels = set.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.as_ref());
    let mut rev = history::new_revision(set, labels, revision_data(set)?, number, Some(collision_count));
    if let Some(a) = set.metadata.annotations.as_ref().filter(|a| !a.is_empty()) {
        rev.metadata.annotations.get_or_insert_with(Default::default).extend(a.clone());
    }
    Ok(rev)
}

/// The current and update revisions (creating the update revision, or renumbering an
/// older equal one on rollback) and the collision count to record.
pub async fn revisions(
    client: &Client,
    set: &StatefulSet,
    sorted: &[Arc<ControllerRevision>],
) -> Result<(ControllerRevision, ControllerRevision, i32)> {
    let mut collision_count = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
    let candidate = new_revision(set, history::next_revision(sorted), collision_count)?;
    let equal = history::find_equal_revisions(sorted, &candidate);
    let update = match (equal.last(), sorted.last()) {
        (Some(eq), Some(last)) if history::equal_revision(last, eq) => (**last).clone(),
        (Some(eq), _) => history::update_revision_number(client, eq, candidate.revision).await?,
        (None, _) => history::create_revision(client, set, &candidate, &mut collision_count).await?,
    };
    let current_name = set.status.as_ref().and_then(|s| s.current_revision.as_deref()).unwrap_or("");
    let current = sorted
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(current_name))
        .map(|r| (**r).clone())
        .unwrap_or_else(|| update.clone());
    Ok((current, update, collision_count))
}

/// Counts of the given pods into `status` (replicas, ready, available, current, updated).
pub fn count(
    status: &mut Status,
    set: &StatefulSet,
    current: &str,
    update: &str,
    lists: &[&[Arc<Pod>]],
    now: jiff::Timestamp,
) {
    let min_ready = min_ready_seconds(set);
    status.replicas = 0;
    status.ready_replicas = 0;
    status.available_replicas = 0;
    status.current_replicas = 0;
    status.updated_replicas = 0;
    for pod in lists.iter().flat_map(|l| l.iter()) {
        if id::is_created(pod) {
            status.replicas += 1;
        }
        if id::is_running_and_ready(pod) {
            status.ready_replicas += 1;
            if id::is_running_and_available(pod, min_ready, now) {
                status.available_replicas += 1;
            }
        }
        if id::is_created(pod) && !pods::is_terminating(pod) {
            let rev = id::pod_revision(pod);
            if rev == current {
                status.current_replicas += 1;
            }
            if rev == update {
                status.updated_replicas += 1;
            }
        }
    }
}

fn aggregate(mut errs: Vec<Error>) -> Error {
    if errs.len() == 1 {
        return errs.remove(0);
    }
    Error::Invalid(format!("[{}]", errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")))
}

/// Runs `f` over `0..n`: in order, stopping at the first exit or error, when monotonic;
/// otherwise in batches of doubling size (1, 2, 4, ... up to 500), stopping after a
/// batch with errors. Returns whether the caller should stop.
async fn run_for_all<F, Fut>(n: usize, f: F, monotonic: bool) -> Result<bool>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    if monotonic {
        for i in 0..n {
            if f(i).await? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let mut next = 0;
    let mut remaining = n;
    let mut batch = remaining.min(1);
    while batch > 0 {
        let results = futures::future::join_all((next..next + batch).map(&f)).await;
        next += batch;
        let errs: Vec<Error> = results.into_iter().filter_map(|r| r.err()).collect();
        if !errs.is_empty() {
            return Err(aggregate(errs));
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining).min(MAX_BATCH);
    }
    Ok(false)
}

impl Control<'_> {
    /// Everything for one member in range. `Ok(true)` means a monotonic sync must stop here.
    async fn process_replica(
        &self,
        set: &StatefulSet,
        update_set: &StatefulSet,
        monotonic: bool,
        pod: &Pod,
    ) -> Result<bool> {
        if pods::is_terminal(pod) {
            // Succeeded pods are replaced too: an evicted pod's phase depends on its exit code.
            if !pods::is_terminating(pod) {
                self.pods.delete_pod(set, pod).await?;
            }
            return Ok(true);
        }
        if !id::is_created(pod) {
            if self.pods.claim_is_stale(set, pod) {
                return Ok(true);
            }
            self.pods.create_pod(set, pod).await?;
            if monotonic {
                return Ok(true);
            }
        }
        if pods::phase(pod) == "Pending" {
            self.pods.create_missing_claims(set, pod).await?;
        }
        if monotonic {
            if pods::is_terminating(pod) {
                tracing::debug!(pod = ?pod.metadata.name, "statefulset: waiting for pod to terminate");
                return Ok(true);
            }
            if !id::is_running_and_ready(pod) {
                tracing::debug!(pod = ?pod.metadata.name, "statefulset: waiting for pod to be Running and Ready");
                return Ok(true);
            }
            if !id::is_running_and_available(pod, min_ready_seconds(set), self.now) {
                tracing::debug!(pod = ?pod.metadata.name, "statefulset: waiting for pod to be Available");
                return Ok(true);
            }
        }
        let retention_match = self.pods.claims_match_retention(update_set, pod).unwrap_or(true);
        if id::identity_matches(set, pod) && id::storage_matches(set, pod) && retention_match {
            return Ok(false);
        }
        self.pods.update_pod(update_set, pod).await?;
        Ok(false)
    }

    /// One member beyond the range: deleted unless a monotonic sync must wait (it is
    /// terminating, or it is unhealthy and not the first unhealthy member).
    async fn process_condemned(
        &self,
        set: &StatefulSet,
        first_unavailable: Option<&str>,
        monotonic: bool,
        pod: &Pod,
    ) -> Result<bool> {
        if pods::is_terminating(pod) {
            return Ok(monotonic);
        }
        let is_first = pod.metadata.name.as_deref() == first_unavailable;
        if monotonic && !is_first {
            if !id::is_running_and_ready(pod) {
                return Ok(true);
            }
            if !id::is_running_and_available(pod, min_ready_seconds(set), self.now) {
                return Ok(true);
            }
        }
        self.pods.delete_pod(set, pod).await?;
        Ok(true)
    }

    /// The core of a sync: returns the status to record (if it got that far) and the
    /// error that ended it early, if any.
    pub async fn update_set(
        &self,
        set: &StatefulSet,
        current: &ControllerRevision,
        update: &ControllerRevision,
        collision_count: i32,
        claimed: &[Arc<Pod>],
    ) -> (Option<Status>, Result<()>) {
        let current_set = match apply_revision(set, current) {
            Ok(s) => s,
            Err(e) => return (None, Err(e)),
        };
        let update_set = match apply_revision(set, update) {
            Ok(s) => s,
            Err(e) => return (None, Err(e)),
        };
        let current_name = current.name_any();
        let update_name = update.name_any();
        let mut status = Status {
            observed_generation: set.metadata.generation.unwrap_or(0),
            current_revision: current_name.clone(),
            update_revision: update_name.clone(),
            collision_count,
            ..Default::default()
        };
        count(&mut status, set, &current_name, &update_name, &[claimed], self.now);

        let start = id::start_ordinal(set);
        let mut slots: Vec<Option<Arc<Pod>>> = vec![None; id::replicas(set) as usize];
        let mut condemned: Vec<Arc<Pod>> = Vec::new();
        for pod in claimed {
            if id::in_ordinal_range(pod, set) {
                slots[(ordinal_of(pod) - start) as usize] = Some(pod.clone());
            } else if ordinal_of(pod) >= 0 {
                condemned.push(pod.clone());
            }
        }
        let replicas: Vec<Arc<Pod>> = slots
            .into_iter()
            .enumerate()
            .map(|(i, slot)| {
                slot.unwrap_or_else(|| {
                    Arc::new(id::new_versioned_pod(
                        &current_set,
                        &update_set,
                        &current_name,
                        &update_name,
                        start + i as i32,
                    ))
                })
            })
            .collect();
        condemned.sort_by_key(|p| std::cmp::Reverse(ordinal_of(p)));

        let min_ready = min_ready_seconds(set);
        let first_unavailable = replicas
            .iter()
            .chain(condemned.iter().rev())
            .find(|p| id::is_unavailable(p, min_ready, self.now))
            .and_then(|p| p.metadata.name.clone());

        let recount = |status: &mut Status| {
            count(status, set, &current_name, &update_name, &[&replicas, &condemned], self.now);
        };

        if set.metadata.deletion_timestamp.is_some() {
            return (Some(status), Ok(()));
        }
        let monotonic = !id::allows_burst(set);

        let step = run_for_all(
            replicas.len(),
            |i| self.process_replica(set, &update_set, monotonic, &replicas[i]),
            monotonic,
        )
        .await;
        match step {
            Ok(false) => {}
            Ok(true) => {
                recount(&mut status);
                return (Some(status), Ok(()));
            }
            Err(e) => {
                recount(&mut status);
                return (Some(status), Err(e));
            }
        }

        let fix_claims = |i: usize| {
            let pod = condemned[i].clone();
            let update_set = &update_set;
            async move {
                if !self.pods.claims_match_retention(update_set, &pod)? {
                    self.pods.update_claims_for_retention(update_set, &pod).await?;
                }
                Ok(false)
            }
        };
        match run_for_all(condemned.len(), fix_claims, monotonic).await {
            Ok(false) => {}
            Ok(true) => {
                recount(&mut status);
                return (Some(status), Ok(()));
            }
            Err(e) => {
                recount(&mut status);
                return (Some(status), Err(e));
            }
        }

        let step = run_for_all(
            condemned.len(),
            |i| self.process_condemned(set, first_unavailable.as_deref(), monotonic, &condemned[i]),
            monotonic,
        )
        .await;
        match step {
            Ok(false) => {}
            Ok(true) => {
                recount(&mut status);
                return (Some(status), Ok(()));
            }
            Err(e) => {
                recount(&mut status);
                return (Some(status), Err(e));
            }
        }
        recount(&mut status);

        if id::is_on_delete(set) {
            return (Some(status), Ok(()));
        }
        let res = rolling::update(self.pods, set, &replicas, &update_name, &mut status, self.now).await;
        (Some(status), res)
    }
}

/// Completes a finished rolling update in the status: all members updated and ready
/// makes the update revision current.
pub fn complete_rolling_update(set: &StatefulSet, status: &mut Status) {
    if !id::is_on_delete(set)
        && status.updated_replicas == status.replicas
        && status.ready_replicas == status.replicas
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

/// Whether `status` differs from what the set records (collision count aside, as upstream).
pub fn inconsistent(set: &StatefulSet, status: &Status) -> bool {
    let old = Status::of(set);
    status.observed_generation > old.observed_generation
        || status.replicas != old.replicas
        || status.current_replicas != old.current_replicas
        || status.ready_replicas != old.ready_replicas
        || status.updated_replicas != old.updated_replicas
        || status.current_revision != old.current_revision
        || status.available_replicas != old.available_replicas
        || status.update_revision != old.update_revision
}

/// Records `status` on the set (after completing a finished rolling update) unless it is
/// already there; conflicts are retried on a fresh read.
pub async fn write_status(client: &Client, set: &StatefulSet, mut status: Status) -> Result<Status> {
    complete_rolling_update(set, &mut status);
    if !inconsistent(set, &status) {
        return Ok(status);
    }
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), &set.namespace().unwrap_or_default());
    let mut obj = set.clone();
    for attempt in 0..5 {
        obj.status = Some(status.to_api());
        match api.replace_status(&obj.name_any(), &PostParams::default(), &obj).await {
            Ok(_) => return Ok(status),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 4 => {
                obj = api.get(&set.name_any()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Invalid(format!("conflicts updating status of StatefulSet {}", set.name_any())))
}

/// Deletes revisions beyond `revisionHistoryLimit`, oldest first, never one that is
/// current, the update revision, or the revision of a live pod.
pub async fn truncate_history(
    client: &Client,
    set: &StatefulSet,
    claimed: &[Arc<Pod>],
    sorted: &[Arc<ControllerRevision>],
    live: &[&str],
) -> Result<()> {
    let history: Vec<&Arc<ControllerRevision>> = sorted
        .iter()
        .filter(|r| {
            let name = r.metadata.name.as_deref().unwrap_or("");
            !live.contains(&name) && !claimed.iter().any(|p| id::pod_revision(p) == name)
        })
        .collect();
    let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
    if limit < 0 || history.len() <= limit as usize {
        return Ok(());
    }
    for r in &history[..history.len() - limit as usize] {
        history::delete_revision(client, r).await?;
    }
    Ok(())
}
