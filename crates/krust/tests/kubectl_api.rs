//! End-to-end: the real kubectl against the real `krust server` (API server and storage).

mod common;

use std::time::Duration;

use common::Cluster;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
"#;

#[test]
fn apply_creates_and_reapply_changes_a_deployment() {
    let c = Cluster::start();
    let out = c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 4").replace("nginx:1.25", "nginx:1.26");
    let out = c.ok_stdin(&["apply", "-f", "-"], &changed);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let got = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.metadata.generation}",
    ]);
    assert_eq!(got, "4 nginx:1.26 2");
    let out = c.ok_stdin(&["apply", "-f", "-"], &changed);
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");
}

#[test]
fn get_prints_every_output_format() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let table = c.ok(&["get", "deployments"]);
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    let wide = c.ok(&["get", "deploy", "-o", "wide"]);
    assert!(wide.lines().next().unwrap_or("").contains("SELECTOR"), "{wide}");
    assert!(wide.contains("nginx:1.25") && wide.contains("app=web"), "{wide}");
    let yaml = c.ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(yaml.contains("revisionHistoryLimit: 10") && yaml.contains("maxSurge: 25%"), "{yaml}");
    assert!(
        yaml.contains("imagePullPolicy: IfNotPresent") && yaml.contains("terminationGracePeriodSeconds: 30")
    );
    let json: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "deploy", "web", "-o", "json"])).unwrap();
    assert_eq!(json["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(c.ok(&["get", "deploy", "-o", "name"]).trim(), "deployment.apps/web");
    let cc = c.ok(&["get", "deploy", "-o", "custom-columns=N:.metadata.name,R:.spec.replicas"]);
    assert_eq!(cc.split_whitespace().collect::<Vec<_>>(), ["N", "R", "web", "2"]);
    let all_ns = c.ok(&["get", "namespaces", "-A"]);
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(all_ns.contains(ns), "{all_ns}");
    }
    let by_label = c.ok(&["get", "deploy", "-l", "app=web", "-o", "name"]);
    assert_eq!(by_label.trim(), "deployment.apps/web");
    let none = c.ok(&["get", "deploy", "-l", "app notin (web)", "-o", "name"]);
    assert_eq!(none.trim(), "");
    let by_field = c.ok(&["get", "deploy", "--field-selector", "metadata.name=web", "-o", "name"]);
    assert_eq!(by_field.trim(), "deployment.apps/web");
    let err = c.fails(&["get", "pods", "--field-selector", "spec.bogus=x"]);
    assert!(err.contains("field label not supported: spec.bogus"), "{err}");
}

#[test]
fn label_annotate_scale_set_image_and_patch_change_the_object() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    c.ok(&["label", "deploy", "web", "tier=frontend"]);
    c.ok(&["annotate", "deploy", "web", "note=hello"]);
    c.ok(&["scale", "deploy", "web", "--replicas=5"]);
    c.ok(&["set", "image", "deploy/web", "nginx=nginx:1.27"]);
    // Quantities are stored in canonical form, as kube-apiserver stores them.
    c.ok(&["set", "resources", "deploy/web", "--requests=cpu=0.5,memory=1024Mi", "--limits=memory=1.5Gi"]);
    let resources = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].resources.requests.cpu} {.spec.template.spec.containers[0].resources.requests.memory} {.spec.template.spec.containers[0].resources.limits.memory}",
    ]);
    assert_eq!(resources, "500m 1Gi 1536Mi");
    let got = c.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.metadata.labels.tier} {.metadata.annotations.note}",
    ]);
    assert_eq!(got, "5 nginx:1.27 frontend hello");
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":1}]"#,
    ]);
    assert_eq!(c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "1");
    c.ok(&["patch", "deploy", "web", "--type=merge", "-p", r#"{"spec":{"replicas":2}}"#]);
    assert_eq!(c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "2");
    c.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#,
    ]);
    let names = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[*].name}"]);
    assert_eq!(names, "sidecar nginx", "a strategic merge adds to the list by name");
    c.ok(&["label", "deploy", "web", "tier-"]);
    let labels = c.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.labels}"]);
    assert!(!labels.contains("tier"), "{labels}");
}

