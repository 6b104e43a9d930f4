//! Quota usage: what each object charges against a ResourceQuota and which objects a
//! quota's scopes select (the evaluators of upstream `pkg/quota/v1/evaluator/core` and
//! `quota.CalculateUsage`).
//!
//! Everything here is a pure function of the objects passed in, so the same code serves
//! the quota controller (recomputing `status.used`) and quota admission in the API server
//! (charging the object being created: [`object_usage`] masked by [`tracked_names`] of a
//! quota whose [`matches_scopes`] accepts the object).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, Pod, ResourceQuotaSpec, Service};

use super::quantity::{Quantity, ResourceList, add_into, max_of, parse_list};

/// The scope names of `spec.scopes` and `spec.scopeSelector`.
pub mod scope {
    pub const TERMINATING: &str = "Terminating";
    pub const NOT_TERMINATING: &str = "NotTerminating";
    pub const BEST_EFFORT: &str = "BestEffort";
    pub const NOT_BEST_EFFORT: &str = "NotBestEffort";
    pub const PRIORITY_CLASS: &str = "PriorityClass";
    pub const CROSS_NAMESPACE_POD_AFFINITY: &str = "CrossNamespacePodAffinity";
}

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// A namespaced object that a quota can charge for.
#[derive(Clone, Copy, Debug)]
pub enum Object<'a> {
    Pod(&'a Pod),
    Service(&'a Service),
    Claim(&'a PersistentVolumeClaim),
    /// Any other object, charged only to its object count: `resource` is the plural
    /// (`configmaps`) and `group` the API group (empty for core).
    Other {
        resource: &'a str,
        group: &'a str,
    },
}

/// The evaluator that charges a resource name: pods, services, claims or object counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Evaluator {
    Pods,
    Services,
    Claims,
    /// `count/<resource>[.<group>]` and the legacy names of ConfigMaps, Secrets,
    /// ReplicationControllers and ResourceQuotas.
    Count,
}

fn evaluator_of(name: &str) -> Option<Evaluator> {
    match name {
        "pods"
        | "count/pods"
        | "cpu"
        | "memory"
        | "ephemeral-storage"
        | "requests.cpu"
        | "requests.memory"
        | "requests.ephemeral-storage"
        | "limits.cpu"
        | "limits.memory"
        | "limits.ephemeral-storage" => Some(Evaluator::Pods),
        "services" | "count/services" | "services.nodeports" | "services.loadbalancers" => {
            Some(Evaluator::Services)
        }
        "persistentvolumeclaims" | "count/persistentvolumeclaims" | "requests.storage" => {
            Some(Evaluator::Claims)
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => Some(Evaluator::Count),
        n if n.starts_with("hugepages-") || n.starts_with("requests.hugepages-") => Some(Evaluator::Pods),
        n if n.contains(STORAGE_CLASS_SUFFIX)
            && (n.ends_with("/requests.storage") || n.ends_with("/persistentvolumeclaims")) =>
        {
            Some(Evaluator::Claims)
        }
        n if n.starts_with("count/") => Some(Evaluator::Count),
        n if n.strip_prefix("requests.").is_some_and(is_extended_resource) => Some(Evaluator::Pods),
        _ => None,
    }
}

/// An extended resource (`example.com/gpu`): namespaced by a domain that is not Kubernetes'.
fn is_extended_resource(name: &str) -> bool {
    match name.split_once('/') {
        Some((domain, _)) => {
            domain != "kubernetes.io" && !domain.ends_with(".kubernetes.io") && !name.starts_with("requests.")
        }
        None => false,
    }
}

/// The object-count resource name of a plural and group: `count/configmaps`,
/// `count/deployments.apps`.
pub fn count_name(resource: &str, group: &str) -> String {
    if group.is_empty() { format!("count/{resource}") } else { format!("count/{resource}.{group}") }
}

/// Parses `count/<resource>[.<group>]` into (plural, group).
pub fn parse_count_name(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix("count/")?;
    Some(match rest.split_once('.') {
        Some((r, g)) => (r.to_string(), g.to_string()),
        None => (rest.to_string(), String::new()),
    })
}

/// The names of `hard` that quota can track, given whether a `count/...` name names a
/// resource that exists (`countable`): names no evaluator knows are left out, so they never
/// appear in `status.used`.
pub fn tracked_names<'h>(
    hard: impl IntoIterator<Item = &'h String>,
    countable: &dyn Fn(&str) -> bool,
) -> BTreeSet<String> {
    hard.into_iter()
        .filter(|n| match evaluator_of(n) {
            Some(Evaluator::Count) if n.starts_with("count/") => countable(n),
            Some(_) => true,
            None => false,
        })
        .cloned()
        .collect()
}

/// Whether a pod still consumes compute quota: not terminal, and not past the end of its
/// deletion grace period (`QuotaV1Pod`).
pub fn pod_is_charged(pod: &Pod, now: jiff::Timestamp) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    if phase == "Succeeded" || phase == "Failed" {
        return false;
    }
    if let (Some(ts), Some(grace)) =
        (&pod.metadata.deletion_timestamp, pod.metadata.deletion_grace_period_seconds)
        && now > ts.0 + jiff::SignedDuration::from_secs(grace)
    {
        return false;
    }
    true
}

