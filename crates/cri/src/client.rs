//! A CRI v1 gRPC client over a unix socket, implementing [`Runtime`] and [`Images`] for
//! any conforming runtime (krust's shim, containerd, CRI-O).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::api::image_service_client::ImageServiceClient;
use crate::api::runtime_service_client::RuntimeServiceClient;
use crate::api::{
    AttachRequest, AuthConfig, Container, ContainerConfig, ContainerFilter, ContainerStats,
    ContainerStatsFilter, ContainerStatusRequest, ContainerStatusResponse, CreateContainerRequest,
    ExecRequest, ExecSyncRequest, ExecSyncResponse, Image, ImageFilter, ImageFsInfoRequest,
    ImageFsInfoResponse, ImageSpec, ImageStatusRequest, ListContainerStatsRequest, ListContainersRequest,
    ListImagesRequest, ListPodSandboxRequest, PodSandbox, PodSandboxConfig, PodSandboxFilter,
    PodSandboxStatusRequest, PodSandboxStatusResponse, PortForwardRequest, PullImageRequest,
    RemoveContainerRequest, RemoveImageRequest, RemovePodSandboxRequest, ReopenContainerLogRequest,
    RunPodSandboxRequest, StartContainerRequest, StatusRequest, StatusResponse, StopContainerRequest,
    StopPodSandboxRequest, VersionRequest, VersionResponse,
};
use crate::runtime::{Images, Runtime};
use crate::{Error, Result};

/// The largest gRPC message either side may send, as the kubelet sets it (16 MiB): big
/// enough for `ExecSync` output and long container lists.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The CRI API version string this client speaks in `Version` requests.
pub const API_VERSION: &str = "v1";

/// A connection to one CRI runtime endpoint. Cheap to clone; clones share the
/// connection, which reconnects by itself when the runtime restarts.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: String,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    timeout: Duration,
}

/// The socket path of a CRI endpoint: `unix:///path/to.sock`, `unix:/path`, or a bare
/// absolute path, as the kubelet's `--container-runtime-endpoint` accepts.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let invalid = |reason| Error::InvalidEndpoint { endpoint: endpoint.to_owned(), reason };
    let path = if let Some(rest) = endpoint.strip_prefix("unix://") {
        rest
    } else if let Some(rest) = endpoint.strip_prefix("unix:") {
        rest
    } else if endpoint.contains("://") {
        return Err(invalid("only unix:// endpoints are supported"));
    } else {
        endpoint
    };
    if path.is_empty() {
        return Err(invalid("the socket path is empty"));
    }
    if !Path::new(path).is_absolute() {
        return Err(invalid("the socket path must be absolute"));
    }
    Ok(PathBuf::from(path))
}

impl Client {
    /// Connects to `endpoint` (see [`socket_path`]). `timeout` bounds the connection and
    /// every later call, except `PullImage` (unbounded, as in the kubelet), and
    /// `ExecSync`/`StopContainer`, which get their own timeout on top of it.
    pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Self> {
        let path = socket_path(endpoint)?;
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        });
        // The URI only fills the :authority header; the connector ignores it.
        let uri = Endpoint::from_static("http://localhost").connect_timeout(timeout);
        let channel = tokio::time::timeout(timeout, uri.connect_with_connector(connector))
            .await
            .map_err(|_| Error::ConnectTimeout { endpoint: endpoint.to_owned(), timeout })?
            .map_err(|source| Error::Connect { endpoint: endpoint.to_owned(), source })?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            images: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            timeout,
        })
    }

    /// The endpoint this client was connected to, as given.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn rt(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    fn img(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }
}

