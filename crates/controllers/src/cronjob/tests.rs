//! Reconcile tests of the CronJob controller with a pinned clock.

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec, CronJobStatus, Job, JobCondition, JobSpec, JobTemplateSpec,
};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::{CronJobController, job_name, reconcile};
use crate::job::testing::*;
use crate::runtime::controller_ref;

fn cronjob(schedule: &str, created: &str) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            name: Some("cj".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-cj".into()),
            resource_version: Some("7".into()),
            creation_timestamp: Some(time(created)),
            ..Default::default()
        },
        spec: Some(CronJobSpec {
            schedule: schedule.into(),
            concurrency_policy: Some("Allow".into()),
            suspend: Some(false),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(1),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("app".to_string(), "report".to_string())].into()),
                    annotations: Some([("team".to_string(), "data".to_string())].into()),
                    ..Default::default()
                }),
                spec: Some(JobSpec { template: Default::default(), ..Default::default() }),
            },
            ..Default::default()
        }),
        status: Some(CronJobStatus::default()),
    }
}

fn child(cj: &CronJob, name: &str, finished: Option<(&str, &str)>) -> Job {
    let mut j = Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            owner_references: Some(vec![controller_ref(cj)]),
            ..Default::default()
        },
        spec: Some(JobSpec::default()),
        status: Some(Default::default()),
    };
    if let Some((type_, at)) = finished {
        let st = j.status.as_mut().unwrap();
        st.conditions =
            Some(vec![JobCondition { type_: type_.into(), status: "True".into(), ..Default::default() }]);
        st.start_time = Some(time(at));
        if type_ == "Complete" {
            st.completion_time = Some(time(at));
        }
    }
    j
}

fn active_ref(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some(name.into()),
        namespace: Some("ns".into()),
        uid: Some(format!("uid-{name}")),
        ..Default::default()
    }
}

async fn sync(cj: CronJob, jobs: Vec<Job>, script: Script, now: &str) -> (FakeApi, Action) {
    let (client, calls) = fake_client(script);
    let ctx = context(client, now);
    ctx.informers.seed(jobs);
    let c = Arc::new(CronJobController::new(ctx, TimeZone::UTC));
    let action = reconcile(Arc::new(cj), c).await.unwrap();
    (calls, action)
}

fn job_posts(calls: &FakeApi) -> Vec<Value> {
    writes_without_events(calls)
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.starts_with("/apis/batch/v1/namespaces/ns/jobs"))
        .map(|c| c.body)
        .collect()
}

fn status_put(calls: &FakeApi) -> Option<Value> {
    writes_without_events(calls)
        .into_iter()
        .rev()
        .find(|c| c.method == "PUT" && c.path.starts_with("/apis/batch/v1/namespaces/ns/cronjobs/cj/status"))
        .map(|c| c.body["status"].clone())
}

fn ev(reason: &str, message: &str) -> (String, String) {
    (reason.into(), message.into())
}

#[test]
fn job_names_count_minutes_since_the_epoch() {
    assert_eq!(job_name("hello", "2024-05-01T00:05:00Z".parse().unwrap()), "hello-28575365");
    assert_eq!(job_name("hello", "1970-01-01T00:01:59Z".parse().unwrap()), "hello-1");
}

