//! Simulated nodes, in the spirit of kwok: each registers a Node with capacity, renews
//! its heartbeat Lease, keeps its conditions fresh, and takes the pods bound to it through
//! the kubelet's state machine (Pending -> Running and Ready with a pod IP; Job pods
//! Succeeded after a configurable time; graceful deletion honoured) without containers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

mod status;

pub use status::{pod_ip, pod_is_job_like};

/// The kubelet version simulated nodes report.
pub const KUBELET_VERSION: &str = "v1.33.0-krust";
/// How often a node renews its Lease.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How often a node refreshes its conditions' heartbeat time.
pub const STATUS_EVERY: Duration = Duration::from_secs(40);

/// What the simulated nodes look like and how their pods behave.
#[derive(Clone, Debug)]
pub struct Options {
    /// How many nodes.
    pub count: usize,
    /// Node names are `<prefix><index>`.
    pub prefix: String,
    /// Index of the first node (so `krust sim` can add nodes beside existing ones).
    pub first_index: usize,
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    /// How long a pod whose restartPolicy is not Always runs before it succeeds.
    pub job_duration: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            count: 1,
            prefix: "sim-".into(),
            first_index: 0,
            cpu: "8".into(),
            memory: "32Gi".into(),
            pods: "110".into(),
            job_duration: Duration::from_secs(2),
        }
    }
}

/// Errors of the simulated kubelet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
}

/// State shared by the node loops and the pod reconciler.
struct Shared {
    client: Client,
    options: Options,
    /// Nodes this process simulates (removed when a user deletes the Node).
    nodes: Mutex<BTreeMap<String, usize>>,
    /// The pods the reconciler sees (for IPs already in use).
    pods: kube::runtime::reflector::Store<Pod>,
    /// IPs handed out recently, not yet visible in `pods`.
    /// Pod IPs handed out recently, per node, that the pod cache may not show yet.
    reserved: Mutex<HashMap<String, Vec<(std::time::Instant, String)>>>,
}

fn node_name(o: &Options, i: usize) -> String {
    format!("{}{}", o.prefix, i)
}

fn node_object(o: &Options, name: &str, index: usize) -> Node {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let cond = |t: &str, s: &str, reason: &str, msg: &str| {
        json!({"type": t, "status": s, "reason": reason, "message": msg,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let capacity = json!({"cpu": o.cpu, "memory": o.memory, "pods": o.pods, "ephemeral-storage": "100Gi"});
    let v = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "krust-sim",
                "type": "krust-sim",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "krust.dev/simulated": "true"},
        },
        "spec": {"podCIDR": format!("10.42.{}.0/24", index % 256), "podCIDRs": [format!("10.42.{}.0/24", index % 256)]},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": format!("10.41.{}.{}", index / 250, index % 250 + 1)},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": format!("{:032x}", index),
                "systemUUID": format!("{:032x}", index),
                "bootID": format!("{:032x}", index + 1),
                "kernelVersion": "simulated",
                "osImage": "krust simulated node",
                "containerRuntimeVersion": "sim://1.0.0",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    });
    serde_json::from_value(v).unwrap_or_default()
}

/// Registers a node (or takes over an existing one of the same name) and returns whether
/// it is now ours.
async fn register(shared: &Shared, name: &str, index: usize) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let node = node_object(&shared.options, name, index);
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    // Status is its own subresource: write it through /status.
    let status = serde_json::to_value(&node.status).unwrap_or(Value::Null);
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
    Ok(())
}

async fn renew_lease(client: &Client, name: &str) -> Result<(), Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = MicroTime(jiff::Timestamp::now());
    match leases.get_opt(name).await? {
        Some(mut l) => {
            let spec = l.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(now);
            spec.holder_identity = Some(name.into());
            spec.lease_duration_seconds = Some(40);
            leases.replace(name, &PostParams::default(), &l).await?;
        }
        None => {
            let l = Lease {
                metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.into()),
                    lease_duration_seconds: Some(40),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            match leases.create(&PostParams::default(), &l).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

async fn heartbeat_conditions(client: &Client, name: &str) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let Some(node) = nodes.get_opt(name).await? else { return Ok(()) };
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut conds =
        serde_json::to_value(node.status.and_then(|s| s.conditions).unwrap_or_default()).unwrap_or_default();
    if let Some(a) = conds.as_array_mut() {
        for c in a.iter_mut() {
            let healthy = if c["type"] == "Ready" { "True" } else { "False" };
            if c["status"] != healthy {
                c["status"] = json!(healthy);
                c["lastTransitionTime"] = json!(now);
                if c["type"] == "Ready" {
                    c["reason"] = json!("KubeletReady");
                    c["message"] = json!("kubelet is posting ready status");
                }
            }
            c["lastHeartbeatTime"] = json!(now);
        }
    }
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"conditions": conds}})),
        )
        .await?;
    Ok(())
}

