//! Resource lists (`v1.ResourceList`) as exact quantities, and back to their wire form.

use std::collections::BTreeMap;

pub use apimachinery::quantity::Quantity;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Wire;

/// Resource name to quantity, as `v1.ResourceList`.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Parses a wire `ResourceList`; entries that do not parse are left out (the API server
/// validates them, so there are none in practice).
pub fn parse_list(list: Option<&BTreeMap<String, Wire>>) -> ResourceList {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| Quantity::parse(&v.0).ok().map(|q| (k.clone(), q)))
        .collect()
}

/// The wire form of a `ResourceList` (canonical text).
pub fn to_wire_list(list: &ResourceList) -> BTreeMap<String, Wire> {
    list.iter().map(|(k, v)| (k.clone(), Wire(v.to_string()))).collect()
}

/// Adds `b` into `a`, name by name.
pub fn add_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        let sum = a.get(k).copied().unwrap_or(Quantity::ZERO) + *v;
        a.insert(k.clone(), sum);
    }
}

/// Element-wise maximum of two lists (a name missing on one side takes the other's value).
pub fn max_of(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        match out.get(k) {
            Some(cur) if cur >= v => {}
            _ => {
                out.insert(k.clone(), *v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[(&str, &str)]) -> BTreeMap<String, Wire> {
        entries.iter().map(|(k, v)| (k.to_string(), Wire(v.to_string()))).collect()
    }

    #[test]
    fn lists_add_take_maxima_and_round_trip_canonically() {
        let mut a = parse_list(Some(&list(&[("cpu", "500m"), ("memory", "1024Mi"), ("bad", "lots")])));
        assert!(!a.contains_key("bad"), "unparsable entries are left out");
        let b = parse_list(Some(&list(&[("cpu", "1"), ("pods", "2")])));
        let max = max_of(&a, &b);
        assert_eq!(to_wire_list(&max), list(&[("cpu", "1"), ("memory", "1Gi"), ("pods", "2")]));
        add_into(&mut a, &b);
        assert_eq!(to_wire_list(&a), list(&[("cpu", "1500m"), ("memory", "1Gi"), ("pods", "2")]));
        assert!(parse_list(None).is_empty());
    }
}
