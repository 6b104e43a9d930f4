//! End-to-end: cluster operations with the real kubectl against the real `krust server`:
//! volume binding and local-path provisioning, PodDisruptionBudget status and `kubectl
//! drain`, ResourceQuota usage, `kubectl cordon`/`uncordon`, and node heartbeat expiry
//! with taint-based eviction on simulated nodes (`--sim-nodes`, `krust sim`).
//!
//! Pods on hand-made Nodes are made Ready here by patching their status, as a kubelet
//! would; such Nodes never heartbeat, so those tests finish well within the 60s the node
//! lifecycle controller grants a node that never posted its status.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Cluster;

const WAIT: Duration = Duration::from_secs(60);

fn get(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let template = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &template]);
    String::from_utf8_lossy(&c.kubectl(&args).stdout).into_owned()
}

fn wait_for(c: &Cluster, what: &[&str], path: &str, want: &str) {
    let ok = c.eventually(WAIT, || get(c, what, path) == want);
    assert!(ok, "{what:?} {path}: wanted {want:?}, have {:?}\n{}", get(c, what, path), c.log());
}

const NODE: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: n1
  labels: {kubernetes.io/hostname: n1}
"#;

/// A pod bound to `n1` with label app=web, made Ready as a kubelet would.
fn ready_pod(c: &Cluster, name: &str) {
    let pod = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: web}}}}
spec:
  nodeName: n1
  containers: [{{name: app, image: "nginx:1.25"}}]
"#
    );
    c.ok_stdin(&["apply", "-f", "-"], &pod);
    c.ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
}

#[test]
fn a_claim_binds_to_a_matching_volume_and_releases_it_when_deleted() {
    let c = Cluster::start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: small}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /data/small}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: big}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {path: /data/big}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 500Mi}}
"#,
    );
    wait_for(&c, &["pvc", "data"], "{.status.phase}", "Bound");
    assert_eq!(get(&c, &["pvc", "data"], "{.spec.volumeName} {.status.capacity.storage}"), "small 1Gi");
    assert_eq!(
        get(
            &c,
            &["pvc", "data"],
            "{.metadata.annotations.pv\\.kubernetes\\.io/bind-completed} {.metadata.annotations.pv\\.kubernetes\\.io/bound-by-controller}"
        ),
        "yes yes"
    );
    wait_for(&c, &["pv", "small"], "{.status.phase}", "Bound");
    assert_eq!(get(&c, &["pv", "small"], "{.spec.claimRef.namespace}/{.spec.claimRef.name}"), "default/data");
    wait_for(&c, &["pv", "big"], "{.status.phase}", "Available");
    let table = c.ok(&["get", "pv", "small"]);
    assert!(table.contains("Bound") && table.contains("default/data") && table.contains("manual"), "{table}");

    c.ok(&["delete", "pvc", "data"]);
    wait_for(&c, &["pv", "small"], "{.status.phase}", "Released");
    // Retained: the volume stays, still naming its old claim.
    assert_eq!(get(&c, &["pv", "small"], "{.spec.claimRef.name}"), "data");
}

#[test]
fn a_claim_of_the_default_class_is_provisioned_on_the_node_of_its_pod() {
    let c = Cluster::start();
    wait_for(
        &c,
        &["storageclass", "local-path"],
        "{.provisioner} {.volumeBindingMode} {.reclaimPolicy}",
        "rancher.io/local-path WaitForFirstConsumer Delete",
    );
    let classes = c.ok(&["get", "storageclass"]);
    assert!(classes.contains("local-path (default)"), "{classes}");
    c.ok_stdin(&["apply", "-f", "-"], NODE);
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
"#,
    );
    wait_for(&c, &["pvc", "data"], "{.spec.storageClassName}", "local-path");
    let ok = c.eventually(WAIT, || {
        c.ok(&["get", "events", "--field-selector", "involvedObject.name=data"])
            .contains("WaitForFirstConsumer")
    });
    assert!(ok, "{}", c.ok(&["get", "events"]));
    assert_eq!(get(&c, &["pvc", "data"], "{.status.phase}"), "Pending");

    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  nodeName: n1
  containers: [{name: app, image: "nginx:1.25"}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
"#,
    );
    wait_for(&c, &["pvc", "data"], "{.status.phase}", "Bound");
    let uid = get(&c, &["pvc", "data"], "{.metadata.uid}");
    let pv = format!("pvc-{uid}");
    assert_eq!(get(&c, &["pvc", "data"], "{.spec.volumeName}"), pv);
    assert_eq!(
        get(
            &c,
            &["pvc", "data"],
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node} {.metadata.annotations.volume\\.kubernetes\\.io/storage-provisioner}"
        ),
        "n1 rancher.io/local-path"
    );
    let path = get(&c, &["pv", &pv], "{.spec.local.path}");
    assert!(path.ends_with(&format!("/storage/{pv}_default_data")), "{path}");
    assert_eq!(
        get(
            &c,
            &["pv", &pv],
            "{.spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]} {.spec.capacity.storage} {.metadata.annotations.pv\\.kubernetes\\.io/provisioned-by}"
        ),
        "n1 2Gi rancher.io/local-path"
    );
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=data"]);
    for reason in ["ExternalProvisioning", "Provisioning", "ProvisioningSucceeded"] {
        assert!(events.contains(reason), "{reason} missing:\n{events}");
    }

    // Reclaim policy Delete: the volume goes with its claim.
    c.ok(&["delete", "pod", "app", "--grace-period=0", "--force"]);
    c.ok(&["delete", "pvc", "data"]);
    let gone = c.eventually(WAIT, || !c.kubectl(&["get", "pv", &pv]).status.success());
    assert!(gone, "{}", c.ok(&["get", "pv", "-o", "yaml"]));
}

