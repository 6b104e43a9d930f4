//! Measures scheduling throughput against an in-process API server: creates NODES nodes
//! and PODS pending pods, then starts the scheduler and reports pods bound per second.
//!
//! `cargo run --release -p scheduler --example throughput -- [NODES] [PODS]` (set
//! `PARALLEL_BINDS` to change how many bindings may be in flight).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().map(|s| s.parse()).transpose().context("NODES")?.unwrap_or(1000);
    let pods: usize = args.next().map(|s| s.parse()).transpose().context("PODS")?.unwrap_or(5000);
    let client = common::api_server().await;

    let t = Instant::now();
    futures::stream::iter(0..nodes)
        .for_each_concurrent(32, |i| {
            let client = client.clone();
            async move {
                common::create_node(&client, common::node(&format!("node-{i}"), "32", "128Gi", vec![])).await
            }
        })
        .await;
    println!("created {nodes} nodes in {:?}", t.elapsed());

    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let t = Instant::now();
    futures::stream::iter(0..pods)
        .for_each_concurrent(32, |i| {
            let api = api.clone();
            async move {
                if let Err(e) =
                    api.create(&PostParams::default(), &common::pod(&format!("pod-{i}"), "10m")).await
                {
                    eprintln!("creating pod-{i}: {e}");
                }
            }
        })
        .await;
    println!("created {pods} pods in {:?}", t.elapsed());

    let informers = controllers::Informers::new(client.clone());
    let mut options = scheduler::Options::default();
    if let Some(n) = std::env::var("PARALLEL_BINDS").ok().and_then(|v| v.parse().ok()) {
        options.parallel_binds = n;
    }
    let sched = scheduler::Scheduler::new(client.clone(), informers, options);
    let stats = sched.stats.clone();
    let start = Instant::now();
    let _run = tokio::spawn(sched.run());
    let mut first: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let done = stats.scheduled.load(Ordering::Relaxed) as usize;
        if done > 0 && first.is_none() {
            first = Some(Instant::now());
        }
        if done >= pods || start.elapsed() > Duration::from_secs(300) {
            break;
        }
    }
    let end = Instant::now();
    let done = stats.scheduled.load(Ordering::Relaxed);
    let since_first = first.map(|f| end.duration_since(f)).unwrap_or_default();
    println!(
        "bound {done} pods; {:.0} pods/s from start (incl. cache sync {:?}), {:.0} pods/s from the first binding; \
         attempts {}, unschedulable {}, bind errors {}",
        done as f64 / end.duration_since(start).as_secs_f64(),
        first.map(|f| f.duration_since(start)).unwrap_or_default(),
        done as f64 / since_first.as_secs_f64().max(1e-9),
        stats.attempts.load(Ordering::Relaxed),
        stats.unschedulable.load(Ordering::Relaxed),
        stats.bind_errors.load(Ordering::Relaxed),
    );
    Ok(())
}