fn container_list(c: &Container, limits: bool) -> ResourceList {
    let r = c.resources.as_ref();
    parse_list(if limits { r.and_then(|r| r.limits.as_ref()) } else { r.and_then(|r| r.requests.as_ref()) })
}

/// The effective requests (`limits == false`) or limits of a pod (`resourcehelper.PodRequests`
/// and `PodLimits`): the sum over app containers and restartable (sidecar) init containers,
/// at least the largest single init container plus the sidecars started before it, plus
/// the pod overhead.
pub fn pod_resources(pod: &Pod, limits: bool) -> ResourceList {
    let Some(spec) = &pod.spec else { return ResourceList::new() };
    let mut total = ResourceList::new();
    for c in &spec.containers {
        add_into(&mut total, &container_list(c, limits));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in spec.init_containers.iter().flatten() {
        let own = container_list(c, limits);
        let effective = if c.restart_policy.as_deref() == Some("Always") {
            add_into(&mut total, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut e = own;
            add_into(&mut e, &sidecars);
            e
        };
        init_max = max_of(&init_max, &effective);
    }
    let mut out = max_of(&total, &init_max);
    if let Some(overhead) = &spec.overhead {
        add_into(&mut out, &parse_list(Some(overhead)));
    }
    out
}

/// The pod's QoS class: `status.qosClass` when set, else computed (`GetPodQOS`); only
/// whether it is BestEffort matters for quota.
pub fn is_best_effort(pod: &Pod) -> bool {
    if let Some(q) = pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        return q == "BestEffort";
    }
    let Some(spec) = &pod.spec else { return true };
    let all = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for c in all {
        for limits in [false, true] {
            let list = container_list(c, limits);
            for name in ["cpu", "memory"] {
                if list.get(name).is_some_and(|q| *q > Quantity::ZERO) {
                    return false;
                }
            }
        }
    }
    true
}

fn is_terminating(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.active_deadline_seconds).is_some_and(|d| d >= 0)
}

fn uses_cross_namespace_affinity(pod: &Pod) -> bool {
    let Some(aff) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else { return false };
    let crosses = |ns: Option<&Vec<String>>, sel: bool| sel || ns.is_some_and(|n| !n.is_empty());
    let mut terms = Vec::new();
    for (req, pref) in [
        aff.pod_affinity.as_ref().map(|a| {
            (
                &a.required_during_scheduling_ignored_during_execution,
                &a.preferred_during_scheduling_ignored_during_execution,
            )
        }),
        aff.pod_anti_affinity.as_ref().map(|a| {
            (
                &a.required_during_scheduling_ignored_during_execution,
                &a.preferred_during_scheduling_ignored_during_execution,
            )
        }),
    ]
    .into_iter()
    .flatten()
    {
        terms.extend(req.iter().flatten().map(|t| (t.namespaces.as_ref(), t.namespace_selector.is_some())));
        terms.extend(pref.iter().flatten().map(|w| {
            (w.pod_affinity_term.namespaces.as_ref(), w.pod_affinity_term.namespace_selector.is_some())
        }));
    }
    terms.into_iter().any(|(ns, sel)| crosses(ns, sel))
}

