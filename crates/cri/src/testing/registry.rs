//! A local OCI registry for tests: Debian's docker-registry (distribution 2.8) serving
//! from a temporary directory on 127.0.0.1 at a free port, stopped by PID on drop; or
//! the registry named by `KRUST_TEST_REGISTRY` (`host:port`), when CI started one.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::process::{find_program, tail, terminate_blocking};
use crate::{Error, Result};

/// The variable naming an already running registry (`127.0.0.1:5000`).
pub const REGISTRY_ENV: &str = "KRUST_TEST_REGISTRY";

/// A registry tests can push to and pull from over plain HTTP.
#[derive(Debug)]
pub struct Registry {
    host: String,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Registry {
    /// The registry from `KRUST_TEST_REGISTRY`, else a new docker-registry on a free
    /// loopback port, returned once it answers `GET /v2/`.
    pub async fn start() -> Result<Self> {
        if let Ok(host) = std::env::var(REGISTRY_ENV)
            && !host.is_empty()
        {
            let host = host.trim_start_matches("http://").trim_end_matches('/').to_owned();
            wait_until_serving(&host, Duration::from_secs(10), None).await?;
            return Ok(Self { host, child: None, _dir: None });
        }
        let program = find_program("docker-registry").ok_or_else(|| Error::NotInstalled {
            program: "docker-registry",
            message: format!(
                "docker-registry is not installed: install Debian's docker-registry package \
                 (apt-get install docker-registry) or set {REGISTRY_ENV} to a running registry"
            ),
        })?;
        // Another process can take the free port between probe and bind; try again.
        let mut last = None;
        for _ in 0..3 {
            match Self::launch(&program).await {
                Ok(registry) => return Ok(registry),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(Error::ServiceFailed {
            service: "docker-registry",
            reason: "no attempt was made".into(),
        }))
    }

    async fn launch(program: &Path) -> Result<Self> {
        let dir =
            tempfile::tempdir().map_err(|e| Error::io("creating a temp dir in", std::env::temp_dir(), e))?;
        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        let log = dir.path().join("registry.log");
        let yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
            serde_json::Value::String(storage.display().to_string())
        );
        std::fs::write(&config, yaml).map_err(|e| Error::io("writing", &config, e))?;
        let out = std::fs::File::create(&log).map_err(|e| Error::io("creating", &log, e))?;
        let err = out.try_clone().map_err(|e| Error::io("opening", &log, e))?;
        let child = std::process::Command::new(program)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Spawn { program: program.display().to_string(), source })?;
        let mut this = Self { host: host.clone(), child: Some(child), _dir: Some(dir) };
        let child = this.child.as_mut();
        wait_until_serving(&host, Duration::from_secs(15), child).await.map_err(|e| match e {
            Error::ServiceFailed { service, reason } => {
                Error::ServiceFailed { service, reason: format!("{reason}; its log:\n{}", tail(&log, 20)) }
            }
            other => other,
        })?;
        Ok(this)
    }

    /// `127.0.0.1:<port>`, the registry part of image references.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Err(error) = terminate_blocking(&mut child, Duration::from_secs(5))
        {
            eprintln!("stopping the test registry {}: {error}", self.host);
        }
    }
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("binding a probe socket on", "127.0.0.1:0", e))?;
    let port =
        listener.local_addr().map_err(|e| Error::io("reading the probe socket of", "127.0.0.1:0", e))?.port();
    Ok(port)
}

/// Polls `GET /v2/` until the registry answers 200, the child exits, or time runs out.
async fn wait_until_serving(host: &str, timeout: Duration, mut child: Option<&mut Child>) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(child) = child.as_deref_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(Error::ServiceFailed {
                service: "docker-registry",
                reason: format!("it exited ({status})"),
            });
        }
        let probe = host.to_owned();
        let last = match tokio::task::spawn_blocking(move || v2_status(&probe)).await {
            Ok(Ok(line)) if line.split_whitespace().nth(1) == Some("200") => return Ok(()),
            Ok(Ok(line)) => line,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::ServiceFailed {
                service: "docker-registry",
                reason: format!("{host} did not answer GET /v2/ within {timeout:?} ({last})"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status line of `GET /v2/` on `host`.
fn v2_status(host: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf)?;
    let text = String::from_utf8_lossy(&buf[..n]);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}
