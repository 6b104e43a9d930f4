//! The krust API server: a Kubernetes-compatible REST API over a revisioned store.
//!
//! Requests flow authentication -> routing -> (per verb) decoding, defaulting,
//! admission, validation -> storage; reads are served from the watch cache.

// ApiError carries a whole Status (message, details, causes); it travels only on the
// failure path of a request, so its size is not worth boxing at every `?`.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use store::Store;

pub mod auth;
pub mod builtin;
pub mod cache;
pub mod crd;
pub mod discovery;
pub mod error;
pub mod fieldcheck;
pub mod handlers;
pub mod join;
pub mod jsonpath;
pub mod meta;
pub mod metrics;
pub mod negotiate;
pub mod openapi;
pub mod openapi_pb;
pub mod registry;
pub mod request;
pub mod satoken;
pub mod serve;
pub mod strategy;
pub mod table;

pub use error::{ApiError, ApiResult};

/// Settings of the API server that clients can observe.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Service cluster IP range, e.g. `10.43.0.0/16`.
    pub service_cidr: String,
    /// The NodePort range, inclusive.
    pub node_port_range: (u16, u16),
    /// Where pods reach this API server: the `kubernetes` Service's endpoint.
    pub advertise_address: String,
    pub advertise_port: u16,
    /// How this server reaches node agents (`pods/log`): TLS with its client
    /// certificate. `None`: such requests fail with 503.
    pub kubelet_client: Option<Arc<rustls::ClientConfig>>,
    /// Serves `/cacerts` and node credentials to joining agents; `None`: no joining.
    pub node_join: Option<Arc<dyn join::NodeJoin>>,
    /// Signs and checks service-account tokens (TokenRequest). The default is a key
    /// that lives as long as the process; `krust server` keeps one in its data dir.
    pub service_account_tokens: Arc<satoken::TokenSigner>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            service_cidr: "10.43.0.0/16".into(),
            node_port_range: (30000, 32767),
            advertise_address: "127.0.0.1".into(),
            advertise_port: 6443,
            kubelet_client: None,
            node_join: None,
            service_account_tokens: Arc::new(
                satoken::TokenSigner::generate().expect("the system random generator works"),
            ),
        }
    }
}

/// Everything a request handler needs.
pub struct Api {
    pub registry: Arc<registry::Registry>,
    pub store: Arc<dyn Store>,
    pub caches: Arc<cache::Caches>,
    pub openapi: openapi::Docs,
    pub config: Config,
    pub metrics: metrics::Metrics,
    pub authn: auth::Authenticator,
    /// Serializes allocation of Service IPs and node ports within this server.
    pub allocation: tokio::sync::Mutex<()>,
    /// Service IPs and node ports handed out but maybe not yet in the watch cache.
    pub recent_allocations: std::sync::Mutex<builtin::admission::RecentAllocations>,
}

impl Api {
    /// Builds the API over a store: registers built-in resources, starts the watch cache,
    /// creates the default namespaces and serves custom resources already defined.
    pub async fn new(
        store: Arc<dyn Store>,
        config: Config,
        authn: auth::Authenticator,
    ) -> ApiResult<Arc<Self>> {
        let registry = Arc::new(registry::Registry::new());
        builtin::register_all(&registry);
        let caches = cache::Caches::start(store.clone()).await?;
        let api = Arc::new(Self {
            registry,
            store,
            caches,
            openapi: openapi::Docs::default(),
            config,
            metrics: metrics::Metrics::default(),
            authn,
            allocation: tokio::sync::Mutex::new(()),
            recent_allocations: Default::default(),
        });
        // Every resource's cache starts now, so watches can resume from any revision
        // written since the server started.
        for storage in api.registry.storages() {
            api.caches.cache(&storage.prefix).await?;
        }
        builtin::bootstrap(&api).await?;
        crd::start(&api).await?;
        Ok(api)
    }
}
