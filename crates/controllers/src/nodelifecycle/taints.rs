//! Taints the node lifecycle controller owns, tolerations, zones and the rate limit on
//! NoExecute tainting.
//!
//! NoSchedule taints mirror node conditions (`node.kubernetes.io/not-ready`,
//! `unreachable`, `memory-pressure`, `disk-pressure`, `pid-pressure`,
//! `network-unavailable`) and `spec.unschedulable` (`node.kubernetes.io/unschedulable`).
//! The NoExecute `not-ready`/`unreachable` taints, which make the taint manager evict
//! pods, are added at most at a per-zone rate, slower or not at all when much of a zone is
//! down (upstream's disruption modes).

use std::collections::{BTreeMap, HashSet, VecDeque};

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

/// The taint key a node condition in a status maps to.
fn condition_taint(type_: &str, status: &str) -> Option<&'static str> {
    match (type_, status) {
        ("Ready", "False") => Some(NOT_READY),
        ("Ready", "Unknown") => Some(UNREACHABLE),
        ("MemoryPressure", "True") => Some(MEMORY_PRESSURE),
        ("DiskPressure", "True") => Some(DISK_PRESSURE),
        ("NetworkUnavailable", "True") => Some(NETWORK_UNAVAILABLE),
        ("PIDPressure", "True") => Some(PID_PRESSURE),
        _ => None,
    }
}

fn is_condition_taint_key(key: &str) -> bool {
    matches!(
        key,
        NOT_READY | UNREACHABLE | MEMORY_PRESSURE | DISK_PRESSURE | NETWORK_UNAVAILABLE | PID_PRESSURE
    )
}

/// A taint template (no value, no time).
pub fn taint(key: &str, effect: &str) -> Taint {
    Taint { key: key.into(), effect: effect.into(), ..Default::default() }
}

/// Same key and effect (`MatchTaint`).
pub fn matches(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

pub fn taints_of(node: &Node) -> &[Taint] {
    node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[])
}

pub fn has_taint(node: &Node, t: &Taint) -> bool {
    taints_of(node).iter().any(|x| matches(x, t))
}

/// The NoSchedule taints to add and remove so they mirror the node's conditions and
/// `spec.unschedulable` (`doNoScheduleTaintingPass`); other taints are left alone.
pub fn no_schedule_diff(node: &Node) -> (Vec<Taint>, Vec<Taint>) {
    let mut want: Vec<Taint> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| condition_taint(&c.type_, &c.status))
        .map(|k| taint(k, NO_SCHEDULE))
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        want.push(taint(UNSCHEDULABLE, NO_SCHEDULE));
    }
    let have: Vec<&Taint> = taints_of(node)
        .iter()
        .filter(|t| t.effect == NO_SCHEDULE && (t.key == UNSCHEDULABLE || is_condition_taint_key(&t.key)))
        .collect();
    let add = want.iter().filter(|w| !have.iter().any(|h| matches(h, w))).cloned().collect();
    let remove = have.into_iter().filter(|h| !want.iter().any(|w| matches(h, w))).cloned().collect();
    (add, remove)
}

/// Adds `add` (stamped with `now`) and removes `remove` from the node's taints with one
/// patch guarded by the node's resourceVersion (`SwapNodeControllerTaint`). Returns
/// whether anything changed.
pub async fn swap(
    client: &kube::Client,
    node: &Node,
    add: &[Taint],
    remove: &[Taint],
    now: jiff::Timestamp,
) -> kube::Result<bool> {
    let mut taints: Vec<Taint> =
        taints_of(node).iter().filter(|t| !remove.iter().any(|r| matches(r, t))).cloned().collect();
    let mut changed = taints.len() != taints_of(node).len();
    for a in add {
        let stamped = Taint { time_added: Some(Time(now)), ..a.clone() };
        match taints.iter_mut().find(|t| matches(t, a)) {
            Some(existing) if existing.value == a.value => {}
            Some(existing) => {
                *existing = stamped;
                changed = true;
            }
            None => {
                taints.push(stamped);
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(false);
    }
    let body = json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "spec": {"taints": if taints.is_empty() { serde_json::Value::Null } else { serde_json::to_value(&taints).unwrap_or_default() }},
    });
    let api: Api<Node> = Api::all(client.clone());
    api.patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(body)).await?;
    Ok(true)
}

