//! One daemon pod per eligible node (upstream's `manage` and `syncNodes`): create pods on
//! nodes that should run one and have none, delete pods on nodes that should not, failed
//! and succeeded pods (failed ones with a per-node backoff), surplus pods, and pods
//! never scheduled to a node that no longer exists. Creates go out in slow-start batches
//! (1, 2, 4, ...) bounded by [`BURST_REPLICAS`], with `SuccessfulCreate` / `FailedCreate`
//! and `SuccessfulDelete` / `FailedDelete` Events as upstream.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};

use super::predicates;
use super::template::{self, HASH_LABEL};
use crate::history::pods;
use crate::runtime::{EventType, Recorder, controller_ref};
use crate::{Error, Result};

/// The most creates or deletes one sync issues.
pub const BURST_REPLICAS: usize = 250;

/// The daemon pods of a DaemonSet grouped by their target node (`nodeName`, or the node
/// their affinity names). Terminal pods already being deleted are left out unless asked.
pub fn pods_by_node(claimed: &[Arc<Pod>], include_deleted_terminal: bool) -> BTreeMap<String, Vec<Arc<Pod>>> {
    let mut map: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in claimed {
        if !include_deleted_terminal && pods::is_terminal(pod) && pods::is_terminating(pod) {
            continue;
        }
        match predicates::target_node_name(pod) {
            Some(node) => map.entry(node).or_default().push(pod.clone()),
            None => tracing::debug!(pod = ?pod.metadata.name, "daemonset: pod has no target node"),
        }
    }
    map
}

/// Exponential backoff for deleting failed pods per DaemonSet and node (1s doubling to
/// 15 minutes; forgotten after twice the maximum without failures), so the controller
/// does not fight a node that keeps rejecting pods.
#[derive(Default)]
pub struct FailedPodsBackoff {
    entries: Mutex<HashMap<String, (Duration, jiff::Timestamp)>>,
}

const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

impl FailedPodsBackoff {
    fn since(now: jiff::Timestamp, then: jiff::Timestamp) -> Duration {
        Duration::try_from(now.duration_since(then)).unwrap_or_default()
    }

    /// Whether `key` is still backing off at `now`; if so, how long the current step is.
    pub fn in_backoff(&self, key: &str, now: jiff::Timestamp) -> Option<Duration> {
        let m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (step, at) = m.get(key)?;
        (Self::since(now, *at) < *step).then_some(*step)
    }

    /// Records a failure at `now`, doubling the step.
    pub fn next(&self, key: &str, now: jiff::Timestamp) {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = m.entry(key.to_string()).or_insert((Duration::ZERO, now));
        if entry.0.is_zero() || Self::since(now, entry.1) > 2 * BACKOFF_MAX {
            entry.0 = BACKOFF_INITIAL;
        } else {
            entry.0 = (entry.0 * 2).min(BACKOFF_MAX);
        }
        entry.1 = now;
    }
}

/// What a sync decided and learned on the way.
#[derive(Default, Debug)]
pub struct Plan {
    /// Nodes that need a daemon pod.
    pub create_on: Vec<String>,
    /// Pods to delete, by name.
    pub delete: Vec<String>,
    /// Come back after this long (a failed pod is backing off).
    pub requeue: Option<Duration>,
}

/// What the controller shares between syncs of the DaemonSets.
pub struct Syncer<'a> {
    pub client: Client,
    pub recorder: Recorder,
    pub backoff: &'a FailedPodsBackoff,
    pub now: jiff::Timestamp,
}

