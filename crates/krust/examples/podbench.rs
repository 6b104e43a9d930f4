//! Node agent benchmark, as root: pod startup latency (created to Running, as observed
//! through a watch: p50 and p99) for 100 pods on one node, and the resident memory of
//! the agent, its containerd and the API server. Runs `krust server --disable-agent`
//! and a separate `krust agent` (so the agent's RSS is its own), a local registry and a
//! busybox image built here, all on loopback; removes everything it made.
//!
//! Run: `cargo build --release -p krust --examples --bins && sudo ./target/release/examples/podbench [pods]`
//! It prints figures; it asserts nothing.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use cri::testing::{self, BusyboxImage, HostDirsGuard, IpForwardGuard, LinkGuard, Registry};

const BRIDGE: &str = "krustbench0";

/// A child process stopped with SIGTERM (then SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn spawn(args: &[&str], log: &Path) -> anyhow::Result<Proc> {
    let log = std::fs::File::create(log)?;
    Ok(Proc(Command::new(common::krust_bin()?).args(args).stdout(Stdio::null()).stderr(log).spawn()?))
}

fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "pods"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": image, "command": ["sleep", "3600"]}],
        },
    }))
    .expect("pod manifest")
}

async fn sandboxes(socket: &Path) -> Option<usize> {
    let client =
        cri::Client::connect(&format!("unix://{}", socket.display()), Duration::from_secs(5)).await.ok()?;
    cri::Runtime::list_pod_sandbox(&client, None).await.ok().map(|s| s.len())
}

async fn run(count: usize) -> anyhow::Result<()> {
    let registry = Registry::start().await?;
    let image = BusyboxImage::new("krust-bench/busybox", "1").build_and_push(registry.host()).await?;
    let dir = tempfile::tempdir()?;
    let server_dir = dir.path().join("server");
    let agent_dir = dir.path().join("agent");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port().to_string();
    let server = spawn(
        &[
            "server",
            "--disable-agent",
            "--bind-address",
            "127.0.0.1",
            "--port",
            &port,
            "--data-dir",
            &server_dir.to_string_lossy(),
        ],
        &dir.path().join("server.log"),
    )?;
    let kubeconfig = server_dir.join("kubeconfig.yaml");
    let client = common::wait_for_api(&kubeconfig).await?;
    let agent = spawn(
        &[
            "agent",
            "--kubeconfig",
            &kubeconfig.to_string_lossy(),
            "--data-dir",
            &agent_dir.to_string_lossy(),
            "--node-name",
            "bench",
            "--node-ip",
            "127.0.0.1",
            "--kubelet-port",
            "0",
            "--cni-bridge",
            BRIDGE,
            "--pod-cidr",
            "10.42.240.0/24",
        ],
        &dir.path().join("agent.log"),
    )?;
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if nodes.get_opt("bench").await?.as_ref().is_some_and(ready) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the agent's node never became Ready (see agent.log)");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let containerd_pid: Option<u32> =
        std::fs::read_to_string(agent_dir.join("agent/containerd/containerd.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
    // The image is pulled once, before timing: the figure is startup, not download.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("warmup", &image)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while pods.get("warmup").await?.status.and_then(|s| s.phase).as_deref() != Some("Running") {
        anyhow::ensure!(Instant::now() < deadline, "the warm-up pod never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pods.delete("warmup", &DeleteParams::default().grace_period(0)).await?;

    let mut events =
        watcher(pods.clone(), watcher::Config::default().labels("bench=pods")).applied_objects().boxed();
    let started = Instant::now();
    let mut created: HashMap<String, Instant> = HashMap::new();
    for i in 0..count {
        let name = format!("bench-{i}");
        pods.create(&PostParams::default(), &pod(&name, &image)).await?;
        created.insert(name, Instant::now());
    }
    let all_created = started.elapsed();
    let mut latencies: HashMap<String, Duration> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while latencies.len() < count && Instant::now() < deadline {
        let Ok(Some(Ok(p))) = tokio::time::timeout(Duration::from_secs(5), events.next()).await else {
            continue;
        };
        let name = p.metadata.name.clone().unwrap_or_default();
        if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            && let Some(t0) = created.get(&name)
        {
            latencies.entry(name).or_insert_with(|| t0.elapsed());
        }
    }
    let all_running = started.elapsed();
    let mut sorted: Vec<Duration> = latencies.values().copied().collect();
    sorted.sort();
    println!("pods: {count} on one node; {} reached Running", sorted.len());
    println!(
        "  created all in {:.2}s; all Running after {:.2}s",
        all_created.as_secs_f64(),
        all_running.as_secs_f64()
    );
    println!(
        "  startup latency (created -> Running seen by watch): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&sorted, 0.50).as_secs_f64() * 1e3,
        percentile(&sorted, 0.99).as_secs_f64() * 1e3,
        sorted.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!(
        "  RSS with {count} pods: agent {:.0} MiB, its containerd {:.0} MiB, API server and controllers {:.0} MiB",
        common::rss_mib(agent.0.id()),
        containerd_pid.map(common::rss_mib).unwrap_or(0.0),
        common::rss_mib(server.0.id())
    );

    // Tear down through the API and let the agent remove every sandbox.
    pods.delete_collection(&DeleteParams::default().grace_period(0), &ListParams::default()).await?;
    let socket = agent_dir.join("agent/containerd/containerd.sock");
    let deadline = Instant::now() + Duration::from_secs(120);
    while sandboxes(&socket).await.is_some_and(|n| n > 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if let Some(n) = sandboxes(&socket).await.filter(|n| *n > 0) {
        eprintln!("{n} sandboxes left after deletion; removing them through CRI");
        if let Ok(c) =
            cri::Client::connect(&format!("unix://{}", socket.display()), Duration::from_secs(5)).await
        {
            let _ = testing::remove_all_pods(&c).await;
        }
    }
    drop(agent);
    drop(server);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    testing::require_root("the node agent runs containerd, runc and a CNI bridge");
    let count: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _guards = (HostDirsGuard::save(), IpForwardGuard::save(), LinkGuard::new(BRIDGE));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(count))
}
