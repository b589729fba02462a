//! Users: each belongs to one project for good; their API keys go with them.
//! `GET /v1/whoami` tells a token's user.

use async_trait::async_trait;
use axum::Json;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use yunhan_model::{ApiError, ApiKey, Project, Role, User};
use yunhan_store::objects::Doc;

use crate::auth::Principal;
use crate::error::Result;
use crate::resource::{delete_current, Deleted, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for User {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        if s.objects.get::<Project>(&doc.spec.project).await?.is_none() {
            return Err(ApiError::invalid_field(
                "spec.project",
                format!("project {:?} does not exist", doc.spec.project),
            )
            .into());
        }
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec.project != new.spec.project {
            return Err(
                ApiError::invalid_field("spec.project", "a user's project cannot change").into(),
            );
        }
        Ok(())
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        // The user's keys go with the user.
        for key in s
            .objects
            .list_all::<ApiKey>(Some(&doc.spec.project))
            .await?
        {
            if key.status.user == doc.metadata.id {
                <ApiKey as Hooks>::delete(s, key).await?;
            }
        }
        delete_current::<Self>(s, doc).await?;
        Ok(Deleted::Now)
    }
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhoAmI {
    pub user: String,
    pub project: String,
    pub role: Role,
}

/// `GET /v1/whoami`.
pub(crate) async fn whoami(p: Principal) -> Json<WhoAmI> {
    Json(WhoAmI {
        user: p.user,
        project: p.project,
        role: p.role,
    })
}
