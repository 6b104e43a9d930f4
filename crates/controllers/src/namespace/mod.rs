//! The namespace controller (upstream `pkg/controller/namespace`): a namespace with a
//! deletionTimestamp is marked Terminating, emptied of every namespaced object of every
//! resource (discovered, so custom resources too), its deletion conditions are kept up to
//! date, and once it is empty the `kubernetes` finalizer is removed from `spec.finalizers`
//! through the `finalize` subresource, after which the API server deletes it. Pods going
//! away in a terminating namespace trigger another look, so it finishes as soon as the
//! last pod is gone rather than when the grace-period estimate runs out.

pub mod conditions;
pub mod deleter;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;

use crate::Context;

/// The finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";
const CONFLICT_RETRIES: usize = 5;
/// Backoff bounds for namespaces whose deletion fails (upstream: 5ms doubling up to 60s).
const BACKOFF_BASE: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Why a namespace could not be finished this time.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", "))]
    Content(Vec<deleter::Error>),
    #[error("namespace uid has changed across retries")]
    UidChanged,
}

/// The controller's state: the shared context and per-namespace failure counts.
pub struct State {
    pub ctx: Arc<Context>,
    failures: Mutex<HashMap<String, u32>>,
}

impl State {
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(Self { ctx, failures: Mutex::new(HashMap::new()) })
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Runs `update` on the latest namespace, fetching it again after a conflict.
async fn retry_on_conflict<F, Fut>(
    api: &Api<Namespace>,
    mut ns: Namespace,
    update: F,
) -> Result<Namespace, Error>
where
    F: Fn(Namespace) -> Fut,
    Fut: std::future::Future<Output = Result<Namespace, kube::Error>>,
{
    let mut attempt = 1;
    loop {
        match update(ns.clone()).await {
            Ok(n) => return Ok(n),
            Err(e) if is_status(&e, 409) && attempt < CONFLICT_RETRIES => {
                attempt += 1;
                let latest = api.get(&ns.name_any()).await?;
                if latest.metadata.uid != ns.metadata.uid {
                    return Err(Error::UidChanged);
                }
                ns = latest;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn not_found(e: &Error) -> bool {
    matches!(e, Error::Kube(k) if is_status(k, 404))
}

/// Carries a terminating namespace one step further; a namespace not being deleted is left alone.
pub async fn reconcile(ns: Arc<Namespace>, state: Arc<State>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let ctx = &state.ctx;
    let name = ns.name_any();
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    // Several controllers edit a terminating namespace: start from its latest state.
    let Some(live) = api.get_opt(&name).await? else { return Ok(Action::await_change()) };
    if live.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let live = match retry_on_conflict(&api, live, |n| {
        let api = api.clone();
        async move {
            if n.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating") {
                return Ok(n);
            }
            let mut n = n;
            n.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
            api.replace_status(&n.name_any(), &PostParams::default(), &n).await
        }
    })
    .await
    {
        Ok(n) => n,
        Err(e) if not_found(&e) => return Ok(Action::await_change()),
        Err(e) => return Err(e),
    };
    let finalizers = live.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
    if finalizers.is_empty() {
        return Ok(Action::await_change());
    }
    let (estimate, errors) = deleter::delete_all_content(&ctx.client, &live, ctx.clock.now()).await;
    if !errors.is_empty() {
        return Err(Error::Content(errors));
    }
    if estimate > 0 {
        tracing::debug!(namespace = %name, estimate, "namespace controller: content remains, waiting");
        return Ok(Action::requeue(Duration::from_secs(estimate as u64)));
    }
    match retry_on_conflict(&api, live, |n| {
        let api = api.clone();
        async move {
            let mut n = n;
            let kept: BTreeSet<String> = n
                .spec
                .as_ref()
                .and_then(|s| s.finalizers.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != FINALIZER)
                .collect();
            n.spec.get_or_insert_with(Default::default).finalizers = Some(kept.into_iter().collect());
            api.replace_subresource("finalize", &n.name_any(), &PostParams::default(), &n).await
        }
    })
    .await
    {
        Ok(_) => {}
        // Finished by someone else sharing the finalizer.
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(e),
    }
    state.failures().remove(&name);
    Ok(Action::await_change())
}

fn error_policy(ns: Arc<Namespace>, err: &Error, state: Arc<State>) -> Action {
    let name = ns.name_any();
    let n = {
        let mut f = state.failures();
        let n = f.entry(name.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let delay = BACKOFF_BASE.checked_mul(1u32 << (n - 1).min(20)).unwrap_or(BACKOFF_MAX).min(BACKOFF_MAX);
    tracing::debug!(namespace = %name, error = %err, ?delay, "namespace controller: deletion incomplete, will retry");
    Action::requeue(delay)
}

/// Runs the namespace controller.
pub async fn run(ctx: Arc<Context>) {
    let namespaces = ctx.informers.get::<Namespace>();
    let pods = ctx.informers.get::<Pod>();
    let terminating = namespaces.store.clone();
    Controller::for_shared_stream(namespaces.changes(), namespaces.store.clone())
        // A pod finishing in a terminating namespace may be the last content: look again
        // then rather than only when the grace-period estimate runs out.
        .watches_shared_stream(pods.changes(), move |p: Arc<Pod>| {
            let ns = ObjectRef::<Namespace>::new(&p.namespace()?);
            terminating.get(&ns)?.metadata.deletion_timestamp.as_ref()?;
            Some(ns)
        })
        .run(reconcile, error_policy, State::new(ctx))
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests;
