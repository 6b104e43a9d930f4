//! Node health from heartbeats (`tryUpdateNodeHealth`): the controller remembers, in its own
//! clock, when it last saw a node's Ready condition heartbeat or its Lease renewed; a node
//! silent for longer than the grace period gets its Ready, MemoryPressure, DiskPressure
//! and PIDPressure conditions set to Unknown.
//!
//! Using the local time of observation rather than the timestamps the node wrote keeps
//! the decision right when node and control-plane clocks disagree.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

/// What the controller remembers about a node between passes.
#[derive(Clone, Debug, Default)]
pub struct NodeHealth {
    /// When a heartbeat (status or lease) was last observed, on the controller's clock.
    pub probe: jiff::Timestamp,
    /// When the Ready condition was last seen to change.
    pub ready_transition: jiff::Timestamp,
    /// The node status as last observed.
    pub status: Option<NodeStatus>,
    /// The lease renewal time as last observed.
    pub lease_renew: Option<MicroTime>,
}

/// The outcome of one evaluation.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The Ready condition as the node had it (a made-up Unknown one when it has none).
    pub observed_ready: NodeCondition,
    /// The Ready condition after this evaluation.
    pub current_ready: Option<NodeCondition>,
    /// The conditions to write to `status.conditions` when they changed.
    pub write: Option<Vec<NodeCondition>>,
}

