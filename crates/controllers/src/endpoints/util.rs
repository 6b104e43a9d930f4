//! What the Endpoints and EndpointSlice controllers share (upstream `k8s.io/endpointslice/util`):
//! which pods back a service, whether a pod is published and ready, port resolution from
//! `targetPort`, the mapping of pod changes to the services they affect, and the tracker
//! behind the `endpoints.kubernetes.io/last-change-trigger-time` annotation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

/// The annotation recording when the change that caused this write happened.
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// The label marking endpoints of a headless service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// `namespace/name`.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Splits `namespace/name`.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The pod's Ready condition, if it has one.
pub fn ready_condition(p: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// Whether the pod's Ready condition is True.
pub fn is_pod_ready(p: &Pod) -> bool {
    ready_condition(p).is_some_and(|c| c.status == "True")
}

/// Whether a pod belongs in a service's endpoints at all: not finished, has an IP, and is
/// not terminating unless `include_terminating`.
pub fn should_pod_be_in_endpoints(p: &Pod, include_terminating: bool) -> bool {
    if matches!(phase(p), "Succeeded" | "Failed") {
        return false;
    }
    let status = p.status.as_ref();
    let has_ip = status.and_then(|s| s.pod_ip.as_deref()).is_some_and(|ip| !ip.is_empty())
        || status.and_then(|s| s.pod_ips.as_ref()).is_some_and(|ips| !ips.is_empty());
    if !has_ip {
        return false;
    }
    include_terminating || p.metadata.deletion_timestamp.is_none()
}

/// Whether the endpoint gets the pod's hostname: it has one and its subdomain is the service.
pub fn should_set_hostname(p: &Pod, svc: &Service) -> bool {
    let spec = p.spec.as_ref();
    spec.and_then(|s| s.hostname.as_deref()).is_some_and(|h| !h.is_empty())
        && spec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref()
        && p.metadata.namespace == svc.metadata.namespace
}

/// Whether the service has a cluster IP (is not headless).
pub fn is_service_ip_set(svc: &Service) -> bool {
    let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
    !ip.is_empty() && ip != "None"
}

/// The container port a service port targets on this pod: a number as is, a name looked
/// up among the named ports of the containers (and of restartable init containers) with
/// the same protocol.
pub fn find_port(p: &Pod, sp: &ServicePort) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match sp.target_port.as_ref() {
        Some(IntOrString::Int(n)) => Some(*n),
        // Unset targetPort defaults to the port (the API server defaults it too).
        None => Some(sp.port),
        Some(IntOrString::String(name)) => {
            let spec = p.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers.iter().chain(sidecars).find_map(|c| {
                c.ports.iter().flatten().find_map(|cp| {
                    (cp.name.as_deref() == Some(name.as_str())
                        && cp.protocol.as_deref().unwrap_or("TCP") == protocol)
                        .then_some(cp.container_port)
                })
            })
        }
    }
}

/// Whether a service's selector (a nil selector selects nothing) matches these labels.
pub fn selector_matches(
    selector: Option<&BTreeMap<String, String>>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.as_ref().and_then(|s| s.selector.as_ref())
}

/// The pods of the service's namespace its selector matches, by name.
pub fn pods_for_service(pods: &Store<Pod>, svc: &Service) -> Vec<Arc<Pod>> {
    let ns = svc.namespace();
    let mut out: Vec<Arc<Pod>> = pods
        .state()
        .into_iter()
        .filter(|p| p.namespace() == ns && selector_matches(selector(svc), p.labels()))
        .collect();
    out.sort_by_key(|p| p.name_any());
    out
}

/// Keys of the services in the pod's namespace whose selector matches the pod.
pub fn services_for_pod(services: &Store<Service>, p: &Pod) -> BTreeSet<String> {
    let ns = p.namespace();
    services
        .state()
        .into_iter()
        .filter(|s| s.namespace() == ns && selector_matches(selector(s), p.labels()))
        .map(|s| key(&s.namespace().unwrap_or_default(), &s.name_any()))
        .collect()
}

/// Remembers which services each pod belonged to, so that a pod whose labels changed (or
/// that was deleted) also updates the services it left.
#[derive(Default)]
pub struct Memberships {
    by_pod: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Memberships {
    /// The services to sync for a change of `p`: those it matches now and those it matched
    /// before. `gone` forgets the pod.
    pub fn affected(&self, services: &Store<Service>, p: &Pod, gone: bool) -> BTreeSet<String> {
        let pod_key = key(&p.namespace().unwrap_or_default(), &p.name_any());
        let now = services_for_pod(services, p);
        let mut m = self.by_pod.lock().unwrap_or_else(|e| e.into_inner());
        let before = if gone { m.remove(&pod_key) } else { m.insert(pod_key, now.clone()) };
        let mut all = now;
        all.extend(before.unwrap_or_default());
        all
    }
}

#[derive(Clone, Default)]
struct ServiceState {
    service_trigger: Option<jiff::Timestamp>,
    pod_triggers: HashMap<String, jiff::Timestamp>,
}

/// Computes the `last-change-trigger-time` annotation (upstream `TriggerTimeTracker`): the
/// earliest change (a pod's Ready transition, or the service's creation) not yet exported,
/// or the service's creation time the first time the service is seen.
#[derive(Default)]
pub struct TriggerTimeTracker {
    states: Mutex<HashMap<String, ServiceState>>,
}

impl TriggerTimeTracker {
    /// The trigger time to export for this sync, `None` to clear the annotation. Must not
    /// be called concurrently for the same service.
    pub fn compute(&self, svc: &Service, pods: &[Arc<Pod>]) -> Option<jiff::Timestamp> {
        let k = key(&svc.namespace().unwrap_or_default(), &svc.name_any());
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let known = states.get(&k).cloned();
        let state = known.clone().unwrap_or_default();
        let mut min_changed: Option<jiff::Timestamp> = None;
        let mut pod_triggers = HashMap::new();
        for p in pods {
            let Some(t) = ready_condition(p).and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0)
            else {
                continue;
            };
            let name = p.name_any();
            if state.pod_triggers.get(&name).is_none_or(|last| t > *last) {
                min_changed = Some(min_changed.map_or(t, |m| m.min(t)));
            }
            pod_triggers.insert(name, t);
        }
        let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(c) = created
            && state.service_trigger.is_none_or(|last| c > last)
        {
            min_changed = Some(min_changed.map_or(c, |m| m.min(c)));
        }
        states.insert(k, ServiceState { service_trigger: created, pod_triggers });
        if known.is_none() {
            return created;
        }
        min_changed
    }

