//! The volume binder gives every new volume its host (`status.host`): the agent of
//! that host creates, attaches, extends, snapshots, restores and deletes it. A local
//! volume lives on that host for good; a volume on shared storage (Ceph) attached to a
//! VM follows the VM's host when the VM moves (HA restart, live or cold migration), so
//! that the agent of the host the VM runs on plugs it.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use yunhan_model::{
    Doc, Host, HostPhase, Instance, Snapshot, Volume, VolumePhase, VolumeSource, DEFAULT_POOL,
};
use yunhan_store::objects::{object_prefix, ObjectError, Objects, GLOBAL_SCOPE};

use crate::Reconciler;

/// Where a volume must live, if anything pins it: the host of the volume its
/// source snapshot belongs to, else the host of the instance it attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// Must go to this host.
    Host(String),
    /// Must wait: what it depends on has no host yet.
    Wait(String),
    /// Anywhere.
    Free,
}

/// Why a volume gets no host yet; the text becomes the volume's status message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unplaced {
    /// Pinned to something that has no host yet ([`Pin::Wait`]'s reason).
    #[error("{0}")]
    Waiting(String),
    #[error("no Ready host to place the volume on")]
    NoReadyHost,
}

/// The host for a volume: its pin, or the Ready schedulable host with the
/// fewest volumes (ties: smallest id). `Err` says why nothing fits.
pub fn choose_host(pin: &Pin, ready_load: &BTreeMap<String, usize>) -> Result<String, Unplaced> {
    match pin {
        Pin::Host(h) => Ok(h.clone()),
        Pin::Wait(why) => Err(Unplaced::Waiting(why.clone())),
        Pin::Free => ready_load
            .iter()
            .min_by_key(|(id, n)| (**n, (*id).clone()))
            .map(|(id, _)| id.clone())
            .ok_or(Unplaced::NoReadyHost),
    }
}

/// The host a volume should move to because its VM moved: a settled volume on shared
/// storage whose VM now runs (is bound) elsewhere.
pub fn follows(vol: &Doc<Volume>, inst: &Doc<Instance>) -> Option<String> {
    let settled = matches!(
        vol.status.phase,
        VolumePhase::Available | VolumePhase::InUse | VolumePhase::Attaching
    );
    let host = inst.status.host.as_ref()?;
    let moved = vol.status.host.as_ref().is_some_and(|h| h != host);
    (vol.spec.pool != DEFAULT_POOL && settled && moved && vol.metadata.deleting.is_none())
        .then(|| host.clone())
}

/// Rebinds the shared volumes whose VM moved to the VM's host.
async fn follow_instances(objects: &Objects, volumes: &[Doc<Volume>]) -> Result<(), ObjectError> {
    if volumes.iter().all(|v| v.spec.instance.is_none()) {
        return Ok(());
    }
    let instances: HashMap<String, Doc<Instance>> = (objects.list_all::<Instance>(None).await?)
        .into_iter()
        .map(|i| (i.metadata.id.clone(), i))
        .collect();
    for vol in volumes {
        let inst = vol.spec.instance.as_ref().and_then(|i| instances.get(i));
        let Some(host) = inst.and_then(|i| follows(vol, i)) else {
            continue;
        };
        let written = objects
            .modify::<Volume>(&vol.metadata.id, |d| {
                let again = inst.and_then(|i| follows(d, i));
                if again.as_ref() != Some(&host) {
                    return false;
                }
                d.status.host = Some(host.clone());
                true
            })
            .await?;
        if written.is_some() {
            tracing::info!(volume = %vol.metadata.name, %host, "volume follows its VM to its new host");
        }
    }
    Ok(())
}

#[derive(Default)]
pub struct VolumeBinder;

