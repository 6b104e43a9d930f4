//! What the collector's workers do (upstream `attemptToDeleteItem`,
//! `processDeletingDependentsItem`, `attemptToOrphanWorker`): every decision reads the
//! live object and its owners from the API server, never only the graph.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::PartialObjectMeta;
use serde_json::{Value, json};

use super::graph::{Change, FOREGROUND, Identity, Node, ORPHAN};
use super::workqueue::Outcome;
use super::{Error, GarbageCollector};

/// How often a write that lost a race is retried.
const CONFLICT_RETRIES: usize = 5;
/// How long an owner waits when its dependents may not all be in the graph yet.
const NOT_SYNCED_RETRY: Duration = Duration::from_secs(1);

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl GarbageCollector {
    fn kube_error(identity: &Identity, source: kube::Error) -> Error {
        Error::Kube { identity: identity.to_string(), source }
    }

    /// A dynamic API for the object `identity` names.
    fn api_for(&self, identity: &Identity) -> Result<Api<DynamicObject>, Error> {
        let resources = self.resources();
        let Some(r) = resources.find(&identity.api_version, &identity.kind) else {
            return Err(Error::Mapping {
                api_version: identity.api_version.clone(),
                kind: identity.kind.clone(),
            });
        };
        let ar = r.api_resource();
        Ok(if r.namespaced {
            Api::namespaced_with(self.client.clone(), &identity.namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        })
    }

    /// The live object's metadata, or `None` when it does not exist.
    async fn get_object(
        &self,
        identity: &Identity,
    ) -> Result<Option<PartialObjectMeta<DynamicObject>>, Error> {
        let api = self.api_for(identity)?;
        api.get_metadata_opt(&identity.name).await.map_err(|e| Self::kube_error(identity, e))
    }

    /// Processes one item of the attempt-to-delete queue.
    pub(super) async fn attempt_to_delete_worker(&self, uid: &str) -> Outcome {
        let Some(node) = self.snapshot(uid) else { return Outcome::Forget };
        match self.attempt_to_delete_item(&node).await {
            Ok(Some(outcome)) => outcome,
            Ok(None) => {
                if self.snapshot(uid).is_some_and(|n| !n.observed) {
                    // A virtual node whose object exists: check again until a watch shows it.
                    Outcome::Requeue
                } else {
                    Outcome::Forget
                }
            }
            Err(Error::NamespacedOwnerOfClusterScoped(item)) => {
                tracing::info!(%item, "garbage collector: cluster-scoped object refers to a namespaced owner");
                Outcome::Forget
            }
            Err(e) => {
                tracing::debug!(item = %node.identity, error = %e, "garbage collector: error syncing item");
                Outcome::Requeue
            }
        }
    }

    /// Deletes the item if all its owners are gone. `Ok(Some(_))` decides the outcome
    /// outright; `Ok(None)` means done unless the node is still virtual.
    async fn attempt_to_delete_item(&self, item: &Node) -> Result<Option<Outcome>, Error> {
        // Being deleted is a one-way trip; its dependents are handled when it is gone.
        if item.being_deleted && !item.deleting_dependents {
            return Ok(None);
        }
        let latest = match self.get_object(&item.identity).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(item.identity.uid.as_str()) => o,
            _ => {
                self.apply(Change::Delete { identity: item.identity.clone(), virtual_: true });
                return Ok(Some(Outcome::Forget));
            }
        };
        if item.deleting_dependents {
            return self.process_deleting_dependents(item).await.map(Some);
        }
        let owners = latest.metadata.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(None);
        }
        let (solid, dangling, waiting) = self.classify_references(item, &owners).await?;
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(None);
            }
            // Keep the item, but drop the references to owners that are gone or waiting
            // for their dependents (they would wait for this one forever).
            let drop: Vec<String> = dangling.iter().chain(waiting.iter()).map(|r| r.uid.clone()).collect();
            self.patch_owner_references(&item.identity, |refs| {
                refs.into_iter().filter(|r| !drop.contains(&r.uid)).collect()
            })
            .await?;
            return Ok(None);
        }
        if !waiting.is_empty() && !item.dependents.is_empty() {
            let cycle = {
                let graph = self.graph();
                item.dependents.iter().any(|d| graph.get(d).is_some_and(|n| n.deleting_dependents))
            };
            if cycle {
                // An owner and a dependent both wait in foreground: stop blocking the owners.
                self.patch_owner_references(&item.identity, |refs| {
                    refs.into_iter()
                        .map(|mut r| {
                            if r.block_owner_deletion == Some(true) {
                                r.block_owner_deletion = Some(false);
                            }
                            r
                        })
                        .collect()
                })
                .await?;
            }
            self.delete_object(&item.identity, PropagationPolicy::Foreground).await?;
            return Ok(None);
        }
        let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
        let policy = if finalizers.iter().any(|f| f == ORPHAN) {
            PropagationPolicy::Orphan
        } else if finalizers.iter().any(|f| f == FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::debug!(item = %item.identity, ?policy, "garbage collector: deleting an object whose owners are gone");
        self.delete_object(&item.identity, policy).await?;
        Ok(None)
    }

    /// An owner waiting in foreground: finish it when no blocking dependent remains,
    /// else make sure its blocking dependents are being deleted.
    async fn process_deleting_dependents(&self, item: &Node) -> Result<Outcome, Error> {
        if !self.monitors_synced() {
            return Ok(Outcome::RequeueAfter(NOT_SYNCED_RETRY));
        }
        let pending: Vec<(String, bool)> = {
            let graph = self.graph();
            match graph.get(&item.identity.uid) {
                Some(n) => n
                    .blocking_dependents(&graph)
                    .into_iter()
                    .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
                    .collect(),
                None => return Ok(Outcome::Forget),
            }
        };
        if pending.is_empty() {
            tracing::debug!(item = %item.identity, "garbage collector: removing the foregroundDeletion finalizer");
            self.remove_finalizer(&item.identity, FOREGROUND).await?;
            return Ok(Outcome::Forget);
        }
        for (uid, deleting_dependents) in pending {
            if !deleting_dependents {
                self.attempt_to_delete.add(uid);
            }
        }
        Ok(Outcome::Forget)
    }

    /// Sorts references into owners that exist (solid), owners that are gone (dangling)
    /// and owners being deleted in foreground (waiting).
    async fn classify_references(
        &self,
        item: &Node,
        refs: &[OwnerReference],
    ) -> Result<(Vec<OwnerReference>, Vec<OwnerReference>, Vec<OwnerReference>), Error> {
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for r in refs {
            match self.is_dangling(r, item).await? {
                None => dangling.push(r.clone()),
                Some(owner) => {
                    let m = &owner.metadata;
                    let foreground = m.finalizers.as_ref().is_some_and(|f| f.iter().any(|f| f == FOREGROUND));
                    if m.deletion_timestamp.is_some() && foreground {
                        waiting.push(r.clone());
                    } else {
                        solid.push(r.clone());
                    }
                }
            }
        }
        Ok((solid, dangling, waiting))
    }

    /// The live owner a reference names, or `None` when it does not exist (absent, or
    /// present with another uid).
    async fn is_dangling(
        &self,
        r: &OwnerReference,
        item: &Node,
    ) -> Result<Option<PartialObjectMeta<DynamicObject>>, Error> {
        let cluster_key = Identity::of_owner(r, "");
        let namespaced_key = Identity::of_owner(r, &item.identity.namespace);
        {
            let graph = self.graph();
            if graph.absent.has(&cluster_key) || graph.absent.has(&namespaced_key) {
                return Ok(None);
            }
        }
        let resources = self.resources();
        let Some(info) = resources.find(&r.api_version, &r.kind) else {
            return Err(Error::Mapping { api_version: r.api_version.clone(), kind: r.kind.clone() });
        };
        if item.identity.namespace.is_empty() && info.namespaced {
            return Err(Error::NamespacedOwnerOfClusterScoped(item.identity.to_string()));
        }
        let key = if info.namespaced { namespaced_key } else { cluster_key };
        let found = self.get_object(&key).await?;
        match found {
            Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => Ok(Some(o)),
            _ => {
                self.graph().absent.add(key);
                Ok(None)
            }
        }
    }

    async fn delete_object(&self, identity: &Identity, policy: PropagationPolicy) -> Result<(), Error> {
        let api = self.api_for(identity)?;
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions { uid: Some(identity.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&identity.name, &dp).await {
            Ok(_) => Ok(()),
            // Already gone, or replaced by another object of the same name.
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
            Err(e) => Err(Self::kube_error(identity, e)),
        }
    }

    /// Rewrites the object's ownerReferences with `change`, guarded by its uid and
    /// resourceVersion and retried when another write wins the race.
    async fn patch_owner_references(
        &self,
        identity: &Identity,
        change: impl Fn(Vec<OwnerReference>) -> Vec<OwnerReference>,
    ) -> Result<(), Error> {
        let api = self.api_for(identity)?;
        for _ in 0..CONFLICT_RETRIES {
            let Some(latest) = self.get_object(identity).await? else { return Ok(()) };
            if latest.metadata.uid.as_deref() != Some(identity.uid.as_str()) {
                return Ok(());
            }
            let current = latest.metadata.owner_references.clone().unwrap_or_default();
            let wanted = change(current.clone());
            if wanted == current {
                return Ok(());
            }
            let refs = if wanted.is_empty() { Value::Null } else { json!(wanted) };
            let patch = json!({"metadata": {
                "ownerReferences": refs,
                "uid": identity.uid,
                "resourceVersion": latest.metadata.resource_version,
            }});
            match api.patch(&identity.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, 404) => return Ok(()),
                Err(e) if is_status(&e, 409) => continue,
                Err(e) => return Err(Self::kube_error(identity, e)),
            }
        }
        Err(Self::kube_error(identity, conflict_exhausted()))
    }

    /// Removes `finalizer` from the live object, guarded by its resourceVersion.
    async fn remove_finalizer(&self, identity: &Identity, finalizer: &str) -> Result<(), Error> {
        let api = self.api_for(identity)?;
        for _ in 0..CONFLICT_RETRIES {
            let Some(latest) = self.get_object(identity).await? else { return Ok(()) };
            if latest.metadata.uid.as_deref() != Some(identity.uid.as_str()) {
                return Ok(());
            }
            let current = latest.metadata.finalizers.clone().unwrap_or_default();
            if !current.iter().any(|f| f == finalizer) {
                return Ok(());
            }
            let kept: Vec<&String> = current.iter().filter(|f| *f != finalizer).collect();
            let patch = json!({"metadata": {
                "finalizers": if kept.is_empty() { Value::Null } else { json!(kept) },
                "resourceVersion": latest.metadata.resource_version,
            }});
            match api.patch(&identity.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, 404) => return Ok(()),
                Err(e) if is_status(&e, 409) => continue,
                Err(e) => return Err(Self::kube_error(identity, e)),
            }
        }
        Err(Self::kube_error(identity, conflict_exhausted()))
    }

    /// Processes one item of the attempt-to-orphan queue: removes the owner's reference
    /// from every dependent, then its `orphan` finalizer.
    pub(super) async fn attempt_to_orphan_worker(&self, uid: &str) -> Outcome {
        if !self.monitors_synced() {
            return Outcome::RequeueAfter(NOT_SYNCED_RETRY);
        }
        let Some(owner) = self.snapshot(uid) else { return Outcome::Forget };
        let dependents: Vec<Identity> = {
            let graph = self.graph();
            owner.dependents.iter().filter_map(|d| graph.get(d).map(|n| n.identity.clone())).collect()
        };
        let results = futures::future::join_all(dependents.iter().map(|d| {
            self.patch_owner_references(d, |refs| {
                refs.into_iter().filter(|r| r.uid != owner.identity.uid).collect()
            })
        }))
        .await;
        let failed: Vec<String> =
            results.into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect();
        if !failed.is_empty() {
            tracing::warn!(owner = %owner.identity, errors = ?failed, "garbage collector: failed to orphan dependents");
            return Outcome::Requeue;
        }
        match self.remove_finalizer(&owner.identity, ORPHAN).await {
            Ok(()) => Outcome::Forget,
            Err(e) => {
                tracing::warn!(owner = %owner.identity, error = %e, "garbage collector: failed to remove the orphan finalizer");
                Outcome::Requeue
            }
        }
    }
}

fn conflict_exhausted() -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure("the object keeps changing; giving up for now", "Conflict")
            .with_code(409)
            .boxed(),
    )
}
