//! Each VPC's router namespace: sysctls, loopback, the gateway interfaces of its subnets,
//! the uplink and transit legs, stale interfaces, and permanent neighbours. Its route
//! tables are in [`super::route_table`], its anycast routes in [`super::anycast`], its ways
//! out (tables, rules, NAT) in [`super::external`].
use super::observe::{inet_addrs_of, links_of, parse_json, Link, Neighbours};
use super::{Batch, Cmd, RealiseError, Realiser, Runner};
use crate::addr::MacAddr;
use crate::names;
use crate::plan::{HostPlan, VpcPlan, TRANSIT_IP, UPLINK_HOST_IP};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Forwarding on; every subnet's gateway sits on the same L2 segment (one VNI per VPC), so
/// each interface must answer ARP only for its own address (no ARP flux).
const SYSCTLS: [(&str, &str); 13] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.arp_ignore", "1"),
    ("net.ipv4.conf.all.arp_announce", "2"),
    ("net.ipv4.conf.default.arp_ignore", "1"),
    ("net.ipv4.conf.default.arp_announce", "2"),
    // IPv4 only for now: no router advertisements or MLD into the VPC.
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
    // NAT gateway transit: covered traffic enters the gateway's router through the
    // transit leg while its replies leave through a subnet interface.
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    // Anycast addresses: equal-cost next hops chosen by a hash of the packet's 5-tuple (so
    // a flow keeps its replica and flows spread over them): the custom policy (3) over
    // source and destination address, protocol, source and destination port (0x37). Not
    // the L4 policy (1): it takes the hash a packet already carries, and one from a socket
    // on the same host (a veth-attached namespace) carries the socket's random hash, new
    // for every connection and changed on every retransmission timeout.
    ("net.ipv4.fib_multipath_hash_policy", "3"),
    ("net.ipv4.fib_multipath_hash_fields", "55"),
    // A client in an anycast address's own subnet sends to the router, which forwards back
    // out of the same interface: no ICMP redirect may tell the client to bypass the router
    // (and its hash). The effective value is `all` OR the device's, so every interface is
    // set too ([`SEND_REDIRECTS`]); `default` covers devices made later.
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.send_redirects", "0"),
];

/// The seed of the multipath hash (Linux 6.11 and later; 0 means a random one of the
/// namespace's own). Every router of a VPC with an anycast address gets the same seed
/// (from the VPC's id), so the same 5-tuple takes the same next hop whichever router it
/// enters: an outside flow keeps its replica when the elastic IP's host changes. Older
/// kernels hash with each namespace's random seed.
const HASH_SEED: &str = "net.ipv4.fib_multipath_hash_seed";

/// The multipath hash seed of `vpc`'s routers: the first 4 bytes of SHA-256 of its id,
/// never 0.
pub(super) fn hash_seed(vpc: &str) -> u32 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("ecmp-seed/{vpc}").as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]).max(1)
}

/// Whether this kernel has the multipath hash seed (looked up once).
pub(super) fn kernel_has_hash_seed() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::path::Path::new("/proc/sys")
            .join(HASH_SEED.replace('.', "/"))
            .exists()
    })
}

/// The per-device sysctl that must be 0 on every router interface (see [`SYSCTLS`]):
/// devices are made before the namespace's sysctls are first set, and copy `default` only
/// when they are made.
const SEND_REDIRECTS: &str = "send_redirects";

type Links = BTreeMap<String, Link>;

impl<R: Runner> Realiser<R> {
    /// One VPC's router namespace: loopback, forwarding, gateway interfaces, neighbours,
    /// and its way out (uplink, transit, NAT table, outbound shaping) where planned now or
    /// before (`previous`: the last plan, when it had this VPC).
    pub(super) fn apply_router(
        &mut self,
        plan: &HostPlan,
        v: &VpcPlan,
        previous: Option<&HostPlan>,
    ) -> Result<usize, RealiseError> {
        let rns_name = self.router_ns(v);
        let rns = Some(rns_name.as_str());
        let out = self.run(Cmd::new(rns, &["ip", "-j", "-d", "addr", "show"]))?;
        let raw = parse_json("ip addr show", &out)?;
        let links = links_of(&raw);
        let addrs = inet_addrs_of(&raw);
        let legs = legs(v);
        let mut want: Vec<(String, String)> = SYSCTLS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // The interfaces that exist now (those made in this apply do: links come first).
        let devices = (v.router.interfaces.iter().map(|i| i.router_dev.as_str()))
            .chain(legs.iter().map(|(d, _)| *d))
            .filter(|d| links.contains_key(*d));
        want.extend(devices.map(|d| (format!("net.ipv4.conf.{d}.{SEND_REDIRECTS}"), "0".into())));
        if !v.anycasts.is_empty() && kernel_has_hash_seed() {
            want.push((HASH_SEED.into(), hash_seed(&v.vpc).to_string()));
        }
        let mut changes = self.sysctls(rns, &want)?;
        let mut b = Batch::default();
        if links.get("lo").is_none_or(|l| !l.up) {
            b.push("link set dev lo up".into());
        }
        let mtu = u64::from(plan.mtu);
        gateway_interfaces(&mut b, &links, &addrs, v, mtu);
        configure_legs(&mut b, &links, &legs, mtu);
        stale_interfaces(&mut b, &links, v, &legs);
        let have = self.neighbours(rns)?;
        neighbour_changes(&mut b, v, &have, &wanted_neighbours(v));
        changes += b.len();
        self.ip_batch(rns, &b)?;
        let had_tables = previous
            .and_then(|p| p.vpc(v.vni))
            .is_some_and(|p| !p.router.tables.is_empty());
        if had_tables || !v.router.tables.is_empty() {
            changes += self.apply_route_tables(rns, &v.router.tables)?;
        }
        // Always observed: routes of ours left by an earlier agent go too.
        changes += self.apply_anycast_routes(rns, &v.anycasts)?;
        changes += self.apply_router_exits(plan, v, previous, &rns_name)?;
        Ok(changes)
    }
}

