//! The Recreate strategy: scale every old ReplicaSet to zero, wait until none of their
//! pods runs, then create (or scale up) the new ReplicaSet.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::sync::{Rollout, all_of};
use super::util::*;
use crate::Result;
use crate::replicaset::pods::phase;

/// Whether an old ReplicaSet still reports pods, or any pod of an old ReplicaSet is not
/// yet finished (Unknown counts as running).
pub fn old_pods_running(
    new_rs: Option<&ReplicaSet>,
    old: &[ReplicaSet],
    pod_map: &HashMap<String, Vec<Arc<Pod>>>,
) -> bool {
    if sum_actual_replicas(old) > 0 {
        return true;
    }
    let new_uid = new_rs.and_then(|rs| rs.metadata.uid.as_deref());
    pod_map
        .iter()
        .filter(|(uid, _)| Some(uid.as_str()) != new_uid)
        .any(|(_, pods)| pods.iter().any(|p| !matches!(phase(p), "Failed" | "Succeeded")))
}

impl Rollout<'_> {
    /// One step of a Recreate rollout.
    pub(super) async fn rollout_recreate(&mut self, pod_map: &HashMap<String, Vec<Arc<Pod>>>) -> Result<()> {
        // The new ReplicaSet is not created yet, so nothing scales up before old pods go.
        let (mut new_rs, mut old) = self.get_all_replica_sets_and_sync_revision(false).await?;
        let mut all = all_of(&old, new_rs.as_ref());
        let active_old = active(&old);

        if self.scale_down_old_replica_sets_for_recreate(&active_old).await? {
            return self.sync_rollout_status(&all, new_rs.as_ref()).await;
        }
        if old_pods_running(new_rs.as_ref(), &old, pod_map) {
            return self.sync_rollout_status(&all, new_rs.as_ref()).await;
        }
        if new_rs.is_none() {
            (new_rs, old) = self.get_all_replica_sets_and_sync_revision(true).await?;
            all = all_of(&old, new_rs.as_ref());
        }
        if let Some(rs) = new_rs.as_ref() {
            let want = replicas(&self.d);
            self.scale_replica_set_and_record_event(rs, want).await?;
        }
        if deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup_deployment(&old).await?;
        }
        self.sync_rollout_status(&all, new_rs.as_ref()).await
    }

    /// Scales every active old ReplicaSet to zero; true when any was scaled.
    async fn scale_down_old_replica_sets_for_recreate(&mut self, old: &[ReplicaSet]) -> Result<bool> {
        let mut scaled = false;
        for rs in old {
            if rs_replicas(rs) == 0 {
                continue;
            }
            if self.scale_replica_set_and_record_event(rs, 0).await?.0 {
                scaled = true;
            }
        }
        Ok(scaled)
    }
}
