//! Renders a host plan's security groups as the host namespace's nftables tables (pure
//! text for `nft -f`); applied by `realise/security_group.rs`.
//!
//! Bridged IPv4 traffic reaches the `inet` hooks through br_netfilter
//! (`net.bridge.bridge-nf-call-iptables = 1`), where conntrack is available. Layout:
//!
//! - `prerouting` (raw priority): packets crossing a VPC's bridge get the VPC's conntrack
//!   zone, so VPCs that reuse CIDRs never share conntrack state; the halves of anycast
//!   elastic IPs' flows this host sees alone are not tracked (see `untracked_anycast_eips`).
//! - table `bridge yunhan`: a local port may only send from its own MAC and IP (ARP too);
//!   a port that is a route's target (an appliance) may send from any IP; a VIP member
//!   also from the VIP's MAC and IP, a port serving anycast addresses also from those
//!   (not in ARP: ARP for them is answered with the gateway's MAC).
//! - `forward`: `ct state established,related` is accepted, invalid dropped; new flows from
//!   a local port's IP (in its zone) go through the port's egress chain (which returns or
//!   drops), new flows to a local port's IP through its ingress chain (accept or drop); a
//!   VIP's or anycast address's flows through the chains of its first local member or
//!   serving port.
//! - one address set per referenced security group (`sg_<id>`).
use super::{base_chain, shaping};
use crate::model::Protocol;
use crate::names::NFT_TABLE;
use crate::plan::{HostPlan, PeerPlan, PortPlan, RulePlan};
use std::collections::HashMap;
use std::fmt::Write;

/// Set name of a group (ids are letters, digits and '-').
pub fn set_name(group: &str) -> String {
    format!("sg_{}", group.replace('-', "_"))
}

/// Chain names of a port (its device name is short and unique on the host).
pub fn chain_in(p: &PortPlan) -> String {
    format!("{}_in", p.device)
}
pub fn chain_out(p: &PortPlan) -> String {
    format!("{}_out", p.device)
}

fn rule_match(r: &RulePlan, dir_addr: &str) -> String {
    let mut s = String::new();
    match &r.peer {
        PeerPlan::Cidr(c) if c.prefix_len() == 0 => {}
        PeerPlan::Cidr(c) => write!(s, "ip {dir_addr} {c} ").unwrap(),
        PeerPlan::Group(g) => write!(s, "ip {dir_addr} @{} ", set_name(g)).unwrap(),
    }
    let proto = match r.protocol {
        Protocol::Any => None,
        Protocol::Tcp => Some("tcp"),
        Protocol::Udp => Some("udp"),
        Protocol::Icmp => Some("icmp"),
    };
    match (proto, r.ports) {
        (Some(p), Some(pr)) if pr.from == pr.to => write!(s, "{p} dport {} ", pr.from).unwrap(),
        (Some(p), Some(pr)) => write!(s, "{p} dport {}-{} ", pr.from, pr.to).unwrap(),
        (Some(p), None) => write!(s, "meta l4proto {p} ").unwrap(),
        (None, _) => {}
    }
    s
}

/// The whole table as an atomic `nft -f` script: creating the table first makes the
/// `delete` valid when it does not exist yet; everything applies or nothing does.
pub fn render_batch(plan: &HostPlan) -> String {
    format!(
        "table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n\
         table bridge {NFT_TABLE}\ndelete table bridge {NFT_TABLE}\n{}",
        render(plan)
    )
}

