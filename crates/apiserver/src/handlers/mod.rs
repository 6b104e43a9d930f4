//! HTTP handling: authentication, routing of every path to discovery, OpenAPI, health,
//! metrics or a resource verb.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;

use crate::Api;
use crate::auth::{CertIdentity, User};
use crate::error::{ApiError, ApiResult};
use crate::registry::Resource;
use crate::request::{Query, ResourcePath, Target, parse_path};

pub mod access;
pub mod nodeproxy;
pub mod nodestream;
pub mod read;
mod spdy;
pub mod sub;
pub mod token;
pub mod watch;
pub mod write;

/// Largest request body accepted (as kube-apiserver: 3 MiB objects plus headroom).
const MAX_BODY: usize = 3 * 1024 * 1024 + 512 * 1024;

/// One request, decoded: who asks, for what, with which options.
pub struct Ctx {
    pub api: Arc<Api>,
    pub user: User,
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Query,
    pub path: ResourcePath,
    pub res: Arc<Resource>,
    /// Warnings to return in `Warning` headers.
    pub warnings: std::sync::Mutex<Vec<String>>,
}

impl Ctx {
    pub fn warn(&self, w: impl Into<String>) {
        self.warnings.lock().unwrap_or_else(|e| e.into_inner()).push(w.into());
    }

    pub fn namespace(&self) -> Option<&str> {
        self.path.namespace.as_deref()
    }

    /// The namespace of the request for a namespaced resource ("" otherwise).
    pub fn ns(&self) -> &str {
        if self.res.namespaced { self.path.namespace.as_deref().unwrap_or("") } else { "" }
    }

    /// The same request, aimed at another resource (and object) of the same namespace.
    pub fn for_resource(&self, res: Arc<Resource>, name: &str, subresource: Option<&str>) -> Ctx {
        let mut path = self.path.clone();
        path.group = res.group.clone();
        path.version = res.version.clone();
        path.plural = res.plural.clone();
        path.name = Some(name.to_string());
        path.subresource = subresource.map(str::to_string);
        Ctx {
            api: self.api.clone(),
            user: self.user.clone(),
            method: self.method.clone(),
            headers: self.headers.clone(),
            query: self.query.clone(),
            path,
            res,
            warnings: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn name(&self) -> &str {
        self.path.name.as_deref().unwrap_or("")
    }

    /// The field manager of a write: `fieldManager`, else the User-Agent's program name.
    pub fn field_manager(&self) -> String {
        if let Some(m) = self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        let ua = self.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
        ua.split('/').next().unwrap_or("unknown").to_string()
    }
}

/// Entry point for every request.
pub async fn handle(api: Arc<Api>, req: Request<Body>) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = route(api.clone(), req).await.unwrap_or_else(|e| e.into_response());
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"kubernetes-master\""));
    }
    api.metrics.observe(&method, &path, resp.status().as_u16(), started.elapsed());
    resp
}

fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

async fn route(api: Arc<Api>, req: Request<Body>) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    // Joining agents: not authenticated as users (the join secret is checked instead).
    if let Some(join) = api.config.node_join.as_deref() {
        match (&parts.method, path.as_str()) {
            (&Method::GET, "/cacerts") => return Ok(crate::join::cacerts(join)),
            (&Method::POST, "/v1-krust/node-credentials") => {
                return crate::join::node_credentials(join, &parts.headers, body).await;
            }
            _ => {}
        }
    }
    let cert = parts.extensions.get::<CertIdentity>();
    let mut user =
        parts.extensions.get::<User>().cloned().or_else(|| api.authn.authenticate(&parts.headers, cert));
    if user.is_none()
        && let Some(t) = crate::auth::bearer(&parts.headers)
    {
        user = token::authenticate(&api, t).await;
    }
    let user = match user {
        Some(u) => u,
        None if is_public(&path) => User::new("system:anonymous", &["system:unauthenticated"]),
        None => return Err(ApiError::unauthorized()),
    };
    let query = Query::parse(parts.uri.query());
    match path.as_str() {
        "/version" | "/version/" => return Ok(crate::discovery::version()),
        "/healthz" | "/livez" | "/readyz" => return Ok((StatusCode::OK, "ok").into_response()),
        p if is_public(p) => return Ok((StatusCode::OK, "ok").into_response()),
        "/metrics" => return Ok(api.metrics.render(&api)),
        "/.well-known/openid-configuration" => return Ok(token::openid_configuration(&api)),
        "/openid/v1/jwks" => return Ok(token::jwks(&api)),
        "/openapi/v2" | "/swagger.json" => return Ok(api.openapi.v2(&api, &parts.headers)),
        "/openapi/v3" => return Ok(api.openapi.v3_index(&api)),
        p if p.starts_with("/openapi/v3/") => return api.openapi.v3(&api, &p["/openapi/v3/".len()..]),
        "/" => return Ok(crate::discovery::root_paths(&api)),
        _ => {}
    }
    let target = parse_path(&path).ok_or_else(ApiError::path_not_found)?;
    let rp = match target {
        Target::CoreVersions => return crate::discovery::core_versions(&parts.headers, &api),
        Target::Groups => return crate::discovery::groups(&parts.headers, &api),
        Target::Group(g) => return crate::discovery::group(&api, &g),
        Target::GroupVersion(g, v) => return crate::discovery::group_version(&api, &g, &v),
        Target::Resource(rp) => rp,
    };
    let (rp, res) = resolve(&api, rp)?;
    if res.plural == "pods"
        && res.group.is_empty()
        && rp.name.is_some()
        && matches!(rp.subresource.as_deref(), Some("exec" | "attach" | "portforward"))
    {
        let mut parts = parts;
        let ctx = Ctx {
            api,
            user,
            method: parts.method.clone(),
            headers: parts.headers.clone(),
            query,
            path: rp,
            res,
            warnings: std::sync::Mutex::new(Vec::new()),
        };
        return nodestream::pod_stream(&ctx, &mut parts).await;
    }
    let body = if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        let collected = http_body_util::Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|_| ApiError::request_entity_too_large("the request body is too large"))?;
        collected.to_bytes()
    } else {
        bytes::Bytes::new()
    };
    let ctx = Ctx {
        api,
        user,
        method: parts.method.clone(),
        headers: parts.headers,
        query,
        path: rp,
        res,
        warnings: std::sync::Mutex::new(Vec::new()),
    };
    let mut resp = dispatch(&ctx, body).await?;
    let warnings = std::mem::take(&mut *ctx.warnings.lock().unwrap_or_else(|e| e.into_inner()));
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    Ok(resp)
}

