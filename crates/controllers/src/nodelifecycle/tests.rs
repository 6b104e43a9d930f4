//! Node lifecycle tests: seeded caches, a pinned clock, one pass, the exact writes.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec, PodStatus, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use serde_json::json;

use super::*;
use crate::{Clock, Informers, Options};
use fakeapi::{Call, FakeApi, fake_client};

struct TestClock(Mutex<jiff::Timestamp>);

impl Clock for TestClock {
    fn now(&self) -> jiff::Timestamp {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn advance(&self, secs: i64) {
        let mut t = self.0.lock().unwrap();
        *t += jiff::SignedDuration::from_secs(secs);
    }
}

fn t0() -> jiff::Timestamp {
    "2025-03-01T12:00:00Z".parse().unwrap()
}

fn setup() -> (Arc<Context>, Arc<TestClock>, FakeApi) {
    let (client, calls) = fake_client();
    let clock = Arc::new(TestClock(Mutex::new(t0())));
    let ctx = Arc::new(Context {
        informers: Informers::offline(client.clone()),
        client,
        clock: clock.clone(),
        options: Options::default(),
    });
    (ctx, clock, calls)
}

fn node(name: &str, ready: &str, taints: Vec<Taint>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("3".into()),
            creation_timestamp: Some(Time(t0() - jiff::SignedDuration::from_secs(3600))),
            ..Default::default()
        },
        spec: Some(NodeSpec { taints: Some(taints), ..Default::default() }),
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: ready.into(),
                reason: Some("KubeletReady".into()),
                last_heartbeat_time: Some(Time(t0())),
                last_transition_time: Some(Time(t0() - jiff::SignedDuration::from_secs(3600))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn lease(name: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NODE_LEASE_NAMESPACE.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec { renew_time: Some(MicroTime(t0())), ..Default::default() }),
    }
}

fn pod(name: &str, node: &str, tolerations: Vec<Toleration>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            tolerations: Some(tolerations),
            ..Default::default()
        }),
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn non_events(calls: &FakeApi) -> Vec<Call> {
    calls.writes().into_iter().filter(|c| !c.path.contains("/events")).collect()
}

fn events(calls: &FakeApi) -> Vec<(String, String)> {
    calls
        .writes()
        .into_iter()
        .filter(|c| c.path.contains("/events"))
        .map(|c| {
            (c.body["reason"].as_str().unwrap_or("").into(), c.body["message"].as_str().unwrap_or("").into())
        })
        .collect()
}

fn path(c: &Call) -> &str {
    &c.path
}

