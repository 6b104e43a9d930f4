//! The cluster's PKI, created on first start in `<data-dir>/tls`: a CA, the API server's
//! serving certificate, and an admin client certificate (group `system:masters`).

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};

/// PEM-encoded certificates and keys of the cluster.
pub struct Pki {
    pub ca_cert: String,
    pub ca_key: String,
    pub serving_cert: String,
    pub serving_key: String,
    pub admin_cert: String,
    pub admin_key: String,
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut f, contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    for o in orgs {
        d.push(DnType::OrganizationName, *o);
    }
    d
}

/// The machine's host name, from the kernel.
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The machine's own IPv4 addresses, from the kernel's local routing table.
pub fn host_addresses() -> Vec<IpAddr> {
    let Ok(trie) = fs::read_to_string("/proc/net/fib_trie") else { return Vec::new() };
    let mut out: Vec<IpAddr> = Vec::new();
    let mut last: Option<IpAddr> = None;
    for line in trie.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-']);
        if let Ok(ip) = t.trim().parse::<IpAddr>() {
            last = Some(ip);
        } else if line.contains("/32 host LOCAL")
            && let Some(ip) = last
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

impl Pki {
    /// Loads the PKI from `dir`, creating what is missing. The serving certificate is
    /// (re)issued on every start so it covers the host's current names and addresses.
    pub fn load_or_create(dir: &Path, extra_sans: &[String], service_ip: &str) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_cert_path = dir.join("ca.crt");
        let ca_key_path = dir.join("ca.key");
        if !ca_cert_path.exists() || !ca_key_path.exists() {
            let key = KeyPair::generate().context("generating the CA key")?;
            let mut params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
            params.distinguished_name = dn("krust-ca", &[]);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.not_after = rcgen::date_time_ymd(2036, 1, 1);
            let cert = params.self_signed(&key).context("signing the CA")?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            write_private(&ca_cert_path, &cert.pem())?;
        }
        let ca_cert = read(&ca_cert_path)?;
        let ca_key = read(&ca_key_path)?;
        let ca_keypair = KeyPair::from_pem(&ca_key).context("parsing the CA key")?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert, &ca_keypair).context("loading the CA certificate")?;

        let mut sans: Vec<String> = vec![
            "localhost".into(),
            "127.0.0.1".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            "kubernetes.default.svc.cluster.local".into(),
            service_ip.into(),
            hostname(),
        ];
        sans.extend(host_addresses().iter().map(|a| a.to_string()));
        sans.extend(extra_sans.iter().cloned());
        sans.sort();
        sans.dedup();
        let key = KeyPair::generate().context("generating the serving key")?;
        let mut params = CertificateParams::new(sans).context("serving certificate parameters")?;
        params.distinguished_name = dn("kube-apiserver", &[]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.signed_by(&key, &issuer).context("signing the serving certificate")?;
        write_private(&dir.join("serving.key"), &key.serialize_pem())?;
        write_private(&dir.join("serving.crt"), &cert.pem())?;

        let admin_cert_path = dir.join("admin.crt");
        let admin_key_path = dir.join("admin.key");
        if !admin_cert_path.exists() || !admin_key_path.exists() {
            let (c, k) = issue_client(&issuer, "admin", &["system:masters"])?;
            write_private(&admin_key_path, &k)?;
            write_private(&admin_cert_path, &c)?;
        }
        Ok(Self {
            ca_cert,
            ca_key,
            serving_cert: cert.pem(),
            serving_key: key.serialize_pem(),
            admin_cert: read(&admin_cert_path)?,
            admin_key: read(&admin_key_path)?,
        })
    }

    fn ca_roots(&self) -> Result<rustls::RootCertStore> {
        ca_roots(&self.ca_cert)
    }

    /// How the API server calls node agents (`pods/log`): a client certificate of
    /// `kube-apiserver-kubelet-client` (issued on every start, kept in memory), and
    /// agents' serving certificates checked against the cluster CA.
    pub fn kubelet_client_tls(&self) -> Result<Arc<rustls::ClientConfig>> {
        let (cert, key) =
            issue_with(&self.ca_cert, &self.ca_key, "kube-apiserver-kubelet-client", &["system:masters"])?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(self.ca_roots()?)
            .with_client_auth_cert(pem_chain(&cert)?, pem_key(&key)?)
            .context("the kubelet client certificate")?;
        Ok(Arc::new(config))
    }

    /// The TLS of the node agent's own API on this machine: a serving certificate the
    /// cluster CA signs for `sans` (issued on every start), and only clients with a
    /// certificate of the cluster CA admitted.
    pub fn agent_api_tls(&self, sans: Vec<String>) -> Result<Arc<rustls::ServerConfig>> {
        let (cert, key) = issue_serving_with(&self.ca_cert, &self.ca_key, "krust-agent", sans)?;
        server_tls(&self.ca_cert, &cert, &key)
    }

    /// What the HTTPS listener needs.
    pub fn tls_material(&self) -> Result<apiserver::serve::TlsMaterial> {
        let chain: Vec<_> = rustls_pemfile::certs(&mut self.serving_cert.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .context("parsing the serving certificate")?;
        let key = rustls_pemfile::private_key(&mut self.serving_key.as_bytes())
            .context("parsing the serving key")?
            .context("no serving key found")?;
        let cas: Vec<_> = rustls_pemfile::certs(&mut self.ca_cert.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .context("parsing the CA certificate")?;
        Ok(apiserver::serve::TlsMaterial { cert_chain: chain, key, client_cas: cas })
    }
}

fn ca_roots(ca_pem: &str) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.context("parsing the CA certificate")?).context("trusting the CA certificate")?;
    }
    Ok(roots)
}

