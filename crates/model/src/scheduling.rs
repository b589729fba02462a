//! Pure placement decisions: which host an instance goes to, and what each host has
//! allocated. No I/O, so it is property-tested and benchmarked at data-centre scale;
//! the scheduler (controller) and the API (a resize's fit) read the store and call it.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use crate::PlacementPolicy;
use crate::{Doc, Host, HostPhase, Instance, PlacementGroup};

mod index;
pub mod rebalance;
use index::Index;

/// A host as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Candidate {
    pub id: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    /// Ready and not in maintenance.
    pub schedulable: bool,
    pub used_vcpus: u64,
    pub used_memory_mib: u64,
    pub used_disk_gib: u64,
    /// Placement groups with a member on this host.
    pub groups: BTreeSet<String>,
    /// Projects with an instance on this host (a project's VMs spread by default).
    pub projects: BTreeSet<String>,
    /// Instances bound to this host.
    pub instances: u64,
    /// GPUs (PCI addresses) not given to any instance, in order.
    pub free_gpus: Vec<String>,
    /// This host's own overcommit ratios (an admin's `host set`); `None`: the cluster's.
    pub cpu_ratio: Option<f64>,
    pub memory_ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Demand {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub gpus: u32,
    /// The instance's placement group and its rule.
    pub group: Option<(String, PlacementPolicy)>,
    /// The instance's project: hosts without its other VMs come first (a soft
    /// anti-affinity every project has, which costs nothing on one host).
    pub project: Option<String>,
}

/// Where an instance goes and which GPUs it gets there.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement<'a> {
    pub host: &'a Candidate,
    pub gpus: Vec<String>,
}

/// Admin-set overcommit ratios (vCPUs per physical CPU, memory multiplier).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub cpu_ratio: f64,
    pub memory_ratio: f64,
}

impl Default for Policy {
    /// CPU 1:2 as is common for general-purpose clouds; memory is never
    /// overcommitted by default (a guest OOM is worse than a refusal).
    fn default() -> Self {
        Policy {
            cpu_ratio: 2.0,
            memory_ratio: 1.0,
        }
    }
}

/// `size` overcommitted by `ratio` (rounded down): what a host may promise.
fn limit(size: u64, ratio: f64) -> u64 {
    (size as f64 * ratio).floor() as u64
}

/// A fraction `num / den` (`den` ≥ 1) compared exactly, by integer cross-multiplication:
/// a host's load, so that equal loads tie (and go to the smallest id) on every path.
#[derive(Debug, Clone, Copy)]
struct Load {
    num: u64,
    den: u64,
}

impl Load {
    /// `used / limit`, a limit of 0 counting as 1.
    fn of(used: u64, limit: u64) -> Load {
        Load {
            num: used,
            den: limit.max(1),
        }
    }
}