/// A request carrying its deadline as `grpc-timeout`, so the runtime stops working on
/// it when the client gives up.
fn request<T>(message: T, timeout: Option<Duration>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

/// Awaits one call, bounded by `timeout` on this side too (a runtime that ignores the
/// deadline must not hang the agent), and names the method in any error.
async fn call<T>(
    op: &'static str,
    timeout: Option<Duration>,
    fut: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    let response = match timeout {
        Some(timeout) => {
            tokio::time::timeout(timeout, fut).await.map_err(|_| Error::Timeout { op, timeout })?
        }
        None => fut.await,
    };
    response.map(tonic::Response::into_inner).map_err(|status| Error::rpc(op, status))
}

/// Seconds for CRI's integer timeouts, rounded up so that a sub-second bound never
/// becomes zero (which means "none" for ExecSync).
fn whole_seconds(timeout: Duration) -> i64 {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

#[async_trait]
impl Runtime for Client {
    async fn version(&self) -> Result<VersionResponse> {
        let t = Some(self.timeout);
        let msg = VersionRequest { version: API_VERSION.to_owned() };
        call("Version", t, self.rt().version(request(msg, t))).await
    }

    async fn status(&self, verbose: bool) -> Result<StatusResponse> {
        let t = Some(self.timeout);
        let msg = StatusRequest { verbose };
        call("Status", t, self.rt().status(request(msg, t))).await
    }

    async fn run_pod_sandbox(&self, config: PodSandboxConfig, runtime_handler: &str) -> Result<String> {
        let t = Some(self.timeout);
        let msg = RunPodSandboxRequest { config: Some(config), runtime_handler: runtime_handler.to_owned() };
        let response = call("RunPodSandbox", t, self.rt().run_pod_sandbox(request(msg, t))).await?;
        if response.pod_sandbox_id.is_empty() {
            return Err(Error::MissingField { op: "RunPodSandbox", field: "pod_sandbox_id" });
        }
        Ok(response.pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let t = Some(self.timeout);
        let msg = StopPodSandboxRequest { pod_sandbox_id: sandbox_id.to_owned() };
        call("StopPodSandbox", t, self.rt().stop_pod_sandbox(request(msg, t))).await?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let t = Some(self.timeout);
        let msg = RemovePodSandboxRequest { pod_sandbox_id: sandbox_id.to_owned() };
        call("RemovePodSandbox", t, self.rt().remove_pod_sandbox(request(msg, t))).await?;
        Ok(())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str, verbose: bool) -> Result<PodSandboxStatusResponse> {
        let t = Some(self.timeout);
        let msg = PodSandboxStatusRequest { pod_sandbox_id: sandbox_id.to_owned(), verbose };
        let response = call("PodSandboxStatus", t, self.rt().pod_sandbox_status(request(msg, t))).await?;
        if response.status.is_none() {
            return Err(Error::MissingField { op: "PodSandboxStatus", field: "status" });
        }
        Ok(response)
    }

    async fn list_pod_sandbox(&self, filter: Option<PodSandboxFilter>) -> Result<Vec<PodSandbox>> {
        let t = Some(self.timeout);
        let msg = ListPodSandboxRequest { filter };
        let response = call("ListPodSandbox", t, self.rt().list_pod_sandbox(request(msg, t))).await?;
        Ok(response.items)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String> {
        let t = Some(self.timeout);
        let msg = CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        let response = call("CreateContainer", t, self.rt().create_container(request(msg, t))).await?;
        if response.container_id.is_empty() {
            return Err(Error::MissingField { op: "CreateContainer", field: "container_id" });
        }
        Ok(response.container_id)
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        let t = Some(self.timeout);
        let msg = StartContainerRequest { container_id: container_id.to_owned() };
        call("StartContainer", t, self.rt().start_container(request(msg, t))).await?;
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<()> {
        // The runtime may take the whole grace period before it kills.
        let t = Some(self.timeout.saturating_add(timeout));
        let msg =
            StopContainerRequest { container_id: container_id.to_owned(), timeout: whole_seconds(timeout) };
        call("StopContainer", t, self.rt().stop_container(request(msg, t))).await?;
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        let t = Some(self.timeout);
        let msg = RemoveContainerRequest { container_id: container_id.to_owned() };
        call("RemoveContainer", t, self.rt().remove_container(request(msg, t))).await?;
        Ok(())
    }

    async fn container_status(&self, container_id: &str, verbose: bool) -> Result<ContainerStatusResponse> {
        let t = Some(self.timeout);
        let msg = ContainerStatusRequest { container_id: container_id.to_owned(), verbose };
        let response = call("ContainerStatus", t, self.rt().container_status(request(msg, t))).await?;
        if response.status.is_none() {
            return Err(Error::MissingField { op: "ContainerStatus", field: "status" });
        }
        Ok(response)
    }

    async fn list_containers(&self, filter: Option<ContainerFilter>) -> Result<Vec<Container>> {
        let t = Some(self.timeout);
        let msg = ListContainersRequest { filter };
        let response = call("ListContainers", t, self.rt().list_containers(request(msg, t))).await?;
        Ok(response.containers)
    }

    async fn list_container_stats(
        &self,
        filter: Option<ContainerStatsFilter>,
    ) -> Result<Vec<ContainerStats>> {
        let t = Some(self.timeout);
        let msg = ListContainerStatsRequest { filter };
        let response = call("ListContainerStats", t, self.rt().list_container_stats(request(msg, t))).await?;
        Ok(response.stats)
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecSyncResponse> {
        // Zero means "no bound" to the runtime; the call is then bounded only by the
        // command itself, as in the kubelet.
        let t = (!timeout.is_zero()).then(|| self.timeout.saturating_add(timeout));
        let msg =
            ExecSyncRequest { container_id: container_id.to_owned(), cmd, timeout: whole_seconds(timeout) };
        call("ExecSync", t, self.rt().exec_sync(request(msg, t))).await
    }

    async fn exec(&self, req: ExecRequest) -> Result<String> {
        let t = Some(self.timeout);
        let response = call("Exec", t, self.rt().exec(request(req, t))).await?;
        non_empty_url("Exec", response.url)
    }

    async fn attach(&self, req: AttachRequest) -> Result<String> {
        let t = Some(self.timeout);
        let response = call("Attach", t, self.rt().attach(request(req, t))).await?;
        non_empty_url("Attach", response.url)
    }

    async fn port_forward(&self, sandbox_id: &str, ports: Vec<i32>) -> Result<String> {
        let t = Some(self.timeout);
        let msg = PortForwardRequest { pod_sandbox_id: sandbox_id.to_owned(), port: ports };
        let response = call("PortForward", t, self.rt().port_forward(request(msg, t))).await?;
        non_empty_url("PortForward", response.url)
    }

    async fn reopen_container_log(&self, container_id: &str) -> Result<()> {
        let t = Some(self.timeout);
        let msg = ReopenContainerLogRequest { container_id: container_id.to_owned() };
        call("ReopenContainerLog", t, self.rt().reopen_container_log(request(msg, t))).await?;
        Ok(())
    }
}

fn non_empty_url(op: &'static str, url: String) -> Result<String> {
    if url.is_empty() {
        return Err(Error::MissingField { op, field: "url" });
    }
    Ok(url)
}

#[async_trait]
impl Images for Client {
    async fn pull_image(
        &self,
        image: ImageSpec,
        auth: Option<AuthConfig>,
        sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String> {
        let msg = PullImageRequest { image: Some(image), auth, sandbox_config };
        let response = call("PullImage", None, self.img().pull_image(request(msg, None))).await?;
        if response.image_ref.is_empty() {
            return Err(Error::MissingField { op: "PullImage", field: "image_ref" });
        }
        Ok(response.image_ref)
    }

    async fn image_status(&self, image: ImageSpec) -> Result<Option<Image>> {
        let t = Some(self.timeout);
        let msg = ImageStatusRequest { image: Some(image), verbose: false };
        let response = call("ImageStatus", t, self.img().image_status(request(msg, t))).await?;
        Ok(response.image)
    }

    async fn list_images(&self, filter: Option<ImageFilter>) -> Result<Vec<Image>> {
        let t = Some(self.timeout);
        let msg = ListImagesRequest { filter };
        let response = call("ListImages", t, self.img().list_images(request(msg, t))).await?;
        Ok(response.images)
    }

    async fn remove_image(&self, image: ImageSpec) -> Result<()> {
        let t = Some(self.timeout);
        let msg = RemoveImageRequest { image: Some(image) };
        call("RemoveImage", t, self.img().remove_image(request(msg, t))).await?;
        Ok(())
    }

    async fn image_fs_info(&self) -> Result<ImageFsInfoResponse> {
        let t = Some(self.timeout);
        call("ImageFsInfo", t, self.img().image_fs_info(request(ImageFsInfoRequest {}, t))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_accepts_the_forms_the_kubelet_accepts() {
        let cases = [
            ("unix:///run/containerd/containerd.sock", Some("/run/containerd/containerd.sock")),
            ("unix:/run/krust/cri.sock", Some("/run/krust/cri.sock")),
            ("/run/krust/cri.sock", Some("/run/krust/cri.sock")),
            ("tcp://127.0.0.1:1234", None),
            ("unix://relative.sock", None),
            ("unix://", None),
            ("", None),
        ];
        for (endpoint, want) in cases {
            let got = socket_path(endpoint).ok();
            assert_eq!(got.as_deref(), want.map(Path::new), "endpoint {endpoint:?}");
        }
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 0);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(2)), 2);
        assert_eq!(whole_seconds(Duration::from_millis(2500)), 3);
    }

    #[tokio::test]
    async fn connecting_to_a_missing_socket_names_the_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("unix://{}/absent.sock", dir.path().display());
        let err = Client::connect(&endpoint, Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains("absent.sock"), "{err}");
    }
}
