//! Rules of the block storage kinds. References (pool, source, instance,
//! restore snapshot) are resolved to ids within the caller's project (another
//! project's object is `not_found`); what the agent cannot do is refused here
//! with a clear 4xx before anything is written: shrinking, attaching a local
//! volume to a VM on another host, restoring an attached volume, deleting an
//! attached volume or one that still has snapshots. The binder (controller)
//! gives each volume a host; that host's agent does the work (docs/storage.md).

use async_trait::async_trait;
use yunhan_model::{
    storage_why, ApiError, ErrorCode, Image, Instance, Snapshot, Volume, VolumePhase, VolumeSource,
    DEFAULT_POOL,
};
use yunhan_store::objects::{Doc, GLOBAL_SCOPE};

use crate::auth::Principal;
use crate::error::Result;
use crate::hooks::{Deleted, Hooks};
use crate::network::resolve;
use crate::AppState;

fn conflict(msg: String) -> crate::HttpError {
    ApiError::new(ErrorCode::Conflict, msg).into()
}

fn project_of<S, T>(doc: &yunhan_model::Resource<S, T>) -> String {
    doc.metadata
        .project
        .clone()
        .unwrap_or_else(|| GLOBAL_SCOPE.into())
}

/// Marks `doc` for deletion by its host's agent (202), once.
async fn mark_deleting<K: Hooks>(s: &AppState, mut doc: Doc<K>) -> Result<Deleted<K>> {
    if doc.metadata.deleting.is_none() {
        doc.metadata.deleting = Some(crate::handlers::now());
        doc = s.objects.update::<K>(&doc).await?;
    }
    Ok(Deleted::Pending(Box::new(doc)))
}

/// The instance (name or id) of `project` a volume is to be attached to, and
/// the host the volume must move to first, if any: a local volume may only
/// attach to VMs on its own host; a detached Ceph volume is rebound to the
/// host of the VM (the agent there plugs it).
async fn resolve_attachment(
    s: &AppState,
    project: &str,
    vol: &Doc<Volume>,
    want: &str,
) -> Result<(String, Option<String>)> {
    let inst = resolve::<Instance>(s, project, "spec.instance", want).await?;
    if inst.metadata.deleting.is_some() {
        return Err(conflict(format!("instance {want:?} is being deleted")));
    }
    let local = vol.spec.pool == DEFAULT_POOL;
    if let (true, Some(vh), Some(ih)) = (local, &vol.status.host, &inst.status.host) {
        if vh != ih {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                format!(
                    "local volume {:?} lives on host {vh} and instance {want:?} runs on host {ih}; a local volume can only attach to VMs on its host (use a Ceph pool to attach anywhere)",
                    vol.metadata.name
                ),
            )
            .with_detail("field", "spec.instance")
            .into());
        }
    }
    let rebind = match (&vol.status.host, &inst.status.host) {
        (Some(vh), Some(ih)) if !local && vh != ih => {
            if vol.status.attached_to.is_some() || vol.status.phase != VolumePhase::Available {
                return Err(conflict(format!(
                    "volume {:?} is {:?} on host {vh}; detach it before attaching it to a VM on host {ih}",
                    vol.metadata.name, vol.status.phase
                )));
            }
            Some(ih.clone())
        }
        _ => None,
    };
    Ok((inst.metadata.id, rebind))
}

/// The live instance booting from volume `vol`, if any.
async fn booted_by(s: &AppState, project: &str, vol: &str) -> Result<Option<Doc<Instance>>> {
    Ok(s.objects
        .list_all::<Instance>(Some(project))
        .await?
        .into_iter()
        .find(|i| i.spec.boot_volume.as_deref() == Some(vol) && i.metadata.deleting.is_none()))
}

/// Checks the boot volume (name or id) a new instance of `project` asks for:
/// bootable, in a Ceph pool, Available, attached nowhere and root of no other
/// instance. Returns its id.
pub(crate) async fn boot_volume(s: &AppState, project: &str, want: &str) -> Result<String> {
    let vol = resolve::<Volume>(s, project, "spec.boot_volume", want).await?;
    let bad = |why: String| -> crate::HttpError {
        ApiError::invalid_field("spec.boot_volume", why).into()
    };
    if !vol.spec.bootable {
        return Err(bad(format!(
            "volume {want:?} is not bootable (create it with --bootable)"
        )));
    }
    if vol.spec.pool == DEFAULT_POOL {
        return Err(bad(format!(
            "volume {want:?} is in the local pool; VMs boot from Ceph volumes (local root disks are thin copies of the image already)"
        )));
    }
    if vol.status.phase != yunhan_model::VolumePhase::Available || vol.spec.instance.is_some() {
        return Err(conflict(format!(
            "volume {want:?} is {:?}; a boot volume must be Available and detached",
            vol.status.phase
        )));
    }
    if let Some(i) = booted_by(s, project, &vol.metadata.id).await? {
        return Err(conflict(format!(
            "volume {want:?} is already the root disk of instance {:?}",
            i.metadata.name
        )));
    }
    Ok(vol.metadata.id)
}

