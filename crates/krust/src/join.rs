//! Joining agents to a server, as k3s does: the server keeps a join token
//! `K10<sha256 of the CA bundle>::<secret>` in `<data-dir>/agent-token`; an agent given
//! it fetches `/cacerts`, checks the bundle's hash, and with the secret obtains its own
//! client certificate (`system:node:<name>`) and the serving certificate of its API.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use apiserver::join::{Credentials, CredentialsRequest, NodeJoin};
use base64::Engine;
use sha2::Digest;

use crate::certs::{self, Pki};

/// The file, in the server's data dir, that holds the join token.
pub const TOKEN_FILE: &str = "agent-token";

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A join token: the hash of the CA bundle and the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub ca_hash: String,
    pub secret: String,
}

impl Token {
    /// Reads `K10<hex sha256>::<secret>`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let Some(rest) = text.strip_prefix("K10") else {
            bail!(
                "the join token must look like K10<CA hash>::<secret> (the server's DATA_DIR/{TOKEN_FILE})"
            );
        };
        let Some((hash, secret)) = rest.split_once("::") else {
            bail!(
                "the join token must look like K10<CA hash>::<secret> (the server's DATA_DIR/{TOKEN_FILE})"
            );
        };
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) || secret.is_empty() {
            bail!("the join token's CA hash must be 64 hex digits followed by ::<secret>");
        }
        Ok(Self { ca_hash: hash.to_ascii_lowercase(), secret: secret.to_owned() })
    }

    pub fn render(&self) -> String {
        format!("K10{}::{}", self.ca_hash, self.secret)
    }
}

/// The server side: issues credentials with the cluster CA.
pub struct Authority {
    ca_pem: String,
    ca_key: String,
    secret: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authority { .. }")
    }
}

impl Authority {
    /// Loads the join token from `dir` (creating it on first start) for the CA of `pki`.
    pub fn load_or_create(dir: &Path, pki: &Pki) -> Result<(Self, Token)> {
        let path = dir.join(TOKEN_FILE);
        let ca_hash = sha256_hex(pki.ca_cert.as_bytes());
        let secret = match std::fs::read_to_string(&path) {
            Ok(text) => Token::parse(&text).with_context(|| format!("reading {}", path.display()))?.secret,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (0..32).map(|_| format!("{:x}", rand::random::<u8>() % 16)).collect()
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let token = Token { ca_hash, secret: secret.clone() };
        certs::write_secret_file(&path, &format!("{}\n", token.render()))?;
        Ok((Self { ca_pem: pki.ca_cert.clone(), ca_key: pki.ca_key.clone(), secret }, token))
    }
}

impl NodeJoin for Authority {
    fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    fn secret_ok(&self, secret: &str) -> bool {
        // Constant time: the comparison must not tell how much of a guess was right.
        secret.len() == self.secret.len()
            && secret.bytes().zip(self.secret.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    fn issue(&self, request: &CredentialsRequest) -> Result<Credentials, String> {
        let node = &request.node_name;
        let (client_cert, client_key) =
            certs::issue_with(&self.ca_pem, &self.ca_key, &format!("system:node:{node}"), &["system:nodes"])
                .map_err(|e| format!("{e:#}"))?;
        let mut sans = request.addresses.clone();
        sans.push(node.clone());
        sans.sort();
        sans.dedup();
        let (serving_cert, serving_key) =
            certs::issue_serving_with(&self.ca_pem, &self.ca_key, "krust-agent", sans)
                .map_err(|e| format!("{e:#}"))?;
        Ok(Credentials { client_cert, client_key, serving_cert, serving_key })
    }
}

fn kubeconfig_json(server: &str, ca: Option<&str>, token: Option<&str>) -> serde_json::Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let mut cluster = serde_json::json!({"server": server});
    match ca {
        Some(ca) => cluster["certificate-authority-data"] = b64(ca).into(),
        None => cluster["insecure-skip-tls-verify"] = true.into(),
    }
    let user = match token {
        Some(t) => serde_json::json!({"token": t}),
        None => serde_json::json!({}),
    };
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "krust", "cluster": cluster}],
        "users": [{"name": "join", "user": user}],
        "contexts": [{"name": "join", "context": {"cluster": "krust", "user": "join"}}],
        "current-context": "join",
    })
}

