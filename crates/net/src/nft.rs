//! nftables rendering (pure text for `nft -f`):
//!
//! - [`security_group`]: the host namespace's tables, `inet yunhan` (security groups, with
//!   the VPCs' conntrack zones and the inbound shaping marks) and `bridge yunhan` (a local
//!   port may only send from its own MAC and IP): [`render`], [`render_batch`];
//! - here: each VPC router namespace's NAT/routing-mark/shaping table ([`render_router`]),
//!   the capped elastic IPs ([`shaping`]), and [`normalize`], to compare what `nft` lists
//!   with a rendering.
use crate::model::Protocol;
use crate::plan::HostPlan;
use std::fmt::Write;

mod security_group;

pub use security_group::{chain_in, chain_out, render, render_batch, set_name};

/// One capped elastic IP: its HTB class on both legs of its VPC's uplink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shaped {
    pub vni: u32,
    pub address: std::net::Ipv4Addr,
    pub private_ip: std::net::Ipv4Addr,
    pub mbit: u32,
    /// `1:<minor>` (hex, as tc and nft write it).
    pub classid: String,
    /// Host side of the uplink: inbound traffic (towards the guest) is shaped here.
    pub host_dev: String,
}

/// The capped elastic IPs of a plan: per VPC uplink, classes `1:10`, `1:11`, … in id order.
pub fn shaping(plan: &HostPlan) -> Vec<Shaped> {
    let mut out = Vec::new();
    for v in &plan.vpcs {
        let Some(up) = &v.uplink else { continue };
        let capped = plan
            .elastic_ips
            .iter()
            .filter(|e| e.vni == v.vni)
            .filter_map(|e| Some((e, e.bandwidth_mbit?)));
        for (i, (e, mbit)) in capped.enumerate() {
            out.push(Shaped {
                vni: v.vni,
                address: e.address,
                private_ip: e.private_ip,
                mbit,
                classid: format!("1:{:x}", 0x10 + i),
                host_dev: up.host_dev.clone(),
            });
        }
    }
    out
}

