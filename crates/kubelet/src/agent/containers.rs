//! What a container sees, as the kubelet builds its CRI config: the environment (service
//! links, `envFrom`, `env` values with `$(VAR)` expansion, ConfigMap and Secret keys,
//! `fieldRef` and `resourceFieldRef`), command and args expanded against it, volume
//! mounts (with `subPath`/`subPathExpr`), the pod's `/etc/hosts` and a termination-log
//! file, resources as Linux cgroup settings (CPU shares and CFS quota, memory limit,
//! OOM score by QoS class), and the security context (user, group, capabilities,
//! read-only root filesystem, privilege escalation, masked paths).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use cri::api::{
    Capability, ContainerConfig, ContainerMetadata, ImageSpec, Int64Value, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, Mount, MountPropagation,
};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use kube::api::Api;

use super::fieldpath::{self, Addresses};
use super::runtime_pod::keys;
use super::sandbox::{namespace_options, qos_class, seccomp_profile};
use super::volumes::HostVolume;
use super::{Shared, format_pod};

/// The paths the kubelet masks from unprivileged containers.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// The paths the kubelet makes read-only in unprivileged containers.
pub const DEFAULT_READONLY_PATHS: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The CFS period the kubelet uses (100ms).
const CPU_PERIOD: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const MIN_QUOTA: i64 = 1000;

/// `$(VAR)` expansion as Kubernetes does it: `$(NAME)` is replaced when `lookup` knows
/// NAME and kept as written otherwise; `$$` is an escaped `$`; an unclosed `$(` stays.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if after.is_empty() {
            out.push('$');
            rest = after;
            break;
        }
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(close) => {
                    let name = &inner[..close];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            let c = after.chars().next().unwrap_or_default();
            out.push('$');
            out.push(c);
            rest = &after[c.len_utf8()..];
        }
    }
    out.push_str(rest);
    out
}

/// An ordered environment: later definitions replace earlier ones in place.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Env {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Env {
    pub fn set(&mut self, k: &str, v: String) {
        match self.index.get(k) {
            Some(i) => self.vars[*i].1 = v,
            None => {
                self.index.insert(k.to_owned(), self.vars.len());
                self.vars.push((k.to_owned(), v));
            }
        }
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.index.get(k).map(|i| self.vars[*i].1.as_str())
    }

    pub fn vars(&self) -> &[(String, String)] {
        &self.vars
    }
}

fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// The Docker-link style variables of the services a pod in `namespace` sees: the
/// `kubernetes` Service of `default` always, and every Service of its own namespace
/// when `enable_links` (the pod's `enableServiceLinks`, default true).
pub fn service_env(services: &[Service], namespace: &str, enable_links: bool) -> Env {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for s in services {
        let ip = s.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let name = s.metadata.name.clone().unwrap_or_default();
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(s);
        } else if ns == namespace && enable_links {
            chosen.insert(name, s);
        }
    }
    let mut env = Env::default();
    for (name, s) in chosen {
        let Some(spec) = s.spec.as_ref() else { continue };
        let ip = spec.cluster_ip.clone().unwrap_or_default();
        let ports = spec.ports.clone().unwrap_or_default();
        let Some(first) = ports.first() else { continue };
        let prefix = env_name(&name);
        env.set(&format!("{prefix}_SERVICE_HOST"), ip.clone());
        env.set(&format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        for p in &ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                env.set(&format!("{prefix}_SERVICE_PORT_{}", env_name(n)), p.port.to_string());
            }
        }
        let host = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let lower = proto.to_lowercase();
            let url = format!("{lower}://{host}:{}", p.port);
            if i == 0 {
                env.set(&format!("{prefix}_PORT"), url.clone());
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            env.set(&pp, url);
            env.set(&format!("{pp}_PROTO"), lower);
            env.set(&format!("{pp}_PORT"), p.port.to_string());
            env.set(&format!("{pp}_ADDR"), ip.clone());
        }
    }
    env
}

/// Reads ConfigMaps and Secrets for the environment, at most once each per container.
struct Sources<'a> {
    shared: &'a Shared,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Sources<'_> {
    async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, String> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &self.namespace);
            let got = api
                .get_opt(name)
                .await
                .map_err(|e| format!("couldn't get configMap {}/{name}: {e}", self.namespace))?;
            self.config_maps.insert(name.to_owned(), got);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, String> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.shared.client.clone(), &self.namespace);
            let got = api
                .get_opt(name)
                .await
                .map_err(|e| format!("couldn't get secret {}/{name}: {e}", self.namespace))?;
            self.secrets.insert(name.to_owned(), got);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

