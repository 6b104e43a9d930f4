//! Which nodes a DaemonSet runs on (upstream's `NodeShouldRunDaemonPod`): the template's
//! `nodeName`, `nodeSelector` and required node affinity must match the node, and its
//! taints must be tolerated (with the tolerations every daemon pod gets); a pod already
//! running stays unless a NoExecute taint is not tolerated. Also how a daemon pod is tied
//! to its node: node affinity `matchFields metadata.name In [node]`.

use std::collections::BTreeMap;

use apimachinery::labels::{Operator, Requirement};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
    Taint, Toleration,
};

/// The field of a node that `matchFields` may name.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// The tolerations every daemon pod gets, so node problems neither evict it nor keep it
/// off a node: not-ready and unreachable (NoExecute, forever); disk, memory and PID
/// pressure and unschedulable (NoSchedule); network-unavailable (NoSchedule) for pods on
/// the host network.
pub fn add_default_tolerations(spec: &mut PodSpec) {
    let mut add = |key: &str, effect: &str| {
        add_or_update_toleration(
            spec,
            Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Default::default()
            },
        )
    };
    add("node.kubernetes.io/not-ready", "NoExecute");
    add("node.kubernetes.io/unreachable", "NoExecute");
    add("node.kubernetes.io/disk-pressure", "NoSchedule");
    add("node.kubernetes.io/memory-pressure", "NoSchedule");
    add("node.kubernetes.io/pid-pressure", "NoSchedule");
    add("node.kubernetes.io/unschedulable", "NoSchedule");
    if spec.host_network == Some(true) {
        add_or_update_toleration(
            spec,
            Toleration {
                key: Some("node.kubernetes.io/network-unavailable".into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            },
        );
    }
}

/// Adds a toleration unless one with the same key, operator, value and effect is there
/// (which it then replaces), as upstream's `AddOrUpdateTolerationInPodSpec`.
fn add_or_update_toleration(spec: &mut PodSpec, t: Toleration) {
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    let same = |o: &Toleration| {
        o.key.as_deref().unwrap_or("") == t.key.as_deref().unwrap_or("")
            && o.operator.as_deref().unwrap_or("") == t.operator.as_deref().unwrap_or("")
            && o.value.as_deref().unwrap_or("") == t.value.as_deref().unwrap_or("")
            && o.effect.as_deref().unwrap_or("") == t.effect.as_deref().unwrap_or("")
    };
    match list.iter_mut().find(|o| same(o)) {
        Some(existing) => *existing = t,
        None => list.push(t),
    }
}

/// Whether the toleration tolerates the taint (an empty effect or key matches any; the
/// operator Exists ignores the value; Equal or none compares it).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// The first taint passing `filter` that no toleration tolerates.
pub fn untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints.iter().filter(|t| filter(t)).find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

fn label_requirement(r: &NodeSelectorRequirement) -> Option<Requirement> {
    let op = match r.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return None,
    };
    Requirement::new(&r.key, op, r.values.clone().unwrap_or_default(), "").ok()
}

/// Whether a node selector term matches the node. A term with nothing in it, or with a
/// requirement that does not parse, matches nothing.
fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    for r in exprs {
        match label_requirement(r) {
            Some(req) if req.matches_with(|k| labels.get(k).map(String::as_str)) => {}
            _ => return false,
        }
    }
    let name = node.metadata.name.as_deref().unwrap_or("");
    for f in fields {
        let values = f.values.as_deref().unwrap_or(&[]);
        if f.key != NODE_NAME_FIELD || values.len() != 1 {
            return false;
        }
        let ok = match f.operator.as_str() {
            "In" => values[0] == name,
            "NotIn" => values[0] != name,
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Whether the node satisfies the pod's `nodeSelector` and its required node affinity
/// (any one term).
pub fn matches_node_affinity(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        None => true,
        Some(ns) => ns.node_selector_terms.iter().any(|t| term_matches(t, node)),
    }
}

/// The pod spec a daemon pod on `node_name` would have: the template's, bound to the node
/// by `nodeName` for the checks, with the default tolerations.
pub fn daemon_pod_spec(ds: &DaemonSet, node_name: &str) -> PodSpec {
    let mut spec = ds.spec.as_ref().and_then(|s| s.template.spec.clone()).unwrap_or_default();
    spec.node_name = Some(node_name.to_string());
    add_default_tolerations(&mut spec);
    spec
}

/// `(should_run, should_continue_running)`: whether a daemon pod belongs on the node, and
/// whether one already there may stay (only NoExecute taints evict).
pub fn node_should_run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    let template_node =
        ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|s| s.node_name.as_deref());
    if template_node.is_some_and(|n| !n.is_empty() && n != node_name) {
        return (false, false);
    }
    let spec = daemon_pod_spec(ds, node_name);
    if !matches_node_affinity(&spec, node) {
        return (false, false);
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    let schedule_blocked =
        untolerated_taint(taints, tolerations, |t| t.effect == "NoExecute" || t.effect == "NoSchedule")
            .is_some();
    if schedule_blocked {
        let evicted = untolerated_taint(taints, tolerations, |t| t.effect == "NoExecute").is_some();
        return (false, !evicted);
    }
    (true, true)
}

/// The node a daemon pod is for: its `nodeName`, else the single value of a required
/// `matchFields metadata.name In` term.
pub fn target_node_name(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|f| {
        let values = f.values.as_deref().unwrap_or(&[]);
        (f.key == NODE_NAME_FIELD && f.operator == "In" && values.len() == 1).then(|| values[0].clone())
    })
}

