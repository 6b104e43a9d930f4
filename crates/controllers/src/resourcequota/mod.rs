//! The ResourceQuota controller: keeps every quota's `status.hard` equal to `spec.hard`
//! and `status.used` equal to what the namespace's objects charge (upstream
//! `pkg/controller/resourcequota`). The charging rules live in [`usage`] as pure functions
//! so quota admission can share them.
//!
//! Quotas are recomputed whenever an object of a kind they can charge changes in their
//! namespace (pods, services, claims, config maps, secrets, replication controllers,
//! quotas), and fully every five minutes like upstream's resync. `count/<resource>.<group>`
//! names for other kinds are counted by listing through the API (discovery finds the
//! resource) and refreshed every 30 seconds.

pub mod quantity;
pub mod usage;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota, ResourceQuotaStatus, Secret,
    Service,
};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::disruption::cache_synced as synced;
use crate::{Context, ERROR_REQUEUE, Error, Result};
use quantity::{ResourceList, parse_list, to_wire_list};
use usage::Object;

/// Full recomputation period (`--resource-quota-sync-period`).
const RESYNC: Duration = Duration::from_secs(300);
/// Refresh period of quotas that count kinds this controller does not watch.
const LISTED_RESYNC: Duration = Duration::from_secs(30);

/// Kinds whose objects the controller watches, by their `count/` name.
const WATCHED_COUNTS: &[&str] = &[
    "count/pods",
    "count/services",
    "count/persistentvolumeclaims",
    "count/configmaps",
    "count/secrets",
    "count/replicationcontrollers",
    "count/resourcequotas",
];

fn in_namespace<K: Resource<DynamicType = ()> + Clone>(store: &Store<K>, ns: &str) -> Vec<Arc<K>> {
    store.state().into_iter().filter(|o| o.meta().namespace.as_deref() == Some(ns)).collect()
}

/// Counts the objects of `count/<resource>.<group>` in a namespace by listing them; `None`
/// when no such resource is served (the name is then not tracked).
async fn count_listed(client: &kube::Client, name: &str, ns: &str) -> Result<Option<usize>> {
    let Some((resource, group)) = usage::parse_count_name(name) else { return Ok(None) };
    let apigroup = match kube::discovery::oneshot::group(client, &group).await {
        Ok(g) => g,
        Err(kube::Error::Discovery(_)) => return Ok(None),
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some((ar, caps)) = apigroup.recommended_resources().into_iter().find(|(ar, _)| ar.plural == resource)
    else {
        return Ok(None);
    };
    if caps.scope != kube::discovery::Scope::Namespaced {
        return Ok(None);
    }
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    Ok(Some(api.list(&ListParams::default()).await?.items.len()))
}

/// Recomputes one quota's status and writes it when it changed.
pub async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Context>) -> Result<Action> {
    if quota.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = quota.namespace().unwrap_or_default();
    let spec = quota.spec.clone().unwrap_or_default();
    let hard = parse_list(spec.hard.as_ref());

    // Kinds outside the watched set are counted by listing them.
    let mut listed: BTreeMap<String, usize> = BTreeMap::new();
    for name in hard.keys().filter(|n| n.starts_with("count/") && !WATCHED_COUNTS.contains(&n.as_str())) {
        if let Some(n) = count_listed(&ctx.client, name, &ns).await? {
            listed.insert(name.clone(), n);
        }
    }
    let countable = |n: &str| WATCHED_COUNTS.contains(&n) || listed.contains_key(n);

    let pods = in_namespace(&ctx.informers.get::<Pod>().store, &ns);
    let services = in_namespace(&ctx.informers.get::<Service>().store, &ns);
    let claims = in_namespace(&ctx.informers.get::<PersistentVolumeClaim>().store, &ns);
    let mut counted: Vec<(&str, usize)> = vec![
        ("configmaps", in_namespace(&ctx.informers.get::<ConfigMap>().store, &ns).len()),
        ("secrets", in_namespace(&ctx.informers.get::<Secret>().store, &ns).len()),
        (
            "replicationcontrollers",
            in_namespace(&ctx.informers.get::<ReplicationController>().store, &ns).len(),
        ),
        ("resourcequotas", in_namespace(&ctx.informers.get::<ResourceQuota>().store, &ns).len()),
    ];
    let listed_names: Vec<(String, String, usize)> = listed
        .iter()
        .filter_map(|(name, n)| usage::parse_count_name(name).map(|(r, g)| (r, g, *n)))
        .collect();
    let mut objects: Vec<Object<'_>> = Vec::new();
    objects.extend(pods.iter().map(|p| Object::Pod(p)));
    objects.extend(services.iter().map(|s| Object::Service(s)));
    objects.extend(claims.iter().map(|c| Object::Claim(c)));
    for (resource, n) in counted.drain(..) {
        objects.extend(std::iter::repeat_n(Object::Other { resource, group: "" }, n));
    }
    for (resource, group, n) in &listed_names {
        objects.extend(std::iter::repeat_n(Object::Other { resource, group }, *n));
    }
    let fresh = usage::usage(&spec, objects, &countable, ctx.clock.now());

    // Earlier observations survive for names that could not be measured now, as upstream.
    let status = quota.status.clone().unwrap_or_default();
    let old_used = parse_list(status.used.as_ref());
    let mut used: ResourceList = old_used.clone();
    used.extend(fresh);
    used.retain(|k, _| hard.contains_key(k));

    let old_hard = parse_list(status.hard.as_ref());
    let dirty = status.hard.is_none() || status.used.is_none() || old_hard != hard || old_used != used;
    let requeue = if listed.is_empty() { RESYNC } else { LISTED_RESYNC };
    if !dirty {
        return Ok(Action::requeue(requeue));
    }
    let mut updated = (*quota).clone();
    updated.status =
        Some(ResourceQuotaStatus { hard: Some(to_wire_list(&hard)), used: Some(to_wire_list(&used)) });
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    match api.replace_status(&quota.name_any(), &PostParams::default(), &updated).await {
        Ok(_) => Ok(Action::requeue(requeue)),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
        Err(e) => Err(Error::Kube(e)),
    }
}

