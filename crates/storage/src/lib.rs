//! Yunhan's block storage: volume drivers behind one trait.
//!
//! - [`LocalDriver`]: a directory of sparse RAW files on the host (snapshots by
//!   reflink where the file system can, sparse copy otherwise).
//! - [`CephDriver`]: RBD images in a Ceph pool, controlled with the `rbd`/`ceph`
//!   CLIs (`--format json`); QEMU opens them itself through librbd.
//!
//! Everything is thin provisioned: [`VolumeDriver::usage`] reports logical and
//! physical bytes, [`VolumeDriver::pool_usage`] the pool's allocation,
//! physical use, overcommit and the ≥ 80 % warning. `conformance` (feature
//! `test-util`) is the one behavioural suite both drivers pass
//! (`volume_conformance!`).
//!
//! The driver never talks to QEMU: [`VolumeDriver::qemu_drive`] says what to
//! give QEMU (`-blockdev` / QMP `blockdev-add`), and the agent does the rest
//! (attach, detach, `block_resize` after [`VolumeDriver::extend`]).
//!
//! Objects rather than volumes: [`rgw`] is S3 object storage on Ceph's own
//! gateway (radosgw), one RGW tenant per project ([`rgw::ObjectGateway`],
//! [`rgw::RgwAdmin`], and [`rgw::RgwDaemon`] to run a radosgw).

pub mod ceph;
#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
mod error;
pub mod local;
pub mod rgw;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use ceph::{CephCluster, CephDriver, ClusterHealth, FailureDomain, PoolSpec};
pub use error::{Result, StorageError};
pub use local::{LocalDriver, SnapshotMethod};
/// Size parsing/validation and thin-provisioning math (they live in `yunhan-types`).
pub use yunhan_types::sizes;

/// A volume as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    /// Logical size in bytes (what the guest sees).
    pub size_bytes: u64,
    /// The snapshot this volume was cloned from (`base@snap` / `vol@snap`),
    /// when the backend keeps that link (copy-on-write clones).
    pub parent: Option<String>,
}

/// A snapshot of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub name: String,
    /// The volume's size when the snapshot was taken.
    pub size_bytes: u64,
}

/// Thin-provisioning figures of one volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeUsage {
    /// What the guest sees.
    pub logical_bytes: u64,
    /// What the volume really occupies (its own blocks/objects; not its
    /// snapshots, not a clone's parent).
    pub physical_bytes: u64,
}

/// Thin-provisioning figures of a driver's pool.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PoolUsage {
    /// Sum of the logical sizes of every volume and base image in the pool.
    pub logical_allocated_bytes: u64,
    /// Physical bytes in use (local: the file system; ceph: data stored in the
    /// pool, before replication).
    pub physical_used_bytes: u64,
    /// What the pool can hold in the same units as `physical_used_bytes`.
    pub capacity_bytes: u64,
    /// `logical_allocated / capacity`.
    pub overcommit_ratio: f64,
    /// `physical_used / capacity`.
    pub used_ratio: f64,
    /// `physical_used ≥ 80 %` of capacity ([`sizes::WARN_PHYSICAL_PERCENT`]).
    pub warning: bool,
}

impl PoolUsage {
    /// Derives the ratios and the warning from the three measured figures.
    pub fn new(
        logical_allocated_bytes: u64,
        physical_used_bytes: u64,
        capacity_bytes: u64,
    ) -> Self {
        PoolUsage {
            logical_allocated_bytes,
            physical_used_bytes,
            capacity_bytes,
            overcommit_ratio: sizes::overcommit_ratio(logical_allocated_bytes, capacity_bytes),
            used_ratio: sizes::overcommit_ratio(physical_used_bytes, capacity_bytes),
            warning: sizes::physical_warning(physical_used_bytes, capacity_bytes),
        }
    }
}

/// What QEMU needs to open a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QemuDisk {
    /// A RAW file on this host.
    File { path: PathBuf },
    /// An RBD image opened by QEMU's librbd driver.
    Rbd {
        pool: String,
        image: String,
        /// ceph.conf (it names the keyring).
        conf: PathBuf,
        /// cephx user without the `client.` prefix.
        user: String,
    },
}

impl QemuDisk {
    /// The protocol node for `-blockdev` / QMP `blockdev-add`.
    pub fn protocol_node(&self, node_name: &str) -> Value {
        match self {
            QemuDisk::File { path } => json!({
                "driver": "file",
                "node-name": node_name,
                "filename": path,
                "cache": {"direct": false},
                "discard": "unmap",
            }),
            QemuDisk::Rbd {
                pool,
                image,
                conf,
                user,
            } => json!({
                "driver": "rbd",
                "node-name": node_name,
                "pool": pool,
                "image": image,
                "conf": conf,
                "user": user,
                "discard": "unmap",
            }),
        }
    }

    /// `[protocol node, raw format node]` to `blockdev-add` in that order;
    /// the device then uses `drive = node_name`.
    pub fn blockdev_nodes(&self, node_name: &str) -> [Value; 2] {
        let file = format!("{node_name}-file");
        [
            self.protocol_node(&file),
            json!({"driver": "raw", "node-name": node_name, "file": file, "discard": "unmap"}),
        ]
    }

    /// The legacy filename `qemu-img` / `qemu-io` accept (`-f raw`).
    pub fn filename(&self) -> String {
        match self {
            QemuDisk::File { path } => path.display().to_string(),
            QemuDisk::Rbd {
                pool,
                image,
                conf,
                user,
            } => format!("rbd:{pool}/{image}:conf={}:id={user}", conf.display()),
        }
    }
}

