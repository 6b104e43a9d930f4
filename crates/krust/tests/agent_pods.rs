//! End-to-end, as root: `krust server` with its own node agent, which starts and
//! supervises a containerd under the data directory, runs real pods from a busybox image
//! built here and pulled from a local registry, driven by the real kubectl.
//!
//! The test leaves the machine as it found it: it removes every pod sandbox from its
//! containerd, stops the server with SIGTERM (the agent then stops its containerd), and
//! guards put back `ip_forward`, the bridge and the host directories containerd creates.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Cluster;
use cri::testing::{self, BusyboxImage, HostDirsGuard, IpForwardGuard, LinkGuard, Registry};

const WAIT: Duration = Duration::from_secs(90);
const NODE: &str = "agent-e2e";

/// A cluster whose server runs a node agent, with everything the test changed on the
/// host undone when dropped (also when the test failed half-way).
/// Guards that put back what a test changed on the host.
type Guards = (HostDirsGuard, IpForwardGuard, LinkGuard);

struct AgentCluster {
    cluster: Option<Cluster>,
    /// A separate `krust agent` process, when the node joined instead of running in
    /// the server.
    agent: Option<std::process::Child>,
    /// The data directory of the agent (holding `agent/containerd`).
    agent_root: PathBuf,
    rt: tokio::runtime::Runtime,
    _registry: Registry,
    image: String,
    _guards: Guards,
}

impl AgentCluster {
    /// What every test needs before its cluster: the guards that put the host back, a
    /// runtime for async helpers, a local registry and the busybox image pushed to it.
    fn prepare(bridge: &str) -> (Guards, tokio::runtime::Runtime, Registry, String) {
        testing::require_node_tools();
        let guards = (HostDirsGuard::save(), IpForwardGuard::save(), LinkGuard::new(bridge));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let registry = rt.block_on(Registry::start()).expect("starting the test registry");
        let image = rt
            .block_on(BusyboxImage::new("krust-e2e/busybox", "1").build_and_push(registry.host()))
            .expect("building and pushing the busybox test image");
        (guards, rt, registry, image)
    }

    /// A cluster whose node has its own bridge and /24 (tests run in parallel).
    fn start(bridge: &str, third_octet: u8) -> Self {
        let (guards, rt, registry, image) = Self::prepare(bridge);
        let cidr = format!("10.42.{third_octet}.0/24");
        // The agent's API on loopback: the API server reaches it there for logs.
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        let cluster = Cluster::start_with_agent(&[
            "--node-name",
            NODE,
            "--node-ip",
            "127.0.0.1",
            "--kubelet-port",
            &port,
            "--cni-bridge",
            bridge,
            "--pod-cidr",
            &cidr,
        ]);
        let agent_root = cluster.data_dir();
        let c = Self {
            cluster: Some(cluster),
            agent: None,
            agent_root,
            rt,
            _registry: registry,
            image,
            _guards: guards,
        };
        c.wait_ready();
        c
    }

    /// A cluster whose node joins with `krust agent --server --token-file`.
    fn start_joined(bridge: &str, third_octet: u8) -> Self {
        let (guards, rt, registry, image) = Self::prepare(bridge);
        let cluster = Cluster::start();
        let agent_root = cluster.path().join("agent-data");
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        let log = std::fs::File::create(cluster.path().join("agent.log")).unwrap();
        let agent = std::process::Command::new(env!("CARGO_BIN_EXE_krust"))
            .args(["agent", "--server", &format!("https://127.0.0.1:{}", cluster.port)])
            .arg("--token-file")
            .arg(cluster.data_dir().join("agent-token"))
            .arg("--data-dir")
            .arg(&agent_root)
            .args(["--node-name", NODE, "--node-ip", "127.0.0.1", "--kubelet-port", &port])
            .args(["--cni-bridge", bridge, "--pod-cidr", &format!("10.42.{third_octet}.0/24")])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start krust agent");
        let c = Self {
            cluster: Some(cluster),
            agent: Some(agent),
            agent_root,
            rt,
            _registry: registry,
            image,
            _guards: guards,
        };
        c.wait_ready();
        c
    }

    fn agent_log(&self) -> String {
        std::fs::read_to_string(self.c().path().join("agent.log")).unwrap_or_default()
    }

    fn wait_ready(&self) {
        let c = self;
        assert!(
            c.eventually(WAIT, || c.kubectl_out(&[
                "get",
                "node",
                NODE,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"
            ]) == "True"),
            "the agent's node never became Ready; server log:\n{}\nagent log:\n{}",
            c.log(),
            c.agent_log()
        );
    }

    fn c(&self) -> &Cluster {
        self.cluster.as_ref().expect("cluster")
    }

    fn log(&self) -> String {
        self.c().log()
    }

