//! Hot plug into running VMs, shared by volumes and NICs. q35's root bus takes
//! no hot plug, so devices go into the empty PCIe root ports the argv builder
//! adds ([`HOTPLUG_PORTS`]), the first free one; unplugging is a request the
//! guest must acknowledge (ACPI), so it waits for `DEVICE_DELETED`.

use std::time::Duration;

use yunhan_qmp::{DeviceAdd, EventKind, Qmp, QmpClient, QmpError, QomList};

use super::argv::{hotplug_port, HOTPLUG_PORTS};

/// How long a guest gets to release a device.
pub const UNPLUG_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a device could not be plugged or unplugged.
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    /// Every hot-plug port refused the device; `last` is the last port's answer.
    #[error(
        "no free hot-plug slot (at most {} hot-plugged devices per VM): {}",
        HOTPLUG_PORTS,
        .last.as_ref().map(ToString::to_string).unwrap_or_default()
    )]
    NoFreeSlot { last: Option<QmpError> },
    /// The guest did not acknowledge the unplug in time.
    #[error("the guest did not release the {what} ({source}); it stays attached")]
    NotReleased { what: String, source: QmpError },
    #[error(transparent)]
    Qmp(#[from] QmpError),
}

/// Plugs `dev` into the first free hot-plug port.
pub async fn plug(qmp: &QmpClient, dev: DeviceAdd) -> Result<(), HotplugError> {
    let mut last = None;
    for port in 0..HOTPLUG_PORTS {
        match qmp
            .device_add(dev.clone().prop("bus", hotplug_port(port)))
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(HotplugError::NoFreeSlot { last })
}

/// Whether the VM has a device with id `id` (e.g. a volume that came with it
/// in a live migration: it is plugged already).
pub async fn present(qmp: &QmpClient, id: &str) -> Result<bool, QmpError> {
    let children = qmp
        .execute(&QomList {
            path: "/machine/peripheral".into(),
        })
        .await?;
    Ok(children.iter().any(|c| c.name == id))
}

/// Unplugs device `id` and waits until the guest has released it; a device
/// that is already gone is fine (an earlier unplug that was cut short).
pub async fn unplug(qmp: &QmpClient, id: &str, what: &str) -> Result<(), HotplugError> {
    let mut events = qmp.events();
    match qmp.device_del(id).await {
        Ok(()) => events
            .wait_for(UNPLUG_TIMEOUT, |e| {
                matches!(e.kind(), EventKind::DeviceDeleted { device: Some(ref d), .. } if d == id)
            })
            .await
            .map(drop)
            .map_err(|source| HotplugError::NotReleased {
                what: what.to_string(),
                source,
            }),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// QEMU's answer for a device or netdev that does not exist (error class
/// `DeviceNotFound`).
pub fn is_not_found(e: &QmpError) -> bool {
    e.class() == Some("DeviceNotFound")
}
