//! The watch cache: one store watch over all of `/registry/`, fanned out to one in-memory
//! cache per resource, which serves lists and watches as kube-apiserver's cacher does.
//!
//! Every cache advances on the same global revision, so "the cache has seen revision R"
//! means the same thing for every resource; a consistent read waits for the store's
//! current revision and then reads memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use store::{Revision, Store};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::{ApiError, ApiResult};

/// Events kept per resource for watches that resume from a recent revision.
const HISTORY: usize = 5000;
/// Events buffered per resource for live watchers before a slow one is cut off.
const BROADCAST: usize = 8192;
/// How long a read that asks for a revision the cache has not seen yet waits.
const WAIT_FOR_REVISION: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change to one object, in the storage version. For deletions `object` is the last
/// state with `resourceVersion` set to the deletion's revision.
#[derive(Debug)]
pub struct WatchEvent {
    pub type_: EventType,
    pub key: String,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
    pub revision: Revision,
    /// `object` as JSON, serialized once for every watcher that needs it as stored.
    pub json: std::sync::OnceLock<bytes::Bytes>,
}

impl WatchEvent {
    /// The object serialized as JSON (computed once, shared by all watchers).
    pub fn object_json(&self) -> &bytes::Bytes {
        self.json.get_or_init(|| bytes::Bytes::from(serde_json::to_vec(&*self.object).unwrap_or_default()))
    }
}

/// What a watch starts with: events to replay, then a live receiver.
pub struct WatchStart {
    pub initial: Vec<Arc<WatchEvent>>,
    pub live: broadcast::Receiver<Arc<WatchEvent>>,
    /// The revision the initial events bring the watcher to.
    pub revision: Revision,
}

/// The cache of one resource (one storage prefix).
pub struct ResourceCache {
    state: Mutex<State>,
    /// The revision every cache has applied (set after each event is applied).
    global: Arc<AtomicI64>,
}

struct State {
    objects: BTreeMap<String, Arc<Value>>,
    history: VecDeque<Arc<WatchEvent>>,
    /// Watches may resume from any revision at or above this one.
    oldest: Revision,
    revision: Revision,
    tx: broadcast::Sender<Arc<WatchEvent>>,
}

fn decode(kv: &store::KeyValue, revision: Revision) -> Option<Value> {
    match serde_json::from_slice::<Value>(&kv.value) {
        Ok(mut v) => {
            crate::meta::set_resource_version(&mut v, revision);
            Some(v)
        }
        Err(e) => {
            tracing::error!(key = %kv.key, error = %e, "undecodable object in storage, skipped");
            None
        }
    }
}

impl ResourceCache {
    fn new(objects: BTreeMap<String, Arc<Value>>, revision: Revision, global: Arc<AtomicI64>) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST);
        Self {
            state: Mutex::new(State { objects, history: VecDeque::new(), oldest: revision, revision, tx }),
            global,
        }
    }

    /// The revision a read under the lock reflects: events are applied in order, and the
    /// global counter moves only after an event is applied, so nothing at or below the
    /// larger of the two is missing from this cache.
    fn seen(&self, st: &State) -> Revision {
        st.revision.max(self.global.load(Ordering::SeqCst))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn apply(&self, ev: &store::Event) {
        let mut st = self.lock();
        let rev = ev.revision();
        let we = match ev {
            store::Event::Put { kv, .. } => {
                let Some(obj) = decode(kv, kv.mod_revision) else { return };
                let obj = Arc::new(obj);
                let prev = st.objects.insert(kv.key.clone(), obj.clone());
                let type_ = if prev.is_some() { EventType::Modified } else { EventType::Added };
                WatchEvent {
                    type_,
                    key: kv.key.clone(),
                    object: obj,
                    prev,
                    revision: rev,
                    json: Default::default(),
                }
            }
            store::Event::Delete { prev, revision } => {
                let old = st.objects.remove(&prev.key);
                let Some(obj) = decode(prev, *revision) else { return };
                WatchEvent {
                    type_: EventType::Deleted,
                    key: prev.key.clone(),
                    object: Arc::new(obj),
                    prev: old,
                    revision: *revision,
                    json: Default::default(),
                }
            }
        };
        let we = Arc::new(we);
        st.revision = rev;
        if st.history.len() >= HISTORY
            && let Some(dropped) = st.history.pop_front()
        {
            st.oldest = dropped.revision;
        }
        st.history.push_back(we.clone());
        // Nobody listening is fine.
        let _ = st.tx.send(we);
    }

    /// Replaces the whole content after the store watch broke; live watchers end.
    fn reset(&self, objects: BTreeMap<String, Arc<Value>>, revision: Revision) {
        let mut st = self.lock();
        let (tx, _) = broadcast::channel(BROADCAST);
        st.objects = objects;
        st.history.clear();
        st.oldest = revision;
        st.revision = revision;
        st.tx = tx;
    }

    /// Objects whose key starts with `prefix`, and the revision they reflect.
    pub fn list(&self, prefix: &str) -> (Vec<Arc<Value>>, Revision) {
        let st = self.lock();
        let items = st.objects.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix));
        (items.map(|(_, v)| v.clone()).collect(), self.seen(&st))
    }

    pub fn get(&self, key: &str) -> (Option<Arc<Value>>, Revision) {
        let st = self.lock();
        (st.objects.get(key).cloned(), self.seen(&st))
    }

    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a watch. `after: None` replays the current objects as ADDED events
    /// (restricted to keys under `prefix`); `Some(rv)` replays history after `rv`, or
    /// fails with 410 Gone when that history is no longer kept.
    pub fn watch(&self, prefix: &str, after: Option<Revision>) -> ApiResult<WatchStart> {
        let st = self.lock();
        let live = st.tx.subscribe();
        let initial = match after {
            None => st
                .objects
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| {
                    Arc::new(WatchEvent {
                        type_: EventType::Added,
                        key: k.clone(),
                        object: v.clone(),
                        prev: None,
                        revision: crate::meta::resource_version(v).parse().unwrap_or(0),
                        json: Default::default(),
                    })
                })
                .collect(),
            Some(rv) if rv < st.oldest => {
                return Err(ApiError::gone(format!("too old resource version: {rv} ({})", st.oldest)));
            }
            Some(rv) => {
                st.history.iter().filter(|e| e.revision > rv && e.key.starts_with(prefix)).cloned().collect()
            }
        };
        Ok(WatchStart { initial, live, revision: self.seen(&st) })
    }
}

