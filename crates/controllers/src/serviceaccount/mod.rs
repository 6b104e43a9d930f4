//! The ServiceAccount controller: a `default` ServiceAccount in every namespace.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;

use crate::{Context, ERROR_REQUEUE, Error, Result};

/// Ensures the namespace has its `default` ServiceAccount.
pub async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let accounts = ctx.informers.get::<ServiceAccount>();
    if accounts.store.get(&ObjectRef::new("default").within(&name)).is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".into()),
            namespace: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(Action::await_change()),
        // Already there (the cache lagged), or the namespace is going away.
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 || e.code == 404 => {
            Ok(Action::await_change())
        }
        Err(e) => Err(Error::Kube(e)),
    }
}

fn error_policy(_: Arc<Namespace>, err: &Error, _: Arc<Context>) -> Action {
    tracing::debug!(error = %err, "serviceaccount controller: will retry");
    Action::requeue(ERROR_REQUEUE)
}

pub async fn run(ctx: Arc<Context>) {
    let namespaces = ctx.informers.get::<Namespace>();
    let accounts = ctx.informers.get::<ServiceAccount>();
    Controller::for_shared_stream(namespaces.changes(), namespaces.store.clone())
        .watches_shared_stream(accounts.changes(), |sa: Arc<ServiceAccount>| {
            sa.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns))
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}
