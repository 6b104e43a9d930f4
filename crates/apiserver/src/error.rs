//! Errors as values that turn into Kubernetes `Status` responses.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

pub use apimachinery::validation::{ErrorType, FieldError};

/// `Unsupported value` at `field`, listing what is supported.
pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> FieldError {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    FieldError {
        error_type: ErrorType::NotSupported,
        field: field.into(),
        bad_value: Some(value.clone()),
        detail: if list.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", list.join(", "))
        },
    }
}

/// A reference to something that does not exist (Kubernetes' `Not found` field error).
pub fn not_found_field(field: impl Into<String>, value: &Value) -> FieldError {
    FieldError {
        error_type: ErrorType::Invalid,
        field: field.into(),
        bad_value: Some(value.clone()),
        detail: "not found".into(),
    }
}

/// `Duplicate value` at `field`.
pub fn duplicate(field: impl Into<String>, value: &Value) -> FieldError {
    FieldError {
        error_type: ErrorType::Duplicate,
        field: field.into(),
        bad_value: Some(value.clone()),
        detail: String::new(),
    }
}

/// A failed request, carrying everything the `Status` response needs.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Extra response headers (e.g. `Retry-After`).
    pub retry_after: Option<u64>,
}

/// Shorthand for results whose error is an [`ApiError`].
pub type ApiResult<T> = Result<T, ApiError>;

/// "pods" or "deployments.apps": how Kubernetes names a resource in messages.
pub fn qualified_resource(group: &str, plural: &str) -> String {
    if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into(), details: None, retry_after: None }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 404 for a whole path no resource serves.
    pub fn path_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource").with_details(
            json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}),
        )
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} {name:?} not found", qualified_resource(group, plural)))
            .with_details(json!({"name": name, "group": group, "kind": plural}))
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", qualified_resource(group, plural)),
        )
        .with_details(json!({"name": name, "group": group, "kind": plural}))
    }

    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} {name:?}: {why}", qualified_resource(group, plural)),
        )
        .with_details(json!({"name": name, "group": group, "kind": plural}))
    }

    /// The optimistic-concurrency failure clients retry on.
    pub fn modified(group: &str, plural: &str, name: &str) -> Self {
        Self::conflict(
            group,
            plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422: the object failed validation; `kind` is the object's Kind.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let list = if errors.len() == 1 {
            errors[0].to_string()
        } else {
            format!("[{}]", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.error_type.reason(), "message": e.body(), "field": e.field}))
            .collect();
        // Kubernetes prints `Pod "x" is invalid` for core kinds and `Deployment.apps "x"` otherwise.
        let what = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        Self::new(422, "Invalid", format!("{what} {name:?} is invalid: {list}"))
            .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    /// 422 for list/watch options that contradict each other.
    pub fn invalid_watch(field: &str, detail: &str) -> Self {
        Self::invalid("meta.k8s.io", "ListOptions", "", &[FieldError::forbidden(field, detail)])
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn request_entity_too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object of this error.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::Compacted { requested, compacted } => {
                ApiError::gone(format!("too old resource version: {requested} ({compacted})"))
            }
            store::Error::FutureRevision { requested, current } => {
                ApiError::timeout(format!("Too large resource version: {requested}, current: {current}"))
                    .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1}))
            }
            other => {
                tracing::error!(error = %other, "storage error");
                ApiError::internal("an error on the server has prevented the request from succeeding")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_message_lists_fields_like_kubernetes() {
        let one = ApiError::invalid("", "Pod", "p", &[FieldError::required("spec.containers", "")]);
        assert_eq!(one.message, "Pod \"p\" is invalid: spec.containers: Required value");
        let two = ApiError::invalid(
            "apps",
            "Deployment",
            "d",
            &[FieldError::required("spec.selector", ""), FieldError::invalid("metadata.name", "A", "bad")],
        );
        assert_eq!(
            two.message,
            "Deployment.apps \"d\" is invalid: [spec.selector: Required value, metadata.name: Invalid value: \"A\": bad]"
        );
        assert_eq!(two.status()["details"]["causes"][1]["reason"], "FieldValueInvalid");
        assert_eq!(two.status()["code"], 422);
    }

    #[test]
    fn not_found_names_the_qualified_resource() {
        let e = ApiError::not_found("apps", "deployments", "web");
        assert_eq!(e.message, "deployments.apps \"web\" not found");
        assert_eq!(e.status()["details"]["kind"], "deployments");
    }
}