    fn kubectl_out(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.c().kubectl(args).stdout).into_owned()
    }

    fn eventually(&self, timeout: Duration, f: impl FnMut() -> bool) -> bool {
        self.c().eventually(timeout, f)
    }

    fn socket(&self) -> PathBuf {
        self.agent_root.join("agent").join("containerd").join("containerd.sock")
    }

    fn pid_file(&self) -> PathBuf {
        self.agent_root.join("agent").join("containerd").join("containerd.pid")
    }

    fn jsonpath(&self, what: &[&str], path: &str) -> String {
        let mut args: Vec<&str> = vec!["get"];
        args.extend_from_slice(what);
        let jp = format!("jsonpath={path}");
        args.extend_from_slice(&["-o", &jp]);
        self.kubectl_out(&args)
    }

    /// Waits until `path` of `what` reads `want`; on failure shows the object, the
    /// pods and the end of the server log.
    fn wait_for(&self, what: &[&str], path: &str, want: &str) {
        let ok = self.eventually(WAIT, || self.jsonpath(what, path) == want);
        if !ok {
            let mut get: Vec<&str> = vec!["get"];
            get.extend_from_slice(what);
            get.extend_from_slice(&["-o", "yaml"]);
            panic!(
                "{what:?} {path} never became {want:?} (is {:?})\n{}\n{}\nserver log (end):\n{}",
                self.jsonpath(what, path),
                self.kubectl_out(&get),
                self.kubectl_out(&["get", "pods", "-o", "wide"]),
                tail(&self.log(), 80)
            );
        }
    }

    /// Waits for a pod's phase.
    fn wait_phase(&self, pod: &str, phase: &str) {
        self.wait_for(&["pod", pod], "{.status.phase}", phase);
    }

    /// The pod manifest with the test image.
    fn manifest(&self, yaml: &str) -> String {
        yaml.replace("IMAGE", &self.image)
    }

    fn apply(&self, yaml: &str) {
        self.c().ok_stdin(&["apply", "-f", "-"], &self.manifest(yaml));
    }

    /// How many containers (of any state) the runtime has for pods named `pod`.
    fn runtime_containers(&self, pod: &str) -> usize {
        let endpoint = format!("unix://{}", self.socket().display());
        self.rt.block_on(async {
            let client =
                cri::Client::connect(&endpoint, Duration::from_secs(10)).await.expect("connecting to CRI");
            let sandboxes = cri::Runtime::list_pod_sandbox(&client, None).await.expect("listing sandboxes");
            let ids: Vec<String> = sandboxes
                .into_iter()
                .filter(|s| s.metadata.as_ref().is_some_and(|m| m.name == pod))
                .map(|s| s.id)
                .collect();
            let containers = cri::Runtime::list_containers(&client, None).await.expect("listing containers");
            containers
                .into_iter()
                .filter(|c| {
                    ids.contains(&c.pod_sandbox_id)
                        && c.state == cri::api::ContainerState::ContainerRunning as i32
                })
                .count()
        })
    }
}

impl AgentCluster {
    /// How many pod sandboxes the runtime has (None: it cannot be asked).
    fn sandboxes(&self) -> Option<usize> {
        let endpoint = format!("unix://{}", self.socket().display());
        self.rt.block_on(async {
            let client = cri::Client::connect(&endpoint, Duration::from_secs(5)).await.ok()?;
            cri::Runtime::list_pod_sandbox(&client, None).await.ok().map(|s| s.len())
        })
    }
}

