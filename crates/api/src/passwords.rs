//! Users' console passwords. `PUT /v1/users/{id}/password` sets one: an admin for
//! anyone, a user for themself (with the current password, when there is one). The
//! store keeps its argon2id hash; a new password ends the user's other console sessions.
//! Checking one at login is bounded like API keys: failures counted per client
//! address and per username before any hashing, argon2 under the shared limit, unknown
//! names checked against a dummy hash so they cost the same.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::put;
use axum::Router;
use schemars::JsonSchema;
use serde::Deserialize;
use yunhan_model::{ApiError, ErrorCode, User};
use yunhan_store::objects::{password_key, Doc, GLOBAL_SCOPE};
use yunhan_store::StoreExt;

use crate::auth::{addr_bucket, Principal};
use crate::error::{HttpError, Result};
use crate::extract::JsonBody;
use crate::verify::DUMMY_HASH;
use crate::{AppState, Shared};

const MIN_LEN: usize = 8;
const MAX_LEN: usize = 256;

/// `PUT /v1/users/{id}/password`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// 8–256 characters.
    pub password: String,
    /// Needed when users change their own password and already have one.
    #[serde(default)]
    pub current_password: Option<String>,
}

pub(crate) fn routes(r: Router<Shared>) -> Router<Shared> {
    r.route("/v1/users/{id}/password", put(set))
}

fn wrong() -> HttpError {
    ApiError::new(ErrorCode::Unauthenticated, "wrong username or password").into()
}

async fn hash_of(s: &AppState, user_id: &str) -> Result<Option<String>> {
    let kv = s.objects.store().get(&password_key(user_id)).await?;
    Ok(kv.and_then(|kv| String::from_utf8(kv.value).ok()))
}

/// The user `username` if `password` is theirs.
pub(crate) async fn check(
    s: &AppState,
    username: &str,
    password: &str,
    client: Option<IpAddr>,
) -> Result<Doc<User>> {
    if username.is_empty() || password.len() > MAX_LEN {
        return Err(wrong());
    }
    let (addr, bucket) = (addr_bucket(client), format!("user:{username}"));
    s.auth.admit(&addr, &bucket)?;
    let user = s
        .objects
        .get_by_name::<User>(GLOBAL_SCOPE, username)
        .await?;
    let hash = match &user {
        Some(u) => hash_of(s, &u.metadata.id).await?,
        None => None,
    };
    let known = user.is_some() && hash.is_some();
    let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_string());
    let ok = s.auth.argon2().verify(password.to_string(), hash).await;
    match user.filter(|_| ok && known) {
        Some(u) => {
            s.auth.refund(&addr, &bucket);
            Ok(u)
        }
        None => {
            tracing::debug!(%addr, %username, "failed password login");
            Err(wrong())
        }
    }
}

fn bad_length() -> HttpError {
    ApiError::invalid_field(
        "password",
        format!("a password has {MIN_LEN}–{MAX_LEN} characters"),
    )
    .into()
}

/// May the caller set `user`'s password (an admin, or the user with `current`)?
async fn may_set(
    s: &AppState,
    p: &Principal,
    user: &Doc<User>,
    current: Option<&str>,
) -> Result<()> {
    if p.is_admin() {
        return Ok(());
    }
    let Some(hash) = hash_of(s, &user.metadata.id).await? else {
        return Ok(());
    };
    let current = current.ok_or_else(|| {
        ApiError::invalid_field(
            "current_password",
            "give your current password to change it",
        )
    })?;
    if s.auth.argon2().verify(current.to_string(), hash).await {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::Forbidden, "the current password is wrong").into())
    }
}

/// `PUT /v1/users/{id}/password` (id or name): 204.
async fn set(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<SetPassword>,
) -> Result<StatusCode> {
    if !(MIN_LEN..=MAX_LEN).contains(&req.password.chars().count()) {
        return Err(bad_length());
    }
    let user = match s.objects.get::<User>(&id).await? {
        Some(u) => Some(u),
        None => s.objects.get_by_name::<User>(GLOBAL_SCOPE, &id).await?,
    };
    // Members may only name themselves: anyone else is as unknown as a missing user.
    let user = user
        .filter(|u| p.is_admin() || u.metadata.id == p.user)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no user {id:?}")))?;
    may_set(&s, &p, &user, req.current_password.as_deref()).await?;
    let hash = s.auth.argon2().hash(req.password).await.ok_or_else(|| {
        HttpError::from(ApiError::new(
            ErrorCode::Internal,
            "hashing the password failed",
        ))
    })?;
    s.objects
        .store()
        .put(&password_key(&user.metadata.id), hash.into_bytes())
        .await?;
    crate::session_store::end_all_of(&s, &user.metadata.id, Some(&p.key)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a deleted user's password.
pub(crate) async fn forget(s: &AppState, user_id: &str) -> Result<()> {
    s.objects.store().delete(&password_key(user_id)).await?;
    Ok(())
}
