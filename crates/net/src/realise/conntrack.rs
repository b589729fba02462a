//! Which conntrack entries to forget: flows that security rules which changed may have
//! allowed (host namespace, per zone), and flows NATed to an external address whose
//! translation changed (router namespace).
use super::{Cmd, RealiseError, Realiser, Runner};
use crate::plan::{HostPlan, PortPlan};
use std::collections::{BTreeMap, BTreeSet, HashMap};

impl<R: Runner> Realiser<R> {
    /// Forgets the flows that rules which changed since `prev` may have allowed; returns the
    /// number of deletions issued.
    pub(super) fn flush_conntrack(
        &self,
        prev: &HostPlan,
        plan: &HostPlan,
    ) -> Result<usize, RealiseError> {
        let flushes = conntrack_flushes(prev, plan);
        for (zone, flag, ip) in &flushes {
            let (zone, ip) = (zone.to_string(), ip.to_string());
            let argv = ["conntrack", "-D", "-w", &zone, flag, &ip];
            self.run(Cmd::new(self.ns(), &argv).tolerant())?;
        }
        Ok(flushes.len())
    }

    /// Flows NATed to an address whose mapping changed or went keep no old translation.
    pub(super) fn flush_nat(
        &self,
        rns: Option<&str>,
        prev: &HostPlan,
        plan: &HostPlan,
        vni: u32,
    ) -> Result<(), RealiseError> {
        for a in nat_changes(prev, plan, vni) {
            for dir in ["-d", "-q"] {
                self.run(Cmd::new(rns, &["conntrack", "-D", dir, &a.to_string()]).tolerant())?;
            }
        }
        Ok(())
    }
}

/// External addresses of a VPC whose translation differs between two plans (changed or
/// gone): their conntrack entries (original destination, reply destination) must go.
pub fn nat_changes(prev: &HostPlan, next: &HostPlan, vni: u32) -> Vec<std::net::Ipv4Addr> {
    let mappings = |p: &HostPlan| -> BTreeMap<std::net::Ipv4Addr, String> {
        let eips = p
            .elastic_ips
            .iter()
            .filter(|e| e.vni == vni)
            .map(|e| (e.address, e.private_ip.to_string()));
        let nats = p
            .nat_gateways
            .iter()
            .filter(|n| n.vni == vni && n.local)
            .map(|n| (n.address, format!("{:?}{:?}", n.sources, n.dnat)));
        eips.chain(nats).collect()
    };
    let (before, after) = (mappings(prev), mappings(next));
    before
        .into_iter()
        .filter(|(a, m)| after.get(a) != Some(m))
        .map(|(a, _)| a)
        .collect()
}

/// What a port's rules allow, resolved (rules + the member addresses of the groups used).
fn fingerprint(plan: &HostPlan, p: &PortPlan, ingress: bool) -> String {
    let members: HashMap<&str, &Vec<std::net::Ipv4Addr>> = plan
        .groups
        .iter()
        .map(|g| (g.id.as_str(), &g.members))
        .collect();
    let mut groups: BTreeSet<&str> = BTreeSet::new();
    let rules = if ingress {
        groups.extend(p.groups.iter().map(String::as_str));
        serde_json::to_string(&p.ingress).unwrap_or_default()
    } else {
        serde_json::to_string(&p.egress).unwrap_or_default()
    };
    let rs: Vec<&crate::plan::RulePlan> = if ingress {
        p.ingress.iter().collect()
    } else {
        p.egress.iter().flatten().collect()
    };
    for r in rs {
        if let crate::plan::PeerPlan::Group(g) = &r.peer {
            groups.insert(g);
        }
    }
    let resolved: Vec<(&str, Option<&&Vec<std::net::Ipv4Addr>>)> =
        groups.iter().map(|g| (*g, members.get(g))).collect();
    format!("{}|{rules}|{resolved:?}", p.ip)
}

/// What judges the flows of each anycast address on this host: (zone, address) → the
/// ingress and egress fingerprints of its first local serving port (whose chains the nft
/// table sends them to).
fn anycast_judges(plan: &HostPlan) -> BTreeMap<(u16, std::net::Ipv4Addr), (String, String)> {
    let mut out = BTreeMap::new();
    for p in &plan.ports {
        let Some(z) = plan.vpc(p.vni).map(|v| v.zone) else {
            continue;
        };
        for a in &p.serves {
            out.entry((z, *a))
                .or_insert_with(|| (fingerprint(plan, p, true), fingerprint(plan, p, false)));
        }
    }
    out
}

/// Conntrack deletions needed between two plans: (zone, "-d"/"-s", address).
/// A port whose ingress changed loses the flows towards it; whose egress changed, the flows
/// it started; a port that left loses both. Likewise the flows of an anycast address whose
/// judging port (or its rules) changed or went. Flows allowed by rules that still hold are
/// picked up again as new (and allowed) on their next packet.
pub fn conntrack_flushes(
    prev: &HostPlan,
    next: &HostPlan,
) -> Vec<(u16, &'static str, std::net::Ipv4Addr)> {
    let zone = |p: &HostPlan, vni: u32| p.vpc(vni).map(|v| v.zone);
    let next_ports: HashMap<&str, &PortPlan> =
        next.ports.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut out = BTreeSet::new();
    for p in &prev.ports {
        let Some(z) = zone(prev, p.vni) else { continue };
        match next_ports.get(p.id.as_str()) {
            Some(n) if n.vni == p.vni && n.ip == p.ip && zone(next, n.vni) == Some(z) => {
                if fingerprint(prev, p, true) != fingerprint(next, n, true) {
                    out.insert((z, "-d", p.ip));
                }
                if fingerprint(prev, p, false) != fingerprint(next, n, false) {
                    out.insert((z, "-s", p.ip));
                }
            }
            _ => {
                out.insert((z, "-d", p.ip));
                out.insert((z, "-s", p.ip));
            }
        }
    }
    let after = anycast_judges(next);
    for (key @ (z, a), (ingress, egress)) in anycast_judges(prev) {
        let now = after.get(&key);
        if now.map(|j| &j.0) != Some(&ingress) {
            out.insert((z, "-d", a));
        }
        if now.map(|j| &j.1) != Some(&egress) {
            out.insert((z, "-s", a));
        }
    }
    out.into_iter().collect()
}
