//! End-to-end: Jobs, CronJobs and the TTL-after-finished controller, driven by the real
//! kubectl against the real `krust server`. Pods run to completion on simulated nodes
//! (`--sim-nodes`); the Job templates name the node (`nodeName: sim-0`) so they do not
//! depend on the scheduler. Tests that need no running pods use no nodes at all.

mod common;

use std::time::Duration;

use common::Cluster;

const WAIT: Duration = Duration::from_secs(60);

fn sim_cluster() -> Cluster {
    let c = Cluster::start_with(&["--sim-nodes", "1", "--sim-job-duration", "1s"]);
    assert!(
        c.eventually(WAIT, || c.kubectl(&["get", "node", "sim-0"]).status.success()),
        "the simulated node never registered"
    );
    c
}

/// `kubectl wait --for=condition=<cond> <what>`; on failure, shows the object, the
/// pods and the end of the server log.
fn wait_condition(c: &Cluster, cond: &str, what: &str) {
    let out = c.kubectl(&["wait", &format!("--for=condition={cond}"), what, "--timeout=90s"]);
    if !out.status.success() {
        let log = c.log();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "{what} never became {cond}: {}\n{}\n{}\nserver log (end):\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.ok(&["get", what, "-o", "yaml"]),
            c.ok(&["get", "pods", "-o", "wide"]),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

fn jsonpath(c: &Cluster, what: &[&str], path: &str) -> String {
    let mut args: Vec<&str> = vec!["get"];
    args.extend_from_slice(what);
    let jp = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &jp]);
    String::from_utf8_lossy(&c.kubectl(&args).stdout).into_owned()
}

const PI: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      nodeName: sim-0
      restartPolicy: Never
      containers: [{name: pi, image: "perl:5.34", command: ["perl", "-Mbignum=bpi", "-wle", "print bpi(100)"]}]
"#;

#[test]
fn a_job_runs_its_completions_and_is_complete() {
    let c = sim_cluster();
    c.ok_stdin(&["apply", "-f", "-"], PI);
    wait_condition(&c, "complete", "job/pi");

    assert_eq!(jsonpath(&c, &["job", "pi"], "{.status.succeeded}"), "3");
    assert_eq!(jsonpath(&c, &["job", "pi"], "{.status.conditions[*].type}"), "SuccessCriteriaMet Complete");
    assert_eq!(jsonpath(&c, &["job", "pi"], "{.status.conditions[1].reason}"), "CompletionsReached");
    assert!(!jsonpath(&c, &["job", "pi"], "{.status.completionTime}").is_empty());
    let table = c.ok(&["get", "job", "pi"]);
    assert!(table.contains("Complete") && table.contains("3/3"), "{table}");

    // Every pod was counted once and lost its tracking finalizer; each carries the
    // Job's labels and controller reference.
    let finalizers = jsonpath(&c, &["pods", "-l", "job-name=pi"], "{.items[*].metadata.finalizers}");
    assert!(!finalizers.contains("job-tracking"), "{finalizers}");
    let owners = jsonpath(
        &c,
        &["pods", "-l", "batch.kubernetes.io/job-name=pi"],
        "{.items[*].metadata.ownerReferences[0].kind}",
    );
    assert_eq!(owners.split_whitespace().count(), 3, "{owners}");

    let describe = c.ok(&["describe", "job", "pi"]);
    assert!(describe.contains("Created pod: pi-"), "{describe}");
    assert!(describe.contains("Job completed"), "{describe}");
}

const INDEXED: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: idx}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      nodeName: sim-0
      restartPolicy: Never
      containers: [{name: w, image: busybox, command: ["sh", "-c", "echo $JOB_COMPLETION_INDEX"]}]
"#;

#[test]
fn an_indexed_job_records_its_completed_indexes() {
    let c = sim_cluster();
    c.ok_stdin(&["apply", "-f", "-"], INDEXED);
    wait_condition(&c, "complete", "job/idx");
    assert_eq!(jsonpath(&c, &["job", "idx"], "{.status.completedIndexes}"), "0-2");
    let mut indexes: Vec<String> = jsonpath(
        &c,
        &["pods", "-l", "job-name=idx"],
        "{.items[*].metadata.labels.batch\\.kubernetes\\.io/job-completion-index}",
    )
    .split_whitespace()
    .map(str::to_string)
    .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    let hostnames = jsonpath(&c, &["pods", "-l", "job-name=idx"], "{.items[*].spec.hostname}");
    assert!(hostnames.contains("idx-0") && hostnames.contains("idx-2"), "{hostnames}");
}

#[test]
fn a_suspended_job_runs_nothing_until_resumed() {
    let c = Cluster::start();
    let suspended = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: later}
