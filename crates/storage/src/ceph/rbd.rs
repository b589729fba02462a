//! The RBD volume driver: volumes, snapshots, clones and base images as RBD
//! images in one pool, through the `rbd` CLI.

use std::path::Path;

use async_trait::async_trait;
use nix::errno::Errno;
use serde_json::Value;
use tokio::process::Command;

use super::{errno_of, u64_at, CephCluster};
use crate::error::{Result, StorageError};
use crate::sizes::{validate_extend, validate_name};
use crate::{check, cmd, PoolUsage, QemuDisk, SnapshotInfo, VolumeDriver, VolumeInfo, VolumeUsage};

/// Base images live under this RBD name prefix (never a volume name).
const IMAGE_PREFIX: &str = ".img.";
/// The protected snapshot of a base image that root disks clone.
const BASE_SNAP: &str = "base";

/// Volumes as RBD images in one pool.
pub struct CephDriver {
    cluster: CephCluster,
    pool: String,
}

impl CephDriver {
    /// A driver for `pool`, which must exist (see [`CephCluster::ensure_pool`]).
    pub async fn open(cluster: CephCluster, pool: &str) -> Result<Self> {
        validate_name("pool", pool)?;
        if !cluster.pool_exists(pool).await? {
            return Err(StorageError::not_found("pool", pool));
        }
        Ok(CephDriver {
            cluster,
            pool: pool.to_string(),
        })
    }

    pub fn cluster(&self) -> &CephCluster {
        &self.cluster
    }

    pub fn pool(&self) -> &str {
        &self.pool
    }

    fn spec(&self, image: &str) -> String {
        format!("{}/{image}", self.pool)
    }

    fn base_image(base: &str) -> String {
        format!("{IMAGE_PREFIX}{base}")
    }

    /// Runs an `rbd` command; ENOENT/EEXIST/EBUSY become the given errors.
    async fn rbd(&self, args: &[&str], on: OnErrno<'_>) -> Result<Vec<u8>> {
        let mut c = self.cluster.rbd();
        c.args(args);
        let out = cmd::output(&mut c).await?;
        match errno_of(&out) {
            Ok(()) => Ok(out.stdout),
            Err(Some(Errno::ENOENT)) if on.enoent.is_some() => {
                let (k, n) = on.enoent.unwrap_or_default();
                Err(StorageError::not_found(k, n))
            }
            Err(Some(Errno::EEXIST)) if on.eexist.is_some() => {
                let (k, n) = on.eexist.unwrap_or_default();
                Err(StorageError::exists(k, n))
            }
            _ => Err(cmd::backend(&c, &out)),
        }
    }

    async fn rbd_json(&self, args: &[&str], on: OnErrno<'_>) -> Result<Value> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--format", "json"]);
        let out = self.rbd(&all, on).await?;
        serde_json::from_slice(&out).map_err(|e| StorageError::Backend {
            command: format!("rbd {}", all.join(" ")),
            stderr: format!("unparsable JSON ({e})"),
        })
    }

