//! Turning a service's pods into EndpointSlices (upstream `k8s.io/endpointslice`
//! `reconciler.go`): per address type, endpoints are grouped by their port set; existing
//! slices keep the endpoints still wanted (updated in place when they changed), slices
//! being updated are filled up first, then leftovers go into the unchanged slice closest
//! to full or into new slices of at most 100 endpoints; a service with no endpoints keeps
//! one empty placeholder slice. Creates that would pair with deletes become updates.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use crate::endpoints::util::{self, HEADLESS_LABEL};

/// The label naming a slice's service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's name in [`LABEL_MANAGED_BY`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// Endpoints per slice (kube-controller-manager's `--max-endpoints-per-slice`).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The writes one reconcile decided on.
#[derive(Debug, Default)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
    /// Pods left out because their node is unknown (the service is retried).
    pub skipped: Vec<String>,
}

/// The address types a service's slices use.
pub fn address_types(svc: &Service) -> BTreeSet<String> {
    let spec = svc.spec.as_ref();
    let mut out = BTreeSet::new();
    for f in spec.and_then(|s| s.ip_families.as_ref()).into_iter().flatten() {
        match f.as_str() {
            "IPv4" => {
                out.insert("IPv4".to_string());
            }
            "IPv6" => {
                out.insert("IPv6".to_string());
            }
            _ => {}
        }
    }
    if !out.is_empty() {
        return out;
    }
    match spec.and_then(|s| s.cluster_ip.as_deref()) {
        Some(ip) if !ip.is_empty() && ip != "None" => {
            out.insert(if ip.contains(':') { "IPv6" } else { "IPv4" }.to_string());
        }
        _ => {
            out.insert("IPv4".to_string());
            out.insert("IPv6".to_string());
        }
    }
    out
}

/// The ports a pod serves for a service (service ports whose target resolves).
pub fn endpoint_ports(svc: &Service, p: &Pod) -> Vec<EndpointPort> {
    let spec = svc.spec.clone().unwrap_or_default();
    spec.ports
        .unwrap_or_default()
        .iter()
        .filter_map(|sp| {
            let port = util::find_port(p, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// A pod as an endpoint of the given address type.
pub fn pod_to_endpoint(p: &Pod, node: Option<&Node>, svc: &Service, address_type: &str) -> Endpoint {
    let serving = util::is_pod_ready(p);
    let terminating = p.metadata.deletion_timestamp.is_some();
    let publish = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let ready = publish || (serving && !terminating);
    let addresses = p
        .status
        .as_ref()
        .and_then(|s| s.pod_ips.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip)
        .filter(|ip| ip.contains(':') == (address_type == "IPv6"))
        .collect();
    let node_name = p.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty());
    let zone = node.and_then(|n| n.labels().get(ZONE_LABEL).cloned()).filter(|z| !z.is_empty());
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: p.metadata.namespace.clone(),
            name: p.metadata.name.clone(),
            uid: p.metadata.uid.clone(),
            ..Default::default()
        }),
        node_name,
        zone,
        hostname: util::should_set_hostname(p, svc)
            .then(|| p.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
        ..Default::default()
    }
}

/// What identifies an endpoint across syncs: its addresses, hostname and target.
type EndpointKey = (Vec<String>, String, String, String);

fn endpoint_key(e: &Endpoint) -> EndpointKey {
    let mut addrs = e.addresses.clone();
    addrs.sort();
    let (ns, name) = e
        .target_ref
        .as_ref()
        .map(|r| (r.namespace.clone().unwrap_or_default(), r.name.clone().unwrap_or_default()))
        .unwrap_or_default();
    (addrs, e.hostname.clone().unwrap_or_default(), ns, name)
}

/// Equal beyond the key: node, zone, conditions, and target (resourceVersion ignored).
fn endpoints_equal_beyond_key(a: &Endpoint, b: &Endpoint) -> bool {
    let target = |e: &Endpoint| {
        e.target_ref.clone().map(|mut r| {
            r.resource_version = None;
            r
        })
    };
    a.node_name == b.node_name && a.zone == b.zone && a.conditions == b.conditions && target(a) == target(b)
}

type PortKey = Vec<(String, i32, String, String)>;

fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut k: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    k.sort();
    k
}

/// The controller ownerReference a slice carries to its service.
pub fn owner_ref(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.name_any(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == svc.metadata.uid.as_ref() && o.kind == "Service" && o.api_version == "v1")
}

fn reserved(label: &str) -> bool {
    label == LABEL_SERVICE_NAME || label == LABEL_MANAGED_BY || label == HEADLESS_LABEL
}

