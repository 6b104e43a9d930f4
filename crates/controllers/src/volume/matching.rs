//! Matching claims to volumes (upstream `pkg/controller/volume/persistentvolume/util` and
//! the access-mode index): class, access modes, capacity, volume mode, label selector,
//! pre-binding and node affinity. Pure functions over the objects.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume, PersistentVolumeClaim,
};

use apimachinery::quantity::Quantity;

/// The storage class a claim asks for (beta annotation first, then the field; "" for none).
pub fn claim_class(pvc: &PersistentVolumeClaim) -> String {
    crate::resourcequota::usage::claim_class(pvc)
}

/// Whether the claim names a class at all (an explicit "" counts): claims that do not are
/// given the default class.
pub fn claim_has_class(pvc: &PersistentVolumeClaim) -> bool {
    pvc.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("volume.beta.kubernetes.io/storage-class"))
        || pvc.spec.as_ref().is_some_and(|s| s.storage_class_name.is_some())
}

/// The class of a volume (beta annotation first, then the field; "" for none).
pub fn volume_class(pv: &PersistentVolume) -> String {
    if let Some(c) =
        pv.metadata.annotations.as_ref().and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
    {
        return c.clone();
    }
    pv.spec.as_ref().and_then(|s| s.storage_class_name.clone()).unwrap_or_default()
}

/// Whether the volume's claimRef points at this claim (by namespace and name, and by uid
/// when the ref carries one).
pub fn is_bound_to(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { return false };
    if r.name.as_deref() != pvc.metadata.name.as_deref()
        || r.namespace.as_deref() != pvc.metadata.namespace.as_deref()
    {
        return false;
    }
    match r.uid.as_deref() {
        None | Some("") => true,
        Some(uid) => pvc.metadata.uid.as_deref() == Some(uid),
    }
}

fn claim_modes(pvc: &PersistentVolumeClaim) -> Vec<String> {
    pvc.spec.as_ref().and_then(|s| s.access_modes.clone()).unwrap_or_default()
}

fn volume_modes(pv: &PersistentVolume) -> Vec<String> {
    pv.spec.as_ref().and_then(|s| s.access_modes.clone()).unwrap_or_default()
}

/// The requested storage of a claim (zero when absent).
pub fn requested_storage(pvc: &PersistentVolumeClaim) -> Quantity {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or(Quantity::ZERO)
}

/// The storage capacity of a volume (zero when absent).
pub fn capacity(pv: &PersistentVolume) -> Quantity {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::parse(&q.0).ok())
        .unwrap_or(Quantity::ZERO)
}

/// Whether claim and volume disagree on Filesystem/Block (both default to Filesystem).
pub fn volume_mode_mismatch(pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> bool {
    let c = pvc.spec.as_ref().and_then(|s| s.volume_mode.as_deref()).unwrap_or("Filesystem");
    let v = pv.spec.as_ref().and_then(|s| s.volume_mode.as_deref()).unwrap_or("Filesystem");
    c != v
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

fn term_matches(t: &NodeSelectorTerm, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
    let fields = t.match_fields.as_deref().unwrap_or(&[]);
    // An empty term selects nothing.
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(node_name)))
}

/// Whether a node satisfies the volume's required node affinity (any term matching; no
/// affinity admits every node).
pub fn node_affinity_allows(
    pv: &PersistentVolume,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(required) =
        pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required.node_selector_terms.iter().any(|t| term_matches(t, node_name, labels))
}

/// The node a claim is matched for (the scheduler's path): its name and labels.
pub struct NodeView<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// `FindMatchingVolume` over volumes whose access modes are exactly one set: a volume
/// pre-bound to the claim wins; otherwise the smallest Available volume of the claim's
/// class whose capacity, volume mode, labels and (given a node) node affinity and access
/// modes fit. Without a node, delayed-binding claims only take pre-bound volumes.
fn find_matching<'a>(
    pvc: &PersistentVolumeClaim,
    volumes: &[&'a PersistentVolume],
    node: Option<&NodeView<'_>>,
    delay_binding: bool,
    selector: Option<&apimachinery::labels::Selector>,
) -> Option<&'a PersistentVolume> {
    let requested = requested_storage(pvc);
    let class = claim_class(pvc);
    let mut best: Option<(&PersistentVolume, Quantity)> = None;
    for &pv in volumes {
        let bound_here = is_bound_to(pv, pvc);
        if pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some() && !bound_here {
            continue;
        }
        let cap = capacity(pv);
        if cap < requested || volume_mode_mismatch(pvc, pv) || pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let affinity_ok = node.is_none_or(|n| node_affinity_allows(pv, n.name, n.labels));
        if bound_here {
            return if affinity_ok { Some(pv) } else { None };
        }
        if node.is_none() && delay_binding {
            continue;
        }
        if pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Available") {
            continue;
        }
        if let Some(sel) = selector
            && !sel.matches(pv.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
        {
            continue;
        }
        if volume_class(pv) != class || !affinity_ok {
            continue;
        }
        if node.is_some() && !claim_modes(pvc).iter().all(|m| volume_modes(pv).contains(m)) {
            continue;
        }
        if best.as_ref().is_none_or(|(_, c)| *c > cap) {
            best = Some((pv, cap));
        }
    }
    best.map(|(pv, _)| pv)
}

