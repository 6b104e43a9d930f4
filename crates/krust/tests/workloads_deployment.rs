//! End-to-end: Deployments, ReplicaSets and ReplicationControllers driven by the real
//! kubectl against the real `krust server` — create, scale, set image, rollout history,
//! undo, pause/resume, restart, adoption, failures, garbage collection, and (with
//! simulated nodes, whose pods become Ready) `kubectl rollout status` to the end.

mod common;

use std::time::Duration;

use common::Cluster;

const WAIT: Duration = Duration::from_secs(60);

fn get(c: &Cluster, what: &[&str], jsonpath: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let jp = format!("jsonpath={jsonpath}");
    args.extend_from_slice(&["-o", &jp]);
    let out = c.kubectl(&args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names of the ReplicaSets matching a label selector, sorted.
fn replica_sets(c: &Cluster, selector: &str) -> Vec<String> {
    let mut v: Vec<String> = get(c, &["rs", "-l", selector], "{.items[*].metadata.name}")
        .split_whitespace()
        .map(String::from)
        .collect();
    v.sort();
    v
}

fn pod_count(c: &Cluster, selector: &str) -> usize {
    get(c, &["pods", "-l", selector], "{.items[*].metadata.name}").split_whitespace().count()
}

fn wait_for(c: &Cluster, what: &str, mut f: impl FnMut() -> bool) {
    assert!(c.eventually(WAIT, &mut f), "timed out waiting for {what}; server log:\n{}", c.log());
}

fn annotation(c: &Cluster, what: &[&str], key: &str) -> String {
    get(c, what, &format!("{{.metadata.annotations.{}}}", key.replace('.', "\\.")))
}

#[test]
fn create_deployment_makes_a_replica_set_named_by_its_template_hash_with_pods() {
    let c = Cluster::start();
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=3"]);
    wait_for(&c, "a replica set", || replica_sets(&c, "app=web").len() == 1);
    let rs = replica_sets(&c, "app=web").remove(0);
    let hash = get(&c, &["rs", &rs], "{.metadata.labels.pod-template-hash}");
    assert_eq!(rs, format!("web-{hash}"));
    assert!(
        !hash.is_empty() && hash.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit()),
        "{hash}"
    );
    assert_eq!(get(&c, &["rs", &rs], "{.spec.selector.matchLabels.pod-template-hash}"), hash);
    assert_eq!(get(&c, &["rs", &rs], "{.spec.template.metadata.labels.pod-template-hash}"), hash);
    assert_eq!(get(&c, &["rs", &rs], "{.metadata.ownerReferences[0].kind}"), "Deployment");
    assert_eq!(get(&c, &["rs", &rs], "{.metadata.ownerReferences[0].blockOwnerDeletion}"), "true");
    assert_eq!(annotation(&c, &["rs", &rs], "deployment.kubernetes.io/revision"), "1");
    assert_eq!(annotation(&c, &["rs", &rs], "deployment.kubernetes.io/desired-replicas"), "3");
    assert_eq!(annotation(&c, &["rs", &rs], "deployment.kubernetes.io/max-replicas"), "4");

    wait_for(&c, "three pods", || pod_count(&c, "app=web") == 3);
    let owners = get(&c, &["pods", "-l", "app=web"], "{.items[*].metadata.ownerReferences[0].name}");
    assert!(owners.split_whitespace().all(|o| o == rs), "{owners}");
    let names = get(&c, &["pods", "-l", "app=web"], "{.items[*].metadata.name}");
    assert!(names.split_whitespace().all(|n| n.starts_with(&format!("{rs}-"))), "{names}");

    wait_for(&c, "the revision on the deployment", || {
        annotation(&c, &["deploy", "web"], "deployment.kubernetes.io/revision") == "1"
    });
    wait_for(&c, "status", || get(&c, &["deploy", "web"], "{.status.replicas}") == "3");
    assert_eq!(get(&c, &["deploy", "web"], "{.status.updatedReplicas}"), "3");
    assert_eq!(get(&c, &["deploy", "web"], "{.status.unavailableReplicas}"), "3");
    let describe = c.ok(&["describe", "deploy", "web"]);
    assert!(describe.contains(&format!("Scaled up replica set {rs} from 0 to 3")), "{describe}");
    assert!(
        describe.contains("NewReplicaSetCreated") || describe.contains("ReplicaSetUpdated"),
        "{describe}"
    );
    let describe_rs = c.ok(&["describe", "rs", &rs]);
    assert!(
        describe_rs.contains("SuccessfulCreate") && describe_rs.contains("Created pod: "),
        "{describe_rs}"
    );
}

#[test]
fn scaling_a_deployment_resizes_its_replica_set() {
    let c = Cluster::start();
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    wait_for(&c, "two pods", || pod_count(&c, "app=web") == 2);
    c.ok(&["scale", "deploy/web", "--replicas=5"]);
    wait_for(&c, "five pods", || pod_count(&c, "app=web") == 5);
    let rs = replica_sets(&c, "app=web").remove(0);
    assert_eq!(annotation(&c, &["rs", &rs], "deployment.kubernetes.io/desired-replicas"), "5");
    c.ok(&["scale", "deploy/web", "--replicas=1"]);
    wait_for(&c, "one pod", || pod_count(&c, "app=web") == 1);
    assert_eq!(get(&c, &["rs", &rs], "{.spec.replicas}"), "1");
    let describe = c.ok(&["describe", "deploy", "web"]);
    assert!(describe.contains(&format!("Scaled up replica set {rs} from 2 to 5")), "{describe}");
    assert!(describe.contains(&format!("Scaled down replica set {rs} from 5 to 1")), "{describe}");
    let describe_rs = c.ok(&["describe", "rs", &rs]);
    assert!(
        describe_rs.contains("SuccessfulDelete") && describe_rs.contains("Deleted pod: "),
        "{describe_rs}"
    );
}

#[test]
fn set_image_starts_a_revision_that_history_lists_and_undo_reuses_the_old_replica_set() {
    let c = Cluster::start();
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    wait_for(&c, "a replica set", || replica_sets(&c, "app=web").len() == 1);
    let first = replica_sets(&c, "app=web").remove(0);
    c.ok(&["annotate", "deploy/web", "kubernetes.io/change-cause=upgrade to 1.27"]);
    c.ok(&["set", "image", "deploy/web", "nginx=nginx:1.27"]);
    wait_for(&c, "a second replica set", || replica_sets(&c, "app=web").len() == 2);
    let second = replica_sets(&c, "app=web").into_iter().find(|n| *n != first).unwrap();
    assert_eq!(annotation(&c, &["rs", &second], "deployment.kubernetes.io/revision"), "2");
    assert_eq!(annotation(&c, &["rs", &second], "kubernetes.io/change-cause"), "upgrade to 1.27");
    wait_for(&c, "revision 2 on the deployment", || {
        annotation(&c, &["deploy", "web"], "deployment.kubernetes.io/revision") == "2"
    });
    let history = c.ok(&["rollout", "history", "deploy/web"]);
    assert!(history.contains("REVISION  CHANGE-CAUSE"), "{history}");
    assert!(history.lines().any(|l| l.split_whitespace().next() == Some("1")), "{history}");
    assert!(history.contains("2         upgrade to 1.27"), "{history}");
    let rev2 = c.ok(&["rollout", "history", "deploy/web", "--revision=2"]);
    assert!(rev2.contains("nginx:1.27"), "{rev2}");

    let undo = c.ok(&["rollout", "undo", "deploy/web"]);
    assert!(undo.contains("rolled back"), "{undo}");
    assert_eq!(get(&c, &["deploy", "web"], "{.spec.template.spec.containers[0].image}"), "nginx");
    wait_for(&c, "the first replica set to become revision 3", || {
        annotation(&c, &["rs", &first], "deployment.kubernetes.io/revision") == "3"
    });
    assert_eq!(annotation(&c, &["rs", &first], "deployment.kubernetes.io/revision-history"), "1");
    assert_eq!(replica_sets(&c, "app=web").len(), 2, "no third replica set for an old template");
    wait_for(&c, "revision 3 on the deployment", || {
        annotation(&c, &["deploy", "web"], "deployment.kubernetes.io/revision") == "3"
    });
    let history = c.ok(&["rollout", "history", "deploy/web"]);
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, vec!["2", "3"], "{history}");
}

