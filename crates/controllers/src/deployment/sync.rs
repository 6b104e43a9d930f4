//! The parts of a Deployment sync every strategy shares: finding (or creating) the new
//! ReplicaSet and keeping revisions in step, scaling ReplicaSets with the events
//! kubectl describe shows, proportional scaling, history cleanup and the status.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::{Map, Value, json};

use super::Shared;
use super::util::*;
use crate::replicaset::reconcile::{error_message, namespace_terminating, nonzero};
use crate::runtime::{EventType, controller_of, controller_ref};
use crate::{Error, Result};

/// One sync of one Deployment: the working copy of the Deployment (mutated as upstream
/// mutates its deep copy), the ReplicaSets it owns, and what to requeue for.
pub struct Rollout<'a> {
    pub(super) shared: &'a Shared,
    pub(super) d: Deployment,
    /// The annotations the API server holds, to tell which of ours still need writing.
    pub(super) stored_annotations: Option<BTreeMap<String, String>>,
    /// The Deployment's ReplicaSets, kept current with our own writes.
    pub(super) rs_list: Vec<ReplicaSet>,
    /// When to look again although nothing changes (progress deadline checks).
    pub(super) requeue: Option<Duration>,
}

fn api_is(err: &kube::Error, reason: &str, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.reason == reason || (reason.is_empty() && s.code == code))
}

/// Old and new ReplicaSets in one list (upstream's `append(oldRSs, newRS)`).
pub fn all_of(old: &[ReplicaSet], new_rs: Option<&ReplicaSet>) -> Vec<ReplicaSet> {
    old.iter().chain(new_rs).cloned().collect()
}

/// Zero counts as absent, empty conditions as none: the form the API stores, so a
/// computed status compares equal to the stored one when nothing changed.
pub fn normalized(s: &DeploymentStatus) -> DeploymentStatus {
    let z = |v: Option<i32>| v.filter(|x| *x != 0);
    DeploymentStatus {
        observed_generation: s.observed_generation.filter(|g| *g != 0),
        replicas: z(s.replicas),
        updated_replicas: z(s.updated_replicas),
        ready_replicas: z(s.ready_replicas),
        available_replicas: z(s.available_replicas),
        unavailable_replicas: z(s.unavailable_replicas),
        terminating_replicas: s.terminating_replicas,
        collision_count: s.collision_count,
        conditions: s.conditions.clone().filter(|c| !c.is_empty()),
    }
}

/// The status the ReplicaSets give: replica sums, observedGeneration, and the Available
/// condition (at least `replicas - maxUnavailable` available).
pub fn calculate_status(
    all: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: jiff::Timestamp,
) -> DeploymentStatus {
    let available = sum_available_replicas(all);
    let total = sum_spec_replicas(all);
    let unavailable = (total - available).max(0);
    let current = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nonzero(sum_actual_replicas(all)),
        updated_replicas: nonzero(sum_actual_replicas(new_rs)),
        ready_replicas: nonzero(sum_ready_replicas(all)),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero(unavailable),
        collision_count: current.collision_count,
        conditions: current.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut status,
            new_condition(
                AVAILABLE,
                "True",
                MINIMUM_REPLICAS_AVAILABLE,
                "Deployment has minimum availability.",
                now,
            ),
        );
    } else {
        set_condition(
            &mut status,
            new_condition(
                AVAILABLE,
                "False",
                MINIMUM_REPLICAS_UNAVAILABLE,
                "Deployment does not have minimum availability.",
                now,
            ),
        );
    }
    normalized(&status)
}

impl<'a> Rollout<'a> {
    pub fn new(shared: &'a Shared, d: Deployment, rs_list: Vec<ReplicaSet>) -> Self {
        let stored_annotations = d.metadata.annotations.clone();
        Rollout { shared, d, stored_annotations, rs_list, requeue: None }
    }

    pub(super) fn now(&self) -> jiff::Timestamp {
        self.shared.ctx.clock.now()
    }

    fn ns(&self) -> String {
        self.d.namespace().unwrap_or_default()
    }