impl Syncer<'_> {
    /// Decides creates and deletes for one node.
    pub async fn node_plan(
        &self,
        ds: &DaemonSet,
        node: &Node,
        by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
        hash: &str,
        plan: &mut Plan,
    ) {
        let node_name = node.metadata.name.clone().unwrap_or_default();
        let (should_run, should_continue) = predicates::node_should_run(node, ds);
        let daemon_pods = by_node.get(&node_name);
        let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        if should_run && daemon_pods.is_none() {
            plan.create_on.push(node_name);
            return;
        }
        if should_continue {
            let Some(daemon_pods) = daemon_pods else { return };
            let mut running: Vec<Arc<Pod>> = Vec::new();
            for pod in daemon_pods {
                if pods::is_terminating(pod) {
                    continue;
                }
                match pods::phase(pod) {
                    "Failed" => {
                        let generation = ds.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
                        let key =
                            format!("{}/{generation}/{node_name}", ds.metadata.uid.as_deref().unwrap_or(""));
                        if let Some(delay) = self.backoff.in_backoff(&key, self.now) {
                            tracing::debug!(pod = ?pod.metadata.name, ?delay, "daemonset: deleting failed pod is backing off");
                            plan.requeue = Some(plan.requeue.map_or(delay, |d| d.min(delay)));
                            continue;
                        }
                        self.backoff.next(&key, self.now);
                        let msg = format!(
                            "Found failed daemon pod {}/{} on node {node_name}, will try to kill it",
                            pod.namespace().unwrap_or_default(),
                            pod.name_any()
                        );
                        self.recorder.publish(ds, EventType::Warning, "FailedDaemonPod", &msg).await;
                        plan.delete.push(pod.name_any());
                    }
                    "Succeeded" => {
                        let msg = format!(
                            "Found succeeded daemon pod {}/{} on node {node_name}, will try to delete it",
                            pod.namespace().unwrap_or_default(),
                            pod.name_any()
                        );
                        tracing::debug!("{msg}");
                        plan.delete.push(pod.name_any());
                    }
                    _ => running.push(pod.clone()),
                }
            }
            if !template::allows_surge(ds) {
                if running.len() > 1 {
                    running.sort_by(|a, b| template::by_creation_and_phase(a, b));
                    plan.delete.extend(running.iter().skip(1).map(|p| p.name_any()));
                }
                return;
            }
            if running.len() <= 1 {
                if running.is_empty() && should_run {
                    plan.create_on.push(node_name);
                }
                return;
            }
            // Surging: an old and a new pod may share the node only while the new one is
            // not yet available and the old one still ready.
            running.sort_by(|a, b| template::by_creation_and_phase(a, b));
            let mut oldest_new: Option<&Arc<Pod>> = None;
            let mut oldest_old: Option<&Arc<Pod>> = None;
            for pod in &running {
                let label = pod.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL)).map(String::as_str);
                if label == Some(hash) {
                    if oldest_new.is_none() {
                        oldest_new = Some(pod);
                        continue;
                    }
                } else if oldest_old.is_none() {
                    oldest_old = Some(pod);
                    continue;
                }
                plan.delete.push(pod.name_any());
            }
            if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                && (!pods::is_ready(old) || pods::is_available(new, min_ready, self.now))
            {
                plan.delete.push(old.name_any());
            }
            return;
        }
        if let Some(daemon_pods) = daemon_pods {
            plan.delete.extend(daemon_pods.iter().filter(|p| !pods::is_terminating(p)).map(|p| p.name_any()));
        }
    }

    /// Creates pods on `create_on` and deletes `delete`, at most [`BURST_REPLICAS`] of
    /// each. Returns the names of pods created and `(name, uid)` of pods deleted, so the
    /// caller can wait for its cache to see them, and the errors met.
    pub async fn sync_nodes(
        &self,
        ds: &DaemonSet,
        delete: &[String],
        create_on: &[String],
        hash: &str,
        by_name: &HashMap<String, Arc<Pod>>,
    ) -> (Vec<String>, Vec<(String, String)>, Vec<Error>) {
        let ns = ds.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let create_diff = create_on.len().min(BURST_REPLICAS);
        let delete_diff = delete.len().min(BURST_REPLICAS);
        let mut errors = Vec::new();
        let mut created = Vec::new();
        let generation = template::template_generation(ds).unwrap_or(None);
        let template = template::pod_template(ds, generation, hash);
        let ds_name = ds.name_any();

        let mut pos = 0;
        let mut batch = create_diff.min(1);
        while pos < create_diff {
            let results = futures::future::join_all(create_on[pos..pos + batch].iter().map(|node| {
                let mut t = template.clone();
                if let Some(spec) = t.spec.as_mut() {
                    spec.affinity = Some(predicates::replace_node_name_affinity(spec.affinity.take(), node));
                }
                let pod = pods::from_template(&t, &ds_name, Some(controller_ref(ds)));
                let api = api.clone();
                async move { self.create_pod(ds, &api, &pod).await }
            }))
            .await;
            let mut batch_failed = false;
            for r in results {
                match r {
                    Ok(Some(name)) => created.push(name),
                    Ok(None) => {}
                    Err(e) => {
                        batch_failed = true;
                        errors.push(e);
                    }
                }
            }
            pos += batch;
            if batch_failed && pos < create_diff {
                tracing::debug!(ds = %ds_name, skipped = create_diff - pos, "daemonset: slow-start failure, skipping creates");
                break;
            }
            batch = (2 * batch).min(create_diff - pos);
        }

        let results = futures::future::join_all(delete[..delete_diff].iter().map(|name| {
            let api = api.clone();
            async move { (name.clone(), self.delete_pod(ds, &api, name).await) }
        }))
        .await;
        let mut deleted = Vec::new();
        for (name, r) in results {
            match r {
                Ok(()) => {
                    let uid = by_name.get(&name).and_then(|p| p.metadata.uid.clone()).unwrap_or_default();
                    deleted.push((name, uid));
                }
                Err(e) => errors.push(e),
            }
        }
        (created, deleted, errors)
    }

    /// Creates one daemon pod. `Ok(None)` when the namespace is terminating (every create
    /// would fail; no event, as upstream).
    async fn create_pod(&self, ds: &DaemonSet, api: &Api<Pod>, pod: &Pod) -> Result<Option<String>> {
        if pod.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            return Err(Error::Invalid("unable to create pods, no labels".into()));
        }
        match api.create(&PostParams::default(), pod).await {
            Ok(created) => {
                let name = created.name_any();
                self.recorder
                    .publish(ds, EventType::Normal, "SuccessfulCreate", &format!("Created pod: {name}"))
                    .await;
                Ok(Some(name))
            }
            Err(kube::Error::Api(s)) if is_namespace_terminating(&s) => Ok(None),
            Err(e) => {
                let msg = format!("Error creating: {}", crate::history::message(&e));
                self.recorder.publish(ds, EventType::Warning, "FailedCreate", &msg).await;
                Err(e.into())
            }
        }
    }

    /// Deletes one daemon pod; one already gone counts as deleted (without an event).
    async fn delete_pod(&self, ds: &DaemonSet, api: &Api<Pod>, name: &str) -> Result<()> {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {
                self.recorder
                    .publish(ds, EventType::Normal, "SuccessfulDelete", &format!("Deleted pod: {name}"))
                    .await;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => {
                let msg = format!("Error deleting: {}", crate::history::message(&e));
                self.recorder.publish(ds, EventType::Warning, "FailedDelete", &msg).await;
                Err(Error::Invalid(format!("unable to delete pods: {}", crate::history::message(&e))))
            }
        }
    }
}

fn is_namespace_terminating(s: &kube::core::Status) -> bool {
    s.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
}

/// Unscheduled pods whose target node no longer exists: nothing else will ever delete them.
pub fn unscheduled_pods_without_node(
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (node, daemon_pods) in by_node {
        if nodes.iter().any(|n| n.metadata.name.as_deref() == Some(node.as_str())) {
            continue;
        }
        for pod in daemon_pods {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty) {
                out.push(pod.name_any());
            }
        }
    }
    out
}
