//! Writes a StatefulSet makes for its members: claims before pods, pod creates, identity
//! and storage repairs, deletes, and claim ownerReferences for the retention policy, each
//! recorded as an Event on the set with upstream's reasons and messages
//! (`SuccessfulCreate` "create Pod web-0 in StatefulSet web successful", ...).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use super::identity::{self, set_name};
use crate::history;
use crate::runtime::{EventType, Recorder};
use crate::{Error, Result};

/// Pod and claim writes of the StatefulSet controller.
pub struct PodControl {
    pub client: Client,
    pub recorder: Recorder,
    pub claims: Store<PersistentVolumeClaim>,
}

fn title(verb: &str) -> String {
    let mut c = verb.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Whether a reconcile error is the API server's AlreadyExists.
pub fn is_already_exists(e: &Error) -> bool {
    matches!(e, Error::Kube(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists")
}

impl PodControl {
    fn claim(&self, ns: &str, name: &str) -> Option<std::sync::Arc<PersistentVolumeClaim>> {
        self.claims.get(&ObjectRef::new(name).within(ns))
    }

    async fn pod_event(&self, verb: &str, set: &StatefulSet, pod: &Pod, err: Option<String>) {
        let pod_name = pod.metadata.name.as_deref().unwrap_or("");
        match err {
            None => {
                let msg = format!("{verb} Pod {pod_name} in StatefulSet {} successful", set_name(set));
                self.recorder
                    .publish(set, EventType::Normal, &format!("Successful{}", title(verb)), &msg)
                    .await;
            }
            Some(e) => {
                let msg = format!("{verb} Pod {pod_name} in StatefulSet {} failed error: {e}", set_name(set));
                self.recorder.publish(set, EventType::Warning, &format!("Failed{}", title(verb)), &msg).await;
            }
        }
    }

    async fn claim_event(&self, verb: &str, set: &StatefulSet, pod: &Pod, claim: &str, err: Option<String>) {
        let pod_name = pod.metadata.name.as_deref().unwrap_or("");
        match err {
            None => {
                let msg =
                    format!("{verb} Claim {claim} Pod {pod_name} in StatefulSet {} success", set_name(set));
                self.recorder
                    .publish(set, EventType::Normal, &format!("Successful{}", title(verb)), &msg)
                    .await;
            }
            Some(e) => {
                let msg = format!(
                    "{verb} Claim {claim} for Pod {pod_name} in StatefulSet {} failed error: {e}",
                    set_name(set)
                );
                self.recorder.publish(set, EventType::Warning, &format!("Failed{}", title(verb)), &msg).await;
            }
        }
    }

    /// Creates whichever of the pod's claims the cache does not have. A claim being
    /// deleted is an error (the pod must wait for it to go).
    pub async fn create_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        let mut errs = Vec::new();
        for (_, claim) in identity::claims_for(set, identity::ordinal_of(pod)) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            match self.claim(&ns, &name) {
                None => match api.create(&PostParams::default(), &claim).await {
                    Ok(_) => self.claim_event("create", set, pod, &name, None).await,
                    Err(e) => {
                        let msg = format!("failed to create PVC {name}: {}", history::message(&e));
                        if !is_code(&e, 409) {
                            self.claim_event("create", set, pod, &name, Some(history::message(&e))).await;
                        }
                        errs.push(msg);
                    }
                },
                Some(existing) if existing.metadata.deletion_timestamp.is_some() => {
                    errs.push(format!("pvc {name} is being deleted"));
                }
                Some(_) => {}
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(Error::Invalid(errs.join("; "))) }
    }

    /// Creates the pod's claims, then the pod. AlreadyExists is returned without an event
    /// (the cache is behind); otherwise an Event records the outcome.
    pub async fn create_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        if let Err(e) = self.create_claims(set, pod).await {
            self.pod_event("create", set, pod, Some(history::error_text(&e))).await;
            return Err(e);
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &set.namespace().unwrap_or_default());
        match api.create(&PostParams::default(), pod).await {
            Ok(_) => {}
            Err(e) if is_code(&e, 409) => return Err(e.into()),
            Err(e) => {
                self.pod_event("create", set, pod, Some(history::message(&e))).await;
                return Err(e.into());
            }
        }
        // Claims of a pod that was just created get their set reference now.
        if let Err(e) = self.update_claims_for_retention(set, pod).await {
            self.pod_event("update", set, pod, Some(history::error_text(&e))).await;
            return Err(e);
        }
        self.pod_event("create", set, pod, None).await;
        Ok(())
    }

    /// Creates claims a pending pod still lacks and sets their references as far as the
    /// retention policy allows at this point.
    pub async fn create_missing_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        self.create_claims(set, pod).await?;
        if let Err(e) = self.update_claims_for_retention(set, pod).await {
            self.pod_event("update", set, pod, Some(history::error_text(&e))).await;
            return Err(e);
        }
        Ok(())
    }

    /// Brings a pod's identity, storage and claim references in line with the set,
    /// writing the pod only if its identity or storage changed. Conflicts are retried on
    /// a fresh copy of the pod.
    pub async fn update_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut pod = pod.clone();
        let mut attempted = false;
        let mut result = Ok(());
        for attempt in 0..5 {
            let mut consistent = true;
            if !identity::identity_matches(set, &pod) {
                identity::update_identity(set, &mut pod);
                consistent = false;
            }
            if !identity::storage_matches(set, &pod) {
                identity::update_storage(set, &mut pod);
                consistent = false;
                if let Err(e) = self.create_claims(set, &pod).await {
                    self.pod_event("update", set, &pod, Some(history::error_text(&e))).await;
                    return Err(e);
                }
            }
            if !self.claims_match_retention(set, &pod)? {
                if let Err(e) = self.update_claims_for_retention(set, &pod).await {
                    self.pod_event("update", set, &pod, Some(history::error_text(&e))).await;
                    return Err(e);
                }
                consistent = false;
            }
            if consistent {
                result = Ok(());
                break;
            }
            attempted = true;
            match api.replace(&pod.name_any(), &PostParams::default(), &pod).await {
                Ok(_) => {
                    result = Ok(());
                    break;
                }
                Err(e) if is_code(&e, 409) && attempt < 4 => match api.get(&pod.name_any()).await {
                    Ok(fresh) => pod = fresh,
                    Err(ge) => {
                        result = Err(Error::from(ge));
                        break;
                    }
                },
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        if attempted {
            match &result {
                Ok(()) => self.pod_event("update", set, &pod, None).await,
                Err(e) => self.pod_event("update", set, &pod, Some(history::error_text(e))).await,
            }
        }
        result
    }

    /// Deletes a member pod and records the outcome.
    pub async fn delete_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &set.namespace().unwrap_or_default());
        match api.delete(&pod.name_any(), &DeleteParams::default()).await {
            Ok(_) => {
                self.pod_event("delete", set, pod, None).await;
                Ok(())
            }
            Err(e) => {
                self.pod_event("delete", set, pod, Some(history::message(&e))).await;
                Err(e.into())
            }
        }
    }

    /// Whether every existing claim of the pod has the references the retention policy
    /// asks for (missing claims are picked up later).
    pub fn claims_match_retention(&self, set: &StatefulSet, pod: &Pod) -> Result<bool> {
        let ns = set.namespace().unwrap_or_default();
        for (_, claim) in identity::claims_for(set, identity::ordinal_of(pod)) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            if let Some(existing) = self.claim(&ns, &name)
                && !identity::is_claim_owner_up_to_date(&existing, set, pod)
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Rewrites the references of the pod's claims for the retention policy, warning with
    /// `ConflictingController` when another controller owns a claim.
    pub async fn update_claims_for_retention(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);
        for (_, claim) in identity::claims_for(set, identity::ordinal_of(pod)) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            let Some(existing) = self.claim(&ns, &name) else { continue };
            if identity::has_unexpected_controller(&existing, set, pod) {
                let msg = format!(
                    "PersistentVolumeClaim {name} has a conflicting OwnerReference that acts as a manging controller, the retention policy is ignored for this claim"
                );
                self.recorder.publish(set, EventType::Warning, "ConflictingController", &msg).await;
            }
            if !identity::is_claim_owner_up_to_date(&existing, set, pod) {
                let mut updated = (*existing).clone();
                identity::update_claim_owner_refs(&mut updated, set, pod);
                api.replace(&name, &PostParams::default(), &updated).await.map_err(|e| {
                    Error::Invalid(format!("could not update claim {name} for delete policy ownerRefs: {e}"))
                })?;
            }
        }
        Ok(())
    }

    /// Whether a claim of this (not yet created) pod still belongs to an earlier pod of the
    /// same name; with `whenScaled: Delete` the garbage collector is about to delete it,
    /// so the pod must wait.
    pub fn claim_is_stale(&self, set: &StatefulSet, pod: &Pod) -> bool {
        if identity::retention_policy(set).1 == identity::Retention::Retain {
            return false;
        }
        let ns = set.namespace().unwrap_or_default();
        identity::claims_for(set, identity::ordinal_of(pod)).iter().any(|(_, claim)| {
            let name = claim.metadata.name.as_deref().unwrap_or("");
            self.claim(&ns, name).is_some_and(|c| identity::has_stale_owner_ref(&c, pod))
        })
    }
}
