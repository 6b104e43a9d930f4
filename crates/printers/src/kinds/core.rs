//! Printers of the core group other than Pod and Event: workloads' templates,
//! services and endpoints, nodes, namespaces, config, storage and quota objects.

use jiff::Timestamp;
use serde_json::Value;

use crate::Printer;
use crate::columns::{AGE, CONTAINERS, IMAGES, NAME, SELECTOR, col, wide};
use crate::duration::translate_since;
use crate::format::{access_modes, container_cells, format_labels, join_host_port, layout_containers};
use crate::quantity::quantity_string;
use crate::value::{
    annotation, arr_at, at, bool_at, i64_at, int, map_len, name, obj_at, opt_i64_at, opt_str_at, s, str_at,
    time_at,
};

/// The AGE cell of an object.
pub(crate) fn age(obj: &Value, now: Timestamp) -> Value {
    s(translate_since(time_at(obj, "/metadata/creationTimestamp"), now))
}

pub(crate) static POD_TEMPLATE: Printer = Printer {
    columns: &[
        NAME,
        col("Containers", "string", "Names of the containers in the template."),
        col("Images", "string", "Images of the containers in the template."),
        col("Pod Labels", "string", "Labels the template gives its pods."),
    ],
    row: pod_template_row,
};

fn pod_template_row(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let (names, images) = layout_containers(at(obj, "/template/spec"));
    vec![s(name(obj)), s(names), s(images), s(format_labels(at(obj, "/template/metadata/labels")))]
}

pub(crate) static REPLICATION_CONTROLLER: Printer = Printer {
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
    row: replication_controller_row,
};

fn replication_controller_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let [names, images] = container_cells(obj, "/spec/template");
    vec![
        s(name(obj)),
        int(opt_i64_at(obj, "/spec/replicas").unwrap_or(1)),
        int(i64_at(obj, "/status/replicas")),
        int(i64_at(obj, "/status/readyReplicas")),
        age(obj, now),
        names,
        images,
        s(format_labels(at(obj, "/spec/selector"))),
    ]
}

pub(crate) static SERVICE: Printer = Printer {
    columns: &[
        NAME,
        col(
            "Type",
            "string",
            "How the service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName.",
        ),
        col("Cluster-IP", "string", "The service's virtual IP inside the cluster."),
        col("External-IP", "string", "Addresses the service is reachable at from outside the cluster."),
        col("Port(s)", "string", "Service ports, with node ports where allocated."),
        AGE,
        wide("Selector", "string", "Label selector of the pods behind the service."),
    ],
    row: service_row,
};

fn service_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let svc_type = opt_str_at(obj, "/spec/type").unwrap_or("ClusterIP");
    // The internal type's ClusterIPs[0], after conversion from v1 (clusterIP wins).
    let cluster_ip = match str_at(obj, "/spec/clusterIP") {
        "" => arr_at(obj, "/spec/clusterIPs").first().and_then(Value::as_str).unwrap_or(""),
        ip => ip,
    };
    let ports = service_ports(arr_at(obj, "/spec/ports"));
    vec![
        s(name(obj)),
        s(svc_type),
        s(if cluster_ip.is_empty() { "<none>" } else { cluster_ip }),
        s(service_external_ip(obj, svc_type)),
        s(if ports.is_empty() { "<none>".to_string() } else { ports }),
        age(obj, now),
        s(format_labels(at(obj, "/spec/selector"))),
    ]
}