impl Drop for AgentCluster {
    /// Tears down as an operator would: deletes every workload and pod through the API
    /// and waits for the agent to remove them from the runtime, then stops the server
    /// with SIGTERM (the agent stops its containerd). If the agent does not manage,
    /// the server is killed and the pods are removed through CRI directly. Mounts left
    /// under the data directory are unmounted last.
    fn drop(&mut self) {
        let Some(cluster) = self.cluster.as_ref() else { return };
        let data_dir = self.agent_root.clone();
        let endpoint = format!("unix://{}", self.socket().display());
        let containerd_pid =
            std::fs::read_to_string(self.pid_file()).ok().and_then(|s| s.trim().parse::<i32>().ok());
        cluster.kubectl(&[
            "delete",
            "deployments,statefulsets,daemonsets,replicasets,jobs",
            "--all",
            "--wait=false",
        ]);
        cluster.kubectl(&["delete", "pods", "--all", "--grace-period=0", "--force", "--wait=false"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut drained = false;
        while Instant::now() < deadline {
            if self.sandboxes() == Some(0) {
                drained = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let mut cluster = self.cluster.take().expect("cluster");
        if let Some(mut agent) = self.agent.take() {
            let signal = if drained { "-TERM" } else { "-KILL" };
            let _ = std::process::Command::new("kill").args([signal, &agent.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !matches!(agent.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = agent.kill();
            let _ = agent.wait();
        }
        if drained {
            cluster.terminate(Duration::from_secs(30));
        } else {
            eprintln!("the agent left pods in the runtime; removing them through CRI");
            cluster.kill9();
            let removed = self.rt.block_on(async {
                let client = cri::Client::connect(&endpoint, Duration::from_secs(10))
                    .await
                    .map_err(|e| e.to_string())?;
                testing::remove_all_pods(&client).await.map_err(|e| e.to_string())
            });
            if let Err(e) = removed {
                eprintln!("could not remove the test's pods: {e}");
            }
        }
        if let Some(pid) = containerd_pid {
            let alive = || Path::new(&format!("/proc/{pid}")).exists();
            if alive() {
                if drained {
                    eprintln!("containerd (pid {pid}) outlived the server's SIGTERM");
                }
                let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while alive() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
                if alive() {
                    let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                }
            }
        }
        unmount_under(&data_dir);
    }
}

/// Unmounts (lazily, deepest first) whatever is still mounted under `dir`.
fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else { return };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        eprintln!("unmounting a leftover mount: {p}");
        let _ = std::process::Command::new("umount").args(["-l", p]).status();
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().rev().take(n).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

const INIT_AND_SHARED_VOLUME: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: init-demo}
spec:
  restartPolicy: Never
  volumes: [{name: work, emptyDir: {}}]
  initContainers:
  - name: writer
    image: IMAGE
    command: ["sh", "-c", "echo hello from init > /work/msg"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: reader
    image: IMAGE
    command: ["sh", "-c", "grep -q 'hello from init' /work/msg"]
    volumeMounts: [{name: work, mountPath: /work}]
"#;

const CONFIG_AND_SECRET: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hi}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: env-demo}
spec:
  restartPolicy: Never
  volumes:
  - {name: cfg, configMap: {name: settings}}
  - {name: sec, secret: {secretName: creds}}
  containers:
  - name: check
    image: IMAGE
    command: ["sh", "-c", "test \"$GREETING\" = hi && test \"$PASSWORD\" = s3cret && test \"$(cat /etc/cfg/greeting)\" = hi && test \"$(cat /etc/sec/password)\" = s3cret && test \"$POD_NAME\" = env-demo"]
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: settings, key: greeting}}
    - name: PASSWORD
      valueFrom: {secretKeyRef: {name: creds, key: password}}
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    volumeMounts:
    - {name: cfg, mountPath: /etc/cfg}
    - {name: sec, mountPath: /etc/sec}
"#;

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: IMAGE, command: ["sh", "-c", "echo done"]}]
"#;

const TALKER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: IMAGE
    command: ["sh", "-c", "for i in 1 2 3; do echo line $i; done; sleep 1; echo oops >&2; sleep 2; echo late"]
"#;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 3
      containers: [{name: c, image: IMAGE, command: ["sleep", "3600"]}]
"#;

#[test]
fn the_node_agent_runs_real_pods() {
    let c = AgentCluster::start("kruste2e0", 247);

    // A Deployment's pods run, each with an address from the node's pod CIDR.
    c.apply(DEPLOYMENT);
    c.wait_for(&["deployment", "web"], "{.status.readyReplicas}", "2");
    let ips = c.jsonpath(&["pods", "-l", "app=web"], "{.items[*].status.podIP}");
    let ips: Vec<&str> = ips.split_whitespace().collect();
    assert_eq!(ips.len(), 2, "{ips:?}");
    assert!(ips.iter().all(|ip| ip.starts_with("10.42.247.")), "{ips:?}");
    assert_ne!(ips[0], ips[1]);
    let wide = c.c().ok(&["get", "pods", "-l", "app=web", "-o", "wide"]);
    assert!(wide.contains("1/1") && wide.contains("Running") && wide.contains(NODE), "{wide}");

    // An init container writes a file the app container reads from a shared emptyDir.
    c.apply(INIT_AND_SHARED_VOLUME);
    c.wait_phase("init-demo", "Succeeded");
    assert_eq!(
        c.jsonpath(&["pod", "init-demo"], "{.status.initContainerStatuses[0].state.terminated.reason}"),
        "Completed"
    );
    assert_eq!(
        c.jsonpath(&["pod", "init-demo"], "{.status.containerStatuses[0].state.terminated.exitCode}"),
        "0"
    );
    let describe = c.c().ok(&["describe", "pod", "init-demo"]);
    for want in ["Scheduled", "Pulled", "Created container: writer", "Started container reader", "Completed"]
    {
        assert!(describe.contains(want), "describe lacks {want:?}:\n{describe}");
    }

    // A ConfigMap and a Secret as env and as files; the downward API as env.
    c.apply(CONFIG_AND_SECRET);
    c.wait_phase("env-demo", "Succeeded");

    // A Job's pod exits 0 and the Job completes.
    c.apply(JOB);
    c.wait_for(&["job", "once"], "{.status.succeeded}", "1");
    let out = c.c().kubectl(&["wait", "--for=condition=complete", "job/once", "--timeout=60s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        c.jsonpath(
            &["pods", "-l", "job-name=once"],
            "{.items[0].status.containerStatuses[0].state.terminated.exitCode}"
        ),
        "0"
    );

    // `kubectl logs`: all, --tail, --timestamps, -f until the container exits, -c.
    c.apply(TALKER);
    c.wait_phase("talker", "Running");
    let follow = c.c().kubectl(&["logs", "-f", "talker"]);
    assert!(follow.status.success(), "{}", String::from_utf8_lossy(&follow.stderr));
    assert_eq!(String::from_utf8_lossy(&follow.stdout), "line 1\nline 2\nline 3\noops\nlate\n");
    c.wait_phase("talker", "Succeeded");
    assert_eq!(c.c().ok(&["logs", "talker"]), "line 1\nline 2\nline 3\noops\nlate\n");
    assert_eq!(c.c().ok(&["logs", "talker", "--tail=2"]), "oops\nlate\n");
    assert_eq!(c.c().ok(&["logs", "talker", "-c", "c", "--limit-bytes=9"]), "line 1\nli");
    let stamped = c.c().ok(&["logs", "talker", "--timestamps", "--tail=1"]);
    let (stamp, text) = stamped.trim_end().split_once(' ').expect("a timestamp, then the line");
    assert!(stamp.parse::<jiff::Timestamp>().is_ok() && text == "late", "{stamped}");
    assert_eq!(c.c().ok(&["logs", "job/once"]), "done\n");
    let err = c.c().fails(&["logs", "talker", "-c", "nope"]);
    assert!(err.contains("container nope is not valid for pod talker"), "{err}");
    let err = c.c().fails(&["logs", "talker", "--previous"]);
    assert!(err.contains("previous terminated container \"c\" in pod \"talker\" not found"), "{err}");

    // `kubectl exec`: output, stderr and the exit code come back.
    let web = c.jsonpath(&["pods", "-l", "app=web"], "{.items[0].metadata.name}");
    let out = c.c().kubectl(&["exec", &web, "--", "sh", "-c", "echo hello; echo oops >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("oops"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(c.c().ok(&["exec", &web, "-c", "c", "--", "cat", "/etc/hostname"]).trim(), web);
    let err = c.c().fails(&["exec", "talker", "--", "true"]);
    assert!(
        err.contains("cannot exec into a container in a completed pod; current phase is Succeeded"),
        "{err}"
    );
    // `kubectl cp` out of a pod (tar over exec).
    let copied = c.c().path().join("copied-hostname");
    c.c().ok(&["cp", &format!("{web}:/etc/hostname"), copied.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&copied).unwrap().trim(), web);

    // Deleting a pod stops its containers within its grace period (sleep ignores
    // SIGTERM as PID 1, so the agent must SIGKILL it after 3 s).
    let victim = c.jsonpath(&["pods", "-l", "app=web"], "{.items[0].metadata.name}");
    assert_eq!(c.runtime_containers(&victim), 1, "the pod's container should run before it is deleted");
    let started = Instant::now();
    c.c().ok(&["delete", "pod", &victim, "--wait=true", "--timeout=60s"]);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "deleting the pod took {took:?}");
    assert_eq!(c.runtime_containers(&victim), 0, "the deleted pod's container still runs");
    // ... and the Deployment replaces it.
    c.wait_for(&["deployment", "web"], "{.status.readyReplicas}", "2");
}

const MISSING_IMAGE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: no-image}
spec:
  containers: [{name: c, image: "REGISTRY/krust-e2e/does-not-exist:1"}]
"#;

const MISSING_CONFIGMAP: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: no-config}
spec:
  containers:
  - name: c
    image: IMAGE
    command: ["sleep", "3600"]
    env: [{name: X, valueFrom: {configMapKeyRef: {name: missing, key: k}}}]
