//! The registry: every resource the server serves, described once (names, scope,
//! subresources, strategy, printer), for built-in kinds and custom resources alike.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::strategy::Strategy;

/// Where the scale subresource finds replicas and the selector (JSON paths, dotted).
#[derive(Clone, Debug)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    /// A path to a string selector (CRDs) or `None`.
    pub label_selector: Option<String>,
    /// For built-in workloads: the path of a `metav1.LabelSelector` to print as a string.
    pub selector_object: Option<String>,
}

/// One column of a custom resource's `additionalPrinterColumns`.
#[derive(Clone, Debug)]
pub struct CustomColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// How a resource renders as a `Table`.
#[derive(Clone)]
pub enum Printer {
    Builtin(&'static printers::Printer),
    Custom(Vec<CustomColumn>),
    Default,
}

/// Schema knowledge used for unknown-field detection and strategic merge patches.
#[derive(Clone)]
pub enum Schema {
    /// A built-in kind: its definition name in the OpenAPI document.
    Definition(String),
    /// A custom resource's structural schema (OpenAPI v3, as written in the CRD).
    Structural(Arc<Value>),
    /// Anything goes (`x-kubernetes-preserve-unknown-fields` at the root, or no schema).
    None,
}

/// One resource as served at one group/version.
pub struct Resource {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// The verbs discovery advertises.
    pub verbs: Vec<&'static str>,
    pub status_subresource: bool,
    pub scale: Option<ScalePaths>,
    /// Whether `metadata.generation` is kept (set to 1, bumped on spec change).
    pub tracks_generation: bool,
    /// Where and how objects are stored (shared by all versions of the resource).
    pub storage: Arc<StorageInfo>,
    pub strategy: Arc<dyn Strategy>,
    pub printer: Printer,
    pub schema: Schema,
    /// The kind's definition name to expose in OpenAPI (built-ins) for discovery.
    pub definition: Option<String>,
    /// Adds the kind's schema to an OpenAPI generator (built-ins).
    pub schema_fn: Option<crate::builtin::SchemaFn>,
    /// Extra subresources discovery lists (`pods/log`, `pods/binding`, ...), verbs included.
    pub extra_subresources: Vec<(&'static str, &'static str, Vec<&'static str>)>,
    /// The syntax rule object names follow.
    pub name_rule: apimachinery::validation::NameRule,
    /// Whether a PUT to a missing object creates it.
    pub allow_create_on_update: bool,
    /// Whether delete returns the deleted object (true) or a `Status` (false).
    pub return_deleted_object: bool,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// "pods" or "deployments.apps".
    pub fn qualified(&self) -> String {
        crate::error::qualified_resource(&self.group, &self.plural)
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: &str, name: &str) -> String {
        self.storage.key(namespace, name)
    }
}

/// How one resource is stored: its key prefix and storage version.
pub struct StorageInfo {
    pub group: String,
    pub plural: String,
    pub namespaced: bool,
    /// The version objects are written in.
    pub storage_version: String,
    /// `/registry/<group or core>/<plural>/`.
    pub prefix: String,
}

impl StorageInfo {
    pub fn new(group: &str, plural: &str, namespaced: bool, storage_version: &str) -> Self {
        let g = if group.is_empty() { "core" } else { group };
        Self {
            group: group.into(),
            plural: plural.into(),
            namespaced,
            storage_version: storage_version.into(),
            prefix: format!("/registry/{g}/{plural}/"),
        }
    }

    pub fn key(&self, namespace: &str, name: &str) -> String {
        if self.namespaced {
            format!("{}{namespace}/{name}", self.prefix)
        } else {
            format!("{}{name}", self.prefix)
        }
    }

    /// The prefix of one namespace's objects, or of all objects.
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.prefix),
            _ => self.prefix.clone(),
        }
    }
}

/// An API group as discovery shows it: its versions in preference order.
#[derive(Clone, Debug, Default)]
pub struct GroupInfo {
    pub name: String,
    pub versions: Vec<String>,
}

/// Every resource served, by group, version and plural.
#[derive(Default)]
pub struct Registry {
    inner: RwLock<Inner>,
    /// Bumped on every change, so derived documents (discovery, OpenAPI) know to rebuild.
    generation: AtomicU64,
}

#[derive(Default)]
struct Inner {
    resources: BTreeMap<(String, String, String), Arc<Resource>>,
    /// Group order as discovery lists it (built-ins first, then custom groups).
    groups: Vec<GroupInfo>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// A number that changes whenever the set of served resources changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Adds (or replaces) a resource; the version is appended to its group's versions.
    pub fn add(&self, r: Resource) -> Arc<Resource> {
        let r = Arc::new(r);
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match inner.groups.iter_mut().find(|g| g.name == r.group) {
            Some(g) => {
                if !g.versions.contains(&r.version) {
                    g.versions.push(r.version.clone());
                }
            }
            None => inner.groups.push(GroupInfo { name: r.group.clone(), versions: vec![r.version.clone()] }),
        }
        inner.resources.insert((r.group.clone(), r.version.clone(), r.plural.clone()), r.clone());
        drop(inner);
        self.changed();
        r
    }

    /// Sets the version order of a group (first = preferred), e.g. for CRDs.
    pub fn set_group_versions(&self, group: &str, versions: Vec<String>) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match inner.groups.iter_mut().find(|g| g.name == group) {
            Some(g) => g.versions = versions,
            None => inner.groups.push(GroupInfo { name: group.into(), versions }),
        }
        drop(inner);
        self.changed();
    }

    /// Removes every version of a resource; drops its group when it becomes empty.
    pub fn remove(&self, group: &str, plural: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.resources.retain(|(g, _, p), _| !(g == group && p == plural));
        let still: Vec<String> =
            inner.resources.keys().filter(|(g, _, _)| g == group).map(|(_, v, _)| v.clone()).collect();
        if let Some(gi) = inner.groups.iter_mut().find(|g| g.name == group) {
            gi.versions.retain(|v| still.contains(v));
        }
        inner.groups.retain(|g| !g.versions.is_empty());
        drop(inner);
        self.changed();
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.resources.get(&(group.to_string(), version.to_string(), plural.to_string())).cloned()
    }

    /// The resource of a group/version/kind.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<Resource>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.resources.values().find(|r| r.group == group && r.version == version && r.kind == kind).cloned()
    }

    /// The preferred version's resource of a group/plural.
    pub fn preferred(&self, group: &str, plural: &str) -> Option<Arc<Resource>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let g = inner.groups.iter().find(|g| g.name == group)?;
        g.versions
            .iter()
            .find_map(|v| inner.resources.get(&(group.to_string(), v.clone(), plural.to_string())).cloned())
    }

    pub fn groups(&self) -> Vec<GroupInfo> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).groups.clone()
    }

    /// The resources of one group/version, in plural order.
    pub fn resources_of(&self, group: &str, version: &str) -> Vec<Arc<Resource>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.resources.values().filter(|r| r.group == group && r.version == version).cloned().collect()
    }

    pub fn all(&self) -> Vec<Arc<Resource>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).resources.values().cloned().collect()
    }

    /// Every distinct storage, once.
    pub fn storages(&self) -> Vec<Arc<StorageInfo>> {
        let mut out: Vec<Arc<StorageInfo>> = Vec::new();
        for r in self.all() {
            if !out.iter().any(|s| Arc::ptr_eq(s, &r.storage)) {
                out.push(r.storage.clone());
            }
        }
        out
    }
}
