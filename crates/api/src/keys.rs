//! `/v1/api-keys`. Members see and manage only their own keys (another user's
//! key answers 404, as other projects' objects do); admins see all. A key may
//! expire (`spec.expires_at`), and one user holds at most
//! [`ApiKey::MAX_PER_USER`] keys (each key has its own rate limit).

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use yunhan_model::{
    new_id, validate_labels, validate_name, ApiError, ApiKey, ApiKeySpec, ApiKeyStatus,
    CreateRequest, ErrorCode, Kind, Metadata, Resource, User,
};
use yunhan_store::objects::{api_key_secret_key, Doc, GLOBAL_SCOPE};
use yunhan_store::StoreExt;

use crate::auth::{store_secret, Principal};
use crate::crud::{created, deleted, ListQuery, ListResponse};
use crate::error::Result;
use crate::extract::{JsonBody, QueryParams};
use crate::lookup::{find_visible, lookup};
use crate::resource::{delete_current, Deleted, Hooks};
use crate::{AppState, Shared};

pub(crate) fn routes(r: Router<Shared>) -> Router<Shared> {
    user_owned_routes::<ApiKey>(r, post(create))
}

/// `GET/POST /v1/<plural>` and `GET/DELETE /v1/<plural>/{id}` of a [`UserOwned`]
/// kind, whose `POST` is its own `create`.
pub(crate) fn user_owned_routes<K: UserOwned>(
    r: Router<Shared>,
    create: MethodRouter<Shared>,
) -> Router<Shared> {
    r.route(
        &format!("/v1/{}", K::PLURAL),
        get(list_mine::<K>).merge(create),
    )
    .route(
        &format!("/v1/{}/{{id}}", K::PLURAL),
        get(show_mine::<K>).delete(remove_mine::<K>),
    )
}

/// Response of `POST /v1/api-keys`: the token is shown this once.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatedApiKey {
    pub api_key: Resource<ApiKeySpec, ApiKeyStatus>,
    /// The bearer token. It is not stored and cannot be shown again.
    pub token: String,
}

/// A key's secret goes with it, and the authenticator forgets it at once.
#[async_trait]
impl Hooks for ApiKey {
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        delete_current::<Self>(s, doc.clone()).await?;
        s.objects
            .store()
            .delete(&api_key_secret_key(&doc.metadata.id))
            .await?;
        s.auth.forget_key(&doc.metadata.id);
        Ok(Deleted::Now)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyQuery {
    /// Admins: resolve names in this project (id or name).
    pub project: Option<String>,
}

/// Kinds whose objects each belong to one user (API keys, S3 keys): a member sees
/// and deletes only their own; another user's answers 404, as other projects' do.
pub(crate) trait UserOwned: Hooks {
    /// The most one user holds.
    const MAX_PER_USER: usize;
    /// Their plural in messages (`API keys`) and the CLI noun that manages them (`key`).
    const WHAT: &'static str;
    const CLI_NOUN: &'static str;
    fn user_of(doc: &Doc<Self>) -> &str;
}

impl UserOwned for ApiKey {
    const MAX_PER_USER: usize = ApiKey::MAX_PER_USER;
    const WHAT: &'static str = "API keys";
    const CLI_NOUN: &'static str = "key";
    fn user_of(doc: &Doc<Self>) -> &str {
        &doc.status.user
    }
}

/// May `p` see and delete `key`?
fn mine<K: UserOwned>(p: &Principal, key: &Doc<K>) -> bool {
    p.is_admin() || K::user_of(key) == p.user
}

pub(crate) async fn find_mine<K: UserOwned>(
    s: &Shared,
    p: &Principal,
    id: &str,
    project: Option<&str>,
) -> Result<Doc<K>> {
    let key = find_visible::<K>(s, p, id, project).await?;
    if !mine::<K>(p, &key) {
        return Err(ApiError::not_found(K::KIND, id).into());
    }
    Ok(key)
}

/// `GET /v1/<plural>` of a [`UserOwned`] kind.
async fn list_mine<K: UserOwned>(
    s: State<Shared>,
    p: Principal,
    q: QueryParams<ListQuery>,
) -> Result<Json<ListResponse<Doc<K>>>> {
    let Json(mut page) = crate::crud::list::<K>(s, p.clone(), q).await?;
    page.items.retain(|k| mine::<K>(&p, k));
    Ok(Json(page))
}

/// `GET /v1/<plural>/{id}` of a [`UserOwned`] kind.
async fn show_mine<K: UserOwned>(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<KeyQuery>,
) -> Result<Json<Doc<K>>> {
    Ok(Json(
        find_mine::<K>(&s, &p, &id, q.project.as_deref()).await?,
    ))
}

/// `DELETE /v1/<plural>/{id}` of a [`UserOwned`] kind.
async fn remove_mine<K: UserOwned>(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<KeyQuery>,
) -> Result<Response> {
    let key = find_mine::<K>(&s, &p, &id, q.project.as_deref()).await?;
    Ok(deleted(<K as Hooks>::delete(&s, key).await?))
}

/// The user a new key is for: the caller, or (admins) anyone.
pub(crate) async fn key_user(s: &Shared, p: &Principal, named: Option<&str>) -> Result<Doc<User>> {
    let user = match named {
        None => p.user.as_str(),
        Some(u) if !p.is_admin() && u != p.user => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "members may only create keys for themselves",
            )
            .into())
        }
        Some(u) => u,
    };
    let found = lookup::<User>(s, GLOBAL_SCOPE, user).await?;
    found.ok_or_else(|| {
        ApiError::invalid_field("spec.user", format!("user {user:?} does not exist")).into()
    })
}

