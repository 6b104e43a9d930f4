//! Selectors compiled once per pod: label selectors (pod affinity terms, topology spread
//! constraints, PodDisruptionBudgets, namespace selectors) and node selectors (nodeSelector,
//! node affinity with matchExpressions and matchFields).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiLabelSelector;

/// The labels of an object, or an empty map.
pub fn labels_of(labels: &Option<BTreeMap<String, String>>) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    labels.as_ref().unwrap_or(&EMPTY)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::In(vals), Some(v)) => vals.iter().any(|x| x == v),
            (Op::In(_), None) => false,
            (Op::NotIn(vals), Some(v)) => !vals.iter().any(|x| x == v),
            (Op::NotIn(_), None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x < *n),
            (Op::Gt(_) | Op::Lt(_), None) => false,
        }
    }

    /// Validates and builds a requirement from an operator and values as the API gives them.
    fn new(key: &str, operator: &str, values: &[String], numeric: bool) -> Option<Self> {
        let op = match operator {
            "In" if !values.is_empty() => Op::In(values.to_vec()),
            "NotIn" if !values.is_empty() => Op::NotIn(values.to_vec()),
            "Exists" if values.is_empty() => Op::Exists,
            "DoesNotExist" if values.is_empty() => Op::DoesNotExist,
            "Gt" if numeric && values.len() == 1 => Op::Gt(values[0].parse().ok()?),
            "Lt" if numeric && values.len() == 1 => Op::Lt(values[0].parse().ok()?),
            _ => return None,
        };
        Some(Self { key: key.to_string(), op })
    }
}

/// A label selector. `nothing` selectors (from an absent or invalid API selector) match no
/// object; an empty selector matches every object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    pub fn everything() -> Self {
        Self { reqs: Vec::new(), nothing: false }
    }

    pub fn nothing() -> Self {
        Self { reqs: Vec::new(), nothing: true }
    }

    /// `metav1.LabelSelectorAsSelector`: absent matches nothing, `{}` matches everything, an
    /// invalid requirement makes the whole selector match nothing.
    pub fn from_api(sel: Option<&ApiLabelSelector>) -> Self {
        let Some(sel) = sel else { return Self::nothing() };
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement { key: k.clone(), op: Op::In(vec![v.clone()]) });
        }
        for e in sel.match_expressions.iter().flatten() {
            match Requirement::new(&e.key, &e.operator, e.values.as_deref().unwrap_or(&[]), false) {
                Some(r) => reqs.push(r),
                None => return Self::nothing(),
            }
        }
        Self { reqs, nothing: false }
    }

    /// A selector requiring every label of `set` (a Service selector, `labels.Set.AsSelector`).
    pub fn from_map(set: &BTreeMap<String, String>) -> Self {
        Self {
            reqs: set
                .iter()
                .map(|(k, v)| Requirement { key: k.clone(), op: Op::In(vec![v.clone()]) })
                .collect(),
            nothing: false,
        }
    }

    /// Adds the requirements of `other` (a logical AND).
    pub fn and(&mut self, other: &LabelSelector) {
        self.nothing |= other.nothing;
        self.reqs.extend(other.reqs.iter().cloned());
    }

    /// Requires `key` to equal `value` as well.
    pub fn require(&mut self, key: &str, value: &str) {
        self.reqs.push(Requirement { key: key.into(), op: Op::In(vec![value.into()]) });
    }

    /// Requires `key` to be absent or differ from `value` as well.
    pub fn require_not(&mut self, key: &str, value: &str) {
        self.reqs.push(Requirement { key: key.into(), op: Op::NotIn(vec![value.into()]) });
    }

    /// Whether the selector has no requirement and matches everything.
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.reqs.is_empty()
    }

    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.nothing && self.reqs.iter().all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
    }
}

/// One node selector term: requirements on labels AND on fields (only `metadata.name`).
/// An invalid term, or one with no requirement at all, matches no node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTerm {
    exprs: Vec<Requirement>,
    fields: Vec<Requirement>,
    valid: bool,
}

impl NodeTerm {
    pub fn from_api(t: &NodeSelectorTerm) -> Self {
        let mut valid = true;
        let mut build = |list: &Option<Vec<NodeSelectorRequirement>>, fields: bool| -> Vec<Requirement> {
            let mut out = Vec::new();
            for r in list.iter().flatten() {
                if fields && r.key != "metadata.name" {
                    valid = false;
                    continue;
                }
                let vals = r.values.as_deref().unwrap_or(&[]);
                let req = if fields {
                    match r.operator.as_str() {
                        // Field requirements take exactly one value.
                        "In" | "NotIn" if vals.len() == 1 => {
                            Requirement::new(&r.key, &r.operator, vals, false)
                        }
                        _ => None,
                    }
                } else {
                    Requirement::new(&r.key, &r.operator, vals, true)
                };
                match req {
                    Some(q) => out.push(q),
                    None => valid = false,
                }
            }
            out
        };
        let exprs = build(&t.match_expressions, false);
        let fields = build(&t.match_fields, true);
        let valid = valid && !(exprs.is_empty() && fields.is_empty());
        Self { exprs, fields, valid }
    }

    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.valid
            && self.exprs.iter().all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches(Some(node_name)))
    }
}

/// A pod's hard node constraints: `spec.nodeSelector` AND (when present) the
/// `requiredDuringSchedulingIgnoredDuringExecution` terms, of which one must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequiredNodeAffinity {
    node_selector: Option<LabelSelector>,
    terms: Option<Vec<NodeTerm>>,
}

impl RequiredNodeAffinity {
    pub fn of(pod: &Pod) -> Self {
        let Some(spec) = pod.spec.as_ref() else { return Self::default() };
        let node_selector =
            spec.node_selector.as_ref().filter(|m| !m.is_empty()).map(LabelSelector::from_map);
        let terms = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|ns| ns.node_selector_terms.iter().map(NodeTerm::from_api).collect());
        Self { node_selector, terms }
    }

    /// Whether there is anything to check.
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_none() && self.terms.is_none()
    }

    pub fn matches(&self, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
        if let Some(s) = &self.node_selector
            && !s.matches(labels)
        {
            return false;
        }
        match &self.terms {
            Some(terms) => terms.iter().any(|t| t.matches(node_name, labels)),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|s| s.to_string()).collect())
            },
        }
    }

    #[test]
    fn label_selectors_follow_set_based_semantics() {
        let sel = |exprs: Vec<LabelSelectorRequirement>| {
            LabelSelector::from_api(Some(&ApiLabelSelector {
                match_expressions: Some(exprs),
                match_labels: None,
            }))
        };
        let pod = labels(&[("app", "web"), ("tier", "front")]);
        let cases = vec![
            (sel(vec![expr("app", "In", &["web", "db"])]), true),
            (sel(vec![expr("app", "NotIn", &["web"])]), false),
            (sel(vec![expr("missing", "NotIn", &["x"])]), true),
            (sel(vec![expr("tier", "Exists", &[])]), true),
            (sel(vec![expr("tier", "DoesNotExist", &[])]), false),
            (sel(vec![expr("app", "In", &[])]), false),
            (sel(vec![expr("app", "Gt", &["1"])]), false),
            (LabelSelector::from_api(Some(&ApiLabelSelector::default())), true),
            (LabelSelector::from_api(None), false),
        ];
        for (i, (s, want)) in cases.into_iter().enumerate() {
            assert_eq!(s.matches(&pod), want, "case {i}: {s:?}");
        }
    }
}
