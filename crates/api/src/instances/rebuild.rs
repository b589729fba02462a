//! Rebuilding a VM: a bump of `spec.rebuild_generation` (with the same image or another
//! Active one the VM's project may use) makes its agent stop it, replace its root disk
//! with a fresh copy of the image and start it again if it is to run. Its id, NICs and
//! addresses, volumes and elastic IPs stay; new `ssh_keys`/`user_data` reach the guest
//! through the NoCloud seed written at every start.

use yunhan_model::{ApiError, Doc, ErrorCode, Instance, InstanceSpec};

use super::check_generation;
use crate::error::Result;
use crate::images::resolve_image;
use crate::resource::conflict;
use crate::AppState;

/// The rebuild request's own rules: one at a time, the image changes only with one, a
/// VM booting from a volume has no image copy to replace.
pub(super) fn check(old: &InstanceSpec, new: &InstanceSpec) -> Result<()> {
    check_generation(
        "spec.rebuild_generation",
        "a rebuild",
        old.rebuild_generation,
        new.rebuild_generation,
    )?;
    let requested = new.rebuild_generation != old.rebuild_generation;
    if old.image != new.image && !requested {
        return Err(conflict(
            "an instance's image changes only with a rebuild: 'yunhan vm rebuild NAME --image IMAGE'",
        ));
    }
    if requested && old.boot_volume.is_some() {
        return Err(conflict(
            "this VM boots from a volume: it has no image copy to rebuild; restore the volume from a snapshot instead",
        ));
    }
    Ok(())
}

/// Resolves a rebuild's image in the VM's project: an image it cannot see is 404, one
/// not yet Active is 409.
pub(super) async fn resolve(
    s: &AppState,
    old: &Doc<Instance>,
    new: &mut Doc<Instance>,
) -> Result<()> {
    if new.spec.rebuild_generation == old.spec.rebuild_generation {
        return Ok(());
    }
    let project = old.metadata.project.clone().unwrap_or_default();
    let name = new.spec.image.clone();
    if resolve_image(s, &project, &name).await?.is_none() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("image {name:?} not found; 'yunhan image list' shows the images this project may use"),
        )
        .into());
    }
    super::active_image(s, &project, &name).await.map(drop)
}
