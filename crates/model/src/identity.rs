//! Tenancy and identity: projects (tenants), users and API keys.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{ApiError, Kind, Quota, Scope, Usage};

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
#[serde(deny_unknown_fields)]
pub struct ProjectStatus {
    /// Resources held by the project; updated atomically with every create and delete.
    #[serde(default)]
    pub usage: Usage,
}

pub struct Project;
impl Kind for Project {
    const KIND: &'static str = "Project";
    const PLURAL: &'static str = "projects";
    const ID_PREFIX: &'static str = "prj";
    const SCOPE: Scope = Scope::Global;
    const ADMIN_WRITE: bool = true;
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
    const KIND: &'static str = "User";
    const PLURAL: &'static str = "users";
    const ID_PREFIX: &'static str = "usr";
    const SCOPE: Scope = Scope::Global;
    const ADMIN_WRITE: bool = true;
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
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyStatus {
    /// The first characters of the token, to recognise it in listings.
    #[serde(default)]
    pub prefix: String,
    /// The role the key carries (that of its user at creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The user the key authenticates as.
    #[serde(default)]
    pub user: String,
}

pub struct ApiKey;
impl Kind for ApiKey {
    const KIND: &'static str = "ApiKey";
    const PLURAL: &'static str = "api-keys";
    const ID_PREFIX: &'static str = "key";
    const SCOPE: Scope = Scope::Project;
    const ADMIN_WRITE: bool = false;
    type Spec = ApiKeySpec;
    type Status = ApiKeyStatus;
    fn validate(_spec: &ApiKeySpec) -> Result<(), ApiError> {
        Ok(())
    }
}
