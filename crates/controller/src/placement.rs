//! Pure placement decisions: which host an instance goes to. No I/O, so it is
//! property-tested and benchmarked at data-centre scale.

use std::collections::{BTreeMap, BTreeSet};

pub use yunhan_model::PlacementPolicy;

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
    /// GPUs (PCI addresses) not given to any instance, in order.
    pub free_gpus: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Demand {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub gpus: u32,
    /// The instance's placement group and its rule.
    pub group: Option<(String, PlacementPolicy)>,
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

impl Candidate {
    fn cpu_limit(&self, p: &Policy) -> u64 {
        (self.cpus as f64 * p.cpu_ratio).floor() as u64
    }
    fn memory_limit(&self, p: &Policy) -> u64 {
        (self.memory_mib as f64 * p.memory_ratio).floor() as u64
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
    /// The host's load after placing `d`: the larger of CPU and memory fractions.
    fn load_after(&self, d: &Demand, p: &Policy) -> f64 {
        let cpu = (self.used_vcpus + d.vcpus) as f64 / self.cpu_limit(p).max(1) as f64;
        let mem = (self.used_memory_mib + d.memory_mib) as f64 / self.memory_limit(p).max(1) as f64;
        cpu.max(mem)
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
/// anti-affinity group; ties go to the smallest id (deterministic). `Err`
/// says why nothing fits, counting hosts per reason.
pub fn place<'a>(
    hosts: &'a [Candidate],
    d: &Demand,
    p: &Policy,
) -> Result<Placement<'a>, PlacementError> {
    // Ordered by (crowded by a soft group, load, id): smaller is better.
    let mut best: Option<(&Candidate, bool, f64)> = None;
    let mut reasons: BTreeMap<&'static str, usize> = Default::default();
    for h in hosts {
        if let Some(why) = h.misfit(d, p) {
            *reasons.entry(why).or_default() += 1;
            continue;
        }
        let crowded = h.crowded(d);
        let load = h.load_after(d, p);
        let better = match best {
            None => true,
            Some((b, bc, bl)) => (crowded, load, h.id.as_str()) < (bc, bl, b.id.as_str()),
        };
        if better {
            best = Some((h, crowded, load));
        }
    }
    best.map(|(h, _, _)| Placement {
        host: h,
        gpus: h.free_gpus[..d.gpus as usize].to_vec(),
    })
    .ok_or_else(|| {
        if hosts.is_empty() {
            return PlacementError::NoHosts;
        }
        PlacementError::NoFit {
            vcpus: d.vcpus,
            memory_mib: d.memory_mib,
            disk_gib: d.disk_gib,
            reasons,
        }
    })
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
        )
            .prop_map(
                |((id, cpus, memory_mib, disk_gib, schedulable), (uv, um, ud), (groups, gpus))| {
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
        )
            .prop_map(|(vcpus, memory_mib, disk_gib, gpus, group)| Demand {
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
            })
    }

    proptest! {
        #[test]
        fn never_over_capacity_nor_against_anti_affinity(hosts in proptest::collection::vec(host(), 0..30), d in demand()) {
            let p = Policy::default();
            match place(&hosts, &d, &p) {
                Ok(Placement { host: h, gpus }) => {
                    prop_assert!(h.schedulable);
                    prop_assert!(h.used_vcpus + d.vcpus <= (h.cpus as f64 * p.cpu_ratio) as u64);
                    prop_assert!(h.used_memory_mib + d.memory_mib <= h.memory_mib);
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
