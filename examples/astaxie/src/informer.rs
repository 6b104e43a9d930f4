//! A shared informer in the shape the seed talk (and client-go) describes: one watch that
//! keeps a local cache (a kube-runtime reflector store) and calls explicit on-add /
//! on-update / on-delete handlers after each change has reached the cache.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;

/// The callbacks of a shared informer (client-go's `ResourceEventHandler`). They run
/// after the cache holds the change, so a handler that reads the cache sees it. They
/// should be quick: the usual handler only puts the object's key on a work queue.
pub trait Handler<K>: Send + Sync {
    /// An object the cache did not hold appeared.
    fn on_add(&self, obj: &Arc<K>);
    /// An object the cache held changed, or was listed again after the watch restarted
    /// (then `old` and `new` may be equal: a resync).
    fn on_update(&self, old: &Arc<K>, new: &Arc<K>);
    /// An object left the cache: deleted, or missing from the list after the watch
    /// restarted (a delete the watch did not see; `obj` is then the last state known).
    fn on_delete(&self, obj: &Arc<K>);
}

/// The cache and the dispatch of its changes to one handler.
pub struct Informer<K: Resource<DynamicType = ()> + Clone + 'static> {
    writer: reflector::store::Writer<K>,
    store: Store<K>,
    /// What the cache held when the watch restarted, to tell adds, updates and deletes
    /// apart once the new list is complete.
    before_relist: Option<HashMap<ObjectRef<K>, Arc<K>>>,
}

impl<K> Default for Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + 'static,
{
    /// An informer with an empty cache.
    pub fn new() -> Self {
        let writer = reflector::store::Writer::default();
        let store = writer.as_reader();
        Self { writer, store, before_relist: None }
    }

    /// A reader of the cache, to hand to the reconcile; cheap to clone.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Applies one watch event to the cache, then calls the handler for what changed.
    /// A restarted watch (`Init` .. `InitApply`* .. `InitDone`) replaces the cache at
    /// once and reports every listed object as added or updated, and every object that
    /// is no longer listed as deleted.
    pub fn handle(&mut self, event: watcher::Event<K>, handler: &dyn Handler<K>) {
        match &event {
            watcher::Event::Apply(obj) => {
                let key = ObjectRef::from_obj(obj);
                let old = self.store.get(&key);
                self.writer.apply_watcher_event(&event);
                let Some(new) = self.store.get(&key) else { return };
                match old {
                    Some(old) => handler.on_update(&old, &new),
                    None => handler.on_add(&new),
                }
            }
            watcher::Event::Delete(obj) => {
                self.writer.apply_watcher_event(&event);
                handler.on_delete(&Arc::new(obj.clone()));
            }
            watcher::Event::Init => {
                let snapshot =
                    self.store.state().into_iter().map(|o| (ObjectRef::from_obj(&*o), o)).collect();
                self.before_relist = Some(snapshot);
                self.writer.apply_watcher_event(&event);
            }
            watcher::Event::InitApply(_) => self.writer.apply_watcher_event(&event),
            watcher::Event::InitDone => {
                self.writer.apply_watcher_event(&event);
                let mut before = self.before_relist.take().unwrap_or_default();
                for new in self.store.state() {
                    match before.remove(&ObjectRef::from_obj(&*new)) {
                        Some(old) => handler.on_update(&old, &new),
                        None => handler.on_add(&new),
                    }
                }
                for gone in before.into_values() {
                    handler.on_delete(&gone);
                }
            }
        }
    }

    /// Feeds the informer from a watch stream until it ends. Watch errors are logged;
    /// the watcher (with its backoff) retries by itself and relists after a `410 Gone`.
    pub async fn run<S>(mut self, events: S, handler: &dyn Handler<K>)
    where
        S: Stream<Item = watcher::Result<watcher::Event<K>>>,
    {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => self.handle(event, handler),
                Err(e) => tracing::warn!(error = %e, "watch failed; retrying"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::sync::Mutex;
    use watcher::Event;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Handler<ConfigMap> for Recorder {
        fn on_add(&self, obj: &Arc<ConfigMap>) {
            self.0.lock().unwrap().push(format!("add {}@{}", name(obj), rv(obj)));
        }
        fn on_update(&self, old: &Arc<ConfigMap>, new: &Arc<ConfigMap>) {
            self.0.lock().unwrap().push(format!("update {} {}->{}", name(new), rv(old), rv(new)));
        }
        fn on_delete(&self, obj: &Arc<ConfigMap>) {
            self.0.lock().unwrap().push(format!("delete {}@{}", name(obj), rv(obj)));
        }
    }

    fn name(o: &ConfigMap) -> &str {
        o.metadata.name.as_deref().unwrap_or("")
    }

    fn rv(o: &ConfigMap) -> &str {
        o.metadata.resource_version.as_deref().unwrap_or("")
    }

    fn cm(name: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn feed(informer: &mut Informer<ConfigMap>, events: Vec<Event<ConfigMap>>) -> Vec<String> {
        let rec = Recorder::default();
        for e in events {
            informer.handle(e, &rec);
        }
        rec.0.into_inner().unwrap()
    }

    #[test]
    fn watch_events_become_add_update_delete_after_reaching_the_cache() {
        let mut inf = Informer::new();
        let calls = feed(
            &mut inf,
            vec![
                Event::Apply(cm("a", "1")),
                Event::Apply(cm("a", "2")),
                Event::Apply(cm("b", "3")),
                Event::Delete(cm("a", "4")),
            ],
        );
        assert_eq!(calls, ["add a@1", "update a 1->2", "add b@3", "delete a@4"]);
        let cached: Vec<_> = inf.store().state().iter().map(|o| name(o).to_string()).collect();
        assert_eq!(cached, ["b"]);
    }

    #[test]
    fn the_first_list_reports_every_object_as_added_once_complete() {
        let mut inf = Informer::new();
        let calls =
            feed(&mut inf, vec![Event::Init, Event::InitApply(cm("a", "1")), Event::InitApply(cm("b", "2"))]);
        assert!(calls.is_empty(), "nothing is reported before the list is complete: {calls:?}");
        assert!(inf.store().is_empty(), "the cache is replaced at once");
        let mut calls = feed(&mut inf, vec![Event::InitDone]);
        calls.sort();
        assert_eq!(calls, ["add a@1", "add b@2"]);
    }

    #[test]
    fn a_relist_reports_changes_and_the_deletes_the_watch_missed() {
        let mut inf = Informer::new();
        feed(&mut inf, vec![Event::Apply(cm("kept", "1")), Event::Apply(cm("gone", "2"))]);
        let mut calls = feed(
            &mut inf,
            vec![
                Event::Init,
                Event::InitApply(cm("kept", "5")),
                Event::InitApply(cm("new", "6")),
                Event::InitDone,
            ],
        );
        calls.sort();
        assert_eq!(calls, ["add new@6", "delete gone@2", "update kept 1->5"]);
    }
}
