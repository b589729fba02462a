//! The scheduler binds Pending instances to hosts (`status.host`), or marks
//! them Unschedulable with the reason; it retries Unschedulable ones on every
//! pass, so adding a host or freeing capacity un-sticks them.

use async_trait::async_trait;
use yunhan_model::scheduling::{demand, Capacity, Policy};
use yunhan_model::{Doc, Host, HostAllocation, Instance, InstancePhase, PlacementGroup};
use yunhan_store::objects::{object_prefix, ObjectError, Objects, GLOBAL_SCOPE};

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
        let (mut cap, instances, hosts) = load(objects).await?;
        for inst in instances {
            let waiting = matches!(
                inst.status.phase,
                InstancePhase::Pending | InstancePhase::Unschedulable
            );
            if inst.status.host.is_some() || !waiting || inst.metadata.deleting.is_some() {
                continue;
            }
            self.schedule(objects, &mut cap, &inst).await?;
        }
        publish_allocations(objects, &hosts, &cap, &self.policy).await
    }
}

impl Scheduler {
    /// Binds one waiting instance to a host (counting it there), or says why none fits.
    async fn schedule(
        &self,
        objects: &Objects,
        cap: &mut Capacity,
        inst: &Doc<Instance>,
    ) -> Result<(), ObjectError> {
        let d = demand(inst, &cap.groups);
        let decision = (cap.place(&d, &self.policy)).map(|p| (p.host.id.clone(), p.gpus));
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
                cap.bind(host, &d, gpus);
                tracing::info!(instance = %doc.metadata.name, %host, "scheduled");
            }
        }
        Ok(())
    }
}

/// Reads hosts, placement groups and instances: the capacity as placement sees it, the
/// instances and the hosts.
pub async fn load(
    objects: &Objects,
) -> Result<(Capacity, Vec<Doc<Instance>>, Vec<Doc<Host>>), ObjectError> {
    let hosts = objects.list_all::<Host>(Some(GLOBAL_SCOPE)).await?;
    let instances = objects.list_all::<Instance>(None).await?;
    let groups = objects.list_all::<PlacementGroup>(None).await?;
    let cap = Capacity::build(&hosts, &instances, &groups);
    Ok((cap, instances, hosts))
}

/// Writes each host's allocation where it changed (after this pass's bindings).
async fn publish_allocations(
    objects: &Objects,
    hosts: &[Doc<Host>],
    cap: &Capacity,
    policy: &Policy,
) -> Result<(), ObjectError> {
    for h in hosts {
        let Some(c) = cap.host(&h.metadata.id) else {
            continue;
        };
        let want = HostAllocation {
            instances: c.instances,
            vcpus: c.used_vcpus,
            vcpu_limit: c.cpu_limit(policy),
            cpu_ratio: c.cpu_ratio.unwrap_or(policy.cpu_ratio),
            memory_mib: c.used_memory_mib,
            memory_limit_mib: c.memory_limit(policy),
            memory_ratio: c.memory_ratio.unwrap_or(policy.memory_ratio),
            disk_gib: c.used_disk_gib,
        };
        if h.status.allocation == want {
            continue;
        }
        objects
            .modify::<Host>(&h.metadata.id, |d| {
                let changed = d.status.allocation != want;
                d.status.allocation = want.clone();
                changed
            })
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunhan_model::{
        HostPhase, HostSpec, InstanceSpec, Metadata, PlacementGroupSpec, PlacementPolicy, Project,
        ProjectSpec, Resource,
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
