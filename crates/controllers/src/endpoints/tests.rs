//! Sync tests: services and pods seeded in offline caches, writes asserted on a fake API.

use serde_json::{Value, json};

use super::*;
use crate::{Informers, Options, SystemClock};
use fakeapi::FakeApi;

fn ctx(api: &FakeApi) -> Arc<Context> {
    let client = api.client();
    Arc::new(Context {
        informers: Informers::offline(client.clone()),
        client,
        clock: Arc::new(SystemClock),
        options: Options::default(),
    })
}

fn service(extra_spec: Value) -> Service {
    let mut spec = json!({
        "selector": {"app": "web"},
        "clusterIP": "10.96.0.10",
        "ipFamilies": ["IPv4"],
        "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    });
    for (k, v) in extra_spec.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "svc-1", "labels": {"tier": "front"},
                     "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": spec
    }))
    .unwrap()
}

fn pod(name: &str, ip: Option<&str>, ready: bool, labels: Value) -> Pod {
    let mut status = json!({"phase": "Running", "conditions": [
        {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2024-05-01T10:00:05Z"}]});
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx",
                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
        "status": status
    }))
    .unwrap()
}

fn web_pods() -> Vec<Pod> {
    vec![
        pod("a", Some("10.0.0.1"), true, json!({"app": "web"})),
        pod("b", Some("10.0.0.2"), false, json!({"app": "web"})),
        pod("c", None, true, json!({"app": "web"})),
        pod("d", Some("10.0.0.4"), true, json!({"app": "db"})),
    ]
}

fn address(name: &str, ip: &str) -> Value {
    json!({"ip": ip, "nodeName": "node-1", "targetRef": {"kind": "Pod", "namespace": "ns", "name": name, "uid": format!("uid-{name}")}})
}

#[tokio::test]
async fn ready_and_not_ready_pods_become_addresses_and_not_ready_addresses() {
    let api = FakeApi::new();
    let ctx = ctx(&api);
    ctx.informers.seed(vec![service(json!({}))]);
    ctx.informers.seed(web_pods());
    let c = EndpointsController::new(ctx);
    c.sync("ns/web").await.unwrap();
    let w = api.writes();
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].method.as_str(), w[0].path.as_str()), ("POST", "/api/v1/namespaces/ns/endpoints"));
    assert_eq!(
        w[0].body["subsets"],
        json!([{"addresses": [address("a", "10.0.0.1")], "notReadyAddresses": [address("b", "10.0.0.2")],
                "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}]}])
    );
    assert_eq!(w[0].body["metadata"]["name"], "web");
    assert_eq!(w[0].body["metadata"]["labels"], json!({"tier": "front"}));
    assert_eq!(w[0].body["metadata"]["annotations"][LAST_CHANGE_TRIGGER_TIME], "2024-05-01T10:00:00Z");
}

#[tokio::test]
async fn publishing_not_ready_addresses_lists_every_pod_as_ready() {
    let api = FakeApi::new();
    let ctx = ctx(&api);
    ctx.informers.seed(vec![service(json!({"publishNotReadyAddresses": true}))]);
    ctx.informers.seed(web_pods());
    EndpointsController::new(ctx).sync("ns/web").await.unwrap();
    let w = api.writes();
    assert_eq!(
        w[0].body["subsets"],
        json!([{"addresses": [address("a", "10.0.0.1"), address("b", "10.0.0.2")],
                "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}]}])
    );
}

#[tokio::test]
async fn a_headless_service_without_ports_gets_addresses_and_the_headless_label() {
    let api = FakeApi::new();
    let ctx = ctx(&api);
    ctx.informers.seed(vec![service(json!({"clusterIP": "None", "ports": []}))]);
    ctx.informers.seed(web_pods());
    EndpointsController::new(ctx).sync("ns/web").await.unwrap();
    let w = api.writes();
    assert_eq!(
        w[0].body["subsets"],
        json!([{"addresses": [address("a", "10.0.0.1")], "notReadyAddresses": [address("b", "10.0.0.2")]}])
    );
    assert_eq!(
        w[0].body["metadata"]["labels"],
        json!({"tier": "front", "service.kubernetes.io/headless": ""})
    );
}

#[tokio::test]
async fn a_service_without_a_selector_is_left_alone() {
    let api = FakeApi::new();
    let ctx = ctx(&api);
    let mut svc = service(json!({}));
    svc.spec.as_mut().unwrap().selector = None;
    ctx.informers.seed(vec![svc]);
    ctx.informers.seed(web_pods());
    EndpointsController::new(ctx).sync("ns/web").await.unwrap();
    assert!(api.writes().is_empty());
}

#[tokio::test]
async fn the_endpoints_of_a_deleted_service_are_deleted() {
    let api = FakeApi::new();
    let ctx = ctx(&api);
    ctx.informers.seed::<Service>(vec![]);
    EndpointsController::new(ctx).sync("ns/web").await.unwrap();
    let w = api.writes();
    assert_eq!((w[0].method.as_str(), w[0].path.as_str()), ("DELETE", "/api/v1/namespaces/ns/endpoints/web"));
}

#[tokio::test]
async fn endpoints_already_right_are_not_rewritten_and_changes_update_in_place() {
    let api = FakeApi::new();
    let ctx = ctx(&api);
    ctx.informers.seed(vec![service(json!({}))]);
    ctx.informers.seed(web_pods());
    let existing: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "resourceVersion": "5", "labels": {"tier": "front"}},
        "subsets": [{"addresses": [address("a", "10.0.0.1")], "notReadyAddresses": [address("b", "10.0.0.2")],
                     "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}]}]
    }))
    .unwrap();
    ctx.informers.seed(vec![existing]);
    let c = EndpointsController::new(ctx.clone());
    c.sync("ns/web").await.unwrap();
    assert!(api.writes().is_empty(), "{:?}", api.writes());
    // Pod b becomes ready.
    let mut pods = web_pods();
    pods[1] = pod("b", Some("10.0.0.2"), true, json!({"app": "web"}));
    ctx.informers.seed(pods);
    c.sync("ns/web").await.unwrap();
    let w = api.writes();
    assert_eq!((w[0].method.as_str(), w[0].path.as_str()), ("PUT", "/api/v1/namespaces/ns/endpoints/web"));
    assert_eq!(w[0].body["metadata"]["resourceVersion"], "5");
    assert_eq!(
        w[0].body["subsets"],
        json!([{"addresses": [address("a", "10.0.0.1"), address("b", "10.0.0.2")],
                "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}]}])
    );
}
