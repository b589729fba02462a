//! Resizing a VM: a new flavor for a stopped (or not yet placed) VM, charged to its
//! project's quota when the document is written and checked to fit the VM's host. A
//! running VM is refused with "stop it first": its QEMU starts without spare CPU or
//! memory slots, so nothing can be hot-added. The agent grows the root disk at the next
//! start; disks never shrink.

use yunhan_model::scheduling::{Capacity, Demand};
use yunhan_model::{ApiError, Doc, Flavor, Host, Instance, InstancePhase, PlacementGroup};
use yunhan_store::objects::GLOBAL_SCOPE;

use crate::error::Result;
use crate::resource::conflict;
use crate::AppState;

/// Applies a flavor change of `old` to `new` (its resources in `status`), or refuses it.
pub(super) async fn resize(
    s: &AppState,
    old: &Doc<Instance>,
    new: &mut Doc<Instance>,
) -> Result<()> {
    if old.spec.flavor == new.spec.flavor {
        return Ok(());
    }
    let f = super::flavor(s, &new.spec.flavor).await?;
    stopped(old, new)?;
    fits_the_vm(old, &f)?;
    fits_its_host(s, old, &f).await?;
    new.status.vcpus = f.spec.vcpus;
    new.status.memory_mib = f.spec.memory_mib;
    new.status.disk_gib = f.spec.disk_gib;
    Ok(())
}

/// Only a stopped VM (or one no host has yet) changes size.
fn stopped(old: &Doc<Instance>, new: &Doc<Instance>) -> Result<()> {
    let placed = old.status.host.is_some();
    let at_rest = old.status.phase == InstancePhase::Stopped && !old.spec.running;
    if !placed || (at_rest && !new.spec.running) {
        return Ok(());
    }
    let name = &old.metadata.name;
    Err(conflict(format!(
        "{name:?} is {:?}: stop it first ('yunhan vm stop {name} --wait'), then resize it; a running VM cannot be resized (it has no spare CPU or memory slots to hot-add)",
        old.status.phase
    )))
}

/// The flavor keeps the VM's disk and GPUs: disks only grow, GPUs stay as bound.
fn fits_the_vm(old: &Doc<Instance>, f: &Doc<Flavor>) -> Result<()> {
    let (name, flavor) = (&old.metadata.name, &f.metadata.name);
    if f.spec.disk_gib < old.status.disk_gib && old.spec.boot_volume.is_none() {
        return Err(ApiError::invalid_field(
            "spec.flavor",
            format!(
                "flavor {flavor:?} has a {} GiB disk, smaller than {name:?}'s {} GiB root disk: disks only grow; pick a flavor with at least {} GiB",
                f.spec.disk_gib, old.status.disk_gib, old.status.disk_gib
            ),
        )
        .into());
    }
    if f.spec.gpus != old.status.gpus {
        return Err(ApiError::invalid_field(
            "spec.flavor",
            format!(
                "flavor {flavor:?} has {} GPU(s) and {name:?} {}: a resize keeps the GPUs; create a new VM for another GPU count",
                f.spec.gpus, old.status.gpus
            ),
        )
        .into());
    }
    Ok(())
}

/// The VM's host (if it has one) can hold it at the new size, beside everything else
/// bound there, within the host's overcommit ratios.
async fn fits_its_host(s: &AppState, old: &Doc<Instance>, f: &Doc<Flavor>) -> Result<()> {
    let Some(host) = old.status.host.as_deref() else {
        return Ok(());
    };
    let hosts = s.objects.list_all::<Host>(Some(GLOBAL_SCOPE)).await?;
    let mut others = s.objects.list_all::<Instance>(None).await?;
    others.retain(|i| i.metadata.id != old.metadata.id);
    let groups = s.objects.list_all::<PlacementGroup>(None).await?;
    let cap = Capacity::build(&hosts, &others, &groups);
    let Some(c) = cap.host(host) else {
        return Ok(());
    };
    let here = yunhan_model::scheduling::Candidate {
        schedulable: true,
        ..c.clone()
    };
    let d = Demand {
        vcpus: f.spec.vcpus.into(),
        memory_mib: f.spec.memory_mib,
        disk_gib: f.spec.disk_gib,
        ..Default::default()
    };
    match here.misfit(&d, &s.config.placement) {
        None => Ok(()),
        Some(why) => Err(conflict(format!(
            "{:?} does not fit its host as {:?} ({} vCPU / {} MiB / {} GiB): {why}; pick a smaller flavor, or ask an admin to raise the host's overcommit ('yunhan host set') or to move the VM",
            old.metadata.name, f.metadata.name, f.spec.vcpus, f.spec.memory_mib, f.spec.disk_gib
        ))),
    }
}
