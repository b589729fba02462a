//! The REST API: versioned resources under `/v1`, each a `metadata`/`spec`/
//! `status` document. Handlers validate and write `spec` only; controllers and
//! agents write `status`. Every lookup is scoped to the caller's project.

// Layers, each using only those above it: infrastructure; the resource core;
// one module per resource family; the router and the OpenAPI document.
mod auth;
mod bootstrap;
mod error;
mod extract;
mod metrics;
mod principal;
mod ratelimit;
mod session_store;
mod verify;

mod crud;
mod lookup;
mod resource;

mod alarms;
mod attachments;
mod console;
mod events;
mod flavors;
mod hosts;
mod images;
mod instances;
mod keys;
mod load_balancers;
mod metering;
mod monitoring;
mod network;
mod object_storage;
mod passwords;
mod placement_groups;
mod projects;
mod rebalance;
mod sessions;
mod storage;
mod users;
mod web_console;

mod openapi;
mod router;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use yunhan_store::{objects::Objects, Store};

pub use auth::{AuthLimits, TOKEN_PREFIX};
pub use bootstrap::{
    bootstrap, ensure_public_network, Bootstrap, PublicNetworkError, DEFAULT_FLAVORS,
};
pub use error::HttpError;
pub use object_storage::objects::{
    BrowseError, ByteStream, NewObject, ObjectBrowser, ObjectContent, ObjectItem, ObjectList,
    ObjectQuery,
};
pub use openapi::openapi_document;
pub use principal::Principal;
pub use session_store::{mint_link, LoginLink};
pub use web_console::{ConsoleAssets, CONTENT_SECURITY_POLICY};

/// Tunables of the API server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Sustained requests per second allowed per API key.
    pub rate_per_sec: f64,
    /// Requests a key may burst above the sustained rate.
    pub burst: f64,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// How long a verified token is remembered (argon2 is deliberately slow).
    pub token_cache_ttl: Duration,
    /// Limits on failed authentications and concurrent argon2 verifications.
    pub auth_limits: AuthLimits,
    /// The image store: where uploaded images are kept as sparse RAW files.
    pub image_dir: std::path::PathBuf,
    /// Largest image upload, in bytes.
    pub image_max_bytes: u64,
    /// Admins' server-path image imports (`?source=`) must be files inside
    /// this directory (after resolving symlinks).
    pub import_dir: std::path::PathBuf,
    /// Storage pools volumes may be created in (`local` and the Ceph pools).
    pub storage_pools: Vec<String>,
    /// The cluster's overcommit ratios (a resize must fit its VM's host).
    pub placement: yunhan_model::scheduling::Policy,
    /// The S3 gateway's endpoint, when the cloud has object storage.
    pub s3_endpoint: Option<String>,
    /// Buckets' objects for the file browser (`/v1/buckets/{id}/objects`).
    pub object_browser: Option<Arc<dyn ObjectBrowser>>,
    /// How long a console session lasts after its login (it is not extended by use).
    pub session_ttl: Duration,
    /// Where the web console's files come from.
    pub console: ConsoleAssets,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            rate_per_sec: 200.0,
            burst: 400.0,
            body_limit: 1024 * 1024,
            token_cache_ttl: Duration::from_secs(30),
            auth_limits: AuthLimits::default(),
            image_dir: "/var/lib/yunhan/images".into(),
            image_max_bytes: 64 << 30,
            import_dir: "/var/lib/yunhan/import".into(),
            storage_pools: vec![yunhan_model::DEFAULT_POOL.into()],
            placement: Default::default(),
            s3_endpoint: None,
            object_browser: None,
            session_ttl: Duration::from_secs(12 * 3600),
            console: ConsoleAssets::Embedded,
        }
    }
}

pub(crate) struct AppState {
    pub objects: Objects,
    pub auth: auth::Authenticator,
    pub limiter: ratelimit::RateLimiter,
    /// Serialises API key creation, so the per-user limit holds under a storm.
    pub key_create: tokio::sync::Mutex<()>,
    pub metrics: metrics::Metrics,
    pub events: yunhan_store::events::EventLog,
    /// What the server was started with (image store, pools, object storage, …).
    pub config: ApiConfig,
}

pub(crate) type Shared = Arc<AppState>;

/// The API's router, ready to serve.
pub fn router(store: Arc<dyn Store>, config: ApiConfig) -> Router {
    let events = yunhan_store::events::EventLog::new(store.clone());
    let objects = Objects::new(store);
    let state = Arc::new(AppState {
        auth: auth::Authenticator::new(
            objects.clone(),
            config.token_cache_ttl,
            &config.auth_limits,
        ),
        objects,
        limiter: ratelimit::RateLimiter::new(config.rate_per_sec, config.burst),
        key_create: tokio::sync::Mutex::new(()),
        metrics: metrics::Metrics::default(),
        events,
        config,
    });
    router::routes(state.clone(), state.config.body_limit).layer(
        axum::middleware::from_fn_with_state(state, images::server_paths::hide_server_paths),
    )
}

/// Serves the API on `addr` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    config: ApiConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(store, config);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