/// A volume backend. Names are validated by [`sizes::validate_name`], sizes
/// by [`sizes::validate_size`]; every refusal happens before the backend is
/// touched, so bad input leaves nothing behind.
///
/// Restoring or deleting a volume that a running VM has open is the caller's
/// business to prevent (detach first).
#[async_trait]
pub trait VolumeDriver: Send + Sync {
    /// `local` or `ceph`.
    fn kind(&self) -> &'static str;

    /// Creates an empty (all-zero, unallocated) volume.
    async fn create(&self, name: &str, size_bytes: u64) -> Result<VolumeInfo>;
    async fn info(&self, name: &str) -> Result<VolumeInfo>;
    /// Volume names, sorted (base images not included).
    async fn list(&self) -> Result<Vec<String>>;
    /// Deletes a volume and its snapshots. Refused with `InUse` while a
    /// snapshot still has copy-on-write clones.
    async fn delete(&self, name: &str) -> Result<()>;
    /// Grows a volume (online-safe: the agent then issues QMP `block_resize`).
    /// Shrinking is refused; the same size is a no-op.
    async fn extend(&self, name: &str, new_size_bytes: u64) -> Result<VolumeInfo>;

    async fn snapshot(&self, volume: &str, snap: &str) -> Result<SnapshotInfo>;
    async fn list_snapshots(&self, volume: &str) -> Result<Vec<SnapshotInfo>>;
    /// Refused with `InUse` while the snapshot has copy-on-write clones.
    async fn delete_snapshot(&self, volume: &str, snap: &str) -> Result<()>;
    /// Rolls the volume's content and size back to the snapshot.
    async fn restore(&self, volume: &str, snap: &str) -> Result<()>;
    /// A new volume from a snapshot (copy-on-write where the backend can),
    /// optionally larger than the snapshot.
    async fn clone_from_snapshot(
        &self,
        volume: &str,
        snap: &str,
        new_volume: &str,
        size_bytes: Option<u64>,
    ) -> Result<VolumeInfo>;

    /// Imports an image file (any format `qemu-img` reads) as base image
    /// `base`, once: `Ok(true)` if imported now, `Ok(false)` if it was there.
    async fn import_image(&self, path: &Path, base: &str) -> Result<bool>;
    /// A VM root disk from a base image, grown to `size_bytes` (≥ the image).
    async fn clone_for_root(
        &self,
        base: &str,
        new_volume: &str,
        size_bytes: u64,
    ) -> Result<VolumeInfo>;
    /// Deletes a base image (refused while root disks are cloned from it).
    async fn delete_image(&self, base: &str) -> Result<()>;

    async fn usage(&self, volume: &str) -> Result<VolumeUsage>;
    async fn pool_usage(&self) -> Result<PoolUsage>;

    /// What QEMU should open for this volume.
    async fn qemu_drive(&self, volume: &str) -> Result<QemuDisk>;
}

pub(crate) mod check {
    //! Argument checks both drivers make before they touch the backend.
    use crate::error::{Result, StorageError};
    use crate::sizes::{validate_name, validate_size};

    /// The name and size of a volume about to be made.
    pub fn new_volume(name: &str, size_bytes: u64) -> Result<()> {
        validate_name("volume", name)?;
        validate_size(size_bytes)?;
        Ok(())
    }

    /// `clone_for_root`'s arguments: the base image's name, then the root
    /// disk's name and size.
    pub fn root_disk(base: &str, volume: &str, size_bytes: u64) -> Result<()> {
        validate_name("image", base)?;
        new_volume(volume, size_bytes)
    }

    /// A root disk of `size_bytes` holds all of base image `base`
    /// (`image_size` bytes).
    pub fn root_fits(base: &str, size_bytes: u64, image_size: u64) -> Result<()> {
        if size_bytes < image_size {
            return Err(StorageError::invalid(format!(
                "a root disk of {size_bytes} bytes is smaller than image `{base}` ({image_size} bytes)"
            )));
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn root_fits_refuses_a_disk_smaller_than_its_image() {
            assert!(root_fits("deb", 2048, 2048).is_ok());
            assert_eq!(
                root_fits("deb", 1024, 2048).unwrap_err().to_string(),
                "invalid request: a root disk of 1024 bytes is smaller than image `deb` (2048 bytes)"
            );
        }
    }
}

pub(crate) mod cmd {
    //! Running backend commands with clear errors.
    use crate::error::{Result, StorageError};
    use std::process::Output;
    use tokio::process::Command;

    pub fn render(cmd: &Command) -> String {
        let std = cmd.as_std();
        std::iter::once(std.get_program().to_string_lossy().into_owned())
            .chain(std.get_args().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs `cmd` to completion; a spawn failure or non-zero exit becomes
    /// `Backend` (callers map known stderr texts to nicer errors first via
    /// `output`).
    pub async fn output(cmd: &mut Command) -> Result<Output> {
        cmd.kill_on_drop(true);
        cmd.output().await.map_err(|e| StorageError::Backend {
            command: render(cmd),
            stderr: format!("cannot run it: {e}"),
        })
    }

    /// stderr without progress lines (`Removing image: 10% complete...`).
    pub fn stderr_of(out: &Output) -> String {
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("% complete") && !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn backend(cmd: &Command, out: &Output) -> StorageError {
        StorageError::Backend {
            command: render(cmd),
            stderr: stderr_of(out),
        }
    }

    /// Runs `cmd`, returning stdout on success and `Backend` otherwise.
    pub async fn run(cmd: &mut Command) -> Result<Vec<u8>> {
        let out = output(cmd).await?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(backend(cmd, &out))
        }
    }
}