impl Ord for Load {
    fn cmp(&self, o: &Load) -> Ordering {
        (self.num as u128 * o.den as u128).cmp(&(o.num as u128 * self.den as u128))
    }
}
impl PartialOrd for Load {
    fn partial_cmp(&self, o: &Load) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for Load {
    fn eq(&self, o: &Load) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Load {}

/// How good a fitting host is for a demand: (crowded by its soft anti-affinity group,
/// shared with its project, load after placing it); smaller is better.
type Preference = (bool, bool, Load);

impl Candidate {
    /// The vCPUs this host may carry: its CPUs times its (or the cluster's) ratio.
    pub fn cpu_limit(&self, p: &Policy) -> u64 {
        limit(self.cpus as u64, self.cpu_ratio.unwrap_or(p.cpu_ratio))
    }
    /// The memory (MiB) this host may promise: its memory times its (or the cluster's) ratio.
    pub fn memory_limit(&self, p: &Policy) -> u64 {
        limit(self.memory_mib, self.memory_ratio.unwrap_or(p.memory_ratio))
    }
    /// Why `d` does not fit here, if it does not.
    pub fn misfit(&self, d: &Demand, p: &Policy) -> Option<&'static str> {
        if !self.schedulable {
            Some("not ready or in maintenance")
        } else if self.used_vcpus + d.vcpus > self.cpu_limit(p) {
            Some("not enough vCPUs")
        } else if self.used_memory_mib + d.memory_mib > self.memory_limit(p) {
            Some("not enough memory")
        } else if self.used_disk_gib + d.disk_gib > self.disk_gib {
            Some("not enough disk")
        } else if (self.free_gpus.len() as u32) < d.gpus {
            Some("not enough free GPUs")
        } else if matches!(&d.group, Some((g, PlacementPolicy::HardAntiAffinity)) if self.groups.contains(g))
        {
            Some("hard anti-affinity: a member of the placement group is already there")
        } else {
            None
        }
    }

    /// Would this host break the demand's soft anti-affinity?
    fn crowded(&self, d: &Demand) -> bool {
        matches!(&d.group, Some((g, PlacementPolicy::SoftAntiAffinity)) if self.groups.contains(g))
    }
    /// Does this host already run a VM of the demand's project?
    fn shared(&self, d: &Demand) -> bool {
        d.project
            .as_ref()
            .is_some_and(|p| self.projects.contains(p))
    }
    /// The host's load after placing `d`: the larger of CPU and memory fractions.
    fn load_after(&self, d: &Demand, p: &Policy) -> Load {
        let cpu = Load::of(self.used_vcpus + d.vcpus, self.cpu_limit(p));
        let mem = Load::of(self.used_memory_mib + d.memory_mib, self.memory_limit(p));
        cpu.max(mem)
    }
    /// How good this (fitting) host is for `d`.
    fn preference(&self, d: &Demand, p: &Policy) -> Preference {
        (self.crowded(d), self.shared(d), self.load_after(d, p))
    }
}

impl<'a> Placement<'a> {
    /// `d` on `host`, with its first free GPUs.
    fn on(host: &'a Candidate, d: &Demand) -> Placement<'a> {
        let gpus = host.free_gpus[..d.gpus as usize].to_vec();
        Placement { host, gpus }
    }
}

/// Why no host can take a demand; the text becomes the instance's status message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no hosts are registered; start an agent with 'yunhan agent'")]
    NoHosts,
    /// Every host misfits; `reasons` counts hosts per reason.
    #[error(
        "no host can fit {vcpus} vCPU / {memory_mib} MiB / {disk_gib} GiB ({})",
        per_reason(.reasons)
    )]
    NoFit {
        vcpus: u64,
        memory_mib: u64,
        disk_gib: u64,
        reasons: BTreeMap<&'static str, usize>,
    },
}

/// `2 host(s): not enough vCPUs; 1 host(s): …`
fn per_reason(reasons: &BTreeMap<&'static str, usize>) -> String {
    let detail: Vec<String> = reasons
        .iter()
        .map(|(why, n)| format!("{n} host(s): {why}"))
        .collect();
    detail.join("; ")
}

/// Least-loaded host that fits, preferring hosts without a member of a soft
/// anti-affinity group, then hosts without another VM of the same project; ties go to
/// the smallest id, then the first in `hosts` (deterministic). `Err` says why nothing
/// fits, counting hosts per reason. A linear scan: the reference [`Capacity::place`]
/// (indexed) is tested against, and the right tool for a handful of hosts.
pub fn place<'a>(
    hosts: &'a [Candidate],
    d: &Demand,
    p: &Policy,
) -> Result<Placement<'a>, PlacementError> {
    (hosts.iter())
        .filter(|h| h.misfit(d, p).is_none())
        .min_by_key(|h| (h.preference(d, p), h.id.as_str()))
        .map(|h| Placement::on(h, d))
        .ok_or_else(|| refusal(hosts, d, p))
}

