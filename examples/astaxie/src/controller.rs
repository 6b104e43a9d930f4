//! The AstaXie controller: a shared informer whose on-add / on-update / on-delete
//! handlers put keys on a work queue (kube-runtime's applier: a key is never reconciled
//! twice at once, with requeues and backoff), and a level-triggered reconcile that reads
//! the cache, decides with [`crate::state::plan`] and writes the status subresource.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, Event as Finalize, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::informer::{Handler, Informer};
use crate::resource::{AstaXie, FIELD_MANAGER, FINALIZER, State};
use crate::state;

/// How often a settled object is looked at again even if nothing changes, as a safety
/// net (a client-go resync).
const RESYNC: Duration = Duration::from_secs(600);

/// How long to wait before retrying a failed reconcile.
const RETRY: Duration = Duration::from_secs(5);

/// How the controller behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a guest thinks an invitation over before accepting it: the time an
    /// `AstaXie` stays `Invited`.
    pub think_time: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self { think_time: Duration::from_secs(3) }
    }
}

/// What a reconcile can fail on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("AstaXie {name} has no namespace")]
    NoNamespace { name: String },
    #[error("writing the status of AstaXie {namespace}/{name}")]
    WriteStatus {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What every reconcile shares.
pub struct Context {
    client: Client,
    recorder: Recorder,
    settings: Settings,
    clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
}

impl Context {
    /// A context that reads the wall clock.
    pub fn new(client: Client, settings: Settings) -> Self {
        Self::with_clock(client, settings, Arc::new(Timestamp::now))
    }

    /// A context with its own clock (tests use a fixed time).
    pub fn with_clock(
        client: Client,
        settings: Settings,
        clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    ) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter::from(FIELD_MANAGER));
        Self { client, recorder, settings, clock }
    }

    async fn publish(&self, ax: &AstaXie, reason: &str, action: &str, note: String) {
        let event = KubeEvent {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        // An event is a courtesy to whoever runs `kubectl describe`: losing one must not
        // undo or repeat the work it reports.
        if let Err(e) = self.recorder.publish(&event, &ax.object_ref(&())).await {
            warn!(name = %ax.name_any(), reason, error = %e, "could not record an event");
        }
    }
}

/// The informer's handlers: they log what happened and queue the object's key. They
/// decide nothing; the reconcile looks at the object as it is when its turn comes.
struct Handlers {
    queue: mpsc::UnboundedSender<ObjectRef<AstaXie>>,
}

impl Handlers {
    fn enqueue(&self, ax: &AstaXie) {
        if self.queue.unbounded_send(ObjectRef::from_obj(ax)).is_err() {
            debug!(name = %ax.name_any(), "work queue closed; dropping the key");
        }
    }
}

impl Handler<AstaXie> for Handlers {
    fn on_add(&self, ax: &Arc<AstaXie>) {
        info!(namespace = ax.namespace().unwrap_or_default(), name = %ax.name_any(),
            language = %ax.spec.language, "on_add: a new AstaXie");
        self.enqueue(ax);
    }

    fn on_update(&self, old: &Arc<AstaXie>, new: &Arc<AstaXie>) {
        let namespace = new.namespace().unwrap_or_default();
        let name = new.name_any();
        if old.metadata.deletion_timestamp.is_none() && new.metadata.deletion_timestamp.is_some() {
            info!(namespace, %name, "on_update: deletion requested");
        } else if old.spec != new.spec {
            info!(namespace, %name, language = %new.spec.language, handsome = new.spec.handsome,
                "on_update: the spec changed");
        } else {
            debug!(namespace, %name, "on_update: status or metadata changed");
        }
        self.enqueue(new);
    }

    fn on_delete(&self, ax: &Arc<AstaXie>) {
        info!(namespace = ax.namespace().unwrap_or_default(), name = %ax.name_any(), "on_delete: the AstaXie is gone");
    }
}

