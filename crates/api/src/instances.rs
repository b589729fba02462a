//! Instances (VMs): created from a flavor and an Active image, optionally in
//! a placement group, from a boot volume and with a primary NIC; afterwards
//! reboots (one at a time), resizes (a new flavor, `resize.rs`), rebuilds (a fresh
//! root disk, `rebuild.rs`) and, for admins, live migrations may be requested. A VM bound to a host is deleted by that host's agent.

use async_trait::async_trait;
use yunhan_model::{
    now, ApiError, ErrorCode, Flavor, Host, Image, Instance, InstancePhase, MigrationSpec,
};
use yunhan_store::objects::{Doc, ObjectError, GLOBAL_SCOPE};

use crate::auth::Principal;
use crate::error::Result;
use crate::images::resolve_image;
use crate::lookup::lookup;
use crate::network::nics::{create_primary_nic, release_instance_nics};
use crate::placement_groups::placement_group;
use crate::resource::{changes, conflict, refuse_change, Deleted, Hooks};
use crate::storage::volumes::{boot_volume, detach_all};
use crate::AppState;

mod reach;
mod rebuild;
mod resize;

#[async_trait]
impl Hooks for Instance {
    async fn prepare_create(s: &AppState, p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let flavor = flavor(s, &doc.spec.flavor).await?;
        let project = doc
            .metadata
            .project
            .clone()
            .unwrap_or_else(|| p.project.clone());
        if let Some(g) = doc.spec.placement_group.clone() {
            doc.spec.placement_group = Some(placement_group(s, &project, &g).await?);
        }
        active_image(s, &project, &doc.spec.image).await?;
        doc.status.vcpus = flavor.spec.vcpus;
        doc.status.memory_mib = flavor.spec.memory_mib;
        doc.status.disk_gib = flavor.spec.disk_gib;
        if doc.spec.reboot_generation != 0 {
            let msg = "a new VM has had no reboots: leave reboot_generation out (or 0)";
            return Err(ApiError::invalid_field("spec.reboot_generation", msg).into());
        }
        doc.status.phase = InstancePhase::Pending;
        if let Some(v) = doc.spec.boot_volume.clone() {
            doc.spec.boot_volume = Some(boot_volume(s, &project, &v).await?);
        }
        if let Some(nic) = doc.spec.nic.clone() {
            create_primary_nic(s, doc, &nic).await?;
        }
        Ok(())
    }

    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        let (old, new) = (&old.spec, &new.spec);
        refuse_change(
            changes(&old.boot_volume, &new.boot_volume),
            "an instance's boot volume cannot change",
        )?;
        rebuild::check(old, new)?;
        refuse_change(
            old.nic != new.nic,
            "an instance's primary NIC request cannot change; attach NICs with 'yunhan nic attach'",
        )?;
        check_generation(
            "spec.reboot_generation",
            "a reboot",
            old.reboot_generation,
            new.reboot_generation,
        )?;
        refuse_change(
            old.placement_group != new.placement_group,
            "an instance's placement group cannot change",
        )
    }

    async fn prepare_update(
        s: &AppState,
        p: &Principal,
        old: &Doc<Self>,
        new: &mut Doc<Self>,
    ) -> Result<()> {
        resize::resize(s, old, new).await?;
        rebuild::resolve(s, old, new).await?;
        if old.spec.migration == new.spec.migration {
            return Ok(());
        }
        if !p.is_admin() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "live migration is an admin operation",
            )
            .into());
        }
        match new.spec.migration.as_mut() {
            Some(m) => check_migration(s, old, m).await,
            None => Ok(()),
        }
    }

    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        detach_all(s, &doc).await?;
        let id = doc.metadata.id.clone();
        let mut doc = doc;
        // Controllers and agents write the instance's status meanwhile: a lost
        // compare-and-swap is retried on the current version, never the user's problem.
        loop {
            if doc.status.host.is_none() {
                match s.objects.delete::<Self>(&doc).await {
                    Ok(()) => {
                        release_instance_nics(s, &doc).await?;
                        return Ok(Deleted::Now);
                    }
                    Err(ObjectError::Conflict(_)) => match s.objects.get::<Self>(&id).await? {
                        Some(d) => doc = d,
                        None => return Ok(Deleted::Now),
                    },
                    Err(e) => return Err(e.into()),
                }
                continue;
            }
            // Bound to a host: its agent tears the VM down and removes the object.
            match mark_deleting(s, &id).await? {
                None => return Ok(Deleted::Now),
                // Unbound meanwhile: no agent will finish it, delete it directly.
                Some(d) if d.status.host.is_none() => doc = d,
                Some(d) => return Ok(Deleted::Pending(Box::new(d))),
            }
        }
    }
}

