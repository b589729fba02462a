//! The audit trail (model: `model/src/event.rs`; store: `store/src/events.rs`): the
//! [`audit`] middleware records every write of the versioned API once it is answered —
//! the caller (by API key, or the web console's session), their project, what (`write_of`:
//! action, kind, target; a create's target is the new object's id, from its `Location`)
//! and the status — and `GET /v1/events` ([`list`]) reads them back: a member their own
//! project's, an admin every scope (or one project's with `?project=`). Unauthenticated
//! requests are no one's event and are not recorded. Recording is best effort: a store
//! error is logged and the answer goes out unchanged.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use yunhan_model::{sane_request_id, write_of, ApiError, AuditEvent, AuditEventList};
use yunhan_store::events::PLATFORM_SCOPE;

use crate::auth::Principal;
use crate::error::Result;
use crate::extract::QueryParams;
use crate::lookup::resolve_project;
use crate::Shared;

/// At most this many events per answer (the newest).
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 500;

/// Gives the request an id (`X-Request-Id`: the caller's, when sane, else a new one) that
/// the answer carries, and records the request as an event when it is a write of a known
/// caller.
pub(crate) async fn audit(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let request_id = request_id(&req);
    let mut resp = record(s, req, next, &request_id).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

const REQUEST_ID: &str = "x-request-id";

/// The caller's `X-Request-Id` when it is sane, else 16 new hex digits.
fn request_id(req: &Request) -> String {
    let given = (req.headers().get(REQUEST_ID)).and_then(|v| v.to_str().ok());
    match given {
        Some(id) if sane_request_id(id) => id.to_string(),
        _ => format!("{:016x}", rand::random::<u64>()),
    }
}

/// Who sent a request, as the handlers' authentication reads it: its bearer token, else
/// (no `Authorization` header at all) its session cookie.
enum Caller {
    Token(String),
    Session(String),
}

fn caller_of(req: &Request) -> Option<Caller> {
    let Some(auth) = req.headers().get(header::AUTHORIZATION) else {
        return crate::session_store::cookie(req.headers()).map(|c| Caller::Session(c.into()));
    };
    let (scheme, token) = auth.to_str().ok()?.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| Caller::Token(token.trim().to_string()))
}

/// The caller's principal; the handler authenticated it a moment ago (a token: this is
/// the cache's answer).
async fn principal(s: &Shared, caller: Caller, client: Option<IpAddr>) -> Option<Principal> {
    match caller {
        Caller::Token(t) => s.auth.authenticate(&t, client).await.ok(),
        Caller::Session(c) => crate::session_store::principal_of_cookie(s, &c).await.ok(),
    }
}

/// What a write acted on: its path's target, or a create's new object (its `Location`).
fn target_of(target: String, resp: &Response) -> String {
    let location = resp.headers().get(header::LOCATION);
    match location.and_then(|l| l.to_str().ok()) {
        Some(l) if target.is_empty() && resp.status().is_success() => {
            l.rsplit('/').next().unwrap_or_default().to_string()
        }
        _ => target,
    }
}

async fn record(s: Shared, req: Request, next: Next, request_id: &str) -> Response {
    let write = write_of(req.method().as_str(), req.uri().path());
    let caller = caller_of(&req);
    let client = (req.extensions().get::<ConnectInfo<std::net::SocketAddr>>()).map(|c| c.0.ip());
    let resp = next.run(req).await;
    let (Some((action, kind, target)), Some(caller)) = (write, caller) else {
        return resp;
    };
    if resp.status() == StatusCode::UNAUTHORIZED {
        return resp;
    }
    if let Some(p) = principal(&s, caller, client).await {
        let target = target_of(target, &resp);
        let event = AuditEvent {
            time: yunhan_model::now(),
            actor: p.user.clone(),
            project: (!p.is_admin()).then(|| p.project.clone()),
            action,
            kind,
            target,
            outcome: resp.status().as_u16(),
            message: String::new(),
            request_id: request_id.to_string(),
        };
        let scope = event.project.as_deref().unwrap_or(PLATFORM_SCOPE);
        if let Err(e) = s.events.record(scope, &event).await {
            tracing::warn!(error = %e, "cannot record an event");
        }
    }
    resp
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventQuery {
    since: Option<String>,
    kind: Option<String>,
    project: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/events`: the caller's events since `since` (default 1 h), oldest first.
pub(crate) async fn list(
    State(s): State<Shared>,
    p: Principal,
    QueryParams(q): QueryParams<EventQuery>,
) -> Result<Json<AuditEventList>> {
    let since = parse_since(q.since.as_deref().unwrap_or("1h"))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        let why = format!("limit is 1–{MAX_LIMIT}");
        return Err(ApiError::invalid_field("limit", why).into());
    }
    let scopes = match (p.is_admin(), q.project.as_deref()) {
        (true, None) => None,
        (_, named) => Some(vec![resolve_project(&s, &p, named).await?]),
    };
    let from = SystemTime::now()
        .checked_sub(since)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut items = s.events.list(scopes.as_deref(), from, MAX_LIMIT).await?;
    if let Some(kind) = &q.kind {
        items.retain(|e| &e.kind == kind);
    }
    let skip = items.len().saturating_sub(limit);
    Ok(Json(AuditEventList {
        items: items.into_iter().skip(skip).collect(),
    }))
}

/// `30s`, `10m`, `2h`, `1d` or plain seconds.
pub(crate) fn parse_since(s: &str) -> std::result::Result<Duration, ApiError> {
    let bad = || {
        ApiError::invalid_field(
            "since",
            format!("{s:?} is not a duration like 30s, 10m, 2h, 1d or seconds"),
        )
    };
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(bad()),
    };
    n.checked_mul(per).map(Duration::from_secs).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_units() {
        assert_eq!(parse_since("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_since("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_since("1d").unwrap(), Duration::from_secs(86400));
        for bad in ["", "m", "10w", "-5s", "99999999999999999999d"] {
            assert!(parse_since(bad).is_err(), "{bad}");
        }
    }
}