fn secret_value(s: &Secret, key: &str) -> Option<String> {
    if let Some(v) = s.data.as_ref().and_then(|d| d.get(key)) {
        return Some(String::from_utf8_lossy(&v.0).into_owned());
    }
    s.string_data.as_ref().and_then(|d| d.get(key)).cloned()
}

fn secret_pairs(s: &Secret) -> Vec<(String, String)> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in s.data.iter().flatten() {
        out.insert(k.clone(), String::from_utf8_lossy(&v.0).into_owned());
    }
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out.into_iter().collect()
}

/// The container's environment, as the kubelet's `makeEnvironmentVariables`: `envFrom`
/// first, then `env` (each value expanded against what is defined so far and the service
/// variables), then the service variables not already defined. Errors are the
/// container's `CreateContainerConfigError` message.
pub async fn environment(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    addresses: &Addresses,
    services: &Env,
) -> Result<Env, String> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut sources = Sources {
        shared,
        namespace: namespace.clone(),
        config_maps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut env = Env::default();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            let optional = r.optional.unwrap_or(false);
            match sources.config_map(&r.name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        env.set(&format!("{prefix}{k}"), v.clone());
                    }
                }
                None if optional => {}
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            let optional = r.optional.unwrap_or(false);
            match sources.secret(&r.name).await? {
                Some(s) => {
                    for (k, v) in secret_pairs(s) {
                        env.set(&format!("{prefix}{k}"), v);
                    }
                }
                None if optional => {}
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let literal = var.value.clone().unwrap_or_default();
        let value = if !literal.is_empty() {
            let known = env.clone();
            expand(&literal, &|name| known.get(name).or_else(|| services.get(name)).map(str::to_owned))
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                fieldpath::pod_field(pod, &f.field_path, addresses)?
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(n) => fieldpath::find_container(pod, n)
                        .ok_or_else(|| format!("container {n} not found in pod"))?,
                    None => container,
                };
                fieldpath::container_resource(target, &r.resource, r.divisor.as_ref(), &shared.allocatable)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional.unwrap_or(false);
                match sources.config_map(&r.name).await? {
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                    None if optional => continue,
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional.unwrap_or(false);
                match sources.secret(&r.name).await? {
                    Some(s) => match secret_value(s, &r.key) {
                        Some(v) => v,
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                r.key, r.name
                            ));
                        }
                    },
                    None if optional => continue,
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(&var.name, value);
    }
    for (k, v) in services.vars() {
        if env.get(k).is_none() {
            env.set(k, v.clone());
        }
    }
    Ok(env)
}

/// A stable hash of the container's definition (resources excepted, which may change
/// in place), kept in an annotation so a changed definition restarts the container.
pub fn container_hash(container: &Container) -> String {
    let mut c = container.clone();
    c.resources = None;
    let bytes = serde_json::to_vec(&c).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:x}")
}

fn milli_cpu_to_shares(milli: i64) -> i64 {
    if milli == 0 {
        return MIN_SHARES;
    }
    (milli * 1024 / 1000).max(MIN_SHARES)
}

/// The container's Linux resources: CPU shares from its request (or limit), a CFS quota
/// from its CPU limit, its memory limit, and the OOM score adjustment of its QoS class.
pub fn linux_resources(pod: &Pod, container: &Container, memory_capacity: f64) -> LinuxContainerResources {
    let r = container.resources.as_ref();
    let get = |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
               k: &str| {
        m.and_then(|m| m.get(k)).and_then(|q| fieldpath::parse_quantity(&q.0))
    };
    let cpu_request = get(r.and_then(|r| r.requests.as_ref()), "cpu");
    let cpu_limit = get(r.and_then(|r| r.limits.as_ref()), "cpu");
    let memory_limit = get(r.and_then(|r| r.limits.as_ref()), "memory");
    let memory_request = get(r.and_then(|r| r.requests.as_ref()), "memory").or(memory_limit);
    let milli = |v: Option<f64>| v.map(|v| (v * 1000.0).ceil() as i64).unwrap_or(0);
    let shares = match (cpu_request, cpu_limit) {
        (None, Some(l)) => milli_cpu_to_shares(milli(Some(l))),
        (req, _) => milli_cpu_to_shares(milli(req)),
    };
    let mut res = LinuxContainerResources { cpu_shares: shares, ..Default::default() };
    if let Some(limit) = cpu_limit {
        let m = milli(Some(limit));
        if m > 0 {
            res.cpu_quota = (m * CPU_PERIOD / 1000).max(MIN_QUOTA);
            res.cpu_period = CPU_PERIOD;
        }
    }
    if let Some(limit) = memory_limit {
        res.memory_limit_in_bytes = limit.ceil() as i64;
    }
    res.oom_score_adj = oom_score_adj(pod, memory_request.unwrap_or(0.0), memory_capacity);
    res
}

