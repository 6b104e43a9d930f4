//! An in-memory CRI runtime for node-agent unit tests: [`FakeRuntime`] implements
//! [`Runtime`] and [`Images`] with the state machine containerd's CRI plugin follows
//! (sandbox READY/NOTREADY, container CREATED/RUNNING/EXITED, idempotent removal,
//! NotFound for unknown ids, image names normalised as Docker references), records
//! every call, and lets a test make a call fail, a container exit, or an exec answer.
//!
//! Nothing runs: containers "run" until the test ends them with
//! [`FakeRuntime::exit_container`] or the agent stops them. Timestamps are wall-clock
//! nanoseconds, as CRI runtimes report them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tonic::Code;

use crate::api::{
    AttachRequest, AuthConfig, Container, ContainerAttributes, ContainerConfig, ContainerFilter,
    ContainerState, ContainerStats, ContainerStatsFilter, ContainerStatus, ContainerStatusResponse,
    ExecRequest, ExecSyncResponse, Image, ImageFilter, ImageFsInfoResponse, ImageSpec, PodSandbox,
    PodSandboxConfig, PodSandboxFilter, PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus,
    PodSandboxStatusResponse, RuntimeCondition, RuntimeStatus, StatusResponse, VersionResponse,
};
use crate::image::sha256_digest;
use crate::runtime::{Images, Runtime};
use crate::{Error, Result};

/// One recorded call: the CRI method and the id or image it was about (empty for
/// calls about nothing in particular, such as `ListContainers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: &'static str,
    pub target: String,
}

#[derive(Debug, Clone)]
struct Sandbox {
    config: PodSandboxConfig,
    state: PodSandboxState,
    created_at: i64,
    ip: String,
    runtime_handler: String,
}

#[derive(Debug, Clone)]
struct FakeContainer {
    sandbox_id: String,
    config: ContainerConfig,
    state: ContainerState,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    reason: String,
    image_ref: String,
    image_id: String,
    log_path: String,
}

#[derive(Debug)]
struct State {
    next_id: u64,
    sandboxes: BTreeMap<String, Sandbox>,
    containers: BTreeMap<String, FakeContainer>,
    /// Keyed by image id.
    images: BTreeMap<String, Image>,
    unpullable: HashMap<String, (Code, String)>,
    failures: HashMap<&'static str, VecDeque<(Code, String)>>,
    exec: HashMap<Vec<String>, ExecSyncResponse>,
    conditions: BTreeMap<String, RuntimeCondition>,
    calls: Vec<Call>,
}

/// An in-memory CRI runtime. See the module docs.
#[derive(Debug)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn status(op: &'static str, code: Code, message: impl Into<String>) -> Error {
    Error::rpc(op, tonic::Status::new(code, message))
}

fn not_found(op: &'static str, what: &str, id: &str) -> Error {
    status(op, Code::NotFound, format!("an error occurred when try to find {what} {id:?}: not found"))
}

/// The full Docker reference containerd stores a name under: `busybox` is
/// `docker.io/library/busybox:latest`, `127.0.0.1:5000/app` is
/// `127.0.0.1:5000/app:latest`. Image ids (`sha256:...`) stay as they are.
pub fn normalize_image(name: &str) -> String {
    if name.starts_with("sha256:") {
        return name.to_owned();
    }
    let (first, rest) = match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            (first.to_owned(), rest.to_owned())
        }
        Some(_) => ("docker.io".to_owned(), name.to_owned()),
        None => ("docker.io".to_owned(), format!("library/{name}")),
    };
    let last = rest.rsplit('/').next().unwrap_or_default();
    let tagged = rest.contains('@') || last.contains(':');
    if tagged { format!("{first}/{rest}") } else { format!("{first}/{rest}:latest") }
}

fn repository(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => without_digest,
    }
}

