//! What the scheduler precomputes about pods and nodes: a pod's requests, ports, priority
//! and affinity terms parsed once (`PodInfo`), and per node its allocatable, the summed
//! requests of the pods bound or assumed there, their host ports and its images
//! (`NodeInfo`), updated incrementally as pods come and go.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, Taint, Toleration, WeightedPodAffinityTerm};
use kube::ResourceExt;

use crate::resources::{self, Resources};
use crate::selector::{LabelSelector, RequiredNodeAffinity, labels_of};

/// The node label every kubelet sets to its hostname.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

/// A pod affinity or anti-affinity term, compiled.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    pub selector: LabelSelector,
    /// Namespaces named by the term (the pod's own when neither namespaces nor a
    /// namespace selector is given).
    pub namespaces: BTreeSet<String>,
    /// Matches nothing when the term has no namespace selector.
    pub namespace_selector: LabelSelector,
    pub topology_key: String,
}

impl AffinityTerm {
    fn new(pod_ns: &str, t: &PodAffinityTerm, pod_labels: &BTreeMap<String, String>) -> Self {
        let mut selector = LabelSelector::from_api(t.label_selector.as_ref());
        // matchLabelKeys / mismatchLabelKeys take their values from the pod's own labels.
        for k in t.match_label_keys.iter().flatten() {
            if let Some(v) = pod_labels.get(k) {
                selector.require(k, v);
            }
        }
        for k in t.mismatch_label_keys.iter().flatten() {
            if let Some(v) = pod_labels.get(k) {
                selector.require_not(k, v);
            }
        }
        let mut namespaces: BTreeSet<String> = t.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.insert(pod_ns.to_string());
        }
        Self {
            selector,
            namespaces,
            namespace_selector: LabelSelector::from_api(t.namespace_selector.as_ref()),
            topology_key: t.topology_key.clone(),
        }
    }

    /// Whether `pod` is selected by this term; `ns_labels` are the labels of the pod's
    /// namespace (needed only when the term has a namespace selector).
    pub fn matches(&self, pod: &PodInfo, ns_labels: &BTreeMap<String, String>) -> bool {
        (self.namespaces.contains(&pod.namespace) || self.namespace_selector.matches(ns_labels))
            && self.selector.matches(pod.labels())
    }
}

/// A weighted (preferred) affinity term.
#[derive(Clone, Debug)]
pub struct WeightedTerm {
    pub weight: i64,
    pub term: AffinityTerm,
}

/// A host port a pod claims on its node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two claims collide: same protocol and port, and the same IP or either on all
    /// addresses.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A pod with everything the scheduler needs precomputed.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    /// `namespace/name`.
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub priority: i32,
    /// Effective requests (for fit).
    pub requests: Resources,
    /// Requests with the scoring defaults for containers that request no CPU or memory.
    pub non_zero_requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<WeightedTerm>,
    pub preferred_anti_affinity: Vec<WeightedTerm>,
    pub node_affinity: RequiredNodeAffinity,
    /// Whether the pod is being deleted.
    pub terminating: bool,
    /// Whether the scheduler preempted it (it carries DisruptionTarget/PreemptionByScheduler).
    pub preempted: bool,
    pub start_time: Option<jiff::Timestamp>,
    /// UID of the controller (or first) owner, for default spreading.
    pub owner_uid: Option<String>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let spec = pod.spec.as_ref();
        let lbls = labels_of(&pod.metadata.labels);
        let mut host_ports = Vec::new();
        for c in spec.map(|s| s.containers.iter()).into_iter().flatten() {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|h| *h > 0) {
                    host_ports.push(HostPort {
                        ip: p.host_ip.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| "0.0.0.0".into()),
                        protocol: p
                            .protocol
                            .clone()
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| "TCP".into()),
                        port: hp,
                    });
                }
            }
        }
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let hard = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms.into_iter().flatten().map(|t| AffinityTerm::new(&namespace, t, lbls)).collect()
        };
        let soft = |terms: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<WeightedTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|w| WeightedTerm {
                    weight: w.weight as i64,
                    term: AffinityTerm::new(&namespace, &w.pod_affinity_term, lbls),
                })
                .collect()
        };
        let preempted = pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "DisruptionTarget" && c.reason.as_deref() == Some("PreemptionByScheduler")
            })
        });
        Self {
            key: format!("{namespace}/{name}"),
            uid: pod.uid().unwrap_or_default(),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            requests: resources::pod_requests(&pod, false),
            non_zero_requests: resources::pod_requests(&pod, true),
            host_ports,
            required_affinity: hard(
                pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            required_anti_affinity: hard(
                paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_affinity: soft(
                pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_anti_affinity: soft(
                paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            node_affinity: RequiredNodeAffinity::of(&pod),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            preempted,
            start_time: pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0),
            owner_uid: {
                let refs = pod.owner_references();
                refs.iter().find(|r| r.controller == Some(true)).or(refs.first()).map(|r| r.uid.clone())
            },
            namespace,
            name,
            pod,
        }
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        labels_of(&self.pod.metadata.labels)
    }

    pub fn tolerations(&self) -> &[Toleration] {
        self.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or(&[])
    }

    /// Whether the pod has any pod affinity or anti-affinity.
    pub fn has_affinity(&self) -> bool {
        let a = self.pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        a.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
    }

    pub fn node_name(&self) -> &str {
        self.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
    }

    pub fn nominated_node_name(&self) -> &str {
        self.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).unwrap_or("")
    }
}

