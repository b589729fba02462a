//! `local`: a directory of sparse RAW files on one host.
//!
//! ```text
//! DIR/volumes/<volume>.raw            the volumes (sparse; st_blocks = physical use)
//! DIR/snapshots/<volume>/<snap>.raw   full-content snapshots
//! DIR/images/<base>.raw               imported base images (RAW)
//! DIR/.tmp/                           work files, published by link/rename
//! ```
//!
//! Snapshots, restores and clones copy files with `cp --reflink=always` when
//! the file system shares extents (XFS with reflink, btrfs, bcachefs) and with
//! `cp --sparse=always` otherwise (ext4, tmpfs): holes stay holes, but written
//! blocks are copied. [`LocalDriver::snapshot_method`] says which was detected.
//! A local volume only attaches to VMs on its own host.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::process::Command;
use tokio::sync::Mutex;

use crate::error::{Result, StorageError};
use crate::sizes::{validate_extend, validate_name};
use crate::{check, cmd, PoolUsage, QemuDisk, SnapshotInfo, VolumeDriver, VolumeInfo, VolumeUsage};

/// How the local driver copies files for snapshots, restores and clones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMethod {
    /// `cp --reflink=always`: shared extents, O(metadata), no extra space.
    Reflink,
    /// `cp --sparse=always`: a real copy of the written blocks; holes stay holes.
    SparseCopy,
}

impl SnapshotMethod {
    fn cp_flag(self) -> &'static str {
        match self {
            SnapshotMethod::Reflink => "--reflink=always",
            SnapshotMethod::SparseCopy => "--sparse=always",
        }
    }
}

pub struct LocalDriver {
    root: PathBuf,
    method: SnapshotMethod,
    /// Serialises mutations (snapshot vs restore vs delete of one volume).
    lock: Mutex<()>,
    tmp_seq: AtomicU64,
}

async fn mkdir(p: &Path) -> Result<()> {
    tokio::fs::create_dir_all(p)
        .await
        .map_err(|e| StorageError::io(format!("create {}", p.display()), e))
}

