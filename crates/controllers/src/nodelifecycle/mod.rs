//! The node lifecycle controller (`node-controller`, upstream
//! `pkg/controller/nodelifecycle`) and the taint eviction controller it works with.
//!
//! - Every 5 seconds a monitor pass ([`Monitor::pass`]) checks each node's heartbeats
//!   (its Lease in `kube-node-lease` and its Ready condition): a node silent for longer
//!   than the grace period (40s, `Options::node_monitor_grace_period`) gets its conditions
//!   set to Unknown ("Kubelet stopped posting node status."), its pods' Ready condition set
//!   to False, and is queued for the NoExecute taint `node.kubernetes.io/unreachable`
//!   (`not-ready` when the node itself reports Ready=False). Healthy nodes lose those taints.
//!   NoExecute tainting is rate limited per zone and stops when every node of the cluster is
//!   down (the control plane is then more likely cut off than the nodes dead).
//! - On every node change the NoSchedule taints are made to mirror the node's conditions
//!   and `spec.unschedulable` ([`reconcile_node`]), which is how `kubectl cordon` shows up
//!   as `node.kubernetes.io/unschedulable:NoSchedule`.
//! - The taint eviction controller ([`eviction`]) deletes pods that do not tolerate a
//!   node's NoExecute taints.

pub mod eviction;
pub mod health;
pub mod taints;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use crate::disruption::cache_synced;
use crate::runtime::{EventType, Recorder};
use crate::{Context, ERROR_REQUEUE, Error, Result};
use health::NodeHealth;
use taints::{NO_EXECUTE, NOT_READY, TaintQueue, UNREACHABLE, ZoneState};

/// How often node health is checked (`--node-monitor-period`).
pub const MONITOR_PERIOD: Duration = Duration::from_secs(5);
/// Default grace period for silent nodes (`--node-monitor-grace-period`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(40);
/// Grace for nodes that never posted a status (`--node-startup-grace-period`).
pub const STARTUP_GRACE: Duration = Duration::from_secs(60);
/// NoExecute taints per second per zone (`--node-eviction-rate`).
pub const EVICTION_QPS: f64 = 0.1;
/// The rate in a partially disrupted large zone (`--secondary-node-eviction-rate`).
pub const SECONDARY_EVICTION_QPS: f64 = 0.01;
/// Zones up to this size stop tainting when partially disrupted (`--large-cluster-size-threshold`).
pub const LARGE_CLUSTER_THRESHOLD: usize = 50;
/// How often queued NoExecute taints are applied.
const TAINT_PERIOD: Duration = Duration::from_millis(100);
/// Nodes with this label do not count toward zone disruption.
const EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";
/// Namespace of node heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the monitor remembers between passes.
#[derive(Default)]
struct MonitorState {
    health: HashMap<String, NodeHealth>,
    known: HashSet<String>,
    zones: BTreeMap<String, (ZoneState, TaintQueue)>,
    /// Nodes whose pods could not all be marked not ready yet.
    retry: HashSet<String>,
}

/// The node health monitor and its NoExecute tainter.
pub struct Monitor {
    ctx: Arc<Context>,
    recorder: Recorder,
    grace: Duration,
    state: tokio::sync::Mutex<MonitorState>,
}

fn node_ref(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        ..Default::default()
    }
}

fn ready_status(c: Option<&NodeCondition>) -> Option<&str> {
    c.map(|c| c.status.as_str())
}

impl Monitor {
    pub fn new(ctx: Arc<Context>) -> Self {
        let recorder = Recorder::new(ctx.client.clone(), "node-controller");
        let grace = ctx.options.node_monitor_grace_period.unwrap_or(DEFAULT_GRACE);
        Monitor { ctx, recorder, grace, state: tokio::sync::Mutex::new(MonitorState::default()) }
    }

    async fn node_event(&self, node: &Node, reason: &str, what: &str) {
        let msg = format!("Node {} event: {what}", node.name_any());
        self.recorder.record(&node_ref(node), EventType::Normal, reason, &msg).await;
    }

