//! External networks: on the host, forwarding, proxy ARP and one policy routing table per
//! network; in each router namespace, its ways out of the VPC (table 100 via the uplink,
//! table 101 via the NAT gateway's transit leg, their mark rules) and the NAT table of its
//! elastic IPs and NAT gateways.
use super::observe::{inet_addrs_of, parse_json};
use super::shaping::shaping_classes;
use super::{text_hash, Batch, Cmd, RealiseError, Realiser, Runner};
use crate::names;
use crate::nft;
use crate::plan::{
    ExternalPlan, HostPlan, VpcPlan, ROUTER_TABLE_TRANSIT, ROUTER_TABLE_UPLINK, TRANSIT_IP,
    UPLINK_HOST_IP, UPLINK_ROUTER_IP,
};
use std::collections::{BTreeMap, BTreeSet};

/// Priority of the policy rules selecting an external network's table (`to`, then `from`).
const EXT_RULE_PREF: u64 = 1000;

/// One of the external networks' policy rules, whatever agent made it (one that ran before
/// this one included): at their two preferences, to a table the compiler numbers from
/// 0x10000 (a hash of the network's id).
fn external_rule(pref: u64, table: &str) -> bool {
    (EXT_RULE_PREF..=EXT_RULE_PREF + 1).contains(&pref)
        && table
            .parse::<u32>()
            .is_ok_and(|t| (0x10000..0x30000).contains(&t))
}
/// Priority of the router namespace's mark rules (after `main`: routes inside the VPC win).
const ROUTER_RULE_PREF: u32 = 33001;

/// A router exit table: its number, the default route's next hop and device (when
/// planned), and the fwmark selecting it.
type Exit<'a> = (u32, Option<(std::net::Ipv4Addr, String)>, &'a str);

impl<R: Runner> Realiser<R> {
    /// The host side of external networks: forwarding, proxy ARP for the external addresses
    /// answered here (answered on the external device, without delay), and one policy
    /// routing table per network, used `from`/`to` its CIDR: the network, its gateway as
    /// default route, and each external address via its VPC's uplink.
    pub(super) fn apply_external(
        &mut self,
        plan: &HostPlan,
        previous: Option<&HostPlan>,
    ) -> Result<usize, RealiseError> {
        let ns = self.ns();
        let all: Vec<&ExternalPlan> = plan
            .externals
            .iter()
            .chain(previous.into_iter().flat_map(|p| p.externals.iter()))
            .collect();
        if all.is_empty() {
            // Nothing of ours known here: only rules a former agent may have left.
            let mut b = Batch::default();
            self.sync_rules(ns, &mut b, &BTreeSet::new(), external_rule)?;
            self.ip_batch(ns, &b)?;
            return Ok(b.len());
        }
        let mut changes = 0;
        if !plan.externals.is_empty() {
            let mut want = vec![("net.ipv4.ip_forward".to_string(), "1".to_string())];
            for x in &plan.externals {
                want.push((
                    format!("net.ipv4.neigh.{}.proxy_delay", x.device),
                    "0".into(),
                ));
            }
            changes += self.sysctls(ns, &want)?;
        }
        let mut b = Batch::default();
        self.host_gateways(&mut b, plan)?;
        let answered_now = self.proxy_arp(&mut b, plan, &all)?;
        let tables: BTreeSet<u32> = all.iter().map(|x| x.table).collect();
        for t in &tables {
            self.external_table(&mut b, plan, *t)?;
        }
        let want: BTreeSet<(u64, String, String)> = plan
            .externals
            .iter()
            .flat_map(|x| {
                [
                    (EXT_RULE_PREF, format!("to {}", x.cidr), x.table.to_string()),
                    (
                        EXT_RULE_PREF + 1,
                        format!("from {}", x.cidr),
                        x.table.to_string(),
                    ),
                ]
            })
            .collect();
        self.sync_rules(ns, &mut b, &want, external_rule)?;
        changes += b.len();
        self.ip_batch(ns, &b)?;
        let due = self.due_announcements(plan, answered_now);
        self.announce_all(&due)?;
        Ok(changes)
    }

