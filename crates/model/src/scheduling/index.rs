//! The placement index: schedulable hosts grouped by shape (size, ratios, free GPUs),
//! then by usage, so that a decision visits a few usages instead of every host.
//!
//! Within a shape, every host at one usage has the same load after any demand and fits
//! it or not alike, unless it holds a member of the demand's placement group or a VM of
//! its project: those hosts are exceptions, set aside and weighed by the caller. So the
//! best ordinary host of a usage is its first non-exception host (hosts are positions in
//! id order), and the best usage of a shape is found by walking its usages in vCPU order
//! and in memory order together until neither walk can reach a lower load (Fagin's
//! threshold algorithm for `max(cpu, memory)`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{limit, Candidate, Demand, Load, Policy};

/// Schedulable hosts by shape and usage, and which hosts hold a member of each
/// placement group and a VM of each project.
#[derive(Debug, Clone, Default)]
pub(super) struct Index {
    shapes: BTreeMap<Shape, Usages>,
    groups: HashMap<String, BTreeSet<usize>>,
    projects: HashMap<String, BTreeSet<usize>>,
}

/// What, besides usage, decides whether a host fits and how loaded it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    cpus: u32,
    memory_mib: u64,
    disk_gib: u64,
    /// The host's own ratios, as bits (`f64` is not `Ord`).
    cpu_ratio: Option<u64>,
    memory_ratio: Option<u64>,
    free_gpus: usize,
}

/// What a host's instances use: (vCPUs, memory MiB, disk GiB).
type Usage = (u64, u64, u64);

/// The hosts of one shape by usage.
#[derive(Debug, Clone, Default)]
struct Usages {
    /// Usage, in vCPU order → the hosts (positions) at exactly that usage.
    by_cpu: BTreeMap<Usage, BTreeSet<usize>>,
    /// The same usages as (memory, vCPUs, disk): in memory order.
    by_memory: BTreeSet<Usage>,
}

/// Hosts the index passes over for a demand: those holding a member of its placement
/// group or a VM of its project, and the host a migration leaves (never a target).
pub(super) struct Exceptions<'a> {
    sets: [Option<&'a BTreeSet<usize>>; 2],
    without: Option<usize>,
}

impl Exceptions<'_> {
    fn contains(&self, h: usize) -> bool {
        self.without == Some(h) || self.sets.iter().flatten().any(|s| s.contains(&h))
    }
    /// So many that passing over them one by one in the index would cost more than a
    /// scan: more than half of `hosts` (a project on most hosts, e.g. one tenant).
    pub(super) fn most_of(&self, hosts: usize) -> bool {
        let n: usize = self.sets.iter().flatten().map(|s| s.len()).sum();
        n * 2 > hosts
    }
    /// The group's and the project's hosts (some twice), but not the one left.
    pub(super) fn hosts(&self) -> impl Iterator<Item = usize> + '_ {
        (self.sets.iter().flatten())
            .flat_map(|s| s.iter().copied())
            .filter(|&h| Some(h) != self.without)
    }
}

impl Shape {
    fn of(c: &Candidate) -> Shape {
        Shape {
            cpus: c.cpus,
            memory_mib: c.memory_mib,
            disk_gib: c.disk_gib,
            cpu_ratio: c.cpu_ratio.map(f64::to_bits),
            memory_ratio: c.memory_ratio.map(f64::to_bits),
            free_gpus: c.free_gpus.len(),
        }
    }
    /// The vCPU and memory limits, as [`Candidate::cpu_limit`] and `memory_limit`.
    fn limits(&self, p: &Policy) -> (u64, u64) {
        let ratio = |own: Option<u64>, cluster| own.map_or(cluster, f64::from_bits);
        (
            limit(self.cpus as u64, ratio(self.cpu_ratio, p.cpu_ratio)),
            limit(self.memory_mib, ratio(self.memory_ratio, p.memory_ratio)),
        )
    }
}

fn usage(c: &Candidate) -> Usage {
    (c.used_vcpus, c.used_memory_mib, c.used_disk_gib)
}

impl Index {
    /// Indexes `hosts` (positions are ranks: `hosts` is in id order).
    pub(super) fn new(hosts: &[Candidate]) -> Index {
        let mut index = Index::default();
        for (h, c) in hosts.iter().enumerate() {
            index.insert(h, c);
            for g in &c.groups {
                index.groups.entry(g.clone()).or_default().insert(h);
            }
            for p in &c.projects {
                index.projects.entry(p.clone()).or_default().insert(h);
            }
        }
        index
    }

