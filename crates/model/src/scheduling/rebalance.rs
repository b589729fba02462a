//! Rebalancing (pure): which live migrations bring every host under a target load.
//!
//! Greedy and conservative: while some host is above the target, take the most loaded
//! one, and move the smallest of its movable VMs whose departure brings it under the
//! target (else its largest movable VM) to the host the scheduler would pick for it,
//! provided that host stays at or under the target afterwards. A host none of whose VMs
//! can go anywhere is left as it is and named. Each VM moves at most once.

use super::{place, Candidate, Demand, Policy};

/// A VM as the planner sees it: where it runs, what it needs, whether it may move live.
#[derive(Debug, Clone, PartialEq)]
pub struct Resident {
    pub id: String,
    pub host: String,
    pub demand: Demand,
    /// Why it cannot move live (`None`: it can).
    pub pinned: Option<String>,
}

/// One proposed live migration.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    pub instance: String,
    pub from: String,
    pub to: String,
}

/// The plan: the moves in order, and each host's load (percent of its limits, the
/// larger of CPU and memory) before and after them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub moves: Vec<Move>,
    /// (host id, load before, load after), in the hosts' order.
    pub loads: Vec<(String, f64, f64)>,
}

/// The moves that bring every host at or under `target` (a fraction, e.g. 0.8) where
/// possible. `hosts` carry what is bound to them (as the scheduler counts it).
pub fn rebalance(hosts: &[Candidate], residents: &[Resident], target: f64, p: &Policy) -> Plan {
    let mut hosts = hosts.to_vec();
    let before: Vec<f64> = hosts.iter().map(|h| load(h, p)).collect();
    let mut moved = vec![false; residents.len()];
    let mut stuck: Vec<usize> = Vec::new();
    let mut moves = Vec::new();
    while let Some(h) = most_loaded_above(&hosts, target, p, &stuck) {
        match one_move(&hosts, h, residents, &moved, target, p) {
            Some((r, to)) => {
                shift(&mut hosts, h, to, &residents[r].demand);
                moved[r] = true;
                moves.push(Move {
                    instance: residents[r].id.clone(),
                    from: hosts[h].id.clone(),
                    to: hosts[to].id.clone(),
                });
            }
            None => stuck.push(h),
        }
    }
    let loads = (hosts.iter().zip(before))
        .map(|(h, b)| (h.id.clone(), b * 100.0, load(h, p) * 100.0))
        .collect();
    Plan { moves, loads }
}

/// A host's load now: the larger of its vCPU and memory shares of its limits.
pub fn load(h: &Candidate, p: &Policy) -> f64 {
    let cpu = h.used_vcpus as f64 / h.cpu_limit(p).max(1) as f64;
    let mem = h.used_memory_mib as f64 / h.memory_limit(p).max(1) as f64;
    cpu.max(mem)
}

fn most_loaded_above(
    hosts: &[Candidate],
    target: f64,
    p: &Policy,
    stuck: &[usize],
) -> Option<usize> {
    (0..hosts.len())
        .filter(|h| !stuck.contains(h) && load(&hosts[*h], p) > target)
        .max_by(|a, b| load(&hosts[*a], p).total_cmp(&load(&hosts[*b], p)))
}

/// The resident of host `h` to move and where: the smallest one whose departure brings
/// `h` under `target`, else the largest, each to where the scheduler would put it among
/// the hosts that stay at or under `target` with it.
fn one_move(
    hosts: &[Candidate],
    h: usize,
    residents: &[Resident],
    moved: &[bool],
    target: f64,
    p: &Policy,
) -> Option<(usize, usize)> {
    let mut mine: Vec<usize> = (0..residents.len())
        .filter(|&r| !moved[r] && residents[r].pinned.is_none() && residents[r].host == hosts[h].id)
        .collect();
    mine.sort_by_key(|&r| (size(&residents[r].demand), residents[r].id.clone()));
    let relieves = |r: &usize| {
        let mut after = hosts[h].clone();
        take(&mut after, &residents[*r].demand);
        load(&after, p) <= target
    };
    let order = mine
        .iter()
        .copied()
        .filter(relieves)
        .chain(mine.iter().rev().copied());
    for r in order {
        if let Some(to) = destination(hosts, h, &residents[r].demand, target, p) {
            return Some((r, to));
        }
    }
    None
}

