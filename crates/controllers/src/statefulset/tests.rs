//! Reconcile tests of the StatefulSet controller: seed a set, its pods, claims and
//! revisions, run one sync, and assert on the exact writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetOrdinals,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetStatus,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use serde_json::Value;

use super::control::revision_data;
use super::identity::{self, REVISION_LABEL};
use super::reconcile;
use crate::history;
use crate::{Clock, Context, Informers, Options};
use fakeapi::{FakeApi, fake_client};

struct FixedClock(jiff::Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> jiff::Timestamp {
        self.0
    }
}

fn now() -> jiff::Timestamp {
    "2025-06-01T12:00:00Z".parse().unwrap()
}

fn ctx(client: kube::Client) -> Arc<Context> {
    Arc::new(Context {
        informers: Informers::offline(client.clone()),
        client,
        clock: Arc::new(FixedClock(now())),
        options: Options::default(),
    })
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn set(replicas: i32, image: &str) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("set-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: Some(labels(&[("app", "web")])), ..Default::default() },
            service_name: Some("nginx".into()),
            pod_management_policy: Some("OrderedReady".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy {
                    partition: Some(0),
                    max_unavailable: None,
                }),
            }),
            revision_history_limit: Some(10),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels(&[("app", "web")])), ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "nginx".into(),
                        image: Some(image.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta { name: Some("data".into()), ..Default::default() },
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: Some(StatefulSetStatus::default()),
    }
}

/// The revision a set's template makes, as the controller would have created it.
fn revision_of(set: &StatefulSet, number: i64) -> ControllerRevision {
    let labels = set.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.as_ref();
    let mut r = history::new_revision(set, labels, revision_data(set).unwrap(), number, Some(0));
    r.metadata.uid = Some(format!("rev-uid-{number}"));
    r
}

fn name_of(r: &ControllerRevision) -> String {
    r.metadata.name.clone().unwrap()
}

/// A member pod as the API server would hold it, made from `set`'s template.
fn member(set: &StatefulSet, ordinal: i32, revision: &str, phase: &str, ready: bool) -> Pod {
    let mut pod = identity::new_pod(set, ordinal);
    pod.metadata.uid = Some(format!("pod-uid-{ordinal}"));
    pod.metadata.labels.get_or_insert_with(Default::default).insert(REVISION_LABEL.into(), revision.into());
    pod.status = Some(PodStatus {
        phase: Some(phase.into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            last_transition_time: Some(Time(now() - jiff::SignedDuration::from_secs(3600))),
            ..Default::default()
        }]),
        ..Default::default()
    });
    pod
}

fn claim_of(set: &StatefulSet, ordinal: i32) -> PersistentVolumeClaim {
    let mut c = identity::claims_for(set, ordinal).remove(0).1;
    c.metadata.uid = Some(format!("pvc-uid-{ordinal}"));
    c
}

/// Writes other than Events, as `METHOD resource[/sub] name`.
fn summary(calls: &FakeApi) -> Vec<String> {
    calls
        .writes()
        .iter()
        .filter(|c| !c.path.contains("/events"))
        .map(|c| {
            let path = c.path.as_str();
            let parts: Vec<&str> = path.split('/').collect();
            let i = parts.iter().position(|p| *p == "namespaces").unwrap();
            let resource = parts[i + 2];
            let name = parts
                .get(i + 3)
                .map(|s| s.to_string())
                .unwrap_or_else(|| c.body["metadata"]["name"].as_str().unwrap_or("?").to_string());
            let sub = parts.get(i + 4).map(|s| format!("/{s}")).unwrap_or_default();
            format!("{} {resource}{sub} {name}", c.method)
        })
        .collect()
}

fn events(calls: &FakeApi) -> Vec<(String, String)> {
    calls
        .writes()
        .iter()
        .filter(|c| c.path.contains("/events"))
        .map(|c| {
            (c.body["reason"].as_str().unwrap().to_string(), c.body["message"].as_str().unwrap().to_string())
        })
        .collect()
}

