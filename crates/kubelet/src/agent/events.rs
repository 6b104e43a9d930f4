//! Events the node agent records, shaped as the kubelet's: source component `kubelet` on
//! host `<node>`, reporting instance `<node>`, container events carrying the container's
//! `fieldPath` (`spec.containers{web}`), and repeats of one event (same object, field
//! path, type, reason and message within ten minutes) folded into a single Event whose
//! `count` and `lastTimestamp` grow, which `kubectl describe` shows as `(x3 over 2m)`.
//! Failures to record are logged and never fail the caller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::Clock;

/// The component name events carry, as the kubelet's.
pub const COMPONENT: &str = "kubelet";

/// How long identical events are folded into one.
const AGGREGATION_WINDOW: SignedDuration = SignedDuration::from_secs(600);

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    kind: String,
    name: String,
    uid: String,
    field_path: String,
    type_: EventType,
    reason: String,
    message: String,
}

#[derive(Clone, Debug)]
struct Seen {
    event: String,
    count: i32,
    last: Timestamp,
}

/// Writes the node agent's Events. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    node: String,
    clock: Arc<dyn Clock>,
    seen: Arc<Mutex<HashMap<Key, Seen>>>,
}

/// The `fieldPath` of a container in a pod, as event references and probes use it.
pub fn container_field_path(pod: &Pod, name: &str) -> String {
    let spec = pod.spec.as_ref();
    let init =
        spec.and_then(|s| s.init_containers.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.name == name));
    if init { format!("spec.initContainers{{{name}}}") } else { format!("spec.containers{{{name}}}") }
}

fn pod_reference(pod: &Pod, field_path: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path,
    }
}

impl Recorder {
    /// A recorder for the node agent of `node`.
    pub fn new(client: Client, node: &str, clock: Arc<dyn Clock>) -> Self {
        Self { client, node: node.to_owned(), clock, seen: Arc::default() }
    }

    /// Records an event about a pod (`container` names one of its containers, for
    /// container events).
    pub async fn pod(&self, pod: &Pod, container: Option<&str>, t: EventType, reason: &str, message: &str) {
        let field_path = container.map(|c| container_field_path(pod, c));
        self.record(pod_reference(pod, field_path), t, reason, message).await;
    }

    /// Records an event about this node. The kubelet refers to its node by name, with the
    /// name as uid too.
    pub async fn node(&self, t: EventType, reason: &str, message: &str) {
        let reference = ObjectReference {
            kind: Some("Node".into()),
            name: Some(self.node.clone()),
            uid: Some(self.node.clone()),
            ..Default::default()
        };
        self.record(reference, t, reason, message).await;
    }

    async fn record(&self, regarding: ObjectReference, t: EventType, reason: &str, message: &str) {
        let namespace =
            regarding.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let now = self.clock.now();
        let key = Key {
            namespace: namespace.clone(),
            kind: regarding.kind.clone().unwrap_or_default(),
            name: regarding.name.clone().unwrap_or_default(),
            uid: regarding.uid.clone().unwrap_or_default(),
            field_path: regarding.field_path.clone().unwrap_or_default(),
            type_: t,
            reason: reason.to_owned(),
            message: message.to_owned(),
        };
        let repeat = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() > 4096 {
                seen.retain(|_, s| now.duration_since(s.last) < AGGREGATION_WINDOW);
            }
            match seen.get_mut(&key) {
                Some(s) if now.duration_since(s.last) < AGGREGATION_WINDOW => {
                    s.count += 1;
                    s.last = now;
                    Some((s.event.clone(), s.count))
                }
                _ => None,
            }
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Some((name, count)) = repeat {
            let patch = json!({"count": count, "lastTimestamp": Time(now)});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => return,
                Err(error) => {
                    tracing::debug!(event = %name, %error, "updating a repeated event failed; recording a new one");
                }
            }
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.clone().unwrap_or_default(),
            now.as_nanosecond().max(0) as u128 ^ u128::from(rand::random::<u16>())
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: regarding,
            reason: Some(reason.to_owned()),
            message: Some(message.to_owned()),
            type_: Some(t.as_str().to_owned()),
            source: Some(EventSource { component: Some(COMPONENT.into()), host: Some(self.node.clone()) }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            reporting_component: Some(COMPONENT.into()),
            reporting_instance: Some(self.node.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.insert(key, Seen { event: name, count: 1, last: now });
            }
            Err(error) => tracing::debug!(reason, %error, "recording an event failed"),
        }
    }
}
