//! The two services of the Container Runtime Interface as the node agent sees them:
//! [`Runtime`] (pod sandboxes and containers) and [`Images`]. The agent holds them as
//! trait objects, so its tests can run against a fake and production against
//! [`crate::Client`] (any CRI v1 runtime: krust's own shim, containerd).
//!
//! Signatures use the CRI v1 message types ([`crate::api`]) unchanged; only the
//! request envelopes are flattened into arguments, and responses that carry a single
//! field are unwrapped.

use std::time::Duration;

use async_trait::async_trait;

use crate::Result;
use crate::api::{
    AttachRequest, AuthConfig, Container, ContainerConfig, ContainerFilter, ContainerStats,
    ContainerStatsFilter, ContainerStatusResponse, ExecRequest, ExecSyncResponse, Image, ImageFilter,
    ImageFsInfoResponse, ImageSpec, PodSandbox, PodSandboxConfig, PodSandboxFilter, PodSandboxStatusResponse,
    StatusResponse, VersionResponse,
};

/// The CRI `RuntimeService`: pod sandboxes, containers, exec and streaming.
///
/// Errors: a runtime's refusal comes back as [`crate::Error::Rpc`] with the gRPC status;
/// `NotFound` there ([`crate::Error::is_not_found`]) means the sandbox or container does
/// not exist, which callers that stop or remove treat as done. Stop and remove calls are
/// idempotent on conforming runtimes: repeating one after success is not an error.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// The runtime's name and version and the CRI version it speaks (`v1`).
    async fn version(&self) -> Result<VersionResponse>;

    /// The runtime's conditions (`RuntimeReady`, `NetworkReady`) as the node's Ready
    /// condition needs them; `verbose` asks for extra debug info.
    async fn status(&self, verbose: bool) -> Result<StatusResponse>;

    /// Creates and starts a pod sandbox (its namespaces, network and pause process) and
    /// returns its id. `runtime_handler` selects a RuntimeClass handler; empty is the
    /// runtime's default.
    async fn run_pod_sandbox(&self, config: PodSandboxConfig, runtime_handler: &str) -> Result<String>;

    /// Stops every container of the sandbox and tears down its network; the sandbox
    /// stays listed (state NOTREADY) until removed.
    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()>;

    /// Removes a sandbox and all of its containers, stopping them first if needed.
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()>;

    /// The sandbox's state, network status (pod IP) and metadata.
    async fn pod_sandbox_status(&self, sandbox_id: &str, verbose: bool) -> Result<PodSandboxStatusResponse>;

    /// The sandboxes that match `filter` (all of them for `None`).
    async fn list_pod_sandbox(&self, filter: Option<PodSandboxFilter>) -> Result<Vec<PodSandbox>>;

    /// Creates a container in a sandbox (not started) and returns its id.
    /// `sandbox_config` must be the config the sandbox was created with.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String>;

    /// Starts a created container.
    async fn start_container(&self, container_id: &str) -> Result<()>;

    /// Stops a running container: SIGTERM (or the image's stop signal), then SIGKILL
    /// after `timeout` (whole seconds; zero kills at once). The call waits for the stop.
    async fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<()>;

    /// Removes a container, killing it first if it still runs.
    async fn remove_container(&self, container_id: &str) -> Result<()>;

    /// The container's state, exit code, reason, log path and timestamps.
    async fn container_status(&self, container_id: &str, verbose: bool) -> Result<ContainerStatusResponse>;

    /// The containers that match `filter` (all of them for `None`).
    async fn list_containers(&self, filter: Option<ContainerFilter>) -> Result<Vec<Container>>;

    /// CPU, memory and writable-layer usage of the containers that match `filter`.
    async fn list_container_stats(&self, filter: Option<ContainerStatsFilter>)
    -> Result<Vec<ContainerStats>>;

    /// Runs `cmd` in a running container and waits for it: its stdout, stderr and exit
    /// code. A non-zero exit is a successful call. `timeout` bounds the command (the
    /// runtime kills it after that; zero means no bound) and is rounded up to seconds.
    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecSyncResponse>;

    /// Prepares an interactive exec and returns the runtime's streaming URL for it, which
    /// the node agent proxies (SPDY or WebSocket, as kubectl exec speaks).
    async fn exec(&self, request: ExecRequest) -> Result<String>;

    /// Prepares an attach to a container's stdio and returns the streaming URL.
    async fn attach(&self, request: AttachRequest) -> Result<String>;

    /// Prepares port forwarding into a sandbox's network namespace and returns the
    /// streaming URL; `ports` may be empty (the client names ports per stream).
    async fn port_forward(&self, sandbox_id: &str, ports: Vec<i32>) -> Result<String>;

    /// Makes the runtime reopen the container's log file (after log rotation renamed it).
    async fn reopen_container_log(&self, container_id: &str) -> Result<()>;
}

/// The CRI `ImageService`: pulling, inspecting and removing images.
#[async_trait]
pub trait Images: Send + Sync {
    /// Pulls `image` (with registry credentials `auth`, if any) and returns the image
    /// reference the runtime stored, usually `sha256:<config digest>`. `sandbox_config`
    /// is the pod's sandbox config, for runtimes that pull per runtime class.
    async fn pull_image(
        &self,
        image: ImageSpec,
        auth: Option<AuthConfig>,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String>;

    /// The image if the runtime has it, `None` if it does not.
    async fn image_status(&self, image: ImageSpec) -> Result<Option<Image>>;

    /// The images that match `filter` (all of them for `None`).
    async fn list_images(&self, filter: Option<ImageFilter>) -> Result<Vec<Image>>;

    /// Removes an image; removing an absent image succeeds.
    async fn remove_image(&self, image: ImageSpec) -> Result<()>;

    /// Usage of the filesystems holding images (for image garbage collection and the
    /// node's disk-pressure signals).
    async fn image_fs_info(&self) -> Result<ImageFsInfoResponse>;
}
