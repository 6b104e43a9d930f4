//! Subresources with their own shapes: scale (autoscaling/v1 Scale), pods/binding and
//! pods/eviction.

use apimachinery::labels::Selector;
use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};

use super::Ctx;
use super::read::{load, served};
use super::write::{DeleteOpts, PatchType, UpdateOpts, apply_patch, delete_object, guaranteed_update};
use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::negotiate;

/// The Scale view of a workload.
fn scale_of(ctx: &Ctx, obj: &Value) -> ApiResult<Value> {
    let paths = ctx.res.scale.as_ref().ok_or_else(ApiError::path_not_found)?;
    let get_i = |p: &str| meta::path(obj, p).and_then(Value::as_i64).unwrap_or(0);
    let selector = if let Some(p) = &paths.label_selector {
        meta::path(obj, p.trim_start_matches('.')).and_then(Value::as_str).unwrap_or("").to_string()
    } else if let Some(p) = &paths.selector_object {
        match meta::path(obj, p) {
            // ReplicationControllers select with a plain map.
            Some(Value::Object(m))
                if !m.contains_key("matchLabels") && !m.contains_key("matchExpressions") =>
            {
                let set = m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect();
                Selector::from_set(&set).to_string()
            }
            Some(sel) => Selector::from_label_selector(sel).map(|s| s.to_string()).unwrap_or_default(),
            None => String::new(),
        }
    } else {
        String::new()
    };
    let mut m = json!({
        "name": meta::name(obj),
        "uid": meta::uid(obj),
        "resourceVersion": meta::resource_version(obj),
        "creationTimestamp": obj.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null),
    });
    if ctx.res.namespaced {
        m["namespace"] = json!(meta::namespace(obj));
    }
    let mut status = json!({"replicas": get_i(paths.status_replicas.trim_start_matches('.'))});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": m,
        "spec": {"replicas": get_i(paths.spec_replicas.trim_start_matches('.'))},
        "status": status,
    }))
}

fn set_replicas(ctx: &Ctx, obj: &mut Value, replicas: i64) -> ApiResult<()> {
    let paths = ctx.res.scale.as_ref().ok_or_else(ApiError::path_not_found)?;
    let mut cur = obj;
    let parts: Vec<&str> = paths.spec_replicas.trim_start_matches('.').split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur[*p] = json!(replicas);
        } else {
            if !cur.get(*p).is_some_and(Value::is_object) {
                cur[*p] = json!({});
            }
            cur = &mut cur[*p];
        }
    }
    Ok(())
}

pub async fn get_scale(ctx: &Ctx) -> ApiResult<Response> {
    let (obj, _) = load(ctx, ctx.name()).await?;
    let scale = scale_of(ctx, &served(&ctx.res, obj.clone()))?;
    Ok(negotiate::encode(StatusCode::OK, &scale, negotiate::Output::Json))
}

fn replicas_from(scale: &Value) -> ApiResult<i64> {
    let r = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
    if r < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            meta::name(scale),
            &[crate::error::FieldError::invalid("spec.replicas", r, "must be greater than or equal to 0")],
        ));
    }
    Ok(r)
}

async fn write_scale(ctx: &Ctx, f: impl Fn(&Value) -> ApiResult<Value>) -> ApiResult<Response> {
    let dry = ctx.query.dry_run()?;
    let opts = UpdateOpts { dry, create_if_missing: false, manager_operation: "Update" };
    let (out, _) = guaranteed_update(ctx, ctx.name(), opts, |old| {
        let old = old.ok_or_else(|| ApiError::not_found(&ctx.res.group, &ctx.res.plural, ctx.name()))?;
        let current = scale_of(ctx, old)?;
        let wanted = f(&current)?;
        let replicas = replicas_from(&wanted)?;
        let mut obj = old.clone();
        set_replicas(ctx, &mut obj, replicas)?;
        let rv = meta::resource_version(&wanted);
        meta::set_meta(&mut obj, "resourceVersion", (!rv.is_empty()).then(|| json!(rv)));
        Ok(obj)
    })
    .await?;
    let scale = scale_of(ctx, &served(&ctx.res, out.clone()))?;
    Ok(negotiate::encode(StatusCode::OK, &scale, negotiate::Output::Json))
}