#[test]
fn edit_with_an_editor_script_changes_the_object() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let script = c.path().join("editor.sh");
    std::fs::write(&script, "#!/bin/sh\nsed -i 's/replicas: 2/replicas: 7/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(common::KUBECTL)
        .args(["edit", "deploy", "web"])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", c.path())
        .env("EDITOR", &script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "7");
}

#[test]
fn watch_prints_each_change() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let child = std::process::Command::new(common::KUBECTL)
        .args(["get", "deploy", "-w", "--request-timeout=6s"])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", c.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    c.ok(&["scale", "deploy", "web", "--replicas=3"]);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    assert!(lines[0].starts_with("NAME"), "{text}");
    assert!(lines.iter().any(|l| l.contains("0/3")), "the scaled deployment shows up: {text}");
}

#[test]
fn errors_come_back_in_kubernetes_shape() {
    let c = Cluster::start();
    let wrong_type = DEPLOYMENT.replace("replicas: 2", "replicas: \"three\"");
    let err = c.fails_stdin(&["apply", "-f", "-"], &wrong_type);
    assert!(err.contains("spec.replicas"), "{err}");
    let missing = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: []\n";
    let err = c.fails_stdin(&["apply", "-f", "-"], missing);
    assert!(err.contains("The Pod \"p\" is invalid: spec.containers: Required value"), "{err}");
    let unknown_field = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata: {a: b}\ndatta: {}\n";
    let err = c.fails_stdin(&["apply", "-f", "-"], unknown_field);
    assert!(err.contains("unknown field \"datta\""), "{err}");
    let err = c.fails_stdin(&["apply", "-f", "-"], "key: [unclosed\n");
    assert!(err.contains("error"), "{err}");
    let bad_quantity = DEPLOYMENT.replace(
        "        image: nginx:1.25\n",
        "        image: nginx:1.25\n        resources: {limits: {memory: lots}}\n",
    );
    let err = c.fails_stdin(&["apply", "-f", "-"], &bad_quantity);
    assert!(
        err.contains("Deployment in version \"v1\" cannot be handled as a Deployment: quantities must match the regular expression"),
        "{err}"
    );
    let err = c.fails(&["get", "deployments", "nope"]);
    assert!(err.contains("deployments.apps \"nope\" not found"), "{err}");
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let stale = c.ok(&["get", "deploy", "web", "-o", "json"]);
    c.ok(&["scale", "deploy", "web", "--replicas=3"]);
    let err = c.fails_stdin(&["replace", "-f", "-"], &stale);
    assert!(err.contains("the object has been modified"), "{err}");
    let bad_name = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n";
    let err = c.fails_stdin(&["apply", "-f", "-"], bad_name);
    assert!(err.contains("metadata.name: Invalid value: \"Bad_Name\""), "{err}");
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: astaxies.demo.krust.dev
spec:
  group: demo.krust.dev
  scope: Namespaced
  names: {plural: astaxies, singular: astaxie, kind: AstaXie, shortNames: [ax]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Language, type: string, jsonPath: .spec.language}
    - {name: State, type: string, jsonPath: .status.state}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [language]
            properties:
              language: {type: string}
              handsome: {type: boolean, default: true}
          status:
            type: object
            properties:
              state: {type: string}
"#;

#[test]
fn a_crd_serves_its_custom_objects() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], CRD);
    c.ok(&["wait", "--for", "condition=established", "crd/astaxies.demo.krust.dev", "--timeout=20s"]);
    let with_extra = "apiVersion: demo.krust.dev/v1\nkind: AstaXie\nmetadata:\n  name: asta\nspec:\n  language: go\n  extra: dropped\n";
    let err = c.fails_stdin(&["apply", "-f", "-"], with_extra);
    assert!(err.contains("unknown field \"spec.extra\""), "{err}");
    c.ok_stdin(&["apply", "--validate=false", "-f", "-"], with_extra);
    let table = c.ok(&["get", "astaxies"]);
    let header: Vec<&str> = table.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "LANGUAGE", "STATE"]);
    assert!(table.contains("asta") && table.contains("go"), "{table}");
    let spec = c.ok(&["get", "ax", "asta", "-o", "jsonpath={.spec}"]);
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    assert_eq!(spec, serde_json::json!({"language": "go", "handsome": true}), "pruned and defaulted");
    c.ok(&[
        "patch",
        "ax",
        "asta",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"state":"Accepted"}}"#,
    ]);
    assert_eq!(c.ok(&["get", "ax", "asta", "-o", "jsonpath={.status.state}"]), "Accepted");
    let err = c.fails_stdin(
        &["apply", "-f", "-"],
        "apiVersion: demo.krust.dev/v1\nkind: AstaXie\nmetadata:\n  name: bad\nspec:\n  handsome: yes\n",
    );
    assert!(err.contains("spec.language: Required value"), "{err}");
    c.ok(&["delete", "ax", "asta"]);
    assert_eq!(c.ok(&["get", "ax", "-o", "name"]).trim(), "");
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    c.ok(&["scale", "deploy", "web", "--replicas=9"]);
    c.kill9();
    c.restart();
    assert_eq!(c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "9");
}

