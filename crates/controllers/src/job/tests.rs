//! Reconcile tests of the Job controller: seed Jobs and Pods, run one sync against the
//! recording fake API with a pinned clock, assert on the exact writes and events.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{
    Job, JobCondition, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule, SuccessPolicy, SuccessPolicyRule,
    UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodCondition,
};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::testing::*;
use super::{JobController, reconcile};

const NOW: &str = "2024-05-01T00:10:00Z";

async fn sync(job: Job, pods: Vec<Pod>) -> (FakeApi, Action) {
    sync_with(job, pods, Script::default()).await
}

async fn sync_with(job: Job, pods: Vec<Pod>, script: Script) -> (FakeApi, Action) {
    let (client, calls) = fake_client(script);
    let ctx = context(client, NOW);
    ctx.informers.seed(pods);
    ctx.informers.seed(vec![job.clone()]);
    let c = Arc::new(JobController::new(ctx));
    let action = reconcile(Arc::new(job), c).await.unwrap();
    (calls, action)
}

fn pod_creates(calls: &FakeApi) -> Vec<Value> {
    writes_without_events(calls)
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.starts_with("/api/v1/namespaces/ns/pods"))
        .map(|c| c.body)
        .collect()
}

fn conditions(status: &Value) -> Vec<(String, String, String)> {
    status["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["type"].as_str().unwrap_or("").to_string(),
                        c["status"].as_str().unwrap_or("").to_string(),
                        c["reason"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn cond(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.into(), s.into(), r.into())
}

fn with_status(mut job: Job, f: impl FnOnce(&mut k8s_openapi::api::batch::v1::JobStatus)) -> Job {
    f(job.status.get_or_insert_with(Default::default));
    job
}

fn ready(mut pod: Pod) -> Pod {
    pod.status.as_mut().unwrap().conditions =
        Some(vec![PodCondition { type_: "Ready".into(), status: "True".into(), ..Default::default() }]);
    pod
}

fn exited(mut pod: Pod, code: i32, finished_at: &str) -> Pod {
    pod.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        name: "main".into(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                finished_at: Some(time(finished_at)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    pod
}

fn indexed(mut job: Job) -> Job {
    job.spec.as_mut().unwrap().completion_mode = Some("Indexed".into());
    job
}

fn with_index(mut pod: Pod, ix: i32) -> Pod {
    pod.metadata.annotations = Some([(super::indexes::COMPLETION_INDEX.to_string(), ix.to_string())].into());
    pod
}

#[tokio::test]
async fn a_new_job_creates_pods_up_to_parallelism() {
    let (calls, action) = sync(job("pi", Some(5), 2), vec![]).await;
    let creates = pod_creates(&calls);
    assert_eq!(creates.len(), 2);
    let pod = &creates[0];
    assert_eq!(pod["metadata"]["generateName"], "pi-");
    assert_eq!(pod["metadata"]["finalizers"], json!(["batch.kubernetes.io/job-tracking"]));
    assert_eq!(pod["metadata"]["labels"]["batch.kubernetes.io/job-name"], "pi");
    assert_eq!(pod["metadata"]["labels"]["controller-uid"], "uid-pi");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Job");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(pod["metadata"]["ownerReferences"][0]["blockOwnerDeletion"], true);
    assert_eq!(pod["spec"]["containers"][0]["image"], "busybox");
    let status = last_status(&calls);
    assert_eq!(status["active"], 2);
    assert_eq!(status["ready"], 0);
    assert_eq!(status["terminating"], 0);
    assert_eq!(status["startTime"], NOW);
    assert_eq!(status["uncountedTerminatedPods"], json!({}));
    assert!(status.get("succeeded").is_none());
    assert_eq!(
        events(&calls),
        vec![
            ("SuccessfulCreate".to_string(), "Created pod: pi-00001".to_string()),
            ("SuccessfulCreate".to_string(), "Created pod: pi-00002".to_string()),
        ]
    );
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn active_pods_never_exceed_the_remaining_completions() {
    let j = with_status(job("pi", Some(3), 5), |s| s.succeeded = Some(2));
    let (calls, _) = sync(j, vec![]).await;
    assert_eq!(pod_creates(&calls).len(), 1);
    assert_eq!(last_status(&calls)["active"], 1);
}

#[tokio::test]
async fn a_second_sync_waits_until_the_cache_shows_the_created_pods() {
    let (client, calls) = fake_client(Script::default());
    let ctx = context(client, NOW);
    let j = job("pi", Some(5), 2);
    ctx.informers.seed(Vec::<Pod>::new());
    ctx.informers.seed(vec![j.clone()]);
    let c = Arc::new(JobController::new(ctx));
    reconcile(Arc::new(j.clone()), c.clone()).await.unwrap();
    reconcile(Arc::new(j), c).await.unwrap();
    assert_eq!(pod_creates(&calls).len(), 2, "the second sync must not create again");
}

#[tokio::test]
async fn a_succeeded_pod_is_counted_through_uncounted_terminated_pods_then_completes_the_job() {
    let j = job("pi", Some(1), 1);
    let p = pod_of(&j, "pi-a", "Succeeded");
    let (calls, _) = sync(j, vec![p]).await;
    let writes = writes_without_events(&calls);
    let methods: Vec<(&str, &str)> = writes.iter().map(|c| (c.method.as_str(), c.path.as_str())).collect();
    assert_eq!(
        methods,
        vec![
            ("PUT", "/apis/batch/v1/namespaces/ns/jobs/pi/status"),
            ("PATCH", "/api/v1/namespaces/ns/pods/pi-a"),
            ("PUT", "/apis/batch/v1/namespaces/ns/jobs/pi/status"),
        ]
    );
    // 1. The pod is recorded as uncounted, with the interim condition.
    let first = &writes[0].body["status"];
    assert_eq!(first["uncountedTerminatedPods"]["succeeded"], json!(["uid-pi-a"]));
    assert!(first.get("succeeded").is_none());
    assert_eq!(conditions(first), vec![cond("SuccessCriteriaMet", "True", "CompletionsReached")]);
    // 2. Its finalizer goes.
    assert_eq!(
        writes[1].body,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["batch.kubernetes.io/job-tracking"]}})
    );
    // 3. It is counted, and the Job completes.
    let last = &writes[2].body["status"];
    assert_eq!(last["succeeded"], 1);
    assert_eq!(last["uncountedTerminatedPods"], json!({}));
    assert_eq!(
        conditions(last),
        vec![
            cond("SuccessCriteriaMet", "True", "CompletionsReached"),
            cond("Complete", "True", "CompletionsReached")
        ]
    );
    assert_eq!(last["conditions"][1]["message"], "Reached expected number of succeeded pods");
    assert_eq!(last["completionTime"], NOW);
    assert_eq!(events(&calls), vec![("Completed".to_string(), "Job completed".to_string())]);
}

#[tokio::test]
async fn a_job_without_completions_is_complete_after_one_success_once_nothing_runs() {
    let j = with_status(job("w", None, 2), |s| s.succeeded = Some(1));
    let running = pod_of(&j, "w-b", "Running");
    let (calls, _) = sync(j.clone(), vec![running]).await;
    assert!(pod_creates(&calls).is_empty(), "no new work after a success");
    assert!(conditions(&last_status(&calls)).is_empty());
    let (calls, _) = sync(j, vec![]).await;
    assert_eq!(
        conditions(&last_status(&calls)),
        vec![
            cond("SuccessCriteriaMet", "True", "CompletionsReached"),
            cond("Complete", "True", "CompletionsReached")
        ]
    );
}

#[tokio::test]
async fn exceeding_the_backoff_limit_fails_the_job_after_a_failure_target() {
    let mut j = job("pi", Some(1), 1);
    j.spec.as_mut().unwrap().backoff_limit = Some(0);
    let p = pod_of(&j, "pi-a", "Failed");
    let (calls, _) = sync(j, vec![p]).await;
    let puts: Vec<Value> = writes_without_events(&calls)
        .into_iter()
        .filter(|c| c.method == "PUT")
        .map(|c| c.body["status"].clone())
        .collect();
    assert_eq!(puts.len(), 2);
    assert_eq!(conditions(&puts[0]), vec![cond("FailureTarget", "True", "BackoffLimitExceeded")]);
    assert_eq!(puts[0]["uncountedTerminatedPods"]["failed"], json!(["uid-pi-a"]));
    assert_eq!(
        conditions(&puts[1]),
        vec![
            cond("FailureTarget", "True", "BackoffLimitExceeded"),
            cond("Failed", "True", "BackoffLimitExceeded")
        ]
    );
    assert_eq!(puts[1]["failed"], 1);
    assert_eq!(puts[1]["conditions"][1]["message"], "Job has reached the specified backoff limit");
    assert!(puts[1].get("completionTime").is_none());
    assert!(pod_creates(&calls).is_empty());
    assert_eq!(
        events(&calls),
        vec![("BackoffLimitExceeded".to_string(), "Job has reached the specified backoff limit".to_string())]
    );
}

#[tokio::test]
async fn restarts_of_an_on_failure_pod_count_toward_the_backoff_limit() {
    let mut j = job("pi", Some(1), 1);
    j.spec.as_mut().unwrap().backoff_limit = Some(2);
    j.spec.as_mut().unwrap().template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    let mut p = pod_of(&j, "pi-a", "Running");
    p.status.as_mut().unwrap().container_statuses =
        Some(vec![ContainerStatus { name: "main".into(), restart_count: 2, ..Default::default() }]);
    let (calls, _) = sync(j, vec![p]).await;
    let deletes: Vec<_> =
        writes_without_events(&calls).into_iter().filter(|c| c.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1);
    let status = last_status(&calls);
    assert_eq!(conditions(&status), vec![cond("FailureTarget", "True", "BackoffLimitExceeded")]);
    assert_eq!(status["terminating"], 1);
}

#[tokio::test]
async fn failed_pods_are_replaced_only_after_the_backoff_delay() {
    let j = job("pi", Some(1), 1);
    let p = exited(pod_of(&j, "pi-a", "Failed"), 1, "2024-05-01T00:09:56Z");
    let (calls, action) = sync(j, vec![p]).await;
    assert!(pod_creates(&calls).is_empty());
    assert_eq!(action, Action::requeue(Duration::from_secs(6)));
    assert_eq!(last_status(&calls)["failed"], 1);
}

#[tokio::test]
async fn an_exceeded_active_deadline_deletes_running_pods_and_fails_with_deadline_exceeded() {
    let mut j = with_status(job("pi", Some(1), 1), |s| s.start_time = Some(time("2024-05-01T00:09:00Z")));
    j.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
    let p = pod_of(&j, "pi-a", "Running");
    let (calls, _) = sync(j, vec![p]).await;
    let writes = writes_without_events(&calls);
    assert!(
        writes.iter().any(|c| c.method == "DELETE" && c.path.starts_with("/api/v1/namespaces/ns/pods/pi-a"))
    );
    let status = last_status(&calls);
    // Failed waits until the deleted pod has terminated.
    assert_eq!(conditions(&status), vec![cond("FailureTarget", "True", "DeadlineExceeded")]);
    assert_eq!(status["conditions"][0]["message"], "Job was active longer than specified deadline");
    assert_eq!(status["terminating"], 1);
    assert_eq!(status["active"], Value::Null);
    assert_eq!(status["failed"], 1);
    assert_eq!(events(&calls), vec![("SuccessfulDelete".to_string(), "Deleted pod: pi-a".to_string())]);
}

#[tokio::test]
async fn a_failure_target_becomes_failed_once_nothing_terminates() {
    let j = with_status(job("pi", Some(1), 1), |s| {
        s.start_time = Some(time("2024-05-01T00:09:00Z"));
        s.failed = Some(1);
        s.conditions = Some(vec![JobCondition {
            type_: "FailureTarget".into(),
            status: "True".into(),
            reason: Some("DeadlineExceeded".into()),
            message: Some("Job was active longer than specified deadline".into()),
            ..Default::default()
        }]);
    });
    let (calls, _) = sync(j, vec![]).await;
    let status = last_status(&calls);
    assert_eq!(
        conditions(&status),
        vec![cond("FailureTarget", "True", "DeadlineExceeded"), cond("Failed", "True", "DeadlineExceeded")]
    );
    assert_eq!(
        events(&calls),
        vec![("DeadlineExceeded".to_string(), "Job was active longer than specified deadline".to_string())]
    );
}

#[tokio::test]
async fn an_active_deadline_in_the_future_requeues_at_the_deadline() {
    let mut j = with_status(job("pi", Some(1), 1), |s| s.start_time = Some(time("2024-05-01T00:09:50Z")));
    j.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
    let p = pod_of(&j, "pi-a", "Running");
    let (_, action) = sync(j, vec![p]).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(20)));
}

