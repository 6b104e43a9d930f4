//! The conformance suite every [`Store`] backend passes, and helpers to run it (an etcd
//! launcher for tests). Enabled by the `conformance` feature.
//!
//! Each check is an async fn taking a [`Fixture`]: a store plus a key prefix the check may
//! use freely. [`conformance_tests!`](crate::conformance_tests) turns the whole list into
//! one `#[tokio::test]` per check for a backend:
//!
//! ```no_run
//! use std::sync::Arc;
//! use store::conformance::Fixture;
//! use store::memory::MemoryStore;
//!
//! async fn fixture() -> Fixture {
//!     Fixture::new(Arc::new(MemoryStore::new()), "/registry/", ())
//! }
//!
//! store::conformance_tests!(fixture());
//! # fn main() {}
//! ```
//!
//! Checks assume no one else writes under their prefix and no one else compacts the store
//! while they run; revisions are only compared for order, except where a check itself
//! made every write in between.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Error, Event, KeyValue, RangeOptions, Revision, Store, WatchStream};

pub mod etcd_server;

/// How long a check waits for one watch event before it fails.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A store under test, the prefix the check may use, and whatever must outlive the store
/// (a temp dir, an etcd process); fields drop in that order.
pub struct Fixture {
    /// The store under test; shared so that checks can write from several tasks.
    pub store: Arc<dyn Store>,
    /// Every key a check writes starts with this prefix.
    pub prefix: String,
    _keep: Box<dyn Any + Send + Sync>,
}

impl Fixture {
    /// A fixture whose checks write under `prefix`; `keep` is dropped after the store.
    pub fn new(store: Arc<dyn Store>, prefix: &str, keep: impl Any + Send + Sync) -> Self {
        Fixture { store, prefix: prefix.to_owned(), _keep: Box::new(keep) }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// A key prefix no other test of this process (or of another process) uses.
pub fn unique_prefix(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("/krust-test/{name}-{}-{}-{nanos}/", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst))
}

/// Generates one `#[tokio::test]` per conformance check; `$fixture` is an expression
/// evaluated anew in every test that yields a future of a [`Fixture`].
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr) => {
        $crate::conformance_tests!(@each $fixture;
            revisions_strictly_increase_with_every_write,
            create_of_an_existing_key_fails_with_already_exists,
            update_with_a_stale_revision_conflicts_and_carries_the_current_value,
            delete_with_a_stale_revision_conflicts_and_carries_the_current_value,
            missing_keys_give_not_found_and_deleted_keys_can_be_created_again,
            range_returns_only_the_prefix_in_key_order_with_limit_and_more,
            range_pages_with_start_after_visit_every_key_once,
            range_at_a_past_revision_sees_the_state_of_that_revision,
            range_at_a_future_revision_fails_with_future_revision,
            watch_replays_history_in_order_then_streams_live_events_with_prev_values,
            watch_from_every_retained_revision_replays_exactly_the_later_events,
            watch_on_a_prefix_does_not_see_other_prefixes,
            watch_from_a_future_revision_starts_after_it,
            watch_started_during_writes_has_no_gap_and_no_duplicate,
            concurrent_compare_and_swap_loses_no_update,
            compacted_revisions_fail_range_and_watch_with_compacted,
            compaction_keeps_the_current_value_of_every_live_key,
        );
    };
    (@each $fixture:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = $fixture.await;
                $crate::conformance::$check(&fixture).await;
            }
        )*
    };
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(stream: &mut WatchStream) -> Event {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended early"),
        Err(_) => panic!("no watch event within {EVENT_TIMEOUT:?}"),
    }
}

/// Reads events until one at revision `last` (inclusive).
async fn events_through(stream: &mut WatchStream, last: Revision) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let event = next_event(stream).await;
        let revision = event.revision();
        assert!(revision <= last, "watch skipped past revision {last} to {revision}");
        events.push(event);
        if revision == last {
            return events;
        }
    }
}

/// Asserts that the stream yields nothing for a short while.
async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
        panic!("expected no watch event, got {item:?}");
    }
}

