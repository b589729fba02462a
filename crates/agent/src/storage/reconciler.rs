//! The [`Storage`] reconciler: each pass lists the volumes bound to this host,
//! observes them, and spawns one step per volume (snapshots first).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use yunhan_model::{Doc, Instance, InstancePhase, Snapshot, SnapshotPhase, Volume, VolumePhase};
use yunhan_storage::{StorageError, VolumeDriver};
use yunhan_store::objects::{object_prefix, ObjectError, Objects};
use yunhan_store::reconcile::Reconciler;

use super::decide::{decide, reported, Action, Observed};
use super::pools::Volumes;
use super::steps::snapshot_step;
use crate::compute::runtime::Runtime;
use crate::ops::{lock, Ops};

/// How often pool figures are written to the host's status.
const POOL_REPORT_EVERY: Duration = Duration::from_secs(10);
/// How long a settled volume's backend facts (existence, size, usage) are
/// trusted from its status before the backend is asked again (`rbd info` and
/// `rbd du` are CLI calls).
const RECHECK_EVERY: Duration = Duration::from_secs(30);

/// The storage reconciler of one host.
pub struct Storage {
    inner: Arc<Inner>,
    ops: Ops,
    reported: Mutex<Option<Instant>>,
    /// When each settled volume was last checked against its backend.
    checked: Mutex<HashMap<String, Instant>>,
}

pub(super) struct Inner {
    pub(super) host_id: String,
    pub(super) volumes: Arc<Volumes>,
    pub(super) rt: Arc<Runtime>,
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

impl Storage {
    /// Spawns the pending snapshot steps of this host's volumes (serialised
    /// with their volume, whose routine report would otherwise always be in
    /// the way, so they go first).
    fn spawn_snapshot_steps(
        &self,
        objects: &Objects,
        volumes: &[Doc<Volume>],
        snapshots: Vec<Doc<Snapshot>>,
    ) {
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
    }

    /// What the agent sees of `vol`, and whether it is settled (its backend
    /// facts taken from its status); None when the backend cannot be asked.
    async fn observe(
        &self,
        vol: &Doc<Volume>,
        driver: &dyn VolumeDriver,
        instances: &HashMap<String, Doc<Instance>>,
    ) -> Option<(Observed, bool)> {
        let id = vol.metadata.id.as_str();
        let settled = matches!(
            vol.status.phase,
            VolumePhase::Available | VolumePhase::InUse
        ) && lock(&self.checked)
            .get(id)
            .is_some_and(|t| t.elapsed() < RECHECK_EVERY);
        let backend_size = if settled {
            Some(vol.status.size_bytes)
        } else {
            match driver.info(id).await {
                Ok(i) => Some(i.size_bytes),
                Err(StorageError::NotFound { .. }) => None,
                Err(e) => {
                    tracing::warn!(volume = %id, error = %e, "cannot inspect the volume; will retry");
                    return None;
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
            .find(|i| i.spec.boot_volume.as_deref() == Some(id) && i.metadata.deleting.is_none())
            .map(|i| i.metadata.id.clone());
        let obs = Observed {
            backend_size,
            plugged: plugged.cloned(),
            target_running: target.cloned(),
            root_of,
        };
        Some((obs, settled))
    }

    /// Observes `vol`, decides its next step and spawns it (unless there is
    /// nothing to do).
    async fn step_volume(
        &self,
        objects: &Objects,
        vol: &Doc<Volume>,
        instances: &HashMap<String, Doc<Instance>>,
    ) {
        let id = vol.metadata.id.clone();
        if self.ops.is_busy(&id) {
            return;
        }
        let Some(driver) = self.inner.volumes.driver(&vol.spec.pool) else {
            let msg = format!("pool {:?} is not configured on this host", vol.spec.pool);
            let (objects, inner, key) = (objects.clone(), self.inner.clone(), id.clone());
            self.ops.spawn(&key, async move {
                let _ = inner.fail(&objects, &id, msg).await;
            });
            return;
        };
        let Some((obs, settled)) = self.observe(vol, &*driver, instances).await else {
            return;
        };
        let action = decide(vol, &obs);
        let idle = action == Action::Report && settled && reported(&vol.status, &obs) == vol.status;
        if action == Action::Nothing || idle {
            return;
        }
        if action == Action::Report {
            lock(&self.checked).insert(id.clone(), Instant::now());
        } else {
            lock(&self.checked).remove(&id);
        }
        let target_since = obs
            .target_running
            .as_ref()
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

    /// Writes the pool figures to the host's status every
    /// [`POOL_REPORT_EVERY`].
    fn spawn_pool_report(&self, objects: &Objects) {
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
    }
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
        self.spawn_snapshot_steps(objects, &volumes, snapshots);
        for vol in &volumes {
            self.step_volume(objects, vol, &instances).await;
        }
        self.spawn_pool_report(objects);
        Ok(())
    }
}
