//! What the container runtime holds for one pod, read through CRI the way the kubelet's
//! `GetPodStatus` reads it: the pod's sandboxes and containers, found by the
//! `io.kubernetes.pod.uid` label, with each container's status, restart count (kept in
//! an annotation, so it survives agent restarts) and termination message. Newest first.

use std::collections::HashMap;
use std::path::Path;

use cri::Runtime;
use cri::api::{ContainerFilter, ContainerState, PodSandboxFilter, PodSandboxState};

/// Labels and annotations the agent puts on sandboxes and containers (the kubelet's).
pub mod keys {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
    pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
    pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
    pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
    pub const POD_TERMINATION_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";
    pub const PRE_STOP: &str = "io.kubernetes.container.preStopHandler";
}

/// The most a termination message may hold (the kubelet's 4096 bytes).
pub const MAX_TERMINATION_MESSAGE: usize = 4096;
/// How much of the log `FallbackToLogsOnError` takes: 80 lines, 2048 bytes.
const FALLBACK_LOG_LINES: usize = 80;
const FALLBACK_LOG_BYTES: usize = 2048;

/// One pod sandbox.
#[derive(Clone, Debug, PartialEq)]
pub struct Sandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_at: i64,
    /// The pod IP, for ready sandboxes with a network.
    pub ip: String,
}

/// One container instance (a restart makes a new one).
#[derive(Clone, Debug, PartialEq)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub sandbox_id: String,
    pub state: ContainerState,
    pub restart_count: i32,
    pub hash: String,
    /// Nanoseconds since the epoch, as CRI reports them; zero when unknown.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    /// The runtime's message, enriched with the termination message.
    pub message: String,
    /// The image as the runtime names it (its first tag, normally).
    pub image: String,
    /// The image's digest reference (`repo@sha256:...`): the pod's `imageID`.
    pub image_ref: String,
    pub log_path: String,
}

impl Container {
    pub fn running(&self) -> bool {
        self.state == ContainerState::ContainerRunning
    }

    pub fn exited(&self) -> bool {
        self.state == ContainerState::ContainerExited
    }
}

/// The runtime's view of one pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimePod {
    /// Newest first.
    pub sandboxes: Vec<Sandbox>,
    /// Newest first.
    pub containers: Vec<Container>,
}

impl RuntimePod {
    /// The newest instance of the container `name`.
    pub fn latest(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The instance before the newest one (its `lastState`).
    pub fn previous(&self, name: &str) -> Option<&Container> {
        self.containers.iter().filter(|c| c.name == name).nth(1)
    }

    /// Containers still running.
    pub fn running(&self) -> impl Iterator<Item = &Container> {
        self.containers.iter().filter(|c| c.running())
    }

    /// The newest sandbox, if it is ready.
    pub fn ready_sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes.first().filter(|s| s.ready)
    }

    /// Whether anything of the pod is left in the runtime.
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }
}

fn by_uid(uid: &str) -> HashMap<String, String> {
    [(keys::POD_UID.to_owned(), uid.to_owned())].into()
}

