//! The CronJob controller (kube-controller-manager's `cronjob-controller`, the v2
//! controller): creates a Job named `<cronjob>-<scheduled minutes since the epoch>`
//! at each scheduled time, honours `timeZone`, `startingDeadlineSeconds`,
//! `concurrencyPolicy` and `suspend`, keeps `status.active`, `lastScheduleTime` and
//! `lastSuccessfulTime`, trims finished Jobs to the history limits, and requeues itself
//! exactly at the next scheduled time (plus 100ms).

pub mod schedule;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use futures::StreamExt;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::runtime::events::reference;
use crate::runtime::{EventType, Recorder, controller_of, controller_ref, key_of};
use crate::{Context, ERROR_REQUEUE, Error, Result};

use schedule::Schedule;

/// Annotation with the scheduled time of a Job, RFC 3339 in the CronJob's zone.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Padding on each requeue, against clock skew.
const NEXT_SCHEDULE_DELTA: SignedDuration = SignedDuration::from_millis(100);
/// Missing more start times than this is reported as a warning.
const MANY_MISSED: i64 = 100;

/// The CronJob controller.
pub struct CronJobController {
    pub(crate) ctx: Arc<Context>,
    recorder: Recorder,
    jobs: Store<Job>,
    /// The zone of schedules without `timeZone` (the controller-manager's local zone).
    local: TimeZone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missed {
    None,
    Few,
    Many,
}

fn finished_status(j: &Job) -> Option<&str> {
    j.status.as_ref()?.conditions.as_ref()?.iter().find_map(|c| {
        ((c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True").then_some(c.type_.as_str())
    })
}

fn is_job_finished(j: &Job) -> bool {
    finished_status(j).is_some()
}

fn is_job_succeeded(j: &Job) -> bool {
    finished_status(j) == Some("Complete")
}

fn active_refs(cj: &CronJob) -> &[ObjectReference] {
    cj.status.as_ref().and_then(|s| s.active.as_deref()).unwrap_or(&[])
}

fn in_active_list(cj: &CronJob, uid: &str) -> bool {
    active_refs(cj).iter().any(|r| r.uid.as_deref() == Some(uid))
}

fn in_active_list_by_name(cj: &CronJob, ns: &str, name: &str) -> bool {
    active_refs(cj).iter().any(|r| r.name.as_deref() == Some(name) && r.namespace.as_deref() == Some(ns))
}

fn delete_from_active_list(cj: &mut CronJob, uid: &str) {
    let st = cj.status.get_or_insert_with(Default::default);
    let kept: Vec<ObjectReference> =
        st.active.take().unwrap_or_default().into_iter().filter(|r| r.uid.as_deref() != Some(uid)).collect();
    // An empty list is omitted, as the Go types serialize it.
    st.active = (!kept.is_empty()).then_some(kept);
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

fn is_api_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating")))
}

/// The Job name for a scheduled time: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// (the last schedule time or creation time, the most recent unmet schedule time not
/// after `now`, how many were missed); an error when two schedules are less than a
/// second apart or never come (an impossible date).
fn most_recent_schedule_time(
    cj: &CronJob,
    now: Timestamp,
    sched: &Schedule,
    local: &TimeZone,
    include_starting_deadline: bool,
) -> std::result::Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let never = || "time difference between two schedules is less than 1 second".to_string();
    let mut earliest = cj.metadata.creation_timestamp.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    if let Some(t) = cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()) {
        earliest = t.0;
    }
    if include_starting_deadline && let Some(sds) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds)
    {
        let deadline = now - SignedDuration::from_secs(sds);
        if deadline > earliest {
            earliest = deadline;
        }
    }
    let t1 = sched.next(earliest, local).ok_or_else(never)?;
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let t2 = sched.next(t1, local).ok_or_else(never)?;
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    let between = t2.duration_since(t1).round(jiff::Unit::Second).map_err(|e| e.to_string())?.as_secs();
    if between < 1 {
        return Err(never());
    }
    let elapsed = now.duration_since(t1).as_secs();
    let missed_count = elapsed / between + 1;
    // Jump close to now, then let the schedule find the exact last time (irregular
    // schedules such as "30 6-16/4 * * 1-5" need the one step back).
    let potential_earliest = t1 + SignedDuration::from_secs((missed_count - 2) * between);
    let mut most_recent = None;
    let mut t = sched.next(potential_earliest, local);
    while let Some(tt) = t.filter(|tt| *tt <= now) {
        most_recent = Some(tt);
        t = sched.next(tt, local);
    }
    let missed = if missed_count > MANY_MISSED { Missed::Many } else { Missed::Few };
    Ok((earliest, most_recent, missed))
}

