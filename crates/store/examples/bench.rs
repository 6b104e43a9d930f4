//! Throughput and latency of each store backend on this machine: creates, gets, paged
//! lists, watch replay and live watch delivery for 10,000 keys of ~1 KiB.
//!
//! `cargo run --release -p store --example bench [-- [--keys N] [--concurrency C]
//! [--backend memory|sqlite|etcd]...]`
//!
//! SQLite runs on a file in a temp dir with the default configuration; etcd is one
//! started for the run on 127.0.0.1 (or `KRUST_TEST_ETCD_ENDPOINT`). It prints figures and
//! asserts nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use store::conformance::{etcd_server, unique_prefix};
use store::etcd::EtcdStore;
use store::memory::MemoryStore;
use store::sqlite::SqliteStore;
use store::{Event, RangeOptions, Store};

const VALUE_SIZE: usize = 1024;
const PAGE: usize = 500;
const LISTS: usize = 5;

struct Options {
    keys: usize,
    concurrency: usize,
    backends: Vec<String>,
}

fn options() -> anyhow::Result<Options> {
    let mut opts = Options { keys: 10_000, concurrency: 16, backends: Vec::new() };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--keys" => opts.keys = value("--keys")?.parse().context("--keys")?,
            "--concurrency" => opts.concurrency = value("--concurrency")?.parse().context("--concurrency")?,
            "--backend" => opts.backends.push(value("--backend")?),
            other => bail!("unknown argument {other:?}"),
        }
    }
    if opts.backends.is_empty() {
        opts.backends = vec!["memory".into(), "sqlite".into(), "etcd".into()];
    }
    opts.concurrency = opts.concurrency.max(1);
    Ok(opts)
}

