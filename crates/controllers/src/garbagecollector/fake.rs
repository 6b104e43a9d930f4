//! Test support: a fake API that answers from a table of canned responses (so a reconcile
//! can read live objects) and records every request, for tests that assert on the writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

/// One request made to the fake.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string, possibly empty.
    pub query: String,
    pub body: Value,
}

/// Canned answers by `(method, path)`; what is not in the table: GET answers 404, a write
/// echoes its body (POST: 201, with a name made from generateName and resourceVersion 1),
/// DELETE answers a success Status.
type Routes = HashMap<(String, String), (u16, Value)>;

#[derive(Clone, Default)]
pub struct FakeApi {
    routes: Arc<Mutex<Routes>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `method path` with `code` and `body`.
    pub fn on(&self, method: &str, path: &str, code: u16, body: Value) -> &Self {
        self.routes.lock().unwrap().insert((method.into(), path.into()), (code, body));
        self
    }

    /// Answers `GET path` with the object.
    pub fn object(&self, path: &str, body: Value) -> &Self {
        self.on("GET", path, 200, body)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// Every request but GETs.
    pub fn writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method != "GET").collect()
    }

    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or_default().to_string();
                let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                me.calls.lock().unwrap().push(Call {
                    method: method.clone(),
                    path: path.clone(),
                    query,
                    body: body.clone(),
                });
                let canned = me.routes.lock().unwrap().get(&(method.clone(), path.clone())).cloned();
                let (code, reply) = match canned {
                    Some(r) => r,
                    None => match method.as_str() {
                        "GET" => (404, status(404, "NotFound", "not found")),
                        "DELETE" => (200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
                        "POST" => {
                            let mut body = body;
                            let generate = body
                                .pointer("/metadata/generateName")
                                .and_then(Value::as_str)
                                .map(str::to_string);
                            if let (None, Some(g)) = (body.pointer("/metadata/name"), generate) {
                                body["metadata"]["name"] = json!(format!("{g}abcde"));
                            }
                            if body.get("metadata").is_some() {
                                body["metadata"]["resourceVersion"] = json!("1");
                            }
                            (201, body)
                        }
                        _ => (200, body),
                    },
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

/// A failure Status body.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": reason, "code": code, "message": message})
}
