//! The RollingUpdate strategy: grow the new ReplicaSet within maxSurge, shrink the old
//! ones within maxUnavailable (unhealthy replicas first), one step per sync.

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::sync::{Rollout, all_of};
use super::util::*;
use crate::{Error, Result};

impl Rollout<'_> {
    /// One step of a rolling update.
    pub(super) async fn rollout_rolling(&mut self) -> Result<()> {
        let (new_rs, old) = self.get_all_replica_sets_and_sync_revision(true).await?;
        let Some(new_rs) = new_rs else {
            return Err(Error::Invalid("no new replica set after creating it".into()));
        };
        let all = all_of(&old, Some(&new_rs));

        if self.reconcile_new_replica_set(&all, &new_rs).await? {
            return self.sync_rollout_status(&all, Some(&new_rs)).await;
        }
        let active_old = active(&old);
        if self.reconcile_old_replica_sets(&all, active_old, &new_rs).await? {
            return self.sync_rollout_status(&all, Some(&new_rs)).await;
        }
        if deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup_deployment(&old).await?;
        }
        self.sync_rollout_status(&all, Some(&new_rs)).await
    }

    /// Scales the new ReplicaSet toward `spec.replicas` as far as the surge allows (or
    /// down to it when larger); true when it scaled.
    async fn reconcile_new_replica_set(&mut self, all: &[ReplicaSet], new_rs: &ReplicaSet) -> Result<bool> {
        let want = replicas(&self.d);
        let have = rs_replicas(new_rs);
        if have == want {
            return Ok(false);
        }
        if have > want {
            return Ok(self.scale_replica_set_and_record_event(new_rs, want).await?.0);
        }
        let count = new_rs_new_replicas(&self.d, all, new_rs).map_err(Error::Invalid)?;
        Ok(self.scale_replica_set_and_record_event(new_rs, count).await?.0)
    }

    /// Scales old ReplicaSets down as far as availability allows: first their unhealthy
    /// replicas, then available ones while more than `replicas - maxUnavailable` stay
    /// available. True when anything was scaled. Errors end the step without failing the
    /// sync, as upstream.
    async fn reconcile_old_replica_sets(
        &mut self,
        all: &[ReplicaSet],
        old: Vec<ReplicaSet>,
        new_rs: &ReplicaSet,
    ) -> Result<bool> {
        if sum_spec_replicas(&old) == 0 {
            return Ok(false);
        }
        let all_pods = sum_spec_replicas(all);
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = rs_replicas(new_rs) - rs_available(new_rs);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        let Ok((old, cleaned)) = self.cleanup_unhealthy_replicas(old, max_scaled_down).await else {
            return Ok(false);
        };
        let all = all_of(&old, Some(new_rs));
        let Ok(scaled) = self.scale_down_old_replica_sets_for_rolling_update(&all, old).await else {
            return Ok(false);
        };
        Ok(cleaned + scaled > 0)
    }

    /// Scales old ReplicaSets down by their unavailable replicas, oldest first, at most
    /// `max_cleanup` in all (the ReplicaSet controller deletes not-ready pods first).
    async fn cleanup_unhealthy_replicas(
        &mut self,
        mut old: Vec<ReplicaSet>,
        max_cleanup: i32,
    ) -> Result<(Vec<ReplicaSet>, i32)> {
        old.sort_by(by_creation);
        let mut total = 0;
        for slot in old.iter_mut() {
            if total >= max_cleanup {
                break;
            }
            let target = slot.clone();
            let size = rs_replicas(&target);
            if size == 0 || size == rs_available(&target) {
                continue;
            }
            let down = (max_cleanup - total).min(size - rs_available(&target));
            let new_count = size - down;
            if new_count > size {
                return Err(Error::Invalid(format!(
                    "when cleaning up unhealthy replicas, got invalid request to scale down {}/{} {size} -> {new_count}",
                    target.metadata.namespace.as_deref().unwrap_or(""),
                    target.metadata.name.as_deref().unwrap_or("")
                )));
            }
            let (_, updated) = self.scale_replica_set_and_record_event(&target, new_count).await?;
            total += down;
            *slot = updated;
        }
        Ok((old, total))
    }

    /// Scales old ReplicaSets down, oldest first, by as many as are available beyond
    /// `replicas - maxUnavailable`.
    async fn scale_down_old_replica_sets_for_rolling_update(
        &mut self,
        all: &[ReplicaSet],
        mut old: Vec<ReplicaSet>,
    ) -> Result<i32> {
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let available = sum_available_replicas(all);
        if available <= min_available {
            return Ok(0);
        }
        old.sort_by(by_creation);
        let mut total = 0;
        let target_total = available - min_available;
        for target in &old {
            if total >= target_total {
                break;
            }
            let size = rs_replicas(target);
            if size == 0 {
                continue;
            }
            let down = size.min(target_total - total);
            let new_count = size - down;
            if new_count > size {
                return Err(Error::Invalid(format!(
                    "when scaling down old RS, got invalid request to scale down {}/{} {size} -> {new_count}",
                    target.metadata.namespace.as_deref().unwrap_or(""),
                    target.metadata.name.as_deref().unwrap_or("")
                )));
            }
            self.scale_replica_set_and_record_event(target, new_count).await?;
            total += down;
        }
        Ok(total)
    }
}
