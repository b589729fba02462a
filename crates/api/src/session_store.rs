//! Console sessions, the part every request uses: the session cookie (random 256 bits;
//! the store keeps only its SHA-256, with the user, an absolute expiry and a CSRF token),
//! checking a request that carries it (its `Origin` must be this server; a change needs
//! `X-CSRF-Token`), one-time login links, and ending sessions. The login and logout
//! handlers are in `sessions.rs`; docs/console.md has the design.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, request::Parts, HeaderMap, Method};
use rand::RngCore;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use yunhan_model::{ApiError, ErrorCode, User};
use yunhan_store::objects::{login_link_key, session_key, Doc, Objects, SESSION_PREFIX};
use yunhan_store::{Compare, Op, StoreError, StoreExt, Txn};

use crate::error::{HttpError, Result};
use crate::principal::Principal;
use crate::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "yunhan_session";
/// The header a cookie-authenticated change must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a login link stays usable.
const LINK_TTL: Duration = Duration::from_secs(15 * 60);

/// A session as stored (under the cookie's digest).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub user: String,
    pub csrf: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// A login link as stored (under its code's digest).
#[derive(Debug, Serialize, Deserialize)]
struct Link {
    user: String,
    expires_at: u64,
}

/// `POST /v1/sessions/links`: a one-time login link for the caller.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginLink {
    /// Open `<endpoint>/console/#login=<login_link>` within 15 minutes, once.
    pub login_link: String,
    pub expires_at: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn rfc3339(unix: u64) -> String {
    yunhan_model::rfc3339_of(unix as i64)
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn is_secret(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn unauthenticated(msg: &str) -> HttpError {
    ApiError::new(ErrorCode::Unauthenticated, msg).into()
}

fn ended() -> HttpError {
    unauthenticated("your console session has ended or expired; log in again")
}

/// The session cookie's value, if the request has one.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// A request from a page of another site (its `Origin` is not this server): refused.
fn check_origin(parts: &Parts) -> Result<()> {
    let Some(origin) = parts.headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::Forbidden,
            "cross-site requests are refused: this session's cookie works only from the console's own pages",
        )
        .into()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn record(s: &AppState, cookie: &str) -> Result<(String, Record)> {
    if !is_secret(cookie) {
        return Err(ended());
    }
    let key = session_key(&digest(cookie));
    let kv = s.objects.store().get(&key).await?.ok_or_else(ended)?;
    let rec: Record = serde_json::from_slice(&kv.value).map_err(|_| ended())?;
    if rec.expires_at <= now() {
        s.objects.store().delete(&key).await?;
        return Err(ended());
    }
    Ok((key, rec))
}

/// Who a live session's cookie belongs to, without the checks a request's own
/// authentication makes (the audit trail names the session's user for a refused request
/// too).
pub(crate) async fn principal_of_cookie(s: &AppState, cookie: &str) -> Result<Principal> {
    let (key, rec) = record(s, cookie).await?;
    Ok(principal_of(s, &rec.user, session_id(&key)).await?.0)
}

pub(crate) async fn principal_of(
    s: &AppState,
    user_id: &str,
    key: String,
) -> Result<(Principal, Doc<User>)> {
    let user = s
        .objects
        .get::<User>(user_id)
        .await?
        .ok_or_else(|| unauthenticated("the user of this session no longer exists"))?;
    let p = Principal {
        user: user.metadata.id.clone(),
        key,
        project: user.spec.project.clone(),
        role: user.spec.role,
    };
    Ok((p, user))
}

/// The caller of a request that carries the session cookie `cookie`.
pub(crate) async fn authenticate(s: &AppState, parts: &Parts, cookie: &str) -> Result<Principal> {
    check_origin(parts)?;
    let (key, rec) = record(s, cookie).await?;
    let safe = matches!(parts.method, Method::GET | Method::HEAD);
    let csrf = parts.headers.get(CSRF_HEADER).map(|v| v.as_bytes());
    if !safe && !csrf.is_some_and(|c| constant_time_eq(c, rec.csrf.as_bytes())) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this request changes something, so it needs the session's X-CSRF-Token header (GET /v1/session tells it)",
        )
        .into());
    }
    let id = session_id(&key);
    Ok(principal_of(s, &rec.user, id).await?.0)
}

