//! Events, as kubectl describe shows them: core/v1 Events about an object, with a reason,
//! a message and the reporting component.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Writes Events on behalf of one component.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
}

/// A reference to an object, for an Event's `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        name: obj.meta().name.clone(),
        namespace: obj.meta().namespace.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        ..Default::default()
    }
}

impl Recorder {
    pub fn new(client: Client, component: &str) -> Self {
        Self { client, component: component.into() }
    }

    /// Records an event about `regarding`; failures are logged, never fatal.
    pub async fn record(&self, regarding: &ObjectReference, type_: EventType, reason: &str, message: &str) {
        let ns = regarding.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let now = jiff::Timestamp::now();
        let name = format!(
            "{}.{:x}",
            regarding.name.clone().unwrap_or_default(),
            now.as_nanosecond() as u64 ^ rand::random::<u32>() as u64
        );
        let ev = Event {
            metadata: ObjectMeta { name: Some(name), namespace: Some(ns.clone()), ..Default::default() },
            involved_object: regarding.clone(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(match type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            source: Some(EventSource { component: Some(self.component.clone()), host: None }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            event_time: Some(MicroTime(now)),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            action: Some(reason.into()),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        if let Err(e) = api.create(&PostParams::default(), &ev).await {
            tracing::debug!(reason, object = ?regarding.name, error = %e, "recording an event failed");
        }
    }

    /// Records an event about a typed object.
    pub async fn publish<K: Resource<DynamicType = ()> + ResourceExt>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        message: &str,
    ) {
        self.record(&reference(obj), type_, reason, message).await;
    }
}
