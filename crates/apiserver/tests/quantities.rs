//! Integration, in-process: quantities in built-in objects are stored in canonical form,
//! wherever the kind's schema has one, and a quantity that does not parse refuses the
//! write with kube-apiserver's 400.

mod common;

use common::{api, request};
use http::StatusCode;
use serde_json::{Value, json};

const PATTERN: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

fn deployment(requests: Value, limits: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "c", "image": "busybox",
                        "resources": {"requests": requests, "limits": limits}}],
                    "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1048576"}}]
                }
            }
        }
    })
}

#[tokio::test]
async fn quantities_are_stored_canonically() {
    let api = api().await;
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let body =
        deployment(json!({"cpu": 0.5, "memory": "1024Mi"}), json!({"cpu": "2000m", "memory": "1.5Gi"}));
    let (code, d) = request(&api, "POST", path, "application/json", body, None).await;
    assert_eq!(code, StatusCode::CREATED, "{d}");
    let spec = &d["spec"]["template"]["spec"];
    let res = &spec["containers"][0]["resources"];
    assert_eq!(res["requests"], json!({"cpu": "500m", "memory": "1Gi"}), "{res}");
    assert_eq!(res["limits"], json!({"cpu": "2", "memory": "1536Mi"}), "{res}");
    assert_eq!(spec["volumes"][0]["emptyDir"]["sizeLimit"], "1048576");

    // What was stored is what a read returns.
    let (_, got) = request(&api, "GET", &format!("{path}/web"), "", Value::Null, None).await;
    assert_eq!(got["spec"]["template"]["spec"]["containers"][0]["resources"], *res);

    // Updates go through the same decoding: a merge patch with a bare number.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox",
        "resources": {"requests": {"cpu": 1, "memory": "1000000"}}}]}}}});
    let (code, d) =
        request(&api, "PATCH", &format!("{path}/web"), "application/merge-patch+json", patch, None).await;
    assert_eq!(code, StatusCode::OK, "{d}");
    let requests = &d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"];
    assert_eq!(*requests, json!({"cpu": "1", "memory": "1M"}));

    // Maps of quantities (ResourceQuota's hard list) and single ones (a PVC's request).
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
        "spec": {"hard": {"pods": "10", "requests.memory": "2048Mi", "requests.cpu": "1.5"}}});
    let (code, q) =
        request(&api, "POST", "/api/v1/namespaces/default/resourcequotas", "application/json", quota, None)
            .await;
    assert_eq!(code, StatusCode::CREATED, "{q}");
    assert_eq!(q["spec"]["hard"], json!({"pods": "10", "requests.memory": "2Gi", "requests.cpu": "1500m"}));
}

#[tokio::test]
async fn malformed_quantities_are_refused_with_400() {
    let api = api().await;
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let cases = [
        (json!({"cpu": "abc"}), PATTERN),
        (json!({"memory": "1 Gi"}), PATTERN),
        (json!({"memory": "32MMi"}), "unable to parse quantity's suffix"),
    ];
    for (requests, detail) in cases {
        let body = deployment(requests.clone(), json!({}));
        let (code, s) = request(&api, "POST", path, "application/json", body, None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{requests}: {s}");
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["reason"], "BadRequest");
        assert_eq!(
            s["message"],
            format!("Deployment in version \"v1\" cannot be handled as a Deployment: {detail}"),
            "{requests}"
        );
    }
    let (code, _) = request(&api, "GET", &format!("{path}/web"), "", Value::Null, None).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "nothing was stored");

    // An update with a bad quantity leaves the stored object alone.
    let body = deployment(json!({"cpu": "1"}), json!({}));
    let (code, _) = request(&api, "POST", path, "application/json", body, None).await;
    assert_eq!(code, StatusCode::CREATED);
    let patch = json!({"spec": {"template": {"spec": {"volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "lots"}}]}}}});
    let (code, s) =
        request(&api, "PATCH", &format!("{path}/web"), "application/strategic-merge-patch+json", patch, None)
            .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{s}");
    let (_, got) = request(&api, "GET", &format!("{path}/web"), "", Value::Null, None).await;
    assert_eq!(got["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimit"], "1048576");
}
