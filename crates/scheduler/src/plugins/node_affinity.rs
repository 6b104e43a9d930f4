//! NodeAffinity: `spec.nodeSelector` and the required node affinity terms must match the
//! node (filter); matching preferred terms add their weights (score).

use k8s_openapi::api::core::v1::PreferredSchedulingTerm;

use super::default_normalize;
use crate::framework::{Plugin, Status};
use crate::nodeinfo::{NodeInfo, PodInfo};
use crate::selector::NodeTerm;

pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Status {
    if pod.node_affinity.matches(&node.name, node.labels()) {
        Status::success()
    } else {
        Status::unresolvable(Plugin::NodeAffinity, ERR_REASON_POD)
    }
}

/// The preferred terms of a pod, compiled.
pub fn preferred_terms(pod: &PodInfo) -> Vec<(i64, NodeTerm)> {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_ref())
        .map(|terms: &Vec<PreferredSchedulingTerm>| {
            terms
                .iter()
                .filter(|t| t.weight != 0)
                .map(|t| (t.weight as i64, NodeTerm::from_api(&t.preference)))
                .collect()
        })
        .unwrap_or_default()
}

/// Normalized scores, or None when the pod prefers nothing (the plugin is skipped).
pub fn score(pod: &PodInfo, nodes: &[&NodeInfo]) -> Option<Vec<i64>> {
    let terms = preferred_terms(pod);
    if terms.is_empty() {
        return None;
    }
    let mut s: Vec<i64> = nodes
        .iter()
        .map(|n| terms.iter().filter(|(_, t)| t.matches(&n.name, n.labels())).map(|(w, _)| *w).sum())
        .collect();
    default_normalize(&mut s, false);
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{node_with_labels, pod};
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    };

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect())
                .filter(|v: &Vec<String>| !v.is_empty()),
        }
    }

    fn with_required(terms: Vec<NodeSelectorTerm>) -> PodInfo {
        let mut p = pod("p");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: terms,
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        PodInfo::new(p.into())
    }

    fn exprs(reqs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm { match_expressions: Some(reqs), match_fields: None }
    }

    #[test]
    fn node_selector_requires_every_label() {
        let mut p = pod("p");
        p.spec.as_mut().unwrap().node_selector = Some([("disktype".to_string(), "ssd".to_string())].into());
        let p = PodInfo::new(p.into());
        let ssd = NodeInfo::new(node_with_labels("a", &[("disktype", "ssd")]).into());
        let hdd = NodeInfo::new(node_with_labels("b", &[("disktype", "hdd")]).into());
        assert!(filter(&p, &ssd).is_success());
        assert_eq!(filter(&p, &hdd).reasons, vec![ERR_REASON_POD.to_string()]);
    }

    #[test]
    fn required_terms_are_ored_and_their_expressions_anded() {
        let zone = |z: &str| {
            NodeInfo::new(node_with_labels(z, &[("topology.kubernetes.io/zone", z), ("gpu", "4")]).into())
        };
        let cases: Vec<(NodeSelectorTerm, &str, bool)> = vec![
            // The documentation's example: zone In [antarctica-east1, antarctica-west1].
            (
                exprs(vec![req(
                    "topology.kubernetes.io/zone",
                    "In",
                    &["antarctica-east1", "antarctica-west1"],
                )]),
                "antarctica-east1",
                true,
            ),
            (
                exprs(vec![req(
                    "topology.kubernetes.io/zone",
                    "In",
                    &["antarctica-east1", "antarctica-west1"],
                )]),
                "europe",
                false,
            ),
            (exprs(vec![req("topology.kubernetes.io/zone", "NotIn", &["europe"])]), "europe", false),
            (exprs(vec![req("gpu", "Exists", &[])]), "x", true),
            (exprs(vec![req("gpu", "DoesNotExist", &[])]), "x", false),
            (exprs(vec![req("gpu", "Gt", &["3"])]), "x", true),
            (exprs(vec![req("gpu", "Lt", &["3"])]), "x", false),
            (exprs(vec![req("gpu", "Gt", &["three"])]), "x", false),
            (
                exprs(vec![req("gpu", "Exists", &[]), req("topology.kubernetes.io/zone", "In", &["y"])]),
                "x",
                false,
            ),
            (
                NodeSelectorTerm {
                    match_expressions: None,
                    match_fields: Some(vec![req("metadata.name", "In", &["x"])]),
                },
                "x",
                true,
            ),
            (
                NodeSelectorTerm {
                    match_expressions: None,
                    match_fields: Some(vec![req("metadata.name", "NotIn", &["x"])]),
                },
                "x",
                false,
            ),
            (NodeSelectorTerm { match_expressions: None, match_fields: None }, "x", false),
        ];
        for (i, (term, node, want)) in cases.into_iter().enumerate() {
            let p = with_required(vec![term]);
            assert_eq!(filter(&p, &zone(node)).is_success(), want, "case {i}");
        }
        let either = with_required(vec![
            exprs(vec![req("gpu", "DoesNotExist", &[])]),
            exprs(vec![req("topology.kubernetes.io/zone", "In", &["x"])]),
        ]);
        assert!(filter(&either, &zone("x")).is_success());
    }

    #[test]
    fn preferred_terms_add_their_weights() {
        let mut p = pod("p");
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    PreferredSchedulingTerm {
                        weight: 1,
                        preference: exprs(vec![req("label-1", "In", &["key-1"])]),
                    },
                    PreferredSchedulingTerm {
                        weight: 50,
                        preference: exprs(vec![req("label-2", "In", &["key-2"])]),
                    },
                ]),
                ..Default::default()
            }),
            ..Default::default()
        });
        let p = PodInfo::new(p.into());
        let a = NodeInfo::new(node_with_labels("a", &[("label-1", "key-1")]).into());
        let b = NodeInfo::new(node_with_labels("b", &[("label-2", "key-2")]).into());
        let c = NodeInfo::new(node_with_labels("c", &[("label-1", "key-1"), ("label-2", "key-2")]).into());
        assert_eq!(score(&p, &[&a, &b, &c]), Some(vec![1, 98, 100]));
        assert_eq!(score(&PodInfo::new(pod("q").into()), &[&a]), None);
    }
}
