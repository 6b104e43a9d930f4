//! Printers of the smaller cluster-level groups: policy (PodDisruptionBudget),
//! scheduling, node, coordination, certificates, flowcontrol and resource.

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::core::age;
use crate::Printer;
use crate::columns::{AGE, NAME, col};
use crate::duration::human_duration;
use crate::format::int_or_string;
use crate::value::{arr_at, at, bool_at, i64_at, int, name, opt_i64_at, opt_str_at, s, str_at};

pub(crate) static POD_DISRUPTION_BUDGET: Printer = Printer {
    columns: &[
        NAME,
        col("Min Available", "string", "Pods that must stay available, as a number or percentage."),
        col("Max Unavailable", "string", "Pods that may be unavailable, as a number or percentage."),
        col("Allowed Disruptions", "integer", "Pods that may be evicted right now."),
        AGE,
    ],
    row: pod_disruption_budget_row,
};

fn pod_disruption_budget_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let bound = |ptr: &str| at(obj, ptr).map_or_else(|| "N/A".to_string(), int_or_string);
    vec![
        s(name(obj)),
        s(bound("/spec/minAvailable")),
        s(bound("/spec/maxUnavailable")),
        int(i64_at(obj, "/status/disruptionsAllowed")),
        age(obj, now),
    ]
}

pub(crate) static PRIORITY_CLASS: Printer = Printer {
    columns: &[
        NAME,
        col("Value", "integer", "Priority of pods using this class; higher schedules first."),
        col("Global-Default", "boolean", "Whether pods without a priority class get this one."),
        AGE,
        // Not marked wide upstream, so plain `kubectl get` shows it too.
        col("PreemptionPolicy", "string", "Whether pods of this class may preempt lower-priority pods."),
    ],
    row: priority_class_row,
};

fn priority_class_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        s(name(obj)),
        int(i64_at(obj, "/value")),
        Value::Bool(bool_at(obj, "/globalDefault")),
        age(obj, now),
        s(str_at(obj, "/preemptionPolicy")),
    ]
}

pub(crate) static RUNTIME_CLASS: Printer = Printer {
    columns: &[NAME, col("Handler", "string", "The CRI handler running pods of this class."), AGE],
    row: runtime_class_row,
};

fn runtime_class_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![s(name(obj)), s(str_at(obj, "/handler")), age(obj, now)]
}

pub(crate) static LEASE: Printer = Printer {
    columns: &[NAME, col("Holder", "string", "Identity of the current holder of the lease."), AGE],
    row: lease_row,
};

fn lease_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![s(name(obj)), s(str_at(obj, "/spec/holderIdentity")), age(obj, now)]
}

pub(crate) static LEASE_CANDIDATE: Printer = Printer {
    columns: &[
        NAME,
        col("LeaseName", "string", "The lease this candidate competes for."),
        col("BinaryVersion", "string", "Binary version of the candidate."),
        col("EmulationVersion", "string", "Emulation version of the candidate."),
        AGE,
    ],
    row: lease_candidate_row,
};

fn lease_candidate_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        s(name(obj)),
        s(str_at(obj, "/spec/leaseName")),
        s(str_at(obj, "/spec/binaryVersion")),
        s(str_at(obj, "/spec/emulationVersion")),
        age(obj, now),
    ]
}

pub(crate) static CERTIFICATE_SIGNING_REQUEST: Printer = Printer {
    columns: &[
        NAME,
        AGE,
        col("SignerName", "string", "The signer asked to sign the certificate."),
        col("Requestor", "string", "The user who created the request."),
        col("RequestedDuration", "string", "Validity duration asked for the certificate."),
        col("Condition", "string", "Approval state, plus Failed and Issued when they apply."),
    ],
    row: certificate_signing_request_row,
};

