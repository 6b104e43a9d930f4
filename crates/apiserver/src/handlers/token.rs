//! `POST serviceaccounts/{name}/token` (TokenRequest): a signed token for the account,
//! optionally bound to a Pod, Secret or Node so that it dies with that object; and the
//! check of such tokens when they come back as bearer tokens.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::Ctx;
use super::read::load;
use crate::Api;
use crate::error::{ApiError, ApiResult, FieldError, not_supported};
use crate::negotiate;
use crate::satoken::Holder;

/// Shortest and longest lifetimes a client may ask for, in seconds.
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;
const DEFAULT_EXPIRATION: i64 = 3600;
/// What the node agent asks for its projected tokens, and how long such a token really
/// lasts (a year).
const PROJECTED_EXPIRATION: i64 = 3607;
const EXTENDED_EXPIRATION: i64 = 365 * 24 * 3600;

fn invalid(name: &str, errors: &[FieldError]) -> ApiError {
    ApiError::invalid("authentication.k8s.io", "TokenRequest", name, errors)
}

/// The object a token is to be bound to: its kind, name and uid (checked against the
/// one stored).
async fn bound_object(ctx: &Ctx, sa: &str, reference: &Value) -> ApiResult<(String, String, String)> {
    let kind = reference["kind"].as_str().unwrap_or("");
    let name = reference["name"].as_str().unwrap_or("");
    let plural = match kind {
        "Pod" => "pods",
        "Secret" => "secrets",
        "Node" => "nodes",
        _ => {
            let api_version = reference["apiVersion"].as_str().unwrap_or("");
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {api_version}, Kind={kind}"
            )));
        }
    };
    if name.is_empty() {
        return Err(invalid(sa, &[FieldError::required("spec.boundObjectRef.name", "")]));
    }
    let res = ctx.api.registry.get("", "v1", plural).ok_or_else(ApiError::path_not_found)?;
    let mut octx = ctx.for_resource(res, name, None);
    if kind == "Node" {
        octx.path.namespace = None;
    }
    let (object, _) = load(&octx, name).await?;
    let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_owned();
    if let Some(wanted) = reference["uid"].as_str().filter(|u| !u.is_empty())
        && wanted != uid
    {
        return Err(ApiError::conflict(
            "",
            kind,
            name,
            &format!(
                "the UID in the bound object reference ({wanted}) does not match the UID in record. \
                 The object might have been deleted and then recreated"
            ),
        ));
    }
    if kind == "Pod" && object.pointer("/spec/serviceAccountName").and_then(Value::as_str) != Some(sa) {
        return Err(ApiError::bad_request(format!(
            "cannot bind token for serviceaccount {sa:?} to pod running with different serviceaccount name."
        )));
    }
    Ok((kind.to_owned(), name.to_owned(), uid))
}

