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
}
