//! End-to-end: StatefulSets and DaemonSets driven by the real kubectl against the real
//! `krust server`. StatefulSet members are made Running and Ready here by patching their
//! status (as a kubelet would), so ordering is observable without nodes; DaemonSets run
//! over simulated nodes (`--sim-nodes`, `krust sim`).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Cluster;

const WAIT: Duration = Duration::from_secs(60);

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: "nginx:1.25"}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

/// Names of the pods matching `selector`, with their phase.
fn pods(c: &Cluster, selector: &str) -> Vec<(String, String)> {
    let out = c.kubectl(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.phase}{\"\\n\"}{end}",
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(n, p)| (n.to_string(), p.to_string())))
        .collect()
}

fn names(c: &Cluster, selector: &str) -> Vec<String> {
    let mut n: Vec<String> = pods(c, selector).into_iter().map(|(n, _)| n).collect();
    n.sort();
    n
}

/// What a kubelet would report for a started pod.
fn make_ready(c: &Cluster, pod: &str) {
    c.ok(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
}

fn jsonpath(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let p = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &p]);
    c.kubectl(&args).stdout.iter().map(|b| *b as char).collect()
}

fn wait_for_pod(c: &Cluster, name: &str) {
    assert!(
        c.eventually(WAIT, || pods(c, "app=web").iter().any(|(n, _)| n == name)),
        "pod {name} never appeared; pods: {:?}\n{}",
        pods(c, "app=web"),
        c.log()
    );
}

/// Brings the set up one member at a time, checking that no member appears before its
/// predecessor is ready.
fn bring_up(c: &Cluster, n: usize) {
    for i in 0..n {
        let name = format!("web-{i}");
        wait_for_pod(c, &name);
        // Give the controller the chance to run ahead if it would.
        std::thread::sleep(Duration::from_millis(700));
        let got = names(c, "app=web");
        assert_eq!(got.len(), i + 1, "only web-0..web-{i} may exist before web-{i} is ready: {got:?}");
        make_ready(c, &name);
    }
}

#[test]
fn statefulset_members_come_up_in_order_with_their_claims() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], WEB);
    bring_up(&c, 3);

    // Stable identity: hostname, subdomain, labels, and a claim per ordinal.
    assert_eq!(jsonpath(&c, &["pod", "web-1"], "{.spec.hostname}"), "web-1");
    assert_eq!(jsonpath(&c, &["pod", "web-1"], "{.spec.subdomain}"), "nginx");
    assert_eq!(
        jsonpath(&c, &["pod", "web-1"], "{.metadata.labels.statefulset\\.kubernetes\\.io/pod-name}"),
        "web-1"
    );
    assert_eq!(jsonpath(&c, &["pod", "web-1"], "{.metadata.labels.apps\\.kubernetes\\.io/pod-index}"), "1");
    assert_eq!(
        jsonpath(
            &c,
            &["pod", "web-2"],
            "{.spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName}"
        ),
        "data-web-2"
    );
    for i in 0..3 {
        c.ok(&["get", "pvc", &format!("data-web-{i}")]);
    }

    // Status as kubectl reads it, and the revision behind it.
    assert!(
        c.eventually(WAIT, || jsonpath(&c, &["sts", "web"], "{.status.readyReplicas}") == "3"),
        "readyReplicas never reached 3: {}",
        c.ok(&["get", "sts", "web", "-o", "yaml"])
    );
    let table = c.ok(&["get", "sts", "web"]);
    assert!(table.contains("3/3"), "{table}");
    let current = jsonpath(&c, &["sts", "web"], "{.status.currentRevision}");
    assert!(current.starts_with("web-"), "{current}");
    assert_eq!(jsonpath(&c, &["sts", "web"], "{.status.updateRevision}"), current);
    assert_eq!(jsonpath(&c, &["pod", "web-0"], "{.metadata.labels.controller-revision-hash}"), current);
    let revs = c.ok(&["get", "controllerrevisions", "-l", "app=web", "-o", "name"]);
    assert_eq!(revs.trim(), format!("controllerrevision.apps/{current}"));
    let history = c.ok(&["rollout", "history", "statefulset/web"]);
    assert!(history.contains("REVISION") && history.contains('1'), "{history}");
    c.ok(&["rollout", "status", "statefulset/web", "--timeout=30s"]);

    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=web"]);
    assert!(events.contains("create Pod web-0 in StatefulSet web successful"), "{events}");
    assert!(events.contains("create Claim data-web-0 Pod web-0 in StatefulSet web success"), "{events}");
}

