//! The pod sandbox as the kubelet configures it through CRI: metadata and attempt,
//! hostname (the pod's `hostname` or name, at most 63 characters), the DNS config the
//! pod's `dnsPolicy` asks for (cluster DNS with its search path and `ndots:5`, the
//! node's resolv.conf, or only the pod's `dnsConfig`), host port mappings, the
//! `io.kubernetes.pod.*` labels, the pod cgroup under the QoS class, namespaces and the
//! pod-level security context. Also the `/etc/hosts` file the agent writes per pod.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cri::api::{
    DnsConfig, Int64Value, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol, SecurityProfile,
};
use k8s_openapi::api::core::v1::Pod;

use super::runtime_pod::keys;

/// The most nameservers and search domains a resolv.conf may hold (glibc's limits, as
/// the kubelet applies them).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The node's DNS settings, from its resolv.conf.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostDns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl HostDns {
    /// Parses a resolv.conf; comments and unknown keywords are ignored.
    pub fn parse(text: &str) -> Self {
        let mut dns = HostDns::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => dns.servers.extend(words.next().map(str::to_owned)),
                Some("search") | Some("domain") => dns.searches = words.map(str::to_owned).collect(),
                Some("options") => dns.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        dns
    }

    /// Reads and parses `path`; an unreadable file is empty settings.
    pub fn read(path: &Path) -> Self {
        std::fs::read_to_string(path).map(|t| Self::parse(&t)).unwrap_or_default()
    }
}

/// The cluster's DNS settings the agent was given.
#[derive(Clone, Debug, Default)]
pub struct ClusterDns {
    /// Cluster DNS server addresses; empty when the cluster has none.
    pub servers: Vec<String>,
    /// The cluster domain, `cluster.local`.
    pub domain: String,
}

/// What [`dns_config`] decided, with the warning the kubelet raises when a pod asks for
/// cluster DNS that is not configured.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsDecision {
    pub config: Option<DnsConfig>,
    pub missing_cluster_dns: bool,
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

fn push_unique(list: &mut Vec<String>, items: impl IntoIterator<Item = String>) {
    for item in items {
        if !list.contains(&item) {
            list.push(item);
        }
    }
}

/// The pod's DNS config from its `dnsPolicy` and `dnsConfig`.
pub fn dns_config(pod: &Pod, cluster: &ClusterDns, host: &HostDns) -> DnsDecision {
    let spec = pod.spec.as_ref();
    let mut policy = spec.and_then(|s| s.dns_policy.clone()).unwrap_or_else(|| "ClusterFirst".into());
    let host_net = host_network(pod);
    if policy == "ClusterFirstWithHostNet" {
        policy = "ClusterFirst".into();
    } else if policy == "ClusterFirst" && host_net {
        policy = "Default".into();
    }
    let mut missing_cluster_dns = false;
    if policy == "ClusterFirst" && cluster.servers.is_empty() {
        missing_cluster_dns = true;
        policy = "Default".into();
    }
    let mut config = match policy.as_str() {
        "ClusterFirst" => {
            let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let domain = if cluster.domain.is_empty() { "cluster.local" } else { &cluster.domain };
            let mut searches = vec![format!("{ns}.svc.{domain}"), format!("svc.{domain}"), domain.to_owned()];
            push_unique(&mut searches, host.searches.iter().cloned());
            DnsConfig { servers: cluster.servers.clone(), searches, options: vec!["ndots:5".into()] }
        }
        "None" => DnsConfig::default(),
        _ => DnsConfig {
            servers: host.servers.clone(),
            searches: host.searches.clone(),
            options: host.options.clone(),
        },
    };
    if let Some(extra) = spec.and_then(|s| s.dns_config.as_ref()) {
        push_unique(&mut config.servers, extra.nameservers.iter().flatten().cloned());
        push_unique(&mut config.searches, extra.searches.iter().flatten().cloned());
        for opt in extra.options.iter().flatten() {
            let name = opt.name.clone().unwrap_or_default();
            let rendered = match &opt.value {
                Some(v) => format!("{name}:{v}"),
                None => name.clone(),
            };
            config.options.retain(|o| o.split(':').next() != Some(name.as_str()));
            config.options.push(rendered);
        }
    }
    config.servers.truncate(MAX_NAMESERVERS);
    config.searches.truncate(MAX_SEARCHES);
    let empty = config.servers.is_empty() && config.searches.is_empty() && config.options.is_empty();
    DnsDecision { config: (!empty || policy == "None").then_some(config), missing_cluster_dns }
}

