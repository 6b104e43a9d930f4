//! Integration, in-process over the memory store: the TokenRequest API issues tokens
//! that authenticate as their service account while the account (and the object the
//! token is bound to) exists; TokenReview and SelfSubjectReview report who a token or a
//! caller is; bad requests get Kubernetes' errors.

mod common;

use std::sync::Arc;

use common::api;
use http::StatusCode;
use serde_json::{Value, json};

/// One request as the admin, or with `token` as its bearer token when given.
async fn call(
    api: &Arc<apiserver::Api>,
    method: &str,
    path: &str,
    body: Value,
    token: Option<&str>,
) -> (StatusCode, Value) {
    common::request(api, method, path, "application/json", body, token).await
}

const SA: &str = "/api/v1/namespaces/default/serviceaccounts";
const PODS: &str = "/api/v1/namespaces/default/pods";

async fn token_for(api: &Arc<apiserver::Api>, sa: &str, spec: Value) -> (StatusCode, Value) {
    let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
    call(api, "POST", &format!("{SA}/{sa}/token"), body, None).await
}

#[tokio::test]
async fn a_requested_token_authenticates_as_its_service_account() {
    let api = api().await;
    let (code, _) = call(&api, "POST", SA, json!({"metadata": {"name": "robot"}}), None).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, tr) = token_for(&api, "robot", json!({})).await;
    assert_eq!(code, StatusCode::CREATED, "{tr}");
    assert_eq!(tr["kind"], "TokenRequest");
    assert_eq!(tr["spec"]["expirationSeconds"], 3600);
    assert_eq!(tr["spec"]["audiences"], json!(["https://kubernetes.default.svc.cluster.local"]));
    assert!(tr["status"]["expirationTimestamp"].as_str().unwrap().ends_with('Z'));
    let token = tr["status"]["token"].as_str().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    // The token is a credential: the caller is the account.
    let (code, me) = call(
        &api,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
        Some(&token),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED, "{me}");
    assert_eq!(me["status"]["userInfo"]["username"], "system:serviceaccount:default:robot");
    let groups = me["status"]["userInfo"]["groups"].to_string();
    assert!(groups.contains("system:serviceaccounts:default") && groups.contains("system:authenticated"));
    let (code, _) = call(&api, "GET", PODS, Value::Null, Some(&token)).await;
    assert_eq!(code, StatusCode::OK);

    // TokenReview says the same; a token for another audience is not for this server.
    let review = |t: &str, aud: Value| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "spec": {"token": t, "audiences": aud}})
    };
    let path = "/apis/authentication.k8s.io/v1/tokenreviews";
    let (code, r) = call(&api, "POST", path, review(&token, json!([])), None).await;
    assert_eq!(code, StatusCode::CREATED, "{r}");
    assert_eq!(r["status"]["authenticated"], true);
    assert_eq!(r["status"]["user"]["username"], "system:serviceaccount:default:robot");
    let (_, vault) = token_for(&api, "robot", json!({"audiences": ["vault"]})).await;
    let vault = vault["status"]["token"].as_str().unwrap().to_owned();
    let (code, _) = call(&api, "GET", PODS, Value::Null, Some(&vault)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (_, r) = call(&api, "POST", path, review(&vault, json!(["vault"])), None).await;
    assert_eq!(r["status"]["authenticated"], true, "{r}");
    assert_eq!(r["status"]["audiences"], json!(["vault"]));
    let (_, r) = call(&api, "POST", path, review("garbage", json!([])), None).await;
    assert_eq!(r["status"]["authenticated"], false);

    // Deleting the account ends its tokens.
    let (code, _) = call(&api, "DELETE", &format!("{SA}/robot"), Value::Null, None).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = call(&api, "GET", PODS, Value::Null, Some(&token)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_bound_to_a_pod_dies_with_the_pod() {
    let api = api().await;
    call(&api, "POST", SA, json!({"metadata": {"name": "robot"}}), None).await;
    call(&api, "POST", SA, json!({"metadata": {"name": "other"}}), None).await;
    let pod = json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "robot",
        "containers": [{"name": "c", "image": "busybox"}]}});
    let (code, pod) = call(&api, "POST", PODS, pod, None).await;
    assert_eq!(code, StatusCode::CREATED, "{pod}");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
    let bound = json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": uid}});
    let (code, tr) = token_for(&api, "robot", bound.clone()).await;
    assert_eq!(code, StatusCode::CREATED, "{tr}");
    let token = tr["status"]["token"].as_str().unwrap().to_owned();
    let (code, _) = call(&api, "GET", PODS, Value::Null, Some(&token)).await;
    assert_eq!(code, StatusCode::OK);

    // Another account cannot bind to a pod that runs as robot; a stale uid conflicts.
    let (code, status) = token_for(&api, "other", bound).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");
    assert!(status["message"].as_str().unwrap().contains("different serviceaccount name"), "{status}");
    let stale = json!({"boundObjectRef": {"kind": "Pod", "name": "p", "uid": "not-the-uid"}});
    let (code, status) = token_for(&api, "robot", stale).await;
    assert_eq!(code, StatusCode::CONFLICT, "{status}");
    let (code, _) =
        token_for(&api, "robot", json!({"boundObjectRef": {"kind": "Pod", "name": "gone"}})).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, status) =
        token_for(&api, "robot", json!({"boundObjectRef": {"kind": "ConfigMap", "name": "x"}})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{status}");

    // Once the pod is gone (no grace period), its token no longer authenticates.
    let (code, _) = call(&api, "DELETE", &format!("{PODS}/p?gracePeriodSeconds=0"), Value::Null, None).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = call(&api, "GET", PODS, Value::Null, Some(&token)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_token_requests_get_kubernetes_errors() {
    let api = api().await;
    let (code, status) = token_for(&api, "nobody", json!({})).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(status["message"], "serviceaccounts \"nobody\" not found");
    call(&api, "POST", SA, json!({"metadata": {"name": "robot"}}), None).await;
    let (code, status) = token_for(&api, "robot", json!({"expirationSeconds": 300})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{status}");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "TokenRequest.authentication.k8s.io \"robot\" is invalid: spec.expirationSeconds: Invalid value: 300: \
         may not specify a duration less than 10 minutes"
    );
    assert_eq!(status["details"]["causes"][0]["field"], "spec.expirationSeconds");
    // A dry run checks and issues nothing.
    let (code, tr) = call(
        &api,
        "POST",
        &format!("{SA}/robot/token?dryRun=All"),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}),
        None,
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(tr["status"]["token"], "");
}

#[tokio::test]
async fn pods_mount_the_token_unless_they_or_their_account_opt_out() {
    let api = api().await;
    call(
        &api,
        "POST",
        SA,
        json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false}),
        None,
    )
    .await;
    call(&api, "POST", SA, json!({"metadata": {"name": "loud"}}), None).await;
    let pod = |name: &str, sa: &str, automount: Value| {
        let mut spec = json!({"serviceAccountName": sa, "containers": [{"name": "c", "image": "busybox"}]});
        if !automount.is_null() {
            spec["automountServiceAccountToken"] = automount;
        }
        json!({"metadata": {"name": name}, "spec": spec})
    };
    let mounts = |pod: &Value| {
        pod["spec"]["volumes"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v["name"].as_str().unwrap().starts_with("kube-api-access-")))
    };
    let (_, p) = call(&api, "POST", PODS, pod("a", "loud", Value::Null), None).await;
    assert!(mounts(&p), "{p}");
    let mount = &p["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/var/run/secrets/kubernetes.io/serviceaccount");
    let (_, p) = call(&api, "POST", PODS, pod("b", "quiet", Value::Null), None).await;
    assert!(!mounts(&p), "the account opts out: {p}");
    let (_, p) = call(&api, "POST", PODS, pod("c", "quiet", json!(true)), None).await;
    assert!(mounts(&p), "the pod opts in: {p}");
    let (_, p) = call(&api, "POST", PODS, pod("d", "loud", json!(false)), None).await;
    assert!(!mounts(&p), "the pod opts out: {p}");
}

