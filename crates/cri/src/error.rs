//! The one error type of this crate: every variant names the operation or the file it
//! was about, and keeps the gRPC status or the I/O error as its source.

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong talking to a CRI runtime, supervising containerd or building images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime endpoint is not a `unix://` address or an absolute socket path.
    #[error("invalid CRI endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: &'static str },

    /// The socket could not be reached (missing, refused, not a gRPC server).
    #[error("cannot connect to CRI endpoint {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },

    /// Connecting took longer than the caller allowed.
    #[error("connecting to CRI endpoint {endpoint} timed out after {timeout:?}")]
    ConnectTimeout { endpoint: String, timeout: Duration },

    /// The runtime answered a call with a non-OK gRPC status.
    #[error("CRI {op} failed: {code:?}: {message}", code = status.code(), message = status.message())]
    Rpc {
        /// The CRI method, e.g. `RunPodSandbox`.
        op: &'static str,
        #[source]
        status: Box<tonic::Status>,
    },

    /// The runtime did not answer a call in time.
    #[error("CRI {op} timed out after {timeout:?}")]
    Timeout { op: &'static str, timeout: Duration },

    /// The runtime answered OK but left out a field the protocol requires.
    #[error("CRI {op} returned no {field}")]
    MissingField { op: &'static str, field: &'static str },

    /// A program this crate runs is not installed; the message says what to install.
    #[error("{message}")]
    NotInstalled { program: &'static str, message: String },

    /// A file or directory operation failed.
    #[error("{what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A helper program (ctr, umoci, skopeo, ...) ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    Command { command: String, status: String, stderr: String },

    /// A program could not be started at all.
    #[error("cannot run {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// containerd exited before it became ready.
    #[error("containerd exited during startup ({status}); last lines of {}:\n{log}", log_path.display())]
    ContainerdExited { status: String, log_path: PathBuf, log: String },

    /// containerd kept running but its CRI service did not become ready in time.
    #[error("containerd did not become ready within {timeout:?} ({last_error}); last lines of {}:\n{log}", log_path.display())]
    ContainerdNotReady { timeout: Duration, last_error: String, log_path: PathBuf, log: String },

    /// A helper service (a test registry) did not come up.
    #[error("{service} did not start: {reason}")]
    ServiceFailed { service: &'static str, reason: String },

    /// Something already serves the socket a new containerd was to use.
    #[error("a containerd is already serving {}; stop it or use another data directory", socket.display())]
    SocketInUse { socket: PathBuf },

    /// An option given to the supervisor or an image builder is not usable.
    #[error("invalid {option}: {reason}")]
    InvalidOption { option: &'static str, reason: String },

    /// An image was imported but the CRI image service does not list it.
    #[error("image {image} was imported from {} but the CRI image service does not see it", archive.display())]
    ImportInvisible { image: String, archive: PathBuf },
}

impl Error {
    /// The gRPC status code of a failed call; `None` for errors that are not a runtime's
    /// answer (connection, timeout, local files).
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// Whether the runtime said the object does not exist, which callers removing or
    /// stopping things treat as already done (as the kubelet does).
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(tonic::Code::NotFound)
    }

    pub(crate) fn rpc(op: &'static str, status: tonic::Status) -> Self {
        Error::Rpc { op, status: Box::new(status) }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { what, path: path.into(), source }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
