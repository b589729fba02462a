//! The HA monitor: when a host's agent lease has been gone for longer than the
//! grace period, each HA instance bound to it is either fenced and handed back
//! to the scheduler (all its disks on shared storage), or marked `HostDown`
//! with the reason (a local disk lives and dies with its host).
//!
//! Fencing comes first and must succeed: the lost host's QEMU may still be
//! running behind a partition, so [`SharedStorage::fence`] cuts it off its disks
//! (Ceph: `ceph osd blocklist add` of the image's watchers) before anything
//! else may open them. The agent fences itself too (it kills its HA VMs once
//! its lease has been gone for a TTL), so a partitioned host stops writing even
//! without the storage's help. The rebind is a compare-and-swap that checks the
//! instance is still bound to the lost host and bumps `status.failovers`, so a
//! control plane restarted mid-failover fences again (idempotent) and moves the
//! instance exactly once; the returning host finds it bound elsewhere and
//! removes its stale copy (the compute agent's orphan rule).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use yunhan_model::{age_of, Doc, Host, HostPhase, Instance, InstancePhase};
use yunhan_store::objects::{object_prefix, ObjectError, Objects, GLOBAL_SCOPE};

use crate::Reconciler;

/// Why an instance cannot run on another host (for the user), or why the
/// storage layer could not tell or fence.
#[derive(Debug, thiserror::Error)]
pub enum SharedStorageError {
    #[error("its root disk is local to the host (no shared storage is configured)")]
    NoSharedStorage,
    #[error("its root disk is a local copy of the image (boot it from a volume in pool {pool:?})")]
    ImageRoot { pool: String },
    #[error("volume {volume} is in the host-local pool {pool:?}")]
    LocalVolume { volume: String, pool: String },
    #[error(transparent)]
    Objects(#[from] ObjectError),
    /// The storage backend failed (e.g. Ceph).
    #[error("{0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
}

/// What the HA monitor needs from the storage layer.
#[async_trait]
pub trait SharedStorage: Send + Sync {
    /// Ok when every disk of `inst` is on shared storage (it can run on another
    /// host); otherwise why not, for the user.
    async fn portable(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
    ) -> Result<(), SharedStorageError>;
    /// Cuts `host`'s clients off `inst`'s disks; idempotent.
    async fn fence(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
        host: &Doc<Host>,
    ) -> Result<(), SharedStorageError>;
}

/// Without shared storage every disk is local to its host.
pub struct LocalOnly;

#[async_trait]
impl SharedStorage for LocalOnly {
    async fn portable(&self, _: &Objects, _: &Doc<Instance>) -> Result<(), SharedStorageError> {
        Err(SharedStorageError::NoSharedStorage)
    }
    async fn fence(
        &self,
        _: &Objects,
        _: &Doc<Instance>,
        _: &Doc<Host>,
    ) -> Result<(), SharedStorageError> {
        Ok(())
    }
}

/// The decision for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaAction {
    Nothing,
    /// Fence, then rebind to another host.
    Failover,
    /// Mark HostDown with this reason.
    HostDown(String),
}

/// Pure: `down_for` is how long the instance's host has been NotReady (None:
/// Ready); `portable` whether its disks could run elsewhere.
pub fn decide(
    inst: &Doc<Instance>,
    down_for: Option<Duration>,
    grace: Duration,
    portable: &Result<(), SharedStorageError>,
) -> HaAction {
    if !inst.spec.ha || inst.metadata.deleting.is_some() || inst.status.host.is_none() {
        return HaAction::Nothing;
    }
    match down_for {
        Some(d) if d >= grace => {}
        _ => return HaAction::Nothing,
    }
    match portable {
        Ok(()) => HaAction::Failover,
        Err(why) => {
            let msg = format!("its host is down and it cannot restart elsewhere: {why}");
            if inst.status.phase == InstancePhase::HostDown && inst.status.message == msg {
                HaAction::Nothing
            } else {
                HaAction::HostDown(msg)
            }
        }
    }
}

pub struct HaMonitor {
    /// How long a host must have been NotReady (beyond its lease TTL) before its
    /// instances are moved: protects against a store hiccup or an agent restart.
    pub grace: Duration,
    pub storage: Arc<dyn SharedStorage>,
}