#[test]
fn a_disruption_budget_reports_its_pods_and_guards_evictions() {
    let c = Cluster::start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
"#,
    );
    wait_for(
        &c,
        &["pdb", "web"],
        "{.status.expectedPods} {.status.desiredHealthy} {.status.disruptionsAllowed} {.status.conditions[0].reason}",
        "0 1 0 InsufficientPods",
    );
    c.ok_stdin(&["apply", "-f", "-"], NODE);
    ready_pod(&c, "web-1");
    ready_pod(&c, "web-2");
    wait_for(
        &c,
        &["pdb", "web"],
        "{.status.expectedPods} {.status.currentHealthy} {.status.desiredHealthy} {.status.disruptionsAllowed} {.status.conditions[0].status} {.status.conditions[0].reason}",
        "2 2 1 1 True SufficientPods",
    );
    let table = c.ok(&["get", "pdb"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "1", "N/A", "1"], "{table}");

    // One disruption allowed: an eviction goes through and the budget is used up.
    let evict = |pod: &str| {
        let body = format!(
            r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}},"deleteOptions":{{"gracePeriodSeconds":0}}}}"#
        );
        let path = format!("/api/v1/namespaces/default/pods/{pod}/eviction");
        c.kubectl_stdin(&["create", "--raw", &path, "-f", "-"], &body)
    };
    let out = evict("web-1");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for(&c, &["pods"], "{.items[*].metadata.name}", "web-2");
    wait_for(
        &c,
        &["pdb", "web"],
        "{.status.currentHealthy} {.status.disruptionsAllowed} {.status.conditions[0].reason}",
        "1 0 InsufficientPods",
    );
    let out = evict("web-2");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{stderr}");
    assert_eq!(get(&c, &["pods"], "{.items[*].metadata.name}"), "web-2");
}

#[test]
fn drain_cordons_and_stops_at_the_disruption_budget() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], NODE);
    ready_pod(&c, "web-1");
    ready_pod(&c, "web-2");
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
"#,
    );
    wait_for(&c, &["pdb", "web"], "{.status.currentHealthy} {.status.disruptionsAllowed}", "2 0");
    // Two healthy pods, two required: every eviction is refused and drain gives up.
    let out = c.kubectl(&["drain", "n1", "--force", "--grace-period=0", "--timeout=8s"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{stderr}");
    assert_eq!(get(&c, &["node", "n1"], "{.spec.unschedulable}"), "true");
    assert_eq!(get(&c, &["pods"], "{.items[*].metadata.name}"), "web-1 web-2");

    // Without the budget, drain evicts and succeeds.
    c.ok(&["delete", "pdb", "web"]);
    let out = c.ok(&["drain", "n1", "--force", "--grace-period=0", "--timeout=30s"]);
    assert!(out.contains("node/n1 drained"), "{out}");
    assert_eq!(get(&c, &["pods"], "{.items[*].metadata.name}"), "");
}

#[test]
fn a_resource_quota_reports_what_the_namespace_uses() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "team"]);
    c.ok_stdin(
        &["apply", "-n", "team", "-f", "-"],
        r#"
apiVersion: v1
kind: ResourceQuota
metadata: {name: objects}
spec:
  hard:
    configmaps: "5"
    count/secrets: "4"
    pods: "10"
    requests.cpu: "2"
    limits.memory: 1Gi
"#,
    );
    // The namespace already holds kube-root-ca.crt.
    wait_for(&c, &["quota", "objects", "-n", "team"], "{.status.used.configmaps}", "1");
    assert_eq!(
        get(
            &c,
            &["quota", "objects", "-n", "team"],
            "{.status.hard.configmaps} {.status.hard.limits\\.memory} {.status.used.pods} {.status.used.requests\\.cpu}"
        ),
        "5 1Gi 0 0"
    );
    c.ok(&["create", "configmap", "a", "-n", "team", "--from-literal=k=v"]);
    c.ok(&["create", "configmap", "b", "-n", "team", "--from-literal=k=v"]);
    c.ok_stdin(
        &["apply", "-n", "team", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  containers:
  - name: app
    image: "nginx:1.25"
    resources:
      requests: {cpu: 250m, memory: 64Mi}
      limits: {cpu: 500m, memory: 128Mi}
"#,
    );
    wait_for(
        &c,
        &["quota", "objects", "-n", "team"],
        "{.status.used.configmaps} {.status.used.pods} {.status.used.requests\\.cpu} {.status.used.limits\\.memory}",
        "3 1 250m 128Mi",
    );
    let described = c.ok(&["describe", "quota", "objects", "-n", "team"]);
    assert!(
        described.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["configmaps", "3", "5"]),
        "{described}"
    );
    c.ok(&["delete", "configmap", "a", "-n", "team"]);
    wait_for(&c, &["quota", "objects", "-n", "team"], "{.status.used.configmaps}", "2");
}

