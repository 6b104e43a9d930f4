//! The Job controller (kube-controller-manager's `job-controller`): runs pods from a
//! Job's template until the wanted number succeed, counting every finished pod exactly
//! once through the `batch.kubernetes.io/job-tracking` finalizer. The reconcile is in
//! [`reconcile`]; this module holds the watches, the mapping from pods to their Job,
//! pod adoption and release, and the cleanup of finalizers on orphaned pods.

pub mod backoff;
pub mod indexes;
pub mod pod_failure_policy;
pub mod pods;
pub mod reconcile;
pub mod success_policy;
pub mod tracking;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use apimachinery::labels::Selector;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

use crate::runtime::{Recorder, controller_of, controller_ref, key_of};
use crate::{Context, ERROR_REQUEUE, Error, Result};

use pods::{TRACKING_FINALIZER, has_tracking_finalizer};

/// The `spec.managedBy` value of Jobs this controller manages (also the default).
pub const JOB_CONTROLLER_NAME: &str = "kubernetes.io/job-controller";

/// The Job controller and what it remembers between syncs.
pub struct JobController {
    pub(crate) ctx: Arc<Context>,
    pub(crate) recorder: Recorder,
    pub(crate) pods: Store<Pod>,
    pub(crate) jobs: Store<Job>,
    pub(crate) expectations: tracking::Expectations,
    pub(crate) backoff: backoff::Store,
}

/// Complete or Failed is True.
pub fn is_finished(job: &Job) -> bool {
    job.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
        cs.iter().any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
    })
}

/// The external controller named in `spec.managedBy`, if it is not this one.
pub fn managed_by_external(job: &Job) -> Option<&str> {
    job.spec.as_ref()?.managed_by.as_deref().filter(|m| *m != JOB_CONTROLLER_NAME)
}

fn selector_of(job: &Job) -> Result<Selector> {
    let sel = job.spec.as_ref().and_then(|s| s.selector.as_ref());
    let v = serde_json::to_value(sel)
        .map_err(|e| Error::Invalid(format!("couldn't convert Job selector: {e}")))?;
    Selector::from_label_selector(&v)
        .map_err(|e| Error::Invalid(format!("couldn't convert Job selector: {e}")))
}

fn labels_match(sel: &Selector, pod: &Pod) -> bool {
    sel.matches(pod.metadata.labels.as_ref().unwrap_or(&Default::default()))
}

