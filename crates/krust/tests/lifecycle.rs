//! End-to-end: object lifecycles driven by the controllers — namespace deletion, garbage
//! collection with every propagation policy, and Endpoints/EndpointSlices following pods —
//! with the real kubectl against the real `krust server`.

mod common;

use std::time::Duration;

use common::Cluster;

const WAIT: Duration = Duration::from_secs(60);

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

fn install_crd(c: &Cluster) {
    c.ok_stdin(&["apply", "-f", "-"], CRD);
    c.ok(&["wait", "--for", "condition=established", "crd/widgets.example.com", "--timeout=20s"]);
}

/// A deployment that stays paused, so that no deployment controller creates anything.
const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  paused: true
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: nginx:1.25}]
"#;

fn uid(c: &Cluster, what: &[&str]) -> String {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "jsonpath={.metadata.uid}"]);
    c.ok(&args)
}

/// A ReplicaSet of zero replicas owned by the deployment `web` (as its controller would make).
fn owned_replicaset(c: &Cluster, name: &str, deploy_uid: &str, extra_meta: &str) {
    let rs = format!(
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: {name}
  labels: {{app: web}}
  ownerReferences:
  - {{apiVersion: apps/v1, kind: Deployment, name: web, uid: "{deploy_uid}", controller: true, blockOwnerDeletion: true}}
{extra_meta}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: web, pod-template-hash: "1"}}}}
  template:
    metadata: {{labels: {{app: web, pod-template-hash: "1"}}}}
    spec:
      containers: [{{name: nginx, image: nginx:1.25}}]
"#
    );
    c.ok_stdin(&["apply", "-f", "-"], &rs);
}

fn gone(c: &Cluster, what: &[&str]) -> bool {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    let out = c.kubectl(&args);
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
}

#[test]
fn deleting_a_namespace_deletes_everything_in_it_and_then_the_namespace() {
    let c = Cluster::start();
    install_crd(&c);
    c.ok(&["create", "namespace", "doomed"]);
    c.ok(&["-n", "doomed", "create", "configmap", "settings", "--from-literal=a=b"]);
    c.ok(&["-n", "doomed", "create", "secret", "generic", "creds", "--from-literal=p=q"]);
    c.ok_stdin(
        &["-n", "doomed", "apply", "-f", "-"],
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n",
    );
    // kubectl waits until the namespace is really gone.
    let out = c.ok(&["delete", "namespace", "doomed", "--timeout=60s"]);
    assert!(out.contains("namespace \"doomed\" deleted"), "{out}");
    assert!(gone(&c, &["namespace", "doomed"]));
    // Nothing survives in the storage of a namespace of the same name.
    c.ok(&["create", "namespace", "doomed"]);
    assert_eq!(c.ok(&["-n", "doomed", "get", "widgets", "-o", "name"]).trim(), "");
    assert_eq!(
        c.ok(&["-n", "doomed", "get", "secrets", "creds", "--ignore-not-found", "-o", "name"]).trim(),
        ""
    );
}

