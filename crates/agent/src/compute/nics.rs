//! NICs attached to or detached from a running VM: hot plug through QMP. The
//! TAP is created in the host's namespace (as at start) and its descriptor
//! handed to QEMU with `getfd`; then `netdev_add` + `device_add virtio-net-pci`
//! on a free hot-plug port. A detached NIC is unplugged (`device_del`, the
//! guest releases it) and its backend removed, which closes the TAP. Moving a
//! NIC to another VM is a detach here and an attach on that VM's host.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsFd;

use yunhan_model::{Kind, NetworkInterface};
use yunhan_qmp::{DeviceAdd, NetdevAddTap, NetdevDel, QmpClient, QmpError, QomList, QomProperty};

use super::argv::netdev_id;
use super::hotplug::{self, HotplugError};
use super::runtime::RuntimeError;
use crate::network::{open_tap, AttachedNic, GUEST_MTU};

/// Why a NIC could not be plugged or unplugged, or the VM's NICs not listed.
#[derive(Debug, thiserror::Error)]
pub(super) enum NicError {
    #[error("creating the TAP: {0}")]
    Tap(std::io::Error),
    #[error("handing QEMU the TAP: {0}")]
    SendTap(QmpError),
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error(transparent)]
    Hotplug(#[from] HotplugError),
    /// No QMP connection to the VM.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// NIC ids (`nic-…`) of the virtio-net devices a VM has, as QEMU reports them.
pub(super) type Plugged = BTreeSet<String>;

/// Which NICs are plugged into each running VM, as last seen; a VM whose wanted
/// set differs gets a sync. Empty after an agent restart: then each VM is
/// asked once.
#[derive(Default)]
pub(super) struct PluggedNics(std::sync::Mutex<HashMap<String, Plugged>>);

impl PluggedNics {
    pub fn differs(&self, instance: &str, wanted: &Plugged) -> bool {
        crate::ops::lock(&self.0).get(instance) != Some(wanted)
    }
    pub fn set(&self, instance: &str, plugged: Plugged) {
        crate::ops::lock(&self.0).insert(instance.to_string(), plugged);
    }
    pub fn forget(&self, instance: &str) {
        crate::ops::lock(&self.0).remove(instance);
    }
}

/// The ids of the NICs in `nics`.
pub(super) fn ids(nics: &[AttachedNic]) -> Plugged {
    nics.iter().map(|n| n.id.clone()).collect()
}

/// The VPC NICs plugged into the VM behind `qmp`.
async fn plugged(qmp: &QmpClient) -> Result<Plugged, NicError> {
    let children = qmp
        .execute(&QomList {
            path: "/machine/peripheral".into(),
        })
        .await?;
    Ok(vpc_nics(children))
}

/// The VPC NICs among a VM's devices: virtio-net devices named after their
/// NetworkInterface (`nic-…`). The user-mode `nic0` a VM without VPC NICs
/// boots with (argv.rs) is not one: it was never hot-plugged, cannot be
/// unplugged (it sits on the root bus), and must not count as a NIC to remove.
fn vpc_nics(children: impl IntoIterator<Item = QomProperty>) -> Plugged {
    let prefix = format!("{}-", NetworkInterface::ID_PREFIX);
    children
        .into_iter()
        .filter(|c| c.child_type() == Some("virtio-net-pci") && c.name.starts_with(&prefix))
        .map(|c| c.name)
        .collect()
}

/// Plugs and unplugs until the VM has exactly `wanted`; returns what it has
/// then (each failure is logged; the next pass tries again).
pub(super) async fn sync(
    qmp: &QmpClient,
    instance: &str,
    netns: Option<&str>,
    wanted: &[AttachedNic],
) -> Result<Plugged, NicError> {
    let before = plugged(qmp).await?;
    for nic in wanted.iter().filter(|n| !before.contains(&n.id)) {
        match plug(qmp, netns, nic).await {
            Ok(()) => {
                tracing::info!(instance, nic = %nic.id, device = %nic.device, "NIC hot-plugged")
            }
            Err(e) => tracing::warn!(instance, nic = %nic.id, "hot-plugging the NIC failed: {e}"),
        }
    }
    let keep = ids(wanted);
    for id in before.difference(&keep) {
        match unplug(qmp, id).await {
            Ok(()) => tracing::info!(instance, nic = %id, "NIC unplugged"),
            Err(e) => tracing::warn!(instance, nic = %id, "unplugging the NIC failed: {e}"),
        }
    }
    plugged(qmp).await
}

async fn plug(qmp: &QmpClient, netns: Option<&str>, nic: &AttachedNic) -> Result<(), NicError> {
    let tap = open_tap(netns, &nic.device).map_err(NicError::Tap)?;
    let fdname = format!("tap-{}", nic.id);
    qmp.send_fd(&fdname, tap.as_fd())
        .await
        .map_err(NicError::SendTap)?;
    // QEMU holds its own copy now; ours closes when `tap` drops.
    let netdev = netdev_id(&nic.id);
    // A backend left over from an unplug that was cut short would block the id.
    let _ = qmp.execute(&NetdevDel { id: netdev.clone() }).await;
    qmp.execute(&NetdevAddTap::new(&netdev, &fdname)).await?;
    let dev = DeviceAdd::new("virtio-net-pci", &nic.id)
        .prop("netdev", netdev.as_str())
        .prop("mac", nic.mac.as_str())
        .prop("host_mtu", GUEST_MTU);
    if let Err(e) = hotplug::plug(qmp, dev).await {
        let _ = qmp.execute(&NetdevDel { id: netdev }).await;
        return Err(e.into());
    }
    Ok(())
}

async fn unplug(qmp: &QmpClient, id: &str) -> Result<(), NicError> {
    hotplug::unplug(qmp, id, "NIC").await?;
    match qmp.execute(&NetdevDel { id: netdev_id(id) }).await {
        Err(e) if !hotplug::is_not_found(&e) => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::compute::qom_child as child;

    #[test]
    fn the_user_mode_nic_of_a_vm_without_vpc_nics_is_not_a_nic_to_unplug() {
        // What QEMU reports for a VM started without VPC NICs (after an agent restart).
        let devices = vec![
            child("nic0", "virtio-net-pci"),
            child("seed-disk", "virtio-blk-pci"),
            child("hp0", "pcie-root-port"),
        ];
        let found = vpc_nics(devices);
        assert!(found.is_empty(), "{found:?}");
        // So a VM that wants no VPC NIC is in sync: nothing to unplug, no retry.
        let seen = PluggedNics::default();
        assert!(
            seen.differs("ins-1", &Plugged::new()),
            "asked once after a restart"
        );
        seen.set("ins-1", found);
        assert!(!seen.differs("ins-1", &Plugged::new()));
    }

    #[test]
    fn vpc_nics_are_the_virtio_net_devices_named_after_their_interface() {
        let devices = vec![
            child("nic-00000000000000aa", "virtio-net-pci"),
            child("nic0", "virtio-net-pci"),
            child("nic-00000000000000bb", "virtio-net-pci"),
            child("nic-00000000000000cc", "virtio-blk-pci"),
        ];
        let want: Plugged = ["nic-00000000000000aa", "nic-00000000000000bb"]
            .map(String::from)
            .into();
        assert_eq!(vpc_nics(devices), want);
    }
}
