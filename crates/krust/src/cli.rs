//! The command line: argument definitions only (what they do lives in one file per
//! subcommand).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "krust", version, about = "A Kubernetes-compatible cluster in one binary")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a control plane (API server, storage, controllers) and, unless disabled, a node agent.
    Server(ServerArgs),
    /// Join simulated nodes to a running cluster (hollow nodes: no containers).
    Sim(SimArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SimNodeArgs {
    /// Node names are PREFIX<index>.
    #[arg(long = "sim-node-prefix", default_value = "sim-")]
    pub prefix: String,
    /// CPU capacity of each simulated node.
    #[arg(long = "sim-node-cpu", default_value = "8")]
    pub cpu: String,
    /// Memory capacity of each simulated node.
    #[arg(long = "sim-node-memory", default_value = "32Gi")]
    pub memory: String,
    /// Pod capacity of each simulated node.
    #[arg(long = "sim-node-pods", default_value = "110")]
    pub pods: String,
    /// How long a run-to-completion pod (restartPolicy Never/OnFailure) runs on a simulated node.
    #[arg(long = "sim-job-duration", default_value = "2s", value_parser = parse_duration)]
    pub job_duration: std::time::Duration,
}

#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// How many nodes to add.
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Index of the first node added.
    #[arg(long, default_value_t = 0)]
    pub first_index: usize,
    /// The kubeconfig of the cluster to join [default: $KUBECONFIG, else ~/.kube/config].
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub node: SimNodeArgs,
}

/// Parses `500ms`, `2s`, `1m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
    };
    Ok(std::time::Duration::from_secs_f64(secs))
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Where state, certificates and the kubeconfig live [default: /var/lib/krust as root, else ~/.krust]
    #[arg(long, env = "KRUST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub port: u16,

    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,

    /// Storage: `sqlite://PATH` (the default is a file in the data dir) or `http://HOST:PORT`
    /// of etcd (several comma-separated for a cluster).
    #[arg(long, env = "KRUST_DATASTORE_ENDPOINT")]
    pub datastore_endpoint: Option<String>,

    /// Do not run a node agent beside the control plane.
    #[arg(long)]
    pub disable_agent: bool,

    /// The Service cluster IP range.
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,

    /// Extra names or addresses for the serving certificate (repeatable).
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,

    /// Run this many simulated nodes (hollow nodes that run no containers) in-process.
    #[arg(long, default_value_t = 0)]
    pub sim_nodes: usize,

    #[command(flatten)]
    pub sim: SimNodeArgs,
}