/// Where the scheduler would place `d` among the other hosts that stay at or under
/// `target` with it.
fn destination(
    hosts: &[Candidate],
    from: usize,
    d: &Demand,
    target: f64,
    p: &Policy,
) -> Option<usize> {
    let ok: Vec<Candidate> = (hosts.iter().enumerate())
        .filter(|(i, c)| *i != from && load(&with(c, d), p) <= target)
        .map(|(_, c)| c.clone())
        .collect();
    let chosen = place(&ok, d, p).ok()?.host.id.clone();
    hosts.iter().position(|c| c.id == chosen)
}

fn size(d: &Demand) -> (u64, u64) {
    (d.vcpus, d.memory_mib)
}

fn with(c: &Candidate, d: &Demand) -> Candidate {
    let mut c = c.clone();
    c.used_vcpus += d.vcpus;
    c.used_memory_mib += d.memory_mib;
    c.used_disk_gib += d.disk_gib;
    c
}

fn take(c: &mut Candidate, d: &Demand) {
    c.used_vcpus = c.used_vcpus.saturating_sub(d.vcpus);
    c.used_memory_mib = c.used_memory_mib.saturating_sub(d.memory_mib);
    c.used_disk_gib = c.used_disk_gib.saturating_sub(d.disk_gib);
}

fn shift(hosts: &mut [Candidate], from: usize, to: usize, d: &Demand) {
    take(&mut hosts[from], d);
    hosts[to] = with(&hosts[to], d);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn host(i: usize, used: u64) -> Candidate {
        Candidate {
            id: format!("h{i}"),
            cpus: 8,
            memory_mib: 65_536,
            disk_gib: 1000,
            schedulable: true,
            used_vcpus: used,
            ..Default::default()
        }
    }

    fn vm(id: &str, host: &str, vcpus: u64, pinned: bool) -> Resident {
        Resident {
            id: id.into(),
            host: host.into(),
            demand: Demand {
                vcpus,
                memory_mib: 1024,
                ..Default::default()
            },
            pinned: pinned.then(|| "local disk".into()),
        }
    }

    #[test]
    fn moves_the_smallest_vm_that_relieves_the_hottest_host() {
        // h0: 14 of 16 vCPUs (87.5 %), h1 empty; target 80 %: moving the 2-vCPU VM
        // suffices (75 %), the 8-vCPU one would too but is larger.
        let hosts = [host(0, 14), host(1, 0)];
        let vms = [
            vm("big", "h0", 8, false),
            vm("small", "h0", 2, false),
            vm("fixed", "h0", 4, true),
        ];
        let plan = rebalance(&hosts, &vms, 0.8, &Policy::default());
        assert_eq!(
            plan.moves,
            [Move {
                instance: "small".into(),
                from: "h0".into(),
                to: "h1".into()
            }]
        );
        assert_eq!(plan.loads[0], ("h0".into(), 87.5, 75.0));
    }

    #[test]
    fn pinned_vms_stay_and_the_host_is_left_as_is() {
        let hosts = [host(0, 16), host(1, 0)];
        let vms = [vm("fixed", "h0", 16, true)];
        let plan = rebalance(&hosts, &vms, 0.8, &Policy::default());
        assert!(plan.moves.is_empty());
        assert_eq!(plan.loads[0].2, 100.0);
    }

    proptest! {
        #[test]
        fn moves_only_off_hot_hosts_and_never_push_a_host_over(
            used in proptest::collection::vec(0u64..16, 1..8),
            sizes in proptest::collection::vec((0usize..8, 1u64..6, any::<bool>()), 0..24),
            target in 0.3f64..1.0,
        ) {
            let hosts: Vec<Candidate> = used.iter().enumerate().map(|(i, u)| host(i, *u)).collect();
            let vms: Vec<Resident> = sizes.iter().enumerate()
                .map(|(i, (h, v, pin))| vm(&format!("v{i}"), &format!("h{}", h % hosts.len()), *v, *pin))
                .collect();
            let p = Policy::default();
            let plan = rebalance(&hosts, &vms, target, &p);
            let mut seen = std::collections::BTreeSet::new();
            for m in &plan.moves {
                prop_assert!(seen.insert(m.instance.clone()), "moved twice");
                let r = vms.iter().find(|r| r.id == m.instance).unwrap();
                prop_assert!(r.pinned.is_none());
                prop_assert_eq!(&r.host, &m.from);
            }
            for (i, (_, before, after)) in plan.loads.iter().enumerate() {
                let received = plan.moves.iter().any(|m| m.to == hosts[i].id);
                if received {
                    prop_assert!(*after <= target * 100.0 + 1e-9, "pushed over: {after}");
                }
                if *before <= target * 100.0 {
                    prop_assert!(*after <= target * 100.0 + 1e-9);
                }
            }
        }
    }
}
