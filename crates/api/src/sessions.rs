//! Console sessions. A person logs in with a username and password, an API key or a
//! one-time login link (`POST /v1/sessions`) and gets a session cookie: random 256 bits,
//! `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends it).
//! The store keeps only the cookie's SHA-256, with the user, an absolute expiry and a
//! CSRF token. A request authenticated by the cookie is refused when its `Origin` is
//! another site, and, unless it is a GET/HEAD, when it lacks `X-CSRF-Token` (which a
//! cross-site form cannot send). `GET /v1/session` tells the session; `DELETE
//! /v1/session` ends it; `POST /v1/sessions/links` makes a one-time login link.
//! docs/console.md has the design.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use rand::RngCore;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use yunhan_model::{ApiError, ErrorCode, Project, Role, User};
use yunhan_store::objects::{login_link_key, session_key, Doc, SESSION_PREFIX};
use yunhan_store::{Compare, Op, StoreExt, Txn};

use crate::auth::Principal;
use crate::error::{HttpError, Result};
use crate::extract::JsonBody;
use crate::{AppState, Shared};

/// The session cookie's name.
pub const COOKIE: &str = "yunhan_session";
/// The header a cookie-authenticated change must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a login link stays usable.
const LINK_TTL: Duration = Duration::from_secs(15 * 60);

/// A session as stored (under the cookie's digest).
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    user: String,
    csrf: String,
    /// Unix seconds.
    expires_at: u64,
}

/// A login link as stored (under its code's digest).
#[derive(Debug, Serialize, Deserialize)]
struct Link {
    user: String,
    expires_at: u64,
}

/// `POST /v1/sessions`: one way to prove who you are.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// With `password`: a user's name.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// An API key's token (`yh_…`).
    #[serde(default)]
    pub token: Option<String>,
    /// The code of a one-time login link (`yunhan console` and `yunhan up` print them).
    #[serde(default)]
    pub login_link: Option<String>,
}

/// The session's user and what the console needs to act for them.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionInfo {
    pub user: String,
    pub username: String,
    pub project: String,
    pub project_name: String,
    pub role: Role,
    /// Send as `X-CSRF-Token` with every request that changes something.
    pub csrf_token: String,
    /// RFC 3339; the session ends then, whatever happens.
    pub expires_at: String,
}

/// `POST /v1/sessions/links`: a one-time login link for the caller.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginLink {
    /// Open `<endpoint>/console/#login=<login_link>` within 15 minutes, once.
    pub login_link: String,
    pub expires_at: String,
}

pub(crate) fn routes(r: Router<Shared>) -> Router<Shared> {
    r.route("/v1/sessions", post(login))
        .route("/v1/session", get(current).delete(logout))
        .route("/v1/sessions/links", post(create_link))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn rfc3339(unix: u64) -> String {
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

async fn record(s: &AppState, cookie: &str) -> Result<(String, Record)> {
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

async fn principal_of(s: &AppState, user_id: &str, key: String) -> Result<(Principal, Doc<User>)> {
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
    let id = format!("ses-{}", &key[SESSION_PREFIX.len()..][..16]);
    Ok(principal_of(s, &rec.user, id).await?.0)
}

fn client_ip(ci: &Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<IpAddr> {
    ci.as_ref().map(|c| c.0 .0.ip())
}

/// The user a login request proves.
async fn prove(s: &AppState, req: LoginRequest, client: Option<IpAddr>) -> Result<String> {
    match req {
        LoginRequest {
            username: Some(u),
            password: Some(pw),
            token: None,
            login_link: None,
        } => Ok(crate::passwords::check(s, &u, &pw, client)
            .await?
            .metadata
            .id),
        LoginRequest {
            token: Some(t),
            username: None,
            password: None,
            login_link: None,
        } => Ok(s.auth.authenticate(&t, client).await?.user),
        LoginRequest {
            login_link: Some(code),
            username: None,
            password: None,
            token: None,
        } => use_link(s, &code).await,
        _ => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "log in with either username and password, or token (an API key), or login_link",
        )
        .into()),
    }
}

/// A login link's user, once: the link is deleted in the same transaction that reads it.
async fn use_link(s: &AppState, code: &str) -> Result<String> {
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

/// Ends every session of `user` (a new password, a deleted user).
pub(crate) async fn end_all_of(s: &AppState, user: &str) -> Result<()> {
    for kv in s.objects.store().range_all(SESSION_PREFIX).await? {
        if serde_json::from_slice::<Record>(&kv.value).is_ok_and(|r| r.user == user) {
            s.objects.store().delete(&kv.key).await?;
        }
    }
    Ok(())
}

async fn info(s: &AppState, p: &Principal, user: &Doc<User>, rec: &Record) -> Result<SessionInfo> {
    let project = s.objects.get::<Project>(&p.project).await?;
    Ok(SessionInfo {
        user: p.user.clone(),
        username: user.metadata.name.clone(),
        project: p.project.clone(),
        project_name: project.map(|d| d.metadata.name).unwrap_or_default(),
        role: p.role,
        csrf_token: rec.csrf.clone(),
        expires_at: rfc3339(rec.expires_at),
    })
}

fn set_cookie(value: &str, max_age: u64) -> HeaderValue {
    let c = format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}");
    HeaderValue::from_str(&c).expect("hex and ASCII make a valid header")
}

/// `POST /v1/sessions`.
async fn login(
    State(s): State<Shared>,
    ci: Option<Extension<ConnectInfo<SocketAddr>>>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response> {
    let user = prove(&s, req, client_ip(&ci)).await?;
    sweep(&s).await?;
    let secret = random_hex();
    let ttl = s.session_ttl.as_secs().max(1);
    let rec = Record {
        user: user.clone(),
        csrf: random_hex(),
        expires_at: now() + ttl,
    };
    let key = session_key(&digest(&secret));
    let body = serde_json::to_vec(&rec).expect("a session serialises");
    s.objects.store().put(&key, body).await?;
    let (p, doc) = principal_of(&s, &user, String::new()).await?;
    let info = info(&s, &p, &doc, &rec).await?;
    let mut resp = (StatusCode::CREATED, Json(info)).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&secret, ttl));
    Ok(resp)
}

/// `GET /v1/session`.
async fn current(State(s): State<Shared>, headers: HeaderMap) -> Result<Json<SessionInfo>> {
    let cookie =
        cookie(&headers).ok_or_else(|| unauthenticated("there is no console session; log in"))?;
    let (_, rec) = record(&s, cookie).await?;
    let (p, doc) = principal_of(&s, &rec.user, String::new()).await?;
    Ok(Json(info(&s, &p, &doc, &rec).await?))
}

/// `DELETE /v1/session`: the caller (authenticated by the cookie, with its CSRF token)
/// logs out; the cookie is cleared.
async fn logout(State(s): State<Shared>, _p: Principal, headers: HeaderMap) -> Result<Response> {
    if let Some(c) = cookie(&headers).filter(|c| is_secret(c)) {
        s.objects.store().delete(&session_key(&digest(c))).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0));
    Ok(resp)
}

/// Makes a one-time login link for user `user` (also used by `yunhan up`).
pub async fn mint_link(
    objects: &yunhan_store::objects::Objects,
    user: &str,
) -> std::result::Result<LoginLink, yunhan_store::StoreError> {
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

/// `POST /v1/sessions/links`.
async fn create_link(
    State(s): State<Shared>,
    p: Principal,
) -> Result<(StatusCode, Json<LoginLink>)> {
    Ok((
        StatusCode::CREATED,
        Json(mint_link(&s.objects, &p.user).await?),
    ))
}