async fn expect_watch_compacted(store: &dyn Store, prefix: &str, after: Revision) {
    match store.watch(prefix, after).await {
        Err(Error::Compacted { requested, .. }) => assert_eq!(requested, after),
        Err(e) => panic!("watch after {after}: expected Compacted, got {e}"),
        Ok(mut stream) => match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
            Ok(Some(Err(Error::Compacted { .. }))) => {}
            other => panic!("watch after {after}: expected Compacted, got {other:?}"),
        },
    }
}

fn put(kv: &KeyValue, prev: Option<&KeyValue>) -> Event {
    Event::Put { kv: kv.clone(), prev: prev.cloned() }
}

fn deleted(prev: &KeyValue, revision: Revision) -> Event {
    Event::Delete { prev: prev.clone(), revision }
}

/// Every write gets a revision above all earlier ones; failed writes get none.
pub async fn revisions_strictly_increase_with_every_write(fx: &Fixture) {
    let s = &*fx.store;
    let start = s.current_revision().await.unwrap();
    let a1 = s.create(&fx.key("a"), b("1")).await.unwrap();
    assert!(a1.mod_revision > start);
    assert_eq!(a1.create_revision, a1.mod_revision);
    assert_eq!(s.current_revision().await.unwrap(), a1.mod_revision);

    let a2 = s.update(&fx.key("a"), b("2"), a1.mod_revision).await.unwrap();
    assert!(a2.mod_revision > a1.mod_revision);
    assert_eq!(a2.create_revision, a1.create_revision);

    let b1 = s.create(&fx.key("b"), b("1")).await.unwrap();
    assert!(b1.mod_revision > a2.mod_revision);

    let before_failures = s.current_revision().await.unwrap();
    assert!(s.create(&fx.key("b"), b("again")).await.is_err());
    assert!(s.update(&fx.key("a"), b("x"), a1.mod_revision).await.is_err());
    assert!(s.delete(&fx.key("missing"), None).await.is_err());
    assert_eq!(s.current_revision().await.unwrap(), before_failures);

    let gone = s.delete(&fx.key("a"), Some(a2.mod_revision)).await.unwrap();
    assert_eq!(gone, a2, "delete returns the value the key had");
    let after_delete = s.current_revision().await.unwrap();
    assert!(after_delete > b1.mod_revision);

    let a3 = s.create(&fx.key("a"), b("3")).await.unwrap();
    assert!(a3.mod_revision > after_delete);
    assert_eq!(a3.create_revision, a3.mod_revision, "a key created again starts a new incarnation");
}

