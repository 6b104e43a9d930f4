//! The access reviews of `authorization.k8s.io` (`kubectl auth can-i`, and components
//! that ask the API server whether a caller may do something). This server enforces no
//! roles: every authenticated user may do everything and anonymous requests are refused,
//! so that is what the reviews answer.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::Ctx;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::negotiate;

const ALLOWED: &str = "no authorization is enforced: every authenticated user may do everything";
const DENIED: &str = "anonymous requests are not served";

fn invalid(kind: &str, errors: &[FieldError]) -> ApiError {
    ApiError::invalid("authorization.k8s.io", kind, "", errors)
}

/// Whether the user with `name` and `groups` may act at all.
fn authenticated(name: &str, groups: &[String]) -> bool {
    name != "system:anonymous" && !groups.iter().any(|g| g == "system:unauthenticated")
}

fn decision(allowed: bool) -> Value {
    if allowed {
        json!({"allowed": true, "reason": ALLOWED})
    } else {
        json!({"allowed": false, "denied": true, "reason": DENIED})
    }
}

/// Exactly one of resource and non-resource attributes, as Kubernetes requires.
fn check_attributes(kind: &str, spec: &Value) -> ApiResult<()> {
    let has = |k: &str| spec.get(k).is_some_and(|v| !v.is_null());
    match (has("resourceAttributes"), has("nonResourceAttributes")) {
        (true, false) | (false, true) => Ok(()),
        (both, _) => {
            let detail = "exactly one of nonResourceAttributes or resourceAttributes must be specified";
            let field = if both { "spec.nonResourceAttributes" } else { "spec.resourceAttributes" };
            Err(invalid(kind, &[FieldError::invalid(field, Value::Null, detail)]))
        }
    }
}

/// POST `subjectaccessreviews`, `localsubjectaccessreviews`,
/// `selfsubjectaccessreviews` and `selfsubjectrulesreviews`.
pub async fn review(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let mut review = negotiate::decode_body(&ctx.headers, body)?;
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let (kind, status) = match ctx.res.plural.as_str() {
        "selfsubjectrulesreviews" => {
            let rules = if authenticated(&ctx.user.name, &ctx.user.groups) {
                (
                    json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]),
                    json!([{"verbs": ["*"], "nonResourceURLs": ["*"]}]),
                )
            } else {
                (json!([]), json!([]))
            };
            let status = json!({"resourceRules": rules.0, "nonResourceRules": rules.1, "incomplete": false});
            ("SelfSubjectRulesReview", status)
        }
        "selfsubjectaccessreviews" => {
            check_attributes("SelfSubjectAccessReview", &spec)?;
            ("SelfSubjectAccessReview", decision(authenticated(&ctx.user.name, &ctx.user.groups)))
        }
        plural => {
            let kind = if plural == "localsubjectaccessreviews" {
                "LocalSubjectAccessReview"
            } else {
                "SubjectAccessReview"
            };
            check_attributes(kind, &spec)?;
            let user = spec.get("user").and_then(Value::as_str).unwrap_or("");
            let groups: Vec<String> = spec
                .get("groups")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            if user.is_empty() && groups.is_empty() {
                let e =
                    FieldError::invalid("spec.user", "", "at least one of user or group must be specified");
                return Err(invalid(kind, &[e]));
            }
            if kind == "LocalSubjectAccessReview"
                && let Some(ns) = spec.pointer("/resourceAttributes/namespace").and_then(Value::as_str)
                && ns != ctx.ns()
            {
                let e = FieldError::invalid(
                    "spec.resourceAttributes.namespace",
                    ns,
                    "must match metadata.namespace",
                );
                return Err(invalid(kind, &[e]));
            }
            (kind, decision(authenticated(user, &groups)))
        }
    };
    review["kind"] = json!(kind);
    review["apiVersion"] = json!("authorization.k8s.io/v1");
    review["status"] = status;
    let output = negotiate::output(&ctx.headers, None)?;
    Ok(negotiate::encode(StatusCode::CREATED, &review, output))
}
