//! Users: each belongs to one project for good; their API and S3 keys go with them.
//! `GET /v1/whoami` tells a token's user.

use async_trait::async_trait;
use axum::Json;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use yunhan_model::{ApiError, ApiKey, Project, Role, S3Key, User};
use yunhan_store::objects::Doc;

use crate::auth::Principal;
use crate::error::Result;
use crate::keys::UserOwned;
use crate::resource::{delete_now, Deleted, Hooks};
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
        // The user's keys (API and S3) go with the user.
        delete_keys_of::<ApiKey>(s, &doc).await?;
        delete_keys_of::<S3Key>(s, &doc).await?;
        // So do their password and console sessions.
        crate::passwords::forget(s, &doc.metadata.id).await?;
        crate::session_store::end_all_of(s, &doc.metadata.id, None).await?;
        delete_now::<Self>(s, doc).await
    }
}

async fn delete_keys_of<K: UserOwned>(s: &AppState, user: &Doc<User>) -> Result<()> {
    for key in s.objects.list_all::<K>(Some(&user.spec.project)).await? {
        if K::user_of(&key) == user.metadata.id {
            <K as Hooks>::delete(s, key).await?;
        }
    }
    Ok(())
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