/// `create` never overwrites.
pub async fn create_of_an_existing_key_fails_with_already_exists(fx: &Fixture) {
    let s = &*fx.store;
    let key = fx.key("pod");
    let first = s.create(&key, b("first")).await.unwrap();
    match s.create(&key, b("second")).await {
        Err(Error::AlreadyExists { key: k }) => assert_eq!(k, key),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(s.get(&key).await.unwrap(), Some(first));
}

/// A stale `update` writes nothing and reports what is there now.
pub async fn update_with_a_stale_revision_conflicts_and_carries_the_current_value(fx: &Fixture) {
    let s = &*fx.store;
    let key = fx.key("pod");
    let v1 = s.create(&key, b("v1")).await.unwrap();
    let v2 = s.update(&key, b("v2"), v1.mod_revision).await.unwrap();
    assert_eq!(v2.value, b("v2"));
    match s.update(&key, b("v3"), v1.mod_revision).await {
        Err(Error::Conflict { key: k, current }) => {
            assert_eq!(k, key);
            assert_eq!(*current, v2);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get(&key).await.unwrap(), Some(v2.clone()));
    let v3 = s.update(&key, b("v3"), v2.mod_revision).await.unwrap();
    assert_eq!(s.get(&key).await.unwrap(), Some(v3));
}

/// A stale conditional `delete` deletes nothing and reports what is there now.
pub async fn delete_with_a_stale_revision_conflicts_and_carries_the_current_value(fx: &Fixture) {
    let s = &*fx.store;
    let key = fx.key("pod");
    let v1 = s.create(&key, b("v1")).await.unwrap();
    let v2 = s.update(&key, b("v2"), v1.mod_revision).await.unwrap();
    match s.delete(&key, Some(v1.mod_revision)).await {
        Err(Error::Conflict { key: k, current }) => {
            assert_eq!(k, key);
            assert_eq!(*current, v2);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get(&key).await.unwrap(), Some(v2.clone()));
    assert_eq!(s.delete(&key, Some(v2.mod_revision)).await.unwrap(), v2);
    assert_eq!(s.get(&key).await.unwrap(), None);
}

/// Absent keys: `get` gives `None`, writes that need the key give `NotFound`.
pub async fn missing_keys_give_not_found_and_deleted_keys_can_be_created_again(fx: &Fixture) {
    let s = &*fx.store;
    let missing = fx.key("missing");
    assert_eq!(s.get(&missing).await.unwrap(), None);
    let not_found = |r: crate::Result<KeyValue>| match r {
        Err(Error::NotFound { key }) => assert_eq!(key, missing),
        other => panic!("expected NotFound, got {other:?}"),
    };
    not_found(s.update(&missing, b("x"), 1).await);
    not_found(s.delete(&missing, None).await);
    not_found(s.delete(&missing, Some(1)).await);

    let key = fx.key("pod");
    let old = s.create(&key, b("old")).await.unwrap();
    s.delete(&key, None).await.unwrap();
    assert_eq!(s.get(&key).await.unwrap(), None);
    match s.update(&key, b("x"), old.mod_revision).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("update of a deleted key: expected NotFound, got {other:?}"),
    }
    match s.delete(&key, Some(old.mod_revision)).await {
        Err(Error::NotFound { .. }) => {}
        other => panic!("delete of a deleted key: expected NotFound, got {other:?}"),
    }
    let new = s.create(&key, b("new")).await.unwrap();
    assert!(new.create_revision > old.create_revision);
    assert_eq!(s.get(&key).await.unwrap(), Some(new));
}

/// Prefix ranges hold exactly the keys under the prefix, sorted, cut at `limit`.
pub async fn range_returns_only_the_prefix_in_key_order_with_limit_and_more(fx: &Fixture) {
    let s = &*fx.store;
    let mut written = BTreeMap::new();
    for name in ["pods/c", "pod", "pods/a", "services/a", "pods/d", "podsx/e", "pods/b"] {
        written.insert(name, s.create(&fx.key(name), b(name)).await.unwrap());
    }
    let pods: Vec<KeyValue> =
        ["pods/a", "pods/b", "pods/c", "pods/d"].iter().map(|n| written[n].clone()).collect();
    let all = s.range(&fx.key("pods/"), RangeOptions::default()).await.unwrap();
    assert_eq!(all.kvs, pods);
    assert!(!all.more);
    assert_eq!(all.revision, s.current_revision().await.unwrap());

    let limited = |limit| RangeOptions { limit: Some(limit), ..Default::default() };
    let two = s.range(&fx.key("pods/"), limited(2)).await.unwrap();
    assert_eq!(two.kvs, pods[..2]);
    assert!(two.more);
    let four = s.range(&fx.key("pods/"), limited(4)).await.unwrap();
    assert_eq!(four.kvs, pods);
    assert!(!four.more, "exactly `limit` keys exist: nothing more");
    let unlimited = s.range(&fx.key("pods/"), limited(0)).await.unwrap();
    assert_eq!(unlimited.kvs, pods, "limit 0 means no limit");

    let everything = s.range(&fx.prefix, RangeOptions::default()).await.unwrap();
    let keys: Vec<&str> = everything.kvs.iter().map(|kv| kv.key.as_str()).collect();
    let expected: Vec<String> = written.keys().map(|n| fx.key(n)).collect();
    assert_eq!(keys, expected);

    let none = s.range(&fx.key("nothing/"), RangeOptions::default()).await.unwrap();
    assert!(none.kvs.is_empty() && !none.more);
}

/// Paging with `start_after` (and a fixed revision, as list continuation does) returns
/// every key exactly once even while the keys change.
pub async fn range_pages_with_start_after_visit_every_key_once(fx: &Fixture) {
    let s = &*fx.store;
    let prefix = fx.key("items/");
    let mut expected = Vec::new();
    for i in 0..25 {
        expected.push(s.create(&format!("{prefix}{i:03}"), b("x")).await.unwrap());
    }
    let first = s.range(&prefix, RangeOptions { limit: Some(7), ..Default::default() }).await.unwrap();
    let at = first.revision;
    // Changes after the first page must not show in later pages read at its revision.
    s.create(&format!("{prefix}0001"), b("late")).await.unwrap();
    s.delete(&format!("{prefix}020"), None).await.unwrap();

    let mut seen = first.kvs.clone();
    let mut more = first.more;
    let mut pages = 1;
    while more {
        let page = s
            .range(
                &prefix,
                RangeOptions {
                    start_after: seen.last().map(|kv| kv.key.clone()),
                    limit: Some(7),
                    revision: Some(at),
                },
            )
            .await
            .unwrap();
        assert_eq!(page.revision, at);
        assert!(page.kvs.len() <= 7);
        more = page.more;
        seen.extend(page.kvs);
        pages += 1;
    }
    assert_eq!(pages, 4);
    assert_eq!(seen, expected);

    let from_before = s
        .range(
            &prefix,
            RangeOptions { start_after: Some(fx.key("a")), revision: Some(at), ..Default::default() },
        )
        .await
        .unwrap();
    assert_eq!(from_before.kvs.len(), 25, "start_after before the prefix");
    let from_after = s
        .range(&prefix, RangeOptions { start_after: Some(format!("{prefix}999")), ..Default::default() })
        .await
        .unwrap();
    assert!(from_after.kvs.is_empty() && !from_after.more);
}

/// A read at revision `r` sees exactly the values current at `r`.
pub async fn range_at_a_past_revision_sees_the_state_of_that_revision(fx: &Fixture) {
    let s = &*fx.store;
    let a1 = s.create(&fx.key("a"), b("a1")).await.unwrap();
    let b1 = s.create(&fx.key("b"), b("b1")).await.unwrap();
    let a2 = s.update(&fx.key("a"), b("a2"), a1.mod_revision).await.unwrap();
    let b_gone = s.delete(&fx.key("b"), None).await.unwrap();
    assert_eq!(b_gone, b1);
    let r_delete = s.current_revision().await.unwrap();
    let c1 = s.create(&fx.key("c"), b("c1")).await.unwrap();

    let cases = [
        (a1.mod_revision, vec![a1.clone()]),
        (b1.mod_revision, vec![a1.clone(), b1.clone()]),
        (a2.mod_revision, vec![a2.clone(), b1.clone()]),
        (r_delete, vec![a2.clone()]),
        (c1.mod_revision, vec![a2.clone(), c1.clone()]),
    ];
    for (at, expected) in cases {
        let read =
            s.range(&fx.prefix, RangeOptions { revision: Some(at), ..Default::default() }).await.unwrap();
        assert_eq!(read.kvs, expected, "state at revision {at}");
        assert_eq!(read.revision, at);
    }
    let before = s
        .range(&fx.prefix, RangeOptions { revision: Some(a1.mod_revision - 1), ..Default::default() })
        .await
        .unwrap();
    assert!(before.kvs.is_empty(), "nothing existed before the first write");
}

/// Reads cannot look ahead of the store.
pub async fn range_at_a_future_revision_fails_with_future_revision(fx: &Fixture) {
    let s = &*fx.store;
    s.create(&fx.key("a"), b("a")).await.unwrap();
    let current = s.current_revision().await.unwrap();
    match s.range(&fx.prefix, RangeOptions { revision: Some(current + 1000), ..Default::default() }).await {
        Err(Error::FutureRevision { requested, current: reported }) => {
            assert_eq!(requested, current + 1000);
            assert!(reported >= current);
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

/// A watch from the past replays history in order, then continues with live writes;
/// every event carries the previous value.
pub async fn watch_replays_history_in_order_then_streams_live_events_with_prev_values(fx: &Fixture) {
    let s = &*fx.store;
    let start = s.current_revision().await.unwrap();
    let a1 = s.create(&fx.key("a"), b("a1")).await.unwrap();
    let a2 = s.update(&fx.key("a"), b("a2"), a1.mod_revision).await.unwrap();
    s.delete(&fx.key("a"), Some(a2.mod_revision)).await.unwrap();
    let r_delete = s.current_revision().await.unwrap();
    let b1 = s.create(&fx.key("b"), b("b1")).await.unwrap();

    let mut watch = s.watch(&fx.prefix, start).await.unwrap();
    let replayed = events_through(&mut watch, b1.mod_revision).await;
    assert_eq!(replayed, vec![put(&a1, None), put(&a2, Some(&a1)), deleted(&a2, r_delete), put(&b1, None),]);

    let b2 = s.update(&fx.key("b"), b("b2"), b1.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut watch).await, put(&b2, Some(&b1)));
    let a3 = s.create(&fx.key("a"), b("a3")).await.unwrap();
    assert_eq!(
        next_event(&mut watch).await,
        put(&a3, None),
        "a key created after its deletion has no previous value"
    );
    s.delete(&fx.key("b"), None).await.unwrap();
    let r_delete_b = s.current_revision().await.unwrap();
    assert_eq!(next_event(&mut watch).await, deleted(&b2, r_delete_b));
}

/// Whatever retained revision a watch starts from, it yields exactly the later events.
pub async fn watch_from_every_retained_revision_replays_exactly_the_later_events(fx: &Fixture) {
    let s = &*fx.store;
    let start = s.current_revision().await.unwrap();
    let mut all = Vec::new();
    let mut live: BTreeMap<String, KeyValue> = BTreeMap::new();
    for i in 0..12 {
        let key = fx.key(&format!("k{}", i % 4));
        let event = match live.remove(&key) {
            None => {
                let kv = s.create(&key, b(&format!("v{i}"))).await.unwrap();
                live.insert(key, kv.clone());
                put(&kv, None)
            }
            Some(prev) if i % 3 == 0 => {
                s.delete(&key, Some(prev.mod_revision)).await.unwrap();
                deleted(&prev, s.current_revision().await.unwrap())
            }
            Some(prev) => {
                let kv = s.update(&key, b(&format!("v{i}")), prev.mod_revision).await.unwrap();
                live.insert(key, kv.clone());
                put(&kv, Some(&prev))
            }
        };
        all.push(event);
    }
    let last = all.last().map(Event::revision).unwrap();
    for after in start..last {
        let mut watch = s.watch(&fx.prefix, after).await.unwrap();
        let expected: Vec<Event> = all.iter().filter(|e| e.revision() > after).cloned().collect();
        assert_eq!(events_through(&mut watch, last).await, expected, "watch after {after}");
    }
    let mut at_head = s.watch(&fx.prefix, last).await.unwrap();
    assert_quiet(&mut at_head).await;
    let next = s.create(&fx.key("next"), b("n")).await.unwrap();
    assert_eq!(next_event(&mut at_head).await, put(&next, None));
}

/// A watch sees its prefix only, including keys that merely share leading characters.
pub async fn watch_on_a_prefix_does_not_see_other_prefixes(fx: &Fixture) {
    let s = &*fx.store;
    let start = s.current_revision().await.unwrap();
    let mut watch = s.watch(&fx.key("a/"), start).await.unwrap();
    for other in ["b/x", "ab", "a", "a0"] {
        s.create(&fx.key(other), b("other")).await.unwrap();
    }
    let mine = s.create(&fx.key("a/x"), b("mine")).await.unwrap();
    assert_eq!(next_event(&mut watch).await, put(&mine, None));
    s.create(&fx.key("b/y"), b("other")).await.unwrap();
    let mine2 = s.create(&fx.key("a/y"), b("mine")).await.unwrap();
    assert_eq!(next_event(&mut watch).await, put(&mine2, None));
    assert_quiet(&mut watch).await;
}

/// A watch may start ahead of the store: it yields only events above its revision.
pub async fn watch_from_a_future_revision_starts_after_it(fx: &Fixture) {
    let s = &*fx.store;
    let head = s.current_revision().await.unwrap();
    let mut watch = s.watch(&fx.prefix, head + 3).await.unwrap();
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(s.create(&fx.key(&format!("k{i}")), b("v")).await.unwrap());
    }
    let first = next_event(&mut watch).await;
    assert_eq!(first.revision(), head + 4);
    assert_eq!(first, put(&written[3], None));
}

/// Watches started while writes stream in switch from replay to live without losing or
/// repeating an event.
pub async fn watch_started_during_writes_has_no_gap_and_no_duplicate(fx: &Fixture) {
    let start = fx.store.current_revision().await.unwrap();
    let writers = 4;
    let per_writer = 75;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = fx.store.clone();
        let prefix = fx.key("churn/");
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..per_writer {
                let kv =
                    store.create(&format!("{prefix}{w}-{i}"), Bytes::from(vec![b'x'; 64])).await.unwrap();
                revisions.push(kv.mod_revision);
            }
            revisions
        }));
    }
    // Start watches at staggered moments while the writers run.
    let mut watches = Vec::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        watches.push(fx.store.watch(&fx.key("churn/"), start).await.unwrap());
    }
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.extend(task.await.unwrap());
    }
    revisions.sort_unstable();
    let last = *revisions.last().unwrap();
    for mut watch in watches {
        let seen: Vec<Revision> =
            events_through(&mut watch, last).await.iter().map(Event::revision).collect();
        assert_eq!(seen, revisions);
    }
}