/// Runs the controller until its watch or work queue ends (in practice: forever). It
/// watches `AstaXie`s in every namespace the client may see; watch errors are retried
/// with backoff and failed reconciles are retried after a few seconds.
pub async fn run(client: Client, settings: Settings) -> anyhow::Result<()> {
    let ctx = Arc::new(Context::new(client.clone(), settings));
    let events = watcher(Api::<AstaXie>::all(client), watcher::Config::default()).default_backoff();
    let informer = Informer::new();
    let store = informer.store();
    let (tx, rx) = mpsc::unbounded();
    let handlers = Handlers { queue: tx };
    let queue = rx.map(Ok::<_, Infallible>);
    let work = controller::applier(
        |ax, ctx| Box::pin(reconcile(ax, ctx)),
        error_policy,
        ctx,
        store,
        queue,
        controller::Config::default(),
    )
    .for_each(|result| async move {
        match result {
            Ok((key, action)) => debug!(%key, ?action, "reconciled"),
            // The error policy has logged it already.
            Err(e) => debug!(error = %e, "reconcile failed"),
        }
    });
    info!("AstaXie controller started");
    tokio::select! {
        () = informer.run(events, &handlers) => anyhow::bail!("the AstaXie watch ended"),
        () = work => anyhow::bail!("the AstaXie work queue ended"),
    }
}

/// One level-triggered pass over one `AstaXie` from the cache: make sure it carries the
/// farewell finalizer, bring its status to what [`state::plan`] says, or, when it is
/// being deleted, say farewell and let it go.
pub async fn reconcile(ax: Arc<AstaXie>, ctx: Arc<Context>) -> Result<Action, finalizer::Error<Error>> {
    let name = ax.name_any();
    let namespace = ax
        .namespace()
        .ok_or_else(|| finalizer::Error::ApplyFailed(Error::NoNamespace { name: name.clone() }))?;
    let api = Api::<AstaXie>::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, ax, |event| async {
        match event {
            Finalize::Apply(ax) => apply(&api, &ax, &ctx).await,
            Finalize::Cleanup(ax) => cleanup(&ax, &ctx).await,
        }
    })
    .await
}

async fn apply(api: &Api<AstaXie>, ax: &AstaXie, ctx: &Context) -> Result<Action, Error> {
    let plan = state::plan(ax, (ctx.clock)(), ctx.settings.think_time);
    if let Some(status) = &plan.write {
        let name = ax.name_any();
        // The resourceVersion makes the write conditional: if the cache was behind, the
        // API server answers 409 and the newer object is already on its way to us.
        let patch = json!({
            "metadata": {"resourceVersion": ax.resource_version()},
            "status": status,
        });
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        match api.patch_status(&name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                debug!(%name, "the cache was behind; waiting for the newer object");
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(source) => {
                return Err(Error::WriteStatus {
                    namespace: ax.namespace().unwrap_or_default(),
                    name,
                    source,
                });
            }
        }
        let before = ax.status.as_ref().and_then(|s| s.state);
        let message = status.message.clone().unwrap_or_default();
        match (before, status.state) {
            (before, Some(State::Invited)) if before != Some(State::Invited) => {
                info!(%name, "{message}");
                ctx.publish(ax, "Invited", "Invite", message).await;
            }
            (Some(State::Invited), Some(State::Accepted)) => {
                info!(%name, "{message}");
                ctx.publish(ax, "Accepted", "Accept", message).await;
            }
            _ => info!(%name, "status follows the spec: {message}"),
        }
    }
    Ok(Action::requeue(plan.recheck_after.unwrap_or(RESYNC)))
}

async fn cleanup(ax: &AstaXie, ctx: &Context) -> Result<Action, Error> {
    let name = ax.name_any();
    let farewell = format!("Farewell, {name}! Thank you for the talk in {}", ax.spec.language);
    info!(%name, "{farewell}");
    ctx.publish(ax, "Farewell", "SayFarewell", farewell).await;
    Ok(Action::await_change())
}