#[tokio::test]
async fn the_signing_key_is_published_for_others_to_check_tokens() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let api = api().await;
    call(&api, "POST", SA, json!({"metadata": {"name": "robot"}}), None).await;
    let (_, tr) = token_for(&api, "robot", json!({})).await;
    let token = tr["status"]["token"].as_str().unwrap().to_owned();
    let (code, discovery) = call(&api, "GET", "/.well-known/openid-configuration", Value::Null, None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(discovery["issuer"], "https://kubernetes.default.svc.cluster.local");
    assert!(discovery["jwks_uri"].as_str().unwrap().ends_with("/openid/v1/jwks"), "{discovery}");
    let (code, jwks) = call(&api, "GET", "/openid/v1/jwks", Value::Null, None).await;
    assert_eq!(code, StatusCode::OK);
    let key = &jwks["keys"][0];
    assert_eq!((key["kty"].as_str(), key["alg"].as_str()), (Some("EC"), Some("ES256")));
    // The published key checks the token's signature; its id is the token's `kid`.
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["kid"], key["kid"]);
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(key["y"].as_str().unwrap()).unwrap());
    let signed = format!("{}.{}", parts[0], parts[1]);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
        .expect("the published key verifies the token");
}

#[tokio::test]
async fn the_agents_projected_tokens_last_a_year_and_warn_after_their_expiry() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let api = api().await;
    call(&api, "POST", SA, json!({"metadata": {"name": "robot"}}), None).await;
    let pod = json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "robot",
        "containers": [{"name": "c", "image": "busybox"}]}});
    call(&api, "POST", PODS, pod, None).await;
    let claims_of = |tr: &Value| -> Value {
        let token = tr["status"]["token"].as_str().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
    };
    let bound = json!({"kind": "Pod", "name": "p"});
    let (_, tr) = token_for(&api, "robot", json!({"expirationSeconds": 3607, "boundObjectRef": bound})).await;
    let claims = claims_of(&tr);
    let (iat, exp) = (claims["iat"].as_i64().unwrap(), claims["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 365 * 24 * 3600, "{claims}");
    assert_eq!(claims["kubernetes.io"]["warnafter"].as_i64(), Some(iat + 3607), "{claims}");
    assert_eq!(tr["spec"]["expirationSeconds"], 3607, "the request keeps its own lifetime");
    // Any other lifetime, an unbound token, or another audience: as asked.
    let (_, tr) = token_for(&api, "robot", json!({"expirationSeconds": 3600, "boundObjectRef": bound})).await;
    let claims = claims_of(&tr);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert!(claims["kubernetes.io"].get("warnafter").is_none());
    let (_, tr) = token_for(&api, "robot", json!({"expirationSeconds": 3607})).await;
    let claims = claims_of(&tr);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3607);
    let (_, tr) = token_for(
        &api,
        "robot",
        json!({"expirationSeconds": 3607, "boundObjectRef": bound, "audiences": ["vault"]}),
    )
    .await;
    let claims = claims_of(&tr);
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3607);
}

#[tokio::test]
async fn a_pod_of_a_missing_service_account_is_forbidden() {
    let api = api().await;
    let pod = |name: &str, sa: Option<&str>| {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        if let Some(sa) = sa {
            spec["serviceAccountName"] = json!(sa);
        }
        json!({"metadata": {"name": name}, "spec": spec})
    };
    let (code, status) = call(&api, "POST", PODS, pod("p", Some("ghost")), None).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{status}");
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        "pods \"p\" is forbidden: error looking up service account default/ghost: serviceaccount \"ghost\" not found"
    );
    // No `default` account (no controller runs here): refused too, after a short wait
    // for it; once it exists, pods are admitted.
    let (code, _) = call(&api, "POST", PODS, pod("q", None), None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    call(&api, "POST", SA, json!({"metadata": {"name": "default"}}), None).await;
    let (code, created) = call(&api, "POST", PODS, pod("q", None), None).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["serviceAccountName"], "default");
}
