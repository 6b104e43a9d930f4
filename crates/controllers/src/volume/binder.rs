//! The PersistentVolume controller (`persistentvolume-controller`): binds claims to
//! volumes, keeps both phases true, asks provisioners for volumes, and runs the reclaim
//! policy of volumes whose claim is gone. One sync per claim ([`sync_claim`]) and one per
//! volume ([`sync_volume`]), each reading the caches and writing with optimistic
//! concurrency (a lost race is retried).
//!
//! Delayed binding (`WaitForFirstConsumer`): a claim waits until the scheduler picks a
//! node (`volume.kubernetes.io/selected-node`). When no scheduler sets it, the node of a
//! pod that uses the claim and is already bound (`spec.nodeName`) stands in: the claim is
//! matched against volumes that node can reach, or annotated with that node for its
//! provisioner.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;

use super::matching::{self, NodeView};
use super::*;
use crate::disruption::cache_synced;
use crate::runtime::{EventType, Recorder};
use crate::{Context, ERROR_REQUEUE, Error, Result};

/// How often unsettled claims and volumes are looked at again (`--pvclaimbinder-sync-period`).
pub const RESYNC: Duration = Duration::from_secs(15);

/// The binder's shared state.
pub struct State {
    pub ctx: Arc<Context>,
    events: EventMemo,
}

impl State {
    pub fn new(ctx: Arc<Context>) -> Self {
        let events = EventMemo::new(Recorder::new(ctx.client.clone(), "persistentvolume-controller"));
        State { ctx, events }
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        if name.is_empty() {
            return None;
        }
        self.ctx.informers.get::<StorageClass>().store.get(&ObjectRef::new(name))
    }

    fn volumes(&self) -> Vec<Arc<PersistentVolume>> {
        self.ctx.informers.get::<PersistentVolume>().store.state()
    }

    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.ctx.informers.get::<PersistentVolume>().store.get(&ObjectRef::new(name))
    }

    fn claims_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    fn volumes_api(&self) -> Api<PersistentVolume> {
        Api::all(self.ctx.client.clone())
    }

    /// Pods of the claim's namespace that use it.
    fn consumers(&self, claim: &PersistentVolumeClaim) -> Vec<Arc<Pod>> {
        let name = claim.name_any();
        self.ctx
            .informers
            .get::<Pod>()
            .store
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace == claim.metadata.namespace)
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| pod_claims(p).contains(&name))
            .collect()
    }
}

fn annotation<'a, K: ResourceExt>(obj: &'a K, key: &str) -> Option<&'a str> {
    obj.annotations().get(key).map(String::as_str)
}