/// A node with the pods bound (or assumed) to it and their summed requests.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub node: Arc<Node>,
    pub allocatable: Resources,
    pub requested: Resources,
    /// Requests with the scoring defaults (CPU and memory only).
    pub non_zero_requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
    /// How many of `pods` have pod affinity or anti-affinity.
    pub pods_with_affinity: usize,
    /// How many of `pods` have required anti-affinity.
    pub pods_with_required_anti_affinity: usize,
    pub used_ports: Vec<HostPort>,
    /// Image name (every name the node reports) to size in bytes.
    pub images: HashMap<String, i64>,
    /// Pods per owner UID (for default spreading).
    pub owner_counts: HashMap<String, i64>,
    /// Bumped on every change.
    pub generation: u64,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> Self {
        let mut n = Self {
            name: node.name_any(),
            allocatable: Resources::default(),
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            pods: Vec::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
            used_ports: Vec::new(),
            images: HashMap::new(),
            owner_counts: HashMap::new(),
            generation: 0,
            node: node.clone(),
        };
        n.set_node(node);
        n
    }

    /// Replaces the Node object and what is derived from it.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = resources::node_allocatable(&node);
        self.images = image_sizes(&node);
        self.node = node;
        self.generation += 1;
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        labels_of(&self.node.metadata.labels)
    }

    pub fn taints(&self) -> &[Taint] {
        self.node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
    }

    pub fn unschedulable(&self) -> bool {
        self.node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.requests);
        self.non_zero_requested.milli_cpu += p.non_zero_requests.milli_cpu;
        self.non_zero_requested.memory += p.non_zero_requests.memory;
        self.used_ports.extend(p.host_ports.iter().cloned());
        if p.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !p.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        if let Some(uid) = &p.owner_uid {
            *self.owner_counts.entry(uid.clone()).or_insert(0) += 1;
        }
        self.pods.push(p);
        self.generation += 1;
    }

    /// Removes the pod with `key`; returns it if it was there.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.key == key)?;
        let p = self.pods.swap_remove(i);
        self.requested.sub(&p.requests);
        self.non_zero_requested.milli_cpu -= p.non_zero_requests.milli_cpu;
        self.non_zero_requested.memory -= p.non_zero_requests.memory;
        for hp in &p.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        if p.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !p.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        if let Some(uid) = &p.owner_uid
            && let Some(c) = self.owner_counts.get_mut(uid)
        {
            *c -= 1;
            if *c <= 0 {
                self.owner_counts.remove(uid);
            }
        }
        self.generation += 1;
        Some(p)
    }
}

fn image_sizes(node: &Node) -> HashMap<String, i64> {
    let mut out = HashMap::new();
    for img in node.status.as_ref().and_then(|s| s.images.as_ref()).into_iter().flatten() {
        for n in img.names.iter().flatten() {
            out.insert(n.clone(), img.size_bytes.unwrap_or(0));
        }
    }
    out
}