/// Many tasks incrementing one counter with compare-and-swap never lose an update, and
/// a watch shows every increment in order.
pub async fn concurrent_compare_and_swap_loses_no_update(fx: &Fixture) {
    let key = fx.key("counter");
    let created = fx.store.create(&key, b("0")).await.unwrap();
    let tasks = 8;
    let increments = 25;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let store = fx.store.clone();
        let key = key.clone();
        handles.push(tokio::spawn(async move {
            let mut current = store.get(&key).await.unwrap().unwrap();
            for _ in 0..increments {
                loop {
                    let n: u64 = std::str::from_utf8(&current.value).unwrap().parse().unwrap();
                    match store.update(&key, b(&(n + 1).to_string()), current.mod_revision).await {
                        Ok(kv) => {
                            current = kv;
                            break;
                        }
                        Err(Error::Conflict { current: now, .. }) => current = *now,
                        Err(e) => panic!("update failed: {e}"),
                    }
                }
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let last = fx.store.get(&key).await.unwrap().unwrap();
    assert_eq!(last.value, b(&(tasks * increments).to_string()));

    let mut watch = fx.store.watch(&key, created.mod_revision).await.unwrap();
    let events = events_through(&mut watch, last.mod_revision).await;
    assert_eq!(events.len(), tasks * increments);
    for (i, event) in events.iter().enumerate() {
        let Event::Put { kv, prev: Some(prev) } = event else {
            panic!("expected an update with a previous value, got {event:?}");
        };
        assert_eq!(kv.value, b(&(i + 1).to_string()));
        assert_eq!(prev.value, b(&i.to_string()));
    }
}

/// After `compact(c)`: reads below `c` and watches that need revisions at or below `c`
/// fail with `Compacted`; reads at `c` or later and watches after `c` still work.
pub async fn compacted_revisions_fail_range_and_watch_with_compacted(fx: &Fixture) {
    let s = &*fx.store;
    let a1 = s.create(&fx.key("a"), b("a1")).await.unwrap();
    let a2 = s.update(&fx.key("a"), b("a2"), a1.mod_revision).await.unwrap();
    let b1 = s.create(&fx.key("b"), b("b1")).await.unwrap();
    s.delete(&fx.key("b"), None).await.unwrap();
    let r_delete = s.current_revision().await.unwrap();
    let a3 = s.update(&fx.key("a"), b("a3"), a2.mod_revision).await.unwrap();

    let c = b1.mod_revision;
    s.compact(c).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), c);

    let at = |revision| RangeOptions { revision: Some(revision), ..Default::default() };
    match s.range(&fx.prefix, at(a2.mod_revision)).await {
        Err(Error::Compacted { requested, compacted }) => {
            assert_eq!(requested, a2.mod_revision);
            assert_eq!(compacted, c);
        }
        other => panic!("range below the compacted revision: expected Compacted, got {other:?}"),
    }
    assert_eq!(
        s.range(&fx.prefix, at(c)).await.unwrap().kvs,
        vec![a2.clone(), b1.clone()],
        "the compacted revision itself stays readable"
    );
    assert_eq!(s.range(&fx.prefix, at(r_delete)).await.unwrap().kvs, vec![a2.clone()]);

    expect_watch_compacted(s, &fx.prefix, a1.mod_revision - 1).await;
    expect_watch_compacted(s, &fx.prefix, c - 1).await;
    let mut watch = s.watch(&fx.prefix, c).await.unwrap();
    assert_eq!(
        events_through(&mut watch, a3.mod_revision).await,
        vec![deleted(&b1, r_delete), put(&a3, Some(&a2))]
    );

    // Compacting again at or below is a no-op; beyond the head is refused.
    s.compact(c).await.unwrap();
    s.compact(a1.mod_revision).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), c);
    let head = s.current_revision().await.unwrap();
    match s.compact(head + 100).await {
        Err(Error::FutureRevision { .. }) => {}
        other => panic!("compact beyond the head: expected FutureRevision, got {other:?}"),
    }
    assert_eq!(s.get(&fx.key("a")).await.unwrap(), Some(a3));
}

