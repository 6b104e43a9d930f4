//! The pod worker against the in-memory CRI runtime and a recording API: seed a pod,
//! run sync steps, and assert on the exact CRI calls made and the status written.

use std::sync::Arc;

use cri::Runtime;
use cri::testing::FakeRuntime;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::*;
use crate::agent::node::MachineInfo;
use crate::agent::probes::{ProbeKind, ProbeResult};
use crate::agent::sandbox::HostDns;
use fakeapi::{Call, FakeApi, fake_client};

use crate::agent::testing::TestClock;
use crate::agent::{Config, Shared};

/// The CRI calls that change something.
const MUTATING: &[&str] = &[
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PullImage",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
];

struct Harness {
    rt: Arc<FakeRuntime>,
    api: FakeApi,
    shared: Arc<Shared>,
    clock: Arc<TestClock>,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (client, api) = fake_client();
    let rt = Arc::new(FakeRuntime::new());
    let clock = Arc::new(TestClock::new(Timestamp::now()));
    let mut config = Config::new("node-1", dir.path());
    config.node_ip = Some("10.0.0.1".into());
    config.cluster_dns = vec!["10.43.0.10".into()];
    let machine =
        MachineInfo { cpus: 2, memory_bytes: 4 << 30, storage_bytes: 10 << 30, ..Default::default() };
    let shared = Arc::new(Shared::with_machine(
        client,
        rt.clone(),
        rt.clone(),
        config,
        clock.clone(),
        machine,
        HostDns::default(),
    ));
    shared.set_runtime_version("containerd", "1.6.20");
    shared.set_services(vec![]);
    Harness { rt, api, shared, clock, _dir: dir }
}

fn pod_with(meta: Value, spec: Value) -> Arc<Pod> {
    let mut metadata = json!({"name": "web", "namespace": "default", "uid": "uid-1", "resourceVersion": "1"});
    if let (Some(m), Some(extra)) = (metadata.as_object_mut(), meta.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    Arc::new(
        serde_json::from_value(json!({
            "metadata": metadata,
            "spec": spec,
            "status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
        }))
        .unwrap(),
    )
}

fn pod(spec: Value) -> Arc<Pod> {
    pod_with(json!({}), spec)
}

fn app(image: &str) -> Value {
    json!({"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"})
}

impl Harness {
    fn worker(&self) -> PodWorker {
        PodWorker::new(self.shared.clone(), "uid-1", Arc::new(Notify::new()))
    }

    /// The mutating CRI calls since the last clear, and clears them.
    fn ops(&self) -> Vec<&'static str> {
        let ops = self.rt.calls().into_iter().map(|c| c.op).filter(|op| MUTATING.contains(op)).collect();
        self.rt.clear_calls();
        ops
    }

    async fn container_id(&self, name: &str) -> String {
        let mut all = self.rt.list_containers(None).await.unwrap();
        all.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        all.into_iter().find(|c| c.metadata.as_ref().is_some_and(|m| m.name == name)).map(|c| c.id).unwrap()
    }

    fn last_status(&self) -> Value {
        self.statuses().last().cloned().expect("a status was written")
    }

    /// The writes (not GETs), events excepted.
    fn writes(&self) -> Vec<Call> {
        self.api.writes().into_iter().filter(|c| !c.path.ends_with("/events")).collect()
    }

    /// The pod statuses patched, in order.
    fn statuses(&self) -> Vec<Value> {
        let patches =
            self.api.writes().into_iter().filter(|c| c.method == "PATCH" && c.path.ends_with("/status"));
        patches.map(|c| c.body["status"].clone()).collect()
    }
}

fn container_status<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["containerStatuses"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == kind).unwrap()
}

