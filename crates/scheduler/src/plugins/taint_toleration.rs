//! TaintToleration: a node's NoSchedule and NoExecute taints must be tolerated by the pod
//! (filter), and nodes with fewer untolerated PreferNoSchedule taints score higher.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::default_normalize;
use crate::framework::{Plugin, Status};
use crate::nodeinfo::{NodeInfo, PodInfo};

/// Whether one toleration tolerates a taint: the effect matches (or the toleration has
/// none), the key matches (or the toleration has none, with `Exists`), and the value is
/// equal (operator `Equal`, the default) or anything (`Exists`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect
    {
        return false;
    }
    if let Some(k) = t.key.as_deref().filter(|k| !k.is_empty())
        && k != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of the tolerations tolerates the taint.
pub fn tolerations_tolerate(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first NoSchedule/NoExecute taint the tolerations do not tolerate.
pub fn untolerated_hard_taint<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerations_tolerate(tolerations, t))
}

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    match untolerated_hard_taint(node.taints(), pod.tolerations()) {
        None => Status::success(),
        Some(t) => Status::unresolvable(
            Plugin::TaintToleration,
            format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value.as_deref().unwrap_or("")),
        ),
    }
}

/// How many PreferNoSchedule taints of the node the pod does not tolerate (only
/// tolerations with effect PreferNoSchedule or none count).
pub fn raw_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let tolerations: Vec<&Toleration> = pod
        .tolerations()
        .iter()
        .filter(|t| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")))
        .collect();
    node.taints()
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .count() as i64
}

/// Normalized scores (fewer intolerable taints score higher).
pub fn score(pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
    let mut s: Vec<i64> = nodes.iter().map(|n| raw_score(pod, n)).collect();
    default_normalize(&mut s, true);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node, pod, taint, toleration};

    #[test]
    fn tolerations_match_taints_as_documented() {
        let t = taint("key1", "value1", "NoSchedule");
        let cases = [
            (toleration("key1", "Equal", "value1", "NoSchedule"), true),
            (toleration("key1", "Exists", "", "NoSchedule"), true),
            (toleration("key1", "", "value1", "NoSchedule"), true),
            (toleration("key1", "Equal", "value2", "NoSchedule"), false),
            (toleration("key1", "Equal", "value1", "NoExecute"), false),
            (toleration("key1", "Equal", "value1", ""), true),
            (toleration("", "Exists", "", ""), true),
            (toleration("key2", "Exists", "", ""), false),
        ];
        for (i, (tol, want)) in cases.into_iter().enumerate() {
            assert_eq!(tolerates(&tol, &t), want, "case {i}: {tol:?}");
        }
    }

    #[test]
    fn every_hard_taint_must_be_tolerated() {
        // The documentation's example: key2 is not tolerated, so the pod does not fit.
        let mut n = node("n1");
        n.spec.get_or_insert_with(Default::default).taints = Some(vec![
            taint("key1", "value1", "NoSchedule"),
            taint("key1", "value1", "NoExecute"),
            taint("key2", "value2", "NoSchedule"),
        ]);
        let n = NodeInfo::new(n.into());
        let mut p = pod("p");
        p.spec.as_mut().unwrap().tolerations = Some(vec![
            toleration("key1", "Equal", "value1", "NoSchedule"),
            toleration("key1", "Equal", "value1", "NoExecute"),
        ]);
        let s = filter(&PodInfo::new(p.clone().into()), &n);
        assert_eq!(s.reasons, vec!["node(s) had untolerated taint {key2: value2}".to_string()]);
        p.spec.as_mut().unwrap().tolerations.as_mut().unwrap().push(toleration("key2", "Exists", "", ""));
        assert!(filter(&PodInfo::new(p.into()), &n).is_success());
    }

    #[test]
    fn prefer_no_schedule_taints_lower_the_score_but_do_not_filter() {
        let mut a = node("a");
        a.spec.get_or_insert_with(Default::default).taints =
            Some(vec![taint("x", "1", "PreferNoSchedule"), taint("y", "1", "PreferNoSchedule")]);
        let mut b = node("b");
        b.spec.get_or_insert_with(Default::default).taints = Some(vec![taint("x", "1", "PreferNoSchedule")]);
        let (a, b, c) = (NodeInfo::new(a.into()), NodeInfo::new(b.into()), NodeInfo::new(node("c").into()));
        let p = PodInfo::new(pod("p").into());
        assert!(filter(&p, &a).is_success());
        assert_eq!(score(&p, &[&a, &b, &c]), vec![0, 50, 100]);
        let mut tolerant = pod("t");
        tolerant.spec.as_mut().unwrap().tolerations =
            Some(vec![toleration("x", "Exists", "", "PreferNoSchedule")]);
        let t = PodInfo::new(tolerant.into());
        assert_eq!(score(&t, &[&a, &b, &c]), vec![0, 100, 100]);
    }
}
