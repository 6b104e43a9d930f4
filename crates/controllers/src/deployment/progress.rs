//! Rollout progress: the Progressing condition (NewReplicaSetAvailable when complete,
//! ReplicaSetUpdated on progress, ProgressDeadlineExceeded after the deadline), the
//! ReplicaFailure condition promoted from ReplicaSets, and the requeue that checks the
//! deadline when nothing else happens.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DeploymentCondition, ReplicaSet};

use super::sync::{Rollout, calculate_status, normalized};
use super::util::*;
use crate::Result;

/// ReplicaFailure conditions of the new ReplicaSet, or else of any ReplicaSet, as
/// Deployment conditions.
pub fn replica_failures(all: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> Vec<DeploymentCondition> {
    let of = |rs: &ReplicaSet| -> Vec<DeploymentCondition> {
        rs.status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .filter(|c| c.type_ == REPLICA_FAILURE)
            .map(rs_to_deployment_condition)
            .collect()
    };
    let from_new = new_rs.map(of).unwrap_or_default();
    if !from_new.is_empty() {
        return from_new;
    }
    all.iter().flat_map(of).collect()
}

impl Rollout<'_> {
    /// Writes the status of a rollout step with its Progressing and ReplicaFailure
    /// conditions; schedules a deadline check when the rollout is under way and nothing
    /// changed.
    pub(super) async fn sync_rollout_status(
        &mut self,
        all: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<()> {
        let now = self.now();
        let mut status = calculate_status(all, new_rs, &self.d, now);
        if !has_progress_deadline(&self.d) {
            remove_condition(&mut status, PROGRESSING);
        }
        let current = get_condition(self.d.status.as_ref(), PROGRESSING).cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        if has_progress_deadline(&self.d) && !complete_before {
            let name = self.d.metadata.name.clone().unwrap_or_default();
            let rs_name = new_rs.and_then(|rs| rs.metadata.name.clone());
            if deployment_complete(&self.d, &status) {
                let msg = match &rs_name {
                    Some(n) => format!("ReplicaSet {n:?} has successfully progressed."),
                    None => format!("Deployment {name:?} has successfully progressed."),
                };
                set_condition(&mut status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, &msg, now));
            } else if deployment_progressing(&self.d, &status) {
                let msg = match &rs_name {
                    Some(n) => format!("ReplicaSet {n:?} is progressing."),
                    None => format!("Deployment {name:?} is progressing."),
                };
                let mut c = new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, &msg, now);
                // Progress refreshes lastUpdateTime even with an unchanged reason.
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, c);
            } else if deployment_timed_out(&self.d, &status, now) {
                let msg = match &rs_name {
                    Some(n) => format!("ReplicaSet {n:?} has timed out progressing."),
                    None => format!("Deployment {name:?} has timed out progressing."),
                };
                set_condition(&mut status, new_condition(PROGRESSING, "False", TIMED_OUT, &msg, now));
            }
        }
        match replica_failures(all, new_rs).into_iter().next() {
            Some(c) => set_condition(&mut status, c),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        let status = normalized(&status);
        if normalized(&self.d.status.clone().unwrap_or_default()) == status {
            self.requeue = self.requeue_stuck_deployment(&status);
            return Ok(());
        }
        self.d.status = Some(status);
        self.update_deployment_status().await
    }

    /// When to look again for a progress-deadline check: a Deployment with a deadline,
    /// a Progressing condition, not complete and not timed out yet.
    fn requeue_stuck_deployment(
        &self,
        status: &k8s_openapi::api::apps::v1::DeploymentStatus,
    ) -> Option<Duration> {
        let current = get_condition(self.d.status.as_ref(), PROGRESSING)?;
        if !has_progress_deadline(&self.d) {
            return None;
        }
        if deployment_complete(&self.d, status) || current.reason.as_deref() == Some(TIMED_OUT) {
            return None;
        }
        let last = current.last_update_time.as_ref()?.0;
        let deadline = jiff::SignedDuration::from_secs(i64::from(progress_deadline_seconds(&self.d)));
        let at = last.checked_add(deadline).ok()?;
        let left = at.duration_since(self.now());
        if left < jiff::SignedDuration::from_secs(1) {
            return Some(Duration::from_secs(1));
        }
        Some(left.unsigned_abs() + Duration::from_secs(1))
    }
}