/// Why none of `hosts` takes `d` (each misfits): the hosts counted per reason.
fn refusal<'a>(
    hosts: impl IntoIterator<Item = &'a Candidate>,
    d: &Demand,
    p: &Policy,
) -> PlacementError {
    let mut seen = 0;
    let mut reasons: BTreeMap<&'static str, usize> = Default::default();
    for h in hosts {
        seen += 1;
        if let Some(why) = h.misfit(d, p) {
            *reasons.entry(why).or_default() += 1;
        }
    }
    if seen == 0 {
        return PlacementError::NoHosts;
    }
    PlacementError::NoFit {
        vcpus: d.vcpus,
        memory_mib: d.memory_mib,
        disk_gib: d.disk_gib,
        reasons,
    }
}

/// A placement group as the scheduler sees it: whose it is and its rule.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRule {
    pub project: Option<String>,
    pub policy: PlacementPolicy,
}

/// Placement group id → its owner and rule.
pub type Groups = HashMap<String, GroupRule>;

/// The hosts as placement sees them: capacity, what their instances use, which
/// placement groups and projects have instances there; indexed so that a decision
/// costs microseconds at 10,000 hosts ([`Capacity::place`]).
#[derive(Debug, Clone, Default)]
pub struct Capacity {
    /// The hosts, in id order (a host's position is its rank in the index).
    candidates: Vec<Candidate>,
    /// Host id → position in `candidates`.
    by_id: HashMap<String, usize>,
    /// The schedulable hosts by shape and usage, and who has members where.
    index: Index,
    /// The placement groups, by id.
    pub groups: Groups,
}

impl Capacity {
    /// What every host offers and has allocated, from the store's documents.
    pub fn build(
        hosts: &[Doc<Host>],
        instances: &[Doc<Instance>],
        groups: &[Doc<PlacementGroup>],
    ) -> Capacity {
        let groups: Groups = (groups.iter())
            .map(|g| {
                let rule = GroupRule {
                    project: g.metadata.project.clone(),
                    policy: g.spec.policy,
                };
                (g.metadata.id.clone(), rule)
            })
            .collect();
        let mut cap = Capacity::unindexed(hosts.iter().map(candidate).collect(), groups);
        for i in instances {
            let host = i.status.host.as_ref().and_then(|h| cap.by_id.get(h));
            if let Some(&h) = host {
                let d = demand(i, &cap.groups);
                count(&mut cap.candidates[h], &d, &i.status.gpu_devices);
            }
        }
        cap.index = Index::new(&cap.candidates);
        cap
    }

    /// `candidates` (their usage already counted) indexed for placement.
    pub fn new(candidates: Vec<Candidate>, groups: Groups) -> Capacity {
        let mut cap = Capacity::unindexed(candidates, groups);
        cap.index = Index::new(&cap.candidates);
        cap
    }

    /// `candidates` in id order, found by id, not yet indexed.
    fn unindexed(mut candidates: Vec<Candidate>, groups: Groups) -> Capacity {
        candidates.sort_by(|a, b| a.id.cmp(&b.id));
        let by_id = (candidates.iter().enumerate())
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        Capacity {
            candidates,
            by_id,
            index: Index::default(),
            groups,
        }
    }

    /// Counts `d` (with `gpus`) on host `host` (an unknown host: nothing).
    pub fn bind(&mut self, host: &str, d: &Demand, gpus: &[String]) {
        let Some(&h) = self.by_id.get(host) else {
            return;
        };
        self.index.remove(h, &self.candidates[h]);
        count(&mut self.candidates[h], d, gpus);
        self.index.insert(h, &self.candidates[h]);
        self.index.note(h, d);
    }

    /// The host with id `id`, as placement sees it.
    pub fn host(&self, id: &str) -> Option<&Candidate> {
        self.by_id.get(id).map(|&i| &self.candidates[i])
    }