/// The nftables table of one VPC's router namespace (`None`: nothing external there):
/// 1:1 NAT of elastic IPs (stateless for anycasts'), NAT gateway SNAT/DNAT, routing marks
/// (1 = out of the uplink, 2 = to the NAT gateway's host through the transit) and
/// outbound shaping classes.
/// Unmarked traffic has no route out of the VPC: nothing leaves un-NATed.
pub fn render_router(plan: &HostPlan, vni: u32) -> Option<String> {
    use crate::names::{NFT_ROUTER_TABLE, UPLINK_ROUTER_DEV as UP};
    let v = plan.vpc(vni)?;
    let eips: Vec<_> = plan
        .elastic_ips
        .iter()
        .filter(|e| e.vni == vni && v.uplink.is_some())
        .collect();
    let nat = plan.nat_gateways.iter().find(|n| n.vni == vni);
    if eips.is_empty() && nat.is_none() {
        return None;
    }
    let cidrs = |n: &crate::plan::NatGatewayPlan| {
        let c: Vec<String> = n.sources.iter().map(|c| c.to_string()).collect();
        if c.len() == 1 {
            c[0].clone()
        } else {
            format!("{{ {} }}", c.join(", "))
        }
    };
    let proto = |p: Protocol| if p == Protocol::Udp { "udp" } else { "tcp" };
    // A port's elastic IP is translated by conntrack; an anycast's statelessly (below).
    let stateful: Vec<_> = eips.iter().filter(|e| !e.anycast).collect();
    let mut o = String::new();
    writeln!(o, "table ip {NFT_ROUTER_TABLE} {{").unwrap();
    base_chain(&mut o, "prerouting", "nat hook prerouting priority dstnat");
    for e in &stateful {
        writeln!(
            o,
            "\t\tiifname \"{UP}\" ip daddr {} dnat to {}",
            e.address, e.private_ip
        )
        .unwrap();
    }
    if let Some(n) = nat.filter(|n| n.local) {
        for d in &n.dnat {
            writeln!(
                o,
                "\t\tiifname \"{UP}\" ip daddr {} {} dport {} dnat to {}:{}",
                n.address,
                proto(d.protocol),
                d.external_port,
                d.internal_ip,
                d.internal_port
            )
            .unwrap();
        }
    }
    writeln!(o, "\t}}\n").unwrap();
    base_chain(
        &mut o,
        "postrouting",
        "nat hook postrouting priority srcnat",
    );
    for e in &stateful {
        writeln!(
            o,
            "\t\toifname \"{UP}\" ip saddr {} snat to {}",
            e.private_ip, e.address
        )
        .unwrap();
    }
    if let Some(n) = nat.filter(|n| n.local && !n.sources.is_empty()) {
        writeln!(
            o,
            "\t\toifname \"{UP}\" ip saddr {} snat to {}",
            cidrs(n),
            n.address
        )
        .unwrap();
    }
    writeln!(o, "\t}}\n").unwrap();
    // Marks pick the way out: replies of port-forwards first (they must go back the way
    // they came), then elastic IPs, then what the NAT gateway covers.
    base_chain(
        &mut o,
        "route_mark",
        "filter hook prerouting priority mangle",
    );
    writeln!(o, "\t\tiifname \"{UP}\" accept").unwrap();
    let nat_mark = |n: &crate::plan::NatGatewayPlan| if n.local { 1 } else { 2 };
    if v.uplink.is_some() {
        // Replies of flows NATed here (elastic IPs, the gateway's own forwards, also when
        // they come back through the transit) leave the way they came.
        writeln!(
            o,
            "\t\tct direction reply ct status dnat meta mark set 0x1 accept"
        )
        .unwrap();
    }
    if let Some(n) = nat.filter(|n| !n.local) {
        // Elsewhere the router only sees the reply half of a forwarded flow (as untracked
        // or new): send it back to the gateway.
        for d in &n.dnat {
            writeln!(
                o,
                "\t\tip saddr {} {} sport {} meta mark set 0x2 accept",
                d.internal_ip,
                proto(d.protocol),
                d.internal_port,
            )
            .unwrap();
        }
    }
    for e in &eips {
        writeln!(o, "\t\tip saddr {} meta mark set 0x1 accept", e.private_ip).unwrap();
    }
    if let Some(n) = nat.filter(|n| !n.sources.is_empty()) {
        // On the gateway host this also catches what other hosts send through the transit.
        writeln!(
            o,
            "\t\tip saddr {} meta mark set 0x{} accept",
            cidrs(n),
            nat_mark(n)
        )
        .unwrap();
    }
    writeln!(o, "\t}}").unwrap();
    let shaped: Vec<Shaped> = shaping(plan).into_iter().filter(|s| s.vni == vni).collect();
    if !shaped.is_empty() {
        o.push('\n');
        base_chain(&mut o, "shape", "filter hook postrouting priority filter");
        for s in &shaped {
            writeln!(
                o,
                "\t\toifname \"{UP}\" ip saddr {} meta priority set {}",
                s.private_ip, s.classid
            )
            .unwrap();
        }
        writeln!(o, "\t}}").unwrap();
    }
    stateless(&eips, &mut o);
    eip_traffic(&eips, &mut o);
    writeln!(o, "}}").unwrap();
    Some(o)
}

/// Elastic IPs of anycasts: a flow enters through one host's router and its answers leave
/// through the router of whichever host holds the replica that served it, so no conntrack
/// sees both directions. Their packets are not tracked here (nothing translates them as a
/// connection, nothing judges them invalid, NAT gateway rules never see them) and their
/// addresses are rewritten both ways: inbound before routing (the anycast route then
/// spreads the flows), outbound after the shaping classes (which match the private source).
fn stateless(eips: &[&crate::plan::EipPlan], o: &mut String) {
    use crate::names::UPLINK_ROUTER_DEV as UP;
    let eips: Vec<_> = eips.iter().filter(|e| e.anycast).collect();
    if eips.is_empty() {
        return;
    }
    o.push('\n');
    base_chain(o, "stateless_in", "filter hook prerouting priority raw");
    for e in &eips {
        let (eip, ip) = (e.address, e.private_ip);
        writeln!(
            o,
            "\t\tiifname \"{UP}\" ip daddr {eip} notrack ip daddr set {ip}"
        )
        .unwrap();
        writeln!(o, "\t\tip saddr {ip} notrack").unwrap();
    }
    writeln!(o, "\t}}\n").unwrap();
    base_chain(
        o,
        "stateless_out",
        "filter hook postrouting priority srcnat",
    );
    for e in &eips {
        let (eip, ip) = (e.address, e.private_ip);
        writeln!(o, "\t\toifname \"{UP}\" ip saddr {ip} ip saddr set {eip}").unwrap();
    }
    writeln!(o, "\t}}").unwrap();
}

