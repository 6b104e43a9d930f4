//! Root tests against a real containerd started by the supervisor: the pause image
//! built here, a busybox image pulled over plain HTTP from a local registry, a pod with
//! one container, exec, logs, and teardown. Each test removes every pod it made, stops
//! containerd by PID, deletes the bridge it created, puts `ip_forward` back, and removes
//! the host directories containerd created outside its data directory.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use cri::api::{
    ContainerConfig, ContainerMetadata, ContainerState, ExecRequest, ImageSpec, LinuxContainerConfig,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxState,
};
use cri::containerd::Options;
use cri::image::PAUSE_IMAGE;
use cri::testing::{self, BusyboxImage, HostDirsGuard, IpForwardGuard, LinkGuard, Registry};
use cri::{Client, Containerd, Error, Images, Runtime};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Node options for a test: its own bridge, network and /24, so tests (and a real
/// node on the same machine, which uses krust0 and 10.42.0.0/24) never share one.
fn options(bridge: &str, third_octet: u8) -> Options {
    Options {
        bridge: bridge.to_owned(),
        network_name: format!("krust-{bridge}"),
        pod_cidr: format!("10.42.{third_octet}.0/24"),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_runs_a_busybox_container_as_root() {
    testing::require_node_tools();
    let _host_dirs = HostDirsGuard::save();
    let _ip_forward = IpForwardGuard::save();
    let bridge = "krusttest0";
    let _link = LinkGuard::new(bridge);
    let registry = Registry::start().await.expect("starting the test registry");
    let image = BusyboxImage::new("krust-test/busybox", "1");
    let reference = image.build_and_push(registry.host()).await.expect("building and pushing the test image");

    let dir = tempfile::tempdir().unwrap();
    let containerd = Containerd::start(dir.path(), options(bridge, 251)).await.expect("starting containerd");
    let pid = containerd.pid();
    let client = containerd.connect(TIMEOUT).await.expect("connecting to containerd");

    let outcome = run_a_pod(&client, &reference, dir.path(), "10.42.251.").await;
    let cleanup = testing::remove_all_pods(&client).await;
    containerd.stop().await;
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "containerd (pid {pid}) still runs after stop");
    outcome.unwrap();
    assert_eq!(cleanup.expect("removing leftover pods"), 0, "the scenario removed its pod itself");
}

async fn run_a_pod(client: &Client, reference: &str, dir: &Path, pod_net: &str) -> anyhow::Result<()> {
    let version = client.version().await?;
    ensure!(version.runtime_name == "containerd", "{version:?}");
    ensure!(version.runtime_api_version == "v1", "{version:?}");

    // The pause image was built here and imported under its name by start().
    let pause = client
        .image_status(spec(PAUSE_IMAGE))
        .await?
        .context("the pause image is not in the CRI image store")?;
    ensure!(pause.repo_tags.iter().any(|t| t == PAUSE_IMAGE), "{pause:?}");

    // The registry listens on a random loopback port: no config names it, yet the pull
    // goes over plain HTTP.
    let image_ref = client.pull_image(spec(reference), None, None).await?;
    ensure!(image_ref.starts_with("sha256:"), "image ref {image_ref}");
    let images = client.list_images(None).await?;
    ensure!(
        images.iter().any(|i| i.id == image_ref && i.repo_tags.iter().any(|t| t == reference)),
        "{reference} not listed: {images:?}"
    );

    let log_dir = dir.join("pods").join("default_web_uid-1");
    std::fs::create_dir_all(log_dir.join("main"))?;
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web".into(),
        log_directory: log_dir.display().to_string(),
        labels: [("app".to_owned(), "web".to_owned())].into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sandbox = client.run_pod_sandbox(sandbox_config.clone(), "").await?;
    let status = client.pod_sandbox_status(&sandbox, false).await?;
    let status = status.status.context("sandbox status")?;
    ensure!(status.state == PodSandboxState::SandboxReady as i32, "{status:?}");
    let pod_ip = status.network.map(|n| n.ip).unwrap_or_default();
    ensure!(pod_ip.starts_with(pod_net), "pod IP {pod_ip:?} is not from the pod CIDR");

    let config = ContainerConfig {
        metadata: Some(ContainerMetadata { name: "main".into(), attempt: 0 }),
        image: Some(spec(reference)),
        command: vec!["sh".into(), "-c".into()],
        args: vec!["echo hello from krust; echo written > /tmp/out; exec sleep 3600".into()],
        log_path: "main/0.log".into(),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    };
    let container = client.create_container(&sandbox, config, sandbox_config).await?;
    client.start_container(&container).await?;

    let log_path = log_dir.join("main/0.log");
    let log = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        text.contains(" stdout F hello from krust").then_some(text)
    })
    .await
    .with_context(|| format!("no CRI log line in {}", log_path.display()))?;
    ensure!(log.lines().count() == 1, "unexpected log: {log}");

    let out = exec(client, &container, &["cat", "/tmp/out"]).await?;
    ensure!(out.exit_code == 0, "{out:?}");
    ensure!(out.stdout == b"written\n", "stdout {:?}", String::from_utf8_lossy(&out.stdout));
    let out = exec(client, &container, &["sh", "-c", "echo oops >&2; exit 3"]).await?;
    ensure!(out.exit_code == 3, "{out:?}");
    ensure!(out.stderr == b"oops\n" && out.stdout.is_empty(), "{out:?}");
    let out = exec(client, &container, &["ip", "-4", "addr", "show", "eth0"]).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(text.contains(&format!("inet {pod_ip}/24")), "eth0 lacks {pod_ip}: {text}");
    let out = exec(client, &container, &["hostname"]).await?;
    ensure!(out.stdout == b"web\n", "{out:?}");

    let url = client
        .exec(ExecRequest {
            container_id: container.clone(),
            cmd: vec!["sh".into()],
            stdout: true,
            ..Default::default()
        })
        .await?;
    ensure!(url.starts_with("http://127.0.0.1:"), "exec URL {url}");
    let url = client.port_forward(&sandbox, vec![80]).await?;
    ensure!(url.starts_with("http://127.0.0.1:"), "port-forward URL {url}");
    client.reopen_container_log(&container).await?;

    let running = client.container_status(&container, false).await?.status.context("status")?;
    ensure!(running.state == ContainerState::ContainerRunning as i32, "{running:?}");
    // containerd reports the pulled image by its repo digest; the kubelet shows that
    // as the pod's imageID.
    let pulled = images.iter().find(|i| i.id == image_ref).context("pulled image")?;
    ensure!(
        running.image_ref == image_ref || pulled.repo_digests.contains(&running.image_ref),
        "image_ref {} is neither {image_ref} nor one of {:?}",
        running.image_ref,
        pulled.repo_digests
    );
    let listed = client.list_containers(None).await?;
    ensure!(listed.len() == 1 && listed[0].pod_sandbox_id == sandbox, "{listed:?}");

    // SIGTERM, then SIGKILL after a second if the process outlives it.
    client.stop_container(&container, Duration::from_secs(1)).await?;
    let exited = client.container_status(&container, false).await?.status.context("status")?;
    ensure!(exited.state == ContainerState::ContainerExited as i32, "{exited:?}");
    ensure!([128 + 15, 128 + 9].contains(&exited.exit_code), "{exited:?}");
    ensure!(exited.finished_at >= exited.started_at, "{exited:?}");

    client.remove_container(&container).await?;
    ensure!(client.list_containers(None).await?.is_empty());
    client.stop_pod_sandbox(&sandbox).await?;
    let stopped = client.pod_sandbox_status(&sandbox, false).await?.status.context("status")?;
    ensure!(stopped.state == PodSandboxState::SandboxNotready as i32, "{stopped:?}");
    client.remove_pod_sandbox(&sandbox).await?;
    match client.pod_sandbox_status(&sandbox, false).await {
        Err(e) if e.is_not_found() => {}
        other => bail!("a removed sandbox still has a status: {other:?}"),
    }
    ensure!(client.list_pod_sandbox(None).await?.is_empty());

    client.remove_image(spec(reference)).await?;
    ensure!(client.image_status(spec(reference)).await?.is_none());
    Ok(())
}

