//! Hot plug into this host's VMs over QMP: `blockdev-add` + `device_add
//! virtio-blk-pci` on a free PCIe root port; `device_del`, wait for
//! `DEVICE_DELETED`, `blockdev-del`.

use yunhan_qmp::{BlockdevAdd, DeviceAdd, Qmp, QmpClient};
use yunhan_storage::VolumeDriver;

use super::reconciler::Inner;
use super::steps::{secure, StepError};
use crate::compute::hotplug;

/// The QEMU block node and device id of a volume (also the guest's serial).
pub(super) fn node(vol: &str) -> String {
    vol.to_string()
}

fn file_node(vol: &str) -> String {
    format!("{vol}-file")
}

impl Inner {
    pub(super) async fn attach(&self, pool: &str, id: &str, inst: &str) -> Result<(), StepError> {
        let disk = self.volumes.qemu_disk(pool, id).await?;
        secure(&disk, self.rt.vm_owner(inst))?;
        let qmp = self.rt.qmp(inst).await?;
        // Plugged already (its QEMU came with it in a live migration): nothing to add.
        if hotplug::present(&qmp, id).await? {
            return Ok(());
        }
        let [file, raw] = disk.blockdev_nodes(&node(id));
        let added = async {
            for n in [file, raw] {
                let serde_json::Value::Object(m) = n else {
                    return Err(StepError::Backend("bad block node".into()));
                };
                qmp.blockdev_add(BlockdevAdd(m)).await?;
            }
            plug(&qmp, id).await
        }
        .await;
        if let Err(e) = added {
            // Leave the VM as it was.
            let _ = qmp.blockdev_del(&node(id)).await;
            let _ = qmp.blockdev_del(&file_node(id)).await;
            let _ = secure(&disk, None);
            return Err(e);
        }
        Ok(())
    }

    pub(super) async fn detach(
        &self,
        driver: &dyn VolumeDriver,
        id: &str,
        inst: &str,
    ) -> Result<(), StepError> {
        let qmp = self.rt.qmp(inst).await?;
        hotplug::unplug(&qmp, id, "disk")
            .await
            .map_err(|e| StepError::Backend(e.to_string()))?;
        for n in [node(id), file_node(id)] {
            if let Err(e) = qmp.blockdev_del(&n).await {
                if !hotplug::is_not_found(&e) {
                    return Err(e.into());
                }
            }
        }
        secure(&driver.qemu_drive(id).await?, None)?;
        Ok(())
    }
}

/// Plugs the block node `id` into a free hot-plug port as a virtio-blk disk
/// whose serial is the volume id.
async fn plug(qmp: &QmpClient, id: &str) -> Result<(), StepError> {
    let dev = DeviceAdd::new("virtio-blk-pci", id)
        .prop("drive", node(id))
        .prop("serial", id);
    hotplug::plug(qmp, dev)
        .await
        .map_err(|e| StepError::Backend(e.to_string()))
}