    /// Removes the NoExecute not-ready and unreachable taints and forgets any queued tainting.
    async fn mark_reachable(&self, st: &mut MonitorState, node: &Node) -> Result<bool> {
        let remove = [taints::taint(UNREACHABLE, NO_EXECUTE), taints::taint(NOT_READY, NO_EXECUTE)];
        if remove.iter().any(|t| taints::has_taint(node, t)) {
            taints::swap(&self.ctx.client, node, &[], &remove, self.ctx.clock.now()).await?;
        }
        Ok(st.zones.get_mut(&taints::zone_key(node)).is_some_and(|(_, q)| q.remove(&node.name_any())))
    }

    fn ensure_zone(&self, st: &mut MonitorState, zone: &str) {
        st.zones
            .entry(zone.to_string())
            .or_insert_with(|| (ZoneState::Initial, TaintQueue::new(EVICTION_QPS)));
    }

    /// Queues or swaps NoExecute taints from the Ready condition the node reported
    /// (`processTaintBaseEviction`).
    async fn process_taint_eviction(
        &self,
        st: &mut MonitorState,
        node: &Node,
        observed: &NodeCondition,
    ) -> Result<()> {
        let now = self.ctx.clock.now();
        let zone = taints::zone_key(node);
        let name = node.name_any();
        let (unreachable, not_ready) =
            (taints::taint(UNREACHABLE, NO_EXECUTE), taints::taint(NOT_READY, NO_EXECUTE));
        let (want, opposite) = match observed.status.as_str() {
            "False" => (&not_ready, &unreachable),
            "Unknown" => (&unreachable, &not_ready),
            _ => {
                self.mark_reachable(st, node).await?;
                return Ok(());
            }
        };
        if taints::has_taint(node, opposite) {
            // Already tainted the other way: swap straight away, no rate limit.
            taints::swap(
                &self.ctx.client,
                node,
                std::slice::from_ref(want),
                std::slice::from_ref(opposite),
                now,
            )
            .await?;
            return Ok(());
        }
        self.ensure_zone(st, &zone);
        if let Some((_, q)) = st.zones.get_mut(&zone) {
            if !taints::has_taint(node, want) {
                q.remove(&name);
            }
            q.add(&name, now);
        }
        Ok(())
    }

