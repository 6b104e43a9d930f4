//! The scheduling queue (kube-scheduler's PriorityQueue): an active queue ordered by pod
//! priority then by the time the pod entered the queue, a backoff queue (1s doubling per
//! attempt up to 10s), and an unschedulable set whose pods are retried when a cluster
//! event may have made them schedulable (only events the rejecting plugins care about) or
//! after 5 minutes. Pods with scheduling gates wait aside until the gates are removed.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cache::NodeChange;
use crate::framework::{Plugin, PluginSet};
use crate::nodeinfo::PodInfo;
use crate::plugins::pod_topology_spread;

/// First backoff after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays unschedulable without any relevant event before it is retried.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

/// A change in the cluster that may make unschedulable pods schedulable.
#[derive(Clone, Debug)]
pub enum ClusterEvent {
    NodeAdd,
    NodeUpdate(NodeChange),
    NodeDelete,
    /// A pod was bound (or appeared bound) to a node.
    AssignedPodAdd(Arc<PodInfo>),
    /// A bound pod's labels changed.
    AssignedPodUpdate(Arc<PodInfo>),
    AssignedPodDelete(Arc<PodInfo>),
    /// Every pod must be retried (e.g. after a relist).
    Any,
}

impl ClusterEvent {
    /// The plugins whose rejections this event may resolve, for a pod that is `pod`.
    fn may_help(&self, pod: &PodInfo, rejectors: PluginSet) -> bool {
        use Plugin::*;
        if rejectors.is_empty() {
            return true;
        }
        let has = |p: Plugin| rejectors.contains(p);
        match self {
            ClusterEvent::Any => true,
            ClusterEvent::NodeAdd => !rejectors.is_empty(),
            ClusterEvent::NodeUpdate(ch) => {
                (ch.allocatable && has(NodeResourcesFit))
                    || (ch.labels && (has(NodeAffinity) || has(PodTopologySpread) || has(InterPodAffinity)))
                    || (ch.taints
                        && (has(TaintToleration) || has(PodTopologySpread) || has(NodeUnschedulable)))
                    || (ch.unschedulable && has(NodeUnschedulable))
            }
            ClusterEvent::NodeDelete => has(PodTopologySpread),
            ClusterEvent::AssignedPodAdd(p) | ClusterEvent::AssignedPodUpdate(p) => {
                (has(PodTopologySpread) && spread_selects(pod, p))
                    || (has(InterPodAffinity) && affinity_involves(pod, p))
            }
            ClusterEvent::AssignedPodDelete(p) => {
                has(NodeResourcesFit)
                    || (has(NodePorts) && !p.host_ports.is_empty())
                    || (has(PodTopologySpread) && spread_selects(pod, p))
                    || (has(InterPodAffinity) && affinity_involves(pod, p))
            }
        }
    }
}

/// Whether `other` is counted by one of `pod`'s spread constraints.
fn spread_selects(pod: &PodInfo, other: &PodInfo) -> bool {
    other.namespace == pod.namespace
        && ["DoNotSchedule", "ScheduleAnyway"]
            .iter()
            .flat_map(|w| pod_topology_spread::constraints_of(pod, w))
            .any(|c| c.selector.matches(other.labels()))
}

/// Whether `other` is selected by one of `pod`'s required terms, or has affinity itself.
fn affinity_involves(pod: &PodInfo, other: &PodInfo) -> bool {
    static NO_LABELS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    other.has_affinity()
        || pod.required_affinity.iter().chain(pod.required_anti_affinity.iter()).any(|t| {
            t.selector.matches(other.labels())
                && (t.namespaces.contains(&other.namespace) || !t.namespace_selector.matches_nothing())
        })
        || pod.required_affinity.iter().any(|t| t.matches(other, &NO_LABELS))
}

/// A pod in the queue with its attempt history.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    /// Scheduling attempts so far.
    pub attempts: u32,
    /// When the pod last entered the queue (or last failed).
    pub timestamp: Instant,
    pub initial_attempt: Option<Instant>,
    /// Plugins that rejected the pod in its last attempt.
    pub unschedulable_plugins: PluginSet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Location {
    Active,
    Backoff,
    Unschedulable,
    Gated,
    /// Popped, in a scheduling cycle.
    InFlight,
    /// Assumed; its binding is in flight.
    Binding,
}