#[test]
fn a_paused_deployment_rolls_out_only_after_resume_and_restart_makes_a_new_revision() {
    let c = Cluster::start();
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=1"]);
    wait_for(&c, "a replica set", || replica_sets(&c, "app=web").len() == 1);
    c.ok(&["rollout", "pause", "deploy/web"]);
    c.ok(&["set", "image", "deploy/web", "nginx=nginx:2"]);
    wait_for(&c, "the paused condition", || {
        get(&c, &["deploy", "web"], "{.status.conditions[?(@.type==\"Progressing\")].reason}")
            == "DeploymentPaused"
    });
    assert_eq!(
        get(&c, &["deploy", "web"], "{.status.conditions[?(@.type==\"Progressing\")].status}"),
        "Unknown"
    );
    assert_eq!(replica_sets(&c, "app=web").len(), 1, "nothing rolls out while paused");
    c.ok(&["rollout", "resume", "deploy/web"]);
    wait_for(&c, "the rollout after resume", || replica_sets(&c, "app=web").len() == 2);
    wait_for(&c, "the resumed condition to pass", || {
        get(&c, &["deploy", "web"], "{.status.conditions[?(@.type==\"Progressing\")].reason}")
            != "DeploymentPaused"
    });

    c.ok(&["rollout", "restart", "deploy/web"]);
    let restarted = get(&c, &["deploy", "web"], "{.spec.template.metadata.annotations}");
    assert!(restarted.contains("kubectl.kubernetes.io/restartedAt"), "{restarted}");
    wait_for(&c, "a replica set for the restart", || replica_sets(&c, "app=web").len() == 3);
}

