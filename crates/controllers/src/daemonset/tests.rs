//! Reconcile tests of the DaemonSet controller: seed nodes, a DaemonSet, its pods and
//! revisions, run one sync, and assert on the exact writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetStatus, DaemonSetUpdateStrategy,
    RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Container, Node, NodeSpec, Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::template::{self, HASH_LABEL};
use super::{State, history, predicates, reconcile};
use crate::runtime::controller_ref;
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

fn state(client: kube::Client) -> Arc<State> {
    Arc::new(State::new(Arc::new(Context {
        informers: Informers::offline(client.clone()),
        client,
        clock: Arc::new(FixedClock(now())),
        options: Options::default(),
    })))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn ds(image: &str) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("agent".into()),
            namespace: Some("default".into()),
            uid: Some("ds-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector { match_labels: Some(labels(&[("app", "agent")])), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "agent")])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "agent".into(),
                        image: Some(image.into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(10),
            ..Default::default()
        }),
        status: Some(DaemonSetStatus::default()),
    }
}

fn node(name: &str, node_labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(node_labels)),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then(|| {
                taints
                    .iter()
                    .map(|(k, e)| Taint { key: k.to_string(), effect: e.to_string(), ..Default::default() })
                    .collect()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn hash_of(d: &DaemonSet) -> String {
    template::compute_hash(&d.spec.as_ref().unwrap().template, None)
}

/// The revision of `d`'s template, as the controller would have snapshotted it.
fn revision_of(d: &DaemonSet, number: i64) -> ControllerRevision {
    let hash = hash_of(d);
    let mut l = labels(&[("app", "agent")]);
    l.insert(HASH_LABEL.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("agent-{hash}")),
            namespace: Some("default".into()),
            uid: Some(format!("rev-uid-{number}")),
            labels: Some(l),
            owner_references: Some(vec![controller_ref(d)]),
            ..Default::default()
        },
        data: Some(RawExtension(history::patch_of(d).unwrap())),
        revision: number,
    }
}

