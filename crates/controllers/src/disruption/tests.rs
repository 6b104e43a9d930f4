//! Reconcile tests: a seeded cache, one sync, the exact status written.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::*;
use crate::{Clock, Informers, Options};
use fakeapi::{FakeApi, fake_client};

struct FixedClock(jiff::Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> jiff::Timestamp {
        self.0
    }
}

fn now() -> jiff::Timestamp {
    "2025-03-01T12:00:00Z".parse().unwrap()
}

fn ago(secs: i64) -> Time {
    Time(now() - jiff::SignedDuration::from_secs(secs))
}

fn state() -> (Arc<State>, FakeApi) {
    let (client, calls) = fake_client();
    let ctx = Arc::new(Context {
        informers: Informers::offline(client.clone()),
        client,
        clock: Arc::new(FixedClock(now())),
        options: Options::default(),
    });
    (Arc::new(State::new(ctx)), calls)
}

fn owner(kind: &str, api_version: &str, name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        ..Default::default()
    }
}

fn pod(name: &str, ready: bool, owner: Option<OwnerReference>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        status: Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pdb(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            generation: Some(2),
            resource_version: Some("10".into()),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(PodDisruptionBudgetStatus::default()),
    }
}

fn status_writes(calls: &FakeApi) -> Vec<serde_json::Value> {
    calls
        .writes()
        .into_iter()
        .filter(|c| c.path.contains("/poddisruptionbudgets/web/status"))
        .map(|c| {
            assert_eq!(c.method, "PUT");
            c.body["status"].clone()
        })
        .collect()
}

fn events(calls: &FakeApi) -> Vec<(String, String)> {
    calls
        .writes()
        .into_iter()
        .filter(|c| c.path.contains("/events"))
        .map(|c| {
            (c.body["reason"].as_str().unwrap_or("").into(), c.body["message"].as_str().unwrap_or("").into())
        })
        .collect()
}

#[tokio::test]
async fn min_available_counts_matching_ready_pods_and_allows_the_surplus() {
    let (st, calls) = state();
    st.ctx.informers.seed(vec![pod("a", true, None), pod("b", true, None), pod("c", false, None), {
        let mut other = pod("x", true, None);
        other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        other
    }]);
    reconcile(Arc::new(pdb(Some(IntOrString::Int(1)), None)), st).await.unwrap();
    let w = status_writes(&calls);
    assert_eq!(w.len(), 1);
    let s = &w[0];
    assert_eq!(
        (
            &s["expectedPods"],
            &s["currentHealthy"],
            &s["desiredHealthy"],
            &s["disruptionsAllowed"],
            &s["observedGeneration"]
        ),
        (&json!(3), &json!(2), &json!(1), &json!(1), &json!(2))
    );
    let cond = &s["conditions"][0];
    assert_eq!(
        (&cond["type"], &cond["status"], &cond["reason"]),
        (&json!("DisruptionAllowed"), &json!("True"), &json!("SufficientPods"))
    );
    assert_eq!(cond["observedGeneration"], 2);
    assert!(events(&calls).is_empty());
}

#[tokio::test]
async fn a_budget_that_matches_no_pods_allows_nothing_and_says_so() {
    let (st, calls) = state();
    reconcile(Arc::new(pdb(Some(IntOrString::Int(1)), None)), st).await.unwrap();
    let w = status_writes(&calls);
    assert_eq!(w.len(), 1);
    assert_eq!(
        (&w[0]["expectedPods"], &w[0]["desiredHealthy"], &w[0]["disruptionsAllowed"]),
        (&json!(0), &json!(1), &json!(0))
    );
    assert_eq!(w[0]["conditions"][0]["reason"], "InsufficientPods");
    assert_eq!(w[0]["conditions"][0]["status"], "False");
    assert_eq!(events(&calls), [("NoPods".to_string(), "No matching pods found".to_string())]);
}

#[tokio::test]
async fn max_unavailable_percent_is_taken_from_the_deployment_scale() {
    let (st, calls) = state();
    st.ctx.informers.seed(vec![Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("d1".into()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec { replicas: Some(4), ..Default::default() }),
        ..Default::default()
    }]);
    st.ctx.informers.seed(vec![ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web-5d4f8".into()),
            namespace: Some("default".into()),
            uid: Some("rs1".into()),
            owner_references: Some(vec![owner("Deployment", "apps/v1", "web", "d1")]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec { replicas: Some(3), ..Default::default() }),
        ..Default::default()
    }]);
    let rs = || Some(owner("ReplicaSet", "apps/v1", "web-5d4f8", "rs1"));
    st.ctx.informers.seed(vec![pod("a", true, rs()), pod("b", true, rs()), pod("c", true, rs())]);
    reconcile(Arc::new(pdb(None, Some(IntOrString::String("25%".into())))), st).await.unwrap();
    let w = status_writes(&calls);
    // Expected 4 (the Deployment's replicas, not the 3 pods), 25% of 4 rounds up to 1.
    assert_eq!(
        (
            &w[0]["expectedPods"],
            &w[0]["desiredHealthy"],
            &w[0]["currentHealthy"],
            &w[0]["disruptionsAllowed"]
        ),
        (&json!(4), &json!(3), &json!(3), &json!(0))
    );
}

