//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate
//! the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use super::taint_toleration::tolerations_tolerate;
use crate::framework::{Plugin, Status};
use crate::nodeinfo::{NodeInfo, PodInfo};

pub const ERR_REASON: &str = "node(s) were unschedulable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    if !node.unschedulable() {
        return Status::success();
    }
    let taint = Taint { key: TAINT_UNSCHEDULABLE.into(), effect: "NoSchedule".into(), ..Default::default() };
    if tolerations_tolerate(pod.tolerations(), &taint) {
        Status::success()
    } else {
        Status::unresolvable(Plugin::NodeUnschedulable, ERR_REASON)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, toleration};

    #[test]
    fn cordoned_nodes_take_only_pods_tolerating_unschedulable() {
        let mut cordoned = node("n1");
        cordoned.spec.get_or_insert_with(Default::default).unschedulable = Some(true);
        let cordoned = NodeInfo::new(cordoned.into());
        let plain = NodeInfo::new(node("n2").into());
        let p = PodInfo::new(pod("p").into());
        let mut tolerant = pod("t");
        tolerant.spec.as_mut().unwrap().tolerations =
            Some(vec![toleration(TAINT_UNSCHEDULABLE, "Exists", "", "NoSchedule")]);
        let tolerant = PodInfo::new(tolerant.into());
        assert_eq!(filter(&p, &cordoned).reasons, vec![ERR_REASON.to_string()]);
        assert!(filter(&p, &plain).is_success());
        assert!(filter(&tolerant, &cordoned).is_success());
    }
}
