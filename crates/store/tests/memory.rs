//! The shared conformance suite against the in-memory backend.

use std::sync::Arc;

use store::conformance::{self, Fixture};
use store::memory::MemoryStore;

async fn fixture() -> Fixture {
    Fixture::new(Arc::new(MemoryStore::new()), "/registry/", ())
}

store::conformance_tests!(fixture());

#[tokio::test]
async fn a_slow_memory_watcher_is_ended_with_watch_lagged() {
    let fixture = Fixture::new(Arc::new(MemoryStore::with_watch_buffer(16)), "/registry/", ());
    conformance::a_watcher_that_falls_behind_is_ended_with_watch_lagged(&fixture, 16).await;
}
