//! The node itself, as the kubelet registers and reports it: a Node object with the
//! well-known labels, its pod CIDR, capacity and allocatable from the machine (CPUs,
//! MemTotal, the data directory's filesystem, less the kubelet's default hard eviction
//! thresholds: 100Mi of memory and 10% of storage), addresses, nodeInfo, the images the
//! runtime holds, and the MemoryPressure, DiskPressure, PIDPressure and Ready
//! conditions (Ready follows the runtime's RuntimeReady and NetworkReady). Its Lease in
//! `kube-node-lease` is renewed every 10 seconds; the status is written when it changes
//! and at least every minute. Condition changes are recorded as node events
//! (`Node n1 status is now: NodeReady`).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec,
    NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::events::EventType;
use super::{Error, Shared};

/// The kubelet version agents report (the Kubernetes release krust follows).
pub const KUBELET_VERSION: &str = "v1.33.0-krust";
/// How often the Lease is renewed.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// The Lease's duration.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the status is computed (written only when it changed, or once a minute).
pub const STATUS_EVERY: Duration = Duration::from_secs(10);
const STATUS_REPORT_EVERY: Duration = Duration::from_secs(60);
/// The most images the node status lists, and names per image (the kubelet's limits).
const MAX_IMAGES: usize = 50;
const MAX_NAMES_PER_IMAGE: usize = 5;
/// The kubelet's default hard eviction threshold for memory.
const EVICTION_MEMORY: u64 = 100 * 1024 * 1024;

/// What the agent knows about the machine it runs on.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MachineInfo {
    pub cpus: u64,
    pub memory_bytes: u64,
    pub storage_bytes: u64,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    pub architecture: String,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// The `MemTotal` of a /proc/meminfo text, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `PRETTY_NAME` from an os-release text.
pub fn pretty_name(os_release: &str) -> Option<String> {
    let line = os_release.lines().find(|l| l.starts_with("PRETTY_NAME="))?;
    Some(line["PRETTY_NAME=".len()..].trim_matches('"').to_owned())
}

/// Kubernetes' name for the architecture this binary runs on.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn filesystem_size(path: &Path) -> u64 {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return 0 };
    // SAFETY: statvfs is plain data, filled in by the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid path and `st` a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    st.f_blocks as u64 * st.f_frsize as u64
}

fn kernel_release() -> String {
    // SAFETY: utsname is plain data, filled in by the call.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid out pointer.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    // SAFETY: uname NUL-terminates the field.
    let release = unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) };
    release.to_string_lossy().into_owned()
}

impl MachineInfo {
    /// Reads the machine's facts; `data_dir` is where pods' storage lives.
    pub fn read(data_dir: &Path) -> Self {
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u64;
        let memory_bytes =
            mem_total(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default()).unwrap_or(0);
        let _ = std::fs::create_dir_all(data_dir);
        let mut machine_id = read_trimmed("/etc/machine-id");
        if machine_id.is_empty() {
            machine_id = read_trimmed("/var/lib/dbus/machine-id");
        }
        Self {
            cpus,
            memory_bytes,
            storage_bytes: filesystem_size(data_dir),
            machine_id,
            system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid").to_lowercase(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            kernel_version: kernel_release(),
            os_image: pretty_name(&std::fs::read_to_string("/etc/os-release").unwrap_or_default())
                .unwrap_or_else(|| "Linux".into()),
            architecture: go_arch().into(),
        }
    }

    /// Capacity as the node reports it.
    pub fn capacity(&self, max_pods: u32) -> BTreeMap<String, Quantity> {
        [
            ("cpu", self.cpus.to_string()),
            ("memory", format!("{}Ki", self.memory_bytes / 1024)),
            ("ephemeral-storage", format!("{}Ki", self.storage_bytes / 1024)),
            ("hugepages-1Gi", "0".to_owned()),
            ("hugepages-2Mi", "0".to_owned()),
            ("pods", max_pods.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Quantity(v)))
        .collect()
    }

    /// Allocatable: capacity less the default hard eviction thresholds.
    pub fn allocatable(&self, max_pods: u32) -> BTreeMap<String, Quantity> {
        let mut a = self.capacity(max_pods);
        let memory = self.memory_bytes.saturating_sub(EVICTION_MEMORY);
        a.insert("memory".into(), Quantity(format!("{}Ki", memory / 1024)));
        let storage = self.storage_bytes - self.storage_bytes / 10;
        a.insert("ephemeral-storage".into(), Quantity(storage.to_string()));
        a
    }