fn error_policy(ax: Arc<AstaXie>, error: &finalizer::Error<Error>, _ctx: Arc<Context>) -> Action {
    warn!(namespace = ax.namespace().unwrap_or_default(), name = %ax.name_any(), %error, "reconcile failed; retrying in {}s", RETRY.as_secs());
    Action::requeue(RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{AstaXieSpec, AstaXieStatus};
    use http::{Request, Response};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::client::Body;
    use serde_json::Value;
    use std::sync::Mutex;

    #[derive(Clone, Debug)]
    struct Call {
        method: String,
        path: String,
        content_type: String,
        body: Value,
    }

    /// A client whose requests are recorded; writes to the AstaXie answer with `object`,
    /// event creates echo their body.
    fn fake_client(object: &AstaXie) -> (Client, Arc<Mutex<Vec<Call>>>) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = calls.clone();
        let object = serde_json::to_value(object).unwrap();
        let svc = tower::service_fn(move |req: Request<Body>| {
            let recorded = recorded.clone();
            let object = object.clone();
            async move {
                let method = req.method().to_string();
                let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
                let content_type = req
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let bytes = req.into_body().collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                recorded.lock().unwrap().push(Call {
                    method: method.clone(),
                    path: path.clone(),
                    content_type,
                    body: body.clone(),
                });
                let (code, reply) = if path.contains("/events") { (201, body) } else { (200, object) };
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                        .unwrap(),
                )
            }
        });
        (Client::new(svc, "default"), calls)
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn guest(finalizers: &[&str], status: Option<AstaXieStatus>) -> AstaXie {
        let mut ax = AstaXie::new("asta", AstaXieSpec { language: "go".into(), handsome: true });
        ax.metadata.namespace = Some("default".into());
        ax.metadata.uid = Some("uid-1".into());
        ax.metadata.generation = Some(1);
        ax.metadata.resource_version = Some("7".into());
        ax.metadata.finalizers =
            (!finalizers.is_empty()).then(|| finalizers.iter().map(|f| f.to_string()).collect());
        ax.status = status;
        ax
    }

    async fn reconcile_once(ax: AstaXie, now: Timestamp) -> (Action, Vec<Call>) {
        let (client, calls) = fake_client(&ax);
        let ctx = Arc::new(Context::with_clock(client, Settings::default(), Arc::new(move || now)));
        let action = reconcile(Arc::new(ax), ctx).await.unwrap();
        let calls = calls.lock().unwrap().clone();
        (action, calls)
    }

    const STATUS_PATH: &str =
        "/apis/demo.krust.dev/v1/namespaces/default/astaxies/asta/status?&fieldManager=astaxie";

    #[tokio::test]
    async fn a_new_guest_first_gets_the_farewell_finalizer() {
        let (action, calls) = reconcile_once(guest(&[], None), at(0)).await;
        assert_eq!(action, Action::await_change());
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0].method, "PATCH");
        assert_eq!(calls[0].path, "/apis/demo.krust.dev/v1/namespaces/default/astaxies/asta?");
        assert_eq!(calls[0].content_type, "application/json-patch+json");
        assert_eq!(
            calls[0].body,
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["demo.krust.dev/farewell"]},
            ])
        );
    }

    #[tokio::test]
    async fn a_guest_with_the_finalizer_is_invited_through_the_status_subresource() {
        let (action, calls) = reconcile_once(guest(&[FINALIZER], None), at(0)).await;
        assert_eq!(
            action,
            Action::requeue(Duration::from_secs(3)),
            "look again once the guest thought it over"
        );
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!((calls[0].method.as_str(), calls[0].path.as_str()), ("PATCH", STATUS_PATH));
        assert_eq!(calls[0].content_type, "application/merge-patch+json");
        assert_eq!(
            calls[0].body,
            json!({
                "metadata": {"resourceVersion": "7"},
                "status": {
                    "state": "Invited",
                    "message": "Invitation sent to asta, who speaks go",
                    "invitedAt": "2023-11-14T22:13:20Z",
                    "observedGeneration": 1,
                },
            })
        );
        assert_eq!(calls[1].method, "POST");
        assert_eq!(calls[1].path, "/apis/events.k8s.io/v1/namespaces/default/events?");
        assert_eq!(calls[1].body["reason"], "Invited");
        assert_eq!(calls[1].body["type"], "Normal");
        assert_eq!(calls[1].body["reportingController"], "astaxie");
        assert_eq!(calls[1].body["regarding"]["kind"], "AstaXie");
        assert_eq!(calls[1].body["regarding"]["uid"], "uid-1");
    }

    #[tokio::test]
    async fn an_invited_guest_accepts_once_the_think_time_is_over() {
        let invited = AstaXieStatus {
            state: Some(State::Invited),
            message: Some("Invitation sent to asta, who speaks go".into()),
            invited_at: Some(Time(at(0))),
            observed_generation: Some(1),
        };
        let (action, calls) = reconcile_once(guest(&[FINALIZER], Some(invited.clone())), at(1)).await;
        assert_eq!(action, Action::requeue(Duration::from_secs(2)));
        assert!(calls.is_empty(), "still thinking: no writes, {calls:?}");

        let (action, calls) = reconcile_once(guest(&[FINALIZER], Some(invited)), at(3)).await;
        assert_eq!(action, Action::requeue(RESYNC));
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0].path, STATUS_PATH);
        assert_eq!(calls[0].body["status"]["state"], "Accepted");
        assert_eq!(
            calls[0].body["status"]["message"],
            "asta accepted and will speak go on stage, handsome as ever"
        );
        assert_eq!(calls[1].body["reason"], "Accepted");
    }

    #[tokio::test]
    async fn a_deleted_guest_gets_a_farewell_and_loses_the_finalizer() {
        let mut ax = guest(&["other.example/keep", FINALIZER], None);
        ax.metadata.deletion_timestamp = Some(Time(at(9)));
        let (action, calls) = reconcile_once(ax, at(10)).await;
        assert_eq!(action, Action::await_change());
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0].method, "POST");
        assert_eq!(calls[0].body["reason"], "Farewell");
        assert_eq!(calls[0].body["note"], "Farewell, asta! Thank you for the talk in go");
        assert_eq!(calls[1].method, "PATCH");
        assert_eq!(calls[1].path, "/apis/demo.krust.dev/v1/namespaces/default/astaxies/asta?");
        assert_eq!(
            calls[1].body,
            json!([
                {"op": "test", "path": "/metadata/finalizers/1", "value": "demo.krust.dev/farewell"},
                {"op": "remove", "path": "/metadata/finalizers/1"},
            ]),
            "only our own finalizer goes"
        );
    }

    #[tokio::test]
    async fn a_settled_guest_gets_no_write() {
        let accepted = AstaXieStatus {
            state: Some(State::Accepted),
            message: Some("asta accepted and will speak go on stage, handsome as ever".into()),
            invited_at: Some(Time(at(0))),
            observed_generation: Some(1),
        };
        let (action, calls) = reconcile_once(guest(&[FINALIZER], Some(accepted)), at(100)).await;
        assert_eq!(action, Action::requeue(RESYNC));
        assert!(calls.is_empty(), "{calls:?}");
    }

    #[test]
    fn handlers_queue_the_key_of_every_add_and_update_but_not_of_a_delete() {
        let (tx, mut rx) = mpsc::unbounded();
        let h = Handlers { queue: tx };
        let ax = Arc::new(guest(&[], None));
        h.on_add(&ax);
        h.on_update(&ax, &ax);
        h.on_delete(&ax);
        let mut keys = Vec::new();
        while let Ok(k) = rx.try_recv() {
            keys.push(k);
        }
        assert_eq!(keys, vec![ObjectRef::new("asta").within("default"); 2]);
    }
}
