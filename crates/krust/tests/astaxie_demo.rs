//! End-to-end: the seed talk's AstaXie demo (examples/astaxie) against the real krust
//! binary. The CRD goes in with kubectl, the controller runs in this process as an
//! ordinary client over HTTPS with the cluster's kubeconfig, and kubectl follows the
//! invitation from `Invited` to `Accepted`, a spec edit, and the farewell on delete.

mod common;

use std::time::Duration;

use common::Cluster;

const WAIT: Duration = Duration::from_secs(30);

/// A cluster with the AstaXie CRD established and the controller running in `rt`.
fn cluster_with_the_controller(rt: &tokio::runtime::Runtime) -> Cluster {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::new("astaxie=debug,kube_runtime=info"))
        .try_init();
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], &astaxie::crd_yaml().unwrap());
    c.ok(&["wait", "--for", "condition=established", "crd/astaxies.demo.krust.dev", "--timeout=20s"]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(&c.kubeconfig).unwrap();
    let client = rt.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    });
    rt.spawn(async move {
        if let Err(e) = astaxie::run(client).await {
            eprintln!("the AstaXie controller stopped: {e:#}");
        }
    });
    c
}

fn field(c: &Cluster, jsonpath: &str) -> String {
    c.ok(&["get", "ax", "asta", "-o", &format!("jsonpath={jsonpath}")])
}

fn wait_for(c: &Cluster, jsonpath: &str, want: &str) {
    let mut last = String::new();
    let ok = c.eventually(WAIT, || {
        last = field(c, jsonpath);
        last == want
    });
    assert!(
        ok,
        "{jsonpath} stayed {last:?}, want {want:?}; object:\n{}",
        c.ok(&["get", "ax", "asta", "-o", "yaml"])
    );
}

/// The README walkthrough from `kubectl apply` of the sample to its deletion.
fn follow_the_invitation(c: &Cluster, manifest: &str) {
    c.ok_stdin(&["apply", "-f", "-"], manifest);
    wait_for(c, "{.status.state}", "Invited");
    assert_eq!(field(c, "{.status.message}"), "Invitation sent to asta, who speaks go");
    wait_for(c, "{.status.state}", "Accepted");
    assert_eq!(field(c, "{.status.message}"), "asta accepted and will speak go on stage, handsome as ever");
    assert_eq!(field(c, "{.status.observedGeneration}"), "1");
    assert_eq!(field(c, "{.metadata.finalizers}"), r#"["demo.krust.dev/farewell"]"#);

    let table = c.ok(&["get", "astaxies"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "LANGUAGE", "HANDSOME", "STATE", "AGE"], "{table}");
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(row[..4], ["asta", "go", "true", "Accepted"], "{table}");
    let wide = c.ok(&["get", "ax", "-o", "wide"]);
    assert!(wide.contains("MESSAGE") && wide.contains("handsome as ever"), "{wide}");

    // Level-triggered: the controller looks at the new spec, not at what the edit was.
    c.ok(&["patch", "ax", "asta", "--type=merge", "-p", r#"{"spec":{"handsome":false}}"#]);
    wait_for(c, "{.status.observedGeneration}", "2");
    assert_eq!(
        field(c, "{.status.message}"),
        "asta accepted and will speak go on stage; the slides will be handsome instead"
    );
    assert_eq!(field(c, "{.status.state}"), "Accepted");

    let described = c.ok(&["describe", "ax", "asta"]);
    for reason in ["Invited", "Accepted"] {
        assert!(described.contains(&format!("Normal  {reason}")), "no {reason} event:\n{described}");
    }

    c.ok(&["delete", "ax", "asta", "--timeout=30s"]);
    assert_eq!(c.ok(&["get", "ax", "-o", "name"]).trim(), "", "deleted once the farewell finalizer is gone");
    let reasons = c.ok(&["get", "events", "-o", "jsonpath={range .items[*]}{.reason}{\"\\n\"}{end}"]);
    assert!(reasons.lines().any(|r| r == "Farewell"), "no Farewell event: {reasons}");
}

#[test]
fn the_astaxie_demo_invites_accepts_follows_the_spec_and_says_farewell() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = cluster_with_the_controller(&rt);
    // The sample carries the controller's finalizer already, so this test does not depend
    // on the finalizer being added (see the next test).
    let manifest = "apiVersion: demo.krust.dev/v1\nkind: AstaXie\nmetadata:\n  name: asta\n  finalizers: [demo.krust.dev/farewell]\nspec:\n  language: go\n";
    follow_the_invitation(&c, manifest);
}

#[test]
fn the_astaxie_demo_adds_its_finalizer_to_a_new_object() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = cluster_with_the_controller(&rt);
    let manifest =
        "apiVersion: demo.krust.dev/v1\nkind: AstaXie\nmetadata:\n  name: asta\nspec:\n  language: go\n";
    follow_the_invitation(&c, manifest);
}