/// The condition types set to Unknown when a node goes silent (NetworkUnavailable belongs
/// to the network provider and is left alone).
pub const SILENCED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// A node's condition of a type.
pub fn condition<'a>(status: Option<&'a NodeStatus>, type_: &str) -> Option<&'a NodeCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Evaluates a node against what was remembered about it; returns what to remember next.
///
/// `monitor_grace` applies to nodes that have posted a Ready condition, `startup_grace`
/// to nodes that never did (counted from the node's creation).
pub fn evaluate(
    node: &Node,
    lease: Option<&Lease>,
    saved: Option<&NodeHealth>,
    now: jiff::Timestamp,
    monitor_grace: Duration,
    startup_grace: Duration,
) -> (NodeHealth, Evaluation) {
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let current = condition(node.status.as_ref(), "Ready").cloned();
    let (observed_ready, grace) = match &current {
        None => (
            NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                last_heartbeat_time: Some(Time(created)),
                last_transition_time: Some(Time(created)),
                ..Default::default()
            },
            startup_grace,
        ),
        Some(c) => (c.clone(), monitor_grace),
    };

    let fresh =
        |probe| NodeHealth { probe, ready_transition: probe, status: node.status.clone(), lease_renew: None };
    let mut health = match (saved, &current) {
        // Never posted a status: count from creation.
        (None, None) => NodeHealth {
            probe: created,
            ready_transition: created,
            status: node.status.clone(),
            lease_renew: None,
        },
        (Some(s), None) => NodeHealth { status: node.status.clone(), ..s.clone() },
        (None, Some(_)) => fresh(now),
        (Some(s), Some(cur)) => match condition(s.status.as_ref(), "Ready") {
            None => NodeHealth { lease_renew: s.lease_renew.clone(), ..fresh(now) },
            Some(old) if old.last_heartbeat_time != cur.last_heartbeat_time => {
                let ready_transition = if old.last_transition_time != cur.last_transition_time {
                    now
                } else {
                    s.ready_transition
                };
                NodeHealth {
                    probe: now,
                    ready_transition,
                    status: node.status.clone(),
                    lease_renew: s.lease_renew.clone(),
                }
            }
            Some(_) => s.clone(),
        },
    };
    // A renewed lease counts as a heartbeat even if the status never changes.
    let renewed = lease.and_then(|l| l.spec.as_ref()).and_then(|s| s.renew_time.clone());
    if let Some(r) = &renewed
        && health.lease_renew.as_ref().is_none_or(|old| old.0 < r.0)
    {
        health.lease_renew = Some(r.clone());
        health.probe = now;
    }

    let grace = jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::from_secs(40));
    if now <= health.probe + grace {
        return (health, Evaluation { observed_ready, current_ready: current, write: None });
    }
    let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    for type_ in SILENCED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => conditions.push(NodeCondition {
                type_: type_.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: Some(Time(created)),
                last_transition_time: Some(Time(now)),
            }),
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
            Some(_) => {}
        }
    }
    let new_ready = conditions.iter().find(|c| c.type_ == "Ready").cloned();
    if new_ready.as_ref() == Some(&observed_ready) {
        return (health, Evaluation { observed_ready, current_ready: new_ready, write: None });
    }
    (health, Evaluation { observed_ready, current_ready: new_ready, write: Some(conditions) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn t(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn node(ready: Option<(&str, i64)>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                creation_timestamp: Some(Time(t(0))),
                ..Default::default()
            },
            status: ready.map(|(status, beat)| NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: status.into(),
                    reason: Some("KubeletReady".into()),
                    last_heartbeat_time: Some(Time(t(beat))),
                    last_transition_time: Some(Time(t(0))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn lease(renew: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec { renew_time: Some(MicroTime(t(renew))), ..Default::default() }),
            ..Default::default()
        }
    }

    const GRACE: Duration = Duration::from_secs(40);
    const STARTUP: Duration = Duration::from_secs(60);

    #[test]
    fn a_renewed_lease_keeps_a_node_healthy() {
        let n = node(Some(("True", 1)));
        let (h, e) = evaluate(&n, Some(&lease(1)), None, t(10), GRACE, STARTUP);
        assert!(e.write.is_none());
        // 100s later the status is unchanged but the lease was renewed at 95s.
        let (h, e) = evaluate(&n, Some(&lease(95)), Some(&h), t(100), GRACE, STARTUP);
        assert!(e.write.is_none());
        assert_eq!(h.probe, t(100));
    }

    #[test]
    fn a_node_silent_past_the_grace_period_turns_unknown() {
        let n = node(Some(("True", 1)));
        let (h, _) = evaluate(&n, Some(&lease(1)), None, t(10), GRACE, STARTUP);
        let (h, e) = evaluate(&n, Some(&lease(1)), Some(&h), t(50), GRACE, STARTUP);
        assert!(e.write.is_none(), "exactly at the grace period the node is still trusted");
        let (_, e) = evaluate(&n, Some(&lease(1)), Some(&h), t(51), GRACE, STARTUP);
        let conds = e.write.expect("conditions to write");
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
        assert_eq!(ready.last_transition_time, Some(Time(t(51))));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t(1))), "the heartbeat is the node's, kept");
        let never = conds.iter().find(|c| c.type_ == "MemoryPressure").unwrap();
        assert_eq!(
            (never.status.as_str(), never.reason.as_deref()),
            ("Unknown", Some("NodeStatusNeverUpdated"))
        );
        assert_eq!(never.last_heartbeat_time, Some(Time(t(0))));
        assert_eq!(e.observed_ready.status, "True");
        assert_eq!(e.current_ready.unwrap().status, "Unknown");
    }

    #[test]
    fn a_node_that_never_posted_status_gets_the_startup_grace_from_creation() {
        let n = node(None);
        let (h, e) = evaluate(&n, None, None, t(60), GRACE, STARTUP);
        assert!(e.write.is_none());
        let (_, e) = evaluate(&n, None, Some(&h), t(61), GRACE, STARTUP);
        let conds = e.write.unwrap();
        assert_eq!(conds.len(), 4);
        assert!(
            conds
                .iter()
                .all(|c| c.status == "Unknown" && c.reason.as_deref() == Some("NodeStatusNeverUpdated"))
        );
    }

    #[test]
    fn a_fresh_status_heartbeat_counts_like_a_lease() {
        let (h, _) = evaluate(&node(Some(("True", 1))), None, None, t(10), GRACE, STARTUP);
        let (h, e) = evaluate(&node(Some(("True", 45))), None, Some(&h), t(45), GRACE, STARTUP);
        assert!(e.write.is_none());
        assert_eq!(h.probe, t(45));
        let (_, e) = evaluate(&node(Some(("True", 45))), None, Some(&h), t(86), GRACE, STARTUP);
        assert!(e.write.is_some());
    }

    #[test]
    fn an_already_unknown_node_is_not_rewritten() {
        let n = node(Some(("Unknown", 1)));
        let (h, _) = evaluate(&n, None, None, t(10), GRACE, STARTUP);
        let mut n2 = n.clone();
        for ty in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            n2.status.as_mut().unwrap().conditions.as_mut().unwrap().push(NodeCondition {
                type_: ty.into(),
                status: "Unknown".into(),
                ..Default::default()
            });
        }
        let (_, e) = evaluate(&n2, None, Some(&h), t(100), GRACE, STARTUP);
        assert!(e.write.is_none());
    }
}
