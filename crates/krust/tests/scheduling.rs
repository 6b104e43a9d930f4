//! End-to-end: the scheduler places pods on simulated nodes and says why it cannot.

mod common;

use std::time::Duration;

use common::Cluster;

#[test]
fn a_pod_is_assigned_to_a_node_and_described_as_scheduled() {
    let c = Cluster::start_with(&["--sim-nodes", "2"]);
    c.ok(&["run", "web", "--image=busybox", "--restart=Always"]);
    assert!(
        c.eventually(Duration::from_secs(30), || {
            c.ok(&["get", "pod", "web", "-o", "jsonpath={.status.phase}"]) == "Running"
        }),
        "the pod runs on a simulated node"
    );
    let node = c.ok(&["get", "pod", "web", "-o", "jsonpath={.spec.nodeName}"]);
    assert!(node.starts_with("sim-"), "{node}");
    let described = c.ok(&["describe", "pod", "web"]);
    assert!(described.contains(&format!("Successfully assigned default/web to {node}")), "{described}");
}

#[test]
fn a_pod_no_node_can_hold_stays_pending_with_a_failed_scheduling_event() {
    let c = Cluster::start_with(&["--sim-nodes", "2"]);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: huge}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: {requests: {cpu: \"500\"}}\n";
    c.ok_stdin(&["apply", "-f", "-"], pod);
    assert!(
        c.eventually(Duration::from_secs(30), || {
            c.ok(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=huge,reason=FailedScheduling",
                "-o",
                "name",
            ])
            .contains("event")
        }),
        "a FailedScheduling event is recorded"
    );
    assert_eq!(c.ok(&["get", "pod", "huge", "-o", "jsonpath={.status.phase}"]), "Pending");
    let cond = c.ok(&[
        "get",
        "pod",
        "huge",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}",
    ]);
    assert_eq!(cond, "Unschedulable");
    let described = c.ok(&["describe", "pod", "huge"]);
    assert!(described.contains("0/2 nodes are available: 2 Insufficient cpu"), "{described}");
}
