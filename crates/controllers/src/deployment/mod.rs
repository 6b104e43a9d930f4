//! The Deployment controller: owns ReplicaSets (adopting and releasing them by
//! selector), creates the ReplicaSet of the current template (`<name>-<pod-template-hash>`),
//! rolls from old to new ReplicaSets by the RollingUpdate or Recreate strategy, scales
//! proportionally, keeps revisions for `kubectl rollout history/undo`, honours pause,
//! cleans up history, and reports status and the Available/Progressing conditions that
//! `kubectl rollout status` reads.

pub mod progress;
pub mod recreate;
pub mod rollback;
pub mod rolling;
pub mod sync;
pub mod util;

use std::collections::HashMap;
use std::sync::Arc;

use apimachinery::labels::Selector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::replicaset::reconcile::error_message;
use crate::runtime::{EventType, Recorder, controller_of, controller_ref};
use crate::{Context, ERROR_REQUEUE, Error, Result};
use sync::Rollout;

/// The component that signs the Deployment controller's events.
pub const COMPONENT: &str = "deployment-controller";

/// State of the running controller.
pub struct Shared {
    pub ctx: Arc<Context>,
    pub recorder: Recorder,
}

impl Shared {
    pub fn new(ctx: Arc<Context>) -> Self {
        let recorder = Recorder::new(ctx.client.clone(), COMPONENT);
        Shared { ctx, recorder }
    }
}

fn selector_of(d: &Deployment) -> Result<Selector> {
    let sel = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    let value = serde_json::to_value(&sel).map_err(|e| Error::Invalid(e.to_string()))?;
    Selector::from_label_selector(&value).map_err(|e| {
        Error::Invalid(format!(
            "deployment {}/{} has invalid label selector: {e}",
            d.namespace().unwrap_or_default(),
            d.name_any()
        ))
    })
}

fn is_api(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}