/// Latencies of one measured operation.
struct Sample {
    op: &'static str,
    count: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Sample {
    fn print(&mut self, backend: &str, concurrency: usize) {
        self.latencies.sort_unstable();
        let pct = |p: f64| {
            if self.latencies.is_empty() {
                return "-".to_owned();
            }
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            format!("{:.3}", self.latencies[i].as_secs_f64() * 1e3)
        };
        println!(
            "{backend:<7} {:<13} {:>7} {:>5} {:>12.0} {:>10} {:>10}",
            self.op,
            self.count,
            concurrency,
            self.count as f64 / self.elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
        );
    }
}

fn key(i: usize) -> String {
    format!("/registry/configmaps/bench/cm-{i:06}")
}

fn value(i: usize, version: usize) -> Bytes {
    let mut v = format!("{{\"i\":{i},\"v\":{version},\"data\":\"").into_bytes();
    v.resize(VALUE_SIZE - 2, b'x');
    v.extend_from_slice(b"\"}");
    Bytes::from(v)
}

/// Runs `op(i)` for `i in 0..n` from `concurrency` tasks; returns each call's latency.
async fn run<F, Fut>(n: usize, concurrency: usize, op: F) -> anyhow::Result<(Duration, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in (t..n).step_by(concurrency) {
                let began = Instant::now();
                op(i).await?;
                latencies.push(began.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for task in tasks {
        latencies.extend(task.await.context("benchmark task panicked")??);
    }
    Ok((start.elapsed(), latencies))
}

async fn bench(backend: &str, store: Arc<dyn Store>, opts: &Options) -> anyhow::Result<()> {
    let n = opts.keys;
    let c = opts.concurrency;
    let before = store.current_revision().await?;

    let s = store.clone();
    let (elapsed, latencies) = run(n, c, move |i| {
        let s = s.clone();
        async move {
            s.create(&key(i), value(i, 0)).await.with_context(|| format!("creating {}", key(i)))?;
            Ok(())
        }
    })
    .await?;
    Sample { op: "create", count: n, elapsed, latencies }.print(backend, c);

    let s = store.clone();
    let (elapsed, latencies) = run(n, c, move |i| {
        let s = s.clone();
        async move {
            // Visit keys in a scattered order rather than insertion order.
            let k = key((i * 7919) % n);
            s.get(&k)
                .await
                .with_context(|| format!("reading {k}"))?
                .with_context(|| format!("{k} is missing"))?;
            Ok(())
        }
    })
    .await?;
    Sample { op: "get", count: n, elapsed, latencies }.print(backend, c);

    // Full paged lists, as a relist does: one page after another at one revision.
    let mut latencies = Vec::new();
    let mut listed = 0;
    let started = Instant::now();
    for _ in 0..LISTS {
        let mut start_after = None;
        let mut revision = None;
        loop {
            let began = Instant::now();
            let page = store
                .range(
                    "/registry/configmaps/",
                    RangeOptions { start_after: start_after.take(), limit: Some(PAGE), revision },
                )
                .await
                .context("listing")?;
            latencies.push(began.elapsed());
            listed += page.kvs.len();
            revision = Some(page.revision);
            start_after = page.kvs.last().map(|kv| kv.key.clone());
            if !page.more {
                break;
            }
        }
    }
    Sample { op: "range(keys)", count: listed, elapsed: started.elapsed(), latencies }.print(backend, 1);

    // Replay: a watch from before the creates delivers all of them.
    let began = Instant::now();
    let mut watch = store.watch("/registry/configmaps/", before).await?;
    let mut replayed = 0;
    while replayed < n {
        match watch.next().await {
            Some(Ok(_)) => replayed += 1,
            Some(Err(e)) => return Err(e).context("replaying"),
            None => bail!("the replaying watch ended after {replayed} events"),
        }
    }
    drop(watch);
    Sample { op: "watch-replay", count: n, elapsed: began.elapsed(), latencies: Vec::new() }
        .print(backend, 1);

    // Live: writers update every key while a watcher measures write-to-event latency.
    let head = store.current_revision().await?;
    let mut watch = store.watch("/registry/configmaps/", head).await?;
    let issued: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let s = store.clone();
    let issued_by_writers = issued.clone();
    let began = Instant::now();
    let writers = tokio::spawn(run(n, c, move |i| {
        let s = s.clone();
        let issued = issued_by_writers.clone();
        async move {
            let k = key(i);
            let current = s.get(&k).await?.with_context(|| format!("{k} is missing"))?;
            issued.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(k.clone(), Instant::now());
            s.update(&k, value(i, 1), current.mod_revision).await.with_context(|| format!("updating {k}"))?;
            Ok(())
        }
    }));
    let mut latencies = Vec::with_capacity(n);
    while latencies.len() < n {
        let event = match watch.next().await {
            Some(Ok(event)) => event,
            Some(Err(e)) => return Err(e).context("watching live"),
            None => bail!("the live watch ended"),
        };
        let received = Instant::now();
        if let Event::Put { kv, .. } = &event {
            let sent = issued.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.get(&kv.key).copied();
            if let Some(sent) = sent {
                latencies.push(received.duration_since(sent));
            }
        }
    }
    let elapsed = began.elapsed();
    writers.await.context("writers panicked")??;
    Sample { op: "watch-live", count: n, elapsed, latencies }.print(backend, c);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = options()?;
    println!(
        "{} keys of {VALUE_SIZE} bytes; latencies in ms; throughput in ops/s \
         (range: keys/s, {PAGE} per page; watch-live latency: update issued -> event received)",
        opts.keys
    );
    println!(
        "{:<7} {:<13} {:>7} {:>5} {:>12} {:>10} {:>10}",
        "backend", "op", "count", "conc", "throughput", "p50", "p99"
    );
    for backend in &opts.backends {
        match backend.as_str() {
            "memory" => bench("memory", Arc::new(MemoryStore::new()), &opts).await?,
            "sqlite" => {
                let dir = tempfile::tempdir().context("creating a temp dir")?;
                let store =
                    SqliteStore::open(&dir.path().join("bench.db")).await.context("opening SQLite")?;
                bench("sqlite", Arc::new(store), &opts).await?;
            }
            "etcd" => {
                let (endpoint, _server) = etcd_server::endpoint().await.context("starting etcd")?;
                let store = EtcdStore::connect(&[endpoint], &unique_prefix("bench"))
                    .await
                    .context("connecting to etcd")?;
                bench("etcd", Arc::new(store), &opts).await?;
            }
            other => bail!("unknown backend {other:?} (memory, sqlite, etcd)"),
        }
    }
    Ok(())
}
