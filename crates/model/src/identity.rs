//! Tenancy and identity: projects (tenants), users and API keys.

use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::kind_consts;
use crate::{ApiError, Kind, Quota, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Platform operator: every project, hosts, flavors, users.
    Admin,
    /// A tenant user: only their own project's objects.
    Member,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub quota: Quota,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectStatus {
    /// Resources held by the project; updated atomically with every create and delete.
    pub usage: Usage,
}

pub struct Project;
impl Kind for Project {
    kind_consts!("Project", "projects", "prj", Global, admin_write: true);
    type Spec = ProjectSpec;
    type Status = ProjectStatus;
    fn validate(spec: &ProjectSpec) -> Result<(), ApiError> {
        if spec.description.chars().count() > 1024 {
            return Err(ApiError::invalid_field(
                "spec.description",
                "description is at most 1024 characters",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// The project the user works in (their home project).
    pub project: String,
    pub role: Role,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserStatus {}

pub struct User;
impl Kind for User {
    kind_consts!("User", "users", "usr", Global, admin_write: true);
    const ADMIN_READ: bool = true;
    type Spec = UserSpec;
    type Status = UserStatus;
    fn validate(spec: &UserSpec) -> Result<(), ApiError> {
        if spec.project.is_empty() {
            return Err(ApiError::invalid_field(
                "spec.project",
                "a user needs a project",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySpec {
    /// The user this key authenticates as (default: the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// When the key stops working (RFC 3339, e.g. `2030-01-31T00:00:00Z`); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

fn parse_rfc3339(stamp: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()
}

impl ApiKeySpec {
    /// When the key expires (None: never). An unreadable expiry counts as
    /// already passed, so a damaged document fails closed.
    pub fn expires(&self) -> Option<SystemTime> {
        let stamp = self.expires_at.as_deref()?;
        Some(parse_rfc3339(stamp).map_or(SystemTime::UNIX_EPOCH, SystemTime::from))
    }

    /// Has the key expired?
    pub fn expired(&self) -> bool {
        self.expires().is_some_and(|t| t <= SystemTime::now())
    }

    /// An `expires_at` value `ttl` from now (RFC 3339 UTC, whole seconds).
    pub fn expiry_in(ttl: Duration) -> Option<String> {
        let ttl = time::Duration::try_from(ttl).ok()?;
        let t = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()?
            .checked_add(ttl)?;
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ApiKeyStatus {
    /// The first characters of the token, to recognise it in listings.
    pub prefix: String,
    /// The role the key carries (that of its user at creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The user the key authenticates as.
    pub user: String,
}

pub struct ApiKey;
impl Kind for ApiKey {
    kind_consts!("ApiKey", "api-keys", "key", Project, admin_write: false);
    type Spec = ApiKeySpec;
    type Status = ApiKeyStatus;
    fn validate(spec: &ApiKeySpec) -> Result<(), ApiError> {
        if let Some(stamp) = spec.expires_at.as_deref() {
            if parse_rfc3339(stamp).is_none() {
                return Err(ApiError::invalid_field(
                    "spec.expires_at",
                    format!("{stamp:?} is not an RFC 3339 time (e.g. 2030-01-31T00:00:00Z)"),
                ));
            }
        }
        Ok(())
    }
}

impl ApiKey {
    /// How many API keys one user may hold (each key has its own rate limit,
    /// so unlimited keys would mean an unlimited rate).
    pub const MAX_PER_USER: usize = 20;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(expires_at: Option<&str>) -> ApiKeySpec {
        ApiKeySpec {
            user: None,
            expires_at: expires_at.map(str::to_string),
        }
    }

    #[test]
    fn expiry_is_optional_and_checked() {
        assert!(!spec(None).expired());
        assert!(spec(Some("2000-01-01T00:00:00Z")).expired());
        assert!(!spec(Some("2999-01-01T00:00:00+08:00")).expired());
        assert!(spec(Some("garbage")).expired(), "unreadable fails closed");
        assert!(ApiKey::validate(&spec(Some("garbage"))).is_err());
        assert!(ApiKey::validate(&spec(Some("2030-01-31T00:00:00Z"))).is_ok());
    }

    #[test]
    fn expiry_in_is_a_valid_future_stamp() {
        let stamp = ApiKeySpec::expiry_in(Duration::from_secs(30 * 86400)).unwrap();
        let s = spec(Some(&stamp));
        assert!(ApiKey::validate(&s).is_ok());
        let left = s
            .expires()
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(left > Duration::from_secs(29 * 86400), "{stamp}");
        assert_eq!(ApiKeySpec::expiry_in(Duration::MAX), None);
    }
}