/// The kubelet's OOM score adjustment: -997 for Guaranteed pods and node-critical ones,
/// 1000 for BestEffort, and for Burstable 1000 minus the container's share of the
/// node's memory (per mille), kept between 3 and 999.
pub fn oom_score_adj(pod: &Pod, memory_request: f64, memory_capacity: f64) -> i64 {
    let critical = pod
        .spec
        .as_ref()
        .and_then(|s| s.priority_class_name.as_deref())
        .is_some_and(|p| p == "system-node-critical");
    match qos_class(pod).as_str() {
        _ if critical => -997,
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let cap = memory_capacity.max(1.0);
            let adj = 1000 - ((1000.0 * memory_request) / cap) as i64;
            if adj < 3 {
                3
            } else if adj == 1000 {
                999
            } else {
                adj
            }
        }
    }
}

/// What [`security_context`] decides, and why a container may not run.
pub fn security_context(
    pod: &Pod,
    container: &Container,
    image_user: (Option<i64>, &str),
) -> Result<LinuxContainerSecurityContext, String> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let csc = container.security_context.clone().unwrap_or_default();
    let run_as_user = csc.run_as_user.or(psc.run_as_user);
    let run_as_group = csc.run_as_group.or(psc.run_as_group);
    let run_as_non_root = csc.run_as_non_root.or(psc.run_as_non_root).unwrap_or(false);
    if run_as_non_root {
        let pod_name = format_pod(pod);
        match run_as_user {
            Some(0) => {
                return Err(format!(
                    "container's runAsUser breaks non-root policy (pod: \"{pod_name}\", container: {})",
                    container.name
                ));
            }
            Some(_) => {}
            None => match image_user {
                (Some(0), _) => {
                    return Err(format!(
                        "container has runAsNonRoot and image will run as root (pod: \"{pod_name}\", container: {})",
                        container.name
                    ));
                }
                (None, name) if !name.is_empty() && name.parse::<i64>().is_err() => {
                    return Err(format!(
                        "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root (pod: \"{pod_name}\", container: {})",
                        container.name
                    ));
                }
                (None, name) if name.is_empty() || name == "0" => {
                    return Err(format!(
                        "container has runAsNonRoot and image will run as root (pod: \"{pod_name}\", container: {})",
                        container.name
                    ));
                }
                _ => {}
            },
        }
    }
    let privileged = csc.privileged.unwrap_or(false);
    let capabilities = csc.capabilities.as_ref().map(|c| Capability {
        add_capabilities: c.add.clone().unwrap_or_default(),
        drop_capabilities: c.drop.clone().unwrap_or_default(),
        ..Default::default()
    });
    let mut supplemental_groups = psc.supplemental_groups.clone().unwrap_or_default();
    if let Some(g) = psc.fs_group
        && !supplemental_groups.contains(&g)
    {
        supplemental_groups.push(g);
    }
    let unmasked = csc.proc_mount.as_deref() == Some("Unmasked");
    let (masked_paths, readonly_paths) = if privileged || unmasked {
        (Vec::new(), Vec::new())
    } else {
        (
            DEFAULT_MASKED_PATHS.iter().map(|s| (*s).to_owned()).collect(),
            DEFAULT_READONLY_PATHS.iter().map(|s| (*s).to_owned()).collect(),
        )
    };
    Ok(LinuxContainerSecurityContext {
        capabilities,
        privileged,
        namespace_options: Some(namespace_options(pod)),
        run_as_user: run_as_user.map(|value| Int64Value { value }),
        run_as_group: run_as_group.map(|value| Int64Value { value }),
        readonly_rootfs: csc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups,
        no_new_privs: csc.allow_privilege_escalation == Some(false),
        masked_paths,
        readonly_paths,
        seccomp: Some(seccomp_profile(csc.seccomp_profile.as_ref().or(psc.seccomp_profile.as_ref()))),
        ..Default::default()
    })
}