#[test]
fn cordon_and_uncordon_toggle_the_unschedulable_taint() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], NODE);
    let out = c.ok(&["cordon", "n1"]);
    assert!(out.contains("node/n1 cordoned"), "{out}");
    // A new node without a Ready status is also tainted not-ready (TaintNodesByCondition).
    let unschedulable = "{.spec.taints[?(@.key==\"node.kubernetes.io/unschedulable\")].effect}";
    wait_for(&c, &["node", "n1"], unschedulable, "NoSchedule");
    let added = "{.spec.taints[?(@.key==\"node.kubernetes.io/unschedulable\")].timeAdded}";
    assert!(!get(&c, &["node", "n1"], added).is_empty());
    let table = c.ok(&["get", "node", "n1"]);
    assert!(table.contains("SchedulingDisabled"), "{table}");
    let out = c.ok(&["uncordon", "n1"]);
    assert!(out.contains("node/n1 uncordoned"), "{out}");
    wait_for(&c, &["node", "n1"], unschedulable, "");
}

/// `krust sim` joining one more simulated node; stopped (by PID) when dropped.
struct Sim(Child);

impl Sim {
    fn join(c: &Cluster, index: usize) -> Sim {
        let child = Command::new(env!("CARGO_BIN_EXE_krust"))
            .args(["sim", "--count", "1", "--first-index", &index.to_string(), "--kubeconfig"])
            .arg(&c.kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start krust sim");
        Sim(child)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_node_that_stops_heartbeating_is_tainted_and_its_pods_evicted() {
    let c = Cluster::start_with(&["--sim-nodes", "2"]);
    let sim = Sim::join(&c, 2);
    wait_for(&c, &["node", "sim-2"], "{.status.conditions[?(@.type==\"Ready\")].status}", "True");
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: brief}
spec:
  nodeName: sim-2
  tolerations:
  - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
  containers: [{name: app, image: "nginx:1.25"}]
"#,
    );
    wait_for(&c, &["pod", "brief"], "{.status.conditions[?(@.type==\"Ready\")].status}", "True");
    drop(sim);

    // 40s of silence, then Unknown, unreachable taints, and the pod's eviction.
    let long = Duration::from_secs(120);
    let unknown = c.eventually(long, || {
        get(&c, &["node", "sim-2"], "{.status.conditions[?(@.type==\"Ready\")].reason}")
            == "NodeStatusUnknown"
    });
    assert!(unknown, "{}", c.ok(&["get", "node", "sim-2", "-o", "yaml"]));
    assert_eq!(
        get(&c, &["node", "sim-2"], "{.status.conditions[?(@.type==\"Ready\")].message}"),
        "Kubelet stopped posting node status."
    );
    let tainted = c.eventually(WAIT, || {
        let keys = get(&c, &["node", "sim-2"], "{range .spec.taints[*]}{.key}:{.effect} {end}");
        keys.contains("node.kubernetes.io/unreachable:NoSchedule")
            && keys.contains("node.kubernetes.io/unreachable:NoExecute")
    });
    assert!(tainted, "{}", c.ok(&["get", "node", "sim-2", "-o", "yaml"]));
    let evicted = c.eventually(WAIT, || {
        let out = c.kubectl(&["get", "pod", "brief", "-o", "jsonpath={.metadata.deletionTimestamp}"]);
        !out.status.success() || !String::from_utf8_lossy(&out.stdout).is_empty()
    });
    assert!(evicted, "{}", c.ok(&["get", "pod", "brief", "-o", "yaml"]));
    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=brief"]);
    assert!(events.contains("TaintManagerEviction"), "{events}");

    // The node comes back: its taints go.
    let _back = Sim::join(&c, 2);
    let healed = c.eventually(long, || get(&c, &["node", "sim-2"], "{.spec.taints}").is_empty());
    assert!(healed, "{}", c.ok(&["get", "node", "sim-2", "-o", "yaml"]));
}
