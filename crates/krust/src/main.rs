//! `krust`: a Kubernetes-compatible cluster in one binary. Thin glue over the crates.

mod agent;
mod certs;
mod cli;
mod join;
mod server;
mod sim;

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KRUST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // One TLS crypto provider for the whole process (see PLATFORM.md).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        cli::Command::Server(args) => rt.block_on(server::run(args)),
        cli::Command::Sim(args) => rt.block_on(sim::run(args)),
        cli::Command::Agent(args) => rt.block_on(agent::run(args)),
    }
}
