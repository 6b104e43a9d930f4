//! The `rancher.io/local-path` provisioner, as k3s ships it: a directory on the node a
//! claim's first pod runs on. On start it creates the default StorageClass `local-path`
//! (WaitForFirstConsumer, reclaim policy Delete) when missing. For each claim the binder
//! has handed to it (`volume.kubernetes.io/storage-provisioner`) and that has a selected
//! node, it creates the volume `pvc-<claim uid>` at
//! `<storage dir>/pvc-<uid>_<namespace>_<claim>` with node affinity to that node, pre-bound
//! to the claim (the binder completes the binding). Released volumes it made with policy
//! Delete are deleted.
//!
//! Only the API objects are made here: the directory is created (and removed) on the node
//! by the node agent, where the upstream provisioner runs a helper pod.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, LocalVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;

use super::*;
use crate::disruption::cache_synced;
use crate::runtime::{EventType, Recorder};
use crate::{Context, ERROR_REQUEUE, Error, Result};

/// The provisioner's name, in StorageClasses and annotations.
pub const NAME: &str = "rancher.io/local-path";
/// The default StorageClass created at start.
pub const DEFAULT_CLASS: &str = "local-path";
/// Where volumes go when the options name no directory.
pub const DEFAULT_DIR: &str = "/var/lib/krust/storage";
/// Node label the volume's node affinity uses.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// A failed provisioning is tried again this often.
const RETRY: Duration = Duration::from_secs(30);

/// The provisioner's shared state.
pub struct State {
    pub ctx: Arc<Context>,
    events: EventMemo,
    dir: PathBuf,
}

impl State {
    pub fn new(ctx: Arc<Context>) -> Self {
        let component = if ctx.options.identity.is_empty() {
            NAME.to_string()
        } else {
            format!("{NAME}_{}", ctx.options.identity)
        };
        let events = EventMemo::new(Recorder::new(ctx.client.clone(), &component));
        let dir = ctx.options.local_path_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
        State { ctx, events, dir }
    }
}

/// The StorageClass `local-path` as k3s installs it.
pub fn default_storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(DEFAULT_CLASS.into()),
            annotations: Some(
                [
                    (ANN_DEFAULT_CLASS.to_string(), "true".to_string()),
                    ("defaultVolumeType".to_string(), "local".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        provisioner: NAME.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    }
}

/// Creates the default StorageClass unless a class of that name exists.
pub async fn ensure_default_class(client: &kube::Client) -> Result<()> {
    let api: Api<StorageClass> = Api::all(client.clone());
    if api.get_opt(DEFAULT_CLASS).await?.is_some() {
        return Ok(());
    }
    match api.create(&PostParams::default(), &default_storage_class()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn annotation<'a, K: ResourceExt>(obj: &'a K, key: &str) -> Option<&'a str> {
    obj.annotations().get(key).map(String::as_str)
}

/// The volume name for a claim.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or(""))
}

/// Whether this provisioner should make a volume for the claim now (`shouldProvision`):
/// unbound, handed to this provisioner by the binder, of a class of this provisioner, and
/// for delayed binding with a node chosen.
pub fn should_provision(claim: &PersistentVolumeClaim, class: Option<&StorageClass>) -> bool {
    if claim.metadata.deletion_timestamp.is_some() || claim.metadata.uid.is_none() {
        return false;
    }
    if claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_some_and(|v| !v.is_empty()) {
        return false;
    }
    let asked = annotation(claim, ANN_STORAGE_PROVISIONER)
        .or_else(|| annotation(claim, ANN_BETA_STORAGE_PROVISIONER));
    if asked != Some(NAME) {
        return false;
    }
    let Some(class) = class.filter(|c| c.provisioner == NAME) else { return false };
    if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") {
        return annotation(claim, ANN_SELECTED_NODE).is_some_and(|n| !n.is_empty());
    }
    true
}