/// Whether one scope requirement selects the pod (`podMatchesScopeFunc`). `operator` and
/// `values` matter only for PriorityClass.
pub fn pod_matches_scope(pod: &Pod, scope_name: &str, operator: &str, values: &[String]) -> bool {
    match scope_name {
        scope::TERMINATING => is_terminating(pod),
        scope::NOT_TERMINATING => !is_terminating(pod),
        scope::BEST_EFFORT => is_best_effort(pod),
        scope::NOT_BEST_EFFORT => !is_best_effort(pod),
        scope::CROSS_NAMESPACE_POD_AFFINITY => uses_cross_namespace_affinity(pod),
        scope::PRIORITY_CLASS => {
            let class = pod.spec.as_ref().and_then(|s| s.priority_class_name.as_deref()).unwrap_or("");
            // The pod's labels for this selector: {PriorityClass: name}, or none without a class.
            match operator {
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                "In" => !class.is_empty() && values.iter().any(|v| v == class),
                "NotIn" => class.is_empty() || !values.iter().any(|v| v == class),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether a quota's `spec.scopes` and `spec.scopeSelector` select an object. Only pods
/// can match a scope: any scope or scope selector excludes every other kind.
pub fn matches_scopes(spec: &ResourceQuotaSpec, obj: &Object<'_>) -> bool {
    let scopes = spec.scopes.as_deref().unwrap_or(&[]);
    let exprs = spec.scope_selector.as_ref().and_then(|s| s.match_expressions.as_deref()).unwrap_or(&[]);
    if scopes.is_empty() && exprs.is_empty() {
        return true;
    }
    let Object::Pod(pod) = obj else { return false };
    scopes.iter().all(|s| pod_matches_scope(pod, s, "Exists", &[]))
        && exprs
            .iter()
            .all(|e| pod_matches_scope(pod, &e.scope_name, &e.operator, e.values.as_deref().unwrap_or(&[])))
}

/// What one object charges, by resource name (before masking to a quota's hard names).
pub fn object_usage(obj: &Object<'_>, now: jiff::Timestamp) -> ResourceList {
    let one = Quantity::from_units(1);
    let mut out = ResourceList::new();
    match obj {
        Object::Pod(pod) => {
            // The object count covers every pod in storage; `pods` and compute only live ones.
            out.insert("count/pods".into(), one);
            if !pod_is_charged(pod, now) {
                return out;
            }
            out.insert("pods".into(), one);
            let requests = pod_resources(pod, false);
            let limits = pod_resources(pod, true);
            for name in ["cpu", "memory", "ephemeral-storage"] {
                if let Some(q) = requests.get(name) {
                    out.insert(name.into(), *q);
                    out.insert(format!("requests.{name}"), *q);
                }
                if let Some(q) = limits.get(name) {
                    out.insert(format!("limits.{name}"), *q);
                }
            }
            for (name, q) in &requests {
                if name.starts_with("hugepages-") {
                    out.insert(name.clone(), *q);
                    out.insert(format!("requests.{name}"), *q);
                } else if is_extended_resource(name) {
                    out.insert(format!("requests.{name}"), *q);
                }
            }
        }
        Object::Service(svc) => {
            out.insert("services".into(), one);
            out.insert("count/services".into(), one);
            let spec = svc.spec.as_ref();
            let ports = spec.and_then(|s| s.ports.as_ref()).map(Vec::len).unwrap_or(0) as i64;
            match spec.and_then(|s| s.type_.as_deref()) {
                Some("NodePort") => {
                    out.insert("services.nodeports".into(), Quantity::from_units(ports.into()));
                }
                Some("LoadBalancer") => {
                    let allocate = spec.and_then(|s| s.allocate_load_balancer_node_ports).unwrap_or(true);
                    let n = if allocate {
                        ports
                    } else {
                        // Without allocation only explicitly requested node ports count.
                        spec.and_then(|s| s.ports.as_ref())
                            .map(|p| p.iter().filter(|p| p.node_port.is_some_and(|n| n != 0)).count() as i64)
                            .unwrap_or(0)
                    };
                    out.insert("services.nodeports".into(), Quantity::from_units(n.into()));
                    out.insert("services.loadbalancers".into(), one);
                }
                _ => {}
            }
        }
        Object::Claim(pvc) => {
            out.insert("persistentvolumeclaims".into(), one);
            out.insert("count/persistentvolumeclaims".into(), one);
            let class = claim_class(pvc);
            if !class.is_empty() {
                out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"), one);
            }
            if let Some(storage) = claim_storage(pvc) {
                out.insert("requests.storage".into(), storage);
                if !class.is_empty() {
                    out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), storage);
                }
            }
        }
        Object::Other { resource, group } => {
            out.insert(count_name(resource, group), one);
            if group.is_empty()
                && matches!(*resource, "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas")
            {
                out.insert(resource.to_string(), one);
            }
        }
    }
    out
}

/// The storage class a claim asks for: the beta annotation, else `spec.storageClassName`.
pub fn claim_class(pvc: &PersistentVolumeClaim) -> String {
    if let Some(c) =
        pvc.metadata.annotations.as_ref().and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
    {
        return c.clone();
    }
    pvc.spec.as_ref().and_then(|s| s.storage_class_name.clone()).unwrap_or_default()
}

/// The storage a claim charges: its request, or what was allocated when that is larger,
/// rounded up to whole bytes.
fn claim_storage(pvc: &PersistentVolumeClaim) -> Option<Quantity> {
    let requested = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok());
    let allocated = pvc
        .status
        .as_ref()
        .and_then(|s| s.allocated_resources.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok());
    let chosen = match (requested, allocated) {
        (Some(r), Some(a)) if a > r => Some(a),
        (Some(r), _) => Some(r),
        (None, a) => a,
    };
    chosen.map(Quantity::round_up_to_units)
}

/// The usage of a quota over `objects` (every object of its namespace that any tracked
/// name may charge): for each name of `spec.hard` that [`tracked_names`] keeps, the sum of
/// what the objects its scopes select charge, zero when nothing does. This is the
/// `status.used` the quota controller writes.
pub fn usage<'a>(
    spec: &ResourceQuotaSpec,
    objects: impl IntoIterator<Item = Object<'a>>,
    countable: &dyn Fn(&str) -> bool,
    now: jiff::Timestamp,
) -> ResourceList {
    let hard = parse_list(spec.hard.as_ref());
    let tracked = tracked_names(hard.keys(), countable);
    let mut used: ResourceList = tracked.iter().map(|n| (n.clone(), Quantity::ZERO)).collect();
    if tracked.is_empty() {
        return used;
    }
    for obj in objects {
        if !matches_scopes(spec, &obj) {
            continue;
        }
        for (name, q) in object_usage(&obj, now) {
            if let Some(cur) = used.get_mut(&name) {
                *cur = *cur + q;
            }
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PodSpec, PodStatus, ResourceRequirements, ScopeSelector,
        ScopedResourceSelectorRequirement, ServicePort, ServiceSpec, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Wire;
    use std::collections::BTreeMap;

    fn list(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Wire>> {
        Some(pairs.iter().map(|(k, v)| (k.to_string(), Wire(v.to_string()))).collect())
    }

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>) -> Pod {
        Pod { spec: Some(PodSpec { containers, ..Default::default() }), ..Default::default() }
    }

    fn spec(hard: &[(&str, &str)]) -> ResourceQuotaSpec {
        ResourceQuotaSpec { hard: list(hard), ..Default::default() }
    }

    fn shown(l: &ResourceList) -> Vec<(String, String)> {
        l.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
    }

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::UNIX_EPOCH
    }

    #[test]
    fn pods_charge_requests_and_limits_summed_over_containers() {
        let p = pod(vec![
            container(&[("cpu", "250m"), ("memory", "64Mi")], &[("cpu", "500m"), ("memory", "128Mi")]),
            container(&[("cpu", "250m"), ("memory", "64Mi")], &[("cpu", "1"), ("memory", "128Mi")]),
        ]);
        let s = spec(&[
            ("pods", "10"),
            ("requests.cpu", "4"),
            ("requests.memory", "1Gi"),
            ("limits.cpu", "8"),
            ("limits.memory", "2Gi"),
            ("cpu", "4"),
        ]);
        let used = usage(&s, [Object::Pod(&p), Object::Pod(&p)], &|_| true, now());
        assert_eq!(
            shown(&used),
            [
                ("cpu", "1"),
                ("limits.cpu", "3"),
                ("limits.memory", "512Mi"),
                ("pods", "2"),
                ("requests.cpu", "1"),
                ("requests.memory", "256Mi"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn init_containers_raise_requests_to_their_peak_and_sidecars_add_up() {
        let mut p = pod(vec![container(&[("cpu", "100m")], &[])]);
        let spec = p.spec.as_mut().unwrap();
        spec.init_containers = Some(vec![container(&[("cpu", "500m")], &[]), {
            let mut s = container(&[("cpu", "50m")], &[]);
            s.restart_policy = Some("Always".into());
            s
        }]);
        // max(app 100m + sidecar 50m, init 500m) = 500m.
        assert_eq!(pod_resources(&p, false)["cpu"].to_string(), "500m");
        p.spec.as_mut().unwrap().init_containers.as_mut().unwrap().reverse();
        // Sidecar first: the init container runs beside it: max(150m, 550m).
        assert_eq!(pod_resources(&p, false)["cpu"].to_string(), "550m");
    }

    #[test]
    fn terminal_pods_only_count_as_objects() {
        let mut p = pod(vec![container(&[("cpu", "1")], &[])]);
        p.status = Some(PodStatus { phase: Some("Succeeded".into()), ..Default::default() });
        let s = spec(&[("pods", "5"), ("count/pods", "5"), ("requests.cpu", "2")]);
        let used = usage(&s, [Object::Pod(&p)], &|_| true, now());
        assert_eq!(
            shown(&used),
            [("count/pods", "1"), ("pods", "0"), ("requests.cpu", "0")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn object_counts_and_legacy_names_count_every_object() {
        let s = spec(&[
            ("configmaps", "10"),
            ("count/configmaps", "10"),
            ("count/deployments.apps", "2"),
            ("secrets", "3"),
        ]);
        let objs = [
            Object::Other { resource: "configmaps", group: "" },
            Object::Other { resource: "configmaps", group: "" },
            Object::Other { resource: "deployments", group: "apps" },
        ];
        let used = usage(&s, objs, &|_| true, now());
        assert_eq!(
            shown(&used),
            [
                ("configmaps", "2"),
                ("count/configmaps", "2"),
                ("count/deployments.apps", "1"),
                ("secrets", "0")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn unknown_names_are_not_tracked() {
        let s = spec(&[("count/widgets.example.com", "1"), ("bananas", "3"), ("pods", "1")]);
        let used = usage(&s, [], &|n| n != "count/widgets.example.com", now());
        assert_eq!(shown(&used), [("pods".to_string(), "0".to_string())]);
    }

    #[test]
    fn services_charge_node_ports_and_load_balancers() {
        let ports = Some(vec![
            ServicePort { port: 80, ..Default::default() },
            ServicePort { port: 443, ..Default::default() },
        ]);
        let np = Service {
            spec: Some(ServiceSpec {
                type_: Some("NodePort".into()),
                ports: ports.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let lb = Service {
            spec: Some(ServiceSpec { type_: Some("LoadBalancer".into()), ports, ..Default::default() }),
            ..Default::default()
        };
        let s = spec(&[("services", "9"), ("services.nodeports", "9"), ("services.loadbalancers", "9")]);
        let used = usage(&s, [Object::Service(&np), Object::Service(&lb)], &|_| true, now());
        assert_eq!(
            shown(&used),
            [("services", "2"), ("services.loadbalancers", "1"), ("services.nodeports", "4")]
                .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn claims_charge_storage_overall_and_per_class() {
        let claim = |class: &str, size: &str| PersistentVolumeClaim {
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: Some(class.into()),
                resources: Some(VolumeResourceRequirements {
                    requests: list(&[("storage", size)]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (a, b) = (claim("gold", "1Gi"), claim("local-path", "500Mi"));
        let s = spec(&[
            ("persistentvolumeclaims", "5"),
            ("requests.storage", "10Gi"),
            ("gold.storageclass.storage.k8s.io/requests.storage", "2Gi"),
            ("gold.storageclass.storage.k8s.io/persistentvolumeclaims", "1"),
        ]);
        let used = usage(&s, [Object::Claim(&a), Object::Claim(&b)], &|_| true, now());
        assert_eq!(
            shown(&used),
            [
                ("gold.storageclass.storage.k8s.io/persistentvolumeclaims", "1"),
                ("gold.storageclass.storage.k8s.io/requests.storage", "1Gi"),
                ("persistentvolumeclaims", "2"),
                ("requests.storage", "1524Mi"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }

    #[test]
    fn scopes_select_pods_and_exclude_other_kinds() {
        let best_effort = pod(vec![container(&[], &[])]);
        let burstable = pod(vec![container(&[("cpu", "100m")], &[])]);
        let mut deadline = pod(vec![container(&[], &[])]);
        deadline.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
        let mut high = pod(vec![container(&[], &[])]);
        high.spec.as_mut().unwrap().priority_class_name = Some("high".into());
        let all = [
            Object::Pod(&best_effort),
            Object::Pod(&burstable),
            Object::Pod(&deadline),
            Object::Pod(&high),
            Object::Other { resource: "configmaps", group: "" },
        ];
        let count = |scopes: &[&str], selector: Option<(&str, &str, &[&str])>| {
            let s = ResourceQuotaSpec {
                hard: list(&[("pods", "10"), ("count/configmaps", "10")]),
                scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
                scope_selector: selector.map(|(name, op, values)| ScopeSelector {
                    match_expressions: Some(vec![ScopedResourceSelectorRequirement {
                        scope_name: name.into(),
                        operator: op.into(),
                        values: Some(values.iter().map(|v| v.to_string()).collect()),
                    }]),
                }),
            };
            let used = usage(&s, all, &|_| true, now());
            (used["pods"].to_string(), used["count/configmaps"].to_string())
        };
        assert_eq!(count(&[], None), ("4".into(), "1".into()));
        assert_eq!(count(&["BestEffort"], None), ("3".into(), "0".into()));
        assert_eq!(count(&["NotBestEffort"], None), ("1".into(), "0".into()));
        assert_eq!(count(&["Terminating"], None), ("1".into(), "0".into()));
        assert_eq!(count(&["NotTerminating", "BestEffort"], None), ("2".into(), "0".into()));
        assert_eq!(count(&[], Some(("PriorityClass", "In", &["high"]))), ("1".into(), "0".into()));
        assert_eq!(count(&[], Some(("PriorityClass", "NotIn", &["high"]))), ("3".into(), "0".into()));
        assert_eq!(count(&[], Some(("PriorityClass", "Exists", &[]))), ("1".into(), "0".into()));
        assert_eq!(count(&[], Some(("PriorityClass", "DoesNotExist", &[]))), ("3".into(), "0".into()));
    }
}
