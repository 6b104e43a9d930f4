//! Claiming children by controllerRef, as upstream's `ControllerRefManager`: an owner keeps
//! what it controls and still selects, releases what it controls but no longer selects,
//! and adopts matching orphans (after re-reading itself from the API server, so a deleted
//! and re-created owner of the same name never adopts on the old one's behalf).

use std::fmt::Debug;
use std::sync::Arc;

use apimachinery::labels::Selector;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::OnceCell;

use crate::runtime::controller_of;
use crate::{Error, Result};

/// Claims children of one owner.
pub struct RefManager<'a, O> {
    client: Client,
    owner: &'a O,
    selector: &'a Selector,
    can_adopt: OnceCell<Result<(), String>>,
}

impl<'a, O> RefManager<'a, O>
where
    O: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    pub fn new(client: Client, owner: &'a O, selector: &'a Selector) -> Self {
        Self { client, owner, selector, can_adopt: OnceCell::new() }
    }

    fn owner_uid(&self) -> &str {
        self.owner.meta().uid.as_deref().unwrap_or_default()
    }

    fn owner_deleting(&self) -> bool {
        self.owner.meta().deletion_timestamp.is_some()
    }

    /// Re-reads the owner once: adoption is allowed only if it still exists with the same
    /// UID and is not being deleted.
    async fn check_can_adopt(&self) -> Result<()> {
        let res = self
            .can_adopt
            .get_or_init(|| async {
                let ns = self.owner.meta().namespace.clone().unwrap_or_default();
                let name = self.owner.meta().name.clone().unwrap_or_default();
                let api: Api<O> = Api::namespaced(self.client.clone(), &ns);
                let fresh = api.get(&name).await.map_err(|e| format!("can't recheck {ns}/{name}: {e}"))?;
                let uid = fresh.meta().uid.clone().unwrap_or_default();
                if uid != self.owner_uid() {
                    return Err(format!(
                        "original {} {ns}/{name} is gone: got uid {uid}, wanted {}",
                        O::kind(&()),
                        self.owner_uid()
                    ));
                }
                if let Some(t) = &fresh.meta().deletion_timestamp {
                    return Err(format!("{ns}/{name} has just been deleted at {}", t.0));
                }
                Ok(())
            })
            .await;
        res.clone().map_err(Error::Invalid)
    }

    /// The objects this owner controls after claiming: those it already controls and
    /// still matches (`selector` and `filter`), plus orphans it adopted. Errors of
    /// individual adoptions or releases are returned beside the claimed list.
    pub async fn claim<K>(
        &self,
        objects: Vec<Arc<K>>,
        filter: impl Fn(&K) -> bool,
    ) -> (Vec<Arc<K>>, Vec<Error>)
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    {
        let mut claimed = Vec::new();
        let mut errors = Vec::new();
        let owner_ns = self.owner.meta().namespace.clone().unwrap_or_default();
        for obj in objects {
            let matches = |o: &K| {
                self.selector.matches(o.meta().labels.as_ref().unwrap_or(&Default::default())) && filter(o)
            };
            if let Some(cref) = controller_of(obj.as_ref()) {
                if cref.uid != self.owner_uid() {
                    continue;
                }
                if matches(&obj) {
                    claimed.push(obj);
                    continue;
                }
                if self.owner_deleting() {
                    continue;
                }
                if let Err(e) = self.release(obj.as_ref()).await {
                    errors.push(e);
                }
                continue;
            }
            if self.owner_deleting() || !matches(&obj) || obj.meta().deletion_timestamp.is_some() {
                continue;
            }
            if obj.namespace().unwrap_or_default() != owner_ns {
                continue;
            }
            match self.adopt(obj.as_ref()).await {
                Ok(true) => claimed.push(obj),
                Ok(false) => {}
                Err(e) => errors.push(e),
            }
        }
        (claimed, errors)
    }

    /// Makes the owner the object's controller. `Ok(false)` when the object is gone.
    async fn adopt<K>(&self, obj: &K) -> Result<bool>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    {
        self.check_can_adopt().await?;
        let patch = json!({
            "metadata": {
                "ownerReferences": [crate::runtime::controller_ref(self.owner)],
                "uid": obj.meta().uid,
            }
        });
        let api: Api<K> = Api::namespaced(self.client.clone(), &obj.namespace().unwrap_or_default());
        match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the owner's reference from the object; an object that is gone or can no
    /// longer be changed counts as released.
    async fn release<K>(&self, obj: &K) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    {
        let patch = json!({
            "metadata": {
                "ownerReferences": [{"$patch": "delete", "uid": self.owner_uid()}],
                "uid": obj.meta().uid,
            }
        });
        let api: Api<K> = Api::namespaced(self.client.clone(), &obj.namespace().unwrap_or_default());
        match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 422 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
