//! create, update, patch, delete and deletecollection: the write pipeline (type meta,
//! unknown fields, decoding and defaults, metadata, strategy, admission, validation,
//! storage with compare-and-swap).

use std::collections::BTreeSet;

use apimachinery::validation::validate_object_meta;
use axum::response::Response;
use bytes::Bytes;
use http::{StatusCode, header};
use serde_json::{Map, Value, json};

use super::Ctx;
use super::read::{decode_stored, respond_object, served};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::meta::{self, metadata_mut, set_meta};
use crate::negotiate;
use crate::registry::Resource;
use crate::request::FieldValidation;

/// How many times a write retries after losing a compare-and-swap race it may retry.
const MAX_RETRIES: usize = 16;

/// The bytes an object is stored as (in the storage version, without resourceVersion).
pub fn to_storage(res: &Resource, obj: &Value) -> ApiResult<Bytes> {
    let storage_version = if res.storage.group.is_empty() {
        res.storage.storage_version.clone()
    } else {
        format!("{}/{}", res.storage.group, res.storage.storage_version)
    };
    let mut o = res.strategy.convert_in(obj.clone(), &storage_version);
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&o).map(Bytes::from).map_err(|e| ApiError::internal(format!("encoding object: {e}")))
}

/// Drops empty metadata lists and maps, as Kubernetes' encoding omits them (removing the
/// last finalizer or owner reference leaves no field behind).
fn drop_empty_metadata(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["labels", "annotations", "finalizers", "ownerReferences", "managedFields"] {
            let empty = match m.get(k) {
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(o)) => o.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                m.remove(k);
            }
        }
    }
}

/// Checks `apiVersion` and `kind` of a request body against the endpoint.
fn check_type_meta(res: &Resource, obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    }
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if !av.is_empty() && av != res.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    if !kind.is_empty() && kind != res.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            res.kind
        )));
    }
    Ok(())
}

/// Unknown fields: rejected (Strict), reported as warnings (Warn) or ignored.
fn check_fields(ctx: &Ctx, obj: &Value, fv: FieldValidation) -> ApiResult<()> {
    if fv == FieldValidation::Ignore {
        return Ok(());
    }
    let unknown = crate::fieldcheck::unknown_fields(&ctx.api, &ctx.res, obj);
    if unknown.is_empty() {
        return Ok(());
    }
    match fv {
        FieldValidation::Strict => {
            let list: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
            Err(ApiError::bad_request(format!("strict decoding error: {}", list.join(", "))))
        }
        _ => {
            for f in unknown {
                ctx.warn(format!("unknown field {f:?}"));
            }
            Ok(())
        }
    }
}

/// Object names and namespaces on the request must agree with those in the body.
fn reconcile_identity(ctx: &Ctx, obj: &mut Value, url_name: Option<&str>) -> ApiResult<()> {
    let res = &ctx.res;
    if res.namespaced {
        let body_ns = meta::namespace(obj).to_string();
        if !body_ns.is_empty() && body_ns != ctx.ns() {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        set_meta(obj, "namespace", Some(json!(ctx.ns())));
    } else {
        set_meta(obj, "namespace", None);
    }
    if let Some(url_name) = url_name {
        let body_name = meta::name(obj).to_string();
        if body_name.is_empty() {
            set_meta(obj, "name", Some(json!(url_name)));
        } else if body_name != url_name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
            )));
        }
    }
    Ok(())
}

fn validation_error(res: &Resource, obj: &Value, errs: &[FieldError]) -> ApiError {
    ApiError::invalid(&res.group, &res.kind, meta::name(obj), errs)
}

