//! Events, the audit trail (issue #17): every API write — who, in which project, what, and
//! the outcome — and what the platform did on its own (an HA failover), kept in the store for [`EVENT_RETENTION_SECS`] and read with `GET
//! /v1/events` (`yunhan events`). Members read their own project's; admins everything.
//! What is recorded is decided here ([`write_of`], pure); the API records
//! (`api/src/events.rs`), the store keeps them (`store/src/events.rs`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How long events are kept (7 days).
pub const EVENT_RETENTION_SECS: u64 = 7 * 24 * 3600;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEvent {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// The user who asked (their id).
    pub actor: String,
    /// The actor's project (none for an admin's writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// `create`, `update`, `delete`, or the sub-resource written (`data`, `keys`, …).
    pub action: String,
    /// The kind of resource, as its path names it (`vpcs`, `instances`, …).
    pub kind: String,
    /// The id or name in the path (empty for a create: the new object's name is in
    /// `message` when the request was refused).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// The HTTP status the request got (0 for the platform's own actions).
    pub outcome: u16,
    /// What the platform did, in words (its own actions).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The request's id (API writes): the `X-Request-Id` the API answered with (the
    /// caller's own, when it sent a sane one), so a client's log and the trail meet.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
}

/// Whether `id` may be taken from a caller as a request id: 1–64 letters, digits, `-`,
/// `_` or `.` (anything else is replaced by one the API makes).
pub fn sane_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The actor of what the platform does on its own (HA failover, …).
pub const PLATFORM_ACTOR: &str = "platform";

/// `GET /v1/events`: newest last.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct AuditEventList {
    pub items: Vec<AuditEvent>,
}

/// A write's action, kind and target, from its method and path (`/v1/<kind>[/<target>[/…]]`);
/// `None` for what is not a write of the versioned API (reads, `/healthz`, …).
pub fn write_of(method: &str, path: &str) -> Option<(String, String, String)> {
    let rest = path.strip_prefix("/v1/")?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let kind = parts.first()?.to_string();
    let target = parts.get(1).map_or(String::new(), |t| t.to_string());
    let sub = parts.get(2..).map(|s| s.join("/")).unwrap_or_default();
    let action = match (method, sub.is_empty()) {
        ("POST", true) if target.is_empty() => "create".to_string(),
        ("PUT", true) | ("PATCH", true) => "update".to_string(),
        ("DELETE", true) => "delete".to_string(),
        ("POST" | "PUT" | "PATCH" | "DELETE", false) => sub,
        _ => return None,
    };
    Some((action, kind, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_callers_are_short_and_plain() {
        assert!(sane_request_id("req-1234_abc.9"));
        for bad in ["", "a b", "x\ny", "é", &"x".repeat(65)] {
            assert!(!sane_request_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn writes_are_told_from_reads() {
        let w = |m, p| write_of(m, p).map(|(a, k, t)| format!("{a} {k} {t}"));
        for (m, p, want) in [
            ("POST", "/v1/vpcs", "create vpcs "),
            ("PUT", "/v1/vpcs/net1", "update vpcs net1"),
            ("DELETE", "/v1/vpcs/net1", "delete vpcs net1"),
            ("PUT", "/v1/images/tiny/data", "data images tiny"),
            ("POST", "/v1/users/alice/keys", "keys users alice"),
        ] {
            assert_eq!(w(m, p).as_deref(), Some(want), "{m} {p}");
        }
        for (m, p) in [
            ("GET", "/v1/vpcs"),
            ("POST", "/healthz"),
            ("POST", "/v1/"),
            ("POST", "/v1/vpcs/net1"),
        ] {
            assert_eq!(w(m, p), None, "{m} {p}");
        }
    }
}
