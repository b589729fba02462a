//! The API's routes: the CRUD routes of every kind, the few special ones
//! (image data, consoles, API keys, passwords and console sessions, the web console's pages, whoami, events, usage, price list), the public endpoints (health,
//! metrics, this API's OpenAPI document) and the middleware around them (metrics,
//! the audit trail).

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use yunhan_model::{
    AlarmRule, ApiError, Bucket, ElasticIp, ErrorCode, ExternalNetwork, Flavor, Host, Image,
    Instance, LoadBalancer, NatGateway, NetworkInterface, PlacementGroup, Project, RouteTable,
    SecurityGroup, Snapshot, SnapshotPolicy, Subnet, User, Vip, Volume, Vpc,
};

use crate::auth::Principal;
use crate::crud::{crud, crud_with};
use crate::error::{HttpError, Result};
use crate::extract::BodyLimit;
use crate::lookup::forbidden;
use crate::monitoring::of_kind;
use crate::Shared;

pub(crate) fn routes(state: Shared, body_limit: usize) -> Router {
    let r = special_routes(kind_routes(Router::new()));
    r.fallback(unmatched)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(json_compression())
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(BodyLimit(body_limit)))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::events::audit,
        ))
        .with_state(state)
}

/// The CRUD routes of every kind, by family.
fn kind_routes(r: Router<Shared>) -> Router<Shared> {
    // identity and platform
    let r = crud::<Flavor>(crud::<Host>(crud::<User>(crud::<Project>(r))));
    // compute
    let r = crud::<PlacementGroup>(crud::<Instance>(crud::<Image>(r)));
    // storage
    let r = crud::<SnapshotPolicy>(crud::<Snapshot>(crud::<Volume>(r)));
    // network
    let r = crud::<NetworkInterface>(crud::<Subnet>(crud::<Vpc>(r)));
    let r = crud::<ElasticIp>(crud::<ExternalNetwork>(crud::<SecurityGroup>(r)));
    let r = crud::<RouteTable>(crud::<Vip>(crud::<NatGateway>(r)));
    // load balancing
    let r = crud::<LoadBalancer>(r);
    // object storage
    let r = crud_with::<Bucket>(r, delete(crate::object_storage::buckets::remove));
    // monitoring
    crud::<AlarmRule>(r)
}

/// Routes with handlers of their own.
fn special_routes(r: Router<Shared>) -> Router<Shared> {
    let r = crate::web_console::routes(crate::sessions::routes(crate::passwords::routes(r)));
    let r = crate::object_storage::objects::routes(r);
    crate::object_storage::s3_keys::routes(crate::keys::routes(r))
        .route("/v1/images/{id}/data", put(crate::images::upload::upload))
        .route("/v1/instances/{id}/console", get(crate::console::log))
        .route(
            "/v1/instances/{id}/console/attach",
            get(crate::console::attach),
        )
        .route("/v1/instances/{id}/metrics", get(of_kind::<Instance>))
        .route("/v1/volumes/{id}/metrics", get(of_kind::<Volume>))
        .route("/v1/elastic-ips/{id}/metrics", get(of_kind::<ElasticIp>))
        .route(
            "/v1/load-balancers/{id}/metrics",
            get(of_kind::<LoadBalancer>),
        )
        .route("/v1/hosts/{id}/metrics", get(crate::monitoring::host))
        .route("/v1/whoami", get(crate::users::whoami))
        .route("/v1/events", get(crate::events::list))
        .route("/v1/usage", get(crate::metering::usage))
        .route("/v1/rebalance", get(crate::rebalance::plan))
        .route(
            "/v1/price-list",
            get(crate::metering::price_list).put(crate::metering::set_price_list),
        )
        .route("/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// Liveness and store reachability; anonymous, so it shows no store figures
/// (the revision would tell anyone how busy the other tenants are).
async fn healthz(State(s): State<Shared>) -> Response {
    match s.objects.store().current_revision().await {
        Ok(_) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "error": e.to_string()})),
        )
            .into_response(),
    }
}

/// `/metrics`: without a token, the HTTP counters and process figures (safe
/// for anyone); with an admin token, or scraped from the API server's own machine
/// (loopback), also the platform figures that reveal tenants' activity: the store
/// revision and the latest sample of every VM, host and pool series. A member's token
/// is refused.
async fn metrics(State(s): State<Shared>, req: Request) -> Result<Response> {
    let mut gauges = s.metrics.process_gauges();
    let client = req.extensions().get::<ConnectInfo<SocketAddr>>();
    let mut platform = client.is_some_and(|c| c.0.ip().is_loopback());
    if req.headers().contains_key(header::AUTHORIZATION) {
        let (mut parts, _) = req.into_parts();
        let p = Principal::from_request_parts(&mut parts, &s).await?;
        if !p.is_admin() {
            return Err(forbidden(
                "the platform figures of /metrics (scrape without a token for the HTTP counters)",
            ));
        }
        platform = true;
    }
    if platform {
        let rev = s.objects.store().current_revision().await?;
        gauges.push((
            "yunhan_store_revision",
            "The store's current revision (admin or local scrapes only).",
            rev as f64,
        ));
    }
    let mut body = s.metrics.render(&gauges);
    if platform {
        body.push_str(&crate::monitoring::prometheus::scrape(&s).await?);
        body.push_str(&crate::monitoring::object_storage::scrape(&s).await?);
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = DOC.get_or_init(|| crate::openapi::openapi_document().to_string());
    ([(header::CONTENT_TYPE, "application/json")], body.as_str()).into_response()
}

/// JSON answers gzipped for clients that take it (a list of 1,000 VMs is ~10× smaller);
/// nothing else: console files are gzipped at build time, object downloads and image
/// data are the tenant's own bytes, and the serial console is a WebSocket.
fn json_compression(
) -> tower_http::compression::CompressionLayer<impl tower_http::compression::Predicate> {
    use tower_http::compression::predicate::{Predicate, SizeAbove};
    let json = |_: StatusCode,
                _: axum::http::Version,
                h: &axum::http::HeaderMap,
                _: &axum::http::Extensions| {
        h.get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
    };
    tower_http::compression::CompressionLayer::new()
        .gzip(true)
        .compress_when(SizeAbove::new(1024).and(json))
}

async fn unmatched() -> HttpError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such endpoint; GET /v1/openapi.json lists them",
    )
    .into()
}

async fn method_not_allowed() -> HttpError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this method is not allowed on this path",
    )
    .into()
}

async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = crate::metrics::method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    let route = route.as_ref().map(MatchedPath::as_str);
    s.metrics
        .observe(method, route, resp.status().as_u16(), start.elapsed());
    resp
}
