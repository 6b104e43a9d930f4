//! The scheduler against krust's own API server, in process: bindings, the PodScheduled
//! condition, events and preemption as kubectl would see them.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Event, Pod, Taint};
use kube::api::{Api, ListParams, PostParams};

use common::{api_server, create_node, node, pod};

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> Result<T> {
    for _ in 0..200 {
        if let Some(v) = f().await {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

fn start(client: &kube::Client) -> tokio::task::JoinHandle<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let informers = controllers::Informers::new(client.clone());
    let s = scheduler::Scheduler::new(client.clone(), informers, scheduler::Options::default());
    tokio::spawn(s.run())
}

fn condition(p: &Pod) -> Option<(String, String, String)> {
    let c = p.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "PodScheduled")?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_and_the_unschedulable_one_says_why() -> Result<()> {
    let client = api_server().await;
    create_node(&client, node("node-1", "1", "4Gi", vec![])).await;
    create_node(&client, node("node-2", "4", "4Gi", vec![])).await;
    let cp = Taint {
        key: "node-role.kubernetes.io/control-plane".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    create_node(&client, node("node-3", "8", "8Gi", vec![cp])).await;
    let _s = start(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "2")).await.context("creating web-1")?;
    pods.create(&PostParams::default(), &pod("huge", "16")).await.context("creating huge")?;

    let bound = eventually("web-1 bound", async || {
        let p = pods.get("web-1").await.ok()?;
        p.spec.as_ref()?.node_name.clone().map(|n| (n, p))
    })
    .await?;
    assert_eq!(bound.0, "node-2");
    assert_eq!(condition(&bound.1).map(|c| c.0), Some("True".into()));

    let huge = eventually("huge's condition", async || {
        let p = pods.get("huge").await.ok()?;
        condition(&p).filter(|c| c.0 == "False")
    })
    .await?;
    assert_eq!(huge.1, "Unschedulable");
    assert_eq!(
        huge.2,
        "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, \
         2 Insufficient cpu. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let evs = eventually("the events", async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        let reasons: Vec<(String, String)> = list
            .items
            .iter()
            .map(|e| (e.reason.clone().unwrap_or_default(), e.message.clone().unwrap_or_default()))
            .collect();
        (reasons.len() >= 2).then_some(reasons)
    })
    .await?;
    assert!(
        evs.contains(&("Scheduled".into(), "Successfully assigned default/web-1 to node-2".into())),
        "{evs:?}"
    );
    assert!(evs.iter().any(|(r, m)| r == "FailedScheduling" && m == &huge.2), "{evs:?}");

    // A node big enough arrives: the unschedulable pod is retried and bound.
    create_node(&client, node("node-4", "32", "8Gi", vec![])).await;
    let n = eventually("huge bound", async || pods.get("huge").await.ok()?.spec?.node_name).await?;
    assert_eq!(n, "node-4");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_preempts_a_low_priority_one() -> Result<()> {
    let client = api_server().await;
    create_node(&client, node("node-1", "2", "4Gi", vec![])).await;
    let _s = start(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut low = pod("batch", "2");
    low.spec.as_mut().unwrap().priority = Some(0);
    pods.create(&PostParams::default(), &low).await?;
    eventually("batch bound", async || pods.get("batch").await.ok()?.spec?.node_name).await?;
    let mut high = pod("web", "1");
    high.spec.as_mut().unwrap().priority = Some(1000);
    pods.create(&PostParams::default(), &high).await?;
    // The victim is marked and deleted (it goes away, or is terminating if the server
    // keeps a grace period).
    eventually("batch preempted", async || match pods.get_opt("batch").await.ok()? {
        None => Some(()),
        Some(p) if p.metadata.deletion_timestamp.is_some() => Some(()),
        Some(_) => None,
    })
    .await?;
    // The victim keeps its resources while it terminates; meanwhile the preemptor is
    // nominated to the node (or already bound if the victim went away at once).
    let placed = eventually("web nominated or bound", async || {
        let web = pods.get("web").await.ok()?;
        let bound = web.spec.as_ref()?.node_name.clone();
        bound.or_else(|| web.status.as_ref()?.nominated_node_name.clone())
    })
    .await?;
    assert_eq!(placed, "node-1");
    Ok(())
}
