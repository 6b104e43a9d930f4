//! Test support: a fake API endpoint that records every request a reconcile makes and
//! answers writes by echoing the body, so tests can assert on the exact writes.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

/// One request a reconcile made.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    /// Path and query, e.g. `/api/v1/namespaces/ns/pods?`.
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
}

/// A client whose requests are recorded: writes succeed and echo their body (with a
/// name filled in from generateName); GETs answer 404.
pub fn fake_client() -> (kube::Client, Calls) {
    let calls = Calls::default();
    let recorded = calls.clone();
    let svc = tower::service_fn(move |req: Request<Body>| {
        let recorded = recorded.clone();
        async move {
            let method = req.method().to_string();
            let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let mut body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            recorded.0.lock().unwrap().push(Call { method: method.clone(), path, body: body.clone() });
            let (code, reply) = match method.as_str() {
                "GET" => (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
                ),
                "DELETE" => (200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
                _ => {
                    if body.pointer("/metadata/name").is_none()
                        && let Some(g) =
                            body.pointer("/metadata/generateName").and_then(Value::as_str).map(str::to_string)
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
    (kube::Client::new(svc, "default"), calls)
}
