//! The seed talk's demo as a library: an `AstaXie` custom resource (`spec.language`,
//! `spec.handsome`, a status that moves from `Invited` to `Accepted`) and a controller for
//! it built from a shared informer with on-add / on-update / on-delete handlers. It runs
//! against krust or any Kubernetes cluster; the `astaxie` binary wraps it.

pub mod controller;
pub mod informer;
pub mod resource;
pub mod state;

pub use controller::Settings;
pub use resource::{AstaXie, AstaXieSpec, AstaXieStatus, State, crd, crd_yaml};

/// Runs the AstaXie controller with the default [`Settings`] until its watch ends (in
/// practice: forever). The client needs to list, watch and patch `astaxies` (and their
/// status) and to create `events.k8s.io` events.
pub async fn run(client: kube::Client) -> anyhow::Result<()> {
    controller::run(client, Settings::default()).await
}
