//! etcd v3 backend: the store contract mapped onto a real etcd cluster through the
//! `etcd-client` crate, for running several API servers against one etcd.
//!
//! # Mapping
//! - Every key is stored under a fixed prefix (e.g. `/registry`), stripped on the way out.
//! - `create` is a transaction "if `create_revision == 0` then put"; `update` and a
//!   conditional `delete` are "if `mod_revision == expected` and the key exists then
//!   write, else get", the get giving [`Error::NotFound`] or the current value for
//!   [`Error::Conflict`].
//! - Ranges use etcd's own revision and limit; `start_after` becomes a range starting at
//!   that key followed by a NUL byte.
//! - Watches start at `after + 1` with previous values; a watch response carrying a
//!   compact revision, or etcd's "required revision has been compacted" error, becomes
//!   [`Error::Compacted`].
//!
//! # Hazards
//! - Revisions and compaction are global to the etcd cluster, not to the prefix: other
//!   clients' writes advance the revision, and [`Store::compact`] compacts every key.
//! - etcd does not report its compacted revision directly. [`Store::compacted_revision`]
//!   finds it by bisection with historical reads (about log2(current revision) small
//!   requests), starting from the highest compaction this client has seen (its own
//!   compactions, and the compact revisions etcd reported in watch responses).
//! - A slow watcher is slowed down by gRPC flow control; etcd never ends it for that.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchOptions,
};
use futures::StreamExt;

use crate::{
    Error, Event, KeyValue, RangeOptions, RangeResult, Result, Revision, Store, WatchStream, effective_limit,
    prefix_end, range_start,
};

/// The message etcd puts in a gRPC status for a read below the compacted revision.
const COMPACTED_MESSAGE: &str = "required revision has been compacted";
/// The message etcd puts in a gRPC status for a read above the current revision.
const FUTURE_MESSAGE: &str = "required revision is a future revision";

/// A [`Store`] over an etcd v3 cluster. See the module docs for the mapping and hazards.
pub struct EtcdStore {
    client: Client,
    prefix: String,
    /// The highest compacted revision this client knows of (a lower bound of etcd's).
    compacted: Arc<AtomicI64>,
}

/// What went wrong in an etcd request, sorted by what the store contract makes of it.
enum Failure {
    Compacted,
    Future,
    Other(etcd_client::Error),
}