#[tokio::test]
async fn suspending_deletes_active_pods_and_sets_the_suspended_condition() {
    let mut j = with_status(job("pi", Some(2), 2), |s| s.active = Some(1));
    j.spec.as_mut().unwrap().suspend = Some(true);
    let p = pod_of(&j, "pi-a", "Running");
    let (calls, _) = sync(j, vec![p]).await;
    let writes = writes_without_events(&calls);
    assert_eq!(writes[0].method, "PATCH");
    assert_eq!(writes[1].method, "DELETE");
    let status = last_status(&calls);
    assert_eq!(conditions(&status), vec![cond("Suspended", "True", "JobSuspended")]);
    assert_eq!(status["conditions"][0]["message"], "Job suspended");
    assert_eq!(status["active"], Value::Null);
    assert_eq!(status["terminating"], 1);
    assert!(pod_creates(&calls).is_empty());
    assert!(events(&calls).contains(&("Suspended".to_string(), "Job suspended".to_string())));
}

#[tokio::test]
async fn a_job_created_suspended_has_no_start_time_until_resumed() {
    let mut j = job("pi", Some(1), 1);
    j.spec.as_mut().unwrap().suspend = Some(true);
    let (calls, _) = sync(j.clone(), vec![]).await;
    assert!(last_status(&calls).get("startTime").is_none());
    let resumed = with_status(job("pi", Some(1), 1), |s| {
        s.conditions = Some(vec![JobCondition {
            type_: "Suspended".into(),
            status: "True".into(),
            reason: Some("JobSuspended".into()),
            message: Some("Job suspended".into()),
            ..Default::default()
        }])
    });
    let (calls, _) = sync(resumed, vec![]).await;
    let status = last_status(&calls);
    assert_eq!(conditions(&status), vec![cond("Suspended", "False", "JobResumed")]);
    assert_eq!(status["startTime"], NOW);
    assert_eq!(pod_creates(&calls).len(), 1);
    assert!(events(&calls).contains(&("Resumed".to_string(), "Job resumed".to_string())));
}

