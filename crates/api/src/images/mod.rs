//! Images: disk images (or a kernel and initrd) instances and volumes start
//! from. The document is created first (Pending); its data come with
//! `PUT /v1/images/{id}/data` ([`upload`]). Admins may publish images to
//! every project; [`server_paths`] hides the stored files from everyone else.

pub(crate) mod server_paths;
pub(crate) mod upload;

use async_trait::async_trait;
use yunhan_model::{ApiError, ErrorCode, Image};
use yunhan_store::objects::Doc;

use crate::auth::Principal;
use crate::error::Result;
use crate::images::upload::remove_files;
use crate::lookup::lookup;
use crate::resource::{conflict, delete_current, Deleted, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for Image {
    const HAS_PUBLIC: bool = true;
    async fn prepare_create(_s: &AppState, p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        if doc.spec.public && !p.is_admin() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only platform admins may publish public images",
            )
            .into());
        }
        doc.status.phase = "Pending".into();
        doc.status.message = format!(
            "waiting for its data: upload it with PUT /v1/images/{}/data \
             ('yunhan image create NAME --file DISK' does both steps)",
            doc.metadata.id
        );
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec.kernel_cmdline != new.spec.kernel_cmdline {
            return Err(conflict(format!(
                "image {:?}: the kernel command line is part of what boots and cannot change; create a new image",
                old.metadata.name
            )));
        }
        Ok(())
    }
    async fn prepare_update(
        _s: &AppState,
        p: &Principal,
        old: &Doc<Self>,
        new: &mut Doc<Self>,
    ) -> Result<()> {
        if old.spec.public != new.spec.public && !p.is_admin() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only platform admins may publish images or withdraw them (spec.public)",
            )
            .into());
        }
        Ok(())
    }
    fn public(doc: &Doc<Self>) -> bool {
        doc.spec.public
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        delete_current::<Self>(s, doc.clone()).await?;
        remove_files(&s.config.image_dir, &doc.metadata.id).await;
        Ok(Deleted::Now)
    }
}

/// The image `id_or_name` means to `project`: by id, its own or a public
/// one; by name, its own first, else the public image of that name. Only
/// platform admins publish images, so another tenant cannot plant a name.
pub(crate) async fn resolve_image(
    s: &AppState,
    project: &str,
    id_or_name: &str,
) -> Result<Option<Doc<Image>>> {
    let image = match lookup::<Image>(s, project, id_or_name).await? {
        Some(i) => Some(i),
        None => find_public_image(s, id_or_name).await?,
    };
    Ok(image.filter(|i| i.spec.public || i.metadata.project.as_deref() == Some(project)))
}

/// The public image called `name`; two public images of one name (in
/// different projects) are ambiguous and refused with their ids.
async fn find_public_image(s: &AppState, name: &str) -> Result<Option<Doc<Image>>> {
    let mut found: Vec<Doc<Image>> = s
        .objects
        .list_all::<Image>(None)
        .await?
        .into_iter()
        .filter(|i| i.spec.public && i.metadata.name == name)
        .collect();
    if found.len() > 1 {
        let ids: Vec<&str> = found.iter().map(|i| i.metadata.id.as_str()).collect();
        return Err(conflict(format!(
            "{} public images are called {name:?} ({}); name one by its id",
            found.len(),
            ids.join(", ")
        )));
    }
    Ok(found.pop())
}
