//! The printers of each kind, grouped by API group, and the registry mapping
//! (group, kind) to them.

mod admission;
mod apps;
mod autoscaling;
mod batch;
mod cluster;
mod core;
mod event;
mod networking;
mod pod;
mod rbac;
mod storage;

use jiff::Timestamp;
use serde_json::Value;

use crate::columns::NAME;
use crate::value::{name, s, time_at};
use crate::{Column, Printer};

/// Every kind with a printer of its own, by API group and kind.
pub(crate) static REGISTRY: &[(&str, &str, &Printer)] = &[
    ("", "Pod", &pod::POD),
    ("", "PodTemplate", &core::POD_TEMPLATE),
    ("", "ReplicationController", &core::REPLICATION_CONTROLLER),
    ("", "Service", &core::SERVICE),
    ("", "Endpoints", &core::ENDPOINTS),
    ("", "Node", &core::NODE),
    ("", "Namespace", &core::NAMESPACE),
    ("", "Event", &event::EVENT),
    ("", "Secret", &core::SECRET),
    ("", "ConfigMap", &core::CONFIG_MAP),
    ("", "ServiceAccount", &core::SERVICE_ACCOUNT),
    ("", "PersistentVolume", &core::PERSISTENT_VOLUME),
    ("", "PersistentVolumeClaim", &core::PERSISTENT_VOLUME_CLAIM),
    ("", "ResourceQuota", &core::RESOURCE_QUOTA),
    ("", "ComponentStatus", &core::COMPONENT_STATUS),
    ("events.k8s.io", "Event", &event::EVENTS_V1_EVENT),
    ("apps", "Deployment", &apps::DEPLOYMENT),
    ("apps", "ReplicaSet", &apps::REPLICA_SET),
    ("apps", "StatefulSet", &apps::STATEFUL_SET),
    ("apps", "DaemonSet", &apps::DAEMON_SET),
    ("apps", "ControllerRevision", &apps::CONTROLLER_REVISION),
    ("batch", "Job", &batch::JOB),
    ("batch", "CronJob", &batch::CRON_JOB),
    ("autoscaling", "HorizontalPodAutoscaler", &autoscaling::HORIZONTAL_POD_AUTOSCALER),
    ("autoscaling", "Scale", &autoscaling::SCALE),
    ("networking.k8s.io", "Ingress", &networking::INGRESS),
    ("networking.k8s.io", "IngressClass", &networking::INGRESS_CLASS),
    ("networking.k8s.io", "NetworkPolicy", &networking::NETWORK_POLICY),
    ("networking.k8s.io", "ServiceCIDR", &networking::SERVICE_CIDR),
    ("discovery.k8s.io", "EndpointSlice", &networking::ENDPOINT_SLICE),
    ("rbac.authorization.k8s.io", "RoleBinding", &rbac::ROLE_BINDING),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding", &rbac::CLUSTER_ROLE_BINDING),
    ("storage.k8s.io", "StorageClass", &storage::STORAGE_CLASS),
    ("storage.k8s.io", "VolumeAttachment", &storage::VOLUME_ATTACHMENT),
    ("storage.k8s.io", "CSIDriver", &storage::CSI_DRIVER),
    ("storage.k8s.io", "CSINode", &storage::CSI_NODE),
    ("storage.k8s.io", "CSIStorageCapacity", &storage::CSI_STORAGE_CAPACITY),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        &admission::MUTATING_WEBHOOK_CONFIGURATION,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        &admission::VALIDATING_WEBHOOK_CONFIGURATION,
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy", &admission::VALIDATING_ADMISSION_POLICY),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
        &admission::VALIDATING_ADMISSION_POLICY_BINDING,
    ),
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy", &admission::MUTATING_ADMISSION_POLICY),
    (
        "admissionregistration.k8s.io",
        "MutatingAdmissionPolicyBinding",
        &admission::MUTATING_ADMISSION_POLICY_BINDING,
    ),
    ("policy", "PodDisruptionBudget", &cluster::POD_DISRUPTION_BUDGET),
    ("scheduling.k8s.io", "PriorityClass", &cluster::PRIORITY_CLASS),
    ("node.k8s.io", "RuntimeClass", &cluster::RUNTIME_CLASS),
    ("coordination.k8s.io", "Lease", &cluster::LEASE),
    ("coordination.k8s.io", "LeaseCandidate", &cluster::LEASE_CANDIDATE),
    ("certificates.k8s.io", "CertificateSigningRequest", &cluster::CERTIFICATE_SIGNING_REQUEST),
    ("certificates.k8s.io", "ClusterTrustBundle", &cluster::CLUSTER_TRUST_BUNDLE),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema", &cluster::FLOW_SCHEMA),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration", &cluster::PRIORITY_LEVEL_CONFIGURATION),
    ("resource.k8s.io", "DeviceClass", &cluster::DEVICE_CLASS),
    ("resource.k8s.io", "ResourceClaim", &cluster::RESOURCE_CLAIM),
    ("resource.k8s.io", "ResourceClaimTemplate", &cluster::RESOURCE_CLAIM_TEMPLATE),
    ("resource.k8s.io", "ResourceSlice", &cluster::RESOURCE_SLICE),
];