enum Command {
    Register { prefix: String, reply: oneshot::Sender<Arc<ResourceCache>> },
}

/// All resource caches and the task that feeds them.
pub struct Caches {
    store: Arc<dyn Store>,
    caches: RwLock<HashMap<String, Arc<ResourceCache>>>,
    revision: watch::Receiver<Revision>,
    global: Arc<AtomicI64>,
    commands: mpsc::Sender<Command>,
}

/// The resource prefix of a key: `/registry/<group>/<plural>/`.
fn prefix_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("/registry/")?;
    let g = rest.find('/')?;
    let p = rest[g + 1..].find('/')?;
    Some(&key[..("/registry/".len() + g + 1 + p + 1)])
}

impl Caches {
    /// Starts the feeding task. Returns once the store's current state is known.
    pub async fn start(store: Arc<dyn Store>) -> ApiResult<Arc<Self>> {
        let rev = store.current_revision().await?;
        let (rev_tx, rev_rx) = watch::channel(rev);
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let global = Arc::new(AtomicI64::new(rev));
        let caches = Arc::new(Self {
            store,
            caches: RwLock::new(HashMap::new()),
            revision: rev_rx,
            global,
            commands: cmd_tx,
        });
        let weak = Arc::downgrade(&caches);
        tokio::spawn(feed(weak, rev_tx, cmd_rx, rev));
        Ok(caches)
    }

    /// The cache of a storage prefix, created (and filled from the store) on first use.
    pub async fn cache(&self, prefix: &str) -> ApiResult<Arc<ResourceCache>> {
        if let Some(c) = self.caches.read().unwrap_or_else(|e| e.into_inner()).get(prefix) {
            return Ok(c.clone());
        }
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Register { prefix: prefix.to_string(), reply })
            .await
            .map_err(|_| ApiError::service_unavailable("the watch cache is not running"))?;
        rx.await.map_err(|_| ApiError::service_unavailable("the watch cache could not load the resource"))
    }

    /// The newest revision every cache has applied.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Waits until the caches have applied `rev` (504 if that takes too long).
    pub async fn wait_for(&self, rev: Revision) -> ApiResult<()> {
        let mut rx = self.revision.clone();
        let waited = tokio::time::timeout(WAIT_FOR_REVISION, rx.wait_for(|r| *r >= rev)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ApiError::timeout(format!(
                "Too large resource version: {rev}, current: {}",
                self.revision()
            ))),
        }
    }

    /// Waits until the caches reflect every write acknowledged so far.
    pub async fn wait_consistent(&self) -> ApiResult<Revision> {
        let rev = self.store.current_revision().await?;
        self.wait_for(rev).await?;
        Ok(rev)
    }

    fn get_cache(&self, prefix: &str) -> Option<Arc<ResourceCache>> {
        self.caches.read().unwrap_or_else(|e| e.into_inner()).get(prefix).cloned()
    }
}

