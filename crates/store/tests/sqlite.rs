//! The shared conformance suite against the SQLite backend, plus what only a file-backed
//! store must show: bounded growth under churn, intact data after compaction, reopening,
//! and durability of acknowledged writes across `kill -9`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use store::conformance::{self, Fixture};
use store::sqlite::{Config, SqliteStore};
use store::{Error, KeyValue, RangeOptions, Store};

const MIB: u64 = 1 << 20;

async fn open(dir: &tempfile::TempDir, config: Config) -> SqliteStore {
    SqliteStore::open_with(&dir.path().join("store.db"), config).await.unwrap()
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Config::default()).await;
    Fixture::new(Arc::new(store), "/registry/", dir)
}

store::conformance_tests!(fixture());

/// Size of the database file plus its WAL.
fn footprint(db: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    size(db) + size(Path::new(&wal))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sqlite_watcher_is_ended_with_watch_lagged() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config { watch_buffer: 16, ..Config::default() };
    let store = open(&dir, config).await;
    let fixture = Fixture::new(Arc::new(store), "/registry/", dir);
    conformance::a_watcher_that_falls_behind_is_ended_with_watch_lagged(&fixture, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_one_key_100000_times_keeps_the_file_small() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let store = SqliteStore::open(&db).await.unwrap();
    let key = "/registry/leases/kube-system/churn";
    let value = |i: usize| Bytes::from(format!("{i:0>100}"));
    let mut kv = store.create(key, value(0)).await.unwrap();
    let mut largest = 0;
    for i in 1..=100_000 {
        kv = store.update(key, value(i), kv.mod_revision).await.unwrap();
        if i % 1_000 == 0 {
            largest = largest.max(footprint(&db));
        }
    }
    let retain = Config::default().retain_revisions.unwrap();
    let step = Config::default().compaction_step;
    let current = store.current_revision().await.unwrap();
    let compacted = store.compacted_revision().await.unwrap();
    println!(
        "after 100,000 updates: largest db+wal {largest} bytes, now {} bytes, \
         revision {current}, compacted {compacted}",
        footprint(&db)
    );
    assert!(largest < 5 * MIB, "db+wal grew to {largest} bytes");
    assert!(current - compacted <= retain + step, "history is bounded");
    assert!(current - compacted >= retain, "recent history is retained");
    assert_eq!(store.get(key).await.unwrap(), Some(kv.clone()));
    let mut watch = store.watch(key, current - retain).await.unwrap();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.revision(), current - retain + 1);
}

