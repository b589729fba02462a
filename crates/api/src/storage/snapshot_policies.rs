//! Snapshot policies (model: `model/src/snapshot_policy.rs`; the controller that takes
//! and prunes the snapshots: `controller/src/snapshot_policy.rs`; docs/snapshot-policies.md).
//! The API resolves the volume or instance in the policy's own project (another
//! project's answers 404 `not_found`) and keeps it fixed. No quota: the snapshots the
//! policy takes are what costs, and those are metered as every snapshot is.

use async_trait::async_trait;
use yunhan_model::{ApiError, Instance, SnapshotPolicy, Volume, MAX_POLICY_NAME};
use yunhan_store::objects::Doc;

use crate::auth::Principal;
use crate::error::Result;
use crate::lookup::resolve;
use crate::resource::{project_of, refuse_change, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for SnapshotPolicy {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let name = &doc.metadata.name;
        if name.len() > MAX_POLICY_NAME {
            return Err(ApiError::invalid_field(
                "metadata.name",
                format!("a policy's name is at most {MAX_POLICY_NAME} characters (its snapshots are named after it)"),
            )
            .into());
        }
        doc.status = Default::default();
        resolve_target(s, doc).await
    }

    async fn resolve_update(s: &AppState, old: &Doc<Self>, new: &mut Doc<Self>) -> Result<()> {
        resolve_target(s, new).await?;
        refuse_change(
            (old.spec.volume != new.spec.volume) || (old.spec.instance != new.spec.instance),
            "a snapshot policy's volume or instance cannot change",
        )
    }
}

/// The volume or instance (name or id) as its id, in the policy's project.
async fn resolve_target(s: &AppState, doc: &mut Doc<SnapshotPolicy>) -> Result<()> {
    let project = project_of(doc).to_string();
    if let Some(v) = &doc.spec.volume {
        let vol = resolve::<Volume>(s, &project, "spec.volume", v).await?;
        doc.spec.volume = Some(vol.metadata.id);
    }
    if let Some(i) = &doc.spec.instance {
        let ins = resolve::<Instance>(s, &project, "spec.instance", i).await?;
        doc.spec.instance = Some(ins.metadata.id);
    }
    Ok(())
}