/// The best volume for a claim (`findBestMatchForClaim`): volumes are grouped by their set
/// of access modes; only sets that include every mode the claim asks for are searched, the
/// sets with the fewest modes first, and the first set with a match decides.
pub fn find_best_match<'a>(
    pvc: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node: Option<&NodeView<'_>>,
    delay_binding: bool,
) -> Result<Option<&'a PersistentVolume>, String> {
    let selector = match pvc.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        None => None,
        Some(s) => {
            let v = serde_json::to_value(s).map_err(|e| e.to_string())?;
            Some(apimachinery::labels::Selector::from_label_selector(&v).map_err(|e| {
                format!(
                    "error creating internal label selector for claim: {}/{}: {e}",
                    pvc.metadata.namespace.as_deref().unwrap_or(""),
                    pvc.metadata.name.as_deref().unwrap_or("")
                )
            })?)
        }
    };
    let wanted = claim_modes(pvc);
    let mut groups: BTreeMap<Vec<String>, Vec<&PersistentVolume>> = BTreeMap::new();
    for pv in volumes {
        let mut modes = volume_modes(pv);
        modes.sort();
        modes.dedup();
        groups.entry(modes).or_default().push(pv);
    }
    let mut candidates: Vec<(&Vec<String>, &Vec<&PersistentVolume>)> =
        groups.iter().filter(|(modes, _)| wanted.iter().all(|m| modes.contains(m))).collect();
    candidates.sort_by_key(|(modes, _)| modes.len());
    for (_, vols) in candidates {
        if let Some(pv) = find_matching(pvc, vols, node, delay_binding, selector.as_ref()) {
            return Ok(Some(pv));
        }
    }
    Ok(None)
}