fn body_of<'a>(calls: &'a [fakeapi::Call], what: &str) -> &'a Value {
    let c = calls
        .iter()
        .find(|c| {
            let path = c.path.as_str();
            path.ends_with(what) || c.body["metadata"]["name"] == what && c.method == "POST"
        })
        .unwrap_or_else(|| panic!("no write of {what}"));
    &c.body
}

fn status_write(calls: &FakeApi) -> Value {
    calls
        .writes()
        .into_iter()
        .find(|c| c.path.contains("/statefulsets/web/status"))
        .map(|c| c.body["status"].clone())
        .expect("a status write")
}

/// A set whose current revision exists and is recorded in its status.
fn steady(mut s: StatefulSet) -> (StatefulSet, ControllerRevision) {
    let rev = revision_of(&s, 1);
    s.status = Some(StatefulSetStatus {
        current_revision: Some(name_of(&rev)),
        update_revision: Some(name_of(&rev)),
        observed_generation: Some(1),
        collision_count: Some(0),
        ..Default::default()
    });
    (s, rev)
}

#[tokio::test]
async fn ordered_ready_creates_the_first_claim_and_pod_only() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let s = set(3, "nginx:1");
    reconcile(Arc::new(s.clone()), ctx).await.unwrap();
    let rev = revision_of(&s, 1);
    assert_eq!(
        summary(&calls),
        [
            format!("POST controllerrevisions {}", name_of(&rev)),
            "POST persistentvolumeclaims data-web-0".into(),
            "POST pods web-0".into(),
            "PUT statefulsets/status web".into(),
        ]
    );
    let writes = calls.writes();
    let pod = body_of(&writes, "web-0");
    assert_eq!(pod["metadata"]["generateName"], "web-");
    assert_eq!(pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"], "web-0");
    assert_eq!(pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "0");
    assert_eq!(pod["metadata"]["labels"]["controller-revision-hash"], name_of(&rev));
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(pod["spec"]["hostname"], "web-0");
    assert_eq!(pod["spec"]["subdomain"], "nginx");
    assert_eq!(pod["spec"]["volumes"][0]["name"], "data");
    assert_eq!(pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"], "data-web-0");
    let claim = body_of(&writes, "data-web-0");
    assert_eq!(claim["metadata"]["labels"]["app"], "web");
    let r = body_of(&writes, &name_of(&rev));
    assert_eq!(r["revision"], 1);
    assert_eq!(
        r["metadata"]["labels"]["controller.kubernetes.io/hash"],
        name_of(&rev).trim_start_matches("web-")
    );
    assert_eq!(r["data"]["spec"]["template"]["$patch"], "replace");
    let status = status_write(&calls);
    assert_eq!(status["replicas"], 0);
    assert_eq!(status["currentRevision"], name_of(&rev));
    assert_eq!(status["updateRevision"], name_of(&rev));
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["collisionCount"], 0);
    assert_eq!(
        events(&calls),
        [
            (
                "SuccessfulCreate".to_string(),
                "create Claim data-web-0 Pod web-0 in StatefulSet web success".to_string()
            ),
            ("SuccessfulCreate".into(), "create Pod web-0 in StatefulSet web successful".into()),
        ]
    );
}

#[tokio::test]
async fn ordered_ready_waits_while_the_previous_pod_is_not_ready() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (s, rev) = steady(set(3, "nginx:1"));
    ctx.informers.seed(vec![rev.clone()]);
    ctx.informers.seed(vec![member(&s, 0, &name_of(&rev), "Running", false)]);
    ctx.informers.seed(vec![claim_of(&s, 0)]);
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(summary(&calls), ["PUT statefulsets/status web"]);
    assert_eq!(status_write(&calls)["replicas"], 1);
    assert_eq!(status_write(&calls)["currentReplicas"], 1);
    assert!(status_write(&calls).get("readyReplicas").is_none());
}

#[tokio::test]
async fn ordered_ready_creates_the_next_pod_once_the_previous_is_running_and_ready() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (s, rev) = steady(set(3, "nginx:1"));
    ctx.informers.seed(vec![rev.clone()]);
    ctx.informers.seed(vec![member(&s, 0, &name_of(&rev), "Running", true)]);
    ctx.informers.seed(vec![claim_of(&s, 0)]);
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(
        summary(&calls),
        ["POST persistentvolumeclaims data-web-1", "POST pods web-1", "PUT statefulsets/status web"]
    );
    let status = status_write(&calls);
    assert_eq!(status["replicas"], 1);
    assert_eq!(status["readyReplicas"], 1);
    assert_eq!(status["availableReplicas"], 1);
}

