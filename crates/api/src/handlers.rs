//! Routes and the generic CRUD handlers every resource kind shares.

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use yunhan_model::{
    new_id, validate_labels, validate_name, ApiError, ApiKeySpec, ApiKeyStatus, CreateRequest,
    ErrorCode, Flavor, Host, Image, Instance, Kind, Metadata, PlacementGroup, Project, Resource,
    Role, Scope, UpdateRequest, User, Volume,
};
use yunhan_store::objects::{object_prefix, Doc, ObjectError, GLOBAL_SCOPE};

use crate::auth::Principal;
use crate::error::{HttpError, Result};
use crate::extract::{BodyLimit, IfMatch, JsonBody, QueryParams};
use crate::hooks::{lookup, Deleted, Hooks};
use crate::{AppState, Shared};

pub use yunhan_model::now;

/// One page of a list.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    /// Pass as `page_token` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Items per page, 1–1000 (default 100).
    limit: Option<usize>,
    page_token: Option<String>,
    /// Admins: only this project's objects (id or name).
    project: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectQuery {
    /// Admins: resolve names in this project (id or name).
    project: Option<String>,
}

/// Response of `POST /v1/api-keys`: the token is shown this once.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatedApiKey {
    pub api_key: Resource<ApiKeySpec, ApiKeyStatus>,
    /// The bearer token. It is not stored and cannot be shown again.
    pub token: String,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhoAmI {
    pub user: String,
    pub project: String,
    pub role: Role,
}

fn forbidden(what: &str) -> HttpError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!("{what} needs the platform-admin role"),
    )
    .into()
}

fn not_found<K: Kind>(what: &str) -> HttpError {
    ApiError::not_found(K::KIND, what).into()
}

/// May `p` read `doc`? (Objects of other projects do not exist for members.)
fn visible<K: Hooks>(p: &Principal, doc: &Doc<K>) -> bool {
    p.is_admin()
        || (!K::ADMIN_READ && (K::owner(doc) == Some(p.project.as_str()) || K::public(doc)))
}

/// May `p` change `doc` (given it is visible)?
fn writable<K: Hooks>(p: &Principal, doc: &Doc<K>) -> bool {
    p.is_admin() || (!K::ADMIN_WRITE && K::owner(doc) == Some(p.project.as_str()))
}

/// The project an admin named (id or name), or the caller's own.
async fn resolve_project(s: &Shared, p: &Principal, named: Option<&str>) -> Result<String> {
    let Some(named) = named else {
        return Ok(p.project.clone());
    };
    let found = lookup::<Project>(s, GLOBAL_SCOPE, named).await?;
    match found {
        Some(proj) if p.is_admin() || proj.metadata.id == p.project => Ok(proj.metadata.id),
        _ => Err(not_found::<Project>(named)),
    }
}

/// The scope names are resolved in for kind `K`.
async fn name_scope<K: Kind>(s: &Shared, p: &Principal, project: Option<&str>) -> Result<String> {
    match K::SCOPE {
        Scope::Global => Ok(GLOBAL_SCOPE.to_string()),
        Scope::Project => resolve_project(s, p, project).await,
    }
}

pub async fn find_visible<K: Hooks>(
    s: &Shared,
    p: &Principal,
    id: &str,
    project: Option<&str>,
) -> Result<Doc<K>> {
    find::<K>(s, p, id, project).await
}

async fn find<K: Hooks>(
    s: &Shared,
    p: &Principal,
    id: &str,
    project: Option<&str>,
) -> Result<Doc<K>> {
    if K::ADMIN_READ && !p.is_admin() {
        return Err(forbidden(&format!("reading {}", K::PLURAL)));
    }
    let scope = name_scope::<K>(s, p, project).await?;
    match lookup::<K>(s, &scope, id).await? {
        Some(doc) if visible::<K>(p, &doc) => Ok(doc),
        _ => Err(not_found::<K>(id)),
    }
}

/// Finds an object the caller may change (404 if invisible, 403 if read-only).
pub async fn find_writable<K: Hooks>(
    s: &Shared,
    p: &Principal,
    id: &str,
    project: Option<&str>,
) -> Result<Doc<K>> {
    if K::ADMIN_WRITE && !p.is_admin() {
        return Err(forbidden(&format!("changing {}", K::PLURAL)));
    }
    let doc = find::<K>(s, p, id, project).await?;
    if !writable::<K>(p, &doc) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this {} belongs to another project; it can be read but not changed",
                K::KIND
            ),
        )
        .into());
    }
    Ok(doc)
}

