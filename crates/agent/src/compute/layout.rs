//! The hot-plugged part of a VM's device layout, for live migration: the
//! source asks its QEMU which NICs and volumes sit on which hot-plug port
//! (`qom-get parent_bus` of each device, e.g. `/machine/peripheral/hp1/hp1`),
//! and the target renders them on the same ports of its command line
//! (`VmPlan.nics[].port`, `VmPlan.volumes`), so QEMU accepts the incoming state.

use yunhan_model::{DeviceKind, Doc, Instance, PluggedDevice, Volume};
use yunhan_qmp::{QmpClient, QmpError, QomGet, QomList, QomProperty};
use yunhan_storage::{QemuDisk, StorageError};
use yunhan_store::objects::{ObjectError, Objects};

use super::argv::{hotplug_port, VmPlan, VmVolume, HOTPLUG_PORTS};
use super::Inner;

/// Why the target cannot lay out a migrating VM's hot-plugged devices.
#[derive(Debug, thiserror::Error)]
pub(super) enum LayoutError {
    #[error("hot-plugged NIC {0} is no longer attached to the VM")]
    NicGone(String),
    #[error("hot-plugged volume {0} no longer exists")]
    VolumeGone(String),
    #[error("hot-plugged volume {0} is on local storage")]
    LocalVolume(String),
    #[error("hot-plugged volume {volume}: {source}")]
    Volume {
        volume: String,
        source: StorageError,
    },
    #[error("reading hot-plugged volume {volume}: {source}")]
    ReadVolume { volume: String, source: ObjectError },
}

const PERIPHERALS: &str = "/machine/peripheral";

/// The kind of a device QEMU lists under `/machine/peripheral`, if it is one
/// that can be hot-plugged.
fn kind_of(child: &QomProperty) -> Option<DeviceKind> {
    match child.child_type()? {
        "virtio-net-pci" => Some(DeviceKind::Nic),
        "virtio-blk-pci" => Some(DeviceKind::Volume),
        _ => None,
    }
}

/// The hot-plug port of a device whose `parent_bus` is `bus`; None for the
/// root bus (`/machine/q35/pcie.0`).
fn port_of_bus(bus: &str) -> Option<u32> {
    let last = bus.rsplit('/').next()?;
    (0..HOTPLUG_PORTS)
        .find(|&i| hotplug_port(i) == last)
        .and_then(|i| u32::try_from(i).ok())
}

/// The devices hot-plugged into the VM behind `qmp`, by id.
pub(super) async fn read(qmp: &QmpClient) -> Result<Vec<PluggedDevice>, QmpError> {
    let children = qmp
        .execute(&QomList {
            path: PERIPHERALS.into(),
        })
        .await?;
    let mut devices = Vec::new();
    for child in children {
        let Some(kind) = kind_of(&child) else {
            continue;
        };
        let bus = qmp
            .execute(&QomGet {
                path: format!("{PERIPHERALS}/{}", child.name),
                property: "parent_bus".into(),
            })
            .await?;
        if let Some(port) = bus.as_str().and_then(port_of_bus) {
            devices.push(PluggedDevice {
                id: child.name,
                kind,
                port,
            });
        }
    }
    devices.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(devices)
}

impl Inner {
    /// Puts `devices` (the source's hot-plugged layout) into `plan`: NICs onto
    /// their ports, volumes with their block nodes.
    pub(super) async fn lay_out(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
        plan: &mut VmPlan,
        devices: &[PluggedDevice],
    ) -> Result<(), LayoutError> {
        for d in devices {
            let port = d.port as usize;
            match d.kind {
                DeviceKind::Nic => {
                    let nic = plan.nics.iter_mut().find(|n| n.id == d.id);
                    nic.ok_or_else(|| LayoutError::NicGone(d.id.clone()))?.port = Some(port);
                }
                DeviceKind::Volume => {
                    let nodes = self.volume_nodes(objects, inst, &d.id).await?;
                    plan.volumes.push(VmVolume {
                        id: d.id.clone(),
                        nodes,
                        port,
                    });
                }
            }
        }
        Ok(())
    }

    /// The block nodes of hot-plugged volume `id`, named as `storage/plug.rs`
    /// names them.
    async fn volume_nodes(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
        id: &str,
    ) -> Result<[serde_json::Value; 2], LayoutError> {
        let vol = objects
            .get::<Volume>(id)
            .await
            .map_err(|source| LayoutError::ReadVolume {
                volume: id.to_string(),
                source,
            })?
            .filter(|v| v.metadata.project == inst.metadata.project)
            .ok_or_else(|| LayoutError::VolumeGone(id.to_string()))?;
        let disk = self
            .volumes
            .qemu_disk(&vol.spec.pool, id)
            .await
            .map_err(|source| LayoutError::Volume {
                volume: vol.metadata.name.clone(),
                source,
            })?;
        if let QemuDisk::File { .. } = disk {
            return Err(LayoutError::LocalVolume(vol.metadata.name.clone()));
        }
        Ok(disk.blockdev_nodes(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::compute::qom_child as child;

    #[test]
    fn devices_on_hot_plug_ports_are_the_hot_plugged_ones() {
        // What QEMU 10.0 answers for `qom-get parent_bus`.
        assert_eq!(port_of_bus("/machine/peripheral/hp1/hp1"), Some(1));
        assert_eq!(port_of_bus("/machine/peripheral/hp7/hp7"), Some(7));
        assert_eq!(port_of_bus("/machine/q35/pcie.0"), None);
        assert_eq!(port_of_bus("/machine/peripheral/hp8/hp8"), None);
        assert_eq!(port_of_bus(""), None);
    }

    #[test]
    fn nics_and_disks_are_the_kinds_that_move() {
        assert_eq!(
            kind_of(&child("nic-1", "virtio-net-pci")),
            Some(DeviceKind::Nic)
        );
        assert_eq!(
            kind_of(&child("vol-1", "virtio-blk-pci")),
            Some(DeviceKind::Volume)
        );
        assert_eq!(kind_of(&child("hp0", "pcie-root-port")), None);
        assert_eq!(kind_of(&child("gpu0", "vfio-pci")), None);
    }
}
