//! Printers of networking.k8s.io (Ingress, IngressClass, NetworkPolicy, ServiceCIDR)
//! and discovery.k8s.io (EndpointSlice).

use jiff::Timestamp;
use serde_json::Value;

use super::core::{age, load_balancer_ingress};
use crate::Printer;
use crate::columns::{AGE, NAME, col};
use crate::format::{format_label_selector, list_with_more};
use crate::value::{arr_at, at, name, opt_i64_at, opt_str_at, s, str_at};

pub(crate) static INGRESS: Printer = Printer {
    columns: &[
        NAME,
        col("Class", "string", "The IngressClass implementing this ingress."),
        col("Hosts", "string", "Host names the rules match, the first three of them."),
        col("Address", "string", "Addresses of the load balancer serving the ingress."),
        col("Ports", "string", "Ports the ingress serves: 80, plus 443 with TLS."),
        AGE,
    ],
    row: ingress_row,
};

fn ingress_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports = if arr_at(obj, "/spec/tls").is_empty() { "80" } else { "80, 443" };
    vec![
        s(name(obj)),
        s(opt_str_at(obj, "/spec/ingressClassName").unwrap_or("<none>")),
        s(format_hosts(arr_at(obj, "/spec/rules"))),
        s(load_balancer_ingress(arr_at(obj, "/status/loadBalancer/ingress")).join(",")),
        s(ports),
        age(obj, now),
    ]
}

/// Upstream's `formatHosts`: up to three rule hosts, "*" when none has a host. The
/// remainder counts rules, not hosts, and is shown only when a rule follows the one
/// that filled the list.
fn format_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
            break;
        }
        let host = str_at(rule, "/host");
        if !host.is_empty() {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".to_string();
    }
    if more {
        return format!("{} + {} more...", hosts.join(","), rules.len() - MAX);
    }
    hosts.join(",")
}

pub(crate) static INGRESS_CLASS: Printer = Printer {
    columns: &[
        NAME,
        col("Controller", "string", "The controller implementing ingresses of this class."),
        col("Parameters", "string", "The object holding the controller's extra configuration."),
        AGE,
    ],
    row: ingress_class_row,
};

fn ingress_class_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = match at(obj, "/spec/parameters") {
        None => "<none>".to_string(),
        Some(p) => {
            let kind = match opt_str_at(p, "/apiGroup") {
                Some(group) => format!("{}.{group}", str_at(p, "/kind")),
                None => str_at(p, "/kind").to_string(),
            };
            format!("{kind}/{}", str_at(p, "/name"))
        }
    };
    vec![s(name(obj)), s(str_at(obj, "/spec/controller")), s(parameters), age(obj, now)]
}

pub(crate) static NETWORK_POLICY: Printer = Printer {
    columns: &[NAME, col("Pod-Selector", "string", "Label selector of the pods the policy applies to."), AGE],
    row: network_policy_row,
};

fn network_policy_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    // podSelector is not a pointer upstream: absent means empty, which matches all pods.
    let empty = Value::Object(serde_json::Map::new());
    let selector = at(obj, "/spec/podSelector").unwrap_or(&empty);
    vec![s(name(obj)), s(format_label_selector(Some(selector))), age(obj, now)]
}

pub(crate) static SERVICE_CIDR: Printer = Printer {
    columns: &[NAME, col("CIDRs", "string", "IP ranges service cluster IPs are allocated from."), AGE],
    row: service_cidr_row,
};

fn service_cidr_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let cidrs: Vec<&str> = arr_at(obj, "/spec/cidrs").iter().filter_map(Value::as_str).collect();
    vec![s(name(obj)), s(cidrs.join(",")), age(obj, now)]
}

pub(crate) static ENDPOINT_SLICE: Printer = Printer {
    columns: &[
        NAME,
        col("AddressType", "string", "IPv4, IPv6 or FQDN."),
        col("Ports", "string", "Port numbers of the slice, the first three of them."),
        col("Endpoints", "string", "Endpoint addresses, the first three of them."),
        AGE,
    ],
    row: endpoint_slice_row,
};