#[derive(Debug)]
struct Entry {
    qp: QueuedPod,
    loc: Location,
    generation: u64,
    /// The event sequence when the pod was popped (events after it may concern it).
    popped_at: u64,
    updated_in_flight: bool,
}

#[derive(Debug, PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    timestamp: Instant,
    seq: u64,
    key: String,
    generation: u64,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.timestamp.cmp(&self.timestamp))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn is_gated(info: &PodInfo) -> bool {
    info.pod.spec.as_ref().and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty())
}

/// The queue's state; see [`SchedulingQueue`] for the synchronized handle.
#[derive(Debug, Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String, u64)>>,
    unschedulable: HashSet<String>,
    seq: u64,
    generation: u64,
    /// Events seen while pods are in flight, with their sequence numbers.
    in_flight_events: VecDeque<(u64, ClusterEvent)>,
    /// Pods in a scheduling cycle, with the event sequence when they were popped.
    in_flight: HashMap<String, u64>,
    event_seq: u64,
}

/// How long a pod that has made `attempts` attempts backs off.
pub fn backoff_duration(attempts: u32) -> Duration {
    let mut d = INITIAL_BACKOFF;
    for _ in 1..attempts {
        if d > MAX_BACKOFF - d {
            return MAX_BACKOFF;
        }
        d += d;
    }
    d.min(MAX_BACKOFF)
}

impl Queue {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push_active(&mut self, key: &str) {
        self.generation += 1;
        let generation = self.generation;
        let seq = self.next_seq();
        let Some(e) = self.entries.get_mut(key) else { return };
        e.loc = Location::Active;
        e.generation = generation;
        self.unschedulable.remove(key);
        self.active.push(ActiveItem {
            priority: e.qp.info.priority,
            timestamp: e.qp.timestamp,
            seq,
            key: key.to_string(),
            generation,
        });
    }

    fn push_backoff(&mut self, key: &str) {
        self.generation += 1;
        let generation = self.generation;
        let seq = self.next_seq();
        let Some(e) = self.entries.get_mut(key) else { return };
        e.loc = Location::Backoff;
        e.generation = generation;
        self.unschedulable.remove(key);
        let expiry = e.qp.timestamp + backoff_duration(e.qp.attempts);
        self.backoff.push(Reverse((expiry, seq, key.to_string(), generation)));
    }

