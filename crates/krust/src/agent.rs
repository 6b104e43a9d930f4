//! `krust agent`, and the node agent `krust server` runs beside the control plane:
//! connecting to the cluster, choosing the node's name, address and pod CIDR, picking
//! the container runtime (the `--container-runtime-endpoint` given, else a containerd
//! started and supervised under `<data-dir>/agent/containerd`), then running
//! `kubelet::agent` until the process ends. When there is no runtime to use, the agent
//! says in one sentence what to install; the control plane keeps running.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use crate::cli::{AgentArgs, NodeAgentArgs};

/// How long CRI calls may take (pulls are unbounded).
const CRI_TIMEOUT: Duration = Duration::from_secs(60);

/// The node name: the flag, else the host name made a valid lowercase DNS name.
pub fn node_name(args: &NodeAgentArgs) -> String {
    if let Some(n) = &args.node_name {
        return n.clone();
    }
    let raw = crate::certs::hostname().to_lowercase();
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
        .collect();
    let cleaned = cleaned.trim_matches(['-', '.']).to_owned();
    if cleaned.is_empty() { "krust-node".into() } else { cleaned }
}

/// Whether `ip` is in krust's pod network (10.42.0.0/16), whose bridge addresses are
/// local but are not the node's address.
fn in_pod_network(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 10 && v4.octets()[1] == 42)
}

/// The node's InternalIP: the flag, else the host's first non-loopback IPv4 address
/// outside the pod network, else 127.0.0.1.
pub fn node_ip(args: &NodeAgentArgs) -> String {
    if let Some(ip) = &args.node_ip {
        return ip.clone();
    }
    crate::certs::host_addresses()
        .into_iter()
        .find(|a| a.is_ipv4() && !a.is_loopback() && !in_pod_network(a))
        .map(|a| a.to_string())
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// The node's pod CIDR: the flag, else what its Node already has, else the first
/// `10.42.N.0/24` no other Node uses.
async fn pod_cidr(client: &kube::Client, name: &str, flag: Option<&str>) -> Result<String> {
    if let Some(c) = flag {
        return Ok(c.to_owned());
    }
    let nodes: Api<Node> = Api::all(client.clone());
    if let Some(cidr) = nodes
        .get_opt(name)
        .await
        .with_context(|| format!("reading node {name}"))?
        .and_then(|n| n.spec)
        .and_then(|s| s.pod_cidr)
    {
        return Ok(cidr);
    }
    let used: Vec<String> = nodes
        .list(&ListParams::default())
        .await
        .context("listing nodes")?
        .items
        .into_iter()
        .filter_map(|n| n.spec.and_then(|s| s.pod_cidr))
        .collect();
    (0..=255)
        .map(|i| format!("10.42.{i}.0/24"))
        .find(|c| !used.contains(c))
        .context("every 10.42.N.0/24 pod CIDR is taken; give the node one with --pod-cidr")
}

/// The containerd this agent supervises, stopped (by PID) on shutdown.
type Supervised = Arc<Mutex<Option<cri::Containerd>>>;

/// Where the supervised containerd's PID is written, for tests and operators.
pub fn containerd_pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("containerd").join("containerd.pid")
}

/// Connects to the runtime: the endpoint given, else a containerd started under
/// `<data-dir>/agent`. The error of a missing containerd is one sentence naming what
/// to install.
async fn runtime(
    args: &NodeAgentArgs,
    data_dir: &Path,
    cidr: &str,
    slot: &Supervised,
) -> Result<cri::Client> {
    if let Some(endpoint) = &args.container_runtime_endpoint {
        return cri::Client::connect(endpoint, CRI_TIMEOUT)
            .await
            .with_context(|| format!("connecting to the container runtime at {endpoint}"));
    }
    cri::find_containerd()?;
    let options = cri::containerd::Options {
        pod_cidr: cidr.to_owned(),
        bridge: args.cni_bridge.clone(),
        plain_http_registries: args.insecure_registries.clone(),
        ..Default::default()
    };
    let containerd = cri::Containerd::start(&data_dir.join("agent"), options).await?;
    let pid_file = containerd_pid_file(data_dir);
    if let Err(e) = std::fs::write(&pid_file, format!("{}\n", containerd.pid())) {
        tracing::warn!(path = %pid_file.display(), error = %e, "could not write containerd's PID file");
    }
    let client = containerd.connect(CRI_TIMEOUT).await.context("connecting to the supervised containerd")?;
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(containerd);
    Ok(client)
}

/// Starts the runtime and runs the agent until it fails.
async fn start(
    client: kube::Client,
    args: NodeAgentArgs,
    data_dir: PathBuf,
    labels: BTreeMap<String, String>,
    api_tls: Option<Arc<rustls::ServerConfig>>,
    slot: Supervised,
) -> Result<()> {
    let name = node_name(&args);
    let cidr = pod_cidr(&client, &name, args.pod_cidr.as_deref()).await?;
    let cri = runtime(&args, &data_dir, &cidr, &slot).await?;
    let runtime = Arc::new(cri);
    let mut config = kubelet::agent::Config::new(&name, &data_dir.join("agent"));
    config.node_ip = Some(node_ip(&args));
    config.pod_cidr = Some(cidr);
    config.cluster_dns = args.cluster_dns.clone();
    config.cluster_domain = args.cluster_domain.clone();
    config.node_labels = labels;
    config.kubelet_port = args.kubelet_port;
    config.api_tls = api_tls;
    kubelet::agent::run(client, runtime.clone(), runtime, config).await.context("running the node agent")
}