/// Syncs one Deployment (upstream's `syncDeployment`).
pub async fn reconcile(d: Arc<Deployment>, shared: Arc<Shared>) -> Result<Action> {
    let mut d = (*d).clone();
    let Some(spec) = d.spec.as_ref() else { return Ok(Action::await_change()) };
    if util::selects_everything(&spec.selector) {
        shared
            .recorder
            .publish(
                &d,
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            .await;
        let generation = d.metadata.generation.unwrap_or(0);
        let status = d.status.get_or_insert_with(Default::default);
        if status.observed_generation.unwrap_or(0) < generation {
            status.observed_generation = Some(generation);
            let api: Api<Deployment> =
                Api::namespaced(shared.ctx.client.clone(), &d.namespace().unwrap_or_default());
            if let Err(e) = api.replace_status(&d.name_any(), &PostParams::default(), &d).await {
                tracing::debug!(deployment = %d.name_any(), error = %e, "status update failed");
            }
        }
        return Ok(Action::await_change());
    }
    let rs_list = claim_replica_sets(&d, &shared).await?;
    let pod_map = pod_map(&d, &rs_list, &shared.ctx)?;
    let mut r = Rollout::new(&shared, d, rs_list);
    if r.d.metadata.deletion_timestamp.is_some() {
        r.sync_status_only().await?;
        return Ok(Action::await_change());
    }
    r.check_paused_conditions().await?;
    if util::paused(&r.d) {
        r.sync().await?;
    } else if let Some(revision) = rollback::rollback_to(&r.d) {
        r.rollback(revision).await?;
    } else if r.is_scaling_event().await? {
        r.sync().await?;
    } else {
        match util::strategy_type(&r.d).to_string().as_str() {
            "Recreate" => r.rollout_recreate(&pod_map).await?,
            "RollingUpdate" => r.rollout_rolling().await?,
            other => return Err(Error::Invalid(format!("unexpected deployment strategy type: {other}"))),
        }
    }
    Ok(r.requeue.map(Action::requeue).unwrap_or_else(Action::await_change))
}

/// The ReplicaSets this Deployment controls after reconciling controller references:
/// owned ones that still match are kept, owned ones that no longer match are released
/// (unless the Deployment is being deleted), matching orphans are adopted once a fresh
/// read shows the Deployment is not being deleted.
pub async fn claim_replica_sets(d: &Deployment, shared: &Shared) -> Result<Vec<ReplicaSet>> {
    let ns = d.namespace().unwrap_or_default();
    let selector = selector_of(d)?;
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let deleting = d.metadata.deletion_timestamp.is_some();
    let api: Api<ReplicaSet> = Api::namespaced(shared.ctx.client.clone(), &ns);
    let candidates: Vec<Arc<ReplicaSet>> = shared
        .ctx
        .informers
        .get::<ReplicaSet>()
        .store
        .state()
        .into_iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let matches = |rs: &ReplicaSet| crate::runtime::labels_match(&selector, &rs.metadata.labels);
    let mut claimed = Vec::new();
    let mut errors = Vec::new();
    let mut can_adopt: Option<std::result::Result<(), String>> = None;
    for rs in candidates {
        match controller_of(&*rs) {
            Some(r) if r.uid != uid => {}
            Some(_) => {
                if matches(&rs) {
                    claimed.push((*rs).clone());
                } else if !deleting {
                    let patch = json!({"metadata": {
                        "ownerReferences": [{"$patch": "delete", "uid": uid}],
                        "uid": rs.metadata.uid,
                    }});
                    match api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await {
                        Ok(_) => {}
                        Err(e) if is_api(&e, 404) || is_api(&e, 422) => {}
                        Err(e) => errors.push(Error::Kube(e)),
                    }
                }
            }
            None => {
                if deleting || !matches(&rs) || rs.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if can_adopt.is_none() {
                    can_adopt = Some(recheck(d, shared).await);
                }
                if let Some(Err(why)) = &can_adopt {
                    errors.push(Error::Invalid(format!(
                        "can't adopt ReplicaSet {ns}/{} ({}): {why}",
                        rs.name_any(),
                        rs.metadata.uid.as_deref().unwrap_or("")
                    )));
                    continue;
                }
                let patch = json!({"metadata": {
                    "ownerReferences": [controller_ref(d)],
                    "uid": rs.metadata.uid,
                }});
                match api.patch(&rs.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await {
                    Ok(_) => claimed.push((*rs).clone()),
                    Err(e) if is_api(&e, 404) => {}
                    Err(e) => errors.push(Error::Kube(e)),
                }
            }
        }
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(claimed),
    }
}

async fn recheck(d: &Deployment, shared: &Shared) -> std::result::Result<(), String> {
    let ns = d.namespace().unwrap_or_default();
    let api: Api<Deployment> = Api::namespaced(shared.ctx.client.clone(), &ns);
    let fresh = api.get(&d.name_any()).await.map_err(|e| error_message(&Error::Kube(e)))?;
    let want = d.metadata.uid.clone().unwrap_or_default();
    let got = fresh.metadata.uid.clone().unwrap_or_default();
    if got != want {
        return Err(format!(
            "original Deployment {ns}/{} is gone: got uid {got}, wanted {want}",
            d.name_any()
        ));
    }
    if let Some(t) = &fresh.metadata.deletion_timestamp {
        return Err(format!("{ns}/{} has just been deleted at {}", d.name_any(), t.0));
    }
    Ok(())
}

/// The Deployment's pods by the UID of their controlling ReplicaSet (every ReplicaSet
/// present, possibly with no pods; finished pods included).
pub fn pod_map(
    d: &Deployment,
    rs_list: &[ReplicaSet],
    ctx: &Context,
) -> Result<HashMap<String, Vec<Arc<Pod>>>> {
    let selector = selector_of(d)?;
    let ns = d.namespace().unwrap_or_default();
    let mut map: HashMap<String, Vec<Arc<Pod>>> =
        rs_list.iter().filter_map(|rs| rs.metadata.uid.clone()).map(|u| (u, Vec::new())).collect();
    for pod in ctx.informers.get::<Pod>().store.state() {
        if pod.namespace().as_deref() != Some(ns.as_str())
            || !crate::runtime::labels_match(&selector, &pod.metadata.labels)
        {
            continue;
        }
        if let Some(list) = controller_of(&*pod).and_then(|r| map.get_mut(&r.uid)) {
            list.push(pod.clone());
        }
    }
    Ok(map)
}

/// The Deployment controlling `rs`, or for an orphan every Deployment in its namespace
/// whose selector matches its labels.
fn deployments_for_rs(rs: &ReplicaSet, deployments: &Store<Deployment>) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(r) = controller_of(rs) {
        if r.kind != Deployment::kind(&()) {
            return Vec::new();
        }
        let key = ObjectRef::<Deployment>::new(&r.name).within(&ns);
        return match deployments.get(&key) {
            Some(d) if d.metadata.uid.as_deref() == Some(r.uid.as_str()) => vec![key],
            _ => Vec::new(),
        };
    }
    if rs.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| selector_of(d).is_ok_and(|s| !s.is_empty() && s.matches(&labels)))
        .map(|d| ObjectRef::from_obj(&**d))
        .collect()
}

