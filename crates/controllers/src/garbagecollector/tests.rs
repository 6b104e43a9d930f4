//! Worker tests: a graph state, live objects served by a fake API, one worker step, and
//! the exact writes it made.

use serde_json::{Value, json};

use super::discovery::tests::res;
use super::graph::tests::{id, observed, owner_ref};
use super::graph::{Change, FOREGROUND, Identity, ORPHAN, Observed};
use super::workqueue::Outcome;
use super::*;
use fakeapi::FakeApi;

const RS_PATH: &str = "/apis/apps/v1/namespaces/ns/replicasets/web-1";
const DEPLOY_PATH: &str = "/apis/apps/v1/namespaces/ns/deployments/web";

fn gc(api: &FakeApi) -> GarbageCollector {
    let gc = GarbageCollector::new(api.client());
    let resources = Resources {
        all: vec![
            res("apps/v1", "Deployment", "deployments", true),
            res("apps/v1", "ReplicaSet", "replicasets", true),
            res("v1", "Pod", "pods", true),
            res("v1", "Node", "nodes", false),
        ],
        ..Default::default()
    };
    gc.set_resources(resources.clone());
    for r in resources.all {
        gc.add_synced_monitor(r);
    }
    gc
}

fn deploy() -> Identity {
    id("apps/v1", "Deployment", "ns", "web", "d1")
}

fn rs() -> Identity {
    id("apps/v1", "ReplicaSet", "ns", "web-1", "r1")
}

fn object(of: &Identity, owners: Vec<Value>, extra_meta: Value) -> Value {
    let mut meta = json!({"name": of.name, "namespace": of.namespace, "uid": of.uid, "resourceVersion": "5"});
    if !owners.is_empty() {
        meta["ownerReferences"] = json!(owners);
    }
    for (k, v) in extra_meta.as_object().cloned().unwrap_or_default() {
        meta[k] = v;
    }
    json!({"apiVersion": of.api_version, "kind": of.kind, "metadata": meta})
}

fn ref_json(of: &Identity, block: bool) -> Value {
    serde_json::to_value(owner_ref(of, block)).unwrap()
}

fn writes(api: &FakeApi) -> Vec<(String, String, Value)> {
    api.writes().into_iter().map(|c| (c.method, c.path, c.body)).collect()
}

#[tokio::test]
async fn a_dependent_whose_owner_is_gone_is_deleted_in_the_background() {
    let api = FakeApi::new();
    api.object(RS_PATH, object(&rs(), vec![ref_json(&deploy(), true)], json!({})));
    let gc = gc(&api);
    gc.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
    assert_eq!(gc.attempt_to_delete_worker("r1").await, Outcome::Forget);
    let w = writes(&api);
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].0.as_str(), w[0].1.as_str()), ("DELETE", RS_PATH));
    assert_eq!(w[0].2["propagationPolicy"], "Background");
    assert_eq!(w[0].2["preconditions"]["uid"], "r1");
    assert!(
        api.calls().iter().any(|c| c.method == "GET" && c.path == DEPLOY_PATH),
        "the owner is looked up live"
    );
}

#[tokio::test]
async fn an_owner_recreated_with_another_uid_counts_as_gone() {
    let api = FakeApi::new();
    api.object(RS_PATH, object(&rs(), vec![ref_json(&deploy(), true)], json!({})));
    api.object(DEPLOY_PATH, object(&id("apps/v1", "Deployment", "ns", "web", "d2"), vec![], json!({})));
    let gc = gc(&api);
    gc.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
    gc.attempt_to_delete_worker("r1").await;
    assert_eq!(writes(&api).iter().map(|w| w.0.as_str()).collect::<Vec<_>>(), ["DELETE"]);
}

#[tokio::test]
async fn a_dependent_with_a_live_owner_is_kept() {
    let api = FakeApi::new();
    api.object(RS_PATH, object(&rs(), vec![ref_json(&deploy(), true)], json!({})));
    api.object(DEPLOY_PATH, object(&deploy(), vec![], json!({})));
    let gc = gc(&api);
    gc.apply(Change::Upsert(observed(&deploy(), vec![])));
    gc.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
    assert_eq!(gc.attempt_to_delete_worker("r1").await, Outcome::Forget);
    assert!(writes(&api).is_empty());
}

#[tokio::test]
async fn references_to_gone_owners_are_dropped_when_another_owner_lives() {
    let api = FakeApi::new();
    let gone = id("apps/v1", "Deployment", "ns", "old", "x1");
    api.object(RS_PATH, object(&rs(), vec![ref_json(&deploy(), false), ref_json(&gone, false)], json!({})));
    api.object(DEPLOY_PATH, object(&deploy(), vec![], json!({})));
    let gc = gc(&api);
    gc.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), false), owner_ref(&gone, false)])));
    gc.attempt_to_delete_worker("r1").await;
    let w = writes(&api);
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].0.as_str(), w[0].1.as_str()), ("PATCH", RS_PATH));
    assert_eq!(
        w[0].2,
        json!({"metadata": {"ownerReferences": [ref_json(&deploy(), false)], "uid": "r1", "resourceVersion": "5"}})
    );
}

#[tokio::test]
async fn a_virtual_owner_that_does_not_exist_releases_its_dependents() {
    let api = FakeApi::new();
    let gc = gc(&api);
    gc.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
    let queued = gc.attempt_to_delete.get().await;
    assert_eq!(queued, "d1", "the virtual owner is checked first");
    gc.attempt_to_delete.done(&queued);
    assert_eq!(gc.attempt_to_delete_worker("d1").await, Outcome::Forget);
    assert!(gc.snapshot("d1").is_none(), "the virtual node is gone");
    assert_eq!(gc.attempt_to_delete.get().await, "r1", "its dependent is checked next");
    assert!(writes(&api).is_empty());
}

