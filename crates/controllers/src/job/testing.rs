//! Test support for the batch controllers: a fake API scripted to answer GETs with given
//! objects and fail chosen requests, plus builders for Jobs, Pods and a pinned clock.

use std::collections::HashMap;
use std::sync::Arc;

pub use fakeapi::{Call, FakeApi};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use serde_json::Value;

use crate::runtime::{Clock, controller_ref};
use crate::{Context, Informers, Options};

/// A clock pinned to one instant.
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// What the fake answers besides echoing writes.
#[derive(Clone, Default)]
pub struct Script {
    /// Path (without query) → object returned by a GET.
    pub gets: HashMap<String, Value>,
    /// (method, path prefix, HTTP code, reason): requests that fail.
    pub failures: Vec<(String, String, u16, String)>,
}

/// A client to a fake API that answers GETs and fails requests as the script says.
pub fn fake_client(script: Script) -> (kube::Client, FakeApi) {
    let api = FakeApi::new();
    for (path, obj) in script.gets {
        api.object(&path, obj);
    }
    for (method, prefix, code, reason) in script.failures {
        api.fail(&method, &prefix, code, &reason, &format!("injected {reason}"));
    }
    (api.client(), api)
}

/// A context over the fake client with offline informers and a pinned clock.
pub fn context(client: kube::Client, now: &str) -> Arc<Context> {
    Arc::new(Context {
        informers: Informers::offline(client.clone()),
        client,
        clock: Arc::new(FixedClock(now.parse().unwrap())),
        options: Options::default(),
    })
}

pub fn time(s: &str) -> Time {
    Time(s.parse().unwrap())
}

/// A Job as the API server stores it: generated selector and template labels, with
/// defaults applied.
pub fn job(name: &str, completions: Option<i32>, parallelism: i32) -> Job {
    let uid = format!("uid-{name}");
    let labels: std::collections::BTreeMap<String, String> = [
        ("batch.kubernetes.io/controller-uid".to_string(), uid.clone()),
        ("batch.kubernetes.io/job-name".to_string(), name.to_string()),
        ("controller-uid".to_string(), uid.clone()),
        ("job-name".to_string(), name.to_string()),
    ]
    .into();
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(uid.clone()),
            resource_version: Some("1".into()),
            creation_timestamp: Some(time("2024-05-01T00:00:00Z")),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completions,
            parallelism: Some(parallelism),
            backoff_limit: Some(6),
            completion_mode: Some("NonIndexed".into()),
            suspend: Some(false),
            selector: Some(LabelSelector {
                match_labels: Some([("batch.kubernetes.io/controller-uid".to_string(), uid)].into()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![Container {
                        name: "main".into(),
                        image: Some("busybox".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: Some(Default::default()),
    }
}

/// A pod of `job` in `phase`, carrying the tracking finalizer.
pub fn pod_of(job: &Job, name: &str, phase: &str) -> Pod {
    let labels = job.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.clone();
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: job.metadata.namespace.clone(),
            uid: Some(format!("uid-{name}")),
            labels,
            finalizers: Some(vec![super::pods::TRACKING_FINALIZER.into()]),
            owner_references: Some(vec![controller_ref(job)]),
            creation_timestamp: Some(time("2024-05-01T00:00:00Z")),
            ..Default::default()
        },
        spec: Some(PodSpec { node_name: Some("node-1".into()), ..Default::default() }),
        status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
    }
}

/// The recorded writes, without Events.
pub fn writes_without_events(calls: &FakeApi) -> Vec<Call> {
    calls.writes().into_iter().filter(|c| !c.path.contains("/events")).collect()
}

/// The (reason, message) of every Event written.
pub fn events(calls: &FakeApi) -> Vec<(String, String)> {
    calls
        .writes()
        .into_iter()
        .filter(|c| c.path.contains("/events"))
        .map(|c| {
            (
                c.body["reason"].as_str().unwrap_or_default().to_string(),
                c.body["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The last status written for a Job.
pub fn last_status(calls: &FakeApi) -> Value {
    calls
        .writes()
        .into_iter()
        .rev()
        .find(|c| c.method == "PUT" && c.path.contains("/status"))
        .map(|c| c.body["status"].clone())
        .unwrap_or(Value::Null)
}
