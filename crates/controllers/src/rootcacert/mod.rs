//! The root CA publisher: the `kube-root-ca.crt` ConfigMap (the cluster CA, which pods'
//! projected service-account volumes mount) in every namespace.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;

use crate::{Context, ERROR_REQUEUE, Error, Result};

const NAME: &str = "kube-root-ca.crt";

pub async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action> {
    let Some(ca) = ctx.options.root_ca_pem.clone() else { return Ok(Action::await_change()) };
    if ns.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let maps = ctx.informers.get::<ConfigMap>();
    let data = BTreeMap::from([("ca.crt".to_string(), ca)]);
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let result = match maps.store.get(&ObjectRef::new(NAME).within(&name)) {
        Some(cm) if cm.data.as_ref() == Some(&data) => return Ok(Action::await_change()),
        Some(cm) => {
            let mut cm = (*cm).clone();
            cm.data = Some(data);
            api.replace(NAME, &PostParams::default(), &cm).await.map(|_| ())
        }
        None => {
            let mut annotations = BTreeMap::new();
            annotations.insert(
                "kubernetes.io/description".to_string(),
                "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.".to_string(),
            );
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    namespace: Some(name.clone()),
                    annotations: Some(annotations),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(Action::await_change()),
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 || e.code == 404 => {
            Ok(Action::await_change())
        }
        Err(e) => Err(Error::Kube(e)),
    }
}

fn error_policy(_: Arc<Namespace>, err: &Error, _: Arc<Context>) -> Action {
    tracing::debug!(error = %err, "root CA publisher: will retry");
    Action::requeue(ERROR_REQUEUE)
}

pub async fn run(ctx: Arc<Context>) {
    let namespaces = ctx.informers.get::<Namespace>();
    let maps = ctx.informers.get::<ConfigMap>();
    Controller::for_shared_stream(namespaces.changes(), namespaces.store.clone())
        .watches_shared_stream(maps.changes(), |cm: Arc<ConfigMap>| {
            (cm.name_any() == NAME)
                .then(|| cm.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)))
                .flatten()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}
