//! The pod statuses a simulated kubelet writes: running (containers started and ready,
//! pod IP assigned) and succeeded (containers exited 0).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Value, json};

/// Pods that run to completion: restartPolicy OnFailure or Never (Job pods).
pub fn pod_is_job_like(pod: &Pod) -> bool {
    matches!(pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()), Some("Never") | Some("OnFailure"))
}

/// The pod IP for a pod on node `index`: the lowest host number in `10.42.<index>.0/24`
/// not in `used` (host numbers already taken on that node).
pub fn pod_ip(index: usize, _pod: &Pod, used: &BTreeSet<String>) -> String {
    for host in 2..255u32 {
        let ip = format!("10.42.{}.{host}", index % 256);
        if !used.contains(&ip) {
            return ip;
        }
    }
    format!("10.42.{}.254", index % 256)
}

fn ts(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn container_id(pod: &Pod, c: &Container) -> String {
    format!("sim://{}-{}", pod.metadata.uid.as_deref().unwrap_or(""), c.name)
}

fn image_id(c: &Container) -> String {
    format!("sim-image://{}", c.image.as_deref().unwrap_or(""))
}

fn conditions(now: &str, ready: bool, reason: Option<&str>) -> Value {
    let ready_s = if ready { "True" } else { "False" };
    let mut ready_cond =
        json!({"type": "Ready", "status": ready_s, "lastProbeTime": null, "lastTransitionTime": now});
    let mut cready = json!({"type": "ContainersReady", "status": ready_s, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        ready_cond["reason"] = json!(r);
        cready["reason"] = json!(r);
    }
    json!([
        {"type": "PodReadyToStartContainers", "status": if ready { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
        ready_cond,
        cready,
        {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now},
    ])
}

fn init_statuses(pod: &Pod, now: &str) -> Vec<Value> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.init_containers
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let state = if sidecar {
                json!({"running": {"startedAt": now}})
            } else {
                json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now,
                    "containerID": container_id(pod, c)}})
            };
            json!({"name": c.name, "image": c.image, "imageID": image_id(c), "containerID": container_id(pod, c),
                "ready": sidecar, "started": sidecar, "restartCount": 0, "state": state, "lastState": {}})
        })
        .collect()
}

/// The status patch that moves a pod to Running and Ready.
pub fn running(pod: &Pod, now: jiff::Timestamp, ip: &str, host_ip: &str) -> Value {
    let now = ts(now);
    let spec = pod.spec.clone().unwrap_or_default();
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            json!({"name": c.name, "image": c.image, "imageID": image_id(c), "containerID": container_id(pod, c),
                "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": now}},
                "lastState": {}})
        })
        .collect();
    let mut status = json!({
        "phase": "Running",
        "conditions": conditions(&now, true, None),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "containerStatuses": containers,
    });
    let inits = init_statuses(pod, &now);
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(inits);
    }
    json!({"status": status})
}

/// The status patch that marks a run-to-completion pod Succeeded.
pub fn succeeded(pod: &Pod, now: jiff::Timestamp) -> Value {
    let now_s = ts(now);
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| ts(t.0))
        .unwrap_or_else(|| now_s.clone());
    let spec = pod.spec.clone().unwrap_or_default();
    let containers: Vec<Value> = spec
        .containers
        .iter()
        .map(|c| {
            json!({"name": c.name, "image": c.image, "imageID": image_id(c), "containerID": container_id(pod, c),
                "ready": false, "started": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                    "finishedAt": now_s, "containerID": container_id(pod, c)}},
                "lastState": {}})
        })
        .collect();
    json!({"status": {
        "phase": "Succeeded",
        "conditions": conditions(&now_s, false, Some("PodCompleted")),
        "containerStatuses": containers,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(restart: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u1"},
            "spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "busybox"}]}}))
        .unwrap()
    }

    #[test]
    fn job_pods_are_those_that_do_not_restart_always() {
        assert!(pod_is_job_like(&pod("Never")));
        assert!(pod_is_job_like(&pod("OnFailure")));
        assert!(!pod_is_job_like(&pod("Always")));
    }

    #[test]
    fn pod_ips_skip_the_ones_in_use() {
        let used: BTreeSet<String> = ["10.42.3.2".to_string(), "10.42.3.3".to_string()].into();
        assert_eq!(pod_ip(3, &pod("Always"), &used), "10.42.3.4");
    }

    #[test]
    fn a_running_pod_is_ready_with_its_ip_and_container_states() {
        let s = running(&pod("Always"), jiff::Timestamp::UNIX_EPOCH, "10.42.0.2", "10.41.0.1");
        assert_eq!(s["status"]["phase"], "Running");
        assert_eq!(s["status"]["podIP"], "10.42.0.2");
        assert_eq!(s["status"]["containerStatuses"][0]["ready"], true);
        assert!(s["status"]["containerStatuses"][0]["state"]["running"].is_object());
        let ready =
            s["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True");
    }
}