    /// The external addresses to announce now: those this host started answering for
    /// within [`garp::ANNOUNCE_FOR`] (just now included). Repeating covers a host that
    /// went away still answering (a partition, a stopped agent): a client that asks afresh
    /// may take its answer first, and the next announcement corrects it.
    fn due_announcements(
        &mut self,
        plan: &HostPlan,
        answered_now: Vec<(String, String)>,
    ) -> Vec<(String, String)> {
        let now = std::time::Instant::now();
        for k in answered_now {
            self.announcing.insert(k, now);
        }
        let wanted = answered_here(plan);
        self.announcing.retain(|k, t| {
            wanted.contains(k) && now.duration_since(*t) < super::garp::ANNOUNCE_FOR
        });
        self.announcing.keys().cloned().collect()
    }

    /// A gratuitous ARP for each of `answered` (device, external address), so the outside
    /// stops sending to wherever it was before (best effort: a failure is logged; the
    /// outside's cache then goes stale on its own).
    fn announce_all(&self, answered: &[(String, String)]) -> Result<(), RealiseError> {
        if answered.is_empty() {
            return Ok(());
        }
        let links = self.links(self.ns())?;
        for (dev, a) in answered {
            let (Some(mac), Ok(addr)) =
                (links.get(dev).and_then(|l| l.mac.parse().ok()), a.parse())
            else {
                continue;
            };
            if let Err(e) = self.runner.announce(self.ns(), dev, mac, addr) {
                tracing::warn!(%dev, %addr, error = %e, "gratuitous ARP not sent");
            }
        }
        Ok(())
    }

    /// The gateway address on the bridge of each external network that lives on this host
    /// (`apply_links` made the bridge).
    fn host_gateways(&self, b: &mut Batch, plan: &HostPlan) -> Result<(), RealiseError> {
        if !plan.externals.iter().any(|x| x.host_gateway) {
            return Ok(());
        }
        let out = self.run(Cmd::new(self.ns(), &["ip", "-j", "addr", "show"]))?;
        let have = inet_addrs_of(&parse_json("ip addr show", &out)?);
        for x in plan.externals.iter().filter(|x| x.host_gateway) {
            let want = format!("{}/{}", x.gateway_ip, x.cidr.prefix_len());
            if !have.get(&x.device).is_some_and(|a| a.contains(&want)) {
                b.push(format!("addr replace {want} dev {}", x.device));
            }
        }
        Ok(())
    }

    /// Proxy ARP entries for the external addresses realised here; removes ours (inside an
    /// external network planned now or before) that are no longer wanted. Returns the
    /// (device, address) entries it adds.
    fn proxy_arp(
        &self,
        b: &mut Batch,
        plan: &HostPlan,
        all: &[&ExternalPlan],
    ) -> Result<Vec<(String, String)>, RealiseError> {
        let out = self.run(Cmd::new(self.ns(), &["ip", "-j", "neigh", "show", "proxy"]))?;
        let have: BTreeSet<(String, String)> = parse_json("ip neigh show proxy", &out)?
            .iter()
            .filter_map(|n| Some((n["dev"].as_str()?.into(), n["dst"].as_str()?.into())))
            .collect();
        let want = answered_here(plan);
        for (dev, a) in have.difference(&want) {
            let ours = all
                .iter()
                .any(|x| x.device == *dev && a.parse().is_ok_and(|ip| x.cidr.contains(ip)));
            if ours {
                b.push(format!("neigh del proxy {a} dev {dev}"));
            }
        }
        let added: Vec<(String, String)> = want.difference(&have).cloned().collect();
        for (dev, a) in &added {
            b.push(format!("neigh replace proxy {a} dev {dev}"));
        }
        Ok(added)
    }