/// A daemon pod of `d` scheduled on `node`, Running and (maybe) ready for an hour.
fn daemon_pod(d: &DaemonSet, node: &str, ready: bool) -> Pod {
    let t = template::pod_template(d, None, &hash_of(d));
    let mut pod = crate::history::pods::from_template(&t, "agent", Some(controller_ref(d)));
    let name = format!("agent-{node}-{}", &hash_of(d)[..3]);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = Some("default".into());
    pod.metadata.uid = Some(format!("uid-{name}"));
    pod.metadata.creation_timestamp = Some(Time(now() - jiff::SignedDuration::from_secs(7200)));
    let spec = pod.spec.as_mut().unwrap();
    spec.affinity = Some(predicates::replace_node_name_affinity(None, node));
    spec.node_name = Some(node.into());
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
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

/// Writes other than Events, as `METHOD resource[/sub] name`, sorted (creates and
/// deletes within a batch go out concurrently).
fn summary(calls: &FakeApi) -> Vec<String> {
    let mut out: Vec<String> = calls
        .writes()
        .iter()
        .filter(|c| !c.path.contains("/events"))
        .map(|c| {
            let path = c.path.as_str();
            let parts: Vec<&str> = path.split('/').collect();
            let i = parts.iter().position(|p| *p == "namespaces").unwrap();
            let resource = parts[i + 2];
            let name = parts.get(i + 3).map(|s| s.to_string()).unwrap_or_else(|| {
                let m = &c.body["metadata"];
                m["name"].as_str().or(m["generateName"].as_str()).unwrap_or("?").to_string()
            });
            let sub = parts.get(i + 4).map(|s| format!("/{s}")).unwrap_or_default();
            format!("{} {resource}{sub} {name}", c.method)
        })
        .collect();
    out.sort();
    out
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

fn created_pods(calls: &FakeApi) -> Vec<Value> {
    calls
        .writes()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.contains("/pods"))
        .map(|c| c.body)
        .collect()
}

fn target_node(pod: &Value) -> String {
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        ["matchFields"][0]["values"][0]
        .as_str()
        .unwrap()
        .to_string()
}

fn status_write(calls: &FakeApi) -> Value {
    calls
        .writes()
        .into_iter()
        .find(|c| c.path.contains("/daemonsets/agent/status"))
        .map(|c| c.body["status"].clone())
        .expect("a status write")
}

#[tokio::test]
async fn a_new_daemonset_gets_a_revision_and_one_pod_per_node() {
    let (client, calls) = fake_client();
    let st = state(client);
    st.ctx.informers.seed(vec![node("n1", &[], &[]), node("n2", &[], &[]), node("n3", &[], &[])]);
    let d = ds("agent:1");
    reconcile(Arc::new(d.clone()), st).await.unwrap();
    let hash = hash_of(&d);
    assert_eq!(
        summary(&calls),
        [
            format!("POST controllerrevisions agent-{hash}"),
            "POST pods agent-".into(),
            "POST pods agent-".into(),
            "POST pods agent-".into(),
            "PUT daemonsets/status agent".into(),
        ]
    );
    let pods = created_pods(&calls);
    let mut nodes: Vec<_> = pods.iter().map(target_node).collect();
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2", "n3"]);
    for p in &pods {
        assert_eq!(p["metadata"]["labels"][HASH_LABEL], hash.as_str());
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
        assert!(p["spec"].get("nodeName").is_none(), "the scheduler binds daemon pods");
        let terms = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"];
        assert_eq!(terms[0]["matchFields"][0]["key"], "metadata.name");
        assert_eq!(terms[0]["matchFields"][0]["operator"], "In");
        let tolerations: Vec<&str> =
            p["spec"]["tolerations"].as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert!(tolerations.contains(&"node.kubernetes.io/not-ready"));
        assert!(tolerations.contains(&"node.kubernetes.io/unschedulable"));
        assert!(!tolerations.contains(&"node.kubernetes.io/network-unavailable"));
    }
    let status = status_write(&calls);
    assert_eq!(status["desiredNumberScheduled"], 3);
    assert_eq!(status["currentNumberScheduled"], 0);
    assert_eq!(status["numberUnavailable"], 3);
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(
        events(&calls)
            .iter()
            .filter(|(r, m)| r == "SuccessfulCreate" && m.starts_with("Created pod: agent-"))
            .count(),
        3
    );
}

#[tokio::test]
async fn a_second_sync_waits_for_the_cache_to_show_the_pods_it_created() {
    let (client, calls) = fake_client();
    let st = state(client);
    st.ctx.informers.seed(vec![node("n1", &[], &[]), node("n2", &[], &[])]);
    let d = ds("agent:1");
    st.ctx.informers.seed(vec![revision_of(&d, 1)]);
    reconcile(Arc::new(d.clone()), st.clone()).await.unwrap();
    assert_eq!(created_pods(&calls).len(), 2);
    reconcile(Arc::new(d), st).await.unwrap();
    assert_eq!(created_pods(&calls).len(), 2, "no second burst before the cache catches up");
}

#[tokio::test]
async fn a_steady_daemonset_writes_nothing() {
    let (client, calls) = fake_client();
    let st = state(client);
    let mut d = ds("agent:1");
    d.status = Some(DaemonSetStatus {
        desired_number_scheduled: 2,
        current_number_scheduled: 2,
        number_ready: 2,
        updated_number_scheduled: Some(2),
        number_available: Some(2),
        observed_generation: Some(1),
        ..Default::default()
    });
    st.ctx.informers.seed(vec![node("n1", &[], &[]), node("n2", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&d, 1)]);
    st.ctx.informers.seed(vec![daemon_pod(&d, "n1", true), daemon_pod(&d, "n2", true)]);
    reconcile(Arc::new(d), st).await.unwrap();
    assert!(calls.writes().is_empty(), "{:?}", summary(&calls));
}

#[tokio::test]
async fn nodes_outside_the_node_selector_lose_their_pod() {
    let (client, calls) = fake_client();
    let st = state(client);
    let mut d = ds("agent:1");
    d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().node_selector = Some(labels(&[("disk", "ssd")]));
    st.ctx.informers.seed(vec![node("n1", &[("disk", "ssd")], &[]), node("n2", &[("disk", "hdd")], &[])]);
    st.ctx.informers.seed(vec![revision_of(&d, 1)]);
    st.ctx.informers.seed(vec![daemon_pod(&d, "n1", true), daemon_pod(&d, "n2", true)]);
    reconcile(Arc::new(d.clone()), st).await.unwrap();
    let doomed = daemon_pod(&d, "n2", true).metadata.name.unwrap();
    assert_eq!(summary(&calls), [format!("DELETE pods {doomed}"), "PUT daemonsets/status agent".into()]);
    assert_eq!(events(&calls), [("SuccessfulDelete".to_string(), format!("Deleted pod: {doomed}"))]);
    let status = status_write(&calls);
    assert_eq!(status["desiredNumberScheduled"], 1);
    assert_eq!(status["numberMisscheduled"], 1);
}

#[tokio::test]
async fn tainted_nodes_get_no_pod_unless_the_template_tolerates_the_taint() {
    let (client, calls) = fake_client();
    let st = state(client);
    let d = ds("agent:1");
    st.ctx.informers.seed(vec![node("n1", &[], &[("dedicated", "NoSchedule")]), node("n2", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&d, 1)]);
    reconcile(Arc::new(d.clone()), st).await.unwrap();
    let targets: Vec<_> = created_pods(&calls).iter().map(target_node).collect();
    assert_eq!(targets, ["n2"]);

    let (client, calls) = fake_client();
    let st = state(client);
    let mut tolerant = ds("agent:1");
    tolerant.spec.as_mut().unwrap().template.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
        key: Some("dedicated".into()),
        operator: Some("Exists".into()),
        ..Default::default()
    }]);
    st.ctx.informers.seed(vec![node("n1", &[], &[("dedicated", "NoSchedule")])]);
    reconcile(Arc::new(tolerant), st).await.unwrap();
    let targets: Vec<_> = created_pods(&calls).iter().map(target_node).collect();
    assert_eq!(targets, ["n1"]);
}