#[tokio::test]
async fn a_due_schedule_creates_its_job_and_requeues_at_the_next_time() {
    let (calls, action) = sync(
        cronjob("*/5 * * * *", "2024-05-01T00:00:00Z"),
        vec![],
        Script::default(),
        "2024-05-01T00:05:30Z",
    )
    .await;
    let posts = job_posts(&calls);
    assert_eq!(posts.len(), 1);
    let j = &posts[0];
    assert_eq!(j["metadata"]["name"], "cj-28575365");
    assert_eq!(j["metadata"]["labels"], json!({"app": "report"}));
    assert_eq!(j["metadata"]["annotations"]["team"], "data");
    assert_eq!(
        j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        "2024-05-01T00:05:00Z"
    );
    assert_eq!(j["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(j["metadata"]["ownerReferences"][0]["uid"], "uid-cj");
    assert_eq!(j["metadata"]["ownerReferences"][0]["controller"], true);
    let status = status_put(&calls).unwrap();
    assert_eq!(status["lastScheduleTime"], "2024-05-01T00:05:00Z");
    assert_eq!(status["active"][0]["name"], "cj-28575365");
    assert_eq!(status["active"][0]["kind"], "Job");
    assert_eq!(status["active"][0]["uid"], "uid-cj-28575365");
    assert_eq!(events(&calls), vec![ev("SuccessfulCreate", "Created job cj-28575365")]);
    // 00:10:00 + 100ms, from 00:05:30.
    assert_eq!(action, Action::requeue(Duration::from_millis(270_100)));
}

#[tokio::test]
async fn nothing_runs_before_the_first_scheduled_time() {
    let (calls, action) =
        sync(cronjob("0 * * * *", "2024-05-01T00:10:00Z"), vec![], Script::default(), "2024-05-01T00:20:00Z")
            .await;
    assert!(calls.writes().is_empty());
    assert_eq!(action, Action::requeue(Duration::from_millis(40 * 60 * 1000 + 100)));
}

#[tokio::test]
async fn a_time_zone_moves_the_schedule_and_the_scheduled_timestamp() {
    let mut cj = cronjob("0 9 * * *", "2024-04-30T23:00:00Z");
    cj.spec.as_mut().unwrap().time_zone = Some("Asia/Tokyo".into());
    let (calls, _) = sync(cj, vec![], Script::default(), "2024-05-01T00:00:30Z").await;
    let posts = job_posts(&calls);
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0]["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        "2024-05-01T09:00:00+09:00"
    );
    assert_eq!(status_put(&calls).unwrap()["lastScheduleTime"], "2024-05-01T00:00:00Z");
}

#[tokio::test]
async fn an_already_processed_time_only_requeues() {
    let mut cj = cronjob("*/5 * * * *", "2024-05-01T00:00:00Z");
    cj.status.as_mut().unwrap().last_schedule_time = Some(time("2024-05-01T00:05:00Z"));
    let (calls, action) = sync(cj, vec![], Script::default(), "2024-05-01T00:06:00Z").await;
    assert!(calls.writes().is_empty());
    assert_eq!(action, Action::requeue(Duration::from_millis(240_100)));
}

#[tokio::test]
async fn forbid_skips_a_run_while_a_job_is_active() {
    let mut cj = cronjob("*/5 * * * *", "2024-05-01T00:00:00Z");
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Forbid".into());
    cj.status.as_mut().unwrap().active = Some(vec![active_ref("cj-28575365")]);
    cj.status.as_mut().unwrap().last_schedule_time = Some(time("2024-05-01T00:05:00Z"));
    let running = child(&cj, "cj-28575365", None);
    let (calls, _) = sync(cj, vec![running], Script::default(), "2024-05-01T00:10:10Z").await;
    assert!(job_posts(&calls).is_empty());
    assert_eq!(
        events(&calls),
        vec![ev(
            "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is Forbid"
        )]
    );
}

#[tokio::test]
async fn replace_deletes_the_running_job_before_creating_the_next() {
    let mut cj = cronjob("*/5 * * * *", "2024-05-01T00:00:00Z");
    cj.spec.as_mut().unwrap().concurrency_policy = Some("Replace".into());
    cj.status.as_mut().unwrap().active = Some(vec![active_ref("cj-28575365")]);
    cj.status.as_mut().unwrap().last_schedule_time = Some(time("2024-05-01T00:05:00Z"));
    let running = child(&cj, "cj-28575365", None);
    let mut script = Script::default();
    script.gets.insert(
        "/apis/batch/v1/namespaces/ns/jobs/cj-28575365".into(),
        serde_json::to_value(&running).unwrap(),
    );
    let (calls, _) = sync(cj, vec![running], script, "2024-05-01T00:10:10Z").await;
    let writes = writes_without_events(&calls);
    assert_eq!(writes[0].method, "DELETE");
    assert!(writes[0].path.starts_with("/apis/batch/v1/namespaces/ns/jobs/cj-28575365"));
    assert_eq!(writes[0].body["propagationPolicy"], "Background");
    assert_eq!(job_posts(&calls)[0]["metadata"]["name"], "cj-28575370");
    let status = status_put(&calls).unwrap();
    assert_eq!(status["active"].as_array().unwrap().len(), 1);
    assert_eq!(status["active"][0]["name"], "cj-28575370");
    assert_eq!(
        events(&calls),
        vec![
            ev("SuccessfulDelete", "Deleted job cj-28575365"),
            ev("SuccessfulCreate", "Created job cj-28575370")
        ]
    );
}

#[tokio::test]
async fn a_finished_active_job_leaves_the_active_list() {
    let mut cj = cronjob("0 0 * * *", "2024-05-01T00:00:00Z");
    cj.status.as_mut().unwrap().active = Some(vec![active_ref("cj-1")]);
    cj.status.as_mut().unwrap().last_schedule_time = Some(time("2024-05-01T00:00:00Z"));
    let done = child(&cj, "cj-1", Some(("Complete", "2024-05-01T00:00:05Z")));
    let (calls, _) = sync(cj, vec![done], Script::default(), "2024-05-01T00:01:00Z").await;
    let status = status_put(&calls).unwrap();
    assert!(status["active"].is_null());
    assert_eq!(events(&calls), vec![ev("SawCompletedJob", "Saw completed job: cj-1, status: Complete")]);
}

#[tokio::test]
async fn the_latest_completed_job_sets_last_successful_time() {
    let mut cj = cronjob("0 0 * * *", "2024-05-01T00:00:00Z");
    cj.status.as_mut().unwrap().last_schedule_time = Some(time("2024-05-01T00:00:00Z"));
    cj.status.as_mut().unwrap().last_successful_time = Some(time("2024-05-01T00:00:10Z"));
    let a = child(&cj, "cj-a", Some(("Complete", "2024-05-01T00:00:20Z")));
    let b = child(&cj, "cj-b", Some(("Failed", "2024-05-01T00:00:30Z")));
    let (calls, _) = sync(cj, vec![a, b], Script::default(), "2024-05-01T00:01:00Z").await;
    assert_eq!(status_put(&calls).unwrap()["lastSuccessfulTime"], "2024-05-01T00:00:20Z");
}

#[tokio::test]
async fn history_limits_delete_the_oldest_finished_jobs() {
    let mut cj = cronjob("0 0 * * *", "2024-05-01T00:00:00Z");
    cj.spec.as_mut().unwrap().successful_jobs_history_limit = Some(1);
    cj.spec.as_mut().unwrap().failed_jobs_history_limit = Some(0);
    cj.status.as_mut().unwrap().last_schedule_time = Some(time("2024-05-01T00:00:00Z"));
    cj.status.as_mut().unwrap().last_successful_time = Some(time("2024-05-01T00:00:03Z"));
    let jobs = vec![
        child(&cj, "cj-new", Some(("Complete", "2024-05-01T00:00:03Z"))),
        child(&cj, "cj-old", Some(("Complete", "2024-05-01T00:00:01Z"))),
        child(&cj, "cj-mid", Some(("Complete", "2024-05-01T00:00:02Z"))),
        child(&cj, "cj-bad", Some(("Failed", "2024-05-01T00:00:02Z"))),
    ];
    let (calls, _) = sync(cj, jobs, Script::default(), "2024-05-01T00:01:00Z").await;
    let deleted: Vec<String> = writes_without_events(&calls)
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.path.rsplit('/').next().unwrap().to_string())
        .collect();
    assert_eq!(deleted, vec!["cj-old", "cj-mid", "cj-bad"]);
    assert!(events(&calls).contains(&ev("SuccessfulDelete", "Deleted job cj-old")));
}

