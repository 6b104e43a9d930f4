//! Test support for the agent: a fake API endpoint that serves seeded objects, records
//! every request and answers writes by echoing them; a clock tests move by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use jiff::{SignedDuration, Timestamp};
use kube::client::Body;
use serde_json::{Value, json};

use super::Clock;

/// One request the agent made.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub body: Value,
}

impl Call {
    /// The path without the query.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
}

/// The fake API's objects (by path) and the calls made to it.
#[derive(Default)]
pub struct FakeApi {
    objects: Mutex<HashMap<String, Value>>,
    calls: Mutex<Vec<Call>>,
}

impl FakeApi {
    /// Serves `object` at `path` (e.g. `/api/v1/namespaces/default/configmaps/cfg`).
    pub fn seed(&self, path: &str, object: Value) {
        self.objects.lock().unwrap().insert(path.to_owned(), object);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Writes (not GETs), events excepted.
    pub fn writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method != "GET" && !c.path.contains("/events")).collect()
    }

    /// The reasons of the events created, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e["reason"].as_str().unwrap_or_default().to_owned()).collect()
    }

    /// The events created, in order.
    pub fn events(&self) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "POST" && c.path.contains("/events"))
            .map(|c| c.body)
            .collect()
    }

    /// The bodies of the pod status patches, in order.
    pub fn statuses(&self) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "PATCH" && c.path_only().ends_with("/status"))
            .map(|c| c.body["status"].clone())
            .collect()
    }

    pub fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }
}

/// A client whose requests go to a [`FakeApi`].
pub fn fake_client() -> (kube::Client, Arc<FakeApi>) {
    let api = Arc::new(FakeApi::default());
    let served = api.clone();
    let svc = tower::service_fn(move |req: Request<Body>| {
        let api = served.clone();
        async move {
            let method = req.method().to_string();
            let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let mut body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            api.calls.lock().unwrap().push(Call {
                method: method.clone(),
                path: path.clone(),
                body: body.clone(),
            });
            let key = path.split('?').next().unwrap_or_default().to_owned();
            let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                "code": 404, "message": "not found"});
            let (code, reply) = match method.as_str() {
                "GET" => match api.objects.lock().unwrap().get(&key) {
                    Some(v) => (200, v.clone()),
                    None => (404, not_found),
                },
                "DELETE" => (200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
                _ => {
                    if body.pointer("/metadata/name").is_none()
                        && let Some(g) =
                            body.pointer("/metadata/generateName").and_then(Value::as_str).map(str::to_owned)
                    {
                        body["metadata"]["name"] = json!(format!("{g}abcde"));
                    }
                    (if method == "POST" { 201 } else { 200 }, body)
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
    (kube::Client::new(svc, "default"), api)
}

/// A clock that moves only when told to.
pub struct TestClock(Mutex<Timestamp>);

impl TestClock {
    pub fn new(at: Timestamp) -> Self {
        Self(Mutex::new(at))
    }

    pub fn advance(&self, secs: i64) {
        let mut t = self.0.lock().unwrap();
        *t += SignedDuration::from_secs(secs);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}
