//! The shared conformance suite against a real etcd, plus etcd-specific behaviour.
//!
//! Needs the `etcd` binary (Debian package etcd-server): each test starts its own etcd on
//! 127.0.0.1 with free ports and kills it afterwards. With `KRUST_TEST_ETCD_ENDPOINT` set,
//! tests use that etcd instead and run one at a time (they compact the whole keyspace).
//! Without either, the tests fail: they are never skipped silently.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use store::conformance::etcd_server::{self, TestEtcd};
use store::conformance::{Fixture, unique_prefix};
use store::etcd::EtcdStore;
use store::{Error, RangeOptions, Store};

/// Serializes tests that share an external etcd.
static EXTERNAL_ETCD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Etcd {
    endpoint: String,
    _server: Option<TestEtcd>,
    _turn: Option<tokio::sync::MutexGuard<'static, ()>>,
}

async fn etcd() -> Etcd {
    let turn = match std::env::var(etcd_server::ENDPOINT_ENV) {
        Ok(e) if !e.is_empty() => Some(EXTERNAL_ETCD.lock().await),
        _ => None,
    };
    let (endpoint, server) =
        etcd_server::endpoint().await.unwrap_or_else(|e| panic!("no etcd to test against: {e}"));
    Etcd { endpoint, _server: server, _turn: turn }
}

async fn connect(etcd: &Etcd, prefix: &str) -> EtcdStore {
    EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), prefix)
        .await
        .unwrap_or_else(|e| panic!("connecting to etcd at {}: {e}", etcd.endpoint))
}

async fn fixture() -> Fixture {
    let etcd = etcd().await;
    let store = connect(&etcd, &unique_prefix("conformance")).await;
    Fixture::new(Arc::new(store), "/registry/", etcd)
}

store::conformance_tests!(fixture());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_revision_is_found_when_another_client_compacted() {
    let etcd = etcd().await;
    let prefix = unique_prefix("foreign-compaction");
    let compactor = connect(&etcd, &prefix).await;
    let observer = connect(&etcd, &prefix).await;
    let first = compactor.create("/a", Bytes::from_static(b"1")).await.unwrap();
    let mut last = first.clone();
    for i in 0..20 {
        last = compactor.update("/a", Bytes::from(format!("{i}")), last.mod_revision).await.unwrap();
    }
    let c = first.mod_revision + 7;
    compactor.compact(c).await.unwrap();

    assert_eq!(observer.compacted_revision().await.unwrap(), c);
    match observer.range("/", RangeOptions { revision: Some(c - 1), ..Default::default() }).await {
        Err(Error::Compacted { compacted, .. }) => assert_eq!(compacted, c),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let fresh = connect(&etcd, &prefix).await;
    match fresh.watch("/", c - 1).await {
        Err(Error::Compacted { requested, compacted }) => {
            assert_eq!((requested, compacted), (c - 1, c));
        }
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, the watch started"),
    }
    let mut watch = fresh.watch("/", c).await.unwrap();
    let event = watch.next().await.unwrap().unwrap();
    assert_eq!(event.revision(), c + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_with_different_prefixes_do_not_see_each_other() {
    let etcd = etcd().await;
    let one = connect(&etcd, &unique_prefix("one")).await;
    let two = connect(&etcd, &unique_prefix("two")).await;
    let start = one.current_revision().await.unwrap();
    let mut watch_two = two.watch("/", start).await.unwrap();
    one.create("/pods/x", Bytes::from_static(b"one")).await.unwrap();
    let mine = two.create("/pods/x", Bytes::from_static(b"two")).await.unwrap();
    let listed = two.range("/", RangeOptions::default()).await.unwrap();
    assert_eq!(listed.kvs, vec![mine.clone()]);
    let event = watch_two.next().await.unwrap().unwrap();
    assert_eq!(event.key(), "/pods/x");
    assert_eq!(event.revision(), mine.mod_revision);
}

#[tokio::test]
async fn connecting_where_no_etcd_listens_fails_with_a_backend_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoints = [format!("http://127.0.0.1:{port}")];
    match EtcdStore::connect(&endpoints, "/x").await {
        Err(Error::Backend { .. }) => {}
        Err(e) => panic!("expected a Backend error, got {e}"),
        Ok(_) => panic!("connected to nothing"),
    }
}
