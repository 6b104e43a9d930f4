//! NodeResourcesFit and NodeResourcesBalancedAllocation: a pod's requests must fit in the
//! node's allocatable minus what the pods already there request (filter); emptier nodes
//! score higher (LeastAllocated) and so do nodes whose CPU and memory use stay balanced.

use crate::framework::{Code, Plugin, Status};
use crate::nodeinfo::{NodeInfo, PodInfo};

const MAX_NODE_SCORE: i64 = super::MAX_NODE_SCORE;

/// One resource the pod lacks on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Insufficient {
    pub resource: String,
    pub reason: String,
    /// The request exceeds the node's whole allocatable, so evicting pods cannot help.
    pub unresolvable: bool,
}

/// Every resource the pod lacks on the node, in the order kube-scheduler checks them.
pub fn insufficient_resources(pod: &PodInfo, node: &NodeInfo) -> Vec<Insufficient> {
    let mut out = Vec::new();
    let alloc = &node.allocatable;
    let used = &node.requested;
    if node.pods.len() as i64 + 1 > alloc.allowed_pods {
        out.push(Insufficient {
            resource: "pods".into(),
            reason: "Too many pods".into(),
            unresolvable: false,
        });
    }
    let req = &pod.requests;
    if req.is_zero() {
        return out;
    }
    let mut check = |name: &str, want: i64, have: i64, used: i64| {
        if want > 0 && want > have - used {
            out.push(Insufficient {
                resource: name.into(),
                reason: format!("Insufficient {name}"),
                unresolvable: want > have,
            });
        }
    };
    check("cpu", req.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("memory", req.memory, alloc.memory, used.memory);
    check("ephemeral-storage", req.ephemeral_storage, alloc.ephemeral_storage, used.ephemeral_storage);
    for (name, want) in &req.scalar {
        let have = alloc.scalar.get(name).copied().unwrap_or(0);
        let u = used.scalar.get(name).copied().unwrap_or(0);
        check(name, *want, have, u);
    }
    out
}

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    let lacking = insufficient_resources(pod, node);
    if lacking.is_empty() {
        return Status::success();
    }
    let code = if lacking.iter().any(|i| i.unresolvable) {
        Code::UnschedulableAndUnresolvable
    } else {
        Code::Unschedulable
    };
    Status {
        code,
        reasons: lacking.into_iter().map(|i| i.reason).collect(),
        plugin: Some(Plugin::NodeResourcesFit),
    }
}

fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// LeastAllocated over CPU and memory (weight 1 each), counting the scoring defaults for
/// containers without requests.
pub fn least_allocated_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let mut sum = 0;
    let mut weights = 0;
    let pairs = [
        (node.non_zero_requested.milli_cpu + pod.non_zero_requests.milli_cpu, node.allocatable.milli_cpu),
        (node.non_zero_requested.memory + pod.non_zero_requests.memory, node.allocatable.memory),
    ];
    for (requested, alloc) in pairs {
        if alloc == 0 {
            continue;
        }
        sum += least_requested(requested, alloc);
        weights += 1;
    }
    if weights == 0 { 0 } else { sum / weights }
}