#[tokio::test]
async fn a_node_whose_lease_stops_is_marked_unknown_and_its_pods_not_ready() {
    let (ctx, clock, calls) = setup();
    ctx.informers.seed(vec![node("n1", "True", vec![]), node("n2", "True", vec![])]);
    ctx.informers.seed(vec![lease("n1"), lease("n2")]);
    ctx.informers.seed(vec![pod("web", "n1", vec![])]);
    let m = Monitor::new(ctx.clone());
    m.pass().await.unwrap();
    assert!(non_events(&calls).is_empty());
    assert_eq!(
        events(&calls),
        [
            ("RegisteredNode".to_string(), "Node n1 event: Registered Node n1 in Controller".to_string()),
            ("RegisteredNode".to_string(), "Node n2 event: Registered Node n2 in Controller".to_string()),
        ]
    );

    // n2 keeps renewing its lease; n1 falls silent.
    clock.advance(41);
    let mut renewed = lease("n2");
    renewed.spec.as_mut().unwrap().renew_time = Some(MicroTime(clock.now()));
    ctx.informers.seed(vec![lease("n1"), renewed]);
    let before = calls.writes().len();
    m.pass().await.unwrap();
    let writes: Vec<Call> = calls.writes().into_iter().skip(before).collect();
    let status: Vec<&Call> = writes.iter().filter(|c| !c.path.contains("/events")).collect();
    assert_eq!(status.len(), 2, "{status:?}");
    assert_eq!((status[0].method.as_str(), path(status[0])), ("PUT", "/api/v1/nodes/n1/status"));
    let ready = &status[0].body["status"]["conditions"][0];
    assert_eq!(
        (&ready["status"], &ready["reason"], &ready["message"]),
        (&json!("Unknown"), &json!("NodeStatusUnknown"), &json!("Kubelet stopped posting node status."))
    );
    assert_eq!(ready["lastTransitionTime"], "2025-03-01T12:00:41Z");
    assert_eq!(status[0].body["status"]["conditions"].as_array().unwrap().len(), 4);
    assert_eq!(
        (status[1].method.as_str(), path(status[1])),
        ("PUT", "/api/v1/namespaces/default/pods/web/status")
    );
    assert_eq!(status[1].body["status"]["conditions"][0]["status"], "False");
    let evs: Vec<(String, String)> = writes
        .iter()
        .filter(|c| c.path.contains("/events"))
        .map(|c| {
            (c.body["reason"].as_str().unwrap().to_string(), c.body["message"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(
        evs,
        [
            ("NodeNotReady".to_string(), "Node n1 status is now: NodeNotReady".to_string()),
            ("NodeNotReady".to_string(), "Node is not ready".to_string()),
        ]
    );
}

#[tokio::test]
async fn an_unknown_node_in_a_healthy_zone_is_tainted_unreachable_at_the_zone_rate() {
    let (ctx, clock, calls) = setup();
    ctx.informers.seed(vec![
        node("n1", "Unknown", vec![]),
        node("n2", "True", vec![]),
        node("n3", "Unknown", vec![]),
    ]);
    ctx.informers.seed(vec![lease("n1"), lease("n2"), lease("n3")]);
    let m = Monitor::new(ctx.clone());
    m.pass().await.unwrap();
    m.taint_pass().await;
    let w = non_events(&calls);
    assert_eq!(w.len(), 1, "one node per ten seconds: {w:?}");
    assert_eq!((w[0].method.as_str(), path(&w[0])), ("PATCH", "/api/v1/nodes/n1"));
    assert_eq!(
        w[0].body,
        json!({"metadata": {"resourceVersion": "3"}, "spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "timeAdded": "2025-03-01T12:00:00Z"}
        ]}})
    );
    clock.advance(10);
    m.taint_pass().await;
    let w = non_events(&calls);
    assert_eq!(w.len(), 2);
    assert_eq!(path(&w[1]), "/api/v1/nodes/n3");
}

#[tokio::test]
async fn a_node_reporting_not_ready_swaps_an_unreachable_taint_at_once() {
    let (ctx, _clock, calls) = setup();
    let tainted = Taint { time_added: Some(Time(t0())), ..taints::taint(UNREACHABLE, NO_EXECUTE) };
    ctx.informers.seed(vec![node("n1", "False", vec![tainted]), node("n2", "True", vec![])]);
    ctx.informers.seed(vec![lease("n1"), lease("n2")]);
    let m = Monitor::new(ctx.clone());
    // Registered first (which clears taints of a node new to this controller) ...
    m.pass().await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w[0].body["spec"]["taints"], serde_json::Value::Null);
    // ... a later pass swaps the taint straight away.
    m.pass().await.unwrap();
    let w = non_events(&calls);
    let last = w.last().unwrap();
    assert_eq!(path(last), "/api/v1/nodes/n1");
    assert_eq!(last.body["spec"]["taints"][0]["key"], "node.kubernetes.io/not-ready");
}

#[tokio::test]
async fn when_every_node_is_down_no_noexecute_taint_is_added() {
    let (ctx, _clock, calls) = setup();
    ctx.informers.seed(vec![node("n1", "Unknown", vec![]), node("n2", "Unknown", vec![])]);
    ctx.informers.seed(vec![lease("n1"), lease("n2")]);
    let m = Monitor::new(ctx.clone());
    m.pass().await.unwrap();
    m.pass().await.unwrap();
    m.taint_pass().await;
    assert!(non_events(&calls).is_empty());
}

#[tokio::test]
async fn cordoning_adds_the_unschedulable_taint_and_uncordoning_removes_it() {
    let (ctx, _clock, calls) = setup();
    let mut n = node("n1", "True", vec![]);
    n.spec.as_mut().unwrap().unschedulable = Some(true);
    reconcile_node(Arc::new(n.clone()), ctx.clone()).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 1);
    assert_eq!(
        w[0].body["spec"]["taints"],
        json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "2025-03-01T12:00:00Z"}])
    );
    let kept = Taint { value: Some("gpu".into()), ..taints::taint("dedicated", "NoSchedule") };
    n.spec.as_mut().unwrap().unschedulable = Some(false);
    n.spec.as_mut().unwrap().taints = Some(vec![kept, taints::taint(taints::UNSCHEDULABLE, "NoSchedule")]);
    reconcile_node(Arc::new(n), ctx).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 2);
    assert_eq!(
        w[1].body["spec"]["taints"],
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    );
}