"#;

const NO_COMMAND: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: no-command}
spec:
  containers: [{name: c, image: IMAGE, command: ["/no/such/program"]}]
"#;

const LIVENESS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: IMAGE
    command: ["sh", "-c", "echo started; exec sleep 3600"]
    livenessProbe:
      exec: {command: ["false"]}
      periodSeconds: 1
      failureThreshold: 1
"#;

const OOM: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: hungry}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: IMAGE
    command: ["awk", "BEGIN { s = \"xxxxxxxxxxxxxxxx\"; while (1) s = s s }"]
    resources: {limits: {memory: 32Mi}}
"#;

const STATEFUL: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: keeper}
spec:
  serviceName: keeper
  replicas: 1
  selector: {matchLabels: {app: keeper}}
  template:
    metadata: {labels: {app: keeper}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: IMAGE
        command: ["sh", "-c", "[ -f /data/first ] || echo $(hostname)-$RANDOM > /data/first; exec sleep 3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 10Mi}}
"#;

const TICKER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: IMAGE
    command: ["sh", "-c", "while true; do echo tick; sleep 1; done"]
"#;

const SIDECAR: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: with-sidecar}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: logs, emptyDir: {}}]
  initContainers:
  - name: tailer
    image: IMAGE
    restartPolicy: Always
    command: ["sh", "-c", "while [ ! -f /logs/app.log ]; do sleep 0.2; done; exec tail -f /logs/app.log"]
    volumeMounts: [{name: logs, mountPath: /logs}]
  containers:
  - name: app
    image: IMAGE
    command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo entry $i >> /logs/app.log; sleep 1; done"]
    volumeMounts: [{name: logs, mountPath: /logs}]