    /// Sets the Ready condition of the node's pods to False (`MarkPodsNotReady`).
    async fn mark_pods_not_ready(&self, node: &str) -> Result<()> {
        let now = self.ctx.clock.now();
        let pods = self.ctx.informers.get::<Pod>().store.state();
        let mut failed = None;
        for pod in pods.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        {
            let mut updated = (**pod).clone();
            let Some(cond) = updated
                .status
                .as_mut()
                .and_then(|s| s.conditions.as_mut())
                .and_then(|cs| cs.iter_mut().find(|c| c.type_ == "Ready"))
            else {
                continue;
            };
            if cond.status == "False" {
                continue;
            }
            cond.status = "False".into();
            cond.last_transition_time = Some(Time(now));
            let api: Api<Pod> =
                Api::namespaced(self.ctx.client.clone(), &pod.namespace().unwrap_or_default());
            match api.replace_status(&pod.name_any(), &PostParams::default(), &updated).await {
                Ok(_) => {
                    self.recorder
                        .publish(pod.as_ref(), EventType::Warning, "NodeNotReady", "Node is not ready")
                        .await;
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => failed = Some(e),
            }
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// One monitor pass over every node (`monitorNodeHealth`).
    pub async fn pass(&self) -> Result<()> {
        let mut nodes = self.ctx.informers.get::<Node>().store.state();
        nodes.sort_by_key(|n| n.name_any());
        let leases = self.ctx.informers.get::<Lease>().store;
        let now = self.ctx.clock.now();
        let mut guard = self.state.lock().await;
        let st = &mut *guard;

        let present: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        for node in &nodes {
            let name = node.name_any();
            self.ensure_zone(st, &taints::zone_key(node));
            if st.known.insert(name.clone()) {
                self.node_event(node, "RegisteredNode", &format!("Registered Node {name} in Controller"))
                    .await;
                if let Err(e) = self.mark_reachable(st, node).await {
                    tracing::debug!(node = %name, error = %e, "removing taints from a new node failed");
                }
            }
        }
        let gone: Vec<String> = st.known.iter().filter(|n| !present.contains(*n)).cloned().collect();
        for name in gone {
            st.known.remove(&name);
            st.health.remove(&name);
            st.retry.remove(&name);
            let ghost = Node {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(name.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            self.node_event(&ghost, "RemovingNode", &format!("Removing Node {name} from Controller")).await;
        }

        let mut zone_ready: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for node in &nodes {
            let name = node.name_any();
            let lease = leases.get(&ObjectRef::new(&name).within(NODE_LEASE_NAMESPACE));
            let (mut health, eval) = health::evaluate(
                node,
                lease.as_deref(),
                st.health.get(&name),
                now,
                self.grace,
                STARTUP_GRACE,
            );
            let mut node = (**node).clone();
            if let Some(conditions) = eval.write.clone() {
                node.status.get_or_insert_with(Default::default).conditions = Some(conditions);
                let api: Api<Node> = Api::all(self.ctx.client.clone());
                match api.replace_status(&name, &PostParams::default(), &node).await {
                    Ok(written) => {
                        health =
                            NodeHealth { status: written.status.clone(), ready_transition: now, ..health };
                        node = written;
                    }
                    Err(e) => {
                        // Skip this node for now; the next pass sees it again.
                        tracing::debug!(node = %name, error = %e, "updating node health failed");
                        st.health.insert(name, health);
                        continue;
                    }
                }
            }
            st.health.insert(name.clone(), health);
            if !node.labels().contains_key(EXCLUDE_DISRUPTION) {
                zone_ready
                    .entry(taints::zone_key(&node))
                    .or_default()
                    .push(ready_status(eval.current_ready.as_ref()).map(str::to_string));
            }
            let Some(current) = &eval.current_ready else { continue };
            if let Err(e) = self.process_taint_eviction(st, &node, &eval.observed_ready).await {
                tracing::debug!(node = %name, error = %e, "updating NoExecute taints failed");
            }
            let became_not_ready = current.status != "True" && eval.observed_ready.status == "True";
            if became_not_ready {
                let msg = format!("Node {name} status is now: NodeNotReady");
                self.recorder.record(&node_ref(&node), EventType::Normal, "NodeNotReady", &msg).await;
            }
            if (became_not_ready || (st.retry.contains(&name) && eval.observed_ready.status != "True"))
                && let Err(e) = self.mark_pods_not_ready(&name).await
            {
                tracing::debug!(node = %name, error = %e, "marking pods not ready failed; will retry");
                st.retry.insert(name);
                continue;
            }
            st.retry.remove(&name);
        }
        self.handle_disruption(st, &nodes, &zone_ready).await;
        Ok(())
    }

    /// Updates zone states and tainting rates (`handleDisruption`).
    async fn handle_disruption(
        &self,
        st: &mut MonitorState,
        nodes: &[Arc<Node>],
        zone_ready: &BTreeMap<String, Vec<Option<String>>>,
    ) {
        let now = self.ctx.clock.now();
        let mut new_states: BTreeMap<String, ZoneState> = BTreeMap::new();
        let mut all_down_now = true;
        for (zone, ready) in zone_ready {
            let (_, state) = taints::zone_state(ready.iter().map(|r| r.as_deref()));
            if state != ZoneState::FullDisruption {
                all_down_now = false;
            }
            new_states.insert(zone.clone(), state);
            self.ensure_zone(st, zone);
        }
        // Zones without counted nodes are forgotten.
        st.zones.retain(|z, _| zone_ready.contains_key(z));
        let all_down_before = st.zones.values().all(|(s, _)| *s == ZoneState::FullDisruption);
        if all_down_now && all_down_before {
            return;
        }
        if all_down_now {
            tracing::info!(
                "every node is not Ready: the controller stops tainting and removes NoExecute taints"
            );
            for node in nodes {
                if let Err(e) = self.mark_reachable(st, node).await {
                    tracing::debug!(node = %node.name_any(), error = %e, "removing taints failed");
                }
            }
            for (state, q) in st.zones.values_mut() {
                q.swap_limiter(0.0, now);
                *state = ZoneState::FullDisruption;
            }
            return;
        }
        if all_down_before {
            tracing::info!("some nodes are Ready again: tainting resumes");
            for h in st.health.values_mut() {
                h.probe = now;
                h.ready_transition = now;
            }
        }
        for (zone, (state, q)) in st.zones.iter_mut() {
            let new = new_states.get(zone).copied().unwrap_or(ZoneState::Normal);
            if *state == new && !all_down_before {
                continue;
            }
            let size = zone_ready.get(zone).map(Vec::len).unwrap_or(0);
            let qps = match new {
                ZoneState::PartialDisruption if size > LARGE_CLUSTER_THRESHOLD => SECONDARY_EVICTION_QPS,
                ZoneState::PartialDisruption => 0.0,
                _ => EVICTION_QPS,
            };
            q.swap_limiter(qps, now);
            *state = new;
        }
    }

    /// Applies the NoExecute taints the zone rates allow (`doNoExecuteTaintingPass`).
    pub async fn taint_pass(&self) {
        let now = self.ctx.clock.now();
        let mut guard = self.state.lock().await;
        let st = &mut *guard;
        let nodes = self.ctx.informers.get::<Node>().store;
        for (_, q) in st.zones.values_mut() {
            for name in q.take_due(now) {
                let Some(node) = nodes.get(&ObjectRef::new(&name)) else { continue };
                let ready = health::condition(node.status.as_ref(), "Ready").map(|c| c.status.clone());
                let (want, opposite) = match ready.as_deref() {
                    Some("False") => {
                        (taints::taint(NOT_READY, NO_EXECUTE), taints::taint(UNREACHABLE, NO_EXECUTE))
                    }
                    Some("Unknown") => {
                        (taints::taint(UNREACHABLE, NO_EXECUTE), taints::taint(NOT_READY, NO_EXECUTE))
                    }
                    Some(_) => continue,
                    None => {
                        q.retry(&name, now + jiff::SignedDuration::from_millis(50));
                        continue;
                    }
                };
                if let Err(e) = taints::swap(&self.ctx.client, &node, &[want], &[opposite], now).await {
                    tracing::debug!(node = %name, error = %e, "adding a NoExecute taint failed; retrying");
                    q.retry(&name, now);
                }
            }
        }
    }
}

/// Keeps a node's NoSchedule taints in step with its conditions and `spec.unschedulable`,
/// and its beta OS/arch labels with the stable ones.
pub async fn reconcile_node(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action> {
    let (add, remove) = taints::no_schedule_diff(&node);
    if !add.is_empty() || !remove.is_empty() {
        taints::swap(&ctx.client, &node, &add, &remove, ctx.clock.now()).await?;
        // The change comes back as a new version of the node; labels are looked at then.
        return Ok(Action::await_change());
    }
    let labels = node.labels();
    let mut fix = serde_json::Map::new();
    for (stable, beta) in
        [("kubernetes.io/os", "beta.kubernetes.io/os"), ("kubernetes.io/arch", "beta.kubernetes.io/arch")]
    {
        if let Some(v) = labels.get(stable)
            && labels.get(beta) != Some(v)
        {
            fix.insert(beta.to_string(), json!(v));
        }
    }
    if !fix.is_empty() {
        let api: Api<Node> = Api::all(ctx.client.clone());
        let body = json!({"metadata": {"resourceVersion": node.resource_version(), "labels": fix}});
        api.patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(body)).await?;
    }
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Node>, err: &Error, _: Arc<Context>) -> Action {
    tracing::debug!(error = %err, "node lifecycle controller: will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs the monitor, the tainting loop, the NoSchedule taint sync and the taint eviction
/// controller.
pub async fn run(ctx: Arc<Context>) {
    let nodes = ctx.informers.get::<Node>();
    let synced = [
        cache_synced(&nodes.store).await,
        cache_synced(&ctx.informers.get::<Lease>().store).await,
        cache_synced(&ctx.informers.get::<Pod>().store).await,
    ];
    if synced.contains(&false) {
        return;
    }
    tracing::info!("node lifecycle controller started");
    let monitor = Arc::new(Monitor::new(ctx.clone()));
    let m = monitor.clone();
    let monitoring = async move {
        let mut tick = tokio::time::interval(MONITOR_PERIOD);
        loop {
            tick.tick().await;
            if let Err(e) = m.pass().await {
                tracing::warn!(error = %e, "monitoring node health failed");
            }
        }
    };
    let tainting = async move {
        let mut tick = tokio::time::interval(TAINT_PERIOD);
        loop {
            tick.tick().await;
            monitor.taint_pass().await;
        }
    };
    let no_schedule = Controller::for_shared_stream(nodes.changes(), nodes.store.clone())
        .run(reconcile_node, error_policy, ctx.clone())
        .for_each(|_| async {});
    futures::future::join4(monitoring, tainting, no_schedule, eviction::run(ctx)).await;
}

#[cfg(test)]
mod tests;
