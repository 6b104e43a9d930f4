//! The RollingUpdate strategy of a DaemonSet (upstream's `rollingUpdate`). Without surge,
//! old pods are deleted while fewer than `maxUnavailable` nodes lack an available pod (old
//! pods that are not available go first) and the next sync creates their replacements.
//! With `maxSurge`, a new pod is created beside an old one (up to `maxSurge` at a time,
//! immediately where the old one is unavailable) and the old one is deleted once the new
//! one is available. (OnDelete replaces pods only when a user deletes them.)

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;

use super::predicates;
use super::template;
use crate::Result;
use crate::history::pods;

/// The pods (or nodes) a rollout step wants changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Old pods to delete, by name.
    pub delete: Vec<String>,
    /// Nodes to create a new pod on (surge only).
    pub create_on: Vec<String>,
}

/// The new and the old pod on one node, either possibly missing.
type NewAndOld<'a> = (Option<&'a Arc<Pod>>, Option<&'a Arc<Pod>>);

/// The new and old non-deleted pods on a node, or `None` if there is more than one of
/// either (the manage loop prunes those first).
fn updated_pods_on_node<'a>(
    pods_on_node: &'a [Arc<Pod>],
    hash: &str,
    generation: Option<i64>,
) -> Option<NewAndOld<'a>> {
    let (mut new, mut old) = (None, None);
    for pod in pods_on_node {
        if pods::is_terminating(pod) {
            continue;
        }
        let slot = if template::is_pod_updated(pod, hash, generation) { &mut new } else { &mut old };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// `(max_surge, max_unavailable, desired)` for the nodes, adding an empty entry to
/// `by_node` for every node that should run a pod and has none. A configuration allowing
/// neither surge nor unavailability falls back to one unavailable node.
pub fn desired_counts(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &mut BTreeMap<String, Vec<Arc<Pod>>>,
) -> Result<(i32, i32, i32)> {
    let mut desired = 0;
    for node in nodes {
        if !predicates::node_should_run(node, ds).0 {
            continue;
        }
        desired += 1;
        by_node.entry(node.name_any()).or_default();
    }
    let max_unavailable = template::unavailable_count(ds, desired)?;
    let max_surge = template::surge_count(ds, desired)?;
    if desired > 0 && max_unavailable == 0 && max_surge == 0 {
        return Ok((0, 1, desired));
    }
    Ok((max_surge, max_unavailable, desired))
}

/// Plans one step of the rolling update over the pods grouped by node.
pub fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    mut by_node: BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    now: jiff::Timestamp,
) -> Result<Step> {
    let (max_surge, max_unavailable, desired) = desired_counts(ds, nodes, &mut by_node)?;
    let generation = template::template_generation(ds).unwrap_or(None);
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let available = |p: &Pod| pods::is_available(p, min_ready, now);
    let node_named = |name: &str| nodes.iter().find(|n| n.metadata.name.as_deref() == Some(name));
    let should_run = |name: &str| node_named(name).is_some_and(|n| predicates::node_should_run(n, ds).0);

    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replacements = Vec::new();
        let mut candidates = Vec::new();
        for (node, pods_on_node) in &by_node {
            let Some((new, old)) = updated_pods_on_node(pods_on_node, hash, generation) else {
                tracing::debug!(node, "daemonset: excess pods on node, leaving them to the manage loop");
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(old) {
                        replacements.push(old.name_any());
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(old.name_any());
                    }
                }
            }
        }
        let remaining = (max_unavailable - unavailable).max(0) as usize;
        let take = remaining.min(candidates.len());
        replacements.extend(candidates.into_iter().take(take));
        return Ok(Step { delete: replacements, create_on: Vec::new() });
    }

    let mut delete = Vec::new();
    let mut should_not_run_delete = Vec::new();
    let mut candidate_nodes = Vec::new();
    let mut allowed_nodes = Vec::new();
    let mut surging = 0;
    let mut num_available = 0;
    for (node, pods_on_node) in &by_node {
        let Some((new, old)) = updated_pods_on_node(pods_on_node, hash, generation) else {
            tracing::debug!(node, "daemonset: excess pods on node, leaving them to the manage loop");
            surging += 1;
            continue;
        };
        match (old, new) {
            (Some(o), _) if available(o) => num_available += 1,
            (None, Some(n)) if available(n) => num_available += 1,
            _ => {}
        }
        match (old, new) {
            (None, _) => {}
            (Some(old), None) => {
                if !available(old) {
                    if !should_run(node) {
                        delete.push(old.name_any());
                        continue;
                    }
                    allowed_nodes.push(node.clone());
                } else {
                    if !should_run(node) {
                        should_not_run_delete.push(old.name_any());
                        continue;
                    }
                    if surging >= max_surge {
                        continue;
                    }
                    candidate_nodes.push(node.clone());
                }
            }
            (Some(old), Some(new)) => {
                if !available(new) {
                    surging += 1;
                    continue;
                }
                delete.push(old.name_any());
            }
        }
    }
    // Old pods on nodes the set no longer selects go only once enough new ones are
    // available elsewhere: surge promises full availability.
    let deletable = (num_available - desired).max(0) as usize;
    delete.extend(should_not_run_delete.into_iter().take(deletable));
    let remaining = (max_surge - surging).max(0) as usize;
    let take = remaining.min(candidate_nodes.len());
    allowed_nodes.extend(candidate_nodes.into_iter().take(take));
    Ok(Step { delete, create_on: allowed_nodes })
}