    /// The allocatable resources, for the downward API's default limits.
    pub fn allocatable_values(&self) -> super::fieldpath::Allocatable {
        super::fieldpath::Allocatable {
            cpu: self.cpus as f64,
            memory: self.memory_bytes.saturating_sub(EVICTION_MEMORY) as f64,
            ephemeral_storage: (self.storage_bytes - self.storage_bytes / 10) as f64,
        }
    }
}

/// The Node object the agent registers.
pub fn node_object(shared: &Shared) -> Node {
    let cfg = &shared.config;
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", cfg.node_name.clone()),
        ("kubernetes.io/os", "linux".to_owned()),
        ("kubernetes.io/arch", go_arch().to_owned()),
        ("beta.kubernetes.io/os", "linux".to_owned()),
        ("beta.kubernetes.io/arch", go_arch().to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    labels.extend(cfg.node_labels.clone());
    let annotations: BTreeMap<String, String> = [
        ("node.alpha.kubernetes.io/ttl", "0"),
        ("volumes.kubernetes.io/controller-managed-attach-detach", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(cfg.node_name.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: cfg.pod_cidr.clone(),
            pod_cidrs: cfg.pod_cidr.clone().map(|c| vec![c]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Whether the runtime is ready, or why not (the Ready condition's message).
pub async fn runtime_ready(shared: &Shared) -> Result<(), String> {
    let status = shared
        .runtime
        .status(false)
        .await
        .map_err(|e| format!("container runtime is down: {}", super::grpc_message(&e)))?;
    let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
    let check = |kind: &str, what: &str| -> Result<(), String> {
        match conditions.iter().find(|c| c.r#type == kind) {
            Some(c) if c.status => Ok(()),
            Some(c) => Err(format!("{what}: {kind}=false reason:{} message:{}", c.reason, c.message)),
            None => {
                Err(format!("{what}: {kind}=false reason: message:the runtime reports no {kind} condition"))
            }
        }
    };
    check("RuntimeReady", "container runtime not ready")?;
    check("NetworkReady", "container runtime network not ready")
}

/// The images the node status lists: largest first, names as digests then tags.
pub fn node_images(mut images: Vec<cri::api::Image>) -> Vec<ContainerImage> {
    images.sort_by_key(|i| std::cmp::Reverse(i.size));
    images
        .into_iter()
        .take(MAX_IMAGES)
        .map(|i| {
            let mut names: Vec<String> = i.repo_digests.into_iter().chain(i.repo_tags).collect();
            names.truncate(MAX_NAMES_PER_IMAGE);
            ContainerImage { names: Some(names), size_bytes: Some(i.size as i64) }
        })
        .collect()
}

fn node_condition(kind: &str, ok_status: bool, reason: &str, message: &str) -> NodeCondition {
    NodeCondition {
        type_: kind.to_owned(),
        status: if ok_status { "True" } else { "False" }.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        ..Default::default()
    }
}

/// The node's status without times (conditions' times are added against the previous
/// status by [`with_times`]).
pub fn node_status(
    shared: &Shared,
    runtime: &Result<(), String>,
    version: &str,
    images: Vec<ContainerImage>,
) -> NodeStatus {
    let cfg = &shared.config;
    let m = &shared.machine;
    let ready = match runtime {
        Ok(()) => node_condition("Ready", true, "KubeletReady", "kubelet is posting ready status"),
        Err(why) => node_condition("Ready", false, "KubeletNotReady", why),
    };
    let mut addresses = Vec::new();
    if let Some(ip) = &cfg.node_ip {
        addresses.push(NodeAddress { type_: "InternalIP".into(), address: ip.clone() });
    }
    addresses.push(NodeAddress { type_: "Hostname".into(), address: cfg.node_name.clone() });
    NodeStatus {
        capacity: Some(m.capacity(cfg.max_pods)),
        allocatable: Some(m.allocatable(cfg.max_pods)),
        conditions: Some(vec![
            node_condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            node_condition("DiskPressure", false, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            node_condition(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            ready,
        ]),
        addresses: Some(addresses),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: cfg.kubelet_port.into() }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: m.machine_id.clone(),
            system_uuid: m.system_uuid.clone(),
            boot_id: m.boot_id.clone(),
            kernel_version: m.kernel_version.clone(),
            os_image: m.os_image.clone(),
            container_runtime_version: version.to_owned(),
            kubelet_version: KUBELET_VERSION.into(),
            kube_proxy_version: String::new(),
            operating_system: "linux".into(),
            architecture: m.architecture.clone(),
            ..Default::default()
        }),
        images: Some(images),
        ..Default::default()
    }
}

/// Stamps condition times: the heartbeat is now; the transition time is kept while
/// the status stays. Returns the conditions that changed (for events).
pub fn with_times(
    status: &mut NodeStatus,
    previous: Option<&NodeStatus>,
    now: Timestamp,
) -> Vec<NodeCondition> {
    let old = previous.and_then(|p| p.conditions.clone()).unwrap_or_default();
    let mut changed = Vec::new();
    for c in status.conditions.iter_mut().flatten() {
        c.last_heartbeat_time = Some(Time(now));
        match old.iter().find(|o| o.type_ == c.type_) {
            Some(o) if o.status == c.status && o.last_transition_time.is_some() => {
                c.last_transition_time = o.last_transition_time.clone();
            }
            _ => {
                c.last_transition_time = Some(Time(now));
                changed.push(c.clone());
            }
        }
    }
    changed
}

/// The reason of the (Normal) event a condition change records, as the kubelet names them.
fn condition_event(c: &NodeCondition) -> String {
    let reason = match (c.type_.as_str(), c.status.as_str()) {
        ("Ready", "True") => "NodeReady",
        ("Ready", _) => "NodeNotReady",
        ("MemoryPressure", "False") => "NodeHasSufficientMemory",
        ("MemoryPressure", _) => "NodeHasInsufficientMemory",
        ("DiskPressure", "False") => "NodeHasNoDiskPressure",
        ("DiskPressure", _) => "NodeHasDiskPressure",
        ("PIDPressure", "False") => "NodeHasSufficientPID",
        ("PIDPressure", _) => "NodeHasInsufficientPID",
        _ => "NodeStatusChanged",
    };
    reason.to_owned()
}

/// Creates the Node, or adopts an existing one of the same name (filling in its pod CIDR
/// and labels when missing).
pub async fn register(shared: &Shared) -> Result<Node, Error> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let wanted = node_object(shared);
    let name = shared.config.node_name.clone();
    match nodes.create(&PostParams::default(), &wanted).await {
        Ok(n) => {
            tracing::info!(node = %name, "registered node");
            return Ok(n);
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(Error::Api { what: format!("registering node {name}"), source: e }),
    }
    let existing =
        nodes.get(&name).await.map_err(|e| Error::Api { what: format!("reading node {name}"), source: e })?;
    let mut patch =
        json!({"metadata": {"labels": wanted.metadata.labels, "annotations": wanted.metadata.annotations}});
    if existing.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none() && shared.config.pod_cidr.is_some()
    {
        patch["spec"] = json!({"podCIDR": shared.config.pod_cidr, "podCIDRs": [shared.config.pod_cidr]});
    }
    let node = nodes
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|e| Error::Api { what: format!("updating node {name}"), source: e })?;
    tracing::info!(node = %name, "node already registered; taking it over");
    Ok(node)
}

/// Renews (or creates) the node's Lease.
pub async fn renew_lease(shared: &Shared, node_uid: Option<&str>) -> Result<(), Error> {
    let name = shared.config.node_name.clone();
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let now = MicroTime(shared.clock.now());
    let wrap = |what: &str, e| Error::Api { what: format!("{what} the lease of node {name}"), source: e };
    match leases.get_opt(&name).await.map_err(|e| wrap("reading", e))? {
        Some(mut l) => {
            let spec = l.spec.get_or_insert_with(Default::default);
            spec.renew_time = Some(now);
            spec.holder_identity = Some(name.clone());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            leases.replace(&name, &PostParams::default(), &l).await.map_err(|e| wrap("renewing", e))?;
        }
        None => {
            let owner = node_uid.map(|uid| OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: name.clone(),
                uid: uid.to_owned(),
                ..Default::default()
            });
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some("kube-node-lease".into()),
                    owner_references: owner.map(|o| vec![o]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.clone()),
                    lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            match leases.create(&PostParams::default(), &lease).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(wrap("creating", e)),
            }
        }
    }
    Ok(())
}

/// Registers the node, then renews its Lease and keeps its status current until the
/// process ends. A deleted Node is registered again.
pub async fn run(shared: std::sync::Arc<Shared>) {
    let name = shared.config.node_name.clone();
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let mut node = loop {
        match register(&shared).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "registering the node failed, retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    shared.recorder.node(EventType::Normal, "Starting", "Starting kubelet.").await;
    let version = shared.runtime_version();
    let mut last_written: Option<(NodeStatus, Timestamp)> = None;
    let mut next_status = tokio::time::Instant::now();
    let mut lease = tokio::time::interval(LEASE_RENEW);
    lease.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = lease.tick() => {
                if let Err(e) = renew_lease(&shared, node.metadata.uid.as_deref()).await {
                    tracing::debug!(node = %name, error = %e, "renewing the node lease failed");
                }
            }
            _ = tokio::time::sleep_until(next_status) => {
                next_status = tokio::time::Instant::now() + STATUS_EVERY;
                let ready = runtime_ready(&shared).await;
                let images = match shared.images.list_images(None).await {
                    Ok(i) => node_images(i),
                    Err(_) => last_written.as_ref().and_then(|(s, _)| s.images.clone()).unwrap_or_default(),
                };
                let mut status = node_status(&shared, &ready, &version, images);
                let now = shared.clock.now();
                let previous = last_written.as_ref().map(|(s, _)| s.clone()).or_else(|| node.status.clone());
                // Compare without the heartbeat times: write on change or once a minute.
                let mut probe = status.clone();
                let changed = with_times(&mut probe, previous.as_ref(), now);
                let stale = last_written.as_ref().is_none_or(|(_, at)| {
                    now.duration_since(*at) >= jiff::SignedDuration::try_from(STATUS_REPORT_EVERY).unwrap_or_default()
                });
                let same = last_written.as_ref().is_some_and(|(s, _)| {
                    let strip = |st: &NodeStatus| {
                        let mut st = st.clone();
                        for c in st.conditions.iter_mut().flatten() {
                            c.last_heartbeat_time = None;
                        }
                        st
                    };
                    strip(s) == strip(&probe)
                });
                if same && !stale {
                    continue;
                }
                let _ = with_times(&mut status, previous.as_ref(), now);
                let body = json!({"status": status});
                match nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(body)).await {
                    Ok(n) => {
                        node = n;
                        for c in &changed {
                            let reason = condition_event(c);
                            let message = format!("Node {name} status is now: {reason}");
                            shared.recorder.node(EventType::Normal, &reason, &message).await;
                        }
                        last_written = Some((status, now));
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        tracing::warn!(node = %name, "the node was deleted; registering it again");
                        last_written = None;
                        if let Ok(n) = register(&shared).await {
                            node = n;
                        }
                    }
                    Err(e) => tracing::warn!(node = %name, error = %e, "updating the node status failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_facts_parse_from_proc_and_os_release() {
        assert_eq!(mem_total("MemTotal:       24575012 kB\nMemFree: 1 kB\n"), Some(24_575_012 * 1024));
        assert_eq!(
            pretty_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn allocatable_is_capacity_less_the_eviction_thresholds() {
        let m = MachineInfo {
            cpus: 2,
            memory_bytes: 4 * 1024 * 1024 * 1024,
            storage_bytes: 1000 * 1024,
            ..Default::default()
        };
        let cap = m.capacity(110);
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "110");
        let alloc = m.allocatable(110);
        assert_eq!(alloc["memory"].0, format!("{}Ki", 4 * 1024 * 1024 - 100 * 1024));
        assert_eq!(alloc["ephemeral-storage"].0, (1000 * 1024 - 1000 * 1024 / 10).to_string());
    }

    #[test]
    fn images_are_listed_largest_first_with_digests_then_tags() {
        let img = |tag: &str, size| cri::api::Image {
            repo_tags: vec![tag.into()],
            repo_digests: vec![format!("{tag}@sha256:x")],
            size,
            ..Default::default()
        };
        let out = node_images(vec![img("small", 1), img("big", 10)]);
        assert_eq!(out[0].names.as_ref().unwrap(), &vec!["big@sha256:x".to_string(), "big".to_string()]);
        assert_eq!(out[1].size_bytes, Some(1));
    }

    #[test]
    fn transition_times_move_only_when_a_condition_changes() {
        let t0 = Timestamp::from_second(1000).unwrap();
        let t1 = Timestamp::from_second(2000).unwrap();
        let mk = |ready: bool| NodeStatus {
            conditions: Some(vec![node_condition("Ready", ready, "r", "m")]),
            ..Default::default()
        };
        let mut first = mk(true);
        assert_eq!(with_times(&mut first, None, t0).len(), 1);
        let mut again = mk(true);
        assert!(with_times(&mut again, Some(&first), t1).is_empty());
        let c = &again.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.last_transition_time.clone(), c.last_heartbeat_time.clone()),
            (Some(Time(t0)), Some(Time(t1)))
        );
        let mut down = mk(false);
        assert_eq!(with_times(&mut down, Some(&again), t1)[0].status, "False");
    }
}
