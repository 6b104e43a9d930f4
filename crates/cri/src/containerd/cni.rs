//! The CNI network the supervised containerd gives pods: a Linux bridge that is the
//! pods' gateway, host-local addresses from the node's pod CIDR, port mappings, and the
//! loopback interface.
//!
//! Masquerading stays off: pod traffic must never leave the machine under the host's
//! address. The bridge plugin's `isGateway` does turn on `net.ipv4.ip_forward`
//! host-wide (the plugin's behaviour, not ours). Pods get no default route unless one
//! is asked for in [`BridgeNetwork::routes`]; they reach their own subnet, and the
//! node agent adds the Service CIDR there once it programs Service addresses.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::json;

use crate::{Error, Result};

/// The CNI spec version of the generated list; Debian 12's plugins (1.1) and
/// containerd 1.6's libcni both speak it.
pub const CNI_VERSION: &str = "1.0.0";

/// The plugins the generated list runs, which must exist in the CNI bin directory.
pub const PLUGINS: &[&str] = &["bridge", "host-local", "portmap", "loopback"];

/// The bridge network's settings.
#[derive(Debug, Clone)]
pub struct BridgeNetwork {
    /// The CNI network name (also the host-local allocation directory's name).
    pub name: String,
    /// The Linux bridge device, at most 15 characters.
    pub bridge: String,
    /// The node's pod CIDR, e.g. `10.42.0.0/24`; the bridge takes its first address.
    pub subnet: String,
    /// Extra destinations (CIDRs) routed through the bridge gateway inside pods.
    pub routes: Vec<String>,
    /// Where host-local records its allocations (instead of the host-wide
    /// /var/lib/cni/networks), so each data directory has its own pool.
    pub ipam_data_dir: PathBuf,
}

/// Parses `addr/prefix` and checks that the prefix leaves room for a gateway and pods.
pub fn parse_cidr(option: &'static str, cidr: &str, min_free_bits: u8) -> Result<(IpAddr, u8)> {
    let invalid = |reason: String| Error::InvalidOption { option, reason };
    let (addr, prefix) =
        cidr.split_once('/').ok_or_else(|| invalid(format!("{cidr:?} is not a CIDR (address/prefix)")))?;
    let addr: IpAddr =
        addr.parse().map_err(|_| invalid(format!("{cidr:?} does not start with an IP address")))?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid(format!("{cidr:?} has no numeric prefix length")))?;
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > bits - min_free_bits {
        return Err(invalid(format!("{cidr:?}: a /{prefix} is too small")));
    }
    Ok((addr, prefix))
}

/// Checks a Linux interface name: 1 to 15 characters, no `/`, whitespace or `:`.
pub fn validate_bridge_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidOption {
            option: "bridge name",
            reason: format!("{name:?} is not a Linux interface name (1-15 of a-z A-Z 0-9 - _ .)"),
        })
    }
}

impl BridgeNetwork {
    /// Checks the settings and renders the conflist (JSON) containerd's CNI loader reads.
    pub fn conflist(&self) -> Result<serde_json::Value> {
        validate_bridge_name(&self.bridge)?;
        if self.name.is_empty()
            || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(Error::InvalidOption {
                option: "CNI network name",
                reason: format!("{:?} must be non-empty letters, digits, - _ .", self.name),
            });
        }
        parse_cidr("pod CIDR", &self.subnet, 2)?;
        let routes = self
            .routes
            .iter()
            .map(|r| parse_cidr("pod route", r, 0).map(|_| json!({ "dst": r })))
            .collect::<Result<Vec<_>>>()?;
        let mut ipam = json!({
            "type": "host-local",
            "dataDir": self.ipam_data_dir,
            "ranges": [[{ "subnet": self.subnet }]],
        });
        if !routes.is_empty() {
            ipam["routes"] = json!(routes);
        }
        Ok(json!({
            "cniVersion": CNI_VERSION,
            "name": self.name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": ipam,
                },
                { "type": "portmap", "capabilities": { "portMappings": true } },
                // containerd also brings lo up by itself; the entry keeps the list
                // complete for runtimes that do not.
                { "type": "loopback" },
            ],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> BridgeNetwork {
        BridgeNetwork {
            name: "krust".into(),
            bridge: "krust0".into(),
            subnet: "10.42.0.0/24".into(),
            routes: Vec::new(),
            ipam_data_dir: PathBuf::from("/data/cni/networks"),
        }
    }

    #[test]
    fn the_bridge_is_a_gateway_that_never_masquerades() {
        let list = network().conflist().unwrap();
        assert_eq!(list["cniVersion"], CNI_VERSION);
        let bridge = &list["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "krust0");
        assert_eq!(bridge["isGateway"], true);
        assert_eq!(bridge["ipMasq"], false);
        assert!(bridge.get("isDefaultGateway").is_none());
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.0.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/data/cni/networks");
        assert!(bridge["ipam"].get("routes").is_none(), "no default route unless asked");
        let types: Vec<_> = list["plugins"].as_array().unwrap().iter().map(|p| p["type"].clone()).collect();
        assert_eq!(types, ["bridge", "portmap", "loopback"]);
        assert_eq!(list["plugins"][1]["capabilities"]["portMappings"], true);
    }

    #[test]
    fn routes_asked_for_go_to_host_local() {
        let mut net = network();
        net.routes = vec!["10.43.0.0/16".into()];
        let list = net.conflist().unwrap();
        assert_eq!(list["plugins"][0]["ipam"]["routes"], json!([{ "dst": "10.43.0.0/16" }]));
    }

    #[test]
    fn bad_settings_are_refused() {
        type Mutation = fn(&mut BridgeNetwork);
        let cases: [(&str, Mutation); 6] = [
            ("long bridge", |n| n.bridge = "a-very-long-bridge".into()),
            ("empty bridge", |n| n.bridge = String::new()),
            ("bridge with slash", |n| n.bridge = "a/b".into()),
            ("not a cidr", |n| n.subnet = "10.42.0.0".into()),
            ("tiny subnet", |n| n.subnet = "10.42.0.0/31".into()),
            ("bad route", |n| n.routes = vec!["default".into()]),
        ];
        for (name, mutate) in cases {
            let mut net = network();
            mutate(&mut net);
            assert!(net.conflist().is_err(), "{name} was accepted");
        }
    }

    #[test]
    fn ipv6_pod_cidrs_are_accepted() {
        let mut net = network();
        net.subnet = "fd00:42::/64".into();
        assert!(net.conflist().is_ok());
    }
}
