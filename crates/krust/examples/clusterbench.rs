//! Control-plane benchmark: with 100 and then 1,000 simulated nodes, how long a
//! 3,000-replica Deployment takes until every pod is scheduled and until every pod is
//! Running, the scheduler's pods per second, and the server's RSS. Drives the real
//! `krust server --sim-nodes N` binary over HTTPS.
//!
//! Run: `cargo build --release -p krust && cargo run --release -p krust --example clusterbench [replicas] [nodes...]`
//! It prints figures; it asserts nothing.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

async fn run(bin: &std::path::Path, nodes: usize, replicas: i32) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new(bin)
        .args(["server", "--disable-agent", "--bind-address", "127.0.0.1", "--port", &port.to_string()])
        .args(["--sim-nodes", &nodes.to_string(), "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let server = common::Server { child };
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let client = common::wait_for_api(&kubeconfig).await?;
    let node_api: Api<Node> = Api::all(client.clone());
    let t = Instant::now();
    loop {
        let n = node_api.list(&ListParams::default()).await?.items.len();
        if n >= nodes {
            break;
        }
        anyhow::ensure!(t.elapsed() < Duration::from_secs(300), "only {n} of {nodes} nodes registered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let registered = t.elapsed();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deploy: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "big"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "big"}},
            "template": {"metadata": {"labels": {"app": "big"}},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}
    }))?;
    let mut events =
        watcher(pods.clone(), watcher::Config::default().labels("app=big")).applied_objects().boxed();
    let start = Instant::now();
    Api::<Deployment>::namespaced(client.clone(), "default").create(&PostParams::default(), &deploy).await?;
    let mut seen = std::collections::HashSet::new();
    let mut all_created = None;
    let mut scheduled = std::collections::HashSet::new();
    let mut running = std::collections::HashSet::new();
    let mut first_scheduled: Option<Duration> = None;
    let mut all_scheduled = None;
    let mut all_running = None;
    let deadline = Duration::from_secs(900);
    while all_running.is_none() {
        let ev = tokio::time::timeout(deadline.saturating_sub(start.elapsed()), events.next()).await;
        let Ok(Some(ev)) = ev else {
            println!(
                "gave up after {:?}: {} scheduled, {} running",
                start.elapsed(),
                scheduled.len(),
                running.len()
            );
            break;
        };
        let p = ev?;
        let name = p.metadata.name.clone().unwrap_or_default();
        seen.insert(name.clone());
        if seen.len() as i32 >= replicas && all_created.is_none() {
            all_created = Some(start.elapsed());
        }
        if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
            if first_scheduled.is_none() {
                first_scheduled = Some(start.elapsed());
            }
            scheduled.insert(name.clone());
            if scheduled.len() as i32 >= replicas && all_scheduled.is_none() {
                all_scheduled = Some(start.elapsed());
            }
        }
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            running.insert(name);
            if running.len() as i32 >= replicas {
                all_running = Some(start.elapsed());
            }
        }
    }
    let rss = common::rss_mib(server.child.id());
    println!(
        "## {nodes} simulated nodes (registered in {:.1}s), Deployment of {replicas} replicas",
        registered.as_secs_f64()
    );
    if let Some(c) = all_created {
        println!("all pods created after {:.2}s", c.as_secs_f64());
    }
    if let (Some(first), Some(all)) = (first_scheduled, all_scheduled) {
        let window = all.saturating_sub(first).as_secs_f64().max(0.001);
        println!(
            "all pods scheduled after {:.2}s (first after {:.2}s); scheduler throughput {:.0} pods/s",
            all.as_secs_f64(),
            first.as_secs_f64(),
            replicas as f64 / window
        );
    }
    if let Some(r) = all_running {
        println!("all pods Running after {:.2}s", r.as_secs_f64());
    }
    println!("server RSS: {rss:.0} MiB\n");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let replicas: i32 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3000);
    let mut node_counts: Vec<usize> = args.filter_map(|s| s.parse().ok()).collect();
    if node_counts.is_empty() {
        node_counts = vec![100, 1000];
    }
    let bin = common::krust_bin()?;
    for n in node_counts {
        run(&bin, n, replicas).await?;
    }
    Ok(())
}