    /// Forgets a deleted service.
    pub fn delete(&self, namespace: &str, name: &str) {
        self.states.lock().unwrap_or_else(|e| e.into_inner()).remove(&key(namespace, name));
    }
}

/// Waits until the cache has been filled once; false if it never will be (its watch ended).
/// Polls rather than awaiting `Store::wait_until_ready`, whose readiness wakes only the
/// last of several tasks waiting on the same shared store.
pub async fn wait_for_cache<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    use futures::FutureExt;
    loop {
        match store.wait_until_ready().now_or_never() {
            Some(r) => return r.is_ok(),
            None => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// RFC 3339 with nanoseconds, trailing zeros trimmed (Go's `time.RFC3339Nano`), in UTC.
pub fn format_time(t: jiff::Timestamp) -> String {
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn named_target_ports_resolve_against_container_ports_of_the_same_protocol() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}],
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "ports": [{"name": "metrics", "containerPort": 9090}]},
                {"name": "init", "ports": [{"name": "setup", "containerPort": 7000}]}]}}));
        let sp = |target: serde_json::Value, protocol: &str| -> ServicePort {
            serde_json::from_value(json!({"port": 80, "targetPort": target, "protocol": protocol})).unwrap()
        };
        let cases = [
            (json!(9376), "TCP", Some(9376)),
            (json!("http"), "TCP", Some(8080)),
            (json!("http"), "UDP", None),
            (json!("dns"), "UDP", Some(53)),
            (json!("metrics"), "TCP", Some(9090)),
            (json!("setup"), "TCP", None),
            (json!("missing"), "TCP", None),
        ];
        for (target, protocol, want) in cases {
            assert_eq!(find_port(&p, &sp(target.clone(), protocol)), want, "{target} {protocol}");
        }
    }

    #[test]
    fn only_live_pods_with_an_ip_are_published() {
        let base = json!({"metadata": {"name": "p"}, "spec": {"containers": []},
                          "status": {"phase": "Running", "podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]}});
        let mut no_ip = base.clone();
        no_ip["status"] = json!({"phase": "Pending"});
        let mut done = base.clone();
        done["status"]["phase"] = json!("Succeeded");
        let mut terminating = base.clone();
        terminating["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let cases = [
            (base, false, true),
            (no_ip, false, false),
            (done, true, false),
            (terminating.clone(), false, false),
            (terminating, true, true),
        ];
        for (p, include_terminating, want) in cases {
            assert_eq!(should_pod_be_in_endpoints(&pod(p.clone()), include_terminating), want, "{p}");
        }
    }

    #[test]
    fn a_nil_selector_selects_nothing_and_an_empty_one_everything() {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        assert!(!selector_matches(None, &labels));
        assert!(selector_matches(Some(&BTreeMap::new()), &labels));
        assert!(selector_matches(Some(&labels), &labels));
        let other = BTreeMap::from([("app".to_string(), "db".to_string())]);
        assert!(!selector_matches(Some(&other), &labels));
    }

    #[test]
    fn the_trigger_time_is_the_creation_first_then_the_earliest_new_readiness_change() {
        let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns",
            "creationTimestamp": "2024-05-01T10:00:00Z"}}))
        .unwrap();
        let ready_at = |name: &str, t: &str| {
            Arc::new(pod(json!({"metadata": {"name": name}, "status": {"conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": t}]}})))
        };
        let tracker = TriggerTimeTracker::default();
        let a = ready_at("a", "2024-05-01T10:01:00Z");
        let first = tracker.compute(&svc, std::slice::from_ref(&a));
        assert_eq!(first.map(format_time).as_deref(), Some("2024-05-01T10:00:00Z"));
        assert_eq!(tracker.compute(&svc, std::slice::from_ref(&a)), None, "nothing changed since");
        let b = ready_at("b", "2024-05-01T10:03:00Z");
        let c = ready_at("c", "2024-05-01T10:02:00Z");
        let t = tracker.compute(&svc, &[a, b, c]);
        assert_eq!(t.map(format_time).as_deref(), Some("2024-05-01T10:02:00Z"));
        let nanos: jiff::Timestamp = "2024-05-01T10:02:00.120Z".parse().unwrap();
        assert_eq!(format_time(nanos), "2024-05-01T10:02:00.12Z");
    }
}