/// Checks a `subPath` the way the kubelet does: relative, without `..`.
fn validate_sub_path(sub: &str) -> Result<(), String> {
    if Path::new(sub).is_absolute() {
        return Err(format!("error: subPath \"{sub}\" must not be an absolute path"));
    }
    if sub.split('/').any(|p| p == "..") {
        return Err(format!("error: subPath \"{sub}\" must not contain '..'"));
    }
    Ok(())
}

/// The container's mounts: its volume mounts, then `/etc/hosts` and the
/// termination-log file when given.
pub fn mounts(
    container: &Container,
    volumes: &HashMap<String, HostVolume>,
    env: &Env,
    hosts_file: Option<&Path>,
    termination_log: Option<&Path>,
) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let Some(vol) = volumes.get(&m.name) else {
            return Err(format!(
                "cannot find volume \"{}\" to mount into container \"{}\"",
                m.name, container.name
            ));
        };
        let mut host: PathBuf = vol.path.clone();
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => Some(expand(e, &|name| env.get(name).map(str::to_owned))),
            _ => None,
        };
        if let Some(sub) = sub {
            validate_sub_path(&sub)?;
            host = host.join(&sub);
            if std::fs::symlink_metadata(&host).is_err() {
                std::fs::create_dir_all(&host).map_err(|e| {
                    format!(
                        "failed to create subPath directory for volumeMount \"{}\" of container \"{}\": {e}",
                        m.name, container.name
                    )
                })?;
            }
        }
        let propagation = match m.mount_propagation.as_deref() {
            Some("HostToContainer") => MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => MountPropagation::PropagationBidirectional,
            _ => MountPropagation::PropagationPrivate,
        };
        out.push(Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only.unwrap_or(false) || vol.read_only,
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    let mounted = |p: &str| out.iter().any(|m: &Mount| m.container_path == p);
    if let Some(hosts) = hosts_file
        && !mounted("/etc/hosts")
    {
        out.push(Mount {
            container_path: "/etc/hosts".into(),
            host_path: hosts.display().to_string(),
            ..Default::default()
        });
    }
    if let Some(log) = termination_log {
        let path =
            container.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
        if !path.is_empty() {
            out.push(Mount {
                container_path: path,
                host_path: log.display().to_string(),
                ..Default::default()
            });
        }
    }
    Ok(out)
}

/// Inputs of [`container_config`] the pod worker resolved.
pub struct ConfigInputs<'a> {
    pub image_ref: &'a str,
    pub restart_count: i32,
    pub env: &'a Env,
    pub mounts: Vec<Mount>,
    pub security: LinuxContainerSecurityContext,
    pub memory_capacity: f64,
}

/// The container's CRI config.
pub fn container_config(pod: &Pod, container: &Container, inputs: ConfigInputs<'_>) -> ContainerConfig {
    let env = inputs.env;
    let lookup = |name: &str| env.get(name).map(str::to_owned);
    let command: Vec<String> = container.command.iter().flatten().map(|c| expand(c, &lookup)).collect();
    let args: Vec<String> = container.args.iter().flatten().map(|a| expand(a, &lookup)).collect();
    let m = &pod.metadata;
    let mut labels: HashMap<String, String> = HashMap::new();
    labels.insert(keys::CONTAINER_NAME.into(), container.name.clone());
    labels.insert(keys::POD_NAME.into(), m.name.clone().unwrap_or_default());
    labels.insert(keys::POD_NAMESPACE.into(), m.namespace.clone().unwrap_or_default());
    labels.insert(keys::POD_UID.into(), m.uid.clone().unwrap_or_default());
    let mut annotations: HashMap<String, String> = HashMap::new();
    annotations.insert(keys::CONTAINER_HASH.into(), container_hash(container));
    annotations.insert(keys::RESTART_COUNT.into(), inputs.restart_count.to_string());
    annotations.insert(
        keys::TERMINATION_MESSAGE_PATH.into(),
        container.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into()),
    );
    annotations.insert(
        keys::TERMINATION_MESSAGE_POLICY.into(),
        container.termination_message_policy.clone().unwrap_or_else(|| "File".into()),
    );
    let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
    annotations.insert(keys::POD_TERMINATION_GRACE.into(), grace.to_string());
    if let Some(pre_stop) = container.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
        && let Ok(json) = serde_json::to_string(pre_stop)
    {
        annotations.insert(keys::PRE_STOP.into(), json);
    }
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: container.name.clone(),
            attempt: inputs.restart_count as u32,
        }),
        image: Some(ImageSpec {
            image: inputs.image_ref.to_owned(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: env.vars().iter().map(|(k, v)| KeyValue { key: k.clone(), value: v.clone() }).collect(),
        mounts: inputs.mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", container.name, inputs.restart_count),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(LinuxContainerConfig {
            resources: Some(linux_resources(pod, container, inputs.memory_capacity)),
            security_context: Some(inputs.security),
        }),
        ..Default::default()
    }
}

