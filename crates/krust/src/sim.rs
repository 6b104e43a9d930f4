//! `krust sim`: joins simulated nodes to a running cluster through its kubeconfig.

use anyhow::{Context, Result};

use crate::cli::{SimArgs, SimNodeArgs};

/// The simulated kubelet's options from the command line.
pub fn options(node: &SimNodeArgs, count: usize, first_index: usize) -> kubelet::sim::Options {
    kubelet::sim::Options {
        count,
        prefix: node.prefix.clone(),
        first_index,
        cpu: node.cpu.clone(),
        memory: node.memory.clone(),
        pods: node.pods.clone(),
        job_duration: node.job_duration,
    }
}

pub async fn run(args: SimArgs) -> Result<()> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .context("loading the kubeconfig")?
        }
        None => {
            kube::Config::infer().await.context("finding a kubeconfig ($KUBECONFIG or ~/.kube/config)")?
        }
    };
    let client = kube::Client::try_from(config).context("building a client for the cluster")?;
    println!("krust sim: running {} simulated node(s) from index {}", args.count, args.first_index);
    tokio::select! {
        _ = kubelet::sim::run(client, options(&args.node, args.count, args.first_index)) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
