//! EndpointSlice tests: the reconciler's decisions, and syncs against a fake API.

use serde_json::{Value, json};

use super::*;
use crate::{Informers, Options, SystemClock};
use fakeapi::FakeApi;

const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices";

fn ctx(api: &FakeApi) -> Arc<Context> {
    let client = api.client();
    Arc::new(Context {
        informers: Informers::offline(client.clone()),
        client,
        clock: Arc::new(SystemClock),
        options: Options::default(),
    })
}

fn service() -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "svc-1", "labels": {"tier": "front"},
                     "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10", "ipFamilies": ["IPv4"],
                 "ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}
    }))
    .unwrap()
}

fn pod(name: &str, ip: &str, ready: bool, terminating: bool) -> Pod {
    let mut v = json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "nginx",
                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2024-05-01T10:00:05Z"}]}
    });
    if terminating {
        v["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:00:00Z");
    }
    serde_json::from_value(v).unwrap()
}

fn node() -> Node {
    serde_json::from_value(
        json!({"metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "z1"}}}),
    )
    .unwrap()
}

fn endpoint(name: &str, ip: &str, ready: bool, serving: bool, terminating: bool) -> Value {
    json!({"addresses": [ip], "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
           "nodeName": "node-1", "zone": "z1",
           "targetRef": {"kind": "Pod", "namespace": "ns", "name": name, "uid": format!("uid-{name}")}})
}

#[tokio::test]
async fn a_service_gets_an_ipv4_slice_with_the_conditions_of_its_pods() {
    let api = FakeApi::new();
    let ctx = ctx(&api);
    ctx.informers.seed(vec![service()]);
    ctx.informers.seed(vec![
        pod("a", "10.0.0.1", true, false),
        pod("b", "10.0.0.2", false, false),
        pod("c", "10.0.0.3", true, true),
    ]);
    ctx.informers.seed(vec![node()]);
    ctx.informers.seed::<EndpointSlice>(vec![]);
    EndpointSliceController::new(ctx).sync("ns/web").await.unwrap();
    let w = api.writes();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!((w[0].method.as_str(), w[0].path.as_str()), ("POST", SLICES));
    let body = &w[0].body;
    assert_eq!(body["metadata"]["generateName"], "web-");
    assert_eq!(
        body["metadata"]["labels"],
        json!({"tier": "front", "kubernetes.io/service-name": "web",
               "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"})
    );
    assert_eq!(
        body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "svc-1", "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(body["metadata"]["annotations"][LAST_CHANGE_TRIGGER_TIME], "2024-05-01T10:00:00Z");
    assert_eq!(body["addressType"], "IPv4");
    assert_eq!(body["ports"], json!([{"name": "web", "port": 8080, "protocol": "TCP"}]));
    assert_eq!(
        body["endpoints"],
        json!([
            endpoint("a", "10.0.0.1", true, true, false),
            endpoint("b", "10.0.0.2", false, false, false),
            endpoint("c", "10.0.0.3", false, true, true),
        ])
    );
}

#[tokio::test]
async fn a_service_without_endpoints_keeps_one_placeholder_slice() {
    let api = FakeApi::new();
    let ctx = ctx(&api);
    ctx.informers.seed(vec![service()]);
    ctx.informers.seed::<Pod>(vec![]);
    ctx.informers.seed::<Node>(vec![]);
    ctx.informers.seed::<EndpointSlice>(vec![]);
    let c = EndpointSliceController::new(ctx.clone());
    c.sync("ns/web").await.unwrap();
    let w = api.writes();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].body["endpoints"], json!([]));
    assert_eq!(w[0].body["ports"], json!([]));
    // Once the cache shows it, it is left alone.
    let mut placeholder: EndpointSlice = serde_json::from_value(w[0].body.clone()).unwrap();
    placeholder.metadata.name = Some("web-00001".into());
    placeholder.metadata.resource_version = Some("1".into());
    ctx.informers.seed(vec![placeholder]);
    c.sync("ns/web").await.unwrap();
    assert_eq!(api.writes().len(), 1, "{:?}", api.writes());
}

#[tokio::test]
async fn a_sync_before_the_cache_shows_the_controllers_own_write_fails_instead_of_duplicating() {
    let api = FakeApi::new();
    let ctx = ctx(&api);
    ctx.informers.seed(vec![service()]);
    ctx.informers.seed(vec![pod("a", "10.0.0.1", true, false)]);
    ctx.informers.seed(vec![node()]);
    ctx.informers.seed::<EndpointSlice>(vec![]);
    let c = EndpointSliceController::new(ctx);
    c.sync("ns/web").await.unwrap();
    let err = c.sync("ns/web").await.unwrap_err();
    assert_eq!(err.to_string(), "EndpointSlice informer cache is out of date");
    assert_eq!(api.writes().len(), 1);
}

fn slice(name: &str, endpoints: Vec<Value>) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": "3",
            "labels": {"tier": "front", "kubernetes.io/service-name": "web",
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "svc-1", "controller": true, "blockOwnerDeletion": true}]},
        "addressType": "IPv4",
        "ports": [{"name": "web", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
    .unwrap()
}

fn nodes() -> BTreeMap<String, Arc<Node>> {
    BTreeMap::from([("node-1".to_string(), Arc::new(node()))])
}

#[test]
fn endpoints_beyond_the_maximum_spill_into_more_slices() {
    let pods: Vec<Arc<Pod>> =
        (1..=5).map(|i| Arc::new(pod(&format!("p{i}"), &format!("10.0.0.{i}"), true, false))).collect();
    let plan = reconciler::reconcile(&service(), &pods, &[], &nodes(), 2);
    let sizes: Vec<usize> = plan.create.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, [2, 2, 1]);
    assert!(plan.update.is_empty() && plan.delete.is_empty());
}