pub async fn update_scale(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let wanted = negotiate::decode_body(&ctx.headers, body)?;
    write_scale(ctx, |_| Ok(wanted.clone())).await
}

pub async fn patch_scale(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let ct = ctx.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let pt = match ct.split(';').next().unwrap_or("").trim() {
        "application/json-patch+json" => PatchType::Json,
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => PatchType::Merge,
        _ => {
            return Err(ApiError::unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
            ));
        }
    };
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    write_scale(ctx, |current| apply_patch(ctx, pt, current, &patch)).await
}

/// POST pods/<name>/binding (or /bindings): assigns a pod to a node, once.
pub async fn binding(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let b = negotiate::decode_body(&ctx.headers, body)?;
    let pod_name = ctx.path.name.clone().unwrap_or_else(|| meta::name(&b).to_string());
    if ctx.path.name.is_some() && !meta::name(&b).is_empty() && meta::name(&b) != pod_name {
        return Err(ApiError::bad_request("the name of the binding does not match the pod on the URL"));
    }
    let node = b.pointer("/target/name").and_then(Value::as_str).unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            &pod_name,
            &[crate::error::FieldError::required("target.name", "")],
        ));
    }
    let pods = ctx.api.registry.get("", "v1", "pods").ok_or_else(ApiError::path_not_found)?;
    let pctx = ctx.for_resource(pods, &pod_name, Some("binding"));
    let dry = ctx.query.dry_run()?;
    let uid_pre = b.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string);
    let opts = UpdateOpts { dry, create_if_missing: false, manager_operation: "Update" };
    guaranteed_update(&pctx, &pod_name, opts, |old| {
        let old = old.ok_or_else(|| ApiError::not_found("", "pods", &pod_name))?;
        if let Some(uid) = &uid_pre
            && uid != meta::uid(old)
        {
            return Err(ApiError::conflict(
                "",
                "pods",
                &pod_name,
                "the UID in the binding does not match the pod",
            ));
        }
        if meta::is_deleting(old) {
            return Err(ApiError::conflict(
                "",
                "pods",
                &pod_name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        let current = old.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
        if !current.is_empty() {
            return Err(ApiError::conflict(
                "",
                "pods",
                &pod_name,
                &format!("pod {pod_name} is already assigned to node {current:?}"),
            ));
        }
        let mut pod = old.clone();
        pod["spec"]["nodeName"] = json!(node);
        if let Some(ann) = b.pointer("/metadata/annotations").and_then(Value::as_object) {
            let m = meta::metadata_mut(&mut pod);
            let a = m.entry("annotations").or_insert_with(|| json!({}));
            for (k, v) in ann {
                a[k] = v.clone();
            }
        }
        let conds = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conds: Vec<Value> = conds.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
        conds.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": meta::now_rfc3339()}));
        pod["status"]["conditions"] = json!(conds);
        Ok(pod)
    })
    .await?;
    let status =
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(negotiate::encode(StatusCode::CREATED, &status, negotiate::Output::Json))
}

fn too_many_requests(pdb: &Value) -> ApiError {
    let mut e = ApiError::new(
        429,
        "TooManyRequests",
        "Cannot evict pod as it would violate the pod's disruption budget.",
    );
    e.details = Some(json!({"causes": [{"reason": "DisruptionBudget",
        "message": format!("The disruption budget {} needs {} healthy pods and has {} currently",
            meta::name(pdb),
            pdb.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0),
            pdb.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0))}]}));
    e.retry_after = Some(10);
    e
}