#[test]
fn a_namespace_waits_for_finalizers_of_its_content_and_says_so() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "held"]);
    c.ok_stdin(
        &["-n", "held", "apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  finalizers: [example.com/hold]\ndata: {a: b}\n",
    );
    c.ok(&["delete", "namespace", "held", "--wait=false"]);
    let jsonpath = |t: &str| format!("jsonpath={{.status.conditions[?(@.type==\"{t}\")].message}}");
    let remaining = jsonpath("NamespaceContentRemaining");
    assert!(
        c.eventually(WAIT, || {
            c.ok(&["get", "ns", "held", "-o", &remaining])
                == "Some resources are remaining: configmaps. has 1 resource instances"
        }),
        "{}",
        c.ok(&["get", "ns", "held", "-o", "yaml"])
    );
    assert_eq!(
        c.ok(&["get", "ns", "held", "-o", &jsonpath("NamespaceFinalizersRemaining")]),
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    assert_eq!(c.ok(&["get", "ns", "held", "-o", "jsonpath={.status.phase}"]), "Terminating");
    c.ok(&[
        "-n",
        "held",
        "patch",
        "configmap",
        "keep",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    assert!(c.eventually(WAIT, || gone(&c, &["namespace", "held"])), "the namespace went away once empty");
}

#[test]
fn deleting_a_deployment_deletes_its_replicasets() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let d = uid(&c, &["deploy", "web"]);
    owned_replicaset(&c, "web-1", &d, "");
    owned_replicaset(&c, "web-2", &d, "");
    c.ok(&["delete", "deploy", "web"]);
    assert!(
        c.eventually(WAIT, || gone(&c, &["rs", "web-1"]) && gone(&c, &["rs", "web-2"])),
        "{}",
        c.ok(&["get", "rs", "-o", "yaml"])
    );
}

#[test]
fn cascade_orphan_keeps_the_dependents_without_the_owner_reference() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let d = uid(&c, &["deploy", "web"]);
    owned_replicaset(&c, "web-1", &d, "");
    let out = c.ok(&["delete", "deploy", "web", "--cascade=orphan", "--timeout=60s"]);
    assert!(out.contains("deleted"), "{out}");
    assert!(gone(&c, &["deploy", "web"]));
    assert_eq!(c.ok(&["get", "rs", "web-1", "-o", "jsonpath={.metadata.ownerReferences}"]), "");
    std::thread::sleep(Duration::from_secs(2));
    assert!(!gone(&c, &["rs", "web-1"]), "an orphan is not collected");
}

#[test]
fn foreground_deletion_removes_blocking_dependents_before_the_owner() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let d = uid(&c, &["deploy", "web"]);
    owned_replicaset(&c, "web-1", &d, "  finalizers: [example.com/hold]");
    c.ok(&["delete", "deploy", "web", "--cascade=foreground", "--wait=false"]);
    // The dependent is being deleted and holds the owner back.
    assert!(c.eventually(WAIT, || {
        !c.ok(&["get", "rs", "web-1", "-o", "jsonpath={.metadata.deletionTimestamp}"]).is_empty()
    }));
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.finalizers}"]),
        r#"["foregroundDeletion"]"#
    );
    assert!(!c.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.deletionTimestamp}"]).is_empty());
    c.ok(&["patch", "rs", "web-1", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]);
    assert!(c.eventually(WAIT, || gone(&c, &["rs", "web-1"]) && gone(&c, &["deploy", "web"])));
}

#[test]
fn foreground_delete_returns_once_owner_and_dependents_are_gone() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let d = uid(&c, &["deploy", "web"]);
    owned_replicaset(&c, "web-1", &d, "");
    c.ok(&["delete", "deploy", "web", "--cascade=foreground", "--timeout=60s"]);
    assert!(gone(&c, &["rs", "web-1"]), "dependents go before the owner");
}

#[test]
fn objects_whose_owner_never_existed_or_is_custom_are_collected() {
    let c = Cluster::start();
    install_crd(&c);
    // An owner reference to a uid nothing has.
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: stray
  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: ghost, uid: 00000000-0000-0000-0000-000000000001}]
data: {a: b}
"#,
    );
    // A custom resource owning a built-in, and a built-in owning a custom resource.
    c.ok_stdin(&["apply", "-f", "-"], "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: parent}\n");
    let parent = uid(&c, &["widget", "parent"]);
    c.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: child\n  ownerReferences: [{{apiVersion: example.com/v1, kind: Widget, name: parent, uid: \"{parent}\"}}]\n"
        ),
    );
    let child = uid(&c, &["configmap", "child"]);
    c.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: grandchild\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: child, uid: \"{child}\"}}]\n"
        ),
    );
    assert!(
        c.eventually(WAIT, || gone(&c, &["configmap", "stray"])),
        "a reference to a missing uid counts as gone"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(!gone(&c, &["configmap", "child"]), "a live owner keeps its dependent");
    c.ok(&["delete", "widget", "parent"]);
    assert!(c.eventually(WAIT, || gone(&c, &["configmap", "child"]) && gone(&c, &["widget", "grandchild"])));
}

const NODE: &str =
    "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n  labels: {topology.kubernetes.io/zone: z1}\n";

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web, labels: {tier: front}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-a, labels: {app: web}}
spec:
  nodeName: node-1
  containers:
  - name: nginx
    image: nginx:1.25
    ports: [{name: http, containerPort: 8080}]
"#;

/// What a kubelet would report: the pod's IP and its Ready condition, changed at `at`.
fn set_pod_status(c: &Cluster, ready: bool, at: &str) {
    let status = format!(
        r#"{{"status":{{"phase":"Running","podIP":"10.244.0.5","podIPs":[{{"ip":"10.244.0.5"}}],"conditions":[{{"type":"Ready","status":"{}","lastTransitionTime":"{at}"}}]}}}}"#,
        if ready { "True" } else { "False" }
    );
    c.ok(&["patch", "pod", "web-a", "--subresource=status", "--type=merge", "-p", &status]);
}

