//! Shared storage for the HA monitor: an instance can restart on another host
//! when it boots from a volume in the Ceph pool and every volume attached to
//! it is there too; fencing blocklists the clients (QEMUs) watching those RBD
//! images, which at that moment can only be the lost host's.

use async_trait::async_trait;
use yunhan_controller::ha::{SharedStorage, SharedStorageError};
use yunhan_model::{Doc, Host, Instance, Volume};
use yunhan_storage::{CephDriver, StorageError};
use yunhan_store::objects::Objects;

pub struct CephShared {
    pub pool: yunhan_agent::storage::CephPool,
}

impl CephShared {
    /// The volume ids of `inst`'s disks: its boot volume and attached volumes,
    /// each with its pool.
    async fn disks(
        objects: &Objects,
        inst: &Doc<Instance>,
    ) -> Result<Vec<(String, String)>, SharedStorageError> {
        let vols = objects
            .list_all::<Volume>(inst.metadata.project.as_deref())
            .await?;
        Ok(vols
            .into_iter()
            .filter(|v| {
                inst.spec.boot_volume.as_deref() == Some(v.metadata.id.as_str())
                    || v.spec.instance.as_deref() == Some(inst.metadata.id.as_str())
            })
            .map(|v| (v.metadata.id, v.spec.pool))
            .collect())
    }
}

#[async_trait]
impl SharedStorage for CephShared {
    async fn portable(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
    ) -> Result<(), SharedStorageError> {
        if inst.spec.boot_volume.is_none() {
            return Err(SharedStorageError::ImageRoot {
                pool: self.pool.pool.clone(),
            });
        }
        match Self::disks(objects, inst)
            .await?
            .into_iter()
            .find(|(_, pool)| *pool != self.pool.pool)
        {
            Some((volume, pool)) => Err(SharedStorageError::LocalVolume { volume, pool }),
            None => Ok(()),
        }
    }

    async fn fence(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
        host: &Doc<Host>,
    ) -> Result<(), SharedStorageError> {
        let backend = |e: StorageError| SharedStorageError::Backend(Box::new(e));
        let driver = CephDriver::open(self.pool.cluster.clone(), &self.pool.pool)
            .await
            .map_err(backend)?;
        for (id, _) in Self::disks(objects, inst).await? {
            for addr in driver.watchers(&id).await.map_err(backend)? {
                self.pool
                    .cluster
                    .blocklist_add(&addr)
                    .await
                    .map_err(backend)?;
                tracing::warn!(instance = %inst.metadata.id, host = %host.metadata.name, volume = %id, client = %addr, "fenced: blocklisted the lost host's client");
            }
        }
        Ok(())
    }
}