fn service_external_ip(obj: &Value, svc_type: &str) -> String {
    let external: Vec<&str> = arr_at(obj, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    match svc_type {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            // The server always renders wide, so the list is never shortened.
            let lb = load_balancer_ingress(arr_at(obj, "/status/loadBalancer/ingress"));
            if !external.is_empty() {
                let mut all = lb;
                all.extend(external.iter().map(|ip| ip.to_string()));
                return all.join(",");
            }
            if lb.is_empty() { "<pending>".to_string() } else { lb.join(",") }
        }
        "ExternalName" => str_at(obj, "/spec/externalName").to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// The sorted, de-duplicated IPs (else hostnames) of load-balancer ingress points.
pub(crate) fn load_balancer_ingress(ingress: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = ingress
        .iter()
        .filter_map(|i| match (str_at(i, "/ip"), str_at(i, "/hostname")) {
            ("", "") => None,
            ("", host) => Some(host.to_string()),
            (ip, _) => Some(ip.to_string()),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn service_ports(ports: &[Value]) -> String {
    ports
        .iter()
        .map(|p| {
            let port = i64_at(p, "/port");
            let protocol = opt_str_at(p, "/protocol").unwrap_or("TCP");
            match i64_at(p, "/nodePort") {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) static ENDPOINTS: Printer = Printer {
    columns: &[NAME, col("Endpoints", "string", "Ready addresses and ports, the first three of them."), AGE],
    row: endpoints_row,
};

fn endpoints_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![s(name(obj)), s(format_endpoints(obj)), age(obj, now)]
}

fn format_endpoints(obj: &Value) -> String {
    let subsets = arr_at(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = arr_at(subset, "/addresses");
        let ports = arr_at(subset, "/ports");
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            list.extend(addresses.iter().take(MAX - list.len()).map(|a| str_at(a, "/ip").to_string()));
            continue;
        }
        for port in ports {
            count += addresses.len();
            let number = i64_at(port, "/port");
            list.extend(
                addresses.iter().take(MAX - list.len()).map(|a| join_host_port(str_at(a, "/ip"), number)),
            );
        }
    }
    let joined = list.join(",");
    if count > MAX { format!("{joined} + {} more...", count - MAX) } else { joined }
}

pub(crate) static NODE: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "Readiness of the node, and whether scheduling on it is disabled."),
        col("Roles", "string", "Roles from the node's node-role.kubernetes.io labels."),
        AGE,
        col("Version", "string", "Version of the kubelet on the node."),
        wide("Internal-IP", "string", "The node's first internal IP address."),
        wide("External-IP", "string", "The node's first external IP address."),
        wide("OS-Image", "string", "Operating system image reported by the node."),
        wide("Kernel-Version", "string", "Kernel version reported by the node."),
        wide("Container-Runtime", "string", "Container runtime name and version reported by the node."),
    ],
    row: node_row,
};

fn node_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ready = arr_at(obj, "/status/conditions").iter().rev().find(|c| str_at(c, "/type") == "Ready");
    let mut status = match ready {
        Some(c) if str_at(c, "/status") == "True" => vec!["Ready"],
        Some(_) => vec!["NotReady"],
        None => vec!["Unknown"],
    };
    if bool_at(obj, "/spec/unschedulable") {
        status.push("SchedulingDisabled");
    }
    let roles = node_roles(obj);
    let info = |field: &str| match str_at(obj, &format!("/status/nodeInfo/{field}")) {
        "" => "<unknown>".to_string(),
        v => v.to_string(),
    };
    vec![
        s(name(obj)),
        s(status.join(",")),
        s(if roles.is_empty() { "<none>".to_string() } else { roles.join(",") }),
        age(obj, now),
        s(str_at(obj, "/status/nodeInfo/kubeletVersion")),
        s(node_address(obj, "InternalIP")),
        s(node_address(obj, "ExternalIP")),
        s(info("osImage")),
        s(info("kernelVersion")),
        s(info("containerRuntimeVersion")),
    ]
}

/// Sorted roles from `node-role.kubernetes.io/<role>` label keys and the legacy
/// `kubernetes.io/role=<role>` label.
fn node_roles(obj: &Value) -> Vec<String> {
    let mut roles: Vec<String> = obj_at(obj, "/metadata/labels")
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                return (!role.is_empty()).then(|| role.to_string());
            }
            let v = v.as_str().unwrap_or("");
            (k == "kubernetes.io/role" && !v.is_empty()).then(|| v.to_string())
        })
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

fn node_address(obj: &Value, kind: &str) -> String {
    arr_at(obj, "/status/addresses")
        .iter()
        .find(|a| str_at(a, "/type") == kind)
        .map_or("<none>".to_string(), |a| str_at(a, "/address").to_string())
}

pub(crate) static NAMESPACE: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "Lifecycle phase of the namespace: Active or Terminating."),
        AGE,
    ],
    row: namespace_row,
};

fn namespace_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    vec![s(name(obj)), s(str_at(obj, "/status/phase")), age(obj, now)]
}

pub(crate) static SECRET: Printer = Printer {
    columns: &[
        NAME,
        col("Type", "string", "The kind of secret, which fixes the keys it must hold."),
        col("Data", "string", "Number of keys in the secret's data."),
        AGE,
    ],
    row: secret_row,
};

fn secret_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let data = i64::try_from(map_len(obj, "/data")).unwrap_or(i64::MAX);
    vec![s(name(obj)), s(str_at(obj, "/type")), int(data), age(obj, now)]
}