    /// One external network's policy routing table `t` (emptied when no longer planned).
    fn external_table(&self, b: &mut Batch, plan: &HostPlan, t: u32) -> Result<(), RealiseError> {
        let have = self.route_table(self.ns(), t)?;
        let mut want: BTreeMap<String, String> = BTreeMap::new();
        if let Some(x) = plan.externals.iter().find(|x| x.table == t) {
            let d = &x.device;
            want.insert(
                format!("{} dev {d}", x.cidr),
                format!("route replace {} dev {d} table {t}", x.cidr),
            );
            // A network on the host itself has no upstream router: what leaves it goes
            // by the host's own routes (the `main` table, after this one).
            if !x.host_gateway {
                want.insert(
                    format!("default via {} dev {d}", x.gateway_ip),
                    format!(
                        "route replace default via {} dev {d} table {t}",
                        x.gateway_ip
                    ),
                );
            }
            for (a, vni) in &x.addresses {
                let up = names::uplink_host_dev(*vni);
                want.insert(
                    format!("{a} via {UPLINK_ROUTER_IP} dev {up}"),
                    format!(
                        "route replace {a}/32 via {UPLINK_ROUTER_IP} dev {up} onlink table {t}"
                    ),
                );
            }
        }
        for h in have.iter().filter(|h| !want.contains_key(*h)) {
            let dst = h.split(' ').next().unwrap_or_default();
            b.push(format!("route del {dst} table {t}"));
        }
        for (k, cmd) in &want {
            if !have.contains(k) {
                b.push(cmd.clone());
            }
        }
        Ok(())
    }

    /// A router's ways out of the VPC: table 100 (uplink, mark 1) and table 101 (transit,
    /// mark 2) with their rules, the NAT table, outbound shaping on the uplink. Skipped
    /// (no observation at all) for VPCs without any, now and before.
    pub(super) fn apply_router_exits(
        &mut self,
        plan: &HostPlan,
        v: &VpcPlan,
        previous: Option<&HostPlan>,
        rns_name: &str,
    ) -> Result<usize, RealiseError> {
        let rns = Some(rns_name);
        let transit = v.transit.as_ref().filter(|t| !t.local);
        let rendered = nft::render_router(plan, v.vni);
        let prev_v = previous.and_then(|p| p.vpc(v.vni));
        let had = prev_v.is_some_and(|p| p.uplink.is_some() || p.transit.is_some())
            || previous.is_some_and(|p| nft::render_router(p, v.vni).is_some());
        if v.uplink.is_none() && transit.is_none() && rendered.is_none() && !had {
            return Ok(0);
        }
        let vias = [
            (
                ROUTER_TABLE_UPLINK,
                v.uplink
                    .as_ref()
                    .map(|u| (UPLINK_HOST_IP, u.router_dev.clone())),
                "0x1",
            ),
            (
                ROUTER_TABLE_TRANSIT,
                transit.map(|t| (TRANSIT_IP, t.via_dev.clone())),
                "0x2",
            ),
        ];
        let mut changes = self.router_tables(rns, &vias)?;
        changes += self.router_nat_table(rns_name, rendered)?;
        if let Some(u) = &v.uplink {
            changes += self.apply_tc(rns, &u.router_dev, &shaping_classes(plan, v.vni))?;
        }
        if let Some(prev) = previous {
            self.flush_nat(rns, prev, plan, v.vni)?;
        }
        Ok(changes)
    }