fn labels_match(selector: &HashMap<String, String>, labels: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl FakeRuntime {
    /// An empty runtime with both conditions (`RuntimeReady`, `NetworkReady`) true.
    pub fn new() -> Self {
        let conditions = ["RuntimeReady", "NetworkReady"]
            .into_iter()
            .map(|t| {
                let c = RuntimeCondition { r#type: t.to_owned(), status: true, ..Default::default() };
                (t.to_owned(), c)
            })
            .collect();
        Self {
            state: Mutex::new(State {
                next_id: 1,
                sandboxes: BTreeMap::new(),
                containers: BTreeMap::new(),
                images: BTreeMap::new(),
                unpullable: HashMap::new(),
                failures: HashMap::new(),
                exec: HashMap::new(),
                conditions,
                calls: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the image present, as if pulled or imported; returns its id.
    pub fn add_image(&self, name: &str) -> String {
        self.lock().store_image(name)
    }

    /// Makes pulls of `name` fail with this status (e.g. `NotFound` for a missing tag,
    /// `Unknown` for an unreachable registry).
    pub fn deny_pull(&self, name: &str, code: Code, message: &str) {
        self.lock().unpullable.insert(normalize_image(name), (code, message.to_owned()));
    }

    /// Makes the next call of `op` (a CRI method name such as `"StartContainer"`) fail
    /// with this status; several queue up in order.
    pub fn fail_next(&self, op: &'static str, code: Code, message: &str) {
        self.lock().failures.entry(op).or_default().push_back((code, message.to_owned()));
    }

    /// What `ExecSync` answers for exactly this command line. Unscripted commands exit 0
    /// with no output.
    pub fn set_exec_result(&self, cmd: &[&str], stdout: &str, stderr: &str, exit_code: i32) {
        let cmd = cmd.iter().map(|s| (*s).to_owned()).collect();
        let response = ExecSyncResponse {
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
            exit_code,
        };
        self.lock().exec.insert(cmd, response);
    }

    /// Sets a runtime condition (`RuntimeReady`, `NetworkReady`, or another).
    pub fn set_condition(&self, kind: &str, status: bool, reason: &str, message: &str) {
        let condition = RuntimeCondition {
            r#type: kind.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.to_owned(),
        };
        self.lock().conditions.insert(kind.to_owned(), condition);
    }

    /// Ends a running container's process with `exit_code`, as if it exited by itself
    /// (reason `Completed` for 0, `Error` otherwise, as containerd reports). Returns
    /// false if there is no such running container.
    pub fn exit_container(&self, id: &str, exit_code: i32) -> bool {
        let mut state = self.lock();
        match state.containers.get_mut(id) {
            Some(c) if c.state == ContainerState::ContainerRunning => {
                c.finish(exit_code);
                true
            }
            _ => false,
        }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }
}

impl FakeContainer {
    fn finish(&mut self, exit_code: i32) {
        self.state = ContainerState::ContainerExited;
        self.finished_at = now();
        self.exit_code = exit_code;
        self.reason = if exit_code == 0 { "Completed" } else { "Error" }.to_owned();
    }

    fn status(&self, id: &str) -> ContainerStatus {
        ContainerStatus {
            id: id.to_owned(),
            metadata: self.config.metadata.clone(),
            state: self.state as i32,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            image: self.config.image.clone(),
            image_ref: self.image_ref.clone(),
            image_id: self.image_id.clone(),
            reason: self.reason.clone(),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            mounts: self.config.mounts.clone(),
            log_path: self.log_path.clone(),
            ..Default::default()
        }
    }
}

impl State {
    /// Records the call and returns the failure queued for it, if any.
    fn enter(&mut self, op: &'static str, target: &str) -> Result<()> {
        self.calls.push(Call { op, target: target.to_owned() });
        match self.failures.get_mut(op).and_then(VecDeque::pop_front) {
            Some((code, message)) => Err(status(op, code, message)),
            None => Ok(()),
        }
    }

    fn new_id(&mut self) -> String {
        let n = self.next_id;
        self.next_id += 1;
        sha256_digest(format!("fake-{n}").as_bytes()).trim_start_matches("sha256:").to_owned()
    }

    fn store_image(&mut self, name: &str) -> String {
        let reference = normalize_image(name);
        if let Some(image) = self.find_image(&reference) {
            return image.id.clone();
        }
        let id = sha256_digest(format!("config of {reference}").as_bytes());
        let digest = sha256_digest(format!("manifest of {reference}").as_bytes());
        let image = Image {
            id: id.clone(),
            repo_tags: vec![reference.clone()],
            repo_digests: vec![format!("{}@{digest}", repository(&reference))],
            size: 1 << 20,
            spec: Some(ImageSpec { image: id.clone(), ..Default::default() }),
            ..Default::default()
        };
        self.images.insert(id.clone(), image);
        id
    }

    fn find_image(&self, name: &str) -> Option<&Image> {
        let reference = normalize_image(name);
        self.images.values().find(|i| {
            i.id == reference || i.repo_tags.contains(&reference) || i.repo_digests.contains(&reference)
        })
    }

    fn sandbox(&self, op: &'static str, id: &str) -> Result<&Sandbox> {
        self.sandboxes.get(id).ok_or_else(|| not_found(op, "sandbox", id))
    }

    fn container(&mut self, op: &'static str, id: &str) -> Result<&mut FakeContainer> {
        self.containers.get_mut(id).ok_or_else(|| not_found(op, "container", id))
    }

    fn stop_sandbox(&mut self, id: &str) {
        for c in self.containers.values_mut() {
            if c.sandbox_id == id && c.state == ContainerState::ContainerRunning {
                c.finish(137);
            }
        }
        if let Some(s) = self.sandboxes.get_mut(id) {
            s.state = PodSandboxState::SandboxNotready;
        }
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn version(&self) -> Result<VersionResponse> {
        self.lock().enter("Version", "")?;
        Ok(VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "fake".into(),
            runtime_version: "0.1.0".into(),
            runtime_api_version: "v1".into(),
        })
    }

    async fn status(&self, _verbose: bool) -> Result<StatusResponse> {
        let mut state = self.lock();
        state.enter("Status", "")?;
        Ok(StatusResponse {
            status: Some(RuntimeStatus { conditions: state.conditions.values().cloned().collect() }),
            ..Default::default()
        })
    }

    async fn run_pod_sandbox(&self, config: PodSandboxConfig, runtime_handler: &str) -> Result<String> {
        const OP: &str = "RunPodSandbox";
        let mut state = self.lock();
        let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        state.enter(OP, &name)?;
        let Some(meta) = config.metadata.clone() else {
            return Err(status(OP, Code::InvalidArgument, "sandbox config must include metadata"));
        };
        let taken = state.sandboxes.values().any(|s| s.config.metadata.as_ref() == Some(&meta));
        if taken {
            return Err(status(
                OP,
                Code::AlreadyExists,
                format!(
                    "failed to reserve sandbox name \"{}_{}_{}_{}\"",
                    meta.name, meta.namespace, meta.uid, meta.attempt
                ),
            ));
        }
        let id = state.new_id();
        let n = state.sandboxes.len() + 2;
        let ip = format!("10.88.{}.{}", (n / 250) % 256, n % 250 + 2);
        state.sandboxes.insert(
            id.clone(),
            Sandbox {
                config,
                state: PodSandboxState::SandboxReady,
                created_at: now(),
                ip,
                runtime_handler: runtime_handler.to_owned(),
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        const OP: &str = "StopPodSandbox";
        let mut state = self.lock();
        state.enter(OP, sandbox_id)?;
        state.sandbox(OP, sandbox_id)?;
        state.stop_sandbox(sandbox_id);
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let mut state = self.lock();
        state.enter("RemovePodSandbox", sandbox_id)?;
        // Removing is forcible and idempotent, as in containerd 1.6.
        state.stop_sandbox(sandbox_id);
        state.containers.retain(|_, c| c.sandbox_id != sandbox_id);
        state.sandboxes.remove(sandbox_id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str, _verbose: bool) -> Result<PodSandboxStatusResponse> {
        const OP: &str = "PodSandboxStatus";
        let mut state = self.lock();
        state.enter(OP, sandbox_id)?;
        let s = state.sandbox(OP, sandbox_id)?;
        let network = (s.state == PodSandboxState::SandboxReady)
            .then(|| PodSandboxNetworkStatus { ip: s.ip.clone(), ..Default::default() });
        let status = PodSandboxStatus {
            id: sandbox_id.to_owned(),
            metadata: s.config.metadata.clone(),
            state: s.state as i32,
            created_at: s.created_at,
            network,
            labels: s.config.labels.clone(),
            annotations: s.config.annotations.clone(),
            runtime_handler: s.runtime_handler.clone(),
            ..Default::default()
        };
        let containers_statuses = state
            .containers
            .iter()
            .filter(|(_, c)| c.sandbox_id == sandbox_id)
            .map(|(id, c)| c.status(id))
            .collect();
        Ok(PodSandboxStatusResponse {
            status: Some(status),
            containers_statuses,
            timestamp: now(),
            ..Default::default()
        })
    }

    async fn list_pod_sandbox(&self, filter: Option<PodSandboxFilter>) -> Result<Vec<PodSandbox>> {
        let mut state = self.lock();
        state.enter("ListPodSandbox", "")?;
        let filter = filter.unwrap_or_default();
        Ok(state
            .sandboxes
            .iter()
            .filter(|(id, _)| filter.id.is_empty() || **id == filter.id)
            .filter(|(_, s)| filter.state.as_ref().is_none_or(|v| v.state == s.state as i32))
            .filter(|(_, s)| labels_match(&filter.label_selector, &s.config.labels))
            .map(|(id, s)| PodSandbox {
                id: id.clone(),
                metadata: s.config.metadata.clone(),
                state: s.state as i32,
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: s.runtime_handler.clone(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        _sandbox_config: PodSandboxConfig,
    ) -> Result<String> {
        const OP: &str = "CreateContainer";
        let mut state = self.lock();
        state.enter(OP, sandbox_id)?;
        let sandbox = state.sandbox(OP, sandbox_id)?;
        if sandbox.state != PodSandboxState::SandboxReady {
            return Err(status(
                OP,
                Code::FailedPrecondition,
                format!("sandbox {sandbox_id:?} is not running"),
            ));
        }
        let log_directory = sandbox.config.log_directory.clone();
        let Some(meta) = config.metadata.clone() else {
            return Err(status(OP, Code::InvalidArgument, "container config must include metadata"));
        };
        let taken = state
            .containers
            .values()
            .any(|c| c.sandbox_id == sandbox_id && c.config.metadata.as_ref() == Some(&meta));
        if taken {
            return Err(status(
                OP,
                Code::AlreadyExists,
                format!("failed to reserve container name {:?} (attempt {})", meta.name, meta.attempt),
            ));
        }
        let image_name = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        let Some(image) = state.find_image(&image_name) else {
            return Err(status(
                OP,
                Code::NotFound,
                format!("failed to get image {image_name:?}: image not found"),
            ));
        };
        let image_id = image.id.clone();
        let image_ref = image.repo_digests.first().cloned().unwrap_or_else(|| image.id.clone());
        let log_path = if config.log_path.is_empty() || log_directory.is_empty() {
            String::new()
        } else {
            format!("{}/{}", log_directory.trim_end_matches('/'), config.log_path)
        };
        let id = state.new_id();
        state.containers.insert(
            id.clone(),
            FakeContainer {
                sandbox_id: sandbox_id.to_owned(),
                config,
                state: ContainerState::ContainerCreated,
                created_at: now(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                image_ref,
                image_id,
                log_path,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        const OP: &str = "StartContainer";
        let mut state = self.lock();
        state.enter(OP, container_id)?;
        let c = state.container(OP, container_id)?;
        if c.state != ContainerState::ContainerCreated {
            let current = c.state.as_str_name();
            return Err(status(
                OP,
                Code::FailedPrecondition,
                format!("container {container_id:?} is in {current} state"),
            ));
        }
        c.state = ContainerState::ContainerRunning;
        c.started_at = now();
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<()> {
        const OP: &str = "StopContainer";
        let mut state = self.lock();
        state.enter(OP, container_id)?;
        let c = state.container(OP, container_id)?;
        if c.state == ContainerState::ContainerRunning {
            // A zero timeout kills at once; otherwise the process honours SIGTERM.
            c.finish(if timeout.is_zero() { 137 } else { 143 });
        }
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        let mut state = self.lock();
        state.enter("RemoveContainer", container_id)?;
        state.containers.remove(container_id);
        Ok(())
    }

    async fn container_status(&self, container_id: &str, _verbose: bool) -> Result<ContainerStatusResponse> {
        const OP: &str = "ContainerStatus";
        let mut state = self.lock();
        state.enter(OP, container_id)?;
        let status = state.container(OP, container_id)?.status(container_id);
        Ok(ContainerStatusResponse { status: Some(status), ..Default::default() })
    }

    async fn list_containers(&self, filter: Option<ContainerFilter>) -> Result<Vec<Container>> {
        let mut state = self.lock();
        state.enter("ListContainers", "")?;
        let filter = filter.unwrap_or_default();
        Ok(state
            .containers
            .iter()
            .filter(|(id, _)| filter.id.is_empty() || **id == filter.id)
            .filter(|(_, c)| filter.pod_sandbox_id.is_empty() || c.sandbox_id == filter.pod_sandbox_id)
            .filter(|(_, c)| filter.state.as_ref().is_none_or(|v| v.state == c.state as i32))
            .filter(|(_, c)| labels_match(&filter.label_selector, &c.config.labels))
            .map(|(id, c)| Container {
                id: id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                image: c.config.image.clone(),
                image_ref: c.image_ref.clone(),
                image_id: c.image_id.clone(),
                state: c.state as i32,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
            })
            .collect())
    }

    async fn list_container_stats(
        &self,
        filter: Option<ContainerStatsFilter>,
    ) -> Result<Vec<ContainerStats>> {
        let mut state = self.lock();
        state.enter("ListContainerStats", "")?;
        let filter = filter.unwrap_or_default();
        Ok(state
            .containers
            .iter()
            .filter(|(id, _)| filter.id.is_empty() || **id == filter.id)
            .filter(|(_, c)| filter.pod_sandbox_id.is_empty() || c.sandbox_id == filter.pod_sandbox_id)
            .filter(|(_, c)| labels_match(&filter.label_selector, &c.config.labels))
            .map(|(id, c)| ContainerStats {
                attributes: Some(ContainerAttributes {
                    id: id.clone(),
                    metadata: c.config.metadata.clone(),
                    labels: c.config.labels.clone(),
                    annotations: c.config.annotations.clone(),
                }),
                ..Default::default()
            })
            .collect())
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        cmd: Vec<String>,
        _timeout: Duration,
    ) -> Result<ExecSyncResponse> {
        const OP: &str = "ExecSync";
        let mut state = self.lock();
        state.enter(OP, container_id)?;
        if state.container(OP, container_id)?.state != ContainerState::ContainerRunning {
            return Err(status(
                OP,
                Code::FailedPrecondition,
                format!("container {container_id:?} is not in running state"),
            ));
        }
        Ok(state.exec.get(&cmd).cloned().unwrap_or_default())
    }

    async fn exec(&self, request: ExecRequest) -> Result<String> {
        const OP: &str = "Exec";
        let mut state = self.lock();
        state.enter(OP, &request.container_id)?;
        state.container(OP, &request.container_id)?;
        let token = state.new_id();
        Ok(format!("http://127.0.0.1:0/exec/{}", &token[..8]))
    }

    async fn attach(&self, request: AttachRequest) -> Result<String> {
        const OP: &str = "Attach";
        let mut state = self.lock();
        state.enter(OP, &request.container_id)?;
        state.container(OP, &request.container_id)?;
        let token = state.new_id();
        Ok(format!("http://127.0.0.1:0/attach/{}", &token[..8]))
    }

    async fn port_forward(&self, sandbox_id: &str, _ports: Vec<i32>) -> Result<String> {
        const OP: &str = "PortForward";
        let mut state = self.lock();
        state.enter(OP, sandbox_id)?;
        state.sandbox(OP, sandbox_id)?;
        let token = state.new_id();
        Ok(format!("http://127.0.0.1:0/portforward/{}", &token[..8]))
    }

    async fn reopen_container_log(&self, container_id: &str) -> Result<()> {
        const OP: &str = "ReopenContainerLog";
        let mut state = self.lock();
        state.enter(OP, container_id)?;
        if state.container(OP, container_id)?.state != ContainerState::ContainerRunning {
            return Err(status(OP, Code::FailedPrecondition, "container is not running"));
        }
        Ok(())
    }
}

#[async_trait]
impl Images for FakeRuntime {
    async fn pull_image(
        &self,
        image: ImageSpec,
        _auth: Option<AuthConfig>,
        _sandbox_config: Option<PodSandboxConfig>,
    ) -> Result<String> {
        const OP: &str = "PullImage";
        let mut state = self.lock();
        state.enter(OP, &image.image)?;
        if let Some((code, message)) = state.unpullable.get(&normalize_image(&image.image)) {
            return Err(status(OP, *code, message.clone()));
        }
        Ok(state.store_image(&image.image))
    }

    async fn image_status(&self, image: ImageSpec) -> Result<Option<Image>> {
        let mut state = self.lock();
        state.enter("ImageStatus", &image.image)?;
        Ok(state.find_image(&image.image).cloned())
    }

    async fn list_images(&self, filter: Option<ImageFilter>) -> Result<Vec<Image>> {
        let mut state = self.lock();
        state.enter("ListImages", "")?;
        let wanted = filter.and_then(|f| f.image).map(|i| i.image).unwrap_or_default();
        if wanted.is_empty() {
            return Ok(state.images.values().cloned().collect());
        }
        Ok(state.find_image(&wanted).cloned().into_iter().collect())
    }

    async fn remove_image(&self, image: ImageSpec) -> Result<()> {
        let mut state = self.lock();
        state.enter("RemoveImage", &image.image)?;
        if let Some(id) = state.find_image(&image.image).map(|i| i.id.clone()) {
            state.images.remove(&id);
        }
        Ok(())
    }

    async fn image_fs_info(&self) -> Result<ImageFsInfoResponse> {
        self.lock().enter("ImageFsInfo", "")?;
        Ok(ImageFsInfoResponse::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ContainerMetadata, PodSandboxMetadata};

    fn pod(name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: format!("/var/log/pods/default_{name}"),
            ..Default::default()
        }
    }

    fn container(name: &str, image: &str) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
            image: Some(ImageSpec { image: image.into(), ..Default::default() }),
            log_path: format!("{name}/0.log"),
            ..Default::default()
        }
    }

    fn spec(image: &str) -> ImageSpec {
        ImageSpec { image: image.into(), ..Default::default() }
    }

    #[test]
    fn image_names_normalise_like_docker_references() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("team/app", "docker.io/team/app:latest"),
            ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
            ("localhost/krust/pause:busybox", "localhost/krust/pause:busybox"),
            ("registry.test/a/b@sha256:abc", "registry.test/a/b@sha256:abc"),
            ("sha256:abc", "sha256:abc"),
        ];
        for (name, want) in cases {
            assert_eq!(normalize_image(name), want, "{name}");
        }
    }

    #[tokio::test]
    async fn a_pod_goes_through_the_cri_lifecycle() {
        let rt = FakeRuntime::new();
        let image = rt.pull_image(spec("busybox"), None, None).await.unwrap();
        assert!(image.starts_with("sha256:"));
        assert!(rt.image_status(spec("docker.io/library/busybox:latest")).await.unwrap().is_some());

        let sandbox = rt.run_pod_sandbox(pod("web"), "").await.unwrap();
        let id = rt.create_container(&sandbox, container("main", "busybox"), pod("web")).await.unwrap();
        rt.start_container(&id).await.unwrap();
        let status = rt.container_status(&id, false).await.unwrap().status.unwrap();
        assert_eq!(status.state, ContainerState::ContainerRunning as i32);
        assert_eq!(status.log_path, "/var/log/pods/default_web/main/0.log");
        assert!(status.image_ref.starts_with("docker.io/library/busybox@sha256:"));

        rt.set_exec_result(&["cat", "/tmp/x"], "hi\n", "", 0);
        let out = rt.exec_sync(&id, vec!["cat".into(), "/tmp/x".into()], Duration::ZERO).await.unwrap();
        assert_eq!(out.stdout, b"hi\n");

        assert!(rt.exit_container(&id, 2));
        let status = rt.container_status(&id, false).await.unwrap().status.unwrap();
        assert_eq!(
            (status.state, status.exit_code, status.reason.as_str()),
            (ContainerState::ContainerExited as i32, 2, "Error")
        );
        assert!(rt.exec_sync(&id, vec!["true".into()], Duration::ZERO).await.is_err());

        rt.stop_pod_sandbox(&sandbox).await.unwrap();
        let s = rt.pod_sandbox_status(&sandbox, false).await.unwrap().status.unwrap();
        assert_eq!(s.state, PodSandboxState::SandboxNotready as i32);
        rt.remove_pod_sandbox(&sandbox).await.unwrap();
        rt.remove_pod_sandbox(&sandbox).await.unwrap();
        assert!(rt.list_containers(None).await.unwrap().is_empty());
        assert!(rt.pod_sandbox_status(&sandbox, false).await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn stopping_a_sandbox_kills_its_running_containers() {
        let rt = FakeRuntime::new();
        rt.add_image("busybox");
        let sandbox = rt.run_pod_sandbox(pod("web"), "").await.unwrap();
        let id = rt.create_container(&sandbox, container("main", "busybox"), pod("web")).await.unwrap();
        rt.start_container(&id).await.unwrap();
        rt.stop_pod_sandbox(&sandbox).await.unwrap();
        let status = rt.container_status(&id, false).await.unwrap().status.unwrap();
        assert_eq!((status.state, status.exit_code), (ContainerState::ContainerExited as i32, 137));
        let err = rt.create_container(&sandbox, container("late", "busybox"), pod("web")).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::FailedPrecondition));
    }

    #[tokio::test]
    async fn creating_a_container_needs_its_image_and_a_unique_name() {
        let rt = FakeRuntime::new();
        let sandbox = rt.run_pod_sandbox(pod("web"), "").await.unwrap();
        let err = rt.create_container(&sandbox, container("main", "nginx"), pod("web")).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        rt.add_image("nginx:latest");
        rt.create_container(&sandbox, container("main", "nginx"), pod("web")).await.unwrap();
        let err = rt.create_container(&sandbox, container("main", "nginx"), pod("web")).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::AlreadyExists));
        let err = rt.run_pod_sandbox(pod("web"), "").await.unwrap_err();
        assert_eq!(err.code(), Some(Code::AlreadyExists));
    }

    #[tokio::test]
    async fn injected_failures_and_denied_pulls_come_back_as_rpc_errors() {
        let rt = FakeRuntime::new();
        rt.deny_pull("private/app", Code::Unauthenticated, "pull access denied");
        let err = rt.pull_image(spec("docker.io/private/app:latest"), None, None).await.unwrap_err();
        assert_eq!(err.code(), Some(Code::Unauthenticated));
        assert!(err.to_string().contains("PullImage"), "{err}");

        rt.fail_next("RunPodSandbox", Code::Unknown, "failed to setup network");
        assert!(rt.run_pod_sandbox(pod("a"), "").await.is_err());
        rt.run_pod_sandbox(pod("a"), "").await.unwrap();
        let ops: Vec<_> = rt.calls().into_iter().map(|c| (c.op, c.target)).collect();
        assert_eq!(
            ops,
            [
                ("PullImage", "docker.io/private/app:latest".to_owned()),
                ("RunPodSandbox", "a".to_owned()),
                ("RunPodSandbox", "a".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn filters_select_by_sandbox_state_and_labels() {
        let rt = FakeRuntime::new();
        rt.add_image("busybox");
        let mut labelled = pod("a");
        labelled.labels.insert("app".into(), "web".into());
        let a = rt.run_pod_sandbox(labelled, "").await.unwrap();
        let b = rt.run_pod_sandbox(pod("b"), "").await.unwrap();
        rt.stop_pod_sandbox(&b).await.unwrap();
        let by_label = PodSandboxFilter {
            label_selector: [("app".to_owned(), "web".to_owned())].into(),
            ..Default::default()
        };
        let got: Vec<_> =
            rt.list_pod_sandbox(Some(by_label)).await.unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(got, std::slice::from_ref(&a));
        let ready = PodSandboxFilter {
            state: Some(crate::api::PodSandboxStateValue { state: PodSandboxState::SandboxReady as i32 }),
            ..Default::default()
        };
        let got: Vec<_> = rt.list_pod_sandbox(Some(ready)).await.unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(got, std::slice::from_ref(&a));
        let c = rt.create_container(&a, container("main", "busybox"), pod("a")).await.unwrap();
        let in_b = ContainerFilter { pod_sandbox_id: b, ..Default::default() };
        assert!(rt.list_containers(Some(in_b)).await.unwrap().is_empty());
        let in_a = ContainerFilter { pod_sandbox_id: a, ..Default::default() };
        let got: Vec<_> = rt.list_containers(Some(in_a)).await.unwrap().into_iter().map(|c| c.id).collect();
        assert_eq!(got, [c]);
    }

    #[tokio::test]
    async fn the_agent_can_hold_it_as_trait_objects() {
        let rt = std::sync::Arc::new(FakeRuntime::new());
        let runtime: std::sync::Arc<dyn Runtime> = rt.clone();
        let images: std::sync::Arc<dyn Images> = rt;
        assert_eq!(runtime.version().await.unwrap().runtime_api_version, "v1");
        assert!(images.list_images(None).await.unwrap().is_empty());
    }
}
