//! One sync of a Job (upstream `syncJob`, 1.33 semantics): claim its pods, count the
//! finished ones through `status.uncountedTerminatedPods` and the tracking finalizer,
//! decide whether it has failed (backoff limit, active deadline, pod failure policy,
//! failed indexes) or succeeded (completions, success policy), create or delete pods
//! toward `min(parallelism, remaining)`, and write the status with the interim
//! FailureTarget / SuccessCriteriaMet condition before the terminal Failed / Complete.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::future::join_all;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::backoff;
use super::indexes::{
    self, INDEX_FAILURE_COUNT, INDEX_IGNORED_FAILURE_COUNT, OrderedIntervals, completion_index, valid_index,
};
use super::pod_failure_policy::{self, Action as PolicyAction};
use super::pods::{self, TRACKING_FINALIZER, has_tracking_finalizer, is_active, is_ready, is_succeeded, uid};
use super::success_policy;
use super::{JobController, is_finished, managed_by_external};
use crate::runtime::{EventType, controller_of, key_of};
use crate::{Error, Result};

/// At most this many pod UIDs wait in `status.uncountedTerminatedPods`.
pub const MAX_UNCOUNTED_PODS: usize = 500;
/// At most this many pods are created or deleted in one sync.
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// A delayed sync never comes sooner than this (upstream's batch period).
const MIN_DELAY: SignedDuration = SignedDuration::from_secs(1);

/// Condition types and reasons of batch/v1.
pub mod condition {
    pub const COMPLETE: &str = "Complete";
    pub const FAILED: &str = "Failed";
    pub const SUSPENDED: &str = "Suspended";
    pub const FAILURE_TARGET: &str = "FailureTarget";
    pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
    pub const BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    pub const POD_FAILURE_POLICY: &str = "PodFailurePolicy";
    pub const MAX_FAILED_INDEXES_EXCEEDED: &str = "MaxFailedIndexesExceeded";
    pub const FAILED_INDEXES: &str = "FailedIndexes";
    pub const SUCCESS_POLICY: &str = "SuccessPolicy";
    pub const COMPLETIONS_REACHED: &str = "CompletionsReached";
}
use condition::*;

fn spec(job: &Job) -> Result<&JobSpec> {
    job.spec.as_ref().ok_or_else(|| Error::Invalid(format!("job {} has no spec", key_of(job))))
}

fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

fn completions(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.completions)
}

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

fn backoff_limit_per_index(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.backoff_limit_per_index)
}

/// Failed pods are replaced only once terminal (podReplacementPolicy Failed, implied
/// by a pod failure policy).
fn only_replace_failed_pods(job: &Job) -> bool {
    let s = job.spec.as_ref();
    s.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || s.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// A failed pod: phase Failed, or being deleted without having succeeded (unless
/// only terminal pods are replaced).
fn is_pod_failed(p: &Pod, job: &Job) -> bool {
    if pods::is_failed_phase(p) {
        return true;
    }
    if only_replace_failed_pods(job) {
        return false;
    }
    pods::is_deleting(p) && !is_succeeded(p)
}

fn policy_outcome(job: &Job, p: &Pod) -> pod_failure_policy::Outcome {
    pod_failure_policy::match_pod(job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref()), p)
}

fn find_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn has_true_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    find_condition(job, type_).filter(|c| c.status == "True")
}

fn new_condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition's status, reason and message (appending it unless it would be a
/// new False); whether anything changed.
fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status
            || c.reason.as_deref().unwrap_or("") != reason
            || c.message.as_deref().unwrap_or("") != message
        {
            *c = new_condition(type_, status, reason, message, now);
            return true;
        }
        return false;
    }
    if status != "False" {
        conditions.push(new_condition(type_, status, reason, message, now));
        return true;
    }
    false
}

fn is_success_criteria_met(c: Option<&JobCondition>) -> bool {
    c.is_some_and(|c| c.type_ == SUCCESS_CRITERIA_MET && c.status == "True")
}

fn status_mut(job: &mut Job) -> &mut JobStatus {
    job.status.get_or_insert_with(Default::default)
}

fn uncounted_mut(job: &mut Job) -> &mut UncountedTerminatedPods {
    status_mut(job).uncounted_terminated_pods.get_or_insert_with(Default::default)
}

fn uncounted_of(job: &Job) -> (Vec<String>, Vec<String>) {
    let u = job.status.as_ref().and_then(|s| s.uncounted_terminated_pods.as_ref());
    (
        u.and_then(|u| u.succeeded.clone()).unwrap_or_default(),
        u.and_then(|u| u.failed.clone()).unwrap_or_default(),
    )
}

/// Moves the UIDs of pods that no longer carry the finalizer from the uncounted lists
/// into the counters; whether anything moved.
fn clean_uncounted(job: &mut Job, with_finalizer: &HashSet<String>) -> bool {
    let (succ, failed) = uncounted_of(job);
    let keep_s: Vec<String> = succ.iter().filter(|u| with_finalizer.contains(*u)).cloned().collect();
    let keep_f: Vec<String> = failed.iter().filter(|u| with_finalizer.contains(*u)).cloned().collect();
    let mut updated = false;
    if keep_s.len() != succ.len() {
        let st = status_mut(job);
        st.succeeded = Some(st.succeeded.unwrap_or(0) + (succ.len() - keep_s.len()) as i32);
        uncounted_mut(job).succeeded = Some(keep_s);
        updated = true;
    }
    if keep_f.len() != failed.len() {
        let st = status_mut(job);
        st.failed = Some(st.failed.unwrap_or(0) + (failed.len() - keep_f.len()) as i32);
        uncounted_mut(job).failed = Some(keep_f);
        updated = true;
    }
    updated
}

