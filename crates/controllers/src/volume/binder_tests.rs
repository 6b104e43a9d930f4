//! Binder tests: a seeded cache, one sync, the exact writes.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimStatus, PersistentVolumeClaimVolumeSource,
    PersistentVolumeSpec, PersistentVolumeStatus, Pod, PodSpec, Volume, VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Wire;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::json;

use super::*;
use crate::{Clock, Informers, Options};
use fakeapi::{Call, FakeApi, fake_client};

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> jiff::Timestamp {
        "2025-03-01T12:00:00Z".parse().unwrap()
    }
}

fn state() -> (Arc<State>, FakeApi) {
    let (client, calls) = fake_client();
    let ctx = Arc::new(Context {
        informers: Informers::offline(client.clone()),
        client,
        clock: Arc::new(FixedClock),
        options: Options::default(),
    });
    (Arc::new(State::new(ctx)), calls)
}

fn pv(name: &str, size: &str, class: &str, phase: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            resource_version: Some("5".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some([("storage".to_string(), Wire(size.into()))].into()),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: Some(class.into()),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            host_path: Some(HostPathVolumeSource { path: "/data/pv".into(), type_: None }),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus { phase: Some(phase.into()), ..Default::default() }),
    }
}

fn pvc(name: &str, size: &str, class: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("9".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: class.map(str::to_string),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Wire(size.into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(PersistentVolumeClaimStatus { phase: Some("Pending".into()), ..Default::default() }),
    }
}

fn class(name: &str, mode: &str, default: bool) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: default.then(|| [(ANN_DEFAULT_CLASS.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        provisioner: "rancher.io/local-path".into(),
        volume_binding_mode: Some(mode.into()),
        reclaim_policy: Some("Delete".into()),
        ..Default::default()
    }
}

fn bound_ref(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: Some(name.into()),
        namespace: Some("default".into()),
        uid: Some(format!("uid-{name}")),
        ..Default::default()
    }
}

fn non_events(calls: &FakeApi) -> Vec<Call> {
    calls.writes().into_iter().filter(|c| !c.path.contains("/events")).collect()
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
async fn a_claim_binds_to_the_smallest_matching_available_volume() {
    let (st, calls) = state();
    st.ctx
        .informers
        .seed(vec![pv("big", "10Gi", "manual", "Available"), pv("small", "1Gi", "manual", "Available")]);
    sync_claim(Arc::new(pvc("data", "500Mi", Some("manual"))), st).await.unwrap();
    let w = non_events(&calls);
    let steps: Vec<(&str, &str)> = w.iter().map(|c| (c.method.as_str(), c.path.as_str())).collect();
    assert_eq!(
        steps,
        [
            ("PUT", "/api/v1/persistentvolumes/small"),
            ("PUT", "/api/v1/persistentvolumes/small/status"),
            ("PUT", "/api/v1/namespaces/default/persistentvolumeclaims/data"),
            ("PUT", "/api/v1/namespaces/default/persistentvolumeclaims/data/status"),
        ]
    );
    assert_eq!(
        w[0].body["spec"]["claimRef"],
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data", "namespace": "default", "uid": "uid-data", "resourceVersion": "9"})
    );
    assert_eq!(w[0].body["metadata"]["annotations"], json!({"pv.kubernetes.io/bound-by-controller": "yes"}));
    assert_eq!(w[1].body["status"]["phase"], "Bound");
    assert_eq!(w[1].body["status"]["lastPhaseTransitionTime"], "2025-03-01T12:00:00Z");
    assert_eq!(w[2].body["spec"]["volumeName"], "small");
    assert_eq!(
        w[2].body["metadata"]["annotations"],
        json!({"pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"})
    );
    assert_eq!(w[3].body["status"]["phase"], "Bound");
    assert_eq!(w[3].body["status"]["capacity"], json!({"storage": "1Gi"}));
    assert_eq!(w[3].body["status"]["accessModes"], json!(["ReadWriteOnce"]));
}

#[tokio::test]
async fn a_claim_pre_bound_by_the_user_keeps_its_annotations_minimal() {
    let (st, calls) = state();
    st.ctx.informers.seed(vec![pv("mine", "1Gi", "", "Available")]);
    let mut claim = pvc("data", "1Gi", Some(""));
    claim.spec.as_mut().unwrap().volume_name = Some("mine".into());
    sync_claim(Arc::new(claim), st).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 4);
    assert_eq!(w[0].body["metadata"]["annotations"], json!({"pv.kubernetes.io/bound-by-controller": "yes"}));
    // The user chose the volume: only bind-completed on the claim.
    assert_eq!(w[2].body["metadata"]["annotations"], json!({"pv.kubernetes.io/bind-completed": "yes"}));
}

#[tokio::test]
async fn a_pre_bound_claim_whose_volume_is_too_small_waits_with_an_event() {
    let (st, calls) = state();
    st.ctx.informers.seed(vec![pv("mine", "1Gi", "", "Available")]);
    let mut claim = pvc("data", "5Gi", Some(""));
    claim.spec.as_mut().unwrap().volume_name = Some("mine".into());
    sync_claim(Arc::new(claim), st).await.unwrap();
    assert!(non_events(&calls).is_empty());
    assert_eq!(
        events(&calls),
        [(
            "VolumeMismatch".to_string(),
            "Cannot bind to requested volume \"mine\": requested PV is too small".to_string()
        )]
    );
}

#[tokio::test]
async fn a_claim_without_class_or_volumes_reports_failed_binding() {
    let (st, calls) = state();
    sync_claim(Arc::new(pvc("data", "1Gi", Some(""))), st.clone()).await.unwrap();
    assert!(non_events(&calls).is_empty());
    let want = [(
        "FailedBinding".to_string(),
        "no persistent volumes available for this claim and no storage class is set".to_string(),
    )];
    assert_eq!(events(&calls), want);
    // The periodic resync does not repeat the event.
    sync_claim(Arc::new(pvc("data", "1Gi", Some(""))), st).await.unwrap();
    assert_eq!(events(&calls).len(), 1);
}

#[tokio::test]
async fn a_claim_that_names_no_class_gets_the_default_class() {
    let (st, calls) = state();
    st.ctx
        .informers
        .seed(vec![class("local-path", "WaitForFirstConsumer", true), class("other", "Immediate", false)]);
    sync_claim(Arc::new(pvc("data", "1Gi", None)), st).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].path, "/api/v1/namespaces/default/persistentvolumeclaims/data");
    assert_eq!(w[0].body["spec"]["storageClassName"], "local-path");
}