#[async_trait]
impl Reconciler for VolumeBinder {
    fn name(&self) -> &'static str {
        "volume-binder"
    }
    fn watches(&self) -> Vec<String> {
        vec![
            object_prefix::<Volume>(None),
            object_prefix::<Host>(None),
            object_prefix::<Instance>(None),
        ]
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let volumes = objects.list_all::<Volume>(None).await?;
        follow_instances(objects, &volumes).await?;
        if volumes.iter().all(|v| v.status.host.is_some()) {
            return Ok(());
        }
        let mut load: BTreeMap<String, usize> = objects
            .list_all::<Host>(Some(GLOBAL_SCOPE))
            .await?
            .into_iter()
            .filter(|h| h.status.phase == HostPhase::Ready && h.spec.schedulable)
            .map(|h| (h.metadata.id, 0))
            .collect();
        for v in &volumes {
            if let Some(n) = v.status.host.as_ref().and_then(|h| load.get_mut(h)) {
                *n += 1;
            }
        }
        let host_of_volume: BTreeMap<&str, Option<&String>> = volumes
            .iter()
            .map(|v| (v.metadata.id.as_str(), v.status.host.as_ref()))
            .collect();
        for vol in volumes.iter().filter(|v| v.status.host.is_none()) {
            if vol.metadata.deleting.is_some() {
                continue;
            }
            let pin = match (&vol.spec.source, &vol.spec.instance) {
                (Some(VolumeSource::Snapshot(s)), _) => match objects.get::<Snapshot>(s).await? {
                    Some(snap) => match host_of_volume.get(snap.spec.volume.as_str()) {
                        Some(Some(h)) => Pin::Host((*h).clone()),
                        _ => Pin::Wait(format!("the volume of snapshot {s} has no host")),
                    },
                    None => Pin::Wait(format!("snapshot {s} no longer exists")),
                },
                (_, Some(i)) => match objects.get::<Instance>(i).await? {
                    Some(inst) => match inst.status.host {
                        Some(h) => Pin::Host(h),
                        None => Pin::Wait(format!("instance {i} is not scheduled yet")),
                    },
                    None => Pin::Free,
                },
                _ => Pin::Free,
            };
            let decision = choose_host(&pin, &load);
            let written = objects
                .modify::<Volume>(&vol.metadata.id, |d| {
                    if d.status.host.is_some() || d.metadata.deleting.is_some() {
                        return false;
                    }
                    match &decision {
                        Ok(h) => {
                            d.status.host = Some(h.clone());
                            d.status.phase = VolumePhase::Creating;
                            d.status.message.clear();
                        }
                        Err(why) => {
                            let why = why.to_string();
                            if d.status.message == why {
                                return false;
                            }
                            d.status.phase = VolumePhase::Pending;
                            d.status.message = why;
                        }
                    }
                    true
                })
                .await?;
            if let (Some(d), Ok(h)) = (written, &decision) {
                if d.status.host.as_ref() == Some(h) {
                    if let Some(n) = load.get_mut(h) {
                        *n += 1;
                    }
                    tracing::info!(volume = %d.metadata.name, host = %h, "volume bound");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// An unpinned volume goes to a Ready host with the least load.
        #[test]
        fn free_volumes_go_to_a_least_loaded_ready_host(
            loads in prop::collection::btree_map("hst-[a-e]", 0usize..5, 0..5)
        ) {
            match choose_host(&Pin::Free, &loads) {
                Ok(h) => {
                    let min = loads.values().min().copied().unwrap();
                    prop_assert_eq!(loads.get(&h).copied(), Some(min));
                }
                Err(_) => prop_assert!(loads.is_empty()),
            }
        }
    }

    #[test]
    fn shared_settled_volumes_follow_their_vm_local_ones_never() {
        use yunhan_model::{Metadata, Resource};
        let vol = |pool: &str, phase: VolumePhase| -> Doc<Volume> {
            let mut v: Doc<Volume> = Resource {
                metadata: Metadata::new("vol-1", "d", None),
                spec: Default::default(),
                status: Default::default(),
            };
            v.spec.pool = pool.into();
            v.spec.instance = Some("ins-1".into());
            v.status.host = Some("hst-old".into());
            v.status.phase = phase;
            v
        };
        let mut inst: Doc<Instance> = Resource {
            metadata: Metadata::new("ins-1", "vm", None),
            spec: Default::default(),
            status: Default::default(),
        };
        inst.status.host = Some("hst-new".into());
        let ceph = vol("rbdvols", VolumePhase::InUse);
        assert_eq!(follows(&ceph, &inst).as_deref(), Some("hst-new"));
        assert_eq!(follows(&vol(DEFAULT_POOL, VolumePhase::InUse), &inst), None);
        assert_eq!(
            follows(&vol("rbdvols", VolumePhase::Extending), &inst),
            None
        );
        inst.status.host = Some("hst-old".into());
        assert_eq!(follows(&ceph, &inst), None, "already there");
        inst.status.host = None;
        assert_eq!(follows(&ceph, &inst), None, "no host to follow");
    }

    #[test]
    fn pins_win_then_least_loaded_then_smallest_id() {
        let load: BTreeMap<String, usize> = [
            ("hst-b".into(), 1),
            ("hst-a".into(), 1),
            ("hst-c".into(), 3),
        ]
        .into();
        assert_eq!(choose_host(&Pin::Free, &load).unwrap(), "hst-a");
        assert_eq!(
            choose_host(&Pin::Host("hst-c".into()), &load).unwrap(),
            "hst-c"
        );
        assert!(choose_host(&Pin::Wait("x".into()), &load).is_err());
        assert!(choose_host(&Pin::Free, &BTreeMap::new()).is_err());
    }
}
