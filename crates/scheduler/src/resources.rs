//! Resource amounts as the scheduler counts them: quantities parsed into integers (CPU in
//! millicores, everything else in whole units, both rounded up as Kubernetes does), a
//! pod's effective requests (containers, sidecars, init containers, overhead) and a
//! node's allocatable.

use std::collections::BTreeMap;

use apimachinery::quantity::{Error as QuantityError, Quantity as Exact};
use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// CPU assumed for a container without a CPU request, for scoring only (kube-scheduler's
/// `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container without a memory request, for scoring only (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of every resource the scheduler accounts for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// How many pods (meaningful for a node's allocatable only).
    pub allowed_pods: i64,
    /// Extended resources, hugepages and other scalar resources, by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Adds one named quantity (`cpu`, `memory`, `ephemeral-storage`, `pods`, or a scalar).
    pub fn add_named(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = self.milli_cpu.saturating_add(milli_value(q)),
            "memory" => self.memory = self.memory.saturating_add(value(q)),
            "ephemeral-storage" => self.ephemeral_storage = self.ephemeral_storage.saturating_add(value(q)),
            "pods" => self.allowed_pods = self.allowed_pods.saturating_add(value(q)),
            other => {
                if is_scalar_resource(other) {
                    let v = self.scalar.entry(other.to_string()).or_insert(0);
                    *v = v.saturating_add(value(q));
                }
            }
        }
    }

    /// `self += other`.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(other.ephemeral_storage);
        self.allowed_pods = self.allowed_pods.saturating_add(other.allowed_pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    /// `self -= other`; scalars that reach zero are dropped.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_sub(other.ephemeral_storage);
        self.allowed_pods = self.allowed_pods.saturating_sub(other.allowed_pods);
        for (k, v) in &other.scalar {
            if let Some(e) = self.scalar.get_mut(k) {
                *e = e.saturating_sub(*v);
                if *e == 0 {
                    self.scalar.remove(k);
                }
            }
        }
    }

    /// Per resource, the larger of the two.
    pub fn set_max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.allowed_pods = self.allowed_pods.max(other.allowed_pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    /// Whether nothing at all is requested.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }

    /// The amount of a resource by its API name.
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.allowed_pods,
            other => self.scalar.get(other).copied().unwrap_or(0),
        }
    }
}

/// Whether a resource name is accounted as a scalar: extended resources (domain-prefixed),
/// hugepages, and `attachable-volumes-*`.
pub fn is_scalar_resource(name: &str) -> bool {
    name.contains('/') || name.starts_with("hugepages-") || name.starts_with("attachable-volumes-")
}

fn resources_of(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
    let mut r = Resources::default();
    if let Some(m) = list {
        for (k, q) in m {
            r.add_named(k, q);
        }
    }
    r
}

fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let reqs = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let mut r = resources_of(reqs);
    if non_zero {
        if !reqs.is_some_and(|m| m.contains_key("cpu")) {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !reqs.is_some_and(|m| m.contains_key("memory")) {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// A pod's effective requests: the sum of its containers and restartable init containers
/// (sidecars), or the largest init container (plus the sidecars started before it) when that
/// is more, plus the pod overhead. With `non_zero`, a container without a CPU or memory
/// request counts the scoring defaults instead of zero.
pub fn pod_requests(pod: &Pod, non_zero: bool) -> Resources {
    let Some(spec) = pod.spec.as_ref() else { return Resources::default() };
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(&container_requests(c, non_zero));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running, so it is also part of every later step.
            sidecars.add(&r);
            init_max.set_max(&sidecars);
        } else {
            let mut step = sidecars.clone();
            step.add(&r);
            init_max.set_max(&step);
        }
    }
    sum.add(&sidecars);
    sum.set_max(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        sum.add(&resources_of(Some(overhead)));
    }
    sum
}

/// A node's allocatable (falling back to capacity when allocatable is absent, as the
/// kubelet reports both).
pub fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let list =
        status.and_then(|s| s.allocatable.as_ref()).or_else(|| status.and_then(|s| s.capacity.as_ref()));
    resources_of(list)
}

/// A quantity in thousandths, rounded up (`100m` is 100, `1` is 1000, `1.5Gi` in milli-bytes).
pub fn milli_value(q: &Quantity) -> i64 {
    scaled(q, Exact::milli_value)
}

/// A quantity in whole units, rounded up (`1500m` is 2, `1Ki` is 1024).
pub fn value(q: &Quantity) -> i64 {
    scaled(q, Exact::value)
}

/// `amount` of the parsed quantity, saturating at the bounds of i64; 0 when the text is
/// not a quantity (the API server refuses those, so stored objects have none).
fn scaled(q: &Quantity, amount: fn(&Exact) -> i128) -> i64 {
    match Exact::parse(&q.0) {
        Ok(exact) => amount(&exact).clamp(i64::MIN.into(), i64::MAX.into()) as i64,
        Err(QuantityError::TooLarge(_)) if q.0.trim_start().starts_with('-') => i64::MIN,
        Err(QuantityError::TooLarge(_)) => i64::MAX,
        Err(QuantityError::Format | QuantityError::Suffix) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    #[test]
    fn quantities_count_rounded_up_and_saturated() {
        let q = |s: &str| Quantity(s.into());
        assert_eq!((milli_value(&q("100m")), value(&q("100m"))), (100, 1));
        assert_eq!((milli_value(&q("1.5Ki")), value(&q("1.5Ki"))), (1_536_000, 1536));
        assert_eq!(value(&q("1E")), 1_000_000_000_000_000_000);
        assert_eq!(milli_value(&q("1E")), i64::MAX);
        assert_eq!(value(&q("1e40")), i64::MAX);
        assert_eq!(value(&q("-1e40")), i64::MIN);
        assert_eq!(value(&q("abc")), 0);
    }

    fn container(cpu: &str, mem: Option<&str>, restart: Option<&str>) -> Container {
        let mut req = BTreeMap::new();
        if !cpu.is_empty() {
            req.insert("cpu".to_string(), Quantity(cpu.into()));
        }
        if let Some(m) = mem {
            req.insert("memory".to_string(), Quantity(m.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements { requests: Some(req), ..Default::default() }),
            restart_policy: restart.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn pod_requests_take_the_larger_of_containers_and_init_containers_plus_overhead() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![container("100m", Some("1Gi"), None), container("200m", None, None)],
                init_containers: Some(vec![container("500m", Some("100Mi"), None)]),
                overhead: Some(BTreeMap::from([("cpu".to_string(), Quantity("10m".into()))])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = pod_requests(&pod, false);
        assert_eq!(r.milli_cpu, 510);
        assert_eq!(r.memory, 1024 * 1024 * 1024);
        let nz = pod_requests(&pod, true);
        // The second container counts 200Mi for scoring.
        assert_eq!(nz.memory, 1024 * 1024 * 1024 + DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn sidecars_add_to_the_containers_and_to_later_init_steps() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![container("100m", None, None)],
                init_containers: Some(vec![
                    container("50m", None, Some("Always")),
                    container("300m", None, None),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        // max(100 + 50, 50 + 300) = 350
        assert_eq!(pod_requests(&pod, false).milli_cpu, 350);
    }
}