/// Detaches the volumes attached to an instance that is being deleted (the
/// API owns `spec`; their agents unplug them while the VM goes).
pub(crate) async fn detach_all(s: &AppState, inst: &Doc<Instance>) -> Result<()> {
    let project = project_of(inst);
    for v in s.objects.list_all::<Volume>(Some(&project)).await? {
        if v.spec.instance.as_deref() == Some(inst.metadata.id.as_str()) {
            s.objects
                .modify::<Volume>(&v.metadata.id, |d| {
                    let attached = d.spec.instance.as_deref() == Some(inst.metadata.id.as_str());
                    if attached {
                        d.spec.instance = None;
                    }
                    attached
                })
                .await?;
        }
    }
    Ok(())
}

/// Refuses changes to a volume a live instance boots from.
async fn not_a_root(s: &AppState, project: &str, vol: &Doc<Volume>, what: &str) -> Result<()> {
    match booted_by(s, project, &vol.metadata.id).await? {
        Some(i) => Err(conflict(format!(
            "volume {:?} is the root disk of instance {:?}; {what} it after deleting the instance",
            vol.metadata.name, i.metadata.name
        ))),
        None => Ok(()),
    }
}

/// The snapshots of volume `vol` (any phase).
async fn snapshots_of(s: &AppState, project: &str, vol: &str) -> Result<Vec<Doc<Snapshot>>> {
    Ok(s.objects
        .list_all::<Snapshot>(Some(project))
        .await?
        .into_iter()
        .filter(|snap| snap.spec.volume == vol)
        .collect())
}

#[async_trait]
impl Hooks for Volume {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        doc.status = Default::default();
        if !s.storage_pools.iter().any(|p| p == &doc.spec.pool) {
            return Err(ApiError::not_found("StoragePool", &doc.spec.pool)
                .with_detail("field", "spec.pool")
                .with_detail("pools", s.storage_pools.clone())
                .into());
        }
        let project = project_of(doc);
        if doc.spec.restore.is_some() {
            return Err(ApiError::invalid_field(
                "spec.restore",
                "a new volume has no snapshot to restore; use spec.source to create it from one",
            )
            .into());
        }
        let min = match doc.spec.source.clone() {
            Some(VolumeSource::Snapshot(name)) => {
                let snap = resolve::<Snapshot>(s, &project, "spec.source.snapshot", &name).await?;
                let from = s.objects.get::<Volume>(&snap.spec.volume).await?;
                let Some(from) = from.filter(|_| snap.metadata.deleting.is_none()) else {
                    return Err(conflict(format!("snapshot {name:?} is being deleted")));
                };
                if snap.status.phase != yunhan_model::SnapshotPhase::Available {
                    return Err(conflict(format!(
                        "snapshot {name:?} is {:?}, not Available",
                        snap.status.phase
                    )));
                }
                if from.spec.pool != doc.spec.pool {
                    return Err(ApiError::invalid_field(
                        "spec.pool",
                        format!(
                            "snapshot {name:?} is in pool {:?}; a volume made from it must be in the same pool",
                            from.spec.pool
                        ),
                    )
                    .into());
                }
                doc.spec.source = Some(VolumeSource::Snapshot(snap.metadata.id));
                snap.status.size_bytes
            }
            Some(VolumeSource::Image(name)) => {
                let img = resolve_image(s, &project, &name).await?;
                doc.spec.source = Some(VolumeSource::Image(img.metadata.id));
                img.status.size_bytes
            }
            None => 0,
        };
        if doc.spec.size_bytes < min {
            return Err(ApiError::invalid_field(
                "spec.size_bytes",
                format!(
                    "the source holds {min} bytes ({}); the volume must be at least that large",
                    yunhan_types::sizes::human(min)
                ),
            )
            .into());
        }
        if let Some(want) = doc.spec.instance.clone() {
            // Not bound yet: the binder follows the instance.
            doc.spec.instance = Some(resolve_attachment(s, &project, doc, &want).await?.0);
        }
        Ok(())
    }

    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec.pool != new.spec.pool
            || new.spec.source.is_some() && new.spec.source != old.spec.source
        {
            return Err(conflict(
                "a volume's pool and source cannot change; create another volume".into(),
            ));
        }
        yunhan_types::sizes::validate_extend(old.spec.size_bytes, new.spec.size_bytes)
            .map_err(|e| ApiError::invalid_field("spec.size_bytes", storage_why(e)))?;
        if old.metadata.deleting.is_some() {
            return Err(conflict("the volume is being deleted".into()));
        }
        Ok(())
    }

    async fn prepare_update(
        s: &AppState,
        _p: &Principal,
        old: &Doc<Self>,
        new: &mut Doc<Self>,
    ) -> Result<()> {
        let project = project_of(old);
        // The source is immutable; an update may simply omit it.
        new.spec.source = old.spec.source.clone();
        new.spec.instance = match new.spec.instance.clone() {
            Some(i) if old.spec.instance.as_deref() == Some(i.as_str()) => Some(i),
            Some(i) => {
                not_a_root(s, &project, old, "attach").await?;
                let (id, rebind) = resolve_attachment(s, &project, old, &i).await?;
                if rebind.is_some() {
                    new.status.host = rebind;
                }
                Some(id)
            }
            None => None,
        };
        if new.spec.restore != old.spec.restore {
            let Some(r) = new.spec.restore.clone() else {
                // Forgetting the last request is harmless.
                return Ok(());
            };
            let done = old
                .spec
                .restore
                .as_ref()
                .map_or(old.status.restore_generation, |o| o.generation);
            if r.generation <= done {
                return Err(ApiError::invalid_field(
                    "spec.restore.generation",
                    format!("bump the generation above {done} to request another restore"),
                )
                .into());
            }
            not_a_root(s, &project, old, "restore").await?;
            if new.spec.instance.is_some() || old.status.attached_to.is_some() {
                return Err(conflict(format!(
                    "volume {:?} is attached; detach it before restoring ('yunhan volume detach {}')",
                    old.metadata.name, old.metadata.name
                )));
            }
            let snap =
                resolve::<Snapshot>(s, &project, "spec.restore.snapshot", &r.snapshot).await?;
            if snap.spec.volume != old.metadata.id {
                return Err(ApiError::invalid_field(
                    "spec.restore.snapshot",
                    format!(
                        "snapshot {:?} is of another volume; a volume restores its own snapshots",
                        r.snapshot
                    ),
                )
                .into());
            }
            if snap.status.phase != yunhan_model::SnapshotPhase::Available {
                return Err(conflict(format!(
                    "snapshot {:?} is {:?}, not Available",
                    r.snapshot, snap.status.phase
                )));
            }
            new.spec.restore = Some(yunhan_model::VolumeRestore {
                snapshot: snap.metadata.id,
                generation: r.generation,
            });
        }
        Ok(())
    }

    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        let project = project_of(&doc);
        if let Some(i) = &doc.spec.instance {
            let live = s
                .objects
                .get::<Instance>(i)
                .await?
                .is_some_and(|i| i.metadata.deleting.is_none());
            if live {
                return Err(conflict(format!(
                    "volume {:?} is attached to instance {i}; detach it first ('yunhan volume detach {}')",
                    doc.metadata.name, doc.metadata.name
                )));
            }
        }
        not_a_root(s, &project, &doc, "delete").await?;
        if let Some(snap) = snapshots_of(s, &project, &doc.metadata.id).await?.first() {
            return Err(conflict(format!(
                "volume {:?} still has snapshot {:?}; delete its snapshots first",
                doc.metadata.name, snap.metadata.name
            )));
        }
        if doc.status.host.is_none() {
            s.objects.delete::<Self>(&doc).await?;
            return Ok(Deleted::Now);
        }
        mark_deleting(s, doc).await
    }
}

