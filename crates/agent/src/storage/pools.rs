//! The pools this host serves ([`Pools`], [`Volumes`]), the client
//! configuration QEMU opens Ceph images with, and the pool figures written to
//! the host's status.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use yunhan_model::{Host, PoolReport};
use yunhan_storage::{QemuDisk, StorageError, VolumeDriver};
use yunhan_store::objects::{ObjectError, Objects};

use super::reconciler::Inner;

/// The storage pools this host serves, by name.
pub type Pools = BTreeMap<String, Arc<dyn VolumeDriver>>;

/// A Ceph RBD pool the agent serves volumes from (created by the admin
/// configuration at startup: `--ceph-conf`, `--ceph-pool`).
#[derive(Debug, Clone)]
pub struct CephPool {
    pub cluster: yunhan_storage::CephCluster,
    pub pool: String,
}

/// The pools of this host and how QEMU opens their volumes; shared by the
/// storage reconciler (hot plug) and compute (VMs booting from a volume).
pub struct Volumes {
    pub(super) pools: Pools,
    /// The Ceph pool, if any, and the ceph.conf QEMU opens its images with
    /// (see [`qemu_ceph_conf`]).
    pub(super) ceph: Option<(CephPool, std::path::PathBuf)>,
}

impl Volumes {
    pub fn new(pools: Pools, ceph: Option<(CephPool, std::path::PathBuf)>) -> Volumes {
        Volumes { pools, ceph }
    }

    pub fn driver(&self, pool: &str) -> Option<Arc<dyn VolumeDriver>> {
        self.pools.get(pool).cloned()
    }

    /// What QEMU opens for volume `id` of `pool` (RBD: through the
    /// QEMU-readable client conf).
    pub async fn qemu_disk(&self, pool: &str, id: &str) -> Result<QemuDisk, StorageError> {
        let driver = self
            .driver(pool)
            .ok_or_else(|| StorageError::not_found("pool", pool))?;
        let mut disk = driver.qemu_drive(id).await?;
        if let (QemuDisk::Rbd { conf, .. }, Some((_, c))) = (&mut disk, &self.ceph) {
            conf.clone_from(c);
        }
        Ok(disk)
    }
}

/// Writes a client configuration QEMU can read for `cluster` into `dir`: the
/// monitors and a copy of the keyring, root-owned, readable by the QEMU group
/// only (every VM's QEMU runs under its own uid in that group, so the
/// operator's ceph.conf and keyring can stay private). Returns the conf path.
pub async fn qemu_ceph_conf(
    cluster: &yunhan_storage::CephCluster,
    dir: &Path,
    qemu_gid: Option<u32>,
) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let lookup = |key: &'static str| {
        let mut c = tokio::process::Command::new("ceph-conf");
        c.arg("-c").arg(&cluster.conf).args([
            "--name",
            &format!("client.{}", cluster.user),
            "--lookup",
            key,
        ]);
        async move {
            let out = c.output().await?;
            if !out.status.success() {
                return Err(std::io::Error::other(format!(
                    "ceph-conf --lookup {key}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
    };
    let mon_host = lookup("mon_host").await?;
    let keyring_src = match &cluster.keyring {
        Some(k) => k.clone(),
        None => lookup("keyring").await?.into(),
    };
    std::fs::create_dir_all(dir)?;
    let keyring = dir.join("keyring");
    let conf = dir.join("ceph.conf");
    std::fs::write(&keyring, std::fs::read(&keyring_src)?)?;
    std::fs::write(
        &conf,
        format!(
            "# Written by the Yunhan agent for QEMU's librbd.\n[global]\nmon host = {mon_host}\nkeyring = {}\nadmin socket =\nlog file = /dev/null\n",
            keyring.display()
        ),
    )?;
    // Every VM's QEMU (its own uid, the QEMU group) opens both through librbd:
    // group-readable files, a directory it may only traverse.
    for (path, mode) in [
        (dir, 0o710),
        (keyring.as_path(), 0o640),
        (conf.as_path(), 0o640),
    ] {
        if let Some(gid) = qemu_gid {
            nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(conf)
}

/// The local volume pool (`yunhan_storage::LocalDriver` in `<state_dir>/volumes`)
/// and its modes, set before the pool opens: QEMU opens a plugged volume's file
/// (0600, owned by that VM's uid) by path, so it may traverse to
/// `volumes/volumes`, never list it; snapshots, images and scratch files are
/// the agent's alone.
pub const LOCAL_POOL_DIRS: &[(&str, u32)] = &[
    ("volumes", 0o711),
    ("volumes/volumes", 0o711),
    ("volumes/snapshots", 0o700),
    ("volumes/images", 0o700),
    ("volumes/.tmp", 0o700),
];

impl Inner {
    pub(super) async fn report_pools(&self, objects: &Objects) -> Result<(), ObjectError> {
        let mut reports = Vec::new();
        for (name, driver) in &self.volumes.pools {
            let mut r = PoolReport {
                name: name.clone(),
                driver: driver.kind().into(),
                ..Default::default()
            };
            match driver.pool_usage().await {
                Ok(u) => {
                    r.logical_allocated_bytes = u.logical_allocated_bytes;
                    r.physical_used_bytes = u.physical_used_bytes;
                    r.capacity_bytes = u.capacity_bytes;
                    r.overcommit_ratio = u.overcommit_ratio;
                    r.used_ratio = u.used_ratio;
                    r.warning = u.warning;
                }
                Err(e) => r.message = e.to_string(),
            }
            if driver.kind() == "local" {
                r.redundancy = "none (host file system)".into();
            }
            if let Some((c, _)) = &self.volumes.ceph {
                if c.pool == *name {
                    ceph_figures(c, &mut r).await;
                }
            }
            reports.push(r);
        }
        let me = self.host_id.clone();
        objects
            .modify::<Host>(&me, |h| {
                // Ratios wobble with every write: only meaningful changes.
                let changed = h.status.pools != reports;
                h.status.pools = reports.clone();
                changed
            })
            .await
            .map(drop)
    }
}

/// Cluster health and the pool's redundancy, for `yunhan storage status`.
async fn ceph_figures(c: &CephPool, r: &mut PoolReport) {
    match c.cluster.health().await {
        Ok(h) => {
            let checks: Vec<String> = h
                .checks
                .iter()
                .map(|(code, msg)| format!("{code}: {msg}"))
                .collect();
            r.health = std::iter::once(h.status.clone())
                .chain(checks)
                .collect::<Vec<_>>()
                .join("; ");
        }
        Err(e) => r.health = format!("unknown: {e}"),
    }
    match c.cluster.pool_redundancy(&c.pool).await {
        Ok(p) => {
            r.redundancy = format!(
                "replicated size {} min_size {}, failure domain {}",
                p.size,
                p.min_size,
                p.failure_domain.as_deref().unwrap_or("?")
            )
        }
        Err(e) => r.message = e.to_string(),
    }
}
