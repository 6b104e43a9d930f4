//! DaemonSet status (upstream's `updateDaemonSetStatus`): desired, current, misscheduled,
//! ready, updated, available and unavailable counts over the nodes, judged by the oldest
//! daemon pod on each node, and `observedGeneration` once a sync has acted on the spec.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use super::{predicates, template};
use crate::Result;
use crate::history::pods;

/// The counts of a DaemonSet's status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
    pub unavailable: i32,
}

/// Counts the nodes: each that should run a pod is desired; if it has one it is current,
/// and its oldest pod decides ready, available and updated; a node that should not run
/// one but has one is misscheduled.
pub fn count(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    now: jiff::Timestamp,
) -> Counts {
    let mut c = Counts::default();
    let generation = template::template_generation(ds).unwrap_or(None);
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    for node in nodes {
        let (should_run, _) = predicates::node_should_run(node, ds);
        let daemon_pods = by_node.get(&node.name_any()).filter(|p| !p.is_empty());
        if !should_run {
            if daemon_pods.is_some() {
                c.misscheduled += 1;
            }
            continue;
        }
        c.desired += 1;
        let Some(daemon_pods) = daemon_pods else { continue };
        c.current += 1;
        let mut sorted = daemon_pods.clone();
        sorted.sort_by(|a, b| template::by_creation_and_phase(a, b));
        let pod = &sorted[0];
        if pods::is_ready(pod) {
            c.ready += 1;
            if pods::is_available(pod, min_ready, now) {
                c.available += 1;
            }
        }
        if template::is_pod_updated(pod, hash, generation) {
            c.updated += 1;
        }
    }
    c.unavailable = c.desired - c.available;
    c
}

fn counts_of(s: &DaemonSetStatus) -> Counts {
    Counts {
        desired: s.desired_number_scheduled,
        current: s.current_number_scheduled,
        misscheduled: s.number_misscheduled,
        ready: s.number_ready,
        updated: s.updated_number_scheduled.unwrap_or(0),
        available: s.number_available.unwrap_or(0),
        unavailable: s.number_unavailable.unwrap_or(0),
    }
}

/// Writes the counts (and, if `observed`, the generation) unless the status already has
/// them; conflicts are retried on a fresh read.
pub async fn store(client: &Client, ds: &DaemonSet, counts: &Counts, observed: bool) -> Result<()> {
    let current = ds.status.clone().unwrap_or_default();
    let generation = ds.metadata.generation.unwrap_or(0);
    if counts_of(&current) == *counts && current.observed_generation.unwrap_or(0) >= generation {
        return Ok(());
    }
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), &ds.namespace().unwrap_or_default());
    let mut obj = ds.clone();
    let nz = |v: i32| (v != 0).then_some(v);
    for attempt in 0..=1 {
        let status = obj.status.get_or_insert_with(Default::default);
        if observed {
            status.observed_generation = Some(generation).filter(|g| *g != 0);
        }
        status.desired_number_scheduled = counts.desired;
        status.current_number_scheduled = counts.current;
        status.number_misscheduled = counts.misscheduled;
        status.number_ready = counts.ready;
        status.updated_number_scheduled = nz(counts.updated);
        status.number_available = nz(counts.available);
        status.number_unavailable = nz(counts.unavailable);
        match api.replace_status(&obj.name_any(), &PostParams::default(), &obj).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt == 0 => {
                obj = api.get(&ds.name_any()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