#[tokio::test]
async fn a_no_execute_taint_evicts_the_daemon_pod_but_no_schedule_does_not() {
    let (client, calls) = fake_client();
    let st = state(client);
    let d = ds("agent:1");
    st.ctx.informers.seed(vec![
        node("n1", &[], &[("dedicated", "NoSchedule")]),
        node("n2", &[], &[("dedicated", "NoExecute")]),
    ]);
    st.ctx.informers.seed(vec![revision_of(&d, 1)]);
    st.ctx.informers.seed(vec![daemon_pod(&d, "n1", true), daemon_pod(&d, "n2", true)]);
    reconcile(Arc::new(d.clone()), st).await.unwrap();
    let doomed = daemon_pod(&d, "n2", true).metadata.name.unwrap();
    assert_eq!(summary(&calls), [format!("DELETE pods {doomed}"), "PUT daemonsets/status agent".into()]);
}

#[tokio::test]
async fn an_unscheduled_pod_for_a_node_that_is_gone_is_deleted() {
    let (client, calls) = fake_client();
    let st = state(client);
    let d = ds("agent:1");
    let mut orphaned = daemon_pod(&d, "gone", false);
    orphaned.spec.as_mut().unwrap().node_name = None;
    let mut bound = daemon_pod(&d, "gone-too", true);
    bound.metadata.name = Some("agent-bound".into());
    st.ctx.informers.seed(vec![node("n1", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&d, 1)]);
    st.ctx.informers.seed(vec![daemon_pod(&d, "n1", true), orphaned.clone(), bound]);
    reconcile(Arc::new(d), st).await.unwrap();
    // The pod bound to a vanished node is the pod garbage collector's to remove.
    assert_eq!(
        summary(&calls),
        [format!("DELETE pods {}", orphaned.metadata.name.unwrap()), "PUT daemonsets/status agent".into()]
    );
}