/// The pod's hostname and domain: `spec.hostname` (else the pod name) cut to 63
/// characters without trailing `-` or `.`, and with a subdomain
/// `<subdomain>.<namespace>.svc.<cluster domain>`.
pub fn hostname_and_domain(pod: &Pod, cluster_domain: &str) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    let mut name = spec
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
    if name.len() > 63 {
        name.truncate(63);
        while name.ends_with(['-', '.']) {
            name.pop();
        }
    }
    let domain = spec.and_then(|s| s.subdomain.clone()).filter(|s| !s.is_empty()).map(|sub| {
        let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let cluster = if cluster_domain.is_empty() { "cluster.local" } else { cluster_domain };
        format!("{sub}.{ns}.svc.{cluster}")
    });
    (name, domain)
}

/// The pod's QoS class: from its status, else computed from its containers.
pub fn qos_class(pod: &Pod) -> String {
    if let Some(q) = pod.status.as_ref().and_then(|s| s.qos_class.clone()) {
        return q;
    }
    let Some(spec) = pod.spec.as_ref() else { return "BestEffort".into() };
    let mut any = false;
    let mut guaranteed = true;
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let r = c.resources.as_ref();
        let requests = r.and_then(|r| r.requests.clone()).unwrap_or_default();
        let limits = r.and_then(|r| r.limits.clone()).unwrap_or_default();
        for res in ["cpu", "memory"] {
            if requests.contains_key(res) || limits.contains_key(res) {
                any = true;
            }
            match (requests.get(res), limits.get(res)) {
                (_, None) => guaranteed = false,
                (Some(req), Some(lim)) if req != lim => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort".into()
    } else if guaranteed {
        "Guaranteed".into()
    } else {
        "Burstable".into()
    }
}

/// The pod's cgroup under `root` for the cgroupfs driver, as the kubelet lays it out:
/// `/kubepods/pod<uid>` for Guaranteed pods, `/kubepods/<qos>/pod<uid>` otherwise.
pub fn cgroup_parent(root: &str, pod: &Pod) -> String {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    match qos_class(pod).as_str() {
        "Guaranteed" => format!("{root}/pod{uid}"),
        other => format!("{root}/{}/pod{uid}", other.to_lowercase()),
    }
}

/// The directory CRI writes the pod's container logs to.
pub fn log_directory(logs_root: &Path, pod: &Pod) -> PathBuf {
    let m = &pod.metadata;
    logs_root.join(format!(
        "{}_{}_{}",
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    ))
}

/// The namespaces of the pod: the pod's network (or the node's for `hostNetwork`), a
/// PID namespace per container (or shared, or the node's), the pod's IPC.
pub fn namespace_options(pod: &Pod) -> NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag =
        |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| spec.and_then(f).unwrap_or(false);
    let network = if flag(|s| s.host_network) { NamespaceMode::Node } else { NamespaceMode::Pod };
    let pid = if flag(|s| s.host_pid) {
        NamespaceMode::Node
    } else if flag(|s| s.share_process_namespace) {
        NamespaceMode::Pod
    } else {
        NamespaceMode::Container
    };
    let ipc = if flag(|s| s.host_ipc) { NamespaceMode::Node } else { NamespaceMode::Pod };
    NamespaceOption { network: network as i32, pid: pid as i32, ipc: ipc as i32, ..Default::default() }
}