impl LocalDriver {
    /// Opens (creating if needed) a local pool in `root` and detects whether
    /// its file system can reflink.
    pub async fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for sub in ["volumes", "snapshots", "images", ".tmp"] {
            mkdir(&root.join(sub)).await?;
        }
        let probe = root.join(".tmp").join("reflink-probe");
        let probe2 = root.join(".tmp").join("reflink-probe.copy");
        tokio::fs::write(&probe, b"yunhan")
            .await
            .map_err(|e| StorageError::io(format!("write {}", probe.display()), e))?;
        let reflink = Command::new("cp")
            .arg("--reflink=always")
            .arg(&probe)
            .arg(&probe2)
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        let _ = tokio::fs::remove_file(&probe).await;
        let _ = tokio::fs::remove_file(&probe2).await;
        let method = if reflink {
            SnapshotMethod::Reflink
        } else {
            SnapshotMethod::SparseCopy
        };
        tracing::info!(root = %root.display(), ?method, "local volume pool");
        Ok(LocalDriver {
            root,
            method,
            lock: Mutex::new(()),
            tmp_seq: AtomicU64::new(0),
        })
    }

    /// Reflink or sparse copy, detected once at [`open`](Self::open).
    pub fn snapshot_method(&self) -> SnapshotMethod {
        self.method
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn volume_path(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(format!("{name}.raw"))
    }

    fn snap_dir(&self, volume: &str) -> PathBuf {
        self.root.join("snapshots").join(volume)
    }

    fn snap_path(&self, volume: &str, snap: &str) -> PathBuf {
        self.snap_dir(volume).join(format!("{snap}.raw"))
    }

    fn image_path(&self, base: &str) -> PathBuf {
        self.root.join("images").join(format!("{base}.raw"))
    }

    fn tmp_path(&self, what: &str) -> PathBuf {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        self.root
            .join(".tmp")
            .join(format!("{what}.{}.{n}", std::process::id()))
    }

    async fn meta(path: &Path) -> Option<std::fs::Metadata> {
        tokio::fs::metadata(path).await.ok()
    }

    async fn volume_meta(&self, name: &str) -> Result<std::fs::Metadata> {
        validate_name("volume", name)?;
        Self::meta(&self.volume_path(name))
            .await
            .ok_or_else(|| StorageError::not_found("volume", name))
    }

    async fn snap_meta(&self, volume: &str, snap: &str) -> Result<std::fs::Metadata> {
        validate_name("snapshot", snap)?;
        self.volume_meta(volume).await?;
        Self::meta(&self.snap_path(volume, snap))
            .await
            .ok_or_else(|| StorageError::not_found("snapshot", format!("{volume}@{snap}")))
    }

    /// Copies `src` to a fresh temp file with the detected method.
    async fn copy_to_tmp(&self, src: &Path, what: &str) -> Result<PathBuf> {
        let tmp = self.tmp_path(what);
        let mut c = Command::new("cp");
        c.arg(self.method.cp_flag()).arg(src).arg(&tmp);
        if let Err(e) = cmd::run(&mut c).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        Ok(tmp)
    }

    /// Publishes `tmp` as `dst` only if `dst` does not exist (link + unlink).
    async fn publish_new(tmp: &Path, dst: &Path, kind: &'static str, name: &str) -> Result<()> {
        let r = tokio::fs::hard_link(tmp, dst).await;
        let _ = tokio::fs::remove_file(tmp).await;
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StorageError::exists(kind, name))
            }
            Err(e) => Err(StorageError::io(format!("publish {}", dst.display()), e)),
        }
    }

    async fn set_len(path: &Path, len: u64) -> Result<()> {
        let f = tokio::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .await
            .map_err(|e| StorageError::io(format!("open {}", path.display()), e))?;
        f.set_len(len)
            .await
            .map_err(|e| StorageError::io(format!("resize {}", path.display()), e))
    }

    async fn names_in(dir: &Path) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut rd = match tokio::fs::read_dir(dir).await {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StorageError::io(format!("list {}", dir.display()), e)),
        };
        while let Some(e) = rd
            .next_entry()
            .await
            .map_err(|e| StorageError::io(format!("list {}", dir.display()), e))?
        {
            if let Some(n) = e.file_name().to_str().and_then(|n| n.strip_suffix(".raw")) {
                out.push(n.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    fn info_of(name: &str, meta: &std::fs::Metadata) -> VolumeInfo {
        VolumeInfo {
            name: name.to_string(),
            size_bytes: meta.len(),
            parent: None,
        }
    }
}

#[async_trait]
impl VolumeDriver for LocalDriver {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn create(&self, name: &str, size_bytes: u64) -> Result<VolumeInfo> {
        check::new_volume(name, size_bytes)?;
        let path = self.volume_path(name);
        let f = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => StorageError::exists("volume", name),
                _ => StorageError::io(format!("create {}", path.display()), e),
            })?;
        if let Err(e) = f.set_len(size_bytes).await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(StorageError::io(format!("size {}", path.display()), e));
        }
        Ok(VolumeInfo {
            name: name.to_string(),
            size_bytes,
            parent: None,
        })
    }

    async fn info(&self, name: &str) -> Result<VolumeInfo> {
        let m = self.volume_meta(name).await?;
        Ok(Self::info_of(name, &m))
    }

    async fn list(&self) -> Result<Vec<String>> {
        Self::names_in(&self.root.join("volumes")).await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let _g = self.lock.lock().await;
        self.volume_meta(name).await?;
        let path = self.volume_path(name);
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| StorageError::io(format!("delete {}", path.display()), e))?;
        match tokio::fs::remove_dir_all(self.snap_dir(name)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(format!("delete snapshots of {name}"), e)),
        }
    }

    async fn extend(&self, name: &str, new_size_bytes: u64) -> Result<VolumeInfo> {
        let _g = self.lock.lock().await;
        let m = self.volume_meta(name).await?;
        validate_extend(m.len(), new_size_bytes)?;
        if new_size_bytes > m.len() {
            Self::set_len(&self.volume_path(name), new_size_bytes).await?;
        }
        self.info(name).await
    }

    async fn snapshot(&self, volume: &str, snap: &str) -> Result<SnapshotInfo> {
        validate_name("snapshot", snap)?;
        let _g = self.lock.lock().await;
        let m = self.volume_meta(volume).await?;
        if Self::meta(&self.snap_path(volume, snap)).await.is_some() {
            return Err(StorageError::exists("snapshot", format!("{volume}@{snap}")));
        }
        mkdir(&self.snap_dir(volume)).await?;
        let tmp = self.copy_to_tmp(&self.volume_path(volume), "snap").await?;
        Self::publish_new(
            &tmp,
            &self.snap_path(volume, snap),
            "snapshot",
            &format!("{volume}@{snap}"),
        )
        .await?;
        Ok(SnapshotInfo {
            name: snap.to_string(),
            size_bytes: m.len(),
        })
    }

    async fn list_snapshots(&self, volume: &str) -> Result<Vec<SnapshotInfo>> {
        self.volume_meta(volume).await?;
        let mut out = Vec::new();
        for name in Self::names_in(&self.snap_dir(volume)).await? {
            if let Some(m) = Self::meta(&self.snap_path(volume, &name)).await {
                out.push(SnapshotInfo {
                    name,
                    size_bytes: m.len(),
                });
            }
        }
        Ok(out)
    }

    async fn delete_snapshot(&self, volume: &str, snap: &str) -> Result<()> {
        let _g = self.lock.lock().await;
        self.snap_meta(volume, snap).await?;
        let p = self.snap_path(volume, snap);
        tokio::fs::remove_file(&p)
            .await
            .map_err(|e| StorageError::io(format!("delete {}", p.display()), e))
    }

    async fn restore(&self, volume: &str, snap: &str) -> Result<()> {
        let _g = self.lock.lock().await;
        self.snap_meta(volume, snap).await?;
        let tmp = self
            .copy_to_tmp(&self.snap_path(volume, snap), "restore")
            .await?;
        let dst = self.volume_path(volume);
        tokio::fs::rename(&tmp, &dst).await.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            StorageError::io(format!("replace {}", dst.display()), e)
        })
    }

    async fn clone_from_snapshot(
        &self,
        volume: &str,
        snap: &str,
        new_volume: &str,
        size_bytes: Option<u64>,
    ) -> Result<VolumeInfo> {
        validate_name("volume", new_volume)?;
        let _g = self.lock.lock().await;
        let m = self.snap_meta(volume, snap).await?;
        let size = size_bytes.unwrap_or(m.len());
        validate_extend(m.len(), size)?;
        if Self::meta(&self.volume_path(new_volume)).await.is_some() {
            return Err(StorageError::exists("volume", new_volume));
        }
        let tmp = self
            .copy_to_tmp(&self.snap_path(volume, snap), "clone")
            .await?;
        if size > m.len() {
            if let Err(e) = Self::set_len(&tmp, size).await {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        }
        Self::publish_new(&tmp, &self.volume_path(new_volume), "volume", new_volume).await?;
        self.info(new_volume).await
    }

    async fn import_image(&self, path: &Path, base: &str) -> Result<bool> {
        validate_name("image", base)?;
        let dst = self.image_path(base);
        if Self::meta(&dst).await.is_some() {
            return Ok(false);
        }
        if Self::meta(path).await.is_none() {
            return Err(StorageError::not_found(
                "image file",
                path.display().to_string(),
            ));
        }
        let tmp = self.tmp_path("import");
        let mut c = Command::new("qemu-img");
        c.args(["convert", "-O", "raw", "-S", "4k"])
            .arg(path)
            .arg(&tmp);
        if let Err(e) = cmd::run(&mut c).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        match Self::publish_new(&tmp, &dst, "image", base).await {
            Ok(()) => Ok(true),
            // Someone else imported it meanwhile: that is the "once".
            Err(StorageError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn clone_for_root(
        &self,
        base: &str,
        new_volume: &str,
        size_bytes: u64,
    ) -> Result<VolumeInfo> {
        check::root_disk(base, new_volume, size_bytes)?;
        let src = self.image_path(base);
        let m = Self::meta(&src)
            .await
            .ok_or_else(|| StorageError::not_found("image", base))?;
        check::root_fits(base, size_bytes, m.len())?;
        if Self::meta(&self.volume_path(new_volume)).await.is_some() {
            return Err(StorageError::exists("volume", new_volume));
        }
        let tmp = self.copy_to_tmp(&src, "root").await?;
        if let Err(e) = Self::set_len(&tmp, size_bytes).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        Self::publish_new(&tmp, &self.volume_path(new_volume), "volume", new_volume).await?;
        self.info(new_volume).await
    }

    async fn delete_image(&self, base: &str) -> Result<()> {
        validate_name("image", base)?;
        let p = self.image_path(base);
        tokio::fs::remove_file(&p)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StorageError::not_found("image", base),
                _ => StorageError::io(format!("delete {}", p.display()), e),
            })
    }

    async fn usage(&self, volume: &str) -> Result<VolumeUsage> {
        let m = self.volume_meta(volume).await?;
        Ok(VolumeUsage {
            logical_bytes: m.len(),
            physical_bytes: m.blocks() * 512,
        })
    }

    async fn pool_usage(&self) -> Result<PoolUsage> {
        let mut logical = 0u64;
        for dir in ["volumes", "images"] {
            let dir = self.root.join(dir);
            for n in Self::names_in(&dir).await? {
                if let Some(m) = Self::meta(&dir.join(format!("{n}.raw"))).await {
                    logical = logical.saturating_add(m.len());
                }
            }
        }
        let root = self.root.clone();
        let st = tokio::task::spawn_blocking(move || nix::sys::statvfs::statvfs(&root))
            .await
            .map_err(|e| StorageError::io("statvfs", std::io::Error::other(e)))?
            .map_err(|e| StorageError::io(format!("statvfs {}", self.root.display()), e.into()))?;
        let frsize = st.fragment_size();
        let capacity = st.blocks().saturating_mul(frsize);
        let used = st
            .blocks()
            .saturating_sub(st.blocks_free())
            .saturating_mul(frsize);
        Ok(PoolUsage::new(logical, used, capacity))
    }

    async fn qemu_drive(&self, volume: &str) -> Result<QemuDisk> {
        self.volume_meta(volume).await?;
        Ok(QemuDisk::File {
            path: self.volume_path(volume),
        })
    }
}