/// POST `serviceaccounts/{name}/token`.
pub async fn create(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let request = if body.is_empty() { json!({}) } else { negotiate::decode_body(&ctx.headers, body)? };
    let name = ctx.name().to_owned();
    let ns = ctx.ns().to_owned();
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION,
        Some(v) => v.as_i64().ok_or_else(|| {
            invalid(&name, &[FieldError::invalid("spec.expirationSeconds", v.clone(), "must be an integer")])
        })?,
    };
    let mut errors = Vec::new();
    if expiration < MIN_EXPIRATION {
        let detail = "may not specify a duration less than 10 minutes";
        errors.push(FieldError::invalid("spec.expirationSeconds", expiration, detail));
    }
    if expiration > MAX_EXPIRATION {
        let detail = "may not specify a duration larger than 2^32 seconds";
        errors.push(FieldError::invalid("spec.expirationSeconds", expiration, detail));
    }
    let reference = spec.get("boundObjectRef").filter(|r| !r.is_null());
    if let Some(r) = reference
        && !matches!(r["apiVersion"].as_str(), None | Some("") | Some("v1"))
    {
        errors.push(not_supported("spec.boundObjectRef.apiVersion", &r["apiVersion"], &["v1"]));
    }
    if !errors.is_empty() {
        return Err(invalid(&name, &errors));
    }
    let (account, _) = load(ctx, &name).await?;
    let sa_uid = account.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_owned();
    let bound = match reference {
        Some(r) => Some(bound_object(ctx, &name, r).await?),
        None => None,
    };
    let signer = &ctx.api.config.service_account_tokens;
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => vec![signer.issuer().to_owned()],
    };
    let now = jiff::Timestamp::now();
    let iat = now.as_second();
    let exp = iat + expiration;
    let mut scope = json!({"namespace": ns, "serviceaccount": {"name": name, "uid": sa_uid}});
    if let Some((kind, bname, buid)) = &bound {
        scope[kind.to_ascii_lowercase()] = json!({"name": bname, "uid": buid});
    }
    // The node agent's projected tokens (3607 s, bound to a pod, for this server) stay
    // valid for a year and only warn after their nominal expiry, as kube-apiserver
    // extends them, so that clients that never reread the file keep working.
    let for_this_server = audiences.len() == 1 && audiences[0] == signer.issuer();
    let extended = expiration == PROJECTED_EXPIRATION
        && for_this_server
        && matches!(&bound, Some((kind, _, _)) if kind == "Pod");
    let hard_exp = if extended {
        scope["warnafter"] = json!(exp);
        iat + EXTENDED_EXPIRATION
    } else {
        exp
    };
    let claims = json!({
        "aud": audiences,
        "exp": hard_exp,
        "iat": iat,
        "iss": signer.issuer(),
        "jti": uuid::Uuid::new_v4().to_string(),
        "kubernetes.io": scope,
        "nbf": iat,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let mut out_spec =
        json!({"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": null});
    if let Some(r) = reference {
        out_spec["boundObjectRef"] = r.clone();
    }
    let mut status = json!({"token": "", "expirationTimestamp": jiff::Timestamp::from_second(exp)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()});
    // A dry run checks everything and issues nothing.
    if !ctx.query.dry_run()? {
        status["token"] = json!(signer.sign(&claims).map_err(ApiError::internal)?);
    }
    let out = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": ns,
            "creationTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
        "spec": out_spec,
        "status": status,
    });
    let output = negotiate::output(&ctx.headers, None)?;
    Ok(negotiate::encode(StatusCode::CREATED, &out, output))
}

fn json_response(content_type: &'static str, body: &Value) -> Response {
    let mut r = Response::new(axum::body::Body::from(body.to_string()));
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}

/// GET `/.well-known/openid-configuration`: where the keys that sign service-account
/// tokens are, so that other parties can check the tokens themselves.
pub fn openid_configuration(api: &Api) -> Response {
    let c = &api.config;
    let host = if c.advertise_address.contains(':') {
        format!("[{}]", c.advertise_address)
    } else {
        c.advertise_address.clone()
    };
    let body = json!({
        "issuer": c.service_account_tokens.issuer(),
        "jwks_uri": format!("https://{host}:{}/openid/v1/jwks", c.advertise_port),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    });
    json_response("application/json", &body)
}

/// GET `/openid/v1/jwks`: the public key of service-account tokens.
pub fn jwks(api: &Api) -> Response {
    let body = json!({"keys": [api.config.service_account_tokens.public_jwk()]});
    json_response("application/jwk-set+json", &body)
}

fn user_info(user: &crate::auth::User) -> Value {
    json!({"username": user.name, "uid": user.uid, "groups": user.groups})
}

