//! The steps the reconciler runs for one volume or snapshot: create, extend,
//! snapshot, restore, delete, report; each writes the volume's status.

use std::path::Path;
use std::sync::Arc;

use yunhan_model::{
    Doc, Image, Snapshot, SnapshotPhase, Volume, VolumePhase, VolumeSource, VolumeStatus,
};
use yunhan_qmp::Qmp;
use yunhan_storage::{QemuDisk, StorageError, VolumeDriver};
use yunhan_store::objects::{ObjectError, Objects};

use super::decide::{reported, Action, Observed};
use super::plug::node;
use super::reconciler::Inner;

/// Why a storage step failed: the store, or the backend/QEMU (kept as text
/// for `status.message`).
#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error("{0}")]
    Backend(String),
}

impl From<StorageError> for StepError {
    fn from(e: StorageError) -> Self {
        StepError::Backend(e.to_string())
    }
}

impl From<crate::compute::runtime::RuntimeError> for StepError {
    fn from(e: crate::compute::runtime::RuntimeError) -> Self {
        StepError::Backend(e.to_string())
    }
}

impl From<yunhan_qmp::QmpError> for StepError {
    fn from(e: yunhan_qmp::QmpError) -> Self {
        StepError::Backend(format!("QMP: {e}"))
    }
}

pub(super) async fn snapshot_step(
    objects: &Objects,
    driver: Arc<dyn VolumeDriver>,
    snap: &Doc<Snapshot>,
) -> Result<(), ObjectError> {
    let (vol, id) = (snap.spec.volume.as_str(), snap.metadata.id.as_str());
    if snap.metadata.deleting.is_some() {
        match driver.delete_snapshot(vol, id).await {
            Ok(()) | Err(StorageError::NotFound { .. }) => {}
            Err(e) => {
                let msg = e.to_string();
                objects
                    .modify::<Snapshot>(id, |d| {
                        let changed = d.status.message != msg;
                        d.status.message = msg.clone();
                        changed
                    })
                    .await?;
                return Ok(());
            }
        }
        return objects.delete_latest::<Snapshot>(id).await;
    }
    let existing = driver
        .list_snapshots(vol)
        .await
        .ok()
        .and_then(|l| l.into_iter().find(|s| s.name == id));
    let r = match existing {
        Some(s) => Ok(s),
        None => driver.snapshot(vol, id).await,
    };
    objects
        .modify::<Snapshot>(id, |d| {
            match &r {
                Ok(info) => {
                    d.status.phase = SnapshotPhase::Available;
                    d.status.size_bytes = info.size_bytes;
                    d.status.message.clear();
                }
                Err(e) => {
                    d.status.phase = SnapshotPhase::Failed;
                    d.status.message = e.to_string();
                }
            }
            true
        })
        .await?;
    if r.is_ok() {
        tracing::info!(snapshot = id, volume = vol, "snapshot taken");
    }
    Ok(())
}

impl Inner {
    /// CAS-writes the status of volume `id` while it is still bound here.
    async fn set_status(
        &self,
        objects: &Objects,
        id: &str,
        f: impl Fn(&mut VolumeStatus) + Send + Sync,
    ) -> Result<(), ObjectError> {
        crate::ops::set_bound_status::<Volume>(objects, id, &self.host_id, |s| s.host.as_deref(), f)
            .await
    }

    pub(super) async fn fail(
        &self,
        objects: &Objects,
        id: &str,
        msg: String,
    ) -> Result<(), ObjectError> {
        tracing::warn!(volume = id, "volume failed: {msg}");
        self.set_status(objects, id, |s| {
            s.phase = VolumePhase::Failed;
            s.message = msg.clone();
        })
        .await
    }

    pub(super) async fn act(
        &self,
        objects: &Objects,
        driver: Arc<dyn VolumeDriver>,
        vol: &Doc<Volume>,
        obs: &Observed,
        action: Action,
        target_since: Option<String>,
    ) -> Result<(), ObjectError> {
        let id = vol.metadata.id.as_str();
        let driver = &*driver;
        let busy = match &action {
            Action::Nothing => return Ok(()),
            Action::Report => return self.report(objects, driver, vol, obs).await,
            Action::Create => VolumePhase::Creating,
            Action::Delete => VolumePhase::Deleting,
            Action::Extend => VolumePhase::Extending,
            Action::Restore => VolumePhase::Restoring,
            Action::Attach(_) => VolumePhase::Attaching,
            Action::Detach(_) => VolumePhase::Detaching,
        };
        self.set_status(objects, id, |s| s.phase = busy).await?;
        let r = match action {
            Action::Create => self.create(objects, driver, vol).await,
            Action::Delete => self.delete(objects, driver, id).await,
            Action::Extend => self.extend(driver, vol, obs).await,
            Action::Restore => self.restore(objects, driver, vol).await,
            Action::Attach(inst) => match self.attach(&vol.spec.pool, id, &inst).await {
                Ok(()) => {
                    tracing::info!(volume = id, instance = %inst, "volume attached");
                    let since = target_since.unwrap_or_default();
                    return self
                        .set_status(objects, id, |s| {
                            s.phase = VolumePhase::InUse;
                            s.message.clear();
                            s.attached_to = Some(inst.clone());
                            s.attached_since = Some(since.clone());
                            s.device = Some(node(id));
                        })
                        .await;
                }
                Err(e) => Err(e),
            },
            Action::Detach(inst) => match self.detach(driver, id, &inst).await {
                Ok(()) => {
                    tracing::info!(volume = id, instance = %inst, "volume detached");
                    return self
                        .set_status(objects, id, |s| {
                            s.phase = VolumePhase::Available;
                            s.message.clear();
                            s.attached_to = None;
                            s.attached_since = None;
                            s.device = None;
                        })
                        .await;
                }
                Err(e) => Err(e),
            },
            Action::Nothing | Action::Report => Ok(()),
        };
        match r {
            Ok(()) => Ok(()),
            Err(StepError::Objects(e)) => Err(e),
            // A failed create is final (the user deletes the volume); other
            // steps leave the volume usable and are retried on the next pass.
            Err(StepError::Backend(msg)) if busy == VolumePhase::Creating => {
                self.fail(objects, id, msg).await
            }
            Err(StepError::Backend(msg)) => {
                tracing::warn!(volume = id, "{busy:?} failed: {msg}");
                let phase = match (busy, &obs.plugged) {
                    (VolumePhase::Deleting, _) => VolumePhase::Deleting,
                    (_, Some(_)) => VolumePhase::InUse,
                    (_, None) => VolumePhase::Available,
                };
                self.set_status(objects, id, |s| {
                    s.phase = phase;
                    s.message = format!("{busy:?} failed: {msg}");
                })
                .await
            }
        }
    }