/// The volume for a claim on a node, or why it cannot be made.
pub fn build_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: Option<&Node>,
    dir: &std::path::Path,
) -> Result<PersistentVolume, String> {
    let spec = claim.spec.clone().unwrap_or_default();
    if spec.selector.is_some() {
        return Err("claim.Spec.Selector is not supported".into());
    }
    let modes = spec.access_modes.clone().unwrap_or_default();
    if modes.iter().any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod") {
        return Err("NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes".into());
    }
    let Some(node) = node else { return Err("configuration error, no node was specified".into()) };
    let name = volume_name(claim);
    let ns = claim.namespace().unwrap_or_default();
    let path = dir.join(format!("{name}_{ns}_{}", claim.name_any())).to_string_lossy().into_owned();
    let volume_type = annotation(claim, "volumeType")
        .or_else(|| annotation(class, "defaultVolumeType"))
        .unwrap_or("hostPath")
        .to_string();
    let (host_path, local) = match volume_type.to_lowercase().as_str() {
        "hostpath" => (Some(HostPathVolumeSource { path, type_: Some("DirectoryOrCreate".into()) }), None),
        "local" => (None, Some(LocalVolumeSource { path, fs_type: None })),
        _ => return Err(format!("there is no \"{volume_type}\" volume type")),
    };
    let hostname = node.labels().get(HOSTNAME_LABEL).cloned().unwrap_or_else(|| node.name_any());
    let storage =
        spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned();
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(
                [
                    (ANN_PROVISIONED_BY.to_string(), NAME.to_string()),
                    ("local.path.provisioner/selected-node".to_string(), node.name_any()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(modes),
            capacity: storage.map(|q| [("storage".to_string(), q)].into()),
            claim_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                name: claim.metadata.name.clone(),
                namespace: claim.metadata.namespace.clone(),
                uid: claim.metadata.uid.clone(),
                resource_version: claim.metadata.resource_version.clone(),
                ..Default::default()
            }),
            host_path,
            local,
            mount_options: class.mount_options.clone(),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![hostname]),
                        }]),
                        ..Default::default()
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(super::matching::claim_class(claim)),
            volume_mode: Some("Filesystem".into()),
            ..Default::default()
        }),
        status: None,
    })
}

/// Provisions a volume for one claim when it is this provisioner's to make.
pub async fn reconcile_claim(claim: Arc<PersistentVolumeClaim>, st: Arc<State>) -> Result<Action> {
    let class_name = super::matching::claim_class(&claim);
    let class = if class_name.is_empty() {
        None
    } else {
        st.ctx.informers.get::<StorageClass>().store.get(&ObjectRef::new(&class_name))
    };
    if !should_provision(&claim, class.as_deref()) {
        return Ok(Action::await_change());
    }
    let Some(class) = class else { return Ok(Action::await_change()) };
    let name = volume_name(&claim);
    if st.ctx.informers.get::<PersistentVolume>().store.get(&ObjectRef::new(&name)).is_some() {
        return Ok(Action::await_change());
    }
    if claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block") {
        let msg = format!("{NAME} does not support block volume provisioning");
        st.events.publish(claim.as_ref(), EventType::Warning, "ProvisioningFailed", &msg).await;
        return Ok(Action::await_change());
    }
    let node_name =
        annotation(claim.as_ref(), ANN_SELECTED_NODE).filter(|n| !n.is_empty()).map(str::to_string);
    let node = match &node_name {
        None => None,
        Some(n) => match st.ctx.informers.get::<Node>().store.get(&ObjectRef::new(n)) {
            Some(node) => Some(node),
            None => {
                // The chosen node is gone: hand the claim back to scheduling.
                let mut updated = (*claim).clone();
                updated.annotations_mut().remove(ANN_SELECTED_NODE);
                let api: Api<PersistentVolumeClaim> =
                    Api::namespaced(st.ctx.client.clone(), &claim.namespace().unwrap_or_default());
                api.replace(&claim.name_any(), &PostParams::default(), &updated).await?;
                return Ok(Action::await_change());
            }
        },
    };
    let key = crate::runtime::key_of(claim.as_ref());
    st.events
        .publish(
            claim.as_ref(),
            EventType::Normal,
            "Provisioning",
            &format!("External provisioner is provisioning volume for claim {key:?}"),
        )
        .await;
    let volume = match build_volume(&claim, &class, node.as_deref(), &st.dir) {
        Ok(v) => v,
        Err(e) => {
            let msg = format!("failed to provision volume with StorageClass {class_name:?}: {e}");
            st.events.publish(claim.as_ref(), EventType::Warning, "ProvisioningFailed", &msg).await;
            return Ok(Action::requeue(RETRY));
        }
    };
    let api: Api<PersistentVolume> = Api::all(st.ctx.client.clone());
    let created = match api.create(&PostParams::default(), &volume).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    };
    match created {
        Ok(()) => {
            st.events
                .publish(
                    claim.as_ref(),
                    EventType::Normal,
                    "ProvisioningSucceeded",
                    &format!("Successfully provisioned volume {name}"),
                )
                .await;
            Ok(Action::await_change())
        }
        Err(e) => {
            let msg = format!("failed to provision volume with StorageClass {class_name:?}: {e}");
            st.events.publish(claim.as_ref(), EventType::Warning, "ProvisioningFailed", &msg).await;
            Err(e.into())
        }
    }
}

/// Whether a volume is this provisioner's to delete now (`shouldDelete`): Released, policy
/// Delete, made by this provisioner, not already being deleted.
pub fn should_delete(volume: &PersistentVolume) -> bool {
    volume.metadata.deletion_timestamp.is_none()
        && volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released")
        && volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete")
        && annotation(volume, ANN_PROVISIONED_BY) == Some(NAME)
}

