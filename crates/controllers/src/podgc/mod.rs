//! The pod garbage collector (upstream `pkg/controller/podgc`). Every 20 seconds, from the
//! pod and node caches, it force-deletes (grace period 0):
//! - terminated pods (Succeeded or Failed) beyond the threshold of 12500, evicted and
//!   oldest first;
//! - terminating pods on nodes that are not Ready and carry the
//!   `node.kubernetes.io/out-of-service` taint;
//! - pods bound to nodes that no longer exist, terminating or not, once a node has been
//!   missing from the cache for 40 seconds and a live GET confirms it is gone; these get
//!   the condition DisruptionTarget (reason DeletionByPodGC) first;
//! - terminating pods that were never scheduled.
//!
//! A pod that has not finished is moved to phase Failed before it is deleted, since no
//! kubelet will ever report it finished.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::Context;
use crate::endpoints::util::wait_for_cache;

/// How often the collector looks.
pub const CHECK_PERIOD: Duration = Duration::from_secs(20);
/// How long a node must be missing from the cache before the API server is asked.
pub const QUARANTINE: Duration = Duration::from_secs(40);
/// Terminated pods kept (kube-controller-manager's `--terminated-pod-gc-threshold`).
pub const TERMINATED_POD_THRESHOLD: usize = 12500;
/// The taint that marks a node as shut down for good.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// The collector and the nodes it holds in quarantine (name → when to check).
pub struct PodGc {
    ctx: Arc<Context>,
    threshold: usize,
    quarantine: Mutex<HashMap<String, jiff::Timestamp>>,
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Succeeded or Failed (anything but Pending, Running and Unknown).
pub fn is_terminated(p: &Pod) -> bool {
    !matches!(phase(p), "Pending" | "Running" | "Unknown")
}

fn is_evicted(p: &Pod) -> bool {
    phase(p) == "Failed" && p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// Evicted pods first, then oldest first, then by name.
fn by_eviction_and_creation(a: &Arc<Pod>, b: &Arc<Pod>) -> Ordering {
    is_evicted(b)
        .cmp(&is_evicted(a))
        .then_with(|| {
            let ta = a.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let tb = b.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ta.cmp(&tb)
        })
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

/// The terminated pods to delete so that at most `threshold` remain.
pub fn terminated_to_delete(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    let mut terminated: Vec<Arc<Pod>> = pods.iter().filter(|p| is_terminated(p)).cloned().collect();
    if terminated.len() <= threshold {
        return Vec::new();
    }
    terminated.sort_by(by_eviction_and_creation);
    let n = terminated.len() - threshold;
    terminated.truncate(n);
    terminated
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn out_of_service(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT))
}

fn node_name(p: &Pod) -> &str {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// Terminating pods on nodes that are not Ready and are tainted out-of-service.
pub fn terminating_out_of_service(pods: &[Arc<Pod>], nodes: &HashMap<String, Arc<Node>>) -> Vec<Arc<Pod>> {
    let mut out: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter(|p| nodes.get(node_name(p)).is_some_and(|n| !node_ready(n) && out_of_service(n)))
        .cloned()
        .collect();
    out.sort_by(by_eviction_and_creation);
    out
}

/// Terminating pods that were never bound to a node.
pub fn unscheduled_terminating(pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_empty())
        .cloned()
        .collect()
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl PodGc {
    pub fn new(ctx: Arc<Context>, threshold: usize) -> Self {
        Self { ctx, threshold, quarantine: Mutex::new(HashMap::new()) }
    }

    /// One pass over the caches.
    pub async fn gc(&self) {
        let mut pods = self.ctx.informers.get::<Pod>().store.state();
        pods.sort_by_key(|p| (p.namespace(), p.name_any()));
        let nodes: HashMap<String, Arc<Node>> =
            self.ctx.informers.get::<Node>().store.state().into_iter().map(|n| (n.name_any(), n)).collect();
        tracing::debug!(pods = pods.len(), nodes = nodes.len(), "pod GC: checking");
        if self.threshold > 0 {
            for p in terminated_to_delete(&pods, self.threshold) {
                self.delete_pod(&p, None, "terminated").await;
            }
        }
        for p in terminating_out_of_service(&pods, &nodes) {
            self.delete_pod(&p, None, "terminating on an out-of-service node").await;
        }
        self.gc_orphaned(&pods, &nodes).await;
        for p in unscheduled_terminating(&pods) {
            self.delete_pod(&p, None, "unscheduled and terminating").await;
        }
    }

    /// Pods bound to nodes that are gone: nodes missing from the cache wait out the
    /// quarantine, then a live GET decides.
    async fn gc_orphaned(&self, pods: &[Arc<Pod>], nodes: &HashMap<String, Arc<Node>>) {
        let now = self.ctx.clock.now();
        let due: Vec<String> = {
            let mut q = self.quarantine.lock().unwrap_or_else(|e| e.into_inner());
            for p in pods {
                let n = node_name(p);
                if !n.is_empty() && !nodes.contains_key(n) {
                    q.entry(n.to_string()).or_insert(now + QUARANTINE);
                }
            }
            let due: Vec<String> = q.iter().filter(|(_, at)| **at <= now).map(|(n, _)| n.clone()).collect();
            for n in &due {
                q.remove(n);
            }
            due
        };
        if !due.is_empty() {
            tracing::debug!(nodes = ?due, "pod GC: nodes missing for the whole quarantine, checking");
        }
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let mut deleted = HashSet::new();
        for name in due {
            if nodes.contains_key(&name) {
                continue;
            }
            match api.get_opt(&name).await {
                Ok(None) => {
                    deleted.insert(name);
                }
                Ok(Some(_)) => {}
                // Checked again on a later pass if still needed.
                Err(e) => tracing::warn!(node = %name, error = %e, "pod GC: error while getting node"),
            }
        }
        for p in pods.iter().filter(|p| deleted.contains(node_name(p))) {
            let condition = json!({
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByPodGC",
                "message": "PodGC: node no longer exists",
                "lastTransitionTime": Time(now),
            });
            self.delete_pod(p, Some(condition), "orphaned").await;
        }
    }

    /// Marks the pod Failed (with `condition`) unless it finished, then deletes it with
    /// grace period 0. Errors are logged; the next pass tries again.
    async fn delete_pod(&self, pod: &Pod, condition: Option<serde_json::Value>, why: &str) {
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        tracing::info!(pod = %format!("{ns}/{name}"), why, "pod GC is force deleting a pod");
        if !matches!(phase(pod), "Succeeded" | "Failed") {
            let mut status = json!({"phase": "Failed"});
            if let Some(c) = condition {
                status["conditions"] = json!([c]);
            }
            let patch = json!({"metadata": {"uid": pod.metadata.uid}, "status": status});
            match api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => return,
                Err(e) => {
                    tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "pod GC: marking the pod failed");
                    return;
                }
            }
        }
        let dp = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => tracing::warn!(pod = %format!("{ns}/{name}"), error = %e, "pod GC: deleting the pod"),
        }
    }
}

/// Runs the pod garbage collector.
pub async fn run(ctx: Arc<Context>) {
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    if !wait_for_cache(&pods.store).await || !wait_for_cache(&nodes.store).await {
        return;
    }
    let gc = PodGc::new(ctx, TERMINATED_POD_THRESHOLD);
    loop {
        gc.gc().await;
        tokio::time::sleep(CHECK_PERIOD).await;
    }
}

#[cfg(test)]
mod tests;
