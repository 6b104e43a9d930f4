//! Printers of the apps group: Deployment, ReplicaSet, StatefulSet, DaemonSet and
//! ControllerRevision.

use jiff::Timestamp;
use serde_json::Value;

use super::core::age;
use crate::Printer;
use crate::columns::{AGE, CONTAINERS, IMAGES, NAME, SELECTOR, col};
use crate::format::{container_cells, format_label_selector, format_labels, selector_string};
use crate::value::{arr_at, at, bool_at, i64_at, int, name, opt_i64_at, s, str_at};

/// `spec.replicas`, which the apps/v1 defaulting sets to 1 when omitted.
fn desired_replicas(obj: &Value) -> i64 {
    opt_i64_at(obj, "/spec/replicas").unwrap_or(1)
}

pub(crate) static DEPLOYMENT: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", "Ready replicas out of the desired number."),
        col("Up-to-date", "string", "Replicas running the latest pod template."),
        col("Available", "string", "Replicas available for at least minReadySeconds."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: deployment_row,
};

fn deployment_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(obj, "/spec/template");
    // Unlike its siblings, the Deployment printer shows a nil or empty selector as "".
    let selector = selector_string(at(obj, "/spec/selector")).unwrap_or_else(|()| "<invalid>".to_string());
    vec![
        s(name(obj)),
        s(format!("{}/{}", i64_at(obj, "/status/readyReplicas"), desired_replicas(obj))),
        int(i64_at(obj, "/status/updatedReplicas")),
        int(i64_at(obj, "/status/availableReplicas")),
        age(obj, now),
        names,
        images,
        s(selector),
    ]
}

pub(crate) static REPLICA_SET: Printer = Printer {
    columns: &[
        NAME,
        col("Desired", "integer", "Number of replicas asked for."),
        col("Current", "integer", "Number of replicas that exist."),
        col("Ready", "integer", "Number of replicas that are ready."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: replica_set_row,
};

fn replica_set_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(obj, "/spec/template");
    vec![
        s(name(obj)),
        int(desired_replicas(obj)),
        int(i64_at(obj, "/status/replicas")),
        int(i64_at(obj, "/status/readyReplicas")),
        age(obj, now),
        names,
        images,
        s(format_label_selector(at(obj, "/spec/selector"))),
    ]
}

pub(crate) static STATEFUL_SET: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", "Ready replicas out of the desired number."),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    row: stateful_set_row,
};

fn stateful_set_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(obj, "/spec/template");
    vec![
        s(name(obj)),
        s(format!("{}/{}", i64_at(obj, "/status/readyReplicas"), desired_replicas(obj))),
        age(obj, now),
        names,
        images,
    ]
}

pub(crate) static DAEMON_SET: Printer = Printer {
    columns: &[
        NAME,
        col("Desired", "integer", "Nodes that should run the daemon pod."),
        col("Current", "integer", "Nodes running at least one daemon pod."),
        col("Ready", "integer", "Nodes whose daemon pod is ready."),
        col("Up-to-date", "integer", "Nodes running the latest pod template."),
        col("Available", "integer", "Nodes whose daemon pod has been available for minReadySeconds."),
        col("Node Selector", "string", "Node labels the daemon pods are restricted to."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: daemon_set_row,
};

fn daemon_set_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(obj, "/spec/template");
    vec![
        s(name(obj)),
        int(i64_at(obj, "/status/desiredNumberScheduled")),
        int(i64_at(obj, "/status/currentNumberScheduled")),
        int(i64_at(obj, "/status/numberReady")),
        int(i64_at(obj, "/status/updatedNumberScheduled")),
        int(i64_at(obj, "/status/numberAvailable")),
        s(format_labels(at(obj, "/spec/template/spec/nodeSelector"))),
        age(obj, now),
        names,
        images,
        s(format_label_selector(at(obj, "/spec/selector"))),
    ]
}

pub(crate) static CONTROLLER_REVISION: Printer = Printer {
    columns: &[
        NAME,
        col("Controller", "string", "The object owning this revision, as kind.group/name."),
        col("Revision", "string", "Revision number of the stored state."),
        AGE,
    ],
    row: controller_revision_row,
};

fn controller_revision_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![s(name(obj)), s(controller_of(obj)), int(i64_at(obj, "/revision")), age(obj, now)]
}