#[test]
fn discovery_lists_resources_and_explain_reads_the_schema() {
    let c = Cluster::start();
    let res = c.ok(&["api-resources"]);
    for want in ["deployments", "cronjobs", "horizontalpodautoscalers", "customresourcedefinitions", "leases"]
    {
        assert!(res.contains(want), "{want} missing: {res}");
    }
    let explain = c.ok(&["explain", "deployment.spec.strategy"]);
    assert!(explain.contains("rollingUpdate"), "{explain}");
    let versions = c.ok(&["api-versions"]);
    assert!(versions.contains("autoscaling/v2") && versions.contains("apps/v1"), "{versions}");
}

#[test]
fn delete_removes_and_wait_sees_it_gone() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    c.ok(&["delete", "deploy", "web", "--cascade=background"]);
    c.ok(&["wait", "--for=delete", "deploy/web", "--timeout=10s"]);
    let err = c.fails(&["get", "deploy", "web"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn anonymous_requests_are_unauthorized() {
    let c = Cluster::start();
    let out = std::process::Command::new("curl")
        .args(["-sk", &format!("https://127.0.0.1:{}/api/v1/namespaces", c.port)])
        .output()
        .expect("curl");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a Status");
    assert_eq!(body["code"], 401);
    assert_eq!(body["reason"], "Unauthorized");
    let token = std::fs::read_to_string(c.data_dir().join("token")).expect("the admin token");
    let out = std::process::Command::new("curl")
        .args(["-sk", "-H", &format!("Authorization: Bearer {}", token.trim())])
        .arg(format!("https://127.0.0.1:{}/api/v1/namespaces/default", c.port))
        .output()
        .expect("curl");
    let ns: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a Namespace");
    assert_eq!(ns["metadata"]["name"], "default", "a bearer token authenticates");
    let out = std::process::Command::new("curl")
        .args(["-sk", "-H", "Authorization: Bearer wrong"])
        .arg(format!("https://127.0.0.1:{}/api/v1/namespaces/default", c.port))
        .output()
        .expect("curl");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a Status");
    assert_eq!(body["code"], 401);
}

#[test]
fn imperative_creates_send_protobuf_and_work() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "team"]);
    c.ok(&["create", "configmap", "cfg", "-n", "team", "--from-literal=a=b"]);
    c.ok(&["create", "secret", "generic", "creds", "-n", "team", "--from-literal=password=hunter2"]);
    c.ok(&["create", "deployment", "web", "-n", "team", "--image=nginx:1.25", "--replicas=3"]);
    c.ok(&["create", "job", "once", "-n", "team", "--image=busybox", "--", "echo", "hi"]);
    assert_eq!(c.ok(&["get", "cm", "cfg", "-n", "team", "-o", "jsonpath={.data.a}"]), "b");
    assert_eq!(
        c.ok(&["get", "secret", "creds", "-n", "team", "-o", "jsonpath={.data.password}"]),
        "aHVudGVyMg=="
    );
    assert_eq!(c.ok(&["get", "deploy", "web", "-n", "team", "-o", "jsonpath={.spec.replicas}"]), "3");
    let sel = c.ok(&["get", "job", "once", "-n", "team", "-o", "jsonpath={.spec.selector.matchLabels}"]);
    assert!(sel.contains("batch.kubernetes.io/controller-uid"), "the server generates a Job selector: {sel}");
    let err = c.fails(&["create", "namespace", "Bad_Name"]);
    assert!(err.contains("Invalid value: \"Bad_Name\""), "{err}");
    let err = c.fails(&["create", "configmap", "cfg", "-n", "team", "--from-literal=a=c"]);
    assert!(err.contains("configmaps \"cfg\" already exists"), "{err}");
    let err = c.fails(&["create", "configmap", "x", "-n", "nowhere", "--from-literal=a=b"]);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");
}