#[test]
fn endpoints_and_endpoint_slices_follow_pod_readiness() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], NODE);
    c.ok_stdin(&["apply", "-f", "-"], SERVICE);
    // A service without pods: Endpoints without subsets and one empty placeholder slice.
    assert!(c.eventually(WAIT, || c.kubectl(&["get", "endpoints", "web"]).status.success()));
    let slices = || c.ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "name"]);
    assert!(c.eventually(WAIT, || slices().lines().count() == 1), "{}", slices());
    assert!(slices().trim().starts_with("endpointslice.discovery.k8s.io/web-"), "{}", slices());
    c.ok_stdin(&["apply", "-f", "-"], POD);
    set_pod_status(&c, true, "2030-01-01T00:00:00Z");
    let ep = "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port} {.subsets[0].addresses[0].targetRef.name} {.subsets[0].addresses[0].nodeName}";
    assert!(
        c.eventually(WAIT, || c.ok(&["get", "endpoints", "web", "-o", ep]) == "10.244.0.5:8080 web-a node-1"),
        "{}",
        c.ok(&["get", "endpoints", "web", "-o", "yaml"])
    );
    let trigger = "jsonpath={.metadata.annotations.endpoints\\.kubernetes\\.io/last-change-trigger-time}";
    assert_eq!(
        c.ok(&["get", "endpoints", "web", "-o", trigger]),
        "2030-01-01T00:00:00Z",
        "the pod became ready then"
    );
    let slice = "jsonpath={.items[0].addressType} {.items[0].endpoints[0].addresses[0]} {.items[0].endpoints[0].conditions.ready} {.items[0].endpoints[0].zone} {.items[0].ports[0].port} {.items[0].metadata.labels.endpointslice\\.kubernetes\\.io/managed-by}";
    let get_slice = || c.ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", slice]);
    assert!(
        c.eventually(WAIT, || get_slice() == "IPv4 10.244.0.5 true z1 8080 endpointslice-controller.k8s.io"),
        "{}",
        get_slice()
    );
    set_pod_status(&c, false, "2030-01-01T00:01:00Z");
    let not_ready = "jsonpath={.subsets[0].notReadyAddresses[0].ip} {.subsets[0].addresses}";
    assert!(c.eventually(WAIT, || c.ok(&["get", "endpoints", "web", "-o", not_ready]) == "10.244.0.5 "));
    assert!(c.eventually(WAIT, || get_slice().starts_with("IPv4 10.244.0.5 false")));
    c.ok(&["delete", "service", "web"]);
    assert!(c.eventually(WAIT, || gone(&c, &["endpoints", "web"])), "the endpoints go with the service");
    assert!(c.eventually(WAIT, || slices().trim().is_empty()), "the slices are collected with their owner");
}

#[test]
fn a_deployment_on_simulated_nodes_gets_endpoints_and_takes_its_pods_along_when_deleted() {
    let c = Cluster::start_with(&["--sim-nodes", "2"]);
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=3", "--port=80"]);
    c.ok(&["expose", "deployment", "web", "--port=80"]);
    let addresses = || {
        c.ok(&["get", "endpoints", "web", "-o", "jsonpath={range .subsets[*].addresses[*]}{.ip} {end}"])
            .split_whitespace()
            .count()
    };
    assert!(c.eventually(WAIT, || addresses() == 3), "{}", c.ok(&["get", "endpoints", "web", "-o", "yaml"]));
    let ready = "jsonpath={range .items[*].endpoints[*]}{.conditions.ready} {end}";
    let slice = || c.ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", ready]);
    assert!(c.eventually(WAIT, || slice().trim() == "true true true"), "{}", slice());
    // Deployment -> ReplicaSet -> Pods, all collected.
    c.ok(&["delete", "deployment", "web"]);
    let pods = || c.ok(&["get", "pods", "-o", "name"]);
    assert!(c.eventually(WAIT, || pods().trim().is_empty()
        && c.ok(&["get", "rs", "-o", "name"]).trim().is_empty()));
    assert!(c.eventually(WAIT, || addresses() == 0));
}

#[test]
fn pods_of_a_deleted_node_are_failed_and_removed_by_pod_gc() {
    let c = Cluster::start_with(&["--sim-nodes", "2"]);
    c.ok(&["create", "deployment", "web", "--image=nginx", "--replicas=4"]);
    let on = |node: &str| {
        c.ok(&["get", "pods", "--field-selector", &format!("spec.nodeName={node}"), "-o", "name"])
            .lines()
            .count()
    };
    assert!(c.eventually(WAIT, || on("sim-0") + on("sim-1") == 4 && on("sim-1") > 0));
    c.ok(&["delete", "node", "sim-1"]);
    // 40s of quarantine, then the next 20s pass of the collector.
    assert!(
        c.eventually(Duration::from_secs(120), || on("sim-1") == 0),
        "{}",
        c.ok(&["get", "pods", "-o", "wide"])
    );
    assert!(c.eventually(WAIT, || on("sim-0") == 4), "the ReplicaSet replaces them on the remaining node");
}
