//! Writes a DaemonSet sync issued that its pod cache has not shown yet, tracked by name:
//! until every created pod is in the cache and every deleted pod is gone from it (or
//! marked for deletion), a sync only refreshes the status, so a lagging cache never
//! doubles a burst of creates. Forgotten after five minutes, as upstream, so a lost event
//! cannot wedge a DaemonSet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};

const TTL: Duration = Duration::from_secs(300);

struct Pending {
    namespace: String,
    creates: Vec<String>,
    deletes: Vec<(String, String)>,
    since: Instant,
}

/// Pending writes per DaemonSet key (`namespace/name`).
#[derive(Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    /// Records pods just created (by name) and deleted (by name and UID) for `key`.
    pub fn expect(&self, key: &str, namespace: &str, creates: Vec<String>, deletes: Vec<(String, String)>) {
        if creates.is_empty() && deletes.is_empty() {
            return;
        }
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let p = m.entry(key.to_string()).or_insert_with(|| Pending {
            namespace: namespace.to_string(),
            creates: Vec::new(),
            deletes: Vec::new(),
            since: Instant::now(),
        });
        p.creates.extend(creates);
        p.deletes.extend(deletes);
        p.since = Instant::now();
    }

    /// Whether the cache shows every write issued for `key` (forgetting them if so).
    pub fn satisfied(&self, key: &str, pods: &Store<Pod>) -> bool {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let Some(p) = m.get_mut(key) else { return true };
        let ns = p.namespace.clone();
        p.creates.retain(|name| pods.get(&ObjectRef::new(name).within(&ns)).is_none());
        p.deletes.retain(|(name, uid)| {
            pods.get(&ObjectRef::new(name).within(&ns)).is_some_and(|pod| {
                pod.metadata.uid.as_deref() == Some(uid.as_str()) && pod.metadata.deletion_timestamp.is_none()
            })
        });
        if (p.creates.is_empty() && p.deletes.is_empty()) || p.since.elapsed() > TTL {
            m.remove(key);
            return true;
        }
        false
    }

    /// Drops everything recorded for `key` (the DaemonSet is gone).
    pub fn forget(&self, key: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}
