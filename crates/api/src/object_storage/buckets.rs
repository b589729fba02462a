//! Buckets: S3's naming rules, quotas that may not fall below what a bucket
//! holds, and `DELETE ?force=true` for a bucket with objects (without it, 409).

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use yunhan_model::{
    bucket_name_error, bucket_public_url, ApiError, Bucket, BucketPhase, BucketStatus,
};
use yunhan_store::objects::Doc;

use crate::auth::Principal;
use crate::crud::deleted;
use crate::error::Result;
use crate::extract::QueryParams;
use crate::lookup::find_writable;
use crate::resource::{conflict, project_of, Deleted, Hooks};
use crate::{AppState, Shared};

#[async_trait]
impl Hooks for Bucket {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let endpoint = super::endpoint(s)?;
        if let Some(why) = bucket_name_error(&doc.metadata.name) {
            return Err(ApiError::invalid_field("metadata.name", why).into());
        }
        let public = bucket_public_url(endpoint, project_of(doc), &doc.metadata.name);
        doc.status = BucketStatus {
            endpoint: Some(endpoint.to_string()),
            public_url: Some(public),
            ..Default::default()
        };
        Ok(())
    }

    async fn resolve_update(_s: &AppState, old: &Doc<Self>, new: &mut Doc<Self>) -> Result<()> {
        if old.metadata.deleting.is_some() {
            return Err(conflict("the bucket is being deleted"));
        }
        let Some(used) = &old.status.usage else {
            return Ok(());
        };
        let below = |quota: Option<u64>, held: u64| quota.is_some_and(|q| q < held);
        if below(new.spec.quota_bytes, used.bytes) || below(new.spec.quota_objects, used.objects) {
            return Err(conflict(format!(
                "bucket {:?} holds {} bytes in {} objects: a quota cannot be below that; delete objects first",
                old.metadata.name, used.bytes, used.objects
            )));
        }
        Ok(())
    }

    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        mark_deleting(s, doc, false).await
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    /// Admins: resolve names in this project (id or name).
    project: Option<String>,
    /// Delete the bucket's objects too (without it a bucket with objects is a 409).
    #[serde(default)]
    force: bool,
}

/// `DELETE /v1/buckets/{id}[?force=true]`: 202, the controller empties (when forced)
/// and removes the bucket, then the document.
pub(crate) async fn remove(
    State(s): State<Shared>,
    p: Principal,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<DeleteQuery>,
) -> Result<Response> {
    let doc = find_writable::<Bucket>(&s, &p, &id, q.project.as_deref()).await?;
    Ok(deleted(mark_deleting(&s, doc, q.force).await?))
}

async fn mark_deleting(s: &AppState, mut doc: Doc<Bucket>, force: bool) -> Result<Deleted<Bucket>> {
    let held = doc.status.usage.as_ref().map_or(0, |u| u.objects);
    if held > 0 && !force {
        return Err(conflict(format!(
            "bucket {:?} holds {held} objects; delete them first, or delete the bucket with them (yunhan bucket delete --force)",
            doc.metadata.name
        )));
    }
    if doc.metadata.deleting.is_none() || force {
        doc.metadata.deleting.get_or_insert_with(yunhan_model::now);
        doc.status.force_delete |= force;
        doc.status.phase = BucketPhase::Deleting;
        doc.status.message.clear();
        doc = s.objects.update::<Bucket>(&doc).await?;
    }
    Ok(Deleted::Pending(Box::new(doc)))
}