/// Why a pre-bound volume does not fit its claim (`checkVolumeSatisfyClaim`).
pub fn check_volume_satisfies_claim(
    pv: &PersistentVolume,
    pvc: &PersistentVolumeClaim,
) -> Result<(), String> {
    let requested = requested_storage(pvc);
    let cap = capacity(pv);
    if cap < requested {
        return Err("requested PV is too small".into());
    }
    if volume_class(pv) != claim_class(pvc) {
        return Err("storageClassName does not match".into());
    }
    if volume_mode_mismatch(pvc, pv) {
        return Err("incompatible volumeMode".into());
    }
    if !claim_modes(pvc).iter().all(|m| volume_modes(pv).contains(m)) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeSelector, ObjectReference, PersistentVolumeClaimSpec, PersistentVolumeSpec,
        PersistentVolumeStatus, VolumeNodeAffinity, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Wire;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn pv(name: &str, size: &str, modes: &[&str], class: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(PersistentVolumeSpec {
                capacity: Some([("storage".to_string(), Wire(size.into()))].into()),
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                storage_class_name: Some(class.into()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus { phase: Some("Available".into()), ..Default::default() }),
        }
    }

    fn pvc(size: &str, modes: &[&str], class: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                storage_class_name: class.map(str::to_string),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Wire(size.into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn best(claim: &PersistentVolumeClaim, vols: &[PersistentVolume]) -> Option<String> {
        find_best_match(claim, vols, None, false).unwrap().and_then(|v| v.metadata.name.clone())
    }

    #[test]
    fn the_smallest_volume_that_fits_is_chosen() {
        let vols = [
            pv("big", "10Gi", &["ReadWriteOnce"], ""),
            pv("small", "1Gi", &["ReadWriteOnce"], ""),
            pv("tiny", "100Mi", &["ReadWriteOnce"], ""),
        ];
        assert_eq!(best(&pvc("500Mi", &["ReadWriteOnce"], None), &vols).as_deref(), Some("small"));
        assert_eq!(best(&pvc("1Gi", &["ReadWriteOnce"], None), &vols).as_deref(), Some("small"));
        assert_eq!(best(&pvc("20Gi", &["ReadWriteOnce"], None), &vols), None);
    }

    #[test]
    fn volumes_with_fewer_extra_access_modes_come_first() {
        let vols = [
            pv("rwo-rox", "1Gi", &["ReadWriteOnce", "ReadOnlyMany"], ""),
            pv("rwo-big", "5Gi", &["ReadWriteOnce"], ""),
        ];
        // The exact mode set wins even though it is larger.
        assert_eq!(best(&pvc("1Gi", &["ReadWriteOnce"], None), &vols).as_deref(), Some("rwo-big"));
        assert_eq!(best(&pvc("1Gi", &["ReadOnlyMany"], None), &vols).as_deref(), Some("rwo-rox"));
        assert_eq!(best(&pvc("1Gi", &["ReadWriteMany"], None), &vols), None);
    }

    #[test]
    fn class_phase_selector_and_claim_refs_filter_volumes() {
        let mut released = pv("released", "1Gi", &["ReadWriteOnce"], "manual");
        released.status.as_mut().unwrap().phase = Some("Released".into());
        let mut taken = pv("taken", "1Gi", &["ReadWriteOnce"], "manual");
        taken.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("other".into()),
            namespace: Some("default".into()),
            ..Default::default()
        });
        let mut labelled = pv("labelled", "2Gi", &["ReadWriteOnce"], "manual");
        labelled.metadata.labels = Some([("tier".to_string(), "fast".to_string())].into());
        let gold = pv("gold", "1Gi", &["ReadWriteOnce"], "gold");
        let vols = [released, taken, labelled, gold];
        assert_eq!(best(&pvc("1Gi", &["ReadWriteOnce"], Some("manual")), &vols).as_deref(), Some("labelled"));
        let mut sel = pvc("1Gi", &["ReadWriteOnce"], Some("manual"));
        sel.spec.as_mut().unwrap().selector = Some(LabelSelector {
            match_labels: Some([("tier".to_string(), "slow".to_string())].into()),
            ..Default::default()
        });
        assert_eq!(best(&sel, &vols), None);
        assert_eq!(best(&pvc("1Gi", &["ReadWriteOnce"], Some("gold")), &vols).as_deref(), Some("gold"));
    }

    #[test]
    fn a_volume_pre_bound_to_the_claim_wins_over_a_better_fit() {
        let mut pre = pv("pre", "10Gi", &["ReadWriteOnce"], "other-class");
        pre.status.as_mut().unwrap().phase = Some("Pending".into());
        pre.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("data".into()),
            namespace: Some("default".into()),
            ..Default::default()
        });
        let vols = [pv("fit", "1Gi", &["ReadWriteOnce"], ""), pre];
        assert_eq!(best(&pvc("1Gi", &["ReadWriteOnce"], None), &vols).as_deref(), Some("pre"));
    }

    #[test]
    fn delayed_binding_without_a_node_takes_only_pre_bound_volumes() {
        let vols = [pv("fit", "1Gi", &["ReadWriteOnce"], "local")];
        let claim = pvc("1Gi", &["ReadWriteOnce"], Some("local"));
        assert!(find_best_match(&claim, &vols, None, true).unwrap().is_none());
        let labels = BTreeMap::new();
        let node = NodeView { name: "n1", labels: &labels };
        assert!(find_best_match(&claim, &vols, Some(&node), true).unwrap().is_some());
    }

    #[test]
    fn node_affinity_restricts_volumes_to_matching_nodes() {
        let mut local = pv("local", "1Gi", &["ReadWriteOnce"], "");
        local.spec.as_mut().unwrap().node_affinity = Some(VolumeNodeAffinity {
            required: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "kubernetes.io/hostname".into(),
                        operator: "In".into(),
                        values: Some(vec!["n1".into()]),
                    }]),
                    ..Default::default()
                }],
            }),
        });
        let n1 = [("kubernetes.io/hostname".to_string(), "n1".to_string())].into();
        let n2 = [("kubernetes.io/hostname".to_string(), "n2".to_string())].into();
        assert!(node_affinity_allows(&local, "n1", &n1));
        assert!(!node_affinity_allows(&local, "n2", &n2));
        let cases = [
            ("Gt", "5", Some("7"), true),
            ("Gt", "5", Some("3"), false),
            ("Lt", "5", Some("3"), true),
            ("Exists", "", None, false),
            ("DoesNotExist", "", None, true),
            ("NotIn", "a", None, true),
        ];
        for (op, v, have, want) in cases {
            let r = NodeSelectorRequirement {
                key: "k".into(),
                operator: op.into(),
                values: Some(vec![v.into()]),
            };
            assert_eq!(requirement_matches(&r, have), want, "{op} {v} {have:?}");
        }
    }
}
