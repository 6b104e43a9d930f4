//! NodePorts: a pod's host ports must be free on the node (same protocol and port collide
//! when the IPs are equal or either is 0.0.0.0).

use crate::framework::{Plugin, Status};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    for want in &pod.host_ports {
        if node.used_ports.iter().any(|u| u.conflicts(want)) {
            return Status::unschedulable(Plugin::NodePorts, ERR_REASON);
        }
    }
    Status::success()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, with_host_port};

    #[test]
    fn host_ports_conflict_by_protocol_port_and_overlapping_ip() {
        // (existing ip, proto, port), (wanted ip, proto, port), fits
        let cases = [
            (("", "TCP", 80), ("", "TCP", 80), false),
            (("", "TCP", 80), ("", "UDP", 80), true),
            (("", "TCP", 80), ("", "TCP", 8080), true),
            (("127.0.0.1", "TCP", 80), ("127.0.0.2", "TCP", 80), true),
            (("127.0.0.1", "TCP", 80), ("0.0.0.0", "TCP", 80), false),
            (("0.0.0.0", "TCP", 80), ("127.0.0.1", "TCP", 80), false),
            (("127.0.0.1", "TCP", 80), ("127.0.0.1", "TCP", 80), false),
        ];
        for (i, (have, want, fits)) in cases.into_iter().enumerate() {
            let mut n = NodeInfo::new(node("n").into());
            n.add_pod(PodInfo::new(with_host_port(pod("a"), have.0, have.1, have.2).into()).into());
            let p = PodInfo::new(with_host_port(pod("b"), want.0, want.1, want.2).into());
            assert_eq!(filter(&p, &n).is_success(), fits, "case {i}");
        }
    }
}
