//! Test support for the workload controllers: a scripted API endpoint that records
//! every request, answers GETs from a table and fails chosen writes, and fixtures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use jiff::Timestamp;
use kube::client::Body;
use serde_json::{Value, json};

use crate::{Clock, Context, Informers, Options};

/// One request made.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// The path without the query.
    pub path: String,
    pub body: Value,
}

/// A scripted failure: method, path prefix, code, Status body.
type Failure = (String, String, u16, Value);

#[derive(Default)]
struct Script {
    gets: HashMap<String, Value>,
    failures: Vec<Failure>,
    calls: Vec<Call>,
}

/// A fake API server: writes succeed and echo their body (a name filled in from
/// generateName, a uid and resourceVersion added), GETs answer from the table or 404,
/// and scripted failures answer with a Status.
#[derive(Clone, Default)]
pub struct Fake(Arc<Mutex<Script>>);

impl Fake {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answer `GET path` with `obj`.
    pub fn on_get(&self, path: &str, obj: Value) -> &Self {
        self.0.lock().unwrap().gets.insert(path.to_string(), obj);
        self
    }

    /// Fail `method` on paths starting with `prefix` with this code, reason and message.
    pub fn fail(&self, method: &str, prefix: &str, code: u16, reason: &str, message: &str) -> &Self {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": reason, "message": message, "code": code});
        self.0.lock().unwrap().failures.push((method.into(), prefix.into(), code, status));
        self
    }

    pub fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().calls.clone()
    }

    /// Writes, Events left out.
    pub fn writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method != "GET" && !c.path.contains("/events")).collect()
    }

    /// The (type, reason, message) of every Event written.
    pub fn events(&self) -> Vec<(String, String, String)> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "POST" && c.path.contains("/events"))
            .map(|c| {
                let s = |k: &str| c.body[k].as_str().unwrap_or_default().to_string();
                (s("type"), s("reason"), s("message"))
            })
            .collect()
    }

    pub fn client(&self) -> kube::Client {
        let script = self.0.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let script = script.clone();
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
                let mut body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let (code, reply) = {
                    let mut s = script.lock().unwrap();
                    s.calls.push(Call { method: method.clone(), path: path.clone(), body: body.clone() });
                    let failure = s
                        .failures
                        .iter()
                        .find(|(m, p, _, _)| *m == method && path.starts_with(p.as_str()))
                        .map(|(_, _, c, st)| (*c, st.clone()));
                    if let Some(f) = failure {
                        f
                    } else {
                        match method.as_str() {
                            "GET" => match s.gets.get(&path) {
                                Some(v) => (200, v.clone()),
                                None => (
                                    404,
                                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "reason": "NotFound", "code": 404, "message": "not found"}),
                                ),
                            },
                            "DELETE" => {
                                (200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
                            }
                            _ => {
                                let generate = body.pointer("/metadata/generateName").and_then(Value::as_str);
                                if let (None, Some(g)) = (body.pointer("/metadata/name"), generate) {
                                    body["metadata"]["name"] = json!(format!("{g}{}", s.calls.len()));
                                }
                                if body.is_object() && body.pointer("/metadata/uid").is_none() {
                                    body["metadata"]["uid"] = json!(format!("uid-{}", s.calls.len()));
                                }
                                if body.is_object() {
                                    body["metadata"]["resourceVersion"] =
                                        json!(format!("{}", 100 + s.calls.len()));
                                }
                                (if method == "POST" { 201 } else { 200 }, body)
                            }
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
        kube::Client::new(svc, "default")
    }
}

/// A clock that always says the same time.
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        self.0
    }
}

/// 2024-01-01T00:00:00Z plus `secs`.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_704_067_200 + secs).unwrap()
}

/// A context over offline informers and the fake, with the clock at `at(1000)`.
pub fn context(fake: &Fake) -> Arc<Context> {
    let client = fake.client();
    Arc::new(Context {
        informers: Informers::offline(client.clone()),
        client,
        clock: Arc::new(FixedClock(at(1000))),
        options: Options::default(),
    })
}

/// Builds a typed object from JSON.
pub fn obj<K: serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

/// A pod of `owner` (kind, name, uid) with labels, phase, node and readiness since `ready_at`.
pub fn pod(name: &str, labels: Value, owner: Option<(&str, &str, &str)>, ready_at: Option<i64>) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": labels,
            "creationTimestamp": at(0).to_string()},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "n1"},
        "status": {"phase": "Running"}
    });
    if let Some((kind, oname, uid)) = owner {
        let api = if kind == "ReplicationController" { "v1" } else { "apps/v1" };
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": api, "kind": kind, "name": oname, "uid": uid,
            "controller": true, "blockOwnerDeletion": true}]);
    }
    if let Some(t) = ready_at {
        p["status"]["conditions"] =
            json!([{"type": "Ready", "status": "True", "lastTransitionTime": at(t).to_string()}]);
    }
    p
}