/// A login link's user, once: the link is deleted in the same transaction that reads it.
pub(crate) async fn use_link(s: &AppState, code: &str) -> Result<String> {
    let refused = || {
        unauthenticated("this login link is not valid: it was used already or expired (links last 15 minutes); run 'yunhan console' for a new one")
    };
    if !is_secret(code) {
        return Err(refused());
    }
    let key = login_link_key(&digest(code));
    let kv = s.objects.store().get(&key).await?.ok_or_else(refused)?;
    let txn = Txn::new()
        .when(Compare::ModRevision(key.clone(), kv.mod_revision))
        .then(Op::delete(key));
    if !s.objects.store().txn(txn).await?.succeeded {
        return Err(refused());
    }
    let link: Link = serde_json::from_slice(&kv.value).map_err(|_| refused())?;
    if link.expires_at <= now() {
        return Err(refused());
    }
    Ok(link.user)
}

/// Drops expired sessions (at each login: the store never fills with dead ones).
async fn sweep(s: &AppState) -> Result<()> {
    let t = now();
    for kv in s.objects.store().range_all(SESSION_PREFIX).await? {
        let dead = serde_json::from_slice::<Record>(&kv.value).map_or(true, |r| r.expires_at <= t);
        if dead {
            s.objects.store().delete(&kv.key).await?;
        }
    }
    Ok(())
}

/// A new session of `user` lasting `ttl_secs`: the cookie's value and the record.
pub(crate) async fn open(s: &AppState, user: &str, ttl_secs: u64) -> Result<(String, Record)> {
    sweep(s).await?;
    let secret = random_hex();
    let rec = Record {
        user: user.to_string(),
        csrf: random_hex(),
        expires_at: now() + ttl_secs,
    };
    let body = serde_json::to_vec(&rec).expect("a session serialises");
    let key = session_key(&digest(&secret));
    s.objects.store().put(&key, body).await?;
    Ok((secret, rec))
}

/// Ends the session of this cookie (log out); nothing if there is none.
pub(crate) async fn end(s: &AppState, cookie: &str) -> Result<()> {
    if is_secret(cookie) {
        s.objects
            .store()
            .delete(&session_key(&digest(cookie)))
            .await?;
    }
    Ok(())
}

/// The principal key of the session stored under `key` (`ses-` and 16 hex digits).
fn session_id(key: &str) -> String {
    format!("ses-{}", &key[SESSION_PREFIX.len()..][..16])
}

/// Ends every session of `user` (a new password, a deleted user) but the one whose
/// principal key is `keep` (the session that changed its own password goes on).
pub(crate) async fn end_all_of(s: &AppState, user: &str, keep: Option<&str>) -> Result<()> {
    for kv in s.objects.store().range_all(SESSION_PREFIX).await? {
        if keep == Some(session_id(&kv.key).as_str()) {
            continue;
        }
        if serde_json::from_slice::<Record>(&kv.value).is_ok_and(|r| r.user == user) {
            s.objects.store().delete(&kv.key).await?;
        }
    }
    Ok(())
}

/// Makes a one-time login link for user `user` (also used by `yunhan up`).
pub async fn mint_link(
    objects: &Objects,
    user: &str,
) -> std::result::Result<LoginLink, StoreError> {
    let code = random_hex();
    let expires_at = now() + LINK_TTL.as_secs();
    let link = Link {
        user: user.to_string(),
        expires_at,
    };
    let body = serde_json::to_vec(&link).expect("a link serialises");
    objects
        .store()
        .put(&login_link_key(&digest(&code)), body)
        .await?;
    Ok(LoginLink {
        login_link: code,
        expires_at: rfc3339(expires_at),
    })
}
