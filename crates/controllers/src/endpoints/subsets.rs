//! Building and canonicalising Endpoints subsets (upstream `pkg/api/v1/endpoints`
//! `RepackSubsets` and the endpoints controller's capacity truncation): addresses are
//! de-duplicated by IP and target uid, grouped with exactly the ports they serve, a
//! not-ready state for any port wins over ready, and everything is sorted, so that equal
//! endpoints always compare equal.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset};

/// Most addresses an Endpoints object holds; the rest is truncated.
pub const MAX_CAPACITY: usize = 1000;
/// The annotation set when addresses were truncated.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

type AddrKey = (String, String);

fn addr_key(a: &EndpointAddress) -> AddrKey {
    (a.ip.clone(), a.target_ref.as_ref().and_then(|r| r.uid.clone()).unwrap_or_default())
}

fn port_key(p: &EndpointPort) -> (String, i32, String, String) {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        p.protocol.clone().unwrap_or_default(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

/// Repacks subsets into the canonical layout.
pub fn repack(subsets: Vec<EndpointSubset>) -> Vec<EndpointSubset> {
    let mut addresses: HashMap<AddrKey, EndpointAddress> = HashMap::new();
    // For each port (None: the subset had no ports), which addresses serve it and whether ready.
    let mut by_port: Vec<(Option<EndpointPort>, BTreeMap<AddrKey, bool>)> = Vec::new();
    for s in subsets {
        let ports: Vec<Option<EndpointPort>> = match s.ports {
            Some(ps) if !ps.is_empty() => ps.into_iter().map(Some).collect(),
            _ => vec![None],
        };
        let ready = s.addresses.unwrap_or_default().into_iter().map(|a| (a, true));
        let not_ready = s.not_ready_addresses.unwrap_or_default().into_iter().map(|a| (a, false));
        let all: Vec<(EndpointAddress, bool)> = ready.chain(not_ready).collect();
        for port in ports {
            let idx = match by_port.iter().position(|(p, _)| *p == port) {
                Some(i) => i,
                None => {
                    by_port.push((port, BTreeMap::new()));
                    by_port.len() - 1
                }
            };
            for (a, is_ready) in &all {
                let k = addr_key(a);
                addresses.entry(k.clone()).or_insert_with(|| a.clone());
                let set = &mut by_port[idx].1;
                match set.get(&k) {
                    Some(false) => {}
                    _ => {
                        set.insert(k, *is_ready);
                    }
                }
            }
        }
    }
    let mut groups: Vec<(BTreeMap<AddrKey, bool>, Vec<EndpointPort>)> = Vec::new();
    for (port, set) in by_port {
        if set.is_empty() {
            continue;
        }
        let i = match groups.iter().position(|(s, _)| *s == set) {
            Some(i) => i,
            None => {
                groups.push((set, Vec::new()));
                groups.len() - 1
            }
        };
        if let Some(p) = port {
            groups[i].1.push(p);
        }
    }
    let mut out: Vec<EndpointSubset> = groups
        .into_iter()
        .map(|(set, mut ports)| {
            let pick = |want: bool| -> Option<Vec<EndpointAddress>> {
                let v: Vec<EndpointAddress> = set
                    .iter()
                    .filter(|(_, r)| **r == want)
                    .filter_map(|(k, _)| addresses.get(k).cloned())
                    .collect();
                (!v.is_empty()).then_some(v)
            };
            ports.sort_by_key(port_key);
            ports.dedup();
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    out.sort_by_key(|s| {
        let ports: Vec<_> = s.ports.iter().flatten().map(port_key).collect();
        let addrs: Vec<AddrKey> =
            s.addresses.iter().chain(s.not_ready_addresses.iter()).flatten().map(addr_key).collect();
        (ports, addrs)
    });
    out
}

/// Whether two subset lists are equal when the targets' resourceVersions are ignored.
pub fn equal_ignoring_resource_version(a: &[EndpointSubset], b: &[EndpointSubset]) -> bool {
    let strip = |subsets: &[EndpointSubset]| -> Vec<EndpointSubset> {
        subsets
            .iter()
            .cloned()
            .map(|mut s| {
                for a in s.addresses.iter_mut().flatten().chain(s.not_ready_addresses.iter_mut().flatten()) {
                    if let Some(r) = a.target_ref.as_mut() {
                        r.resource_version = None;
                    }
                }
                s
            })
            .collect()
    };
    strip(a) == strip(b)
}

/// Whether the over-capacity annotation is present exactly when needed.
pub fn capacity_annotation_correct(
    annotations: Option<&BTreeMap<String, String>>,
    subsets: &[EndpointSubset],
) -> bool {
    let n: usize = subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len) + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum();
    if n > MAX_CAPACITY {
        return false;
    }
    !annotations.is_some_and(|a| a.contains_key(OVER_CAPACITY))
}

/// Truncates to [`MAX_CAPACITY`] addresses, ready ones first, each subset keeping its
/// share; returns whether anything was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let total_ready: usize = subsets.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
    let total_not_ready: usize =
        subsets.iter().map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)).sum();
    if total_ready + total_not_ready <= MAX_CAPACITY {
        return false;
    }
    let truncate_ready = total_ready > MAX_CAPACITY;
    let (max, num_total) = if truncate_ready {
        (MAX_CAPACITY, total_ready)
    } else {
        (MAX_CAPACITY - total_ready, total_not_ready)
    };
    let mut can_be_added = max;
    for s in subsets.iter_mut() {
        let in_subset = if truncate_ready {
            s.addresses.as_ref().map_or(0, Vec::len)
        } else {
            s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        };
        let share = ((in_subset as f64 / num_total as f64) * max as f64).ceil() as usize;
        let to_add = share.min(can_be_added);
        if truncate_ready {
            if let Some(a) = s.addresses.as_mut() {
                a.truncate(to_add);
                can_be_added -= a.len();
            }
            s.not_ready_addresses = None;
        } else if let Some(a) = s.not_ready_addresses.as_mut() {
            a.truncate(to_add);
            can_be_added -= a.len();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn subset(v: serde_json::Value) -> EndpointSubset {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn addresses_serving_the_same_ports_are_packed_into_one_subset() {
        let got = repack(vec![
            subset(
                json!({"addresses": [{"ip": "10.0.0.2"}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
            ),
            subset(
                json!({"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
            ),
            subset(
                json!({"notReadyAddresses": [{"ip": "10.0.0.3"}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
            ),
        ]);
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                    "notReadyAddresses": [{"ip": "10.0.0.3"}],
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}])
        );
    }

    #[test]
    fn an_address_not_ready_on_one_port_is_not_ready_there_and_ports_split_by_address_set() {
        let got = repack(vec![
            subset(json!({"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "a", "port": 1}]})),
            subset(json!({"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "a", "port": 1}]})),
            subset(
                json!({"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"name": "b", "port": 2}]}),
            ),
        ]);
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            json!([
                {"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "a", "port": 1}]},
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"name": "b", "port": 2}]}
            ])
        );
    }

    #[test]
    fn subsets_without_ports_keep_their_addresses() {
        let got = repack(vec![
            subset(json!({"addresses": [{"ip": "10.0.0.9"}]})),
            subset(json!({"addresses": [{"ip": "10.0.0.8"}]})),
        ]);
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            json!([{"addresses": [{"ip": "10.0.0.8"}, {"ip": "10.0.0.9"}]}])
        );
    }

    #[test]
    fn truncation_keeps_ready_addresses_first() {
        let ready: Vec<serde_json::Value> =
            (0..900).map(|i| json!({"ip": format!("10.0.{}.{}", i / 250, i % 250)})).collect();
        let not_ready: Vec<serde_json::Value> =
            (0..300).map(|i| json!({"ip": format!("10.1.{}.{}", i / 250, i % 250)})).collect();
        let mut subsets = vec![subset(json!({"addresses": ready, "notReadyAddresses": not_ready}))];
        assert!(truncate(&mut subsets));
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 900);
        assert_eq!(subsets[0].not_ready_addresses.as_ref().unwrap().len(), 100);
        assert!(!capacity_annotation_correct(
            None,
            &[subset(
                json!({"addresses": (0..1001).map(|i| json!({"ip": i.to_string()})).collect::<Vec<_>>()})
            )]
        ));
    }
}
