//! Resource monitors: one metadata-only watch per deletable resource, started and stopped
//! as discovery changes, feeding object changes to the graph builder. A relist (after a
//! watch expired) reports the objects that vanished meanwhile as deleted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::discovery::{self, ResourceInfo, Resources};
use super::graph::{Change, Identity, Observed};
use super::{GarbageCollector, RESYNC_PERIOD, SYNC_TIMEOUT};

/// A running watch of one resource.
pub struct Monitor {
    resource: ResourceInfo,
    synced: Arc<AtomicBool>,
    started: Instant,
    task: JoinHandle<()>,
}

impl Monitor {
    /// Whether the monitor has listed its resource once (or stopped being waited for).
    fn ready(&self) -> bool {
        self.synced.load(Ordering::Relaxed) || self.started.elapsed() > SYNC_TIMEOUT
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Resources the collector never watches: Events are many, short-lived and never owners.
fn ignored(r: &ResourceInfo) -> bool {
    r.plural == "events" && (r.group.is_empty() || r.group == "events.k8s.io")
}

/// The resources to monitor: preferred versions that can be listed, watched and deleted.
pub fn deletable(resources: &Resources) -> Vec<ResourceInfo> {
    resources
        .preferred
        .iter()
        .filter(|r| r.supports("delete") && r.supports("list") && r.supports("watch") && !ignored(r))
        .cloned()
        .collect()
}

fn key(r: &ResourceInfo) -> String {
    format!("{}/{}", r.group, r.plural)
}

/// What a watch says about one object.
fn observe(r: &ResourceInfo, o: &PartialObjectMeta<DynamicObject>) -> Option<Observed> {
    let m = &o.metadata;
    let uid = m.uid.clone().filter(|u| !u.is_empty())?;
    Some(Observed {
        identity: Identity {
            api_version: r.api_version(),
            kind: r.kind.clone(),
            name: m.name.clone().unwrap_or_default(),
            uid,
            namespace: m.namespace.clone().unwrap_or_default(),
        },
        owners: m.owner_references.clone().unwrap_or_default(),
        deleting: m.deletion_timestamp.is_some(),
        finalizers: m.finalizers.clone().unwrap_or_default(),
    })
}

async fn watch(client: kube::Client, r: ResourceInfo, tx: UnboundedSender<Change>, synced: Arc<AtomicBool>) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &r.api_resource());
    let start =
        || watcher::watcher(api.clone(), watcher::Config::default().any_semantic()).default_backoff().boxed();
    let mut events = start();
    let mut known: HashMap<String, Identity> = HashMap::new();
    let mut relisted: Option<HashMap<String, Identity>> = None;
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(watcher::Error::WatchStartFailed(kube::Error::Api(s))) if s.code == 410 => {
                // The listed version is already too old to watch from; kube-runtime would
                // retry that version forever, so list again (as client-go's reflector does).
                tracing::debug!(resource = %key(&r), "garbage collector monitor: listed version expired, relisting");
                events = start();
                continue;
            }
            Err(e) => {
                tracing::debug!(resource = %key(&r), error = %e, "garbage collector monitor: watch error, retrying");
                continue;
            }
        };
        let sent = match ev {
            Event::Init => {
                relisted = Some(HashMap::new());
                Ok(())
            }
            Event::InitApply(o) => match observe(&r, &o) {
                Some(obs) => {
                    if let Some(seen) = relisted.as_mut() {
                        seen.insert(obs.identity.uid.clone(), obs.identity.clone());
                    }
                    tx.send(Change::Upsert(obs))
                }
                None => Ok(()),
            },
            Event::InitDone => {
                let mut result = Ok(());
                if let Some(seen) = relisted.take() {
                    for (uid, identity) in known.drain() {
                        if !seen.contains_key(&uid) {
                            result = result.and(tx.send(Change::Delete { identity, virtual_: false }));
                        }
                    }
                    known = seen;
                }
                synced.store(true, Ordering::Relaxed);
                result
            }
            Event::Apply(o) => match observe(&r, &o) {
                Some(obs) => {
                    known.insert(obs.identity.uid.clone(), obs.identity.clone());
                    tx.send(Change::Upsert(obs))
                }
                None => Ok(()),
            },
            Event::Delete(o) => match observe(&r, &o) {
                Some(obs) => {
                    known.remove(&obs.identity.uid);
                    tx.send(Change::Delete { identity: obs.identity, virtual_: false })
                }
                None => Ok(()),
            },
        };
        if sent.is_err() {
            // The graph builder is gone: the collector stopped.
            return;
        }
    }
}