#[tokio::test]
async fn a_new_pod_gets_a_sandbox_and_its_container_and_reports_running() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let p = pod(json!({"containers": [app("busybox:1.36")]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["RunPodSandbox", "CreateContainer", "StartContainer"]);

    let writes = h.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].method, "PATCH");
    assert_eq!(writes[0].path, "/api/v1/namespaces/default/pods/web/status");
    assert_eq!(writes[0].body["metadata"]["uid"], "uid-1");
    let s = h.last_status();
    assert_eq!(s["phase"], "Running");
    assert!(s["podIP"].as_str().unwrap().starts_with("10.88."), "{s}");
    assert_eq!(s["hostIP"], "10.0.0.1");
    let c = container_status(&s, "app");
    assert_eq!(c["ready"], true);
    assert_eq!(c["started"], true);
    assert_eq!(c["restartCount"], 0);
    assert!(c["state"]["running"]["startedAt"].is_string());
    assert!(c["containerID"].as_str().unwrap().starts_with("containerd://"));
    assert_eq!(
        c["imageID"],
        "docker.io/library/busybox@sha256:".to_owned()
            + c["imageID"].as_str().unwrap().rsplit(':').next().unwrap()
    );
    assert_eq!(condition(&s, "Ready")["status"], "True");
    assert_eq!(condition(&s, "PodScheduled")["lastTransitionTime"], "2024-01-01T00:00:00Z");
    assert_eq!(h.api.event_reasons(), ["Pulled", "Created", "Started"]);
    let events = h.api.events();
    assert_eq!(events[0]["message"], "Container image \"busybox:1.36\" already present on machine");
    assert_eq!(events[1]["message"], "Created container: app");
    assert_eq!(events[2]["message"], "Started container app");
    assert_eq!(events[2]["involvedObject"]["fieldPath"], "spec.containers{app}");
    assert_eq!(events[2]["source"]["host"], "node-1");

    // The sandbox carries the pod's identity for relists and restarts of the agent.
    let sandboxes = h.rt.list_pod_sandbox(None).await.unwrap();
    assert_eq!(sandboxes[0].labels.get("io.kubernetes.pod.uid").map(String::as_str), Some("uid-1"));

    // Nothing changes, so the next sync does nothing and writes nothing.
    h.api.clear();
    let next = w.sync(&p).await.unwrap();
    assert!(h.ops().is_empty());
    assert!(h.writes().is_empty());
    assert_eq!(next, RESYNC);
}

#[tokio::test]
async fn a_crashing_container_restarts_at_once_then_backs_off_with_crash_loop_back_off() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let p = pod(json!({"containers": [app("busybox:1.36")]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    h.ops();

    assert!(h.rt.exit_container(&h.container_id("app").await, 1));
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["CreateContainer", "StartContainer"], "the first restart is immediate");
    let s = h.last_status();
    let c = container_status(&s, "app");
    assert_eq!(c["restartCount"], 1);
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error");

    assert!(h.rt.exit_container(&h.container_id("app").await, 1));
    let next = w.sync(&p).await.unwrap();
    assert!(h.ops().is_empty(), "backing off");
    assert!(next <= Duration::from_secs(11), "{next:?}");
    let s = h.last_status();
    let c = container_status(&s, "app");
    assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(
        c["state"]["waiting"]["message"],
        "back-off 10s restarting failed container=app pod=web_default(uid-1)"
    );
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(c["ready"], false);
    assert_eq!(s["phase"], "Running");
    let backoff = h.api.events().into_iter().find(|e| e["reason"] == "BackOff").unwrap();
    assert_eq!(backoff["message"], "Back-off restarting failed container app in pod web_default(uid-1)");
    assert_eq!(backoff["type"], "Warning");

    h.clock.advance(11);
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["CreateContainer", "StartContainer"]);
    assert_eq!(container_status(&h.last_status(), "app")["restartCount"], 2);

    assert!(h.rt.exit_container(&h.container_id("app").await, 1));
    w.sync(&p).await.unwrap();
    assert!(h.ops().is_empty());
    let s = h.last_status();
    assert_eq!(
        container_status(&s, "app")["state"]["waiting"]["message"],
        "back-off 20s restarting failed container=app pod=web_default(uid-1)"
    );
}