#[tokio::test]
async fn a_failed_pod_is_deleted_once_then_backs_off() {
    let (client, calls) = fake_client();
    let st = state(client);
    let d = ds("agent:1");
    let mut failed = daemon_pod(&d, "n1", false);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    st.ctx.informers.seed(vec![node("n1", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&d, 1)]);
    st.ctx.informers.seed(vec![failed.clone()]);
    let action = reconcile(Arc::new(d.clone()), st.clone()).await.unwrap();
    let name = failed.metadata.name.clone().unwrap();
    assert_eq!(summary(&calls), [format!("DELETE pods {name}"), "PUT daemonsets/status agent".into()]);
    assert_eq!(
        events(&calls)[0],
        (
            "FailedDaemonPod".to_string(),
            format!("Found failed daemon pod default/{name} on node n1, will try to kill it")
        )
    );
    assert_eq!(action, kube::runtime::controller::Action::await_change());

    // The cache still shows the failed pod (the delete has not been observed), and the
    // node is backing off: nothing more is deleted and the sync comes back later.
    st.expectations.forget("default/agent");
    let before = calls.writes().len();
    let action = reconcile(Arc::new(d), st).await.unwrap();
    let after: Vec<_> = calls.writes()[before..].iter().filter(|c| c.method == "DELETE").cloned().collect();
    assert!(after.is_empty());
    assert_eq!(action, kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(1)));
}

#[tokio::test]
async fn surplus_pods_on_a_node_are_deleted_keeping_the_oldest() {
    let (client, calls) = fake_client();
    let st = state(client);
    let d = ds("agent:1");
    let old = daemon_pod(&d, "n1", true);
    let mut young = daemon_pod(&d, "n1", true);
    young.metadata.name = Some("agent-young".into());
    young.metadata.uid = Some("uid-young".into());
    young.metadata.creation_timestamp = Some(Time(now()));
    st.ctx.informers.seed(vec![node("n1", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&d, 1)]);
    st.ctx.informers.seed(vec![young, old]);
    reconcile(Arc::new(d), st).await.unwrap();
    assert_eq!(summary(&calls), ["DELETE pods agent-young", "PUT daemonsets/status agent"]);
}

#[tokio::test]
async fn rolling_update_deletes_at_most_max_unavailable_old_pods() {
    let (client, calls) = fake_client();
    let st = state(client);
    let old = ds("agent:1");
    let mut d = ds("agent:2");
    d.metadata.generation = Some(2);
    st.ctx.informers.seed(vec![node("n1", &[], &[]), node("n2", &[], &[]), node("n3", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&old, 1)]);
    st.ctx.informers.seed(vec![
        daemon_pod(&old, "n1", true),
        daemon_pod(&old, "n2", true),
        daemon_pod(&old, "n3", true),
    ]);
    reconcile(Arc::new(d.clone()), st).await.unwrap();
    assert_eq!(
        summary(&calls),
        [
            format!("DELETE pods {}", daemon_pod(&old, "n1", true).metadata.name.unwrap()),
            format!("POST controllerrevisions agent-{}", hash_of(&d)),
            "PUT daemonsets/status agent".into(),
        ]
    );
    let rev = calls.writes().into_iter().find(|c| c.path.contains("controllerrevisions")).unwrap().body;
    assert_eq!(rev["revision"], 2);
    let status = status_write(&calls);
    assert!(status.get("updatedNumberScheduled").is_none());
    assert_eq!(status["numberAvailable"], 3);
}

#[tokio::test]
async fn rolling_update_replaces_unavailable_old_pods_first_even_beyond_max_unavailable() {
    let (client, calls) = fake_client();
    let st = state(client);
    let old = ds("agent:1");
    let d = ds("agent:2");
    st.ctx.informers.seed(vec![node("n1", &[], &[]), node("n2", &[], &[]), node("n3", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&old, 1), revision_of(&d, 2)]);
    st.ctx.informers.seed(vec![
        daemon_pod(&old, "n1", true),
        daemon_pod(&old, "n2", false),
        daemon_pod(&old, "n3", false),
    ]);
    reconcile(Arc::new(d), st).await.unwrap();
    let mut want = vec![
        format!("DELETE pods {}", daemon_pod(&old, "n2", true).metadata.name.unwrap()),
        format!("DELETE pods {}", daemon_pod(&old, "n3", true).metadata.name.unwrap()),
        "PUT daemonsets/status agent".into(),
    ];
    want.sort();
    assert_eq!(summary(&calls), want);
}