/// Refuses writes into a namespace that does not exist or is being deleted.
async fn check_namespace(ctx: &Ctx, obj: &Value) -> ApiResult<()> {
    if !ctx.res.namespaced {
        return Ok(());
    }
    let ns = ctx.ns();
    let key = format!("/registry/core/namespaces/{ns}");
    let cache = ctx.api.caches.cache("/registry/core/namespaces/").await?;
    let found = match cache.get(&key).0 {
        Some(o) => Some((*o).clone()),
        None => match ctx.api.store.get(&key).await? {
            Some(kv) => Some(decode_stored(&kv)?),
            None => None,
        },
    };
    match found {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if meta::is_deleting(&n) => {
            let mut e = ApiError::forbidden(format!(
                "{} {:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                ctx.res.qualified(),
                meta::name(obj)
            ));
            e.details = Some(json!({"name": meta::name(obj), "group": ctx.res.group, "kind": ctx.res.plural,
                "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}));
            Err(e)
        }
        Some(_) => Ok(()),
    }
}

/// Runs the create pipeline and stores the object. Returns it as stored.
pub async fn create_object(
    ctx: &Ctx,
    mut obj: Value,
    dry: bool,
    fv: FieldValidation,
    operation: &'static str,
) -> ApiResult<Value> {
    let res = ctx.res.clone();
    check_type_meta(&res, &obj)?;
    check_fields(ctx, &obj, fv)?;
    reconcile_identity(ctx, &mut obj, None)?;
    if !meta::resource_version(&obj).is_empty() {
        return Err(ApiError::bad_request("resourceVersion should not be set on objects to be created"));
    }
    let mut obj = decode(ctx, obj)?;
    drop_empty_metadata(&mut obj);
    {
        let m = metadata_mut(&mut obj);
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("selfLink");
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
        if res.tracks_generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
    }
    let generate =
        meta::name(&obj).is_empty() && !meta::meta_str(&obj, "generateName").unwrap_or("").is_empty();
    if generate {
        let base = meta::meta_str(&obj, "generateName").unwrap_or("").to_string();
        set_meta(&mut obj, "name", Some(json!(apimachinery::validation::generate_name(&base))));
    }
    res.strategy.prepare_for_create(&mut obj);
    crate::builtin::admission::mutate(ctx, &mut obj, None).await?;
    let mut errs = validate_object_meta(&obj["metadata"], res.namespaced, res.name_rule, "metadata");
    if errs.is_empty() {
        errs.extend(res.strategy.validate(&obj));
    }
    if !errs.is_empty() {
        return Err(validation_error(&res, &obj, &errs));
    }
    check_namespace(ctx, &obj).await?;
    crate::builtin::admission::validate(ctx, &obj, None).await?;
    crate::fieldcheck::managed_fields_update(ctx, &mut obj, None, operation);
    if dry {
        return Ok(obj);
    }
    let mut attempts = 0;
    loop {
        let key = res.key(ctx.ns(), meta::name(&obj));
        match ctx.api.store.create(&key, to_storage(&res, &obj)?).await {
            Ok(kv) => {
                meta::set_resource_version(&mut obj, kv.mod_revision);
                return Ok(obj);
            }
            Err(store::Error::AlreadyExists { .. }) if generate && attempts < 7 => {
                attempts += 1;
                let base = meta::meta_str(&obj, "generateName").unwrap_or("").to_string();
                set_meta(&mut obj, "name", Some(json!(apimachinery::validation::generate_name(&base))));
            }
            Err(store::Error::AlreadyExists { .. }) => {
                return Err(ApiError::already_exists(&res.group, &res.plural, meta::name(&obj)));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

pub async fn create(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let obj = negotiate::decode_body(&ctx.headers, body)?;
    let dry = ctx.query.dry_run()?;
    let fv = FieldValidation::from_query(&ctx.query)?;
    let created = create_object(ctx, obj, dry, fv, "Update").await?;
    respond_object(ctx, StatusCode::CREATED, &served(&ctx.res, created))
}

/// Whether anything but metadata and status differs (the rule for bumping generation).
fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
        m
    };
    strip(old) != strip(new)
}

/// What deletion still waits for: `metadata.finalizers`, plus a namespace's `spec.finalizers`.
fn blocking_finalizers(res: &Resource, obj: &Value) -> usize {
    let mut n = meta::finalizers(obj).len();
    if res.group.is_empty() && res.plural == "namespaces" {
        n += obj.pointer("/spec/finalizers").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
    }
    n
}

/// The body as the kind's type: quantities canonical, defaults applied.
fn decode(ctx: &Ctx, mut obj: Value) -> ApiResult<Value> {
    crate::fieldcheck::canonicalize_quantities(&ctx.api, &ctx.res, &mut obj)?;
    ctx.res.strategy.decode(obj)
}

/// Turns the requested new state into what is written, given the stored one.
fn prepare_update(ctx: &Ctx, new: Value, old: &Value) -> ApiResult<Value> {
    let res = &ctx.res;
    let sub = ctx.path.subresource.as_deref();
    let mut new = decode(ctx, new)?;
    let old_uid = meta::uid(old).to_string();
    let new_uid = meta::uid(&new).to_string();
    if !new_uid.is_empty() && new_uid != old_uid {
        return Err(ApiError::conflict(
            &res.group,
            &res.plural,
            meta::name(old),
            &format!("Precondition failed: UID in precondition: {new_uid}, UID in object meta: {old_uid}"),
        ));
    }
    let mut new = match sub {
        Some("status") => {
            let mut merged = old.clone();
            match new.get("status") {
                Some(s) => merged["status"] = s.clone(),
                None => {
                    if let Some(m) = merged.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if let Some(mf) = new.pointer("/metadata/managedFields") {
                metadata_mut(&mut merged).insert("managedFields".into(), mf.clone());
            }
            merged
        }
        // A binding writes the pod as given (node name and PodScheduled condition).
        Some("binding") => new,
        Some("finalize") => {
            let mut merged = old.clone();
            let fins = new.pointer("/spec/finalizers").cloned().unwrap_or_else(|| json!([]));
            merged["spec"]["finalizers"] = fins;
            merged
        }
        _ => {
            {
                let m = metadata_mut(&mut new);
                for k in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ] {
                    match old.get("metadata").and_then(|om| om.get(k)) {
                        Some(v) => {
                            m.insert(k.into(), v.clone());
                        }
                        None => {
                            m.remove(k);
                        }
                    }
                }
            }
            if res.status_subresource {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            res.strategy.prepare_for_update(&mut new, old);
            if res.tracks_generation && spec_changed(old, &new) {
                let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
                metadata_mut(&mut new).insert("generation".into(), json!(g));
            }
            new
        }
    };
    metadata_mut(&mut new).remove("selfLink");
    drop_empty_metadata(&mut new);
    let mut errs = validate_object_meta(&new["metadata"], res.namespaced, res.name_rule, "metadata");
    if errs.is_empty() {
        errs.extend(res.strategy.validate_update(&new, old));
    }
    if !errs.is_empty() {
        return Err(validation_error(res, &new, &errs));
    }
    Ok(new)
}

/// Compares objects ignoring the fields every write touches.
fn same_content(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    norm(a) == norm(b)
}

/// Options of an update-like write.
pub struct UpdateOpts {
    pub dry: bool,
    /// Whether a missing object is created from the mutation's result.
    pub create_if_missing: bool,
    pub manager_operation: &'static str,
}

/// The watch cache's copy of `key` and its revision, if the cache has one.
async fn cached_copy(ctx: &Ctx, key: &str) -> Option<(Value, store::Revision)> {
    let cache = ctx.api.caches.cache(&ctx.res.storage.prefix).await.ok()?;
    let obj = cache.get(key).0?;
    let rev: store::Revision = meta::resource_version(&obj).parse().ok()?;
    Some(((*obj).clone(), rev))
}

/// Reads the stored object, applies `mutate`, runs the update pipeline and writes with
/// compare-and-swap, retrying a lost race unless the client pinned a resourceVersion.
/// Returns the written object and whether it was created.
pub async fn guaranteed_update(
    ctx: &Ctx,
    name: &str,
    opts: UpdateOpts,
    mutate: impl Fn(Option<&Value>) -> ApiResult<Value>,
) -> ApiResult<(Value, bool)> {
    let res = ctx.res.clone();
    let key = res.key(ctx.ns(), name);
    // As kube-apiserver does, the first attempt starts from the watch cache's copy: the
    // compare-and-swap below rejects it if it is stale, and every retry reads storage.
    // Anything the stale copy could have decided (a refusal, "nothing changed", a dry
    // run's answer) is decided again from storage.
    let mut guess = if opts.dry { None } else { cached_copy(ctx, &key).await };
    for _ in 0..MAX_RETRIES {
        let from_cache = guess.is_some();
        let current = match guess.take() {
            Some(g) => Some(g),
            None => match ctx.api.store.get(&key).await? {
                Some(kv) => Some((decode_stored(&kv)?, kv.mod_revision)),
                None => None,
            },
        };
        let Some((stored, stored_rev)) = current else {
            if !opts.create_if_missing {
                return Err(ApiError::not_found(&res.group, &res.plural, name));
            }
            let obj = mutate(None)?;
            if !meta::resource_version(&obj).is_empty() {
                return Err(ApiError::not_found(&res.group, &res.plural, name));
            }
            match create_object(ctx, obj, opts.dry, FieldValidation::Ignore, opts.manager_operation).await {
                Ok(o) => return Ok((o, true)),
                Err(e) if e.reason == "AlreadyExists" => continue,
                Err(e) => return Err(e),
            }
        };
        let old = served(&res, stored);
        let candidate = match mutate(Some(&old)) {
            Ok(c) => c,
            Err(_) if from_cache => continue,
            Err(e) => return Err(e),
        };
        let pinned = meta::resource_version(&candidate).to_string();
        if !pinned.is_empty() && pinned != meta::resource_version(&old) {
            if from_cache {
                continue;
            }
            return Err(ApiError::modified(&res.group, &res.plural, name));
        }
        let mut new = match prepare_update(ctx, candidate, &old) {
            Ok(n) => n,
            Err(_) if from_cache => continue,
            Err(e) => return Err(e),
        };
        let admitted = match crate::builtin::admission::mutate(ctx, &mut new, Some(&old)).await {
            Ok(()) => crate::builtin::admission::validate(ctx, &new, Some(&old)).await,
            Err(e) => Err(e),
        };
        match admitted {
            Ok(()) => {}
            Err(_) if from_cache => continue,
            Err(e) => return Err(e),
        }
        let finishing = meta::is_deleting(&old)
            && blocking_finalizers(&res, &new) == 0
            && old.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) == 0;
        if finishing {
            if opts.dry {
                return Ok((new, false));
            }
            match ctx.api.store.delete(&key, Some(stored_rev)).await {
                Ok(_) => {
                    meta::set_resource_version(&mut new, stored_rev);
                    return Ok((new, false));
                }
                Err(store::Error::Conflict { .. }) if pinned.is_empty() => continue,
                Err(store::Error::Conflict { .. }) => {
                    return Err(ApiError::modified(&res.group, &res.plural, name));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if same_content(&old, &new) {
            if from_cache {
                continue;
            }
            return Ok((old, false));
        }
        crate::fieldcheck::managed_fields_update(ctx, &mut new, Some(&old), opts.manager_operation);
        if opts.dry {
            return Ok((new, false));
        }
        match ctx.api.store.update(&key, to_storage(&res, &new)?, stored_rev).await {
            Ok(kv) => {
                meta::set_resource_version(&mut new, kv.mod_revision);
                return Ok((new, false));
            }
            Err(store::Error::Conflict { .. }) if pinned.is_empty() => continue,
            Err(store::Error::Conflict { .. }) => {
                return Err(ApiError::modified(&res.group, &res.plural, name));
            }
            Err(store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(&res.group, &res.plural, name, "too many concurrent writes; try again"))
}

pub async fn update(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let mut obj = negotiate::decode_body(&ctx.headers, body)?;
    let dry = ctx.query.dry_run()?;
    let fv = FieldValidation::from_query(&ctx.query)?;
    check_type_meta(&ctx.res, &obj)?;
    check_fields(ctx, &obj, fv)?;
    reconcile_identity(ctx, &mut obj, Some(ctx.name()))?;
    let opts = UpdateOpts {
        dry,
        create_if_missing: ctx.res.allow_create_on_update && ctx.path.subresource.is_none(),
        manager_operation: "Update",
    };
    let (out, created) = guaranteed_update(ctx, ctx.name(), opts, |_| Ok(obj.clone())).await?;
    let code = if created { StatusCode::CREATED } else { StatusCode::OK };
    respond_object(ctx, code, &served(&ctx.res, out))
}

/// The kinds of patch Kubernetes accepts, by content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

fn patch_type(ctx: &Ctx) -> ApiResult<PatchType> {
    let ct = ctx.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    let builtin = ctx.res.definition.is_some();
    let accepted = if builtin {
        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
    } else {
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    };
    match essence {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" if builtin => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" => Ok(PatchType::Apply),
        _ => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: {accepted}"
        ))),
    }
}

/// Applies a patch document to an object.
pub fn apply_patch(ctx: &Ctx, pt: PatchType, original: &Value, patch: &Value) -> ApiResult<Value> {
    match pt {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let mut doc = original.clone();
            let rejected = |e: String| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            };
            for op in ops.0 {
                // As Kubernetes' JSON patch, a `test` of a missing member against null
                // succeeds (kube-rs adds a first finalizer that way).
                if let json_patch::PatchOperation::Test(t) = &op {
                    let ok = match doc.pointer(t.path.as_str()) {
                        None => t.value.is_null(),
                        Some(v) => *v == t.value,
                    };
                    if !ok {
                        return Err(rejected(format!("testing value {} failed: test failed", t.path)));
                    }
                    continue;
                }
                json_patch::patch(&mut doc, std::slice::from_ref(&op))
                    .map_err(|e| rejected(e.to_string()))?;
            }
            Ok(doc)
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Strategic => crate::fieldcheck::strategic_merge(&ctx.api, &ctx.res, original, patch),
        PatchType::Apply => crate::fieldcheck::server_side_apply(ctx, original, patch),
    }
}

/// Whether a patch document sets `metadata.resourceVersion` (a precondition).
fn patch_pins_resource_version(pt: PatchType, doc: &Value) -> bool {
    match pt {
        PatchType::Json => doc.as_array().is_some_and(|ops| {
            ops.iter().any(|op| {
                op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion")
                    && matches!(op.get("op").and_then(Value::as_str), Some("add" | "replace" | "test"))
            })
        }),
        _ => {
            doc.pointer("/metadata/resourceVersion").and_then(Value::as_str).is_some_and(|rv| !rv.is_empty())
        }
    }
}

pub async fn patch(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let pt = patch_type(ctx)?;
    let dry = ctx.query.dry_run()?;
    let fv = FieldValidation::from_query(&ctx.query)?;
    let doc: Value = match pt {
        PatchType::Apply => negotiate::decode_body(&ctx.headers, body)?,
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
    };
    if pt == PatchType::Apply {
        check_type_meta(&ctx.res, &doc)?;
        if doc.get("apiVersion").is_none() || doc.get("kind").is_none() {
            return Err(ApiError::bad_request("apiVersion and kind must be set in an apply patch"));
        }
        if ctx.query.get("fieldManager").unwrap_or("").is_empty() {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        check_fields(ctx, &doc, fv)?;
    }
    let name = ctx.name().to_string();
    let opts = UpdateOpts {
        dry,
        create_if_missing: pt == PatchType::Apply && ctx.path.subresource.is_none(),
        manager_operation: if pt == PatchType::Apply { "Apply" } else { "Update" },
    };
    let (out, created) = guaranteed_update(ctx, &name, opts, |old| {
        let base = match old {
            Some(o) => o.clone(),
            None if pt == PatchType::Apply => json!({}),
            None => json!({"apiVersion": ctx.res.api_version(), "kind": ctx.res.kind,
                "metadata": {"name": name, "namespace": ctx.ns()}}),
        };
        let mut patched = apply_patch(ctx, pt, &base, &doc)?;
        if pt != PatchType::Apply {
            check_fields(ctx, &patched, fv)?;
        }
        // A patch may not move an object to another name or namespace.
        if meta::name(&patched) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta::name(&patched)
            )));
        }
        reconcile_identity(ctx, &mut patched, Some(&name))?;
        // The stored version's resourceVersion stays in the patched object; it pins the
        // write (409 on a lost race) only when the patch itself names one. Otherwise a
        // concurrent writer makes this patch apply again to the newer object.
        if old.is_none() || !patch_pins_resource_version(pt, &doc) {
            set_meta(&mut patched, "resourceVersion", None);
        }
        Ok(patched)
    })
    .await?;
    let code = if created { StatusCode::CREATED } else { StatusCode::OK };
    respond_object(ctx, code, &served(&ctx.res, out))
}

/// DeleteOptions from the body and the query.
#[derive(Debug, Default)]
pub struct DeleteOpts {
    pub grace: Option<i64>,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry: bool,
}

fn delete_opts(ctx: &Ctx, body: &[u8]) -> ApiResult<DeleteOpts> {
    let mut o = DeleteOpts { dry: ctx.query.dry_run()?, ..Default::default() };
    if !body.is_empty() {
        let v: Value = negotiate::decode_body(&ctx.headers, body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {}", e.message)))?;
        o.grace = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        o.propagation = v.get("propagationPolicy").and_then(Value::as_str).map(str::to_string);
        if o.propagation.is_none()
            && let Some(orphan) = v.get("orphanDependents").and_then(Value::as_bool)
        {
            o.propagation = Some(if orphan { "Orphan" } else { "Background" }.into());
        }
        o.precondition_uid = v.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string);
        o.precondition_rv =
            v.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string);
        if v.get("dryRun").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
            o.dry = true;
        }
    }
    if let Some(g) = ctx.query.int("gracePeriodSeconds")? {
        o.grace = Some(g);
    }
    if let Some(p) = ctx.query.get("propagationPolicy").filter(|p| !p.is_empty()) {
        o.propagation = Some(p.to_string());
    }
    if o.propagation.is_none()
        && let Some(orphan) = ctx.query.get("orphanDependents")
    {
        o.propagation = Some(if orphan == "true" { "Orphan" } else { "Background" }.into());
    }
    if let Some(p) = &o.propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "DeleteOptions",
            "",
            &[crate::error::not_supported(
                "propagationPolicy",
                &json!(p),
                &["Foreground", "Background", "Orphan"],
            )],
        ));
    }
    if o.grace.is_some_and(|g| g < 0) {
        o.grace = Some(0);
    }
    Ok(o)
}