#[tokio::test]
async fn min_available_percent_rounds_up_over_a_replicaset_scale() {
    let (st, calls) = state();
    st.ctx.informers.seed(vec![ReplicaSet {
        metadata: ObjectMeta {
            name: Some("rs".into()),
            namespace: Some("default".into()),
            uid: Some("rs1".into()),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec { replicas: Some(3), ..Default::default() }),
        ..Default::default()
    }]);
    let rs = || Some(owner("ReplicaSet", "apps/v1", "rs", "rs1"));
    st.ctx.informers.seed(vec![pod("a", true, rs()), pod("b", true, rs()), pod("c", true, rs())]);
    reconcile(Arc::new(pdb(Some(IntOrString::String("50%".into())), None)), st).await.unwrap();
    let w = status_writes(&calls);
    assert_eq!(
        (&w[0]["expectedPods"], &w[0]["desiredHealthy"], &w[0]["disruptionsAllowed"]),
        (&json!(3), &json!(2), &json!(1))
    );
}

#[tokio::test]
async fn evicted_pods_stay_unhealthy_for_two_minutes_then_leave_the_map() {
    let (st, calls) = state();
    let mut deleting = pod("d", true, None);
    deleting.metadata.deletion_timestamp = Some(ago(1));
    st.ctx.informers.seed(vec![pod("a", true, None), pod("b", true, None), pod("c", true, None), deleting]);
    let mut budget = pdb(Some(IntOrString::Int(1)), None);
    budget.status.as_mut().unwrap().disrupted_pods = Some(
        [
            ("a".to_string(), ago(30)),
            ("b".to_string(), ago(180)),
            ("gone".to_string(), ago(10)),
            ("d".to_string(), ago(5)),
        ]
        .into(),
    );
    let action = reconcile(Arc::new(budget), st).await.unwrap();
    let w = status_writes(&calls);
    // a: evicted 30s ago, still expected to go; b: expired, healthy again; d: being deleted.
    assert_eq!(w[0]["disruptedPods"], json!({"a": "2025-03-01T11:59:30Z"}));
    assert_eq!(
        (&w[0]["currentHealthy"], &w[0]["disruptionsAllowed"], &w[0]["expectedPods"]),
        (&json!(2), &json!(1), &json!(4))
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(90)));
    assert_eq!(
        events(&calls),
        [(
            "NotDeleted".to_string(),
            "Pod was expected by PDB default/web to be deleted but it wasn't".to_string()
        )]
    );
}

#[tokio::test]
async fn a_pod_whose_controller_cannot_be_found_fails_safe() {
    let (st, calls) = state();
    st.ctx.informers.seed(vec![pod("a", true, Some(owner("Widget", "example.com/v1", "w", "w1")))]);
    let mut budget = pdb(None, Some(IntOrString::Int(1)));
    budget.status.as_mut().unwrap().disruptions_allowed = 3;
    let action = reconcile(Arc::new(budget), st).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    let w = status_writes(&calls);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["disruptionsAllowed"], 0);
    let cond = &w[0]["conditions"][0];
    assert_eq!((&cond["status"], &cond["reason"]), (&json!("False"), &json!("SyncFailed")));
    assert_eq!(cond["message"], "no matches for kind \"Widget\" in version \"example.com/v1\"");
    assert_eq!(events(&calls)[0].0, "CalculateExpectedPodCountFailed");
}

#[tokio::test]
async fn a_budget_whose_status_is_current_is_not_written() {
    let (st, calls) = state();
    st.ctx.informers.seed(vec![pod("a", true, None), pod("b", true, None)]);
    let mut budget = pdb(Some(IntOrString::Int(1)), None);
    budget.status = Some(PodDisruptionBudgetStatus {
        current_healthy: 2,
        desired_healthy: 1,
        expected_pods: 2,
        disruptions_allowed: 1,
        observed_generation: Some(2),
        conditions: Some(vec![allowed_condition(
            &PodDisruptionBudgetStatus {
                disruptions_allowed: 1,
                observed_generation: Some(2),
                ..Default::default()
            },
            now(),
        )]),
        ..Default::default()
    });
    reconcile(Arc::new(budget), st).await.unwrap();
    assert!(calls.writes().is_empty());
}

#[tokio::test]
async fn a_stale_disruption_target_condition_is_reset_to_false() {
    let (st, calls) = state();
    let mut p = pod("a", true, None);
    p.status.as_mut().unwrap().conditions.as_mut().unwrap().push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("EvictionByEvictionAPI".into()),
        last_transition_time: Some(ago(121)),
        ..Default::default()
    });
    stale::reconcile(Arc::new(p.clone()), st.clone()).await.unwrap();
    let w = calls.writes();
    assert_eq!(w.len(), 1);
    assert!(w[0].path.starts_with("/api/v1/namespaces/default/pods/a/status"));
    let cond = &w[0].body["status"]["conditions"][1];
    assert_eq!(
        cond,
        &json!({"type": "DisruptionTarget", "status": "False", "lastTransitionTime": "2025-03-01T12:00:00Z"})
    );

    // A fresher condition is only looked at again when it goes stale.
    let (st, calls) = state();
    p.status.as_mut().unwrap().conditions.as_mut().unwrap()[1].last_transition_time = Some(ago(20));
    let action = stale::reconcile(Arc::new(p), st).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(100)));
    assert!(calls.writes().is_empty());
}

#[test]
fn percentages_round_up_and_plain_strings_are_refused() {
    let cases =
        [("50%", 3, Ok(2)), ("25%", 4, Ok(1)), ("10%", 1, Ok(1)), ("0%", 5, Ok(0)), ("100%", 7, Ok(7))];
    for (v, total, want) in cases {
        assert_eq!(scaled_value(&IntOrString::String(v.into()), total), want, "{v} of {total}");
    }
    assert_eq!(scaled_value(&IntOrString::Int(3), 10), Ok(3));
    assert!(scaled_value(&IntOrString::String("3".into()), 10).is_err());
}
