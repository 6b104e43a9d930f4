//! A supervised containerd, k3s-style: krust writes its config and CNI network into its
//! data directory, starts `containerd --config ...` as a child, waits until the CRI
//! service answers and its network is ready, imports the pause image, and stops it by
//! PID (SIGTERM, then SIGKILL) on [`Containerd::stop`] or drop.
//!
//! What stays outside the data directory (containerd 1.6 hard-codes it): shim sockets,
//! fifos and runc state under /run/containerd, and CNI's result cache under
//! /var/lib/cni/results. Stopping containerd leaves running containers (their shims) in
//! place, as k3s does across agent restarts: remove pods before stopping when they
//! should not outlive it.

pub mod cni;
pub mod config;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::api::ImageSpec;
use crate::image::{HOST_BUSYBOX, PAUSE_IMAGE};
use crate::process::{self, find_program};
use crate::runtime::{Images, Runtime};
use crate::{Client, Error, Result};

/// The longest path a unix socket address can hold (sun_path less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How the supervisor sets containerd up. `Default` gives the node defaults: pod CIDR
/// `10.42.0.0/24` on bridge `krust0`, the busybox pause image, `/usr/lib/cni` plugins.
#[derive(Debug, Clone)]
pub struct Options {
    /// The containerd binary; `None` looks it up with [`find_containerd`].
    pub containerd: Option<PathBuf>,
    /// The sandbox (pause) image containerd starts every pod with.
    pub sandbox_image: String,
    /// A static busybox to build the pause image from and import as `sandbox_image` on
    /// start; `None` when `sandbox_image` is to be pulled from a registry instead.
    pub pause_busybox: Option<PathBuf>,
    /// The node's pod CIDR, from which pods get their addresses.
    pub pod_cidr: String,
    /// Destinations (CIDRs) pods route through the bridge, e.g. the Service CIDR.
    pub pod_routes: Vec<String>,
    /// The Linux bridge the pods attach to.
    pub bridge: String,
    /// The CNI network's name.
    pub network_name: String,
    /// Where the CNI plugin binaries are.
    pub cni_bin_dir: PathBuf,
    /// Non-loopback registries (`host:port`) to reach over plain HTTP. Loopback
    /// registries (127.0.0.1, localhost, ::1, any port) need no entry.
    pub plain_http_registries: Vec<String>,
    /// containerd's snapshotter (overlayfs; `native` where overlay mounts fail).
    pub snapshotter: String,
    /// containerd's log level (its log goes to `<data-dir>/containerd/containerd.log`).
    pub log_level: String,
    /// How long start may take until the CRI service is ready.
    pub start_timeout: Duration,
    /// How long containerd gets to exit after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            containerd: None,
            sandbox_image: PAUSE_IMAGE.to_owned(),
            pause_busybox: Some(PathBuf::from(HOST_BUSYBOX)),
            pod_cidr: "10.42.0.0/24".to_owned(),
            pod_routes: Vec::new(),
            bridge: "krust0".to_owned(),
            network_name: "krust".to_owned(),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            plain_http_registries: Vec::new(),
            snapshotter: "overlayfs".to_owned(),
            log_level: "info".to_owned(),
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// Where a supervised containerd keeps its files under the data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub opt: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_networks_dir: PathBuf,
    pub pause_archive: PathBuf,
}

impl Layout {
    /// The layout under `data_dir` (`<data-dir>/containerd/...`, `<data-dir>/cni/...`).
    pub fn new(data_dir: &Path) -> Self {
        let base = data_dir.join("containerd");
        let cni = data_dir.join("cni");
        Self {
            root: base.join("root"),
            state: base.join("state"),
            socket: base.join("containerd.sock"),
            config: base.join("config.toml"),
            log: base.join("containerd.log"),
            opt: base.join("opt"),
            cni_conf_dir: cni.join("net.d"),
            cni_networks_dir: cni.join("networks"),
            pause_archive: base.join("pause.tar"),
        }
    }

    /// containerd's ttrpc socket, beside the gRPC one.
    pub fn ttrpc_socket(&self) -> PathBuf {
        let mut s = self.socket.clone().into_os_string();
        s.push(".ttrpc");
        PathBuf::from(s)
    }

