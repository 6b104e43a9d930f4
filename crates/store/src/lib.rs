//! Revisioned key-value storage with watch, in the shape of etcd v3: the only place krust
//! keeps state. The API server is the single client of this crate.
//!
//! # The contract every backend meets
//! - The store has one global revision counter. Every successful write (create, update,
//!   delete) increments it by exactly one and stamps the written key with that revision
//!   (`mod_revision`). Revisions strictly increase and are never reused, also across
//!   restarts. A fresh store has revision 0 ... or any value; callers only rely on order.
//! - `create_revision` is the revision at which the key was (last) created.
//! - Compare-and-swap: `update` and `delete` take the `mod_revision` the caller last saw;
//!   when the key has moved on, nothing is written and [`Error::Conflict`] carries the
//!   current value so the caller can retry without another read.
//! - Watch: events for keys under a prefix with revision greater than the given revision
//!   are delivered in revision order, first the retained history, then live, with no gap
//!   and no duplicate. A revision at or below the compacted revision that is needed for
//!   replay gives [`Error::Compacted`]: from `watch` itself, or as the stream's first
//!   (and last) item when the backend learns it only once the watch runs (etcd, or a
//!   compaction racing the replay). Callers handle both.
//! - Durability: when a write returns `Ok`, it is on stable storage (survives `kill -9`
//!   of the process).
//! - After any error, nothing was written (a failed write is never half applied).
//! - A watcher that does not keep up does not slow writers down. The in-process backends
//!   (memory, SQLite) buffer a bounded number of events per watcher; when that buffer is
//!   full the stream ends with an [`Error::Backend`] whose source is a [`WatchLagged`]
//!   (see [`Error::watch_lagged`]): every event up to [`WatchLagged::resume_after`] was
//!   delivered, so the caller may watch again from there, or relist. etcd applies
//!   back-pressure through gRPC flow control instead and never ends a watch for this.
//!
//! # Backends
//! - [`memory::MemoryStore`]: everything in memory, for tests of higher layers.
//! - [`sqlite::SqliteStore`]: the default; one SQLite file in WAL mode holding a revision
//!   log, with automatic compaction that keeps the file bounded.
//! - [`etcd::EtcdStore`]: a real etcd v3 cluster, for running several API servers.
//!
//! All three pass the same conformance suite (the `conformance` feature).

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod etcd;
mod fanout;
pub mod memory;
pub mod sqlite;

/// A store revision: the `resourceVersion` of Kubernetes objects.
pub type Revision = i64;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (for the current incarnation).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

/// What a watch reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The key was created or updated. `prev` is the value before, if it existed.
    Put { kv: KeyValue, prev: Option<KeyValue> },
    /// The key was deleted at `revision`; `prev` is the last value it had.
    Delete { prev: KeyValue, revision: Revision },
}

