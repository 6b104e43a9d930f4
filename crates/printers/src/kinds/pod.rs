//! The Pod printer: READY, the aggregated STATUS (init progress, waiting and
//! terminated reasons, sidecars, Terminating), RESTARTS with the last restart's age.

use jiff::Timestamp;
use serde_json::Value;

use crate::Printer;
use crate::columns::{AGE, NAME, col, wide};
use crate::duration::translate_since;
use crate::value::{arr_at, at, bool_at, i64_at, name, opt_bool_at, s, str_at, time_at};

pub(crate) static POD: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", "Ready containers out of all containers, sidecars included."),
        col("Status", "string", "A one-word summary of the pod's and its containers' states."),
        col("Restarts", "string", "Container restarts in total, and how long ago the latest happened."),
        AGE,
        wide("IP", "string", "The pod's primary IP address."),
        wide("Node", "string", "The node the pod is bound to."),
        wide("Nominated Node", "string", "The node the scheduler nominated while preempting for this pod."),
        wide("Readiness Gates", "string", "Readiness gates whose condition is True, out of all gates."),
    ],
    row: pod_row,
};

/// Reason a node controller puts on pods of an unreachable node.
const NODE_UNREACHABLE_REASON: &str = "NodeLost";

fn pod_row(pod: &Value, now: Timestamp) -> Vec<Value> {
    let init_specs = arr_at(pod, "/spec/initContainers");
    let conditions = arr_at(pod, "/status/conditions");
    let phase = str_at(pod, "/status/phase");

    let mut reason = match str_at(pod, "/status/reason") {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    if conditions
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    // Sidecars (init containers with restartPolicy Always) count as containers.
    let is_sidecar = |container_name: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| str_at(c, "/name") == container_name)
            .is_some_and(|c| str_at(c, "/restartPolicy") == "Always")
    };
    let total = arr_at(pod, "/spec/containers").len()
        + init_specs.iter().filter(|c| str_at(c, "/restartPolicy") == "Always").count();

    let mut ready = 0;
    let mut restarts = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut sidecar_restarts = 0;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let mut initializing = false;
    for (i, st) in arr_at(pod, "/status/initContainerStatuses").iter().enumerate() {
        let count = i64_at(st, "/restartCount");
        let finished = last_termination(st);
        restarts += count;
        last_restart = last_restart.max(finished);
        let sidecar = is_sidecar(str_at(st, "/name"));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = last_sidecar_restart.max(finished);
        }
        let terminated = at(st, "/state/terminated");
        let waiting_reason = str_at(st, "/state/waiting/reason");
        match terminated {
            Some(t) if i64_at(t, "/exitCode") == 0 => continue,
            _ if sidecar && opt_bool_at(st, "/started") == Some(true) => {
                if bool_at(st, "/ready") {
                    ready += 1;
                }
                continue;
            }
            Some(t) => {
                reason = match str_at(t, "/reason") {
                    "" if i64_at(t, "/signal") != 0 => format!("Init:Signal:{}", i64_at(t, "/signal")),
                    "" => format!("Init:ExitCode:{}", i64_at(t, "/exitCode")),
                    r => format!("Init:{r}"),
                };
            }
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                reason = format!("Init:{waiting_reason}");
            }
            None => reason = format!("Init:{i}/{}", init_specs.len()),
        }
        initializing = true;
        break;
    }

    if !initializing || condition_is_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for st in arr_at(pod, "/status/containerStatuses").iter().rev() {
            restarts += i64_at(st, "/restartCount");
            last_restart = last_restart.max(last_termination(st));
            let waiting_reason = str_at(st, "/state/waiting/reason");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = at(st, "/state/terminated") {
                reason = match str_at(t, "/reason") {
                    "" if i64_at(t, "/signal") != 0 => format!("Signal:{}", i64_at(t, "/signal")),
                    "" => format!("ExitCode:{}", i64_at(t, "/exitCode")),
                    r => r.to_string(),
                };
            } else if bool_at(st, "/ready") && at(st, "/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A finished container must not hide others still running.
        if reason == "Completed" && has_running {
            let pod_ready =
                conditions.iter().any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = at(pod, "/metadata/deletionTimestamp").is_some();
    if deleting && str_at(pod, "/status/reason") == NODE_UNREACHABLE_REASON {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", translate_since(Some(t), now)),
        _ => restarts.to_string(),
    };

    vec![
        s(name(pod)),
        s(format!("{ready}/{total}")),
        s(reason),
        s(restarts_cell),
        s(translate_since(time_at(pod, "/metadata/creationTimestamp"), now)),
        s(or_none(pod_ip(pod))),
        s(or_none(str_at(pod, "/spec/nodeName"))),
        s(or_none(str_at(pod, "/status/nominatedNodeName"))),
        s(readiness_gates(pod, conditions)),
    ]
}

/// When the container's previous run ended, if it had one.
fn last_termination(status: &Value) -> Option<Timestamp> {
    time_at(status, "/lastState/terminated/finishedAt")
}

/// Whether the first condition of type `kind` has status True.
fn condition_is_true(conditions: &[Value], kind: &str) -> bool {
    conditions.iter().find(|c| str_at(c, "/type") == kind).is_some_and(|c| str_at(c, "/status") == "True")
}

/// The primary pod IP as upstream's internal type holds it: `podIP` wins over
/// `podIPs[0]` when both are set (the v1-to-internal conversion does so).
fn pod_ip(pod: &Value) -> &str {
    match str_at(pod, "/status/podIP") {
        "" => arr_at(pod, "/status/podIPs").first().map_or("", |ip| str_at(ip, "/ip")),
        ip => ip,
    }
}

fn readiness_gates(pod: &Value, conditions: &[Value]) -> String {
    let gates = arr_at(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let passing = gates.iter().filter(|g| condition_is_true(conditions, str_at(g, "/conditionType"))).count();
    format!("{passing}/{}", gates.len())
}

fn or_none(v: &str) -> &str {
    if v.is_empty() { "<none>" } else { v }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::POD;
    use crate::kinds::testing::{headers, narrow_headers, render};

    /// A pod created five minutes before the tests' "now", with the given spec and status.
    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": "2024-05-01T11:55:00Z"},
            "spec": spec,
            "status": status,
        })
    }

    fn two_containers() -> Value {
        json!({"containers": [{"name": "app", "image": "nginx"}, {"name": "log", "image": "busybox"}]})
    }

    fn running(name: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts,
               "state": {"running": {"startedAt": "2024-05-01T11:56:00Z"}}})
    }

    #[test]
    fn columns_match_kubectl_get_pods() {
        assert_eq!(narrow_headers(&POD), ["Name", "Ready", "Status", "Restarts", "Age"]);
        assert_eq!(
            headers(&POD),
            ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
        );
    }

    #[test]
    fn status_ready_and_restarts_cells() {
        // (case, pod, READY, STATUS, RESTARTS)
        let cases: Vec<(&str, Value, &str, &str, &str)> = vec![
            (
                "running and ready",
                pod(
                    two_containers(),
                    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                           "containerStatuses": [running("app", true, 0), running("log", true, 0)]}),
                ),
                "2/2",
                "Running",
                "0",
            ),
            (
                "pending without statuses",
                pod(two_containers(), json!({"phase": "Pending"})),
                "0/2",
                "Pending",
                "0",
            ),
            (
                "waiting for image",
                pod(
                    two_containers(),
                    json!({"phase": "Pending", "containerStatuses": [
                        {"name": "app", "ready": false, "restartCount": 0,
                         "state": {"waiting": {"reason": "ContainerCreating"}}},
                        {"name": "log", "ready": false, "restartCount": 0,
                         "state": {"waiting": {"reason": "ErrImagePull"}}}]}),
                ),
                "0/2",
                "ContainerCreating",
                "0",
            ),
            (
                "crash loop with restarts and the last restart time",
                pod(
                    json!({"containers": [{"name": "app", "image": "app:1"}]}),
                    json!({"phase": "Running", "containerStatuses": [
                        {"name": "app", "ready": false, "restartCount": 4,
                         "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                         "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                                      "finishedAt": "2024-05-01T11:58:30Z"}}}]}),
                ),
                "0/1",
                "CrashLoopBackOff",
                "4 (90s ago)",
            ),
            (
                "restart time is the latest over all containers",
                pod(
                    two_containers(),
                    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                           "containerStatuses": [
                        {"name": "app", "ready": true, "restartCount": 1, "state": {"running": {}},
                         "lastState": {"terminated": {"exitCode": 137, "finishedAt": "2024-05-01T09:00:00Z"}}},
                        {"name": "log", "ready": true, "restartCount": 2, "state": {"running": {}},
                         "lastState": {"terminated": {"exitCode": 2, "finishedAt": "2024-05-01T11:57:00Z"}}}]}),
                ),
                "2/2",
                "Running",
                "3 (3m ago)",
            ),
            (
                "completed",
                pod(
                    json!({"containers": [{"name": "job"}]}),
                    json!({"phase": "Succeeded", "containerStatuses": [
                        {"name": "job", "ready": false, "restartCount": 0,
                         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
                ),
                "0/1",
                "Completed",
                "0",
            ),
            (
                "terminated without a reason shows the signal",
                pod(
                    json!({"containers": [{"name": "c"}]}),
                    json!({"phase": "Failed", "containerStatuses": [
                        {"name": "c", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
                ),
                "0/1",
                "Signal:9",
                "0",
            ),
            (
                "terminated without reason or signal shows the exit code",
                pod(
                    json!({"containers": [{"name": "c"}]}),
                    json!({"phase": "Failed", "containerStatuses": [
                        {"name": "c", "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}]}),
                ),
                "0/1",
                "ExitCode:3",
                "0",
            ),
            (
                "a completed container next to a running one, pod ready",
                pod(
                    two_containers(),
                    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                           "containerStatuses": [
                        {"name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                        running("log", true, 0)]}),
                ),
                "1/2",
                "Running",
                "0",
            ),
            (
                "a completed container next to a running one, pod not ready",
                pod(
                    two_containers(),
                    json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
                           "containerStatuses": [
                        {"name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                        running("log", true, 0)]}),
                ),
                "1/2",
                "NotReady",
                "0",
            ),
            (
                "the first container's state wins over later ones",
                pod(
                    two_containers(),
                    json!({"phase": "Failed", "containerStatuses": [
                        {"name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                        {"name": "log", "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
                ),
                "0/2",
                "Completed",
                "0",
            ),
            (
                "scheduling gated",
                pod(
                    two_containers(),
                    json!({"phase": "Pending", "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
                ),
                "0/2",
                "SchedulingGated",
                "0",
            ),
            (
                "evicted: the pod's reason",
                pod(
                    json!({"containers": [{"name": "c"}]}),
                    json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}),
                ),
                "0/1",
                "Evicted",
                "0",
            ),
        ];
        for (case, obj, ready, status, restarts) in cases {
            let cells = render(&POD, &obj);
            assert_eq!(cells[0], json!("web-0"), "{case}");
            assert_eq!(cells[1], json!(ready), "{case}: READY");
            assert_eq!(cells[2], json!(status), "{case}: STATUS");
            assert_eq!(cells[3], json!(restarts), "{case}: RESTARTS");
            assert_eq!(cells[4], json!("5m"), "{case}: AGE");
        }
    }

    #[test]
    fn init_container_progress_and_failures() {
        let spec = json!({"initContainers": [{"name": "migrate"}, {"name": "warm"}], "containers": [{"name": "app"}]});
        let waiting_app =
            json!([{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]);
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            (
                "first init container running",
                json!([{"name": "migrate", "restartCount": 0, "state": {"running": {}}},
                       {"name": "warm", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]),
                "Init:0/2",
                "0",
            ),
            (
                "second init container running",
                json!([{"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                       {"name": "warm", "restartCount": 0, "state": {"running": {}}}]),
                "Init:1/2",
                "0",
            ),
            (
                "init container failed",
                json!([{"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}},
                       {"name": "warm", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]),
                "Init:Error",
                "0",
            ),
            (
                "init container crash looping, restarts count init containers",
                json!([{"name": "migrate", "restartCount": 3,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-05-01T11:59:00Z"}}},
                       {"name": "warm", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]),
                "Init:CrashLoopBackOff",
                "3 (60s ago)",
            ),
            (
                "init container killed by a signal",
                json!([{"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 143, "signal": 15}}}]),
                "Init:Signal:15",
                "0",
            ),
            (
                "init container exit code without reason",
                json!([{"name": "migrate", "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}]),
                "Init:ExitCode:2",
                "0",
            ),
        ];
        for (case, init_statuses, status, restarts) in cases {
            let obj = pod(
                spec.clone(),
                json!({"phase": "Pending", "initContainerStatuses": init_statuses, "containerStatuses": waiting_app}),
            );
            let cells = render(&POD, &obj);
            assert_eq!(cells[1], json!("0/1"), "{case}: READY");
            assert_eq!(cells[2], json!(status), "{case}: STATUS");
            assert_eq!(cells[3], json!(restarts), "{case}: RESTARTS");
        }
    }

    #[test]
    fn init_containers_done_hand_over_to_app_containers() {
        let obj = pod(
            json!({"initContainers": [{"name": "migrate"}], "containers": [{"name": "app"}]}),
            json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                   "initContainerStatuses": [{"name": "migrate", "restartCount": 1,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:56:00Z"}}}],
                   "containerStatuses": [running("app", true, 0)]}),
        );
        // Restarts of ordinary init containers no longer count once initialized.
        let cells = render(&POD, &obj);
        assert_eq!((&cells[1], &cells[2], &cells[3]), (&json!("1/1"), &json!("Running"), &json!("0")));
    }

    #[test]
    fn sidecars_count_in_ready_and_restarts() {
        let spec = json!({
            "initContainers": [{"name": "proxy", "restartPolicy": "Always"}, {"name": "setup"}],
            "containers": [{"name": "app"}]
        });
        let initializing = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "proxy", "ready": true, "started": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "setup", "ready": false, "restartCount": 0, "state": {"running": {}}}],
                "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        let cells = render(&POD, &initializing);
        assert_eq!((&cells[1], &cells[2]), (&json!("1/2"), &json!("Init:1/2")));

        let sidecar_not_started = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "proxy", "ready": false, "started": false, "restartCount": 0, "state": {"running": {}}},
                {"name": "setup", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        assert_eq!(render(&POD, &sidecar_not_started)[2], json!("Init:0/2"));

        let running_pod = pod(
            spec,
            json!({"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "proxy", "ready": true, "started": true, "restartCount": 2, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T10:00:00Z"}}},
                    {"name": "setup", "ready": false, "restartCount": 1,
                     "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                     "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:00Z"}}}],
                "containerStatuses": [running("app", true, 1)]}),
        );
        // The sidecar's restarts and restart time count; the plain init container's do not.
        let cells = render(&POD, &running_pod);
        assert_eq!(
            (&cells[1], &cells[2], &cells[3]),
            (&json!("2/2"), &json!("Running"), &json!("3 (120m ago)"))
        );
    }

    #[test]
    fn crashing_sidecar_after_initialization_keeps_its_init_reason_and_counts_restarts() {
        let obj = pod(
            json!({"initContainers": [{"name": "proxy", "restartPolicy": "Always"}], "containers": [{"name": "app"}]}),
            json!({"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "False"}],
                "initContainerStatuses": [{"name": "proxy", "ready": false, "started": false, "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:10Z"}}}],
                "containerStatuses": [running("app", true, 0)]}),
        );
        let cells = render(&POD, &obj);
        // Running app containers do not overwrite the reason; only waiting or terminated ones would.
        assert_eq!(
            (&cells[1], &cells[2], &cells[3]),
            (&json!("1/2"), &json!("Init:CrashLoopBackOff"), &json!("5 (50s ago)"))
        );
    }

    #[test]
    fn deletion_shows_terminating_unknown_or_the_final_phase() {
        let mut terminating = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Running", "containerStatuses": [running("app", true, 0)]}),
        );
        terminating["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:50Z");
        assert_eq!(render(&POD, &terminating)[2], json!("Terminating"));

        let mut node_lost = terminating.clone();
        node_lost["status"]["reason"] = json!("NodeLost");
        assert_eq!(render(&POD, &node_lost)[2], json!("Unknown"));

        let mut finished = terminating.clone();
        finished["status"] = json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]});
        assert_eq!(render(&POD, &finished)[2], json!("Completed"));
    }

    #[test]
    fn wide_cells() {
        let mut obj = pod(
            json!({"containers": [{"name": "app"}], "nodeName": "node-1",
                   "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]}),
            json!({"phase": "Running", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00::7"}],
                   "conditions": [{"type": "example.com/lb", "status": "True"}, {"type": "example.com/dns", "status": "False"}]}),
        );
        assert_eq!(
            render(&POD, &obj)[5..],
            [json!("10.244.1.7"), json!("node-1"), json!("<none>"), json!("1/2")]
        );

        obj["spec"] = json!({"containers": [{"name": "app"}]});
        obj["status"] =
            json!({"phase": "Pending", "nominatedNodeName": "node-2", "podIPs": [{"ip": "fd00::9"}]});
        assert_eq!(
            render(&POD, &obj)[5..],
            [json!("fd00::9"), json!("<none>"), json!("node-2"), json!("<none>")]
        );
    }

    #[test]
    fn missing_creation_time_is_unknown_and_future_is_invalid() {
        let mut obj = pod(json!({"containers": []}), json!({}));
        obj["metadata"]["creationTimestamp"] = Value::Null;
        assert_eq!(render(&POD, &obj)[4], json!("<unknown>"));
        obj["metadata"]["creationTimestamp"] = json!("2024-05-01T12:01:00Z");
        assert_eq!(render(&POD, &obj)[4], json!("<invalid>"));
    }
}