fn set_annotation<K: ResourceExt>(obj: &mut K, key: &str, value: &str) {
    obj.annotations_mut().insert(key.to_string(), value.to_string());
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn volume_phase(v: &PersistentVolume) -> &str {
    v.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn claim_volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("")
}

fn claim_ref(v: &PersistentVolume) -> Option<&ObjectReference> {
    v.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
}

/// Whether the claim's class binds only once a pod using it is scheduled.
fn delay_binding(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// The default StorageClass: annotated as default, the newest first, then by name.
pub fn default_class(classes: &[Arc<StorageClass>]) -> Option<Arc<StorageClass>> {
    let mut defaults: Vec<&Arc<StorageClass>> = classes
        .iter()
        .filter(|c| {
            annotation(c.as_ref(), ANN_DEFAULT_CLASS) == Some("true")
                || annotation(c.as_ref(), ANN_BETA_DEFAULT_CLASS) == Some("true")
        })
        .collect();
    defaults.sort_by(|a, b| {
        let (ta, tb) = (&a.metadata.creation_timestamp, &b.metadata.creation_timestamp);
        tb.cmp(ta).then_with(|| a.name_any().cmp(&b.name_any()))
    });
    defaults.first().map(|c| (*c).clone())
}

/// A reference to the claim, as `claimRef` holds it.
fn reference_to(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        name: claim.metadata.name.clone(),
        namespace: claim.metadata.namespace.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Sets a volume's phase (and message), stamping `lastPhaseTransitionTime` when the phase
/// changes; writes nothing when both are already so.
async fn update_volume_phase(
    st: &State,
    volume: PersistentVolume,
    phase: &str,
    message: Option<&str>,
) -> Result<PersistentVolume> {
    let status = volume.status.clone().unwrap_or_default();
    if status.phase.as_deref() == Some(phase) && status.message.as_deref() == message {
        return Ok(volume);
    }
    let mut updated = volume;
    let s = updated.status.get_or_insert_with(Default::default);
    if s.phase.as_deref() != Some(phase) {
        s.last_phase_transition_time = Some(Time(st.ctx.clock.now()));
    }
    s.phase = Some(phase.into());
    s.message = message.map(str::to_string);
    let name = updated.name_any();
    Ok(st.volumes_api().replace_status(&name, &PostParams::default(), &updated).await?)
}

/// Like [`update_volume_phase`], with an event when the phase changes.
async fn update_volume_phase_with_event(
    st: &State,
    volume: PersistentVolume,
    phase: &str,
    type_: EventType,
    reason: &str,
    message: &str,
) -> Result<PersistentVolume> {
    if volume_phase(&volume) == phase {
        return Ok(volume);
    }
    let updated = update_volume_phase(st, volume, phase, Some(message)).await?;
    st.events.publish(&updated, type_, reason, message).await;
    Ok(updated)
}

/// Sets a claim's phase and, for Bound, the access modes and capacity of its volume;
/// writes nothing when nothing changes.
async fn update_claim_status(
    st: &State,
    claim: PersistentVolumeClaim,
    phase: &str,
    volume: Option<&PersistentVolume>,
) -> Result<PersistentVolumeClaim> {
    let mut updated = claim.clone();
    let s = updated.status.get_or_insert_with(Default::default);
    let mut dirty = false;
    if s.phase.as_deref() != Some(phase) {
        s.phase = Some(phase.into());
        dirty = true;
    }
    match volume {
        None => {
            if s.access_modes.is_some() || s.capacity.is_some() {
                s.access_modes = None;
                s.capacity = None;
                dirty = true;
            }
        }
        Some(v) => {
            let spec = v.spec.clone().unwrap_or_default();
            if s.access_modes != spec.access_modes {
                s.access_modes = spec.access_modes.clone();
                dirty = true;
            }
            let vol_cap = spec.capacity.as_ref().and_then(|c| c.get("storage"));
            let claim_cap = s.capacity.as_ref().and_then(|c| c.get("storage"));
            if vol_cap.is_some() && vol_cap.map(|q| &q.0) != claim_cap.map(|q| &q.0) {
                s.capacity = spec.capacity.clone();
                dirty = true;
            }
        }
    }
    if !dirty {
        return Ok(claim);
    }
    let ns = updated.namespace().unwrap_or_default();
    Ok(st.claims_api(&ns).replace_status(&updated.name_any(), &PostParams::default(), &updated).await?)
}

/// Sets a claim's phase with an event when the phase changes.
async fn update_claim_phase_with_event(
    st: &State,
    claim: PersistentVolumeClaim,
    phase: &str,
    reason: &str,
    message: &str,
) -> Result<PersistentVolumeClaim> {
    if claim_phase(&claim) == phase {
        return Ok(claim);
    }
    let updated = update_claim_status(st, claim, phase, None).await?;
    st.events.publish(&updated, EventType::Warning, reason, message).await;
    Ok(updated)
}

/// Points the volume at the claim (`bindVolumeToClaim`), marking it bound by the
/// controller unless the user pre-bound it.
async fn bind_volume_to_claim(
    st: &State,
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<PersistentVolume> {
    let mut updated = volume.clone();
    let mut dirty = false;
    let pre_bound = matching::is_bound_to(volume, claim);
    let current = claim_ref(volume);
    if current.is_none_or(|r| {
        r.name != claim.metadata.name
            || r.namespace != claim.metadata.namespace
            || r.uid != claim.metadata.uid
    }) {
        updated.spec.get_or_insert_with(Default::default).claim_ref = Some(reference_to(claim));
        dirty = true;
    }
    if !pre_bound && annotation(volume, ANN_BOUND_BY_CONTROLLER).is_none() {
        set_annotation(&mut updated, ANN_BOUND_BY_CONTROLLER, "yes");
        dirty = true;
    }
    if !dirty {
        return Ok(updated);
    }
    Ok(st.volumes_api().replace(&volume.name_any(), &PostParams::default(), &updated).await?)
}

/// Points the claim at the volume (`bindClaimToVolume`) and marks the binding complete.
async fn bind_claim_to_volume(
    st: &State,
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Result<PersistentVolumeClaim> {
    let mut updated = claim.clone();
    let mut dirty = false;
    if claim_volume_name(claim) != volume.name_any() {
        updated.spec.get_or_insert_with(Default::default).volume_name = Some(volume.name_any());
        if annotation(claim, ANN_BOUND_BY_CONTROLLER).is_none() {
            set_annotation(&mut updated, ANN_BOUND_BY_CONTROLLER, "yes");
        }
        dirty = true;
    }
    if annotation(claim, ANN_BIND_COMPLETED).is_none() {
        set_annotation(&mut updated, ANN_BIND_COMPLETED, "yes");
        dirty = true;
    }
    if !dirty {
        return Ok(updated);
    }
    let ns = claim.namespace().unwrap_or_default();
    Ok(st.claims_api(&ns).replace(&claim.name_any(), &PostParams::default(), &updated).await?)
}

/// Binds both ways and sets both phases to Bound (`bind`). A failure part way is finished
/// by the next sync of either object.
async fn bind(st: &State, volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Result<()> {
    let volume = bind_volume_to_claim(st, volume, claim).await?;
    let volume = update_volume_phase(st, volume, "Bound", None).await?;
    let claim = bind_claim_to_volume(st, claim, &volume).await?;
    update_claim_status(st, claim.clone(), "Bound", Some(&volume)).await?;
    st.events.forget(&claim);
    Ok(())
}

/// Releases a volume from a claim that is bound elsewhere (`unbindVolume`): the
/// controller's own binding is removed; a user's pre-binding keeps the claim's name.
async fn unbind_volume(st: &State, volume: &PersistentVolume) -> Result<()> {
    let mut updated = volume.clone();
    if annotation(volume, ANN_BOUND_BY_CONTROLLER).is_some() {
        if let Some(spec) = updated.spec.as_mut() {
            spec.claim_ref = None;
        }
        updated.annotations_mut().remove(ANN_BOUND_BY_CONTROLLER);
    } else if let Some(r) = updated.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
        r.uid = None;
    }
    let written = st.volumes_api().replace(&volume.name_any(), &PostParams::default(), &updated).await?;
    update_volume_phase(st, written, "Available", None).await?;
    Ok(())
}

/// The node a delayed-binding claim is being placed on: the scheduler's choice, else the
/// node of a bound pod that uses it.
fn consumer_node(st: &State, claim: &PersistentVolumeClaim) -> Option<String> {
    if let Some(n) = annotation(claim, ANN_SELECTED_NODE).filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    st.consumers(claim)
        .iter()
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .find(|n| !n.is_empty())
}

/// Syncs one claim.
pub async fn sync_claim(claim: Arc<PersistentVolumeClaim>, st: Arc<State>) -> Result<Action> {
    if annotation(claim.as_ref(), ANN_BIND_COMPLETED).is_none() {
        sync_unbound_claim(&claim, &st).await
    } else {
        sync_bound_claim(&claim, &st).await
    }
}

async fn sync_unbound_claim(claim: &PersistentVolumeClaim, st: &State) -> Result<Action> {
    let volume_name = claim_volume_name(claim).to_string();
    if !volume_name.is_empty() {
        return sync_prebound_claim(claim, &volume_name, st).await;
    }
    if claim.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let class_name = matching::claim_class(claim);
    let class = st.class(&class_name);
    let delay = delay_binding(class.as_deref());
    let node_name = if delay { consumer_node(st, claim) } else { None };
    let node = node_name.as_ref().and_then(|n| st.ctx.informers.get::<Node>().store.get(&ObjectRef::new(n)));
    let empty = BTreeMap::new();
    let view = node_name.as_deref().map(|name| NodeView {
        name,
        labels: node.as_ref().and_then(|n| n.metadata.labels.as_ref()).unwrap_or(&empty),
    });
    let volumes = st.volumes();
    let found = matching::find_best_match(claim, volumes.iter().map(|v| v.as_ref()), view.as_ref(), delay)
        .map_err(Error::Invalid)?
        .cloned();
    if let Some(volume) = found {
        bind(st, &volume, claim).await?;
        return Ok(Action::await_change());
    }

    // No volume: claims that name no class get the default one (retroactively), then retry.
    if !matching::claim_has_class(claim) {
        let classes = st.ctx.informers.get::<StorageClass>().store.state();
        if let Some(default) = default_class(&classes) {
            let mut updated = claim.clone();
            updated.spec.get_or_insert_with(Default::default).storage_class_name = Some(default.name_any());
            let ns = claim.namespace().unwrap_or_default();
            st.claims_api(&ns).replace(&claim.name_any(), &PostParams::default(), &updated).await?;
            return Ok(Action::await_change());
        }
    }
    if delay && annotation(claim, ANN_SELECTED_NODE).is_none_or(str::is_empty) {
        let provisioner = class.as_ref().map(|c| c.provisioner.as_str()).unwrap_or("");
        if let Some(node) =
            node_name.filter(|_| !provisioner.is_empty() && provisioner != "kubernetes.io/no-provisioner")
        {
            // What the scheduler's volume binding does for a pod it placed.
            let mut updated = claim.clone();
            set_annotation(&mut updated, ANN_SELECTED_NODE, &node);
            let ns = claim.namespace().unwrap_or_default();
            st.claims_api(&ns).replace(&claim.name_any(), &PostParams::default(), &updated).await?;
            return Ok(Action::await_change());
        }
        let waiting: Vec<String> = st
            .consumers(claim)
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty))
            .map(|p| p.name_any())
            .collect();
        let (reason, message) = match waiting.len() {
            0 => (
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".to_string(),
            ),
            1 => ("WaitForPodScheduled", format!("waiting for pod {} to be scheduled", waiting[0])),
            _ => ("WaitForPodScheduled", format!("waiting for pods {} to be scheduled", waiting.join(","))),
        };
        st.events.publish(claim, EventType::Normal, reason, &message).await;
    } else if !class_name.is_empty() {
        provision_claim(claim, class.as_deref(), &class_name, st).await?;
        return Ok(Action::requeue(RESYNC));
    } else {
        st.events
            .publish(
                claim,
                EventType::Normal,
                "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set",
            )
            .await;
    }
    update_claim_status(st, claim.clone(), "Pending", None).await?;
    Ok(Action::requeue(RESYNC))
}

/// Asks the class's provisioner for a volume (`provisionClaimOperationExternal`): the
/// claim is annotated with the provisioner's name, which the provisioner watches for.
async fn provision_claim(
    claim: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    class_name: &str,
    st: &State,
) -> Result<()> {
    let Some(class) = class else {
        let msg = format!("storageclass.storage.k8s.io {class_name:?} not found");
        st.events.publish(claim, EventType::Warning, "ProvisioningFailed", &msg).await;
        return Ok(());
    };
    let provisioner = class.provisioner.as_str();
    if provisioner.starts_with("kubernetes.io/") {
        // krust has no in-tree volume plugins.
        let msg = format!("no volume plugin matched name: {provisioner}");
        st.events.publish(claim, EventType::Warning, "ProvisioningFailed", &msg).await;
        return Ok(());
    }
    let mut current = claim.clone();
    if annotation(claim, ANN_STORAGE_PROVISIONER) != Some(provisioner)
        || annotation(claim, ANN_BETA_STORAGE_PROVISIONER) != Some(provisioner)
    {
        let mut updated = claim.clone();
        set_annotation(&mut updated, ANN_BETA_STORAGE_PROVISIONER, provisioner);
        set_annotation(&mut updated, ANN_STORAGE_PROVISIONER, provisioner);
        let ns = claim.namespace().unwrap_or_default();
        match st.claims_api(&ns).replace(&claim.name_any(), &PostParams::default(), &updated).await {
            Ok(c) => current = c,
            Err(e) => {
                st.events
                    .publish(
                        claim,
                        EventType::Warning,
                        "ProvisioningFailed",
                        &format!("Error saving claim: {e}"),
                    )
                    .await;
                return Err(e.into());
            }
        }
    }
    let msg = format!(
        "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
    );
    st.events.publish(&current, EventType::Normal, "ExternalProvisioning", &msg).await;
    Ok(())
}

async fn sync_prebound_claim(claim: &PersistentVolumeClaim, volume_name: &str, st: &State) -> Result<Action> {
    let Some(volume) = st.volume(volume_name) else {
        update_claim_status(st, claim.clone(), "Pending", None).await?;
        return Ok(Action::requeue(RESYNC));
    };
    if claim_ref(&volume).is_none() {
        if let Err(why) = matching::check_volume_satisfies_claim(&volume, claim) {
            let msg = format!("Cannot bind to requested volume {volume_name:?}: {why}");
            st.events.publish(claim, EventType::Warning, "VolumeMismatch", &msg).await;
            update_claim_status(st, claim.clone(), "Pending", None).await?;
            return Ok(Action::requeue(RESYNC));
        }
        bind(st, &volume, claim).await?;
        return Ok(Action::await_change());
    }
    if matching::is_bound_to(&volume, claim) {
        bind(st, &volume, claim).await?;
        return Ok(Action::await_change());
    }
    let msg = format!("volume {volume_name:?} already bound to a different claim.");
    st.events.publish(claim, EventType::Warning, "FailedBinding", &msg).await;
    if annotation(claim, ANN_BOUND_BY_CONTROLLER).is_some() {
        return Err(Error::Invalid(format!(
            "invalid binding of claim {} to volume {volume_name}: volume already claimed by another claim",
            crate::runtime::key_of(claim)
        )));
    }
    update_claim_status(st, claim.clone(), "Pending", None).await?;
    Ok(Action::requeue(RESYNC))
}

async fn sync_bound_claim(claim: &PersistentVolumeClaim, st: &State) -> Result<Action> {
    let volume_name = claim_volume_name(claim).to_string();
    if volume_name.is_empty() {
        update_claim_phase_with_event(
            st,
            claim.clone(),
            "Lost",
            "ClaimLost",
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        )
        .await?;
        return Ok(Action::await_change());
    }
    let Some(volume) = st.volume(&volume_name) else {
        update_claim_phase_with_event(
            st,
            claim.clone(),
            "Lost",
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
        )
        .await?;
        return Ok(Action::await_change());
    };
    if claim_ref(&volume).is_none() || matching::is_bound_to(&volume, claim) {
        bind(st, &volume, claim).await?;
        return Ok(Action::await_change());
    }
    update_claim_phase_with_event(
        st,
        claim.clone(),
        "Lost",
        "ClaimMisbound",
        "Two claims are bound to the same volume, this one is bound incorrectly",
    )
    .await?;
    Ok(Action::await_change())
}

/// The claim a volume's claimRef names, if it still exists with that uid: the cache, then
/// the API server (a claim created moments ago may not be cached yet).
async fn referenced_claim(
    st: &State,
    volume: &PersistentVolume,
    r: &ObjectReference,
) -> Result<Option<PersistentVolumeClaim>> {
    let (ns, name) = (r.namespace.clone().unwrap_or_default(), r.name.clone().unwrap_or_default());
    let cached =
        st.ctx.informers.get::<PersistentVolumeClaim>().store.get(&ObjectRef::new(&name).within(&ns));
    let mut claim = cached.map(|c| (*c).clone());
    let phase = volume_phase(volume);
    if claim.is_none() && phase != "Released" && phase != "Failed" {
        claim = st.claims_api(&ns).get_opt(&name).await?;
    }
    if let Some(c) = &claim
        && c.metadata.uid != r.uid
    {
        // Maybe the cache is behind a re-created claim: ask the API server.
        let fresh = st.claims_api(&ns).get_opt(&name).await?;
        return Ok(fresh.filter(|c| c.metadata.uid == r.uid));
    }
    Ok(claim)
}

/// Syncs one volume.
pub async fn sync_volume(volume: Arc<PersistentVolume>, st: Arc<State>) -> Result<Action> {
    let Some(r) = claim_ref(&volume).cloned() else {
        update_volume_phase(&st, (*volume).clone(), "Available", None).await?;
        return Ok(Action::await_change());
    };
    if r.uid.as_deref().is_none_or(str::is_empty) {
        // Pre-bound by the user; the claim's sync binds it.
        update_volume_phase(&st, (*volume).clone(), "Available", None).await?;
        return Ok(Action::await_change());
    }
    let Some(claim) = referenced_claim(&st, &volume, &r).await? else {
        let mut volume = (*volume).clone();
        let phase = volume_phase(&volume).to_string();
        if phase != "Released" && phase != "Failed" {
            volume = update_volume_phase(&st, volume, "Released", None).await?;
        }
        return reclaim_volume(&st, volume).await;
    };
    if claim_volume_name(&claim).is_empty() {
        if matching::volume_mode_mismatch(&claim, &volume) {
            let v = format!(
                "Cannot bind PersistentVolume to requested PersistentVolumeClaim {:?} due to incompatible volumeMode.",
                claim.name_any()
            );
            st.events.publish(volume.as_ref(), EventType::Warning, "VolumeMismatch", &v).await;
            let c = format!(
                "Cannot bind PersistentVolume {:?} to requested PersistentVolumeClaim due to incompatible volumeMode.",
                volume.name_any()
            );
            st.events.publish(&claim, EventType::Warning, "VolumeMismatch", &c).await;
        }
        // The claim's sync finishes the binding; it is triggered by this volume's change.
        return Ok(Action::await_change());
    }
    if claim_volume_name(&claim) == volume.name_any() {
        update_volume_phase(&st, (*volume).clone(), "Bound", None).await?;
        return Ok(Action::await_change());
    }
    // The claim is bound to another volume.
    let delete_policy =
        volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete");
    if annotation(volume.as_ref(), ANN_PROVISIONED_BY).is_some() && delete_policy {
        let mut v = (*volume).clone();
        let phase = volume_phase(&v).to_string();
        if phase != "Released" && phase != "Failed" {
            v = update_volume_phase(&st, v, "Released", None).await?;
        }
        return reclaim_volume(&st, v).await;
    }
    unbind_volume(&st, &volume).await?;
    Ok(Action::await_change())
}

/// Runs the reclaim policy of a Released volume.
async fn reclaim_volume(st: &State, volume: PersistentVolume) -> Result<Action> {
    let policy =
        volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.clone()).unwrap_or_default();
    match policy.as_str() {
        "Retain" => Ok(Action::await_change()),
        "Recycle" => {
            update_volume_phase_with_event(
                st,
                volume,
                "Failed",
                EventType::Warning,
                "VolumeFailedRecycle",
                "No recycler plugin found for the volume!",
            )
            .await?;
            Ok(Action::await_change())
        }
        "Delete" => delete_volume(st, volume).await,
        _ => {
            update_volume_phase_with_event(
                st,
                volume,
                "Failed",
                EventType::Warning,
                "VolumeUnknownReclaimPolicy",
                "Volume has unrecognized PersistentVolumeReclaimPolicy",
            )
            .await?;
            Ok(Action::await_change())
        }
    }
}

/// The Delete policy: a volume made by an external provisioner is its provisioner's to
/// delete; otherwise the in-tree deleter of its source decides. Only `hostPath` volumes
/// under `/tmp` have one (as upstream); the object is deleted, the directory is left to the
/// node. Anything else fails with `VolumeFailedDelete`.
async fn delete_volume(st: &State, volume: PersistentVolume) -> Result<Action> {
    if let Some(p) = annotation(&volume, ANN_PROVISIONED_BY)
        && !p.starts_with("kubernetes.io/")
    {
        return Ok(Action::await_change());
    }
    let name = volume.name_any();
    let host_path = volume.spec.as_ref().and_then(|s| s.host_path.as_ref()).map(|h| h.path.clone());
    let failure = match host_path {
        Some(path) if path.strip_prefix("/tmp/").is_some_and(|rest| !rest.is_empty()) => None,
        Some(path) => Some(format!("host_path deleter only supports /tmp/.+ but received provided {path}")),
        None => Some(format!(
            "error getting deleter volume plugin for volume {name:?}: no deletable volume plugin matched"
        )),
    };
    if let Some(msg) = failure {
        update_volume_phase_with_event(st, volume, "Failed", EventType::Warning, "VolumeFailedDelete", &msg)
            .await?;
        return Ok(Action::requeue(RESYNC));
    }
    match st.volumes_api().delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

fn error_policy<K>(_: Arc<K>, err: &Error, _: Arc<State>) -> Action {
    tracing::debug!(error = %err, "persistentvolume controller: will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs the claim and volume syncs.
pub async fn run(ctx: Arc<Context>) {
    let st = Arc::new(State::new(ctx.clone()));
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let volumes = ctx.informers.get::<PersistentVolume>();
    let classes = ctx.informers.get::<StorageClass>();
    let pods = ctx.informers.get::<Pod>();
    // Deciding on a partial cache would mark claims Lost or volumes Released wrongly.
    let synced = [
        cache_synced(&claims.store).await,
        cache_synced(&volumes.store).await,
        cache_synced(&classes.store).await,
        cache_synced(&pods.store).await,
        cache_synced(&ctx.informers.get::<Node>().store).await,
    ];
    if synced.contains(&false) {
        return;
    }
    let volume_store = volumes.store.clone();
    tracing::info!("persistentvolume controller started");
    let unbound_claims = {
        let store = claims.store.clone();
        move |_: Arc<StorageClass>| {
            store
                .state()
                .iter()
                .filter(|c| claim_volume_name(c).is_empty())
                .map(|c| ObjectRef::from_obj(c.as_ref()))
                .collect::<Vec<_>>()
        }
    };
    let claim_syncs = Controller::for_shared_stream(claims.changes(), claims.store.clone())
        .watches_shared_stream(volumes.changes(), |v: Arc<PersistentVolume>| {
            claim_ref(&v)
                .and_then(|r| Some(ObjectRef::new(r.name.as_deref()?).within(r.namespace.as_deref()?)))
        })
        .watches_shared_stream(pods.changes(), |p: Arc<Pod>| {
            let ns = p.namespace().unwrap_or_default();
            pod_claims(&p).into_iter().map(move |c| ObjectRef::new(&c).within(&ns)).collect::<Vec<_>>()
        })
        .watches_shared_stream(classes.changes(), unbound_claims)
        .run(sync_claim, error_policy, st.clone())
        .for_each(|_| async {});
    let volume_syncs = Controller::for_shared_stream(volumes.changes(), volume_store.clone())
        .watches_shared_stream(claims.changes(), move |c: Arc<PersistentVolumeClaim>| {
            let mut refs: Vec<ObjectRef<PersistentVolume>> = volume_store
                .state()
                .iter()
                .filter(|v| {
                    claim_ref(v)
                        .is_some_and(|r| r.name == c.metadata.name && r.namespace == c.metadata.namespace)
                })
                .map(|v| ObjectRef::from_obj(v.as_ref()))
                .collect();
            if !claim_volume_name(&c).is_empty() {
                refs.push(ObjectRef::new(claim_volume_name(&c)));
            }
            refs
        })
        .run(sync_volume, error_policy, st)
        .for_each(|_| async {});
    futures::future::join(claim_syncs, volume_syncs).await;
}

#[cfg(test)]
#[path = "binder_tests.rs"]
mod tests;
