//! Test support: a fake Kubernetes API behind a real `kube::Client`. It records every
//! request, answers from canned routes and injected failures, and otherwise behaves like
//! a forgiving API server: GET answers 404, DELETE succeeds, a POST is created (a name
//! from `generateName`, a uid and a resourceVersion filled in) and other writes echo
//! their body. Unit tests of controllers and the node agent assert on the exact writes.

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
    /// The request's content type, possibly empty.
    pub content_type: String,
    pub body: Value,
}

/// An answer for every path under a prefix.
struct PrefixRoute {
    method: String,
    prefix: String,
    code: u16,
    reply: Value,
}

#[derive(Default)]
struct State {
    routes: HashMap<(String, String), (u16, Value)>,
    prefixes: Vec<PrefixRoute>,
    calls: Vec<Call>,
    /// Names made from generateName so far (they end in this count).
    generated: u32,
}

/// The fake API; clones share it.
#[derive(Clone, Default)]
pub struct FakeApi(Arc<Mutex<State>>);

/// A client to a new fake API, and the fake.
pub fn fake_client() -> (kube::Client, FakeApi) {
    let api = FakeApi::new();
    (api.client(), api)
}

/// A failure Status body.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": reason, "code": code, "message": message})
}

impl FakeApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// Answers `method path` (no query) with `code` and `body`.
    pub fn on(&self, method: &str, path: &str, code: u16, body: Value) -> &Self {
        self.0.lock().unwrap().routes.insert((method.into(), path.into()), (code, body));
        self
    }

    /// Answers `GET path` with the object.
    pub fn object(&self, path: &str, body: Value) -> &Self {
        self.on("GET", path, 200, body)
    }

    /// Answers `method` on every path starting with `prefix` with `code` and `body`
    /// (checked before the exact routes; the first matching prefix wins).
    pub fn on_prefix(&self, method: &str, prefix: &str, code: u16, body: Value) -> &Self {
        let route = PrefixRoute { method: method.into(), prefix: prefix.into(), code, reply: body };
        self.0.lock().unwrap().prefixes.push(route);
        self
    }

    /// Fails `method` on every path starting with `prefix` with a Status of this code,
    /// reason and message.
    pub fn fail(&self, method: &str, prefix: &str, code: u16, reason: &str, message: &str) -> &Self {
        self.on_prefix(method, prefix, code, status(code, reason, message))
    }

    /// Every request so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().calls.clone()
    }

    /// Every request but GETs.
    pub fn writes(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method != "GET").collect()
    }

    /// The bodies of the events created, in order.
    pub fn events(&self) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "POST" && c.path.ends_with("/events"))
            .map(|c| c.body)
            .collect()
    }

    /// The reasons of the events created, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.events().iter().map(|e| e["reason"].as_str().unwrap_or_default().to_owned()).collect()
    }

    /// Forgets the requests made so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().calls.clear();
    }

    /// A client whose requests this fake answers.
    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or_default().to_string();
                let content_type = req
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let (code, reply) = me.answer(Call { method, path, query, content_type, body });
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

    fn answer(&self, call: Call) -> (u16, Value) {
        let mut state = self.0.lock().unwrap();
        state.calls.push(call.clone());
        let Call { method, path, mut body, .. } = call;
        if let Some(r) = state.prefixes.iter().find(|r| r.method == method && path.starts_with(&r.prefix)) {
            return (r.code, r.reply.clone());
        }
        if let Some(canned) = state.routes.get(&(method.clone(), path)) {
            return canned.clone();
        }
        match method.as_str() {
            "GET" => (404, status(404, "NotFound", "not found")),
            "DELETE" => (200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
            "POST" => {
                if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
                    let generate = meta.get("generateName").and_then(Value::as_str).map(str::to_owned);
                    if let (None, Some(g)) = (meta.get("name"), generate) {
                        state.generated += 1;
                        meta.insert("name".into(), json!(format!("{g}{:05}", state.generated)));
                    }
                    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                    meta.entry("uid").or_insert_with(|| json!(format!("uid-{name}")));
                    meta.entry("resourceVersion").or_insert_with(|| json!("1"));
                }
                (201, body)
            }
            _ => (200, body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_failures_then_routes_then_defaults() {
        let api = FakeApi::new();
        api.object("/api/v1/namespaces/a/pods/p", json!({"metadata": {"name": "p"}}));
        api.fail("DELETE", "/api/v1/namespaces/a/", 409, "Conflict", "injected");
        let call = |method: &str, path: &str, body: Value| {
            let (method, path) = (method.into(), path.into());
            api.answer(Call { method, path, query: String::new(), content_type: String::new(), body })
        };
        assert_eq!(call("GET", "/api/v1/namespaces/a/pods/p", Value::Null).0, 200);
        assert_eq!(call("GET", "/api/v1/namespaces/a/pods/q", Value::Null).0, 404);
        assert_eq!(call("DELETE", "/api/v1/namespaces/a/pods/p", Value::Null).0, 409);
        assert_eq!(call("DELETE", "/api/v1/namespaces/b/pods/p", Value::Null).0, 200);
        let (code, created) =
            call("POST", "/api/v1/namespaces/a/pods", json!({"metadata": {"generateName": "web-"}}));
        assert_eq!(code, 201);
        assert_eq!(created["metadata"]["name"], "web-00001");
        assert_eq!(created["metadata"]["uid"], "uid-web-00001");
        let (_, second) =
            call("POST", "/api/v1/namespaces/a/pods", json!({"metadata": {"generateName": "web-"}}));
        assert_eq!(second["metadata"]["name"], "web-00002");
        assert_eq!(call("PUT", "/api/v1/nodes/n", json!({"x": 1})), (200, json!({"x": 1})));
        assert_eq!(api.calls().len(), 7);
        assert_eq!(api.writes().len(), 5);
        api.clear();
        assert!(api.calls().is_empty());
    }
}