    /// Every host, in id order.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// Where `d` goes: exactly [`place`]`(self.candidates(), d, p)`, from the index.
    pub fn place(&self, d: &Demand, p: &Policy) -> Result<Placement<'_>, PlacementError> {
        self.decide(d, p, None)
    }

    /// Where `d` goes on any host but `source` (a migration's target): exactly
    /// [`place`] over the other hosts.
    pub fn place_elsewhere(
        &self,
        d: &Demand,
        p: &Policy,
        source: &str,
    ) -> Result<Placement<'_>, PlacementError> {
        self.decide(d, p, self.by_id.get(source).copied())
    }

    /// The indexed decision: the best ordinary host (no member of `d`'s group nor VM
    /// of its project there) from the index, else the best of those exceptions (few);
    /// a scan when the exceptions are most hosts, and, when nothing fits, a scan to
    /// count the reasons.
    fn decide(
        &self,
        d: &Demand,
        p: &Policy,
        without: Option<usize>,
    ) -> Result<Placement<'_>, PlacementError> {
        let skip = self.index.exceptions(d, without);
        let best = if skip.most_of(self.candidates.len()) {
            self.best_of(
                (0..self.candidates.len()).filter(|&h| Some(h) != without),
                d,
                p,
            )
        } else {
            (self.index.best(&self.candidates, d, p, &skip))
                .or_else(|| self.best_of(skip.hosts(), d, p))
        };
        match best {
            Some(h) => Ok(Placement::on(&self.candidates[h], d)),
            None => Err(refusal(
                (self.candidates.iter().enumerate())
                    .filter(|&(h, _)| Some(h) != without)
                    .map(|(_, c)| c),
                d,
                p,
            )),
        }
    }

    /// The best fitting host among `hosts` (the full preference decides): the index's
    /// exceptions, or every host when they are most of them (a scan).
    fn best_of(&self, hosts: impl Iterator<Item = usize>, d: &Demand, p: &Policy) -> Option<usize> {
        hosts
            .filter(|&h| self.candidates[h].misfit(d, p).is_none())
            .min_by_key(|&h| (self.candidates[h].preference(d, p), h))
    }
}

/// Counts `d` (with `gpus`) on `c`.
fn count(c: &mut Candidate, d: &Demand, gpus: &[String]) {
    c.used_vcpus += d.vcpus;
    c.used_memory_mib += d.memory_mib;
    c.used_disk_gib += d.disk_gib;
    c.instances += 1;
    c.free_gpus.retain(|g| !gpus.contains(g));
    if let Some((g, _)) = &d.group {
        c.groups.insert(g.clone());
    }
    if let Some(p) = &d.project {
        c.projects.insert(p.clone());
    }
}

/// A host's offer: its size, its own ratios, schedulable when Ready and not in
/// maintenance, every GPU free until an instance takes it.
fn candidate(h: &Doc<Host>) -> Candidate {
    Candidate {
        id: h.metadata.id.clone(),
        cpus: h.spec.cpus,
        memory_mib: h.spec.memory_mib,
        disk_gib: h.spec.disk_gib,
        schedulable: h.spec.schedulable && h.status.phase == HostPhase::Ready,
        free_gpus: h.spec.gpus.clone(),
        cpu_ratio: h.spec.cpu_overcommit,
        memory_ratio: h.spec.memory_overcommit,
        ..Default::default()
    }
}