    /// Files host `h` (`c`) under its shape and usage, if it is schedulable.
    pub(super) fn insert(&mut self, h: usize, c: &Candidate) {
        if !c.schedulable {
            return;
        }
        let usages = self.shapes.entry(Shape::of(c)).or_default();
        let (v, m, disk) = usage(c);
        usages.by_cpu.entry((v, m, disk)).or_default().insert(h);
        usages.by_memory.insert((m, v, disk));
    }

    /// Takes host `h` (`c`, as it was filed) out, before its usage or GPUs change.
    pub(super) fn remove(&mut self, h: usize, c: &Candidate) {
        if !c.schedulable {
            return;
        }
        let shape = Shape::of(c);
        let Some(usages) = self.shapes.get_mut(&shape) else {
            return;
        };
        let (v, m, disk) = usage(c);
        let Some(hosts) = usages.by_cpu.get_mut(&(v, m, disk)) else {
            return;
        };
        hosts.remove(&h);
        if hosts.is_empty() {
            usages.by_cpu.remove(&(v, m, disk));
            usages.by_memory.remove(&(m, v, disk));
        }
        if usages.by_cpu.is_empty() {
            self.shapes.remove(&shape);
        }
    }

    /// Records that host `h` now holds `d`'s group and project.
    pub(super) fn note(&mut self, h: usize, d: &Demand) {
        if let Some((g, _)) = &d.group {
            self.groups.entry(g.clone()).or_default().insert(h);
        }
        if let Some(p) = &d.project {
            self.projects.entry(p.clone()).or_default().insert(h);
        }
    }

    /// The hosts to pass over for `d` (and `without`, a migration's source).
    pub(super) fn exceptions(&self, d: &Demand, without: Option<usize>) -> Exceptions<'_> {
        let group = d.group.as_ref().and_then(|(g, _)| self.groups.get(g));
        let project = d.project.as_ref().and_then(|p| self.projects.get(p));
        Exceptions {
            sets: [group, project],
            without,
        }
    }

    /// The fitting host outside `skip` with the least load after `d`, ties to the
    /// lowest position (id).
    pub(super) fn best(
        &self,
        hosts: &[Candidate],
        d: &Demand,
        p: &Policy,
        skip: &Exceptions,
    ) -> Option<usize> {
        let mut best = None;
        for (shape, usages) in &self.shapes {
            if shape.free_gpus >= d.gpus as usize {
                let search = Search {
                    hosts,
                    d,
                    p,
                    skip,
                    limits: shape.limits(p),
                };
                search.walk(usages, &mut best);
            }
        }
        best.map(|(_, h)| h)
    }
}

/// One demand's search through one shape's usages.
struct Search<'a> {
    hosts: &'a [Candidate],
    d: &'a Demand,
    p: &'a Policy,
    skip: &'a Exceptions<'a>,
    limits: (u64, u64),
}

impl Search<'_> {
    /// The load after the demand at `vcpus` and `memory` used.
    fn load(&self, vcpus: u64, memory: u64) -> Load {
        let cpu = Load::of(vcpus + self.d.vcpus, self.limits.0);
        let mem = Load::of(memory + self.d.memory_mib, self.limits.1);
        cpu.max(mem)
    }

    /// Walks `usages` in vCPU order and memory order in step, improving `best`; stops
    /// when no usage not yet seen (none uses fewer vCPUs than the one walk has reached,
    /// nor less memory than the other's) can beat it.
    fn walk(&self, usages: &Usages, best: &mut Option<(Load, usize)>) {
        for ((by_cpu, hosts), &(m, v, disk)) in usages.by_cpu.iter().zip(&usages.by_memory) {
            let floor = self.load(by_cpu.0, m);
            if best.is_some_and(|(l, _)| l < floor) {
                return;
            }
            self.consider(*by_cpu, hosts, best);
            self.consider((v, m, disk), &usages.by_cpu[&(v, m, disk)], best);
        }
    }

    /// Weighs the first ordinary host at usage `u` against `best`.
    fn consider(&self, u: Usage, hosts: &BTreeSet<usize>, best: &mut Option<(Load, usize)>) {
        let load = self.load(u.0, u.1);
        if best.is_some_and(|(l, _)| l < load) {
            return;
        }
        let Some(h) = hosts.iter().copied().find(|&h| !self.skip.contains(h)) else {
            return;
        };
        if self.hosts[h].misfit(self.d, self.p).is_none() && best.is_none_or(|b| (load, h) < b) {
            *best = Some((load, h));
        }
    }
}
