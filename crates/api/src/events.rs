//! The audit trail (model: `model/src/event.rs`; store: `store/src/events.rs`): the
//! [`audit`] middleware records every write of the versioned API once it is answered —
//! the caller, their project, what (`write_of`: action, kind, target) and the status — and
//! `GET /v1/events` ([`list`]) reads them back: a member their own project's, an admin
//! every scope (or one project's with `?project=`). Unauthenticated requests are no one's
//! event and are not recorded. Recording is best effort: a store error is logged and the
//! answer goes out unchanged.

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

async fn record(s: Shared, req: Request, next: Next, request_id: &str) -> Response {
    let write = write_of(req.method().as_str(), req.uri().path());
    let token = (req.headers().get(header::AUTHORIZATION))
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let client = (req.extensions().get::<ConnectInfo<std::net::SocketAddr>>()).map(|c| c.0.ip());
    let resp = next.run(req).await;
    let (Some((action, kind, target)), Some(token)) = (write, token) else {
        return resp;
    };
    if resp.status() == StatusCode::UNAUTHORIZED {
        return resp;
    }
    // The handler authenticated this token a moment ago: this is the cache's answer.
    if let Ok(p) = s.auth.authenticate(&token, client).await {
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
