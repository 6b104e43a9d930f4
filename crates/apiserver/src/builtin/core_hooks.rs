//! Strategies of core/v1 kinds: defaults, validation and field selectors of pods,
//! services, namespaces, nodes, config maps, secrets, events and volumes.

use std::collections::BTreeSet;

use apimachinery::validation::{is_dns1123_label, is_dns1123_subdomain};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec,
    PodStatus, PodTemplate, Secret, Service,
};
use serde_json::{Value, json};

use super::defaults;
use crate::error::{FieldError, not_supported};
use crate::strategy::Hooks;

fn immutable(field: &str, value: Value) -> FieldError {
    FieldError::invalid(field, value, "field is immutable")
}

/// Validates containers of a pod spec under `path` (e.g. `spec.containers`).
fn validate_containers(
    cs: &[Container],
    path: &str,
    names: &mut BTreeSet<String>,
    errs: &mut Vec<FieldError>,
) {
    for (i, c) in cs.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if c.name.is_empty() {
            errs.push(FieldError::required(format!("{p}.name"), ""));
        } else {
            for m in is_dns1123_label(&c.name) {
                errs.push(FieldError::invalid(format!("{p}.name"), c.name.as_str(), m));
            }
            if !names.insert(c.name.clone()) {
                errs.push(crate::error::duplicate(format!("{p}.name"), &json!(c.name)));
            }
        }
        if c.image.as_deref().unwrap_or("").trim().is_empty() {
            errs.push(FieldError::required(format!("{p}.image"), ""));
        }
        if let Some(pp) = c.image_pull_policy.as_deref()
            && !matches!(pp, "Always" | "IfNotPresent" | "Never")
        {
            errs.push(not_supported(
                format!("{p}.imagePullPolicy"),
                &json!(pp),
                &["Always", "IfNotPresent", "Never"],
            ));
        }
        for (j, port) in c.ports.iter().flatten().enumerate() {
            if !(1..=65535).contains(&port.container_port) {
                errs.push(FieldError::invalid(
                    format!("{p}.ports[{j}].containerPort"),
                    port.container_port,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(proto) = port.protocol.as_deref()
                && !matches!(proto, "TCP" | "UDP" | "SCTP")
            {
                errs.push(not_supported(
                    format!("{p}.ports[{j}].protocol"),
                    &json!(proto),
                    &["SCTP", "TCP", "UDP"],
                ));
            }
        }
        let mut env_seen = BTreeSet::new();
        for (j, e) in c.env.iter().flatten().enumerate() {
            if e.name.is_empty() {
                errs.push(FieldError::required(format!("{p}.env[{j}].name"), ""));
            }
            let _ = env_seen.insert(e.name.clone());
        }
        let mut mounts = BTreeSet::new();
        for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
            if m.mount_path.is_empty() {
                errs.push(FieldError::required(format!("{p}.volumeMounts[{j}].mountPath"), ""));
            } else if !mounts.insert(m.mount_path.clone()) {
                errs.push(FieldError::invalid(
                    format!("{p}.volumeMounts[{j}].mountPath"),
                    m.mount_path.as_str(),
                    "must be unique",
                ));
            }
        }
    }
}

/// Validates a pod spec at `path` (`spec`, or `spec.template.spec` in workloads).
pub fn validate_pod_spec(s: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    if s.containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    validate_containers(&s.containers, &format!("{path}.containers"), &mut names, &mut errs);
    if let Some(ic) = &s.init_containers {
        validate_containers(ic, &format!("{path}.initContainers"), &mut names, &mut errs);
    }
    if let Some(rp) = s.restart_policy.as_deref()
        && !matches!(rp, "Always" | "OnFailure" | "Never")
    {
        errs.push(not_supported(
            format!("{path}.restartPolicy"),
            &json!(rp),
            &["Always", "OnFailure", "Never"],
        ));
    }
    if let Some(dp) = s.dns_policy.as_deref()
        && !matches!(dp, "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None")
    {
        errs.push(not_supported(
            format!("{path}.dnsPolicy"),
            &json!(dp),
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        ));
    }
    let mut vols = BTreeSet::new();
    for (i, v) in s.volumes.iter().flatten().enumerate() {
        let p = format!("{path}.volumes[{i}].name");
        if v.name.is_empty() {
            errs.push(FieldError::required(p, ""));
        } else {
            for m in is_dns1123_label(&v.name) {
                errs.push(FieldError::invalid(p.as_str(), v.name.as_str(), m));
            }
            if !vols.insert(v.name.clone()) {
                errs.push(crate::error::duplicate(p, &json!(v.name)));
            }
        }
    }
    for (i, c) in s.containers.iter().chain(s.init_containers.iter().flatten()).enumerate() {
        for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
            if !m.name.is_empty() && !vols.contains(&m.name) {
                let list = if i < s.containers.len() { "containers" } else { "initContainers" };
                let idx = if i < s.containers.len() { i } else { i - s.containers.len() };
                errs.push(crate::error::not_found_field(
                    format!("{path}.{list}[{idx}].volumeMounts[{j}].name"),
                    &json!(m.name),
                ));
            }
        }
    }
    if let Some(g) = s.termination_grace_period_seconds
        && g < 0
    {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            g,
            "must be greater than or equal to 0",
        ));
    }
    errs
}

