//! Built-in admission: what Kubernetes' admission plugins add to or check on writes
//! (Service IPs and node ports, pod service accounts, default tolerations, priority).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, FieldError};
use crate::handlers::Ctx;
use crate::meta;

/// Mutating admission, run after defaults and before validation. `old` is set on updates.
pub async fn mutate(ctx: &Ctx, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let res = &ctx.res;
    if !res.group.is_empty() || ctx.path.subresource.is_some() {
        return Ok(());
    }
    match res.plural.as_str() {
        "services" => allocate_service(ctx, obj, old).await,
        "pods" if old.is_none() => {
            pod_admission(ctx, obj).await?;
            super::quota::limit_ranger(ctx, obj).await
        }
        "persistentvolumeclaims" if old.is_none() => default_storage_class(ctx, obj).await,
        "nodes" if old.is_none() => {
            taint_new_node(obj);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Validating admission, run after validation: quota is charged for new objects.
pub async fn validate(ctx: &Ctx, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
    if old.is_none() && ctx.path.subresource.is_none() {
        super::quota::charge(ctx, obj).await?;
    }
    Ok(())
}

/// DefaultStorageClass: a claim that names no class gets the default one (the class
/// annotated `storageclass.kubernetes.io/is-default-class: "true"`, newest first).
async fn default_storage_class(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    if obj.pointer("/spec/storageClassName").is_some() {
        return Ok(());
    }
    let cache = ctx.api.caches.cache("/registry/storage.k8s.io/storageclasses/").await?;
    let (classes, _) = cache.list("/registry/storage.k8s.io/storageclasses/");
    let mut defaults: Vec<&Value> = classes
        .iter()
        .map(|c| &**c)
        .filter(|c| {
            let a = c.pointer("/metadata/annotations");
            let v = |k: &str| a.and_then(|a| a.get(k)).and_then(Value::as_str) == Some("true");
            v("storageclass.kubernetes.io/is-default-class")
                || v("storageclass.beta.kubernetes.io/is-default-class")
        })
        .collect();
    defaults.sort_by(|a, b| {
        let t = |v: &Value| {
            v.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("").to_string()
        };
        t(b).cmp(&t(a)).then_with(|| meta::name(a).cmp(meta::name(b)))
    });
    if let Some(c) = defaults.first() {
        obj["spec"]["storageClassName"] = json!(meta::name(c));
    }
    Ok(())
}

/// TaintNodesByCondition: a new node is not-ready (NoSchedule) until its status says so.
fn taint_new_node(obj: &mut Value) {
    let ready = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    if ready {
        return;
    }
    let taints = obj["spec"].as_object_mut().map(|m| m.entry("taints").or_insert_with(|| json!([])));
    if let Some(ts) = taints.and_then(Value::as_array_mut)
        && !ts.iter().any(|t| t["key"] == "node.kubernetes.io/not-ready" && t["effect"] == "NoSchedule")
    {
        ts.push(json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}));
    }
}

/// Parses `a.b.c.d/n` into (network, size).
pub fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (ip, bits) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    if !(1..=30).contains(&bits) {
        return None;
    }
    let size = 1u32 << (32 - bits);
    Some((u32::from(ip) & !(size - 1), size))
}

async fn used_by_services(ctx: &Ctx) -> ApiResult<(HashSet<String>, HashSet<i64>)> {
    let cache = ctx.api.caches.cache(&ctx.res.storage.prefix).await?;
    let (all, _) = cache.list(&ctx.res.storage.prefix);
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for s in all {
        if let Some(ip) = s.pointer("/spec/clusterIP").and_then(Value::as_str) {
            ips.insert(ip.to_string());
        }
        for p in s.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
                ports.insert(n);
            }
        }
    }
    Ok((ips, ports))
}