#[test]
fn statefulset_scales_down_from_the_highest_ordinal_and_keeps_claims() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], WEB);
    bring_up(&c, 3);
    c.ok(&["scale", "statefulset", "web", "--replicas=1"]);
    let mut seen = Vec::new();
    assert!(
        c.eventually(WAIT, || {
            let n = names(&c, "app=web");
            if seen.last() != Some(&n) {
                seen.push(n.clone());
            }
            n == ["web-0"]
        }),
        "never scaled down to web-0: {seen:?}"
    );
    // web-2 goes before web-1: never web-0 and web-2 without web-1.
    assert!(!seen.iter().any(|n| n == &["web-0", "web-2"]), "{seen:?}");
    for i in 0..3 {
        c.ok(&["get", "pvc", &format!("data-web-{i}")]);
    }
}

#[test]
fn statefulset_rolling_update_replaces_members_from_the_highest_ordinal() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], WEB);
    bring_up(&c, 3);
    let old = jsonpath(&c, &["sts", "web"], "{.status.currentRevision}");
    c.ok(&["set", "image", "statefulset/web", "nginx=nginx:1.27"]);
    assert!(
        c.eventually(WAIT, || {
            let update = jsonpath(&c, &["sts", "web"], "{.status.updateRevision}");
            !update.is_empty() && update != old
        }),
        "no update revision"
    );
    let new = jsonpath(&c, &["sts", "web"], "{.status.updateRevision}");
    // Replaced one at a time, web-2 first; each replacement made ready before the next.
    for i in (0..3).rev() {
        let name = format!("web-{i}");
        assert!(
            c.eventually(WAIT, || jsonpath(
                &c,
                &["pod", &name],
                "{.metadata.labels.controller-revision-hash}"
            ) == new),
            "{name} was not replaced; pods: {:?}",
            pods(&c, "app=web")
        );
        for j in 0..i {
            assert_eq!(
                jsonpath(&c, &["pod", &format!("web-{j}")], "{.metadata.labels.controller-revision-hash}"),
                old,
                "web-{j} replaced before web-{i} was ready"
            );
        }
        assert_eq!(jsonpath(&c, &["pod", &name], "{.spec.containers[0].image}"), "nginx:1.27");
        make_ready(&c, &name);
    }
    assert!(
        c.eventually(WAIT, || jsonpath(&c, &["sts", "web"], "{.status.currentRevision}") == new),
        "the rollout never completed: {}",
        c.ok(&["get", "sts", "web", "-o", "yaml"])
    );
    assert_eq!(jsonpath(&c, &["sts", "web"], "{.status.updatedReplicas}"), "3");
}

/// `kubectl get pods -w` for the set's pods, one `EVENT NAME PHASE READY` line per
/// change; stopped (by PID) when dropped.
struct PodWatch {
    child: Child,
    out: std::path::PathBuf,
}

impl PodWatch {
    fn start(c: &Cluster, selector: &str) -> Self {
        let out = c.path().join(format!("watch-{}.txt", selector.replace(['=', ','], "-")));
        let file = std::fs::File::create(&out).expect("watch output");
        let child = Command::new(common::KUBECTL)
            .args(["get", "pods", "-l", selector, "-w", "--output-watch-events", "--no-headers", "-o"])
            .arg("custom-columns=EV:.type,NAME:.object.metadata.name,PHASE:.object.status.phase,READY:.object.status.conditions[?(@.type==\"Ready\")].status")
            .env("KUBECONFIG", &c.kubeconfig)
            .env("HOME", c.path())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("start kubectl watch");
        // Let the watch establish before anything it should see happens.
        std::thread::sleep(Duration::from_secs(2));
        PodWatch { child, out }
    }

    fn lines(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn statefulset_on_simulated_nodes_comes_up_in_order_and_rolls_back() {
    let c = Cluster::start_with(&["--sim-nodes", "2"]);
    assert!(c.eventually(WAIT, || c.kubectl(&["get", "node", "sim-1"]).status.success()));
    let watch = PodWatch::start(&c, "app=web");
    c.ok_stdin(&["apply", "-f", "-"], WEB);
    c.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    let lines = watch.lines();
    let first = |pred: &dyn Fn(&Vec<String>) -> bool| lines.iter().position(pred);
    for i in 0..2 {
        let ready = first(&|l: &Vec<String>| {
            l.len() >= 4 && l[1] == format!("web-{i}") && l[2] == "Running" && l[3] == "True"
        });
        let next = first(&|l: &Vec<String>| l[0] == "ADDED" && l[1] == format!("web-{}", i + 1));
        let (Some(ready), Some(next)) = (ready, next) else { panic!("incomplete watch: {lines:?}") };
        assert!(ready < next, "web-{} was created before web-{i} was ready: {lines:?}", i + 1);
    }
    for i in 0..3 {
        assert_eq!(jsonpath(&c, &["pvc", &format!("data-web-{i}")], "{.status.phase}"), "Bound");
    }

    c.ok(&["set", "image", "statefulset/web", "nginx=nginx:1.27"]);
    c.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert_eq!(jsonpath(&c, &["pod", "web-0"], "{.spec.containers[0].image}"), "nginx:1.27");
    c.ok(&["rollout", "undo", "statefulset/web"]);
    c.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"]);
    assert_eq!(jsonpath(&c, &["pod", "web-0"], "{.spec.containers[0].image}"), "nginx:1.25");
    // The rolled-back revision was renumbered to be the newest.
    let history = c.ok(&["rollout", "history", "statefulset/web"]);
    let numbers: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(numbers, ["2", "3"], "{history}");
}

const AGENT: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: "busybox:1.36", command: [sleep, infinity]}]
"#;