/// Takes one disruption from a budget, atomically: refuses (429) when none is allowed or
/// the budget's status is stale, else decrements `disruptionsAllowed` and records the pod
/// in `disruptedPods` so concurrent evictions cannot both spend the same disruption.
async fn charge_budget(ctx: &Ctx, pdb_name: &str, pod: &str, dry: bool) -> ApiResult<()> {
    let key = format!("/registry/policy/poddisruptionbudgets/{}/{pdb_name}", ctx.ns());
    for _ in 0..8 {
        let Some(kv) = ctx.api.store.get(&key).await? else { return Ok(()) };
        let mut pdb: Value =
            serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(e.to_string()))?;
        let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
        let observed = pdb.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(0);
        let allowed = pdb.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
        if observed < generation || allowed < 1 {
            return Err(too_many_requests(&pdb));
        }
        if dry {
            return Ok(());
        }
        pdb["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if !pdb["status"]["disruptedPods"].is_object() {
            pdb["status"]["disruptedPods"] = json!({});
        }
        pdb["status"]["disruptedPods"][pod] = json!(meta::now_rfc3339());
        let bytes = serde_json::to_vec(&pdb).map_err(|e| ApiError::internal(e.to_string()))?;
        match ctx.api.store.update(&key, bytes.into(), kv.mod_revision).await {
            Ok(_) => return Ok(()),
            Err(store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(
        "policy",
        "poddisruptionbudgets",
        pdb_name,
        "too many concurrent evictions; try again",
    ))
}

/// Records on the pod why it goes away (condition DisruptionTarget, reason
/// EvictionByEvictionAPI), as Kubernetes does before an evicted pod is deleted.
async fn mark_disruption_target(ctx: &Ctx, pod: &str) -> ApiResult<()> {
    let key = ctx.res.key(ctx.ns(), pod);
    for _ in 0..8 {
        let Some(kv) = ctx.api.store.get(&key).await? else { return Ok(()) };
        let mut p: Value =
            serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(e.to_string()))?;
        let mut conds: Vec<Value> =
            p.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        conds.retain(|c| c["type"] != "DisruptionTarget");
        conds.push(json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting", "lastProbeTime": null, "lastTransitionTime": meta::now_rfc3339()}));
        p["status"]["conditions"] = json!(conds);
        let bytes = serde_json::to_vec(&p).map_err(|e| ApiError::internal(e.to_string()))?;
        match ctx.api.store.update(&key, bytes.into(), kv.mod_revision).await {
            Ok(_) => return Ok(()),
            Err(store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// POST pods/<name>/eviction: deletes a pod unless a PodDisruptionBudget forbids it.
pub async fn eviction(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let ev = if body.is_empty() { json!({}) } else { negotiate::decode_body(&ctx.headers, body)? };
    let name = ctx.name().to_string();
    let (pod, _) = load(ctx, &name).await?;
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
    let terminal = phase == "Succeeded" || phase == "Failed";
    let dry = ctx.query.dry_run()?;
    if !terminal && !meta::is_deleting(&pod) {
        let pdbs = ctx.api.caches.cache("/registry/policy/poddisruptionbudgets/").await?;
        let (all, _) = pdbs.list(&format!("/registry/policy/poddisruptionbudgets/{}/", ctx.ns()));
        let matching: Vec<_> = all
            .into_iter()
            .filter(|pdb| match pdb.pointer("/spec/selector") {
                Some(s) => Selector::from_label_selector(s)
                    .unwrap_or_else(|_| Selector::nothing())
                    .matches_object(&pod),
                None => false,
            })
            .collect();
        if matching.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(pdb) = matching.first() {
            charge_budget(ctx, meta::name(pdb), &name, dry).await?;
        }
    }
    let mut opts = DeleteOpts { dry, ..Default::default() };
    if let Some(d) = ev.get("deleteOptions") {
        opts.grace = d.get("gracePeriodSeconds").and_then(Value::as_i64);
        opts.precondition_uid = d.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string);
        opts.precondition_rv =
            d.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string);
    }
    if !dry && !terminal {
        mark_disruption_target(ctx, &name).await?;
    }
    let pctx = ctx.for_resource(ctx.res.clone(), &name, None);
    delete_object(&pctx, &name, &opts).await?;
    let status =
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(negotiate::encode(StatusCode::CREATED, &status, negotiate::Output::Json))
}
