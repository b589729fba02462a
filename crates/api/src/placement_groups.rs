//! Placement groups: instances name one at creation; a group goes only once
//! it has no members.

use async_trait::async_trait;
use yunhan_model::{ApiError, Instance, PlacementGroup};
use yunhan_store::objects::Doc;

use crate::error::Result;
use crate::lookup::lookup;
use crate::resource::{delete_now, refuse_while_referenced, Deleted, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for PlacementGroup {
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        refuse_while_referenced::<Instance>(
            s,
            doc.metadata.project.as_deref(),
            |i| i.spec.placement_group.as_deref() == Some(doc.metadata.id.as_str()),
            |m| {
                format!(
                    "placement group {:?} still has instance {:?}; delete it first",
                    doc.metadata.name, m.metadata.name
                )
            },
        )
        .await?;
        delete_now::<Self>(s, doc).await
    }
}

/// The id of placement group `id_or_name` of `project`. Another project's group
/// is refused exactly like one that does not exist (nothing tells it is there).
pub(crate) async fn placement_group(
    s: &AppState,
    project: &str,
    id_or_name: &str,
) -> Result<String> {
    lookup::<PlacementGroup>(s, project, id_or_name)
        .await?
        .filter(|g| g.metadata.project.as_deref() == Some(project))
        .map(|g| g.metadata.id)
        .ok_or_else(|| {
            ApiError::invalid_field(
                "spec.placement_group",
                format!(
                    "placement group {id_or_name:?} does not exist; \
                     'yunhan placement-group list' shows the placement groups"
                ),
            )
            .into()
        })
}