/// Keeps one node alive until a user deletes it.
async fn node_loop(shared: Arc<Shared>, name: String, index: usize) {
    loop {
        match register(&shared, &name, index).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "registering simulated node failed, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let mut last_status = tokio::time::Instant::now();
    loop {
        if let Err(e) = renew_lease(&shared.client, &name).await {
            tracing::debug!(node = %name, error = %e, "lease renewal failed");
        }
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = tokio::time::Instant::now();
            if let Err(e) = heartbeat_conditions(&shared.client, &name).await {
                tracing::debug!(node = %name, error = %e, "status heartbeat failed");
            }
        }
        tokio::time::sleep(LEASE_RENEW).await;
        // A user deleting the Node removes it from the simulation for good.
        if let Ok(None) = nodes.get_opt(&name).await {
            tracing::info!(node = %name, "simulated node deleted, stopping it");
            shared.nodes.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
            let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
            let _ = leases.delete(&name, &DeleteParams::default()).await;
            return;
        }
    }
}

/// Drives one pod bound to a simulated node one step through its lifecycle.
async fn reconcile(pod: Arc<Pod>, shared: Arc<Shared>) -> Result<Action, Error> {
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let index = {
        let nodes = shared.nodes.lock().unwrap_or_else(|e| e.into_inner());
        match nodes.get(&node) {
            Some(i) => *i,
            None => return Ok(Action::await_change()),
        }
    };
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
    let now = jiff::Timestamp::now();
    if pod.metadata.deletion_timestamp.is_some() {
        // Containers "stop" at once; the kubelet then removes the pod for good.
        let dp = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
        return match api.delete(&name, &dp).await {
            Ok(_) => Ok(Action::await_change()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(Action::await_change()),
            Err(e) => Err(e.into()),
        };
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    match phase.as_str() {
        "Succeeded" | "Failed" => Ok(Action::await_change()),
        "Running" => {
            if !pod_is_job_like(&pod) {
                return Ok(Action::await_change());
            }
            let started = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0).unwrap_or(now);
            let due =
                started + jiff::SignedDuration::try_from(shared.options.job_duration).unwrap_or_default();
            if now < due {
                let wait = now.duration_until(due).unsigned_abs();
                return Ok(Action::requeue(wait.max(Duration::from_millis(50))));
            }
            let body = status::succeeded(&pod, now);
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(body)).await?;
            Ok(Action::await_change())
        }
        _ => {
            let ip = {
                let mut all_reserved = shared.reserved.lock().unwrap_or_else(|e| e.into_inner());
                let reserved = all_reserved.entry(node.clone()).or_default();
                reserved.retain(|(t, _)| t.elapsed() < Duration::from_secs(60));
                let mut used: BTreeSet<String> = reserved.iter().map(|(_, ip)| ip.clone()).collect();
                for p in shared.pods.state() {
                    let same_node =
                        p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str());
                    if same_node
                        && p.metadata.uid != pod.metadata.uid
                        && let Some(ip) = p.status.as_ref().and_then(|s| s.pod_ip.clone())
                    {
                        used.insert(ip);
                    }
                }
                let ip = pod_ip(index, &pod, &used);
                reserved.push((std::time::Instant::now(), ip.clone()));
                ip
            };
            let host_ip = format!("10.41.{}.{}", index / 250, index % 250 + 1);
            let body = status::running(&pod, now, &ip, &host_ip);
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(body)).await?;
            if pod_is_job_like(&pod) {
                return Ok(Action::requeue(shared.options.job_duration));
            }
            Ok(Action::await_change())
        }
    }
}

fn error_policy(_: Arc<Pod>, err: &Error, _: Arc<Shared>) -> Action {
    tracing::debug!(error = %err, "simulated kubelet: will retry");
    Action::requeue(Duration::from_secs(1))
}

/// Runs `options.count` simulated nodes until the process ends.
pub async fn run(client: Client, options: Options) {
    let pods: Api<Pod> = Api::all(client.clone());
    let controller = Controller::new(pods, watcher::Config::default());
    let shared = Arc::new(Shared {
        client: client.clone(),
        options: options.clone(),
        nodes: Mutex::new(BTreeMap::new()),
        pods: controller.store(),
        reserved: Mutex::new(HashMap::new()),
    });
    for i in options.first_index..options.first_index + options.count {
        let name = node_name(&options, i);
        shared.nodes.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone(), i);
        tokio::spawn(node_loop(shared.clone(), name, i));
    }
    controller.run(reconcile, error_policy, shared).for_each(|_| async {}).await;
}