#[test]
fn a_pod_that_left_is_removed_from_its_slice_and_a_new_one_fills_it() {
    let existing = slice(
        "web-abc",
        vec![endpoint("a", "10.0.0.1", true, true, false), endpoint("gone", "10.0.0.9", true, true, false)],
    );
    let pods =
        vec![Arc::new(pod("a", "10.0.0.1", true, false)), Arc::new(pod("new", "10.0.0.5", true, false))];
    let plan = reconciler::reconcile(&service(), &pods, &[existing], &nodes(), 100);
    assert!(plan.create.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.update.len(), 1);
    let names: Vec<String> = plan.update[0]
        .endpoints
        .iter()
        .map(|e| e.target_ref.as_ref().and_then(|r| r.name.clone()).unwrap_or_default())
        .collect();
    assert_eq!(names, ["a", "new"]);
}

#[test]
fn an_unchanged_slice_is_not_rewritten() {
    let existing = slice("web-abc", vec![endpoint("a", "10.0.0.1", true, true, false)]);
    let pods = vec![Arc::new(pod("a", "10.0.0.1", true, false))];
    let plan = reconciler::reconcile(&service(), &pods, &[existing], &nodes(), 100);
    assert!(plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty(), "{plan:?}");
}

#[test]
fn a_readiness_change_updates_the_endpoint_in_place() {
    let existing = slice("web-abc", vec![endpoint("a", "10.0.0.1", false, false, false)]);
    let pods = vec![Arc::new(pod("a", "10.0.0.1", true, false))];
    let plan = reconciler::reconcile(&service(), &pods, &[existing], &nodes(), 100);
    assert_eq!(plan.update.len(), 1);
    let c = plan.update[0].endpoints[0].conditions.clone().unwrap();
    assert_eq!((c.ready, c.serving, c.terminating), (Some(true), Some(true), Some(false)));
}

#[test]
fn a_slice_emptied_of_its_endpoints_is_reused_for_new_ones() {
    let existing = slice("web-abc", vec![endpoint("gone", "10.0.0.9", true, true, false)]);
    let mut svc = service();
    svc.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].target_port =
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090));
    let pods = vec![Arc::new(pod("a", "10.0.0.1", true, false))];
    let plan = reconciler::reconcile(&svc, &pods, &[existing], &nodes(), 100);
    assert!(plan.create.is_empty() && plan.delete.is_empty(), "{plan:?}");
    assert_eq!(plan.update.len(), 1);
    assert_eq!(plan.update[0].metadata.name.as_deref(), Some("web-abc"));
    assert_eq!(plan.update[0].ports.as_ref().unwrap()[0].port, Some(9090));
}

#[test]
fn a_pod_on_an_unknown_node_is_skipped_and_reported() {
    let pods = vec![Arc::new(pod("a", "10.0.0.1", true, false))];
    let plan = reconciler::reconcile(&service(), &pods, &[], &BTreeMap::new(), 100);
    assert_eq!(plan.skipped, ["skipping Pod a for Service ns/web: Node node-1 Not Found"]);
    assert_eq!(plan.create.len(), 1, "the placeholder keeps the service represented");
}
