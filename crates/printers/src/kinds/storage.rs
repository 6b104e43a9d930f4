//! Printers of storage.k8s.io: StorageClass, VolumeAttachment, CSIDriver, CSINode and
//! CSIStorageCapacity.

use jiff::Timestamp;
use serde_json::Value;

use super::core::age;
use crate::columns::{AGE, NAME, col};
use crate::quantity::quantity_string;
use crate::value::{annotation, arr_at, at, bool_at, int, name, opt_bool_at, opt_str_at, s, str_at};
use crate::{Column, Printer};

pub(crate) static STORAGE_CLASS: Printer = Printer {
    columns: &[
        NAME,
        col("Provisioner", "string", "The volume plugin or CSI driver provisioning volumes of this class."),
        col("ReclaimPolicy", "string", "What happens to provisioned volumes when released."),
        col("VolumeBindingMode", "string", "When volumes are bound: Immediate or WaitForFirstConsumer."),
        col("AllowVolumeExpansion", "string", "Whether volumes of this class can be resized."),
        AGE,
    ],
    row: storage_class_row,
};

fn storage_class_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let is_default =
        ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
            .iter()
            .any(|key| annotation(obj, key) == Some("true"));
    let shown_name = if is_default { format!("{} (default)", name(obj)) } else { name(obj).to_string() };
    vec![
        s(shown_name),
        s(str_at(obj, "/provisioner")),
        s(opt_str_at(obj, "/reclaimPolicy").unwrap_or("Delete")),
        s(opt_str_at(obj, "/volumeBindingMode").unwrap_or("Immediate")),
        Value::Bool(bool_at(obj, "/allowVolumeExpansion")),
        age(obj, now),
    ]
}

pub(crate) static VOLUME_ATTACHMENT: Printer = Printer {
    columns: &[
        NAME,
        // Upstream marks this column with the "name" format too.
        Column { format: "name", ..col("Attacher", "string", "The driver attaching the volume.") },
        col("PV", "string", "The persistent volume being attached."),
        col("Node", "string", "The node the volume is attached to."),
        col("Attached", "boolean", "Whether the attach operation succeeded."),
        AGE,
    ],
    row: volume_attachment_row,
};

fn volume_attachment_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        s(name(obj)),
        s(str_at(obj, "/spec/attacher")),
        s(str_at(obj, "/spec/source/persistentVolumeName")),
        s(str_at(obj, "/spec/nodeName")),
        Value::Bool(bool_at(obj, "/status/attached")),
        age(obj, now),
    ]
}

pub(crate) static CSI_DRIVER: Printer = Printer {
    columns: &[
        NAME,
        col("AttachRequired", "boolean", "Whether volumes need an attach step before mounting."),
        col("PodInfoOnMount", "boolean", "Whether pod information is passed to the driver on mount."),
        col("StorageCapacity", "boolean", "Whether the scheduler considers the driver's reported capacity."),
        col("TokenRequests", "string", "Audiences of service account tokens passed to the driver."),
        col(
            "RequiresRepublish",
            "boolean",
            "Whether the driver wants NodePublishVolume called periodically.",
        ),
        col("Modes", "string", "Volume lifecycle modes the driver supports."),
        AGE,
    ],
    row: csi_driver_row,
};

fn csi_driver_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let modes: Vec<&str> =
        arr_at(obj, "/spec/volumeLifecycleModes").iter().filter_map(Value::as_str).collect();
    let token_requests = match at(obj, "/spec/tokenRequests") {
        None => "<unset>".to_string(),
        Some(_) => arr_at(obj, "/spec/tokenRequests")
            .iter()
            .map(|t| str_at(t, "/audience"))
            .collect::<Vec<_>>()
            .join(","),
    };
    vec![
        s(name(obj)),
        Value::Bool(opt_bool_at(obj, "/spec/attachRequired").unwrap_or(true)),
        Value::Bool(bool_at(obj, "/spec/podInfoOnMount")),
        Value::Bool(bool_at(obj, "/spec/storageCapacity")),
        s(token_requests),
        Value::Bool(bool_at(obj, "/spec/requiresRepublish")),
        s(if modes.is_empty() { "<none>".to_string() } else { modes.join(",") }),
        age(obj, now),
    ]
}