#[tokio::test]
async fn surplus_pods_are_deleted_not_ready_ones_first() {
    let j = job("pi", None, 1);
    let a = ready(pod_of(&j, "pi-ready", "Running"));
    let b = pod_of(&j, "pi-not-ready", "Running");
    let (calls, _) = sync(j, vec![a, b]).await;
    let deletes: Vec<String> = writes_without_events(&calls)
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.path.clone())
        .collect();
    assert_eq!(deletes, vec!["/api/v1/namespaces/ns/pods/pi-not-ready"]);
    let status = last_status(&calls);
    assert_eq!(status["active"], 1);
    assert_eq!(status["ready"], 1);
}

#[tokio::test]
async fn indexed_pods_carry_their_index_hostname_and_environment() {
    let j = with_status(indexed(job("idx", Some(3), 2)), |s| {
        s.completed_indexes = Some("0".into());
        s.succeeded = Some(1);
    });
    let (calls, _) = sync(j, vec![]).await;
    let creates = pod_creates(&calls);
    assert_eq!(creates.len(), 2);
    for (pod, ix) in creates.iter().zip([1, 2]) {
        assert_eq!(pod["metadata"]["generateName"], format!("idx-{ix}-"));
        assert_eq!(
            pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"],
            ix.to_string()
        );
        assert_eq!(pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"], ix.to_string());
        assert_eq!(pod["spec"]["hostname"], format!("idx-{ix}"));
        assert_eq!(
            pod["spec"]["containers"][0]["env"],
            json!([{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-completion-index']"}}}])
        );
    }
    assert_eq!(last_status(&calls)["completedIndexes"], "0");
}

#[tokio::test]
async fn completed_indexes_are_written_as_intervals() {
    let j = indexed(job("idx", Some(6), 1));
    let pods: Vec<Pod> =
        [0, 1, 2, 4].iter().map(|&i| with_index(pod_of(&j, &format!("idx-{i}"), "Succeeded"), i)).collect();
    let (calls, _) = sync(j, pods).await;
    let status = last_status(&calls);
    assert_eq!(status["completedIndexes"], "0-2,4");
    assert_eq!(status["succeeded"], 4);
    // Indexed Jobs count by index, not through the uncounted UID lists.
    assert_eq!(status["uncountedTerminatedPods"], json!({}));
    let creates = pod_creates(&calls);
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"], "3");
}

#[tokio::test]
async fn a_duplicate_index_is_deleted() {
    let j = with_status(indexed(job("idx", Some(2), 2)), |s| s.active = Some(2));
    let a = with_index(ready(pod_of(&j, "idx-0-a", "Running")), 0);
    let b = with_index(pod_of(&j, "idx-0-b", "Running"), 0);
    let (calls, _) = sync(j, vec![a, b]).await;
    let deletes: Vec<String> = writes_without_events(&calls)
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.path.clone())
        .collect();
    assert_eq!(deletes, vec!["/api/v1/namespaces/ns/pods/idx-0-b"]);
    assert!(pod_creates(&calls).is_empty(), "deletion takes precedence over creation");
}

fn exit_code_policy(action: &str, code: i32) -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: None,
                operator: "In".into(),
                values: vec![code],
            }),
            on_pod_conditions: None,
        }],
    }
}