    /// The CNI network list file.
    pub fn conflist(&self) -> PathBuf {
        self.cni_conf_dir.join("10-krust.conflist")
    }
}

/// The containerd binary on `PATH` (or in the system directories). When it is missing
/// the error is one sentence naming the packages to install.
pub fn find_containerd() -> Result<PathBuf, Error> {
    containerd_or_install_hint(find_program("containerd"))
}

fn containerd_or_install_hint(found: Option<PathBuf>) -> Result<PathBuf> {
    found.ok_or_else(|| Error::NotInstalled {
        program: "containerd",
        message: "containerd is not installed: install Debian's containerd, runc and \
                  containernetworking-plugins packages (apt-get install containerd runc \
                  containernetworking-plugins) or give the node agent the endpoint of a \
                  running CRI runtime"
            .to_owned(),
    })
}

fn find_runc() -> Result<PathBuf> {
    find_program("runc").ok_or_else(|| Error::NotInstalled {
        program: "runc",
        message: "runc is not installed: containerd runs containers with it, install \
                  Debian's runc package (apt-get install runc)"
            .to_owned(),
    })
}

/// `ctr`, which ships with containerd: next to the binary, else on `PATH`.
fn find_ctr(containerd: &Path) -> Result<PathBuf> {
    containerd
        .parent()
        .map(|dir| dir.join("ctr"))
        .filter(|p| process::is_executable(p))
        .or_else(|| find_program("ctr"))
        .ok_or_else(|| Error::NotInstalled {
            program: "ctr",
            message: format!(
                "ctr is not installed next to {} or on PATH: it comes with containerd, \
                 reinstall Debian's containerd package (apt-get install containerd)",
                containerd.display()
            ),
        })
}

fn check_cni_plugins(dir: &Path) -> Result<()> {
    let missing: Vec<&str> =
        cni::PLUGINS.iter().copied().filter(|p| !process::is_executable(&dir.join(p))).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::NotInstalled {
        program: "containernetworking-plugins",
        message: format!(
            "the CNI plugins {} are missing from {}: install Debian's containernetworking-plugins \
             package (apt-get install containernetworking-plugins)",
            missing.join(", "),
            dir.display()
        ),
    })
}

fn validate(opts: &Options) -> Result<()> {
    for host in &opts.plain_http_registries {
        if host.is_empty() || host.contains("://") || host.contains('/') {
            return Err(Error::InvalidOption {
                option: "plain-HTTP registry",
                reason: format!("{host:?} must be host:port, without scheme or path"),
            });
        }
    }
    if opts.sandbox_image.is_empty() {
        return Err(Error::InvalidOption { option: "sandbox image", reason: "it is empty".into() });
    }
    Ok(())
}

/// A running containerd child process. Dropping it stops containerd (blocking the
/// dropping thread for up to the stop timeout); prefer [`Containerd::stop`].
#[derive(Debug)]
pub struct Containerd {
    child: Option<Child>,
    pid: u32,
    layout: Layout,
    ctr: PathBuf,
    sandbox_image: String,
    stop_timeout: Duration,
}