fn qos_class(s: &PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in &s.containers {
        let r = c.resources.clone().unwrap_or_default();
        let req = r.requests.unwrap_or_default();
        let lim = r.limits.unwrap_or_default();
        if !req.is_empty() || !lim.is_empty() {
            any = true;
        }
        for res in ["cpu", "memory"] {
            match (req.get(res), lim.get(res)) {
                (Some(a), Some(b)) if a == b => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The grace period a delete of this pod gets: none for pods that never ran on a node or
/// already finished, else the request's or the pod's own.
pub fn pod_grace_period(obj: &Value, requested: Option<i64>) -> i64 {
    let bound = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    let phase = obj.pointer("/status/phase").and_then(Value::as_str).unwrap_or("");
    if !bound || phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    let own = obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30);
    requested.unwrap_or(own).max(0)
}

pub struct PodHooks;

impl Hooks<Pod> for PodHooks {
    fn default(&self, p: &mut Pod) {
        if let Some(s) = p.spec.as_mut() {
            defaults::pod_spec(s);
        }
    }

    fn prepare_for_create(&self, p: &mut Pod) {
        let qos = p.spec.as_ref().map(qos_class).unwrap_or("BestEffort");
        p.status = Some(PodStatus {
            phase: Some("Pending".into()),
            qos_class: Some(qos.into()),
            ..Default::default()
        });
    }

    fn validate(&self, p: &Pod) -> Vec<FieldError> {
        match &p.spec {
            Some(s) => validate_pod_spec(s, "spec"),
            None => vec![FieldError::required("spec", "")],
        }
    }

    fn validate_update(&self, new: &Pod, old: &Pod) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if let (Some(n), Some(o)) = (&new.spec, &old.spec) {
            // Only images, activeDeadlineSeconds, tolerations (additions) and scheduling
            // gates (removals) may change in a running pod's spec.
            let mut n2 = n.clone();
            for (a, b) in n2.containers.iter_mut().zip(o.containers.iter()) {
                a.image = b.image.clone();
            }
            if let (Some(ni), Some(oi)) = (n2.init_containers.as_mut(), o.init_containers.as_ref()) {
                for (a, b) in ni.iter_mut().zip(oi.iter()) {
                    a.image = b.image.clone();
                }
            }
            n2.active_deadline_seconds = o.active_deadline_seconds;
            n2.tolerations = o.tolerations.clone();
            n2.scheduling_gates = o.scheduling_gates.clone();
            n2.termination_grace_period_seconds = o.termination_grace_period_seconds;
            if o.node_name.as_deref().unwrap_or("").is_empty() {
                n2.node_name = o.node_name.clone();
            }
            if n2 != *o {
                errs.push(FieldError::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
        }
        errs
    }

    fn field_labels(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("spec.nodeName", "spec.nodeName"),
            ("spec.restartPolicy", "spec.restartPolicy"),
            ("spec.schedulerName", "spec.schedulerName"),
            ("spec.serviceAccountName", "spec.serviceAccountName"),
            ("spec.hostNetwork", "spec.hostNetwork"),
            ("status.phase", "status.phase"),
            ("status.podIP", "status.podIP"),
            ("status.nominatedNodeName", "status.nominatedNodeName"),
        ]
    }
}

pub struct PodTemplateHooks;

impl Hooks<PodTemplate> for PodTemplateHooks {
    fn default(&self, t: &mut PodTemplate) {
        if let Some(t) = t.template.as_mut() {
            defaults::pod_template(t);
        }
    }
}

pub struct ServiceHooks;

impl Hooks<Service> for ServiceHooks {
    fn default(&self, s: &mut Service) {
        let Some(spec) = s.spec.as_mut() else { return };
        if spec.type_.is_none() {
            spec.type_ = Some(if spec.external_name.is_some() { "ExternalName" } else { "ClusterIP" }.into());
        }
        let ty = spec.type_.clone().unwrap_or_default();
        if spec.session_affinity.is_none() {
            spec.session_affinity = Some("None".into());
        }
        for p in spec.ports.iter_mut().flatten() {
            if p.protocol.is_none() {
                p.protocol = Some("TCP".into());
            }
            if p.target_port.is_none() {
                p.target_port = Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p.port));
            }
        }
        if ty != "ExternalName" && spec.internal_traffic_policy.is_none() {
            spec.internal_traffic_policy = Some("Cluster".into());
        }
        if (ty == "NodePort" || ty == "LoadBalancer") && spec.external_traffic_policy.is_none() {
            spec.external_traffic_policy = Some("Cluster".into());
        }
        if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
            spec.allocate_load_balancer_node_ports = Some(true);
        }
    }

    fn prepare_for_create(&self, s: &mut Service) {
        s.status = Some(Default::default());
        if let Some(st) = s.status.as_mut() {
            st.load_balancer = Some(Default::default());
        }
    }

    fn validate(&self, s: &Service) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(spec) = &s.spec else { return vec![FieldError::required("spec", "")] };
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
            errs.push(not_supported(
                "spec.type",
                &json!(ty),
                &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
            ));
        }
        let ports = spec.ports.clone().unwrap_or_default();
        if ty != "ExternalName" && ports.is_empty() && spec.cluster_ip.as_deref() != Some("None") {
            errs.push(FieldError::required("spec.ports", ""));
        }
        if ty == "ExternalName" && spec.external_name.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        }
        let mut names = BTreeSet::new();
        for (i, p) in ports.iter().enumerate() {
            let name = p.name.clone().unwrap_or_default();
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(format!("spec.ports[{i}].name"), ""));
            }
            if !name.is_empty() && !names.insert(name.clone()) {
                errs.push(crate::error::duplicate(format!("spec.ports[{i}].name"), &json!(name)));
            }
            if !(1..=65535).contains(&p.port) {
                errs.push(FieldError::invalid(
                    format!("spec.ports[{i}].port"),
                    p.port,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(proto) = p.protocol.as_deref()
                && !matches!(proto, "TCP" | "UDP" | "SCTP")
            {
                errs.push(not_supported(
                    format!("spec.ports[{i}].protocol"),
                    &json!(proto),
                    &["SCTP", "TCP", "UDP"],
                ));
            }
            if p.node_port.is_some() && ty == "ClusterIP" {
                errs.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
        errs
    }

    fn validate_update(&self, new: &Service, old: &Service) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        let (Some(n), Some(o)) = (&new.spec, &old.spec) else { return errs };
        let old_ip = o.cluster_ip.clone().unwrap_or_default();
        let new_ip = n.cluster_ip.clone().unwrap_or_default();
        let type_change_to_external = n.type_.as_deref() == Some("ExternalName");
        if !old_ip.is_empty() && old_ip != new_ip && !type_change_to_external {
            errs.push(FieldError::invalid("spec.clusterIPs[0]", json!([new_ip]), "may not change once set"));
        }
        errs
    }
}

pub struct NamespaceHooks;

impl Hooks<Namespace> for NamespaceHooks {
    fn default(&self, ns: &mut Namespace) {
        let name = ns.metadata.name.clone().unwrap_or_default();
        if !name.is_empty() {
            ns.metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert("kubernetes.io/metadata.name".into(), name);
        }
    }

    fn prepare_for_create(&self, ns: &mut Namespace) {
        ns.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
            phase: Some("Active".into()),
            ..Default::default()
        });
        let spec = ns.spec.get_or_insert_with(Default::default);
        let fins = spec.finalizers.get_or_insert_with(Vec::new);
        if !fins.iter().any(|f| f == "kubernetes") {
            fins.push("kubernetes".into());
        }
    }

    fn prepare_for_update(&self, new: &mut Namespace, old: &Namespace) {
        new.spec = old.spec.clone();
    }

    fn field_labels(&self) -> &'static [(&'static str, &'static str)] {
        &[("status.phase", "status.phase")]
    }
}

