//! The node agent's side of the Container Runtime Interface (CRI v1): the [`Runtime`] and
//! [`Images`] traits the agent programs against, a gRPC [`Client`] that implements them
//! for any runtime endpoint, a [`Containerd`] supervisor that runs containerd as a child
//! (k3s-style) with its own config, CNI bridge network and a pause image built here
//! without a registry ([`image`]), and, behind the `testing` feature, helpers that build
//! test images and run a local registry.

pub mod client;
pub mod containerd;
mod error;
pub mod image;
pub(crate) mod process;
pub mod runtime;
#[cfg(feature = "testing")]
pub mod testing;

/// The CRI v1 protocol types (requests, responses, configs) and the generated tonic
/// clients and servers, re-exported so callers need no dependency of their own.
pub use k8s_cri::v1 as api;

pub use client::Client;
pub use containerd::{Containerd, find_containerd};
pub use error::{Error, Result};
pub use runtime::{Images, Runtime};
