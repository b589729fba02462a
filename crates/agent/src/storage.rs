//! The storage data plane: converges the volumes and snapshots bound to this
//! host (`Volume.status.host`, written by the binder) through the pool's
//! [`VolumeDriver`], and plugs volumes into this host's VMs over QMP
//! (`blockdev-add` + `device_add virtio-blk-pci` on a free PCIe root port;
//! `device_del`, wait for `DEVICE_DELETED`, `blockdev-del`; `block_resize`
//! after an extend). Design note: docs/storage.md.
//!
//! Level-triggered like compute: every pass compares what the store wants
//! with what the backend and the VMs have, a pure [`decide`] picks one step
//! per volume, and status is written with compare-and-swap. One operation per
//! volume at a time (its snapshots included).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use yunhan_model::{
    Doc, Host, Image, Instance, InstancePhase, PoolReport, Snapshot, SnapshotPhase, Volume,
    VolumePhase, VolumeSource, VolumeStatus,
};
use yunhan_qmp::{BlockdevAdd, DeviceAdd, Qmp, QmpClient};
use yunhan_storage::{QemuDisk, StorageError, VolumeDriver};
use yunhan_store::objects::{object_prefix, ObjectError, Objects};
use yunhan_store::reconcile::Reconciler;

use crate::compute::hotplug;
use crate::compute::runtime::Runtime;
use crate::ops::{lock, Ops};

/// How often pool figures are written to the host's status.
const POOL_REPORT_EVERY: Duration = Duration::from_secs(10);
/// How long a settled volume's backend facts (existence, size, usage) are
/// trusted from its status before the backend is asked again (`rbd info` and
/// `rbd du` are CLI calls).
const RECHECK_EVERY: Duration = Duration::from_secs(30);

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
    pools: Pools,
    /// The Ceph pool, if any, and the ceph.conf QEMU opens its images with
    /// (see [`qemu_ceph_conf`]).
    ceph: Option<(CephPool, std::path::PathBuf)>,
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

/// What the agent sees of one volume, besides its document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The backend's size of the volume; None when it does not exist.
    pub backend_size: Option<u64>,
    /// The instance the volume is plugged into now: `status.attached_to` if
    /// that VM still runs the same QEMU it was plugged into.
    pub plugged: Option<String>,
    /// `spec.instance` if that VM runs on this host now (so it can be plugged).
    pub target_running: Option<String>,
    /// The instance booting from this volume (its root disk, on QEMU's
    /// command line: never hot-plugged).
    pub root_of: Option<String>,
}

/// One step for one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    Attach(String),
    Detach(String),
    Extend,
    Restore,
    /// Remove from the backend, then the object.
    Delete,
    /// Bring phase, attachment and usage figures in status up to date.
    Report,
    Nothing,
}

/// The next step, a pure function of the volume and what is observed:
///
/// - deleting → unplug first, then delete;
/// - missing in the backend → unplug if plugged, else create (unless the
///   create failed: the user deletes the volume);
/// - a restore requested → unplug, then restore;
/// - smaller than the spec → extend (and `block_resize` if plugged);
/// - plugged where it should not be → unplug; wanted in a running VM → plug;
/// - otherwise report.
pub fn decide(vol: &Doc<Volume>, obs: &Observed) -> Action {
    if vol.metadata.deleting.is_some() {
        return match &obs.plugged {
            Some(i) => Action::Detach(i.clone()),
            None => Action::Delete,
        };
    }
    let Some(size) = obs.backend_size else {
        // Gone from under a VM (someone removed it): unplug first.
        return match (&obs.plugged, vol.status.phase) {
            (Some(i), _) => Action::Detach(i.clone()),
            (None, VolumePhase::Failed) => Action::Nothing,
            (None, _) => Action::Create,
        };
    };
    let restore_pending = vol
        .spec
        .restore
        .as_ref()
        .is_some_and(|r| r.generation > vol.status.restore_generation);
    if restore_pending {
        return match &obs.plugged {
            Some(i) => Action::Detach(i.clone()),
            None => Action::Restore,
        };
    }
    if size < vol.spec.size_bytes {
        return Action::Extend;
    }
    if obs.root_of.is_some() {
        return Action::Report;
    }
    match (&obs.plugged, &obs.target_running) {
        (Some(p), t) if t.as_ref() != Some(p) => Action::Detach(p.clone()),
        (None, Some(t)) => Action::Attach(t.clone()),
        _ => Action::Report,
    }
}