"#;

#[test]
fn stateful_pods_keep_their_volumes_and_attach_streams_output() {
    let c = AgentCluster::start("kruste2e2", 245);

    // A StatefulSet pod's claim is provisioned on the node (local-path), and the data
    // written there survives the pod being deleted and recreated.
    c.apply(STATEFUL);
    c.wait_for(&["statefulset", "keeper"], "{.status.readyReplicas}", "1");
    assert_eq!(c.jsonpath(&["pvc", "data-keeper-0"], "{.status.phase}"), "Bound");
    let first = c.c().ok(&["exec", "keeper-0", "--", "cat", "/data/first"]);
    assert!(first.starts_with("keeper-0-"), "{first}");
    let uid = c.jsonpath(&["pod", "keeper-0"], "{.metadata.uid}");
    c.c().ok(&["delete", "pod", "keeper-0"]);
    assert!(
        c.eventually(WAIT, || {
            let now = c.jsonpath(&["pod", "keeper-0"], "{.metadata.uid}");
            !now.is_empty() && now != uid && c.jsonpath(&["pod", "keeper-0"], "{.status.phase}") == "Running"
        }),
        "keeper-0 was not recreated\n{}",
        tail(&c.log(), 60)
    );
    c.wait_for(&["statefulset", "keeper"], "{.status.readyReplicas}", "1");
    assert_eq!(c.c().ok(&["exec", "keeper-0", "--", "cat", "/data/first"]), first);

    // A sidecar (an init container that keeps running) reads the app's log file from a
    // shared emptyDir.
    c.apply(SIDECAR);
    c.wait_phase("with-sidecar", "Running");
    let ok =
        c.eventually(WAIT, || c.kubectl_out(&["logs", "with-sidecar", "-c", "tailer"]).contains("entry 2"));
    assert!(ok, "{}", c.kubectl_out(&["get", "pod", "with-sidecar", "-o", "yaml"]));
    assert_eq!(c.jsonpath(&["pod", "with-sidecar"], "{.status.initContainerStatuses[0].started}"), "true");
    let wide = c.c().ok(&["get", "pod", "with-sidecar"]);
    assert!(wide.contains("2/2"), "{wide}");

    // `kubectl attach` streams what the container prints.
    c.apply(TICKER);
    c.wait_phase("ticker", "Running");
    let out = std::process::Command::new("timeout")
        .args(["5", common::KUBECTL, "attach", "ticker"])
        .env("KUBECONFIG", &c.c().kubeconfig)
        .env("HOME", c.c().path())
        .output()
        .expect("run kubectl attach");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("tick"),
        "attach printed {stdout:?}, stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_node_agent_reports_failures_as_kubernetes_does() {
    let c = AgentCluster::start("kruste2e1", 246);
    let registry = c.image.split('/').next().unwrap().to_owned();

    // An image that does not exist: ErrImagePull, then ImagePullBackOff.
    c.c().ok_stdin(&["apply", "-f", "-"], &MISSING_IMAGE.replace("REGISTRY", &registry));
    let ok = c.eventually(WAIT, || {
        let reason = c.jsonpath(&["pod", "no-image"], "{.status.containerStatuses[0].state.waiting.reason}");
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    });
    assert!(ok, "{}", c.kubectl_out(&["get", "pod", "no-image", "-o", "yaml"]));
    let events = c.kubectl_out(&["get", "events", "--field-selector", "involvedObject.name=no-image"]);
    assert!(events.contains("Failed") && events.contains("does-not-exist"), "{events}");

    // A missing ConfigMap: CreateContainerConfigError naming it.
    c.apply(MISSING_CONFIGMAP);
    c.wait_for(
        &["pod", "no-config"],
        "{.status.containerStatuses[0].state.waiting.reason}",
        "CreateContainerConfigError",
    );
    let message = c.jsonpath(&["pod", "no-config"], "{.status.containerStatuses[0].state.waiting.message}");
    assert_eq!(message, "configmap \"missing\" not found");

    // A command that is not found: the container cannot start; the reason and the
    // event say why.
    c.apply(NO_COMMAND);
    let ok = c.eventually(WAIT, || {
        let reason =
            c.jsonpath(&["pod", "no-command"], "{.status.containerStatuses[0].state.waiting.reason}");
        reason == "RunContainerError" || reason == "CrashLoopBackOff"
    });
    assert!(ok, "{}", c.kubectl_out(&["get", "pod", "no-command", "-o", "yaml"]));
    let events = c.kubectl_out(&["get", "events", "--field-selector", "involvedObject.name=no-command"]);
    assert!(events.contains("Failed") && events.contains("/no/such/program"), "{events}");

    // A failing liveness probe restarts the container; the count shows in `get pods`.
    c.apply(LIVENESS);
    let ok = c.eventually(WAIT, || {
        c.jsonpath(&["pod", "unhealthy"], "{.status.containerStatuses[0].restartCount}")
            .parse::<u32>()
            .unwrap_or(0)
            >= 1
    });
    assert!(ok, "{}\n{}", c.kubectl_out(&["get", "pod", "unhealthy", "-o", "yaml"]), tail(&c.log(), 60));
    let events = c.kubectl_out(&["get", "events", "--field-selector", "involvedObject.name=unhealthy"]);
    assert!(events.contains("Unhealthy") && events.contains("Liveness probe failed"), "{events}");
    assert_eq!(c.c().ok(&["logs", "unhealthy", "--previous"]), "started\n");
    let get = c.c().ok(&["get", "pod", "unhealthy"]);
    assert!(
        get.lines().nth(1).is_some_and(|l| l.split_whitespace().nth(3).is_some_and(|r| r != "0")),
        "{get}"
    );

    // A container over its memory limit is OOMKilled.
    c.apply(OOM);
    c.wait_phase("hungry", "Failed");
    assert_eq!(
        c.jsonpath(&["pod", "hungry"], "{.status.containerStatuses[0].state.terminated.reason}"),
        "OOMKilled"
    );
    assert_eq!(
        c.jsonpath(&["pod", "hungry"], "{.status.containerStatuses[0].state.terminated.exitCode}"),
        "137"
    );

    // Through all of it, other pods keep running.
    c.apply(DEPLOYMENT);
    c.wait_for(&["deployment", "web"], "{.status.readyReplicas}", "2");
}

