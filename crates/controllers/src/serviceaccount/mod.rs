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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Informers, Options, SystemClock};
    use fakeapi::fake_client;

    fn ns(name: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        }
    }

    fn ctx(client: kube::Client) -> Arc<Context> {
        Arc::new(Context {
            informers: Informers::offline(client.clone()),
            client,
            clock: Arc::new(SystemClock),
            options: Options::default(),
        })
    }

    #[tokio::test]
    async fn a_namespace_without_a_default_account_gets_one() {
        let (client, calls) = fake_client();
        let ctx = ctx(client);
        reconcile(Arc::new(ns("team")), ctx).await.unwrap();
        let writes = calls.writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].method, "POST");
        assert!(writes[0].path.starts_with("/api/v1/namespaces/team/serviceaccounts"));
        assert_eq!(writes[0].body["metadata"]["name"], "default");
    }

    #[tokio::test]
    async fn a_namespace_with_its_default_account_is_left_alone() {
        let (client, calls) = fake_client();
        let ctx = ctx(client);
        ctx.informers.seed(vec![ServiceAccount {
            metadata: ObjectMeta {
                name: Some("default".into()),
                namespace: Some("team".into()),
                ..Default::default()
            },
            ..Default::default()
        }]);
        reconcile(Arc::new(ns("team")), ctx).await.unwrap();
        assert!(calls.writes().is_empty());
    }
}