/// The status a settled volume should report (usage figures aside): its
/// phase and where it is plugged, from what is observed.
pub fn reported(status: &VolumeStatus, obs: &Observed) -> VolumeStatus {
    let mut s = status.clone();
    let plugged = obs.plugged.clone().or_else(|| obs.root_of.clone());
    if obs.root_of.is_some() {
        s.attached_to.clone_from(&plugged);
        s.attached_since = None;
        s.device = Some("root".into());
    } else if plugged.is_none() {
        s.attached_to = None;
        s.attached_since = None;
        s.device = None;
    }
    let phase = if plugged.is_some() {
        VolumePhase::InUse
    } else {
        VolumePhase::Available
    };
    if s.phase != phase {
        s.phase = phase;
        s.message.clear();
    }
    s
}

/// The QEMU block node and device id of a volume (also the guest's serial).
fn node(vol: &str) -> String {
    vol.to_string()
}

fn file_node(vol: &str) -> String {
    format!("{vol}-file")
}

/// The storage reconciler of one host.
pub struct Storage {
    inner: Arc<Inner>,
    ops: Ops,
    reported: Mutex<Option<Instant>>,
    /// When each settled volume was last checked against its backend.
    checked: Mutex<HashMap<String, Instant>>,
}

struct Inner {
    host_id: String,
    volumes: Arc<Volumes>,
    rt: Arc<Runtime>,
}

impl Storage {
    pub fn new(host_id: String, volumes: Arc<Volumes>, rt: Arc<Runtime>) -> Storage {
        Storage {
            inner: Arc::new(Inner {
                host_id,
                volumes,
                rt,
            }),
            ops: Ops::default(),
            reported: Mutex::new(None),
            checked: Default::default(),
        }
    }
}

/// Whether `inst` runs on this host now, and the QEMU start it runs in.
fn running_here<'a>(inner: &Inner, inst: Option<&'a Doc<Instance>>) -> Option<&'a str> {
    let inst = inst?;
    let here = inst.status.host.as_deref() == Some(inner.host_id.as_str())
        && inst.status.phase == InstancePhase::Running
        && inst.metadata.deleting.is_none()
        && inner.rt.running_pid(&inst.metadata.id).is_some();
    here.then_some(inst.status.started_at.as_deref()?)
}