/// BalancedAllocation: `(1 - std) * 100` over the CPU and memory fractions the node would
/// have with the pod; None (skipped) for pods that request neither.
pub fn balanced_allocation_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let mut fractions = Vec::with_capacity(2);
    let pairs = [
        (node.requested.milli_cpu + pod.requests.milli_cpu, node.allocatable.milli_cpu),
        (node.requested.memory + pod.requests.memory, node.allocatable.memory),
    ];
    for (requested, alloc) in pairs {
        if alloc == 0 {
            continue;
        }
        fractions.push((requested as f64 / alloc as f64).min(1.0));
    }
    let std = match fractions.len() {
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// Whether BalancedAllocation scores this pod at all (best-effort pods are skipped so that
/// they do not pile onto one node).
pub fn balanced_allocation_applies(pod: &PodInfo) -> bool {
    pod.requests.milli_cpu != 0 || pod.requests.memory != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node_with_resources, pod_with_requests};

    fn node(cpu: &str, mem: &str, pods: &str) -> NodeInfo {
        NodeInfo::new(node_with_resources("n", cpu, mem, pods).into())
    }

    fn with(mut n: NodeInfo, pods: &[(&str, &str)]) -> NodeInfo {
        for (i, (c, m)) in pods.iter().enumerate() {
            n.add_pod(PodInfo::new(pod_with_requests(&format!("e{i}"), c, m).into()).into());
        }
        n
    }

    #[test]
    fn requests_must_fit_in_what_is_left_of_allocatable() {
        // (node cpu, node mem, existing (cpu, mem), incoming (cpu, mem), reasons, code)
        type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, (&'a str, &'a str), Vec<&'a str>, Code);
        let cases: Vec<Case> = vec![
            ("10", "20", vec![("5", "5")], ("1", "1"), vec![], Code::Success),
            ("10", "20", vec![("9", "5")], ("2", "1"), vec!["Insufficient cpu"], Code::Unschedulable),
            ("10", "20", vec![("5", "19")], ("1", "2"), vec!["Insufficient memory"], Code::Unschedulable),
            (
                "10",
                "20",
                vec![("9", "19")],
                ("2", "2"),
                vec!["Insufficient cpu", "Insufficient memory"],
                Code::Unschedulable,
            ),
            ("10", "20", vec![], ("11", "1"), vec!["Insufficient cpu"], Code::UnschedulableAndUnresolvable),
            ("10", "20", vec![("10", "20")], ("", ""), vec![], Code::Success),
            ("10", "20", vec![("5", "5")], ("5", "15"), vec![], Code::Success),
        ];
        for (i, (cpu, mem, existing, (pc, pm), reasons, code)) in cases.into_iter().enumerate() {
            let n = with(node(cpu, mem, "110"), &existing);
            let p = PodInfo::new(pod_with_requests("p", pc, pm).into());
            let s = filter(&p, &n);
            assert_eq!(s.code, code, "case {i}");
            assert_eq!(s.reasons, reasons, "case {i}");
        }
    }

    #[test]
    fn a_full_node_reports_too_many_pods_even_for_best_effort_pods() {
        let n = with(node("10", "20", "1"), &[("", "")]);
        let p = PodInfo::new(pod_with_requests("p", "", "").into());
        assert_eq!(filter(&p, &n).reasons, vec!["Too many pods".to_string()]);
    }

    #[test]
    fn extended_resources_are_checked_by_name() {
        let mut raw = node_with_resources("n", "4", "8Gi", "110");
        raw.status.as_mut().unwrap().allocatable.as_mut().unwrap().insert(
            "example.com/foo".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
        );
        let n = NodeInfo::new(raw.into());
        let mut p = pod_with_requests("p", "1", "");
        p.spec.as_mut().unwrap().containers[0].resources.as_mut().unwrap().requests.as_mut().unwrap().insert(
            "example.com/foo".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into()),
        );
        let s = filter(&PodInfo::new(p.into()), &n);
        assert_eq!(s.reasons, vec!["Insufficient example.com/foo".to_string()]);
        assert_eq!(s.code, Code::UnschedulableAndUnresolvable);
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        // Upstream's example: node 4000m/10000 with nothing, pod 3000m/5000 ->
        // cpu (4000-3000)*100/4000 = 25, memory (10000-5000)*100/10000 = 50, mean 37.
        let n = NodeInfo::new(node_with_resources("n", "4", "10000", "110").into());
        let p = PodInfo::new(pod_with_requests("p", "3", "5000").into());
        assert_eq!(least_allocated_score(&p, &n), 37);
        // A pod without requests counts 100m and 200Mi.
        let big = NodeInfo::new(node_with_resources("n", "1", "2000Mi", "110").into());
        let empty = PodInfo::new(pod_with_requests("q", "", "").into());
        assert_eq!(least_allocated_score(&empty, &big), (90 + 90) / 2);
    }

    #[test]
    fn balanced_allocation_is_one_minus_the_spread_of_fractions() {
        // cpu 3000/4000 = 0.75, memory 5000/10000 = 0.5 -> std 0.125 -> 87.
        let n = NodeInfo::new(node_with_resources("n", "4", "10000", "110").into());
        let p = PodInfo::new(pod_with_requests("p", "3", "5000").into());
        assert_eq!(balanced_allocation_score(&p, &n), 87);
        assert!(!balanced_allocation_applies(&PodInfo::new(pod_with_requests("q", "", "").into())));
    }
}