/// Whether a toleration tolerates a taint (`ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    if t.key.as_deref().is_some_and(|k| !k.is_empty() && k != taint.key) {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// Whether every taint is tolerated, and the first toleration that tolerates each
/// (`GetMatchingTolerations`).
pub fn matching_tolerations<'a>(
    taints: &[Taint],
    tolerations: &'a [Toleration],
) -> (bool, Vec<&'a Toleration>) {
    let mut used = Vec::new();
    for taint in taints {
        match tolerations.iter().find(|t| tolerates(t, taint)) {
            Some(t) => used.push(t),
            None => return (false, Vec::new()),
        }
    }
    (true, used)
}

/// The shortest toleration period among `used`, in seconds: `None` when all tolerate
/// forever; zero or negative periods mean at once (`getMinTolerationTime`).
pub fn min_toleration_seconds(used: &[&Toleration]) -> Option<i64> {
    if used.is_empty() {
        return Some(0);
    }
    let mut min: Option<i64> = None;
    for t in used {
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return Some(0);
            }
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    min
}

/// The zone a node belongs to for disruption accounting (`GetZoneKey`): its region and
/// zone labels, or "" without either.
pub fn zone_key(node: &Node) -> String {
    let labels = node.labels();
    let get = |a: &str, b: &str| labels.get(a).or_else(|| labels.get(b)).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() { String::new() } else { format!("{region}:\x00:{zone}") }
}

/// A zone's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// The fraction of not-Ready nodes at which a zone counts as partially disrupted.
pub const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;

