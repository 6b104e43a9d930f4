//! Pod expectations of a ReplicaSet: the pods it has just created and deleted and not
//! yet seen in the pod cache, tracked by name (creates) and UID (deletes), so a burst of
//! writes is not repeated before the cache catches up. Checked against the cache itself,
//! so a missed watch event cannot wedge an owner, and forgotten after a TTL.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

/// After this long, unmet expectations are dropped (as upstream's five minutes).
pub const TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Pending {
    /// Names of pods created and not yet observed.
    creates: HashSet<String>,
    /// Name -> UID of pods deleted and not yet observed gone or terminating.
    deletes: HashMap<String, String>,
    since: Option<Instant>,
}

/// Expectations per owner key (`namespace/name`).
#[derive(Default)]
pub struct PodExpectations {
    map: Mutex<HashMap<String, Pending>>,
}

/// What the pod cache says about one pod name: its UID and whether it is terminating.
pub struct Seen {
    pub uid: String,
    pub terminating: bool,
}

impl PodExpectations {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Pending>) -> R) -> R {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut m)
    }

    /// Records writes for `key`, dropping expired entries of any owner (owners deleted
    /// while they had expectations are never checked again).
    fn record(&self, key: &str, f: impl FnOnce(&mut Pending)) {
        self.with(|m| {
            m.retain(|_, p| p.since.is_some_and(|s| s.elapsed() <= TTL));
            let p = m.entry(key.to_string()).or_default();
            f(p);
            p.since = Some(Instant::now());
        });
    }

    /// Records pods just created for `key` (their server-assigned names).
    pub fn created(&self, key: &str, names: impl IntoIterator<Item = String>) {
        self.record(key, |p| p.creates.extend(names));
    }

    /// Records pods about to be deleted for `key` (name and UID).
    pub fn deleting(&self, key: &str, pods: impl IntoIterator<Item = (String, String)>) {
        self.record(key, |p| p.deletes.extend(pods));
    }

    /// A delete failed, so its effect will never be observed.
    pub fn delete_failed(&self, key: &str, name: &str) {
        self.with(|m| {
            if let Some(p) = m.get_mut(key) {
                p.deletes.remove(name);
            }
        });
    }

    /// A pod event for the owner `key` was observed: a created pod has shown up, and a
    /// pod shown terminating counts as deleted.
    pub fn observe(&self, key: &str, pod: &Pod) {
        let Some(name) = pod.metadata.name.as_deref() else { return };
        self.with(|m| {
            if let Some(p) = m.get_mut(key) {
                p.creates.remove(name);
                if pod.metadata.deletion_timestamp.is_some() {
                    p.deletes.remove(name);
                }
            }
        });
    }

    /// Whether everything issued for `key` has been seen, judged against the pod cache
    /// through `lookup` (pod name -> what the cache holds). Expired or fulfilled
    /// expectations are dropped.
    pub fn satisfied(&self, key: &str, lookup: impl Fn(&str) -> Option<Seen>) -> bool {
        self.with(|m| {
            let Some(p) = m.get_mut(key) else { return true };
            p.creates.retain(|name| lookup(name).is_none());
            p.deletes.retain(|name, uid| match lookup(name) {
                Some(seen) => seen.uid == *uid && !seen.terminating,
                None => false,
            });
            let expired = p.since.is_none_or(|s| s.elapsed() > TTL);
            if (p.creates.is_empty() && p.deletes.is_empty()) || expired {
                m.remove(key);
                return true;
            }
            false
        })
    }

    /// Drops everything recorded for `key`.
    pub fn forget(&self, key: &str) {
        self.with(|m| {
            m.remove(key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_are_satisfied_once_the_cache_holds_the_new_pods() {
        let e = PodExpectations::new();
        e.created("ns/rs", ["rs-a".to_string(), "rs-b".to_string()]);
        let only_a = |n: &str| (n == "rs-a").then(|| Seen { uid: "1".into(), terminating: false });
        assert!(!e.satisfied("ns/rs", only_a));
        let both = |_: &str| Some(Seen { uid: "1".into(), terminating: false });
        assert!(e.satisfied("ns/rs", both));
    }

    #[test]
    fn deletions_are_satisfied_when_pods_are_gone_or_terminating() {
        let e = PodExpectations::new();
        e.deleting("ns/rs", [("rs-a".to_string(), "u1".to_string()), ("rs-b".to_string(), "u2".to_string())]);
        let still = |_: &str| Some(Seen { uid: "u1".into(), terminating: false });
        assert!(!e.satisfied("ns/rs", still));
        let gone_or_terminating =
            |n: &str| (n == "rs-a").then(|| Seen { uid: "u1".into(), terminating: true });
        assert!(e.satisfied("ns/rs", gone_or_terminating));
    }

    #[test]
    fn a_created_pod_seen_on_the_watch_counts_even_if_already_gone() {
        let e = PodExpectations::new();
        e.created("ns/rs", ["rs-a".to_string()]);
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("rs-a".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        e.observe("ns/rs", &pod);
        assert!(e.satisfied("ns/rs", |_| None));
    }
}