const RS_AND_RC: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: front}
spec:
  replicas: 2
  selector: {matchLabels: {app: front}}
  template:
    metadata: {labels: {app: front, tier: web}}
    spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: legacy}
spec:
  replicas: 2
  selector: {app: legacy}
  template:
    metadata: {labels: {app: legacy}}
    spec: {containers: [{name: c, image: nginx}]}
"#;

#[test]
fn replica_sets_and_replication_controllers_keep_their_pod_count() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], RS_AND_RC);
    wait_for(&c, "replica set pods", || pod_count(&c, "app=front") == 2);
    wait_for(&c, "replication controller pods", || pod_count(&c, "app=legacy") == 2);
    let names = get(&c, &["pods", "-l", "app=legacy"], "{.items[*].metadata.name}");
    assert!(names.split_whitespace().all(|n| n.starts_with("legacy-")), "{names}");
    assert_eq!(
        get(&c, &["pods", "-l", "app=legacy"], "{.items[0].metadata.ownerReferences[0].kind}"),
        "ReplicationController"
    );
    wait_for(&c, "replica set status", || {
        get(
            &c,
            &["rs", "front"],
            "{.status.replicas}/{.status.fullyLabeledReplicas}/{.status.observedGeneration}",
        ) == "2/2/1"
    });
    wait_for(&c, "replication controller status", || get(&c, &["rc", "legacy"], "{.status.replicas}") == "2");

    let victim = get(&c, &["pods", "-l", "app=front"], "{.items[0].metadata.name}");
    c.ok(&["delete", "pod", &victim, "--wait=false"]);
    wait_for(&c, "a replacement pod", || {
        let names = get(&c, &["pods", "-l", "app=front"], "{.items[*].metadata.name}");
        names.split_whitespace().count() == 2 && !names.split_whitespace().any(|n| n == victim)
    });
    let describe = c.ok(&["describe", "rc", "legacy"]);
    assert!(
        describe.contains("replication-controller") && describe.contains("Created pod: legacy-"),
        "{describe}"
    );
}

#[test]
fn a_replica_set_adopts_matching_orphans_and_releases_relabelled_pods() {
    let c = Cluster::start();
    c.ok(&["run", "stray", "--image=nginx", "--labels=app=front,tier=web"]);
    c.ok_stdin(&["apply", "-f", "-"], RS_AND_RC);
    wait_for(&c, "the orphan to be adopted", || {
        get(&c, &["pod", "stray"], "{.metadata.ownerReferences[0].name}") == "front"
    });
    assert_eq!(get(&c, &["pod", "stray"], "{.metadata.ownerReferences[0].controller}"), "true");
    wait_for(&c, "two pods in all", || pod_count(&c, "app=front") == 2);
    c.ok(&["label", "pod", "stray", "app=debug", "--overwrite"]);
    wait_for(&c, "the relabelled pod to be released", || {
        get(&c, &["pod", "stray"], "{.metadata.ownerReferences[*].name}").is_empty()
    });
    wait_for(&c, "a replacement", || pod_count(&c, "app=front") == 2);
}

