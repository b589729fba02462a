//! Pure placement decisions: which host an instance goes to. No I/O, so it is
//! property-tested and benchmarked at data-centre scale.

/// A host as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
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
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    pub vcpus: u64,
    pub memory_mib: u64,
    pub disk_gib: u64,
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
        } else {
            None
        }
    }
    /// The host's load after placing `d`: the larger of CPU and memory fractions.
    fn load_after(&self, d: &Demand, p: &Policy) -> f64 {
        let cpu = (self.used_vcpus + d.vcpus) as f64 / self.cpu_limit(p).max(1) as f64;
        let mem = (self.used_memory_mib + d.memory_mib) as f64 / self.memory_limit(p).max(1) as f64;
        cpu.max(mem)
    }
}

/// Least-loaded host that fits; ties go to the smallest id (deterministic).
/// `Err` says why nothing fits, counting hosts per reason.
pub fn place<'a>(hosts: &'a [Candidate], d: &Demand, p: &Policy) -> Result<&'a Candidate, String> {
    let mut best: Option<(&Candidate, f64)> = None;
    let mut reasons: std::collections::BTreeMap<&'static str, usize> = Default::default();
    for h in hosts {
        if let Some(why) = h.misfit(d, p) {
            *reasons.entry(why).or_default() += 1;
            continue;
        }
        let load = h.load_after(d, p);
        let better = match best {
            None => true,
            Some((b, bl)) => load < bl || (load == bl && h.id < b.id),
        };
        if better {
            best = Some((h, load));
        }
    }
    best.map(|(h, _)| h).ok_or_else(|| {
        if hosts.is_empty() {
            return "no hosts are registered; start an agent with 'yunhan agent'".to_string();
        }
        let detail: Vec<String> = reasons
            .iter()
            .map(|(why, n)| format!("{n} host(s): {why}"))
            .collect();
        format!(
            "no host can fit {} vCPU / {} MiB / {} GiB ({})",
            d.vcpus,
            d.memory_mib,
            d.disk_gib,
            detail.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host() -> impl Strategy<Value = Candidate> {
        (
            0u32..1000,
            1u32..64,
            512u64..262_144,
            10u64..4000,
            any::<bool>(),
            0u64..128,
            0u64..262_144,
            0u64..4000,
        )
            .prop_map(
                |(id, cpus, memory_mib, disk_gib, schedulable, uv, um, ud)| Candidate {
                    id: format!("hst-{id:04}"),
                    cpus,
                    memory_mib,
                    disk_gib,
                    schedulable,
                    used_vcpus: uv,
                    used_memory_mib: um,
                    used_disk_gib: ud,
                },
            )
    }

    fn demand() -> impl Strategy<Value = Demand> {
        (1u64..32, 64u64..65_536, 1u64..500).prop_map(|(vcpus, memory_mib, disk_gib)| Demand {
            vcpus,
            memory_mib,
            disk_gib,
        })
    }

    proptest! {
        #[test]
        fn never_places_over_capacity(hosts in proptest::collection::vec(host(), 0..30), d in demand()) {
            let p = Policy::default();
            if let Ok(h) = place(&hosts, &d, &p) {
                prop_assert!(h.schedulable);
                prop_assert!(h.used_vcpus + d.vcpus <= (h.cpus as f64 * p.cpu_ratio) as u64);
                prop_assert!(h.used_memory_mib + d.memory_mib <= h.memory_mib);
                prop_assert!(h.used_disk_gib + d.disk_gib <= h.disk_gib);
            } else {
                prop_assert!(hosts.iter().all(|h| h.misfit(&d, &p).is_some()));
            }
        }

        #[test]
        fn deterministic_and_order_independent(mut hosts in proptest::collection::vec(host(), 1..30), d in demand()) {
            let p = Policy::default();
            let a = place(&hosts, &d, &p).map(|h| h.id.clone());
            hosts.reverse();
            let b = place(&hosts, &d, &p).map(|h| h.id.clone());
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
            used_memory_mib: 0,
            used_disk_gib: 0,
        };
        let hosts = vec![mk("a", 6), mk("b", 2)];
        let d = Demand {
            vcpus: 1,
            memory_mib: 512,
            disk_gib: 1,
        };
        assert_eq!(place(&hosts, &d, &Policy::default()).unwrap().id, "b");
        let big = Demand {
            vcpus: 16,
            memory_mib: 512,
            disk_gib: 1,
        };
        let why = place(&hosts, &big, &Policy::default()).unwrap_err();
        assert!(why.contains("2 host(s): not enough vCPUs"), "{why}");
    }
}
