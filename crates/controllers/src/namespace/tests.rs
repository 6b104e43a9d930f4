//! Reconcile tests: a terminating namespace against a fake API, asserting on the writes.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use serde_json::{Value, json};

use super::*;
use crate::{Clock, Informers, Options};
use fakeapi::FakeApi;

struct Fixed(jiff::Timestamp);

impl Clock for Fixed {
    fn now(&self) -> jiff::Timestamp {
        self.0
    }
}

const DELETED_AT: &str = "2024-05-01T10:00:00Z";

fn state(api: &FakeApi, now: &str) -> Arc<State> {
    let client = api.client();
    State::new(Arc::new(Context {
        informers: Informers::offline(client.clone()),
        client,
        clock: Arc::new(Fixed(now.parse().unwrap())),
        options: Options::default(),
    }))
}

fn terminating() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "team", "uid": "ns-1", "resourceVersion": "7", "deletionTimestamp": DELETED_AT},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Terminating"}
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "9"}, "items": items})
}

fn serve(api: &FakeApi) {
    let all = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
    api.object("/api", json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}));
    api.object(
        "/api/v1",
        json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": all},
            {"name": "configmaps", "singularName": "configmap", "namespaced": true, "kind": "ConfigMap", "verbs": all},
            {"name": "namespaces", "singularName": "namespace", "namespaced": false, "kind": "Namespace", "verbs": all}
        ]}),
    );
    api.object(
        "/apis",
        json!({"kind": "APIGroupList", "groups": [{"name": "example.com",
            "versions": [{"groupVersion": "example.com/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "example.com/v1", "version": "v1"}}]}),
    );
    api.object(
        "/apis/example.com/v1",
        json!({"kind": "APIResourceList", "groupVersion": "example.com/v1", "resources": [
            {"name": "widgets", "singularName": "widget", "namespaced": true, "kind": "Widget", "verbs": ["delete", "get", "list", "watch"]}
        ]}),
    );
    api.object("/api/v1/namespaces/team", terminating());
    api.object("/api/v1/namespaces/team/pods", list("PodList", vec![]));
    api.object("/api/v1/namespaces/team/configmaps", list("ConfigMapList", vec![]));
    api.object("/apis/example.com/v1/namespaces/team/widgets", list("WidgetList", vec![]));
}

fn ns_object() -> Arc<Namespace> {
    Arc::new(serde_json::from_value(terminating()).unwrap())
}

#[tokio::test]
async fn an_empty_terminating_namespace_is_finalized_after_its_content_is_deleted() {
    let api = FakeApi::new();
    serve(&api);
    let action = reconcile(ns_object(), state(&api, "2024-05-01T10:00:01Z")).await.unwrap();
    assert_eq!(action, Action::await_change());
    let writes: Vec<(String, String)> = api.writes().into_iter().map(|c| (c.method, c.path)).collect();
    assert_eq!(
        writes,
        [
            ("DELETE".to_string(), "/api/v1/namespaces/team/configmaps".to_string()),
            ("DELETE".into(), "/api/v1/namespaces/team/pods".into()),
            ("PUT".into(), "/api/v1/namespaces/team/status".into()),
            ("PUT".into(), "/api/v1/namespaces/team/finalize".into()),
        ]
    );
    let w = api.writes();
    assert_eq!(w[0].body["propagationPolicy"], "Background");
    let conditions = w[2].body["status"]["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 5);
    assert!(conditions.iter().all(|c| c["status"] == "False"), "{conditions:?}");
    assert_eq!(w[3].body["spec"]["finalizers"], json!([]));
    assert_eq!(w[3].body["metadata"]["name"], "team");
}

#[tokio::test]
async fn a_resource_without_deletecollection_is_deleted_item_by_item() {
    let api = FakeApi::new();
    serve(&api);
    // Listed once to delete, then empty when checked (the fake answers the same list, so
    // the check finds the item again: it is reported as unexpectedly remaining).
    api.object(
        "/apis/example.com/v1/namespaces/team/widgets",
        list("WidgetList", vec![json!({"metadata": {"name": "w1", "namespace": "team", "uid": "w-1"}})]),
    );
    let err = reconcile(ns_object(), state(&api, "2024-05-01T10:00:01Z")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "unexpected items still remain in namespace: team for gvr: example.com/v1, Resource=widgets"
    );
    let w = api.writes();
    assert!(
        w.iter().any(|c| c.method == "DELETE" && c.path == "/apis/example.com/v1/namespaces/team/widgets/w1")
    );
    let status = w.iter().find(|c| c.path.ends_with("/status")).unwrap();
    let conditions = status.body["status"]["conditions"].as_array().unwrap();
    let failure = conditions.iter().find(|c| c["type"] == "NamespaceDeletionContentFailure").unwrap();
    assert_eq!(failure["reason"], "ContentDeletionFailed");
    assert_eq!(
        failure["message"],
        "Failed to delete all resource types, 1 remaining: unexpected items still remain in namespace: team for gvr: example.com/v1, Resource=widgets"
    );
    assert!(!w.iter().any(|c| c.path.ends_with("/finalize")), "a namespace with content is not finalized");
}

#[tokio::test]
async fn terminating_pods_are_waited_for_with_their_grace_period() {
    let api = FakeApi::new();
    serve(&api);
    let pod = |name: &str| {
        json!({"metadata": {"name": name, "namespace": "team", "uid": name, "deletionTimestamp": "2024-05-01T10:00:30Z"},
               "spec": {"containers": [{"name": "c", "image": "i"}], "terminationGracePeriodSeconds": 30},
               "status": {"phase": "Running"}})
    };
    api.object("/api/v1/namespaces/team/pods", list("PodList", vec![pod("a"), pod("b")]));
    let action = reconcile(ns_object(), state(&api, "2024-05-01T10:00:05Z")).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    let w = api.writes();
    let status = w.iter().find(|c| c.path.ends_with("/status")).unwrap();
    let conditions = status.body["status"]["conditions"].as_array().unwrap();
    let remaining = conditions.iter().find(|c| c["type"] == "NamespaceContentRemaining").unwrap();
    assert_eq!(remaining["status"], "True");
    assert_eq!(remaining["reason"], "SomeResourcesRemain");
    assert_eq!(remaining["message"], "Some resources are remaining: pods. has 2 resource instances");
    assert!(!w.iter().any(|c| c.path.ends_with("/finalize")));
}

#[tokio::test]
async fn a_namespace_is_marked_terminating_before_it_is_emptied() {
    let api = FakeApi::new();
    serve(&api);
    let mut ns = terminating();
    ns["status"]["phase"] = json!("Active");
    api.object("/api/v1/namespaces/team", ns);
    reconcile(ns_object(), state(&api, "2024-05-01T10:00:01Z")).await.unwrap();
    let first = &api.writes()[0];
    assert_eq!((first.method.as_str(), first.path.as_str()), ("PUT", "/api/v1/namespaces/team/status"));
    assert_eq!(first.body["status"]["phase"], "Terminating");
}

#[tokio::test]
async fn a_namespace_not_being_deleted_is_left_alone() {
    let api = FakeApi::new();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap();
    reconcile(Arc::new(ns), state(&api, DELETED_AT)).await.unwrap();
    assert!(api.calls().is_empty());
}