/// Compaction never touches the current value of a live key, nor its revisions.
pub async fn compaction_keeps_the_current_value_of_every_live_key(fx: &Fixture) {
    let s = &*fx.store;
    let mut live: BTreeMap<String, KeyValue> = BTreeMap::new();
    for i in 0..50 {
        let key = fx.key(&format!("obj/{i:02}"));
        live.insert(key.clone(), s.create(&key, b(&format!("{i}-0"))).await.unwrap());
    }
    for round in 1..=3 {
        for i in (0..50).step_by(3) {
            let key = fx.key(&format!("obj/{i:02}"));
            let prev = &live[&key];
            let kv = s.update(&key, b(&format!("{i}-{round}")), prev.mod_revision).await.unwrap();
            live.insert(key, kv);
        }
    }
    for i in (0..50).step_by(5) {
        let key = fx.key(&format!("obj/{i:02}"));
        s.delete(&key, None).await.unwrap();
        live.remove(&key);
    }
    let head = s.current_revision().await.unwrap();
    s.compact(head).await.unwrap();

    let listed = s.range(&fx.key("obj/"), RangeOptions::default()).await.unwrap();
    let expected: Vec<KeyValue> = live.values().cloned().collect();
    assert_eq!(listed.kvs, expected);
    for (key, kv) in &live {
        assert_eq!(s.get(key).await.unwrap().as_ref(), Some(kv));
    }
    // Compare-and-swap still works against revisions written before the compaction.
    let (key, kv) = live.iter().next().unwrap();
    let updated = s.update(key, b("after"), kv.mod_revision).await.unwrap();
    assert_eq!(updated.create_revision, kv.create_revision);
    let mut watch = s.watch(&fx.key("obj/"), head).await.unwrap();
    assert_eq!(next_event(&mut watch).await, put(&updated, Some(kv)));
}