/// Refuses a key of kind `K` beyond `K::MAX_PER_USER` (call under `key_create`).
pub(crate) async fn check_key_limit<K: UserOwned>(s: &AppState, user: &Doc<User>) -> Result<()> {
    let keys = s.objects.list_all::<K>(Some(&user.spec.project)).await?;
    let held = (keys.iter())
        .filter(|k| K::user_of(k) == user.metadata.id)
        .count();
    if held < K::MAX_PER_USER {
        return Ok(());
    }
    let (what, noun) = (K::WHAT, K::CLI_NOUN);
    Err(ApiError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "user {:?} already holds {held} {what}, the most one user may hold; delete one first ('yunhan {noun} list', 'yunhan {noun} delete')",
            user.metadata.name
        ),
    )
    .with_detail("resource", what.replace(' ', "_").to_lowercase())
    .with_detail("limit", K::MAX_PER_USER)
    .with_detail("requested", 1)
    .into())
}

fn check_request(req: &CreateRequest<ApiKeySpec>) -> Result<()> {
    validate_name("metadata.name", &req.metadata.name)?;
    validate_labels(&req.metadata.labels)?;
    ApiKey::validate(&req.spec)?;
    if req.metadata.project.is_some() {
        return Err(ApiError::invalid_field(
            "metadata.project",
            "a key belongs to its user's project; omit metadata.project",
        )
        .into());
    }
    if req.spec.expired() {
        return Err(ApiError::invalid_field(
            "spec.expires_at",
            "the expiry is in the past; give a future time",
        )
        .into());
    }
    Ok(())
}

async fn create(
    State(s): State<Shared>,
    p: Principal,
    JsonBody(req): JsonBody<CreateRequest<ApiKeySpec>>,
) -> Result<Response> {
    check_request(&req)?;
    let user = key_user(&s, &p, req.spec.user.as_deref()).await?;
    let id = new_id(ApiKey::ID_PREFIX);
    let (token, hash) = s.auth.mint(&id).await?;
    let doc = Resource {
        metadata: Metadata {
            labels: req.metadata.labels,
            ..Metadata::new(&id, req.metadata.name, Some(user.spec.project.clone()))
        },
        spec: ApiKeySpec {
            user: Some(user.metadata.id.clone()),
            expires_at: req.spec.expires_at,
        },
        status: ApiKeyStatus {
            prefix: token.chars().take(12).collect(),
            role: Some(user.spec.role),
            user: user.metadata.id.clone(),
        },
    };
    let serial = s.key_create.lock().await;
    check_key_limit::<ApiKey>(&s, &user).await?;
    store_secret(&s.objects, &id, hash).await?;
    let api_key = s.objects.create::<ApiKey>(doc).await?;
    drop(serial);
    let body = Json(CreatedApiKey { api_key, token });
    Ok(created(ApiKey::PLURAL, &id, body))
}