fn endpoint_slice_row(obj: &Value, now: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = arr_at(obj, "/ports")
        .iter()
        .map(|p| match (opt_i64_at(p, "/port"), opt_str_at(p, "/name")) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let addresses: Vec<String> = arr_at(obj, "/endpoints")
        .iter()
        .flat_map(|e| arr_at(e, "/addresses"))
        .map(|a| a.as_str().unwrap_or("").to_string())
        .collect();
    vec![
        s(name(obj)),
        s(str_at(obj, "/addressType")),
        s(list_with_more(&ports, 3)),
        s(list_with_more(&addresses, 3)),
        age(obj, now),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::render;

    #[test]
    fn ingresses() {
        let ing = json!({"metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"], "secretName": "tls"}],
                "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.5"}, {"hostname": "a-very-long-load-balancer.example.com"}]}}});
        assert_eq!(
            render(&INGRESS, &ing),
            [
                json!("web"),
                json!("nginx"),
                json!("a.example.com,b.example.com"),
                json!("203.0.113.5,a-very-long-load-balancer.example.com"),
                json!("80, 443"),
                json!("60m")
            ]
        );
        let catch_all = json!({"metadata": {"name": "all"}, "spec": {"defaultBackend": {"service": {"name": "x"}},
            "rules": [{"http": {}}]}});
        assert_eq!(render(&INGRESS, &catch_all)[1..5], [json!("<none>"), json!("*"), json!(""), json!("80")]);
        let many = json!({"metadata": {"name": "m"}, "spec": {"rules": [
            {"host": "a"}, {"http": {}}, {"host": "b"}, {"host": "c"}, {"host": "d"}]}});
        assert_eq!(render(&INGRESS, &many)[2], json!("a,b,c + 2 more..."));
        // Nothing follows the rule filling the list, so nothing is "more".
        let exact = json!({"metadata": {"name": "e"}, "spec": {"rules": [{"host": "a"}, {}, {"host": "b"}, {"host": "c"}]}});
        assert_eq!(render(&INGRESS, &exact)[2], json!("a,b,c"));
    }

    #[test]
    fn ingress_classes_and_network_policies() {
        let class = json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external-lb"}}});
        assert_eq!(
            render(&INGRESS_CLASS, &class)[..3],
            [
                json!("nginx"),
                json!("k8s.io/ingress-nginx"),
                json!("IngressParameters.k8s.example.com/external-lb")
            ]
        );
        let plain = json!({"metadata": {"name": "c"}, "spec": {"controller": "example.com/c"}});
        assert_eq!(render(&INGRESS_CLASS, &plain)[2], json!("<none>"));

        let deny_all =
            json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});
        assert_eq!(render(&NETWORK_POLICY, &deny_all)[1], json!("<none>"));
        let db =
            json!({"metadata": {"name": "db"}, "spec": {"podSelector": {"matchLabels": {"role": "db"}}}});
        assert_eq!(render(&NETWORK_POLICY, &db)[1], json!("role=db"));
    }

    #[test]
    fn endpoint_slices() {
        let slice = json!({"metadata": {"name": "web-abc12", "creationTimestamp": "2024-05-01T11:59:00Z"},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "named"}, {}, {"port": 9090}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]});
        assert_eq!(
            render(&ENDPOINT_SLICE, &slice),
            [
                json!("web-abc12"),
                json!("IPv4"),
                json!("80,named,* + 1 more..."),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."),
                json!("60s")
            ]
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv6", "endpoints": null});
        assert_eq!(render(&ENDPOINT_SLICE, &empty)[2..4], [json!("<unset>"), json!("<unset>")]);
        let cidr = json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.96.0.0/12", "fd00:10:96::/112"]}});
        assert_eq!(render(&SERVICE_CIDR, &cidr)[1], json!("10.96.0.0/12,fd00:10:96::/112"));
    }
}
