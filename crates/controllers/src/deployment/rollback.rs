//! Server-side rollback through the deprecated `deprecated.deployment.rollback.to`
//! annotation (the extensions/v1beta1 `rollbackTo` field): copy the template of the
//! ReplicaSet with that revision (0: the previous one) into the Deployment. kubectl 1.32
//! rolls back client-side instead; what it needs are the revision annotations.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;
use kube::api::PostParams;

use super::sync::{Rollout, all_of};
use super::util::*;
use crate::Result;
use crate::runtime::EventType;

/// The revision asked for by the deprecated annotation; invalid values are ignored.
pub fn rollback_to(d: &Deployment) -> Option<i64> {
    let v = d.metadata.annotations.as_ref()?.get(DEPRECATED_ROLLBACK_TO)?;
    if v.is_empty() {
        return None;
    }
    v.parse::<i64>().ok()
}

impl Rollout<'_> {
    /// Rolls back to `revision` and clears the request in every case.
    pub(super) async fn rollback(&mut self, mut revision: i64) -> Result<()> {
        let (new_rs, old) = self.get_all_replica_sets_and_sync_revision(true).await?;
        let all = all_of(&old, new_rs.as_ref());
        if revision == 0 {
            revision = last_revision(&all);
            if revision == 0 {
                self.event(EventType::Warning, ROLLBACK_REVISION_NOT_FOUND, "Unable to find last revision.")
                    .await;
                return self.update_deployment_and_clear_rollback_to().await;
            }
        }
        for rs in &all {
            if rs_revision(rs).ok() == Some(revision) {
                let performed = self.rollback_to_template(rs).await?;
                if performed {
                    let msg =
                        format!("Rolled back deployment {:?} to revision {revision}", self.d.name_any());
                    self.event(EventType::Normal, ROLLBACK_DONE, &msg).await;
                }
                return Ok(());
            }
        }
        self.event(
            EventType::Warning,
            ROLLBACK_REVISION_NOT_FOUND,
            "Unable to find the revision to rollback to.",
        )
        .await;
        self.update_deployment_and_clear_rollback_to().await
    }

    /// Copies the ReplicaSet's template and annotations into the Deployment unless the
    /// templates already match; true when the template changed.
    async fn rollback_to_template(&mut self, rs: &ReplicaSet) -> Result<bool> {
        let rs_template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
        let performed = if !equal_ignore_hash(&template(&self.d), &rs_template) {
            set_from_replica_set_template(&mut self.d, &rs_template);
            set_deployment_annotations_to(&mut self.d, rs);
            true
        } else {
            let msg = format!(
                "The rollback revision contains the same template as current deployment {:?}",
                self.d.name_any()
            );
            self.event(EventType::Warning, ROLLBACK_TEMPLATE_UNCHANGED, &msg).await;
            false
        };
        self.update_deployment_and_clear_rollback_to().await?;
        Ok(performed)
    }

    async fn update_deployment_and_clear_rollback_to(&mut self) -> Result<()> {
        if let Some(a) = self.d.metadata.annotations.as_mut() {
            a.remove(DEPRECATED_ROLLBACK_TO);
        }
        let updated = self.deployments().replace(&self.d.name_any(), &PostParams::default(), &self.d).await?;
        self.stored_annotations = updated.metadata.annotations.clone();
        self.d = updated;
        Ok(())
    }
}