/// Ties a pod to one node: its required node affinity becomes the single term
/// `matchFields metadata.name In [node]`, keeping the rest of the affinity.
pub fn replace_node_name_affinity(affinity: Option<Affinity>, node_name: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NODE_NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node_name.to_string()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ds(spec: PodSpec) -> DaemonSet {
        DaemonSet {
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec { spec: Some(spec), ..Default::default() },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn tolerations_match_taints_as_kubernetes_documents() {
        let taint = Taint {
            key: "key1".into(),
            value: Some("value1".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let t = |key: Option<&str>, op: Option<&str>, value: Option<&str>, effect: Option<&str>| Toleration {
            key: key.map(Into::into),
            operator: op.map(Into::into),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            ..Default::default()
        };
        let cases = [
            (t(Some("key1"), Some("Equal"), Some("value1"), Some("NoSchedule")), true),
            (t(Some("key1"), Some("Exists"), None, Some("NoSchedule")), true),
            (t(Some("key1"), None, Some("value1"), None), true),
            (t(None, Some("Exists"), None, None), true),
            (t(Some("key1"), Some("Equal"), Some("other"), Some("NoSchedule")), false),
            (t(Some("key1"), Some("Exists"), None, Some("NoExecute")), false),
            (t(Some("key2"), Some("Exists"), None, None), false),
        ];
        for (tol, want) in cases {
            assert_eq!(tolerates(&tol, &taint), want, "{tol:?}");
        }
    }

    #[test]
    fn daemon_pods_get_the_default_tolerations_once() {
        let mut spec = PodSpec { host_network: Some(true), ..Default::default() };
        add_default_tolerations(&mut spec);
        add_default_tolerations(&mut spec);
        let keys: Vec<_> =
            spec.tolerations.unwrap().into_iter().map(|t| (t.key.unwrap(), t.effect.unwrap())).collect();
        assert_eq!(
            keys,
            [
                ("node.kubernetes.io/not-ready".to_string(), "NoExecute".to_string()),
                ("node.kubernetes.io/unreachable".into(), "NoExecute".into()),
                ("node.kubernetes.io/disk-pressure".into(), "NoSchedule".into()),
                ("node.kubernetes.io/memory-pressure".into(), "NoSchedule".into()),
                ("node.kubernetes.io/pid-pressure".into(), "NoSchedule".into()),
                ("node.kubernetes.io/unschedulable".into(), "NoSchedule".into()),
                ("node.kubernetes.io/network-unavailable".into(), "NoSchedule".into()),
            ]
        );
    }

    #[test]
    fn nodes_are_chosen_by_selector_affinity_and_taints() {
        let plain = ds(PodSpec::default());
        let by_label = ds(PodSpec {
            node_selector: Some(BTreeMap::from([("disk".into(), "ssd".into())])),
            ..Default::default()
        });
        let by_affinity = ds(PodSpec {
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(vec![NodeSelectorRequirement {
                                key: "zone".into(),
                                operator: "In".into(),
                                values: Some(vec!["a".into(), "b".into()]),
                            }]),
                            match_fields: None,
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let tolerant = ds(PodSpec {
            tolerations: Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let cases = [
            (&plain, node("n", &[], &[]), (true, true)),
            (&plain, node("n", &[], &[("dedicated", "NoSchedule")]), (false, true)),
            (&plain, node("n", &[], &[("dedicated", "NoExecute")]), (false, false)),
            (&plain, node("n", &[], &[("dedicated", "PreferNoSchedule")]), (true, true)),
            (&plain, node("n", &[], &[("node.kubernetes.io/unschedulable", "NoSchedule")]), (true, true)),
            (&plain, node("n", &[], &[("node.kubernetes.io/not-ready", "NoExecute")]), (true, true)),
            (&tolerant, node("n", &[], &[("dedicated", "NoExecute")]), (true, true)),
            (&by_label, node("n", &[("disk", "ssd")], &[]), (true, true)),
            (&by_label, node("n", &[("disk", "hdd")], &[]), (false, false)),
            (&by_affinity, node("n", &[("zone", "b")], &[]), (true, true)),
            (&by_affinity, node("n", &[("zone", "c")], &[]), (false, false)),
            (&by_affinity, node("n", &[], &[]), (false, false)),
        ];
        for (i, (d, n, want)) in cases.into_iter().enumerate() {
            assert_eq!(node_should_run(&n, d), want, "case {i}");
        }
    }

    #[test]
    fn a_template_node_name_limits_the_set_to_that_node() {
        let d = ds(PodSpec { node_name: Some("n1".into()), ..Default::default() });
        assert_eq!(node_should_run(&node("n1", &[], &[]), &d), (true, true));
        assert_eq!(node_should_run(&node("n2", &[], &[]), &d), (false, false));
    }

    #[test]
    fn the_node_name_affinity_replaces_required_terms_and_is_read_back() {
        let a = replace_node_name_affinity(None, "n1");
        let pod = Pod {
            spec: Some(PodSpec { affinity: Some(a.clone()), ..Default::default() }),
            ..Default::default()
        };
        assert_eq!(target_node_name(&pod).as_deref(), Some("n1"));
        let terms = &a
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        let f = &terms[0].match_fields.as_ref().unwrap()[0];
        assert_eq!((f.key.as_str(), f.operator.as_str()), ("metadata.name", "In"));
        assert!(matches_node_affinity(
            &PodSpec { affinity: Some(replace_node_name_affinity(None, "n1")), ..Default::default() },
            &node("n1", &[], &[])
        ));
        assert!(!matches_node_affinity(
            &PodSpec { affinity: Some(replace_node_name_affinity(None, "n1")), ..Default::default() },
            &node("n2", &[], &[])
        ));
    }
}