/// The gateway interface of each subnet: MAC, MTU, exactly its gateway address, up.
fn gateway_interfaces(
    b: &mut Batch,
    links: &Links,
    addrs: &BTreeMap<String, BTreeSet<String>>,
    v: &VpcPlan,
    mtu: u64,
) {
    for i in &v.router.interfaces {
        let Some(l) = links.get(&i.router_dev) else {
            // Created with the host-side veth in this same apply; configure it fully.
            b.push(format!(
                "link set dev {} address {} mtu {mtu}",
                i.router_dev, i.gateway_mac
            ));
            b.push(format!(
                "addr add {}/{} dev {}",
                i.gateway_ip,
                i.cidr.prefix_len(),
                i.router_dev
            ));
            b.push(format!("link set dev {} up", i.router_dev));
            continue;
        };
        if !l.mac.eq_ignore_ascii_case(&i.gateway_mac.to_string()) {
            b.push(format!(
                "link set dev {} address {}",
                i.router_dev, i.gateway_mac
            ));
        }
        if l.mtu != mtu {
            b.push(format!("link set dev {} mtu {mtu}", i.router_dev));
        }
        let want = format!("{}/{}", i.gateway_ip, i.cidr.prefix_len());
        let have = addrs.get(&i.router_dev).cloned().unwrap_or_default();
        for a in &have {
            if *a != want {
                b.push(format!("addr del {a} dev {}", i.router_dev));
            }
        }
        if !have.contains(&want) {
            b.push(format!("addr add {want} dev {}", i.router_dev));
        }
        if !l.up {
            b.push(format!("link set dev {} up", i.router_dev));
        }
    }
}

/// The uplink and the transit leg (created from the host side with their MACs).
fn legs(v: &VpcPlan) -> Vec<(&str, MacAddr)> {
    v.uplink
        .iter()
        .map(|u| (u.router_dev.as_str(), u.router_mac))
        .chain(
            v.transit
                .iter()
                .filter(|t| t.local)
                .map(|t| (t.router_dev.as_str(), t.mac)),
        )
        .collect()
}

fn configure_legs(b: &mut Batch, links: &Links, legs: &[(&str, MacAddr)], mtu: u64) {
    for (dev, mac) in legs {
        match links.get(*dev) {
            None => b.push(format!("link set dev {dev} mtu {mtu} up")),
            Some(l) => {
                if !l.mac.eq_ignore_ascii_case(&mac.to_string()) {
                    b.push(format!("link set dev {dev} address {mac}"));
                }
                if l.mtu != mtu {
                    b.push(format!("link set dev {dev} mtu {mtu}"));
                }
                if !l.up {
                    b.push(format!("link set dev {dev} up"));
                }
            }
        }
    }
}

/// The router ends of the subnet interfaces.
fn planned_interfaces(v: &VpcPlan) -> BTreeSet<&str> {
    v.router
        .interfaces
        .iter()
        .map(|i| i.router_dev.as_str())
        .collect()
}

/// Stale interfaces (a deleted subnet, a gone uplink) go away with their veth.
fn stale_interfaces(b: &mut Batch, links: &Links, v: &VpcPlan, legs: &[(&str, MacAddr)]) {
    let planned = planned_interfaces(v);
    for (name, l) in links {
        let ours = name.starts_with("gw")
            || name == names::UPLINK_ROUTER_DEV
            || name == names::TRANSIT_ROUTER_DEV;
        if ours
            && l.kind == "veth"
            && !planned.contains(name.as_str())
            && !legs.iter().any(|(d, _)| d == name)
        {
            b.push(format!("link del dev {name}"));
        }
    }
}

/// Neighbours: every port of the VPC on its subnet's interface, permanent; and the next
/// hops of the ways out: the host end of the uplink, the gateway's transit leg.
fn wanted_neighbours(v: &VpcPlan) -> Neighbours {
    let dev_of: HashMap<&str, &str> = v
        .router
        .interfaces
        .iter()
        .map(|i| (i.subnet.as_str(), i.router_dev.as_str()))
        .collect();
    let mut want = Neighbours::new();
    for n in &v.neighbours {
        if let Some(dev) = dev_of.get(n.subnet.as_str()) {
            want.insert((dev.to_string(), n.ip.to_string()), n.mac.to_string());
        }
    }
    if let Some(u) = &v.uplink {
        want.insert(
            (u.router_dev.clone(), UPLINK_HOST_IP.to_string()),
            u.host_mac.to_string(),
        );
    }
    if let Some(t) = v.transit.as_ref().filter(|t| !t.local) {
        want.insert(
            (t.via_dev.clone(), TRANSIT_IP.to_string()),
            t.mac.to_string(),
        );
    }
    want
}

/// Deletes unwanted neighbours on the subnet interfaces; replaces the wrong or missing.
fn neighbour_changes(b: &mut Batch, v: &VpcPlan, have: &Neighbours, want: &Neighbours) {
    let planned = planned_interfaces(v);
    for (k, _) in have.iter().filter(|(k, _)| !want.contains_key(*k)) {
        if planned.contains(k.0.as_str()) {
            b.push(format!("neigh del {} dev {}", k.1, k.0));
        }
    }
    for ((dev, ip), mac) in want {
        if have.get(&(dev.clone(), ip.clone())) != Some(mac) {
            b.push(format!(
                "neigh replace {ip} lladdr {mac} dev {dev} nud permanent"
            ));
        }
    }
}