/// Deletes one object per the options; returns the response body and status code.
pub async fn delete_object(ctx: &Ctx, name: &str, opts: &DeleteOpts) -> ApiResult<(StatusCode, Value)> {
    let res = ctx.res.clone();
    let key = res.key(ctx.ns(), name);
    for _ in 0..MAX_RETRIES {
        let Some(kv) = ctx.api.store.get(&key).await? else {
            return Err(ApiError::not_found(&res.group, &res.plural, name));
        };
        let obj = served(&res, decode_stored(&kv)?);
        if let Some(uid) = &opts.precondition_uid
            && uid != meta::uid(&obj)
        {
            return Err(ApiError::conflict(
                &res.group,
                &res.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(&obj)
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && rv != meta::resource_version(&obj)
        {
            return Err(ApiError::conflict(
                &res.group,
                &res.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta::resource_version(&obj)
                ),
            ));
        }
        // Finalizers the garbage collector acts on, per the propagation policy.
        let mut finalizers: Vec<String> = meta::finalizers(&obj);
        let before = finalizers.clone();
        match opts.propagation.as_deref() {
            Some("Orphan") => {
                finalizers.retain(|f| f != "foregroundDeletion");
                if !finalizers.iter().any(|f| f == "orphan") {
                    finalizers.push("orphan".into());
                }
            }
            Some("Foreground") => {
                finalizers.retain(|f| f != "orphan");
                if !finalizers.iter().any(|f| f == "foregroundDeletion") {
                    finalizers.push("foregroundDeletion".into());
                }
            }
            Some("Background") => finalizers.retain(|f| f != "orphan" && f != "foregroundDeletion"),
            _ => {}
        }
        let grace = crate::builtin::graceful_deletion_period(&res, &obj, opts.grace);
        let blocked = !finalizers.is_empty()
            || grace > 0
            || (res.group.is_empty() && res.plural == "namespaces" && blocking_finalizers(&res, &obj) > 0);
        if blocked {
            let mut upd = obj.clone();
            let already = meta::is_deleting(&obj);
            let current_grace = obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
            let shorten = already && current_grace.is_some_and(|g| grace < g);
            if already && !shorten && finalizers == before {
                return Ok((StatusCode::OK, obj));
            }
            {
                let m = metadata_mut(&mut upd);
                if !already || shorten {
                    let when = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                    m.insert(
                        "deletionTimestamp".into(),
                        json!(when.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    );
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                if finalizers.is_empty() {
                    m.remove("finalizers");
                } else {
                    m.insert("finalizers".into(), json!(finalizers));
                }
            }
            crate::builtin::on_delete_requested(&res, &mut upd);
            if opts.dry {
                return Ok((StatusCode::OK, upd));
            }
            if !finalizers.is_empty() || grace > 0 || blocking_finalizers(&res, &upd) > 0 {
                match ctx.api.store.update(&key, to_storage(&res, &upd)?, kv.mod_revision).await {
                    Ok(kv) => {
                        meta::set_resource_version(&mut upd, kv.mod_revision);
                        let code = if opts.propagation.as_deref() == Some("Foreground") {
                            StatusCode::ACCEPTED
                        } else {
                            StatusCode::OK
                        };
                        return Ok((code, upd));
                    }
                    Err(store::Error::Conflict { .. }) | Err(store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if opts.dry {
            return Ok((StatusCode::OK, deleted_body(&res, &obj)));
        }
        match ctx.api.store.delete(&key, Some(kv.mod_revision)).await {
            Ok(_) => return Ok((StatusCode::OK, deleted_body(&res, &obj))),
            Err(store::Error::Conflict { .. }) => continue,
            Err(store::Error::NotFound { .. }) => {
                return Err(ApiError::not_found(&res.group, &res.plural, name));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(&res.group, &res.plural, name, "too many concurrent writes; try again"))
}

fn deleted_body(res: &Resource, obj: &Value) -> Value {
    if res.return_deleted_object {
        return obj.clone();
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": meta::name(obj), "group": res.group, "kind": res.plural, "uid": meta::uid(obj)},
    })
}

pub async fn delete(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_opts(ctx, body)?;
    let (code, out) = delete_object(ctx, ctx.name(), &opts).await?;
    if out.get("kind").and_then(Value::as_str) == Some("Status") {
        return Ok(negotiate::encode(code, &out, negotiate::Output::Json));
    }
    respond_object(ctx, code, &out)
}

pub async fn delete_collection(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_opts(ctx, body)?;
    let listed = super::read::list_objects(ctx).await?;
    let mut seen = BTreeSet::new();
    let mut deleted = Vec::new();
    for obj in &listed.items {
        let name = meta::name(obj).to_string();
        let ns = meta::namespace(obj).to_string();
        if !seen.insert((ns.clone(), name.clone())) {
            continue;
        }
        // All-namespace collections address each object in its own namespace.
        let mut sub_ctx = ctx.for_resource(ctx.res.clone(), &name, None);
        if ctx.res.namespaced {
            sub_ctx.path.namespace = Some(ns);
        }
        match delete_object(&sub_ctx, &name, &opts).await {
            Ok((_, o)) => deleted.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": ctx.res.list_kind,
        "apiVersion": ctx.res.api_version(),
        "metadata": {"resourceVersion": listed.rv.to_string()},
        "items": deleted.into_iter().filter(|o| o.get("kind").and_then(Value::as_str) != Some("Status")).collect::<Vec<_>>(),
    });
    Ok(negotiate::encode(StatusCode::OK, &body, negotiate::Output::Json))
}