/// Reads everything the runtime has for the pod `uid`. Containers that vanish between
/// the list and their status are skipped, as the kubelet does.
pub async fn inspect(runtime: &dyn Runtime, uid: &str) -> cri::Result<RuntimePod> {
    let filter = PodSandboxFilter { label_selector: by_uid(uid), ..Default::default() };
    let mut sandboxes = Vec::new();
    for s in runtime.list_pod_sandbox(Some(filter)).await? {
        let ready = s.state == PodSandboxState::SandboxReady as i32;
        let mut ip = String::new();
        if ready {
            match runtime.pod_sandbox_status(&s.id, false).await {
                Ok(status) => {
                    ip = status.status.and_then(|st| st.network).map(|n| n.ip).unwrap_or_default();
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        let attempt = s.metadata.as_ref().map(|m| m.attempt).unwrap_or_default();
        sandboxes.push(Sandbox { id: s.id, attempt, ready, created_at: s.created_at, ip });
    }
    sandboxes.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.attempt.cmp(&a.attempt)));

    let filter = ContainerFilter { label_selector: by_uid(uid), ..Default::default() };
    let mut containers = Vec::new();
    for c in runtime.list_containers(Some(filter)).await? {
        let status = match runtime.container_status(&c.id, false).await {
            Ok(r) => match r.status {
                Some(s) => s,
                None => continue,
            },
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let state = ContainerState::try_from(status.state).unwrap_or(ContainerState::ContainerUnknown);
        let name = status
            .labels
            .get(keys::CONTAINER_NAME)
            .cloned()
            .or_else(|| status.metadata.as_ref().map(|m| m.name.clone()))
            .unwrap_or_default();
        let restart_count =
            status.annotations.get(keys::RESTART_COUNT).and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut message = status.message.clone();
        if state == ContainerState::ContainerExited {
            let termination = termination_message(&status);
            if !termination.is_empty() {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&termination);
            }
        }
        containers.push(Container {
            id: status.id.clone(),
            name,
            sandbox_id: c.pod_sandbox_id.clone(),
            state,
            restart_count,
            hash: status.annotations.get(keys::CONTAINER_HASH).cloned().unwrap_or_default(),
            created_at: status.created_at,
            started_at: if state == ContainerState::ContainerCreated { 0 } else { status.started_at },
            finished_at: if state == ContainerState::ContainerExited { status.finished_at } else { 0 },
            exit_code: if state == ContainerState::ContainerExited { status.exit_code } else { 0 },
            reason: if state == ContainerState::ContainerExited {
                status.reason.clone()
            } else {
                String::new()
            },
            message: if state == ContainerState::ContainerExited { message } else { String::new() },
            image: status.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
            image_ref: status.image_ref.clone(),
            log_path: status.log_path.clone(),
        });
    }
    containers.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.restart_count.cmp(&a.restart_count)));
    Ok(RuntimePod { sandboxes, containers })
}

/// The termination message of an exited container: the file mounted at its
/// `terminationMessagePath`, else (policy `FallbackToLogsOnError`, non-zero exit) the
/// tail of its log.
fn termination_message(status: &cri::api::ContainerStatus) -> String {
    let path = status.annotations.get(keys::TERMINATION_MESSAGE_PATH).cloned().unwrap_or_default();
    let fallback = status.annotations.get(keys::TERMINATION_MESSAGE_POLICY).map(String::as_str)
        == Some("FallbackToLogsOnError")
        && status.exit_code != 0
        && status.reason != "ContainerCannotRun";
    let mut from_file = String::new();
    if !path.is_empty()
        && let Some(mount) = status.mounts.iter().find(|m| m.container_path == path)
    {
        match read_at_most(Path::new(&mount.host_path), MAX_TERMINATION_MESSAGE) {
            Ok(text) => from_file = text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return format!("Error on reading termination log {}: {e}", mount.host_path),
        }
    }
    if from_file.is_empty() && fallback && !status.log_path.is_empty() {
        return log_tail(Path::new(&status.log_path));
    }
    from_file
}

/// The last `max` bytes of a file, as text.
fn read_at_most(path: &Path, max: usize) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    let start = bytes.len().saturating_sub(max);
    Ok(String::from_utf8_lossy(&bytes[start..]).into_owned())
}

/// The messages of the last lines of a CRI log file (`<time> <stream> <tag> <message>`).
pub fn log_tail(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else { return String::new() };
    let mut out = String::new();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(FALLBACK_LOG_LINES);
    for line in &lines[from..] {
        let mut parts = line.splitn(4, ' ');
        let (_, _, tag, msg) = (parts.next(), parts.next(), parts.next(), parts.next().unwrap_or(""));
        out.push_str(msg);
        if tag != Some("P") {
            out.push('\n');
        }
    }
    let start = out.len().saturating_sub(FALLBACK_LOG_BYTES);
    let start = (start..=out.len()).find(|i| out.is_char_boundary(*i)).unwrap_or(out.len());
    out[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_tail_strips_cri_prefixes_and_joins_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(
            &path,
            "2024-01-01T00:00:00.000000000Z stdout F hello\n2024-01-01T00:00:00.1Z stderr P par\n2024-01-01T00:00:00.2Z stderr F tial\n",
        )
        .unwrap();
        assert_eq!(log_tail(&path), "hello\npartial\n");
    }
}
