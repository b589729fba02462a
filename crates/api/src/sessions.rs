//! Console logins (docs/console.md). A person logs in with a username and password, an
//! API key or a one-time login link (`POST /v1/sessions`) and gets the session cookie:
//! `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page sends it).
//! `GET /v1/session` tells the session and its CSRF token; `DELETE /v1/session` ends it;
//! `POST /v1/sessions/links` makes a one-time login link. Checking the cookie on every
//! request is `session_store.rs`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use yunhan_model::{ApiError, ErrorCode, Project, Role, User};
use yunhan_store::objects::Doc;

use crate::auth::Principal;
use crate::error::Result;
use crate::extract::JsonBody;
use crate::session_store::{self, LoginLink, Record};
use crate::{AppState, Shared};

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

pub(crate) fn routes(r: Router<Shared>) -> Router<Shared> {
    r.route("/v1/sessions", post(login))
        .route("/v1/session", get(current).delete(logout))
        .route("/v1/sessions/links", post(create_link))
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
        } => session_store::use_link(s, &code).await,
        _ => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "log in with either username and password, or token (an API key), or login_link",
        )
        .into()),
    }
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
        expires_at: session_store::rfc3339(rec.expires_at),
    })
}

fn set_cookie(value: &str, max_age: u64) -> HeaderValue {
    let name = session_store::COOKIE;
    let c = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}");
    HeaderValue::from_str(&c).expect("hex and ASCII make a valid header")
}

/// `POST /v1/sessions`.
async fn login(
    State(s): State<Shared>,
    ci: Option<Extension<ConnectInfo<SocketAddr>>>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Response> {
    let user = prove(&s, req, client_ip(&ci)).await?;
    let ttl = s.config.session_ttl.as_secs().max(1);
    let (secret, rec) = session_store::open(&s, &user, ttl).await?;
    let (p, doc) = session_store::principal_of(&s, &user, String::new()).await?;
    let info = info(&s, &p, &doc, &rec).await?;
    let mut resp = (StatusCode::CREATED, Json(info)).into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&secret, ttl));
    Ok(resp)
}

/// `GET /v1/session`.
async fn current(State(s): State<Shared>, headers: HeaderMap) -> Result<Json<SessionInfo>> {
    let cookie = session_store::cookie(&headers).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "there is no console session; log in",
        )
    })?;
    let (_, rec) = session_store::record(&s, cookie).await?;
    let (p, doc) = session_store::principal_of(&s, &rec.user, String::new()).await?;
    Ok(Json(info(&s, &p, &doc, &rec).await?))
}

/// `DELETE /v1/session`: the caller (authenticated by the cookie, with its CSRF token)
/// logs out; the cookie is cleared.
async fn logout(State(s): State<Shared>, _p: Principal, headers: HeaderMap) -> Result<Response> {
    if let Some(c) = session_store::cookie(&headers) {
        session_store::end(&s, c).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, set_cookie("", 0));
    Ok(resp)
}

/// `POST /v1/sessions/links`.
async fn create_link(
    State(s): State<Shared>,
    p: Principal,
) -> Result<(StatusCode, Json<LoginLink>)> {
    Ok((
        StatusCode::CREATED,
        Json(session_store::mint_link(&s.objects, &p.user).await?),
    ))
}