#[tokio::test]
async fn a_pod_that_never_restarts_succeeds_and_its_sandbox_is_stopped() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let p = pod(json!({"restartPolicy": "Never", "containers": [app("busybox:1.36")]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    h.ops();
    assert!(h.rt.exit_container(&h.container_id("app").await, 0));
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["StopPodSandbox"]);
    let s = h.last_status();
    assert_eq!(s["phase"], "Succeeded");
    let c = container_status(&s, "app");
    assert_eq!(c["state"]["terminated"]["reason"], "Completed");
    assert_eq!(c["state"]["terminated"]["exitCode"], 0);
    assert_eq!(condition(&s, "Ready")["reason"], "PodCompleted");
    assert_eq!(condition(&s, "PodReadyToStartContainers")["status"], "False");
    h.api.clear();
    w.sync(&p).await.unwrap();
    assert!(h.ops().is_empty());
    assert!(h.writes().is_empty());
}

#[tokio::test]
async fn a_failing_pod_that_never_restarts_fails() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let p = pod(json!({"restartPolicy": "Never", "containers": [app("busybox:1.36")]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    assert!(h.rt.exit_container(&h.container_id("app").await, 3));
    w.sync(&p).await.unwrap();
    let s = h.last_status();
    assert_eq!(s["phase"], "Failed");
    assert_eq!(container_status(&s, "app")["state"]["terminated"]["exitCode"], 3);
    assert_eq!(condition(&s, "Ready")["reason"], "PodFailed");
}

#[tokio::test]
async fn init_containers_run_in_order_each_to_completion_before_the_app() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let p = pod(json!({
        "initContainers": [
            {"name": "first", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent"},
            {"name": "second", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent"}],
        "containers": [app("busybox:1.36")]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["RunPodSandbox", "CreateContainer", "StartContainer"]);
    let s = h.last_status();
    assert_eq!(s["phase"], "Pending");
    assert_eq!(condition(&s, "Initialized")["message"], "containers with incomplete status: [first second]");
    assert_eq!(container_status(&s, "app")["state"]["waiting"]["reason"], "PodInitializing");
    assert_eq!(s["initContainerStatuses"][1]["state"]["waiting"]["reason"], "PodInitializing");

    // Still running: nothing else starts.
    w.sync(&p).await.unwrap();
    assert!(h.ops().is_empty());

    assert!(h.rt.exit_container(&h.container_id("first").await, 0));
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["CreateContainer", "StartContainer"]);
    let second = h.container_id("second").await;
    assert!(h.rt.exit_container(&second, 0));
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["CreateContainer", "StartContainer"]);
    let s = h.last_status();
    assert_eq!(s["phase"], "Running");
    assert_eq!(condition(&s, "Initialized")["status"], "True");
    assert_eq!(s["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
    assert_eq!(s["initContainerStatuses"][1]["ready"], true);
    assert!(container_status(&s, "app")["state"]["running"].is_object());
}

#[tokio::test]
async fn a_failed_init_container_fails_a_pod_that_never_restarts() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let p = pod(json!({"restartPolicy": "Never",
        "initContainers": [{"name": "init", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent"}],
        "containers": [app("busybox:1.36")]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    h.ops();
    assert!(h.rt.exit_container(&h.container_id("init").await, 2));
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["StopPodSandbox"]);
    assert_eq!(h.last_status()["phase"], "Failed");
}

#[tokio::test]
async fn sidecars_start_before_app_containers_and_are_restarted_when_they_exit() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let p = pod(json!({
        "initContainers": [{"name": "log", "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent", "restartPolicy": "Always"}],
        "containers": [app("busybox:1.36")]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["RunPodSandbox", "CreateContainer", "StartContainer"]);
    let log = h.container_id("log").await;
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["CreateContainer", "StartContainer"]);
    let s = h.last_status();
    assert_eq!(s["phase"], "Running");
    assert_eq!(s["initContainerStatuses"][0]["started"], true);
    assert!(s["initContainerStatuses"][0]["state"]["running"].is_object());
    assert_eq!(condition(&s, "Ready")["status"], "True");

    assert!(h.rt.exit_container(&log, 1));
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["CreateContainer", "StartContainer"], "only the sidecar restarts");
    assert_eq!(h.last_status()["initContainerStatuses"][0]["restartCount"], 1);
}

#[tokio::test]
async fn a_missing_image_gives_err_image_pull_then_image_pull_back_off() {
    let h = harness();
    let image = "127.0.0.1:5000/missing:1";
    h.rt.deny_pull(image, tonic::Code::NotFound, "failed to resolve reference");
    let p = pod(json!({"containers": [{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["RunPodSandbox", "PullImage"]);
    let s = h.last_status();
    let waiting = &container_status(&s, "app")["state"]["waiting"];
    assert_eq!(waiting["reason"], "ErrImagePull");
    assert_eq!(waiting["message"], "rpc error: code = NotFound desc = failed to resolve reference");
    assert_eq!(s["phase"], "Pending");
    let messages: Vec<Value> = h.api.events().into_iter().map(|e| e["message"].clone()).collect();
    assert_eq!(
        messages,
        [
            json!(format!("Pulling image \"{image}\"")),
            json!(format!(
                "Failed to pull image \"{image}\": rpc error: code = NotFound desc = failed to resolve reference"
            )),
            json!("Error: ErrImagePull"),
        ]
    );

    h.api.clear();
    w.sync(&p).await.unwrap();
    assert!(h.ops().is_empty(), "no pull while backing off");
    let waiting = container_status(&h.last_status(), "app")["state"]["waiting"].clone();
    assert_eq!(waiting["reason"], "ImagePullBackOff");
    assert_eq!(
        waiting["message"],
        format!(
            "Back-off pulling image \"{image}\": ErrImagePull: rpc error: code = NotFound desc = failed to resolve reference"
        )
    );
    assert_eq!(h.api.event_reasons(), ["BackOff", "Failed"]);

    h.clock.advance(11);
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["PullImage"]);
}

#[tokio::test]
async fn a_missing_config_map_is_a_create_container_config_error_until_it_appears() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let mut c = app("busybox:1.36");
    c["env"] = json!([{"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}}]);
    let p = pod(json!({"containers": [c]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["RunPodSandbox"]);
    let waiting = container_status(&h.last_status(), "app")["state"]["waiting"].clone();
    assert_eq!(waiting["reason"], "CreateContainerConfigError");
    assert_eq!(waiting["message"], "configmap \"cfg\" not found");
    assert!(h.api.events().iter().any(|e| e["message"] == "Error: configmap \"cfg\" not found"));

    h.api.object(
        "/api/v1/namespaces/default/configmaps/cfg",
        json!({"metadata": {"name": "cfg"}, "data": {"other": "x"}}),
    );
    w.sync(&p).await.unwrap();
    assert!(h.ops().is_empty());
    assert_eq!(
        container_status(&h.last_status(), "app")["state"]["waiting"]["message"],
        "couldn't find key color in ConfigMap default/cfg"
    );

    h.api.object(
        "/api/v1/namespaces/default/configmaps/cfg",
        json!({"metadata": {"name": "cfg"}, "data": {"color": "blue"}}),
    );
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["CreateContainer", "StartContainer"]);
    assert!(container_status(&h.last_status(), "app")["state"]["running"].is_object());
}

#[tokio::test]
async fn a_failed_liveness_probe_kills_and_restarts_the_container() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let mut c = app("busybox:1.36");
    c["livenessProbe"] = json!({"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 3600, "initialDelaySeconds": 3600});
    let p = pod(json!({"terminationGracePeriodSeconds": 5, "containers": [c]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    h.ops();
    let id = h.container_id("app").await;
    h.shared.probes.set(&id, ProbeKind::Liveness, ProbeResult::Failure);
    h.api.clear();
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["StopContainer", "CreateContainer", "StartContainer"]);
    let killing = h.api.events().into_iter().find(|e| e["reason"] == "Killing").unwrap();
    assert_eq!(killing["message"], "Container app failed liveness probe, will be restarted");
    let s = h.last_status();
    assert_eq!(container_status(&s, "app")["restartCount"], 1);
    assert_eq!(container_status(&s, "app")["lastState"]["terminated"]["exitCode"], 143);
    h.shared.probes.remove_pod("uid-1");
}

#[tokio::test]
async fn readiness_comes_from_the_readiness_probe() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let mut c = app("busybox:1.36");
    c["readinessProbe"] =
        json!({"exec": {"command": ["true"]}, "periodSeconds": 3600, "initialDelaySeconds": 3600});
    let p = pod(json!({"containers": [c]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    let s = h.last_status();
    assert_eq!(container_status(&s, "app")["ready"], false);
    assert_eq!(condition(&s, "ContainersReady")["message"], "containers with unready status: [app]");
    let id = h.container_id("app").await;
    h.shared.probes.set(&id, ProbeKind::Readiness, ProbeResult::Success);
    w.sync(&p).await.unwrap();
    let s = h.last_status();
    assert_eq!(container_status(&s, "app")["ready"], true);
    assert_eq!(condition(&s, "Ready")["status"], "True");
    h.shared.probes.remove_pod("uid-1");
}

#[tokio::test]
async fn deleting_a_pod_stops_it_writes_its_final_status_and_deletes_it_with_grace_zero() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let p = pod(json!({"containers": [app("busybox:1.36")]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    h.ops();
    h.api.clear();
    let deleting = pod_with(
        json!({"deletionTimestamp": "2030-01-01T00:00:05Z", "deletionGracePeriodSeconds": 5}),
        json!({"containers": [app("busybox:1.36")]}),
    );
    let (_tx, mut rx) = watch::channel(Some(deleting.clone()));
    rx.borrow_and_update();
    w.terminate(&deleting, &mut rx).await.unwrap();
    assert_eq!(h.ops(), ["StopContainer", "StopPodSandbox", "RemovePodSandbox"]);
    assert!(w.finished());
    let writes = h.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    let status = &writes[0].body["status"];
    assert_eq!(status["phase"], "Failed");
    assert_eq!(container_status(status, "app")["state"]["terminated"]["exitCode"], 143);
    assert_eq!(writes[1].method, "DELETE");
    assert_eq!(writes[1].path, "/api/v1/namespaces/default/pods/web");
    assert_eq!(writes[1].body["gracePeriodSeconds"], 0);
    assert_eq!(writes[1].body["preconditions"]["uid"], "uid-1");
    let killing = h.api.events().into_iter().find(|e| e["reason"] == "Killing").unwrap();
    assert_eq!(killing["message"], "Stopping container app");
    assert!(h.rt.list_pod_sandbox(None).await.unwrap().is_empty());
    assert!(!h.shared.config.root_dir.join("pods/uid-1").exists());
}

#[tokio::test]
async fn a_pod_the_api_no_longer_has_is_removed_from_the_runtime() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let p = pod(json!({"containers": [app("busybox:1.36")]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    h.ops();
    let mut orphan = h.worker();
    orphan.remove(None).await.unwrap();
    assert_eq!(h.ops(), ["StopContainer", "StopPodSandbox", "RemovePodSandbox"]);
    assert!(h.rt.list_containers(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn volumes_are_set_up_before_containers_and_failures_are_reported() {
    let h = harness();
    h.rt.add_image("busybox:1.36");
    let mut c = app("busybox:1.36");
    c["volumeMounts"] =
        json!([{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "scratch", "mountPath": "/scratch"}]);
    let p = pod(json!({"containers": [c], "volumes": [
        {"name": "cfg", "configMap": {"name": "settings"}},
        {"name": "scratch", "emptyDir": {}}]}));
    let mut w = h.worker();
    w.sync(&p).await.unwrap();
    assert!(h.ops().is_empty());
    let failed = h.api.events().into_iter().find(|e| e["reason"] == "FailedMount").unwrap();
    assert_eq!(
        failed["message"],
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"settings\" not found"
    );
    assert_eq!(failed["type"], "Warning");
    assert_eq!(container_status(&h.last_status(), "app")["state"]["waiting"]["reason"], "ContainerCreating");

    h.api.object(
        "/api/v1/namespaces/default/configmaps/settings",
        json!({"metadata": {"name": "settings"}, "data": {"app.conf": "debug=true"}}),
    );
    w.sync(&p).await.unwrap();
    assert_eq!(h.ops(), ["RunPodSandbox", "CreateContainer", "StartContainer"]);
    let dir = h.shared.config.root_dir.join("pods/uid-1/volumes");
    let conf = std::fs::read_to_string(dir.join("kubernetes.io~configmap/cfg/app.conf")).unwrap();
    assert_eq!(conf, "debug=true");
    assert!(dir.join("kubernetes.io~empty-dir/scratch").is_dir());
    let hosts = std::fs::read_to_string(h.shared.config.root_dir.join("pods/uid-1/etc-hosts")).unwrap();
    assert!(hosts.contains("\tweb\n"), "{hosts}");
}

#[tokio::test]
async fn the_environment_resolves_sources_field_refs_and_expansion() {
    let h = harness();
    h.api.object(
        "/api/v1/namespaces/default/configmaps/cfg",
        json!({"metadata": {"name": "cfg"}, "data": {"COLOR": "blue", "key": "from-cm"}}),
    );
    h.api.object(
        "/api/v1/namespaces/default/secrets/sec",
        json!({"metadata": {"name": "sec"}, "data": {"PASSWORD": "czNjcmV0"}}),
    );
    let services: Vec<k8s_openapi::api::core::v1::Service> = serde_json::from_value(json!([
        {"metadata": {"name": "kubernetes", "namespace": "default"},
         "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443}]}}]))
    .unwrap();
    h.shared.set_services(services);
    let p = pod(json!({"containers": [{"name": "app", "image": "busybox",
    "envFrom": [{"prefix": "CM_", "configMapRef": {"name": "cfg"}}],
    "env": [
        {"name": "A", "value": "a"},
        {"name": "B", "value": "$(A)-$(CM_COLOR)-$(MISSING)-$(KUBERNETES_SERVICE_HOST)"},
        {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "key"}}},
        {"name": "P", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PASSWORD"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": true}}}
    ]}]}));
    let c = &p.spec.as_ref().unwrap().containers[0];
    let addresses = Addresses { host_ips: vec!["10.0.0.1".into()], pod_ips: vec!["10.88.0.2".into()] };
    let services = containers::service_env(&h.shared.services().unwrap(), "default", true);
    let env = containers::environment(&h.shared, &p, c, &addresses, &services).await.unwrap();
    let got: Vec<(&str, &str)> = env.vars().iter().map(|(k, v)| (k.as_str(), v.as_str())).take(9).collect();
    assert_eq!(
        got,
        [
            ("CM_COLOR", "blue"),
            ("CM_key", "from-cm"),
            ("A", "a"),
            ("B", "a-blue-$(MISSING)-10.43.0.1"),
            ("C", "from-cm"),
            ("P", "s3cret"),
            ("POD", "web"),
            ("IP", "10.88.0.2"),
            ("MEM", "3996"),
        ]
    );
    assert!(env.get("OPT").is_none());
    assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
    assert_eq!(env.get("KUBERNETES_PORT"), Some("tcp://10.43.0.1:443"));
}

#[test]
fn a_sandbox_is_needed_when_none_is_ready_or_it_lost_its_address() {
    use crate::agent::runtime_pod::Sandbox;
    let p = pod(json!({"containers": []}));
    let sb = |id: &str, attempt, ready, ip: &str| Sandbox {
        id: id.into(),
        attempt,
        ready,
        created_at: attempt as i64,
        ip: ip.into(),
    };
    assert_eq!(sandbox_changed(&p, &RuntimePod::default()), (true, 0, String::new()));
    let ok = RuntimePod { sandboxes: vec![sb("a", 0, true, "10.0.0.2")], containers: vec![] };
    assert_eq!(sandbox_changed(&p, &ok), (false, 0, "a".into()));
    let dead = RuntimePod { sandboxes: vec![sb("b", 1, false, "")], containers: vec![] };
    assert_eq!(sandbox_changed(&p, &dead), (true, 2, "b".into()));
    let no_ip = RuntimePod { sandboxes: vec![sb("c", 0, true, "")], containers: vec![] };
    assert!(sandbox_changed(&p, &no_ip).0);
    let host = pod(json!({"hostNetwork": true, "containers": []}));
    assert!(!sandbox_changed(&host, &no_ip).0);
}