/// The table definition (what `nft list table inet yunhan` shows, modulo formatting).
pub fn render(plan: &HostPlan) -> String {
    let mut o = String::new();
    let zone_of: HashMap<u32, u16> = plan.vpcs.iter().map(|v| (v.vni, v.zone)).collect();
    writeln!(o, "table inet {NFT_TABLE} {{").unwrap();
    for g in &plan.groups {
        writeln!(o, "\tset {} {{", set_name(&g.id)).unwrap();
        writeln!(o, "\t\ttype ipv4_addr").unwrap();
        if !g.members.is_empty() {
            let m: Vec<String> = g.members.iter().map(|a| a.to_string()).collect();
            writeln!(o, "\t\telements = {{ {} }}", m.join(", ")).unwrap();
        }
        writeln!(o, "\t}}\n").unwrap();
    }

    base_chain(&mut o, "prerouting", "filter hook prerouting priority raw");
    // The tunnel itself needs no connection tracking (it would only cost throughput).
    writeln!(
        o,
        "\t\tiifname != \"ynb-*\" ip daddr {} udp dport {} notrack",
        plan.vtep, plan.vxlan_port
    )
    .unwrap();
    // Before the zones: a zone would make an untracked packet tracked again.
    super::untracked_anycast_eips(plan, &mut o);
    for v in &plan.vpcs {
        writeln!(o, "\t\tiifname \"{}\" ct zone set {}", v.bridge, v.zone).unwrap();
    }
    writeln!(o, "\t}}\n").unwrap();

    base_chain(&mut o, "output", "filter hook output priority raw");
    writeln!(
        o,
        "\t\tip saddr {} udp dport {} notrack",
        plan.vtep, plan.vxlan_port
    )
    .unwrap();
    writeln!(o, "\t}}\n").unwrap();

    base_chain(&mut o, "forward", "filter hook forward priority filter");
    writeln!(o, "\t\tct state established,related accept").unwrap();
    writeln!(o, "\t\tct state invalid drop").unwrap();
    // A shared VIP is judged by the rules of its first local member, an anycast address by
    // those of its first local serving port (their addresses never coincide).
    let mut shared_seen = std::collections::HashSet::new();
    for p in &plan.ports {
        let z = zone_of[&p.vni];
        let shared: Vec<_> = plan
            .port_vips(p)
            .into_iter()
            .map(|(ip, _)| ip)
            .chain(p.serves.iter().copied())
            .filter(|ip| shared_seen.insert((z, *ip)))
            .collect();
        for a in std::iter::once(p.ip).chain(shared) {
            if p.egress.is_some() {
                writeln!(o, "\t\tct zone {z} ip saddr {a} jump {}", chain_out(p)).unwrap();
            }
            writeln!(o, "\t\tct zone {z} ip daddr {a} jump {}", chain_in(p)).unwrap();
        }
    }
    writeln!(o, "\t}}").unwrap();

    // Inbound bandwidth caps of elastic IPs: classify into the uplink's HTB class.
    let shaped = shaping(plan);
    if !shaped.is_empty() {
        o.push('\n');
        base_chain(
            &mut o,
            "postrouting",
            "filter hook postrouting priority filter",
        );
        for s in &shaped {
            writeln!(
                o,
                "\t\toifname \"{}\" ip daddr {} meta priority set {}",
                s.host_dev, s.address, s.classid
            )
            .unwrap();
        }
        writeln!(o, "\t}}").unwrap();
    }
    super::masquerade(plan, &mut o);

    for p in &plan.ports {
        writeln!(o, "\n\tchain {} {{", chain_in(p)).unwrap();
        for g in &p.groups {
            writeln!(o, "\t\tip saddr @{} accept", set_name(g)).unwrap();
        }
        for r in &p.ingress {
            writeln!(o, "\t\t{}accept", rule_match(r, "saddr")).unwrap();
        }
        writeln!(o, "\t\tcounter drop").unwrap();
        writeln!(o, "\t}}").unwrap();
        if let Some(eg) = &p.egress {
            writeln!(o, "\n\tchain {} {{", chain_out(p)).unwrap();
            for r in eg {
                writeln!(o, "\t\t{}return", rule_match(r, "daddr")).unwrap();
            }
            writeln!(o, "\t\tcounter drop").unwrap();
            writeln!(o, "\t}}").unwrap();
        }
    }
    writeln!(o, "}}").unwrap();
    render_bridge(plan, &mut o);
    o
}

/// The `bridge` family table: per local port, frames must come from the port's own MAC and
/// IP (also in ARP); no IPv6 yet. (In the `inet` hooks br_netfilter shows the bridge, not the
/// port, as the input device, so port matching happens here.)
fn render_bridge(plan: &HostPlan, o: &mut String) {
    writeln!(o, "table bridge {NFT_TABLE} {{").unwrap();
    base_chain(o, "prerouting", "filter hook prerouting priority filter");
    for p in &plan.ports {
        let d = &p.device;
        // VIP members may also send from the VIP's MAC and address.
        let vips = plan.port_vips(p);
        let one_or_set = |first: String, more: Vec<String>| {
            if more.is_empty() {
                first
            } else {
                let mut all = vec![first];
                all.extend(more);
                all.sort();
                all.dedup();
                format!("{{ {} }}", all.join(", "))
            }
        };
        let macs = one_or_set(
            p.mac.to_string(),
            vips.iter().map(|(_, m)| m.to_string()).collect(),
        );
        let arp_ips = one_or_set(
            p.ip.to_string(),
            vips.iter().map(|(i, _)| i.to_string()).collect(),
        );
        // A port serving anycast addresses answers from them (never ARP for them).
        let ips = one_or_set(
            p.ip.to_string(),
            (vips.iter().map(|(i, _)| i.to_string()))
                .chain(p.serves.iter().map(|i| i.to_string()))
                .collect(),
        );
        writeln!(o, "\t\tiifname \"{d}\" ether saddr != {macs} drop").unwrap();
        // A route's target forwards: it sends from others' addresses (not from others' MACs).
        if !p.forwarding {
            writeln!(o, "\t\tiifname \"{d}\" ip saddr != {ips} drop").unwrap();
        }
        writeln!(o, "\t\tiifname \"{d}\" arp saddr ip != {arp_ips} drop").unwrap();
        writeln!(o, "\t\tiifname \"{d}\" ether type ip6 drop").unwrap();
        // A VIP is only ever announced with its own MAC: peers' ARP caches (and the plan's
        // answers) then stay right across failovers.
        for (ip, mac) in &vips {
            writeln!(
                o,
                "\t\tiifname \"{d}\" arp saddr ip {ip} arp saddr ether != {mac} drop"
            )
            .unwrap();
        }
    }
    writeln!(o, "\t}}").unwrap();
    writeln!(o, "}}").unwrap();
}