pub(crate) static CONFIG_MAP: Printer = Printer {
    columns: &[NAME, col("Data", "string", "Number of keys in data and binaryData together."), AGE],
    row: config_map_row,
};

fn config_map_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let keys = map_len(obj, "/data") + map_len(obj, "/binaryData");
    vec![s(name(obj)), int(i64::try_from(keys).unwrap_or(i64::MAX)), age(obj, now)]
}

pub(crate) static SERVICE_ACCOUNT: Printer = Printer {
    columns: &[NAME, col("Secrets", "string", "Number of secrets listed on the service account."), AGE],
    row: service_account_row,
};

fn service_account_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let secrets = i64::try_from(arr_at(obj, "/secrets").len()).unwrap_or(i64::MAX);
    vec![s(name(obj)), int(secrets), age(obj, now)]
}

const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

pub(crate) static PERSISTENT_VOLUME: Printer = Printer {
    columns: &[
        NAME,
        col("Capacity", "string", "Storage capacity of the volume."),
        col("Access Modes", "string", "Ways the volume can be mounted (RWO, ROX, RWX, RWOP)."),
        col("Reclaim Policy", "string", "What happens to the volume when its claim is released."),
        col("Status", "string", "Lifecycle phase of the volume."),
        col("Claim", "string", "Namespace and name of the claim bound to the volume."),
        col("StorageClass", "string", "Storage class of the volume."),
        col("VolumeAttributesClass", "string", "Volume attributes class of the volume."),
        col("Reason", "string", "Why the volume is in its phase, if it failed."),
        AGE,
        wide("VolumeMode", "string", "Whether the volume is a filesystem or a raw block device."),
    ],
    row: persistent_volume_row,
};

fn persistent_volume_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let claim = match at(obj, "/spec/claimRef") {
        Some(r) => format!("{}/{}", str_at(r, "/namespace"), str_at(r, "/name")),
        None => String::new(),
    };
    let class =
        annotation(obj, BETA_STORAGE_CLASS_ANNOTATION).unwrap_or(str_at(obj, "/spec/storageClassName"));
    vec![
        s(name(obj)),
        s(quantity_string(at(obj, "/spec/capacity/storage"))),
        s(access_modes(arr_at(obj, "/spec/accessModes"))),
        s(str_at(obj, "/spec/persistentVolumeReclaimPolicy")),
        s(terminating_or(obj, str_at(obj, "/status/phase"))),
        s(claim),
        s(class),
        s(opt_str_at(obj, "/spec/volumeAttributesClassName").unwrap_or("<unset>")),
        s(str_at(obj, "/status/reason")),
        age(obj, now),
        s(opt_str_at(obj, "/spec/volumeMode").unwrap_or("<unset>")),
    ]
}

/// "Terminating" for an object being deleted, else `phase`.
fn terminating_or<'a>(obj: &Value, phase: &'a str) -> &'a str {
    if at(obj, "/metadata/deletionTimestamp").is_some() { "Terminating" } else { phase }
}

pub(crate) static PERSISTENT_VOLUME_CLAIM: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "Lifecycle phase of the claim."),
        col("Volume", "string", "Name of the volume bound to the claim."),
        col("Capacity", "string", "Storage capacity of the bound volume."),
        col("Access Modes", "string", "Ways the bound volume can be mounted (RWO, ROX, RWX, RWOP)."),
        col("StorageClass", "string", "Storage class the claim asks for."),
        col("VolumeAttributesClass", "string", "Volume attributes class the claim asks for."),
        AGE,
        wide("VolumeMode", "string", "Whether the claim is for a filesystem or a raw block device."),
    ],
    row: persistent_volume_claim_row,
};

fn persistent_volume_claim_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let volume = str_at(obj, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity_string(at(obj, "/status/capacity/storage")),
            access_modes(arr_at(obj, "/status/accessModes")),
        )
    };
    let class =
        annotation(obj, BETA_STORAGE_CLASS_ANNOTATION).unwrap_or(str_at(obj, "/spec/storageClassName"));
    vec![
        s(name(obj)),
        s(terminating_or(obj, str_at(obj, "/status/phase"))),
        s(volume),
        s(capacity),
        s(modes),
        s(class),
        s(opt_str_at(obj, "/spec/volumeAttributesClassName").unwrap_or("<unset>")),
        age(obj, now),
        s(opt_str_at(obj, "/spec/volumeMode").unwrap_or("<unset>")),
    ]
}