#[async_trait]
impl Reconciler for HaMonitor {
    fn name(&self) -> &'static str {
        "ha-monitor"
    }
    fn watches(&self) -> Vec<String> {
        vec![object_prefix::<Host>(None), object_prefix::<Instance>(None)]
    }
    /// Often enough to notice the grace period ending without a store change.
    fn resync(&self) -> Duration {
        Duration::from_secs(1)
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let down: Vec<(Doc<Host>, Duration)> = objects
            .list_all::<Host>(Some(GLOBAL_SCOPE))
            .await?
            .into_iter()
            .filter(|h| h.status.phase == HostPhase::NotReady)
            .filter_map(|h| {
                let d = h.status.since.as_deref().and_then(age_of)?;
                Some((h, d))
            })
            .collect();
        if down.is_empty() {
            return Ok(());
        }
        for inst in objects.list_all::<Instance>(None).await? {
            let Some((host, down_for)) = down
                .iter()
                .find(|(h, _)| inst.status.host.as_deref() == Some(h.metadata.id.as_str()))
            else {
                continue;
            };
            if !inst.spec.ha {
                continue;
            }
            let portable = self.storage.portable(objects, &inst).await;
            match decide(&inst, Some(*down_for), self.grace, &portable) {
                HaAction::Nothing => {}
                HaAction::HostDown(msg) => {
                    mark_host_down(objects, &inst, &host.metadata.id, msg).await?
                }
                HaAction::Failover => self.failover(objects, &inst, host).await?,
            }
        }
        Ok(())
    }
}

impl HaMonitor {
    async fn failover(
        &self,
        objects: &Objects,
        inst: &Doc<Instance>,
        host: &Doc<Host>,
    ) -> Result<(), ObjectError> {
        let id = inst.metadata.id.as_str();
        let lost = host.metadata.id.clone();
        if let Err(e) = self.storage.fence(objects, inst, host).await {
            tracing::warn!(instance = id, host = %host.metadata.name, "fencing failed; will retry: {e}");
            let msg = format!("its host is down; fencing it failed, retrying: {e}");
            return mark_host_down(objects, inst, &lost, msg).await;
        }
        let name = host.metadata.name.clone();
        let moved = objects
            .modify::<Instance>(id, |d| {
                if d.status.host.as_deref() != Some(lost.as_str()) {
                    return false;
                }
                d.status.host = None;
                d.status.phase = InstancePhase::Pending;
                d.status.failovers += 1;
                d.status.message =
                    format!("host {name} was lost and fenced; restarting on another host");
                true
            })
            .await?;
        if moved.is_some() {
            tracing::info!(instance = id, host = %name, "HA failover: fenced the lost host, instance back to the scheduler");
            let what = format!("host {name} was lost and fenced; restarting it on another host");
            crate::events::platform_event::<Instance>(objects, inst, "failover", what).await;
        }
        Ok(())
    }
}

async fn mark_host_down(
    objects: &Objects,
    inst: &Doc<Instance>,
    host: &str,
    msg: String,
) -> Result<(), ObjectError> {
    objects
        .modify::<Instance>(&inst.metadata.id, |d| {
            if d.status.host.as_deref() != Some(host)
                || (d.status.phase == InstancePhase::HostDown && d.status.message == msg)
            {
                return false;
            }
            d.status.phase = InstancePhase::HostDown;
            d.status.message = msg.clone();
            true
        })
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunhan_model::{InstanceSpec, InstanceStatus, Metadata, Resource};

    fn inst(ha: bool, host: Option<&str>) -> Doc<Instance> {
        Resource {
            metadata: Metadata {
                created: String::new(),
                revision: 1,
                ..Metadata::new("ins-1", "a", Some("prj-1".into()))
            },
            spec: InstanceSpec {
                ha,
                ..Default::default()
            },
            status: InstanceStatus {
                host: host.map(Into::into),
                phase: InstancePhase::Running,
                ..Default::default()
            },
        }
    }

    const GRACE: Duration = Duration::from_secs(5);
    const LONG: Option<Duration> = Some(Duration::from_secs(6));

    #[test]
    fn only_ha_instances_of_hosts_down_past_the_grace_move() {
        let ok = Ok(());
        assert_eq!(
            decide(&inst(true, Some("h")), LONG, GRACE, &ok),
            HaAction::Failover
        );
        assert_eq!(
            decide(&inst(false, Some("h")), LONG, GRACE, &ok),
            HaAction::Nothing
        );
        assert_eq!(
            decide(&inst(true, Some("h")), None, GRACE, &ok),
            HaAction::Nothing
        );
        let short = Some(Duration::from_secs(4));
        assert_eq!(
            decide(&inst(true, Some("h")), short, GRACE, &ok),
            HaAction::Nothing
        );
        assert_eq!(
            decide(&inst(true, None), LONG, GRACE, &ok),
            HaAction::Nothing
        );
        let mut deleting = inst(true, Some("h"));
        deleting.metadata.deleting = Some("now".into());
        assert_eq!(decide(&deleting, LONG, GRACE, &ok), HaAction::Nothing);
    }

    #[test]
    fn local_disks_are_marked_host_down_once() {
        let local = Err(SharedStorageError::NoSharedStorage);
        let mut i = inst(true, Some("h"));
        let HaAction::HostDown(msg) = decide(&i, LONG, GRACE, &local) else {
            panic!("expected HostDown");
        };
        assert!(msg.contains("its root disk is local"), "{msg}");
        i.status.phase = InstancePhase::HostDown;
        i.status.message = msg;
        assert_eq!(decide(&i, LONG, GRACE, &local), HaAction::Nothing);
    }
}