#[test]
fn a_node_joins_with_a_token_and_serves_logs_and_exec() {
    let c = AgentCluster::start_joined("kruste2e3", 244);
    // The node registered with its own identity.
    let managers = c.jsonpath(&["node", NODE], "{.metadata.managedFields[*].manager}");
    assert!(!managers.is_empty(), "{managers}");
    c.apply(TALKER);
    c.wait_phase("talker", "Succeeded");
    assert_eq!(c.c().ok(&["logs", "talker"]), "line 1\nline 2\nline 3\noops\nlate\n");
    c.apply(DEPLOYMENT);
    c.wait_for(&["deployment", "web"], "{.status.readyReplicas}", "2");
    let web = c.jsonpath(&["pods", "-l", "app=web"], "{.items[0].metadata.name}");
    assert_eq!(c.c().ok(&["exec", &web, "--", "cat", "/etc/hostname"]).trim(), web);

    // The agent's API serves the API server (and administrators), not other nodes: a
    // certificate of another node, though the cluster CA signed it, is refused.
    let tls = c.c().data_dir().join("tls");
    let ca_pem = std::fs::read_to_string(tls.join("ca.crt")).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(tls.join("ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, &ca_key).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "system:node:intruder");
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
    let key = rcgen::KeyPair::generate().unwrap();
    let node_cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_file, key_file) = (c.c().path().join("intruder.crt"), c.c().path().join("intruder.key"));
    std::fs::write(&cert_file, node_cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let port = c.jsonpath(&["node", NODE], "{.status.daemonEndpoints.kubeletEndpoint.Port}");
    let agent_get = |cert: &Path, key: &Path| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(tls.join("ca.crt"))
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg(format!("https://127.0.0.1:{port}/containerLogs/default/talker/c"))
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(agent_get(&cert_file, &key_file), "403");
    assert_eq!(agent_get(&tls.join("admin.crt"), &tls.join("admin.key")), "200");

    // A token whose CA hash is not the server's is refused before anything is sent.
    let token = std::fs::read_to_string(c.c().data_dir().join("agent-token")).unwrap();
    let wrong = format!("K10{}{}", "0".repeat(64), &token.trim()[67..]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_krust"))
        .args(["agent", "--server", &format!("https://127.0.0.1:{}", c.c().port), "--token", &wrong])
        .arg("--data-dir")
        .arg(c.c().path().join("never"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to join"), "{err}");
}

const WEB_SERVER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web-server}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: IMAGE
    command: ["sh", "-c", "mkdir -p /www && echo hello from the pod > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#;

/// Starts `kubectl port-forward` to `pod` (a local port of its choosing) and returns
/// the process and the local port it printed. Its output goes to a file: kubectl dies
/// of SIGPIPE when its stdout is a pipe nobody reads.
fn port_forward(c: &AgentCluster, pod: &str, websockets: bool) -> (std::process::Child, u16) {
    let out = c.c().path().join(format!("port-forward-{websockets}.out"));
    let mut child = c
        .c()
        .command(&["port-forward", pod, ":8080"])
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", if websockets { "true" } else { "false" })
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kubectl port-forward");
    // "Forwarding from 127.0.0.1:PORT -> 8080"
    let port = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("Forwarding from 127.0.0.1:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse::<u16>().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(p) = port(&text) {
            return (child, p);
        }
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let err = child.wait_with_output().unwrap().stderr;
            panic!("port-forward printed {text:?}; stderr: {}", String::from_utf8_lossy(&err));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.0 GET of `/` from 127.0.0.1:`port`; the whole answer.
fn http_get(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the forwarded port");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
}

#[test]
fn exec_takes_stdin_and_terminals_and_port_forward_reaches_the_pod() {
    let c = AgentCluster::start("kruste2e4", 243);
    c.apply(WEB_SERVER);
    c.wait_phase("web-server", "Running");

    // Piped stdin reaches the command and its end ends the command: over the WebSocket
    // kubectl speaks (v5, whose close signal becomes end-of-file) and over SPDY.
    for websockets in ["true", "false"] {
        let out = c
            .c()
            .command(&["exec", "-i", "web-server", "--", "sh", "-c", "cat; echo and done"])
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(b"line one\nline two\n").unwrap();
                child
            })
            .and_then(|child| child.wait_with_output())
            .expect("run kubectl exec -i");
        assert!(
            out.status.success(),
            "exec -i (websockets={websockets}) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "line one\nline two\nand done\n",
            "websockets={websockets}"
        );
        // The exit code also comes back over SPDY.
        let out = c
            .c()
            .command(&["exec", "web-server", "--", "sh", "-c", "echo out; echo err >&2; exit 4"])
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4), "websockets={websockets}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
        assert!(String::from_utf8_lossy(&out.stderr).contains("err"));
    }

    // A command that does not exist: the runtime's reason reaches the user, and kubectl
    // fails; so does a container the pod does not have.
    let out = c.c().kubectl(&["exec", "web-server", "--", "no-such-command"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no-such-command"), "{err}");
    assert!(err.contains("executable file not found"), "{err}");
    let err = c.c().fails(&["exec", "web-server", "-c", "nope", "--", "true"]);
    assert!(err.contains("container nope is not valid for pod web-server"), "{err}");

    // `kubectl cp` into the pod (tar on the command's stdin) and back out.
    let local = c.c().path().join("to-the-pod.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    c.c().ok(&["cp", local.to_str().unwrap(), "web-server:/tmp/in.txt"]);
    assert_eq!(c.c().ok(&["exec", "web-server", "--", "cat", "/tmp/in.txt"]), "copied in\n");

    // `kubectl exec -it` under a terminal: the command gets a terminal, and what it
    // prints comes back.
    let kubeconfig = c.c().kubeconfig.to_str().unwrap().to_owned();
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!(
                "{} --kubeconfig {kubeconfig} exec -it web-server -- sh -c 'tty; echo tty done'",
                common::KUBECTL
            ),
            "/dev/null",
        ])
        .env("HOME", c.c().path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run kubectl exec -it under script");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exec -it failed: {printed} {}", String::from_utf8_lossy(&out.stderr));
    assert!(printed.contains("/dev/pts/") && printed.contains("tty done"), "{printed:?}");

    // The official Python client: exec over v4.channel.k8s.io (passed through to the
    // runtime) and port-forward over the portforward.k8s.io WebSocket.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/streams.py");
    let out = c.c().python(&script, &["web-server", "8080"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("python client ok"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // `kubectl port-forward` over the WebSocket tunnel kubectl tries first, and over
    // SPDY: each local connection reaches the pod's port 8080.
    for websockets in [true, false] {
        let (mut child, port) = port_forward(&c, "web-server", websockets);
        for _ in 0..2 {
            let answer = http_get(port);
            assert!(
                answer.starts_with("HTTP/1.") && answer.contains("hello from the pod"),
                "websockets={websockets}: {answer:?}"
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A pod whose containers check, from inside, what the agent set up for them; each
/// check prints "ok NAME" or "FAIL NAME: what was seen".
const WHAT_A_CONTAINER_SEES: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: sees-settings}
data: {colour: blue}
---
apiVersion: v1
kind: Pod
metadata:
  name: sees
  labels: {tier: e2e}
spec:
  restartPolicy: Never
  hostname: box
  subdomain: sub
  dnsPolicy: None
  dnsConfig:
    nameservers: [10.0.0.10]
    searches: [a.example]
    options: [{name: ndots, value: "2"}]
  securityContext: {runAsUser: 1000, runAsGroup: 3000}
  volumes:
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: cpu, resourceFieldRef: {containerName: user, resource: limits.cpu, divisor: 1m}}
  - {name: scratch, emptyDir: {medium: Memory}}
  - {name: host, hostPath: {path: HOSTDIR, type: Directory}}
  - name: proj
    projected:
      sources:
      - configMap: {name: sees-settings}
      - downwardAPI: {items: [{path: podname, fieldRef: {fieldPath: metadata.name}}]}
  containers:
  - name: user
    image: IMAGE
    env:
    - {name: FIRST, value: one}
    - {name: SECOND, value: "$(FIRST)-two"}
    - name: MEMORY_MI
      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
    envFrom: [{prefix: CM_, configMapRef: {name: sees-settings}}]
    resources: {limits: {cpu: 500m, memory: 64Mi}}
    securityContext: {readOnlyRootFilesystem: true}
    volumeMounts:
    - {name: info, mountPath: /info}
    - {name: scratch, mountPath: /scratch}
    - {name: host, mountPath: /host}
    - {name: proj, mountPath: /proj}
    command:
    - sh
    - -c
    - |
      check() { if eval "$2"; then echo "ok $1"; else echo "FAIL $1: $3"; fi; }
      check uid '[ "$(id -u)" = 1000 ]' "$(id)"
      check gid '[ "$(id -g)" = 3000 ]' "$(id)"
      check hostname '[ "$(hostname)" = box ]' "$(hostname)"
      check hosts 'grep -q "box.sub.default.svc.cluster.local" /etc/hosts' "$(cat /etc/hosts)"
      check resolv '[ "$(cat /etc/resolv.conf)" = "$(printf "search a.example\nnameserver 10.0.0.10\noptions ndots:2")" ]' "$(cat /etc/resolv.conf)"
      check read-only-root '! touch /rootfile 2>/dev/null' "the root filesystem is writable"
      check expansion '[ "$SECOND" = one-two ]' "$SECOND"
      check resource-env '[ "$MEMORY_MI" = 64 ]' "$MEMORY_MI"
      check env-from '[ "$CM_colour" = blue ]' "$(env)"
      check downward-labels 'grep -q "tier=\"e2e\"" /info/labels' "$(cat /info/labels)"
      check downward-cpu '[ "$(cat /info/cpu)" = 500 ]' "$(cat /info/cpu)"
      check memory-medium 'grep -q " /scratch tmpfs " /proc/mounts' "$(grep scratch /proc/mounts)"
      check scratch-writable 'echo x > /scratch/f' "cannot write to the emptyDir"
      check host-path '[ "$(cat /host/from-host)" = "host file" ]' "$(ls -la /host)"
      check projected '[ "$(cat /proj/colour)" = blue ] && [ "$(cat /proj/podname)" = sees ]' "$(ls -la /proj)"
      check cpu-limit '[ "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d" " -f1 /sys/fs/cgroup/cpu.max)" = 50000 ]' "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu.max 2>&1)"
      check memory-limit '[ "$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)" = 67108864 ]' "$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>&1)"
      sa=/var/run/secrets/kubernetes.io/serviceaccount
      check sa-token '[ -s $sa/token ]' "$(ls -la $sa/)"
      check sa-namespace '[ "$(cat $sa/namespace)" = default ]' "$(cat $sa/namespace)"
      check sa-ca 'grep -q "BEGIN CERTIFICATE" $sa/ca.crt' "$(cat $sa/ca.crt)"
      echo "token $(cat $sa/token)"
  - name: capable
    image: IMAGE
    securityContext:
      runAsUser: 0
      capabilities: {drop: [ALL], add: [CHOWN]}
    command:
    - sh
    - -c
    - |
      caps=$(grep CapEff /proc/self/status | cut -f2)
      if [ "$caps" = 0000000000000001 ]; then echo "ok capabilities"; else echo "FAIL capabilities: $caps"; fi
"#;

#[test]
fn containers_see_their_identity_volumes_and_limits() {
    let c = AgentCluster::start("kruste2e5", 242);
    let host_dir = c.c().path().join("host-dir");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("from-host"), "host file").unwrap();
    c.apply(&WHAT_A_CONTAINER_SEES.replace("HOSTDIR", host_dir.to_str().unwrap()));
    c.wait_phase("sees", "Succeeded");
    let mut report = c.c().ok(&["logs", "sees", "-c", "user"]);
    report.push_str(&c.c().ok(&["logs", "sees", "-c", "capable"]));
    assert!(!report.contains("FAIL"), "{report}");
    assert_eq!(report.lines().filter(|l| l.starts_with("ok ")).count(), 21, "{report}");

    // The projected service-account token is a credential of the pod's account.
    let token = report.lines().find_map(|l| l.strip_prefix("token ")).expect("the token line").to_owned();
    let server = format!("https://127.0.0.1:{}", c.c().port);
    let out = std::process::Command::new(common::KUBECTL)
        .args(["--kubeconfig", "/dev/null", "--server", &server, "--insecure-skip-tls-verify"])
        .args(["--token", &token, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
        .env("HOME", c.c().path())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "system:serviceaccount:default:default",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