#[tokio::test]
async fn a_delayed_binding_claim_waits_for_its_first_consumer() {
    let (st, calls) = state();
    st.ctx.informers.seed(vec![class("local-path", "WaitForFirstConsumer", true)]);
    st.ctx.informers.seed(vec![pv("fits", "5Gi", "local-path", "Available")]);
    sync_claim(Arc::new(pvc("data", "1Gi", Some("local-path"))), st.clone()).await.unwrap();
    assert!(non_events(&calls).is_empty());
    assert_eq!(
        events(&calls),
        [(
            "WaitForFirstConsumer".to_string(),
            "waiting for first consumer to be created before binding".to_string()
        )]
    );

    // A pod that uses it, not yet scheduled.
    let (st, calls) = state();
    st.ctx.informers.seed(vec![class("local-path", "WaitForFirstConsumer", true)]);
    st.ctx.informers.seed(vec![consumer("web-0", None)]);
    sync_claim(Arc::new(pvc("data", "1Gi", Some("local-path"))), st).await.unwrap();
    assert_eq!(
        events(&calls),
        [("WaitForPodScheduled".to_string(), "waiting for pod web-0 to be scheduled".to_string())]
    );
}

fn consumer(name: &str, node: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: node.map(str::to_string),
            volumes: Some(vec![Volume {
                name: "data".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: "data".into(),
                    read_only: None,
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_scheduled_consumer_selects_the_node_for_provisioning() {
    let (st, calls) = state();
    st.ctx.informers.seed(vec![class("local-path", "WaitForFirstConsumer", true)]);
    st.ctx.informers.seed(vec![consumer("web-0", Some("node-1"))]);
    sync_claim(Arc::new(pvc("data", "1Gi", Some("local-path"))), st).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].body["metadata"]["annotations"], json!({"volume.kubernetes.io/selected-node": "node-1"}));
}

#[tokio::test]
async fn a_scheduled_consumer_binds_a_static_volume_its_node_can_reach() {
    let (st, calls) = state();
    st.ctx.informers.seed(vec![class("local-path", "WaitForFirstConsumer", true)]);
    st.ctx.informers.seed(vec![consumer("web-0", Some("node-1"))]);
    st.ctx.informers.seed(vec![Node {
        metadata: ObjectMeta { name: Some("node-1".into()), ..Default::default() },
        ..Default::default()
    }]);
    st.ctx.informers.seed(vec![pv("fits", "5Gi", "local-path", "Available")]);
    sync_claim(Arc::new(pvc("data", "1Gi", Some("local-path"))), st).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 4);
    assert_eq!(w[2].body["spec"]["volumeName"], "fits");
}

#[tokio::test]
async fn a_claim_with_a_selected_node_is_handed_to_its_provisioner() {
    let (st, calls) = state();
    st.ctx.informers.seed(vec![class("local-path", "WaitForFirstConsumer", true)]);
    let mut claim = pvc("data", "1Gi", Some("local-path"));
    claim.metadata.annotations = Some([(ANN_SELECTED_NODE.to_string(), "node-1".to_string())].into());
    sync_claim(Arc::new(claim), st).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 1);
    assert_eq!(
        w[0].body["metadata"]["annotations"],
        json!({
            "volume.kubernetes.io/selected-node": "node-1",
            "volume.beta.kubernetes.io/storage-provisioner": "rancher.io/local-path",
            "volume.kubernetes.io/storage-provisioner": "rancher.io/local-path",
        })
    );
    assert_eq!(
        events(&calls),
        [(
            "ExternalProvisioning".to_string(),
            "Waiting for a volume to be created either by the external provisioner 'rancher.io/local-path' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.".to_string()
        )]
    );
}

