//! The daemon pod template and the arithmetic of a DaemonSet rollout: the template's
//! hash (the `controller-revision-hash` label), the template generation, which pods are
//! up to date, `maxSurge` / `maxUnavailable` against the desired number of nodes, and
//! the order in which pods on one node are kept.

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::predicates;
use crate::history;
use crate::{Error, Result};

/// The label holding the hash of the template a pod (or revision) was made from.
pub const HASH_LABEL: &str = "controller-revision-hash";
/// The label holding the template generation a pod was made from (older rollouts).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The DaemonSet annotation holding its template generation.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// The template's hash, as upstream's `controller.ComputeHash`: FNV-1a over the template
/// (here its canonical JSON) and, if set, the collision count as 8 little-endian bytes;
/// safe-encoded.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let bytes = history::canonical_bytes(&serde_json::to_value(template).unwrap_or_default());
    let mut probe = Vec::new();
    if let Some(c) = collision_count {
        probe.extend_from_slice(&(c as u32).to_le_bytes());
        probe.extend_from_slice(&[0, 0, 0, 0]);
    }
    history::safe_encode(&history::fnv1a_32(&[&bytes, &probe]).to_string())
}

/// The template generation from the DaemonSet's annotation: `Ok(None)` when absent.
pub fn template_generation(ds: &DaemonSet) -> Result<Option<i64>> {
    match ds.metadata.annotations.as_ref().and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION)) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|e| Error::Invalid(format!("invalid {TEMPLATE_GENERATION_ANNOTATION} {v:?}: {e}"))),
    }
}

/// The template daemon pods are made from: the DaemonSet's, with the default
/// tolerations, the template generation label (if known) and the hash label.
pub fn pod_template(ds: &DaemonSet, generation: Option<i64>, hash: &str) -> PodTemplateSpec {
    let mut t = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    predicates::add_default_tolerations(t.spec.get_or_insert_with(Default::default));
    let labels = t.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(Default::default);
    if let Some(g) = generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(HASH_LABEL.into(), hash.into());
    }
    t
}

/// Whether the pod was made from the current template: its hash label is `hash`, or its
/// generation label is the DaemonSet's template generation.
pub fn is_pod_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let template_matches =
        generation.is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str()));
    let hash_matches = !hash.is_empty() && label(HASH_LABEL) == Some(hash);
    hash_matches || template_matches
}

/// An int-or-percent scaled against `total`, percentages rounded up.
pub fn scaled_value(v: &IntOrString, total: i32) -> Result<i32> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()).ok_or_else(|| {
                Error::Invalid(format!(
                    "invalid value for IntOrString: invalid type: string is not a percentage: {s:?}"
                ))
            })?;
            Ok(((pct * i64::from(total) + 99).div_euclid(100)) as i32)
        }
    }
}

fn rolling(ds: &DaemonSet) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet> {
    let s = ds.spec.as_ref()?.update_strategy.as_ref()?;
    if s.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return None;
    }
    s.rolling_update.as_ref()
}

/// Whether the update strategy is OnDelete.
pub fn is_on_delete(ds: &DaemonSet) -> bool {
    ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.type_.as_deref())
        == Some("OnDelete")
}

/// How many extra pods a rolling update may create over `desired` nodes.
pub fn surge_count(ds: &DaemonSet, desired: i32) -> Result<i32> {
    match rolling(ds).and_then(|r| r.max_surge.as_ref()) {
        None => Ok(0),
        Some(v) => {
            scaled_value(v, desired).map_err(|e| Error::Invalid(format!("invalid value for MaxSurge: {e}")))
        }
    }
}

/// How many nodes a rolling update may leave without an available pod.
pub fn unavailable_count(ds: &DaemonSet, desired: i32) -> Result<i32> {
    let Some(r) = rolling(ds) else { return Ok(0) };
    let v = r.max_unavailable.clone().unwrap_or(IntOrString::Int(1));
    scaled_value(&v, desired).map_err(|e| Error::Invalid(format!("invalid value for MaxUnavailable: {e}")))
}

/// Whether the rollout surges (creates the new pod before deleting the old).
pub fn allows_surge(ds: &DaemonSet) -> bool {
    surge_count(ds, 1).is_ok_and(|s| s != 0)
}

/// Scheduled pods first, then oldest first, then by name (which pod on a node to keep).
pub fn by_creation_and_phase(a: &Pod, b: &Pod) -> Ordering {
    let scheduled =
        |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    match (scheduled(a), scheduled(b)) {
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    t(a).cmp(&t(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_scale_up_and_integers_stay() {
        let cases = [
            (IntOrString::Int(2), 10, 2),
            (IntOrString::String("10%".into()), 10, 1),
            (IntOrString::String("10%".into()), 11, 2),
            (IntOrString::String("25%".into()), 3, 1),
            (IntOrString::String("0%".into()), 5, 0),
            (IntOrString::String("100%".into()), 7, 7),
        ];
        for (v, total, want) in cases {
            assert_eq!(scaled_value(&v, total).unwrap(), want, "{v:?} of {total}");
        }
        assert!(scaled_value(&IntOrString::String("ten".into()), 3).is_err());
    }

    #[test]
    fn the_template_hash_changes_with_the_template_and_collision_count() {
        let a = PodTemplateSpec::default();
        let b = PodTemplateSpec {
            metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                labels: Some([("app".to_string(), "x".to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(compute_hash(&a, None), compute_hash(&a.clone(), None));
        assert_ne!(compute_hash(&a, None), compute_hash(&b, None));
        assert_ne!(compute_hash(&a, None), compute_hash(&a, Some(1)));
    }
}