async fn allocate_service(ctx: &Ctx, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    let _guard = ctx.api.allocation.lock().await;
    let (mut used_ips, mut used_ports) = used_by_services(ctx).await?;
    {
        let recent = ctx.api.recent_allocations.lock().unwrap_or_else(|e| e.into_inner());
        used_ips.extend(recent.ips());
        used_ports.extend(recent.ports());
    }
    let old_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).and_then(Value::as_str).map(str::to_string);
    if let Some(ip) = &old_ip {
        used_ips.remove(ip);
    }
    if let Some(o) = old {
        for p in o.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
                used_ports.remove(&n);
            }
        }
    }
    let spec = obj.get_mut("spec").and_then(Value::as_object_mut);
    let Some(spec) = spec else { return Ok(()) };
    let mut errs = Vec::new();
    if ty == "ExternalName" {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
        return Ok(());
    }
    let requested = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    let ip = if requested.is_empty() {
        match old_ip {
            Some(ip) if !ip.is_empty() => ip,
            _ => {
                let (net, size) = parse_cidr(&ctx.api.config.service_cidr)
                    .ok_or_else(|| ApiError::internal("the service CIDR is not valid"))?;
                let mut picked = None;
                let start = rand::random::<u32>() % (size - 2);
                for i in 0..size - 2 {
                    let cand = Ipv4Addr::from(net + 1 + (start + i) % (size - 2)).to_string();
                    if !used_ips.contains(&cand) {
                        picked = Some(cand);
                        break;
                    }
                }
                picked.ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))?
            }
        }
    } else if requested == "None" {
        requested
    } else {
        let in_range = match (requested.parse::<Ipv4Addr>(), parse_cidr(&ctx.api.config.service_cidr)) {
            (Ok(a), Some((net, size))) => {
                let n = u32::from(a);
                n > net && n < net + size - 1
            }
            _ => false,
        };
        if !in_range {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                json!([requested]),
                format!(
                    "failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}",
                    ctx.api.config.service_cidr
                ),
            ));
        } else if used_ips.contains(&requested) && old_ip.as_deref() != Some(requested.as_str()) {
            errs.push(FieldError::invalid(
                "spec.clusterIPs",
                json!([requested]),
                format!("failed to allocate IP {requested}: provided IP is already allocated"),
            ));
        }
        requested
    };
    spec.insert("clusterIP".into(), json!(ip));
    spec.insert("clusterIPs".into(), json!([ip]));
    if ip != "None" || spec.get("ipFamilies").is_none() {
        spec.insert("ipFamilies".into(), json!(["IPv4"]));
    }
    spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
    let wants_node_ports = ty == "NodePort"
        || (ty == "LoadBalancer"
            && spec.get("allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false));
    let (lo, hi) = ctx.api.config.node_port_range;
    let old_ports: Vec<Value> =
        old.and_then(|o| o.pointer("/spec/ports")).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut allocated = Vec::new();
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for (i, p) in ports.iter_mut().enumerate() {
            if !wants_node_ports {
                continue;
            }
            let port_num = p.get("port").cloned();
            let requested = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
            if requested != 0 {
                if requested < lo as i64 || requested > hi as i64 {
                    errs.push(FieldError::invalid(
                        format!("spec.ports[{i}].nodePort"),
                        requested,
                        format!(
                            "provided port is not in the valid range. The range of valid ports is {lo}-{hi}"
                        ),
                    ));
                } else if used_ports.contains(&requested) {
                    errs.push(FieldError::invalid(
                        format!("spec.ports[{i}].nodePort"),
                        requested,
                        "provided port is already allocated",
                    ));
                }
                used_ports.insert(requested);
                allocated.push(requested);
                continue;
            }
            // Keep the port an update did not ask to change.
            let kept = old_ports
                .iter()
                .find(|op| op.get("port") == port_num.as_ref())
                .and_then(|op| op.get("nodePort"))
                .and_then(Value::as_i64);
            let n = match kept {
                Some(k) => k,
                None => {
                    let span = (hi - lo + 1) as i64;
                    let start = rand::random::<u32>() as i64 % span;
                    let found =
                        (0..span).map(|k| lo as i64 + (start + k) % span).find(|c| !used_ports.contains(c));
                    match found {
                        Some(n) => n,
                        None => {
                            return Err(ApiError::internal("failed to allocate a nodePort: range is full"));
                        }
                    }
                }
            };
            used_ports.insert(n);
            allocated.push(n);
            p["nodePort"] = json!(n);
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid("", "Service", meta::name(obj), &errs));
    }
    ctx.api.recent_allocations.lock().unwrap_or_else(|e| e.into_inner()).remember(&ip, &allocated);
    Ok(())
}

/// IPs and ports handed out in the last moments, not yet visible in the cache.
#[derive(Default)]
pub struct RecentAllocations {
    entries: Vec<(std::time::Instant, String, Vec<i64>)>,
}

impl RecentAllocations {
    fn prune(&mut self) {
        let cutoff = std::time::Instant::now() - std::time::Duration::from_secs(30);
        self.entries.retain(|(t, _, _)| *t > cutoff);
    }

    pub fn remember(&mut self, ip: &str, ports: &[i64]) {
        self.prune();
        self.entries.push((std::time::Instant::now(), ip.to_string(), ports.to_vec()));
    }

    fn ips(&self) -> Vec<String> {
        self.entries.iter().map(|(_, ip, _)| ip.clone()).collect()
    }

    fn ports(&self) -> Vec<i64> {
        self.entries.iter().flat_map(|(_, _, p)| p.iter().copied()).collect()
    }
}

fn random_suffix() -> String {
    apimachinery::validation::generate_name("")
}

/// The service account `name` of the request's namespace, read from storage. The
/// `default` account is looked for a few times over a second or two, since its
/// controller creates it just after the namespace (as kube-apiserver's admission does).
async fn service_account(ctx: &Ctx, name: &str) -> ApiResult<Option<Value>> {
    let res = ctx.api.registry.get("", "v1", "serviceaccounts").ok_or_else(ApiError::path_not_found)?;
    let key = res.key(ctx.ns(), name);
    let attempts = if name == "default" { 10 } else { 1 };
    for attempt in 0..attempts {
        if attempt > 0 {
            let pause = 100 + rand::random::<u64>() % 100;
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        }
        if let Some(kv) = ctx.api.store.get(&key).await? {
            return crate::handlers::read::decode_stored(&kv).map(Some);
        }
    }
    Ok(None)
}