#[async_trait]
impl Reconciler for Storage {
    fn name(&self) -> &'static str {
        "agent-storage"
    }
    fn watches(&self) -> Vec<String> {
        vec![
            object_prefix::<Volume>(None),
            object_prefix::<Snapshot>(None),
            object_prefix::<Instance>(None),
        ]
    }
    fn resync(&self) -> Duration {
        Duration::from_secs(2)
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        self.ops.reap("storage");
        let me = self.inner.host_id.clone();
        let volumes: Vec<Doc<Volume>> = objects
            .list_all::<Volume>(None)
            .await?
            .into_iter()
            .filter(|v| v.status.host.as_deref() == Some(me.as_str()))
            .collect();
        let instances: HashMap<String, Doc<Instance>> = objects
            .list_all::<Instance>(None)
            .await?
            .into_iter()
            .map(|i| (i.metadata.id.clone(), i))
            .collect();
        let snapshots = objects.list_all::<Snapshot>(None).await?;
        // Snapshots of this host's volumes first (serialised with their
        // volume, whose routine report would otherwise always be in the way).
        let mine: HashMap<&str, &Doc<Volume>> = volumes
            .iter()
            .map(|v| (v.metadata.id.as_str(), v))
            .collect();
        for snap in snapshots {
            let Some(vol) = mine.get(snap.spec.volume.as_str()) else {
                continue;
            };
            let wanted =
                snap.metadata.deleting.is_some() || snap.status.phase == SnapshotPhase::Creating;
            let key = vol.metadata.id.clone();
            if !wanted || self.ops.is_busy(&key) {
                continue;
            }
            let Some(driver) = self.inner.volumes.driver(&vol.spec.pool) else {
                continue;
            };
            let objects = objects.clone();
            self.ops.spawn(&key, async move {
                if let Err(e) = snapshot_step(&objects, driver, &snap).await {
                    tracing::warn!(snapshot = %snap.metadata.id, error = %e, "snapshot operation failed; will retry");
                }
            });
        }
        for vol in &volumes {
            let id = vol.metadata.id.clone();
            if self.ops.is_busy(&id) {
                continue;
            }
            let Some(driver) = self.inner.volumes.driver(&vol.spec.pool) else {
                let msg = format!("pool {:?} is not configured on this host", vol.spec.pool);
                let (objects, inner, key) = (objects.clone(), self.inner.clone(), id.clone());
                self.ops.spawn(&key, async move {
                    let _ = inner.fail(&objects, &id, msg).await;
                });
                continue;
            };
            let settled = matches!(
                vol.status.phase,
                VolumePhase::Available | VolumePhase::InUse
            ) && lock(&self.checked)
                .get(&id)
                .is_some_and(|t| t.elapsed() < RECHECK_EVERY);
            let backend_size = if settled {
                Some(vol.status.size_bytes)
            } else {
                match driver.info(&id).await {
                    Ok(i) => Some(i.size_bytes),
                    Err(StorageError::NotFound { .. }) => None,
                    Err(e) => {
                        tracing::warn!(volume = %id, error = %e, "cannot inspect the volume; will retry");
                        continue;
                    }
                }
            };
            let plugged = vol.status.attached_to.as_ref().filter(|i| {
                running_here(&self.inner, instances.get(*i))
                    .is_some_and(|since| vol.status.attached_since.as_deref() == Some(since))
            });
            let target = vol
                .spec
                .instance
                .as_ref()
                .filter(|i| running_here(&self.inner, instances.get(*i)).is_some());
            let root_of = instances
                .values()
                .find(|i| {
                    i.spec.boot_volume.as_deref() == Some(id.as_str())
                        && i.metadata.deleting.is_none()
                })
                .map(|i| i.metadata.id.clone());
            let obs = Observed {
                backend_size,
                plugged: plugged.cloned(),
                target_running: target.cloned(),
                root_of,
            };
            let action = decide(vol, &obs);
            let idle =
                action == Action::Report && settled && reported(&vol.status, &obs) == vol.status;
            if action == Action::Nothing || idle {
                continue;
            }
            if action == Action::Report {
                lock(&self.checked).insert(id.clone(), Instant::now());
            } else {
                lock(&self.checked).remove(&id);
            }
            let target_since = target
                .and_then(|i| running_here(&self.inner, instances.get(i)))
                .map(str::to_string);
            let (objects, inner, vol) = (objects.clone(), self.inner.clone(), vol.clone());
            self.ops.spawn(&id, async move {
                let r = inner
                    .act(&objects, driver, &vol, &obs, action.clone(), target_since)
                    .await;
                if let Err(e) = r {
                    tracing::warn!(volume = %vol.metadata.id, ?action, error = %e, "storage operation failed; will retry");
                }
            });
        }
        let due = lock(&self.reported).is_none_or(|t| t.elapsed() >= POOL_REPORT_EVERY);
        if due && !self.ops.is_busy("pools") {
            *lock(&self.reported) = Some(Instant::now());
            let (objects, inner) = (objects.clone(), self.inner.clone());
            self.ops.spawn("pools", async move {
                if let Err(e) = inner.report_pools(&objects).await {
                    tracing::warn!(error = %e, "cannot write the pool figures");
                }
            });
        }
        Ok(())
    }
}

/// Why a storage step failed: the store, or the backend/QEMU (kept as text
/// for `status.message`).
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Objects(#[from] ObjectError),
    #[error("{0}")]
    Backend(String),
}

impl From<StorageError> for StepError {
    fn from(e: StorageError) -> Self {
        StepError::Backend(e.to_string())
    }
}

impl From<crate::compute::runtime::RuntimeError> for StepError {
    fn from(e: crate::compute::runtime::RuntimeError) -> Self {
        StepError::Backend(e.to_string())
    }
}

impl From<yunhan_qmp::QmpError> for StepError {
    fn from(e: yunhan_qmp::QmpError) -> Self {
        StepError::Backend(format!("QMP: {e}"))
    }
}

