//! Expectations of the Job controller: the pod creates, deletes and finalizer
//! removals it has issued but not yet seen in its pod cache. A Job is not managed
//! again until the cache has caught up (or five minutes pass), so a slow watch never
//! makes it create a pod twice; counted pods are not counted again while the cache
//! still shows their finalizer.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};

use super::pods::{has_tracking_finalizer, uid};

/// After this long, unmet create/delete expectations are forgotten.
const TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Pending {
    /// (namespace, name) of created pods not yet in the cache.
    creates: HashSet<(String, String)>,
    /// (namespace, name, uid) of deleted pods the cache still shows undeleted.
    deletes: HashSet<(String, String, String)>,
    since: Option<Instant>,
    /// UIDs of pods whose tracking finalizer was removed, still seen with it.
    finalizers: HashSet<String>,
}

/// Expectations per Job key (`namespace/name`).
#[derive(Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn with<R>(&self, key: &str, f: impl FnOnce(&mut Pending) -> R) -> R {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        f(m.entry(key.to_string()).or_default())
    }

    /// A pod was created; the Job waits until the cache shows it.
    pub fn created(&self, key: &str, namespace: &str, name: &str) {
        self.with(key, |p| {
            p.creates.insert((namespace.to_string(), name.to_string()));
            p.since = Some(Instant::now());
        });
    }

    /// A pod was deleted; the Job waits until the cache shows it gone or terminating.
    pub fn deleted(&self, key: &str, namespace: &str, name: &str, pod_uid: &str) {
        self.with(key, |p| {
            p.deletes.insert((namespace.to_string(), name.to_string(), pod_uid.to_string()));
            p.since = Some(Instant::now());
        });
    }

    /// Whether every create and delete issued for `key` is visible in `pods`.
    pub fn satisfied(&self, key: &str, pods: &Store<Pod>) -> bool {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = m.get_mut(key) else { return true };
        p.creates.retain(|(ns, name)| pods.get(&ObjectRef::new(name).within(ns)).is_none());
        p.deletes.retain(|(ns, name, pod_uid)| {
            pods.get(&ObjectRef::new(name).within(ns))
                .is_some_and(|pod| uid(&pod) == pod_uid && pod.metadata.deletion_timestamp.is_none())
        });
        if p.creates.is_empty() && p.deletes.is_empty() {
            p.since = None;
            return true;
        }
        p.since.is_none_or(|s| s.elapsed() > TTL)
    }

    /// Finalizer removals were issued for these pods.
    pub fn finalizers_removed(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        self.with(key, |p| p.finalizers.extend(uids));
    }

    /// A finalizer removal failed, so it will never be observed.
    pub fn finalizer_removal_failed(&self, key: &str, pod_uid: &str) {
        self.with(key, |p| {
            p.finalizers.remove(pod_uid);
        });
    }

    /// The UIDs whose finalizer removal the cache (`pods`, the Job's pods) does not
    /// show yet; removals it shows are forgotten.
    pub fn pending_finalizer_removals(&self, key: &str, pods: &[std::sync::Arc<Pod>]) -> HashSet<String> {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = m.get_mut(key) else { return HashSet::new() };
        let still: HashSet<&str> =
            pods.iter().filter(|p| has_tracking_finalizer(p)).map(|p| uid(p)).collect();
        p.finalizers.retain(|u| still.contains(u.as_str()));
        p.finalizers.clone()
    }

    /// Forgets a deleted Job.
    pub fn forget(&self, key: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}