#[tokio::test]
async fn rolling_update_waits_while_a_new_pod_is_unavailable() {
    let (client, calls) = fake_client();
    let st = state(client);
    let old = ds("agent:1");
    let d = ds("agent:2");
    st.ctx.informers.seed(vec![node("n1", &[], &[]), node("n2", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&old, 1), revision_of(&d, 2)]);
    st.ctx.informers.seed(vec![daemon_pod(&d, "n1", false), daemon_pod(&old, "n2", true)]);
    reconcile(Arc::new(d), st).await.unwrap();
    assert_eq!(summary(&calls), ["PUT daemonsets/status agent"]);
    assert_eq!(status_write(&calls)["updatedNumberScheduled"], 1);
}

#[tokio::test]
async fn surge_creates_a_new_pod_beside_an_available_old_one() {
    let (client, calls) = fake_client();
    let st = state(client);
    let old = ds("agent:1");
    let mut d = ds("agent:2");
    d.spec.as_mut().unwrap().update_strategy.as_mut().unwrap().rolling_update =
        Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::Int(0)),
            max_surge: Some(IntOrString::Int(1)),
        });
    st.ctx.informers.seed(vec![node("n1", &[], &[]), node("n2", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&old, 1), revision_of(&d, 2)]);
    st.ctx.informers.seed(vec![daemon_pod(&old, "n1", true), daemon_pod(&old, "n2", true)]);
    reconcile(Arc::new(d.clone()), st).await.unwrap();
    assert_eq!(summary(&calls), ["POST pods agent-", "PUT daemonsets/status agent"]);
    let pods = created_pods(&calls);
    assert_eq!(target_node(&pods[0]), "n1");
    assert_eq!(pods[0]["metadata"]["labels"][HASH_LABEL], hash_of(&d).as_str());
}

#[tokio::test]
async fn surge_deletes_the_old_pod_once_the_new_one_is_available() {
    let (client, calls) = fake_client();
    let st = state(client);
    let old = ds("agent:1");
    let mut d = ds("agent:2");
    d.spec.as_mut().unwrap().update_strategy.as_mut().unwrap().rolling_update =
        Some(RollingUpdateDaemonSet {
            max_unavailable: Some(IntOrString::Int(0)),
            max_surge: Some(IntOrString::Int(1)),
        });
    st.ctx.informers.seed(vec![node("n1", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&old, 1), revision_of(&d, 2)]);
    let mut new = daemon_pod(&d, "n1", true);
    new.metadata.creation_timestamp = Some(Time(now()));
    st.ctx.informers.seed(vec![daemon_pod(&old, "n1", true), new]);
    reconcile(Arc::new(d), st).await.unwrap();
    assert_eq!(
        summary(&calls),
        [
            format!("DELETE pods {}", daemon_pod(&old, "n1", true).metadata.name.unwrap()),
            "PUT daemonsets/status agent".into()
        ]
    );
}

#[tokio::test]
async fn on_delete_leaves_old_pods_alone() {
    let (client, calls) = fake_client();
    let st = state(client);
    let old = ds("agent:1");
    let mut d = ds("agent:2");
    d.spec.as_mut().unwrap().update_strategy =
        Some(DaemonSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None });
    st.ctx.informers.seed(vec![node("n1", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&old, 1), revision_of(&d, 2)]);
    st.ctx.informers.seed(vec![daemon_pod(&old, "n1", true)]);
    reconcile(Arc::new(d), st).await.unwrap();
    assert_eq!(summary(&calls), ["PUT daemonsets/status agent"]);
}

#[tokio::test]
async fn status_counts_desired_current_misscheduled_ready_and_available_nodes() {
    let (client, calls) = fake_client();
    let st = state(client);
    let mut d = ds("agent:1");
    d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().node_selector =
        Some(labels(&[("role", "worker")]));
    // Nothing to create or delete this round: the unready pod is updated, the
    // misscheduled node's pod is terminating already.
    let w = [("role", "worker")];
    st.ctx.informers.seed(vec![node("n1", &w, &[]), node("n2", &w, &[]), node("n3", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&d, 1)]);
    let mut leaving = daemon_pod(&d, "n3", true);
    leaving.metadata.deletion_timestamp = Some(Time(now()));
    st.ctx.informers.seed(vec![daemon_pod(&d, "n1", true), daemon_pod(&d, "n2", false), leaving]);
    reconcile(Arc::new(d), st).await.unwrap();
    assert_eq!(summary(&calls), ["PUT daemonsets/status agent"]);
    let status = status_write(&calls);
    assert_eq!(status["desiredNumberScheduled"], 2);
    assert_eq!(status["currentNumberScheduled"], 2);
    assert_eq!(status["numberMisscheduled"], 1);
    assert_eq!(status["numberReady"], 1);
    assert_eq!(status["numberAvailable"], 1);
    assert_eq!(status["numberUnavailable"], 1);
    assert_eq!(status["updatedNumberScheduled"], 2);
}