    /// `rbd du` over the whole pool. It walks every image, so an image deleted
    /// during the walk makes it fail with ENOENT although the pool is fine:
    /// that is retried, and only a pool that really is gone is NotFound.
    async fn pool_du(&self) -> Result<Value> {
        let mut attempts = 0;
        loop {
            match self
                .rbd_json(
                    &["du", "-p", &self.pool],
                    OnErrno::enoent("pool", &self.pool),
                )
                .await
            {
                Err(e) if e.is_not_found() && attempts < 5 => {
                    if !self.cluster.pool_exists(&self.pool).await? {
                        return Err(e);
                    }
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    /// The clients watching `volume` (`ip:port/nonce` each): the QEMUs that
    /// have it open.
    pub async fn watchers(&self, volume: &str) -> Result<Vec<String>> {
        validate_name("volume", volume)?;
        let v = self
            .rbd_json(
                &["status", &self.spec(volume)],
                OnErrno::enoent("volume", volume),
            )
            .await?;
        Ok(v.get("watchers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|w| w.get("address").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn image_info(&self, image: &str, kind: &'static str, shown: &str) -> Result<Value> {
        self.rbd_json(&["info", &self.spec(image)], OnErrno::enoent(kind, shown))
            .await
    }

    async fn snaps(&self, image: &str) -> Result<Vec<Value>> {
        let v = self
            .rbd_json(
                &["snap", "ls", &self.spec(image)],
                OnErrno::enoent("volume", image),
            )
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    async fn snap_of(&self, volume: &str, snap: &str) -> Result<Value> {
        validate_name("volume", volume)?;
        validate_name("snapshot", snap)?;
        self.snaps(volume)
            .await?
            .into_iter()
            .find(|s| s.get("name").and_then(Value::as_str) == Some(snap))
            .ok_or_else(|| StorageError::not_found("snapshot", format!("{volume}@{snap}")))
    }

    fn is_protected(snap: &Value) -> bool {
        snap.get("protected").and_then(Value::as_str) == Some("true")
    }

    /// Clones of `image@snap` (`pool/name` each).
    async fn children(&self, image: &str, snap: &str) -> Result<Vec<String>> {
        let v = self
            .rbd_json(
                &["children", &format!("{}@{snap}", self.spec(image))],
                OnErrno::enoent("snapshot", &format!("{image}@{snap}")),
            )
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| {
                        Some(format!(
                            "{}/{}",
                            c.get("pool")?.as_str()?,
                            c.get("image")?.as_str()?
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Unprotects and deletes one snapshot, refusing while it has clones.
    async fn remove_snapshot(&self, image: &str, snap: &Value) -> Result<()> {
        let name = snap.get("name").and_then(Value::as_str).unwrap_or_default();
        let at = format!("{}@{name}", self.spec(image));
        if Self::is_protected(snap) {
            let kids = self.children(image, name).await?;
            if !kids.is_empty() {
                return Err(StorageError::InUse {
                    what: format!("snapshot {image}@{name}"),
                    by: format!("its clones {} (delete them first)", kids.join(", ")),
                });
            }
            self.rbd(&["snap", "unprotect", &at], OnErrno::none())
                .await?;
        }
        self.rbd(&["snap", "rm", &at], OnErrno::none())
            .await
            .map(drop)
    }

    /// Deletes an RBD image and its snapshots (InUse if any has clones).
    async fn remove_image(&self, image: &str, kind: &'static str, shown: &str) -> Result<()> {
        let snaps = self.snaps(image).await.map_err(|e| match e {
            StorageError::NotFound { .. } => StorageError::not_found(kind, shown),
            e => e,
        })?;
        // Check every snapshot before changing anything.
        for s in &snaps {
            let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
            if Self::is_protected(s) && !self.children(image, name).await?.is_empty() {
                return Err(StorageError::InUse {
                    what: format!("{kind} {shown}"),
                    by: format!(
                        "snapshot `{name}` has clones: {} (delete them first)",
                        self.children(image, name).await?.join(", ")
                    ),
                });
            }
        }
        for s in &snaps {
            self.remove_snapshot(image, s).await?;
        }
        let mut c = self.cluster.rbd();
        c.args(["rm", &self.spec(image)]);
        let out = cmd::output(&mut c).await?;
        match errno_of(&out) {
            Ok(()) => Ok(()),
            Err(Some(Errno::ENOENT)) => Err(StorageError::not_found(kind, shown)),
            Err(Some(Errno::EBUSY)) | Err(Some(Errno::ENOTEMPTY)) => Err(StorageError::InUse {
                what: format!("{kind} {shown}"),
                by: cmd::stderr_of(&out),
            }),
            _ => Err(cmd::backend(&c, &out)),
        }
    }

    fn info_of(name: &str, v: &Value) -> VolumeInfo {
        let parent = v.get("parent").and_then(|p| {
            let image = p.get("image")?.as_str()?;
            let snap = p.get("snapshot")?.as_str()?;
            let image = image.strip_prefix(IMAGE_PREFIX).unwrap_or(image);
            Some(format!("{image}@{snap}"))
        });
        VolumeInfo {
            name: name.to_string(),
            size_bytes: u64_at(v, "size"),
            parent,
        }
    }

    /// `rbd clone` of a protected snapshot, resized to `size`; removed again
    /// if the resize fails.
    async fn clone_to(
        &self,
        from: &str,
        new_volume: &str,
        size: Option<u64>,
    ) -> Result<VolumeInfo> {
        self.rbd(
            &["clone", from, &self.spec(new_volume)],
            OnErrno::eexist("volume", new_volume),
        )
        .await?;
        if let Some(size) = size {
            if let Err(e) = self.resize(new_volume, size).await {
                let _ = self.remove_image(new_volume, "volume", new_volume).await;
                return Err(e);
            }
        }
        self.info(new_volume).await
    }

    async fn resize(&self, image: &str, size: u64) -> Result<()> {
        self.rbd(
            &["resize", "--size", &format!("{size}B"), &self.spec(image)],
            OnErrno::enoent("volume", image),
        )
        .await
        .map(drop)
    }

    /// Protects `image@snap` unless it already is.
    async fn ensure_protected(&self, image: &str, snap: &Value) -> Result<()> {
        if Self::is_protected(snap) {
            return Ok(());
        }
        let name = snap.get("name").and_then(Value::as_str).unwrap_or_default();
        let mut c = self.cluster.rbd();
        c.args(["snap", "protect", &format!("{}@{name}", self.spec(image))]);
        let out = cmd::output(&mut c).await?;
        // EBUSY: protected meanwhile by a concurrent clone.
        match errno_of(&out) {
            Ok(()) | Err(Some(Errno::EBUSY)) => Ok(()),
            _ => Err(cmd::backend(&c, &out)),
        }
    }
}

/// Which exit statuses of an `rbd` command map to NotFound/AlreadyExists.
#[derive(Default, Clone, Copy)]
struct OnErrno<'a> {
    enoent: Option<(&'static str, &'a str)>,
    eexist: Option<(&'static str, &'a str)>,
}

impl<'a> OnErrno<'a> {
    fn none() -> Self {
        OnErrno::default()
    }
    fn enoent(kind: &'static str, name: &'a str) -> Self {
        OnErrno {
            enoent: Some((kind, name)),
            eexist: None,
        }
    }
    fn eexist(kind: &'static str, name: &'a str) -> Self {
        OnErrno {
            enoent: None,
            eexist: Some((kind, name)),
        }
    }
}

#[async_trait]
impl VolumeDriver for CephDriver {
    fn kind(&self) -> &'static str {
        "ceph"
    }

    async fn create(&self, name: &str, size_bytes: u64) -> Result<VolumeInfo> {
        check::new_volume(name, size_bytes)?;
        self.rbd(
            &[
                "create",
                "--image-format",
                "2",
                "--size",
                &format!("{size_bytes}B"),
                &self.spec(name),
            ],
            OnErrno::eexist("volume", name),
        )
        .await?;
        Ok(VolumeInfo {
            name: name.to_string(),
            size_bytes,
            parent: None,
        })
    }

    async fn info(&self, name: &str) -> Result<VolumeInfo> {
        validate_name("volume", name)?;
        let v = self.image_info(name, "volume", name).await?;
        Ok(Self::info_of(name, &v))
    }

    async fn list(&self) -> Result<Vec<String>> {
        let v = self
            .rbd_json(&["ls", &self.pool], OnErrno::enoent("pool", &self.pool))
            .await?;
        let mut names: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|n| !n.starts_with('.'))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        Ok(names)
    }

    async fn delete(&self, name: &str) -> Result<()> {
        validate_name("volume", name)?;
        self.remove_image(name, "volume", name).await
    }

    async fn extend(&self, name: &str, new_size_bytes: u64) -> Result<VolumeInfo> {
        let cur = self.info(name).await?;
        validate_extend(cur.size_bytes, new_size_bytes)?;
        if new_size_bytes > cur.size_bytes {
            self.resize(name, new_size_bytes).await?;
        }
        self.info(name).await
    }

    async fn snapshot(&self, volume: &str, snap: &str) -> Result<SnapshotInfo> {
        validate_name("volume", volume)?;
        validate_name("snapshot", snap)?;
        let info = self.info(volume).await?;
        let at = format!("{volume}@{snap}");
        self.rbd(
            &["snap", "create", &format!("{}@{snap}", self.spec(volume))],
            OnErrno {
                enoent: Some(("volume", volume)),
                eexist: Some(("snapshot", &at)),
            },
        )
        .await?;
        Ok(SnapshotInfo {
            name: snap.to_string(),
            size_bytes: info.size_bytes,
        })
    }

    async fn list_snapshots(&self, volume: &str) -> Result<Vec<SnapshotInfo>> {
        validate_name("volume", volume)?;
        Ok(self
            .snaps(volume)
            .await?
            .iter()
            .filter_map(|s| {
                Some(SnapshotInfo {
                    name: s.get("name")?.as_str()?.to_string(),
                    size_bytes: u64_at(s, "size"),
                })
            })
            .collect())
    }

    async fn delete_snapshot(&self, volume: &str, snap: &str) -> Result<()> {
        let s = self.snap_of(volume, snap).await?;
        self.remove_snapshot(volume, &s).await
    }

    async fn restore(&self, volume: &str, snap: &str) -> Result<()> {
        self.snap_of(volume, snap).await?;
        self.rbd(
            &["snap", "rollback", &format!("{}@{snap}", self.spec(volume))],
            OnErrno::enoent("snapshot", &format!("{volume}@{snap}")),
        )
        .await
        .map(drop)
    }

    async fn clone_from_snapshot(
        &self,
        volume: &str,
        snap: &str,
        new_volume: &str,
        size_bytes: Option<u64>,
    ) -> Result<VolumeInfo> {
        validate_name("volume", new_volume)?;
        let s = self.snap_of(volume, snap).await?;
        let snap_size = u64_at(&s, "size");
        if let Some(size) = size_bytes {
            validate_extend(snap_size, size)?;
        }
        // Checked first so a taken name does not leave a protected snapshot behind.
        if self.info(new_volume).await.is_ok() {
            return Err(StorageError::exists("volume", new_volume));
        }
        self.ensure_protected(volume, &s).await?;
        let from = format!("{}@{snap}", self.spec(volume));
        self.clone_to(&from, new_volume, size_bytes.filter(|&s| s > snap_size))
            .await
    }

    async fn import_image(&self, path: &Path, base: &str) -> Result<bool> {
        validate_name("image", base)?;
        let image = Self::base_image(base);
        if let Ok(snaps) = self.snaps(&image).await {
            if snaps.iter().any(|s| {
                s.get("name").and_then(Value::as_str) == Some(BASE_SNAP) && Self::is_protected(s)
            }) {
                return Ok(false);
            }
            // A half-finished import (crash between convert and protect): redo it.
            self.remove_image(&image, "image", base).await?;
        }
        if tokio::fs::metadata(path).await.is_err() {
            return Err(StorageError::not_found(
                "image file",
                path.display().to_string(),
            ));
        }
        let target = QemuDisk::Rbd {
            pool: self.pool.clone(),
            image: image.clone(),
            conf: self.cluster.conf.clone(),
            user: self.cluster.user.clone(),
        };
        let mut c = Command::new("qemu-img");
        c.args(["convert", "-O", "raw"])
            .arg(path)
            .arg(target.filename());
        let r = async {
            cmd::run(&mut c).await?;
            let at = format!("{}@{BASE_SNAP}", self.spec(&image));
            self.rbd(&["snap", "create", &at], OnErrno::none()).await?;
            self.rbd(&["snap", "protect", &at], OnErrno::none()).await?;
            Ok(())
        }
        .await;
        if let Err(e) = r {
            let _ = self.remove_image(&image, "image", base).await;
            return Err(e);
        }
        Ok(true)
    }

    async fn clone_for_root(
        &self,
        base: &str,
        new_volume: &str,
        size_bytes: u64,
    ) -> Result<VolumeInfo> {
        check::root_disk(base, new_volume, size_bytes)?;
        let image = Self::base_image(base);
        let v = self.image_info(&image, "image", base).await?;
        let image_size = u64_at(&v, "size");
        check::root_fits(base, size_bytes, image_size)?;
        let from = format!("{}@{BASE_SNAP}", self.spec(&image));
        self.clone_to(
            &from,
            new_volume,
            (size_bytes > image_size).then_some(size_bytes),
        )
        .await
    }

    async fn delete_image(&self, base: &str) -> Result<()> {
        validate_name("image", base)?;
        self.remove_image(&Self::base_image(base), "image", base)
            .await
    }

    async fn usage(&self, volume: &str) -> Result<VolumeUsage> {
        validate_name("volume", volume)?;
        let v = self
            .rbd_json(
                &["du", &self.spec(volume)],
                OnErrno::enoent("volume", volume),
            )
            .await?;
        let head = v
            .get("images")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|i| i.get("snapshot").is_none()))
            .cloned()
            .unwrap_or_default();
        Ok(VolumeUsage {
            logical_bytes: u64_at(&head, "provisioned_size"),
            physical_bytes: u64_at(&head, "used_size"),
        })
    }

    async fn pool_usage(&self) -> Result<PoolUsage> {
        let du = self.pool_du().await?;
        let df = self.cluster.ceph_json(&["df"]).await?;
        let stats = df
            .get("pools")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|p| p.get("name").and_then(Value::as_str) == Some(&self.pool))
            })
            .and_then(|p| p.get("stats"))
            .cloned();
        // `stored` is data before replication; `max_avail` is what can still be
        // stored given the replication and the fullest OSD.
        let (stored, capacity) = match stats {
            Some(stats) => {
                let stored = u64_at(&stats, "stored");
                (stored, stored.saturating_add(u64_at(&stats, "max_avail")))
            }
            // A pool the mgr has not reported yet: empty, and the raw space
            // left divided by its replication.
            None => {
                let size = self.cluster.pool_redundancy(&self.pool).await?.size.max(1);
                let avail = df
                    .pointer("/stats/total_avail_bytes")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                (0, avail / u64::from(size))
            }
        };
        Ok(PoolUsage::new(
            u64_at(&du, "total_provisioned_size"),
            stored,
            capacity,
        ))
    }

    async fn qemu_drive(&self, volume: &str) -> Result<QemuDisk> {
        self.info(volume).await?;
        Ok(QemuDisk::Rbd {
            pool: self.pool.clone(),
            image: volume.to_string(),
            conf: self.cluster.conf.clone(),
            user: self.cluster.user.clone(),
        })
    }
}
