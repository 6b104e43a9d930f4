//! One sync of a ReplicaSet (or ReplicationController): claim pods (adopt orphans that
//! match, release owned pods that no longer do), create or delete pods toward
//! `spec.replicas` in slow-start batches guarded by expectations, then write the status.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use apimachinery::labels::Selector;
use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use serde_json::json;

use super::expectations::{Seen, TTL};
use super::pods::{self, has_labels, is_active, pod_from_template, pods_to_delete};
use super::{Replicated, Shared};
use crate::runtime::{EventType, controller_of, controller_ref, key_of};
use crate::{Error, Result};

/// At most this many pods are created or deleted in one sync.
pub const BURST_REPLICAS: usize = 500;
/// The first slow-start batch; each following batch doubles.
pub const SLOW_START_INITIAL_BATCH: usize = 1;
/// The status condition set while pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The message of an error as upstream's `err.Error()` reads for API errors.
pub fn error_message(err: &Error) -> String {
    match err {
        Error::Kube(kube::Error::Api(s)) => s.message.clone(),
        other => other.to_string(),
    }
}

fn is_api(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}

/// Whether the write failed because its namespace is being deleted.
pub fn namespace_terminating(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) => {
            s.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
        }
        _ => false,
    }
}

/// Whole seconds, as API times are written.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Syncs one ReplicaSet-like object: see the module doc.
pub async fn reconcile<K: Replicated>(rs: Arc<K>, shared: Arc<Shared<K>>) -> Result<Action> {
    let ctx = &shared.ctx;
    let key = key_of(&*rs);
    let ns = rs.namespace().unwrap_or_default();
    let in_ns: Vec<Arc<Pod>> = ctx
        .informers
        .get::<Pod>()
        .store
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let by_name: HashMap<&str, &Arc<Pod>> =
        in_ns.iter().filter_map(|p| p.metadata.name.as_deref().map(|n| (n, p))).collect();
    let needs_sync = shared.expectations.satisfied(&key, |name| {
        by_name.get(name).map(|p| Seen {
            uid: p.metadata.uid.clone().unwrap_or_default(),
            terminating: p.metadata.deletion_timestamp.is_some(),
        })
    });
    let selector = match rs.pod_selector() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(kind = %K::kind(&()), key, error = %e, "invalid selector; not syncing");
            return Ok(Action::await_change());
        }
    };
    let active: Vec<Arc<Pod>> = in_ns.iter().filter(|p| is_active(p)).cloned().collect();
    let claimed = claim_pods(&*rs, &selector, active, &shared).await?;

    let manage_err = if needs_sync && rs.meta().deletion_timestamp.is_none() {
        manage_replicas(&*rs, &claimed, &in_ns, &shared).await.err()
    } else {
        None
    };
    let now = ctx.clock.now();
    let status = calculate_status(&*rs, &claimed, manage_err.as_ref().map(error_message), now);
    update_status(&*rs, status, &shared).await?;
    if let Some(e) = manage_err {
        return Err(e);
    }
    let min_ready = rs.min_ready_seconds();
    let soonest = claimed.iter().filter_map(|p| pods::until_available(p, min_ready, now)).min();
    if let Some(d) = soonest {
        return Ok(Action::requeue(d + Duration::from_secs(1)));
    }
    if !needs_sync {
        return Ok(Action::requeue(TTL));
    }
    Ok(Action::await_change())
}

