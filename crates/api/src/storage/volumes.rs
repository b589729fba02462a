//! Volumes. References (pool, source, instance, restore snapshot) are resolved
//! to ids within the caller's project; refused here before anything is
//! written: shrinking, attaching a local volume to a VM on another host,
//! restoring an attached volume, deleting an attached volume or one that still
//! has snapshots, and changing a volume a live VM boots from.

use async_trait::async_trait;
use yunhan_model::{
    storage_why, ApiError, ErrorCode, Image, Instance, Snapshot, SnapshotPhase, Volume,
    VolumePhase, VolumeRestore, VolumeSource, DEFAULT_POOL,
};
use yunhan_store::objects::Doc;

use crate::attachments::{attachable_instance, refuse_while_attached};
use crate::auth::Principal;
use crate::error::{HttpError, Result};
use crate::images::resolve_image;
use crate::lookup::resolve;
use crate::resource::{
    changes, conflict, delete_or_mark, project_of, refuse_change, refuse_while_referenced, Deleted,
    Hooks,
};
use crate::AppState;

#[async_trait]
impl Hooks for Volume {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        doc.status = Default::default();
        if !s.config.storage_pools.iter().any(|p| p == &doc.spec.pool) {
            return Err(ApiError::not_found("StoragePool", &doc.spec.pool)
                .with_detail("field", "spec.pool")
                .with_detail("pools", s.config.storage_pools.clone())
                .into());
        }
        let project = project_of(doc).to_string();
        if doc.spec.restore.is_some() {
            return Err(ApiError::invalid_field(
                "spec.restore",
                "a new volume has no snapshot to restore; use spec.source to create it from one",
            )
            .into());
        }
        let min = source_size(s, &project, doc).await?;
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
        refuse_change(
            old.spec.pool != new.spec.pool || changes(&old.spec.source, &new.spec.source),
            "a volume's pool and source cannot change; create another volume",
        )?;
        yunhan_types::sizes::validate_extend(old.spec.size_bytes, new.spec.size_bytes)
            .map_err(|e| ApiError::invalid_field("spec.size_bytes", storage_why(e)))?;
        refuse_change(
            old.metadata.deleting.is_some(),
            "the volume is being deleted",
        )
    }

    async fn resolve_update(s: &AppState, old: &Doc<Self>, new: &mut Doc<Self>) -> Result<()> {
        let project = project_of(old);
        // The source is immutable; an update may simply omit it.
        new.spec.source = old.spec.source.clone();
        new.spec.instance = match new.spec.instance.clone() {
            Some(i) if old.spec.instance.as_deref() == Some(i.as_str()) => Some(i),
            Some(i) => {
                not_a_root(s, project, old, "attach").await?;
                let (id, rebind) = resolve_attachment(s, project, old, &i).await?;
                if rebind.is_some() {
                    new.status.host = rebind;
                }
                Some(id)
            }
            None => None,
        };
        if new.spec.restore != old.spec.restore {
            if let Some(r) = new.spec.restore.clone() {
                new.spec.restore = Some(restore_request(s, project, old, new, r).await?);
            }
            // Forgetting the last request is harmless.
        }
        Ok(())
    }

    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        let project = project_of(&doc).to_string();
        let name = &doc.metadata.name;
        refuse_while_attached(s, "volume", "volume", name, doc.spec.instance.as_deref()).await?;
        not_a_root(s, &project, &doc, "delete").await?;
        refuse_while_referenced::<Snapshot>(
            s,
            Some(&project),
            |snap| snap.spec.volume == doc.metadata.id,
            |snap| {
                format!(
                    "volume {name:?} still has snapshot {:?}; delete its snapshots first",
                    snap.metadata.name
                )
            },
        )
        .await?;
        let hosted = doc.status.host.is_some();
        delete_or_mark(s, doc, hosted).await
    }
}

/// Resolves a new volume's source to its id and returns how many bytes it
/// holds (the least the volume may have).
async fn source_size(s: &AppState, project: &str, doc: &mut Doc<Volume>) -> Result<u64> {
    match doc.spec.source.clone() {
        Some(VolumeSource::Snapshot(name)) => {
            let snap = source_snapshot(s, project, &doc.spec.pool, &name).await?;
            doc.spec.source = Some(VolumeSource::Snapshot(snap.metadata.id));
            Ok(snap.status.size_bytes)
        }
        Some(VolumeSource::Image(name)) => {
            let img = source_image(s, project, &name).await?;
            doc.spec.source = Some(VolumeSource::Image(img.metadata.id));
            Ok(img.status.size_bytes)
        }
        None => Ok(0),
    }
}

