//! `/openapi/v2` and `/openapi/v3`: schemas of every served kind (built-ins from their
//! `k8s-openapi` types, custom resources from their CRDs) and the paths that serve them,
//! so `kubectl explain`, client-side validation and `kubectl apply` work.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use axum::response::Response;
use http::HeaderMap;
use serde_json::{Map, Value, json};

use crate::Api;
use crate::error::{ApiError, ApiResult};
use crate::negotiate;
use crate::registry::Resource;

/// The reported Kubernetes version of this API.
pub const KUBE_VERSION: &str = "v1.33.0";

/// Cached OpenAPI documents, rebuilt when the set of served resources changes.
#[derive(Default)]
pub struct Docs {
    builtin: OnceLock<Arc<Map<String, Value>>>,
    cache: Mutex<Option<Built>>,
}

struct Built {
    generation: u64,
    /// All definitions (built-in and custom), with `#/definitions/` references.
    definitions: Arc<Map<String, Value>>,
    v2: Arc<Value>,
    /// The v2 document in the protobuf encoding kubectl prefers.
    v2_pb: Arc<Vec<u8>>,
    v3: BTreeMap<String, (Arc<Value>, String)>,
}

fn hash_of(v: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.to_string().hash(&mut h);
    format!("{:016X}{:016X}", h.finish(), h.finish().rotate_left(17))
}

/// Rewrites every `$ref` prefix (v2 `#/definitions/` <-> v3 `#/components/schemas/`).
fn rewrite_refs(v: &mut Value, from: &str, to: &str) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(rest) = r.strip_prefix(from)
            {
                *r = format!("{to}{rest}");
            }
            m.values_mut().for_each(|x| rewrite_refs(x, from, to));
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_refs(x, from, to)),
        _ => {}
    }
}

/// In v3, a `$ref` with siblings becomes `allOf: [{$ref}]` plus the siblings.
fn wrap_ref_siblings(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("$ref").is_some_and(Value::is_string)
                && m.len() > 1
                && let Some(r) = m.remove("$ref")
            {
                m.insert("allOf".into(), json!([{"$ref": r}]));
            }
            m.values_mut().for_each(wrap_ref_siblings);
        }
        Value::Array(a) => a.iter_mut().for_each(wrap_ref_siblings),
        _ => {}
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref")
                && let Some(name) = r.rsplit('/').next()
            {
                out.push(name.to_string());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// The name of a definition and everything it references.
fn closure(defs: &Map<String, Value>, roots: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(n) = todo.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        if let Some(d) = defs.get(&n) {
            let mut refs = Vec::new();
            collect_refs(d, &mut refs);
            todo.extend(refs);
        }
    }
    seen
}

fn gvk(r: &Resource) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

/// The definition name a resource's schema is filed under.
pub fn definition_name(r: &Resource) -> String {
    match &r.definition {
        Some(d) => d.clone(),
        None => crate::crd::definition_name(&r.group, &r.version, &r.kind),
    }
}

fn build_builtin(api: &Api) -> Map<String, Value> {
    let settings = schemars::generate::SchemaSettings::draft07().with(|s| {
        s.definitions_path = "/definitions".into();
        s.meta_schema = None;
        s.transforms.clear();
    });
    let mut generator = settings.into_generator();
    for r in api.registry.all() {
        if let Some(f) = r.schema_fn {
            f(&mut generator);
        }
    }
    let mut defs: Map<String, Value> = generator.take_definitions(false);
    // Types that hold arbitrary JSON (or one of several shapes) are described by their
    // description alone, as in Kubernetes' own documents, so validators accept any value.
    for (name, d) in defs.iter_mut() {
        if let Some(m) = d.as_object_mut()
            && (m.remove("oneOf").is_some() || name.ends_with("apiextensions.v1.JSON"))
        {
            m.remove("type");
        }
    }
    apimachinery::openapi_ext::annotate(&mut defs);
    for r in api.registry.all() {
        if r.schema_fn.is_none() {
            continue;
        }
        if let Some(d) = defs.get_mut(&definition_name(&r)).and_then(Value::as_object_mut) {
            let list = d.entry("x-kubernetes-group-version-kind").or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                let g = gvk(&r);
                if !a.contains(&g) {
                    a.push(g);
                }
            }
        }
    }
    defs
}

fn parameter(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "type": "string", "uniqueItems": true})
}

/// The paths of one resource, with the operations and query parameters clients probe.
fn paths_for(r: &Resource, v3: bool) -> Vec<(String, Value)> {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let coll = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let def = definition_name(r);
    let reference = if v3 { format!("#/components/schemas/{def}") } else { format!("#/definitions/{def}") };
    let write_params = || {
        vec![
            parameter("dryRun", "When present, indicates that modifications should not be persisted."),
            parameter(
                "fieldManager",
                "A name associated with the actor or entity that is making these changes.",
            ),
            parameter(
                "fieldValidation",
                "Instructs the server how to handle objects with unknown or duplicate fields.",
            ),
        ]
    };
    let params_v3 = |ps: Vec<Value>| -> Vec<Value> {
        ps.into_iter()
            .map(|p| {
                json!({"name": p["name"], "in": "query", "description": p["description"], "schema": {"type": "string", "uniqueItems": true}})
            })
            .collect()
    };
    let op = |action: &str, params: Vec<Value>, body: bool| -> Value {
        let mut o = json!({
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk(r),
            "operationId": format!("{action}{}", r.kind),
            "responses": {"200": if v3 {
                json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": reference}}}})
            } else {
                json!({"description": "OK", "schema": {"$ref": reference}})
            }},
        });
        let params = if v3 { params_v3(params) } else { params };
        o["parameters"] = json!(params);
        if body {
            if v3 {
                o["requestBody"] =
                    json!({"content": {"*/*": {"schema": {"$ref": reference}}}, "required": true});
            } else if let Some(a) = o["parameters"].as_array_mut() {
                a.push(
                    json!({"name": "body", "in": "body", "required": true, "schema": {"$ref": reference}}),
                );
            }
        }
        o
    };
    let mut patch_params = write_params();
    patch_params.push(parameter("force", "Force is going to \"force\" Apply requests."));
    let mut out = vec![
        (coll.clone(), json!({"get": op("list", vec![], false), "post": op("post", write_params(), true)})),
        (
            format!("{coll}/{{name}}"),
            json!({
                "get": op("get", vec![], false),
                "put": op("put", write_params(), true),
                "patch": op("patch", patch_params.clone(), false),
                "delete": op("delete", vec![parameter("dryRun", "When present, indicates that modifications should not be persisted.")], false),
            }),
        ),
    ];
    if r.status_subresource {
        out.push((
            format!("{coll}/{{name}}/status"),
            json!({"get": op("get", vec![], false), "put": op("put", write_params(), true), "patch": op("patch", patch_params, false)}),
        ));
    }
    out
}