fn certificate_signing_request_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let conditions = arr_at(obj, "/status/conditions");
    let has = |kind: &str| conditions.iter().any(|c| str_at(c, "/type") == kind);
    let mut condition = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if !str_at(obj, "/status/certificate").is_empty() {
        condition.push_str(",Issued");
    }
    let requested = opt_i64_at(obj, "/spec/expirationSeconds")
        .map_or_else(|| "<none>".to_string(), |secs| human_duration(SignedDuration::from_secs(secs)));
    vec![
        s(name(obj)),
        age(obj, now),
        s(non_empty_or_none(str_at(obj, "/spec/signerName"))),
        s(str_at(obj, "/spec/username")),
        s(requested),
        s(condition),
    ]
}

fn non_empty_or_none(v: &str) -> &str {
    if v.is_empty() { "<none>" } else { v }
}

pub(crate) static CLUSTER_TRUST_BUNDLE: Printer = Printer {
    columns: &[NAME, col("SignerName", "string", "The signer whose trust anchors the bundle holds.")],
    row: cluster_trust_bundle_row,
};

fn cluster_trust_bundle_row(obj: &Value, _now: Timestamp) -> Vec<Value> {
    vec![s(name(obj)), s(non_empty_or_none(str_at(obj, "/spec/signerName")))]
}

pub(crate) static FLOW_SCHEMA: Printer = Printer {
    columns: &[
        NAME,
        col("PriorityLevel", "string", "The priority level matching requests are assigned to."),
        col("MatchingPrecedence", "string", "Order in which schemas are tried; lowest first."),
        col("DistinguisherMethod", "string", "How matching requests are split into flows."),
        AGE,
        col("MissingPL", "string", "Whether the referenced priority level is missing."),
    ],
    row: flow_schema_row,
};

fn flow_schema_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let dangling = arr_at(obj, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == "Dangling")
        .map_or("?", |c| str_at(c, "/status"));
    vec![
        s(name(obj)),
        s(str_at(obj, "/spec/priorityLevelConfiguration/name")),
        int(i64_at(obj, "/spec/matchingPrecedence")),
        s(opt_str_at(obj, "/spec/distinguisherMethod/type").unwrap_or("<none>")),
        age(obj, now),
        s(dangling),
    ]
}

pub(crate) static PRIORITY_LEVEL_CONFIGURATION: Printer = Printer {
    columns: &[
        NAME,
        col("Type", "string", "Exempt, or Limited by concurrency shares."),
        col("NominalConcurrencyShares", "string", "Share of the server's concurrency this level gets."),
        col("Queues", "string", "Number of queues requests wait in."),
        col("HandSize", "string", "Queues each flow is shuffle-sharded over."),
        col("QueueLengthLimit", "string", "Requests a queue holds before rejecting more."),
        AGE,
    ],
    row: priority_level_configuration_row,
};

fn priority_level_configuration_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let none = || s("<none>");
    let (mut shares, mut queues, mut hand_size, mut queue_length) = (none(), none(), none(), none());
    if let Some(limited) = at(obj, "/spec/limited") {
        shares = int(i64_at(limited, "/nominalConcurrencyShares"));
        if let Some(queuing) = at(limited, "/limitResponse/queuing") {
            queues = int(i64_at(queuing, "/queues"));
            hand_size = int(i64_at(queuing, "/handSize"));
            queue_length = int(i64_at(queuing, "/queueLengthLimit"));
        }
    }
    vec![s(name(obj)), s(str_at(obj, "/spec/type")), shares, queues, hand_size, queue_length, age(obj, now)]
}

pub(crate) static DEVICE_CLASS: Printer = Printer { columns: &[NAME, AGE], row: name_and_age_row };

pub(crate) static RESOURCE_CLAIM_TEMPLATE: Printer = Printer { columns: &[NAME, AGE], row: name_and_age_row };

fn name_and_age_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![s(name(obj)), age(obj, now)]
}

