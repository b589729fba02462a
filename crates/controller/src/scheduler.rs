//! The scheduler binds Pending instances to hosts (`status.host`), or marks
//! them Unschedulable with the reason; it retries Unschedulable ones on every
//! pass, so adding a host or freeing capacity un-sticks them.

use std::collections::HashMap;

use async_trait::async_trait;
use yunhan_model::{
    Doc, Host, HostPhase, Instance, InstancePhase, PlacementGroup, PlacementPolicy,
};
use yunhan_store::objects::{object_prefix, ObjectError, Objects, GLOBAL_SCOPE};

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
        vec![object_prefix::<Instance>(None), object_prefix::<Host>(None)]
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
                            let why = why.to_string();
                            if doc.status.phase == InstancePhase::Unschedulable
                                && doc.status.message == why
                            {
                                return false;
                            }
                            doc.status.phase = InstancePhase::Unschedulable;
                            doc.status.message = why;
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
    /// The placement groups, by id.
    pub groups: Groups,
}

/// A placement group as the scheduler sees it: whose it is and its rule.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRule {
    pub project: Option<String>,
    pub policy: PlacementPolicy,
}

/// Placement group id → its owner and rule.
pub type Groups = HashMap<String, GroupRule>;

impl Capacity {
    /// Reads hosts, placement groups and instances; returns the capacity and the instances.
    pub async fn load(objects: &Objects) -> Result<(Capacity, Vec<Doc<Instance>>), ObjectError> {
        let hosts = objects.list_all::<Host>(Some(GLOBAL_SCOPE)).await?;
        let instances = objects.list_all::<Instance>(None).await?;
        let groups: Groups = objects
            .list_all::<PlacementGroup>(None)
            .await?
            .into_iter()
            .map(|g| {
                let rule = GroupRule {
                    project: g.metadata.project,
                    policy: g.spec.policy,
                };
                (g.metadata.id, rule)
            })
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
                if let Some((g, _)) = membership(i, &groups) {
                    candidates[h].groups.insert(g);
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
pub fn demand(inst: &Doc<Instance>, groups: &Groups) -> Demand {
    let group = membership(inst, groups);
    if group.is_none() {
        if let Some(raw) = &inst.spec.placement_group {
            tracing::warn!(
                instance = %inst.metadata.id,
                placement_group = %raw,
                "not a placement group of the instance's project (stored before groups were resolved at creation?): placed as without a group"
            );
        }
    }
    Demand {
        vcpus: inst.status.vcpus as u64,
        memory_mib: inst.status.memory_mib,
        disk_gib: inst.status.disk_gib,
        gpus: inst.status.gpus,
        group,
    }
}

/// The placement group `inst` is a member of, with its rule: `spec.placement_group`
/// holds the id of a group of the instance's own project (the API resolves it at
/// creation). Anything else — a raw name or another project's id stored before
/// that — is no group, so one project's groups never constrain another's instances.
pub fn membership(inst: &Doc<Instance>, groups: &Groups) -> Option<(String, PlacementPolicy)> {
    let id = inst.spec.placement_group.as_ref()?;
    let rule = groups.get(id)?;
    (rule.project == inst.metadata.project).then(|| (id.clone(), rule.policy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunhan_model::{
        HostSpec, InstanceSpec, Metadata, PlacementGroupSpec, Project, ProjectSpec, Resource,
    };

    fn doc<S, T: Default>(id: &str, name: &str, project: Option<&str>, spec: S) -> Resource<S, T> {
        Resource {
            metadata: Metadata {
                created: "2026-01-01T00:00:00Z".into(),
                ..Metadata::new(id, name, project.map(Into::into))
            },
            spec,
            status: T::default(),
        }
    }

    /// One Ready host, projects A and B each with a hard group named `db`.
    async fn cloud() -> Objects {
        let objects = Objects::new(std::sync::Arc::new(yunhan_store::MemStore::new()));
        for p in ["prj-a", "prj-b"] {
            let project: Doc<Project> = doc(p, p, None, ProjectSpec::default());
            objects.create::<Project>(project).await.unwrap();
            let pg = PlacementGroupSpec {
                policy: PlacementPolicy::HardAntiAffinity,
            };
            let g: Doc<PlacementGroup> = doc(&format!("pg-{p}"), "db", Some(p), pg);
            objects.create::<PlacementGroup>(g).await.unwrap();
        }
        let spec = HostSpec {
            hostname: "h1".into(),
            cpus: 16,
            memory_mib: 16384,
            disk_gib: 100,
            schedulable: true,
            ..Default::default()
        };
        let mut h: Doc<Host> = doc("hst-1", "h1", None, spec);
        h.status.phase = HostPhase::Ready;
        objects.create::<Host>(h).await.unwrap();
        objects
    }

    async fn vm(objects: &Objects, id: &str, project: &str, group: &str) {
        let spec = InstanceSpec {
            placement_group: Some(group.into()),
            ..Default::default()
        };
        let mut i: Doc<Instance> = doc(id, id, Some(project), spec);
        (i.status.vcpus, i.status.memory_mib, i.status.disk_gib) = (1, 256, 1);
        objects.create::<Instance>(i).await.unwrap();
    }

    async fn phase(objects: &Objects, id: &str) -> InstancePhase {
        let i = objects.get::<Instance>(id).await.unwrap().unwrap();
        i.status.phase
    }

    #[tokio::test]
    async fn same_named_groups_of_two_projects_never_interact() {
        let objects = cloud().await;
        let s = Scheduler::default();
        vm(&objects, "ins-a1", "prj-a", "pg-prj-a").await;
        s.reconcile(&objects).await.unwrap();
        assert_eq!(phase(&objects, "ins-a1").await, InstancePhase::Scheduled);
        // B's members of its own `db`, and B pointing at A's group id, land beside A's member.
        vm(&objects, "ins-b1", "prj-b", "pg-prj-b").await;
        vm(&objects, "ins-b2", "prj-b", "pg-prj-a").await;
        s.reconcile(&objects).await.unwrap();
        assert_eq!(phase(&objects, "ins-b1").await, InstancePhase::Scheduled);
        assert_eq!(phase(&objects, "ins-b2").await, InstancePhase::Scheduled);
        // A's own rule still holds, unchanged by B: its second member has no host.
        vm(&objects, "ins-a2", "prj-a", "pg-prj-a").await;
        s.reconcile(&objects).await.unwrap();
        let a2 = objects.get::<Instance>("ins-a2").await.unwrap().unwrap();
        assert_eq!(a2.status.phase, InstancePhase::Unschedulable);
        assert!(
            a2.status.message.contains("hard anti-affinity"),
            "{}",
            a2.status.message
        );
    }

    #[tokio::test]
    async fn a_raw_name_from_before_resolution_is_no_group() {
        let objects = cloud().await;
        let s = Scheduler::default();
        for id in ["ins-1", "ins-2"] {
            vm(&objects, id, "prj-a", "db").await;
        }
        s.reconcile(&objects).await.unwrap();
        for id in ["ins-1", "ins-2"] {
            assert_eq!(phase(&objects, id).await, InstancePhase::Scheduled, "{id}");
        }
    }
}