async fn load(store: &dyn Store, prefix: &str, rev: Revision) -> store::Result<BTreeMap<String, Arc<Value>>> {
    let mut out = BTreeMap::new();
    let mut start_after = None;
    loop {
        let page = store
            .range(
                prefix,
                store::RangeOptions {
                    start_after: start_after.clone(),
                    limit: Some(1000),
                    revision: Some(rev),
                },
            )
            .await?;
        for kv in &page.kvs {
            if let Some(v) = decode(kv, kv.mod_revision) {
                out.insert(kv.key.clone(), Arc::new(v));
            }
        }
        if !page.more || page.kvs.is_empty() {
            return Ok(out);
        }
        start_after = page.kvs.last().map(|kv| kv.key.clone());
    }
}

async fn feed(
    caches: std::sync::Weak<Caches>,
    rev_tx: watch::Sender<Revision>,
    mut commands: mpsc::Receiver<Command>,
    mut rev: Revision,
) {
    loop {
        let Some(this) = caches.upgrade() else { return };
        let store = this.store.clone();
        drop(this);
        let mut stream = match store.watch("/registry/", rev).await {
            Ok(s) => s,
            Err(e) if e.is_compacted() => {
                // The history we need is gone: start over from a fresh read.
                tracing::warn!(error = %e, "watch cache: history compacted, reloading");
                rev = match reload(&caches, &*store).await {
                    Some(r) => r,
                    None => return,
                };
                let _ = rev_tx.send(rev);
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "watch cache: store watch failed, retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                ev = stream.next() => {
                    let Some(this) = caches.upgrade() else { return };
                    match ev {
                        Some(Ok(ev)) => {
                            let r = ev.revision();
                            if let Some(p) = prefix_of(ev.key())
                                && let Some(c) = this.get_cache(p) {
                                    c.apply(&ev);
                                }
                            rev = r;
                            this.global.store(rev, Ordering::SeqCst);
                            let _ = rev_tx.send(rev);
                        }
                        Some(Err(e)) if e.is_compacted() => {
                            tracing::warn!(error = %e, "watch cache: history compacted, reloading");
                            drop(this);
                            rev = match reload(&caches, &*store).await {
                                Some(r) => r,
                                None => return,
                            };
                            let _ = rev_tx.send(rev);
                            break;
                        }
                        other => {
                            // Lagged, disconnected or ended: watch again from the last
                            // revision applied; nothing is lost and nothing is replayed twice.
                            if let Some(Err(e)) = other {
                                tracing::info!(error = %e, revision = rev, "watch cache: store watch ended, resuming");
                            }
                            break;
                        }
                    }
                }
                cmd = commands.recv() => {
                    let Some(Command::Register { prefix, reply }) = cmd else { return };
                    let Some(this) = caches.upgrade() else { return };
                    if let Some(c) = this.get_cache(&prefix) {
                        let _ = reply.send(c);
                        continue;
                    }
                    match load(&*store, &prefix, rev).await {
                        Ok(objects) => {
                            let c = Arc::new(ResourceCache::new(objects, rev, this.global.clone()));
                            this.caches.write().unwrap_or_else(|e| e.into_inner()).insert(prefix, c.clone());
                            let _ = reply.send(c);
                        }
                        Err(e) => tracing::error!(%prefix, error = %e, "watch cache: loading failed"),
                    }
                }
            }
        }
    }
}

/// Reloads every cache at the store's current revision; watchers of the old state end.
async fn reload(caches: &std::sync::Weak<Caches>, store: &dyn Store) -> Option<Revision> {
    loop {
        let this = caches.upgrade()?;
        let attempt: store::Result<Revision> = async {
            let rev = store.current_revision().await?;
            let all: Vec<(String, Arc<ResourceCache>)> = this
                .caches
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (prefix, cache) in all {
                let objects = load(store, &prefix, rev).await?;
                cache.reset(objects, rev);
            }
            Ok(rev)
        }
        .await;
        match attempt {
            Ok(rev) => {
                this.global.store(rev, Ordering::SeqCst);
                return Some(rev);
            }
            Err(e) => {
                tracing::warn!(error = %e, "watch cache: reload failed, retrying");
                drop(this);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_of_takes_group_and_plural() {
        assert_eq!(prefix_of("/registry/core/pods/default/p"), Some("/registry/core/pods/"));
        assert_eq!(prefix_of("/registry/core/nodes/n1"), Some("/registry/core/nodes/"));
        assert_eq!(prefix_of("/other"), None);
    }
}
