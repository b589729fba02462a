//! Hot plug into running VMs, shared by volumes and NICs. q35's root bus takes
//! no hot plug, so devices go into the empty PCIe root ports the argv builder
//! adds ([`HOTPLUG_PORTS`]), the first free one; unplugging is a request the
//! guest must acknowledge (ACPI), so it waits for `DEVICE_DELETED`.

use std::time::Duration;

use yunhan_qmp::{DeviceAdd, EventKind, Qmp, QmpClient, QmpError};

use super::argv::{hotplug_port, HOTPLUG_PORTS};

/// How long a guest gets to release a device.
pub const UNPLUG_TIMEOUT: Duration = Duration::from_secs(60);

/// Plugs `dev` into the first free hot-plug port.
pub async fn plug(qmp: &QmpClient, dev: DeviceAdd) -> Result<(), String> {
    let mut last = String::new();
    for port in 0..HOTPLUG_PORTS {
        match qmp
            .device_add(dev.clone().prop("bus", hotplug_port(port)))
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "no free hot-plug slot (at most {HOTPLUG_PORTS} hot-plugged devices per VM): {last}"
    ))
}

/// Unplugs device `id` and waits until the guest has released it; a device
/// that is already gone is fine (an earlier unplug that was cut short).
pub async fn unplug(qmp: &QmpClient, id: &str, what: &str) -> Result<(), String> {
    let mut events = qmp.events();
    match qmp.device_del(id).await {
        Ok(()) => events
            .wait_for(UNPLUG_TIMEOUT, |e| {
                matches!(e.kind(), EventKind::DeviceDeleted { device: Some(ref d), .. } if d == id)
            })
            .await
            .map(drop)
            .map_err(|e| format!("the guest did not release the {what} ({e}); it stays attached")),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// QEMU's answer for an object (device, node, netdev) that does not exist.
pub fn is_not_found(e: &QmpError) -> bool {
    e.to_string().contains("not found")
}