impl GarbageCollector {
    /// Starts monitors for new resources and stops those for resources no longer served.
    /// Resources of group versions whose discovery failed keep their monitors.
    fn resync_monitors(&self, found: &Resources, tx: &UnboundedSender<Change>) {
        let wanted: HashMap<String, ResourceInfo> =
            deletable(found).into_iter().map(|r| (key(&r), r)).collect();
        let mut monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        let failed: HashSet<&String> = found.failed.keys().collect();
        monitors.retain(|k, m| match wanted.get(k) {
            Some(r) => *r == m.resource,
            None => failed.contains(&m.resource.api_version()),
        });
        for (k, r) in wanted {
            if monitors.contains_key(&k) {
                continue;
            }
            tracing::debug!(resource = %k, "garbage collector: starting monitor");
            let synced = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(watch(self.client.clone(), r.clone(), tx.clone(), synced.clone()));
            monitors.insert(k, Monitor { resource: r, synced, started: Instant::now(), task });
        }
    }

    /// Test support: a monitor that has already synced, so workers do not wait.
    #[cfg(test)]
    pub(super) fn add_synced_monitor(&self, r: ResourceInfo) {
        let task = tokio::spawn(async {});
        let m = Monitor {
            resource: r.clone(),
            synced: Arc::new(AtomicBool::new(true)),
            started: Instant::now(),
            task,
        };
        self.monitors.lock().unwrap_or_else(|e| e.into_inner()).insert(key(&r), m);
    }

    /// Whether every monitor has listed its resource (or timed out doing so).
    pub(super) fn monitors_synced(&self) -> bool {
        let monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        !monitors.is_empty() && monitors.values().all(Monitor::ready)
    }

    /// Waits until discovery ran and every monitor is ready.
    pub(super) async fn wait_for_monitors(&self) {
        while !self.monitors_synced() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Discovers resources every [`RESYNC_PERIOD`] and whenever a CRD changes, and keeps
    /// the monitors and the REST mapping in step.
    pub(super) async fn sync_monitors(
        self: Arc<Self>,
        crd_changes: impl Stream<Item = impl Send> + Send,
        tx: UnboundedSender<Change>,
    ) {
        let mut crd_changes = std::pin::pin!(crd_changes);
        loop {
            match discovery::discover(&self.client).await {
                Ok(mut found) => {
                    if let Some(msg) = found.failure_message() {
                        tracing::warn!(error = %msg, "garbage collector: discovery is incomplete");
                        // Keep mapping the kinds of the groups that could not be read.
                        let old = self.resources();
                        let kept: Vec<ResourceInfo> = old
                            .all
                            .iter()
                            .filter(|r| found.failed.contains_key(&r.api_version()))
                            .cloned()
                            .collect();
                        found.all.extend(kept);
                    }
                    self.resync_monitors(&found, &tx);
                    self.set_resources(found);
                }
                Err(e) => tracing::warn!(error = %e, "garbage collector: discovery failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(RESYNC_PERIOD) => {}
                changed = crd_changes.next() => {
                    if changed.is_none() {
                        tokio::time::sleep(RESYNC_PERIOD).await;
                        continue;
                    }
                    // Let the CRD become established, and take a burst of changes at once.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    while let Some(Some(_)) = crd_changes.next().now_or_never() {}
                }
            }
        }
    }

    /// Applies the monitors' changes to the graph, in order.
    pub(super) async fn process_graph_changes(self: Arc<Self>, mut rx: UnboundedReceiver<Change>) {
        while let Some(change) = rx.recv().await {
            self.apply(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::garbagecollector::discovery::tests::res;

    #[test]
    fn monitors_cover_deletable_watchable_resources_except_events() {
        let mut readonly = res("v1", "ComponentStatus", "componentstatuses", false);
        readonly.verbs = vec!["get".into(), "list".into()];
        let found = Resources {
            preferred: vec![
                res("v1", "Pod", "pods", true),
                res("v1", "Event", "events", true),
                res("events.k8s.io/v1", "Event", "events", true),
                res("example.com/v1", "Widget", "widgets", true),
                readonly,
            ],
            ..Default::default()
        };
        let keys: Vec<String> = deletable(&found).iter().map(key).collect();
        assert_eq!(keys, ["/pods", "example.com/widgets"]);
    }
}
