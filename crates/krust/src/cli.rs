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
    /// Run a node agent that joins a cluster and runs its pods through a container runtime.
    Agent(AgentArgs),
}

/// How a node agent runs pods; shared by `krust server` (its own agent) and `krust agent`.
#[derive(Args, Debug, Clone)]
pub struct NodeAgentArgs {
    /// The CRI runtime endpoint (unix:///path/to.sock) [default: a containerd the agent
    /// starts itself under DATA_DIR/agent/containerd]
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// The node's name [default: the host name]
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's InternalIP [default: the host's first non-loopback IPv4 address]
    #[arg(long)]
    pub node_ip: Option<String>,
    /// The node's pod CIDR [default: the Node's, else the first free 10.42.N.0/24]
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// The Linux bridge pods attach to, when the agent starts its own containerd.
    #[arg(long, default_value = "krust0")]
    pub cni_bridge: String,
    /// Cluster DNS server address for pods with dnsPolicy ClusterFirst (repeatable)
    /// [default: none; such pods get the node's DNS settings]
    #[arg(long = "cluster-dns")]
    pub cluster_dns: Vec<String>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// A registry (HOST:PORT) the agent's own containerd pulls from over plain HTTP
    /// (repeatable); loopback registries need no entry, any other needs TLS otherwise.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// The port of the agent's own HTTPS API (container logs), on the node's address
    /// (0: any free port).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
}

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// The API server to join, e.g. https://10.0.0.1:6443.
    #[arg(long, env = "KRUST_URL")]
    pub server: Option<String>,
    /// The join token (`K10<CA hash>::<secret>`, the server's DATA_DIR/agent-token): the
    /// agent checks the server's CA against it and gets the node's own certificates.
    /// A plain bearer token also works, with --certificate-authority.
    #[arg(long, env = "KRUST_TOKEN")]
    pub token: Option<String>,
    /// Read the token from this file.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The server's CA certificate (PEM), needed only with a plain bearer token (the
    /// server's DATA_DIR/tls/ca.crt).
    #[arg(long)]
    pub certificate_authority: Option<PathBuf>,
    /// A kubeconfig to reach the cluster with, instead of --server/--token.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Where the agent keeps its state [default: /var/lib/krust as root, else ~/.krust]
    #[arg(long, env = "KRUST_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub node: NodeAgentArgs,
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

    #[command(flatten)]
    pub node: NodeAgentArgs,
}
