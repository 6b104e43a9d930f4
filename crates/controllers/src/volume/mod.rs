//! Persistent volumes: the PersistentVolume controller that binds claims to volumes and
//! reclaims released volumes ([`binder`], upstream `pkg/controller/volume/persistentvolume`),
//! and the `rancher.io/local-path` dynamic provisioner that k3s ships ([`provisioner`]),
//! with its default StorageClass `local-path`.
//!
//! A claim's life: Pending until a matching Available volume is found (or one is
//! provisioned for it), then Bound (`spec.volumeName`, the volume's `claimRef`, the
//! `pv.kubernetes.io/bind-completed` and `pv.kubernetes.io/bound-by-controller`
//! annotations). When the claim is deleted its volume becomes Released and its reclaim
//! policy runs: Retain keeps it, Delete removes it.

pub mod binder;
pub mod matching;
pub mod provisioner;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use kube::{Resource, ResourceExt};

use crate::runtime::{EventType, Recorder};

/// Annotation: binding of the claim finished.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Annotation: the controller (not the user) set the binding.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// Annotation on volumes: the provisioner that created it.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Annotation on claims: the node a delayed-binding claim is provisioned for.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Annotations on claims: the provisioner asked to provision it.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// Annotation on StorageClasses: the class given to claims that name none.
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
pub const ANN_BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// Publishes an event unless the same reason and message were the last published for that
/// object: the controllers look at pending claims every 15 seconds, and upstream's event
/// recorder folds such repeats into one event with a count.
pub struct EventMemo {
    recorder: Recorder,
    last: Mutex<HashMap<String, (String, String)>>,
}

impl EventMemo {
    pub fn new(recorder: Recorder) -> Self {
        EventMemo { recorder, last: Mutex::new(HashMap::new()) }
    }

    /// Publishes the event unless it repeats the previous one for this object.
    pub async fn publish<K: Resource<DynamicType = ()> + ResourceExt>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        let key = obj.uid().unwrap_or_else(|| crate::runtime::key_of(obj));
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            let entry = (reason.to_string(), message.to_string());
            if last.get(&key) == Some(&entry) {
                return;
            }
            last.insert(key, entry);
        }
        self.recorder.publish(obj, type_, reason, message).await;
    }

    /// Forgets what was published about an object (it settled).
    pub fn forget<K: ResourceExt>(&self, obj: &K) {
        let key = obj.uid().unwrap_or_else(|| crate::runtime::key_of(obj));
        self.last.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    }
}

/// The names of the claims a pod uses: `persistentVolumeClaim` volumes and the claims of
/// generic ephemeral volumes (`<pod>-<volume>`).
pub fn pod_claims(pod: &Pod) -> Vec<String> {
    let pod_name = pod.name_any();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral.as_ref().map(|_| format!("{pod_name}-{}", v.name))
            }
        })
        .collect()
}

/// Runs the volume binder and the local-path provisioner.
pub async fn run(ctx: Arc<crate::Context>) {
    futures::future::join(binder::run(ctx.clone()), provisioner::run(ctx)).await;
}
