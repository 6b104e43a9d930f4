//! The controller runtime: shared informers, leader election, events, expectations,
//! owner references and a clock.

pub mod events;
pub mod expectations;
pub mod informer;
pub mod leader;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

pub use events::{EventType, Recorder};
pub use expectations::Expectations;
pub use informer::{Informer, Informers};

/// The controller ownerReference an owner puts on what it creates.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The ownerReference of `obj` that is its controller, if any.
pub fn controller_of<K: ResourceExt>(obj: &K) -> Option<&OwnerReference> {
    obj.owner_references().iter().find(|r| r.controller == Some(true))
}

/// Whether an object's labels satisfy a selector, without copying the labels.
pub fn labels_match(
    selector: &apimachinery::labels::Selector,
    labels: &Option<std::collections::BTreeMap<String, String>>,
) -> bool {
    match labels {
        Some(l) => selector.matches(l),
        None => selector.matches(&std::collections::BTreeMap::new()),
    }
}

/// `namespace/name` of an object (or `name` for cluster-scoped ones).
pub fn key_of<K: ResourceExt>(obj: &K) -> String {
    match obj.namespace() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", obj.name_any()),
        _ => obj.name_any(),
    }
}

/// Current time; a trait so tests can pin it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> jiff::Timestamp;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}