#[tokio::test]
async fn a_fail_job_rule_fails_the_job_with_the_pod_failure_policy_reason() {
    let mut j = job("pfp", Some(2), 2);
    j.spec.as_mut().unwrap().pod_failure_policy = Some(exit_code_policy("FailJob", 42));
    j.spec.as_mut().unwrap().pod_replacement_policy = Some("Failed".into());
    let failed = exited(pod_of(&j, "pfp-a", "Failed"), 42, "2024-05-01T00:09:00Z");
    let running = pod_of(&j, "pfp-b", "Running");
    let (calls, _) = sync(j, vec![failed, running]).await;
    let status = last_status(&calls);
    assert_eq!(conditions(&status), vec![cond("FailureTarget", "True", "PodFailurePolicy")]);
    assert_eq!(
        status["conditions"][0]["message"],
        "Container main for pod ns/pfp-a failed with exit code 42 matching FailJob rule at index 0"
    );
    assert!(writes_without_events(&calls).iter().any(|c| c.method == "DELETE" && c.path.contains("pfp-b")));
}

#[tokio::test]
async fn ignored_failures_do_not_count_toward_the_backoff_limit() {
    let mut j = job("pfp", Some(1), 1);
    j.spec.as_mut().unwrap().backoff_limit = Some(0);
    j.spec.as_mut().unwrap().pod_failure_policy = Some(PodFailurePolicy {
        rules: vec![PodFailurePolicyRule {
            action: "Ignore".into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
            }]),
        }],
    });
    let mut p = pod_of(&j, "pfp-a", "Failed");
    p.status.as_mut().unwrap().conditions = Some(vec![PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        ..Default::default()
    }]);
    let (calls, _) = sync(j, vec![p]).await;
    let status = last_status(&calls);
    assert!(conditions(&status).is_empty(), "an ignored failure must not fail the Job");
    assert!(status.get("failed").is_none());
    let patched =
        writes_without_events(&calls).iter().any(|c| c.method == "PATCH" && c.path.contains("pfp-a"));
    assert!(patched, "the ignored pod's finalizer is still removed");
}