/// A zone's state from the Ready status of its nodes (`ComputeZoneState`): no Ready node
/// is a full disruption, more than two and at least 55% not Ready a partial one.
pub fn zone_state<'a>(ready: impl IntoIterator<Item = Option<&'a str>>) -> (usize, ZoneState) {
    let (mut ok, mut bad) = (0usize, 0usize);
    for r in ready {
        if r == Some("True") {
            ok += 1;
        } else {
            bad += 1;
        }
    }
    let state = if ok == 0 && bad > 0 {
        ZoneState::FullDisruption
    } else if bad > 2 && bad as f64 / (bad + ok) as f64 >= UNHEALTHY_ZONE_THRESHOLD {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (bad, state)
}

/// A token bucket with a burst of one; a rate of zero never admits.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    qps: f64,
    tokens: f64,
    last: Option<jiff::Timestamp>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(qps: f64) -> Self {
        TokenBucket { qps, tokens: 1.0, last: None }
    }

    pub fn qps(&self) -> f64 {
        self.qps
    }

    /// Takes a token if one is there.
    pub fn try_accept(&mut self, now: jiff::Timestamp) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        if let Some(last) = self.last {
            let elapsed = now.duration_since(last).as_secs_f64().max(0.0);
            self.tokens = (self.tokens + elapsed * self.qps).min(1.0);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A zone's queue of nodes waiting for a NoExecute taint (`RateLimitedTimedQueue` over a
/// `UniqueQueue`): a node processed stays remembered, so it is not queued again until
/// [`TaintQueue::remove`] forgets it (the node became reachable, or lost its taint).
#[derive(Debug)]
pub struct TaintQueue {
    queue: VecDeque<(String, jiff::Timestamp)>,
    seen: HashSet<String>,
    limiter: TokenBucket,
}

impl TaintQueue {
    pub fn new(qps: f64) -> Self {
        TaintQueue { queue: VecDeque::new(), seen: HashSet::new(), limiter: TokenBucket::new(qps) }
    }

    /// Queues a node unless it is queued or was processed since it was last removed.
    pub fn add(&mut self, node: &str, now: jiff::Timestamp) -> bool {
        if !self.seen.insert(node.to_string()) {
            return false;
        }
        self.queue.push_back((node.to_string(), now));
        true
    }

    /// Forgets a node. Returns whether it was known.
    pub fn remove(&mut self, node: &str) -> bool {
        self.queue.retain(|(n, _)| n != node);
        self.seen.remove(node)
    }

    /// Changes the rate; a slower limiter that the old one was out of tokens for starts empty.
    pub fn swap_limiter(&mut self, qps: f64, now: jiff::Timestamp) {
        if (self.limiter.qps() - qps).abs() < f64::EPSILON {
            return;
        }
        let mut fresh = TokenBucket::new(qps);
        if qps > 0.0 && !self.limiter.try_accept(now) {
            fresh.try_accept(now);
        }
        self.limiter = fresh;
    }

    /// The nodes due now that the rate allows, in order; each is taken off the queue (and
    /// must be put back with [`TaintQueue::retry`] when its tainting fails).
    pub fn take_due(&mut self, now: jiff::Timestamp) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((_, at)) = self.queue.front() {
            if !self.limiter.try_accept(now) || *at > now {
                break;
            }
            if let Some((n, _)) = self.queue.pop_front() {
                out.push(n);
            }
        }
        out
    }

    /// Queues a node again, due at `at`.
    pub fn retry(&mut self, node: &str, at: jiff::Timestamp) {
        if self.seen.contains(node) {
            self.queue.push_back((node.to_string(), at));
        }
    }
}

/// Per-zone queues with their states.
pub type Zones = BTreeMap<String, (ZoneState, TaintQueue)>;

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    fn node(conds: &[(&str, &str)], unschedulable: bool, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                unschedulable: Some(unschedulable),
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(
                    conds
                        .iter()
                        .map(|(t, s)| NodeCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn keys(ts: &[Taint]) -> Vec<String> {
        ts.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect()
    }

    #[test]
    fn no_schedule_taints_follow_conditions_and_cordoning() {
        // (conditions, cordoned, taints, to add, to remove)
        type Case<'a> = (Vec<(&'a str, &'a str)>, bool, Vec<Taint>, Vec<&'a str>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (vec![("Ready", "True")], false, vec![], vec![], vec![]),
            (
                vec![("Ready", "False")],
                false,
                vec![],
                vec!["node.kubernetes.io/not-ready:NoSchedule"],
                vec![],
            ),
            (
                vec![("Ready", "Unknown")],
                true,
                vec![taint(NOT_READY, NO_SCHEDULE)],
                vec![
                    "node.kubernetes.io/unreachable:NoSchedule",
                    "node.kubernetes.io/unschedulable:NoSchedule",
                ],
                vec!["node.kubernetes.io/not-ready:NoSchedule"],
            ),
            (
                vec![("Ready", "True"), ("DiskPressure", "True")],
                false,
                vec![taint(UNSCHEDULABLE, NO_SCHEDULE)],
                vec!["node.kubernetes.io/disk-pressure:NoSchedule"],
                vec!["node.kubernetes.io/unschedulable:NoSchedule"],
            ),
            // Foreign taints and NoExecute ones are not this pass's business.
            (
                vec![("Ready", "True")],
                false,
                vec![taint("dedicated", NO_SCHEDULE), taint(UNREACHABLE, NO_EXECUTE)],
                vec![],
                vec![],
            ),
        ];
        for (conds, cordoned, taints, add, remove) in cases {
            let (a, r) = no_schedule_diff(&node(&conds, cordoned, taints));
            assert_eq!(keys(&a), add, "{conds:?}");
            assert_eq!(keys(&r), remove, "{conds:?}");
        }
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let t = |key: Option<&str>, op: Option<&str>, value: Option<&str>, effect: Option<&str>| Toleration {
            key: key.map(str::to_string),
            operator: op.map(str::to_string),
            value: value.map(str::to_string),
            effect: effect.map(str::to_string),
            toleration_seconds: None,
        };
        let unreachable = taint(UNREACHABLE, NO_EXECUTE);
        let valued = Taint { value: Some("gpu".into()), ..taint("dedicated", NO_SCHEDULE) };
        let cases = [
            (t(Some(UNREACHABLE), Some("Exists"), None, Some("NoExecute")), &unreachable, true),
            (t(Some(UNREACHABLE), Some("Exists"), None, None), &unreachable, true),
            (t(None, Some("Exists"), None, None), &unreachable, true),
            (t(Some(UNREACHABLE), Some("Exists"), None, Some("NoSchedule")), &unreachable, false),
            (t(Some(NOT_READY), Some("Exists"), None, None), &unreachable, false),
            (t(Some("dedicated"), Some("Equal"), Some("gpu"), None), &valued, true),
            (t(Some("dedicated"), None, Some("gpu"), None), &valued, true),
            (t(Some("dedicated"), Some("Equal"), Some("cpu"), None), &valued, false),
            (t(Some("dedicated"), Some("Lt"), Some("gpu"), None), &valued, false),
        ];
        for (tol, taint, want) in cases {
            assert_eq!(tolerates(&tol, taint), want, "{tol:?} vs {taint:?}");
        }
    }

    #[test]
    fn the_shortest_toleration_period_wins() {
        let t = |s: Option<i64>| Toleration { toleration_seconds: s, ..Default::default() };
        let (a, b, forever, zero) = (t(Some(300)), t(Some(60)), t(None), t(Some(-5)));
        assert_eq!(min_toleration_seconds(&[&a, &b, &forever]), Some(60));
        assert_eq!(min_toleration_seconds(&[&forever]), None);
        assert_eq!(min_toleration_seconds(&[&a, &zero]), Some(0));
    }

    #[test]
    fn zone_states_follow_the_ready_fraction() {
        let s = |v: &[Option<&str>]| zone_state(v.iter().copied()).1;
        assert_eq!(s(&[Some("True"), Some("True")]), ZoneState::Normal);
        assert_eq!(s(&[Some("Unknown")]), ZoneState::FullDisruption);
        assert_eq!(s(&[None, Some("False")]), ZoneState::FullDisruption);
        assert_eq!(s(&[Some("True"), Some("False"), Some("False")]), ZoneState::Normal);
        assert_eq!(
            s(&[Some("True"), Some("False"), Some("False"), Some("Unknown")]),
            ZoneState::PartialDisruption
        );
        assert_eq!(
            s(&[Some("True"), Some("True"), Some("False"), Some("False"), Some("Unknown")]),
            ZoneState::PartialDisruption
        );
        assert_eq!(
            s(&[Some("True"), Some("True"), Some("True"), Some("False"), Some("False"), Some("Unknown")]),
            ZoneState::Normal
        );
    }

    #[test]
    fn the_taint_queue_admits_one_node_per_ten_seconds_and_remembers_them() {
        let t0 = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let at = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        let mut q = TaintQueue::new(0.1);
        assert!(q.add("a", t0));
        assert!(q.add("b", t0));
        assert!(!q.add("a", t0));
        assert_eq!(q.take_due(t0), ["a"]);
        assert!(q.take_due(at(5)).is_empty());
        assert_eq!(q.take_due(at(11)), ["b"]);
        // Processed nodes are not queued again until removed.
        assert!(!q.add("a", at(20)));
        assert!(q.remove("a"));
        assert!(q.add("a", at(20)));
        q.swap_limiter(0.0, at(40));
        assert!(q.take_due(at(100)).is_empty());
    }
}