async fn snapshot_step(
    objects: &Objects,
    driver: Arc<dyn VolumeDriver>,
    snap: &Doc<Snapshot>,
) -> Result<(), ObjectError> {
    let (vol, id) = (snap.spec.volume.as_str(), snap.metadata.id.as_str());
    if snap.metadata.deleting.is_some() {
        match driver.delete_snapshot(vol, id).await {
            Ok(()) | Err(StorageError::NotFound { .. }) => {}
            Err(e) => {
                let msg = e.to_string();
                objects
                    .modify::<Snapshot>(id, |d| {
                        let changed = d.status.message != msg;
                        d.status.message = msg.clone();
                        changed
                    })
                    .await?;
                return Ok(());
            }
        }
        return delete_current::<Snapshot>(objects, id).await;
    }
    let existing = driver
        .list_snapshots(vol)
        .await
        .ok()
        .and_then(|l| l.into_iter().find(|s| s.name == id));
    let r = match existing {
        Some(s) => Ok(s),
        None => driver.snapshot(vol, id).await,
    };
    objects
        .modify::<Snapshot>(id, |d| {
            match &r {
                Ok(info) => {
                    d.status.phase = SnapshotPhase::Available;
                    d.status.size_bytes = info.size_bytes;
                    d.status.message.clear();
                }
                Err(e) => {
                    d.status.phase = SnapshotPhase::Failed;
                    d.status.message = e.to_string();
                }
            }
            true
        })
        .await?;
    if r.is_ok() {
        tracing::info!(snapshot = id, volume = vol, "snapshot taken");
    }
    Ok(())
}

