//! Projects: the unit of ownership and quota. A project goes only once it
//! holds nothing and has no users.

use async_trait::async_trait;
use yunhan_model::{Project, User};
use yunhan_store::objects::{Doc, GLOBAL_SCOPE};

use crate::error::Result;
use crate::resource::{conflict, delete_now, refuse_while_referenced, Deleted, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for Project {
    fn owner(doc: &Doc<Self>) -> Option<&str> {
        Some(&doc.metadata.id)
    }
    fn public(_doc: &Doc<Self>) -> bool {
        false
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        let name = &doc.metadata.name;
        if !doc.status.usage.is_zero() {
            return Err(conflict(format!(
                "project {name:?} still holds resources ({:?}); delete them first",
                doc.status.usage
            )));
        }
        refuse_while_referenced::<User>(
            s,
            Some(GLOBAL_SCOPE),
            |u| u.spec.project == doc.metadata.id,
            |u| {
                format!(
                    "project {name:?} still has users (e.g. {:?}); delete them first",
                    u.metadata.name
                )
            },
        )
        .await?;
        delete_now::<Self>(s, doc).await
    }
}