fn foreground_owner() -> Observed {
    Observed { deleting: true, finalizers: vec![FOREGROUND.into()], ..observed(&deploy(), vec![]) }
}

fn deleting_meta(finalizer: &str) -> Value {
    json!({"deletionTimestamp": "2024-05-01T10:00:00Z", "finalizers": [finalizer]})
}

#[tokio::test]
async fn a_foreground_owner_loses_its_finalizer_once_no_blocking_dependent_remains() {
    let api = FakeApi::new();
    api.object(DEPLOY_PATH, object(&deploy(), vec![], deleting_meta(FOREGROUND)));
    let gc = gc(&api);
    gc.apply(Change::Upsert(foreground_owner()));
    assert_eq!(gc.attempt_to_delete_worker("d1").await, Outcome::Forget);
    let w = writes(&api);
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].0.as_str(), w[0].1.as_str()), ("PATCH", DEPLOY_PATH));
    assert_eq!(w[0].2, json!({"metadata": {"finalizers": null, "resourceVersion": "5"}}));
}

#[tokio::test]
async fn a_foreground_owner_waits_for_its_blocking_dependents_and_has_them_deleted() {
    let api = FakeApi::new();
    api.object(DEPLOY_PATH, object(&deploy(), vec![], deleting_meta(FOREGROUND)));
    let gc = gc(&api);
    gc.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
    gc.apply(Change::Upsert(foreground_owner()));
    while !gc.attempt_to_delete.is_empty() {
        let k = gc.attempt_to_delete.get().await;
        gc.attempt_to_delete.done(&k);
    }
    gc.attempt_to_delete_worker("d1").await;
    assert!(writes(&api).is_empty(), "the owner keeps its finalizer");
    assert_eq!(gc.attempt_to_delete.get().await, "r1");
}

#[tokio::test]
async fn dependents_of_a_foreground_owner_are_deleted_and_in_foreground_if_they_have_dependents() {
    let api = FakeApi::new();
    api.object(RS_PATH, object(&rs(), vec![ref_json(&deploy(), true)], json!({})));
    api.object(DEPLOY_PATH, object(&deploy(), vec![], deleting_meta(FOREGROUND)));
    let gc = gc(&api);
    gc.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
    gc.apply(Change::Upsert(foreground_owner()));
    gc.attempt_to_delete_worker("r1").await;
    let w = writes(&api);
    assert_eq!((w[0].0.as_str(), w[0].1.as_str()), ("DELETE", RS_PATH));
    assert_eq!(w[0].2["propagationPolicy"], "Background");

    let pod = id("v1", "Pod", "ns", "web-1-abc", "p1");
    gc.apply(Change::Upsert(observed(&pod, vec![owner_ref(&rs(), true)])));
    gc.attempt_to_delete_worker("r1").await;
    let w = writes(&api);
    assert_eq!(
        w[1].2["propagationPolicy"], "Foreground",
        "a dependent with dependents goes in foreground too"
    );
}

#[tokio::test]
async fn orphaning_removes_the_owner_reference_from_dependents_then_the_orphan_finalizer() {
    let api = FakeApi::new();
    api.object(RS_PATH, object(&rs(), vec![ref_json(&deploy(), true)], json!({})));
    api.object(DEPLOY_PATH, object(&deploy(), vec![], deleting_meta(ORPHAN)));
    let gc = gc(&api);
    gc.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&deploy(), true)])));
    gc.apply(Change::Upsert(Observed {
        deleting: true,
        finalizers: vec![ORPHAN.into()],
        ..observed(&deploy(), vec![])
    }));
    assert_eq!(gc.attempt_to_orphan.len(), 1);
    assert_eq!(gc.attempt_to_orphan_worker("d1").await, Outcome::Forget);
    let w = writes(&api);
    assert_eq!(w.len(), 2);
    assert_eq!((w[0].0.as_str(), w[0].1.as_str()), ("PATCH", RS_PATH));
    assert_eq!(w[0].2, json!({"metadata": {"ownerReferences": null, "uid": "r1", "resourceVersion": "5"}}));
    assert_eq!((w[1].0.as_str(), w[1].1.as_str()), ("PATCH", DEPLOY_PATH));
    assert_eq!(w[1].2, json!({"metadata": {"finalizers": null, "resourceVersion": "5"}}));
}

#[tokio::test]
async fn an_owner_of_an_unknown_kind_is_retried_not_assumed_gone() {
    let api = FakeApi::new();
    let unknown = id("example.com/v1", "Gadget", "ns", "g", "g1");
    api.object(RS_PATH, object(&rs(), vec![ref_json(&unknown, true)], json!({})));
    let gc = gc(&api);
    gc.apply(Change::Upsert(observed(&rs(), vec![owner_ref(&unknown, true)])));
    assert_eq!(gc.attempt_to_delete_worker("r1").await, Outcome::Requeue);
    assert!(writes(&api).is_empty());
}

#[tokio::test]
async fn a_cluster_scoped_owner_is_looked_up_without_a_namespace() {
    let api = FakeApi::new();
    let node = id("v1", "Node", "", "n1", "n1");
    let pod = id("v1", "Pod", "ns", "p", "p1");
    api.object("/api/v1/namespaces/ns/pods/p", object(&pod, vec![ref_json(&node, false)], json!({})));
    api.object("/api/v1/nodes/n1", object(&node, vec![], json!({})));
    let gc = gc(&api);
    gc.apply(Change::Upsert(observed(&pod, vec![owner_ref(&node, false)])));
    gc.attempt_to_delete_worker("p1").await;
    assert!(writes(&api).is_empty(), "the node exists");
}