    pub(super) fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.shared.ctx.client.clone(), &self.ns())
    }

    fn replica_sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.shared.ctx.client.clone(), &self.ns())
    }

    pub(super) async fn event(&self, type_: EventType, reason: &str, message: &str) {
        self.shared.recorder.publish(&self.d, type_, reason, message).await;
    }

    /// Writes the Deployment's status. Annotations changed on the working copy (the
    /// revision) are written first with a merge patch of the object, since the status
    /// endpoint keeps the stored metadata; upstream sends both in the status update.
    pub(super) async fn update_deployment_status(&mut self) -> Result<()> {
        let api = self.deployments();
        let name = self.d.name_any();
        if self.d.metadata.annotations != self.stored_annotations {
            let mut changes = Map::new();
            let want = self.d.metadata.annotations.clone().unwrap_or_default();
            let had = self.stored_annotations.clone().unwrap_or_default();
            for (k, v) in &want {
                if had.get(k) != Some(v) {
                    changes.insert(k.clone(), Value::String(v.clone()));
                }
            }
            for k in had.keys().filter(|k| !want.contains_key(*k)) {
                changes.insert(k.clone(), Value::Null);
            }
            let patch = json!({"metadata": {"annotations": changes}});
            let patched = api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            self.d.metadata.resource_version = patched.metadata.resource_version;
            self.stored_annotations = self.d.metadata.annotations.clone();
        }
        let updated = api.replace_status(&name, &PostParams::default(), &self.d).await?;
        self.d.metadata.resource_version = updated.metadata.resource_version;
        Ok(())
    }

    /// Writes a ReplicaSet and keeps the list current.
    pub(super) async fn update_rs(&mut self, rs: &ReplicaSet) -> Result<ReplicaSet> {
        let updated = self.replica_sets().replace(&rs.name_any(), &PostParams::default(), rs).await?;
        self.remember(updated.clone());
        Ok(updated)
    }

    fn remember(&mut self, rs: ReplicaSet) {
        match self
            .rs_list
            .iter_mut()
            .find(|r| r.metadata.uid == rs.metadata.uid && r.metadata.name == rs.metadata.name)
        {
            Some(slot) => *slot = rs,
            None => self.rs_list.push(rs),
        }
    }

    /// The new ReplicaSet (created when `create` and missing) and all old ones, with the
    /// new one's revision raised above every old one and copied to the Deployment.
    pub(super) async fn get_all_replica_sets_and_sync_revision(
        &mut self,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>)> {
        let old = find_old_replica_sets(&self.d, &self.rs_list);
        let new_rs = self.get_new_replica_set(&old, create).await?;
        Ok((new_rs, old))
    }

    async fn get_new_replica_set(&mut self, old: &[ReplicaSet], create: bool) -> Result<Option<ReplicaSet>> {
        let existing = find_new_replica_set(&self.d, &self.rs_list);
        let new_revision = (max_revision(old) + 1).to_string();
        let now = self.now();
        if let Some(existing) = existing {
            let mut copy = existing.clone();
            let annotations_updated = set_new_replica_set_annotations(
                &self.d,
                &mut copy,
                &new_revision,
                true,
                MAX_REV_HISTORY_CHARS,
            );
            let min_ready = min_ready_seconds(&self.d);
            let min_ready_differs =
                copy.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0) != min_ready;
            if annotations_updated || min_ready_differs {
                copy.spec.get_or_insert_with(Default::default).min_ready_seconds = nonzero(min_ready);
                return Ok(Some(self.update_rs(&copy).await?));
            }
            let rs_revision =
                copy.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).cloned().unwrap_or_default();
            let mut needs_update = set_deployment_revision(&mut self.d, &rs_revision);
            if has_progress_deadline(&self.d) && get_condition(self.d.status.as_ref(), PROGRESSING).is_none()
            {
                let msg = format!("Found new replica set {:?}", copy.name_any());
                let c = new_condition(PROGRESSING, "True", FOUND_NEW_RS, &msg, now);
                set_condition(self.d.status.get_or_insert_with(Default::default), c);
                needs_update = true;
            }
            if needs_update {
                self.update_deployment_status().await?;
            }
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }

        let template = template(&self.d);
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&template, collision_count);
        let mut new_template = template.clone();
        let labels = clone_and_add_label(
            template.metadata.as_ref().and_then(|m| m.labels.as_ref()),
            POD_TEMPLATE_HASH,
            &hash,
        );
        new_template.metadata.get_or_insert_with(Default::default).labels = Some(labels.clone());
        let selector = self.d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        let name = format!("{}-{hash}", self.d.name_any());
        let mut new_rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.ns()),
                owner_references: Some(vec![controller_ref(&self.d)]),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: nonzero(min_ready_seconds(&self.d)),
                selector: clone_selector_and_add_label(&selector, POD_TEMPLATE_HASH, &hash),
                template: Some(new_template),
            }),
            status: None,
        };
        let all = all_of(old, Some(&new_rs));
        let count = new_rs_new_replicas(&self.d, &all, &new_rs).map_err(Error::Invalid)?;
        set_rs_replicas(&mut new_rs, count);
        set_new_replica_set_annotations(&self.d, &mut new_rs, &new_revision, false, MAX_REV_HISTORY_CHARS);

        let mut already_exists = false;
        let created = match self.replica_sets().create(&PostParams::default(), &new_rs).await {
            Ok(created) => created,
            Err(e) if api_is(&e, "AlreadyExists", 409) => {
                let cached = self
                    .shared
                    .ctx
                    .informers
                    .get::<ReplicaSet>()
                    .store
                    .get(&ObjectRef::new(&name).within(&self.ns()));
                let Some(cached) = cached else {
                    return Err(Error::Invalid(format!("replicasets.apps {name:?} not found")));
                };
                let ours =
                    controller_of(&*cached).is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
                let same = cached
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(&template, t));
                if ours && same {
                    already_exists = true;
                    (*cached).clone()
                } else {
                    // A hash collision: bump collisionCount so the next sync hashes anew.
                    let status = self.d.status.get_or_insert_with(Default::default);
                    let before = status.collision_count.unwrap_or(0);
                    status.collision_count = Some(before + 1);
                    if self.update_deployment_status().await.is_ok() {
                        tracing::info!(deployment = %self.d.name_any(), before, after = before + 1,
                            "found a hash collision for deployment - bumping collisionCount to resolve it");
                    }
                    return Err(Error::Kube(e));
                }
            }
            Err(e) if namespace_terminating(&e) => return Err(Error::Kube(e)),
            Err(e) => {
                let err = Error::Kube(e);
                let msg = format!("Failed to create new replica set {name:?}: {}", error_message(&err));
                if has_progress_deadline(&self.d) {
                    let c = new_condition(PROGRESSING, "False", FAILED_RS_CREATE, &msg, now);
                    set_condition(self.d.status.get_or_insert_with(Default::default), c);
                    // The bigger problem is reported below; a failed status write changes nothing.
                    let _ = self.update_deployment_status().await;
                }
                self.event(EventType::Warning, FAILED_RS_CREATE, &msg).await;
                return Err(err);
            }
        };
        if !already_exists && count > 0 {
            let msg = format!("Scaled up replica set {} from 0 to {count}", created.name_any());
            self.event(EventType::Normal, "ScalingReplicaSet", &msg).await;
        }
        self.remember(created.clone());
        let mut needs_update = set_deployment_revision(&mut self.d, &new_revision);
        if !already_exists && has_progress_deadline(&self.d) {
            let msg = format!("Created new replica set {:?}", created.name_any());
            let c = new_condition(PROGRESSING, "True", NEW_REPLICA_SET, &msg, now);
            set_condition(self.d.status.get_or_insert_with(Default::default), c);
            needs_update = true;
        }
        if needs_update {
            self.update_deployment_status().await?;
        }
        Ok(Some(created))
    }

    /// Scales on a scaling event or while paused: a single active (or the latest)
    /// ReplicaSet takes all replicas; a saturated new one lets the old ones go to zero;
    /// otherwise a rolling Deployment spreads the change over the active ReplicaSets in
    /// proportion to their size (leftovers to the largest).
    pub(super) async fn scale(&mut self, new_rs: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<()> {
        let want = replicas(&self.d);
        if let Some(rs) = find_active_or_latest(new_rs, old) {
            if rs_replicas(&rs) == want {
                return Ok(());
            }
            self.scale_replica_set_and_record_event(&rs, want).await?;
            return Ok(());
        }
        if is_saturated(&self.d, new_rs) {
            for rs in active(old) {
                self.scale_replica_set_and_record_event(&rs, 0).await?;
            }
            return Ok(());
        }
        if is_rolling_update(&self.d) {
            let mut all = active(&all_of(old, new_rs));
            let current = sum_spec_replicas(&all);
            let allowed = if want > 0 { want + max_surge(&self.d) } else { 0 };
            let to_add = allowed - current;
            let operation = match to_add.cmp(&0) {
                std::cmp::Ordering::Greater => {
                    all.sort_by(by_size_newer);
                    "up"
                }
                std::cmp::Ordering::Less => {
                    all.sort_by(by_size_older);
                    "down"
                }
                std::cmp::Ordering::Equal => "",
            };
            let mut added = 0;
            let mut sizes: Vec<i32> = Vec::with_capacity(all.len());
            for rs in &all {
                if to_add != 0 {
                    let p = get_proportion(rs, &self.d, to_add, added);
                    sizes.push(rs_replicas(rs) + p);
                    added += p;
                } else {
                    sizes.push(rs_replicas(rs));
                }
            }
            for (i, rs) in all.iter().enumerate() {
                if i == 0 && to_add != 0 {
                    sizes[0] = (sizes[0] + to_add - added).max(0);
                }
                self.scale_replica_set(rs, sizes[i], operation).await?;
            }
        }
        Ok(())
    }

    /// Scales one ReplicaSet (no-op when already that size); true when it was resized.
    pub(super) async fn scale_replica_set_and_record_event(
        &mut self,
        rs: &ReplicaSet,
        new_scale: i32,
    ) -> Result<(bool, ReplicaSet)> {
        if rs_replicas(rs) == new_scale {
            return Ok((false, rs.clone()));
        }
        let op = if rs_replicas(rs) < new_scale { "up" } else { "down" };
        self.scale_replica_set(rs, new_scale, op).await
    }

    /// Sets a ReplicaSet's size and replica annotations, recording ScalingReplicaSet
    /// when the size changed.
    pub(super) async fn scale_replica_set(
        &mut self,
        rs: &ReplicaSet,
        new_scale: i32,
        operation: &str,
    ) -> Result<(bool, ReplicaSet)> {
        let desired = replicas(&self.d);
        let max = desired + max_surge(&self.d);
        let size_changes = rs_replicas(rs) != new_scale;
        if !size_changes && !replicas_annotations_need_update(rs, desired, max) {
            return Ok((false, rs.clone()));
        }
        let old_scale = rs_replicas(rs);
        let mut copy = rs.clone();
        set_rs_replicas(&mut copy, new_scale);
        set_replicas_annotations(&mut copy, desired, max);
        let updated = self.update_rs(&copy).await?;
        if size_changes {
            let msg = format!(
                "Scaled {operation} replica set {} from {old_scale} to {new_scale}",
                updated.name_any()
            );
            self.event(EventType::Normal, "ScalingReplicaSet", &msg).await;
        }
        Ok((size_changes, updated))
    }

    /// Deletes the oldest old ReplicaSets beyond `revisionHistoryLimit`, only those
    /// fully scaled down and observed so.
    pub(super) async fn cleanup_deployment(&mut self, old: &[ReplicaSet]) -> Result<()> {
        if !has_revision_history_limit(&self.d) {
            return Ok(());
        }
        let mut cleanable: Vec<&ReplicaSet> =
            old.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).collect();
        let diff = cleanable.len() as i64 - i64::from(revision_history_limit(&self.d));
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| by_revision(a, b));
        for rs in cleanable.into_iter().take(diff as usize) {
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if rs_status_replicas(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
                || rs.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            match self.replica_sets().delete(&rs.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if api_is(&e, "NotFound", 404) || api_is(&e, "", 404) => {}
                Err(e) => return Err(Error::Kube(e)),
            }
        }
        Ok(())
    }

    /// Writes the status the ReplicaSets give, if it differs.
    pub(super) async fn sync_deployment_status(
        &mut self,
        all: &[ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<()> {
        let status = calculate_status(all, new_rs, &self.d, self.now());
        if normalized(&self.d.status.clone().unwrap_or_default()) == status {
            return Ok(());
        }
        self.d.status = Some(status);
        self.update_deployment_status().await
    }

    /// Whether `spec.replicas` changed since the active ReplicaSets were sized (their
    /// desired-replicas annotation disagrees).
    pub(super) async fn is_scaling_event(&mut self) -> Result<bool> {
        let (new_rs, old) = self.get_all_replica_sets_and_sync_revision(false).await?;
        let want = replicas(&self.d);
        Ok(active(&all_of(&old, new_rs.as_ref()))
            .iter()
            .any(|rs| desired_replicas_annotation(rs).is_some_and(|d| d != want)))
    }

    /// Marks pausing and resuming in the Progressing condition (Unknown), so time spent
    /// paused does not count against the progress deadline.
    pub(super) async fn check_paused_conditions(&mut self) -> Result<()> {
        if !has_progress_deadline(&self.d) {
            return Ok(());
        }
        let cond = get_condition(self.d.status.as_ref(), PROGRESSING);
        if cond.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
            return Ok(());
        }
        let paused_cond = cond.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
        let now = self.now();
        let c = if paused(&self.d) && !paused_cond {
            new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", now)
        } else if !paused(&self.d) && paused_cond {
            new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed", now)
        } else {
            return Ok(());
        };
        set_condition(self.d.status.get_or_insert_with(Default::default), c);
        self.update_deployment_status().await
    }

    /// The sync of a paused Deployment or of a scaling event: scale, clean up history
    /// when paused, write the status.
    pub(super) async fn sync(&mut self) -> Result<()> {
        let (new_rs, old) = self.get_all_replica_sets_and_sync_revision(false).await?;
        self.scale(new_rs.as_ref(), &old).await?;
        if paused(&self.d) && super::rollback::rollback_to(&self.d).is_none() {
            self.cleanup_deployment(&old).await?;
        }
        let all = all_of(&old, new_rs.as_ref());
        self.sync_deployment_status(&all, new_rs.as_ref()).await
    }

    /// Only the status (a Deployment being deleted).
    pub(super) async fn sync_status_only(&mut self) -> Result<()> {
        let (new_rs, old) = self.get_all_replica_sets_and_sync_revision(false).await?;
        let all = all_of(&old, new_rs.as_ref());
        self.sync_deployment_status(&all, new_rs.as_ref()).await
    }
}