#[tokio::test]
async fn selecting_everything_is_refused_with_a_warning() {
    let (client, calls) = fake_client();
    let st = state(client);
    let mut d = ds("agent:1");
    d.spec.as_mut().unwrap().selector = LabelSelector::default();
    st.ctx.informers.seed(vec![node("n1", &[], &[])]);
    reconcile(Arc::new(d), st).await.unwrap();
    assert_eq!(
        events(&calls),
        [(
            "SelectingAll".to_string(),
            "This daemon set is selecting all pods. A non-empty selector is required.".to_string()
        )]
    );
    assert!(summary(&calls).is_empty());
}

#[tokio::test]
async fn old_revisions_beyond_the_limit_go_unless_a_pod_still_uses_them() {
    let (client, calls) = fake_client();
    let st = state(client);
    let mut d = ds("agent:9");
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let olds: Vec<_> = (1..4).map(|i| revision_of(&ds(&format!("agent:{i}")), i)).collect();
    let mut all = olds.clone();
    all.push(revision_of(&d, 4));
    st.ctx.informers.seed(vec![node("n1", &[], &[])]);
    st.ctx.informers.seed(all);
    // A pod still runs revision 1, so revision 1 is kept and 2 and 3 go instead.
    st.ctx.informers.seed(vec![daemon_pod(&ds("agent:1"), "n1", true)]);
    reconcile(Arc::new(d), st).await.unwrap();
    let deletes: Vec<_> = summary(&calls).into_iter().filter(|w| w.contains("controllerrevisions")).collect();
    let mut want: Vec<_> = olds[1..]
        .iter()
        .map(|r| format!("DELETE controllerrevisions {}", r.metadata.name.clone().unwrap()))
        .collect();
    want.sort();
    assert_eq!(deletes, want);
}

#[tokio::test]
async fn an_orphaned_matching_pod_is_adopted_after_rereading_the_daemonset() {
    let d = ds("agent:1");
    let (client, api) = fake_client();
    api.object("/apis/apps/v1/namespaces/default/daemonsets/agent", serde_json::to_value(&d).unwrap());
    let st = state(client);
    let mut orphan = daemon_pod(&d, "n1", true);
    orphan.metadata.owner_references = None;
    st.ctx.informers.seed(vec![node("n1", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&d, 1)]);
    st.ctx.informers.seed(vec![orphan.clone()]);
    reconcile(Arc::new(d), st).await.unwrap();
    let calls = api.calls();
    let patch = calls.iter().find(|c| c.method == "PATCH").expect("an adoption patch");
    assert_eq!(patch.path, format!("/api/v1/namespaces/default/pods/{}", orphan.metadata.name.unwrap()));
    assert_eq!(patch.body["metadata"]["ownerReferences"][0]["uid"], "ds-uid");
    assert_eq!(patch.body["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(patch.body["metadata"]["uid"], orphan.metadata.uid.unwrap());
    // Adopted, the pod counts: no second pod is created on its node.
    assert!(calls.iter().all(|c| !(c.method == "POST" && c.path.ends_with("/pods"))));
}

#[tokio::test]
async fn an_orphan_is_left_alone_when_the_daemonset_cannot_be_reread() {
    let (client, calls) = fake_client();
    let st = state(client);
    let d = ds("agent:1");
    let mut orphan = daemon_pod(&d, "n1", true);
    orphan.metadata.owner_references = None;
    st.ctx.informers.seed(vec![node("n1", &[], &[])]);
    st.ctx.informers.seed(vec![revision_of(&d, 1)]);
    st.ctx.informers.seed(vec![orphan]);
    assert!(reconcile(Arc::new(d), st).await.is_err());
    assert!(calls.writes().iter().all(|c| c.method != "PATCH"));
    assert!(calls.calls().iter().any(|c| c.method == "GET" && c.path.contains("/daemonsets/agent")));
}