pub(crate) static RESOURCE_QUOTA: Printer = Printer {
    columns: &[
        NAME,
        col("Request", "string", "Used and hard amounts of every non-limit resource in the quota."),
        col("Limit", "string", "Used and hard amounts of every limits.* resource in the quota."),
        AGE,
    ],
    row: resource_quota_row,
};

fn resource_quota_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut resources: Vec<&String> =
        obj_at(obj, "/status/hard").into_iter().flat_map(|m| m.keys()).collect();
    resources.sort();
    let used = obj_at(obj, "/status/used");
    let hard = obj_at(obj, "/status/hard");
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for resource in resources {
        let entry = format!(
            "{resource}: {}/{}",
            quantity_string(used.and_then(|m| m.get(resource))),
            quantity_string(hard.and_then(|m| m.get(resource)))
        );
        let mut pieces = resource.split('.');
        let is_limit = pieces.next() == Some("limits") && pieces.next().is_some();
        if is_limit { limits.push(entry) } else { requests.push(entry) }
    }
    vec![s(name(obj)), s(requests.join(", ")), s(limits.join(", ")), age(obj, now)]
}

pub(crate) static COMPONENT_STATUS: Printer = Printer {
    columns: &[
        NAME,
        col("Status", "string", "Health of the component: Healthy, Unhealthy or Unknown."),
        col("Message", "string", "Message of the component's health condition."),
        col("Error", "string", "Error of the component's health condition."),
    ],
    row: component_status_row,
};