/// Signs with the CA given as PEM.
fn with_issuer<T>(
    ca_pem: &str,
    ca_key: &str,
    f: impl FnOnce(&Issuer<'_, &KeyPair>) -> Result<T>,
) -> Result<T> {
    let ca_keypair = KeyPair::from_pem(ca_key).context("parsing the CA key")?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, &ca_keypair).context("loading the CA certificate")?;
    f(&issuer)
}

/// A client certificate and key (PEM) for `user` in `groups`, signed by the CA.
pub fn issue_with(ca_pem: &str, ca_key: &str, user: &str, groups: &[&str]) -> Result<(String, String)> {
    with_issuer(ca_pem, ca_key, |issuer| issue_client(issuer, user, groups))
}

/// A serving certificate and key (PEM) for `sans`, signed by the CA.
pub fn issue_serving_with(
    ca_pem: &str,
    ca_key: &str,
    cn: &str,
    sans: Vec<String>,
) -> Result<(String, String)> {
    with_issuer(ca_pem, ca_key, |issuer| {
        let key = KeyPair::generate().context("generating a serving key")?;
        let mut params = CertificateParams::new(sans).context("serving certificate parameters")?;
        params.distinguished_name = dn(cn, &[]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.signed_by(&key, issuer).context("signing a serving certificate")?;
        Ok((cert.pem(), key.serialize_pem()))
    })
}

/// TLS for a server that presents `cert_pem` and admits only clients with a
/// certificate of the CA (the node agent's API).
pub fn server_tls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(ca_roots(ca_pem)?),
        provider.clone(),
    )
    .build()
    .context("the client certificate verifier")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(pem_chain(cert_pem)?, pem_key(key_pem)?)
        .context("the serving certificate")?;
    Ok(Arc::new(config))
}

fn pem_chain(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .context("parsing a certificate")
}

fn pem_key(pem: &str) -> Result<rustls::pki_types::PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut pem.as_bytes()).context("parsing a key")?.context("no key found")
}

fn issue_client(issuer: &Issuer<'_, &KeyPair>, user: &str, groups: &[&str]) -> Result<(String, String)> {
    let key = KeyPair::generate().context("generating a client key")?;
    let mut params = CertificateParams::new(Vec::<String>::new()).context("client certificate parameters")?;
    params.distinguished_name = dn(user, groups);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.signed_by(&key, issuer).context("signing a client certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A kubeconfig for `server` with a client certificate.
pub fn kubeconfig(server: &str, ca_pem: &str, cert_pem: &str, key_pem: &str, user: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: krust\ncontexts:\n- context:\n    cluster: krust\n    user: {user}\n  name: krust\ncurrent-context: krust\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(ca_pem),
        b64(cert_pem),
        b64(key_pem)
    )
}

/// Writes a file readable only by its owner, atomically (write then rename).
pub fn write_secret_file(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    write_private(&tmp, contents)?;
    fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}
