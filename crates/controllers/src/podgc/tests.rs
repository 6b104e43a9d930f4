//! Pod GC tests: selection tables, and passes against a fake API asserting on the writes.

use std::sync::Mutex;

use serde_json::{Value, json};

use super::*;
use crate::{Clock, Informers, Options};
use fakeapi::FakeApi;

struct TestClock(Mutex<jiff::Timestamp>);

impl Clock for TestClock {
    fn now(&self) -> jiff::Timestamp {
        *self.0.lock().unwrap()
    }
}

fn pod(v: Value) -> Arc<Pod> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn p(name: &str, phase: &str, created: &str) -> Arc<Pod> {
    pod(json!({"metadata": {"name": name, "namespace": "ns", "uid": name, "creationTimestamp": created},
               "spec": {"containers": [], "nodeName": "n1"}, "status": {"phase": phase}}))
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    pods.iter().map(|p| p.name_any()).collect()
}

#[test]
fn terminated_pods_beyond_the_threshold_go_evicted_and_oldest_first() {
    let evicted = pod(
        json!({"metadata": {"name": "e", "namespace": "ns", "creationTimestamp": "2024-01-05T00:00:00Z"},
                             "status": {"phase": "Failed", "reason": "Evicted"}}),
    );
    let pods = vec![
        p("running", "Running", "2024-01-01T00:00:00Z"),
        p("old", "Succeeded", "2024-01-02T00:00:00Z"),
        p("new", "Failed", "2024-01-04T00:00:00Z"),
        p("mid", "Succeeded", "2024-01-03T00:00:00Z"),
        evicted,
    ];
    let cases = [
        (10, vec![]),
        (4, vec![]),
        (3, vec!["e"]),
        (1, vec!["e", "old", "mid"]),
        (0, vec!["e", "old", "mid", "new"]),
    ];
    for (threshold, want) in cases {
        assert_eq!(names(&terminated_to_delete(&pods, threshold)), want, "threshold {threshold}");
    }
}

#[test]
fn only_terminating_pods_on_not_ready_out_of_service_nodes_are_selected() {
    let node = |name: &str, ready: &str, taint: bool| {
        let taints =
            if taint { json!([{"key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute"}]) } else { json!([]) };
        let n: Node = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}}))
        .unwrap();
        (name.to_string(), Arc::new(n))
    };
    let nodes: HashMap<String, Arc<Node>> =
        [node("down", "False", true), node("up", "True", true), node("untainted", "Unknown", false)].into();
    let terminating = |name: &str, on: &str| {
        pod(
            json!({"metadata": {"name": name, "namespace": "ns", "deletionTimestamp": "2024-01-01T00:00:00Z"},
                   "spec": {"containers": [], "nodeName": on}, "status": {"phase": "Running"}}),
        )
    };
    let running = pod(
        json!({"metadata": {"name": "alive", "namespace": "ns"}, "spec": {"containers": [], "nodeName": "down"}}),
    );
    let pods = vec![terminating("a", "down"), terminating("b", "up"), terminating("c", "untainted"), running];
    assert_eq!(names(&terminating_out_of_service(&pods, &nodes)), ["a"]);
}

fn ctx(api: &FakeApi, clock: Arc<TestClock>) -> Arc<Context> {
    let client = api.client();
    Arc::new(Context {
        informers: Informers::offline(client.clone()),
        client,
        clock,
        options: Options::default(),
    })
}

#[tokio::test]
async fn pods_on_a_deleted_node_are_failed_and_force_deleted_after_the_quarantine() {
    let api = FakeApi::new();
    let clock = Arc::new(TestClock(Mutex::new("2024-05-01T10:00:00Z".parse().unwrap())));
    let ctx = ctx(&api, clock.clone());
    ctx.informers.seed(vec![
        (*p("orphan", "Running", "2024-01-01T00:00:00Z")).clone(),
        (*pod(json!({"metadata": {"name": "done", "namespace": "ns", "uid": "done"},
                     "spec": {"containers": [], "nodeName": "n1"}, "status": {"phase": "Succeeded"}})))
        .clone(),
    ]);
    ctx.informers.seed::<Node>(vec![]);
    let gc = PodGc::new(ctx, TERMINATED_POD_THRESHOLD);
    gc.gc().await;
    assert!(api.calls().is_empty(), "a node missing from the cache is first quarantined");
    *clock.0.lock().unwrap() = "2024-05-01T10:00:41Z".parse().unwrap();
    gc.gc().await;
    let calls: Vec<(String, String)> = api.calls().into_iter().map(|c| (c.method, c.path)).collect();
    assert_eq!(
        calls,
        [
            ("GET".to_string(), "/api/v1/nodes/n1".to_string()),
            ("DELETE".into(), "/api/v1/namespaces/ns/pods/done".into()),
            ("PATCH".into(), "/api/v1/namespaces/ns/pods/orphan/status".into()),
            ("DELETE".into(), "/api/v1/namespaces/ns/pods/orphan".into()),
        ]
    );
    let w = api.writes();
    assert_eq!(w[0].body["gracePeriodSeconds"], 0, "a finished pod is deleted without a status patch");
    assert_eq!(
        w[1].body,
        json!({"metadata": {"uid": "orphan"}, "status": {"phase": "Failed", "conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists", "lastTransitionTime": "2024-05-01T10:00:41Z"}]}})
    );
    assert_eq!(w[2].body["gracePeriodSeconds"], 0);
}

#[tokio::test]
async fn a_node_that_still_exists_saves_its_pods() {
    let api = FakeApi::new();
    api.object("/api/v1/nodes/n1", json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}));
    let clock = Arc::new(TestClock(Mutex::new("2024-05-01T10:00:00Z".parse().unwrap())));
    let ctx = ctx(&api, clock.clone());
    ctx.informers.seed(vec![(*p("pod", "Running", "2024-01-01T00:00:00Z")).clone()]);
    ctx.informers.seed::<Node>(vec![]);
    let gc = PodGc::new(ctx, TERMINATED_POD_THRESHOLD);
    gc.gc().await;
    *clock.0.lock().unwrap() = "2024-05-01T10:01:00Z".parse().unwrap();
    gc.gc().await;
    assert!(api.writes().is_empty());
}

#[tokio::test]
async fn unscheduled_terminating_pods_are_force_deleted() {
    let api = FakeApi::new();
    let clock = Arc::new(TestClock(Mutex::new("2024-05-01T10:00:00Z".parse().unwrap())));
    let ctx = ctx(&api, clock);
    ctx.informers.seed(vec![(*pod(json!({"metadata": {"name": "u", "namespace": "ns", "uid": "u",
        "deletionTimestamp": "2024-05-01T09:00:00Z"}, "spec": {"containers": []}, "status": {"phase": "Pending"}})))
    .clone()]);
    ctx.informers.seed::<Node>(vec![]);
    PodGc::new(ctx, TERMINATED_POD_THRESHOLD).gc().await;
    let w: Vec<(String, String)> = api.writes().into_iter().map(|c| (c.method, c.path)).collect();
    assert_eq!(
        w,
        [
            ("PATCH".to_string(), "/api/v1/namespaces/ns/pods/u/status".to_string()),
            ("DELETE".into(), "/api/v1/namespaces/ns/pods/u".into()),
        ]
    );
}