    async fn report(
        &self,
        objects: &Objects,
        driver: &dyn VolumeDriver,
        vol: &Doc<Volume>,
        obs: &Observed,
    ) -> Result<(), ObjectError> {
        let id = vol.metadata.id.as_str();
        let usage = driver.usage(id).await.ok();
        self.set_status(objects, id, |s| {
            *s = reported(s, obs);
            if let Some(u) = usage {
                s.size_bytes = u.logical_bytes;
                s.logical_bytes = u.logical_bytes;
                s.physical_bytes = u.physical_bytes;
            }
        })
        .await
    }

    async fn create(
        &self,
        objects: &Objects,
        driver: &dyn VolumeDriver,
        vol: &Doc<Volume>,
    ) -> Result<(), StepError> {
        let id = vol.metadata.id.as_str();
        let size = vol.spec.size_bytes;
        let r = match &vol.spec.source {
            None => driver.create(id, size).await.map(drop),
            Some(VolumeSource::Snapshot(snap)) => {
                let from = objects.get::<Snapshot>(snap).await?.ok_or_else(|| {
                    StepError::Backend(format!("snapshot {snap} no longer exists"))
                })?;
                driver
                    .clone_from_snapshot(&from.spec.volume, snap, id, Some(size))
                    .await
                    .map(drop)
            }
            Some(VolumeSource::Image(img)) => {
                let image = objects
                    .get::<Image>(img)
                    .await?
                    .and_then(|i| i.status.disk_path)
                    .ok_or_else(|| StepError::Backend(format!("image {img} has no disk")))?;
                match driver.import_image(Path::new(&image), img).await {
                    Ok(_) => driver.clone_for_root(img, id, size).await.map(drop),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = r {
            // Nothing half-made: whatever a failed step left goes.
            let _ = driver.delete(id).await;
            return Err(e.into());
        }
        secure(&driver.qemu_drive(id).await?, None)?;
        tracing::info!(volume = id, pool = %vol.spec.pool, size, "volume created");
        self.set_status(objects, id, |s| {
            s.phase = VolumePhase::Available;
            s.message.clear();
            s.size_bytes = size;
            s.logical_bytes = size;
        })
        .await?;
        Ok(())
    }

    async fn delete(
        &self,
        objects: &Objects,
        driver: &dyn VolumeDriver,
        id: &str,
    ) -> Result<(), StepError> {
        match driver.delete(id).await {
            Ok(()) | Err(StorageError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        objects.delete_latest::<Volume>(id).await?;
        tracing::info!(volume = id, "volume deleted");
        Ok(())
    }

    async fn extend(
        &self,
        driver: &dyn VolumeDriver,
        vol: &Doc<Volume>,
        obs: &Observed,
    ) -> Result<(), StepError> {
        let id = vol.metadata.id.as_str();
        let size = vol.spec.size_bytes;
        driver.extend(id, size).await?;
        if let Some(inst) = &obs.plugged {
            // The guest sees the new size at once (virtio config change).
            let qmp = self.rt.qmp(inst).await?;
            qmp.block_resize(&node(id), size).await?;
        }
        tracing::info!(volume = id, size, "volume extended");
        Ok(())
    }

    async fn restore(
        &self,
        objects: &Objects,
        driver: &dyn VolumeDriver,
        vol: &Doc<Volume>,
    ) -> Result<(), StepError> {
        let id = vol.metadata.id.as_str();
        let Some(r) = &vol.spec.restore else {
            return Ok(());
        };
        driver.restore(id, &r.snapshot).await?;
        secure(&driver.qemu_drive(id).await?, None)?;
        tracing::info!(volume = id, snapshot = %r.snapshot, "volume restored");
        let gen = r.generation;
        self.set_status(objects, id, |s| {
            s.restore_generation = s.restore_generation.max(gen);
            s.phase = VolumePhase::Available;
            s.message.clear();
        })
        .await?;
        Ok(())
    }
}

/// A local volume file belongs to the QEMU of the VM it is plugged into
/// (every VM has its own uid), else to the agent; mode 0600 either way.
/// RBD images need nothing.
pub(super) fn secure(disk: &QemuDisk, owner: Option<(u32, u32)>) -> Result<(), StepError> {
    use std::os::unix::fs::PermissionsExt;
    let QemuDisk::File { path } = disk else {
        return Ok(());
    };
    let err = |what: &str, e: std::io::Error| {
        StepError::Backend(format!("{what} {}: {e}", path.display()))
    };
    let (uid, gid) = owner.unwrap_or((
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    ));
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| err("chown", e.into()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err("chmod", e))
}