/// Deletes the current version of object `id` (our own status writes may
/// have moved it on).
async fn delete_current<K: yunhan_model::Kind>(
    objects: &Objects,
    id: &str,
) -> Result<(), ObjectError> {
    loop {
        let Some(cur) = objects.get::<K>(id).await? else {
            return Ok(());
        };
        match objects.delete::<K>(&cur).await {
            Ok(()) => return Ok(()),
            Err(ObjectError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Inner {
    /// CAS-writes the status of volume `id` while it is still bound here.
    async fn set_status(
        &self,
        objects: &Objects,
        id: &str,
        f: impl Fn(&mut VolumeStatus) + Send + Sync,
    ) -> Result<(), ObjectError> {
        crate::ops::set_bound_status::<Volume>(objects, id, &self.host_id, |s| s.host.as_deref(), f)
            .await
    }

    async fn fail(&self, objects: &Objects, id: &str, msg: String) -> Result<(), ObjectError> {
        tracing::warn!(volume = id, "volume failed: {msg}");
        self.set_status(objects, id, |s| {
            s.phase = VolumePhase::Failed;
            s.message = msg.clone();
        })
        .await
    }

    async fn act(
        &self,
        objects: &Objects,
        driver: Arc<dyn VolumeDriver>,
        vol: &Doc<Volume>,
        obs: &Observed,
        action: Action,
        target_since: Option<String>,
    ) -> Result<(), ObjectError> {
        let id = vol.metadata.id.as_str();
        let driver = &*driver;
        let busy = match &action {
            Action::Nothing => return Ok(()),
            Action::Report => return self.report(objects, driver, vol, obs).await,
            Action::Create => VolumePhase::Creating,
            Action::Delete => VolumePhase::Deleting,
            Action::Extend => VolumePhase::Extending,
            Action::Restore => VolumePhase::Restoring,
            Action::Attach(_) => VolumePhase::Attaching,
            Action::Detach(_) => VolumePhase::Detaching,
        };
        self.set_status(objects, id, |s| s.phase = busy).await?;
        let r = match action {
            Action::Create => self.create(objects, driver, vol).await,
            Action::Delete => self.delete(objects, driver, id).await,
            Action::Extend => self.extend(driver, vol, obs).await,
            Action::Restore => self.restore(objects, driver, vol).await,
            Action::Attach(inst) => match self.attach(&vol.spec.pool, id, &inst).await {
                Ok(()) => {
                    tracing::info!(volume = id, instance = %inst, "volume attached");
                    let since = target_since.unwrap_or_default();
                    return self
                        .set_status(objects, id, |s| {
                            s.phase = VolumePhase::InUse;
                            s.message.clear();
                            s.attached_to = Some(inst.clone());
                            s.attached_since = Some(since.clone());
                            s.device = Some(node(id));
                        })
                        .await;
                }
                Err(e) => Err(e),
            },
            Action::Detach(inst) => match self.detach(driver, id, &inst).await {
                Ok(()) => {
                    tracing::info!(volume = id, instance = %inst, "volume detached");
                    return self
                        .set_status(objects, id, |s| {
                            s.phase = VolumePhase::Available;
                            s.message.clear();
                            s.attached_to = None;
                            s.attached_since = None;
                            s.device = None;
                        })
                        .await;
                }
                Err(e) => Err(e),
            },
            Action::Nothing | Action::Report => Ok(()),
        };
        match r {
            Ok(()) => Ok(()),
            Err(StepError::Objects(e)) => Err(e),
            // A failed create is final (the user deletes the volume); other
            // steps leave the volume usable and are retried on the next pass.
            Err(StepError::Backend(msg)) if busy == VolumePhase::Creating => {
                self.fail(objects, id, msg).await
            }
            Err(StepError::Backend(msg)) => {
                tracing::warn!(volume = id, "{busy:?} failed: {msg}");
                let phase = match (busy, &obs.plugged) {
                    (VolumePhase::Deleting, _) => VolumePhase::Deleting,
                    (_, Some(_)) => VolumePhase::InUse,
                    (_, None) => VolumePhase::Available,
                };
                self.set_status(objects, id, |s| {
                    s.phase = phase;
                    s.message = format!("{busy:?} failed: {msg}");
                })
                .await
            }
        }
    }

    async fn report(
        &self,
        objects: &Objects,
        driver: &dyn VolumeDriver,
        vol: &Doc<Volume>,
        obs: &Observed,
    ) -> Result<(), ObjectError> {
        let id = vol.metadata.id.as_str();
        let usage = driver.usage(id).await.ok();
        self.set_status(objects, id, |s| {
            *s = reported(s, obs);
            if let Some(u) = usage {
                s.size_bytes = u.logical_bytes;
                s.logical_bytes = u.logical_bytes;
                s.physical_bytes = u.physical_bytes;
            }
        })
        .await
    }

    async fn create(
        &self,
        objects: &Objects,
        driver: &dyn VolumeDriver,
        vol: &Doc<Volume>,
    ) -> Result<(), StepError> {
        let id = vol.metadata.id.as_str();
        let size = vol.spec.size_bytes;
        let r = match &vol.spec.source {
            None => driver.create(id, size).await.map(drop),
            Some(VolumeSource::Snapshot(snap)) => {
                let from = objects.get::<Snapshot>(snap).await?.ok_or_else(|| {
                    StepError::Backend(format!("snapshot {snap} no longer exists"))
                })?;
                driver
                    .clone_from_snapshot(&from.spec.volume, snap, id, Some(size))
                    .await
                    .map(drop)
            }
            Some(VolumeSource::Image(img)) => {
                let image = objects
                    .get::<Image>(img)
                    .await?
                    .and_then(|i| i.status.disk_path)
                    .ok_or_else(|| StepError::Backend(format!("image {img} has no disk")))?;
                match driver.import_image(Path::new(&image), img).await {
                    Ok(_) => driver.clone_for_root(img, id, size).await.map(drop),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = r {
            // Nothing half-made: whatever a failed step left goes.
            let _ = driver.delete(id).await;
            return Err(e.into());
        }
        secure(&driver.qemu_drive(id).await?, None)?;
        tracing::info!(volume = id, pool = %vol.spec.pool, size, "volume created");
        self.set_status(objects, id, |s| {
            s.phase = VolumePhase::Available;
            s.message.clear();
            s.size_bytes = size;
            s.logical_bytes = size;
        })
        .await?;
        Ok(())
    }

    async fn delete(
        &self,
        objects: &Objects,
        driver: &dyn VolumeDriver,
        id: &str,
    ) -> Result<(), StepError> {
        match driver.delete(id).await {
            Ok(()) | Err(StorageError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        delete_current::<Volume>(objects, id).await?;
        tracing::info!(volume = id, "volume deleted");
        Ok(())
    }

    async fn extend(
        &self,
        driver: &dyn VolumeDriver,
        vol: &Doc<Volume>,
        obs: &Observed,
    ) -> Result<(), StepError> {
        let id = vol.metadata.id.as_str();
        let size = vol.spec.size_bytes;
        driver.extend(id, size).await?;
        if let Some(inst) = &obs.plugged {
            // The guest sees the new size at once (virtio config change).
            let qmp = self.rt.qmp(inst).await?;
            qmp.block_resize(&node(id), size).await?;
        }
        tracing::info!(volume = id, size, "volume extended");
        Ok(())
    }

    async fn restore(
        &self,
        objects: &Objects,
        driver: &dyn VolumeDriver,
        vol: &Doc<Volume>,
    ) -> Result<(), StepError> {
        let id = vol.metadata.id.as_str();
        let Some(r) = &vol.spec.restore else {
            return Ok(());
        };
        driver.restore(id, &r.snapshot).await?;
        secure(&driver.qemu_drive(id).await?, None)?;
        tracing::info!(volume = id, snapshot = %r.snapshot, "volume restored");
        let gen = r.generation;
        self.set_status(objects, id, |s| {
            s.restore_generation = s.restore_generation.max(gen);
            s.phase = VolumePhase::Available;
            s.message.clear();
        })
        .await?;
        Ok(())
    }

    async fn attach(&self, pool: &str, id: &str, inst: &str) -> Result<(), StepError> {
        let disk = self.volumes.qemu_disk(pool, id).await?;
        secure(&disk, self.rt.vm_owner(inst))?;
        let qmp = self.rt.qmp(inst).await?;
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

    async fn detach(
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

    async fn report_pools(&self, objects: &Objects) -> Result<(), ObjectError> {
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

/// A local volume file belongs to the QEMU of the VM it is plugged into
/// (every VM has its own uid), else to the agent; mode 0600 either way.
/// RBD images need nothing.
fn secure(disk: &QemuDisk, owner: Option<(u32, u32)>) -> Result<(), StepError> {
    use std::os::unix::fs::PermissionsExt;
    let QemuDisk::File { path } = disk else {
        return Ok(());
    };
    let err = |what: &str, e: std::io::Error| {
        StepError::Backend(format!("{what} {}: {e}", path.display()))
    };
    let (uid, gid) = owner.unwrap_or((
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    ));
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| err("chown", e.into()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err("chmod", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use yunhan_model::{Metadata, Resource, VolumeRestore, VolumeSpec};

    fn vol(size: u64, instance: Option<&str>) -> Doc<Volume> {
        Resource {
            metadata: Metadata {
                id: "vol-1".into(),
                name: "v".into(),
                project: None,
                labels: Default::default(),
                created: String::new(),
                revision: 1,
                deleting: None,
            },
            spec: VolumeSpec {
                size_bytes: size,
                pool: "local".into(),
                instance: instance.map(Into::into),
                ..Default::default()
            },
            status: VolumeStatus {
                host: Some("hst-1".into()),
                phase: VolumePhase::Available,
                ..Default::default()
            },
        }
    }

    fn obs(size: Option<u64>, plugged: Option<&str>, target: Option<&str>) -> Observed {
        Observed {
            backend_size: size,
            plugged: plugged.map(Into::into),
            target_running: target.map(Into::into),
            root_of: None,
        }
    }

    fn arb_id() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop::sample::select(vec![
            "ins-a".to_string(),
            "ins-b".to_string(),
        ]))
    }

    proptest! {
        /// Whatever the state: a plugged volume is unplugged before it is
        /// deleted, restored or plugged elsewhere; a deleting volume is never
        /// created, extended or plugged; a root volume is never hot-plugged.
        #[test]
        fn decide_is_safe(
            deleting in any::<bool>(),
            failed in any::<bool>(),
            size in prop::option::of(1u64..4),
            want in 1u64..4,
            restore in 0u64..3,
            restored in 0u64..3,
            plugged in arb_id(),
            target in arb_id(),
            root in arb_id(),
        ) {
            let mut v = vol(want, None);
            if deleting {
                v.metadata.deleting = Some("now".into());
            }
            if failed {
                v.status.phase = VolumePhase::Failed;
            }
            if restore > 0 {
                v.spec.restore = Some(VolumeRestore { snapshot: "snap-1".into(), generation: restore });
            }
            v.status.restore_generation = restored;
            let o = Observed { backend_size: size, plugged: plugged.clone(), target_running: target.clone(), root_of: root.clone() };
            let a = decide(&v, &o);
            if plugged.is_some() {
                prop_assert!(!matches!(a, Action::Delete | Action::Restore | Action::Create));
                prop_assert!(!matches!(a, Action::Attach(_)));
            }
            if deleting {
                prop_assert!(matches!(a, Action::Delete | Action::Detach(_)));
            }
            if root.is_some() {
                prop_assert!(!matches!(a, Action::Attach(_)));
            }
            if let Action::Attach(i) = &a {
                prop_assert_eq!(Some(i), target.as_ref());
            }
            if let Action::Detach(i) = &a {
                prop_assert_eq!(Some(i), plugged.as_ref());
            }
        }
    }

    #[test]
    fn reported_status_follows_what_is_plugged() {
        let mut st = vol(1 << 30, None).status;
        st.attached_to = Some("ins-a".into());
        st.attached_since = Some("t1".into());
        st.phase = VolumePhase::InUse;
        // The VM restarted (or stopped): the plug is gone.
        let r = reported(&st, &obs(Some(1 << 30), None, None));
        assert_eq!((r.phase, r.attached_to), (VolumePhase::Available, None));
        // Still plugged: nothing to change, so a settled volume stays idle.
        assert_eq!(
            reported(&st, &obs(Some(1 << 30), Some("ins-a"), Some("ins-a"))),
            st
        );
        let mut root = obs(Some(1 << 30), None, None);
        root.root_of = Some("ins-r".into());
        let r = reported(&st, &root);
        assert_eq!(r.attached_to.as_deref(), Some("ins-r"));
        assert_eq!(r.device.as_deref(), Some("root"));
        assert_eq!(r.phase, VolumePhase::InUse);
    }

    #[test]
    fn a_root_volume_is_never_hot_plugged_but_still_extends() {
        let v = vol(2 << 30, None);
        let mut o = obs(Some(2 << 30), None, None);
        o.root_of = Some("ins-a".into());
        assert_eq!(decide(&v, &o), Action::Report);
        o.backend_size = Some(1 << 30);
        assert_eq!(decide(&v, &o), Action::Extend);
    }

    #[test]
    fn create_then_attach_then_report() {
        let v = vol(1 << 30, Some("ins-a"));
        assert_eq!(decide(&v, &obs(None, None, Some("ins-a"))), Action::Create);
        assert_eq!(
            decide(&v, &obs(Some(1 << 30), None, Some("ins-a"))),
            Action::Attach("ins-a".into())
        );
        assert_eq!(
            decide(&v, &obs(Some(1 << 30), Some("ins-a"), Some("ins-a"))),
            Action::Report
        );
        // The VM is not running: nothing to plug into.
        assert_eq!(decide(&v, &obs(Some(1 << 30), None, None)), Action::Report);
        let mut failed = v.clone();
        failed.status.phase = VolumePhase::Failed;
        assert_eq!(decide(&failed, &obs(None, None, None)), Action::Nothing);
    }

    #[test]
    fn detach_move_and_extend() {
        let v = vol(1 << 30, None);
        assert_eq!(
            decide(&v, &obs(Some(1 << 30), Some("ins-a"), None)),
            Action::Detach("ins-a".into())
        );
        let moved = vol(1 << 30, Some("ins-b"));
        assert_eq!(
            decide(&moved, &obs(Some(1 << 30), Some("ins-a"), Some("ins-b"))),
            Action::Detach("ins-a".into())
        );
        let bigger = vol(2 << 30, Some("ins-a"));
        assert_eq!(
            decide(&bigger, &obs(Some(1 << 30), Some("ins-a"), Some("ins-a"))),
            Action::Extend
        );
    }

    #[test]
    fn restore_unplugs_first_and_runs_once_per_generation() {
        let mut v = vol(1 << 30, None);
        v.spec.restore = Some(VolumeRestore {
            snapshot: "snap-1".into(),
            generation: 1,
        });
        assert_eq!(decide(&v, &obs(Some(1 << 30), None, None)), Action::Restore);
        assert_eq!(
            decide(&v, &obs(Some(1 << 30), Some("ins-a"), None)),
            Action::Detach("ins-a".into())
        );
        v.status.restore_generation = 1;
        assert_eq!(decide(&v, &obs(Some(1 << 30), None, None)), Action::Report);
    }

    #[test]
    fn deleting_unplugs_then_deletes() {
        let mut v = vol(1 << 30, Some("ins-a"));
        v.metadata.deleting = Some("now".into());
        assert_eq!(
            decide(&v, &obs(Some(1 << 30), Some("ins-a"), Some("ins-a"))),
            Action::Detach("ins-a".into())
        );
        assert_eq!(decide(&v, &obs(Some(1 << 30), None, None)), Action::Delete);
        assert_eq!(decide(&v, &obs(None, None, None)), Action::Delete);
    }
}