/// Upstream's ControllerRefManager: keeps owned pods that match, releases owned pods
/// that do not (unless the owner is being deleted), adopts matching orphans after a
/// fresh read confirms the owner is not being deleted.
async fn claim_pods<K: Replicated>(
    rs: &K,
    selector: &Selector,
    candidates: Vec<Arc<Pod>>,
    shared: &Shared<K>,
) -> Result<Vec<Arc<Pod>>> {
    let uid = rs.meta().uid.clone().unwrap_or_default();
    let ns = rs.namespace().unwrap_or_default();
    let deleting = rs.meta().deletion_timestamp.is_some();
    let pods_api: Api<Pod> = Api::namespaced(shared.ctx.client.clone(), &ns);
    let matches = |p: &Pod| crate::runtime::labels_match(selector, &p.metadata.labels);
    let mut claimed = Vec::new();
    let mut errors = Vec::new();
    let mut can_adopt: Option<std::result::Result<(), String>> = None;
    for pod in candidates {
        match controller_of(&*pod) {
            Some(r) if r.uid != uid => continue,
            Some(_) => {
                if matches(&pod) {
                    claimed.push(pod);
                    continue;
                }
                if deleting {
                    continue;
                }
                let patch = json!({"metadata": {
                    "ownerReferences": [{"$patch": "delete", "uid": uid}],
                    "uid": pod.metadata.uid,
                }});
                match pods_api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await
                {
                    Ok(_) => {}
                    // Already gone, or the reference is already off.
                    Err(e) if is_api(&e, 404) || is_api(&e, 422) => {}
                    Err(e) => errors.push(Error::Kube(e)),
                }
            }
            None => {
                if deleting || !matches(&pod) || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if pod.namespace().as_deref() != Some(ns.as_str()) {
                    continue;
                }
                if can_adopt.is_none() {
                    can_adopt = Some(recheck_owner(rs, shared).await);
                }
                if let Some(Err(why)) = &can_adopt {
                    errors.push(Error::Invalid(format!(
                        "can't adopt Pod {ns}/{} ({}): {why}",
                        pod.name_any(),
                        pod.metadata.uid.as_deref().unwrap_or("")
                    )));
                    continue;
                }
                let patch = json!({"metadata": {
                    "ownerReferences": [controller_ref(rs)],
                    "uid": pod.metadata.uid,
                }});
                match pods_api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await
                {
                    Ok(_) => claimed.push(pod),
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

/// An uncached read of the owner before adopting: it must still be the same object and
/// not being deleted.
async fn recheck_owner<K: Replicated>(rs: &K, shared: &Shared<K>) -> std::result::Result<(), String> {
    let ns = rs.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(shared.ctx.client.clone(), &ns);
    let fresh = api.get(&rs.name_any()).await.map_err(|e| error_message(&Error::Kube(e)))?;
    let want = rs.meta().uid.clone().unwrap_or_default();
    let got = fresh.meta().uid.clone().unwrap_or_default();
    if got != want {
        return Err(format!(
            "original {} {ns}/{} is gone: got uid {got}, wanted {want}",
            K::kind(&()),
            rs.name_any()
        ));
    }
    if let Some(t) = &fresh.meta().deletion_timestamp {
        return Err(format!("{ns}/{} has just been deleted at {}", rs.name_any(), t.0));
    }
    Ok(())
}

/// Creates or deletes pods toward `spec.replicas`.
async fn manage_replicas<K: Replicated>(
    rs: &K,
    claimed: &[Arc<Pod>],
    in_ns: &[Arc<Pod>],
    shared: &Shared<K>,
) -> Result<()> {
    let key = key_of(rs);
    let desired = rs.desired_replicas().max(0) as usize;
    if claimed.len() < desired {
        let want = (desired - claimed.len()).min(BURST_REPLICAS);
        let Some(template) = rs.pod_template() else {
            return Err(Error::Invalid(format!("{} {key} has no pod template", K::kind(&()))));
        };
        let mut remaining = want;
        let mut batch = remaining.min(SLOW_START_INITIAL_BATCH);
        while batch > 0 {
            let results = join_all((0..batch).map(|_| create_pod(rs, template, shared))).await;
            let mut first_err = None;
            let mut names = Vec::new();
            for r in results {
                match r {
                    Ok(Some(name)) => names.push(name),
                    Ok(None) => {}
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            shared.expectations.created(&key, names);
            if let Some(e) = first_err {
                // The pods of later batches were never attempted; the next sync retries.
                return Err(e);
            }
            remaining -= batch;
            batch = (2 * batch).min(remaining);
        }
    } else if claimed.len() > desired {
        let diff = (claimed.len() - desired).min(BURST_REPLICAS);
        let related = related_pods(rs, in_ns, shared);
        let now = shared.ctx.clock.now();
        let victims = pods_to_delete(claimed.to_vec(), &related, diff, now);
        shared.expectations.deleting(
            &key,
            victims.iter().map(|p| (p.name_any(), p.metadata.uid.clone().unwrap_or_default())),
        );
        let results = join_all(victims.iter().map(|p| delete_pod(rs, p, shared))).await;
        let mut first_err = None;
        for (pod, r) in victims.iter().zip(results) {
            if let Err(e) = r {
                shared.expectations.delete_failed(&key, &pod.name_any());
                if !matches!(&e, Error::Kube(k) if is_api(k, 404)) {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    Ok(())
}

/// Creates one pod from the template. `Ok(None)`: not created because the namespace is
/// terminating (nothing to expect, nothing to retry).
async fn create_pod<K: Replicated>(
    rs: &K,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    shared: &Shared<K>,
) -> Result<Option<String>> {
    let pod = pod_from_template(template, &rs.name_any(), controller_ref(rs));
    if pod.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
        return Err(Error::Invalid("unable to create pods, no labels".into()));
    }
    let api: Api<Pod> = Api::namespaced(shared.ctx.client.clone(), &rs.namespace().unwrap_or_default());
    match api.create(&PostParams::default(), &pod).await {
        Ok(created) => {
            let name = created.name_any();
            shared
                .recorder
                .publish(rs, EventType::Normal, "SuccessfulCreate", &format!("Created pod: {name}"))
                .await;
            Ok(Some(name))
        }
        Err(e) if namespace_terminating(&e) => Ok(None),
        Err(e) => {
            let err = Error::Kube(e);
            let msg = format!("Error creating: {}", error_message(&err));
            shared.recorder.publish(rs, EventType::Warning, "FailedCreate", &msg).await;
            Err(err)
        }
    }
}

/// Deletes one pod, recording the event upstream records.
async fn delete_pod<K: Replicated>(rs: &K, pod: &Pod, shared: &Shared<K>) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(shared.ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let name = pod.name_any();
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {
            shared
                .recorder
                .publish(rs, EventType::Normal, "SuccessfulDelete", &format!("Deleted pod: {name}"))
                .await;
            Ok(())
        }
        Err(e) if is_api(&e, 404) => Err(Error::Kube(e)),
        Err(e) => {
            let msg = error_message(&Error::Kube(e));
            shared
                .recorder
                .publish(rs, EventType::Warning, "FailedDelete", &format!("Error deleting: {msg}"))
                .await;
            Err(Error::Invalid(format!("unable to delete pods: {msg}")))
        }
    }
}

/// The pods of every `K` under the same controller as `rs` (e.g. all ReplicaSets of a
/// Deployment), each pod once; used to rank pods doubled up on a node.
fn related_pods<K: Replicated>(rs: &K, in_ns: &[Arc<Pod>], shared: &Shared<K>) -> Vec<Arc<Pod>> {
    let Some(owner) = controller_of(rs) else { return Vec::new() };
    let ns = rs.namespace().unwrap_or_default();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for sibling in shared.ctx.informers.get::<K>().store.state() {
        if sibling.namespace().as_deref() != Some(ns.as_str()) {
            continue;
        }
        if controller_of(&*sibling).map(|r| r.uid.as_str()) != Some(owner.uid.as_str()) {
            continue;
        }
        let Ok(sel) = sibling.pod_selector() else { continue };
        for p in in_ns {
            if crate::runtime::labels_match(&sel, &p.metadata.labels)
                && seen.insert(p.metadata.uid.clone().unwrap_or_default())
            {
                out.push(p.clone());
            }
        }
    }
    out
}

/// The status the claimed pods give: replicas, fullyLabeledReplicas (pods carrying every
/// template label), readyReplicas, availableReplicas (ready for minReadySeconds), and the
/// ReplicaFailure condition set on a create/delete error and cleared on success.
pub fn calculate_status<K: Replicated>(
    rs: &K,
    pods: &[Arc<Pod>],
    manage_err: Option<String>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut status = rs.replica_status();
    let template_labels = rs.pod_template().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
    let template_labels = template_labels.unwrap_or_default();
    let min_ready = rs.min_ready_seconds();
    let fully = pods.iter().filter(|p| has_labels(p, &template_labels)).count() as i32;
    let ready = pods.iter().filter(|p| pods::is_ready(p)).count() as i32;
    let available = pods.iter().filter(|p| pods::is_available(p, min_ready, now)).count() as i32;
    let mut conditions = status.conditions.take().unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match (&manage_err, has_failure) {
        (Some(msg), false) => {
            let diff = pods.len() as i64 - i64::from(rs.desired_replicas());
            let reason = if diff < 0 {
                "FailedCreate"
            } else if diff > 0 {
                "FailedDelete"
            } else {
                ""
            };
            conditions.push(ReplicaSetCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                last_transition_time: Some(Time(whole_seconds(now))),
                reason: (!reason.is_empty()).then(|| reason.to_string()),
                message: Some(msg.clone()),
            });
        }
        (None, true) => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    status.replicas = pods.len() as i32;
    status.fully_labeled_replicas = nonzero(fully);
    status.ready_replicas = nonzero(ready);
    status.available_replicas = nonzero(available);
    status
}

/// Zero as absent, as Go's `omitempty` writes it.
pub fn nonzero(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

fn same_counts(a: &ReplicaSetStatus, b: &ReplicaSetStatus) -> bool {
    a.replicas == b.replicas
        && a.fully_labeled_replicas.unwrap_or(0) == b.fully_labeled_replicas.unwrap_or(0)
        && a.ready_replicas.unwrap_or(0) == b.ready_replicas.unwrap_or(0)
        && a.available_replicas.unwrap_or(0) == b.available_replicas.unwrap_or(0)
        && a.conditions.clone().unwrap_or_default() == b.conditions.clone().unwrap_or_default()
}

/// Writes the status unless nothing changed and the generation is observed; one retry
/// after re-reading the object on failure.
async fn update_status<K: Replicated>(
    rs: &K,
    mut status: ReplicaSetStatus,
    shared: &Shared<K>,
) -> Result<()> {
    let generation = rs.meta().generation.unwrap_or(0);
    let current = rs.replica_status();
    if same_counts(&current, &status) && current.observed_generation.unwrap_or(0) == generation {
        return Ok(());
    }
    status.observed_generation = (generation != 0).then_some(generation);
    let api: Api<K> = Api::namespaced(shared.ctx.client.clone(), &rs.namespace().unwrap_or_default());
    let name = rs.name_any();
    let mut target = rs.with_replica_status(status.clone());
    for attempt in 0..2 {
        match api.replace_status(&name, &PostParams::default(), &target).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt == 0 => {
                tracing::debug!(kind = %K::kind(&()), name, error = %e, "status update failed; re-reading");
                let fresh = api.get(&name).await?;
                target = fresh.with_replica_status(status.clone());
            }
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicaset::testing::{FakeApi, at, context, events, obj, pod, writes};
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::ReplicationController;
    use serde_json::Value;

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        obj(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": "rs-uid", "generation": 2, "resourceVersion": "7"},
            "spec": {
                "replicas": replicas, "minReadySeconds": min_ready,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"}, "annotations": {"note": "x"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}
                }
            },
            "status": {"replicas": 0}
        }))
    }

    fn owned(name: &str, ready_at: Option<i64>) -> Pod {
        obj(pod(
            name,
            json!({"app": "web", "tier": "front"}),
            Some(("ReplicaSet", "web", "rs-uid")),
            ready_at,
        ))
    }

    async fn sync(
        fake: &FakeApi,
        set: ReplicaSet,
        pods: Vec<Pod>,
    ) -> (Result<Action>, Arc<Shared<ReplicaSet>>) {
        let ctx = context(fake);
        ctx.informers.seed(pods);
        ctx.informers.seed(vec![set.clone()]);
        let shared = Arc::new(Shared::<ReplicaSet>::new(ctx));
        (reconcile(Arc::new(set), shared.clone()).await, shared)
    }

    fn pod_posts(fake: &FakeApi) -> Vec<Value> {
        writes(fake)
            .into_iter()
            .filter(|c| c.method == "POST" && c.path.ends_with("/pods"))
            .map(|c| c.body)
            .collect()
    }

    #[tokio::test]
    async fn a_replica_set_short_of_pods_creates_them_from_its_template() {
        let fake = FakeApi::new();
        let (res, _) = sync(&fake, rs(3, 0), vec![]).await;
        res.unwrap();
        let posts = pod_posts(&fake);
        assert_eq!(posts.len(), 3);
        for p in &posts {
            assert_eq!(p["metadata"]["generateName"], "web-");
            assert_eq!(p["metadata"]["labels"], json!({"app": "web", "tier": "front"}));
            assert_eq!(p["metadata"]["annotations"], json!({"note": "x"}));
            assert_eq!(
                p["metadata"]["ownerReferences"],
                json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-uid",
                    "controller": true, "blockOwnerDeletion": true}])
            );
            assert_eq!(p["spec"]["containers"][0]["image"], "nginx:1");
        }
        let events = events(&fake);
        assert_eq!(events.len(), 3);
        assert!(
            events.iter().all(|(t, r, m)| t == "Normal"
                && r == "SuccessfulCreate"
                && m.starts_with("Created pod: web-"))
        );
        let status: Vec<_> = writes(&fake).into_iter().filter(|c| c.path.ends_with("/status")).collect();
        assert_eq!(status.len(), 1);
        assert_eq!(status[0].method, "PUT");
        assert_eq!(status[0].path, "/apis/apps/v1/namespaces/ns/replicasets/web/status");
        assert_eq!(status[0].body["status"], json!({"replicas": 0, "observedGeneration": 2}));
    }

    #[tokio::test]
    async fn pod_creation_runs_in_slow_start_batches_and_stops_at_the_first_failure() {
        let fake = FakeApi::new();
        fake.fail(
            "POST",
            "/api/v1/namespaces/ns/pods",
            403,
            "Forbidden",
            "pods \"web-\" is forbidden: exceeded quota",
        );
        let (res, _) = sync(&fake, rs(10, 0), vec![]).await;
        assert!(res.is_err());
        // The first batch of one failed, so no second batch was tried.
        assert_eq!(pod_posts(&fake).len(), 1);
        assert_eq!(
            events(&fake),
            vec![(
                "Warning".to_string(),
                "FailedCreate".to_string(),
                "Error creating: pods \"web-\" is forbidden: exceeded quota".to_string()
            )]
        );
        let status = writes(&fake).into_iter().find(|c| c.path.ends_with("/status")).unwrap();
        let cond = &status.body["status"]["conditions"][0];
        assert_eq!(cond["type"], "ReplicaFailure");
        assert_eq!(cond["status"], "True");
        assert_eq!(cond["reason"], "FailedCreate");
        assert_eq!(cond["message"], "pods \"web-\" is forbidden: exceeded quota");
    }

    #[test]
    fn slow_start_batches_double() {
        // Mirrors the loop in manage_replicas: 1, 2, 4, ... capped by what remains.
        let mut sizes = Vec::new();
        let mut remaining = 10;
        let mut batch = remaining.min(SLOW_START_INITIAL_BATCH);
        while batch > 0 {
            sizes.push(batch);
            remaining -= batch;
            batch = (2 * batch).min(remaining);
        }
        assert_eq!(sizes, vec![1, 2, 4, 3]);
    }

    #[tokio::test]
    async fn expectations_hold_back_a_second_burst_until_the_cache_catches_up() {
        let fake = FakeApi::new();
        let (res, shared) = sync(&fake, rs(2, 0), vec![]).await;
        assert_eq!(res.unwrap(), Action::await_change());
        assert_eq!(pod_posts(&fake).len(), 2);
        let again = reconcile(Arc::new(rs(2, 0)), shared).await.unwrap();
        assert_eq!(pod_posts(&fake).len(), 2, "no second burst while the created pods are unseen");
        assert_eq!(again, Action::requeue(TTL), "looked at again when the expectations expire");
    }

    #[tokio::test]
    async fn surplus_pods_are_deleted_not_ready_ones_first() {
        let fake = FakeApi::new();
        let pods = vec![owned("web-a", Some(0)), owned("web-b", None), owned("web-c", Some(10))];
        let (res, _) = sync(&fake, rs(2, 0), pods).await;
        res.unwrap();
        let deletes: Vec<_> = writes(&fake).into_iter().filter(|c| c.method == "DELETE").collect();
        assert_eq!(deletes.len(), 1);
        assert_eq!(deletes[0].path, "/api/v1/namespaces/ns/pods/web-b");
        assert_eq!(
            events(&fake),
            vec![("Normal".into(), "SuccessfulDelete".into(), "Deleted pod: web-b".into())]
        );
    }

    #[tokio::test]
    async fn pods_being_deleted_or_finished_do_not_count() {
        let fake = FakeApi::new();
        let mut terminating = owned("web-a", Some(0));
        terminating.metadata.deletion_timestamp = Some(Time(at(5)));
        let mut done = owned("web-b", None);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let (res, _) = sync(&fake, rs(2, 0), vec![terminating, done, owned("web-c", Some(0))]).await;
        res.unwrap();
        assert_eq!(pod_posts(&fake).len(), 1);
    }

    #[tokio::test]
    async fn status_counts_fully_labeled_ready_and_available_pods() {
        let fake = FakeApi::new();
        // minReadySeconds 100 at t=1000: ready since 0 is available, since 950 is not yet.
        let partial: Pod =
            obj(pod("web-d", json!({"app": "web"}), Some(("ReplicaSet", "web", "rs-uid")), None));
        let pods = vec![owned("web-a", Some(0)), owned("web-b", Some(950)), owned("web-c", None), partial];
        let (res, _) = sync(&fake, rs(4, 100), pods).await;
        // web-b becomes available 100s after 950, i.e. 50s from now; one more second of margin.
        assert_eq!(res.unwrap(), Action::requeue(Duration::from_secs(51)));
        let status = writes(&fake).into_iter().find(|c| c.path.ends_with("/status")).unwrap();
        assert_eq!(
            status.body["status"],
            json!({"replicas": 4, "fullyLabeledReplicas": 3, "readyReplicas": 2, "availableReplicas": 1,
                "observedGeneration": 2})
        );
    }

    #[tokio::test]
    async fn an_orphan_matching_the_selector_is_adopted() {
        let fake = FakeApi::new();
        fake.object("/apis/apps/v1/namespaces/ns/replicasets/web", serde_json::to_value(rs(1, 0)).unwrap());
        let orphan: Pod = obj(pod("stray", json!({"app": "web", "tier": "front"}), None, Some(0)));
        let (res, _) = sync(&fake, rs(1, 0), vec![orphan]).await;
        res.unwrap();
        let patch = writes(&fake).into_iter().find(|c| c.method == "PATCH").unwrap();
        assert_eq!(patch.path, "/api/v1/namespaces/ns/pods/stray");
        assert_eq!(
            patch.body,
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                "uid": "rs-uid", "controller": true, "blockOwnerDeletion": true}], "uid": "uid-stray"}})
        );
        assert!(pod_posts(&fake).is_empty(), "the adopted pod counts");
    }

    #[tokio::test]
    async fn an_orphan_is_not_adopted_by_a_replica_set_being_deleted_on_the_server() {
        let fake = FakeApi::new();
        let mut fresh = serde_json::to_value(rs(1, 0)).unwrap();
        fresh["metadata"]["deletionTimestamp"] = json!(at(900).to_string());
        fake.object("/apis/apps/v1/namespaces/ns/replicasets/web", fresh);
        let orphan: Pod = obj(pod("stray", json!({"app": "web", "tier": "front"}), None, Some(0)));
        let (res, _) = sync(&fake, rs(1, 0), vec![orphan]).await;
        assert!(res.is_err());
        assert!(writes(&fake).is_empty());
    }

    #[tokio::test]
    async fn an_owned_pod_that_no_longer_matches_is_released() {
        let fake = FakeApi::new();
        let relabeled: Pod =
            obj(pod("web-a", json!({"app": "debug"}), Some(("ReplicaSet", "web", "rs-uid")), Some(0)));
        let (res, _) = sync(&fake, rs(1, 0), vec![relabeled]).await;
        res.unwrap();
        let patch = writes(&fake).into_iter().find(|c| c.method == "PATCH").unwrap();
        assert_eq!(
            patch.body,
            json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "rs-uid"}], "uid": "uid-web-a"}})
        );
        assert_eq!(pod_posts(&fake).len(), 1, "a replacement is created");
    }

    #[tokio::test]
    async fn pods_of_other_controllers_are_left_alone() {
        let fake = FakeApi::new();
        let foreign: Pod = obj(pod(
            "other",
            json!({"app": "web", "tier": "front"}),
            Some(("ReplicaSet", "x", "x-uid")),
            Some(0),
        ));
        let (res, _) = sync(&fake, rs(1, 0), vec![foreign]).await;
        res.unwrap();
        assert!(writes(&fake).iter().all(|c| c.method != "PATCH"));
        assert_eq!(pod_posts(&fake).len(), 1);
    }

    #[tokio::test]
    async fn a_replication_controller_is_served_by_the_same_logic() {
        let fake = FakeApi::new();
        let rc: ReplicationController = obj(json!({
            "apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "legacy", "namespace": "ns", "uid": "rc-uid", "generation": 1},
            "spec": {"replicas": 1, "selector": {"app": "legacy"},
                "template": {"metadata": {"labels": {"app": "legacy"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": {"replicas": 0}
        }));
        let ctx = context(&fake);
        ctx.informers.seed::<Pod>(vec![]);
        let shared = Arc::new(Shared::<ReplicationController>::new(ctx));
        reconcile(Arc::new(rc), shared).await.unwrap();
        let posts = pod_posts(&fake);
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0]["metadata"]["generateName"], "legacy-");
        assert_eq!(posts[0]["metadata"]["ownerReferences"][0]["kind"], "ReplicationController");
        assert_eq!(posts[0]["metadata"]["ownerReferences"][0]["apiVersion"], "v1");
        let ev = fake.calls().into_iter().find(|c| c.path.contains("/events")).unwrap();
        assert_eq!(ev.body["source"]["component"], "replication-controller");
        assert_eq!(ev.body["involvedObject"]["kind"], "ReplicationController");
        let status = writes(&fake).into_iter().find(|c| c.path.ends_with("/status")).unwrap();
        assert_eq!(status.path, "/api/v1/namespaces/ns/replicationcontrollers/legacy/status");
        assert_eq!(status.body["status"], json!({"replicas": 0, "observedGeneration": 1}));
    }

    #[tokio::test]
    async fn a_steady_replica_set_writes_nothing() {
        let fake = FakeApi::new();
        let mut set = rs(1, 0);
        set.status = Some(ReplicaSetStatus {
            replicas: 1,
            fully_labeled_replicas: Some(1),
            ready_replicas: Some(1),
            available_replicas: Some(1),
            observed_generation: Some(2),
            ..Default::default()
        });
        let (res, _) = sync(&fake, set, vec![owned("web-a", Some(0))]).await;
        assert_eq!(res.unwrap(), Action::await_change());
        assert!(fake.calls().is_empty());
    }
}
