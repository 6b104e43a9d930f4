//! API server benchmark: create, get, list and watch throughput and latency percentiles
//! for 10,000 objects against the real `krust server` binary over HTTPS, on each storage
//! backend (SQLite, etcd, memory is not a server option), plus the server's RSS.
//!
//! Run: `cargo build --release -p krust && cargo run --release -p krust --example apibench [N]`
//! It prints figures; it asserts nothing.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(26443)
}

async fn start(
    bin: &Path,
    dir: &Path,
    datastore: Option<&str>,
) -> anyhow::Result<(common::Server, kube::Client)> {
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args([
        "server",
        "--disable-agent",
        "--bind-address",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--data-dir",
    ])
    .arg(dir)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(d) = datastore {
        cmd.args(["--datastore-endpoint", d]);
    }
    let server = common::Server { child: cmd.spawn()? };
    let kubeconfig = dir.join("kubeconfig.yaml");
    let client = common::wait_for_api(&kubeconfig).await?;
    Ok((server, client))
}

fn cm(i: usize) -> ConfigMap {
    let mut data = std::collections::BTreeMap::new();
    data.insert("payload".to_string(), "x".repeat(900));
    ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some(format!("cm-{i:05}")), ..Default::default() },
        data: Some(data),
        ..Default::default()
    }
}

async fn run_one(name: &str, bin: &Path, datastore: Option<&str>, n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, client) = start(bin, dir.path(), datastore).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let conc = 32;

    // Watch: events for every create, latency from the create's return to the event.
    let watch_api = api.clone();
    let created_at = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<String, Instant>::new()));
    let seen = created_at.clone();
    let rv = api.list(&ListParams::default().limit(1)).await?.metadata.resource_version.unwrap_or_default();
    let watcher = tokio::spawn(async move {
        let mut lat = Vec::new();
        let mut stream = watch_api.watch(&WatchParams::default().timeout(290), &rv).await?.boxed();
        while let Some(ev) = stream.try_next().await? {
            if let WatchEvent::Added(o) = ev {
                let now = Instant::now();
                let name = o.metadata.name.unwrap_or_default();
                // The create may not have returned yet; count from its return when known.
                if let Some(t) = seen.lock().unwrap().get(&name) {
                    lat.push(now.saturating_duration_since(*t));
                } else {
                    lat.push(Duration::ZERO);
                }
                if lat.len() >= n {
                    break;
                }
            }
        }
        Ok::<_, anyhow::Error>(lat)
    });

    let t0 = Instant::now();
    let lat: Vec<Duration> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let created_at = created_at.clone();
            async move {
                let s = Instant::now();
                api.create(&PostParams::default(), &cm(i)).await?;
                created_at.lock().unwrap().insert(format!("cm-{i:05}"), Instant::now());
                Ok::<_, anyhow::Error>(s.elapsed())
            }
        })
        .buffer_unordered(conc)
        .try_collect()
        .await?;
    let create_secs = t0.elapsed().as_secs_f64();
    let mut create_lat = lat;

    let t0 = Instant::now();
    let mut get_lat: Vec<Duration> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let s = Instant::now();
                api.get(&format!("cm-{i:05}")).await?;
                Ok::<_, anyhow::Error>(s.elapsed())
            }
        })
        .buffer_unordered(conc)
        .try_collect()
        .await?;
    let get_secs = t0.elapsed().as_secs_f64();

    let mut list_lat = Vec::new();
    for _ in 0..5 {
        let s = Instant::now();
        let l = api.list(&ListParams::default()).await?;
        list_lat.push(s.elapsed());
        anyhow::ensure!(l.items.len() >= n, "list returned {} items", l.items.len());
    }
    let mut paged_lat = Vec::new();
    for _ in 0..3 {
        let s = Instant::now();
        let mut lp = ListParams::default().limit(500);
        let mut count = 0;
        loop {
            let l = api.list(&lp).await?;
            count += l.items.len();
            match l.metadata.continue_ {
                Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
                _ => break,
            }
        }
        paged_lat.push(s.elapsed());
        anyhow::ensure!(count >= n, "paged list returned {count} items");
    }
    let mut watch_lat = tokio::time::timeout(Duration::from_secs(120), watcher).await???;
    let rss = common::rss_mib(server.child.id());

    println!("## {name}: {n} ConfigMaps of ~1 KiB, {conc} concurrent clients");
    println!(
        "create: {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        n as f64 / create_secs,
        pct(&mut create_lat, 0.5),
        pct(&mut create_lat, 0.99)
    );
    println!(
        "get:    {:>8.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        n as f64 / get_secs,
        pct(&mut get_lat, 0.5),
        pct(&mut get_lat, 0.99)
    );
    println!(
        "list (all {n} at once): p50 {:>7.1} ms  p99 {:>7.1} ms  ({:.0} objects/s)",
        pct(&mut list_lat.clone(), 0.5),
        pct(&mut list_lat.clone(), 0.99),
        n as f64 / (pct(&mut list_lat, 0.5) / 1000.0)
    );
    println!("list (paged by 500): p50 {:>7.1} ms", pct(&mut paged_lat, 0.5));
    println!(
        "watch: {} events, delivery after create returned p50 {:>6.2} ms  p99 {:>6.2} ms",
        watch_lat.len(),
        pct(&mut watch_lat, 0.5),
        pct(&mut watch_lat, 0.99)
    );
    println!("server RSS after the run: {rss:.1} MiB\n");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let n: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let bin = common::krust_bin()?;
    run_one("sqlite (embedded default)", &bin, None, n).await?;
    let etcd = store::conformance::etcd_server::TestEtcd::start().await?;
    run_one("etcd", &bin, Some(etcd.endpoint()), n).await?;
    Ok(())
}