/// POST `tokenreviews`: whether a token authenticates, and as whom. Only this server's
/// service-account tokens are reviewed (the admin's static token is not a credential
/// to hand to others).
pub async fn review(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let mut review = negotiate::decode_body(&ctx.headers, body)?;
    let token = review.pointer("/spec/token").and_then(Value::as_str).unwrap_or("").to_owned();
    if token.is_empty() {
        let e = FieldError::required("spec.token", "");
        return Err(ApiError::invalid("authentication.k8s.io", "TokenReview", "", &[e]));
    }
    let signer = &ctx.api.config.service_account_tokens;
    let asked: Vec<String> = review
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let audiences: Vec<&str> =
        if asked.is_empty() { vec![signer.issuer()] } else { asked.iter().map(String::as_str).collect() };
    let status = match holder_of(&ctx.api, &token, &audiences).await {
        Some((user, token_audiences)) => {
            let matched: Vec<&str> =
                token_audiences.iter().map(String::as_str).filter(|a| audiences.contains(a)).collect();
            json!({"authenticated": true, "user": user_info(&user), "audiences": matched})
        }
        None => json!({"authenticated": false, "user": {}, "error": "invalid bearer token"}),
    };
    review["status"] = status;
    review["kind"] = json!("TokenReview");
    review["apiVersion"] = json!("authentication.k8s.io/v1");
    let output = negotiate::output(&ctx.headers, None)?;
    Ok(negotiate::encode(StatusCode::CREATED, &review, output))
}

/// POST `selfsubjectreviews` (`kubectl auth whoami`): the caller as this server sees it.
pub async fn self_review(ctx: &Ctx) -> ApiResult<Response> {
    let out = json!({
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": user_info(&ctx.user)},
    });
    let output = negotiate::output(&ctx.headers, None)?;
    Ok(negotiate::encode(StatusCode::CREATED, &out, output))
}

/// The user a bearer token names when it is a service-account token of this server
/// that is still valid: signed here, unexpired, for this server's audience, and the
/// account (and the object it is bound to) still exist with the uids it names.
pub async fn authenticate(api: &Api, token: &str) -> Option<crate::auth::User> {
    let issuer = api.config.service_account_tokens.issuer();
    holder_of(api, token, &[issuer]).await.map(|(user, _)| user)
}

/// The user of a valid service-account token for one of `audiences`, and the
/// audiences the token names.
async fn holder_of(api: &Api, token: &str, audiences: &[&str]) -> Option<(crate::auth::User, Vec<String>)> {
    let signer = &api.config.service_account_tokens;
    let now = jiff::Timestamp::now().as_second();
    let claims = signer.verify(token, now, audiences)?;
    let holder = Holder::of(&claims)?;
    let token_audiences: Vec<String> =
        crate::satoken::audiences_of(&claims).into_iter().map(str::to_owned).collect();
    // An account being deleted ends its tokens; a bound object ends them once its
    // deletion time has passed (a pod stays reachable through its grace period).
    // Read from storage, not the watch cache: a token must stop working the moment
    // its account or pod is deleted, and the cache may not have seen that yet.
    let alive = |plural: &str, ns: &str, name: &str, uid: &str, grace: bool| {
        let res = api.registry.get("", "v1", plural);
        let key = res.map(|r| r.key(ns, name));
        let uid = uid.to_owned();
        async move {
            let kv = api.store.get(&key?).await.ok()??;
            let object = super::read::decode_stored(&kv).ok()?;
            let meta = object.get("metadata")?;
            let deleted = match meta.get("deletionTimestamp").and_then(Value::as_str) {
                None => false,
                Some(_) if !grace => true,
                Some(t) => t.parse::<jiff::Timestamp>().map_or(true, |t| t.as_second() < now),
            };
            (!deleted && (uid.is_empty() || meta["uid"] == uid.as_str())).then_some(())
        }
    };
    let sa = (&holder.namespace, &holder.service_account, &holder.service_account_uid);
    alive("serviceaccounts", sa.0, sa.1, sa.2, false).await?;
    if let Some((kind, name, uid)) = &holder.bound {
        let (plural, ns) = match kind.as_str() {
            "Pod" => ("pods", holder.namespace.as_str()),
            "Secret" => ("secrets", holder.namespace.as_str()),
            _ => ("nodes", ""),
        };
        alive(plural, ns, name, uid, true).await?;
    }
    Some((holder.user(), token_audiences))
}
