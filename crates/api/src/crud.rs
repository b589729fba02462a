//! The generic CRUD handlers every resource kind shares, and their routes:
//! `GET/POST /v1/<plural>` and `GET/PUT/DELETE /v1/<plural>/{id}`. A kind's
//! own rules come in through its [`Hooks`].

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use yunhan_model::{
    new_id, validate_labels, validate_name, ApiError, CreateRequest, ErrorCode, Metadata, Resource,
    Scope, UpdateRequest,
};
use yunhan_store::objects::{object_prefix, Doc, ObjectError, GLOBAL_SCOPE};

use crate::auth::Principal;
use crate::error::Result;
use crate::extract::{IfMatch, JsonBody, QueryParams};
use crate::lookup::{find_visible, find_writable, forbidden, resolve_project, visible, writable};
use crate::resource::{Deleted, Hooks};
use crate::{AppState, Shared};

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

/// `GET/POST /v1/<plural>` and `GET/PUT/DELETE /v1/<plural>/{id}`.
pub(crate) fn crud<K: Hooks>(router: Router<Shared>) -> Router<Shared> {
    crud_with::<K>(router, axum::routing::delete(remove::<K>))
}

/// [`crud`] with a `DELETE /v1/<plural>/{id}` of the kind's own (e.g. one that takes
/// query parameters).
pub(crate) fn crud_with<K: Hooks>(
    router: Router<Shared>,
    delete: axum::routing::MethodRouter<Shared>,
) -> Router<Shared> {
    router
        .route(
            &format!("/v1/{}", K::PLURAL),
            get(list::<K>).post(create::<K>),
        )
        .route(
            &format!("/v1/{}/{{id}}", K::PLURAL),
            get(show::<K>).put(update::<K>).merge(delete),
        )
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
    let after = page_start::<K>(q.page_token.as_deref())?;
    let scope = list_scope::<K>(&s, &p, q.project.as_deref()).await?;
    let (docs, next) = s
        .objects
        .list::<K>(scope.as_deref(), after.as_deref(), limit)
        .await?;
    Ok(Json(ListResponse {
        items: docs.into_iter().filter(|d| visible::<K>(&p, d)).collect(),
        next_page_token: next.map(hex::encode),
    }))
}

/// The key a page starts after, from the previous page's `next_page_token`.
fn page_start<K: Hooks>(token: Option<&str>) -> Result<Option<String>> {
    let Some(t) = token else {
        return Ok(None);
    };
    let prefix = object_prefix::<K>(None);
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
    Ok(Some(key))
}

/// The scope a list reads (`None`: every project's).
async fn list_scope<K: Hooks>(
    s: &AppState,
    p: &Principal,
    project: Option<&str>,
) -> Result<Option<String>> {
    Ok(match K::SCOPE {
        Scope::Global => Some(GLOBAL_SCOPE.to_string()),
        Scope::Project if p.is_admin() => match project {
            Some(named) => Some(resolve_project(s, p, Some(named)).await?),
            None => None,
        },
        // Members see their project (and, for kinds with public objects, those too).
        Scope::Project if K::HAS_PUBLIC => None,
        Scope::Project => Some(p.project.clone()),
    })
}

async fn show<K: Hooks>(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ObjectQuery>,
) -> Result<Response> {
    let doc = find_visible::<K>(&s, &p, &id, q.project.as_deref()).await?;
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
    let project = new_object_project::<K>(&s, &p, req.metadata.project.as_deref()).await?;
    let mut doc: Doc<K> = Resource {
        metadata: Metadata {
            labels: req.metadata.labels,
            ..Metadata::new(new_id(K::ID_PREFIX), req.metadata.name, project)
        },
        spec: req.spec,
        status: Default::default(),
    };
    K::prepare_create(&s, &p, &mut doc).await?;
    let doc = s.objects.create::<K>(doc).await?;
    let (id, revision) = (doc.metadata.id.clone(), doc.metadata.revision);
    Ok(created(K::PLURAL, &id, with_etag(revision, Json(doc))))
}

/// The project a new object of kind `K` belongs to (none for platform-wide kinds).
async fn new_object_project<K: Hooks>(
    s: &AppState,
    p: &Principal,
    named: Option<&str>,
) -> Result<Option<String>> {
    match K::SCOPE {
        Scope::Project => Ok(Some(resolve_project(s, p, named).await?)),
        Scope::Global if named.is_some() => Err(ApiError::invalid_field(
            "metadata.project",
            format!("{} are platform-wide and belong to no project", K::PLURAL),
        )
        .into()),
        Scope::Global => Ok(None),
    }
}

/// 201 with `Location: /v1/<plural>/<id>`.
pub(crate) fn created(plural: &str, id: &str, body: impl IntoResponse) -> Response {
    let mut resp = (StatusCode::CREATED, body).into_response();
    if let Ok(v) = format!("/v1/{plural}/{id}").parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// How often an unconditional `PUT` re-reads and re-applies itself when a
/// controller's status write (or another unconditional `PUT`) slipped in between its
/// read and its write: more than a handful of writers racing on one object plus the
/// controllers and agent writing its status.
const UNCONDITIONAL_UPDATE_ATTEMPTS: usize = 16;

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
    let pinned = req.revision.is_some() || matches!(if_match, IfMatch::Revisions(_));
    let mut attempt = 1;
    loop {
        let old = find_writable::<K>(&s, &p, &id, q.project.as_deref()).await?;
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
    let doc = find_visible::<K>(&s, &p, &id, q.project.as_deref()).await?;
    if_match.check(doc.metadata.revision)?;
    if !writable::<K>(&p, &doc) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this {} belongs to another project", K::KIND),
        )
        .into());
    }
    Ok(deleted(K::delete(&s, doc).await?))
}

/// 204 for an object gone now, 202 with the object for one on its way out.
pub(crate) fn deleted<K: Hooks>(d: Deleted<K>) -> Response {
    match d {
        Deleted::Now => StatusCode::NO_CONTENT.into_response(),
        Deleted::Pending(doc) => (StatusCode::ACCEPTED, Json(*doc)).into_response(),
    }
}