/// An Active disk image the project may use (its own, or a public one).
async fn resolve_image(s: &AppState, project: &str, name: &str) -> Result<Doc<Image>> {
    let own = crate::hooks::lookup::<Image>(s, project, name).await?;
    let img = match own {
        Some(i) => Some(i),
        None => crate::hooks::find_public_image(s, name).await?,
    }
    .filter(|i| i.spec.public || i.metadata.project.as_deref() == Some(project));
    let Some(img) = img else {
        return Err(ApiError::not_found("Image", name)
            .with_detail("field", "spec.source.image")
            .into());
    };
    if img.status.phase != "Active" || img.status.disk_path.is_none() {
        return Err(ApiError::invalid_field(
            "spec.source.image",
            format!("image {name:?} is not an Active disk image"),
        )
        .into());
    }
    Ok(img)
}

#[async_trait]
impl Hooks for Snapshot {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        doc.status = Default::default();
        let project = project_of(doc);
        let vol = resolve::<Volume>(s, &project, "spec.volume", &doc.spec.volume).await?;
        if vol.metadata.deleting.is_some() {
            return Err(conflict(format!(
                "volume {:?} is being deleted",
                doc.spec.volume
            )));
        }
        if !matches!(
            vol.status.phase,
            VolumePhase::Available | VolumePhase::InUse
        ) {
            return Err(conflict(format!(
                "volume {:?} is {:?}; snapshots are taken of Available or InUse volumes",
                doc.spec.volume, vol.status.phase
            )));
        }
        doc.spec.volume = vol.metadata.id;
        Ok(())
    }

    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec.volume != new.spec.volume {
            return Err(conflict("a snapshot's volume cannot change".into()));
        }
        Ok(())
    }

    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        let vol = s.objects.get::<Volume>(&doc.spec.volume).await?;
        let restoring = vol.as_ref().is_some_and(|v| {
            v.spec.restore.as_ref().is_some_and(|r| {
                r.snapshot == doc.metadata.id && r.generation > v.status.restore_generation
            })
        });
        if restoring {
            return Err(conflict(format!(
                "volume {} is being restored from snapshot {:?}; wait for it",
                doc.spec.volume, doc.metadata.name
            )));
        }
        if vol.and_then(|v| v.status.host).is_none() {
            s.objects.delete::<Self>(&doc).await?;
            return Ok(Deleted::Now);
        }
        mark_deleting(s, doc).await
    }
}