/// For the in-process backends (built with a watch buffer of `buffer` events): a watcher
/// that reads nothing does not hold writers up, and its stream ends with
/// [`crate::WatchLagged`] after delivering a gap-free run of events; a new watch from
/// the reported revision continues without a gap.
pub async fn a_watcher_that_falls_behind_is_ended_with_watch_lagged(fx: &Fixture, buffer: usize) {
    let s = &*fx.store;
    let start = s.current_revision().await.unwrap();
    let mut slow = s.watch(&fx.prefix, start).await.unwrap();
    let mut revisions = Vec::new();
    let writes = buffer * 3;
    tokio::time::timeout(Duration::from_secs(60), async {
        for i in 0..writes {
            let kv = s.create(&fx.key(&format!("k{i:05}")), b("x")).await.unwrap();
            revisions.push(kv.mod_revision);
        }
    })
    .await
    .expect("writers must not wait for a slow watcher");

    let mut delivered = Vec::new();
    let lagged = loop {
        match tokio::time::timeout(EVENT_TIMEOUT, slow.next()).await {
            Ok(Some(Ok(event))) => delivered.push(event.revision()),
            Ok(Some(Err(e))) => {
                break e.watch_lagged().cloned().unwrap_or_else(|| panic!("expected WatchLagged, got {e}"));
            }
            other => panic!("expected events then WatchLagged, got {other:?}"),
        }
    };
    assert!(delivered.len() <= buffer);
    assert_eq!(delivered, revisions[..delivered.len()]);
    assert_eq!(lagged.resume_after, *delivered.last().unwrap_or(&start));
    assert_eq!(lagged.buffer, buffer);
    assert!(slow.next().await.is_none(), "the error is the last item");

    let mut resumed = s.watch(&fx.prefix, lagged.resume_after).await.unwrap();
    let rest: Vec<Revision> =
        events_through(&mut resumed, *revisions.last().unwrap()).await.iter().map(Event::revision).collect();
    assert_eq!(rest, revisions[delivered.len()..]);
}
