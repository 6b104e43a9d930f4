//! Which slice writes the cache has not shown yet (upstream `EndpointSliceTracker`): after
//! this controller creates or updates a slice it expects to see at least that
//! resourceVersion, and after a delete it expects the slice gone; until then the service's
//! cache is stale and a sync would act on old data (and create duplicate slices).
//! resourceVersions are compared as integers, as Kubernetes allows since 1.33 for
//! ordering writes of one resource; an unparsable one counts as caught up. Expectations
//! older than [`EXPIRY`] are dropped so a lost event cannot wedge a service.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;

/// How long an unmet expectation is kept.
pub const EXPIRY: Duration = Duration::from_secs(60);

#[derive(Debug)]
enum Expect {
    /// At least this resourceVersion.
    Version(Option<u64>),
    Gone,
}

/// Per slice name: what is expected, and since when.
type Expectations = HashMap<String, (Expect, Instant)>;

/// Expectations per service key.
#[derive(Default)]
pub struct SliceTracker {
    by_service: Mutex<HashMap<String, Expectations>>,
}

impl SliceTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expectations>> {
        self.by_service.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This controller created or updated `slice` (as the API server returned it).
    pub fn wrote(&self, service_key: &str, slice: &EndpointSlice) {
        let rv = slice.metadata.resource_version.as_deref().and_then(|v| v.parse().ok());
        self.lock()
            .entry(service_key.to_string())
            .or_default()
            .insert(slice.name_any(), (Expect::Version(rv), Instant::now()));
    }

    /// This controller deleted the slice `name`.
    pub fn deleted(&self, service_key: &str, name: &str) {
        self.lock()
            .entry(service_key.to_string())
            .or_default()
            .insert(name.to_string(), (Expect::Gone, Instant::now()));
    }

    /// The cache saw the slice `name` deleted (by anyone): nothing more to expect of it.
    pub fn deleted_elsewhere(&self, service_key: &str, name: &str) {
        if let Some(m) = self.lock().get_mut(service_key) {
            m.remove(name);
        }
    }

    pub fn forget_service(&self, service_key: &str) {
        self.lock().remove(service_key);
    }

    /// Whether `cached` (the service's slices in the cache) lags behind this controller's
    /// writes. Expectations the cache meets are forgotten.
    pub fn stale(&self, service_key: &str, cached: &[EndpointSlice]) -> bool {
        let mut all = self.lock();
        let Some(expected) = all.get_mut(service_key) else { return false };
        expected.retain(|name, (want, since)| {
            if since.elapsed() > EXPIRY {
                return false;
            }
            let seen = cached.iter().find(|s| s.metadata.name.as_deref() == Some(name.as_str()));
            match (want, seen) {
                (Expect::Gone, None) => false,
                (Expect::Gone, Some(_)) => true,
                (Expect::Version(_), None) => true,
                (Expect::Version(None), Some(_)) => false,
                (Expect::Version(Some(v)), Some(s)) => {
                    let have = s.metadata.resource_version.as_deref().and_then(|r| r.parse::<u64>().ok());
                    have.is_some_and(|h| h < *v)
                }
            }
        });
        let stale = !expected.is_empty();
        if !stale {
            all.remove(service_key);
        }
        stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str, rv: &str) -> EndpointSlice {
        serde_json::from_value(json!({"metadata": {"name": name, "resourceVersion": rv}, "addressType": "IPv4", "endpoints": []}))
            .unwrap()
    }

    #[test]
    fn a_written_slice_is_stale_until_the_cache_shows_its_version() {
        let t = SliceTracker::default();
        t.wrote("ns/web", &slice("web-abc", "10"));
        assert!(t.stale("ns/web", &[]));
        assert!(t.stale("ns/web", &[slice("web-abc", "9")]));
        assert!(!t.stale("ns/web", &[slice("web-abc", "10")]));
        assert!(!t.stale("ns/web", &[]), "met expectations are forgotten");
    }

    #[test]
    fn a_deleted_slice_is_stale_until_the_cache_drops_it() {
        let t = SliceTracker::default();
        t.deleted("ns/web", "web-abc");
        assert!(t.stale("ns/web", &[slice("web-abc", "10")]));
        assert!(!t.stale("ns/web", &[]));
    }

    #[test]
    fn a_slice_deleted_by_someone_else_is_not_waited_for() {
        let t = SliceTracker::default();
        t.wrote("ns/web", &slice("web-abc", "10"));
        t.deleted_elsewhere("ns/web", "web-abc");
        assert!(!t.stale("ns/web", &[]));
    }
}