/// How long until the next schedule after the last one (or now), plus 100ms.
fn next_schedule_duration(
    cj: &CronJob,
    now: Timestamp,
    sched: &Schedule,
    local: &TimeZone,
) -> Option<SignedDuration> {
    let from = match most_recent_schedule_time(cj, now, sched, local, false) {
        Err(_) => now,
        Ok((_, Some(t), _)) => t,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => now,
    };
    sched.next(from, local).map(|t| (t + NEXT_SCHEDULE_DELTA).duration_since(now))
}

impl CronJobController {
    pub fn new(ctx: Arc<Context>, local: TimeZone) -> Self {
        let jobs = ctx.informers.get::<Job>().store;
        CronJobController {
            recorder: Recorder::new(ctx.client.clone(), "cronjob-controller"),
            ctx,
            jobs,
            local,
        }
    }

    async fn event(&self, cj: &CronJob, type_: EventType, reason: &str, message: &str) {
        self.recorder.publish(cj, type_, reason, message).await;
    }

    fn job_api(&self, ns: &str) -> Api<Job> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    /// The Jobs whose controller reference names this CronJob.
    fn jobs_of(&self, cj: &CronJob) -> Vec<Arc<Job>> {
        let ns = cj.namespace().unwrap_or_default();
        let name = cj.name_any();
        self.jobs
            .state()
            .into_iter()
            .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
            .filter(|j| controller_of(&**j).is_some_and(|r| r.name == name))
            .collect()
    }