/// The labels a slice of `svc` must carry, and whether the slice's own (non-reserved)
/// labels differ from the service's.
pub fn slice_labels(
    slice_labels: &BTreeMap<String, String>,
    svc: &Service,
) -> (BTreeMap<String, String>, bool) {
    let own: BTreeMap<String, String> =
        slice_labels.iter().filter(|(k, _)| !reserved(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut labels: BTreeMap<String, String> =
        svc.labels().iter().filter(|(k, _)| !reserved(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let changed = own != labels;
    if !util::is_service_ip_set(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.into(), svc.name_any());
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    (labels, changed)
}

/// A new, unnamed slice for the service (`generateName` `<service>-`).
pub fn new_slice(svc: &Service, ports: Vec<EndpointPort>, address_type: &str) -> EndpointSlice {
    let name = svc.name_any();
    // A prefix that would make an invalid name falls back to the bare service name.
    let prefix = if name.len() < 253 { format!("{name}-") } else { name };
    let (labels, _) = slice_labels(&BTreeMap::new(), svc);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: svc.metadata.namespace.clone(),
            owner_references: Some(vec![owner_ref(svc)]),
            labels: Some(labels),
            ..Default::default()
        },
        address_type: address_type.into(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

fn is_placeholder_for(slice: &EndpointSlice, svc: &Service, address_type: &str) -> bool {
    let (labels, _) = slice_labels(&BTreeMap::new(), svc);
    slice.endpoints.is_empty()
        && slice.ports.as_ref().is_none_or(Vec::is_empty)
        && slice.address_type == address_type
        && slice.metadata.namespace == svc.metadata.namespace
        && slice.labels() == &labels
        && slice.owner_references() == [owner_ref(svc)]
}

/// Decides the creates, updates and deletes that make `existing` represent `pods`.
pub fn reconcile(
    svc: &Service,
    pods: &[Arc<Pod>],
    existing: &[EndpointSlice],
    nodes: &BTreeMap<String, Arc<Node>>,
    max_per_slice: usize,
) -> Plan {
    let mut plan = Plan::default();
    let types = address_types(svc);
    let mut by_type: BTreeMap<String, Vec<EndpointSlice>> = BTreeMap::new();
    for s in existing {
        if types.contains(&s.address_type) {
            by_type.entry(s.address_type.clone()).or_default().push(s.clone());
        } else {
            plan.delete.push(s.clone());
        }
    }
    for t in &types {
        let slices = by_type.remove(t).unwrap_or_default();
        reconcile_address_type(svc, pods, &slices, nodes, t, max_per_slice, &mut plan);
    }
    plan
}

fn reconcile_address_type(
    svc: &Service,
    pods: &[Arc<Pod>],
    existing: &[EndpointSlice],
    nodes: &BTreeMap<String, Arc<Node>>,
    address_type: &str,
    max: usize,
    plan: &mut Plan,
) {
    let publish = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let mut to_create = Vec::new();
    let mut to_update = Vec::new();
    let mut to_delete = Vec::new();
    let mut existing_by_ports: BTreeMap<PortKey, Vec<EndpointSlice>> = BTreeMap::new();
    for s in existing {
        if owned_by(s, svc) {
            existing_by_ports
                .entry(port_key(s.ports.as_deref().unwrap_or_default()))
                .or_default()
                .push(s.clone());
        } else {
            to_delete.push(s.clone());
        }
    }
    let mut desired_ports: BTreeMap<PortKey, Vec<EndpointPort>> = BTreeMap::new();
    let mut desired: BTreeMap<PortKey, BTreeMap<EndpointKey, Endpoint>> = BTreeMap::new();
    for p in pods {
        if !util::should_pod_be_in_endpoints(p, true) {
            continue;
        }
        let ports = endpoint_ports(svc, p);
        let k = port_key(&ports);
        desired.entry(k.clone()).or_default();
        desired_ports.entry(k.clone()).or_insert(ports);
        let node_name = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let node = nodes.get(&node_name);
        if node.is_none() && !publish {
            plan.skipped.push(format!(
                "skipping Pod {} for Service {}/{}: Node {} Not Found",
                p.name_any(),
                svc.namespace().unwrap_or_default(),
                svc.name_any(),
                node_name
            ));
            continue;
        }
        let e = pod_to_endpoint(p, node.map(|n| n.as_ref()), svc, address_type);
        if !e.addresses.is_empty()
            && let Some(set) = desired.get_mut(&k)
        {
            set.insert(endpoint_key(&e), e);
        }
    }
    for (k, set) in desired.iter_mut() {
        let slices = existing_by_ports.get(k).cloned().unwrap_or_default();
        let ports = desired_ports.get(k).cloned().unwrap_or_default();
        let (c, u, d) = reconcile_port_mapping(svc, &slices, set, ports, address_type, max);
        to_create.extend(c);
        to_update.extend(u);
        to_delete.extend(d);
    }
    for (k, slices) in &existing_by_ports {
        if !desired.contains_key(k) {
            to_delete.extend(slices.iter().cloned());
        }
    }
    if existing.len() == to_delete.len() && to_create.is_empty() {
        if to_delete.len() == 1 && is_placeholder_for(&to_delete[0], svc, address_type) {
            // Keep the placeholder rather than deleting and recreating it.
            to_delete.clear();
        } else {
            to_create.push(new_slice(svc, Vec::new(), address_type));
        }
    }
    // Creates paired with deletes become updates of the slices that would go.
    let mut i = 0;
    while i < to_delete.len() && !to_create.is_empty() {
        if to_delete[i].address_type == address_type && owned_by(&to_delete[i], svc) {
            let gone = to_delete.remove(i);
            if let Some(mut s) = to_create.pop() {
                s.metadata.name = gone.metadata.name.clone();
                s.metadata.generate_name = None;
                s.metadata.resource_version = gone.metadata.resource_version.clone();
                to_update.push(s);
            }
        } else {
            i += 1;
        }
    }
    plan.create.extend(to_create);
    plan.update.extend(to_update);
    plan.delete.extend(to_delete);
}

fn reconcile_port_mapping(
    svc: &Service,
    existing: &[EndpointSlice],
    desired: &mut BTreeMap<EndpointKey, Endpoint>,
    ports: Vec<EndpointPort>,
    address_type: &str,
    max: usize,
) -> (Vec<EndpointSlice>, Vec<EndpointSlice>, Vec<EndpointSlice>) {
    let mut by_name: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged: BTreeSet<String> = BTreeSet::new();
    let mut to_update: BTreeSet<String> = BTreeSet::new();
    let mut to_delete: BTreeSet<String> = BTreeSet::new();
    // 1. Keep the endpoints still wanted, updating those that changed.
    for s in existing {
        let name = s.name_any();
        let mut kept = Vec::new();
        let mut changed = false;
        for e in &s.endpoints {
            if let Some(want) = desired.remove(&endpoint_key(e)) {
                if !endpoints_equal_beyond_key(&want, e) {
                    changed = true;
                }
                kept.push(want);
            }
        }
        let (labels, labels_changed) = slice_labels(s.labels(), svc);
        if changed || kept.len() != s.endpoints.len() {
            if kept.is_empty() {
                to_delete.insert(name.clone());
                by_name.insert(name, s.clone());
            } else {
                let mut s = s.clone();
                s.endpoints = kept;
                s.metadata.labels = Some(labels);
                to_update.insert(name.clone());
                by_name.insert(name, s);
            }
        } else if labels_changed {
            let mut s = s.clone();
            s.metadata.labels = Some(labels);
            to_update.insert(name.clone());
            by_name.insert(name, s);
        } else {
            unchanged.insert(name.clone());
            by_name.insert(name, s.clone());
        }
    }
    let pop = |desired: &mut BTreeMap<EndpointKey, Endpoint>| desired.pop_first().map(|(_, e)| e);
    // 2. Fill the slices being updated, fullest first.
    if !desired.is_empty() && !to_update.is_empty() {
        let mut names: Vec<String> = to_update.iter().cloned().collect();
        names.sort_by_key(|n| std::cmp::Reverse(by_name.get(n).map_or(0, |s| s.endpoints.len())));
        for n in names {
            if let Some(s) = by_name.get_mut(&n) {
                while s.endpoints.len() < max {
                    let Some(e) = pop(desired) else { break };
                    s.endpoints.push(e);
                }
            }
        }
    }
    // 3. Put what is left into the unchanged slice closest to full, or new slices.
    let mut to_create = Vec::new();
    while !desired.is_empty() {
        let mut target: Option<String> = None;
        if desired.len() < max && !unchanged.is_empty() {
            let mut closest = max;
            for n in &unchanged {
                let len = by_name.get(n).map_or(0, |s| s.endpoints.len());
                if desired.len() + len <= max {
                    let diff = max - (desired.len() + len);
                    if diff < closest {
                        closest = diff;
                        target = Some(n.clone());
                    }
                }
            }
        }
        match target {
            Some(n) => {
                if let Some(s) = by_name.get_mut(&n) {
                    while s.endpoints.len() < max {
                        let Some(e) = pop(desired) else { break };
                        s.endpoints.push(e);
                    }
                }
                unchanged.remove(&n);
                to_update.insert(n);
            }
            None => {
                let mut s = new_slice(svc, ports.clone(), address_type);
                while s.endpoints.len() < max {
                    let Some(e) = pop(desired) else { break };
                    s.endpoints.push(e);
                }
                to_create.push(s);
            }
        }
    }
    let pick =
        |names: &BTreeSet<String>| names.iter().filter_map(|n| by_name.get(n).cloned()).collect::<Vec<_>>();
    (to_create, pick(&to_update), pick(&to_delete))
}