#[tokio::test]
async fn a_bound_claim_whose_volume_is_gone_is_lost() {
    let (st, calls) = state();
    let mut claim = pvc("data", "1Gi", Some(""));
    claim.metadata.annotations = Some([(ANN_BIND_COMPLETED.to_string(), "yes".to_string())].into());
    claim.spec.as_mut().unwrap().volume_name = Some("vanished".into());
    claim.status.as_mut().unwrap().phase = Some("Bound".into());
    sync_claim(Arc::new(claim), st).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].body["status"]["phase"], "Lost");
    assert_eq!(
        events(&calls),
        [(
            "ClaimLost".to_string(),
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!".to_string()
        )]
    );
}

#[tokio::test]
async fn a_new_volume_becomes_available() {
    let (st, calls) = state();
    sync_volume(Arc::new(pv("fresh", "1Gi", "", "Pending")), st).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].path.as_str(), "/api/v1/persistentvolumes/fresh/status");
    assert_eq!(w[0].body["status"]["phase"], "Available");
}

#[tokio::test]
async fn a_volume_whose_claim_is_deleted_is_released_and_retained() {
    let (st, calls) = state();
    let mut v = pv("kept", "1Gi", "", "Bound");
    v.spec.as_mut().unwrap().claim_ref = Some(bound_ref("data"));
    sync_volume(Arc::new(v), st).await.unwrap();
    let w = non_events(&calls);
    // The fake API answers the claim GET with 404: the claim is gone.
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].body["status"]["phase"], "Released");
    assert!(
        calls.calls().iter().any(|c| c.method == "GET"
            && c.path.starts_with("/api/v1/namespaces/default/persistentvolumeclaims/data"))
    );
}

#[tokio::test]
async fn a_released_delete_volume_under_tmp_is_deleted_and_others_fail() {
    let (st, calls) = state();
    let mut v = pv("scratch", "1Gi", "", "Released");
    v.spec.as_mut().unwrap().claim_ref = Some(bound_ref("data"));
    v.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Delete".into());
    v.spec.as_mut().unwrap().host_path =
        Some(HostPathVolumeSource { path: "/tmp/scratch".into(), type_: None });
    sync_volume(Arc::new(v.clone()), st).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].method.as_str(), w[0].path.as_str()), ("DELETE", "/api/v1/persistentvolumes/scratch"));

    let (st, calls) = state();
    v.spec.as_mut().unwrap().host_path =
        Some(HostPathVolumeSource { path: "/data/keep".into(), type_: None });
    sync_volume(Arc::new(v), st).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].body["status"]["phase"], "Failed");
    assert_eq!(
        w[0].body["status"]["message"],
        "host_path deleter only supports /tmp/.+ but received provided /data/keep"
    );
    assert_eq!(events(&calls)[0].0, "VolumeFailedDelete");
}

#[tokio::test]
async fn a_provisioned_volume_is_left_to_its_provisioner_to_delete() {
    let (st, calls) = state();
    let mut v = pv("pvc-1", "1Gi", "local-path", "Released");
    v.metadata.annotations =
        Some([(ANN_PROVISIONED_BY.to_string(), "rancher.io/local-path".to_string())].into());
    v.spec.as_mut().unwrap().claim_ref = Some(bound_ref("data"));
    v.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Delete".into());
    sync_volume(Arc::new(v), st).await.unwrap();
    assert!(calls.writes().is_empty());
}

#[tokio::test]
async fn a_volume_bound_by_the_controller_to_a_claim_bound_elsewhere_is_freed() {
    let (st, calls) = state();
    let mut claim = pvc("data", "1Gi", Some(""));
    claim.spec.as_mut().unwrap().volume_name = Some("other".into());
    st.ctx.informers.seed(vec![claim]);
    let mut v = pv("spare", "1Gi", "", "Bound");
    v.metadata.annotations = Some([(ANN_BOUND_BY_CONTROLLER.to_string(), "yes".to_string())].into());
    v.spec.as_mut().unwrap().claim_ref = Some(bound_ref("data"));
    sync_volume(Arc::new(v), st).await.unwrap();
    let w = non_events(&calls);
    assert_eq!(w.len(), 2);
    assert!(w[0].body["spec"].get("claimRef").is_none());
    assert_eq!(w[0].body["metadata"]["annotations"], json!({}));
    assert_eq!(w[1].body["status"]["phase"], "Available");
}

#[test]
fn the_newest_default_class_wins() {
    let mut old = class("a", "Immediate", true);
    old.metadata.creation_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
    let mut new = class("b", "Immediate", true);
    new.metadata.creation_timestamp = Some(Time("2025-01-01T00:00:00Z".parse().unwrap()));
    let plain = class("c", "Immediate", false);
    let classes = vec![Arc::new(old), Arc::new(new), Arc::new(plain)];
    assert_eq!(default_class(&classes).map(|c| c.name_any()).as_deref(), Some("b"));
}