    /// The router's exit tables (table, next hop and device when planned, fwmark): a
    /// default route each, and a mark rule selecting it.
    fn router_tables(&self, rns: Option<&str>, vias: &[Exit<'_>]) -> Result<usize, RealiseError> {
        let mut b = Batch::default();
        let mut want_rules = BTreeSet::new();
        for (t, via, mark) in vias {
            let have = self.route_table(rns, *t)?;
            let want: BTreeSet<String> = via
                .iter()
                .map(|(gw, dev)| format!("default via {gw} dev {dev}"))
                .collect();
            for h in have.difference(&want) {
                let dst = h.split(' ').next().unwrap_or_default();
                b.push(format!("route del {dst} table {t}"));
            }
            if let Some((gw, dev)) = via {
                if !have.contains(&format!("default via {gw} dev {dev}")) {
                    b.push(format!(
                        "route replace default via {gw} dev {dev} onlink table {t}"
                    ));
                }
                let pref = u64::from(ROUTER_RULE_PREF + *t - ROUTER_TABLE_UPLINK);
                want_rules.insert((pref, format!("fwmark {mark}"), t.to_string()));
            }
        }
        self.sync_rules(rns, &mut b, &want_rules, |p, _| {
            (u64::from(ROUTER_RULE_PREF)..u64::from(ROUTER_RULE_PREF) + 2).contains(&p)
        })?;
        self.ip_batch(rns, &b)?;
        Ok(b.len())
    }

    /// The NAT table: replaced atomically when it differs, deleted when unplanned.
    fn router_nat_table(
        &mut self,
        rns_name: &str,
        rendered: Option<String>,
    ) -> Result<usize, RealiseError> {
        let rns = Some(rns_name);
        let table = names::NFT_ROUTER_TABLE;
        let list = || Cmd::new(rns, &["nft", "list", "table", "ip", table]).tolerant();
        let listing = self.run(list())?;
        match rendered {
            Some(r) => {
                let hash = text_hash(&r);
                let norm = nft::normalize(&listing);
                let same = norm == nft::normalize(&r)
                    || self.router_nft_listing.get(rns_name) == Some(&(hash.clone(), norm));
                if same && !listing.trim().is_empty() {
                    return Ok(0);
                }
                let batch = format!("table ip {table}\ndelete table ip {table}\n{r}");
                self.run(Cmd::new(rns, &["nft", "-f", "-"]).stdin(batch))?;
                let after = self.run(list())?;
                self.router_nft_listing
                    .insert(rns_name.to_string(), (hash, nft::normalize(&after)));
                Ok(1)
            }
            None if !listing.trim().is_empty() => {
                self.run(Cmd::new(rns, &["nft", "delete", "table", "ip", table]))?;
                Ok(1)
            }
            None => Ok(0),
        }
    }
}

/// (external device, address) of every external address this host answers for: those
/// realised here but the elastic IPs of anycasts whose anchor is another host (routed
/// here, answered for there).
fn answered_here(plan: &HostPlan) -> BTreeSet<(String, String)> {
    let elsewhere: BTreeSet<_> = (plan.elastic_ips.iter())
        .filter(|e| !e.inbound)
        .map(|e| e.address)
        .collect();
    (plan.externals.iter())
        .flat_map(|x| (x.addresses.iter()).map(move |(a, _)| (x, *a)))
        .filter(|(_, a)| !elsewhere.contains(a))
        .map(|(x, a)| (x.device.clone(), a.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::answered_here;

    /// An anycast's elastic IP is routed on every host of a serving port, answered for only
    /// on its anchor (pa1's host-a: first in the anycast's list).
    #[test]
    fn only_the_anchor_answers_for_an_anycasts_elastic_ip() {
        let mut m = crate::lab::fixtures::external_model();
        m.anycasts = crate::lab::fixtures::anycast_model().anycasts;
        m.elastic_ips.push(crate::model::ElasticIp {
            id: "eip-lb".into(),
            address: "203.0.113.70".parse().unwrap(),
            port: Some("lb-1".into()),
            bandwidth_mbit: None,
        });
        let plans = crate::compile::compile_all(&m).unwrap();
        let lb = ("ext0".to_string(), "203.0.113.70".to_string());
        for (h, anchor) in [("host-a", true), ("host-b", false)] {
            let routed = plans[h].externals[0].addresses.iter();
            assert!(routed.map(|(a, _)| a.to_string()).any(|a| a == lb.1), "{h}");
            assert_eq!(answered_here(&plans[h]).contains(&lb), anchor, "{h}");
        }
        let ports = answered_here(&plans["host-a"]);
        assert!(ports.contains(&("ext0".into(), "203.0.113.50".into())));
    }
}