#[tokio::test]
async fn parallel_creates_every_missing_pod_at_once() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let mut s = set(3, "nginx:1");
    s.spec.as_mut().unwrap().pod_management_policy = Some("Parallel".into());
    s.spec.as_mut().unwrap().volume_claim_templates = None;
    let (s, rev) = steady(s);
    ctx.informers.seed(vec![rev]);
    reconcile(Arc::new(s), ctx).await.unwrap();
    let mut got = summary(&calls);
    got.sort();
    // Nothing was observed yet, so the recorded status stands.
    assert_eq!(got, ["POST pods web-0", "POST pods web-1", "POST pods web-2"]);
}

#[tokio::test]
async fn scale_down_deletes_the_highest_ordinal_first_and_one_at_a_time() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (s, rev) = steady(set(1, "nginx:1"));
    ctx.informers.seed(vec![rev.clone()]);
    ctx.informers.seed((0..3).map(|i| member(&s, i, &name_of(&rev), "Running", true)).collect());
    ctx.informers.seed((0..3).map(|i| claim_of(&s, i)).collect());
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(summary(&calls), ["DELETE pods web-2", "PUT statefulsets/status web"]);
    assert_eq!(
        events(&calls),
        [("SuccessfulDelete".to_string(), "delete Pod web-2 in StatefulSet web successful".to_string())]
    );
}

#[tokio::test]
async fn scale_down_waits_for_a_terminating_pod() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (s, rev) = steady(set(1, "nginx:1"));
    ctx.informers.seed(vec![rev.clone()]);
    let mut terminating = member(&s, 2, &name_of(&rev), "Running", true);
    terminating.metadata.deletion_timestamp = Some(Time(now()));
    ctx.informers.seed(vec![
        member(&s, 0, &name_of(&rev), "Running", true),
        member(&s, 1, &name_of(&rev), "Running", true),
        terminating,
    ]);
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(summary(&calls), ["PUT statefulsets/status web"]);
}

#[tokio::test]
async fn rolling_update_replaces_the_highest_ordinal_first() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (old_set, old_rev) = steady(set(3, "nginx:1"));
    let mut s = set(3, "nginx:2");
    s.status = old_set.status.clone();
    s.metadata.generation = Some(2);
    ctx.informers.seed(vec![old_rev.clone()]);
    ctx.informers.seed((0..3).map(|i| member(&old_set, i, &name_of(&old_rev), "Running", true)).collect());
    ctx.informers.seed((0..3).map(|i| claim_of(&s, i)).collect());
    reconcile(Arc::new(s.clone()), ctx).await.unwrap();
    let new_rev = revision_of(&s, 2);
    assert_eq!(
        summary(&calls),
        [
            format!("POST controllerrevisions {}", name_of(&new_rev)),
            "DELETE pods web-2".into(),
            "PUT statefulsets/status web".into(),
        ]
    );
    let status = status_write(&calls);
    assert_eq!(status["currentRevision"], name_of(&old_rev));
    assert_eq!(status["updateRevision"], name_of(&new_rev));
    assert_eq!(status["currentReplicas"], 2);
    assert!(status.get("updatedReplicas").is_none());
    assert_eq!(status["observedGeneration"], 2);
}

#[tokio::test]
async fn rolling_update_recreates_a_missing_member_at_the_update_revision() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (old_set, old_rev) = steady(set(3, "nginx:1"));
    let mut s = set(3, "nginx:2");
    s.status = old_set.status.clone();
    let new_rev = revision_of(&s, 2);
    s.status.as_mut().unwrap().update_revision = Some(name_of(&new_rev));
    ctx.informers.seed(vec![old_rev.clone(), new_rev.clone()]);
    ctx.informers.seed((0..2).map(|i| member(&old_set, i, &name_of(&old_rev), "Running", true)).collect());
    ctx.informers.seed((0..3).map(|i| claim_of(&s, i)).collect());
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(summary(&calls), ["POST pods web-2", "PUT statefulsets/status web"]);
    let writes = calls.writes();
    let pod = body_of(&writes, "web-2");
    assert_eq!(pod["metadata"]["labels"]["controller-revision-hash"], name_of(&new_rev));
    assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:2");
}