impl Containerd {
    /// Writes the config and CNI network under `data_dir`, starts containerd, and returns
    /// once its CRI service answers `Version` and reports `RuntimeReady` and
    /// `NetworkReady`, with the pause image imported (when `opts.pause_busybox` is set).
    /// On any failure the child is stopped before the error is returned.
    pub async fn start(data_dir: &Path, opts: Options) -> Result<Self> {
        validate(&opts)?;
        let binary = match &opts.containerd {
            Some(path) => path.clone(),
            None => find_containerd()?,
        };
        let runc = find_runc()?;
        let ctr = find_ctr(&binary)?;
        check_cni_plugins(&opts.cni_bin_dir)?;

        std::fs::create_dir_all(data_dir)
            .map_err(|e| Error::io("creating the data directory", data_dir, e))?;
        let data_dir =
            data_dir.canonicalize().map_err(|e| Error::io("resolving the data directory", data_dir, e))?;
        let layout = Layout::new(&data_dir);
        if layout.ttrpc_socket().as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::InvalidOption {
                option: "data directory",
                reason: format!(
                    "{} is too long for a unix socket path ({} bytes at most)",
                    layout.ttrpc_socket().display(),
                    MAX_SOCKET_PATH
                ),
            });
        }
        let network = cni::BridgeNetwork {
            name: opts.network_name.clone(),
            bridge: opts.bridge.clone(),
            subnet: opts.pod_cidr.clone(),
            routes: opts.pod_routes.clone(),
            ipam_data_dir: layout.cni_networks_dir.clone(),
        };
        let conflist = network.conflist()?;

        for dir in [&layout.root, &layout.state, &layout.opt, &layout.cni_conf_dir, &layout.cni_networks_dir]
        {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        }
        write(&layout.config, config::render(&layout, &opts).as_bytes())?;
        let conflist = serde_json::to_vec_pretty(&conflist)
            .map_err(|e| Error::InvalidOption { option: "CNI network", reason: e.to_string() })?;
        write(&layout.conflist(), &conflist)?;
        clear_stale_socket(&layout.socket)?;

        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&layout.log)
            .map_err(|e| Error::io("opening the containerd log", &layout.log, e))?;
        let log_err = log.try_clone().map_err(|e| Error::io("opening the containerd log", &layout.log, e))?;
        let child = std::process::Command::new(&binary)
            .arg("--config")
            .arg(&layout.config)
            .env("PATH", process::child_path(&[&binary, &runc]))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| Error::Spawn { program: binary.display().to_string(), source })?;
        let pid = child.id();
        tracing::info!(pid, socket = %layout.socket.display(), "started containerd");
        let mut this = Self {
            child: Some(child),
            pid,
            layout,
            ctr,
            sandbox_image: opts.sandbox_image.clone(),
            stop_timeout: opts.stop_timeout,
        };
        let ready = async {
            this.wait_ready(opts.start_timeout).await?;
            if let Some(busybox) = &opts.pause_busybox {
                this.import_pause_image(busybox).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(err) = ready {
            this.stop().await;
            return Err(err);
        }
        Ok(this)
    }

    /// The CRI endpoint, `unix://<data-dir>/containerd/containerd.sock`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.layout.socket.display())
    }

    /// containerd's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The files of this instance.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A CRI client for this instance.
    pub async fn connect(&self, timeout: Duration) -> Result<Client> {
        Client::connect(&self.endpoint(), timeout).await
    }

    /// Imports an OCI image-layout archive (or a docker-archive tar) into the `k8s.io`
    /// namespace with `ctr images import`, unpacked for the CRI snapshotter. Names come
    /// from the archive's index annotations (`io.containerd.image.name`, else
    /// `org.opencontainers.image.ref.name`); no `--base-name`, which on OCI archives
    /// silently imports nothing.
    pub async fn import_image(&self, archive: &Path) -> Result<()> {
        let args = [
            "--address".as_ref(),
            self.layout.socket.as_os_str(),
            "--namespace".as_ref(),
            "k8s.io".as_ref(),
            "images".as_ref(),
            "import".as_ref(),
            archive.as_os_str(),
        ];
        process::run(&self.ctr, args).await?;
        Ok(())
    }

    /// Builds the pause image from `busybox`, imports it as the configured sandbox image,
    /// and checks that the CRI image service sees it.
    pub async fn import_pause_image(&self, busybox: &Path) -> Result<()> {
        let name = self.sandbox_image.clone();
        let busybox = busybox.to_owned();
        let archive = self.layout.pause_archive.clone();
        let path = archive.clone();
        tokio::task::spawn_blocking(move || {
            let built = crate::image::pause_image(&name, &busybox)?.build()?;
            write(&path, &built.archive)
        })
        .await
        .map_err(|e| Error::io("building the pause image at", &archive, std::io::Error::other(e)))??;
        self.import_image(&archive).await?;

        let client = self.connect(Duration::from_secs(10)).await?;
        let spec = ImageSpec { image: self.sandbox_image.clone(), ..Default::default() };
        // The CRI plugin learns of imported images from containerd's events, so the
        // image can take a moment to appear.
        for _ in 0..100 {
            if client.image_status(spec.clone()).await?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Error::ImportInvisible { image: self.sandbox_image.clone(), archive })
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let endpoint = self.endpoint();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut client: Option<Client> = None;
        let mut last_error = String::from("its socket never appeared");
        loop {
            if let Some(child) = self.child.as_mut() {
                let exited =
                    child.try_wait().map_err(|e| Error::io("waiting for containerd", &self.layout.log, e))?;
                if let Some(status) = exited {
                    self.child = None;
                    return Err(Error::ContainerdExited {
                        status: status.to_string(),
                        log_path: self.layout.log.clone(),
                        log: process::tail(&self.layout.log, 20),
                    });
                }
            }
            if client.is_none() && self.layout.socket.exists() {
                match Client::connect(&endpoint, Duration::from_secs(2)).await {
                    Ok(c) => client = Some(c),
                    Err(e) => last_error = e.to_string(),
                }
            }
            if let Some(c) = &client {
                match ready(c).await {
                    Ok(()) => return Ok(()),
                    Err(e) => last_error = e,
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::ContainerdNotReady {
                    timeout,
                    last_error,
                    log_path: self.layout.log.clone(),
                    log: process::tail(&self.layout.log, 20),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops containerd: SIGTERM, then SIGKILL after the stop timeout, and reaps it.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            match process::terminate(&mut child, self.stop_timeout).await {
                Ok(status) => tracing::info!(pid = self.pid, %status, "containerd stopped"),
                Err(error) => tracing::warn!(pid = self.pid, %error, "stopping containerd"),
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Err(error) = process::terminate_blocking(&mut child, self.stop_timeout)
        {
            tracing::warn!(pid = self.pid, %error, "stopping containerd");
        }
    }
}

/// `Ok` once the runtime answers `Version` and reports both required conditions true;
/// otherwise why not, for the timeout message.
async fn ready(client: &Client) -> std::result::Result<(), String> {
    client.version().await.map_err(|e| e.to_string())?;
    let status = client.status(false).await.map_err(|e| e.to_string())?;
    let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
    for wanted in ["RuntimeReady", "NetworkReady"] {
        match conditions.iter().find(|c| c.r#type == wanted) {
            Some(c) if c.status => {}
            Some(c) => return Err(format!("{wanted} is false: {} {}", c.reason, c.message)),
            None => return Err(format!("the runtime reports no {wanted} condition")),
        }
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io("writing", path, e))
}

/// Removes a socket file left by a containerd that died, and refuses to start over one
/// that is still served.
fn clear_stale_socket(socket: &Path) -> Result<()> {
    if !socket.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Err(Error::SocketInUse { socket: socket.to_owned() });
    }
    std::fs::remove_file(socket).map_err(|e| Error::io("removing the stale socket", socket, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_containerd_is_one_sentence_naming_what_to_install() {
        let err = containerd_or_install_hint(None).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("containerd is not installed: install Debian's containerd"), "{text}");
        assert!(text.contains("(apt-get install containerd runc containernetworking-plugins)"), "{text}");
        assert_eq!(text.matches(". ").count(), 0, "one sentence: {text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn missing_cni_plugins_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_cni_plugins(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bridge, host-local, portmap, loopback"), "{text}");
        assert!(text.contains("apt-get install containernetworking-plugins"), "{text}");
    }

    #[test]
    fn the_layout_keeps_everything_under_the_data_dir() {
        let layout = Layout::new(Path::new("/data"));
        assert_eq!(layout.socket, Path::new("/data/containerd/containerd.sock"));
        assert_eq!(layout.ttrpc_socket(), Path::new("/data/containerd/containerd.sock.ttrpc"));
        assert_eq!(layout.root, Path::new("/data/containerd/root"));
        assert_eq!(layout.state, Path::new("/data/containerd/state"));
        assert_eq!(layout.cni_conf_dir, Path::new("/data/cni/net.d"));
    }

    #[test]
    fn a_plain_http_registry_is_host_and_port_only() {
        let opts =
            Options { plain_http_registries: vec!["http://registry.test:5000".into()], ..Options::default() };
        assert!(validate(&opts).is_err());
    }

    #[test]
    fn a_stale_socket_is_removed_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(matches!(clear_stale_socket(&path), Err(Error::SocketInUse { .. })));
        drop(listener);
        clear_stale_socket(&path).unwrap();
        assert!(!path.exists());
    }
}
