//! Joining nodes, as k3s does it: `/cacerts` serves the cluster CA to anyone (a joining
//! agent checks it against the hash in its join token), and
//! `POST /v1-krust/node-credentials`, authenticated by the join secret alone, issues a
//! node its client certificate (`system:node:<name>` in `system:nodes`) and the serving
//! certificate of its own API. The binary that holds the CA implements [`NodeJoin`].

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};

/// What a joining node asks for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRequest {
    /// The node's name (a DNS subdomain).
    pub node_name: String,
    /// The names and addresses its serving certificate covers.
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// PEM certificates and keys a joining node gets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub client_cert: String,
    pub client_key: String,
    pub serving_cert: String,
    pub serving_key: String,
}

/// Issues node credentials; implemented by whoever holds the CA.
pub trait NodeJoin: Send + Sync + std::fmt::Debug {
    /// The CA bundle (PEM), exactly the bytes whose SHA-256 join tokens carry.
    fn ca_pem(&self) -> String;
    /// Whether `secret` is the cluster's join secret.
    fn secret_ok(&self, secret: &str) -> bool;
    /// Issues credentials for a node.
    fn issue(&self, request: &CredentialsRequest) -> Result<Credentials, String>;
}

/// `GET /cacerts`.
pub fn cacerts(join: &dyn NodeJoin) -> Response {
    ([(header::CONTENT_TYPE, "application/x-pem-file")], join.ca_pem()).into_response()
}

/// `POST /v1-krust/node-credentials`.
pub async fn node_credentials(join: &dyn NodeJoin, headers: &HeaderMap, body: Body) -> ApiResult<Response> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !join.secret_ok(secret) {
        return Err(ApiError::unauthorized());
    }
    let bytes = http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
        .map_err(|_| ApiError::request_entity_too_large("the request body is too large"))?
        .to_bytes();
    let request: CredentialsRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("decoding the credentials request: {e}")))?;
    let problems = apimachinery::validation::is_dns1123_subdomain(&request.node_name);
    if !problems.is_empty() {
        return Err(ApiError::bad_request(format!(
            "nodeName: Invalid value: {:?}: {}",
            request.node_name,
            problems.join(", ")
        )));
    }
    let credentials = join.issue(&request).map_err(ApiError::internal)?;
    let body = serde_json::to_vec(&credentials).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response())
}