#[tokio::test]
async fn beta_os_labels_follow_the_stable_ones() {
    let (ctx, _clock, calls) = setup();
    let mut n = node("n1", "True", vec![]);
    n.metadata.labels = Some([("kubernetes.io/os".to_string(), "linux".to_string())].into());
    reconcile_node(Arc::new(n), ctx).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w[0].body["metadata"]["labels"], json!({"beta.kubernetes.io/os": "linux"}));
}

fn unreachable_node() -> Node {
    node(
        "n1",
        "Unknown",
        vec![Taint { time_added: Some(Time(t0())), ..taints::taint(UNREACHABLE, NO_EXECUTE) }],
    )
}

fn toleration(seconds: Option<i64>) -> Toleration {
    Toleration {
        key: Some(UNREACHABLE.into()),
        operator: Some("Exists".into()),
        effect: Some("NoExecute".into()),
        toleration_seconds: seconds,
        value: None,
    }
}

#[tokio::test]
async fn a_pod_that_does_not_tolerate_a_noexecute_taint_is_evicted_at_once() {
    let (ctx, _clock, calls) = setup();
    ctx.informers.seed(vec![unreachable_node()]);
    let st = Arc::new(eviction::State::new(ctx));
    eviction::reconcile(Arc::new(pod("web", "n1", vec![])), st).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 2);
    assert_eq!((w[0].method.as_str(), path(&w[0])), ("PUT", "/api/v1/namespaces/default/pods/web/status"));
    assert_eq!(
        w[0].body["status"]["conditions"][1],
        json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
               "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": "2025-03-01T12:00:00Z"})
    );
    assert_eq!((w[1].method.as_str(), path(&w[1])), ("DELETE", "/api/v1/namespaces/default/pods/web"));
    assert_eq!(
        events(&calls),
        [("TaintManagerEviction".to_string(), "Marking for deletion Pod default/web".to_string())]
    );
}

#[tokio::test]
async fn a_pod_tolerating_for_a_while_is_evicted_when_its_toleration_runs_out() {
    let (ctx, clock, calls) = setup();
    ctx.informers.seed(vec![unreachable_node()]);
    let st = Arc::new(eviction::State::new(ctx));
    let p = Arc::new(pod("web", "n1", vec![toleration(Some(300))]));
    let action = eviction::reconcile(p.clone(), st.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    assert!(calls.writes().is_empty());
    clock.advance(120);
    let action = eviction::reconcile(p.clone(), st.clone()).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(180)), "counted from the first look");
    clock.advance(180);
    eviction::reconcile(p, st).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.last().map(|c| c.method.as_str()), Some("DELETE"));
}

#[tokio::test]
async fn a_pod_tolerating_forever_stays_and_a_removed_taint_cancels_an_eviction() {
    let (ctx, _clock, calls) = setup();
    ctx.informers.seed(vec![unreachable_node()]);
    let st = Arc::new(eviction::State::new(ctx.clone()));
    eviction::reconcile(Arc::new(pod("forever", "n1", vec![toleration(None)])), st.clone()).await.unwrap();
    assert!(calls.writes().is_empty());

    let p = Arc::new(pod("web", "n1", vec![toleration(Some(300))]));
    eviction::reconcile(p.clone(), st.clone()).await.unwrap();
    ctx.informers.seed(vec![node("n1", "True", vec![])]);
    eviction::reconcile(p, st).await.unwrap();
    assert!(non_events(&calls).is_empty());
    assert_eq!(
        events(&calls),
        [("TaintManagerEviction".to_string(), "Cancelling deletion of Pod default/web".to_string())]
    );
}