pub struct NodeHooks;

impl Hooks<Node> for NodeHooks {
    fn field_labels(&self) -> &'static [(&'static str, &'static str)] {
        &[("spec.unschedulable", "spec.unschedulable")]
    }
}

/// Config map and secret keys: `[-._a-zA-Z0-9]+`, at most 253 bytes, not `.` or `..`.
fn validate_data_keys<'a>(keys: impl Iterator<Item = &'a String>, path: &str, errs: &mut Vec<FieldError>) {
    for k in keys {
        let mut msgs = Vec::new();
        if k.is_empty() || k.len() > 253 {
            msgs.push("must be no more than 253 characters".to_string());
        }
        if !k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
            msgs.push(
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
                    .to_string(),
            );
        }
        if k == "." || k == ".." {
            msgs.push("must not be '.' or '..'".to_string());
        }
        for m in msgs {
            errs.push(FieldError::invalid(path, k.as_str(), m));
        }
    }
}

pub struct ConfigMapHooks;

impl Hooks<ConfigMap> for ConfigMapHooks {
    fn validate(&self, c: &ConfigMap) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Some(d) = &c.data {
            validate_data_keys(d.keys(), "data", &mut errs);
        }
        if let Some(b) = &c.binary_data {
            validate_data_keys(b.keys(), "binaryData", &mut errs);
            for k in b.keys() {
                if c.data.as_ref().is_some_and(|d| d.contains_key(k)) {
                    errs.push(FieldError::invalid(
                        "data",
                        k.as_str(),
                        "duplicate of key present in binaryData",
                    ));
                }
            }
        }
        errs
    }

    fn validate_update(&self, new: &ConfigMap, old: &ConfigMap) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if old.immutable == Some(true) {
            if new.immutable != Some(true) {
                errs.push(FieldError::forbidden("immutable", "field is immutable when `immutable` is set"));
            }
            if new.data != old.data {
                errs.push(FieldError::forbidden("data", "field is immutable when `immutable` is set"));
            }
            if new.binary_data != old.binary_data {
                errs.push(FieldError::forbidden("binaryData", "field is immutable when `immutable` is set"));
            }
        }
        errs
    }
}