/// Finds the resource a path names (re-reading `/namespaces/<ns>/<sub>` as a namespace
/// subresource when needed).
fn resolve(api: &Api, rp: ResourcePath) -> ApiResult<(ResourcePath, Arc<Resource>)> {
    if let Some(res) = api.registry.get(&rp.group, &rp.version, &rp.plural) {
        if rp.namespace.is_some() && !res.namespaced {
            return Err(ApiError::path_not_found());
        }
        return Ok((rp, res));
    }
    if let Some(nsr) = rp.as_namespace_subresource()
        && let Some(res) = api.registry.get("", &nsr.version, "namespaces")
    {
        return Ok((nsr, res));
    }
    Err(ApiError::path_not_found())
}

async fn dispatch(ctx: &Ctx, body: bytes::Bytes) -> ApiResult<Response> {
    let sub = ctx.path.subresource.as_deref();
    let has_name = ctx.path.name.is_some();
    match (&ctx.method, has_name, sub) {
        (&Method::GET, false, _) => {
            if ctx.query.flag("watch") {
                watch::watch(ctx).await
            } else {
                read::list(ctx).await
            }
        }
        (&Method::GET, true, None) => read::get(ctx).await,
        (&Method::GET, true, Some("status")) if ctx.res.status_subresource => read::get(ctx).await,
        (&Method::GET, true, Some("scale")) if ctx.res.scale.is_some() => sub::get_scale(ctx).await,
        (&Method::GET, true, Some("log")) if ctx.res.plural == "pods" => nodeproxy::pod_log(ctx).await,
        (&Method::POST, false, None) if ctx.res.group == "authentication.k8s.io" => {
            match ctx.res.plural.as_str() {
                "tokenreviews" => token::review(ctx, &body).await,
                _ => token::self_review(ctx).await,
            }
        }
        (&Method::POST, false, None) if ctx.res.group == "authorization.k8s.io" => {
            access::review(ctx, &body).await
        }
        (&Method::POST, false, None) => write::create(ctx, &body).await,
        (&Method::POST, true, Some("binding")) if ctx.res.plural == "pods" => sub::binding(ctx, &body).await,
        (&Method::POST, false, _) if ctx.res.plural == "bindings" => sub::binding(ctx, &body).await,
        (&Method::POST, true, Some("token")) if ctx.res.plural == "serviceaccounts" => {
            token::create(ctx, &body).await
        }
        (&Method::POST, true, Some("eviction")) if ctx.res.plural == "pods" => {
            sub::eviction(ctx, &body).await
        }
        (&Method::PUT, true, None) => write::update(ctx, &body).await,
        (&Method::PUT, true, Some("status")) if ctx.res.status_subresource => write::update(ctx, &body).await,
        (&Method::PUT, true, Some("finalize")) if ctx.res.plural == "namespaces" => {
            write::update(ctx, &body).await
        }
        (&Method::PUT, true, Some("scale")) if ctx.res.scale.is_some() => sub::update_scale(ctx, &body).await,
        (&Method::PATCH, true, None) => write::patch(ctx, &body).await,
        (&Method::PATCH, true, Some("status")) if ctx.res.status_subresource => {
            write::patch(ctx, &body).await
        }
        (&Method::PATCH, true, Some("scale")) if ctx.res.scale.is_some() => {
            sub::patch_scale(ctx, &body).await
        }
        (&Method::DELETE, true, None) => write::delete(ctx, &body).await,
        (&Method::DELETE, false, None) => write::delete_collection(ctx, &body).await,
        (_, _, Some(_)) => Err(ApiError::path_not_found()),
        (m, _, None) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    }
}
