//! Discovery: `/version`, `/api`, `/apis` and group/version resource lists, in both the
//! legacy shape and the aggregated (apidiscovery.k8s.io v2 / v2beta1) shape.

use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::negotiate::{self, Output};
use crate::registry::Resource;
use crate::{Api, openapi};

pub fn version() -> Response {
    let v = openapi::KUBE_VERSION.trim_start_matches('v');
    let mut parts = v.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("0");
    let body = json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("{}+krust", openapi::KUBE_VERSION),
        "gitCommit": option_env!("KRUST_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": "2026-11-25T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": format!("linux/{}", if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }),
    });
    negotiate::encode(StatusCode::OK, &body, Output::Json)
}

/// `/`: the list of paths the server serves.
pub fn root_paths(api: &Api) -> Response {
    let mut paths = vec!["/api".to_string(), "/api/v1".into(), "/apis".into()];
    for g in api.registry.groups() {
        if g.name.is_empty() {
            continue;
        }
        paths.push(format!("/apis/{}", g.name));
        for v in g.versions {
            paths.push(format!("/apis/{}/{v}", g.name));
        }
    }
    paths.extend(
        ["/healthz", "/livez", "/metrics", "/openapi/v2", "/openapi/v3", "/readyz", "/version"]
            .map(String::from),
    );
    negotiate::encode(StatusCode::OK, &json!({"paths": paths}), Output::Json)
}

/// Which aggregated discovery version the client asked for, if any.
fn aggregated(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for part in accept.split(',') {
        let p: Vec<&str> = part.split(';').map(str::trim).collect();
        let has = |k: &str| p.contains(&k);
        if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

/// The group/version of a subresource's kind when it lives in another group than its
/// parent (kubectl drain looks for `policy/v1` Eviction, autoscale for `autoscaling/v1`).
fn subresource_group_version(kind: &str) -> Option<(&'static str, &'static str)> {
    match kind {
        "Eviction" => Some(("policy", "v1")),
        "Scale" => Some(("autoscaling", "v1")),
        "TokenRequest" => Some(("authentication.k8s.io", "v1")),
        _ => None,
    }
}

fn resource_entries(r: &Resource) -> Vec<Value> {
    let mut main = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let mut out = vec![main];
    if r.status_subresource {
        out.push(
            json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
            "kind": r.kind, "verbs": ["get", "patch", "update"]}),
        );
    }
    if r.scale.is_some() {
        out.push(
            json!({"name": format!("{}/scale", r.plural), "singularName": "", "namespaced": r.namespaced,
            "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}),
        );
    }
    for (sub, kind, verbs) in &r.extra_subresources {
        let mut e = json!({"name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced,
            "kind": kind, "verbs": verbs});
        if let Some((g, v)) = subresource_group_version(kind) {
            e["group"] = json!(g);
            e["version"] = json!(v);
        }
        out.push(e);
    }
    out
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    let mut subs = Vec::new();
    if r.status_subresource {
        subs.push(json!({"subresource": "status", "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
            "verbs": ["get", "patch", "update"]}));
    }
    if r.scale.is_some() {
        subs.push(json!({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": ["get", "patch", "update"]}));
    }
    for (sub, kind, verbs) in &r.extra_subresources {
        let (g, v) = if *kind == r.kind {
            (r.group.as_str(), r.version.as_str())
        } else {
            subresource_group_version(kind).unwrap_or(("", "v1"))
        };
        subs.push(json!({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": verbs}));
    }
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}

fn aggregated_group(api: &Api, group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let rs: Vec<Value> =
                api.registry.resources_of(group, v).iter().map(|r| aggregated_resource(r)).collect();
            json!({"version": v, "resources": rs, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

fn aggregated_list(api: &Api, core: bool, ver: &str) -> Response {
    let items: Vec<Value> = api
        .registry
        .groups()
        .iter()
        .filter(|g| g.name.is_empty() == core)
        .map(|g| aggregated_group(api, &g.name, &g.versions))
        .collect();
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{ver}"),
        "metadata": {},
        "items": items,
    });
    negotiate::json_with_type(
        &body,
        &format!("application/json;g=apidiscovery.k8s.io;v={ver};as=APIGroupDiscoveryList"),
    )
}

pub fn core_versions(headers: &HeaderMap, api: &Api) -> ApiResult<Response> {
    if let Some(ver) = aggregated(headers) {
        return Ok(aggregated_list(api, true, ver));
    }
    let body = json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    });
    Ok(negotiate::encode(StatusCode::OK, &body, Output::Json))
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": vs, "preferredVersion": preferred})
}

pub fn groups(headers: &HeaderMap, api: &Api) -> ApiResult<Response> {
    if let Some(ver) = aggregated(headers) {
        return Ok(aggregated_list(api, false, ver));
    }
    let groups: Vec<Value> = api
        .registry
        .groups()
        .iter()
        .filter(|g| !g.name.is_empty())
        .map(|g| group_json(&g.name, &g.versions))
        .collect();
    Ok(negotiate::encode(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
        Output::Json,
    ))
}

pub fn group(api: &Api, name: &str) -> ApiResult<Response> {
    let g =
        api.registry.groups().into_iter().find(|g| g.name == name).ok_or_else(ApiError::path_not_found)?;
    let mut body = group_json(&g.name, &g.versions);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Ok(negotiate::encode(StatusCode::OK, &body, Output::Json))
}

pub fn group_version(api: &Api, group: &str, version: &str) -> ApiResult<Response> {
    let rs = api.registry.resources_of(group, version);
    if rs.is_empty() {
        return Err(ApiError::path_not_found());
    }
    let resources: Vec<Value> = rs.iter().flat_map(|r| resource_entries(r)).collect();
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Ok(negotiate::encode(
        StatusCode::OK,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        Output::Json,
    ))
}