/// Opens base chain `name` with its hook (`filter hook forward priority filter`, …),
/// accepting what no rule decides.
fn base_chain(o: &mut String, name: &str, hook: &str) {
    writeln!(o, "\tchain {name} {{").unwrap();
    writeln!(o, "\t\ttype {hook}; policy accept;").unwrap();
}

/// The comment of an elastic IP's inbound counter, before its id.
pub const EIP_IN_COMMENT: &str = "eip-in ";
/// The comment of an elastic IP's outbound counter, before its id.
pub const EIP_OUT_COMMENT: &str = "eip-out ";

/// A counter per elastic IP and direction, for monitoring (docs/monitoring.md): in the
/// forward hook the inbound half is already addressed to the private IP (prerouting's
/// DNAT) and the outbound half still comes from it (postrouting's SNAT is later).
fn eip_traffic(eips: &[&crate::plan::EipPlan], o: &mut String) {
    use crate::names::UPLINK_ROUTER_DEV as UP;
    if eips.is_empty() {
        return;
    }
    o.push('\n');
    base_chain(o, "eip_traffic", "filter hook forward priority filter");
    for e in eips {
        let (ip, id) = (e.private_ip, &e.id);
        writeln!(
            o,
            "\t\tiifname \"{UP}\" ip daddr {ip} counter comment \"{EIP_IN_COMMENT}{id}\""
        )
        .unwrap();
        writeln!(
            o,
            "\t\toifname \"{UP}\" ip saddr {ip} counter comment \"{EIP_OUT_COMMENT}{id}\""
        )
        .unwrap();
    }
    writeln!(o, "\t}}").unwrap();
}

/// An elastic IP's traffic as its router counted it: `(id, inbound, packets, bytes)` of
/// each counter in `nft -j list table` output (pure).
pub fn eip_counters(json: &str) -> Vec<(String, bool, u64, u64)> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in doc["nftables"].as_array().into_iter().flatten() {
        let rule = &item["rule"];
        let comment = rule["comment"].as_str().unwrap_or_default();
        let (inbound, id) = match (
            comment.strip_prefix(EIP_IN_COMMENT),
            comment.strip_prefix(EIP_OUT_COMMENT),
        ) {
            (Some(id), _) => (true, id),
            (_, Some(id)) => (false, id),
            _ => continue,
        };
        let counter =
            (rule["expr"].as_array().into_iter().flatten()).find_map(|e| e.get("counter"));
        if let Some(c) = counter {
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            out.push((id.to_owned(), inbound, n("packets"), n("bytes")));
        }
    }
    out
}

/// The host's part of anycast elastic IPs' stateless NAT (raw prerouting, host table): a
/// flow comes in through the anchor host and its answers go out through the host of the
/// replica that serves it, so a host on the way may see one direction only, which
/// conntrack would call invalid (and `forward` drops). Not tracked: everything to or from
/// the elastic IP in the host namespace, and, on the VPC's bridge, what the router sends
/// from outside the VPC's subnets to the anycast address at a serving port on another host
/// (that host's bridge tracks the flow and its security groups judge it; flows to a
/// local serving port and from inside the VPC are tracked and judged here as usual).
fn untracked_anycast_eips(plan: &HostPlan, o: &mut String) {
    let mut seen = std::collections::BTreeSet::new();
    for e in plan.elastic_ips.iter().filter(|e| e.anycast) {
        writeln!(o, "\t\tip daddr {} notrack", e.address).unwrap();
        writeln!(o, "\t\tip saddr {} notrack", e.address).unwrap();
        let Some(v) = plan
            .vpc(e.vni)
            .filter(|_| seen.insert((e.vni, e.private_ip)))
        else {
            continue;
        };
        let remote = remote_serving_macs(plan, v, &e.port);
        if remote.is_empty() {
            continue;
        }
        let outside: String = (v.router.interfaces.iter())
            .map(|i| format!(" ip saddr != {}", i.cidr))
            .collect();
        writeln!(
            o,
            "\t\tiifname \"{}\" ip daddr {} ether daddr {}{outside} notrack accept",
            v.bridge,
            e.private_ip,
            one_or_set(remote)
        )
        .unwrap();
    }
}