    fn backing_off(&self, key: &str, now: Instant) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| e.qp.attempts > 0 && e.qp.timestamp + backoff_duration(e.qp.attempts) > now)
    }

    /// Moves a pod to the backoff queue if it is still backing off, else to the active queue.
    fn requeue(&mut self, key: &str, now: Instant) -> bool {
        if self.backing_off(key, now) {
            self.push_backoff(key);
            false
        } else {
            self.push_active(key);
            true
        }
    }

    /// Adds a pending pod, or updates the queued copy; a change of spec, labels or
    /// annotations may make an unschedulable pod schedulable (status updates do not).
    /// Returns whether the active queue gained a pod.
    pub fn add_or_update(&mut self, info: Arc<PodInfo>, now: Instant) -> bool {
        let key = info.key.clone();
        let gated = is_gated(&info);
        let Some(e) = self.entries.get_mut(&key) else {
            self.entries.insert(
                key.clone(),
                Entry {
                    qp: QueuedPod {
                        info,
                        attempts: 0,
                        timestamp: now,
                        initial_attempt: None,
                        unschedulable_plugins: PluginSet::EMPTY,
                    },
                    loc: Location::Gated,
                    generation: 0,
                    popped_at: 0,
                    updated_in_flight: false,
                },
            );
            if gated {
                return false;
            }
            self.push_active(&key);
            return true;
        };
        let priority_changed = e.qp.info.priority != info.priority;
        let (old, new) = (&e.qp.info.pod, &info.pod);
        let significant = old.spec != new.spec
            || old.metadata.labels != new.metadata.labels
            || old.metadata.annotations != new.metadata.annotations;
        e.qp.info = info;
        match e.loc {
            Location::InFlight => {
                e.updated_in_flight |= significant;
                false
            }
            Location::Binding => false,
            Location::Gated => {
                if gated {
                    return false;
                }
                self.push_active(&key);
                true
            }
            Location::Active => {
                if gated {
                    e.loc = Location::Gated;
                    e.generation = 0;
                    return false;
                }
                if priority_changed {
                    self.push_active(&key);
                }
                false
            }
            Location::Backoff => {
                if gated {
                    e.loc = Location::Gated;
                    e.generation = 0;
                }
                false
            }
            Location::Unschedulable => {
                if gated {
                    self.unschedulable.remove(&key);
                    e.loc = Location::Gated;
                    return false;
                }
                if significant { self.requeue(&key, now) } else { false }
            }
        }
    }

    /// Removes a pod (deleted, bound elsewhere, or no longer ours).
    pub fn delete(&mut self, key: &str) {
        self.entries.remove(key);
        self.unschedulable.remove(key);
        if self.in_flight.remove(key).is_some() {
            self.trim_events();
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The most important active pod, now in flight.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        while let Some(item) = self.active.pop() {
            let Some(e) = self.entries.get_mut(&item.key) else { continue };
            if e.loc != Location::Active || e.generation != item.generation {
                continue;
            }
            e.loc = Location::InFlight;
            e.popped_at = self.event_seq;
            self.in_flight.insert(item.key.clone(), self.event_seq);
            e.updated_in_flight = false;
            e.qp.attempts += 1;
            e.qp.initial_attempt.get_or_insert(now);
            return Some(e.qp.clone());
        }
        None
    }

    /// The pod was assumed; its binding is in flight.
    pub fn binding(&mut self, key: &str) {
        if let Some(e) = self.entries.get_mut(key) {
            e.loc = Location::Binding;
        }
        self.trim_events();
    }

    /// The pod is bound: it leaves the queue.
    pub fn done(&mut self, key: &str) {
        self.entries.remove(key);
        self.trim_events();
    }

    /// A scheduling attempt failed with the given rejecting plugins. The pod waits in the
    /// unschedulable set, unless an event during its attempt may already have helped (then
    /// it backs off). Returns whether the active queue gained a pod.
    pub fn add_unschedulable(&mut self, key: &str, rejectors: PluginSet, now: Instant) -> bool {
        let Some(e) = self.entries.get_mut(key) else { return false };
        if e.loc != Location::InFlight {
            return false;
        }
        e.qp.unschedulable_plugins = rejectors;
        e.qp.timestamp = now;
        let popped_at = e.popped_at;
        let helped = e.updated_in_flight
            || self
                .in_flight_events
                .iter()
                .filter(|(seq, _)| *seq > popped_at)
                .any(|(_, ev)| ev.may_help(&e.qp.info, rejectors));
        let r = if helped {
            self.requeue(key, now)
        } else {
            e.loc = Location::Unschedulable;
            self.unschedulable.insert(key.to_string());
            false
        };
        self.trim_events();
        r
    }

    /// A scheduling attempt or binding failed with an error: the pod backs off.
    pub fn add_backoff(&mut self, key: &str, now: Instant) {
        if let Some(e) = self.entries.get_mut(key) {
            e.qp.timestamp = now;
            e.qp.unschedulable_plugins = PluginSet::EMPTY;
            self.push_backoff(key);
        }
        self.trim_events();
    }

    fn trim_events(&mut self) {
        self.in_flight.retain(|k, _| self.entries.get(k).is_some_and(|e| e.loc == Location::InFlight));
        let oldest = self.in_flight.values().copied().min();
        match oldest {
            None => self.in_flight_events.clear(),
            Some(o) => {
                while self.in_flight_events.front().is_some_and(|(s, _)| *s <= o) {
                    self.in_flight_events.pop_front();
                }
            }
        }
    }

    /// Retries the unschedulable pods the event may help (to the backoff queue while they
    /// back off). Returns whether the active queue gained a pod.
    pub fn on_event(&mut self, ev: ClusterEvent, now: Instant) -> bool {
        self.event_seq += 1;
        let moved: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.entries.get(*k).is_some_and(|e| ev.may_help(&e.qp.info, e.qp.unschedulable_plugins))
            })
            .cloned()
            .collect();
        if !self.in_flight.is_empty() {
            self.in_flight_events.push_back((self.event_seq, ev));
        }
        let mut activated = false;
        for k in moved {
            activated |= self.requeue(&k, now);
        }
        activated
    }

    /// Moves pods whose backoff expired to the active queue; returns how many moved.
    pub fn flush_backoff(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(Reverse((expiry, _, key, generation))) = self.backoff.peek().cloned() {
            if expiry > now {
                break;
            }
            self.backoff.pop();
            let valid = self
                .entries
                .get(&key)
                .is_some_and(|e| e.loc == Location::Backoff && e.generation == generation);
            if valid {
                self.push_active(&key);
                n += 1;
            }
        }
        n
    }

    /// Retries pods that have been unschedulable for longer than [`MAX_UNSCHEDULABLE`];
    /// returns whether the active queue gained a pod.
    pub fn flush_unschedulable(&mut self, now: Instant) -> bool {
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.entries.get(*k).is_some_and(|e| now.duration_since(e.qp.timestamp) >= MAX_UNSCHEDULABLE)
            })
            .cloned()
            .collect();
        let mut activated = false;
        for k in stale {
            activated |= self.requeue(&k, now);
        }
        activated
    }

    /// When the earliest backoff ends.
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, ..))| *t)
    }

    /// Pending pods by where they wait: (active, backoff, unschedulable, gated).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for e in self.entries.values() {
            match e.loc {
                Location::Active => c.0 += 1,
                Location::Backoff => c.1 += 1,
                Location::Unschedulable => c.2 += 1,
                Location::Gated => c.3 += 1,
                Location::InFlight | Location::Binding => {}
            }
        }
        c
    }

    /// Keys of every queued pod.
    pub fn keys(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }
}

