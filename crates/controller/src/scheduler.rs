//! The scheduler binds Pending instances to hosts (`status.host`), or marks
//! them Unschedulable with the reason; it retries Unschedulable ones on every
//! pass, so adding a host or freeing capacity un-sticks them.

use std::collections::HashMap;

use async_trait::async_trait;
use yunhan_model::{Host, HostPhase, Instance, InstancePhase, PlacementGroup};
use yunhan_store::objects::{ObjectError, Objects, GLOBAL_SCOPE};

use crate::placement::{place, Candidate, Demand, Policy};
use crate::Reconciler;

#[derive(Default)]
pub struct Scheduler {
    pub policy: Policy,
}

#[async_trait]
impl Reconciler for Scheduler {
    fn name(&self) -> &'static str {
        "scheduler"
    }
    fn watches(&self) -> Vec<String> {
        vec![
            "/yunhan/objects/instances/".into(),
            "/yunhan/objects/hosts/".into(),
        ]
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let (
            Capacity {
                mut candidates,
                index,
                groups,
            },
            instances,
        ) = Capacity::load(objects).await?;
        for inst in instances {
            let waiting = matches!(
                inst.status.phase,
                InstancePhase::Pending | InstancePhase::Unschedulable
            );
            if inst.status.host.is_some() || !waiting || inst.metadata.deleting.is_some() {
                continue;
            }
            let d = demand(&inst, &groups);
            let decision =
                place(&candidates, &d, &self.policy).map(|p| (p.host.id.clone(), p.gpus));
            let written = objects
                .modify::<Instance>(&inst.metadata.id, |doc| {
                    if doc.status.host.is_some() || doc.metadata.deleting.is_some() {
                        return false;
                    }
                    match &decision {
                        Ok((host, gpus)) => {
                            doc.status.host = Some(host.clone());
                            doc.status.gpu_devices = gpus.clone();
                            doc.status.phase = InstancePhase::Scheduled;
                            doc.status.message.clear();
                        }
                        Err(why) => {
                            if doc.status.phase == InstancePhase::Unschedulable
                                && &doc.status.message == why
                            {
                                return false;
                            }
                            doc.status.phase = InstancePhase::Unschedulable;
                            doc.status.message = why.clone();
                        }
                    }
                    true
                })
                .await?;
            if let (Some(doc), Ok((host, gpus))) = (written, &decision) {
                if doc.status.host.as_ref() == Some(host) {
                    let c = &mut candidates[index[host]];
                    c.used_vcpus += d.vcpus;
                    c.used_memory_mib += d.memory_mib;
                    c.used_disk_gib += d.disk_gib;
                    c.free_gpus.retain(|g| !gpus.contains(g));
                    if let Some((g, _)) = &d.group {
                        c.groups.insert(g.clone());
                    }
                    tracing::info!(instance = %doc.metadata.name, %host, "scheduled");
                }
            }
        }
        Ok(())
    }
}

/// The hosts as placement sees them: capacity, what their instances use, which
/// placement groups have members there.
pub struct Capacity {
    pub candidates: Vec<Candidate>,
    /// Host id → index into `candidates`.
    pub index: HashMap<String, usize>,
    /// Placement group id → its rule.
    pub groups: HashMap<String, yunhan_model::PlacementPolicy>,
}

type Doc<K> =
    yunhan_model::Resource<<K as yunhan_model::Kind>::Spec, <K as yunhan_model::Kind>::Status>;

impl Capacity {
    /// Reads hosts, placement groups and instances; returns the capacity and the instances.
    pub async fn load(objects: &Objects) -> Result<(Capacity, Vec<Doc<Instance>>), ObjectError> {
        let hosts = objects.list_all::<Host>(Some(GLOBAL_SCOPE)).await?;
        let instances = objects.list_all::<Instance>(None).await?;
        let groups: HashMap<String, yunhan_model::PlacementPolicy> = objects
            .list_all::<PlacementGroup>(None)
            .await?
            .into_iter()
            .map(|g| (g.metadata.id, g.spec.policy))
            .collect();
        let mut candidates: Vec<Candidate> = hosts
            .iter()
            .map(|h| Candidate {
                id: h.metadata.id.clone(),
                cpus: h.spec.cpus,
                memory_mib: h.spec.memory_mib,
                disk_gib: h.spec.disk_gib,
                schedulable: h.spec.schedulable && h.status.phase == HostPhase::Ready,
                free_gpus: h.spec.gpus.clone(),
                ..Default::default()
            })
            .collect();
        let index: HashMap<String, usize> = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        for i in &instances {
            if let Some(&h) = i.status.host.as_ref().and_then(|h| index.get(h)) {
                candidates[h].used_vcpus += i.status.vcpus as u64;
                candidates[h].used_memory_mib += i.status.memory_mib;
                candidates[h].used_disk_gib += i.status.disk_gib;
                candidates[h]
                    .free_gpus
                    .retain(|g| !i.status.gpu_devices.contains(g));
                if let Some(g) = &i.spec.placement_group {
                    candidates[h].groups.insert(g.clone());
                }
            }
        }
        Ok((
            Capacity {
                candidates,
                index,
                groups,
            },
            instances,
        ))
    }
}

/// What `inst` needs from a host.
pub fn demand(
    inst: &Doc<Instance>,
    groups: &HashMap<String, yunhan_model::PlacementPolicy>,
) -> Demand {
    Demand {
        vcpus: inst.status.vcpus as u64,
        memory_mib: inst.status.memory_mib,
        disk_gib: inst.status.disk_gib,
        gpus: inst.status.gpus,
        group: inst
            .spec
            .placement_group
            .as_ref()
            .map(|g| (g.clone(), groups.get(g).copied().unwrap_or_default())),
    }
}