#[tokio::test]
async fn rolling_update_waits_for_the_replaced_pod_to_be_ready() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (old_set, old_rev) = steady(set(3, "nginx:1"));
    let mut s = set(3, "nginx:2");
    s.status = old_set.status.clone();
    let new_rev = revision_of(&s, 2);
    ctx.informers.seed(vec![old_rev.clone(), new_rev.clone()]);
    ctx.informers.seed(vec![
        member(&old_set, 0, &name_of(&old_rev), "Running", true),
        member(&old_set, 1, &name_of(&old_rev), "Running", true),
        member(&s, 2, &name_of(&new_rev), "Pending", false),
    ]);
    ctx.informers.seed((0..3).map(|i| claim_of(&s, i)).collect());
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(summary(&calls), ["PUT statefulsets/status web"]);
    assert_eq!(status_write(&calls)["updatedReplicas"], 1);
}

#[tokio::test]
async fn rolling_update_stops_at_the_partition() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (old_set, old_rev) = steady(set(3, "nginx:1"));
    let mut s = set(3, "nginx:2");
    s.status = old_set.status.clone();
    s.spec.as_mut().unwrap().update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().partition =
        Some(2);
    let new_rev = revision_of(&s, 2);
    ctx.informers.seed(vec![old_rev.clone(), new_rev.clone()]);
    ctx.informers.seed(vec![
        member(&old_set, 0, &name_of(&old_rev), "Running", true),
        member(&old_set, 1, &name_of(&old_rev), "Running", true),
        member(&s, 2, &name_of(&new_rev), "Running", true),
    ]);
    ctx.informers.seed((0..3).map(|i| claim_of(&s, i)).collect());
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(summary(&calls), ["PUT statefulsets/status web"]);
    let status = status_write(&calls);
    assert_eq!(status["currentReplicas"], 2);
    assert_eq!(status["updatedReplicas"], 1);
    assert_eq!(status["currentRevision"], name_of(&old_rev));
}

#[tokio::test]
async fn on_delete_leaves_old_pods_running() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (old_set, old_rev) = steady(set(2, "nginx:1"));
    let mut s = set(2, "nginx:2");
    s.status = old_set.status.clone();
    s.spec.as_mut().unwrap().update_strategy =
        Some(StatefulSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None });
    let new_rev = revision_of(&s, 2);
    s.status.as_mut().unwrap().update_revision = Some(name_of(&new_rev));
    ctx.informers.seed(vec![old_rev.clone(), new_rev]);
    ctx.informers.seed((0..2).map(|i| member(&old_set, i, &name_of(&old_rev), "Running", true)).collect());
    ctx.informers.seed((0..2).map(|i| claim_of(&s, i)).collect());
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert!(summary(&calls).iter().all(|w| !w.starts_with("DELETE")), "{:?}", summary(&calls));
}

#[tokio::test]
async fn a_completed_rollout_makes_the_update_revision_current() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (old_set, old_rev) = steady(set(2, "nginx:1"));
    let mut s = set(2, "nginx:2");
    s.status = old_set.status.clone();
    let new_rev = revision_of(&s, 2);
    ctx.informers.seed(vec![old_rev, new_rev.clone()]);
    ctx.informers.seed((0..2).map(|i| member(&s, i, &name_of(&new_rev), "Running", true)).collect());
    ctx.informers.seed((0..2).map(|i| claim_of(&s, i)).collect());
    reconcile(Arc::new(s), ctx).await.unwrap();
    let status = status_write(&calls);
    assert_eq!(status["currentRevision"], name_of(&new_rev));
    assert_eq!(status["updateRevision"], name_of(&new_rev));
    assert_eq!(status["currentReplicas"], 2);
    assert_eq!(status["updatedReplicas"], 2);
    assert_eq!(status["readyReplicas"], 2);
}

