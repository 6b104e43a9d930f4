//! Integration, in-process over the memory store: patches that do not name a
//! resourceVersion never fail with 409 because another writer got there first; they
//! apply again to the newer object, as Kubernetes does. A patch that names one is a
//! precondition and does fail.

mod common;

use std::sync::Arc;

use common::api;
use http::StatusCode;
use serde_json::{Value, json};

async fn call(
    api: &Arc<apiserver::Api>,
    method: &str,
    path: &str,
    ct: &str,
    body: Value,
) -> (StatusCode, Value) {
    common::request(api, method, path, ct, body, None).await
}

const CM: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_without_a_resource_version_all_succeed() {
    let api = api().await;
    let (code, _) = call(&api, "POST", CM, "application/json", json!({"metadata": {"name": "c"}})).await;
    assert_eq!(code, StatusCode::CREATED);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let ct = if i % 2 == 0 {
                "application/merge-patch+json"
            } else {
                "application/strategic-merge-patch+json"
            };
            let patch = json!({"metadata": {"labels": {format!("l{i}"): "x"}}});
            call(&api, "PATCH", &format!("{CM}/c"), ct, patch).await
        }));
    }
    for t in tasks {
        let (code, body) = t.await.unwrap();
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    let (_, cm) = call(&api, "GET", &format!("{CM}/c"), "application/json", Value::Null).await;
    assert_eq!(cm["metadata"]["labels"].as_object().unwrap().len(), 24, "{cm}");
}

#[tokio::test]
async fn a_patch_naming_an_old_resource_version_is_a_conflict() {
    let api = api().await;
    let (_, created) = call(&api, "POST", CM, "application/json", json!({"metadata": {"name": "c"}})).await;
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_owned();
    let (code, _) =
        call(&api, "PATCH", &format!("{CM}/c"), "application/merge-patch+json", json!({"data": {"a": "1"}}))
            .await;
    assert_eq!(code, StatusCode::OK);
    let stale = json!({"metadata": {"resourceVersion": rv}, "data": {"a": "2"}});
    let (code, status) = call(&api, "PATCH", &format!("{CM}/c"), "application/merge-patch+json", stale).await;
    assert_eq!(code, StatusCode::CONFLICT, "{status}");
    assert_eq!(status["reason"], "Conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_naming_the_newest_resource_version_succeeds_right_after_a_write() {
    // Writes start from the watch cache's copy, which may not have caught up yet; that
    // must never turn a correct precondition into a 409, nor hide a change.
    let api = api().await;
    call(&api, "POST", CM, "application/json", json!({"metadata": {"name": "c"}, "data": {"n": "0"}})).await;
    for i in 1..=50 {
        let (code, patched) = call(
            &api,
            "PATCH",
            &format!("{CM}/c"),
            "application/merge-patch+json",
            json!({"data": {"n": "x"}}),
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{patched}");
        let mut put = patched.clone();
        put["data"]["n"] = json!(i.to_string());
        let (code, body) = call(&api, "PUT", &format!("{CM}/c"), "application/json", put).await;
        assert_eq!(code, StatusCode::OK, "round {i}: {body}");
        assert_eq!(body["data"]["n"], json!(i.to_string()));
    }
}
