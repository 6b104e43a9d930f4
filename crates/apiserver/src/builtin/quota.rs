//! LimitRanger and ResourceQuota admission: container defaults and bounds from the
//! namespace's LimitRanges, and refusal of creates that would exceed a ResourceQuota
//! (whose `status.used` is charged atomically as part of admission).

use std::collections::BTreeMap;

use apimachinery::quantity::Quantity;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::handlers::Ctx;
use crate::meta;

/// A quantity of a decoded object (decoding stores every quantity as canonical text).
fn qty(v: Option<&Value>) -> Option<Quantity> {
    Quantity::parse(v?.as_str()?).ok()
}

async fn namespace_objects(ctx: &Ctx, prefix: &str) -> ApiResult<Vec<Value>> {
    let cache = ctx.api.caches.cache(prefix).await?;
    let (items, _) = cache.list(&format!("{prefix}{}/", ctx.ns()));
    Ok(items.iter().map(|o| (**o).clone()).collect())
}

/// Applies LimitRange container defaults to a new pod and checks min/max; returns the
/// annotation text Kubernetes records when it set defaults.
pub async fn limit_ranger(ctx: &Ctx, pod: &mut Value) -> ApiResult<()> {
    let ranges = namespace_objects(ctx, "/registry/core/limitranges/").await?;
    if ranges.is_empty() {
        return Ok(());
    }
    let mut notes = Vec::new();
    let mut errors = Vec::new();
    for lr in &ranges {
        for item in lr.pointer("/spec/limits").and_then(Value::as_array).into_iter().flatten() {
            if item.get("type").and_then(Value::as_str) != Some("Container") {
                continue;
            }
            let default = item.get("default").and_then(Value::as_object).cloned().unwrap_or_default();
            let mut default_request =
                item.get("defaultRequest").and_then(Value::as_object).cloned().unwrap_or_default();
            for (k, v) in &default {
                default_request.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for list in ["initContainers", "containers"] {
                let Some(cs) = pod.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut) else {
                    continue;
                };
                for c in cs.iter_mut() {
                    let cname = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                    let res = c.as_object_mut().map(|m| m.entry("resources").or_insert_with(|| json!({})));
                    let Some(res) = res else { continue };
                    for (field, defaults, word) in
                        [("limits", &default, "limit"), ("requests", &default_request, "request")]
                    {
                        let target = res.as_object_mut().map(|m| m.entry(field).or_insert_with(|| json!({})));
                        let Some(target) = target.and_then(Value::as_object_mut) else { continue };
                        let mut set = Vec::new();
                        for (k, v) in defaults {
                            if !target.contains_key(k) {
                                target.insert(k.clone(), v.clone());
                                set.push(k.clone());
                            }
                        }
                        for k in set {
                            notes.push(format!(
                                "{k} {word} for {} {cname}",
                                if list == "containers" { "container" } else { "init container" }
                            ));
                        }
                    }
                    if res.get("limits").and_then(Value::as_object).is_some_and(|m| m.is_empty())
                        && let Some(m) = res.as_object_mut()
                    {
                        m.remove("limits");
                    }
                    if res.get("requests").and_then(Value::as_object).is_some_and(|m| m.is_empty())
                        && let Some(m) = res.as_object_mut()
                    {
                        m.remove("requests");
                    }
                    for (k, min) in item.get("min").and_then(Value::as_object).into_iter().flatten() {
                        let req = qty(res.pointer(&format!("/requests/{k}")));
                        if let (Some(r), Some(m)) = (req, qty(Some(min)))
                            && r < m
                        {
                            errors.push(format!(
                                "minimum {k} usage per Container is {}, but request is {}",
                                min.as_str().unwrap_or(""),
                                r
                            ));
                        }
                    }
                    for (k, max) in item.get("max").and_then(Value::as_object).into_iter().flatten() {
                        let lim = qty(res.pointer(&format!("/limits/{k}")));
                        match (lim, qty(Some(max))) {
                            (Some(l), Some(m)) if l > m => errors.push(format!(
                                "maximum {k} usage per Container is {}, but limit is {}",
                                max.as_str().unwrap_or(""),
                                l
                            )),
                            (None, Some(_)) => errors.push(format!(
                                "maximum {k} usage per Container is {}.  No limit is specified",
                                max.as_str().unwrap_or("")
                            )),
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::forbidden(format!(
            "pods {:?} is forbidden: [{}]",
            meta::name(pod),
            errors.join(", ")
        )));
    }
    if !notes.is_empty() {
        let m = meta::metadata_mut(pod);
        let ann = m.entry("annotations").or_insert_with(|| json!({}));
        ann["kubernetes.io/limit-ranger"] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    }
    Ok(())
}

/// What creating `obj` adds to a namespace's quota usage.
pub fn usage(group: &str, plural: &str, obj: &Value) -> BTreeMap<String, Quantity> {
    let mut u = BTreeMap::new();
    let one = Quantity::from_units(1);
    let count_name =
        if group.is_empty() { format!("count/{plural}") } else { format!("count/{plural}.{group}") };
    u.insert(count_name, one);
    if group.is_empty()
        && let "pods"
        | "services"
        | "configmaps"
        | "secrets"
        | "persistentvolumeclaims"
        | "replicationcontrollers"
        | "resourcequotas" = plural
    {
        u.insert(plural.to_string(), one);
    }
    if group.is_empty() && plural == "pods" {
        let mut add = |k: &str, q: Quantity| {
            let e = u.entry(k.to_string()).or_insert(Quantity::ZERO);
            *e = *e + q;
        };
        for c in obj.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
            for (field, prefix) in [("requests", "requests."), ("limits", "limits.")] {
                for (k, v) in
                    c.pointer(&format!("/resources/{field}")).and_then(Value::as_object).into_iter().flatten()
                {
                    if let Some(q) = qty(Some(v)) {
                        add(&format!("{prefix}{k}"), q);
                        if field == "requests" && (k == "cpu" || k == "memory") {
                            add(k, q);
                        }
                    }
                }
            }
        }
    }
    if group.is_empty() && plural == "services" {
        let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
        if ty == "LoadBalancer" {
            u.insert("services.loadbalancers".into(), one);
        }
        let ports = obj.pointer("/spec/ports").and_then(Value::as_array).map(|a| a.len()).unwrap_or(0);
        if ty == "NodePort" || ty == "LoadBalancer" {
            u.insert("services.nodeports".into(), Quantity::from_units(ports as i128));
        }
    }
    if group.is_empty()
        && plural == "persistentvolumeclaims"
        && let Some(q) = qty(obj.pointer("/spec/resources/requests/storage"))
    {
        u.insert("requests.storage".into(), q);
    }
    u
}

/// One exceeded resource: name, requested, used, limit.
type Exceeded = (String, Quantity, Quantity, Quantity);

/// Charges a create against every ResourceQuota of the namespace, refusing it (403) when
/// any hard limit would be exceeded.
pub async fn charge(ctx: &Ctx, obj: &Value) -> ApiResult<()> {
    if !ctx.res.namespaced || ctx.query.dry_run().unwrap_or(false) {
        return Ok(());
    }
    let quotas = namespace_objects(ctx, "/registry/core/resourcequotas/").await?;
    if quotas.is_empty() {
        return Ok(());
    }
    let delta = usage(&ctx.res.group, &ctx.res.plural, obj);
    for q in quotas {
        let qname = meta::name(&q).to_string();
        let key = format!("/registry/core/resourcequotas/{}/{qname}", ctx.ns());
        for _ in 0..8 {
            let Some(kv) = ctx.api.store.get(&key).await? else { break };
            let mut quota: Value =
                serde_json::from_slice(&kv.value).map_err(|e| ApiError::internal(e.to_string()))?;
            let hard = quota.pointer("/spec/hard").and_then(Value::as_object).cloned().unwrap_or_default();
            let relevant: Vec<&String> = hard.keys().filter(|k| delta.contains_key(*k)).collect();
            if relevant.is_empty() {
                break;
            }
            let Some(used) = quota.pointer("/status/used").and_then(Value::as_object).cloned() else {
                return Err(ApiError::forbidden(format!(
                    "{} {:?} is forbidden: status unknown for quota: {qname}, resources: {}",
                    ctx.res.qualified(),
                    meta::name(obj),
                    relevant.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
                )));
            };
            let mut exceeded = Vec::new();
            let mut new_used = used.clone();
            for k in &relevant {
                let limit = qty(hard.get(*k)).unwrap_or_default();
                let cur = qty(used.get(*k)).unwrap_or_default();
                let add = delta.get(*k).copied().unwrap_or_default();
                if cur + add > limit {
                    exceeded.push((k.to_string(), add, cur, limit));
                }
                new_used.insert(k.to_string(), json!((cur + add).to_string()));
            }
            if !exceeded.is_empty() {
                let part =
                    |f: &dyn Fn(&Exceeded) -> String| exceeded.iter().map(f).collect::<Vec<_>>().join(",");
                return Err(ApiError::forbidden(format!(
                    "{} {:?} is forbidden: exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                    ctx.res.qualified(),
                    meta::name(obj),
                    part(&|e| format!("{}={}", e.0, e.1)),
                    part(&|e| format!("{}={}", e.0, e.2)),
                    part(&|e| format!("{}={}", e.0, e.3)),
                )));
            }
            quota["status"]["used"] = Value::Object(new_used);
            let bytes = serde_json::to_vec(&quota).map_err(|e| ApiError::internal(e.to_string()))?;
            match ctx.api.store.update(&key, bytes.into(), kv.mod_revision).await {
                Ok(_) => break,
                Err(store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_uses_its_count_and_its_containers_resources() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
            {"name": "b", "resources": {"requests": {"cpu": "200m"}}}]}});
        let u = usage("", "pods", &pod);
        assert_eq!(u["pods"], Quantity::from_units(1));
        assert_eq!(u["count/pods"], Quantity::from_units(1));
        assert_eq!(u["requests.cpu"].to_string(), "300m");
        assert_eq!(u["cpu"].to_string(), "300m");
        assert_eq!(u["limits.cpu"].to_string(), "1");
        assert_eq!(u["requests.memory"].to_string(), "64Mi");
        let d = usage("apps", "deployments", &json!({}));
        assert_eq!(d["count/deployments.apps"], Quantity::from_units(1));
    }
}