pub(crate) async fn list<K: Hooks>(
    State(s): State<Shared>,
    p: Principal,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<ListResponse<Doc<K>>>> {
    if K::ADMIN_READ && !p.is_admin() {
        return Err(forbidden(&format!("listing {}", K::PLURAL)));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "limit must be 1–1000").into());
    }
    let prefix = object_prefix::<K>(None);
    let after = match &q.page_token {
        None => None,
        Some(t) => {
            let key = hex::decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|k| k.starts_with(&prefix))
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "page_token",
                        "the page token is not valid; start again without it",
                    )
                })?;
            Some(key)
        }
    };
    let scope = match K::SCOPE {
        Scope::Global => Some(GLOBAL_SCOPE.to_string()),
        Scope::Project if p.is_admin() => match q.project.as_deref() {
            Some(named) => Some(resolve_project(&s, &p, Some(named)).await?),
            None => None,
        },
        // Members see their project (and, for kinds with public objects, those too).
        Scope::Project if K::HAS_PUBLIC => None,
        Scope::Project => Some(p.project.clone()),
    };
    let (docs, next) = s
        .objects
        .list::<K>(scope.as_deref(), after.as_deref(), limit)
        .await?;
    Ok(Json(ListResponse {
        items: docs.into_iter().filter(|d| visible::<K>(&p, d)).collect(),
        next_page_token: next.map(hex::encode),
    }))
}

async fn show<K: Hooks>(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ObjectQuery>,
) -> Result<Response> {
    let doc = find::<K>(&s, &p, &id, q.project.as_deref()).await?;
    Ok(with_etag(doc.metadata.revision, Json(doc)))
}

/// `body` with `ETag: "<revision>"`, the value `If-Match` takes.
fn with_etag(revision: u64, body: impl IntoResponse) -> Response {
    let mut resp = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

async fn create<K: Hooks>(
    State(s): State<Shared>,
    p: Principal,
    JsonBody(req): JsonBody<CreateRequest<K::Spec>>,
) -> Result<Response> {
    if K::ADMIN_WRITE && !p.is_admin() {
        return Err(forbidden(&format!("creating {}", K::PLURAL)));
    }
    validate_name("metadata.name", &req.metadata.name)?;
    validate_labels(&req.metadata.labels)?;
    K::validate(&req.spec)?;
    let project = match K::SCOPE {
        Scope::Project => Some(resolve_project(&s, &p, req.metadata.project.as_deref()).await?),
        Scope::Global if req.metadata.project.is_some() => {
            return Err(ApiError::invalid_field(
                "metadata.project",
                format!("{} are platform-wide and belong to no project", K::PLURAL),
            )
            .into())
        }
        Scope::Global => None,
    };
    let mut doc: Doc<K> = Resource {
        metadata: Metadata {
            id: new_id(K::ID_PREFIX),
            name: req.metadata.name,
            project,
            labels: req.metadata.labels,
            created: now(),
            revision: 0,
            deleting: None,
        },
        spec: req.spec,
        status: Default::default(),
    };
    K::prepare_create(&s, &p, &mut doc).await?;
    let doc = s.objects.create::<K>(doc).await?;
    let (id, revision) = (doc.metadata.id.clone(), doc.metadata.revision);
    Ok(created(K::PLURAL, &id, with_etag(revision, Json(doc))))
}

fn created(plural: &str, id: &str, body: impl IntoResponse) -> Response {
    let mut resp = (StatusCode::CREATED, body).into_response();
    if let Ok(v) = format!("/v1/{plural}/{id}").parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// How often an unconditional `PUT` re-reads and re-applies itself when a
/// controller's status write slipped in between its read and its write.
const UNCONDITIONAL_UPDATE_ATTEMPTS: usize = 8;

/// `PUT /v1/<kind>/<id>`. With a precondition (`If-Match` or a body
/// `revision`) a changed object is a 409; without one the write is
/// unconditional, so a concurrent status update is no reason to refuse it:
/// the spec is applied again onto the fresh object.
async fn update<K: Hooks>(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ObjectQuery>,
    if_match: IfMatch,
    JsonBody(req): JsonBody<UpdateRequest<K::Spec>>,
) -> Result<Response> {
    if K::ADMIN_WRITE && !p.is_admin() {
        return Err(forbidden(&format!("changing {}", K::PLURAL)));
    }
    let pinned = req.revision.is_some() || matches!(if_match, IfMatch::Revisions(_));
    let mut attempt = 1;
    loop {
        let old = find::<K>(&s, &p, &id, q.project.as_deref()).await?;
        if !writable::<K>(&p, &old) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this {} belongs to another project; it can be read but not changed",
                    K::KIND
                ),
            )
            .into());
        }
        if_match.check(old.metadata.revision)?;
        if let Some(want) = req.revision {
            IfMatch::Revisions(vec![want]).check(old.metadata.revision)?;
        }
        let new = updated::<K>(&s, &p, &old, &req).await?;
        match s.objects.update::<K>(&new).await {
            Err(ObjectError::Conflict(_)) if !pinned && attempt < UNCONDITIONAL_UPDATE_ATTEMPTS => {
                attempt += 1
            }
            r => {
                let new = r?;
                return Ok(with_etag(new.metadata.revision, Json(new)));
            }
        }
    }
}

