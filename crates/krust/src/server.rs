//! `krust server`: storage, the API server over HTTPS, and (later) controllers and agent.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;

use crate::certs::{self, Pki};
use crate::cli::ServerArgs;

/// The data directory: the flag, else /var/lib/krust for root, else ~/.krust.
pub fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    if let Some(d) = flag {
        return d;
    }
    let is_root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if is_root {
        PathBuf::from("/var/lib/krust")
    } else {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".krust")
    }
}

/// Opens the store the flags name.
pub async fn open_store(endpoint: Option<&str>, dir: &std::path::Path) -> Result<Arc<dyn store::Store>> {
    match endpoint {
        None => {
            let db = dir.join("db");
            std::fs::create_dir_all(&db).with_context(|| format!("creating {}", db.display()))?;
            let path = db.join("state.db");
            let s = store::sqlite::SqliteStore::open(&path)
                .await
                .with_context(|| format!("opening the SQLite store at {}", path.display()))?;
            Ok(Arc::new(s))
        }
        Some(e) if e.starts_with("sqlite://") => {
            let path = PathBuf::from(&e["sqlite://".len()..]);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
            }
            let s = store::sqlite::SqliteStore::open(&path)
                .await
                .with_context(|| format!("opening the SQLite store at {}", path.display()))?;
            Ok(Arc::new(s))
        }
        Some(e) if e.starts_with("http://") || e.starts_with("https://") => {
            let endpoints: Vec<String> =
                e.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            let s = store::etcd::EtcdStore::connect(&endpoints, "")
                .await
                .with_context(|| format!("connecting to etcd at {e}"))?;
            Ok(Arc::new(s))
        }
        Some(other) => {
            bail!("unsupported --datastore-endpoint {other:?}: use sqlite://PATH or http://HOST:PORT (etcd)")
        }
    }
}

pub async fn run(args: ServerArgs) -> Result<()> {
    let dir = data_dir(args.data_dir.clone());
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let first_service_ip = match apiserver::builtin::admission::parse_cidr(&args.service_cidr) {
        Some((net, _)) => std::net::Ipv4Addr::from(net + 1).to_string(),
        None => bail!("--service-cidr {:?} is not an IPv4 CIDR", args.service_cidr),
    };
    let pki = Pki::load_or_create(&dir.join("tls"), &args.tls_san, &first_service_ip)?;
    let store = open_store(args.datastore_endpoint.as_deref(), &dir).await?;
    let advertise = certs::host_addresses()
        .into_iter()
        .find(|a| !a.is_loopback())
        .map(|a| a.to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let (join_authority, join_token) = crate::join::Authority::load_or_create(&dir, &pki)?;
    let config = apiserver::Config {
        service_cidr: args.service_cidr.clone(),
        advertise_address: advertise,
        advertise_port: args.port,
        kubelet_client: Some(pki.kubelet_client_tls()?),
        node_join: Some(Arc::new(join_authority)),
        service_account_tokens: Arc::new(
            apiserver::satoken::TokenSigner::load_or_create(&dir.join("tls").join("service-account.key"))
                .map_err(anyhow::Error::msg)?,
        ),
        ..Default::default()
    };
    let authn = apiserver::auth::Authenticator::new();
    // A bearer token for the admin, for clients that cannot present certificates.
    let token_path = dir.join("token");
    if !token_path.exists() {
        let token: String = (0..32).map(|_| format!("{:x}", rand::random::<u8>() % 16)).collect();
        certs::write_secret_file(&token_path, &format!("{token}\n"))?;
    }
    let admin_token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("reading {}", token_path.display()))?
        .trim()
        .to_string();
    authn.add_token(&admin_token, apiserver::auth::User::new("admin", &["system:masters"]));
    let api = apiserver::Api::new(store, config, authn).await.context("starting the API server")?;

    // The control plane's components reach the API in-process, each as its own user.
    let identity = format!("{}_{}", certs::hostname(), std::process::id());
    let cm_client = kube::Client::new(
        apiserver::serve::router_as(
            api.clone(),
            apiserver::auth::User::new("system:kube-controller-manager", &[]),
        ),
        "default",
    );
    tokio::spawn(controllers::run(
        cm_client,
        controllers::Options {
            root_ca_pem: Some(pki.ca_cert.clone()),
            identity: identity.clone(),
            local_path_dir: Some(dir.join("storage")),
            ..Default::default()
        },
    ));
    let sched_client = kube::Client::new(
        apiserver::serve::router_as(api.clone(), apiserver::auth::User::new("system:kube-scheduler", &[])),
        "default",
    );
    tokio::spawn(scheduler::run(
        sched_client,
        scheduler::Options { identity: identity.clone(), ..Default::default() },
    ));
    if args.sim_nodes > 0 {
        let sim_client = kube::Client::new(
            apiserver::serve::router_as(
                api.clone(),
                apiserver::auth::User::new("system:node:sim", &["system:nodes"]),
            ),
            "default",
        );
        tokio::spawn(kubelet::sim::run(sim_client, crate::sim::options(&args.sim, args.sim_nodes, 0)));
    }

    let server_url = format!("https://127.0.0.1:{}", args.port);
    let kubeconfig = dir.join("kubeconfig.yaml");
    certs::write_secret_file(
        &kubeconfig,
        &certs::kubeconfig(&server_url, &pki.ca_cert, &pki.admin_cert, &pki.admin_key, "admin"),
    )?;
    let tls = apiserver::serve::tls_config(pki.tls_material()?).context("configuring TLS")?;
    let addr = format!("{}:{}", args.bind_address, args.port);
    let listener = TcpListener::bind(&addr).await.with_context(|| format!("listening on {addr}"))?;
    let agent = if args.disable_agent {
        tracing::info!("node agent disabled");
        None
    } else {
        // The node agent reaches the API in-process with the node's own identity.
        let node = crate::agent::node_name(&args.node);
        let user = apiserver::auth::User::new(format!("system:node:{node}"), &["system:nodes"]);
        let client = kube::Client::new(apiserver::serve::router_as(api.clone(), user), "default");
        let labels = [("node-role.kubernetes.io/control-plane".to_string(), "true".to_string())].into();
        let ip = crate::agent::node_ip(&args.node);
        let sans = vec![ip, "127.0.0.1".into(), "localhost".into(), node.clone(), certs::hostname()];
        let api_tls = pki.agent_api_tls(sans)?;
        Some(crate::agent::spawn(client, args.node.clone(), dir.clone(), labels, Some(api_tls)))
    };
    println!("krust is serving the Kubernetes API on {server_url}");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get namespaces");
    println!("Another machine joins as a node with:");
    println!("  krust agent --server https://<this host>:{} --token {}", args.port, join_token.render());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("listening for SIGTERM")?;
    let result = tokio::select! {
        r = apiserver::serve::serve_tls(listener, tls, api) => r.context("serving HTTPS"),
        _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted, stopping"); Ok(()) }
        _ = term.recv() => { tracing::info!("terminated, stopping"); Ok(()) }
    };
    if let Some(agent) = agent {
        agent.shutdown().await;
    }
    result
}
