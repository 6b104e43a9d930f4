//! In-memory backend with full MVCC history, for unit tests of the layers above the
//! store. Nothing survives the process; history grows until [`Store::compact`] is called.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::fanout::{self, Hub, Page, ReplayFn};
use crate::{
    Error, Event, KeyValue, RangeOptions, RangeResult, Result, Revision, Store, WatchStream, effective_limit,
    range_start,
};

/// Events a watcher may have pending before it is ended with [`crate::WatchLagged`].
pub const DEFAULT_WATCH_BUFFER: usize = 4096;

/// Events handed to a replaying watcher at a time (the lock is released between pages).
const REPLAY_PAGE: usize = 1024;

/// A [`Store`] kept in memory. Cheap to create; every instance is independent.
///
/// Revisions start at 0 (the first write gets revision 1). Watchers that fall more than
/// the watch buffer behind are ended with [`crate::WatchLagged`].
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

/// One version of a key in its history.
#[derive(Clone, Debug)]
enum Version {
    Put(KeyValue),
    Deleted(Revision),
}

impl Version {
    fn revision(&self) -> Revision {
        match self {
            Version::Put(kv) => kv.mod_revision,
            Version::Deleted(rev) => *rev,
        }
    }
}

struct Inner {
    revision: Revision,
    compacted: Revision,
    /// Each key's versions in ascending revision order: everything above `compacted`,
    /// plus the newest version at or below it when that is a put.
    keys: BTreeMap<String, Vec<Version>>,
    /// Every event above `compacted`, ascending, one per revision.
    log: VecDeque<Event>,
    hub: Hub,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store at revision 0 with the default watch buffer.
    pub fn new() -> Self {
        Self::with_watch_buffer(DEFAULT_WATCH_BUFFER)
    }

    /// An empty store whose watchers may each have up to `watch_buffer` events pending.
    pub fn with_watch_buffer(watch_buffer: usize) -> Self {
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner {
                revision: 0,
                compacted: 0,
                keys: BTreeMap::new(),
                log: VecDeque::new(),
                hub: Hub::new(0, watch_buffer),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // breaks invariants (each write is applied with infallible steps), so carry on.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn latest(&self, key: &str) -> Option<&KeyValue> {
        match self.keys.get(key)?.last()? {
            Version::Put(kv) => Some(kv),
            Version::Deleted(_) => None,
        }
    }

    fn commit(&mut self, key: &str, version: Version, event: Event) {
        self.revision = version.revision();
        self.keys.entry(key.to_owned()).or_default().push(version);
        self.hub.publish(std::slice::from_ref(&event), self.revision);
        self.log.push_back(event);
    }

    fn check_readable(&self, revision: Revision) -> Result<()> {
        if revision < self.compacted {
            return Err(Error::Compacted { requested: revision, compacted: self.compacted });
        }
        if revision > self.revision {
            return Err(Error::FutureRevision { requested: revision, current: self.revision });
        }
        Ok(())
    }

    fn replay(&self, prefix: &str, after: Revision, up_to: Revision) -> Result<Page> {
        if after < self.compacted {
            return Err(Error::Compacted { requested: after, compacted: self.compacted });
        }
        let start = self.log.partition_point(|e| e.revision() <= after);
        let mut events = Vec::new();
        let mut read_up_to = up_to;
        for event in self.log.range(start..) {
            if event.revision() > up_to {
                break;
            }
            if events.len() == REPLAY_PAGE {
                read_up_to = event.revision() - 1;
                break;
            }
            if event.key().starts_with(prefix) {
                events.push(event.clone());
            }
        }
        Ok(Page { events, read_up_to })
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.lock().latest(key).cloned())
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult> {
        let inner = self.lock();
        let at = opts.revision.unwrap_or(inner.revision);
        inner.check_readable(at)?;
        let start = String::from_utf8_lossy(&range_start(prefix, opts.start_after.as_deref())).into_owned();
        let limit = effective_limit(opts.limit);
        let mut kvs = Vec::new();
        let mut more = false;
        for (key, versions) in inner.keys.range::<String, _>((Bound::Included(start), Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                break;
            }
            let visible = versions.iter().rev().find(|v| v.revision() <= at);
            if let Some(Version::Put(kv)) = visible {
                if limit.is_some_and(|l| kvs.len() == l) {
                    more = true;
                    break;
                }
                kvs.push(kv.clone());
            }
        }
        Ok(RangeResult { kvs, more, revision: at })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let mut inner = self.lock();
        if inner.latest(key).is_some() {
            return Err(Error::AlreadyExists { key: key.into() });
        }
        let rev = inner.revision + 1;
        let kv = KeyValue { key: key.into(), value, create_revision: rev, mod_revision: rev };
        let event = Event::Put { kv: kv.clone(), prev: None };
        inner.commit(key, Version::Put(kv.clone()), event);
        Ok(kv)
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        let mut inner = self.lock();
        let Some(current) = inner.latest(key).cloned() else {
            return Err(Error::NotFound { key: key.into() });
        };
        if current.mod_revision != expected {
            return Err(Error::Conflict { key: key.into(), current: Box::new(current) });
        }
        let rev = inner.revision + 1;
        let kv =
            KeyValue { key: key.into(), value, create_revision: current.create_revision, mod_revision: rev };
        let event = Event::Put { kv: kv.clone(), prev: Some(current) };
        inner.commit(key, Version::Put(kv.clone()), event);
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut inner = self.lock();
        let Some(current) = inner.latest(key).cloned() else {
            return Err(Error::NotFound { key: key.into() });
        };
        if expected.is_some_and(|e| e != current.mod_revision) {
            return Err(Error::Conflict { key: key.into(), current: Box::new(current) });
        }
        let rev = inner.revision + 1;
        let event = Event::Delete { prev: current.clone(), revision: rev };
        inner.commit(key, Version::Deleted(rev), event);
        Ok(current)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let (up_to, live) = {
            let mut inner = self.lock();
            if after < inner.compacted {
                return Err(Error::Compacted { requested: after, compacted: inner.compacted });
            }
            inner.hub.subscribe(prefix)
        };
        let store = self.clone();
        let prefix = prefix.to_owned();
        let replay: ReplayFn = Box::new(move |after, up_to| {
            let page = store.lock().replay(&prefix, after, up_to);
            Box::pin(async move { page })
        });
        Ok(fanout::stream(replay, after, up_to, live))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.lock().compacted)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut inner = self.lock();
        if revision > inner.revision {
            return Err(Error::FutureRevision { requested: revision, current: inner.revision });
        }
        if revision <= inner.compacted {
            return Ok(());
        }
        inner.keys.retain(|_, versions| {
            // Keep the newest version at or below `revision` only when it is a live value.
            let at_or_below = versions.partition_point(|v| v.revision() <= revision);
            let keep_from = match at_or_below.checked_sub(1).map(|i| &versions[i]) {
                Some(Version::Put(_)) => at_or_below - 1,
                _ => at_or_below,
            };
            versions.drain(..keep_from);
            !versions.is_empty()
        });
        while inner.log.front().is_some_and(|e| e.revision() <= revision) {
            inner.log.pop_front();
        }
        inner.compacted = revision;
        Ok(())
    }
}
