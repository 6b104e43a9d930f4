//! Helpers for tests (the `testing` feature): an in-memory CRI runtime for node-agent
//! unit tests ([`fake`]); and for tests that run real containers, busybox test images
//! built with umoci and pushed with skopeo ([`images`]), a throwaway local registry
//! ([`registry`]), checks that fail a test with a clear message when it lacks
//! root or a program, and guards that put back the host state a test changes.

pub mod fake;
pub mod images;
pub mod registry;

use std::path::Path;

pub use fake::FakeRuntime;
pub use images::BusyboxImage;
pub use registry::Registry;

use crate::Result;
use crate::runtime::Runtime;

/// Fails the calling test unless it runs as root, saying why it needs it.
pub fn require_root(why: &str) {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test needs root ({why}); run it as root, as .ci/run does");
}

/// Fails the calling test when any of `programs` (name, Debian package) is not
/// installed, naming every missing one and the packages to install.
pub fn require_programs(programs: &[(&str, &str)]) {
    let missing: Vec<_> =
        programs.iter().filter(|(name, _)| crate::process::find_program(name).is_none()).collect();
    if missing.is_empty() {
        return;
    }
    let names: Vec<_> = missing.iter().map(|(n, _)| *n).collect();
    let mut packages: Vec<_> = missing.iter().map(|(_, p)| *p).collect();
    packages.dedup();
    panic!(
        "this test needs {} which {} not installed: apt-get install {}",
        names.join(", "),
        if names.len() == 1 { "is" } else { "are" },
        packages.join(" ")
    );
}

/// Fails the calling test when a file it needs (a CNI plugin, busybox) is missing.
pub fn require_file(path: &Path, package: &str) {
    assert!(
        path.exists(),
        "this test needs {} which is not installed: apt-get install {package}",
        path.display()
    );
}

/// Fails the calling test unless it can run real pods: root, containerd, runc, the CNI
/// plugins, and what test images are built and served with (busybox-static, umoci,
/// skopeo, and docker-registry unless a registry is given in [`registry::REGISTRY_ENV`]).
pub fn require_node_tools() {
    require_root("it runs containerd, runc and a CNI bridge");
    require_programs(&[
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
        ("umoci", "umoci"),
        ("skopeo", "skopeo"),
        ("ip", "iproute2"),
    ]);
    if std::env::var_os(registry::REGISTRY_ENV).is_none() {
        require_programs(&[("docker-registry", "docker-registry")]);
    }
    for plugin in crate::containerd::cni::PLUGINS {
        require_file(&Path::new("/usr/lib/cni").join(plugin), "containernetworking-plugins");
    }
    require_file(Path::new(crate::image::HOST_BUSYBOX), "busybox-static");
}

/// Puts `net.ipv4.ip_forward` back as it was before the first live guard of this
/// process was made (the CNI bridge plugin turns it on for gateway bridges). Guards of
/// tests running in parallel share one saved value, and the last one dropped restores
/// it, so one test never "restores" the value another test's bridge set.
#[derive(Debug)]
pub struct IpForwardGuard(());

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Live guards and the value saved by the first of them.
static IP_FORWARD_SAVED: std::sync::Mutex<(usize, Option<String>)> = std::sync::Mutex::new((0, None));

impl IpForwardGuard {
    /// Remembers the current value, unless another live guard already did.
    pub fn save() -> Self {
        let mut state = IP_FORWARD_SAVED.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 == 0 {
            state.1 = std::fs::read_to_string(IP_FORWARD).ok();
        }
        state.0 += 1;
        Self(())
    }
}

impl Drop for IpForwardGuard {
    fn drop(&mut self) {
        let mut state = IP_FORWARD_SAVED.lock().unwrap_or_else(|e| e.into_inner());
        state.0 -= 1;
        if state.0 > 0 {
            return;
        }
        let Some(saved) = state.1.take() else { return };
        if std::fs::read_to_string(IP_FORWARD).ok().as_deref() != Some(saved.as_str())
            && let Err(error) = std::fs::write(IP_FORWARD, &saved)
        {
            eprintln!("could not restore {IP_FORWARD} to {}: {error}", saved.trim());
        }
    }
}

/// The directories containerd 1.6 and the CNI plugins create outside a supervised
/// instance's data directory, deepest first.
pub const HOST_DIRS: &[&str] = &[
    "/run/containerd/s",
    "/run/containerd/fifo",
    "/run/containerd/runc/k8s.io",
    "/run/containerd/runc",
    "/run/containerd",
    "/var/lib/cni/results",
    "/var/lib/cni",
];

/// Removes, once the last live guard of this process is dropped, those of
/// [`HOST_DIRS`] that did not exist before the first guard was made and are empty by
/// then (a directory something still uses is left alone).
#[derive(Debug)]
pub struct HostDirsGuard(());

/// Live guards and which of [`HOST_DIRS`] were absent before the first of them.
static HOST_DIRS_ABSENT: std::sync::Mutex<(usize, Vec<&'static str>)> =
    std::sync::Mutex::new((0, Vec::new()));

impl HostDirsGuard {
    /// Remembers which of [`HOST_DIRS`] are absent now, unless another live guard did.
    pub fn save() -> Self {
        let mut state = HOST_DIRS_ABSENT.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 == 0 {
            state.1 = HOST_DIRS.iter().copied().filter(|d| !Path::new(d).exists()).collect();
        }
        state.0 += 1;
        Self(())
    }
}

impl Drop for HostDirsGuard {
    fn drop(&mut self) {
        let mut state = HOST_DIRS_ABSENT.lock().unwrap_or_else(|e| e.into_inner());
        state.0 -= 1;
        if state.0 > 0 {
            return;
        }
        for dir in std::mem::take(&mut state.1) {
            // Fails, harmlessly, on a directory that is not empty.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Deletes a network link on drop if it did not exist when the guard was made (the
/// bridge a test's CNI network creates).
#[derive(Debug)]
pub struct LinkGuard {
    name: String,
    existed: bool,
}

impl LinkGuard {
    /// Remembers whether `name` exists now.
    pub fn new(name: &str) -> Self {
        Self { name: name.to_owned(), existed: link_exists(name) }
    }
}

/// Whether a network interface of that name exists in this network namespace.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        if self.existed || !link_exists(&self.name) {
            return;
        }
        let Some(ip) = crate::process::find_program("ip") else {
            eprintln!("could not delete link {}: ip (iproute2) is not installed", self.name);
            return;
        };
        match std::process::Command::new(ip).args(["link", "del", &self.name]).status() {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("ip link del {} failed: {status}", self.name),
            Err(error) => eprintln!("could not run ip link del {}: {error}", self.name),
        }
    }
}

/// Stops and removes every pod sandbox (and so every container) the runtime has, so a
/// test leaves no pods behind even when it failed half-way. Returns how many it removed.
pub async fn remove_all_pods(runtime: &(impl Runtime + ?Sized)) -> Result<usize> {
    let sandboxes = runtime.list_pod_sandbox(None).await?;
    for sandbox in &sandboxes {
        for container in runtime.list_containers(None).await? {
            if container.pod_sandbox_id == sandbox.id {
                ignore_not_found(runtime.remove_container(&container.id).await)?;
            }
        }
        ignore_not_found(runtime.stop_pod_sandbox(&sandbox.id).await)?;
        ignore_not_found(runtime.remove_pod_sandbox(&sandbox.id).await)?;
    }
    Ok(sandboxes.len())
}

fn ignore_not_found(result: Result<()>) -> Result<()> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}