/// The node each daemon pod is for (its nodeName, else its node affinity).
fn daemon_nodes(c: &Cluster) -> Vec<String> {
    let out = c.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=agent",
        "-o",
        "jsonpath={range .items[*]}{.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values[0]}{\"\\n\"}{end}",
    ]);
    let mut n: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    n.sort();
    n
}

/// `krust sim` joining more simulated nodes; stopped (by PID) when dropped.
struct Sim(Child);

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn daemonset_follows_nodes_being_added_and_removed() {
    let c = Cluster::start_with(&["--sim-nodes", "2"]);
    assert!(
        c.eventually(WAIT, || c.kubectl(&["get", "node", "sim-1"]).status.success()),
        "simulated nodes never registered"
    );
    c.ok_stdin(&["apply", "-f", "-"], AGENT);
    assert!(
        c.eventually(WAIT, || daemon_nodes(&c) == ["sim-0", "sim-1"]),
        "one pod per node expected: {:?}",
        daemon_nodes(&c)
    );
    assert!(
        c.eventually(WAIT, || jsonpath(&c, &["ds", "agent"], "{.status.desiredNumberScheduled}") == "2"),
        "{}",
        c.ok(&["get", "ds", "agent", "-o", "yaml"])
    );
    let tolerations = jsonpath(&c, &["pods", "-l", "app=agent"], "{.items[0].spec.tolerations[*].key}");
    assert!(tolerations.contains("node.kubernetes.io/not-ready"), "{tolerations}");
    assert!(tolerations.contains("node.kubernetes.io/unschedulable"), "{tolerations}");

    // A node joins: it gets a daemon pod.
    let _sim = Sim(Command::new(env!("CARGO_BIN_EXE_krust"))
        .args(["sim", "--count", "1", "--first-index", "2", "--kubeconfig"])
        .arg(&c.kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start krust sim"));
    assert!(
        c.eventually(WAIT, || daemon_nodes(&c) == ["sim-0", "sim-1", "sim-2"]),
        "the joining node got no pod: {:?}",
        daemon_nodes(&c)
    );
    assert!(c.eventually(WAIT, || jsonpath(&c, &["ds", "agent"], "{.status.desiredNumberScheduled}") == "3"));

    // A node leaves: its daemon pod goes (the DaemonSet controller deletes it if it was
    // never scheduled; the pod garbage collector does if it was bound).
    c.ok(&["delete", "node", "sim-1"]);
    assert!(
        c.eventually(Duration::from_secs(120), || daemon_nodes(&c) == ["sim-0", "sim-2"]),
        "the pod of the removed node stayed: {:?}",
        daemon_nodes(&c)
    );
    assert!(c.eventually(WAIT, || jsonpath(&c, &["ds", "agent"], "{.status.desiredNumberScheduled}") == "2"));

    let events = c.ok(&["get", "events", "--field-selector", "involvedObject.name=agent"]);
    assert!(events.contains("Created pod: agent-"), "{events}");
    let revs = c.ok(&["get", "controllerrevisions", "-l", "app=agent", "-o", "name"]);
    assert_eq!(revs.lines().count(), 1, "{revs}");
}

#[test]
fn daemonset_honours_node_selectors_and_relabelled_nodes() {
    let c = Cluster::start_with(&["--sim-nodes", "2"]);
    assert!(c.eventually(WAIT, || c.kubectl(&["get", "node", "sim-1"]).status.success()));
    c.ok(&["label", "node", "sim-0", "role=edge"]);
    let selective = AGENT.replace(
        "    spec:\n      containers",
        "    spec:\n      nodeSelector: {role: edge}\n      containers",
    );
    c.ok_stdin(&["apply", "-f", "-"], &selective);
    assert!(c.eventually(WAIT, || daemon_nodes(&c) == ["sim-0"]), "{:?}", daemon_nodes(&c));
    c.ok(&["label", "node", "sim-1", "role=edge"]);
    assert!(c.eventually(WAIT, || daemon_nodes(&c) == ["sim-0", "sim-1"]), "{:?}", daemon_nodes(&c));
    c.ok(&["label", "node", "sim-0", "role-"]);
    assert!(c.eventually(WAIT, || daemon_nodes(&c) == ["sim-1"]), "{:?}", daemon_nodes(&c));
}