fn value_of(key: &str, version: u32) -> Bytes {
    Bytes::from(format!("{key} v{version} {}", "p".repeat(200)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_after_thousands_of_writes_keeps_every_live_object_intact() {
    let dir = tempfile::tempdir().unwrap();
    // Small retention so that automatic compaction runs many times during the test.
    let config = Config { retain_revisions: Some(500), compaction_step: 100, ..Config::default() };
    let store = Arc::new(open(&dir, config.clone()).await);
    let keys = 3_000;
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut live = BTreeMap::new();
            for i in (writer..keys).step_by(16) {
                let key = format!("/registry/pods/ns{}/pod-{i:05}", i % 7);
                let mut kv = store.create(&key, value_of(&key, 0)).await.unwrap();
                if i % 7 == 0 {
                    for version in 1..=5 {
                        kv = store.update(&key, value_of(&key, version), kv.mod_revision).await.unwrap();
                    }
                }
                if i % 11 == 0 {
                    store.delete(&key, Some(kv.mod_revision)).await.unwrap();
                } else {
                    live.insert(key, kv);
                }
            }
            live
        }));
    }
    let mut live: BTreeMap<String, KeyValue> = BTreeMap::new();
    for task in tasks {
        live.extend(task.await.unwrap());
    }
    let current = store.current_revision().await.unwrap();
    assert!(store.compacted_revision().await.unwrap() > 0, "automatic compaction ran");
    store.compact(current).await.unwrap();

    let check = |store: Arc<SqliteStore>, live: BTreeMap<String, KeyValue>| async move {
        let listed = store.range("/registry/pods/", RangeOptions::default()).await.unwrap();
        assert_eq!(listed.kvs.len(), live.len());
        for kv in &listed.kvs {
            assert_eq!(live.get(&kv.key), Some(kv), "listed {}", kv.key);
        }
        for (key, kv) in &live {
            assert_eq!(store.get(key).await.unwrap().as_ref(), Some(kv));
        }
    };
    check(store.clone(), live.clone()).await;
    let Ok(store) = Arc::try_unwrap(store) else { panic!("the store is still shared") };
    store.close().await.unwrap();
    let reopened = Arc::new(open(&dir, config).await);
    check(reopened, live).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_data_the_compacted_revision_and_a_rising_revision_counter() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, Config::default()).await;
    let a = store.create("/registry/a", Bytes::from_static(b"a")).await.unwrap();
    let b = store.create("/registry/b", Bytes::from_static(b"b")).await.unwrap();
    let b2 = store.update("/registry/b", Bytes::from_static(b"b2"), b.mod_revision).await.unwrap();
    store.create("/registry/c", Bytes::from_static(b"c")).await.unwrap();
    // The newest write is a deletion: compaction removes its row, so only the persisted
    // counter remembers the newest revision.
    store.delete("/registry/c", None).await.unwrap();
    let head = store.current_revision().await.unwrap();
    store.compact(head).await.unwrap();
    store.close().await.unwrap();

    let store = open(&dir, Config::default()).await;
    assert_eq!(store.current_revision().await.unwrap(), head);
    assert_eq!(store.compacted_revision().await.unwrap(), head);
    assert_eq!(store.get("/registry/a").await.unwrap(), Some(a));
    assert_eq!(store.get("/registry/b").await.unwrap(), Some(b2.clone()));
    assert_eq!(store.get("/registry/c").await.unwrap(), None);
    match store.range("/registry/", RangeOptions { revision: Some(head - 1), ..Default::default() }).await {
        Err(Error::Compacted { compacted, .. }) => assert_eq!(compacted, head),
        other => panic!("expected Compacted after reopening, got {other:?}"),
    }
    assert!(matches!(store.watch("/registry/", head - 1).await, Err(Error::Compacted { .. })));
    let mut watch = store.watch("/registry/", head).await.unwrap();
    let d = store.create("/registry/d", Bytes::from_static(b"d")).await.unwrap();
    assert_eq!(d.mod_revision, head + 1, "the counter continues upward");
    assert_eq!(watch.next().await.unwrap().unwrap().revision(), head + 1);
    let b3 = store.update("/registry/b", Bytes::from_static(b"b3"), b2.mod_revision).await.unwrap();
    assert_eq!(b3.create_revision, b.create_revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9_of_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_store-crash-writer"))
        .arg(&db)
        .arg("1000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read acknowledgements on a plain thread: the pipe is blocking I/O.
    let reader = std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        let mut kill_after = Some(child);
        while let Some(Ok(line)) = lines.next() {
            let mut parts = line.split_whitespace();
            assert_eq!(parts.next(), Some("acked"), "unexpected output {line:?}");
            let key = parts.next().unwrap().to_owned();
            let revision: i64 = parts.next().unwrap().parse().unwrap();
            acked.push((key, revision));
            if acked.len() == 500
                && let Some(mut child) = kill_after.take()
            {
                child.kill().unwrap(); // SIGKILL, by PID
                let status = child.wait().unwrap();
                assert!(!status.success(), "the writer was killed: {status}");
            }
        }
        assert!(kill_after.is_none(), "the writer ended before it was killed");
        acked
    });
    let acked = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
    assert!(acked.len() >= 500);

    let store = SqliteStore::open(&db).await.unwrap();
    for (key, revision) in &acked {
        let kv = store.get(key).await.unwrap().unwrap_or_else(|| panic!("acknowledged key {key} was lost"));
        assert_eq!(kv.value, Bytes::from(format!("value of {key}")));
        assert_eq!(kv.mod_revision, *revision);
    }
    let listed = store.range("/crash/", RangeOptions::default()).await.unwrap();
    assert!(listed.kvs.len() >= acked.len());
    println!(
        "{} writes acknowledged before kill -9, {} found after reopening",
        acked.len(),
        listed.kvs.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_everything_and_compacting_gives_the_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let store = Arc::new(open(&dir, Config::default()).await);
    let keys = 4_000;
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (writer..keys).step_by(16) {
                let key = format!("/registry/secrets/big-{i:05}");
                store.create(&key, Bytes::from(vec![b's'; 1024])).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let full = footprint(&db);
    for i in 0..keys {
        store.delete(&format!("/registry/secrets/big-{i:05}"), None).await.unwrap();
    }
    let head = store.current_revision().await.unwrap();
    store.compact(head).await.unwrap();
    let Ok(store) = Arc::try_unwrap(store) else { panic!("the store is still shared") };
    store.close().await.unwrap();
    let emptied = footprint(&db);
    println!("{keys} keys of 1 KiB: {full} bytes; deleted and compacted: {emptied} bytes");
    assert!(full > 4 * MIB);
    assert!(emptied < full / 2, "the file shrank from {full} to {emptied} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_based_retention_compacts_only_revisions_older_than_retain_for() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        retain_revisions: None,
        retain_for: Some(std::time::Duration::from_secs(2)),
        compaction_step: 1,
        ..Config::default()
    };
    let store = open(&dir, config).await;
    let mut old = Vec::new();
    for i in 0..50 {
        old.push(store.create(&format!("/registry/old/{i}"), Bytes::from_static(b"o")).await.unwrap());
    }
    assert_eq!(store.compacted_revision().await.unwrap(), 0, "nothing is 2 s old yet");
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let started = std::time::Instant::now();
    for i in 0..50 {
        store.create(&format!("/registry/new/{i}"), Bytes::from_static(b"n")).await.unwrap();
    }
    let last_old = old.last().unwrap().mod_revision;
    // Compaction runs on the writer thread after the writes were acknowledged.
    let mut compacted = 0;
    while compacted < last_old && started.elapsed() < std::time::Duration::from_secs(10) {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        compacted = store.compacted_revision().await.unwrap();
    }
    if started.elapsed() < std::time::Duration::from_millis(1_500) {
        assert_eq!(compacted, last_old, "all old revisions and no recent one are compacted");
    } else {
        // A very slow machine: recent revisions may have aged past 2 s meanwhile.
        assert!(compacted >= last_old);
    }
}