#[test]
fn server_side_apply_tracks_field_ownership() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "--server-side", "-f", "-"], DEPLOYMENT);
    let managers = c.ok(&[
        "get",
        "deploy",
        "web",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managers.contains("kubectl"), "{managers}");
    // Another manager takes spec.replicas; re-applying a different value conflicts.
    c.ok(&["scale", "deploy", "web", "--replicas=5"]);
    let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 3");
    let err = c.fails_stdin(&["apply", "--server-side", "-f", "-"], &changed);
    assert!(err.contains("conflict") && err.contains(".spec.replicas"), "{err}");
    c.ok_stdin(&["apply", "--server-side", "--force-conflicts", "-f", "-"], &changed);
    assert_eq!(c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]), "3");
    // A field the applier stops applying is removed.
    let without_label = changed.replace("  labels: {app: web}\nspec:", "spec:");
    c.ok_stdin(&["apply", "--server-side", "-f", "-"], &without_label);
    assert_eq!(c.ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata.labels}"]), "");
}

#[test]
fn limit_ranges_default_and_bound_container_resources() {
    let c = Cluster::start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: LimitRange\nmetadata: {name: lr}\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 500m, memory: 256Mi}\n    defaultRequest: {cpu: 100m}\n    max: {cpu: \"1\"}\n",
    );
    let pod =
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: busybox}]\n";
    c.ok_stdin(&["apply", "-f", "-"], pod);
    let res = c.ok(&["get", "pod", "p", "-o", "jsonpath={.spec.containers[0].resources}"]);
    let res: serde_json::Value = serde_json::from_str(&res).unwrap();
    assert_eq!(res["limits"]["cpu"], "500m");
    assert_eq!(res["requests"]["cpu"], "100m");
    assert_eq!(res["requests"]["memory"], "256Mi", "requests default to the default limit");
    let big = "apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers: [{name: c, image: busybox, resources: {limits: {cpu: \"2\"}}}]\n";
    let err = c.fails_stdin(&["apply", "-f", "-"], big);
    assert!(err.contains("maximum cpu usage per Container is 1, but limit is 2"), "{err}");
}