fn classify(e: etcd_client::Error) -> Failure {
    if let etcd_client::Error::GRpcStatus(status) = &e {
        if status.message().contains(COMPACTED_MESSAGE) {
            return Failure::Compacted;
        }
        if status.message().contains(FUTURE_MESSAGE) {
            return Failure::Future;
        }
    }
    Failure::Other(e)
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (URLs such as `http://127.0.0.1:2379`)
    /// and keeps every key under `prefix` (may be empty; `/registry` is what Kubernetes
    /// uses). Fails unless one endpoint answers a read within the connect timeout (5 s).
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| Error::backend(format!("connecting to etcd at {endpoints:?}"), e))?;
        let store = EtcdStore { client, prefix: prefix.to_owned(), compacted: Arc::new(AtomicI64::new(0)) };
        store.current_revision().await?;
        Ok(store)
    }

    /// The prefix under which this store keeps its keys in etcd.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(self.prefix.as_bytes());
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The first key of a range under `prefix`; etcd refuses an empty key, and "\0" is
    /// the smallest non-empty one.
    fn range_key(&self, prefix: &str) -> Vec<u8> {
        let key = self.full_key(prefix);
        if key.is_empty() { vec![0] } else { key }
    }

    /// A key to aim revision-only requests at: any key will do, none needs to exist.
    fn probe_key(&self) -> Vec<u8> {
        if self.prefix.is_empty() { vec![0] } else { self.prefix.as_bytes().to_vec() }
    }

    /// The end of the etcd key range holding every key under `prefix`.
    fn range_end(&self, prefix: &str) -> Vec<u8> {
        // etcd reads the range end "\0" as "to the end of the key space".
        prefix_end(&self.full_key(prefix)).unwrap_or_else(|| vec![0])
    }

    fn learn_compacted(&self, revision: Revision) {
        self.compacted.fetch_max(revision, Ordering::SeqCst);
    }

    /// Whether a read at `revision` is still possible (not compacted away).
    async fn readable_at(&self, revision: Revision) -> Result<bool> {
        let options = GetOptions::new().with_count_only().with_revision(revision);
        match self.client.kv_client().get(self.probe_key(), Some(options)).await {
            Ok(_) => Ok(true),
            Err(e) => match classify(e) {
                Failure::Compacted => Ok(false),
                Failure::Future => Ok(true),
                Failure::Other(e) => Err(Error::backend(format!("probing etcd for revision {revision}"), e)),
            },
        }
    }

    /// etcd's compacted revision, found by bisection (see the module docs).
    async fn find_compacted(&self) -> Result<Revision> {
        let known = self.compacted.load(Ordering::SeqCst);
        let current = self.current_revision().await?;
        let (mut low, mut high) = (known.max(1), current.max(1));
        if low >= high || self.readable_at(low).await? {
            return Ok(known);
        }
        // Invariant: `low` is compacted, `high` (the current revision) is readable.
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if self.readable_at(mid).await? {
                high = mid;
            } else {
                low = mid;
            }
        }
        self.learn_compacted(high);
        Ok(high)
    }

    async fn compacted_error(&self, requested: Revision) -> Error {
        match self.find_compacted().await {
            Ok(compacted) => Error::Compacted { requested, compacted },
            Err(e) => e,
        }
    }

    async fn future_error(&self, requested: Revision) -> Error {
        match self.current_revision().await {
            Ok(current) => Error::FutureRevision { requested, current },
            Err(e) => e,
        }
    }

    fn to_kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        let key = kv.key().strip_prefix(self.prefix.as_bytes()).ok_or_else(|| {
            Error::backend(
                "decoding a key read from etcd",
                format!("key outside the prefix {:?}", self.prefix),
            )
        })?;
        let key = std::str::from_utf8(key).map_err(|e| Error::backend("decoding a key read from etcd", e))?;
        Ok(KeyValue {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    async fn txn(&self, key: &str, txn: Txn) -> Result<TxnResponse> {
        self.client
            .kv_client()
            .txn(txn)
            .await
            .map_err(|e| Error::backend(format!("writing key {key:?} to etcd"), e))
    }

    /// Turns the `get` of a failed conditional write into NotFound or Conflict.
    fn not_found_or_conflict(&self, key: &str, resp: &TxnResponse) -> Result<Error> {
        let current = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        });
        Ok(match current {
            None => Error::NotFound { key: key.into() },
            Some(kv) => Error::Conflict { key: key.into(), current: Box::new(self.to_kv(&kv)?) },
        })
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>, what: &str) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| Error::backend(what.to_owned(), "etcd sent a response without a header"))
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .client
            .kv_client()
            .get(self.full_key(key), None)
            .await
            .map_err(|e| Error::backend(format!("reading key {key:?} from etcd"), e))?;
        resp.kvs().first().map(|kv| self.to_kv(kv)).transpose()
    }

    async fn range(&self, prefix: &str, opts: RangeOptions) -> Result<RangeResult> {
        let what = format!("reading keys under {prefix:?} from etcd");
        let mut options = GetOptions::new().with_range(self.range_end(prefix));
        if let Some(limit) = effective_limit(opts.limit) {
            options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        if let Some(revision) = opts.revision {
            if revision < 1 {
                // etcd reads revision 0 as "now"; the state before the first write is empty.
                let compacted = self.find_compacted().await?;
                if revision < compacted {
                    return Err(Error::Compacted { requested: revision, compacted });
                }
                return Ok(RangeResult { kvs: Vec::new(), more: false, revision });
            }
            options = options.with_revision(revision);
        }
        let mut start = self.prefix.as_bytes().to_vec();
        start.extend(range_start(prefix, opts.start_after.as_deref()));
        if start.is_empty() {
            start = self.range_key(prefix);
        }
        let resp = match self.client.kv_client().get(start, Some(options)).await {
            Ok(resp) => resp,
            Err(e) => {
                let requested = opts.revision.unwrap_or_default();
                return Err(match classify(e) {
                    Failure::Compacted => self.compacted_error(requested).await,
                    Failure::Future => self.future_error(requested).await,
                    Failure::Other(e) => Error::backend(what, e),
                });
            }
        };
        let kvs = resp.kvs().iter().map(|kv| self.to_kv(kv)).collect::<Result<Vec<_>>>()?;
        let revision = match opts.revision {
            Some(revision) => revision,
            None => header_revision(resp.header(), &what)?,
        };
        Ok(RangeResult { kvs, more: resp.more(), revision })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full, value.to_vec(), None)]);
        let resp = self.txn(key, txn).await?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists { key: key.into() });
        }
        let revision = header_revision(resp.header(), "creating a key in etcd")?;
        Ok(KeyValue { key: key.into(), value, create_revision: revision, mod_revision: revision })
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([
                Compare::version(full.clone(), CompareOp::Greater, 0),
                Compare::mod_revision(full.clone(), CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(full.clone(), value.to_vec(), Some(PutOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.txn(key, txn).await?;
        if !resp.succeeded() {
            return Err(self.not_found_or_conflict(key, &resp)?);
        }
        let revision = header_revision(resp.header(), "updating a key in etcd")?;
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .ok_or_else(|| {
                Error::backend(
                    format!("updating key {key:?} in etcd"),
                    "etcd did not return the previous value",
                )
            })?;
        Ok(KeyValue { key: key.into(), value, create_revision, mod_revision: revision })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let full = self.full_key(key);
        let mut conditions = vec![Compare::version(full.clone(), CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            conditions.push(Compare::mod_revision(full.clone(), CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(conditions)
            .and_then([TxnOp::delete(full.clone(), Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(full, None)]);
        let resp = self.txn(key, txn).await?;
        if !resp.succeeded() {
            return Err(self.not_found_or_conflict(key, &resp)?);
        }
        let prev = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Delete(del) => del.prev_kvs().first().cloned(),
            _ => None,
        });
        match prev {
            Some(kv) => self.to_kv(&kv),
            None => Err(Error::backend(
                format!("deleting key {key:?} from etcd"),
                "etcd did not return the deleted value",
            )),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let known = self.compacted.load(Ordering::SeqCst);
        if after < known {
            return Err(Error::Compacted { requested: after, compacted: known });
        }
        // etcd would replay from a start revision equal to its compacted revision, while
        // the contract needs the revision `after` itself to be kept: a read at `after`
        // checks exactly that.
        if after >= 1 && !self.readable_at(after).await? {
            return Err(self.compacted_error(after).await);
        }
        let options = WatchOptions::new()
            .with_range(self.range_end(prefix))
            .with_start_revision(after + 1)
            .with_prev_key();
        let mut stream = self
            .client
            .watch_client()
            .watch(self.range_key(prefix), Some(options))
            .await
            .map_err(|e| Error::backend(format!("watching {prefix:?} in etcd"), e))?;
        // The first message acknowledges the watch; anything else is a refusal.
        match stream.message().await {
            Ok(Some(resp)) if resp.created() && !resp.canceled() => {}
            Ok(Some(resp)) if resp.compact_revision() > 0 => {
                self.learn_compacted(resp.compact_revision());
                return Err(Error::Compacted { requested: after, compacted: resp.compact_revision() });
            }
            Ok(Some(resp)) => {
                return Err(Error::backend(
                    format!("watching {prefix:?} in etcd"),
                    format!("etcd refused the watch: {:?}", resp.cancel_reason()),
                ));
            }
            Ok(None) => {
                return Err(Error::backend(
                    format!("watching {prefix:?} in etcd"),
                    "etcd closed the watch before acknowledging it",
                ));
            }
            Err(e) => {
                return Err(Error::backend(format!("watching {prefix:?} in etcd"), e));
            }
        }
        let state = WatchState {
            stream,
            decoder: Decoder { prefix: self.prefix.clone() },
            watched: prefix.to_owned(),
            compacted: self.compacted.clone(),
            cursor: after,
            pending: VecDeque::new(),
            done: false,
        };
        Ok(futures::stream::unfold(state, next_event).boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .client
            .kv_client()
            .get(self.probe_key(), Some(GetOptions::new().with_count_only()))
            .await
            .map_err(|e| Error::backend("reading the current revision from etcd", e))?;
        header_revision(resp.header(), "reading the current revision from etcd")
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.find_compacted().await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= self.compacted.load(Ordering::SeqCst) {
            return Ok(());
        }
        match self.client.kv_client().compact(revision, None).await {
            Ok(_) => {
                self.learn_compacted(revision);
                Ok(())
            }
            Err(e) => match classify(e) {
                // Someone compacted at or beyond `revision` already: nothing left to do.
                Failure::Compacted => Ok(()),
                Failure::Future => Err(self.future_error(revision).await),
                Failure::Other(e) => {
                    Err(Error::backend(format!("compacting etcd at revision {revision}"), e))
                }
            },
        }
    }
}

/// Turns etcd key-values back into store ones (strips the prefix).
struct Decoder {
    prefix: String,
}

impl Decoder {
    fn kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue> {
        let key = kv
            .key()
            .strip_prefix(self.prefix.as_bytes())
            .and_then(|k| std::str::from_utf8(k).ok())
            .ok_or_else(|| {
                Error::backend(
                    "decoding a watch event from etcd",
                    format!("key outside the prefix {:?} or not UTF-8", self.prefix),
                )
            })?;
        Ok(KeyValue {
            key: key.to_owned(),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        })
    }

    fn event(&self, event: &etcd_client::Event) -> Result<Event> {
        let kv = event.kv().ok_or_else(|| {
            Error::backend("decoding a watch event from etcd", "the event has no key-value")
        })?;
        let prev = event.prev_kv().map(|p| self.kv(p)).transpose()?;
        match event.event_type() {
            EventType::Put => Ok(Event::Put { kv: self.kv(kv)?, prev }),
            EventType::Delete => Ok(Event::Delete {
                prev: prev.ok_or_else(|| {
                    Error::backend(
                        "decoding a deletion event from etcd",
                        "etcd did not send the value before the deletion",
                    )
                })?,
                revision: kv.mod_revision(),
            }),
        }
    }
}

struct WatchState {
    /// Kept whole: dropping its request half would end the watch.
    stream: etcd_client::WatchStream,
    decoder: Decoder,
    watched: String,
    compacted: Arc<AtomicI64>,
    /// The revision of the last event delivered (or the starting point).
    cursor: Revision,
    pending: VecDeque<Result<Event>>,
    done: bool,
}

async fn next_event(mut st: WatchState) -> Option<(Result<Event>, WatchState)> {
    if st.done {
        return None;
    }
    loop {
        if let Some(item) = st.pending.pop_front() {
            match &item {
                Ok(event) => st.cursor = event.revision(),
                Err(_) => st.done = true,
            }
            return Some((item, st));
        }
        let failure = match st.stream.message().await {
            Ok(Some(resp)) if resp.compact_revision() > 0 => {
                st.compacted.fetch_max(resp.compact_revision(), Ordering::SeqCst);
                Error::Compacted { requested: st.cursor, compacted: resp.compact_revision() }
            }
            Ok(Some(resp)) if resp.canceled() => Error::backend(
                format!("watching {:?} in etcd", st.watched),
                format!("etcd canceled the watch: {:?}", resp.cancel_reason()),
            ),
            Ok(Some(resp)) => {
                for event in resp.events() {
                    let item = st.decoder.event(event);
                    let bad = item.is_err();
                    // Events before a bad one are delivered, then the error ends the stream.
                    st.pending.push_back(item);
                    if bad {
                        break;
                    }
                }
                continue;
            }
            Ok(None) => {
                Error::backend(format!("watching {:?} in etcd", st.watched), "etcd closed the watch stream")
            }
            Err(e) => Error::backend(format!("watching {:?} in etcd", st.watched), e),
        };
        st.done = true;
        return Some((Err(failure), st));
    }
}