/// What `inst` needs from a host: what its status says it was given (the flavor, as
/// the quota charged it), its placement group's rule, its project.
pub fn demand(inst: &Doc<Instance>, groups: &Groups) -> Demand {
    Demand {
        vcpus: inst.status.vcpus as u64,
        memory_mib: inst.status.memory_mib,
        disk_gib: inst.status.disk_gib,
        gpus: inst.status.gpus,
        group: membership(inst, groups),
        project: inst.metadata.project.clone(),
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
    use proptest::prelude::*;

    fn host() -> impl Strategy<Value = Candidate> {
        (
            (
                0u32..1000,
                1u32..64,
                512u64..262_144,
                10u64..4000,
                any::<bool>(),
            ),
            (0u64..128, 0u64..262_144, 0u64..4000),
            (proptest::collection::btree_set("g[0-3]", 0..3), 0usize..5),
            (
                proptest::option::of(1.0f64..16.0),
                proptest::option::of(1.0f64..4.0),
                proptest::collection::btree_set("prj-[a-c]", 0..3),
            ),
        )
            .prop_map(
                |(
                    (id, cpus, memory_mib, disk_gib, schedulable),
                    (uv, um, ud),
                    (groups, gpus),
                    (cpu_ratio, memory_ratio, projects),
                )| {
                    Candidate {
                        id: format!("hst-{id:04}"),
                        cpus,
                        memory_mib,
                        disk_gib,
                        schedulable,
                        used_vcpus: uv,
                        used_memory_mib: um,
                        used_disk_gib: ud,
                        groups,
                        free_gpus: (0..gpus).map(|i| format!("0000:0{i}:00.0")).collect(),
                        cpu_ratio,
                        memory_ratio,
                        projects,
                        instances: 0,
                    }
                },
            )
    }

    fn demand() -> impl Strategy<Value = Demand> {
        (
            1u64..32,
            64u64..65_536,
            1u64..500,
            0u32..3,
            proptest::option::of(("g[0-3]", any::<bool>())),
            proptest::option::of("prj-[a-c]"),
        )
            .prop_map(
                |(vcpus, memory_mib, disk_gib, gpus, group, project)| Demand {
                    project,
                    vcpus,
                    memory_mib,
                    disk_gib,
                    gpus,
                    group: group.map(|(g, hard)| {
                        let policy = if hard {
                            PlacementPolicy::HardAntiAffinity
                        } else {
                            PlacementPolicy::SoftAntiAffinity
                        };
                        (g, policy)
                    }),
                },
            )
    }

    /// A host of a cloud with few shapes and usages: many hosts tie, in shape and in load.
    fn alike_host() -> impl Strategy<Value = Candidate> {
        (
            (
                0u32..1000,
                prop::sample::select(vec![(8, 16_384), (16, 65_536)]),
            ),
            (0u64..2, prop::option::of(Just(1.5f64)), 0usize..3),
            (0u64..8, 0u64..8, 0u64..4, prop::bool::weighted(0.9)),
            (
                prop::collection::btree_set("g[0-3]", 0..2),
                prop::collection::btree_set("prj-[a-c]", 0..2),
            ),
        )
            .prop_map(
                |(
                    (id, (cpus, memory_mib)),
                    (disk, cpu_ratio, gpus),
                    (v, m, dk, ok),
                    (groups, projects),
                )| {
                    Candidate {
                        id: format!("hst-{id:04}"),
                        cpus,
                        memory_mib,
                        disk_gib: 100 + 100 * disk,
                        schedulable: ok,
                        used_vcpus: 2 * v,
                        used_memory_mib: 4096 * m,
                        used_disk_gib: 40 * dk,
                        groups,
                        projects,
                        free_gpus: (0..gpus).map(|i| format!("0000:0{i}:00.0")).collect(),
                        cpu_ratio,
                        ..Default::default()
                    }
                },
            )
    }

    /// A cloud of distinct hosts (ids unique), some alike, some of any shape.
    fn cloud() -> impl Strategy<Value = Vec<Candidate>> {
        prop::collection::vec(prop_oneof![alike_host(), host()], 0..40).prop_map(|mut hosts| {
            let mut seen = BTreeSet::new();
            hosts.retain(|h| seen.insert(h.id.clone()));
            hosts
        })
    }

    /// The index's decision and the scan's, as comparable values.
    fn both(cap: &Capacity, d: &Demand, p: &Policy) -> (Decision, Decision) {
        let indexed = cap.place(d, p).map(|h| (h.host.id.clone(), h.gpus));
        let scanned = place(cap.candidates(), d, p).map(|h| (h.host.id.clone(), h.gpus));
        (indexed, scanned)
    }
    type Decision = Result<(String, Vec<String>), PlacementError>;

    proptest! {
        #[test]
        fn the_index_decides_as_the_scan(
            hosts in cloud(),
            steps in prop::collection::vec((demand(), any::<prop::sample::Index>()), 1..12),
        ) {
            let p = Policy::default();
            let mut cap = Capacity::new(hosts, Groups::default());
            for (d, other) in steps {
                let (indexed, scanned) = both(&cap, &d, &p);
                prop_assert_eq!(&indexed, &scanned);
                if let Some(source) = (!cap.candidates().is_empty()).then(|| other.get(cap.candidates()).id.clone()) {
                    let rest: Vec<Candidate> = cap.candidates().iter().filter(|c| c.id != source).cloned().collect();
                    let elsewhere = cap.place_elsewhere(&d, &p, &source).map(|h| (h.host.id.clone(), h.gpus));
                    let scanned = place(&rest, &d, &p).map(|h| (h.host.id.clone(), h.gpus));
                    prop_assert_eq!(elsewhere, scanned);
                }
                // Bind as the scheduler does, or (nothing fits) somewhere anyway.
                match indexed {
                    Ok((host, gpus)) => cap.bind(&host, &d, &gpus),
                    Err(_) if !cap.candidates().is_empty() => {
                        let host = other.get(cap.candidates());
                        let gpus: Vec<String> = host.free_gpus.iter().take(d.gpus as usize).cloned().collect();
                        cap.bind(&host.id.clone(), &d, &gpus);
                    }
                    Err(_) => {}
                }
            }
        }

        #[test]
        fn never_over_capacity_nor_against_anti_affinity(hosts in proptest::collection::vec(host(), 0..30), d in demand()) {
            let p = Policy::default();
            match place(&hosts, &d, &p) {
                Ok(Placement { host: h, gpus }) => {
                    prop_assert!(h.schedulable);
                    prop_assert!(h.used_vcpus + d.vcpus <= h.cpu_limit(&p));
                    prop_assert!(h.used_memory_mib + d.memory_mib <= h.memory_limit(&p));
                    prop_assert!(h.used_disk_gib + d.disk_gib <= h.disk_gib);
                    prop_assert_eq!(gpus.len() as u32, d.gpus);
                    prop_assert!(gpus.iter().all(|g| h.free_gpus.contains(g)));
                    match &d.group {
                        Some((g, PlacementPolicy::HardAntiAffinity)) => prop_assert!(!h.groups.contains(g)),
                        Some((g, PlacementPolicy::SoftAntiAffinity)) if h.groups.contains(g) => {
                            // Crowding a soft group only when no uncrowded host fits.
                            prop_assert!(hosts.iter().all(|o| o.misfit(&d, &p).is_some() || o.groups.contains(g)));
                        }
                        _ => {}
                    }
                }
                Err(_) => prop_assert!(hosts.iter().all(|h| h.misfit(&d, &p).is_some())),
            }
        }

        #[test]
        fn a_project_shares_a_host_only_when_no_other_fits(hosts in proptest::collection::vec(host(), 0..30), d in demand()) {
            let p = Policy::default();
            if let (Ok(placed), None, Some(project)) = (place(&hosts, &d, &p), &d.group, &d.project) {
                if placed.host.projects.contains(project) {
                    prop_assert!(hosts.iter().all(|o| o.misfit(&d, &p).is_some() || o.projects.contains(project)));
                }
            }
        }

        #[test]
        fn other_groups_never_interact(hosts in proptest::collection::vec(host(), 0..30), d in demand()) {
            // Groups are ids: another project's group of the same name is another id.
            // Whatever other groups hosts hold, only the demand's own group counts.
            let p = Policy::default();
            let own = d.group.as_ref().map(|(g, _)| g.clone());
            let stripped: Vec<Candidate> = hosts
                .iter()
                .map(|h| Candidate {
                    groups: h.groups.iter().filter(|g| Some(*g) == own.as_ref()).cloned().collect(),
                    ..h.clone()
                })
                .collect();
            let a = place(&hosts, &d, &p).map(|h| (h.host.id.clone(), h.gpus));
            let b = place(&stripped, &d, &p).map(|h| (h.host.id.clone(), h.gpus));
            prop_assert_eq!(a, b);
        }

        #[test]
        fn deterministic_and_order_independent(mut hosts in proptest::collection::vec(host(), 1..30), d in demand()) {
            let p = Policy::default();
            let a = place(&hosts, &d, &p).map(|h| (h.host.id.clone(), h.gpus));
            hosts.reverse();
            let b = place(&hosts, &d, &p).map(|h| (h.host.id.clone(), h.gpus));
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn loads_compare_exactly() {
        assert_eq!(Load::of(1, 3), Load::of(2, 6));
        // Equal as f64, yet (MAX-1)/(MAX-2) is the larger.
        let (a, b) = (
            Load::of(u64::MAX, u64::MAX - 1),
            Load::of(u64::MAX - 1, u64::MAX - 2),
        );
        assert_eq!(a.num as f64 / a.den as f64, b.num as f64 / b.den as f64);
        assert!(a < b);
        assert_eq!(Load::of(5, 0), Load::of(5, 1));
    }

    #[test]
    fn prefers_least_loaded_and_explains_refusal() {
        let mk = |id: &str, used: u64| Candidate {
            id: id.into(),
            cpus: 4,
            memory_mib: 4096,
            disk_gib: 100,
            schedulable: true,
            used_vcpus: used,
            ..Default::default()
        };
        let hosts = vec![mk("a", 6), mk("b", 2)];
        let d = Demand {
            vcpus: 1,
            memory_mib: 512,
            disk_gib: 1,
            ..Default::default()
        };
        assert_eq!(place(&hosts, &d, &Policy::default()).unwrap().host.id, "b");
        let big = Demand {
            vcpus: 16,
            memory_mib: 512,
            disk_gib: 1,
            ..Default::default()
        };
        let why = place(&hosts, &big, &Policy::default())
            .unwrap_err()
            .to_string();
        assert!(why.contains("2 host(s): not enough vCPUs"), "{why}");
    }
}

#[cfg(test)]
mod group_tests {
    use super::*;

    #[test]
    fn hard_group_spreads_then_refuses() {
        let mut hosts: Vec<Candidate> = ["a", "b"]
            .iter()
            .map(|id| Candidate {
                id: id.to_string(),
                cpus: 8,
                memory_mib: 8192,
                disk_gib: 100,
                schedulable: true,
                ..Default::default()
            })
            .collect();
        let d = Demand {
            vcpus: 1,
            memory_mib: 256,
            disk_gib: 1,
            gpus: 0,
            group: Some(("web".into(), PlacementPolicy::HardAntiAffinity)),
            project: None,
        };
        let p = Policy::default();
        for _ in 0..2 {
            let id = place(&hosts, &d, &p).unwrap().host.id.clone();
            hosts
                .iter_mut()
                .find(|h| h.id == id)
                .unwrap()
                .groups
                .insert("web".into());
        }
        assert!(
            hosts.iter().all(|h| h.groups.contains("web")),
            "one member per host"
        );
        let why = place(&hosts, &d, &p).unwrap_err().to_string();
        assert!(why.contains("hard anti-affinity"), "{why}");
        // A soft group would still place the third member.
        let soft = Demand {
            group: Some(("web".into(), PlacementPolicy::SoftAntiAffinity)),
            ..d
        };
        assert!(place(&hosts, &soft, &p).is_ok());
    }
}