/// Resolves what [`container_config`] needs and builds it: environment, security
/// context (with the image's user for `runAsNonRoot`), mounts. Errors are the
/// `CreateContainerConfigError` message.
#[allow(clippy::too_many_arguments)]
pub async fn generate(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    image_ref: &str,
    restart_count: i32,
    addresses: &Addresses,
    volumes: &HashMap<String, HostVolume>,
    pod_dir: &Path,
) -> Result<ContainerConfig, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let services = service_env(&shared.services()?, &ns, links);
    let env = environment(shared, pod, container, addresses, &services).await?;
    let spec = ImageSpec { image: image_ref.to_owned(), ..Default::default() };
    let image = shared.images.image_status(spec).await.ok().flatten();
    let image_uid = image.as_ref().and_then(|i| i.uid.as_ref()).map(|u| u.value);
    let image_username = image.as_ref().map(|i| i.username.clone()).unwrap_or_default();
    let security = security_context(pod, container, (image_uid, &image_username))?;
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    let hosts = pod_dir.join("etc-hosts");
    let hosts = (!host_network && hosts.exists()).then_some(hosts);
    let log = termination_log_file(pod_dir, &container.name).map_err(|e| {
        format!("error on creating termination-log file for container {}: {e}", container.name)
    })?;
    let mounts = mounts(container, volumes, &env, hosts.as_deref(), Some(&log))?;
    Ok(container_config(
        pod,
        container,
        ConfigInputs {
            image_ref,
            restart_count,
            env: &env,
            mounts,
            security,
            memory_capacity: shared.allocatable.memory,
        },
    ))
}