/// For a pod of a Recreate Deployment, that Deployment (it waits for old pods to go).
fn recreate_deployment_for_pod(
    pod: &Pod,
    rss: &Store<ReplicaSet>,
    deployments: &Store<Deployment>,
) -> Option<ObjectRef<Deployment>> {
    let ns = pod.namespace().unwrap_or_default();
    let r = controller_of(pod)?;
    if r.kind != ReplicaSet::kind(&()) {
        return None;
    }
    let rs = rss.get(&ObjectRef::new(&r.name).within(&ns))?;
    if rs.metadata.uid.as_deref() != Some(r.uid.as_str()) {
        return None;
    }
    let dref = controller_of(&*rs)?;
    if dref.kind != Deployment::kind(&()) {
        return None;
    }
    let key = ObjectRef::<Deployment>::new(&dref.name).within(&ns);
    let d = deployments.get(&key)?;
    (d.metadata.uid.as_deref() == Some(dref.uid.as_str()) && util::strategy_type(&d) == "Recreate")
        .then_some(key)
}

fn error_policy(d: Arc<Deployment>, err: &Error, _: Arc<Shared>) -> Action {
    tracing::debug!(deployment = %d.name_any(), error = %err, "deployment sync failed; will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs the Deployment controller.
pub async fn run(ctx: Arc<Context>) {
    let deployments = ctx.informers.get::<Deployment>();
    let rss = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    let shared = Arc::new(Shared::new(ctx.clone()));
    let (d1, d2, rs_store) = (deployments.store.clone(), deployments.store.clone(), rss.store.clone());
    Controller::for_shared_stream(
        crate::runtime::informer::coalesce_by_uid(
            deployments.changes(),
            std::time::Duration::from_millis(100),
        ),
        deployments.store.clone(),
    )
    .watches_shared_stream(
        crate::runtime::informer::coalesce_by_uid(rss.changes(), std::time::Duration::from_millis(100)),
        move |rs: Arc<ReplicaSet>| deployments_for_rs(&rs, &d1),
    )
    .watches_shared_stream(
        crate::runtime::informer::coalesce_by_owner(pods.changes(), std::time::Duration::from_millis(100)),
        move |pod: Arc<Pod>| recreate_deployment_for_pod(&pod, &rs_store, &d2),
    )
    .run(reconcile, error_policy, shared)
    .for_each(|_| async {})
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicaset::testing::{Call, FakeApi, at, context, events, obj, writes};
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use serde_json::{Value, json};

    fn template(image: &str) -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    fn deployment(replicas: i32, image: &str, strategy: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": 1, "resourceVersion": "5",
                "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": template(image),
                "strategy": strategy, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
            "status": {"observedGeneration": 1}
        })
    }

    fn rolling(surge: Value, unavailable: Value) -> Value {
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
    }

    /// A ReplicaSet of the deployment for `image`, named by its real template hash.
    fn replica_set(image: &str, replicas: i32, available: i32, revision: i64, created: i64) -> Value {
        let t: k8s_openapi::api::core::v1::PodTemplateSpec = obj(template(image));
        let hash = util::compute_hash(&t, None);
        let mut tl = template(image);
        tl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("web-{hash}"), "namespace": "ns", "uid": format!("rs-{image}"),
                "generation": 1, "resourceVersion": "3", "creationTimestamp": at(created).to_string(),
                "labels": {"app": "web", "pod-template-hash": hash},
                "annotations": {"deployment.kubernetes.io/revision": revision.to_string(),
                    "deployment.kubernetes.io/desired-replicas": "3", "deployment.kubernetes.io/max-replicas": "4"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d-uid",
                    "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}},
                "template": tl},
            "status": {"replicas": replicas, "readyReplicas": available, "availableReplicas": available,
                "observedGeneration": 1}
        })
    }

    fn rs_name(image: &str) -> String {
        let t: k8s_openapi::api::core::v1::PodTemplateSpec = obj(template(image));
        format!("web-{}", util::compute_hash(&t, None))
    }

    async fn sync(fake: &FakeApi, d: Value, rss: Vec<Value>) -> Result<Action> {
        let ctx = context(fake);
        ctx.informers.seed::<ReplicaSet>(rss.into_iter().map(obj).collect());
        ctx.informers.seed::<Pod>(vec![]);
        let shared = Arc::new(Shared::new(ctx));
        reconcile(Arc::new(obj(d)), shared).await
    }

    fn rs_writes(fake: &FakeApi) -> Vec<Call> {
        writes(fake).into_iter().filter(|c| c.path.contains("/replicasets")).collect()
    }

    fn last_status(fake: &FakeApi) -> Value {
        writes(fake).into_iter().rfind(|c| c.path.ends_with("/deployments/web/status")).unwrap().body["status"].clone()
    }

    fn condition(status: &Value, type_: &str) -> Value {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .cloned()
            .unwrap_or(Value::Null)
    }

    #[tokio::test]
    async fn a_new_deployment_gets_a_replica_set_named_after_its_template_hash() {
        let fake = FakeApi::new();
        let mut d = deployment(3, "nginx:1", rolling(json!("25%"), json!("25%")));
        d["metadata"]["annotations"] = json!({"kubernetes.io/change-cause": "first"});
        sync(&fake, d, vec![]).await.unwrap();
        let name = rs_name("nginx:1");
        let hash = name.trim_start_matches("web-");
        let create = rs_writes(&fake).into_iter().find(|c| c.method == "POST").unwrap();
        assert_eq!(create.path, "/apis/apps/v1/namespaces/ns/replicasets");
        let b = &create.body;
        assert_eq!(b["metadata"]["name"], name.as_str());
        assert_eq!(b["metadata"]["labels"], json!({"app": "web", "pod-template-hash": hash}));
        assert_eq!(b["spec"]["selector"]["matchLabels"], json!({"app": "web", "pod-template-hash": hash}));
        assert_eq!(
            b["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web", "pod-template-hash": hash})
        );
        assert_eq!(b["spec"]["replicas"], 3);
        assert_eq!(
            b["metadata"]["annotations"],
            json!({"deployment.kubernetes.io/desired-replicas": "3", "deployment.kubernetes.io/max-replicas": "4",
                "deployment.kubernetes.io/revision": "1", "kubernetes.io/change-cause": "first"})
        );
        assert_eq!(b["metadata"]["ownerReferences"][0]["kind"], "Deployment");
        assert_eq!(b["metadata"]["ownerReferences"][0]["blockOwnerDeletion"], true);
        assert_eq!(
            events(&fake),
            vec![(
                "Normal".into(),
                "ScalingReplicaSet".into(),
                format!("Scaled up replica set {name} from 0 to 3")
            )]
        );
        // The revision lands on the Deployment, and Progressing says a new set was created.
        let patch = writes(&fake).into_iter().find(|c| c.method == "PATCH").unwrap();
        assert_eq!(
            patch.body,
            json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": "1"}}})
        );
        let status = last_status(&fake);
        let p = condition(&status, "Progressing");
        assert_eq!(
            (p["status"].as_str(), p["reason"].as_str()),
            (Some("True"), Some("NewReplicaSetCreated"))
        );
        assert_eq!(p["message"], format!("Created new replica set \"{name}\""));
        let a = condition(&status, "Available");
        assert_eq!(
            (a["status"].as_str(), a["reason"].as_str()),
            (Some("False"), Some("MinimumReplicasUnavailable"))
        );
        assert_eq!(a["message"], "Deployment does not have minimum availability.");
    }

    #[tokio::test]
    async fn rolling_update_surges_the_new_replica_set_and_keeps_old_pods_until_new_ones_are_available() {
        let fake = FakeApi::new();
        let d = deployment(3, "nginx:2", rolling(json!(1), json!(0)));
        sync(&fake, d, vec![replica_set("nginx:1", 3, 3, 1, 0)]).await.unwrap();
        let writes = rs_writes(&fake);
        let create = writes.iter().find(|c| c.method == "POST").unwrap();
        assert_eq!(create.body["spec"]["replicas"], 1, "3 desired + 1 surge - 3 running");
        assert_eq!(create.body["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");
        assert!(writes.iter().all(|c| c.method != "PUT"), "no old pods go while the new one is unavailable");
    }

    #[tokio::test]
    async fn rolling_update_scales_old_down_once_new_pods_are_available() {
        let fake = FakeApi::new();
        let d = deployment(3, "nginx:2", rolling(json!(1), json!(0)));
        let old = replica_set("nginx:1", 3, 3, 1, 0);
        let new = replica_set("nginx:2", 1, 1, 2, 100);
        sync(&fake, d, vec![old, new]).await.unwrap();
        let puts: Vec<_> = rs_writes(&fake).into_iter().filter(|c| c.method == "PUT").collect();
        assert_eq!(puts.len(), 1);
        assert_eq!(puts[0].path, format!("/apis/apps/v1/namespaces/ns/replicasets/{}", rs_name("nginx:1")));
        assert_eq!(puts[0].body["spec"]["replicas"], 2);
        assert_eq!(
            events(&fake),
            vec![(
                "Normal".into(),
                "ScalingReplicaSet".into(),
                format!("Scaled down replica set {} from 3 to 2", rs_name("nginx:1"))
            )]
        );
    }

    #[tokio::test]
    async fn a_finished_rollout_reports_new_replica_set_available() {
        let fake = FakeApi::new();
        let mut d = deployment(3, "nginx:2", rolling(json!("25%"), json!("25%")));
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("2");
        d["status"] = json!({"observedGeneration": 1, "replicas": 4, "updatedReplicas": 3, "readyReplicas": 3,
            "availableReplicas": 3, "conditions": [{"type": "Progressing", "status": "True",
            "reason": "ReplicaSetUpdated", "message": "x", "lastUpdateTime": at(900).to_string(),
            "lastTransitionTime": at(100).to_string()}]});
        let old = replica_set("nginx:1", 0, 0, 1, 0);
        let new = replica_set("nginx:2", 3, 3, 2, 100);
        sync(&fake, d, vec![old, new]).await.unwrap();
        let status = last_status(&fake);
        assert_eq!(status["replicas"], 3);
        assert_eq!(status["updatedReplicas"], 3);
        assert_eq!(status["availableReplicas"], 3);
        assert!(status.get("unavailableReplicas").is_none());
        let p = condition(&status, "Progressing");
        assert_eq!(p["reason"], "NewReplicaSetAvailable");
        assert_eq!(
            p["message"],
            format!("ReplicaSet \"{}\" has successfully progressed.", rs_name("nginx:2"))
        );
        assert_eq!(p["lastTransitionTime"], at(100).to_string(), "status stayed True");
        let a = condition(&status, "Available");
        assert_eq!(
            (a["status"].as_str(), a["reason"].as_str()),
            (Some("True"), Some("MinimumReplicasAvailable"))
        );
    }

    #[tokio::test]
    async fn recreate_scales_old_replica_sets_to_zero_before_creating_the_new_one() {
        let fake = FakeApi::new();
        let d = deployment(3, "nginx:2", json!({"type": "Recreate"}));
        sync(&fake, d, vec![replica_set("nginx:1", 3, 3, 1, 0)]).await.unwrap();
        let writes = rs_writes(&fake);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].method, "PUT");
        assert_eq!(writes[0].body["spec"]["replicas"], 0);
    }

    #[tokio::test]
    async fn recreate_creates_the_new_replica_set_at_full_size_once_old_pods_are_gone() {
        let fake = FakeApi::new();
        let d = deployment(3, "nginx:2", json!({"type": "Recreate"}));
        sync(&fake, d, vec![replica_set("nginx:1", 0, 0, 1, 0)]).await.unwrap();
        let create = rs_writes(&fake).into_iter().find(|c| c.method == "POST").unwrap();
        assert_eq!(create.body["spec"]["replicas"], 3);
    }

    #[tokio::test]
    async fn recreate_waits_while_old_pods_still_run() {
        let fake = FakeApi::new();
        let d = deployment(2, "nginx:2", json!({"type": "Recreate"}));
        let ctx = context(&fake);
        let old: ReplicaSet = obj(replica_set("nginx:1", 0, 0, 1, 0));
        let hash = old.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
        let lingering: Pod = obj(crate::replicaset::testing::pod(
            "web-old-1",
            json!({"app": "web", "pod-template-hash": hash}),
            Some(("ReplicaSet", &old.name_any(), "rs-nginx:1")),
            None,
        ));
        ctx.informers.seed(vec![old]);
        ctx.informers.seed(vec![lingering]);
        reconcile(Arc::new(obj(d)), Arc::new(Shared::new(ctx))).await.unwrap();
        assert!(rs_writes(&fake).is_empty());
    }

    #[tokio::test]
    async fn scaling_a_deployment_scales_its_only_replica_set() {
        let fake = FakeApi::new();
        let mut d = deployment(5, "nginx:1", rolling(json!("25%"), json!("25%")));
        d["status"]["replicas"] = json!(3);
        sync(&fake, d, vec![replica_set("nginx:1", 3, 3, 1, 0)]).await.unwrap();
        let put = rs_writes(&fake).into_iter().find(|c| c.method == "PUT").unwrap();
        assert_eq!(put.body["spec"]["replicas"], 5);
        assert_eq!(put.body["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"], "5");
        assert_eq!(put.body["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"], "7");
        assert_eq!(
            events(&fake),
            vec![(
                "Normal".into(),
                "ScalingReplicaSet".into(),
                format!("Scaled up replica set {} from 3 to 5", rs_name("nginx:1"))
            )]
        );
    }

    #[tokio::test]
    async fn scaling_during_a_rollout_is_proportional() {
        let fake = FakeApi::new();
        // 10 replicas mid-rollout (old 8, new 5, both annotated max 13), scaled to 20.
        let mut d = deployment(20, "nginx:2", rolling(json!(3), json!(2)));
        d["status"]["replicas"] = json!(13);
        let mut old = replica_set("nginx:1", 8, 8, 1, 0);
        let mut new = replica_set("nginx:2", 5, 0, 2, 100);
        for rs in [&mut old, &mut new] {
            rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] = json!("10");
            rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] = json!("13");
        }
        sync(&fake, d, vec![old, new]).await.unwrap();
        let sizes: Vec<(String, Value)> = rs_writes(&fake)
            .into_iter()
            .filter(|c| c.method == "PUT")
            .map(|c| {
                (c.body["metadata"]["name"].as_str().unwrap().to_string(), c.body["spec"]["replicas"].clone())
            })
            .collect();
        // 23 allowed (20 + surge 3), 10 to add: old 8*23/13 -> 14, new 5*23/13 -> 9.
        assert_eq!(sizes, vec![(rs_name("nginx:1"), json!(14)), (rs_name("nginx:2"), json!(9))]);
    }

    #[tokio::test]
    async fn undo_to_an_old_template_reuses_its_replica_set_with_the_next_revision() {
        let fake = FakeApi::new();
        let mut d = deployment(3, "nginx:1", rolling(json!("25%"), json!("25%")));
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("2");
        let old = replica_set("nginx:1", 0, 0, 1, 0);
        let current = replica_set("nginx:2", 3, 3, 2, 100);
        sync(&fake, d, vec![old, current]).await.unwrap();
        let put = rs_writes(&fake).into_iter().find(|c| c.method == "PUT").unwrap();
        assert_eq!(put.body["metadata"]["name"], rs_name("nginx:1"));
        assert_eq!(put.body["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3");
        assert_eq!(put.body["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"], "1");
    }

    #[tokio::test]
    async fn a_paused_deployment_does_not_start_a_rollout() {
        let fake = FakeApi::new();
        let mut d = deployment(3, "nginx:2", rolling(json!("25%"), json!("25%")));
        d["spec"]["paused"] = json!(true);
        sync(&fake, d, vec![replica_set("nginx:1", 3, 3, 1, 0)]).await.unwrap();
        assert!(rs_writes(&fake).is_empty());
        let status = last_status(&fake);
        let p = condition(&status, "Progressing");
        assert_eq!(
            (p["status"].as_str(), p["reason"].as_str(), p["message"].as_str()),
            (Some("Unknown"), Some("DeploymentPaused"), Some("Deployment is paused"))
        );
    }

    #[tokio::test]
    async fn old_replica_sets_beyond_the_history_limit_are_deleted() {
        let fake = FakeApi::new();
        let mut d = deployment(3, "nginx:3", rolling(json!("25%"), json!("25%")));
        d["spec"]["revisionHistoryLimit"] = json!(1);
        d["status"] = json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
            "availableReplicas": 3});
        let rss = vec![
            replica_set("nginx:1", 0, 0, 1, 0),
            replica_set("nginx:2", 0, 0, 2, 50),
            replica_set("nginx:3", 3, 3, 3, 100),
        ];
        sync(&fake, d, rss).await.unwrap();
        let deletes: Vec<_> = writes(&fake).into_iter().filter(|c| c.method == "DELETE").collect();
        assert_eq!(deletes.len(), 1);
        assert_eq!(
            deletes[0].path,
            format!("/apis/apps/v1/namespaces/ns/replicasets/{}", rs_name("nginx:1"))
        );
    }

    #[tokio::test]
    async fn a_rollout_without_progress_past_its_deadline_times_out() {
        let fake = FakeApi::new();
        let mut d = deployment(3, "nginx:2", rolling(json!(1), json!(0)));
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("2");
        d["status"] = json!({"observedGeneration": 1, "replicas": 4, "updatedReplicas": 1, "readyReplicas": 3,
            "availableReplicas": 3, "unavailableReplicas": 1, "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.", "lastUpdateTime": at(0).to_string(),
             "lastTransitionTime": at(0).to_string()},
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": "x",
             "lastUpdateTime": at(300).to_string(), "lastTransitionTime": at(0).to_string()}]});
        let old = replica_set("nginx:1", 3, 3, 1, 0);
        let new = replica_set("nginx:2", 1, 0, 2, 100);
        sync(&fake, d, vec![old, new]).await.unwrap();
        let p = condition(&last_status(&fake), "Progressing");
        assert_eq!(
            (p["status"].as_str(), p["reason"].as_str()),
            (Some("False"), Some("ProgressDeadlineExceeded"))
        );
        assert_eq!(p["message"], format!("ReplicaSet \"{}\" has timed out progressing.", rs_name("nginx:2")));
    }

    #[tokio::test]
    async fn a_stalled_rollout_is_requeued_for_its_deadline() {
        let fake = FakeApi::new();
        let mut d = deployment(3, "nginx:2", rolling(json!(1), json!(0)));
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("2");
        d["status"] = json!({"observedGeneration": 1, "replicas": 4, "updatedReplicas": 1, "readyReplicas": 3,
            "availableReplicas": 3, "unavailableReplicas": 1, "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability.", "lastUpdateTime": at(0).to_string(),
             "lastTransitionTime": at(0).to_string()},
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": "x",
             "lastUpdateTime": at(900).to_string(), "lastTransitionTime": at(0).to_string()}]});
        let old = replica_set("nginx:1", 3, 3, 1, 0);
        let new = replica_set("nginx:2", 1, 0, 2, 100);
        let action = sync(&fake, d, vec![old, new]).await.unwrap();
        // Last progress at 900, deadline 600s, now 1000: look again in 500s (+1s margin).
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(501)));
        assert!(writes(&fake).is_empty());
    }

    #[tokio::test]
    async fn an_orphan_replica_set_matching_the_selector_is_adopted() {
        let fake = FakeApi::new();
        let d = deployment(3, "nginx:1", rolling(json!("25%"), json!("25%")));
        fake.object("/apis/apps/v1/namespaces/ns/deployments/web", d.clone());
        let mut orphan = replica_set("nginx:1", 3, 3, 1, 0);
        orphan["metadata"].as_object_mut().unwrap().remove("ownerReferences");
        sync(&fake, d, vec![orphan]).await.unwrap();
        let patch = writes(&fake).into_iter().find(|c| c.method == "PATCH").unwrap();
        assert_eq!(patch.path, format!("/apis/apps/v1/namespaces/ns/replicasets/{}", rs_name("nginx:1")));
        assert_eq!(patch.body["metadata"]["ownerReferences"][0]["uid"], "d-uid");
        assert_eq!(patch.body["metadata"]["ownerReferences"][0]["controller"], true);
    }

    #[tokio::test]
    async fn the_deprecated_rollback_annotation_rolls_back_to_the_previous_revision() {
        let fake = FakeApi::new();
        let mut d = deployment(3, "nginx:2", rolling(json!("25%"), json!("25%")));
        d["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "2",
            "deprecated.deployment.rollback.to": "0"});
        let old = replica_set("nginx:1", 0, 0, 1, 0);
        let current = replica_set("nginx:2", 3, 3, 2, 100);
        sync(&fake, d, vec![old, current]).await.unwrap();
        let put = fake
            .writes()
            .into_iter()
            .find(|c| c.path == "/apis/apps/v1/namespaces/ns/deployments/web")
            .unwrap();
        assert_eq!(put.method, "PUT");
        assert_eq!(put.body["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1");
        assert!(put.body["spec"]["template"]["metadata"]["labels"].get("pod-template-hash").is_none());
        assert!(put.body["metadata"]["annotations"].get("deprecated.deployment.rollback.to").is_none());
        assert_eq!(
            events(&fake),
            vec![(
                "Normal".into(),
                "DeploymentRollback".into(),
                "Rolled back deployment \"web\" to revision 1".into()
            )]
        );
    }

    #[tokio::test]
    async fn a_deployment_selecting_everything_is_not_synced() {
        let fake = FakeApi::new();
        let mut d = deployment(3, "nginx:1", rolling(json!("25%"), json!("25%")));
        d["spec"]["selector"] = json!({});
        d["metadata"]["generation"] = json!(2);
        sync(&fake, d, vec![]).await.unwrap();
        assert_eq!(
            events(&fake),
            vec![(
                "Warning".into(),
                "SelectingAll".into(),
                "This deployment is selecting all pods. A non-empty selector is required.".into()
            )]
        );
        assert_eq!(last_status(&fake)["observedGeneration"], 2);
    }
}