/// An Available snapshot of a live volume in `pool`, for a new volume to copy.
async fn source_snapshot(
    s: &AppState,
    project: &str,
    pool: &str,
    name: &str,
) -> Result<Doc<Snapshot>> {
    let snap = resolve::<Snapshot>(s, project, "spec.source.snapshot", name).await?;
    let from = s.objects.get::<Volume>(&snap.spec.volume).await?;
    let Some(from) = from.filter(|_| snap.metadata.deleting.is_none()) else {
        return Err(conflict(format!("snapshot {name:?} is being deleted")));
    };
    if snap.status.phase != SnapshotPhase::Available {
        return Err(conflict(format!(
            "snapshot {name:?} is {:?}, not Available",
            snap.status.phase
        )));
    }
    if from.spec.pool != pool {
        return Err(ApiError::invalid_field(
            "spec.pool",
            format!(
                "snapshot {name:?} is in pool {:?}; a volume made from it must be in the same pool",
                from.spec.pool
            ),
        )
        .into());
    }
    Ok(snap)
}

/// An Active disk image the project may use (its own, or a public one).
async fn source_image(s: &AppState, project: &str, name: &str) -> Result<Doc<Image>> {
    let Some(img) = resolve_image(s, project, name).await? else {
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

/// A request to restore `old` to one of its Available snapshots (`r`), with
/// the snapshot's id: only a detached volume no live VM boots from, and only
/// a generation above the last one.
async fn restore_request(
    s: &AppState,
    project: &str,
    old: &Doc<Volume>,
    new: &Doc<Volume>,
    r: VolumeRestore,
) -> Result<VolumeRestore> {
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
    not_a_root(s, project, old, "restore").await?;
    if new.spec.instance.is_some() || old.status.attached_to.is_some() {
        return Err(conflict(format!(
            "volume {:?} is attached; detach it before restoring ('yunhan volume detach {}')",
            old.metadata.name, old.metadata.name
        )));
    }
    let snap = resolve::<Snapshot>(s, project, "spec.restore.snapshot", &r.snapshot).await?;
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
    if snap.status.phase != SnapshotPhase::Available {
        return Err(conflict(format!(
            "snapshot {:?} is {:?}, not Available",
            r.snapshot, snap.status.phase
        )));
    }
    Ok(VolumeRestore {
        snapshot: snap.metadata.id,
        generation: r.generation,
    })
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
    let inst = attachable_instance(s, project, want).await?;
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

/// 409 while a live instance of `project` boots from volume `vol`; `why` names it.
async fn refuse_while_root(
    s: &AppState,
    project: &str,
    vol: &str,
    why: impl FnOnce(&Doc<Instance>) -> String,
) -> Result<()> {
    refuse_while_referenced::<Instance>(
        s,
        Some(project),
        |i| i.spec.boot_volume.as_deref() == Some(vol) && i.metadata.deleting.is_none(),
        why,
    )
    .await
}

/// Refuses changes to a volume a live instance boots from.
async fn not_a_root(s: &AppState, project: &str, vol: &Doc<Volume>, what: &str) -> Result<()> {
    refuse_while_root(s, project, &vol.metadata.id, |i| {
        format!(
            "volume {:?} is the root disk of instance {:?}; {what} it after deleting the instance",
            vol.metadata.name, i.metadata.name
        )
    })
    .await
}

/// Checks the boot volume (name or id) a new instance of `project` asks for:
/// bootable, in a Ceph pool, Available, attached nowhere and root of no other
/// instance. Returns its id.
pub(crate) async fn boot_volume(s: &AppState, project: &str, want: &str) -> Result<String> {
    let vol = resolve::<Volume>(s, project, "spec.boot_volume", want).await?;
    let bad =
        |why: String| -> HttpError { ApiError::invalid_field("spec.boot_volume", why).into() };
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
    if vol.status.phase != VolumePhase::Available || vol.spec.instance.is_some() {
        return Err(conflict(format!(
            "volume {want:?} is {:?}; a boot volume must be Available and detached",
            vol.status.phase
        )));
    }
    refuse_while_root(s, project, &vol.metadata.id, |i| {
        format!(
            "volume {want:?} is already the root disk of instance {:?}",
            i.metadata.name
        )
    })
    .await?;
    Ok(vol.metadata.id)
}

/// Detaches the volumes attached to an instance that is being deleted (the
/// API owns `spec`; their agents unplug them while the VM goes).
pub(crate) async fn detach_all(s: &AppState, inst: &Doc<Instance>) -> Result<()> {
    let project = project_of(inst);
    let id = inst.metadata.id.as_str();
    for v in s.objects.list_all::<Volume>(Some(project)).await? {
        if v.spec.instance.as_deref() == Some(id) {
            s.objects
                .modify::<Volume>(&v.metadata.id, |d| {
                    let attached = d.spec.instance.as_deref() == Some(id);
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