/// `old` with the request's spec and labels, once the kind's checks passed.
async fn updated<K: Hooks>(
    s: &AppState,
    p: &Principal,
    old: &Doc<K>,
    req: &UpdateRequest<K::Spec>,
) -> Result<Doc<K>> {
    K::validate(&req.spec)?;
    let mut new = old.clone();
    new.spec = req.spec.clone();
    if let Some(labels) = &req.labels {
        validate_labels(labels)?;
        new.metadata.labels = labels.clone();
    }
    K::check_update(old, &new)?;
    K::prepare_update(s, p, old, &mut new).await?;
    Ok(new)
}

async fn remove<K: Hooks>(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ObjectQuery>,
    if_match: IfMatch,
) -> Result<Response> {
    if K::ADMIN_WRITE && !p.is_admin() {
        return Err(forbidden(&format!("deleting {}", K::PLURAL)));
    }
    let doc = find::<K>(&s, &p, &id, q.project.as_deref()).await?;
    if_match.check(doc.metadata.revision)?;
    if !writable::<K>(&p, &doc) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this {} belongs to another project", K::KIND),
        )
        .into());
    }
    Ok(match K::delete(&s, doc).await? {
        Deleted::Now => StatusCode::NO_CONTENT.into_response(),
        Deleted::Pending(doc) => (StatusCode::ACCEPTED, Json(*doc)).into_response(),
    })
}

async fn whoami(p: Principal) -> Json<WhoAmI> {
    Json(WhoAmI {
        user: p.user,
        project: p.project,
        role: p.role,
    })
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
/// for anyone); with an admin token also the platform figures that reveal
/// tenants' activity (the store revision). A member's token is refused.
async fn metrics(State(s): State<Shared>, req: Request) -> Result<Response> {
    let mut gauges = s.metrics.process_gauges();
    if req.headers().contains_key(header::AUTHORIZATION) {
        let (mut parts, _) = req.into_parts();
        let p = Principal::from_request_parts(&mut parts, &s).await?;
        if !p.is_admin() {
            return Err(forbidden(
                "the platform figures of /metrics (scrape without a token for the HTTP counters)",
            ));
        }
        let rev = s.objects.store().current_revision().await?;
        gauges.push((
            "yunhan_store_revision",
            "The store's current revision (admin scrapes only).",
            rev as f64,
        ));
    }
    let body = s.metrics.render(&gauges);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

async fn openapi() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = DOC.get_or_init(|| crate::openapi::openapi_document().to_string());
    ([(header::CONTENT_TYPE, "application/json")], body.as_str()).into_response()
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

/// `GET/POST /v1/<plural>` and `GET/PUT/DELETE /v1/<plural>/{id}`.
pub(crate) fn crud<K: Hooks>(router: Router<Shared>) -> Router<Shared> {
    router
        .route(
            &format!("/v1/{}", K::PLURAL),
            get(list::<K>).post(create::<K>),
        )
        .route(
            &format!("/v1/{}/{{id}}", K::PLURAL),
            get(show::<K>).put(update::<K>).delete(remove::<K>),
        )
}

pub fn routes(state: Shared, body_limit: usize) -> Router {
    let mut r = Router::new();
    r = crud::<Project>(r);
    r = crud::<User>(r);
    r = crud::<Host>(r);
    r = crud::<Flavor>(r);
    r = crud::<Image>(r);
    r = crud::<Instance>(r);
    r = crud::<Volume>(r);
    r = crud::<yunhan_model::Snapshot>(r);
    r = crud::<PlacementGroup>(r);
    r = crate::network::routes(r);
    r = crate::keys::routes(r);
    r = r
        .route(
            "/v1/images/{id}/data",
            axum::routing::put(crate::images::upload),
        )
        .route("/v1/instances/{id}/console", get(crate::console::log))
        .route(
            "/v1/instances/{id}/console/attach",
            get(crate::console::attach),
        )
        .route("/v1/whoami", get(whoami))
        .route("/v1/openapi.json", get(openapi))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics));
    r.fallback(unmatched)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(BodyLimit(body_limit)))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}