async fn client_from(kubeconfig: serde_json::Value) -> Result<kube::Client> {
    let kc: kube::config::Kubeconfig = serde_json::from_value(kubeconfig).context("building a kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .context("loading a kubeconfig")?;
    kube::Client::try_from(config).context("building a client")
}

/// What a joined agent works with.
pub struct Joined {
    /// A client with the node's own identity.
    pub client: kube::Client,
    /// TLS of the agent's API: its serving certificate, clients of the cluster CA only.
    pub api_tls: Arc<rustls::ServerConfig>,
}

/// The agent side: checks the server's CA against the token, then obtains the node's
/// certificates.
pub async fn join(server: &str, token: &Token, node: &str, addresses: Vec<String>) -> Result<Joined> {
    let insecure = client_from(kubeconfig_json(server, None, None)).await?;
    let ca = insecure
        .request_text(http::Request::get("/cacerts").body(Vec::new()).context("building a request")?)
        .await
        .with_context(|| format!("fetching the cluster CA from {server}/cacerts"))?;
    let hash = sha256_hex(ca.as_bytes());
    if hash != token.ca_hash {
        bail!(
            "the server at {server} presented a CA whose SHA-256 is {hash}, not the {} the join token names: \
             refusing to join (wrong server or wrong token)",
            token.ca_hash
        );
    }
    let bootstrap = client_from(kubeconfig_json(server, Some(&ca), Some(&token.secret))).await?;
    let request = CredentialsRequest { node_name: node.to_owned(), addresses };
    let body = serde_json::to_vec(&request)?;
    let credentials: Credentials = bootstrap
        .request(
            http::Request::post("/v1-krust/node-credentials")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body)
                .context("building a request")?,
        )
        .await
        .with_context(|| format!("obtaining node credentials from {server} (is the join token right?)"))?;
    let yaml = certs::kubeconfig(
        server,
        &ca,
        &credentials.client_cert,
        &credentials.client_key,
        &format!("system:node:{node}"),
    );
    let kc = kube::config::Kubeconfig::from_yaml(&yaml).context("the node's kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .context("the node's kubeconfig")?;
    let client = kube::Client::try_from(config).context("a client with the node's identity")?;
    let api_tls = certs::server_tls(&ca, &credentials.serving_cert, &credentials.serving_key)?;
    Ok(Joined { client, api_tls })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_the_ca_hash_and_the_secret() {
        let t = Token::parse(&format!("K10{}::s3cret\n", "ab".repeat(32))).unwrap();
        assert_eq!((t.ca_hash.len(), t.secret.as_str()), (64, "s3cret"));
        assert_eq!(Token::parse(&t.render()).unwrap(), t);
        assert!(Token::parse("s3cret").is_err());
        assert!(Token::parse("K10abc::x").is_err());
        assert!(Token::parse(&format!("K10{}::", "ab".repeat(32))).is_err());
    }

    #[test]
    fn the_authority_checks_the_secret_and_names_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(&dir.path().join("tls"), &[], "10.43.0.1").unwrap();
        let (authority, token) = Authority::load_or_create(dir.path(), &pki).unwrap();
        assert_eq!(token.ca_hash, sha256_hex(pki.ca_cert.as_bytes()));
        // The token survives restarts.
        let (_, again) = Authority::load_or_create(dir.path(), &pki).unwrap();
        assert_eq!(again, token);
        assert!(authority.secret_ok(&token.secret));
        assert!(!authority.secret_ok("nope"));
        let creds = authority
            .issue(&CredentialsRequest { node_name: "worker-1".into(), addresses: vec!["10.0.0.7".into()] })
            .unwrap();
        let der = rustls_pemfile::certs(&mut creds.client_cert.as_bytes()).next().unwrap().unwrap();
        let user = apiserver::serve::identity_of(&der).unwrap();
        assert_eq!(user.name, "system:node:worker-1");
        assert_eq!(user.groups, ["system:nodes", "system:authenticated"]);
        certs::server_tls(&pki.ca_cert, &creds.serving_cert, &creds.serving_key).unwrap();
    }
}