impl Event {
    /// The revision at which the event happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// Options of a range read.
#[derive(Clone, Debug, Default)]
pub struct RangeOptions {
    /// Only keys strictly greater than this one (paging: the last key of the previous page).
    pub start_after: Option<String>,
    /// At most this many keys; `None` or `Some(0)` means no limit.
    pub limit: Option<usize>,
    /// Read the state as of this revision; `None` is the current state. A revision that
    /// was compacted away gives [`Error::Compacted`]; a revision in the future gives
    /// [`Error::FutureRevision`].
    pub revision: Option<Revision>,
}

/// The answer of a range read.
#[derive(Clone, Debug, Default)]
pub struct RangeResult {
    /// Keys in ascending byte order.
    pub kvs: Vec<KeyValue>,
    /// True when keys beyond `limit` exist under the prefix.
    pub more: bool,
    /// The revision the read observed (the current one when no revision was asked for).
    pub revision: Revision,
}

/// A watch: a stream of events in revision order. It ends when the store shuts down or
/// the watcher falls too far behind; an `Err` item is the last item of the stream.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// Everything that can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// The compare-and-swap precondition failed; `current` is the key's value now.
    #[error("key {key:?} was modified (now at revision {})", .current.mod_revision)]
    Conflict { key: String, current: Box<KeyValue> },
    /// The requested revision is older than the oldest one kept.
    #[error("revision {requested} has been compacted (oldest kept is {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision { requested: Revision, current: Revision },
    /// The backend failed (disk, network, corruption); the message says where.
    #[error("storage backend failed: {context}")]
    Backend {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True for [`Error::Compacted`]: the caller must relist (the API answers 410 Gone).
    pub fn is_compacted(&self) -> bool {
        matches!(self, Error::Compacted { .. })
    }

    /// The details when this error ended a watch whose consumer fell behind.
    pub fn watch_lagged(&self) -> Option<&WatchLagged> {
        match self {
            Error::Backend { source, .. } => source.downcast_ref::<WatchLagged>(),
            _ => None,
        }
    }

    /// Wraps a backend failure with a sentence saying what was being done.
    pub(crate) fn backend(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Backend { context: context.into(), source: source.into() }
    }
}

/// Why a watch stream of an in-process backend ended early: its consumer let more events
/// pile up than the per-watcher buffer holds. It is the `source` of the final
/// [`Error::Backend`] item of that stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "watcher on prefix {prefix:?} fell behind: more than {buffer} events were pending; \
     events after revision {resume_after} were not delivered"
)]
pub struct WatchLagged {
    /// The prefix the watch was for.
    pub prefix: String,
    /// How many events the watcher's buffer holds.
    pub buffer: usize,
    /// Every event of the prefix with a revision at or below this one was delivered; a
    /// new watch from this revision continues without a gap (unless it was compacted).
    pub resume_after: Revision,
}

/// The smallest key greater than every key that starts with `prefix` (exclusive upper
/// bound of a prefix range), or `None` when there is none (the empty prefix).
///
/// UTF-8 never contains the byte 0xFF, so for a string prefix incrementing its last byte
/// always works.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The lower bound (inclusive) of a range read: the prefix, or the first key after
/// `start_after` when that lies beyond the prefix start.
pub(crate) fn range_start(prefix: &str, start_after: Option<&str>) -> Vec<u8> {
    match start_after {
        // The smallest string greater than `s` is `s` followed by a NUL byte.
        Some(after) if after >= prefix => {
            let mut start = after.as_bytes().to_vec();
            start.push(0);
            start
        }
        _ => prefix.as_bytes().to_vec(),
    }
}

/// `limit` of [`RangeOptions`] as an optional positive count.
pub(crate) fn effective_limit(limit: Option<usize>) -> Option<usize> {
    limit.filter(|l| *l > 0)
}

/// A revisioned key-value store with watch. See the crate docs for the contract.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys that start with `prefix`, in ascending order, per `opts`.
    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult>;

    /// Writes `value` at `key` if the key does not exist; [`Error::AlreadyExists`] if it does.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces the value of an existing key whose `mod_revision` is `expected`.
    /// [`Error::NotFound`] if the key is absent, [`Error::Conflict`] if it moved on.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue>;

    /// Deletes a key, if `expected` is given only when its `mod_revision` still equals it.
    /// Returns the value the key had. [`Error::NotFound`] if absent.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Events for keys under `prefix` with revision strictly greater than `after`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The newest revision of the whole store.
    async fn current_revision(&self) -> Result<Revision>;

    /// The oldest revision still available for replay and past reads: history at or
    /// below it is merged. Everything above stays readable.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Drops history at or below `revision` (never the current value of a live key).
    async fn compact(&self, revision: Revision) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/registry/pods/"), Some(b"/registry/pods0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[test]
    fn range_start_skips_past_start_after_only_when_it_is_inside_the_range() {
        assert_eq!(range_start("a/", Some("a/x")), b"a/x\0".to_vec());
        assert_eq!(range_start("b/", Some("a/x")), b"b/".to_vec());
        assert_eq!(range_start("a/", None), b"a/".to_vec());
    }

    #[test]
    fn watch_lagged_is_found_behind_a_backend_error() {
        let lagged = WatchLagged { prefix: "/p/".into(), buffer: 4, resume_after: 9 };
        let err = Error::backend("watch", lagged.clone());
        assert_eq!(err.watch_lagged(), Some(&lagged));
        assert!(!err.is_compacted());
    }
}