/// The flavor a new instance names.
async fn flavor(s: &AppState, name: &str) -> Result<Doc<Flavor>> {
    let found = lookup::<Flavor>(s, GLOBAL_SCOPE, name).await?;
    Ok(found.ok_or_else(|| {
        ApiError::invalid_field(
            "spec.flavor",
            format!("flavor {name:?} does not exist; 'yunhan flavor list' shows the flavors"),
        )
    })?)
}

/// The image a new instance of `project` boots, which must be Active.
async fn active_image(s: &AppState, project: &str, name: &str) -> Result<Doc<Image>> {
    let Some(image) = resolve_image(s, project, name).await? else {
        return Err(ApiError::invalid_field(
            "spec.image",
            format!("image {name:?} does not exist; 'yunhan image list' shows the images"),
        )
        .into());
    };
    if image.status.phase != "Active" {
        return Err(conflict(format!(
            "image {:?} is {}, not Active: {}",
            image.metadata.name,
            image.status.phase,
            if image.status.message.is_empty() {
                "wait for it or pick another ('yunhan image list')"
            } else {
                &image.status.message
            }
        )));
    }
    Ok(image)
}

/// One request (`what`: a reboot, a rebuild) per bump of `field`: +1 only, and below
/// 2^53 so JSON clients read it exactly.
fn check_generation(field: &str, what: &str, was: u64, wants: u64) -> Result<()> {
    let next = was.checked_add(1).filter(|n| *n < 1 << 53);
    if wants == was || Some(wants) == next {
        return Ok(());
    }
    let why = match next {
        Some(n) => format!("send {n} to request {what}"),
        None => "it is at its limit; no more can be requested".into(),
    };
    let short = field.trim_start_matches("spec.");
    let msg = format!("{short} is {was} and only grows by one, not to {wants}: {why}");
    Err(ApiError::invalid_field(field, msg).into())
}

/// Checks a new live-migration request of `old` (an admin's) and resolves its target host.
async fn check_migration(s: &AppState, old: &Doc<Instance>, m: &mut MigrationSpec) -> Result<()> {
    let before = old.spec.migration.as_ref().map_or(0, |m| m.request);
    if m.request < before {
        return Err(ApiError::invalid_field(
            "spec.migration.request",
            format!("request numbers only grow (the last one was {before})"),
        )
        .into());
    }
    if m.request == before {
        return Ok(()); // a cancel (or a no-op) of the current request
    }
    let name = &old.metadata.name;
    if old
        .status
        .migration
        .as_ref()
        .is_some_and(|s| s.phase.active())
    {
        return Err(conflict(format!(
            "{name:?} is already migrating; wait for it or cancel it with 'yunhan vm migrate {name} --cancel'"
        )));
    }
    let stopped = old.status.phase == InstancePhase::Stopped && !old.spec.running;
    if old.status.phase != InstancePhase::Running && !stopped {
        return Err(conflict(format!(
            "{name:?} is {:?}: running VMs move live and stopped ones cold; wait until it runs or stops",
            old.status.phase
        )));
    }
    if let Some(to) = m.to.clone() {
        m.to = Some(migration_target(s, old, &to).await?);
    }
    Ok(())
}

/// The id of host `to` (name or id) a VM is to migrate to: not the one it runs on.
async fn migration_target(s: &AppState, old: &Doc<Instance>, to: &str) -> Result<String> {
    let host = lookup::<Host>(s, GLOBAL_SCOPE, to).await?.ok_or_else(|| {
        ApiError::invalid_field(
            "spec.migration.to",
            format!("host {to:?} does not exist; 'yunhan host list' shows the hosts"),
        )
    })?;
    if old.status.host.as_deref() == Some(host.metadata.id.as_str()) {
        return Err(ApiError::invalid_field(
            "spec.migration.to",
            format!("{:?} already runs on host {to:?}", old.metadata.name),
        )
        .into());
    }
    reach::check(s, old, &host).await?;
    Ok(host.metadata.id)
}

/// Marks a host-bound instance for deletion by its agent (once); `None` if it is gone.
async fn mark_deleting(s: &AppState, id: &str) -> Result<Option<Doc<Instance>>> {
    let now = now();
    Ok(s.objects
        .modify::<Instance>(id, |d| {
            if d.metadata.deleting.is_some() || d.status.host.is_none() {
                return false;
            }
            d.metadata.deleting = Some(now.clone());
            true
        })
        .await?)
}