#[tokio::test]
async fn a_success_policy_completes_an_indexed_job_early() {
    let mut j = indexed(job("sp", Some(3), 3));
    j.spec.as_mut().unwrap().success_policy = Some(SuccessPolicy {
        rules: vec![SuccessPolicyRule { succeeded_indexes: Some("0".into()), succeeded_count: None }],
    });
    let done = with_index(pod_of(&j, "sp-0", "Succeeded"), 0);
    let running = with_index(pod_of(&j, "sp-1", "Running"), 1);
    let (calls, _) = sync(j, vec![done, running]).await;
    let status = last_status(&calls);
    assert_eq!(conditions(&status), vec![cond("SuccessCriteriaMet", "True", "SuccessPolicy")]);
    assert_eq!(status["conditions"][0]["message"], "Matched rules at index 0");
    assert!(writes_without_events(&calls).iter().any(|c| c.method == "DELETE" && c.path.contains("sp-1")));
    assert_eq!(status["completedIndexes"], "0");
}

#[tokio::test]
async fn an_index_over_its_backoff_limit_is_failed_and_fails_the_job_when_all_are_done() {
    let mut j = with_status(indexed(job("bl", Some(2), 2)), |s| {
        s.completed_indexes = Some("0".into());
        s.succeeded = Some(1);
    });
    j.spec.as_mut().unwrap().backoff_limit_per_index = Some(0);
    j.spec.as_mut().unwrap().backoff_limit = Some(i32::MAX);
    let mut failed = with_index(pod_of(&j, "bl-1", "Failed"), 1);
    failed
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(super::indexes::INDEX_FAILURE_COUNT.into(), "0".into());
    let (calls, _) = sync(j, vec![failed]).await;
    let status = last_status(&calls);
    assert_eq!(status["failedIndexes"], "1");
    assert_eq!(
        conditions(&status),
        vec![cond("FailureTarget", "True", "FailedIndexes"), cond("Failed", "True", "FailedIndexes")]
    );
}

