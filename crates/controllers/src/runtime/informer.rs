//! Shared informers: one watch per resource type for the whole process, a cache (a
//! kube-runtime reflector store) that every controller reads, and a fan-out of changes
//! (applied and deleted objects) that controllers turn into reconcile keys.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;

/// How many changes a slow controller may fall behind before it resyncs from the cache.
const FANOUT: usize = 16 * 1024;

struct Entry<K: Resource<DynamicType = ()> + Clone + 'static> {
    reader: Store<K>,
    changes: broadcast::Sender<Arc<K>>,
}

/// The informers of one process (one per resource type, created on first use).
#[derive(Clone)]
pub struct Informers {
    client: Client,
    entries: Arc<Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>>,
    /// Test mode: caches hold only what [`Informers::seed`] put there; nothing watches.
    offline: bool,
}

/// One resource type's cache and change feed.
pub struct Informer<K: Resource<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    changes: broadcast::Sender<Arc<K>>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
{
    /// Every object already in the cache, then every object that changes from now on
    /// (applied or deleted); after falling behind, every object in the cache once more, so
    /// nothing is missed (level-triggered). A controller that subscribes after the initial
    /// list still sees the objects that list brought, as an informer's Add events.
    pub fn changes(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        // Subscribe before taking the snapshot: a change in between is seen twice, never
        // not at all.
        let rx = self.changes.subscribe();
        let store = self.store.clone();
        let mut existing = store.state();
        existing.reverse();
        futures::stream::unfold((rx, existing), move |(mut rx, mut pending)| {
            let store = store.clone();
            async move {
                loop {
                    if let Some(o) = pending.pop() {
                        return Some((o, (rx, pending)));
                    }
                    match rx.recv().await {
                        Ok(o) => return Some((o, (rx, pending))),
                        Err(broadcast::error::RecvError::Lagged(_)) => pending = store.state(),
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
    }
}

/// Waits until `store` has its initial list. Unlike `Store::wait_until_ready`, safe when
/// several tasks wait on one shared store (kube-runtime wakes only the last waiter).
/// Returns false if the informer stopped before it was ready.
pub async fn synced<K>(store: &Store<K>) -> bool
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    loop {
        match tokio::time::timeout(std::time::Duration::from_millis(100), store.wait_until_ready()).await {
            Ok(Ok(())) => return true,
            Ok(Err(_)) => return false,
            Err(_) => continue,
        }
    }
}

/// Coalesces a change stream: within each `window`, only the last change per key passes.
fn coalesce<K, F>(
    changes: impl Stream<Item = Arc<K>> + Send + 'static,
    window: std::time::Duration,
    key: F,
) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    F: Fn(&K) -> String + Send + 'static,
{
    use tokio_stream::StreamExt as _;
    let batched = changes.chunks_timeout(4096, window);
    futures::StreamExt::flat_map(batched, move |batch: Vec<Arc<K>>| {
        let mut seen = std::collections::HashSet::new();
        let mut kept: Vec<Arc<K>> = Vec::new();
        for o in batch.into_iter().rev() {
            if seen.insert(key(&o)) {
                kept.push(o);
            }
        }
        kept.reverse();
        futures::stream::iter(kept)
    })
}

/// Within each `window`, only the last change per owner (controller ownerReference uid,
/// else the object's own uid) passes. A controller that scans all its children on every
/// reconcile then runs at most once per window per owner instead of once per child change,
/// while still seeing every owner that changed.
pub fn coalesce_by_owner<K>(
    changes: impl Stream<Item = Arc<K>> + Send + 'static,
    window: std::time::Duration,
) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
{
    coalesce(changes, window, |o: &K| {
        let meta = o.meta();
        meta.owner_references
            .as_ref()
            .and_then(|refs| refs.iter().find(|r| r.controller == Some(true)))
            .map(|r| r.uid.clone())
            .or_else(|| meta.uid.clone())
            .unwrap_or_default()
    })
}

/// Within each `window`, only the last change per object (by uid) passes: a burst of
/// status writes to one object becomes one reconcile.
pub fn coalesce_by_uid<K>(
    changes: impl Stream<Item = Arc<K>> + Send + 'static,
    window: std::time::Duration,
) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
{
    coalesce(changes, window, |o: &K| o.meta().uid.clone().unwrap_or_default())
}

impl Informers {
    pub fn new(client: Client) -> Self {
        Self { client, entries: Arc::new(Mutex::new(HashMap::new())), offline: false }
    }

    /// Informers whose caches are filled by hand ([`Informers::seed`]) and never watch:
    /// for reconcile tests that seed a state and assert on the writes.
    pub fn offline(client: Client) -> Self {
        Self { client, entries: Arc::new(Mutex::new(HashMap::new())), offline: true }
    }

    /// Puts objects into the cache of `K` (test mode).
    pub fn seed<K>(&self, objects: Vec<K>)
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    {
        let (reader, mut writer) = reflector::store::<K>();
        writer.apply_watcher_event(&Event::Init);
        for o in objects {
            writer.apply_watcher_event(&Event::InitApply(o));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let (tx, _) = broadcast::channel(FANOUT);
        // The writer must outlive this call for the store to stay ready.
        std::mem::forget(writer);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert(TypeId::of::<K>(), Box::new(Entry { reader, changes: tx }));
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The informer of `K` over all namespaces, started on first use.
    pub fn get<K>(&self) -> Informer<K>
    where
        K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries.get(&TypeId::of::<K>()).and_then(|b| b.downcast_ref::<Entry<K>>()) {
            return Informer { store: e.reader.clone(), changes: e.changes.clone() };
        }
        if self.offline {
            drop(entries);
            self.seed::<K>(Vec::new());
            return self.get::<K>();
        }
        let (reader, mut writer) = reflector::store::<K>();
        let (tx, _) = broadcast::channel(FANOUT);
        let api: Api<K> = Api::all(self.client.clone());
        let feed = tx.clone();
        tokio::spawn(async move {
            let mut events =
                watcher::watcher(api, watcher::Config::default().any_semantic()).default_backoff().boxed();
            while let Some(ev) = events.next().await {
                match ev {
                    Ok(ev) => {
                        writer.apply_watcher_event(&ev);
                        match ev {
                            Event::Apply(o) | Event::Delete(o) => {
                                let _ = feed.send(Arc::new(o));
                            }
                            Event::InitApply(o) => {
                                let _ = feed.send(Arc::new(o));
                            }
                            Event::InitDone => {
                                // kube-runtime's store readiness wakes only the last task
                                // that waited for it; send one object again so every
                                // controller fed by this informer looks once more and
                                // finds the cache ready.
                                if let Some(o) = writer.as_reader().state().into_iter().next() {
                                    let _ = feed.send(o);
                                }
                            }
                            Event::Init => {}
                        }
                    }
                    Err(e) => {
                        tracing::debug!(kind = %K::kind(&()), error = %e, "informer watch error, retrying")
                    }
                }
            }
        });
        entries.insert(TypeId::of::<K>(), Box::new(Entry { reader: reader.clone(), changes: tx.clone() }));
        Informer { store: reader, changes: tx }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn cm(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_late_subscriber_first_sees_what_the_cache_already_holds() {
        let (client, _) = fakeapi::fake_client();
        let informers = Informers::offline(client);
        informers.seed(vec![cm("a"), cm("b")]);
        let inf = informers.get::<ConfigMap>();
        let mut changes = Box::pin(inf.changes());
        let mut names = Vec::new();
        for _ in 0..2 {
            let o = tokio::time::timeout(std::time::Duration::from_secs(5), changes.next())
                .await
                .expect("the cached objects must be yielded without any new change")
                .expect("stream ended");
            names.push(o.metadata.name.clone().unwrap());
        }
        names.sort();
        assert_eq!(names, ["a", "b"]);
        // Then new changes follow.
        inf.changes.send(Arc::new(cm("c"))).unwrap();
        let o = changes.next().await.unwrap();
        assert_eq!(o.metadata.name.as_deref(), Some("c"));
    }
}
