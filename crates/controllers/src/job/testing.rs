//! Test support for the batch controllers: a recording fake API (like
//! `runtime::testing::fake_client`) that can also answer GETs with given objects and
//! fail chosen requests, plus builders for Jobs, Pods and a pinned clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::client::Body;
use serde_json::{Value, json};

use crate::runtime::{Clock, controller_ref};
use crate::{Context, Informers, Options};

/// One request a reconcile made.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub body: Value,
}

/// The recorded calls of a fake client.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    pub fn all(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }

    /// Only the writes (everything but GET).
    pub fn writes(&self) -> Vec<Call> {
        self.all().into_iter().filter(|c| c.method != "GET").collect()
    }

    fn push(&self, c: Call) {
        self.0.lock().unwrap().push(c);
    }
}

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

/// A client whose requests are recorded; writes echo their body (a name is filled in
/// from generateName, a uid is made up); GETs answer from the script or 404.
pub fn fake_client(script: Script) -> (kube::Client, Calls) {
    let calls = Calls::default();
    let recorded = calls.clone();
    let script = Arc::new(Mutex::new(script));
    let counter = Arc::new(Mutex::new(0u32));
    let svc = tower::service_fn(move |req: Request<Body>| {
        let recorded = recorded.clone();
        let script = script.clone();
        let counter = counter.clone();
        async move {
            let method = req.method().to_string();
            let path_q = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let path = req.uri().path().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let mut body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            recorded.push(Call { method: method.clone(), path: path_q, body: body.clone() });
            let script = script.lock().unwrap().clone();
            let failure =
                script.failures.iter().find(|(m, p, _, _)| *m == method && path.starts_with(p.as_str()));
            let (code, reply) = if let Some((_, _, code, reason)) = failure {
                (
                    *code,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": format!("injected {reason}")}),
                )
            } else {
                match method.as_str() {
                    "GET" => match script.gets.get(&path) {
                        Some(v) => (200, v.clone()),
                        None => (
                            404,
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
                        ),
                    },
                    "DELETE" => (200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
                    _ => {
                        if body.pointer("/metadata/name").is_none()
                            && let Some(g) = body
                                .pointer("/metadata/generateName")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        {
                            let mut n = counter.lock().unwrap();
                            *n += 1;
                            body["metadata"]["name"] = json!(format!("{g}{:05}", *n));
                        }
                        if method == "POST"
                            && body.pointer("/metadata/uid").is_none()
                            && body.get("metadata").is_some()
                        {
                            let name = body
                                .pointer("/metadata/name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string();
                            body["metadata"]["uid"] = json!(format!("uid-{name}"));
                        }
                        (if method == "POST" { 201 } else { 200 }, body)
                    }
                }
            };
            let resp = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    (kube::Client::new(svc, "default"), calls)
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
pub fn writes_without_events(calls: &Calls) -> Vec<Call> {
    calls.writes().into_iter().filter(|c| !c.path.contains("/events")).collect()
}

/// The (reason, message) of every Event written.
pub fn events(calls: &Calls) -> Vec<(String, String)> {
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
pub fn last_status(calls: &Calls) -> Value {
    calls
        .writes()
        .into_iter()
        .rev()
        .find(|c| c.method == "PUT" && c.path.contains("/status"))
        .map(|c| c.body["status"].clone())
        .unwrap_or(Value::Null)
}