/// ServiceAccount, DefaultTolerationSeconds and Priority admission for new pods.
async fn pod_admission(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    let pod_name = match crate::meta::name(obj) {
        "" => obj.pointer("/metadata/generateName").and_then(Value::as_str).unwrap_or("").to_owned(),
        n => n.to_owned(),
    };
    // Mirror pods (a node's static pods) are the node's business, not an account's.
    let mirror = obj.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    if !mirror {
        service_account_admission(ctx, spec, &pod_name).await?;
    }
    // DefaultTolerationSeconds: tolerate a not-ready or unreachable node for 5 minutes.
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Some(ts) = tolerations.as_array_mut() {
        for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
            let covered = ts.iter().any(|t| {
                let k = t.get("key").and_then(Value::as_str);
                let e = t.get("effect").and_then(Value::as_str);
                let op_exists = t.get("operator").and_then(Value::as_str) == Some("Exists");
                (k == Some(key) || (k.is_none() && op_exists)) && (e.is_none() || e == Some("NoExecute"))
            });
            if !covered {
                ts.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
    // Priority: from the PriorityClass, else 0.
    let class = spec.get("priorityClassName").and_then(Value::as_str).unwrap_or("").to_string();
    let mut priority = 0i64;
    let mut preemption = "PreemptLowerPriority".to_string();
    if !class.is_empty() {
        if let Ok(Some(kv)) =
            ctx.api.store.get(&format!("/registry/scheduling.k8s.io/priorityclasses/{class}")).await
        {
            if let Ok(pc) = serde_json::from_slice::<Value>(&kv.value) {
                priority = pc.get("value").and_then(Value::as_i64).unwrap_or(0);
                if let Some(p) = pc.get("preemptionPolicy").and_then(Value::as_str) {
                    preemption = p.to_string();
                }
            }
        } else if class == "system-node-critical" {
            priority = 2_000_001_000;
        } else if class == "system-cluster-critical" {
            priority = 2_000_000_000;
        }
    }
    spec.entry("priority").or_insert(json!(priority));
    spec.entry("preemptionPolicy").or_insert(json!(preemption));
    Ok(())
}

/// ServiceAccount admission: the `default` account unless one is named, which must
/// exist, and its token projected into every container unless the pod or its account
/// opts out.
async fn service_account_admission(
    ctx: &Ctx,
    spec: &mut serde_json::Map<String, Value>,
    pod_name: &str,
) -> ApiResult<()> {
    // ServiceAccount: the `default` account, which must exist, and its token projected
    // into containers.
    let sa = spec.get("serviceAccountName").and_then(Value::as_str).unwrap_or("").to_string();
    let sa = if sa.is_empty() { "default".to_string() } else { sa };
    spec.insert("serviceAccountName".into(), json!(sa));
    spec.insert("serviceAccount".into(), json!(sa));
    let Some(account) = service_account(ctx, &sa).await? else {
        return Err(ApiError::forbidden(format!(
            "pods {pod_name:?} is forbidden: error looking up service account {}/{sa}: serviceaccount {sa:?} not found",
            ctx.ns()
        ))
        .with_details(json!({"name": pod_name, "kind": "pods"})));
    };
    // The pod's own setting wins; else its account's (an account that opts out of
    // automounting keeps its pods free of the token).
    let automount = match spec.get("automountServiceAccountToken").and_then(Value::as_bool) {
        Some(on) => on,
        None => account.get("automountServiceAccountToken").and_then(Value::as_bool) != Some(false),
    };
    let has_mount = |c: &Value| {
        c.get("volumeMounts").and_then(Value::as_array).is_some_and(|ms| {
            ms.iter().any(|m| {
                m.get("mountPath").and_then(Value::as_str)
                    == Some("/var/run/secrets/kubernetes.io/serviceaccount")
            })
        })
    };
    if automount {
        let vol_name = format!("kube-api-access-{}", random_suffix());
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(vs) = volumes.as_array_mut() {
            vs.push(json!({
                "name": vol_name,
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                    ],
                },
            }));
        }
        for list in ["initContainers", "containers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs {
                    if has_mount(c) {
                        continue;
                    }
                    if let Some(m) = c.as_object_mut() {
                        let mounts = m.entry("volumeMounts").or_insert_with(|| json!([]));
                        if let Some(ms) = mounts.as_array_mut() {
                            ms.push(json!({"name": vol_name, "readOnly": true,
                                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_to_network_and_size() {
        assert_eq!(parse_cidr("10.43.0.0/16"), Some((u32::from(Ipv4Addr::new(10, 43, 0, 0)), 65536)));
        assert_eq!(parse_cidr("10.43.1.7/24"), Some((u32::from(Ipv4Addr::new(10, 43, 1, 0)), 256)));
        assert_eq!(parse_cidr("nope"), None);
    }
}