    /// Deletes a Job (background propagation) and drops it from `status.active`.
    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        let dp =
            DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
        let ns = job.namespace().unwrap_or_default();
        if let Err(e) = self.job_api(&ns).delete(&job.name_any(), &dp).await {
            self.event(cj, EventType::Warning, "FailedDelete", &format!("Deleted job: {}", api_message(&e)))
                .await;
            return false;
        }
        delete_from_active_list(cj, &job.uid().unwrap_or_default());
        self.event(cj, EventType::Normal, "SuccessfulDelete", &format!("Deleted job {}", job.name_any()))
            .await;
        true
    }

    /// Deletes the oldest finished Jobs beyond the history limits; whether the status
    /// changed.
    async fn cleanup_finished_jobs(&self, cj: &mut CronJob, jobs: &[Arc<Job>]) -> bool {
        let spec = cj.spec.clone().unwrap_or_default();
        if spec.successful_jobs_history_limit.is_none() && spec.failed_jobs_history_limit.is_none() {
            return false;
        }
        let successful: Vec<Arc<Job>> =
            jobs.iter().filter(|j| finished_status(j) == Some("Complete")).cloned().collect();
        let failed: Vec<Arc<Job>> =
            jobs.iter().filter(|j| finished_status(j) == Some("Failed")).cloned().collect();
        let mut updated = false;
        if let Some(limit) = spec.successful_jobs_history_limit {
            updated |= self.remove_oldest_jobs(cj, successful, limit).await;
        }
        if let Some(limit) = spec.failed_jobs_history_limit {
            updated |= self.remove_oldest_jobs(cj, failed, limit).await;
        }
        updated
    }

    async fn remove_oldest_jobs(&self, cj: &mut CronJob, mut jobs: Vec<Arc<Job>>, max: i32) -> bool {
        let excess = jobs.len() as i64 - i64::from(max);
        if excess <= 0 {
            return false;
        }
        // By start time, Jobs that never started last, names breaking ties.
        jobs.sort_by(|a, b| {
            let sa = a.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            let sb = b.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            match (sa, sb) {
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (x, y) if x == y => a.name_any().cmp(&b.name_any()),
                (x, y) => x.cmp(&y),
            }
        });
        let mut updated = false;
        for j in jobs.iter().take(excess as usize) {
            if self.delete_job(cj, j).await {
                updated = true;
            }
        }
        updated
    }

    /// `syncCronJob`: reconciles the active list with the Jobs, then starts the Job of
    /// the most recent unmet schedule time if the policies allow. Returns (when to look
    /// again, whether the status changed).
    async fn sync_cron_job(
        &self,
        cj: &mut CronJob,
        jobs: &[Arc<Job>],
    ) -> Result<(Option<SignedDuration>, bool)> {
        let now = self.ctx.clock.now();
        let mut update = false;
        let ns = cj.namespace().unwrap_or_default();
        let api = self.job_api(&ns);

        let mut children = std::collections::HashSet::new();
        for j in jobs {
            let juid = j.uid().unwrap_or_default();
            children.insert(juid.clone());
            let found = in_active_list(cj, &juid);
            if !found && !is_job_finished(j) {
                let cjs: Api<CronJob> = Api::namespaced(self.ctx.client.clone(), &ns);
                let fresh = cjs.get(&cj.name_any()).await?;
                if in_active_list(&fresh, &juid) {
                    *cj = fresh;
                    continue;
                }
                self.event(
                    cj,
                    EventType::Warning,
                    "UnexpectedJob",
                    &format!("Saw a job that the controller did not create or forgot: {}", j.name_any()),
                )
                .await;
            } else if found && is_job_finished(j) {
                let status = finished_status(j).unwrap_or_default().to_string();
                delete_from_active_list(cj, &juid);
                self.event(
                    cj,
                    EventType::Normal,
                    "SawCompletedJob",
                    &format!("Saw completed job: {}, status: {status}", j.name_any()),
                )
                .await;
                update = true;
            } else if is_job_succeeded(j) {
                // Finished Jobs outside the active list still carry the last success.
                let completed = j.status.as_ref().and_then(|s| s.completion_time.clone());
                let st = cj.status.get_or_insert_with(Default::default);
                match (&st.last_successful_time, completed) {
                    (None, c) => {
                        st.last_successful_time = c;
                        update = true;
                    }
                    (Some(last), Some(c)) if c.0 > last.0 => {
                        st.last_successful_time = Some(c);
                        update = true;
                    }
                    _ => {}
                }
            }
        }

        // Active entries whose Job is gone (asked of the API server, not the cache).
        for r in active_refs(cj).to_vec() {
            if r.uid.as_ref().is_some_and(|u| children.contains(u)) {
                continue;
            }
            let name = r.name.clone().unwrap_or_default();
            let rns = r.namespace.clone().unwrap_or_else(|| ns.clone());
            match self.job_api(&rns).get(&name).await {
                Ok(_) => {}
                Err(e) if is_api_code(&e, 404) => {
                    self.event(
                        cj,
                        EventType::Normal,
                        "MissingJob",
                        &format!("Active job went missing: {name}"),
                    )
                    .await;
                    delete_from_active_list(cj, r.uid.as_deref().unwrap_or_default());
                    update = true;
                }
                Err(e) => return Err(Error::Kube(e)),
            }
        }

        if cj.metadata.deletion_timestamp.is_some() {
            return Ok((None, update));
        }
        let spec = cj.spec.clone().unwrap_or_default();
        let mut zone = None;
        if let Some(tz) = &spec.time_zone {
            match schedule::load_location(tz) {
                Ok(z) => zone = Some(z),
                Err(e) => {
                    self.event(
                        cj,
                        EventType::Warning,
                        "UnknownTimeZone",
                        &format!("invalid timeZone: {tz:?}: {e}"),
                    )
                    .await;
                    return Ok((None, update));
                }
            }
        }
        if spec.suspend == Some(true) {
            return Ok((None, update));
        }
        if spec.schedule.contains("TZ") {
            self.event(
                cj,
                EventType::Warning,
                "UnsupportedSchedule",
                &format!(
                    "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                    spec.schedule
                ),
            )
            .await;
        }
        let sched = match schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                self.event(
                    cj,
                    EventType::Warning,
                    "UnparseableSchedule",
                    &format!("unparseable schedule: {:?} : {e}", spec.schedule),
                )
                .await;
                return Ok((None, update));
            }
        };
        // timeZone applies unless the schedule names its own zone (a TZ= prefix wins).
        let local = zone.clone().unwrap_or_else(|| self.local.clone());

        let scheduled = match most_recent_schedule_time(cj, now, &sched, &local, true) {
            Err(e) => {
                self.event(
                    cj,
                    EventType::Warning,
                    "InvalidSchedule",
                    &format!("invalid schedule: {} : {e}", spec.schedule),
                )
                .await;
                return Ok((None, update));
            }
            Ok((_, None, _)) => return Ok((next_schedule_duration(cj, now, &sched, &local), update)),
            Ok((_, Some(t), missed)) => {
                if missed == Missed::Many {
                    self.event(
                        cj,
                        EventType::Warning,
                        "TooManyMissedTimes",
                        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                    )
                    .await;
                }
                t
            }
        };

        if let Some(sds) = spec.starting_deadline_seconds
            && scheduled + SignedDuration::from_secs(sds) < now
        {
            let when = scheduled.strftime("%a, %d %b %Y %H:%M:%S %z").to_string();
            self.event(
                cj,
                EventType::Warning,
                "MissSchedule",
                &format!("Missed scheduled time to start a job: {when}"),
            )
            .await;
            return Ok((next_schedule_duration(cj, now, &sched, &local), update));
        }
        let name = job_name(&cj.name_any(), scheduled);
        let last = cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map(|t| t.0);
        if in_active_list_by_name(cj, &ns, &name) || last == Some(scheduled) {
            return Ok((next_schedule_duration(cj, now, &sched, &local), update));
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active_refs(cj).is_empty() {
            self.event(
                cj,
                EventType::Normal,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            )
            .await;
            return Ok((next_schedule_duration(cj, now, &sched, &local), update));
        }
        if policy == "Replace" {
            for r in active_refs(cj).to_vec() {
                let rns = r.namespace.clone().unwrap_or_else(|| ns.clone());
                let job = match self.job_api(&rns).get(r.name.as_deref().unwrap_or_default()).await {
                    Ok(j) => j,
                    Err(e) => {
                        self.event(
                            cj,
                            EventType::Warning,
                            "FailedGet",
                            &format!("Get job: {}", api_message(&e)),
                        )
                        .await;
                        return Err(Error::Kube(e));
                    }
                };
                if !self.delete_job(cj, &job).await {
                    return Err(Error::Invalid(format!("could not replace job {rns}/{}", job.name_any())));
                }
                update = true;
            }
        }

        let request = self.job_from_template(cj, scheduled, zone.as_ref(), &name);
        let created = match api.create(&PostParams::default(), &request).await {
            Ok(j) => {
                self.event(
                    cj,
                    EventType::Normal,
                    "SuccessfulCreate",
                    &format!("Created job {}", j.name_any()),
                )
                .await;
                j
            }
            Err(e) if namespace_terminating(&e) => return Err(Error::Kube(e)),
            Err(e) if is_api_code(&e, 409) => {
                // Created earlier but not recorded (or by someone else).
                let existing = api.get(&name).await?;
                let ours = controller_of(&existing).is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
                if !ours || in_active_list(cj, &existing.uid().unwrap_or_default()) {
                    return Ok((None, update));
                }
                tracing::info!(cronjob = %key_of(cj), job = %name, "job already exists");
                existing
            }
            Err(e) => {
                self.event(
                    cj,
                    EventType::Warning,
                    "FailedCreate",
                    &format!("Error creating job: {}", api_message(&e)),
                )
                .await;
                return Err(Error::Kube(e));
            }
        };
        let st = cj.status.get_or_insert_with(Default::default);
        st.active.get_or_insert_with(Vec::new).push(reference(&created));
        st.last_schedule_time = Some(Time(scheduled));
        Ok((next_schedule_duration(cj, now, &sched, &local), true))
    }

    /// The Job for a scheduled time: the template's labels, annotations and spec, the
    /// scheduled-timestamp annotation, the CronJob as controller.
    fn job_from_template(
        &self,
        cj: &CronJob,
        scheduled: Timestamp,
        zone: Option<&TimeZone>,
        name: &str,
    ) -> Job {
        let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
        let meta = template.metadata.unwrap_or_default();
        let mut annotations = meta.annotations.unwrap_or_default();
        let stamp = scheduled.to_zoned(zone.cloned().unwrap_or(TimeZone::UTC));
        annotations.insert(
            SCHEDULED_TIMESTAMP_ANNOTATION.into(),
            stamp.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string().replace("+00:00", "Z"),
        );
        Job {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: cj.metadata.namespace.clone(),
                labels: meta.labels,
                annotations: Some(annotations),
                owner_references: Some(vec![controller_ref(cj)]),
                ..Default::default()
            },
            spec: template.spec,
            status: None,
        }
    }
}

