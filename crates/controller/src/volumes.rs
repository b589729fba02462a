//! The volume binder gives every new volume its host (`status.host`, written
//! once): the agent of that host creates, attaches, extends, snapshots,
//! restores and deletes it. A local volume lives on that host for good; a
//! settled shared (Ceph) volume follows the instance it is attached to when
//! that instance moves (live migration, cold move, HA restart), so the agent
//! of the instance's new host keeps it plugged.

use std::collections::BTreeMap;

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

/// The host a bound volume must move to: a settled shared volume attached to
/// an instance now bound to another host goes with it (`inst_host`: the host of
/// `spec.instance`).
pub fn follows(vol: &Doc<Volume>, inst_host: Option<&String>) -> Option<String> {
    let settled = matches!(
        vol.status.phase,
        VolumePhase::Available | VolumePhase::InUse
    );
    let shared = vol.spec.pool != DEFAULT_POOL;
    let moved =
        vol.status.host.is_some() && inst_host.is_some() && vol.status.host.as_ref() != inst_host;
    (settled && shared && moved && vol.metadata.deleting.is_none())
        .then(|| inst_host.cloned())
        .flatten()
}

/// Moves every shared volume whose instance moved to that instance's host.
async fn follow(objects: &Objects, volumes: &[Doc<Volume>]) -> Result<(), ObjectError> {
    for vol in volumes {
        let Some(i) = &vol.spec.instance else {
            continue;
        };
        let host = objects
            .get::<Instance>(i)
            .await?
            .and_then(|i| i.status.host);
        let Some(to) = follows(vol, host.as_ref()) else {
            continue;
        };
        let from = vol.status.host.clone();
        let moved = objects
            .modify::<Volume>(&vol.metadata.id, |d| {
                if d.status.host != from || d.status.phase != vol.status.phase {
                    return false;
                }
                d.status.host = Some(to.clone());
                true
            })
            .await?;
        if moved.is_some() {
            tracing::info!(volume = %vol.metadata.name, host = %to, "volume follows its instance");
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
        follow(objects, &volumes).await?;
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
    fn a_settled_ceph_volume_follows_its_instance_and_a_local_one_stays() {
        use yunhan_model::{Metadata, Resource, VolumeSpec, VolumeStatus};
        let vol = |pool: &str, phase| Resource {
            metadata: Metadata::new("vol-1", "d1", None),
            spec: VolumeSpec {
                pool: pool.into(),
                instance: Some("ins-1".into()),
                ..Default::default()
            },
            status: VolumeStatus {
                host: Some("hst-a".into()),
                phase,
                ..Default::default()
            },
        };
        let b = Some("hst-b".to_string());
        let a = Some("hst-a".to_string());
        let ceph = vol("vols", VolumePhase::InUse);
        assert_eq!(follows(&ceph, b.as_ref()), b);
        assert_eq!(follows(&ceph, a.as_ref()), None, "already there");
        assert_eq!(follows(&ceph, None), None, "the instance is unbound");
        assert_eq!(follows(&vol("local", VolumePhase::InUse), b.as_ref()), None);
        assert_eq!(
            follows(&vol("vols", VolumePhase::Attaching), b.as_ref()),
            None,
            "busy"
        );
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