#[tokio::test]
async fn more_than_a_hundred_missed_times_warn_and_start_the_latest() {
    let (calls, _) =
        sync(cronjob("* * * * *", "2024-05-01T00:00:00Z"), vec![], Script::default(), "2024-05-01T03:00:30Z")
            .await;
    let posts = job_posts(&calls);
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0]["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        "2024-05-01T03:00:00Z"
    );
    assert_eq!(
        events(&calls)[0],
        ev(
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
        )
    );
}

#[tokio::test]
async fn a_starting_deadline_skips_times_missed_long_ago() {
    let mut cj = cronjob("0 * * * *", "2024-05-01T00:00:00Z");
    cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(60);
    let (calls, action) = sync(cj, vec![], Script::default(), "2024-05-01T02:30:00Z").await;
    assert!(job_posts(&calls).is_empty());
    assert_eq!(action, Action::requeue(Duration::from_millis(30 * 60 * 1000 + 100)));
}

#[tokio::test]
async fn a_starting_deadline_still_allows_a_late_start_within_it() {
    let mut cj = cronjob("0 * * * *", "2024-05-01T00:00:00Z");
    cj.spec.as_mut().unwrap().starting_deadline_seconds = Some(600);
    let (calls, _) = sync(cj, vec![], Script::default(), "2024-05-01T02:05:00Z").await;
    assert_eq!(
        job_posts(&calls)[0]["metadata"]["name"],
        job_name("cj", "2024-05-01T02:00:00Z".parse().unwrap())
    );
}

