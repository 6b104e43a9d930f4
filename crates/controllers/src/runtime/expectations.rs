//! Expectations: how many creates and deletes a controller has issued for an owner and
//! not yet seen in its cache, so a burst is not repeated before the cache catches up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// After this long, unmet expectations are forgotten (a lost event must not wedge the owner).
const TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Pending {
    adds: i64,
    dels: i64,
    since: Option<Instant>,
}

/// Expectations per owner key (`namespace/name`).
#[derive(Default)]
pub struct Expectations {
    map: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `adds` creates and `dels` deletes are about to be issued.
    pub fn expect(&self, key: &str, adds: i64, dels: i64) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let p = m.entry(key.to_string()).or_default();
        p.adds += adds;
        p.dels += dels;
        p.since = Some(Instant::now());
    }

    /// A create was observed (or failed, so it will never be observed).
    pub fn created(&self, key: &str) {
        if let Some(p) = self.map.lock().unwrap_or_else(|e| e.into_inner()).get_mut(key) {
            p.adds -= 1;
        }
    }

    /// A delete was observed (or failed).
    pub fn deleted(&self, key: &str) {
        if let Some(p) = self.map.lock().unwrap_or_else(|e| e.into_inner()).get_mut(key) {
            p.dels -= 1;
        }
    }

    /// Whether the cache has caught up with everything issued for `key`.
    pub fn satisfied(&self, key: &str) -> bool {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(key) {
            None => true,
            Some(p) if p.adds <= 0 && p.dels <= 0 => {
                m.remove(key);
                true
            }
            Some(p) => p.since.is_none_or(|s| s.elapsed() > TTL),
        }
    }

    pub fn forget(&self, key: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_are_satisfied_once_every_issued_write_is_seen() {
        let e = Expectations::new();
        assert!(e.satisfied("ns/a"));
        e.expect("ns/a", 2, 0);
        assert!(!e.satisfied("ns/a"));
        e.created("ns/a");
        assert!(!e.satisfied("ns/a"));
        e.created("ns/a");
        assert!(e.satisfied("ns/a"));
    }
}