#[tokio::test]
async fn a_steady_set_writes_nothing() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (mut s, rev) = steady(set(2, "nginx:1"));
    let st = s.status.as_mut().unwrap();
    st.replicas = 2;
    st.ready_replicas = Some(2);
    st.available_replicas = Some(2);
    st.current_replicas = Some(2);
    st.updated_replicas = Some(2);
    ctx.informers.seed(vec![rev.clone()]);
    ctx.informers.seed((0..2).map(|i| member(&s, i, &name_of(&rev), "Running", true)).collect());
    ctx.informers.seed((0..2).map(|i| claim_of(&s, i)).collect());
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert!(calls.writes().is_empty(), "{:?}", summary(&calls));
}

#[tokio::test]
async fn a_failed_member_is_deleted_to_be_recreated() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (s, rev) = steady(set(2, "nginx:1"));
    ctx.informers.seed(vec![rev.clone()]);
    ctx.informers.seed(vec![
        member(&s, 0, &name_of(&rev), "Failed", false),
        member(&s, 1, &name_of(&rev), "Running", true),
    ]);
    ctx.informers.seed((0..2).map(|i| claim_of(&s, i)).collect());
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(summary(&calls), ["DELETE pods web-0", "PUT statefulsets/status web"]);
}

#[tokio::test]
async fn start_ordinal_numbers_members_from_the_start() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let mut s = set(2, "nginx:1");
    s.spec.as_mut().unwrap().ordinals = Some(StatefulSetOrdinals { start: Some(5) });
    let (s, rev) = steady(s);
    ctx.informers.seed(vec![rev]);
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(summary(&calls), ["POST persistentvolumeclaims data-web-5", "POST pods web-5"]);
    assert_eq!(body_of(&calls.writes(), "web-5")["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "5");
}

#[tokio::test]
async fn a_claim_gets_the_set_as_owner_when_deleting_with_the_set() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let mut s = set(1, "nginx:1");
    s.spec.as_mut().unwrap().persistent_volume_claim_retention_policy =
        Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: Some("Delete".into()),
            when_scaled: Some("Retain".into()),
        });
    let (s, rev) = steady(s);
    ctx.informers.seed(vec![rev.clone()]);
    ctx.informers.seed(vec![member(&s, 0, &name_of(&rev), "Pending", false)]);
    ctx.informers.seed(vec![claim_of(&s, 0)]);
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(summary(&calls), ["PUT persistentvolumeclaims data-web-0", "PUT statefulsets/status web"]);
    let writes = calls.writes();
    let claim = body_of(&writes, "persistentvolumeclaims/data-web-0");
    assert_eq!(claim["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    assert_eq!(claim["metadata"]["ownerReferences"][0]["uid"], "set-uid");
}

#[tokio::test]
async fn a_claim_of_a_scaled_down_member_gets_the_pod_as_owner_when_deleting_on_scale_down() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let mut s = set(1, "nginx:1");
    s.spec.as_mut().unwrap().persistent_volume_claim_retention_policy =
        Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: Some("Retain".into()),
            when_scaled: Some("Delete".into()),
        });
    let (s, rev) = steady(s);
    ctx.informers.seed(vec![rev.clone()]);
    ctx.informers.seed(vec![
        member(&s, 0, &name_of(&rev), "Running", true),
        member(&s, 1, &name_of(&rev), "Running", true),
    ]);
    ctx.informers.seed(vec![claim_of(&s, 0), claim_of(&s, 1)]);
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(
        summary(&calls),
        ["PUT persistentvolumeclaims data-web-1", "DELETE pods web-1", "PUT statefulsets/status web"]
    );
    let writes = calls.writes();
    let claim = body_of(&writes, "persistentvolumeclaims/data-web-1");
    assert_eq!(claim["metadata"]["ownerReferences"][0]["kind"], "Pod");
    assert_eq!(claim["metadata"]["ownerReferences"][0]["uid"], "pod-uid-1");
}

