//! What the in-process integration tests share: an API server over the memory store,
//! and one request to it.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub async fn api() -> Arc<apiserver::Api> {
    let store = Arc::new(store::memory::MemoryStore::new());
    apiserver::Api::new(store, apiserver::Config::default(), apiserver::auth::Authenticator::new())
        .await
        .unwrap()
}

/// One request with `body` (none when null) as `content_type`: as the admin, or, with
/// `bearer`, authenticated by that token alone. The status and the decoded answer.
pub async fn request(
    api: &Arc<apiserver::Api>,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
    bearer: Option<&str>,
) -> (StatusCode, Value) {
    let router = match bearer {
        None => {
            apiserver::serve::router_as(api.clone(), apiserver::auth::User::new("admin", &["system:masters"]))
        }
        Some(_) => apiserver::serve::router(api.clone()),
    };
    let mut req = Request::builder().method(method).uri(path).header("content-type", content_type);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = if body.is_null() { Body::empty() } else { Body::from(body.to_string()) };
    let resp = router.oneshot(req.body(body).unwrap()).await.unwrap();
    let code = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}
