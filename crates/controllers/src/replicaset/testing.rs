//! Test support for the workload controllers: views of the fake API's requests, and
//! fixtures.

use std::sync::Arc;

pub use fakeapi::{Call, FakeApi};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::{Clock, Context, Informers, Options};

/// The writes (not GETs), Events left out.
pub fn writes(fake: &FakeApi) -> Vec<Call> {
    fake.writes().into_iter().filter(|c| !c.path.ends_with("/events")).collect()
}

/// The (type, reason, message) of every Event written.
pub fn events(fake: &FakeApi) -> Vec<(String, String, String)> {
    let field = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_string();
    fake.events().iter().map(|e| (field(e, "type"), field(e, "reason"), field(e, "message"))).collect()
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
pub fn context(fake: &FakeApi) -> Arc<Context> {
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