/// Writes the status as the Go API types serialize it: zero counters and empty lists
/// omitted, `ready`, `terminating` and `uncountedTerminatedPods` present.
fn normalize_status(job: &mut Job) {
    let st = status_mut(job);
    for c in [&mut st.active, &mut st.succeeded, &mut st.failed] {
        if *c == Some(0) {
            *c = None;
        }
    }
    if st.completed_indexes.as_deref() == Some("") {
        st.completed_indexes = None;
    }
    if st.conditions.as_ref().is_some_and(Vec::is_empty) {
        st.conditions = None;
    }
    let u = st.uncounted_terminated_pods.get_or_insert_with(Default::default);
    if u.succeeded.as_ref().is_some_and(Vec::is_empty) {
        u.succeeded = None;
    }
    if u.failed.as_ref().is_some_and(Vec::is_empty) {
        u.failed = None;
    }
}

fn is_api_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")))
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// The state of one sync.
struct SyncJob<'a> {
    c: &'a JobController,
    key: String,
    now: Timestamp,
    job: Job,
    pods: Vec<Arc<Pod>>,
    active_pods: Vec<Arc<Pod>>,
    finished_condition: Option<JobCondition>,
    succeeded: i32,
    failed: i32,
    prev_succeeded_indexes: OrderedIntervals,
    succeeded_indexes: OrderedIntervals,
    failed_indexes: Option<OrderedIntervals>,
    new_backoff: backoff::Record,
    expected_rm_finalizers: HashSet<String>,
    uncounted_succeeded: HashSet<String>,
    uncounted_failed: HashSet<String>,
    delayed_deletion_per_index: HashMap<i32, Arc<Pod>>,
    terminating: i32,
    ready: i32,
    /// Every create and delete issued earlier is visible in the pod cache.
    satisfied: bool,
    requeue: Option<SignedDuration>,
}

