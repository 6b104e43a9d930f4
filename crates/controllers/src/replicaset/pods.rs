//! Pod helpers shared by the workload controllers: which pods count (active, ready,
//! available), the pod a template stamps out, and the order in which surplus pods are
//! deleted (the ReplicaSet controller's ranking).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The annotation that makes a pod cheaper (lower) or dearer (higher) to delete.
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A pod counts toward a controller's replicas while it is not finished and not being
/// deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// The pod's phase as reported in its status ("" when unset).
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The pod's `Ready` condition, if any.
fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod became ready (the `Ready` condition's last transition), if it is ready
/// and the time is known.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let c = ready_condition(pod)?;
    if c.status != "True" {
        return None;
    }
    c.last_transition_time.as_ref().map(|t| t.0)
}

/// Whether the pod is available: ready, and ready for at least `min_ready_seconds`
/// (measured from the `Ready` condition's last transition, strictly before `now`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod) {
        Some(t) => match t.checked_add(jiff::SignedDuration::from_secs(i64::from(min_ready_seconds))) {
            Ok(at) => at < now,
            Err(_) => false,
        },
        None => false,
    }
}

/// For a ready pod that is not yet available only because of `min_ready_seconds`, how
/// long until it is.
pub fn until_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<std::time::Duration> {
    if min_ready_seconds <= 0 || !is_ready(pod) || is_available(pod, min_ready_seconds, now) {
        return None;
    }
    let since = ready_since(pod)?;
    let at = since.checked_add(jiff::SignedDuration::from_secs(i64::from(min_ready_seconds))).ok()?;
    let left = at.duration_since(now);
    Some(left.unsigned_abs())
}

/// The `generateName` prefix for pods of a controller: `<name>-`, or the bare name when
/// the dash would make it too long for a name.
pub fn pods_prefix(controller_name: &str) -> String {
    let prefix = format!("{controller_name}-");
    if prefix.len() > 253 { controller_name.to_string() } else { prefix }
}