/// Deletes a released volume this provisioner made.
pub async fn reconcile_volume(volume: Arc<PersistentVolume>, st: Arc<State>) -> Result<Action> {
    if !should_delete(&volume) {
        return Ok(Action::await_change());
    }
    let api: Api<PersistentVolume> = Api::all(st.ctx.client.clone());
    match api.delete(&volume.name_any(), &DeleteParams::default()).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => {
            st.events
                .publish(volume.as_ref(), EventType::Warning, "VolumeFailedDelete", &e.to_string())
                .await;
            Err(e.into())
        }
    }
}

fn error_policy<K>(_: Arc<K>, err: &Error, _: Arc<State>) -> Action {
    tracing::debug!(error = %err, "local-path provisioner: will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// Creates the default class, then provisions and deletes volumes.
pub async fn run(ctx: Arc<Context>) {
    let mut wait = Duration::from_millis(200);
    while let Err(e) = ensure_default_class(&ctx.client).await {
        tracing::warn!(error = %e, "creating the default StorageClass failed; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
    let st = Arc::new(State::new(ctx.clone()));
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let volumes = ctx.informers.get::<PersistentVolume>();
    let classes = ctx.informers.get::<StorageClass>();
    let synced = [
        cache_synced(&claims.store).await,
        cache_synced(&volumes.store).await,
        cache_synced(&classes.store).await,
        cache_synced(&ctx.informers.get::<Node>().store).await,
    ];
    if synced.contains(&false) {
        return;
    }
    let provision = Controller::for_shared_stream(claims.changes(), claims.store.clone())
        .run(reconcile_claim, error_policy, st.clone())
        .for_each(|_| async {});
    let delete = Controller::for_shared_stream(volumes.changes(), volumes.store.clone())
        .run(reconcile_volume, error_policy, st)
        .for_each(|_| async {});
    futures::future::join(provision, delete).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Informers, Options, SystemClock};
    use fakeapi::{FakeApi, fake_client};
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaimSpec, PersistentVolumeStatus, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Wire;
    use serde_json::json;

    fn state() -> (Arc<State>, FakeApi) {
        let (client, calls) = fake_client();
        let ctx = Arc::new(Context {
            informers: Informers::offline(client.clone()),
            client,
            clock: Arc::new(SystemClock),
            options: Options {
                local_path_dir: Some(PathBuf::from("/srv/krust/storage")),
                ..Default::default()
            },
        });
        (Arc::new(State::new(ctx)), calls)
    }

    fn claim(modes: &[&str]) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".into()),
                namespace: Some("shop".into()),
                uid: Some("1234".into()),
                resource_version: Some("8".into()),
                annotations: Some(
                    [
                        (ANN_STORAGE_PROVISIONER.to_string(), NAME.to_string()),
                        (ANN_SELECTED_NODE.to_string(), "node-1".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
                storage_class_name: Some(DEFAULT_CLASS.into()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_string(), Wire("2Gi".into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn node() -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("node-1".into()),
                labels: Some([(HOSTNAME_LABEL.to_string(), "host-1".to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn events(calls: &FakeApi) -> Vec<(String, String)> {
        calls
            .writes()
            .into_iter()
            .filter(|c| c.path.contains("/events"))
            .map(|c| {
                (
                    c.body["reason"].as_str().unwrap_or("").into(),
                    c.body["message"].as_str().unwrap_or("").into(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_claim_handed_to_local_path_gets_a_local_volume_on_its_node() {
        let (st, calls) = state();
        st.ctx.informers.seed(vec![default_storage_class()]);
        st.ctx.informers.seed(vec![node()]);
        reconcile_claim(Arc::new(claim(&["ReadWriteOnce"])), st).await.unwrap();
        let creates: Vec<_> =
            calls.writes().into_iter().filter(|c| c.path.starts_with("/api/v1/persistentvolumes")).collect();
        assert_eq!(creates.len(), 1);
        assert_eq!(creates[0].method, "POST");
        assert_eq!(
            creates[0].body,
            json!({
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {
                    "name": "pvc-1234",
                    "annotations": {
                        "local.path.provisioner/selected-node": "node-1",
                        "pv.kubernetes.io/provisioned-by": "rancher.io/local-path",
                    },
                },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "capacity": {"storage": "2Gi"},
                    "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": "data", "namespace": "shop", "uid": "1234", "resourceVersion": "8"},
                    "local": {"path": "/srv/krust/storage/pvc-1234_shop_data"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["host-1"]}
                    ]}]}},
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": "local-path",
                    "volumeMode": "Filesystem",
                },
            })
        );
        assert_eq!(
            events(&calls),
            [
                (
                    "Provisioning".to_string(),
                    "External provisioner is provisioning volume for claim \"shop/data\"".to_string()
                ),
                ("ProvisioningSucceeded".to_string(), "Successfully provisioned volume pvc-1234".to_string()),
            ]
        );
    }

    #[test]
    fn the_volume_type_comes_from_the_claim_then_the_class() {
        let n = node();
        let dir = std::path::Path::new("/d");
        let mut class = default_storage_class();
        let mut c = claim(&["ReadWriteOnce"]);
        assert!(build_volume(&c, &class, Some(&n), dir).unwrap().spec.unwrap().local.is_some());
        c.metadata.annotations.as_mut().unwrap().insert("volumeType".into(), "hostPath".into());
        let hp = build_volume(&c, &class, Some(&n), dir).unwrap().spec.unwrap().host_path.unwrap();
        assert_eq!(
            (hp.path.as_str(), hp.type_.as_deref()),
            ("/d/pvc-1234_shop_data", Some("DirectoryOrCreate"))
        );
        class.metadata.annotations.as_mut().unwrap().remove("defaultVolumeType");
        c.metadata.annotations.as_mut().unwrap().remove("volumeType");
        assert!(build_volume(&c, &class, Some(&n), dir).unwrap().spec.unwrap().host_path.is_some());
        c.metadata.annotations.as_mut().unwrap().insert("volumeType".into(), "nfs".into());
        assert_eq!(build_volume(&c, &class, Some(&n), dir).unwrap_err(), "there is no \"nfs\" volume type");
    }

    #[test]
    fn claims_local_path_cannot_serve_are_refused_with_upstream_messages() {
        let n = node();
        let class = default_storage_class();
        let dir = std::path::Path::new("/d");
        assert_eq!(
            build_volume(&claim(&["ReadWriteMany"]), &class, Some(&n), dir).unwrap_err(),
            "NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes"
        );
        assert_eq!(
            build_volume(&claim(&["ReadWriteOnce"]), &class, None, dir).unwrap_err(),
            "configuration error, no node was specified"
        );
        let mut sel = claim(&["ReadWriteOnce"]);
        sel.spec.as_mut().unwrap().selector = Some(Default::default());
        assert_eq!(
            build_volume(&sel, &class, Some(&n), dir).unwrap_err(),
            "claim.Spec.Selector is not supported"
        );
    }

    #[tokio::test]
    async fn a_refused_claim_gets_a_provisioning_failed_event() {
        let (st, calls) = state();
        st.ctx.informers.seed(vec![default_storage_class()]);
        st.ctx.informers.seed(vec![node()]);
        reconcile_claim(Arc::new(claim(&["ReadWriteMany"])), st).await.unwrap();
        assert_eq!(
            events(&calls)[1],
            (
                "ProvisioningFailed".to_string(),
                "failed to provision volume with StorageClass \"local-path\": NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes".to_string()
            )
        );
    }

    #[test]
    fn only_handed_over_claims_with_a_node_are_provisioned() {
        let class = default_storage_class();
        assert!(should_provision(&claim(&["ReadWriteOnce"]), Some(&class)));
        let mut no_node = claim(&["ReadWriteOnce"]);
        no_node.metadata.annotations.as_mut().unwrap().remove(ANN_SELECTED_NODE);
        assert!(!should_provision(&no_node, Some(&class)));
        let mut other = claim(&["ReadWriteOnce"]);
        other
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(ANN_STORAGE_PROVISIONER.into(), "ebs.csi.aws.com".into());
        assert!(!should_provision(&other, Some(&class)));
        let mut bound = claim(&["ReadWriteOnce"]);
        bound.spec.as_mut().unwrap().volume_name = Some("pvc-1234".into());
        assert!(!should_provision(&bound, Some(&class)));
    }

    #[tokio::test]
    async fn a_released_volume_it_made_is_deleted() {
        let (st, calls) = state();
        let volume = PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pvc-1234".into()),
                annotations: Some([(ANN_PROVISIONED_BY.to_string(), NAME.to_string())].into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                persistent_volume_reclaim_policy: Some("Delete".into()),
                ..Default::default()
            }),
            status: Some(PersistentVolumeStatus { phase: Some("Released".into()), ..Default::default() }),
        };
        reconcile_volume(Arc::new(volume.clone()), st.clone()).await.unwrap();
        let w = calls.writes();
        assert_eq!(w.len(), 1);
        assert_eq!(
            (w[0].method.as_str(), w[0].path.as_str()),
            ("DELETE", "/api/v1/persistentvolumes/pvc-1234")
        );
        let mut retained = volume;
        retained.spec.as_mut().unwrap().persistent_volume_reclaim_policy = Some("Retain".into());
        assert!(!should_delete(&retained));
    }
}