fn spec(image: &str) -> ImageSpec {
    ImageSpec { image: image.to_owned(), ..Default::default() }
}

async fn exec(client: &Client, id: &str, cmd: &[&str]) -> anyhow::Result<cri::api::ExecSyncResponse> {
    let cmd = cmd.iter().map(|s| s.to_string()).collect();
    client.exec_sync(id, cmd, Duration::from_secs(10)).await.context("exec_sync")
}

async fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_that_exits_at_start_is_reported_with_its_log_as_root() {
    testing::require_node_tools();
    let _host_dirs = HostDirsGuard::save();
    let _ip_forward = IpForwardGuard::save();
    let bridge = "krusttest1";
    let _link = LinkGuard::new(bridge);
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        snapshotter: "no-such-snapshotter".into(),
        start_timeout: Duration::from_secs(20),
        ..options(bridge, 252)
    };
    let err = Containerd::start(dir.path(), opts)
        .await
        .expect_err("containerd started with a snapshotter that does not exist");
    match &err {
        Error::ContainerdExited { log, .. } | Error::ContainerdNotReady { log, .. } => {
            assert!(log.contains("no-such-snapshotter"), "the log tail does not say why: {err}");
        }
        other => panic!("unexpected error: {other}"),
    }
    // The failed start left no containerd behind.
    let sock = dir.path().join("containerd/containerd.sock");
    assert!(std::os::unix::net::UnixStream::connect(&sock).is_err(), "{} is still served", sock.display());
}