/// The pod a controller creates from its template: the template's labels, annotations,
/// finalizers and spec, `generateName` from the controller's name, and the controller's
/// ownerReference.
pub fn pod_from_template(template: &PodTemplateSpec, controller_name: &str, owner: OwnerReference) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(pods_prefix(controller_name)),
            labels: meta.labels.filter(|l| !l.is_empty()),
            annotations: meta.annotations.filter(|a| !a.is_empty()),
            finalizers: meta.finalizers.filter(|f| !f.is_empty()),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Whether the labels of `pod` include every label of the template (the
/// `fullyLabeledReplicas` test).
pub fn has_labels(pod: &Pod, labels: &BTreeMap<String, String>) -> bool {
    let have = pod.metadata.labels.as_ref();
    labels.iter().all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
}

fn phase_ordinal(pod: &Pod) -> u8 {
    // Phases outside the three ranked ones sort with Pending, as upstream's lookup of a
    // missing map key yields zero.
    match phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

/// Highest restart count of the regular containers, then of the restartable init
/// (sidecar) containers.
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else { return (0, 0) };
    let regular = status.container_statuses.iter().flatten().map(|c| c.restart_count).max().unwrap_or(0);
    let sidecars: HashSet<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// Whether `t1` sorts first: a zero time first, otherwise the later time.
fn after_or_zero(t1: Option<Timestamp>, t2: Option<Timestamp>) -> bool {
    match (t1, t2) {
        (None, _) | (_, None) => t1.is_none(),
        (Some(a), Some(b)) => a > b,
    }
}

/// The difference of the base-2 logarithms (in nanoseconds) of the ages of two times.
fn logarithmic_rank_diff(t1: Timestamp, t2: Timestamp, now: Timestamp) -> i64 {
    let rank = |t: Timestamp| -> i64 {
        let d = now.as_nanosecond() - t.as_nanosecond();
        if d > 0 { (d as f64).log2() as i64 } else { -1 }
    };
    rank(t1) - rank(t2)
}

/// Compares two times by logarithmic age bucket; a tie in the bucket falls back to the UID.
fn compare_times(t1: Option<Timestamp>, t2: Option<Timestamp>, now: Timestamp, a: &Pod, b: &Pod) -> bool {
    match (t1, t2) {
        (Some(x), Some(y)) => {
            let diff = logarithmic_rank_diff(x, y, now);
            if diff == 0 { uid(a) < uid(b) } else { diff < 0 }
        }
        _ => after_or_zero(t1, t2),
    }
}

/// Whether `a` should be deleted before `b`, where `rank_*` is how many related active
/// pods share the pod's node. The order, first match wins: unscheduled before scheduled;
/// Pending before Unknown before Running; not ready before ready; lower
/// pod-deletion-cost first; more pods doubled up on the node first; ready for less time
/// first (logarithmic buckets); more container restarts first; newer first
/// (logarithmic buckets, then UID).
pub fn delete_before(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: Timestamp) -> bool {
    let (na, nb) = (node_name(a), node_name(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return na.is_empty();
    }
    let (pa, pb) = (phase_ordinal(a), phase_ordinal(b));
    if pa != pb {
        return pa < pb;
    }
    let (ra, rb) = (is_ready(a), is_ready(b));
    if ra != rb {
        return !ra;
    }
    let (ca, cb) = (deletion_cost(a), deletion_cost(b));
    if ca != cb {
        return ca < cb;
    }
    if rank_a != rank_b {
        return rank_a > rank_b;
    }
    if ra && rb {
        let (ta, tb) = (ready_since(a), ready_since(b));
        if ta != tb {
            return compare_times(ta, tb, now, a, b);
        }
    }
    let (ma, mb) = (max_restarts(a), max_restarts(b));
    if ma.0 != mb.0 {
        return ma.0 > mb.0;
    }
    if ma.1 != mb.1 {
        return ma.1 > mb.1;
    }
    let (ta, tb) = (
        a.metadata.creation_timestamp.as_ref().map(|t| t.0),
        b.metadata.creation_timestamp.as_ref().map(|t| t.0),
    );
    if ta != tb {
        return compare_times(ta, tb, now, a, b);
    }
    false
}

/// Picks `diff` pods of `pods` to delete, preferring those earliest in their life (see
/// [`delete_before`]). `related` are the active pods of every ReplicaSet under the same
/// controller (they rank pods doubled up on one node). Keeps `pods` order when all of
/// them go.
pub fn pods_to_delete(
    mut pods: Vec<Arc<Pod>>,
    related: &[Arc<Pod>],
    diff: usize,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    if diff < pods.len() {
        let mut on_node: HashMap<&str, usize> = HashMap::new();
        for p in related.iter().filter(|p| is_active(p)) {
            *on_node.entry(node_name(p)).or_default() += 1;
        }
        let mut ranked: Vec<(Arc<Pod>, usize)> = pods
            .drain(..)
            .map(|p| {
                let r = on_node.get(node_name(&p)).copied().unwrap_or(0);
                (p, r)
            })
            .collect();
        ranked.sort_by(|(a, ra), (b, rb)| {
            if delete_before(a, *ra, b, *rb, now) {
                Ordering::Less
            } else if delete_before(b, *rb, a, *ra, now) {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        });
        pods = ranked.into_iter().map(|(p, _)| p).collect();
    }
    pods.truncate(diff);
    pods
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    struct P {
        name: &'static str,
        node: &'static str,
        phase: &'static str,
        ready_at: Option<i64>,
        created: i64,
        restarts: i32,
        cost: Option<&'static str>,
    }

    impl P {
        fn new(name: &'static str) -> Self {
            P { name, node: "n1", phase: "Running", ready_at: None, created: 0, restarts: 0, cost: None }
        }
        fn pod(&self) -> Arc<Pod> {
            let mut conditions = Vec::new();
            if let Some(at) = self.ready_at {
                conditions.push(PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(ts(at))),
                    ..Default::default()
                });
            }
            Arc::new(Pod {
                metadata: ObjectMeta {
                    name: Some(self.name.into()),
                    uid: Some(format!("uid-{}", self.name)),
                    creation_timestamp: Some(Time(ts(self.created))),
                    annotations: self.cost.map(|c| [(POD_DELETION_COST.to_string(), c.to_string())].into()),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    node_name: (!self.node.is_empty()).then(|| self.node.to_string()),
                    ..Default::default()
                }),
                status: Some(PodStatus {
                    phase: Some(self.phase.into()),
                    conditions: Some(conditions),
                    container_statuses: Some(vec![ContainerStatus {
                        name: "c".into(),
                        restart_count: self.restarts,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            })
        }
    }

    fn first_deleted(pods: Vec<P>, n: usize) -> Vec<String> {
        let pods: Vec<Arc<Pod>> = pods.iter().map(P::pod).collect();
        pods_to_delete(pods.clone(), &pods, n, ts(10_000))
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn surplus_pods_are_deleted_in_upstream_order() {
        // (case, pods, how many, expected first deleted)
        let cases: Vec<(&str, Vec<P>, usize, Vec<&str>)> = vec![
            (
                "unscheduled before scheduled",
                vec![P::new("sched"), P { node: "", phase: "Pending", ..P::new("unsched") }],
                1,
                vec!["unsched"],
            ),
            (
                "pending before unknown before running",
                vec![
                    P::new("run"),
                    P { phase: "Unknown", ..P::new("unk") },
                    P { phase: "Pending", ..P::new("pend") },
                ],
                2,
                vec!["pend", "unk"],
            ),
            (
                "not ready before ready",
                vec![P { ready_at: Some(0), ..P::new("ready") }, P::new("notready")],
                1,
                vec!["notready"],
            ),
            (
                "lower deletion cost first",
                vec![P { cost: Some("10"), ..P::new("dear") }, P { cost: Some("-5"), ..P::new("cheap") }],
                1,
                vec!["cheap"],
            ),
            (
                "doubled up on a node first",
                vec![
                    P { node: "a", ..P::new("alone") },
                    P { node: "b", ..P::new("b1") },
                    P { node: "b", ..P::new("b2") },
                ],
                1,
                vec!["b1"],
            ),
            (
                "ready more recently first",
                vec![
                    P { ready_at: Some(100), ..P::new("old") },
                    P { ready_at: Some(9_000), ..P::new("young") },
                ],
                1,
                vec!["young"],
            ),
            (
                "more restarts first",
                vec![P { restarts: 0, ..P::new("calm") }, P { restarts: 4, ..P::new("crashy") }],
                1,
                vec!["crashy"],
            ),
            (
                "newer first",
                vec![P { created: 10, ..P::new("older") }, P { created: 9_000, ..P::new("newer") }],
                1,
                vec!["newer"],
            ),
        ];
        for (case, pods, n, want) in cases {
            assert_eq!(first_deleted(pods, n), want, "{case}");
        }
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = P { ready_at: Some(0), ..P::new("a") }.pod();
        assert!(is_available(&p, 0, ts(0)));
        assert!(!is_available(&p, 10, ts(10)));
        assert!(is_available(&p, 10, ts(11)));
        assert_eq!(until_available(&p, 10, ts(4)), Some(std::time::Duration::from_secs(6)));
        assert!(!is_available(&P::new("b").pod(), 0, ts(0)));
    }

    #[test]
    fn finished_and_terminating_pods_are_not_active() {
        assert!(is_active(&P::new("a").pod()));
        assert!(!is_active(&P { phase: "Succeeded", ..P::new("a") }.pod()));
        assert!(!is_active(&P { phase: "Failed", ..P::new("a") }.pod()));
        let mut p = (*P::new("a").pod()).clone();
        p.metadata.deletion_timestamp = Some(Time(ts(0)));
        assert!(!is_active(&p));
    }
}