/// The seccomp profile a security context's `seccompProfile` asks for (the kubelet's
/// default is Unconfined).
pub fn seccomp_profile(p: Option<&k8s_openapi::api::core::v1::SeccompProfile>) -> SecurityProfile {
    use cri::api::security_profile::ProfileType;
    match p.map(|p| p.type_.as_str()) {
        Some("RuntimeDefault") => {
            SecurityProfile { profile_type: ProfileType::RuntimeDefault as i32, ..Default::default() }
        }
        Some("Localhost") => SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: p.and_then(|p| p.localhost_profile.clone()).unwrap_or_default(),
        },
        _ => SecurityProfile { profile_type: ProfileType::Unconfined as i32, ..Default::default() },
    }
}

/// The labels of the pod's sandbox: its labels and the `io.kubernetes.pod.*` ones.
pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    let m = &pod.metadata;
    let mut labels: HashMap<String, String> = m.labels.clone().unwrap_or_default().into_iter().collect();
    labels.insert(keys::POD_NAME.into(), m.name.clone().unwrap_or_default());
    labels.insert(keys::POD_NAMESPACE.into(), m.namespace.clone().unwrap_or_default());
    labels.insert(keys::POD_UID.into(), m.uid.clone().unwrap_or_default());
    labels
}

/// Everything the sandbox config needs from the agent.
pub struct SandboxParams<'a> {
    pub attempt: u32,
    pub logs_root: &'a Path,
    pub cgroup_root: &'a str,
    pub dns: Option<DnsConfig>,
    pub cluster_domain: &'a str,
}

