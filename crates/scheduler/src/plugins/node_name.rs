//! NodeName: a pod that names a node (`spec.nodeName`) fits only that node.

use crate::framework::{Plugin, Status};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    let wanted = pod.node_name();
    if wanted.is_empty() || wanted == node.name {
        Status::success()
    } else {
        Status::unresolvable(Plugin::NodeName, ERR_REASON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod};

    #[test]
    fn a_pod_naming_a_node_fits_only_that_node() {
        let cases = [("", "n1", true), ("n1", "n1", true), ("n2", "n1", false)];
        for (wanted, name, ok) in cases {
            let mut p = pod("p");
            p.spec.as_mut().unwrap().node_name = Some(wanted.into()).filter(|s: &String| !s.is_empty());
            let s = filter(&PodInfo::new(p.into()), &NodeInfo::new(node(name).into()));
            assert_eq!(s.is_success(), ok, "{wanted} on {name}");
            if !ok {
                assert_eq!(s.reasons, vec![ERR_REASON.to_string()]);
            }
        }
    }
}