#[tokio::test]
async fn a_replacement_pod_carries_its_index_failure_count() {
    let mut j = indexed(job("bl", Some(1), 1));
    j.spec.as_mut().unwrap().backoff_limit_per_index = Some(3);
    j.spec.as_mut().unwrap().backoff_limit = Some(i32::MAX);
    let mut failed = exited(with_index(pod_of(&j, "bl-0-a", "Failed"), 0), 1, "2024-05-01T00:00:00Z");
    failed
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(super::indexes::INDEX_FAILURE_COUNT.into(), "1".into());
    let (calls, _) = sync(j, vec![failed]).await;
    let creates = pod_creates(&calls);
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"], "2");
    // The failed pod keeps its finalizer until the replacement exists.
    assert!(!writes_without_events(&calls).iter().any(|c| c.method == "PATCH" && c.path.contains("bl-0-a")));
}

#[tokio::test]
async fn matching_orphan_pods_are_adopted_with_the_tracking_finalizer() {
    let j = job("pi", Some(2), 1);
    let mut orphan = pod_of(&j, "stray", "Running");
    orphan.metadata.owner_references = None;
    orphan.metadata.finalizers = None;
    let mut script = Script::default();
    script.gets.insert("/apis/batch/v1/namespaces/ns/jobs/pi".into(), serde_json::to_value(&j).unwrap());
    let (calls, _) = sync_with(j, vec![orphan], script).await;
    let patch = writes_without_events(&calls).into_iter().find(|c| c.method == "PATCH").unwrap();
    assert!(patch.path.starts_with("/api/v1/namespaces/ns/pods/stray"));
    assert_eq!(patch.body["metadata"]["ownerReferences"][0]["uid"], "uid-pi");
    assert_eq!(patch.body["metadata"]["finalizers"], json!(["batch.kubernetes.io/job-tracking"]));
    assert_eq!(patch.body["metadata"]["uid"], "uid-stray");
    assert!(pod_creates(&calls).is_empty(), "the adopted pod is the one active pod");
}

#[tokio::test]
async fn a_pod_whose_job_is_gone_loses_its_tracking_finalizer() {
    let j = job("gone", Some(1), 1);
    let p = pod_of(&j, "gone-a", "Running");
    let (client, calls) = fake_client(Script::default());
    let ctx = context(client, NOW);
    ctx.informers.seed(vec![p.clone()]);
    ctx.informers.seed(Vec::<Job>::new());
    let c = JobController::new(ctx);
    c.sync_orphan_pod(&p).await.unwrap();
    let writes = calls.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].method, "PATCH");
    assert_eq!(
        writes[0].body,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["batch.kubernetes.io/job-tracking"]}})
    );
}

#[tokio::test]
async fn a_pod_of_a_running_job_keeps_its_finalizer() {
    let j = job("live", Some(1), 1);
    let p = pod_of(&j, "live-a", "Running");
    let (client, calls) = fake_client(Script::default());
    let ctx = context(client, NOW);
    ctx.informers.seed(vec![p.clone()]);
    ctx.informers.seed(vec![j]);
    let c = JobController::new(ctx);
    c.sync_orphan_pod(&p).await.unwrap();
    assert!(calls.writes().is_empty());
}

#[tokio::test]
async fn uncounted_pods_without_finalizer_are_moved_to_the_counters() {
    let j = with_status(job("pi", Some(3), 1), |s| {
        s.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(vec!["uid-old".into()]),
            failed: Some(vec!["uid-bad".into()]),
        });
        s.succeeded = Some(1);
    });
    let (calls, _) = sync(j, vec![]).await;
    let status = last_status(&calls);
    assert_eq!(status["succeeded"], 2);
    assert_eq!(status["failed"], 1);
    assert_eq!(status["uncountedTerminatedPods"], json!({}));
}

#[tokio::test]
async fn a_job_managed_by_another_controller_is_left_alone() {
    let mut j = job("ext", Some(1), 1);
    j.spec.as_mut().unwrap().managed_by = Some("example.com/queue".into());
    let (calls, _) = sync(j, vec![]).await;
    assert!(calls.writes().is_empty());
}

#[tokio::test]
async fn a_finished_job_is_not_synced_again() {
    let j = with_status(job("done", Some(1), 1), |s| {
        s.conditions =
            Some(vec![JobCondition { type_: "Complete".into(), status: "True".into(), ..Default::default() }])
    });
    let (calls, _) = sync(j, vec![]).await;
    assert!(calls.writes().is_empty());
}