#[tokio::test]
async fn a_member_waits_while_its_claim_belongs_to_a_previous_pod() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let mut s = set(1, "nginx:1");
    s.spec.as_mut().unwrap().persistent_volume_claim_retention_policy =
        Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: Some("Retain".into()),
            when_scaled: Some("Delete".into()),
        });
    let (s, rev) = steady(s);
    let mut stale = claim_of(&s, 0);
    stale.metadata.owner_references =
        Some(vec![crate::runtime::controller_ref(&member(&s, 0, "", "Running", true))]);
    ctx.informers.seed(vec![rev]);
    ctx.informers.seed(vec![stale]);
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert!(summary(&calls).is_empty(), "{:?}", summary(&calls));
}

#[tokio::test]
async fn a_pod_without_its_identity_labels_is_repaired() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (s, rev) = steady(set(1, "nginx:1"));
    let mut pod = member(&s, 0, &name_of(&rev), "Running", true);
    pod.metadata.labels.as_mut().unwrap().remove(identity::POD_INDEX_LABEL);
    ctx.informers.seed(vec![rev]);
    ctx.informers.seed(vec![pod]);
    ctx.informers.seed(vec![claim_of(&s, 0)]);
    reconcile(Arc::new(s), ctx).await.unwrap();
    assert_eq!(summary(&calls), ["PUT pods web-0", "PUT statefulsets/status web"]);
    assert_eq!(
        body_of(&calls.writes(), "pods/web-0")["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "0"
    );
    assert_eq!(
        events(&calls),
        [("SuccessfulUpdate".to_string(), "update Pod web-0 in StatefulSet web successful".to_string())]
    );
}

#[tokio::test]
async fn a_rollback_renumbers_the_matching_old_revision() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (s, rev1) = steady(set(1, "nginx:1"));
    let rev2 = revision_of(&set(1, "nginx:2"), 2);
    ctx.informers.seed(vec![rev1.clone(), rev2]);
    ctx.informers.seed(vec![member(&s, 0, &name_of(&rev1), "Running", true)]);
    ctx.informers.seed(vec![claim_of(&s, 0)]);
    reconcile(Arc::new(s), ctx).await.unwrap();
    let got = summary(&calls);
    assert_eq!(got[0], format!("PUT controllerrevisions {}", name_of(&rev1)));
    assert_eq!(body_of(&calls.writes(), &format!("controllerrevisions/{}", name_of(&rev1)))["revision"], 3);
}

#[tokio::test]
async fn revisions_beyond_the_history_limit_are_deleted_oldest_first() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let mut s = set(1, "nginx:9");
    s.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let (s, current) = steady(s);
    let current = ControllerRevision { revision: 4, ..current };
    let old: Vec<_> = (1..4).map(|i| revision_of(&set(1, &format!("nginx:{i}")), i)).collect();
    let mut all = old.clone();
    all.push(current.clone());
    ctx.informers.seed(all);
    ctx.informers.seed(vec![member(&s, 0, &name_of(&current), "Running", true)]);
    ctx.informers.seed(vec![claim_of(&s, 0)]);
    reconcile(Arc::new(s), ctx).await.unwrap();
    let deletes: Vec<_> = summary(&calls).into_iter().filter(|w| w.starts_with("DELETE")).collect();
    assert_eq!(
        deletes,
        [
            format!("DELETE controllerrevisions {}", name_of(&old[0])),
            format!("DELETE controllerrevisions {}", name_of(&old[1]))
        ]
    );
}

#[tokio::test]
async fn pods_of_another_set_are_neither_counted_nor_touched() {
    let (client, calls) = fake_client();
    let ctx = ctx(client);
    let (s, rev) = steady(set(1, "nginx:1"));
    let mut foreign = member(&s, 0, &name_of(&rev), "Running", true);
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "other-uid".into();
    ctx.informers.seed(vec![rev]);
    ctx.informers.seed(vec![foreign]);
    reconcile(Arc::new(s), ctx).await.unwrap();
    // web-0 belongs to someone else, so this set creates its own web-0 (and the API
    // server will refuse the name; the set waits).
    assert!(summary(&calls).contains(&"POST pods web-0".to_string()));
}
