//! `astaxie`: prints the AstaXie CRD, or runs the AstaXie controller against the cluster
//! of the current kubeconfig.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// The seed talk's demo: an AstaXie custom resource and its controller.
#[derive(Parser)]
#[command(name = "astaxie", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinition as YAML (`astaxie crd | kubectl apply -f -`).
    Crd,
    /// Run the controller against the cluster of the current kubeconfig (KUBECONFIG or
    /// ~/.kube/config, or the in-cluster service account).
    Run {
        /// Seconds a guest stays Invited before accepting.
        #[arg(long, default_value_t = 3)]
        think_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", astaxie::crd_yaml()?);
            Ok(())
        }
        Command::Run { think_seconds } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            // kube's TLS stack uses ring; with another provider compiled in, rustls cannot
            // pick one by itself. An error only means one is installed already.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let client = kube::Client::try_default()
                .await
                .context("connecting to the cluster of the current kubeconfig")?;
            let settings = astaxie::Settings { think_time: Duration::from_secs(think_seconds) };
            tokio::select! {
                result = astaxie::controller::run(client, settings) => result,
                signal = tokio::signal::ctrl_c() => signal.context("waiting for Ctrl-C"),
            }
        }
    }
}
