//! The scheduler binds Pending instances to hosts (`status.host`), or marks
//! them Unschedulable with the reason; it retries Unschedulable ones on every
//! pass, so adding a host or freeing capacity un-sticks them.

use std::collections::HashMap;

use async_trait::async_trait;
use yunhan_model::{Host, HostPhase, Instance, InstancePhase};
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
        let hosts = objects.list_all::<Host>(Some(GLOBAL_SCOPE)).await?;
        let instances = objects.list_all::<Instance>(None).await?;
        let mut candidates: Vec<Candidate> = hosts
            .iter()
            .map(|h| Candidate {
                id: h.metadata.id.clone(),
                cpus: h.spec.cpus,
                memory_mib: h.spec.memory_mib,
                disk_gib: h.spec.disk_gib,
                schedulable: h.spec.schedulable && h.status.phase == HostPhase::Ready,
                used_vcpus: 0,
                used_memory_mib: 0,
                used_disk_gib: 0,
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
            }
        }
        for inst in instances {
            let waiting = matches!(
                inst.status.phase,
                InstancePhase::Pending | InstancePhase::Unschedulable
            );
            if inst.status.host.is_some() || !waiting || inst.metadata.deleting.is_some() {
                continue;
            }
            let d = Demand {
                vcpus: inst.status.vcpus as u64,
                memory_mib: inst.status.memory_mib,
                disk_gib: inst.status.disk_gib,
            };
            let decision = place(&candidates, &d, &self.policy).map(|h| h.id.clone());
            let written = objects
                .modify::<Instance>(&inst.metadata.id, |doc| {
                    if doc.status.host.is_some() || doc.metadata.deleting.is_some() {
                        return false;
                    }
                    match &decision {
                        Ok(host) => {
                            doc.status.host = Some(host.clone());
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
            if let (Some(doc), Ok(host)) = (written, &decision) {
                if doc.status.host.as_ref() == Some(host) {
                    let c = &mut candidates[index[host]];
                    c.used_vcpus += d.vcpus;
                    c.used_memory_mib += d.memory_mib;
                    c.used_disk_gib += d.disk_gib;
                    tracing::info!(instance = %doc.metadata.name, %host, "scheduled");
                }
            }
        }
        Ok(())
    }
}