pub(crate) static RESOURCE_CLAIM: Printer = Printer {
    columns: &[
        NAME,
        col("State", "string", "Whether the claim is pending, allocated, reserved or deleted."),
        AGE,
    ],
    row: resource_claim_row,
};

fn resource_claim_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let deleted = at(obj, "/metadata/deletionTimestamp").is_some();
    let mut states = Vec::new();
    if deleted {
        states.push("deleted");
    }
    if at(obj, "/status/allocation").is_none() {
        if !deleted {
            states.push("pending");
        }
    } else {
        states.push("allocated");
        if !arr_at(obj, "/status/reservedFor").is_empty() {
            states.push("reserved");
        }
    }
    vec![s(name(obj)), s(states.join(",")), age(obj, now)]
}

pub(crate) static RESOURCE_SLICE: Printer = Printer {
    columns: &[
        NAME,
        col("Node", "string", "The node whose devices the slice lists, if node-local."),
        col("Driver", "string", "The DRA driver publishing the slice."),
        col("Pool", "string", "The device pool the slice belongs to."),
        AGE,
    ],
    row: resource_slice_row,
};

fn resource_slice_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        s(name(obj)),
        s(str_at(obj, "/spec/nodeName")),
        s(str_at(obj, "/spec/driver")),
        s(str_at(obj, "/spec/pool/name")),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::{headers, render};

    #[test]
    fn pod_disruption_budgets() {
        let pdb = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            render(&POD_DISRUPTION_BUDGET, &pdb),
            [json!("web"), json!("2"), json!("N/A"), json!(1), json!("60m")]
        );
        let pct = json!({"metadata": {"name": "db"}, "spec": {"maxUnavailable": "25%"}});
        assert_eq!(render(&POD_DISRUPTION_BUDGET, &pct)[1..4], [json!("N/A"), json!("25%"), json!(0)]);
    }

    #[test]
    fn scheduling_node_and_coordination() {
        assert_eq!(headers(&PRIORITY_CLASS), ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]);
        let pc = json!({"metadata": {"name": "system-node-critical", "creationTimestamp": "2024-04-01T12:00:00Z"},
            "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"});
        assert_eq!(
            render(&PRIORITY_CLASS, &pc),
            [
                json!("system-node-critical"),
                json!(2000001000),
                json!(false),
                json!("30d"),
                json!("PreemptLowerPriority")
            ]
        );
        let rc = json!({"metadata": {"name": "gvisor"}, "handler": "runsc"});
        assert_eq!(render(&RUNTIME_CLASS, &rc)[..2], [json!("gvisor"), json!("runsc")]);
        let lease = json!({"metadata": {"name": "kube-scheduler"}, "spec": {"holderIdentity": "cp-1_8f2a"}});
        assert_eq!(render(&LEASE, &lease)[..2], [json!("kube-scheduler"), json!("cp-1_8f2a")]);
        let candidate = json!({"metadata": {"name": "c"}, "spec": {"leaseName": "kube-scheduler",
            "binaryVersion": "1.32.0", "emulationVersion": "1.32.0"}});
        assert_eq!(
            render(&LEASE_CANDIDATE, &candidate)[1..4],
            [json!("kube-scheduler"), json!("1.32.0"), json!("1.32.0")]
        );
    }

    #[test]
    fn certificate_signing_requests() {
        assert_eq!(
            headers(&CERTIFICATE_SIGNING_REQUEST),
            ["Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"]
        );
        let csr = |conditions: serde_json::Value, certificate: &str| {
            json!({"metadata": {"name": "csr-x", "creationTimestamp": "2024-05-01T11:59:00Z"},
                   "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "alice",
                            "expirationSeconds": 86400, "request": "LS0t"},
                   "status": {"conditions": conditions, "certificate": certificate}})
        };
        assert_eq!(
            render(&CERTIFICATE_SIGNING_REQUEST, &csr(json!([]), "")),
            [
                json!("csr-x"),
                json!("60s"),
                json!("kubernetes.io/kube-apiserver-client"),
                json!("alice"),
                json!("24h"),
                json!("Pending")
            ]
        );
        let approved = csr(json!([{"type": "Approved", "status": "True"}]), "LS0tLS1CRUdJTg==");
        assert_eq!(render(&CERTIFICATE_SIGNING_REQUEST, &approved)[5], json!("Approved,Issued"));
        let denied = csr(json!([{"type": "Approved"}, {"type": "Denied"}, {"type": "Failed"}]), "");
        assert_eq!(render(&CERTIFICATE_SIGNING_REQUEST, &denied)[5], json!("Denied,Failed"));
        let bare = render(&CERTIFICATE_SIGNING_REQUEST, &json!({"metadata": {"name": "b"}}));
        assert_eq!(bare[2..5], [json!("<none>"), json!(""), json!("<none>")]);
    }

    #[test]
    fn flow_control() {
        let fs = json!({"metadata": {"name": "exempt"}, "spec": {"priorityLevelConfiguration": {"name": "exempt"},
            "matchingPrecedence": 1}, "status": {"conditions": [{"type": "Dangling", "status": "False"}]}});
        assert_eq!(
            render(&FLOW_SCHEMA, &fs)[..4],
            [json!("exempt"), json!("exempt"), json!(1), json!("<none>")]
        );
        assert_eq!(render(&FLOW_SCHEMA, &fs)[5], json!("False"));
        let by_user =
            json!({"metadata": {"name": "fs"}, "spec": {"distinguisherMethod": {"type": "ByUser"}}});
        let cells = render(&FLOW_SCHEMA, &by_user);
        assert_eq!((&cells[3], &cells[5]), (&json!("ByUser"), &json!("?")));

        let limited = json!({"metadata": {"name": "workload-low"}, "spec": {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 100, "limitResponse": {"type": "Queue",
            "queuing": {"queues": 128, "handSize": 6, "queueLengthLimit": 50}}}}});
        assert_eq!(
            render(&PRIORITY_LEVEL_CONFIGURATION, &limited)[..6],
            [json!("workload-low"), json!("Limited"), json!(100), json!(128), json!(6), json!(50)]
        );
        let exempt = json!({"metadata": {"name": "exempt"}, "spec": {"type": "Exempt", "exempt": {}}});
        assert_eq!(
            render(&PRIORITY_LEVEL_CONFIGURATION, &exempt)[1..6],
            [json!("Exempt"), json!("<none>"), json!("<none>"), json!("<none>"), json!("<none>")]
        );
    }

    #[test]
    fn dynamic_resource_allocation() {
        let claim = |status: serde_json::Value, deleting: bool| {
            let mut c = json!({"metadata": {"name": "gpu"}, "status": status});
            if deleting {
                c["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:00:00Z");
            }
            c
        };
        let cases = [
            (claim(json!({}), false), "pending"),
            (claim(json!({}), true), "deleted"),
            (claim(json!({"allocation": {"devices": {}}}), false), "allocated"),
            (
                claim(json!({"allocation": {}, "reservedFor": [{"resource": "pods", "name": "p"}]}), true),
                "deleted,allocated,reserved",
            ),
        ];
        for (obj, want) in cases {
            assert_eq!(render(&RESOURCE_CLAIM, &obj)[1], json!(want), "{obj}");
        }
        let slice = json!({"metadata": {"name": "node-1-gpu"}, "spec": {"nodeName": "node-1", "driver": "gpu.example.com",
            "pool": {"name": "node-1", "generation": 1, "resourceSliceCount": 1}}});
        assert_eq!(
            render(&RESOURCE_SLICE, &slice)[..4],
            [json!("node-1-gpu"), json!("node-1"), json!("gpu.example.com"), json!("node-1")]
        );
        assert_eq!(headers(&DEVICE_CLASS), ["Name", "Age"]);
    }
}