#[test]
fn quotas_refuse_creates_over_their_limit() {
    let c = Cluster::start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q}\nspec:\n  hard: {configmaps: \"3\"}\nstatus:\n  hard: {configmaps: \"3\"}\n",
    );
    // Quota admission needs status.used, which the quota controller computes.
    assert!(
        c.eventually(Duration::from_secs(20), || c
            .ok(&["get", "quota", "q", "-o", "jsonpath={.status.used}"])
            .contains("configmaps")),
        "the quota controller fills status.used"
    );
    let mut refused = None;
    for i in 0..5 {
        let out = c.kubectl(&["create", "configmap", &format!("c{i}")]);
        if !out.status.success() {
            refused = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let err = refused.expect("a create over the quota is refused");
    assert!(err.contains("exceeded quota: q"), "{err}");
}

#[test]
fn describe_and_diff_show_the_object_and_its_changes() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    let d = c.ok(&["describe", "deployment", "web"]);
    for want in
        ["Name:                   web", "Replicas:", "StrategyType:           RollingUpdate", "nginx:1.25"]
    {
        assert!(d.contains(want), "{want} missing in:\n{d}");
    }
    let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 5");
    // kubectl diff exits 1 when there are differences.
    let out = c.kubectl_stdin(&["diff", "-f", "-"], &changed);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("-  replicas: 2") && text.contains("+  replicas: 5"), "{text}");
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "2",
        "diff changes nothing"
    );
    let same = c.kubectl_stdin(&["diff", "-f", "-"], DEPLOYMENT);
    assert_eq!(same.status.code(), Some(0), "{}", String::from_utf8_lossy(&same.stdout));
}

#[test]
fn dry_run_and_field_validation_warnings_write_nothing() {
    let c = Cluster::start();
    let out = c.ok_stdin(&["apply", "--dry-run=server", "-f", "-"], DEPLOYMENT);
    assert!(out.contains("(server dry run)"), "{out}");
    let err = c.fails(&["get", "deploy", "web"]);
    assert!(err.contains("not found"), "{err}");
    let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata: {a: b}\nbogus: 1\n";
    let out = c.kubectl_stdin(&["apply", "--validate=warn", "-f", "-"], unknown);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let warn = String::from_utf8_lossy(&out.stderr);
    assert!(warn.contains("unknown field \"bogus\""), "the server's Warning header reaches kubectl: {warn}");
}

#[test]
fn service_account_tokens_authenticate_until_their_account_is_gone() {
    let c = Cluster::start();
    let me = c.ok(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"]);
    assert!(me.contains("system:masters"), "{me}");
    c.ok(&["create", "serviceaccount", "robot"]);
    let token = c.ok(&["create", "token", "robot", "--duration=15m"]).trim().to_owned();
    let server = format!("https://127.0.0.1:{}", c.port);
    let as_robot = |args: &[&str]| {
        std::process::Command::new(common::KUBECTL)
            .args(["--kubeconfig", "/dev/null", "--server", &server, "--insecure-skip-tls-verify"])
            .args(["--token", &token])
            .args(args)
            .env("HOME", c.path())
            .output()
            .expect("run kubectl")
    };
    let out = as_robot(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "system:serviceaccount:default:robot");
    let err = c.fails(&["create", "token", "robot", "--duration=5m"]);
    assert!(err.contains("may not specify a duration less than 10 minutes"), "{err}");
    let err = c.fails(&["create", "token", "nobody"]);
    assert!(err.contains("serviceaccounts \"nobody\" not found"), "{err}");
    c.ok(&["delete", "serviceaccount", "robot"]);
    let out = as_robot(&["get", "pods"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unauthorized") || err.contains("provide credentials"), "{err}");
}

#[test]
fn the_official_python_client_drives_the_api() {
    let c = Cluster::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/api.py");
    let out = c.python(&script, &[]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("python api ok"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn auth_can_i_answers_for_an_authenticated_user() {
    let c = Cluster::start();
    assert_eq!(c.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
    assert_eq!(c.ok(&["auth", "can-i", "get", "/healthz"]).trim(), "yes");
    let list = c.ok(&["auth", "can-i", "--list"]);
    assert!(list.contains("*.*") && list.contains("[*]"), "{list}");
}
