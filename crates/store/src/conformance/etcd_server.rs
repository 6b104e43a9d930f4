//! A throwaway etcd for tests and benchmarks: started on 127.0.0.1 with free ports and a
//! temp data dir, killed (by its PID) when the handle drops, also when a test panics.

use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Store;
use crate::etcd::EtcdStore;

/// Environment variable naming an etcd endpoint to use instead of starting one.
pub const ENDPOINT_ENV: &str = "KRUST_TEST_ETCD_ENDPOINT";
/// Environment variable naming the etcd binary (default: `etcd` on `PATH`).
pub const BINARY_ENV: &str = "KRUST_TEST_ETCD_BIN";

/// How long a started etcd may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running etcd that this process started. Dropping it kills the process and removes
/// its data dir.
pub struct TestEtcd {
    child: Child,
    endpoint: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// Where tests find etcd: an endpoint from [`ENDPOINT_ENV`], or one started for them
/// (kept alive by the returned handle).
pub async fn endpoint() -> io::Result<(String, Option<TestEtcd>)> {
    if let Ok(endpoint) = std::env::var(ENDPOINT_ENV)
        && !endpoint.is_empty()
    {
        return Ok((endpoint, None));
    }
    let etcd = TestEtcd::start().await?;
    Ok((etcd.endpoint().to_owned(), Some(etcd)))
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl TestEtcd {
    /// Starts etcd and waits until it serves requests. Fails, saying so, when no etcd
    /// binary is installed (Debian package `etcd-server`).
    pub async fn start() -> io::Result<Self> {
        // A port found free may be taken before etcd binds it; try again then.
        let mut last_error = None;
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(etcd) => return Ok(etcd),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    async fn try_start() -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("krust-etcd-").tempdir()?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let log = dir.path().join("etcd.log");
        let out = File::create(&log)?;
        let binary = std::env::var(BINARY_ENV).unwrap_or_else(|_| "etcd".to_owned());
        let child = Command::new(&binary)
            .arg("--name")
            .arg("default")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("default={peer}"))
            .args(["--heartbeat-interval", "10", "--election-timeout", "100"])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "etcd is not installed: {binary:?} was not found (install the \
                             Debian package etcd-server, or set {ENDPOINT_ENV} to an \
                             endpoint); the etcd tests need a real etcd"
                        ),
                    )
                } else {
                    io::Error::new(e.kind(), format!("starting {binary:?}: {e}"))
                }
            })?;
        let mut etcd = TestEtcd { child, endpoint: client, log, _dir: dir };
        etcd.wait_ready().await?;
        Ok(etcd)
    }

    async fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "etcd exited with {status} before it was ready; its log:\n{}",
                    self.log_tail()
                )));
            }
            let endpoints = [self.endpoint.clone()];
            let probe =
                tokio::time::timeout(Duration::from_secs(2), EtcdStore::connect(&endpoints, "")).await;
            if let Ok(Ok(store)) = probe
                && store.current_revision().await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "etcd at {} did not answer within {READY_TIMEOUT:?}; its log:\n{}",
                    self.endpoint,
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = log.len().saturating_sub(4000);
        log.get(start..).unwrap_or(&log).to_owned()
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The PID of the etcd process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        // `Child::kill` sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