#[tokio::test]
async fn a_suspended_cronjob_starts_nothing() {
    let mut cj = cronjob("* * * * *", "2024-05-01T00:00:00Z");
    cj.spec.as_mut().unwrap().suspend = Some(true);
    let (calls, action) = sync(cj, vec![], Script::default(), "2024-05-01T00:05:00Z").await;
    assert!(calls.writes().is_empty());
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn an_unparseable_schedule_is_reported() {
    let (calls, action) =
        sync(cronjob("bogus", "2024-05-01T00:00:00Z"), vec![], Script::default(), "2024-05-01T00:05:00Z")
            .await;
    assert_eq!(
        events(&calls),
        vec![ev(
            "UnparseableSchedule",
            "unparseable schedule: \"bogus\" : expected exactly 5 fields, found 1: [bogus]"
        )]
    );
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn an_impossible_date_is_an_invalid_schedule() {
    let (calls, _) = sync(
        cronjob("0 0 30 2 *", "2024-05-01T00:00:00Z"),
        vec![],
        Script::default(),
        "2024-05-01T00:05:00Z",
    )
    .await;
    assert_eq!(
        events(&calls),
        vec![ev(
            "InvalidSchedule",
            "invalid schedule: 0 0 30 2 * : time difference between two schedules is less than 1 second"
        )]
    );
}

#[tokio::test]
async fn a_job_created_by_hand_from_the_cronjob_is_reported_as_unexpected() {
    let mut cj = cronjob("0 0 * * *", "2024-05-01T00:00:00Z");
    cj.status.as_mut().unwrap().last_schedule_time = Some(time("2024-05-01T00:00:00Z"));
    let mut manual = child(&cj, "manual-run", None);
    manual.metadata.annotations =
        Some([("cronjob.kubernetes.io/instantiate".to_string(), "manual".to_string())].into());
    let mut script = Script::default();
    script.gets.insert("/apis/batch/v1/namespaces/ns/cronjobs/cj".into(), serde_json::to_value(&cj).unwrap());
    let (calls, _) = sync(cj, vec![manual], script, "2024-05-01T00:01:00Z").await;
    assert_eq!(
        events(&calls),
        vec![ev("UnexpectedJob", "Saw a job that the controller did not create or forgot: manual-run")]
    );
    assert!(job_posts(&calls).is_empty());
}

#[tokio::test]
async fn an_active_job_that_went_missing_is_dropped() {
    let mut cj = cronjob("0 0 * * *", "2024-05-01T00:00:00Z");
    cj.status.as_mut().unwrap().active = Some(vec![active_ref("cj-gone")]);
    cj.status.as_mut().unwrap().last_schedule_time = Some(time("2024-05-01T00:00:00Z"));
    let (calls, _) = sync(cj, vec![], Script::default(), "2024-05-01T00:01:00Z").await;
    assert_eq!(events(&calls), vec![ev("MissingJob", "Active job went missing: cj-gone")]);
    assert!(status_put(&calls).unwrap()["active"].is_null());
}
