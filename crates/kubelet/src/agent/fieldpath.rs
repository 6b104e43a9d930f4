//! Values the downward API exposes (`fieldRef`, `resourceFieldRef`), shared by
//! environment variables and downwardAPI volumes, with the kubelet's formatting: maps as
//! sorted `key="value"` lines, resources as the ceiling of value / divisor, limits that
//! are not set taken from the node's allocatable.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The node's allocatable resources (cpu in cores, memory and storage in bytes), which
/// stand in for limits a container does not set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allocatable {
    pub cpu: f64,
    pub memory: f64,
    pub ephemeral_storage: f64,
}

/// Pod addresses known to the agent (the API status may not carry them yet).
#[derive(Clone, Debug, Default)]
pub struct Addresses {
    pub host_ips: Vec<String>,
    pub pod_ips: Vec<String>,
}

/// A Kubernetes quantity (`500m`, `1.5`, `128Mi`, `1G`, `1e3`) in base units, exact
/// to a thousandth as Kubernetes' `MilliValue`; `None` if it is not one.
pub fn parse_quantity(s: &str) -> Option<f64> {
    apimachinery::quantity::Quantity::parse(s).ok().map(|q| q.milli_value() as f64 / 1000.0)
}

/// A quantity's value, `0` when absent or malformed.
pub fn quantity(q: Option<&Quantity>) -> f64 {
    q.and_then(|q| parse_quantity(&q.0)).unwrap_or(0.0)
}

/// A map as the downward API writes it: `key="value"` lines sorted by key.
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    let Some(m) = m else { return String::new() };
    m.iter()
        .map(|(k, v)| format!("{k}={}", apimachinery::validation::go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `metadata.labels['app']` -> ("metadata.labels", Some("app")).
fn split_subscript(path: &str) -> (&str, Option<&str>) {
    if let Some(open) = path.find('[')
        && path.ends_with(']')
    {
        let inner = &path[open + 1..path.len() - 1];
        let inner = inner.trim_matches('\'');
        return (&path[..open], Some(inner));
    }
    (path, None)
}

/// The value of a pod `fieldRef`. Errors use the kubelet's wording.
pub fn pod_field(pod: &Pod, path: &str, addresses: &Addresses) -> Result<String, String> {
    let meta = &pod.metadata;
    let (base, key) = split_subscript(path);
    if let Some(key) = key {
        let map = match base {
            "metadata.labels" => meta.labels.as_ref(),
            "metadata.annotations" => meta.annotations.as_ref(),
            _ => return Err(format!("unsupported fieldPath with subscript: {path}")),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" => addresses.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => addresses.host_ips.join(","),
        "status.podIP" => addresses.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => addresses.pod_ips.join(","),
        _ => return Err(format!("unsupported fieldPath: {path}")),
    })
}

/// The container named `name` among the pod's containers and init containers.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

/// The value of a `resourceFieldRef` on `container`: the ceiling of the resource over
/// the divisor; limits the container does not set are the node's allocatable.
pub fn container_resource(
    container: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
    allocatable: &Allocatable,
) -> Result<String, String> {
    let divisor = divisor.and_then(|q| parse_quantity(&q.0)).filter(|d| *d > 0.0).unwrap_or(1.0);
    let res = container.resources.as_ref();
    let limit = |name: &str, fallback: f64| {
        res.and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(name))
            .and_then(|q| parse_quantity(&q.0))
            .unwrap_or(fallback)
    };
    let request = |name: &str| quantity(res.and_then(|r| r.requests.as_ref()).and_then(|r| r.get(name)));
    let (value, cpu) = match resource {
        "limits.cpu" => (limit("cpu", allocatable.cpu), true),
        "requests.cpu" => (request("cpu"), true),
        "limits.memory" => (limit("memory", allocatable.memory), false),
        "requests.memory" => (request("memory"), false),
        "limits.ephemeral-storage" => (limit("ephemeral-storage", allocatable.ephemeral_storage), false),
        "requests.ephemeral-storage" => (request("ephemeral-storage"), false),
        r if r.starts_with("limits.hugepages-") => (limit(&r["limits.".len()..], 0.0), false),
        r if r.starts_with("requests.hugepages-") => (request(&r["requests.".len()..]), false),
        _ => return Err(format!("unsupported container resource : {resource}")),
    };
    let result = if cpu {
        // CPU compares milli-values, so `1m` over a divisor of `1` is 1.
        ((value * 1000.0).ceil() / (divisor * 1000.0).ceil()).ceil()
    } else {
        (value.ceil() / divisor.ceil()).ceil()
    };
    Ok(format!("{}", result as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse_like_kubernetes() {
        let cases = [
            ("500m", Some(0.5)),
            ("2", Some(2.0)),
            ("1.5", Some(1.5)),
            ("128Mi", Some(134_217_728.0)),
            ("1G", Some(1e9)),
            ("1e3", Some(1000.0)),
            ("10Ki", Some(10240.0)),
            ("abc", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_quantity(s), want, "{s}");
        }
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1",
                "labels": {"app": "web", "tier": "front\"end"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "default", "containers": [
                {"name": "c", "image": "busybox",
                 "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}}
            ]}
        }))
        .unwrap()
    }

    #[test]
    fn field_refs_give_metadata_spec_and_addresses() {
        let addr = Addresses { host_ips: vec!["10.0.0.1".into()], pod_ips: vec!["10.42.0.5".into()] };
        let p = pod();
        let cases = [
            ("metadata.name", "web"),
            ("metadata.namespace", "shop"),
            ("metadata.uid", "u1"),
            ("metadata.labels['app']", "web"),
            ("metadata.labels", "app=\"web\"\ntier=\"front\\\"end\""),
            ("spec.nodeName", "n1"),
            ("spec.serviceAccountName", "default"),
            ("status.hostIP", "10.0.0.1"),
            ("status.podIP", "10.42.0.5"),
            ("status.podIPs", "10.42.0.5"),
        ];
        for (path, want) in cases {
            assert_eq!(pod_field(&p, path, &addr).unwrap(), want, "{path}");
        }
        assert_eq!(pod_field(&p, "spec.bogus", &addr).unwrap_err(), "unsupported fieldPath: spec.bogus");
    }

    #[test]
    fn resource_refs_round_up_and_default_limits_to_allocatable() {
        let p = pod();
        let c = find_container(&p, "c").unwrap();
        let alloc = Allocatable { cpu: 2.0, memory: 1024.0 * 1024.0 * 1024.0, ephemeral_storage: 0.0 };
        let one_mi = Quantity("1Mi".into());
        let milli = Quantity("1m".into());
        let cases = [
            ("requests.cpu", None, "1"),
            ("requests.cpu", Some(&milli), "250"),
            ("limits.cpu", None, "2"),
            ("limits.memory", Some(&one_mi), "128"),
            ("requests.memory", None, "67108864"),
        ];
        for (res, div, want) in cases {
            assert_eq!(container_resource(c, res, div, &alloc).unwrap(), want, "{res}");
        }
    }
}
