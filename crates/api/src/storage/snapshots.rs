//! Snapshots of a volume: taken of an Available or InUse volume, kept until
//! deleted (a volume goes only once its snapshots have), and not deleted
//! while their volume is being restored from them.

use async_trait::async_trait;
use yunhan_model::{check_snapshottable, restoring_from, ApiError, Snapshot, Volume, POLICY_LABEL};
use yunhan_store::objects::Doc;

use crate::auth::Principal;
use crate::error::Result;
use crate::lookup::resolve;
use crate::resource::{conflict, delete_or_mark, project_of, refuse_change, Deleted, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for Snapshot {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        doc.status = Default::default();
        let project = project_of(doc).to_string();
        let vol = resolve::<Volume>(s, &project, "spec.volume", &doc.spec.volume).await?;
        check_snapshottable(&doc.spec.volume, &vol)?;
        refuse_policy_label(doc)?;
        doc.spec.volume = vol.metadata.id;
        Ok(())
    }

    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        refuse_change(
            old.spec.volume != new.spec.volume,
            "a snapshot's volume cannot change",
        )?;
        let label = |d: &Doc<Self>| d.metadata.labels.get(POLICY_LABEL).cloned();
        refuse_change(
            label(old) != label(new),
            "the snapshot-policy label is the policy's to set",
        )
    }

    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        let vol = s.objects.get::<Volume>(&doc.spec.volume).await?;
        let restoring = (vol.as_ref()).is_some_and(|v| restoring_from(v, &doc.metadata.id));
        if restoring {
            return Err(conflict(format!(
                "volume {} is being restored from snapshot {:?}; wait for it",
                doc.spec.volume, doc.metadata.name
            )));
        }
        let hosted = vol.and_then(|v| v.status.host).is_some();
        delete_or_mark(s, doc, hosted).await
    }
}

/// Only a snapshot policy marks its snapshots (it prunes what it marked): users may not.
fn refuse_policy_label(doc: &Doc<Snapshot>) -> Result<()> {
    match doc.metadata.labels.contains_key(POLICY_LABEL) {
        true => Err(ApiError::invalid_field(
            "metadata.labels",
            format!("the label {POLICY_LABEL:?} is set only by snapshot policies"),
        )
        .into()),
        false => Ok(()),
    }
}