impl Docs {
    fn built(&self, api: &Api) -> std::sync::MutexGuard<'_, Option<Built>> {
        let generation = api.registry.generation();
        let mut guard = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_some_and(|b| b.generation == generation) {
            return guard;
        }
        let builtin = self.builtin.get_or_init(|| Arc::new(build_builtin(api))).clone();
        let mut defs = (*builtin).clone();
        for r in api.registry.all() {
            if r.schema_fn.is_none()
                && let Some(d) = crate::crd::definition_for(&r)
            {
                defs.insert(definition_name(&r), d);
            }
        }
        // v2: one document.
        let mut paths = Map::new();
        for r in api.registry.all() {
            if r.plural == "bindings" {
                continue;
            }
            for (p, ops) in paths_for(&r, false) {
                paths.insert(p, ops);
            }
        }
        let v2 = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": KUBE_VERSION},
            "paths": paths,
            "definitions": defs,
        });
        // v3: one document per group/version.
        let mut by_gv: HashMap<String, Vec<Arc<Resource>>> = HashMap::new();
        for r in api.registry.all() {
            let key = if r.group.is_empty() {
                format!("api/{}", r.version)
            } else {
                format!("apis/{}/{}", r.group, r.version)
            };
            by_gv.entry(key).or_default().push(r);
        }
        let mut v3 = BTreeMap::new();
        for (gv, rs) in by_gv {
            let mut paths = Map::new();
            for r in &rs {
                for (p, ops) in paths_for(r, true) {
                    paths.insert(p, ops);
                }
            }
            let mut roots: Vec<String> = rs.iter().map(|r| definition_name(r)).collect();
            roots.push("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".into());
            let names = closure(&defs, roots);
            let mut schemas = Map::new();
            for n in names {
                if let Some(d) = defs.get(&n) {
                    let mut d = d.clone();
                    rewrite_refs(&mut d, "#/definitions/", "#/components/schemas/");
                    wrap_ref_siblings(&mut d);
                    schemas.insert(n, d);
                }
            }
            let doc = json!({
                "openapi": "3.0.0",
                "info": {"title": "Kubernetes", "version": KUBE_VERSION},
                "paths": paths,
                "components": {"schemas": schemas},
            });
            let h = hash_of(&doc);
            v3.insert(gv, (Arc::new(doc), h));
        }
        let v2_pb = Arc::new(crate::openapi_pb::encode_v2(&v2));
        *guard = Some(Built { generation, definitions: Arc::new(defs), v2: Arc::new(v2), v2_pb, v3 });
        guard
    }

    /// Every definition by name (v2 references), built-in and custom.
    pub fn definitions(&self, api: &Api) -> Arc<Map<String, Value>> {
        let g = self.built(api);
        g.as_ref().map(|b| b.definitions.clone()).unwrap_or_default()
    }

    /// `/openapi/v2`, as JSON or (when asked for) gnostic protobuf.
    pub fn v2(&self, api: &Api, headers: &HeaderMap) -> Response {
        let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        let wants_pb = accept.split(',').map(|m| m.split(';').next().unwrap_or("").trim()).any(|m| {
            m == "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
                || m == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        });
        let g = self.built(api);
        if wants_pb {
            let bytes = g.as_ref().map(|b| b.v2_pb.clone()).unwrap_or_default();
            let mut resp = Response::new(axum::body::Body::from((*bytes).clone()));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
            );
            return resp;
        }
        let doc = g.as_ref().map(|b| b.v2.clone()).unwrap_or_default();
        negotiate::encode(http::StatusCode::OK, &doc, negotiate::Output::Json)
    }

    pub fn v3_index(&self, api: &Api) -> Response {
        let g = self.built(api);
        let mut paths = Map::new();
        if let Some(b) = g.as_ref() {
            for (gv, (_, h)) in &b.v3 {
                paths.insert(gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={h}")}));
            }
        }
        negotiate::encode(http::StatusCode::OK, &json!({"paths": paths}), negotiate::Output::Json)
    }

    pub fn v3(&self, api: &Api, gv: &str) -> ApiResult<Response> {
        let g = self.built(api);
        let doc = g.as_ref().and_then(|b| b.v3.get(gv.trim_end_matches('/'))).map(|(d, _)| d.clone());
        match doc {
            Some(d) => Ok(negotiate::encode(http::StatusCode::OK, &d, negotiate::Output::Json)),
            None => Err(ApiError::path_not_found()),
        }
    }
}
