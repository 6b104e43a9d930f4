//! Busybox-based test images, built the way real images are built without Docker: a
//! rootfs with the host's static busybox and a link per applet, `umoci init/new/unpack`,
//! the rootfs copied in, `umoci repack`, `umoci config` for entrypoint, cmd and env,
//! then `skopeo copy` to a registry over plain HTTP.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::image::HOST_BUSYBOX;
use crate::process::{find_program, run};
use crate::{Error, Result};

/// A test image to build: busybox with every applet in `/bin`, `/etc/passwd` and
/// `/etc/group` for root, and a world-writable `/tmp`.
#[derive(Debug, Clone)]
pub struct BusyboxImage {
    /// The repository within the registry, e.g. `krust-test/busybox`.
    pub repository: String,
    pub tag: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    /// The busybox binary copied in (static, normally the host's).
    pub busybox: PathBuf,
}

impl BusyboxImage {
    /// An image with no entrypoint, `sh` as its command and `PATH=/bin`.
    pub fn new(repository: &str, tag: &str) -> Self {
        Self {
            repository: repository.to_owned(),
            tag: tag.to_owned(),
            entrypoint: Vec::new(),
            cmd: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            busybox: PathBuf::from(HOST_BUSYBOX),
        }
    }

    /// The reference the image has in `registry` (`host:port/repository:tag`).
    pub fn reference(&self, registry: &str) -> String {
        format!("{registry}/{}:{}", self.repository, self.tag)
    }

    /// Builds the image into an OCI layout at `<work>/oci` (tagged `self.tag`) and
    /// returns that layout's path. `work` must be empty or absent.
    pub async fn build(&self, work: &Path) -> Result<PathBuf> {
        let umoci = tool("umoci", "umoci")?;
        let layout = work.join("oci");
        let bundle = work.join("bundle");
        let image = format!("{}:{}", layout.display(), self.tag);
        tokio::fs::create_dir_all(work).await.map_err(|e| Error::io("creating", work, e))?;
        run(&umoci, ["init".as_ref(), "--layout".as_ref(), layout.as_os_str()]).await?;
        run(&umoci, ["new", "--image", &image]).await?;
        run(&umoci, ["unpack".as_ref(), "--image".as_ref(), image.as_ref(), bundle.as_os_str()]).await?;
        let rootfs = bundle.join("rootfs");
        let busybox = self.busybox.clone();
        tokio::task::spawn_blocking(move || populate_rootfs(&rootfs, &busybox))
            .await
            .map_err(|e| Error::io("populating the rootfs of", work, std::io::Error::other(e)))??;
        run(&umoci, ["repack".as_ref(), "--image".as_ref(), image.as_ref(), bundle.as_os_str()]).await?;

        let mut args: Vec<String> = vec!["config".into(), "--image".into(), image.clone()];
        for (flag, values) in [
            ("--config.entrypoint", &self.entrypoint),
            ("--config.cmd", &self.cmd),
            ("--config.env", &self.env),
        ] {
            for value in values {
                args.push(flag.into());
                args.push(value.clone());
            }
        }
        args.push("--config.workingdir".into());
        args.push("/".into());
        run(&umoci, &args).await?;
        Ok(layout)
    }

    /// Copies the built layout's tag to `registry` over plain HTTP and returns the
    /// image's reference there.
    pub async fn push(&self, layout: &Path, registry: &str) -> Result<String> {
        let skopeo = tool("skopeo", "skopeo")?;
        let reference = self.reference(registry);
        let source = format!("oci:{}:{}", layout.display(), self.tag);
        let dest = format!("docker://{reference}");
        run(&skopeo, ["--insecure-policy", "copy", "--dest-tls-verify=false", &source, &dest]).await?;
        Ok(reference)
    }

    /// [`build`](Self::build) in a temporary directory, then [`push`](Self::push).
    pub async fn build_and_push(&self, registry: &str) -> Result<String> {
        let work =
            tempfile::tempdir().map_err(|e| Error::io("creating a temp dir in", std::env::temp_dir(), e))?;
        let layout = self.build(&work.path().join("image")).await?;
        self.push(&layout, registry).await
    }
}

fn tool(name: &'static str, package: &str) -> Result<PathBuf> {
    find_program(name).ok_or_else(|| Error::NotInstalled {
        program: name,
        message: format!("{name} is not installed: test images are built with it, install Debian's {package} package (apt-get install {package})"),
    })
}

/// Fills an empty rootfs: `/bin/busybox`, a symlink per applet, `/etc`, `/tmp`.
fn populate_rootfs(rootfs: &Path, busybox: &Path) -> Result<()> {
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |e| Error::io(what, path, e)
    };
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).map_err(io("creating", &bin))?;
    let target = bin.join("busybox");
    std::fs::copy(busybox, &target).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotInstalled {
            program: "busybox",
            message: format!(
                "{} is missing: test images copy a static busybox, install Debian's busybox-static package (apt-get install busybox-static)",
                busybox.display()
            ),
        },
        _ => Error::io("copying busybox to", &target, e),
    })?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .map_err(io("chmod", &target))?;
    let list = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|source| Error::Spawn { program: busybox.display().to_string(), source })?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = bin.join(applet);
        std::os::unix::fs::symlink("busybox", &link).map_err(io("linking", &link))?;
    }
    let etc = rootfs.join("etc");
    std::fs::create_dir_all(&etc).map_err(io("creating", &etc))?;
    let passwd = etc.join("passwd");
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").map_err(io("writing", &passwd))?;
    let group = etc.join("group");
    std::fs::write(&group, "root:x:0:\n").map_err(io("writing", &group))?;
    let tmp = rootfs.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(io("creating", &tmp))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).map_err(io("chmod", &tmp))?;
    let root_home = rootfs.join("root");
    std::fs::create_dir_all(&root_home).map_err(io("creating", &root_home))?;
    Ok(())
}
