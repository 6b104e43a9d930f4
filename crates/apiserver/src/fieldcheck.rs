//! Schema-driven checks and merges on request bodies: unknown-field detection for field
//! validation, strategic merge patches, server-side apply and managed fields.

use serde_json::{Map, Value};

use crate::Api;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Ctx;
use crate::registry::{Resource, Schema};

/// Resolves `$ref` (and single-element `allOf`) to the schema it names.
fn resolve<'a>(defs: &'a Map<String, Value>, mut s: &'a Value) -> &'a Value {
    for _ in 0..32 {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            match defs.get(r.rsplit('/').next().unwrap_or(r)) {
                Some(d) => s = d,
                None => return s,
            }
        } else if let Some(first) = s.get("allOf").and_then(Value::as_array).and_then(|a| a.first()) {
            s = first;
        } else {
            return s;
        }
    }
    s
}

fn walk(defs: &Map<String, Value>, schema: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    let schema = resolve(defs, schema);
    if schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true)
        && schema.get("properties").is_none()
    {
        return;
    }
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve =
                schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
            for (k, child) in m {
                let child_path = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match props.and_then(|p| p.get(k)) {
                    Some(s) => walk(defs, s, child, &child_path, out),
                    None => match additional {
                        Some(Value::Object(a)) => {
                            walk(defs, &Value::Object(a.clone()), child, &child_path, out)
                        }
                        Some(Value::Bool(true)) => {}
                        _ => {
                            // Schemas with no properties at all (RawExtension, free-form
                            // objects) accept anything.
                            if props.is_some() && !preserve {
                                out.push(child_path);
                            }
                        }
                    },
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, child) in a.iter().enumerate() {
                    walk(defs, items, child, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Fields in `obj` its schema does not know, as dotted paths (`spec.replicaz`).
pub fn unknown_fields(api: &Api, res: &Resource, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match &res.schema {
        Schema::Definition(name) => {
            let defs = api.openapi.definitions(api);
            if let Some(s) = defs.get(name) {
                walk(&defs, s, obj, "", &mut out);
            }
        }
        Schema::Structural(s) => {
            let empty = Map::new();
            let mut m = obj.as_object().cloned().unwrap_or_default();
            // apiVersion, kind and metadata are the server's, not the CRD schema's.
            let meta = m.remove("metadata");
            m.remove("apiVersion");
            m.remove("kind");
            walk(&empty, s, &Value::Object(m), "", &mut out);
            if let Some(meta) = meta {
                let defs = api.openapi.definitions(api);
                if let Some(om) = defs.get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta") {
                    walk(&defs, om, &meta, "metadata", &mut out);
                }
            }
        }
        Schema::None => {}
    }
    out
}

/// The definition built-in kinds use for `resource.Quantity` fields.
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// Whether `schema` is (a reference to) the Quantity definition.
fn is_quantity<'a>(defs: &'a Map<String, Value>, mut s: &'a Value) -> bool {
    for _ in 0..32 {
        let Some(r) = s.get("$ref").and_then(Value::as_str) else { return false };
        let name = r.rsplit('/').next().unwrap_or(r);
        if name == QUANTITY {
            return true;
        }
        match defs.get(name) {
            Some(d) => s = d,
            None => return false,
        }
    }
    false
}

fn rewrite_quantities(
    defs: &Map<String, Value>,
    schema: &Value,
    v: &mut Value,
) -> Result<(), apimachinery::quantity::Error> {
    if is_quantity(defs, schema) {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            // Anything else is a type error the typed decoding reports.
            _ => return Ok(()),
        };
        *v = Value::String(apimachinery::quantity::Quantity::parse(&text)?.to_string());
        return Ok(());
    }
    let schema = resolve(defs, schema);
    match v {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in m.iter_mut() {
                if let Some(s) = props.and_then(|p| p.get(k)).or(additional) {
                    rewrite_quantities(defs, s, child)?;
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for child in a {
                    rewrite_quantities(defs, items, child)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Rewrites every quantity of a built-in object in canonical form (`1024Mi` is stored as
/// `1Gi`, `0.5` as `500m`, a bare number becomes a string), as kube-apiserver does by
/// decoding and re-encoding; a quantity that does not parse refuses the request (400).
pub fn canonicalize_quantities(api: &Api, res: &Resource, obj: &mut Value) -> ApiResult<()> {
    let Schema::Definition(name) = &res.schema else { return Ok(()) };
    let defs = api.openapi.definitions(api);
    let Some(schema) = defs.get(name) else { return Ok(()) };
    rewrite_quantities(&defs, schema, obj)
        .map_err(|e| crate::strategy::undecodable(&res.kind, &res.api_version(), &e.to_string()))
}

/// Applies a strategic merge patch using the kind's OpenAPI patch metadata.
pub fn strategic_merge(api: &Api, res: &Resource, original: &Value, patch: &Value) -> ApiResult<Value> {
    let defs = api.openapi.definitions(api);
    let name = crate::openapi::definition_name(res);
    let meta = apimachinery::strategicpatch::OpenApiPatchMeta::new(&defs, &name);
    apimachinery::strategicpatch::apply(original, patch, &meta).map_err(|e| match e.http_status() {
        400 => ApiError::bad_request(e.to_string()),
        422 => ApiError::new(422, "Invalid", e.to_string()),
        _ => ApiError::internal(e.to_string()),
    })
}

fn manager_time() -> String {
    crate::meta::now_rfc3339()
}

/// Server-side apply: merges the applied configuration into the live object with the
/// kind's list semantics, tracks field ownership in `metadata.managedFields`, removes
/// fields this manager stopped applying (unless someone else owns them) and refuses, with
/// 409, to change fields other managers own unless `force=true`.
pub fn server_side_apply(ctx: &Ctx, original: &Value, applied: &Value) -> ApiResult<Value> {
    let defs = ctx.api.openapi.definitions(&ctx.api);
    let name = crate::openapi::definition_name(&ctx.res);
    let ty = if defs.contains_key(&name) {
        apimachinery::managedfields::TypeRef::new(&defs, &name)
    } else {
        apimachinery::managedfields::TypeRef::untyped()
    };
    let mut applied = applied.clone();
    let sub = ctx.path.subresource.clone().unwrap_or_default();
    // The main resource ignores status (and the status endpoint everything but status).
    if ctx.res.status_subresource
        && let Some(m) = applied.as_object_mut()
        && sub.is_empty()
    {
        m.remove("status");
    }
    let manager_name = ctx.field_manager();
    let api_version = ctx.res.api_version();
    let time = manager_time();
    let manager = apimachinery::managedfields::Manager {
        name: &manager_name,
        api_version: &api_version,
        subresource: &sub,
        time: &time,
    };
    let force = ctx.query.flag("force");
    match apimachinery::managedfields::apply(original, &applied, &manager, force, &ty) {
        Ok((obj, _)) => Ok(obj),
        Err(apimachinery::managedfields::Error::Conflicts(c)) => {
            let causes: Vec<Value> = c
                .causes()
                .into_iter()
                .map(|(message, field)| serde_json::json!({"reason": "FieldManagerConflict", "message": message, "field": field}))
                .collect();
            let mut e = ApiError::new(409, "Conflict", c.to_string());
            e.details = Some(serde_json::json!({"name": crate::meta::name(original), "group": ctx.res.group,
                "kind": ctx.res.plural, "causes": causes}));
            Err(e)
        }
        Err(other) => Err(ApiError::bad_request(other.to_string())),
    }
}

/// Records who changed which fields in `metadata.managedFields` for a write that is not
/// an apply (create, update, patch), as Kubernetes' field manager does.
pub fn managed_fields_update(ctx: &Ctx, obj: &mut Value, old: Option<&Value>, operation: &str) {
    // Bindings change only where a pod runs; like Kubernetes' binding storage they do not
    // go through the field manager.
    if operation == "Apply" || ctx.path.subresource.as_deref() == Some("binding") {
        return;
    }
    let defs = ctx.api.openapi.definitions(&ctx.api);
    let name = crate::openapi::definition_name(&ctx.res);
    let ty = if defs.contains_key(&name) {
        apimachinery::managedfields::TypeRef::new(&defs, &name)
    } else {
        apimachinery::managedfields::TypeRef::untyped()
    };
    let manager_name = ctx.field_manager();
    let api_version = ctx.res.api_version();
    let time = manager_time();
    let sub = ctx.path.subresource.clone().unwrap_or_default();
    let manager = apimachinery::managedfields::Manager {
        name: &manager_name,
        api_version: &api_version,
        subresource: &sub,
        time: &time,
    };
    let null = Value::Null;
    match apimachinery::managedfields::update_managed_fields(old.unwrap_or(&null), obj, &manager, &ty) {
        Ok(managed) => {
            let m = crate::meta::metadata_mut(obj);
            if managed.as_array().is_some_and(Vec::is_empty) {
                m.remove("managedFields");
            } else {
                m.insert("managedFields".into(), managed);
            }
        }
        Err(e) => tracing::warn!(error = %e, "managed fields could not be computed; keeping the stored ones"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_found_by_path() {
        let mut defs = Map::new();
        defs.insert(
            "Thing".into(),
            json!({"properties": {"spec": {"$ref": "#/definitions/Spec"}, "free": {"type": "object"}}}),
        );
        defs.insert(
            "Spec".into(),
            json!({"properties": {"replicas": {"type": "integer"},
                "items": {"type": "array", "items": {"properties": {"name": {"type": "string"}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}}),
        );
        let v = json!({"spec": {"replicaz": 1, "items": [{"name": "a", "nme": "b"}], "labels": {"x": "y"}},
            "free": {"anything": 1}, "extra": true});
        let mut out = Vec::new();
        walk(&defs, &defs["Thing"], &v, "", &mut out);
        assert_eq!(out, vec!["spec.replicaz", "spec.items[0].nme", "extra"]);
    }
}
