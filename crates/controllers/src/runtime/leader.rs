//! Leader election over a `coordination.k8s.io` Lease, so that of several servers only one
//! runs the controllers at a time.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

/// How long a lease holds without renewal.
pub const LEASE_SECONDS: i32 = 15;
/// How often the holder renews and others retry.
pub const RETRY: Duration = Duration::from_secs(2);

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// One attempt to take or keep the lease. Returns whether `identity` holds it.
pub async fn try_acquire(api: &Api<Lease>, name: &str, identity: &str) -> kube::Result<bool> {
    let current = api.get_opt(name).await?;
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(identity.into()),
                lease_duration_seconds: Some(LEASE_SECONDS),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let duration = spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS) as i64;
    let expired = spec
        .renew_time
        .as_ref()
        .map(|t| jiff::Timestamp::now().duration_since(t.0).as_secs() > duration)
        .unwrap_or(true);
    if holder != identity && !expired && !holder.is_empty() {
        return Ok(false);
    }
    if holder != identity {
        spec.holder_identity = Some(identity.into());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(LEASE_SECONDS);
    spec.renew_time = Some(now());
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Keeps trying to hold the lease `kube-system/<name>` and reports leadership changes.
pub fn elect(client: Client, name: &str, identity: &str) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, "kube-system");
    let name = name.to_string();
    let identity = identity.to_string();
    tokio::spawn(async move {
        loop {
            let held = match try_acquire(&api, &name, &identity).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(lease = %name, error = %e, "leader election attempt failed");
                    false
                }
            };
            if *tx.borrow() != held {
                tracing::info!(lease = %name, %identity, leader = held, "leadership changed");
            }
            if tx.send(held).is_err() {
                return;
            }
            tokio::time::sleep(RETRY).await;
        }
    });
    rx
}

/// Runs `work` while this process leads; stops it when leadership is lost and starts it
/// again when regained.
pub async fn run_while_leader<F, Fut>(mut leader: watch::Receiver<bool>, work: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        if leader.wait_for(|l| *l).await.is_err() {
            return;
        }
        let task = tokio::spawn(work());
        let lost = leader.wait_for(|l| !*l).await;
        task.abort();
        if lost.is_err() {
            return;
        }
    }
}