#[test]
fn a_replica_set_that_cannot_create_pods_reports_replica_failure() {
    let c = Cluster::start();
    c.ok(&["create", "quota", "none", "--hard=pods=0"]);
    c.ok_stdin(&["apply", "-f", "-"], RS_AND_RC);
    wait_for(&c, "the ReplicaFailure condition", || {
        get(&c, &["rs", "front"], "{.status.conditions[?(@.type==\"ReplicaFailure\")].reason}")
            == "FailedCreate"
    });
    let describe = c.ok(&["describe", "rs", "front"]);
    assert!(describe.contains("FailedCreate") && describe.contains("Error creating: "), "{describe}");
    c.ok(&["delete", "quota", "none"]);
    wait_for(&c, "pods once the quota is gone", || pod_count(&c, "app=front") == 2);
    wait_for(&c, "the condition to clear", || {
        get(&c, &["rs", "front"], "{.status.conditions[?(@.type==\"ReplicaFailure\")].reason}").is_empty()
    });
}

#[test]
fn deleting_a_deployment_removes_its_replica_sets_and_pods() {
    let c = Cluster::start();
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=2"]);
    wait_for(&c, "pods", || pod_count(&c, "app=web") == 2);
    c.ok(&["delete", "deployment", "web"]);
    wait_for(&c, "the replica set to go", || replica_sets(&c, "app=web").is_empty());
    wait_for(&c, "the pods to go", || pod_count(&c, "app=web") == 0);
}

// ----- with simulated nodes: pods are scheduled and become Ready ------------------------

fn sim_cluster() -> Cluster {
    Cluster::start_with(&["--sim-nodes", "3"])
}

#[test]
fn rollout_status_follows_a_rolling_update_to_the_end_on_sim_nodes() {
    let c = sim_cluster();
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=3"]);
    let status = c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(status.contains("deployment \"web\" successfully rolled out"), "{status}");
    assert_eq!(get(&c, &["deploy", "web"], "{.status.availableReplicas}"), "3");
    assert_eq!(
        get(&c, &["deploy", "web"], "{.status.conditions[?(@.type==\"Available\")].reason}"),
        "MinimumReplicasAvailable"
    );
    assert_eq!(
        get(&c, &["deploy", "web"], "{.status.conditions[?(@.type==\"Progressing\")].reason}"),
        "NewReplicaSetAvailable"
    );

    c.ok(&["set", "image", "deploy/web", "nginx=nginx:1.27"]);
    let status = c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(status.contains("deployment \"web\" successfully rolled out"), "{status}");
    let rss = replica_sets(&c, "app=web");
    assert_eq!(rss.len(), 2);
    let sizes = get(&c, &["rs", "-l", "app=web"], "{.items[*].spec.replicas}");
    let mut sizes: Vec<&str> = sizes.split_whitespace().collect();
    sizes.sort();
    assert_eq!(sizes, vec!["0", "3"]);
    let describe = c.ok(&["describe", "deploy", "web"]);
    assert!(describe.contains("Scaled down replica set"), "{describe}");
    assert!(describe.contains("NewReplicaSetAvailable"), "{describe}");

    c.ok(&["rollout", "undo", "deploy/web"]);
    let status = c.ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_eq!(replica_sets(&c, "app=web").len(), 2);
    assert_eq!(get(&c, &["deploy", "web"], "{.status.updatedReplicas}/{.status.replicas}"), "3/3");
}

const RECREATE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: rec}
spec:
  replicas: 2
  strategy: {type: Recreate}
  selector: {matchLabels: {app: rec}}
  template:
    metadata: {labels: {app: rec}}
    spec: {containers: [{name: c, image: nginx}]}
"#;

#[test]
fn recreate_replaces_every_pod_on_sim_nodes() {
    let c = sim_cluster();
    c.ok_stdin(&["apply", "-f", "-"], RECREATE);
    c.ok(&["rollout", "status", "deploy/rec", "--timeout=60s"]);
    c.ok(&["set", "image", "deploy/rec", "c=nginx:2"]);
    let status = c.ok(&["rollout", "status", "deploy/rec", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let rss = replica_sets(&c, "app=rec");
    assert_eq!(rss.len(), 2);
    let describe = c.ok(&["describe", "deploy", "rec"]);
    for rs in &rss {
        assert!(describe.contains(&format!("Scaled up replica set {rs} from 0 to 2")), "{describe}");
    }
    assert!(describe.contains("from 2 to 0"), "the old replica set went to zero: {describe}");
    assert_eq!(get(&c, &["deploy", "rec"], "{.status.updatedReplicas}/{.status.availableReplicas}"), "2/2");
}