pub struct SecretHooks;

impl Hooks<Secret> for SecretHooks {
    fn default(&self, s: &mut Secret) {
        if s.type_.as_deref().unwrap_or("").is_empty() {
            s.type_ = Some("Opaque".into());
        }
        // `stringData` is write-only: merged into `data` on the way in.
        if let Some(sd) = s.string_data.take() {
            let data = s.data.get_or_insert_with(Default::default);
            for (k, v) in sd {
                data.insert(k, k8s_openapi::ByteString(v.into_bytes()));
            }
        }
    }

    fn validate(&self, s: &Secret) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Some(d) = &s.data {
            validate_data_keys(d.keys(), "data", &mut errs);
        }
        let has = |k: &str| s.data.as_ref().is_some_and(|d| d.contains_key(k));
        match s.type_.as_deref().unwrap_or("Opaque") {
            "kubernetes.io/tls" => {
                for k in ["tls.crt", "tls.key"] {
                    if !has(k) {
                        errs.push(FieldError::required(format!("data[{k}]"), ""));
                    }
                }
            }
            "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
                errs.push(FieldError::required("data[.dockerconfigjson]", ""));
            }
            "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
                errs.push(FieldError::required("data[username]", ""));
            }
            "kubernetes.io/service-account-token" => {
                let ann = s.metadata.annotations.as_ref();
                if ann.and_then(|a| a.get("kubernetes.io/service-account.name")).is_none() {
                    errs.push(FieldError::required(
                        "metadata.annotations[kubernetes.io/service-account.name]",
                        "",
                    ));
                }
            }
            _ => {}
        }
        let size: usize = s.data.iter().flatten().map(|(_, v)| v.0.len()).sum();
        if size > 1024 * 1024 {
            errs.push(FieldError::too_long("data", 1024 * 1024));
        }
        errs
    }

    fn validate_update(&self, new: &Secret, old: &Secret) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if new.type_ != old.type_ {
            errs.push(immutable("type", json!(new.type_)));
        }
        if old.immutable == Some(true) && (new.data != old.data || new.immutable != Some(true)) {
            errs.push(FieldError::forbidden("data", "field is immutable when `immutable` is set"));
        }
        errs
    }

    fn field_labels(&self) -> &'static [(&'static str, &'static str)] {
        &[("type", "type")]
    }
}