impl SyncJob<'_> {
    fn requeue_after(&mut self, d: SignedDuration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }

    fn api(&self) -> Api<Job> {
        Api::namespaced(
            self.c.ctx.client.clone(),
            self.job.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    fn pod_api(&self) -> Api<Pod> {
        Api::namespaced(
            self.c.ctx.client.clone(),
            self.job.metadata.namespace.as_deref().unwrap_or("default"),
        )
    }

    async fn event(&self, type_: EventType, reason: &str, message: &str) {
        self.c.recorder.publish(&self.job, type_, reason, message).await;
    }
}

/// Reconciles one Job; see the module documentation.
pub async fn sync_job(shared: Arc<Job>, c: Arc<JobController>) -> Result<Action> {
    let key = key_of(&*shared);
    if managed_by_external(&shared).is_some() {
        return Ok(Action::await_change());
    }
    if is_finished(&shared) {
        c.backoff.remove(&key);
        return Ok(Action::await_change());
    }
    let mode = spec(&shared)?.completion_mode.as_deref();
    if !matches!(mode, None | Some("NonIndexed") | Some("Indexed")) {
        c.recorder
            .publish(
                &*shared,
                EventType::Warning,
                "UnknownCompletionMode",
                "Skipped Job sync because completion mode is unknown",
            )
            .await;
        return Ok(Action::await_change());
    }
    let mut job = (*shared).clone();
    uncounted_mut(&mut job);
    let now = c.ctx.clock.now();

    // Expectations are read before the pods, so a pod that lands in between only
    // delays the next sync.
    let satisfied = c.expectations.satisfied(&key, &c.pods);
    let pods = c.claim_pods(&job).await?;
    let active_pods: Vec<Arc<Pod>> = pods.iter().filter(|p| is_active(p)).cloned().collect();
    let (uncounted_s, uncounted_f) = uncounted_of(&job);
    let mut s = SyncJob {
        ready: active_pods.iter().filter(|p| is_ready(p)).count() as i32,
        terminating: pods.iter().filter(|p| pods::is_terminating(p)).count() as i32,
        expected_rm_finalizers: c.expectations.pending_finalizer_removals(&key, &pods),
        uncounted_succeeded: uncounted_s.into_iter().collect(),
        uncounted_failed: uncounted_f.into_iter().collect(),
        c: &c,
        key,
        now,
        job,
        pods,
        active_pods,
        finished_condition: None,
        succeeded: 0,
        failed: 0,
        prev_succeeded_indexes: OrderedIntervals::default(),
        succeeded_indexes: OrderedIntervals::default(),
        failed_indexes: None,
        new_backoff: backoff::Record::default(),
        delayed_deletion_per_index: HashMap::new(),
        satisfied,
        requeue: None,
    };
    s.run().await
}

impl SyncJob<'_> {
    async fn run(&mut self) -> Result<Action> {
        let mut active = self.active_pods.len() as i32;
        let (new_succeeded, new_failed) = self.new_finished_pods();
        let status = self.job.status.clone().unwrap_or_default();
        self.succeeded = status.succeeded.unwrap_or(0)
            + new_succeeded.len() as i32
            + self.uncounted_succeeded.len() as i32;
        let non_ignored =
            new_failed.iter().filter(|p| policy_outcome(&self.job, p).count_failed).count() as i32;
        self.failed = status.failed.unwrap_or(0) + non_ignored + self.uncounted_failed.len() as i32;

        // First start; a Job created suspended starts when resumed.
        if status.start_time.is_none() && !suspended(&self.job) {
            status_mut(&mut self.job).start_time = Some(Time(self.now));
        }
        {
            let succ: Vec<&Pod> = new_succeeded.iter().map(|p| &**p).collect();
            let fail: Vec<&Pod> = new_failed.iter().map(|p| &**p).collect();
            self.new_backoff = self.c.backoff.next_record(&self.key, &succ, &fail);
        }

        let sp = spec(&self.job)?.clone();
        let backoff_limit = sp.backoff_limit.unwrap_or(6);
        let exceeds_backoff_limit = self.failed > backoff_limit;
        self.finished_condition = has_true_condition(&self.job, SUCCESS_CRITERIA_MET).cloned();
        // Once SuccessCriteriaMet is set the outcome is decided; the pod failure policy
        // is only consulted before.
        if self.finished_condition.is_none() {
            if let Some(target) = has_true_condition(&self.job, FAILURE_TARGET) {
                self.finished_condition = Some(self.failed_from_target(target));
            } else if let Some(msg) = self.fail_job_message() {
                self.finished_condition =
                    Some(new_condition(FAILURE_TARGET, "True", POD_FAILURE_POLICY, &msg, self.now));
            }
        }
        if self.finished_condition.is_none() {
            if exceeds_backoff_limit || self.past_backoff_limit_on_failure(backoff_limit) {
                self.finished_condition = Some(self.failure_condition(
                    BACKOFF_LIMIT_EXCEEDED,
                    "Job has reached the specified backoff limit",
                ));
            } else if self.past_active_deadline() {
                self.finished_condition =
                    Some(self.failure_condition(
                        DEADLINE_EXCEEDED,
                        "Job was active longer than specified deadline",
                    ));
            } else if let (Some(ads), false) = (sp.active_deadline_seconds, suspended(&self.job)) {
                let started =
                    self.job.status.as_ref().and_then(|s| s.start_time.as_ref()).map_or(self.now, |t| t.0);
                let left = SignedDuration::from_secs(ads) - self.now.duration_since(started);
                self.requeue_after(left);
            }
        }

        if is_indexed(&self.job) {
            let completions = completions(&self.job).unwrap_or(0);
            self.calculate_succeeded_indexes(completions);
            self.succeeded = self.succeeded_indexes.total();
            if let Some(per_index) = backoff_limit_per_index(&self.job) {
                self.calculate_failed_indexes(completions, per_index);
                let failed_total = self.failed_indexes.as_ref().map_or(0, OrderedIntervals::total);
                if self.finished_condition.is_none() {
                    if sp.max_failed_indexes.is_some_and(|m| failed_total > m) {
                        self.finished_condition = Some(self.failure_condition(
                            MAX_FAILED_INDEXES_EXCEEDED,
                            "Job has exceeded the specified maximal number of failed indexes",
                        ));
                    } else if failed_total > 0 && failed_total + self.succeeded_indexes.total() >= completions
                    {
                        self.finished_condition =
                            Some(self.failure_condition(FAILED_INDEXES, "Job has failed indexes"));
                    }
                }
                self.delayed_deletion_per_index = self.pods_with_delayed_deletion_per_index(completions);
            }
            if self.finished_condition.is_none()
                && let Some(msg) =
                    success_policy::matches(sp.success_policy.as_ref(), completions, &self.succeeded_indexes)
            {
                self.finished_condition =
                    Some(new_condition(SUCCESS_CRITERIA_MET, "True", SUCCESS_POLICY, &msg, self.now));
            }
        }

        let satisfied = self.satisfied;
        let mut suspend_changed = false;
        let mut manage_err: Option<Error> = None;
        if self.finished_condition.is_some() {
            // The Job has failed or met its success criteria: stop what still runs.
            let to_delete = self.active_pods.clone();
            let (deleted_ready, deleted, err) = self.delete_active_pods(&to_delete).await;
            if deleted != active || !satisfied {
                // Finalizers or pods the cache has not shown yet: finish on a later sync.
                self.finished_condition = None;
            }
            active -= deleted;
            self.terminating += deleted;
            self.ready -= deleted_ready;
            manage_err = err;
        } else {
            let mut manage_called = false;
            if satisfied && self.job.metadata.deletion_timestamp.is_none() {
                let (a, err) = self.manage_job(&sp).await;
                active = a;
                manage_err = err;
                manage_called = true;
            }
            let complete = match sp.completions {
                // Without completions, one success completes the Job once nothing runs.
                None => self.succeeded > 0 && active == 0,
                Some(n) => self.succeeded >= n && active == 0,
            };
            if complete {
                self.finished_condition = Some(new_condition(
                    SUCCESS_CRITERIA_MET,
                    "True",
                    COMPLETIONS_REACHED,
                    "Reached expected number of succeeded pods",
                    self.now,
                ));
            } else if manage_called {
                let now = self.now;
                let is_suspended = suspended(&self.job);
                let conditions = status_mut(&mut self.job).conditions.get_or_insert_with(Vec::new);
                let changed = if is_suspended {
                    ensure_condition(conditions, SUSPENDED, "True", "JobSuspended", "Job suspended", now)
                } else {
                    ensure_condition(conditions, SUSPENDED, "False", "JobResumed", "Job resumed", now)
                };
                if changed {
                    suspend_changed = true;
                    if is_suspended {
                        self.event(EventType::Normal, "Suspended", "Job suspended").await;
                    } else {
                        self.event(EventType::Normal, "Resumed", "Job resumed").await;
                        // activeDeadlineSeconds counts continuous activity: a resumed
                        // Job starts its clock again.
                        status_mut(&mut self.job).start_time = Some(Time(now));
                    }
                }
            }
        }

        let st = self.job.status.clone().unwrap_or_default();
        let needs_status_update = suspend_changed
            || active != st.active.unwrap_or(0)
            || Some(self.ready) != st.ready
            || Some(self.terminating) != st.terminating;
        let st = status_mut(&mut self.job);
        st.active = Some(active);
        st.ready = Some(self.ready);
        st.terminating = Some(self.terminating);
        self.track_status_and_remove_finalizers(needs_status_update).await?;
        if let Some(e) = manage_err {
            return Err(e);
        }
        Ok(match self.requeue {
            Some(d) => Action::requeue(d.max(SignedDuration::ZERO).unsigned_abs()),
            None => Action::await_change(),
        })
    }

    /// BackoffLimitExceeded and friends go through FailureTarget first.
    fn failure_condition(&self, reason: &str, message: &str) -> JobCondition {
        new_condition(FAILURE_TARGET, "True", reason, message, self.now)
    }

    fn failed_from_target(&self, target: &JobCondition) -> JobCondition {
        new_condition(
            FAILED,
            "True",
            target.reason.as_deref().unwrap_or(""),
            target.message.as_deref().unwrap_or(""),
            self.now,
        )
    }

    /// Pods not counted yet (they carry the finalizer and are in neither uncounted
    /// list), with a valid index for Indexed Jobs: (succeeded, failed).
    fn new_finished_pods(&self) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
        let succ = self.valid_pods(Some(&self.uncounted_succeeded), is_succeeded);
        let fail = self.valid_pods(Some(&self.uncounted_failed), |p| is_pod_failed(p, &self.job));
        (succ, fail)
    }

    fn valid_pods(
        &self,
        uncounted: Option<&HashSet<String>>,
        filter: impl Fn(&Pod) -> bool,
    ) -> Vec<Arc<Pod>> {
        let completions = completions(&self.job).unwrap_or(0);
        self.pods
            .iter()
            .filter(|p| {
                let u = uid(p);
                has_tracking_finalizer(p)
                    && !uncounted.is_some_and(|s| s.contains(u))
                    && !self.expected_rm_finalizers.contains(u)
                    && (!is_indexed(&self.job) || valid_index(p, completions).is_some())
                    && filter(p)
            })
            .cloned()
            .collect()
    }

    fn fail_job_message(&self) -> Option<String> {
        self.job.spec.as_ref()?.pod_failure_policy.as_ref()?;
        self.pods
            .iter()
            .filter(|p| is_pod_failed(p, &self.job))
            .find_map(|p| policy_outcome(&self.job, p).fail_job_message)
    }

    /// restartPolicy OnFailure: the container restarts of running pods exceed the limit.
    fn past_backoff_limit_on_failure(&self, limit: i32) -> bool {
        let rp = self
            .job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.restart_policy.as_deref());
        if rp != Some("OnFailure") {
            return false;
        }
        let mut restarts = 0;
        for p in &self.pods {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
            if phase == "Running" || phase == "Pending" {
                let st = p.status.as_ref();
                let all = st.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten();
                let all = all.chain(st.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten());
                restarts += all.map(|c| c.restart_count).sum::<i32>();
            }
        }
        if limit == 0 { restarts > 0 } else { restarts >= limit }
    }

    fn past_active_deadline(&self) -> bool {
        let Some(ads) = self.job.spec.as_ref().and_then(|s| s.active_deadline_seconds) else { return false };
        let Some(start) = self.job.status.as_ref().and_then(|s| s.start_time.as_ref()) else { return false };
        if suspended(&self.job) {
            return false;
        }
        self.now.duration_since(start.0) >= SignedDuration::from_secs(ads)
    }

    fn calculate_succeeded_indexes(&mut self, completions: i32) {
        let prev = OrderedIntervals::parse(
            self.job.status.as_ref().and_then(|s| s.completed_indexes.as_deref()).unwrap_or(""),
            completions,
        );
        let new: std::collections::BTreeSet<i32> = self
            .pods
            .iter()
            .filter(|p| is_succeeded(p) && has_tracking_finalizer(p))
            .filter_map(|p| valid_index(p, completions))
            .collect();
        self.succeeded_indexes = prev.with_ordered_indexes(&new.into_iter().collect::<Vec<_>>());
        self.prev_succeeded_indexes = prev;
    }

    fn is_index_failed(&self, p: &Pod, per_index: i32) -> bool {
        if !is_pod_failed(p, &self.job) {
            return false;
        }
        let outcome = policy_outcome(&self.job, p);
        if outcome.action == Some(PolicyAction::FailIndex) {
            return true;
        }
        outcome.count_failed && indexes::count_annotation(p, INDEX_FAILURE_COUNT) >= per_index
    }

    fn calculate_failed_indexes(&mut self, completions: i32, per_index: i32) {
        let prev = OrderedIntervals::parse(
            self.job.status.as_ref().and_then(|s| s.failed_indexes.as_deref()).unwrap_or(""),
            completions,
        );
        let new: std::collections::BTreeSet<i32> = self
            .pods
            .iter()
            .filter(|p| has_tracking_finalizer(p) && self.is_index_failed(p, per_index))
            .filter_map(|p| valid_index(p, completions))
            .collect();
        self.failed_indexes = Some(prev.with_ordered_indexes(&new.into_iter().collect::<Vec<_>>()));
    }

    /// For each index without an active, succeeded or failed pod, its last failed pod:
    /// kept (finalizer and all) until the replacement carries its failure count.
    fn pods_with_delayed_deletion_per_index(&self, completions: i32) -> HashMap<i32, Arc<Pod>> {
        let active = indexes::indexes_of(self.active_pods.iter().map(|p| &**p));
        let mut out: HashMap<i32, Arc<Pod>> = HashMap::new();
        for p in self.valid_pods(None, |p| is_pod_failed(p, &self.job)) {
            let Some(ix) = valid_index(&p, completions) else { continue };
            if self.succeeded_indexes.has(ix)
                || self.failed_indexes.as_ref().is_some_and(|f| f.has(ix))
                || active.contains(&ix)
            {
                continue;
            }
            let abs = |p: &Pod| {
                indexes::count_annotation(p, INDEX_FAILURE_COUNT)
                    + indexes::count_annotation(p, INDEX_IGNORED_FAILURE_COUNT)
            };
            match out.get(&ix) {
                Some(last)
                    if !(abs(last) <= abs(&p) && pods::finished_time(&p) >= pods::finished_time(last)) => {}
                _ => {
                    out.insert(ix, p);
                }
            }
        }
        out
    }

    /// Issues deletes for active pods of a finished Job, keeping their finalizers (they
    /// are removed once the pods are counted). Returns (ready deleted, deleted, error).
    async fn delete_active_pods(&self, pods: &[Arc<Pod>]) -> (i32, i32, Option<Error>) {
        let api = self.pod_api();
        let results = join_all(pods.iter().map(|p| {
            let api = api.clone();
            async move { (p, api.delete(pods::name(p), &DeleteParams::default()).await) }
        }))
        .await;
        let (mut ready, mut deleted, mut err) = (0, 0, None);
        for (p, r) in results {
            match r {
                Ok(_) => {
                    self.event(
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", pods::name(p)),
                    )
                    .await;
                }
                Err(e) if is_api_code(&e, 404) => {}
                Err(e) => {
                    self.event(
                        EventType::Warning,
                        "FailedDelete",
                        &format!("Error deleting: {}", api_message(&e)),
                    )
                    .await;
                    err.get_or_insert(Error::Kube(e));
                    continue;
                }
            }
            deleted += 1;
            if is_ready(p) {
                ready += 1;
            }
        }
        (ready, deleted, err)
    }

    /// Removes the tracking finalizer, then deletes (surplus or suspended pods).
    async fn delete_job_pods(&self, pods: &[Arc<Pod>]) -> (i32, i32, Option<Error>) {
        let api = self.pod_api();
        let results = join_all(pods.iter().map(|p| {
            let api = api.clone();
            async move {
                if has_tracking_finalizer(p) {
                    api.patch(
                        pods::name(p),
                        &PatchParams::default(),
                        &Patch::Strategic(remove_finalizer_patch()),
                    )
                    .await?;
                }
                api.delete(pods::name(p), &DeleteParams::default()).await.map(|_| ())
            }
        }))
        .await;
        let (mut ready, mut deleted, mut err) = (0, 0, None);
        for (p, r) in pods.iter().zip(results) {
            match r {
                Ok(()) => {
                    let ns = p.metadata.namespace.as_deref().unwrap_or("");
                    self.c.expectations.deleted(&self.key, ns, pods::name(p), uid(p));
                    self.event(
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", pods::name(p)),
                    )
                    .await;
                }
                Err(e) if is_api_code(&e, 404) => {}
                Err(e) => {
                    self.event(
                        EventType::Warning,
                        "FailedDelete",
                        &format!("Error deleting: {}", api_message(&e)),
                    )
                    .await;
                    err.get_or_insert(Error::Kube(e));
                    continue;
                }
            }
            deleted += 1;
            if is_ready(p) {
                ready += 1;
            }
        }
        (ready, deleted, err)
    }

    /// Pods to delete: for Indexed Jobs every duplicate, out-of-range or index-less pod,
    /// then at least `rm_at_least` in deletion order.
    fn active_pods_for_removal(&self, rm_at_least: usize) -> Vec<Arc<Pod>> {
        let mut rm: Vec<Arc<Pod>> = Vec::new();
        let mut left: Vec<Arc<Pod>> = Vec::new();
        if is_indexed(&self.job) {
            let completions = completions(&self.job).unwrap_or(0);
            let mut sorted = self.active_pods.clone();
            sorted.sort_by_key(|p| completion_index(p).unwrap_or(-1));
            let mut groups: Vec<(i32, Vec<Arc<Pod>>)> = Vec::new();
            for p in sorted {
                let ix = completion_index(&p).unwrap_or(-1);
                if ix >= completions {
                    rm.push(p);
                    continue;
                }
                match groups.last_mut() {
                    Some((g, v)) if *g == ix => v.push(p),
                    _ => groups.push((ix, vec![p])),
                }
            }
            for (ix, mut group) in groups {
                if ix < 0 {
                    rm.extend(group);
                    continue;
                }
                group.sort_by(|a, b| pods::deletion_order(a, b));
                if let Some(keep) = group.pop() {
                    rm.extend(group);
                    left.push(keep);
                }
            }
        } else {
            left = self.active_pods.clone();
        }
        if rm.len() < rm_at_least {
            left.sort_by(|a, b| pods::deletion_order(a, b));
            let n = (rm_at_least - rm.len()).min(left.len());
            rm.extend(left.into_iter().take(n));
        }
        rm
    }

    /// Creates or deletes pods toward the wanted number of active pods; returns the
    /// new active count and the first error.
    async fn manage_job(&mut self, sp: &JobSpec) -> (i32, Option<Error>) {
        let mut active = self.active_pods.len() as i32;
        let parallelism = sp.parallelism.unwrap_or(1);

        if suspended(&self.job) {
            let to_delete = self.active_pods_for_removal(active as usize);
            let (ready, removed, err) = self.delete_job_pods(&to_delete).await;
            self.terminating += removed;
            self.ready -= ready;
            return (active - removed, err);
        }

        let want_active = match sp.completions {
            // Without completions: parallelism until one pod succeeds, then let the
            // running ones finish.
            None => {
                if self.succeeded > 0 {
                    active
                } else {
                    parallelism
                }
            }
            Some(n) => (n - self.succeeded).min(parallelism).max(0),
        };

        let rm_at_least = (active - want_active).max(0) as usize;
        let mut to_delete = self.active_pods_for_removal(rm_at_least);
        to_delete.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
        if !to_delete.is_empty() {
            // Deletion takes precedence: no creates in the same sync.
            let (ready, removed, err) = self.delete_job_pods(&to_delete).await;
            self.terminating += removed;
            self.ready -= ready;
            return (active - removed, err);
        }

        let terminating = if only_replace_failed_pods(&self.job) { self.terminating } else { 0 };
        let mut diff = want_active - terminating - active;
        if diff <= 0 {
            return (active, None);
        }
        if backoff_limit_per_index(&self.job).is_none() {
            let left = self.new_backoff.remaining(self.now);
            if left > SignedDuration::ZERO {
                self.requeue_after(left.max(MIN_DELAY));
                return (active, None);
            }
        }
        diff = diff.min(MAX_POD_CREATE_DELETE_PER_SYNC as i32);

        let mut to_create: Vec<Option<i32>> = Vec::new();
        if is_indexed(&self.job) {
            let completions = sp.completions.unwrap_or(0);
            let mut non_pending = self.succeeded_indexes.with_ordered_indexes(
                &indexes::indexes_of(self.active_pods.iter().map(|p| &**p)).into_iter().collect::<Vec<_>>(),
            );
            if only_replace_failed_pods(&self.job) {
                let terminating =
                    indexes::indexes_of(self.pods.iter().filter(|p| pods::is_terminating(p)).map(|p| &**p));
                non_pending = non_pending.with_ordered_indexes(&terminating.into_iter().collect::<Vec<_>>());
            }
            if let Some(f) = &self.failed_indexes {
                non_pending = non_pending.merge(f);
            }
            let mut pending = indexes::first_pending(&non_pending, diff as usize, completions);
            if backoff_limit_per_index(&self.job).is_some() {
                let mut now_ready = Vec::new();
                let mut min_left: Option<SignedDuration> = None;
                for ix in pending {
                    let left = self.delayed_deletion_per_index.get(&ix).map_or(SignedDuration::ZERO, |p| {
                        let failures = indexes::count_annotation(p, INDEX_FAILURE_COUNT)
                            + indexes::count_annotation(p, INDEX_IGNORED_FAILURE_COUNT)
                            + 1;
                        backoff::remaining(self.now, failures, pods::finished_time(p))
                    });
                    if left.is_zero() {
                        now_ready.push(ix);
                    } else {
                        min_left = Some(min_left.map_or(left, |m| m.min(left)));
                    }
                }
                if now_ready.is_empty() {
                    if let Some(left) = min_left {
                        self.requeue_after(left.max(MIN_DELAY));
                    }
                    return (active, None);
                }
                pending = now_ready;
            }
            to_create = pending.into_iter().map(Some).collect();
        } else {
            to_create.resize(diff as usize, None);
        }

        // Slow start: batches of 1, 2, 4, ... stop at the first batch with an error,
        // so a quota or admission failure is not repeated hundreds of times.
        let mut first_err = None;
        let mut remaining = to_create.as_slice();
        let mut batch = 1usize;
        while !remaining.is_empty() {
            let n = batch.min(remaining.len());
            let (now, rest) = remaining.split_at(n);
            let results = join_all(now.iter().map(|ix| self.create_pod(*ix))).await;
            let mut failed = false;
            for r in results {
                match r {
                    Ok(()) => active += 1,
                    Err(e) => {
                        failed = true;
                        first_err.get_or_insert(e);
                    }
                }
            }
            if failed {
                break;
            }
            remaining = rest;
            batch *= 2;
        }
        (active, first_err)
    }

    async fn create_pod(&self, index: Option<i32>) -> Result<()> {
        let job_name = self.job.metadata.name.clone().unwrap_or_default();
        let generate_name = match index {
            Some(ix) => indexes::generate_name_with_index(&job_name, ix),
            None => format!("{job_name}-"),
        };
        let mut pod = pods::pod_from_template(&self.job, index, generate_name);
        if let (Some(ix), Some(_)) = (index, backoff_limit_per_index(&self.job)) {
            let (failures, ignored) = match self.delayed_deletion_per_index.get(&ix) {
                Some(prev) => {
                    let mut f = indexes::count_annotation(prev, INDEX_FAILURE_COUNT);
                    let mut i = indexes::count_annotation(prev, INDEX_IGNORED_FAILURE_COUNT);
                    if policy_outcome(&self.job, prev).count_failed {
                        f += 1;
                    } else {
                        i += 1;
                    }
                    (f, i)
                }
                None => (0, 0),
            };
            let annotations = pod.metadata.annotations.get_or_insert_with(Default::default);
            annotations.insert(INDEX_FAILURE_COUNT.into(), failures.to_string());
            if ignored > 0 {
                annotations.insert(INDEX_IGNORED_FAILURE_COUNT.into(), ignored.to_string());
            }
        }
        if pod.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            let msg = "unable to create pods, no labels".to_string();
            self.event(EventType::Warning, "FailedCreate", &format!("Error creating: {msg}")).await;
            return Err(Error::Invalid(msg));
        }
        match self.pod_api().create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let ns = created
                    .metadata
                    .namespace
                    .clone()
                    .or_else(|| self.job.metadata.namespace.clone())
                    .unwrap_or_default();
                self.c.expectations.created(&self.key, &ns, pods::name(&created));
                self.event(
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created pod: {}", pods::name(&created)),
                )
                .await;
                Ok(())
            }
            // The namespace is going away: every create would fail; nothing to report.
            Err(e) if namespace_terminating(&e) => Ok(()),
            Err(e) => {
                self.event(
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating: {}", api_message(&e)),
                )
                .await;
                Err(Error::Kube(e))
            }
        }
    }

    /// Whether a pod's finalizer may go: the Job is being deleted or is finishing, the
    /// pod succeeded, or it failed (unless kept for its index's failure count).
    fn can_remove_finalizer(&self, p: &Pod, considered_failed: bool) -> bool {
        if self.job.metadata.deletion_timestamp.is_some()
            || self.finished_condition.is_some()
            || is_succeeded(p)
        {
            return true;
        }
        if !considered_failed {
            return false;
        }
        // A failed pod kept so its replacement can inherit the index failure count.
        let kept = backoff_limit_per_index(&self.job).is_some()
            && completion_index(p)
                .and_then(|ix| self.delayed_deletion_per_index.get(&ix))
                .is_some_and(|d| uid(d) == uid(p));
        !kept
    }

    /// Records finished pods in `uncountedTerminatedPods`, removes their finalizers,
    /// moves them to the counters, and adds the finished condition when everything is
    /// counted and nothing is terminating.
    async fn track_status_and_remove_finalizers(&mut self, mut needs_flush: bool) -> Result<()> {
        let indexed = is_indexed(&self.job);
        let completions = completions(&self.job).unwrap_or(0);
        let mut pods = self.pods.clone();
        if indexed {
            pods.sort_by_key(|p| completion_index(p).unwrap_or(-1));
        }
        let mut with_finalizer: HashSet<String> = pods
            .iter()
            .filter(|p| has_tracking_finalizer(p) && !self.expected_rm_finalizers.contains(uid(p)))
            .map(|p| uid(p).to_string())
            .collect();
        if clean_uncounted(&mut self.job, &with_finalizer) {
            needs_flush = true;
        }
        let mut to_remove: Vec<Arc<Pod>> = Vec::new();
        let mut new_succeeded_indexes: Vec<i32> = Vec::new();
        let mut reached_max = false;
        let job_for_policy = self.job.clone();
        let finishing_as_failure =
            self.finished_condition.is_some() && !is_success_criteria_met(self.finished_condition.as_ref());
        for p in &pods {
            let u = uid(p).to_string();
            if !has_tracking_finalizer(p) || self.expected_rm_finalizers.contains(&u) {
                continue;
            }
            let considered_failed = is_pod_failed(p, &job_for_policy);
            if !self.can_remove_finalizer(p, considered_failed) {
                continue;
            }
            to_remove.push(p.clone());
            if is_succeeded(p) && !self.uncounted_failed.contains(&u) {
                if indexed {
                    if let Some(ix) = valid_index(p, completions)
                        && !self.prev_succeeded_indexes.has(ix)
                    {
                        new_succeeded_indexes.push(ix);
                        needs_flush = true;
                    }
                } else if !self.uncounted_succeeded.contains(&u) {
                    needs_flush = true;
                    uncounted_mut(&mut self.job).succeeded.get_or_insert_with(Vec::new).push(u.clone());
                }
            } else if considered_failed || finishing_as_failure {
                // Once the Job fails, every pod not yet terminated counts as failed.
                let index_ok = !indexed || valid_index(p, completions).is_some();
                if !self.uncounted_failed.contains(&u)
                    && index_ok
                    && policy_outcome(&job_for_policy, p).count_failed
                {
                    needs_flush = true;
                    uncounted_mut(&mut self.job).failed.get_or_insert_with(Vec::new).push(u.clone());
                }
            }
            let (us, uf) = uncounted_of(&self.job);
            if new_succeeded_indexes.len() + us.len() + uf.len() >= MAX_UNCOUNTED_PODS {
                // Bound the status size and the work of one sync; the status update
                // brings the Job back.
                reached_max = true;
                break;
            }
        }
        if indexed {
            new_succeeded_indexes.sort_unstable();
            self.succeeded_indexes = self.succeeded_indexes.with_ordered_indexes(&new_succeeded_indexes);
            let s = self.succeeded_indexes.to_string();
            let st = status_mut(&mut self.job);
            if st.completed_indexes.as_deref().unwrap_or("") != s {
                needs_flush = true;
            }
            st.succeeded = Some(self.succeeded_indexes.total());
            st.completed_indexes = Some(s);
            let failed = self.failed_indexes.as_ref().map(ToString::to_string);
            if st.failed_indexes != failed {
                st.failed_indexes = failed;
                needs_flush = true;
            }
        }
        if let Some(fc) = self.finished_condition.clone() {
            if fc.type_ == FAILURE_TARGET {
                // Recorded before the finalizers go, so the reason survives the pods.
                status_mut(&mut self.job).conditions.get_or_insert_with(Vec::new).push(fc.clone());
                needs_flush = true;
                self.finished_condition = Some(self.failed_from_target(&fc));
            } else if is_success_criteria_met(Some(&fc)) {
                if has_true_condition(&self.job, SUCCESS_CRITERIA_MET).is_none() {
                    status_mut(&mut self.job).conditions.get_or_insert_with(Vec::new).push(fc.clone());
                    needs_flush = true;
                }
                self.finished_condition = Some(new_condition(
                    COMPLETE,
                    "True",
                    fc.reason.as_deref().unwrap_or(""),
                    fc.message.as_deref().unwrap_or(""),
                    self.now,
                ));
            }
        }

        // Flush what was recorded, then remove finalizers, then count.
        if needs_flush {
            self.update_status()
                .await
                .map_err(|e| self.tracking_error("adding uncounted pods to status", e))?;
            self.c.backoff.update(&self.key, self.new_backoff.clone());
            needs_flush = false;
        }
        let mut rm_err = None;
        if !to_remove.is_empty() {
            self.c.expectations.finalizers_removed(&self.key, to_remove.iter().map(|p| uid(p).to_string()));
            let api = self.pod_api();
            let results = join_all(to_remove.iter().map(|p| {
                let api = api.clone();
                async move {
                    api.patch(
                        pods::name(p),
                        &PatchParams::default(),
                        &Patch::Strategic(remove_finalizer_patch()),
                    )
                    .await
                }
            }))
            .await;
            for (p, r) in to_remove.iter().zip(results) {
                match r {
                    Ok(_) => {
                        with_finalizer.remove(uid(p));
                    }
                    Err(e) => {
                        self.c.expectations.finalizer_removal_failed(&self.key, uid(p));
                        if is_api_code(&e, 404) {
                            with_finalizer.remove(uid(p));
                        } else {
                            rm_err.get_or_insert(e);
                        }
                    }
                }
            }
        }
        if clean_uncounted(&mut self.job, &with_finalizer) {
            needs_flush = true;
        }
        if let Some(e) = rm_err {
            if needs_flush {
                self.update_status()
                    .await
                    .map_err(|e| self.tracking_error("removing uncounted pods from status", e))?;
            }
            return Err(self.tracking_error("removing tracking finalizer", Error::Kube(e)));
        }

        let finished = !reached_max && self.enact_job_finished();
        if finished {
            needs_flush = true;
        }
        if needs_flush {
            self.update_status()
                .await
                .map_err(|e| self.tracking_error("removing uncounted pods from status", e))?;
            if finished {
                self.record_job_finished().await;
            }
        }
        Ok(())
    }

    fn tracking_error(&self, what: &str, e: Error) -> Error {
        Error::Invalid(format!("tracking status of job {}: {what}: {e}", self.key))
    }

    /// Adds Complete or Failed once nothing is uncounted or terminating.
    fn enact_job_finished(&mut self) -> bool {
        let Some(fc) = self.finished_condition.clone() else { return false };
        let (us, uf) = uncounted_of(&self.job);
        if !us.is_empty() || !uf.is_empty() || self.terminating > 0 {
            return false;
        }
        let now = self.now;
        let conditions = status_mut(&mut self.job).conditions.get_or_insert_with(Vec::new);
        ensure_condition(
            conditions,
            &fc.type_,
            &fc.status,
            fc.reason.as_deref().unwrap_or(""),
            fc.message.as_deref().unwrap_or(""),
            now,
        );
        if fc.type_ == COMPLETE {
            status_mut(&mut self.job).completion_time = fc.last_transition_time.clone();
        }
        true
    }

    async fn record_job_finished(&self) {
        let Some(fc) = &self.finished_condition else { return };
        if fc.type_ == COMPLETE {
            let succeeded = self.job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
            if completions(&self.job).is_some_and(|n| succeeded > n) {
                self.event(
                    EventType::Warning,
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached",
                )
                .await;
            }
            self.event(EventType::Normal, "Completed", "Job completed").await;
        } else {
            self.event(
                EventType::Warning,
                fc.reason.as_deref().unwrap_or(""),
                fc.message.as_deref().unwrap_or(""),
            )
            .await;
        }
    }

    async fn update_status(&mut self) -> Result<()> {
        normalize_status(&mut self.job);
        let name = self.job.metadata.name.clone().unwrap_or_default();
        let updated = self.api().replace_status(&name, &PostParams::default(), &self.job).await?;
        self.job = updated;
        // The server's copy may drop what it does not store; keep working on ours.
        uncounted_mut(&mut self.job);
        Ok(())
    }
}

/// The strategic merge patch that drops the tracking finalizer.
pub fn remove_finalizer_patch() -> serde_json::Value {
    json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}})
}

/// Whether `pod` is controlled by the Job with `uid`.
pub fn controlled_by(pod: &Pod, job_uid: &str) -> bool {
    controller_of(pod).is_some_and(|r| r.uid == job_uid)
}
