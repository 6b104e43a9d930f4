//! Serving: the HTTPS listener (HTTP/2 and HTTP/1.1, client certificates verified against
//! the cluster CA) and the in-process tower service for loopback clients.

use std::sync::Arc;

use axum::body::Body;
use http::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Api;
use crate::auth::{CertIdentity, User};

/// A router serving every API path, for in-process use (tests, loopback clients). The
/// caller sets the identity by inserting a [`User`] into request extensions.
pub fn router(api: Arc<Api>) -> axum::Router {
    axum::Router::new().fallback(move |req: Request<Body>| {
        let api = api.clone();
        async move { crate::handlers::handle(api, req).await }
    })
}

/// A router whose requests all carry `user` (the loopback transport of one component).
pub fn router_as(api: Arc<Api>, user: User) -> axum::Router {
    axum::Router::new().fallback(move |mut req: Request<Body>| {
        let api = api.clone();
        req.extensions_mut().insert(user.clone());
        async move { crate::handlers::handle(api, req).await }
    })
}

/// What TLS needs: the serving chain and key, and the CAs client certificates must chain to.
pub struct TlsMaterial {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub client_cas: Vec<CertificateDer<'static>>,
}

/// The TLS configuration: client certificates are optional (tokens work too) but must be
/// valid when presented.
pub fn tls_config(m: TlsMaterial) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in m.client_cas {
        roots.add(ca)?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.cert_chain, m.key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The user a client certificate names: CN is the user, each O a group.
pub fn identity_of(cert: &CertificateDer<'_>) -> Option<User> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let cn = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups: Vec<String> =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
    Some(User::new(cn, &refs))
}

/// Accepts connections until the listener fails; each connection is served on its own task.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: Arc<Api>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let api = api.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(identity_of)
                .map(CertIdentity);
            let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
                if let Some(id) = &identity {
                    req.extensions_mut().insert(id.clone());
                }
                let api = api.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(crate::handlers::handle(api, req.map(Body::new)).await)
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}