/// kube-apiserver's default table convertor, for kinds without a printer.
pub(crate) static DEFAULT: Printer = Printer {
    columns: &[
        NAME,
        Column {
            name: "Created At",
            type_: "date",
            format: "",
            description: "When the object was created, as an RFC 3339 UTC timestamp.",
            priority: 0,
        },
    ],
    row: default_row,
};

fn default_row(obj: &Value, _now: Timestamp) -> Vec<Value> {
    // Go formats the zero time too, as 0001-01-01T00:00:00Z.
    let created = time_at(obj, "/metadata/creationTimestamp").unwrap_or_else(crate::value::go_zero_time);
    vec![s(name(obj)), s(created.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())]
}

#[cfg(test)]
pub(crate) mod testing {
    //! Shared helpers for the printers' table-driven tests.

    use jiff::Timestamp;
    use serde_json::Value;

    use crate::Printer;

    /// The instant every test renders at.
    pub(crate) fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().expect("valid timestamp")
    }

    /// Renders `obj`, checking the row has exactly one cell per column.
    pub(crate) fn render(p: &Printer, obj: &Value) -> Vec<Value> {
        let cells = p.cells(obj, now());
        assert_eq!(cells.len(), p.columns.len(), "one cell per column for {obj}");
        cells
    }

    /// The column headers of a printer, in order.
    pub(crate) fn headers(p: &Printer) -> Vec<&'static str> {
        p.columns.iter().map(|c| c.name).collect()
    }

    /// The headers of the columns kubectl shows without `-o wide`.
    pub(crate) fn narrow_headers(p: &Printer) -> Vec<&'static str> {
        p.columns.iter().filter(|c| c.priority == 0).map(|c| c.name).collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::testing::{headers, render};
    use super::*;

    #[test]
    fn every_printer_renders_an_empty_object_with_one_cell_per_column() {
        for (group, kind, printer) in REGISTRY {
            let cells = render(printer, &json!({}));
            assert_eq!(cells.len(), printer.columns.len(), "{group}/{kind}");
            assert!(printer.columns.iter().any(|c| c.name == "Name"), "{group}/{kind} has a name column");
        }
    }

    #[test]
    fn registry_has_no_duplicates_and_lookup_finds_each_entry() {
        for (i, (group, kind, _)) in REGISTRY.iter().enumerate() {
            assert!(REGISTRY[..i].iter().all(|(g, k, _)| (g, k) != (group, kind)), "{group}/{kind} twice");
            assert!(crate::printer_for(group, kind).is_some());
        }
        assert!(crate::printer_for("rbac.authorization.k8s.io", "Role").is_none());
        assert!(crate::printer_for("apiextensions.k8s.io", "CustomResourceDefinition").is_none());
        assert!(crate::printer_for("", "LimitRange").is_none());
        assert!(crate::printer_for("apps", "Pod").is_none());
    }

    #[test]
    fn default_printer_shows_name_and_creation_time_in_utc() {
        let p = crate::default_printer();
        assert_eq!(headers(p), ["Name", "Created At"]);
        assert_eq!(p.columns[1].type_, "date");
        let role =
            json!({"metadata": {"name": "pod-reader", "creationTimestamp": "2024-04-30T22:15:03+02:00"}});
        assert_eq!(render(p, &role), [json!("pod-reader"), json!("2024-04-30T20:15:03Z")]);
        assert_eq!(
            render(p, &json!({"metadata": {"name": "x"}})),
            [json!("x"), json!("0001-01-01T00:00:00Z")]
        );
    }
}