fn is_api_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl JobController {
    pub fn new(ctx: Arc<Context>) -> Self {
        let pods = ctx.informers.get::<Pod>().store;
        let jobs = ctx.informers.get::<Job>().store;
        JobController {
            recorder: Recorder::new(ctx.client.clone(), "job-controller"),
            ctx,
            pods,
            jobs,
            expectations: Default::default(),
            backoff: Default::default(),
        }
    }

    /// The pods the Job manages: those it controls whose labels still match, plus
    /// orphans that match (adopted: ownerReference and tracking finalizer added).
    /// Controlled pods that no longer match are released.
    pub(crate) async fn claim_pods(&self, job: &Job) -> Result<Vec<Arc<Pod>>> {
        let selector = selector_of(job)?;
        let ns = job.namespace().unwrap_or_default();
        let job_uid = job.uid().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let mut claimed = Vec::new();
        let mut first_err: Option<Error> = None;
        let mut can_adopt: Option<std::result::Result<(), String>> = None;
        for pod in self.pods.state().into_iter().filter(|p| p.namespace().as_deref() == Some(ns.as_str())) {
            let matches = labels_match(&selector, &pod);
            match controller_of(&*pod) {
                Some(r) if r.uid != job_uid => {}
                Some(_) if matches => claimed.push(pod),
                Some(_) => {
                    if job.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let patch = json!({"metadata": {
                        "ownerReferences": [{"$patch": "delete", "uid": job_uid}],
                        "uid": pod.uid(),
                        "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER],
                    }});
                    if let Err(e) =
                        api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await
                        && !is_api_code(&e, 404)
                    {
                        first_err.get_or_insert(Error::Kube(e));
                    }
                }
                None => {
                    if job.metadata.deletion_timestamp.is_some()
                        || !matches
                        || pod.metadata.deletion_timestamp.is_some()
                    {
                        continue;
                    }
                    // Adopt only if the Job is not being deleted right now (a fresh read).
                    if can_adopt.is_none() {
                        can_adopt = Some(self.recheck_not_deleted(job).await);
                    }
                    if let Some(Err(e)) = &can_adopt {
                        first_err.get_or_insert(Error::Invalid(e.clone()));
                        continue;
                    }
                    let owner = controller_ref(job);
                    let patch = json!({"metadata": {
                        "ownerReferences": [owner],
                        "uid": pod.uid(),
                        "finalizers": [TRACKING_FINALIZER],
                    }});
                    match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch)).await
                    {
                        Ok(_) => {
                            let mut adopted = (*pod).clone();
                            adopted.metadata.owner_references.get_or_insert_with(Vec::new).push(owner);
                            if !has_tracking_finalizer(&adopted) {
                                adopted
                                    .metadata
                                    .finalizers
                                    .get_or_insert_with(Vec::new)
                                    .push(TRACKING_FINALIZER.into());
                            }
                            claimed.push(Arc::new(adopted));
                        }
                        Err(e) if is_api_code(&e, 404) => {}
                        Err(e) => {
                            first_err.get_or_insert(Error::Kube(e));
                        }
                    }
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(claimed),
        }
    }

    async fn recheck_not_deleted(&self, job: &Job) -> std::result::Result<(), String> {
        let ns = job.namespace().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.ctx.client.clone(), &ns);
        let name = job.name_any();
        match api.get(&name).await {
            Ok(fresh) if fresh.uid() != job.uid() => Err(format!(
                "original Job {ns}/{name} is gone: got uid {}, wanted {}",
                fresh.uid().unwrap_or_default(),
                job.uid().unwrap_or_default()
            )),
            Ok(fresh) => match &fresh.metadata.deletion_timestamp {
                Some(t) => Err(format!("{ns}/{name} has just been deleted at {}", t.0)),
                None => Ok(()),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    /// The Jobs a pod event concerns: its controller if that is a Job, else (an
    /// orphan) every Job in its namespace whose selector matches it.
    fn jobs_for_pod(&self, pod: &Pod) -> Vec<ObjectRef<Job>> {
        let ns = pod.namespace().unwrap_or_default();
        if let Some(r) = controller_of(pod) {
            if r.kind == "Job" {
                return vec![ObjectRef::new(&r.name).within(&ns)];
            }
            return Vec::new();
        }
        self.jobs
            .state()
            .iter()
            .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
            .filter(|j| selector_of(j).is_ok_and(|s| !s.is_empty() && labels_match(&s, pod)))
            .map(|j| ObjectRef::from_obj(&**j))
            .collect()
    }

    /// The controlled pods still carrying the finalizer of a Job that finished or is
    /// gone; a deleted Job's memory is dropped here.
    fn pods_to_release(&self, job: &Job) -> Vec<ObjectRef<Pod>> {
        let current = self.jobs.get(&ObjectRef::from_obj(job)).filter(|j| j.uid() == job.uid());
        let gone = current.is_none();
        if gone {
            let key = key_of(job);
            self.expectations.forget(&key);
            self.backoff.remove(&key);
        }
        if !gone && !current.as_deref().is_some_and(is_finished) {
            return Vec::new();
        }
        let job_uid = job.uid().unwrap_or_default();
        self.pods
            .state()
            .iter()
            .filter(|p| has_tracking_finalizer(p) && reconcile::controlled_by(p, &job_uid))
            .map(|p| ObjectRef::from_obj(&**p))
            .collect()
    }

    /// Removes the tracking finalizer from a pod no live, unfinished Job of this
    /// controller will count: orphans, pods of deleted or finished Jobs.
    pub(crate) async fn sync_orphan_pod(&self, pod: &Pod) -> Result<()> {
        if !has_tracking_finalizer(pod) {
            return Ok(());
        }
        if let Some(r) = controller_of(pod) {
            if r.kind != "Job" || r.api_version != "batch/v1" {
                return Ok(());
            }
            let ns = pod.namespace().unwrap_or_default();
            let job = self
                .jobs
                .get(&ObjectRef::new(&r.name).within(&ns))
                .filter(|j| j.uid().as_deref() == Some(r.uid.as_str()));
            if let Some(job) = job
                && (managed_by_external(&job).is_some() || !is_finished(&job))
            {
                return Ok(());
            }
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &pod.namespace().unwrap_or_default());
        match api
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(reconcile::remove_finalizer_patch()),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_api_code(&e, 404) => Ok(()),
            Err(e) => Err(Error::Kube(e)),
        }
    }
}

/// Waits until a shared cache has its first full list; false if its writer is gone.
///
/// `Store::wait_until_ready` keeps only the last waiter's waker (kube-runtime 5's
/// `DelayedInit` polls one shared oneshot receiver), so when several controllers wait
/// on the same cache at once the others would sleep forever. Asking again every
/// 200ms sees the value once it is there.
pub(crate) async fn wait_synced<K: kube::Resource<DynamicType = ()> + Clone>(store: &Store<K>) -> bool {
    loop {
        match tokio::time::timeout(std::time::Duration::from_millis(200), store.wait_until_ready()).await {
            Ok(r) => return r.is_ok(),
            Err(_) => continue,
        }
    }
}

/// Syncs one Job.
pub async fn reconcile(job: Arc<Job>, c: Arc<JobController>) -> Result<Action> {
    reconcile::sync_job(job, c).await
}

fn error_policy(job: Arc<Job>, err: &Error, _: Arc<JobController>) -> Action {
    tracing::debug!(job = %key_of(&*job), error = %err, "job controller: will retry");
    Action::requeue(ERROR_REQUEUE)
}

async fn reconcile_orphan(pod: Arc<Pod>, c: Arc<JobController>) -> Result<Action> {
    c.sync_orphan_pod(&pod).await?;
    Ok(Action::await_change())
}

fn orphan_error_policy(pod: Arc<Pod>, err: &Error, _: Arc<JobController>) -> Action {
    tracing::debug!(pod = %key_of(&*pod), error = %err, "job controller: removing a finalizer will retry");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs the Job controller, and beside it the loop that frees orphaned pods of their
/// tracking finalizer, once the Job and Pod caches have synced.
pub async fn run(ctx: Arc<Context>) {
    let jobs = ctx.informers.get::<Job>();
    let pods = ctx.informers.get::<Pod>();
    // Managing a Job before its pods are known would create them twice.
    if !wait_synced(&jobs.store).await || !wait_synced(&pods.store).await {
        tracing::warn!("job controller: caches never synced");
        return;
    }
    tracing::info!("job controller started");
    let c = Arc::new(JobController::new(ctx.clone()));
    let for_pods = c.clone();
    let jobs_ctl = Controller::for_shared_stream(jobs.changes(), jobs.store.clone())
        .watches_shared_stream(pods.changes(), move |pod: Arc<Pod>| for_pods.jobs_for_pod(&pod))
        .run(reconcile, error_policy, c.clone())
        .for_each(|_| async {});
    let for_jobs = c.clone();
    let orphans = Controller::for_shared_stream(pods.changes(), pods.store.clone())
        .watches_shared_stream(jobs.changes(), move |job: Arc<Job>| for_jobs.pods_to_release(&job))
        .run(reconcile_orphan, orphan_error_policy, c)
        .for_each(|_| async {});
    futures::join!(jobs_ctl, orphans);
}