spec:
  suspend: true
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
"#;
    c.ok_stdin(&["apply", "-f", "-"], suspended);
    assert!(
        c.eventually(WAIT, || jsonpath(&c, &["job", "later"], "{.status.conditions[0].reason}")
            == "JobSuspended"),
        "{}",
        c.ok(&["get", "job", "later", "-o", "yaml"])
    );
    assert!(c.ok(&["get", "job", "later"]).contains("Suspended"));
    assert_eq!(jsonpath(&c, &["job", "later"], "{.status.startTime}"), "");
    assert_eq!(jsonpath(&c, &["pods", "-l", "job-name=later"], "{.items[*].metadata.name}"), "");

    c.ok(&["patch", "job", "later", "--type=merge", "-p", r#"{"spec":{"suspend":false}}"#]);
    assert!(
        c.eventually(WAIT, || jsonpath(&c, &["job", "later"], "{.status.conditions[0].reason}")
            == "JobResumed"),
        "{}",
        c.ok(&["get", "job", "later", "-o", "yaml"])
    );
    assert!(c.eventually(WAIT, || {
        !jsonpath(&c, &["pods", "-l", "job-name=later"], "{.items[*].metadata.name}").is_empty()
    }));
    assert!(!jsonpath(&c, &["job", "later"], "{.status.startTime}").is_empty());
    assert_eq!(jsonpath(&c, &["job", "later"], "{.status.active}"), "1");
    let describe = c.ok(&["describe", "job", "later"]);
    assert!(describe.contains("Job suspended") && describe.contains("Job resumed"), "{describe}");
}

#[test]
fn a_job_past_its_active_deadline_fails_with_deadline_exceeded() {
    let c = Cluster::start();
    let slow = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: slow}
spec:
  activeDeadlineSeconds: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: busybox}]
"#;
    c.ok_stdin(&["apply", "-f", "-"], slow);
    wait_condition(&c, "failed", "job/slow");
    assert_eq!(jsonpath(&c, &["job", "slow"], "{.status.conditions[*].type}"), "FailureTarget Failed");
    assert_eq!(jsonpath(&c, &["job", "slow"], "{.status.conditions[1].reason}"), "DeadlineExceeded");
    assert!(c.ok(&["get", "job", "slow"]).contains("Failed"));
    assert!(
        c.eventually(WAIT, || jsonpath(&c, &["pods", "-l", "job-name=slow"], "{.items[*].metadata.name}")
            .is_empty()),
        "the pod of a failed Job must be deleted"
    );
    let describe = c.ok(&["describe", "job", "slow"]);
    assert!(describe.contains("Job was active longer than specified deadline"), "{describe}");
}

#[test]
fn a_finished_job_is_deleted_after_its_ttl() {
    let c = sim_cluster();
    let short = PI
        .replace("metadata: {name: pi}", "metadata: {name: brief}")
        .replace("  completions: 3\n  parallelism: 2\n", "  ttlSecondsAfterFinished: 2\n");
    c.ok_stdin(&["apply", "-f", "-"], &short);
    wait_condition(&c, "complete", "job/brief");
    assert!(
        c.eventually(WAIT, || !c.kubectl(&["get", "job", "brief"]).status.success()),
        "the Job outlived its TTL: {}",
        c.ok(&["get", "job", "brief", "-o", "yaml"])
    );
    assert!(
        c.eventually(WAIT, || jsonpath(&c, &["pods", "-l", "job-name=brief"], "{.items[*].metadata.name}")
            .is_empty()),
        "its pods must go with it"
    );
}

const HELLO: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: hello}
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          nodeName: sim-0
          restartPolicy: OnFailure
          containers: [{name: hello, image: busybox, command: ["sh", "-c", "date; echo Hello"]}]
"#;

#[test]
fn a_cronjob_runs_by_hand_and_on_its_schedule() {
    let c = sim_cluster();
    c.ok_stdin(&["apply", "-f", "-"], HELLO);

    // kubectl builds the Job client-side from the template.
    c.ok(&["create", "job", "hello-now", "--from=cronjob/hello"]);
    wait_condition(&c, "complete", "job/hello-now");
    assert_eq!(
        jsonpath(&c, &["job", "hello-now"], "{.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate}"),
        "manual"
    );
    assert_eq!(jsonpath(&c, &["job", "hello-now"], "{.metadata.ownerReferences[0].name}"), "hello");

    // The first scheduled run: within a minute and a bit.
    assert!(
        c.eventually(Duration::from_secs(80), || !jsonpath(
            &c,
            &["cronjob", "hello"],
            "{.status.lastScheduleTime}"
        )
        .is_empty()),
        "the schedule never fired: {}",
        c.ok(&["get", "cronjob", "hello", "-o", "yaml"])
    );
    let last = jsonpath(&c, &["cronjob", "hello"], "{.status.lastScheduleTime}");
    let minutes =
        last.parse::<k8s_openapi::jiff::Timestamp>().expect("lastScheduleTime is RFC 3339").as_second() / 60;
    let scheduled = format!("hello-{minutes}");
    wait_condition(&c, "complete", &format!("job/{scheduled}"));
    assert_eq!(
        jsonpath(
            &c,
            &["job", &scheduled],
            "{.metadata.annotations.batch\\.kubernetes\\.io/cronjob-scheduled-timestamp}"
        ),
        last
    );
    assert!(
        c.eventually(WAIT, || !jsonpath(&c, &["cronjob", "hello"], "{.status.lastSuccessfulTime}")
            .is_empty()),
        "{}",
        c.ok(&["get", "cronjob", "hello", "-o", "yaml"])
    );
    assert!(c.eventually(WAIT, || jsonpath(&c, &["cronjob", "hello"], "{.status.active}").is_empty()));
    let describe = c.ok(&["describe", "cronjob", "hello"]);
    assert!(describe.contains(&format!("Created job {scheduled}")), "{describe}");
    assert!(describe.contains(&format!("Saw completed job: {scheduled}, status: Complete")), "{describe}");
    assert!(
        describe.contains("Saw a job that the controller did not create or forgot: hello-now"),
        "{describe}"
    );
}