pub struct EventHooks;

impl Hooks<Event> for EventHooks {
    fn field_labels(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("involvedObject.kind", "involvedObject.kind"),
            ("involvedObject.namespace", "involvedObject.namespace"),
            ("involvedObject.name", "involvedObject.name"),
            ("involvedObject.uid", "involvedObject.uid"),
            ("involvedObject.apiVersion", "involvedObject.apiVersion"),
            ("involvedObject.resourceVersion", "involvedObject.resourceVersion"),
            ("involvedObject.fieldPath", "involvedObject.fieldPath"),
            ("reason", "reason"),
            ("reportingComponent", "reportingComponent"),
            ("source", "source.component"),
            ("type", "type"),
        ]
    }

    fn validate(&self, e: &Event) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if e.involved_object.name.as_deref().unwrap_or("").is_empty() && e.involved_object.kind.is_none() {
            errs.push(FieldError::required("involvedObject", ""));
        }
        errs
    }
}

pub struct PvHooks;

impl Hooks<PersistentVolume> for PvHooks {
    fn default(&self, pv: &mut PersistentVolume) {
        if let Some(s) = pv.spec.as_mut() {
            if s.persistent_volume_reclaim_policy.is_none() {
                s.persistent_volume_reclaim_policy = Some("Retain".into());
            }
            if s.volume_mode.is_none() {
                s.volume_mode = Some("Filesystem".into());
            }
        }
    }

    fn prepare_for_create(&self, pv: &mut PersistentVolume) {
        pv.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
    }
}

pub struct PvcHooks;

impl Hooks<PersistentVolumeClaim> for PvcHooks {
    fn default(&self, pvc: &mut PersistentVolumeClaim) {
        if let Some(s) = pvc.spec.as_mut()
            && s.volume_mode.is_none()
        {
            s.volume_mode = Some("Filesystem".into());
        }
    }

    fn prepare_for_create(&self, pvc: &mut PersistentVolumeClaim) {
        pvc.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
    }

    fn validate(&self, pvc: &PersistentVolumeClaim) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let Some(s) = &pvc.spec else { return vec![FieldError::required("spec", "")] };
        if s.access_modes.as_ref().is_none_or(|a| a.is_empty()) {
            errs.push(FieldError::required("spec.accessModes", "at least 1 access mode is required"));
        }
        let storage = s.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage"));
        if storage.is_none() && s.data_source.is_none() {
            errs.push(FieldError::required("spec.resources[storage]", ""));
        }
        errs
    }
}

/// Checks a DNS-1123 subdomain value, as several kinds require for references.
pub fn subdomain_errors(field: &str, v: &str) -> Vec<FieldError> {
    is_dns1123_subdomain(v).into_iter().map(|m| FieldError::invalid(field, v, m)).collect()
}