/// The MACs of anycast `id`'s serving ports (next hops) on other hosts, sorted.
fn remote_serving_macs(plan: &HostPlan, v: &crate::plan::VpcPlan, id: &str) -> Vec<String> {
    let Some(a) = v.anycasts.iter().find(|a| a.id == id) else {
        return Vec::new();
    };
    let local = |ip| plan.ports.iter().any(|p| p.vni == v.vni && p.ip == ip);
    let mut macs: Vec<String> = (a.next_hops.iter())
        .filter(|ip| !local(**ip))
        .filter_map(|ip| v.neighbours.iter().find(|n| n.ip == *ip))
        .map(|n| n.mac.to_string())
        .collect();
    macs.sort();
    macs.dedup();
    macs
}

/// `a` or `{ a, b, … }`.
fn one_or_set(items: Vec<String>) -> String {
    match items.as_slice() {
        [one] => one.clone(),
        _ => format!("{{ {} }}", items.join(", ")),
    }
}

/// External networks that live on this host leave through the host's own routes,
/// masqueraded: traffic from such a network to anywhere outside it.
fn masquerade(plan: &HostPlan, o: &mut String) {
    let local: Vec<_> = plan.externals.iter().filter(|x| x.host_gateway).collect();
    if local.is_empty() {
        return;
    }
    o.push('\n');
    base_chain(
        o,
        "host_gateway_nat",
        "nat hook postrouting priority srcnat",
    );
    for x in local {
        writeln!(o, "\t\tip saddr {0} ip daddr != {0} masquerade", x.cidr).unwrap();
    }
    writeln!(o, "\t}}").unwrap();
}

/// Normalises `nft list table` output (or [`render`] output) for comparison: counters lose
/// their values, anonymous set elements are sorted, blank lines and indentation go.
pub fn normalize(listing: &str) -> String {
    let mut out = String::new();
    for line in listing.lines() {
        let mut l = line.trim().to_string();
        if l.is_empty() {
            continue;
        }
        if let Some(i) = l.find("counter packets ") {
            // "counter packets N bytes M <rest>" → "counter <rest>"
            let rest: Vec<&str> = l[i..].splitn(6, ' ').collect();
            let tail = rest.get(5).copied().unwrap_or("");
            l = format!("{}counter {}", &l[..i], tail)
                .trim_end()
                .to_string();
        }
        if let (Some(a), Some(b)) = (l.find("{ "), l.rfind(" }")) {
            if a < b && !l.ends_with('{') {
                let mut items: Vec<&str> = l[a + 2..b].split(", ").collect();
                items.sort();
                l = format!("{}{{ {} }}{}", &l[..a], items.join(", "), &l[b + 2..]);
            }
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn eip_counters_are_read_from_their_comments() {
        let json = r#"{"nftables": [{"metainfo": {"json_schema_version": 1}},
            {"rule": {"family": "ip", "table": "yunhan_router", "chain": "eip_traffic", "handle": 7,
              "comment": "eip-in eip-1", "expr": [{"match": {}}, {"counter": {"packets": 3, "bytes": 300}}]}},
            {"rule": {"chain": "eip_traffic", "comment": "eip-out eip-1",
              "expr": [{"counter": {"packets": 2, "bytes": 120}}]}},
            {"rule": {"chain": "prerouting", "expr": [{"dnat": {}}]}}]}"#;
        assert_eq!(
            super::eip_counters(json),
            [
                ("eip-1".to_string(), true, 3, 300),
                ("eip-1".to_string(), false, 2, 120)
            ]
        );
        assert!(super::eip_counters("not json").is_empty());
    }

    #[test]
    fn normalize_ignores_counters_and_set_order() {
        let a = "table inet t {\n\tchain c {\n\t\tiifname { \"b\", \"a\" } ct zone set 4\n\t\tcounter packets 3 bytes 180 drop\n\t}\n}\n";
        let b = "table inet t {\n\n\tchain c {\n\t\tiifname { \"a\", \"b\" } ct zone set 4\n\t\tcounter drop\n\t}\n}\n";
        assert_eq!(super::normalize(a), super::normalize(b));
    }
}
