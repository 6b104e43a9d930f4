//! The TTL-after-finished controller (`ttl-after-finished-controller`): deletes a Job
//! `spec.ttlSecondsAfterFinished` seconds after it finished (its Complete or Failed
//! condition's transition time), with foreground propagation so its pods go first.
//! Before deleting it re-reads the Job from the API server, in case the TTL changed.

use std::sync::Arc;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};

use crate::runtime::key_of;
use crate::{Context, ERROR_REQUEUE, Error, Result};

/// A Job that has finished and has a TTL.
pub fn needs_cleanup(job: &Job) -> bool {
    job.spec.as_ref().is_some_and(|s| s.ttl_seconds_after_finished.is_some()) && crate::job::is_finished(job)
}

/// When the Job finished: the transition time of its Complete or Failed condition.
pub fn finish_time(job: &Job) -> Result<Timestamp> {
    let cond = job.status.as_ref().and_then(|s| s.conditions.as_ref()).and_then(|cs| {
        cs.iter().find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
    });
    match cond {
        Some(c) => c.last_transition_time.as_ref().map(|t| t.0).ok_or_else(|| {
            Error::Invalid(format!("unable to find the time when the Job {} finished", key_of(job)))
        }),
        None => Err(Error::Invalid(format!("unable to find the status of the finished Job {}", key_of(job)))),
    }
}

/// Time left before the Job expires (zero or negative once it has).
pub fn time_left(job: &Job, now: Timestamp) -> Result<SignedDuration> {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished).unwrap_or(0);
    let finished = finish_time(job)?;
    if finished > now {
        tracing::warn!(job = %key_of(job), "job finished in the future (clock skew?); cleanup deferred");
    }
    Ok((finished + SignedDuration::from_secs(i64::from(ttl))).duration_since(now))
}

/// Whether the Job's TTL has expired; `Some(left)` when it will later.
fn expired(job: &Job, now: Timestamp) -> Result<Option<Option<SignedDuration>>> {
    if job.metadata.deletion_timestamp.is_some() || !needs_cleanup(job) {
        return Ok(None);
    }
    let left = time_left(job, now)?;
    Ok(Some((left > SignedDuration::ZERO).then_some(left)))
}

/// Deletes the Job if its TTL has expired; otherwise requeues at the expiry.
pub async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action> {
    let now = ctx.clock.now();
    match expired(&job, now)? {
        None => return Ok(Action::await_change()),
        Some(Some(left)) => return Ok(Action::requeue(left.unsigned_abs())),
        Some(None) => {}
    }
    let ns = job.namespace().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    // The cached TTL may be stale: decide on a fresh copy.
    let fresh = match api.get(&job.name_any()).await {
        Ok(j) => j,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
        Err(e) => return Err(Error::Kube(e)),
    };
    match expired(&fresh, now)? {
        None => return Ok(Action::await_change()),
        Some(Some(left)) => return Ok(Action::requeue(left.unsigned_abs())),
        Some(None) => {}
    }
    let dp = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions { uid: fresh.uid(), resource_version: None }),
        ..Default::default()
    };
    tracing::debug!(job = %key_of(&fresh), "cleaning up finished job");
    match api.delete(&fresh.name_any(), &dp).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(Error::Kube(e)),
    }
}

fn error_policy(job: Arc<Job>, err: &Error, _: Arc<Context>) -> Action {
    tracing::debug!(job = %key_of(&*job), error = %err, "ttl-after-finished controller: will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs the TTL-after-finished controller over Jobs.
pub async fn run(ctx: Arc<Context>) {
    let jobs = ctx.informers.get::<Job>();
    if !crate::job::wait_synced(&jobs.store).await {
        tracing::warn!("ttl-after-finished controller: caches never synced");
        return;
    }
    tracing::info!("ttl-after-finished controller started");
    Controller::for_shared_stream(jobs.changes(), jobs.store.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::testing::{Script, context, fake_client, job, time};
    use k8s_openapi::api::batch::v1::JobCondition;
    use std::time::Duration;

    fn finished(ttl: Option<i32>, at: &str, type_: &str) -> Job {
        let mut j = job("done", Some(1), 1);
        j.spec.as_mut().unwrap().ttl_seconds_after_finished = ttl;
        j.status.as_mut().unwrap().conditions = Some(vec![JobCondition {
            type_: type_.into(),
            status: "True".into(),
            last_transition_time: Some(time(at)),
            ..Default::default()
        }]);
        j
    }

    #[tokio::test]
    async fn an_expired_job_is_deleted_in_the_foreground_after_a_fresh_read() {
        let j = finished(Some(60), "2024-05-01T00:00:00Z", "Complete");
        let mut script = Script::default();
        script
            .gets
            .insert("/apis/batch/v1/namespaces/ns/jobs/done".into(), serde_json::to_value(&j).unwrap());
        let (client, calls) = fake_client(script);
        let ctx = context(client, "2024-05-01T00:01:00Z");
        let action = reconcile(Arc::new(j), ctx).await.unwrap();
        assert_eq!(action, Action::await_change());
        let all = calls.calls();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].method, "GET");
        assert_eq!(all[1].method, "DELETE");
        assert!(all[1].path.starts_with("/apis/batch/v1/namespaces/ns/jobs/done"));
        assert_eq!(all[1].body["propagationPolicy"], "Foreground");
        assert_eq!(all[1].body["preconditions"]["uid"], "uid-done");
    }

    #[tokio::test]
    async fn a_job_not_yet_expired_is_requeued_at_its_expiry() {
        let j = finished(Some(100), "2024-05-01T00:00:00Z", "Failed");
        let (client, calls) = fake_client(Script::default());
        let ctx = context(client, "2024-05-01T00:01:00Z");
        let action = reconcile(Arc::new(j), ctx).await.unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(40)));
        assert!(calls.calls().is_empty());
    }

    #[tokio::test]
    async fn a_ttl_raised_since_the_cache_saw_it_is_honoured() {
        let stale = finished(Some(10), "2024-05-01T00:00:00Z", "Complete");
        let fresh = finished(Some(3600), "2024-05-01T00:00:00Z", "Complete");
        let mut script = Script::default();
        script
            .gets
            .insert("/apis/batch/v1/namespaces/ns/jobs/done".into(), serde_json::to_value(&fresh).unwrap());
        let (client, calls) = fake_client(script);
        let ctx = context(client, "2024-05-01T00:01:00Z");
        let action = reconcile(Arc::new(stale), ctx).await.unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(3540)));
        assert!(calls.writes().is_empty());
    }

    #[tokio::test]
    async fn unfinished_jobs_and_jobs_without_ttl_are_ignored() {
        let (client, calls) = fake_client(Script::default());
        let ctx = context(client, "2024-05-01T00:01:00Z");
        let mut running = job("run", Some(1), 1);
        running.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(0);
        assert_eq!(reconcile(Arc::new(running), ctx.clone()).await.unwrap(), Action::await_change());
        let no_ttl = finished(None, "2024-05-01T00:00:00Z", "Complete");
        assert_eq!(reconcile(Arc::new(no_ttl), ctx).await.unwrap(), Action::await_change());
        assert!(calls.calls().is_empty());
    }
}
