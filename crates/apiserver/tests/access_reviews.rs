//! Integration, in-process: the access reviews answer what this server enforces (every
//! authenticated user may do everything; anonymous requests are refused), and refuse
//! malformed reviews with Kubernetes' errors.

mod common;

use common::{api, request};
use http::StatusCode;
use serde_json::json;

const AUTHZ: &str = "/apis/authorization.k8s.io/v1";

#[tokio::test]
async fn reviews_allow_authenticated_users_and_deny_anonymous_ones() {
    let api = api().await;
    let sar = |spec: serde_json::Value| json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec});
    let attrs = json!({"namespace": "default", "verb": "create", "resource": "pods"});
    let path = format!("{AUTHZ}/subjectaccessreviews");
    let (code, r) = request(
        &api,
        "POST",
        &path,
        "application/json",
        sar(json!({"user": "alice", "resourceAttributes": attrs})),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{r}");
    assert_eq!(r["status"]["allowed"], true, "{r}");
    let anonymous = json!({"user": "system:anonymous", "groups": ["system:unauthenticated"], "resourceAttributes": attrs});
    let (_, r) = request(&api, "POST", &path, "application/json", sar(anonymous), None).await;
    assert_eq!(
        (r["status"]["allowed"].as_bool(), r["status"]["denied"].as_bool()),
        (Some(false), Some(true)),
        "{r}"
    );

    // No subject, or no attributes: 422 naming the field.
    let (code, s) =
        request(&api, "POST", &path, "application/json", sar(json!({"resourceAttributes": attrs})), None)
            .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{s}");
    assert_eq!(s["details"]["causes"][0]["field"], "spec.user");
    let (code, s) =
        request(&api, "POST", &path, "application/json", sar(json!({"user": "alice"})), None).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{s}");
    assert!(
        s["message"].as_str().unwrap().contains("exactly one of nonResourceAttributes or resourceAttributes"),
        "{s}"
    );

    // A local review must stay in its namespace.
    let local = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
        "spec": {"user": "alice", "resourceAttributes": {"namespace": "other", "verb": "get", "resource": "pods"}}});
    let (code, s) = request(
        &api,
        "POST",
        &format!("{AUTHZ}/namespaces/default/localsubjectaccessreviews"),
        "application/json",
        local,
        None,
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{s}");
    assert_eq!(s["details"]["causes"][0]["field"], "spec.resourceAttributes.namespace");

    // The caller about itself.
    let ssar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}});
    let (code, r) =
        request(&api, "POST", &format!("{AUTHZ}/selfsubjectaccessreviews"), "application/json", ssar, None)
            .await;
    assert_eq!((code, r["status"]["allowed"].as_bool()), (StatusCode::CREATED, Some(true)), "{r}");
    let rules = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": "default"}});
    let (code, r) =
        request(&api, "POST", &format!("{AUTHZ}/selfsubjectrulesreviews"), "application/json", rules, None)
            .await;
    assert_eq!(code, StatusCode::CREATED, "{r}");
    assert_eq!(r["status"]["resourceRules"][0]["verbs"], json!(["*"]));
    assert_eq!(r["status"]["incomplete"], false);
}