/// A fresh, world-writable termination-log file for one run of a container.
fn termination_log_file(pod_dir: &Path, container: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = pod_dir.join("containers").join(container);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{:08x}", rand::random::<u32>()));
    std::fs::File::create(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lookup_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn variable_references_expand_as_kubernetes_does() {
        let lookup = lookup_from(&[("VAR_A", "A"), ("VAR_B", "B"), ("EMPTY", "")]);
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_A)___", "___A___"),
            ("$(VAR_A)-$(VAR_B)", "A-B"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$(VAR_A", "$(VAR_A"),
            ("$VAR_A", "$VAR_A"),
            ("$", "$"),
            ("foo$", "foo$"),
            ("$(EMPTY)x", "x"),
            ("$()", "$()"),
            ("héllo $(VAR_A) wörld", "héllo A wörld"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &lookup), want, "{input}");
        }
    }

    #[test]
    fn services_become_link_variables() {
        let svcs: Vec<Service> = serde_json::from_value(json!([
            {"metadata": {"name": "kubernetes", "namespace": "default"},
             "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}},
            {"metadata": {"name": "redis-primary", "namespace": "shop"},
             "spec": {"clusterIP": "10.43.0.7", "ports": [{"port": 6379}]}},
            {"metadata": {"name": "headless", "namespace": "shop"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}},
            {"metadata": {"name": "other", "namespace": "elsewhere"}, "spec": {"clusterIP": "10.43.0.9", "ports": [{"port": 1}]}}
        ]))
        .unwrap();
        let env = service_env(&svcs, "shop", true);
        assert_eq!(env.get("KUBERNETES_SERVICE_HOST"), Some("10.43.0.1"));
        assert_eq!(env.get("KUBERNETES_SERVICE_PORT"), Some("443"));
        assert_eq!(env.get("KUBERNETES_SERVICE_PORT_HTTPS"), Some("443"));
        assert_eq!(env.get("KUBERNETES_PORT"), Some("tcp://10.43.0.1:443"));
        assert_eq!(env.get("KUBERNETES_PORT_443_TCP_ADDR"), Some("10.43.0.1"));
        assert_eq!(env.get("REDIS_PRIMARY_SERVICE_HOST"), Some("10.43.0.7"));
        assert_eq!(env.get("REDIS_PRIMARY_PORT_6379_TCP_PROTO"), Some("tcp"));
        assert!(env.get("HEADLESS_SERVICE_HOST").is_none());
        assert!(env.get("OTHER_SERVICE_HOST").is_none());
        let without_links = service_env(&svcs, "shop", false);
        assert!(without_links.get("REDIS_PRIMARY_SERVICE_HOST").is_none());
        assert!(without_links.get("KUBERNETES_SERVICE_HOST").is_some());
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn resources_become_cgroup_settings() {
        let gib = 1024.0 * 1024.0 * 1024.0;
        let p = pod(json!({"containers": [{"name": "c",
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}}]}));
        let r = linux_resources(&p, &p.spec.as_ref().unwrap().containers[0], 4.0 * gib);
        assert_eq!((r.cpu_shares, r.cpu_quota, r.cpu_period), (256, 50_000, 100_000));
        assert_eq!(r.memory_limit_in_bytes, 1 << 30);
        assert_eq!(r.oom_score_adj, 1000 - 125);
        let g = pod(
            json!({"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
        );
        let r = linux_resources(&g, &g.spec.as_ref().unwrap().containers[0], 4.0 * gib);
        assert_eq!((r.cpu_shares, r.oom_score_adj), (1024, -997));
        let be = pod(json!({"containers": [{"name": "c"}]}));
        let r = linux_resources(&be, &be.spec.as_ref().unwrap().containers[0], 4.0 * gib);
        assert_eq!((r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes, r.oom_score_adj), (2, 0, 0, 1000));
    }

    #[test]
    fn security_context_merges_pod_and_container_and_checks_run_as_non_root() {
        let p = pod(json!({"securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000},
            "containers": [{"name": "c", "securityContext": {"readOnlyRootFilesystem": true,
                "allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}]}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let sc = security_context(&p, c, (None, "")).unwrap();
        assert_eq!(sc.run_as_user.map(|u| u.value), Some(1000));
        assert_eq!(sc.run_as_group.map(|u| u.value), Some(3000));
        assert_eq!(sc.supplemental_groups, [2000]);
        assert!(sc.readonly_rootfs && sc.no_new_privs);
        let caps = sc.capabilities.unwrap();
        assert_eq!(
            (caps.add_capabilities, caps.drop_capabilities),
            (vec!["NET_ADMIN".to_string()], vec!["ALL".to_string()])
        );
        assert!(sc.masked_paths.contains(&"/proc/kcore".to_string()));

        let nr = pod(json!({"securityContext": {"runAsNonRoot": true}, "containers": [{"name": "c"}]}));
        let c = &nr.spec.as_ref().unwrap().containers[0];
        let err = security_context(&nr, c, (Some(0), "")).unwrap_err();
        assert_eq!(
            err,
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u)\", container: c)"
        );
        assert!(security_context(&nr, c, (Some(1000), "")).is_ok());
    }

    #[test]
    fn mounts_resolve_volumes_sub_paths_and_extra_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = pod(json!({"containers": [{"name": "c", "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "data", "mountPath": "/logs", "subPathExpr": "$(POD)/logs"},
            {"name": "cfg", "mountPath": "/etc/cfg"}]}]}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let mut volumes = HashMap::new();
        volumes.insert("data".to_string(), HostVolume { path: dir.path().join("data"), read_only: false });
        volumes.insert("cfg".to_string(), HostVolume { path: dir.path().join("cfg"), read_only: true });
        let mut env = Env::default();
        env.set("POD", "p".into());
        let ms = mounts(c, &volumes, &env, Some(Path::new("/pod/etc-hosts")), Some(Path::new("/pod/log")))
            .unwrap();
        let got: Vec<_> = ms.iter().map(|m| (m.container_path.as_str(), m.readonly)).collect();
        assert_eq!(
            got,
            [
                ("/data", false),
                ("/logs", false),
                ("/etc/cfg", true),
                ("/etc/hosts", false),
                ("/dev/termination-log", false)
            ]
        );
        assert!(dir.path().join("data/p/logs").is_dir());
        let bad = pod(
            json!({"containers": [{"name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]}),
        );
        let err = mounts(&bad.spec.as_ref().unwrap().containers[0], &volumes, &env, None, None).unwrap_err();
        assert_eq!(err, "cannot find volume \"nope\" to mount into container \"c\"");
    }
}