/// The controlling owner reference as `kind.group/name` in lower case (`kind/name`
/// for the core group), or "<none>".
pub(crate) fn controller_of(obj: &Value) -> String {
    let Some(owner) = arr_at(obj, "/metadata/ownerReferences").iter().find(|r| bool_at(r, "/controller"))
    else {
        return "<none>".to_string();
    };
    let api_version = str_at(owner, "/apiVersion");
    let group = match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [group, _version] => *group,
        _ => "",
    };
    let kind = str_at(owner, "/kind");
    let owner_name = str_at(owner, "/name");
    let group_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
    if group_kind.is_empty() {
        owner_name.to_string()
    } else {
        format!("{}/{owner_name}", group_kind.to_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::kinds::testing::{headers, narrow_headers, render};

    fn workload(spec: Value, status: Value) -> Value {
        let mut spec = spec;
        spec["template"] = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            {"name": "nginx", "image": "nginx:1.27"}, {"name": "sidecar", "image": "envoy:v1.30"}]}});
        json!({"metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-05-01T09:30:00Z"},
               "spec": spec, "status": status})
    }

    #[test]
    fn deployments() {
        assert_eq!(narrow_headers(&DEPLOYMENT), ["Name", "Ready", "Up-to-date", "Available", "Age"]);
        assert_eq!(headers(&DEPLOYMENT)[5..], ["Containers", "Images", "Selector"]);
        let d = workload(
            json!({"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}),
            json!({"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}),
        );
        assert_eq!(
            render(&DEPLOYMENT, &d),
            [
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("150m"),
                json!("nginx,sidecar"),
                json!("nginx:1.27,envoy:v1.30"),
                json!("app=web")
            ]
        );
        let fresh = workload(
            json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]}}),
            json!({}),
        );
        let cells = render(&DEPLOYMENT, &fresh);
        assert_eq!((&cells[1], &cells[2], &cells[7]), (&json!("0/1"), &json!(0), &json!("<invalid>")));
        let no_selector = workload(json!({"replicas": 0}), json!({}));
        let cells = render(&DEPLOYMENT, &no_selector);
        assert_eq!((&cells[1], &cells[7]), (&json!("0/0"), &json!("")));
    }

    #[test]
    fn replica_sets_stateful_sets_and_daemon_sets() {
        let rs = workload(
            json!({"replicas": 2, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f8"}}}),
            json!({"replicas": 2, "readyReplicas": 1}),
        );
        assert_eq!(
            render(&REPLICA_SET, &rs),
            [
                json!("web"),
                json!(2),
                json!(2),
                json!(1),
                json!("150m"),
                json!("nginx,sidecar"),
                json!("nginx:1.27,envoy:v1.30"),
                json!("app=web,pod-template-hash=5d4f8")
            ]
        );
        assert_eq!(render(&REPLICA_SET, &workload(json!({}), json!({})))[7], json!("<none>"));

        let sts = workload(json!({"replicas": 3, "serviceName": "web"}), json!({"readyReplicas": 3}));
        assert_eq!(
            render(&STATEFUL_SET, &sts),
            [
                json!("web"),
                json!("3/3"),
                json!("150m"),
                json!("nginx,sidecar"),
                json!("nginx:1.27,envoy:v1.30")
            ]
        );

        let mut ds = workload(
            json!({"selector": {"matchLabels": {"app": "agent"}}}),
            json!({"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                   "updatedNumberScheduled": 3, "numberAvailable": 2}),
        );
        ds["spec"]["template"]["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "linux"});
        let cells = render(&DAEMON_SET, &ds);
        assert_eq!(
            cells[1..8],
            [
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux"),
                json!("150m")
            ]
        );
        assert_eq!(cells[10], json!("app=agent"));
        ds["spec"]["template"]["spec"]["nodeSelector"] = json!(null);
        assert_eq!(render(&DAEMON_SET, &ds)[6], json!("<none>"));
    }

    #[test]
    fn controller_revisions_name_their_owner() {
        let rev = json!({"metadata": {"name": "web-7b9c", "creationTimestamp": "2024-05-01T11:00:00Z",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Pod", "name": "other", "controller": false},
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}]},
            "revision": 2});
        assert_eq!(
            render(&CONTROLLER_REVISION, &rev),
            [json!("web-7b9c"), json!("statefulset.apps/web"), json!(2), json!("60m")]
        );
        let core_owner = json!({"metadata": {"name": "r", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ReplicationController", "name": "rc", "controller": true}]}});
        assert_eq!(render(&CONTROLLER_REVISION, &core_owner)[1], json!("replicationcontroller/rc"));
        assert_eq!(render(&CONTROLLER_REVISION, &json!({}))[1], json!("<none>"));
    }
}
