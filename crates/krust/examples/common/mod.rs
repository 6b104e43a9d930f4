//! What the benchmark examples share: finding the `krust` binary beside them, waiting for
//! a server's API, and reading a process's resident memory.

// Each example uses a part of this.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// The `krust` binary of the same build (`target/<profile>/krust`).
pub fn krust_bin() -> anyhow::Result<PathBuf> {
    let bin = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("krust"))
        .ok_or_else(|| anyhow::anyhow!("cannot find the krust binary next to the example"))?;
    anyhow::ensure!(
        bin.exists(),
        "build the server first: cargo build --release -p krust ({})",
        bin.display()
    );
    Ok(bin)
}

/// A client from `kubeconfig` once the server it names answers (within a minute).
pub async fn wait_for_api(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if kubeconfig.exists() {
            let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
            let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
            let client = kube::Client::try_from(cfg)?;
            if client.apiserver_version().await.is_ok() {
                return Ok(client);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the server did not start within a minute");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The resident memory of process `pid` in MiB (0 if it cannot be read).
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A server process, killed when dropped.
pub struct Server {
    pub child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