/// The CRI sandbox config of `pod`.
pub fn sandbox_config(pod: &Pod, p: &SandboxParams<'_>) -> PodSandboxConfig {
    let m = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let (hostname, _) = hostname_and_domain(pod, p.cluster_domain);
    let mut port_mappings = Vec::new();
    for c in &spec.containers {
        for port in c.ports.iter().flatten() {
            let host_port = port.host_port.unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let protocol = match port.protocol.as_deref() {
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            port_mappings.push(PortMapping {
                protocol: protocol as i32,
                container_port: port.container_port,
                host_port,
                host_ip: port.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    let sc = spec.security_context.clone().unwrap_or_default();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged).unwrap_or(false));
    let mut supplemental_groups: Vec<i64> = sc.supplemental_groups.clone().unwrap_or_default();
    if let Some(g) = sc.fs_group
        && !supplemental_groups.contains(&g)
    {
        supplemental_groups.push(g);
    }
    let security_context = LinuxSandboxSecurityContext {
        namespace_options: Some(namespace_options(pod)),
        run_as_user: sc.run_as_user.map(|value| Int64Value { value }),
        run_as_group: sc.run_as_group.map(|value| Int64Value { value }),
        supplemental_groups,
        privileged,
        seccomp: Some(seccomp_profile(sc.seccomp_profile.as_ref())),
        ..Default::default()
    };
    let sysctls = sc.sysctls.iter().flatten().map(|s| (s.name.clone(), s.value.clone())).collect();
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            attempt: p.attempt,
        }),
        hostname: if host_network(pod) { String::new() } else { hostname },
        log_directory: log_directory(p.logs_root, pod).display().to_string(),
        dns_config: p.dns.clone(),
        port_mappings,
        labels: pod_labels(pod),
        annotations: m.annotations.clone().unwrap_or_default().into_iter().collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(p.cgroup_root, pod),
            security_context: Some(security_context),
            sysctls,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The `/etc/hosts` the agent mounts into the pod's containers: localhost entries, the
/// pod's own address under its FQDN and hostname, then the pod's `hostAliases`.
pub fn hosts_file(pod: &Pod, pod_ips: &[String], cluster_domain: &str) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let (hostname, domain) = hostname_and_domain(pod, cluster_domain);
    for ip in pod_ips {
        match &domain {
            Some(d) => out.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    let aliases = pod.spec.as_ref().and_then(|s| s.host_aliases.clone()).unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.unwrap_or_default().join("\t");
            out.push_str(&format!("{}\t{names}\n", alias.ip));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "web-0", "namespace": "shop", "uid": "u1"}, "spec": spec}),
        )
        .unwrap()
    }

    fn cluster() -> ClusterDns {
        ClusterDns { servers: vec!["10.43.0.10".into()], domain: "cluster.local".into() }
    }

    fn host() -> HostDns {
        HostDns::parse("# comment\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n")
    }

    #[test]
    fn dns_policies_pick_cluster_node_or_none_settings() {
        let p = pod(json!({"containers": []}));
        let d = dns_config(&p, &cluster(), &host());
        let c = d.config.unwrap();
        assert_eq!(c.servers, ["10.43.0.10"]);
        assert_eq!(
            c.searches,
            ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"]
        );
        assert_eq!(c.options, ["ndots:5"]);
        assert!(!d.missing_cluster_dns);

        let d = dns_config(&p, &ClusterDns::default(), &host());
        assert!(d.missing_cluster_dns);
        assert_eq!(d.config.unwrap().servers, ["10.0.0.2"]);

        let p = pod(json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.2.3.4"],
            "options": [{"name": "ndots", "value": "2"}]}, "containers": []}));
        let c = dns_config(&p, &cluster(), &host()).config.unwrap();
        assert_eq!(
            (c.servers, c.searches, c.options),
            (vec!["1.2.3.4".to_string()], vec![], vec!["ndots:2".to_string()])
        );

        let p = pod(json!({"hostNetwork": true, "containers": []}));
        assert_eq!(dns_config(&p, &cluster(), &host()).config.unwrap().servers, ["10.0.0.2"]);
    }

    #[test]
    fn hostnames_use_the_subdomain_and_get_a_hosts_entry() {
        let p = pod(json!({"hostname": "db", "subdomain": "backend", "containers": [],
            "hostAliases": [{"ip": "10.1.1.1", "hostnames": ["foo", "bar"]}]}));
        assert_eq!(
            hostname_and_domain(&p, "cluster.local"),
            ("db".to_string(), Some("backend.shop.svc.cluster.local".to_string()))
        );
        let hosts = hosts_file(&p, &["10.42.0.7".into()], "cluster.local");
        assert!(hosts.contains("10.42.0.7\tdb.backend.shop.svc.cluster.local\tdb\n"), "{hosts}");
        assert!(hosts.ends_with("# Entries added by HostAliases.\n10.1.1.1\tfoo\tbar\n"), "{hosts}");
        let long = pod(json!({"hostname": format!("{}-x", "a".repeat(62)), "containers": []}));
        assert_eq!(hostname_and_domain(&long, "").0, "a".repeat(62));
    }

    #[test]
    fn qos_classes_and_cgroups_follow_requests_and_limits() {
        let g = pod(
            json!({"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
        );
        assert_eq!(qos_class(&g), "Guaranteed");
        assert_eq!(cgroup_parent("/kubepods", &g), "/kubepods/podu1");
        let b = pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}));
        assert_eq!(cgroup_parent("/kubepods", &b), "/kubepods/burstable/podu1");
        let e = pod(json!({"containers": [{"name": "c"}]}));
        assert_eq!(cgroup_parent("/kubepods", &e), "/kubepods/besteffort/podu1");
    }

    #[test]
    fn host_ports_become_port_mappings() {
        let p = pod(json!({"containers": [{"name": "c", "ports": [
            {"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP", "hostPort": 5353},
            {"containerPort": 9000}]}]}));
        let params = SandboxParams {
            attempt: 2,
            logs_root: Path::new("/logs"),
            cgroup_root: "/kubepods",
            dns: None,
            cluster_domain: "cluster.local",
        };
        let c = sandbox_config(&p, &params);
        assert_eq!(c.port_mappings.len(), 2);
        assert_eq!(c.port_mappings[1].protocol, Protocol::Udp as i32);
        assert_eq!(c.metadata.unwrap().attempt, 2);
        assert_eq!(c.log_directory, "/logs/shop_web-0_u1");
        assert_eq!(c.labels.get(keys::POD_UID).map(String::as_str), Some("u1"));
        assert_eq!(c.hostname, "web-0");
    }
}