fn component_status_row(obj: &Value, _now: Timestamp) -> Vec<Value> {
    let healthy = arr_at(obj, "/conditions").iter().find(|c| str_at(c, "/type") == "Healthy");
    let (status, message, error) = match healthy {
        Some(c) => (
            if str_at(c, "/status") == "True" { "Healthy" } else { "Unhealthy" },
            str_at(c, "/message"),
            str_at(c, "/error"),
        ),
        None => ("Unknown", "", ""),
    };
    vec![s(name(obj)), s(status), s(message), s(error)]
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::kinds::testing::{headers, narrow_headers, render};

    fn meta(name: &str) -> Value {
        json!({"name": name, "namespace": "default", "creationTimestamp": "2024-04-30T12:00:00Z"})
    }

    #[test]
    fn services_of_every_type() {
        assert_eq!(narrow_headers(&SERVICE), ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]);
        assert_eq!(headers(&SERVICE).last(), Some(&"Selector"));
        let cases = vec![
            (
                "cluster ip",
                json!({"metadata": meta("web"), "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10",
                    "clusterIPs": ["10.96.0.10"], "selector": {"app": "web", "tier": "fe"},
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}, {"port": 53, "protocol": "UDP"}]}}),
                ["web", "ClusterIP", "10.96.0.10", "<none>", "80/TCP,53/UDP", "24h", "app=web,tier=fe"],
            ),
            (
                "node port",
                json!({"metadata": meta("np"), "spec": {"type": "NodePort", "clusterIPs": ["10.96.3.4"],
                    "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}}),
                ["np", "NodePort", "10.96.3.4", "<none>", "80:30080/TCP", "24h", "<none>"],
            ),
            (
                "load balancer still pending",
                json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIP": "10.96.7.7",
                    "ports": [{"port": 443, "nodePort": 31443}]}, "status": {"loadBalancer": {}}}),
                ["lb", "LoadBalancer", "10.96.7.7", "<pending>", "443:31443/TCP", "24h", "<none>"],
            ),
            (
                "load balancer with ingress and external IPs, never truncated",
                json!({"metadata": meta("lb"), "spec": {"type": "LoadBalancer", "clusterIP": "10.96.7.7",
                    "externalIPs": ["198.51.100.9"], "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]},
                    "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.20"}, {"hostname": "lb.example.com"},
                                                           {"ip": "203.0.113.10"}, {"ip": "203.0.113.10"}]}}}),
                [
                    "lb",
                    "LoadBalancer",
                    "10.96.7.7",
                    "203.0.113.10,203.0.113.20,lb.example.com,198.51.100.9",
                    "443:31443/TCP",
                    "24h",
                    "<none>",
                ],
            ),
            (
                "headless",
                json!({"metadata": meta("db"), "spec": {"clusterIP": "None", "clusterIPs": ["None"],
                    "selector": {"app": "db"}}}),
                ["db", "ClusterIP", "None", "<none>", "<none>", "24h", "app=db"],
            ),
            (
                "external name",
                json!({"metadata": meta("ext"), "spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
                ["ext", "ExternalName", "<none>", "db.example.com", "<none>", "24h", "<none>"],
            ),
            (
                "cluster ip with external IPs",
                json!({"metadata": meta("x"), "spec": {"type": "ClusterIP", "clusterIP": "10.0.0.1",
                    "externalIPs": ["1.2.3.4", "5.6.7.8"], "ports": [{"port": 8080, "protocol": "SCTP"}]}}),
                ["x", "ClusterIP", "10.0.0.1", "1.2.3.4,5.6.7.8", "8080/SCTP", "24h", "<none>"],
            ),
        ];
        for (case, obj, want) in cases {
            assert_eq!(render(&SERVICE, &obj), want.map(|c| json!(c)), "{case}");
        }
    }

    #[test]
    fn nodes_ready_not_ready_unknown_and_cordoned() {
        let node = |conditions: Value, unschedulable: bool, labels: Value| {
            json!({"metadata": {"name": "node-1", "creationTimestamp": "2024-04-20T12:00:00Z", "labels": labels},
                   "spec": {"unschedulable": unschedulable},
                   "status": {"conditions": conditions,
                       "addresses": [{"type": "Hostname", "address": "node-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.2", "osImage": "Debian GNU/Linux 12 (bookworm)",
                                    "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.7.13"}}})
        };
        let ready =
            json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]);
        let cells = render(&NODE, &node(ready, false, json!({"node-role.kubernetes.io/control-plane": ""})));
        assert_eq!(
            cells,
            [
                "node-1",
                "Ready",
                "control-plane",
                "11d",
                "v1.32.2",
                "192.168.1.10",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0-18-amd64",
                "containerd://1.7.13"
            ]
            .map(|c| json!(c))
        );

        let not_ready = json!([{"type": "Ready", "status": "False"}]);
        let labels = json!({"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/infra": "x",
                            "kubernetes.io/role": "gpu", "node-role.kubernetes.io/": ""});
        let cells = render(&NODE, &node(not_ready, true, labels));
        assert_eq!(
            (&cells[1], &cells[2]),
            (&json!("NotReady,SchedulingDisabled"), &json!("gpu,infra,worker"))
        );

        let unknown = render(&NODE, &node(json!([{"type": "Ready", "status": "Unknown"}]), false, json!({})));
        assert_eq!((&unknown[1], &unknown[2]), (&json!("NotReady"), &json!("<none>")));
        let no_condition = render(&NODE, &node(json!([]), true, json!(null)));
        assert_eq!(no_condition[1], json!("Unknown,SchedulingDisabled"));

        let bare = render(&NODE, &json!({"metadata": {"name": "n"}}));
        assert_eq!(bare[5..], ["<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"].map(|c| json!(c)));
    }

    #[test]
    fn endpoints_list_the_first_three_addresses() {
        let cases = vec![
            (json!({"metadata": meta("none")}), "<none>"),
            (
                json!({"metadata": meta("web"), "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                                                          "ports": [{"port": 8080, "name": "http"}]}]}),
                "10.0.0.1:8080,10.0.0.2:8080",
            ),
            (
                json!({"metadata": meta("web"), "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                                                          "ports": [{"port": 80}, {"port": 443}]}]}),
                "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...",
            ),
            (
                json!({"metadata": meta("headless"), "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"},
                                                          {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}, {"ip": "10.0.0.5"}]}]}),
                "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...",
            ),
            (
                json!({"metadata": meta("v6"), "subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 53}]}]}),
                "[fd00::1]:53",
            ),
            (
                json!({"metadata": meta("unready"), "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.9"}], "ports": [{"port": 80}]}]}),
                "",
            ),
        ];
        for (obj, want) in cases {
            assert_eq!(render(&ENDPOINTS, &obj)[1], json!(want), "{obj}");
        }
    }

    #[test]
    fn config_objects_count_their_keys() {
        let cm = json!({"metadata": meta("cfg"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AAE="}});
        assert_eq!(render(&CONFIG_MAP, &cm), [json!("cfg"), json!(3), json!("24h")]);
        let secret = json!({"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            render(&SECRET, &secret),
            [json!("tls"), json!("kubernetes.io/tls"), json!(2), json!("24h")]
        );
        let sa = json!({"metadata": meta("default")});
        assert_eq!(render(&SERVICE_ACCOUNT, &sa), [json!("default"), json!(0), json!("24h")]);
        let ns = json!({"metadata": meta("kube-system"), "status": {"phase": "Active"}});
        assert_eq!(render(&NAMESPACE, &ns), [json!("kube-system"), json!("Active"), json!("24h")]);
    }

    #[test]
    fn persistent_volumes_and_claims() {
        let pv = json!({"metadata": meta("pv-1"), "spec": {"capacity": {"storage": "10240Mi"},
            "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
            "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "standard",
            "volumeMode": "Filesystem"}, "status": {"phase": "Bound"}});
        assert_eq!(
            render(&PERSISTENT_VOLUME, &pv),
            [
                "pv-1",
                "10Gi",
                "RWO",
                "Retain",
                "Bound",
                "default/data",
                "standard",
                "<unset>",
                "",
                "24h",
                "Filesystem"
            ]
            .map(|c| json!(c))
        );
        let mut released = pv.clone();
        released["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:00:00Z");
        released["metadata"]["annotations"] = json!({"volume.beta.kubernetes.io/storage-class": "legacy"});
        let cells = render(&PERSISTENT_VOLUME, &released);
        assert_eq!((&cells[4], &cells[6]), (&json!("Terminating"), &json!("legacy")));

        let bound = json!({"metadata": meta("data"), "spec": {"volumeName": "pv-1", "storageClassName": "standard",
            "resources": {"requests": {"storage": "5Gi"}}, "volumeMode": "Filesystem"},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}});
        assert_eq!(
            render(&PERSISTENT_VOLUME_CLAIM, &bound),
            ["data", "Bound", "pv-1", "10Gi", "RWO,ROX", "standard", "<unset>", "24h", "Filesystem"]
                .map(|c| json!(c))
        );
        let pending = json!({"metadata": meta("data"), "spec": {"resources": {"requests": {"storage": "5Gi"}}},
            "status": {"phase": "Pending"}});
        assert_eq!(
            render(&PERSISTENT_VOLUME_CLAIM, &pending),
            ["data", "Pending", "", "", "", "", "<unset>", "24h", "<unset>"].map(|c| json!(c))
        );
    }

    #[test]
    fn resource_quota_splits_requests_and_limits() {
        let quota = json!({"metadata": meta("compute"), "status": {
            "hard": {"requests.cpu": "1", "pods": "10", "limits.memory": "2Gi", "limits.cpu": "2", "requests.memory": "1024Mi"},
            "used": {"requests.cpu": "500m", "pods": "3", "limits.cpu": "0", "requests.memory": "512Mi"}}});
        assert_eq!(
            render(&RESOURCE_QUOTA, &quota),
            [
                "compute",
                "pods: 3/10, requests.cpu: 500m/1, requests.memory: 512Mi/1Gi",
                "limits.cpu: 0/2, limits.memory: 0/2Gi",
                "24h"
            ]
            .map(|c| json!(c))
        );
    }

    #[test]
    fn workload_templates() {
        let rc = json!({"metadata": meta("rc"), "spec": {"replicas": 3, "selector": {"app": "rc"},
            "template": {"metadata": {"labels": {"app": "rc"}}, "spec": {"containers": [
                {"name": "a", "image": "nginx:1.27"}, {"name": "b", "image": "busybox"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2}});
        assert_eq!(
            render(&REPLICATION_CONTROLLER, &rc),
            [
                json!("rc"),
                json!(3),
                json!(3),
                json!(2),
                json!("24h"),
                json!("a,b"),
                json!("nginx:1.27,busybox"),
                json!("app=rc")
            ]
        );
        let pt = json!({"metadata": meta("pt"), "template": {"metadata": {"labels": {"run": "x"}},
            "spec": {"containers": [{"name": "c", "image": "alpine"}]}}});
        assert_eq!(render(&POD_TEMPLATE, &pt), ["pt", "c", "alpine", "run=x"].map(|c| json!(c)));
        assert_eq!(headers(&POD_TEMPLATE), ["Name", "Containers", "Images", "Pod Labels"]);
    }

    #[test]
    fn component_status_health() {
        let cs = json!({"metadata": {"name": "etcd-0"}, "conditions": [
            {"type": "Healthy", "status": "True", "message": "ok"}]});
        assert_eq!(render(&COMPONENT_STATUS, &cs), ["etcd-0", "Healthy", "ok", ""].map(|c| json!(c)));
    }
}