pub(crate) static CSI_NODE: Printer = Printer {
    columns: &[NAME, col("Drivers", "integer", "Number of CSI drivers registered on the node."), AGE],
    row: csi_node_row,
};

fn csi_node_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let drivers = i64::try_from(arr_at(obj, "/spec/drivers").len()).unwrap_or(i64::MAX);
    vec![s(name(obj)), int(drivers), age(obj, now)]
}

pub(crate) static CSI_STORAGE_CAPACITY: Printer = Printer {
    columns: &[
        NAME,
        col("StorageClassName", "string", "The storage class the capacity applies to."),
        col("Capacity", "string", "Capacity available for new volumes in the topology segment."),
    ],
    row: csi_storage_capacity_row,
};

fn csi_storage_capacity_row(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let capacity = match at(obj, "/capacity") {
        None => "<unset>".to_string(),
        some => quantity_string(some),
    };
    vec![s(name(obj)), s(str_at(obj, "/storageClassName")), s(capacity)]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::render;

    #[test]
    fn storage_classes_mark_the_default() {
        let sc = json!({"metadata": {"name": "standard", "creationTimestamp": "2024-04-30T12:00:00Z",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true});
        assert_eq!(
            render(&STORAGE_CLASS, &sc),
            [
                json!("standard (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(true),
                json!("24h")
            ]
        );
        let minimal = json!({"metadata": {"name": "fast", "annotations": {
            "storageclass.beta.kubernetes.io/is-default-class": "false"}}, "provisioner": "csi.example.com"});
        assert_eq!(
            render(&STORAGE_CLASS, &minimal)[..5],
            [json!("fast"), json!("csi.example.com"), json!("Delete"), json!("Immediate"), json!(false)]
        );
    }

    #[test]
    fn csi_objects_and_attachments() {
        let driver = json!({"metadata": {"name": "ebs.csi.aws.com"}, "spec": {"attachRequired": true,
            "podInfoOnMount": false, "volumeLifecycleModes": ["Persistent", "Ephemeral"],
            "tokenRequests": [{"audience": "sts.amazonaws.com"}, {"audience": "vault"}]}});
        assert_eq!(
            render(&CSI_DRIVER, &driver)[..7],
            [
                json!("ebs.csi.aws.com"),
                json!(true),
                json!(false),
                json!(false),
                json!("sts.amazonaws.com,vault"),
                json!(false),
                json!("Persistent,Ephemeral")
            ]
        );
        let bare =
            render(&CSI_DRIVER, &json!({"metadata": {"name": "d"}, "spec": {"attachRequired": false}}));
        assert_eq!(
            bare[1..7],
            [json!(false), json!(false), json!(false), json!("<unset>"), json!(false), json!("<none>")]
        );

        let node =
            json!({"metadata": {"name": "node-1"}, "spec": {"drivers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(render(&CSI_NODE, &node)[1], json!(2));

        let va = json!({"metadata": {"name": "csi-123"}, "spec": {"attacher": "ebs.csi.aws.com", "nodeName": "node-1",
            "source": {"persistentVolumeName": "pv-1"}}, "status": {"attached": true}});
        assert_eq!(
            render(&VOLUME_ATTACHMENT, &va)[..5],
            [json!("csi-123"), json!("ebs.csi.aws.com"), json!("pv-1"), json!("node-1"), json!(true)]
        );

        let cap =
            json!({"metadata": {"name": "csisc-x"}, "storageClassName": "standard", "capacity": "2048Mi"});
        assert_eq!(render(&CSI_STORAGE_CAPACITY, &cap), [json!("csisc-x"), json!("standard"), json!("2Gi")]);
        assert_eq!(render(&CSI_STORAGE_CAPACITY, &json!({}))[2], json!("<unset>"));
    }
}