/// Reconciles one CronJob: cleanup, then sync, then one status update; requeues at
/// the next scheduled time.
pub async fn reconcile(shared: Arc<CronJob>, c: Arc<CronJobController>) -> Result<Action> {
    let jobs = c.jobs_of(&shared);
    let mut cj = (*shared).clone();
    let cleaned = c.cleanup_finished_jobs(&mut cj, &jobs).await;
    let synced = c.sync_cron_job(&mut cj, &jobs).await;
    let (requeue, updated, err) = match synced {
        Ok((r, u)) => (r, u, None),
        Err(e) => (None, false, Some(e)),
    };
    if cleaned || updated {
        let api: Api<CronJob> = Api::namespaced(c.ctx.client.clone(), &cj.namespace().unwrap_or_default());
        api.replace_status(&cj.name_any(), &PostParams::default(), &cj).await?;
    }
    if let Some(d) = requeue {
        return Ok(Action::requeue(d.max(SignedDuration::ZERO).unsigned_abs()));
    }
    match err {
        Some(e) => Err(e),
        None => Ok(Action::await_change()),
    }
}

fn error_policy(cj: Arc<CronJob>, err: &Error, _: Arc<CronJobController>) -> Action {
    tracing::debug!(cronjob = %key_of(&*cj), error = %err, "cronjob controller: will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs the CronJob controller once the CronJob and Job caches have synced.
pub async fn run(ctx: Arc<Context>) {
    let cronjobs = ctx.informers.get::<CronJob>();
    let jobs = ctx.informers.get::<Job>();
    if !crate::job::wait_synced(&cronjobs.store).await || !crate::job::wait_synced(&jobs.store).await {
        tracing::warn!("cronjob controller: caches never synced");
        return;
    }
    tracing::info!("cronjob controller started");
    let c = Arc::new(CronJobController::new(ctx.clone(), TimeZone::system()));
    Controller::for_shared_stream(cronjobs.changes(), cronjobs.store.clone())
        .watches_shared_stream(jobs.changes(), |job: Arc<Job>| {
            let ns = job.namespace().unwrap_or_default();
            controller_of(&*job)
                .filter(|r| r.kind == "CronJob")
                .map(|r| ObjectRef::<CronJob>::new(&r.name).within(&ns))
        })
        .run(reconcile, error_policy, c)
        .for_each(|_| async {})
        .await;
}