/// The queue shared by the informer handlers and the scheduling loop.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    inner: Mutex<Queue>,
    notify: Notify,
}

impl SchedulingQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on the queue and wakes the scheduling loop if it reports new active pods.
    pub fn with<R>(&self, f: impl FnOnce(&mut Queue) -> R) -> R {
        let mut q = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut q);
        let wake = q.active.peek().is_some();
        drop(q);
        if wake {
            self.notify.notify_one();
        }
        r
    }

    /// Waits for the next pod to schedule.
    pub async fn pop(&self) -> QueuedPod {
        loop {
            let notified = self.notify.notified();
            if let Some(p) = self.with(|q| q.pop(Instant::now())) {
                return p;
            }
            notified.await;
        }
    }

    /// Moves expired backoffs and stale unschedulable pods, every second (as upstream's
    /// flushers do; the unschedulable set is checked every 30 seconds).
    pub async fn run_flushers(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            n += 1;
            let now = Instant::now();
            self.with(|q| {
                q.flush_backoff(now);
                if n.is_multiple_of(30) {
                    q.flush_unschedulable(now);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{pod, with_priority};

    fn info(name: &str, prio: i32) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(with_priority(pod(name), prio).into()))
    }

    #[test]
    fn higher_priority_pods_pop_first_then_older_ones() {
        let mut q = Queue::new();
        let t0 = Instant::now();
        q.add_or_update(info("low-old", 0), t0);
        q.add_or_update(info("high", 100), t0 + Duration::from_millis(2));
        q.add_or_update(info("low-new", 0), t0 + Duration::from_millis(1));
        let order: Vec<String> = std::iter::from_fn(|| q.pop(t0).map(|p| p.info.name.clone())).collect();
        assert_eq!(order, vec!["high", "low-old", "low-new"]);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        let got: Vec<u64> = (1..=6).map(|a| backoff_duration(a).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_pods_back_off_before_retrying() {
        let mut q = Queue::new();
        q.add_or_update(info("p", 0), Instant::now());
        let p = q.pop(Instant::now()).unwrap();
        assert_eq!(p.attempts, 1);
        q.add_backoff("default/p", Instant::now());
        assert!(q.pop(Instant::now()).is_none());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(q.flush_backoff(Instant::now()), 0);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(q.flush_backoff(Instant::now()), 1);
        let p = q.pop(Instant::now()).unwrap();
        assert_eq!(p.attempts, 2);
        // Second failure: two seconds.
        q.add_backoff("default/p", Instant::now());
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert_eq!(q.flush_backoff(Instant::now()), 0);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(q.flush_backoff(Instant::now()), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_wait_for_a_relevant_event() {
        let mut q = Queue::new();
        q.add_or_update(info("p", 0), Instant::now());
        q.pop(Instant::now()).unwrap();
        q.add_unschedulable("default/p", PluginSet::of(&[Plugin::NodeResourcesFit]), Instant::now());
        assert_eq!(q.counts(), (0, 0, 1, 0));
        // A label change does not help a pod that lacked resources.
        let labels = NodeChange { labels: true, ..Default::default() };
        assert!(!q.on_event(ClusterEvent::NodeUpdate(labels), Instant::now()));
        assert_eq!(q.counts(), (0, 0, 1, 0));
        // More allocatable may help, but the pod still backs off for a second.
        let alloc = NodeChange { allocatable: true, ..Default::default() };
        assert!(!q.on_event(ClusterEvent::NodeUpdate(alloc), Instant::now()));
        assert_eq!(q.counts(), (0, 1, 0, 0));
        tokio::time::advance(Duration::from_secs(1)).await;
        q.flush_backoff(Instant::now());
        assert_eq!(q.counts(), (1, 0, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn unschedulable_pods_are_retried_after_five_minutes() {
        let mut q = Queue::new();
        q.add_or_update(info("p", 0), Instant::now());
        q.pop(Instant::now()).unwrap();
        q.add_unschedulable("default/p", PluginSet::of(&[Plugin::TaintToleration]), Instant::now());
        tokio::time::advance(MAX_UNSCHEDULABLE - Duration::from_secs(1)).await;
        assert!(!q.flush_unschedulable(Instant::now()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(q.flush_unschedulable(Instant::now()));
        assert_eq!(q.pop(Instant::now()).unwrap().attempts, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_during_the_attempt_sends_the_pod_to_backoff_not_unschedulable() {
        let mut q = Queue::new();
        q.add_or_update(info("p", 0), Instant::now());
        q.pop(Instant::now()).unwrap();
        q.on_event(ClusterEvent::NodeAdd, Instant::now());
        q.add_unschedulable("default/p", PluginSet::of(&[Plugin::NodeResourcesFit]), Instant::now());
        assert_eq!(q.counts(), (0, 1, 0, 0));
    }

    #[test]
    fn gated_pods_wait_until_their_gates_are_removed() {
        let mut q = Queue::new();
        let mut gated = pod("g");
        gated.spec.as_mut().unwrap().scheduling_gates =
            Some(vec![k8s_openapi::api::core::v1::PodSchedulingGate { name: "example.com/wait".into() }]);
        let now = Instant::now();
        assert!(!q.add_or_update(Arc::new(PodInfo::new(gated.into())), now));
        assert!(q.pop(now).is_none());
        assert_eq!(q.counts(), (0, 0, 0, 1));
        assert!(q.add_or_update(Arc::new(PodInfo::new(pod("g").into())), now));
        assert_eq!(q.pop(now).unwrap().info.name, "g");
    }

    #[test]
    fn deleted_pods_leave_the_queue() {
        let mut q = Queue::new();
        let now = Instant::now();
        q.add_or_update(info("a", 0), now);
        q.add_or_update(info("b", 0), now);
        q.delete("default/a");
        assert_eq!(q.pop(now).unwrap().info.name, "b");
        assert!(q.pop(now).is_none());
    }

    #[test]
    fn a_priority_change_reorders_the_active_queue() {
        let mut q = Queue::new();
        let now = Instant::now();
        q.add_or_update(info("a", 0), now);
        q.add_or_update(info("b", 0), now);
        q.add_or_update(info("b", 10), now);
        assert_eq!(q.pop(now).unwrap().info.name, "b");
        assert_eq!(q.pop(now).unwrap().info.name, "a");
        assert!(q.pop(now).is_none());
    }
}