fn error_policy(_: Arc<ResourceQuota>, err: &Error, _: Arc<Context>) -> Action {
    tracing::debug!(error = %err, "resourcequota controller: will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// Maps a change of any object to the quotas of its namespace.
fn quotas_of_namespace<K: Resource + 'static>(
    quotas: Store<ResourceQuota>,
) -> impl Fn(Arc<K>) -> Vec<ObjectRef<ResourceQuota>> + Send + Sync + 'static {
    move |obj: Arc<K>| {
        let Some(ns) = obj.meta().namespace.clone() else { return Vec::new() };
        in_namespace(&quotas, &ns).iter().map(|q| ObjectRef::from_obj(q.as_ref())).collect()
    }
}

fn watch<K>(
    c: Controller<ResourceQuota>,
    ctx: &Context,
    quotas: &Store<ResourceQuota>,
) -> Controller<ResourceQuota>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    c.watches_shared_stream(ctx.informers.get::<K>().changes(), quotas_of_namespace::<K>(quotas.clone()))
}

/// Runs the quota controller until the process stops leading.
pub async fn run(ctx: Arc<Context>) {
    let quotas = ctx.informers.get::<ResourceQuota>();
    let store = quotas.store.clone();
    let mut c = Controller::for_shared_stream(quotas.changes(), quotas.store.clone());
    c = watch::<Pod>(c, &ctx, &store);
    c = watch::<Service>(c, &ctx, &store);
    c = watch::<PersistentVolumeClaim>(c, &ctx, &store);
    c = watch::<ConfigMap>(c, &ctx, &store);
    c = watch::<Secret>(c, &ctx, &store);
    c = watch::<ReplicationController>(c, &ctx, &store);
    // Another quota of the namespace changing changes `count/resourcequotas`.
    c = c.watches_shared_stream(quotas.changes(), quotas_of_namespace::<ResourceQuota>(store.clone()));
    let synced = [
        synced(&ctx.informers.get::<ResourceQuota>().store).await,
        synced(&ctx.informers.get::<Pod>().store).await,
        synced(&ctx.informers.get::<Service>().store).await,
        synced(&ctx.informers.get::<PersistentVolumeClaim>().store).await,
        synced(&ctx.informers.get::<ConfigMap>().store).await,
        synced(&ctx.informers.get::<Secret>().store).await,
        synced(&ctx.informers.get::<ReplicationController>().store).await,
    ];
    if synced.contains(&false) {
        return;
    }
    tracing::info!("resourcequota controller started");
    c.run(reconcile, error_policy, ctx).for_each(|_| async {}).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Informers, Options, SystemClock};
    use fakeapi::fake_client;
    use k8s_openapi::api::core::v1::ResourceQuotaSpec;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Wire;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ctx(client: kube::Client) -> Arc<Context> {
        Arc::new(Context {
            informers: Informers::offline(client.clone()),
            client,
            clock: Arc::new(SystemClock),
            options: Options::default(),
        })
    }

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() }
    }

    fn quota(hard: &[(&str, &str)], status: Option<ResourceQuotaStatus>) -> ResourceQuota {
        ResourceQuota {
            metadata: ObjectMeta { resource_version: Some("7".into()), ..meta("team", "q") },
            spec: Some(ResourceQuotaSpec {
                hard: Some(hard.iter().map(|(k, v)| (k.to_string(), Wire(v.to_string()))).collect()),
                ..Default::default()
            }),
            status,
        }
    }

    #[tokio::test]
    async fn a_new_quota_gets_hard_and_used_from_the_namespace_objects() {
        let (client, calls) = fake_client();
        let ctx = ctx(client);
        ctx.informers.seed(vec![
            ConfigMap { metadata: meta("team", "a"), ..Default::default() },
            ConfigMap { metadata: meta("team", "b"), ..Default::default() },
            ConfigMap { metadata: meta("other", "c"), ..Default::default() },
        ]);
        ctx.informers.seed(vec![Secret { metadata: meta("team", "s"), ..Default::default() }]);
        let q = quota(&[("configmaps", "5"), ("count/secrets", "2"), ("pods", "1000m")], None);
        ctx.informers.seed(vec![q.clone()]);
        reconcile(Arc::new(q), ctx).await.unwrap();
        let writes = calls.writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].method, "PUT");
        assert!(
            writes[0].path.starts_with("/api/v1/namespaces/team/resourcequotas/q/status"),
            "{}",
            writes[0].path
        );
        let status = &writes[0].body["status"];
        assert_eq!(status["hard"], serde_json::json!({"configmaps": "5", "count/secrets": "2", "pods": "1"}));
        assert_eq!(status["used"], serde_json::json!({"configmaps": "2", "count/secrets": "1", "pods": "0"}));
        assert_eq!(writes[0].body["metadata"]["resourceVersion"], "7");
    }

    #[tokio::test]
    async fn an_up_to_date_quota_is_not_written() {
        let (client, calls) = fake_client();
        let ctx = ctx(client);
        let status = ResourceQuotaStatus {
            hard: Some([("configmaps".to_string(), Wire("5".into()))].into()),
            used: Some([("configmaps".to_string(), Wire("0".into()))].into()),
        };
        reconcile(Arc::new(quota(&[("configmaps", "5")], Some(status))), ctx).await.unwrap();
        assert!(calls.writes().is_empty());
    }

    #[tokio::test]
    async fn a_changed_hard_limit_is_copied_to_the_status() {
        let (client, calls) = fake_client();
        let ctx = ctx(client);
        let status = ResourceQuotaStatus {
            hard: Some([("configmaps".to_string(), Wire("5".into()))].into()),
            used: Some([("configmaps".to_string(), Wire("0".into()))].into()),
        };
        reconcile(Arc::new(quota(&[("configmaps", "6")], Some(status))), ctx).await.unwrap();
        let writes = calls.writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].body["status"]["hard"]["configmaps"], "6");
    }

    #[tokio::test]
    async fn a_count_of_an_unserved_resource_is_left_out_of_used() {
        let (client, calls) = fake_client();
        let ctx = ctx(client);
        // The fake API answers every discovery GET with 404: the resource does not exist.
        reconcile(Arc::new(quota(&[("count/widgets.example.com", "3"), ("secrets", "4")], None)), ctx)
            .await
            .unwrap();
        let writes = calls.writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].body["status"]["used"], serde_json::json!({"secrets": "0"}));
        assert_eq!(writes[0].body["status"]["hard"]["count/widgets.example.com"], "3");
    }
}