/// A running node agent.
pub struct AgentHandle {
    containerd: Supervised,
    task: tokio::task::JoinHandle<()>,
    data_dir: PathBuf,
}

impl AgentHandle {
    /// Stops the agent and its containerd (pods' containers keep running in their
    /// shims, as across k3s agent restarts).
    pub async fn shutdown(self) {
        self.task.abort();
        let _ = self.task.await;
        let containerd = self.containerd.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(c) = containerd {
            c.stop().await;
            let _ = std::fs::remove_file(containerd_pid_file(&self.data_dir));
        }
    }
}

/// Runs a node agent in the background (the one `krust server` runs beside the
/// control plane). Failures are logged in one sentence and do not stop the caller.
pub fn spawn(
    client: kube::Client,
    args: NodeAgentArgs,
    data_dir: PathBuf,
    labels: BTreeMap<String, String>,
    api_tls: Option<Arc<rustls::ServerConfig>>,
) -> AgentHandle {
    let containerd: Supervised = Arc::default();
    let slot = containerd.clone();
    let dir = data_dir.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = start(client, args, dir, labels, api_tls, slot).await {
            tracing::warn!("node agent not started, this node runs no pods: {e:#}");
        }
    });
    AgentHandle { containerd, task, data_dir }
}

/// A client for the cluster from `--kubeconfig`, or `--server`, `--token` and
/// `--certificate-authority`.
async fn cluster_client(args: &AgentArgs, token: Option<&str>) -> Result<kube::Client> {
    let config = match (&args.kubeconfig, &args.server, token) {
        (Some(path), _, _) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .context("loading the kubeconfig")?
        }
        (None, Some(server), Some(token)) => {
            let Some(ca_path) = &args.certificate_authority else {
                bail!(
                    "a plain bearer token needs the server's CA certificate (--certificate-authority, the server's \
                     DATA_DIR/tls/ca.crt); a join token (K10..., the server's DATA_DIR/agent-token) needs none"
                );
            };
            let ca = std::fs::read(ca_path).with_context(|| format!("reading {}", ca_path.display()))?;
            let kubeconfig = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "krust", "cluster": {
                    "server": server,
                    "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca),
                }}],
                "users": [{"name": "agent", "user": {"token": token}}],
                "contexts": [{"name": "agent", "context": {"cluster": "krust", "user": "agent"}}],
                "current-context": "agent",
            });
            let kc: kube::config::Kubeconfig = serde_json::from_value(kubeconfig)
                .context("building a kubeconfig from --server and --token")?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .context("loading the kubeconfig")?
        }
        _ => bail!(
            "give the cluster to join: --server URL --token TOKEN --certificate-authority CA.crt, or --kubeconfig FILE"
        ),
    };
    kube::Client::try_from(config).context("building a client for the cluster")
}

/// `krust agent`: joins a cluster and runs its pods until interrupted.
pub async fn run(args: AgentArgs) -> Result<()> {
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => Some(t.trim().to_owned()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let join_token =
        token.as_deref().filter(|t| t.starts_with("K10")).map(crate::join::Token::parse).transpose()?;
    let (client, api_tls) = match (&args.server, join_token) {
        (Some(server), Some(token)) if args.kubeconfig.is_none() => {
            // A join token: the node gets its own certificates from the server.
            let name = node_name(&args.node);
            let addresses =
                vec![node_ip(&args.node), crate::certs::hostname(), "localhost".into(), "127.0.0.1".into()];
            let joined = crate::join::join(server, &token, &name, addresses).await?;
            tracing::info!(node = %name, "joined the cluster with the node's own certificate");
            (joined.client, Some(joined.api_tls))
        }
        // Without certificates from the cluster CA the agent serves no API, and
        // `kubectl logs`/`exec` say so for its pods.
        _ => (cluster_client(&args, token.as_deref()).await?, None),
    };
    let data_dir = crate::server::data_dir(args.data_dir.clone());
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let containerd: Supervised = Arc::default();
    let agent =
        start(client, args.node.clone(), data_dir.clone(), BTreeMap::new(), api_tls, containerd.clone());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let result = tokio::select! {
        r = agent => r,
        _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted, stopping"); Ok(()) }
        _ = term.recv() => { tracing::info!("terminated, stopping"); Ok(()) }
    };
    let supervised = containerd.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(c) = supervised {
        c.stop().await;
        let _ = std::fs::remove_file(containerd_pid_file(&data_dir));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> NodeAgentArgs {
        NodeAgentArgs {
            container_runtime_endpoint: None,
            node_name: None,
            node_ip: None,
            pod_cidr: None,
            cni_bridge: "krust0".into(),
            cluster_dns: vec![],
            cluster_domain: "cluster.local".into(),
            insecure_registries: vec![],
            kubelet_port: 10250,
        }
    }

    #[test]
    fn node_names_are_lowercase_dns_names() {
        let name = node_name(&args());
        assert!(!name.is_empty());
        assert!(
            name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'),
            "{name}"
        );
        let named = NodeAgentArgs { node_name: Some("worker-1".into()), ..args() };
        assert_eq!(node_name(&named), "worker-1");
    }

    #[test]
    fn the_node_ip_is_never_a_pod_bridge_address() {
        assert!(in_pod_network(&"10.42.0.1".parse().unwrap()));
        assert!(!in_pod_network(&"10.43.0.1".parse().unwrap()));
        let ip: IpAddr = node_ip(&args()).parse().unwrap();
        assert!(!in_pod_network(&ip));
    }
}
