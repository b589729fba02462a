//! A load balancer's network namespace and its port, with `ip`: observe, then change only
//! what differs (running it again changes nothing).
//!
//! The port is a veth: its host end, named like a VM's tap (`status.device`), lives in the
//! agent's network namespace, where the network agent plugs it into the VPC bridge once
//! the plan has the port; its other end is `eth0` in the load balancer's namespace, with
//! the port's MAC and address, MTU 1450 and a default route via the subnet's gateway.
//! Namespaces are made from the root context, so they are visible to every `ip -n`.

use std::io;
use std::path::Path;

use serde::Deserialize;

use crate::ip::{ip, ip_json, IpError, Link};

use crate::network::GUEST_MTU;

/// Where `ip netns` keeps named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// A load balancer's namespace and port, from its status.
#[derive(Debug, Clone)]
pub struct Port<'a> {
    /// The load balancer's namespace (prefixed like the agent's router namespaces).
    pub netns: &'a str,
    /// The agent's namespace (`--netns`), where the host end lives; None: the root one.
    pub host_netns: Option<&'a str>,
    /// The host end's name.
    pub device: &'a str,
    pub mac: &'a str,
    pub address: &'a str,
    pub prefix_len: u8,
    /// Empty: no default route.
    pub gateway: &'a str,
    /// A replica's: the load balancer's virtual address, held on `lo` (the routers send
    /// it here; eth0 keeps the replica's own address, which sends and answers ARP).
    pub anycast: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error(transparent)]
    Ip(#[from] IpError),
    #[error("namespace {0}: eth0 did not appear")]
    NoEth0(String),
    #[error("listing {NETNS_DIR}: {0}")]
    List(#[source] io::Error),
}

#[derive(Debug, Deserialize)]
struct Route {
    #[serde(default)]
    gateway: String,
    #[serde(default)]
    dev: String,
}

/// Makes `p`'s namespace and port what they should be. True when the namespace had to be
/// made (again): whatever served in a former one is cut off from the port.
pub fn ensure(p: &Port) -> Result<bool, NsError> {
    let made = !exists(p.netns);
    if made {
        ip(None, &["netns", "add", p.netns])?;
    }
    let mut links = inside(p)?;
    ensure_lo(p, &links)?;
    let fresh = !pair_is_there(p, &links)?;
    if fresh {
        make_pair(p, &links)?;
        links = inside(p)?;
    }
    let eth0 = (links.iter().find(|l| l.ifname == "eth0"))
        .ok_or_else(|| NsError::NoEth0(p.netns.to_string()))?;
    ensure_eth0(p, eth0)?;
    ensure_address(p, eth0)?;
    ensure_route(p)?;
    if let Some(vip) = p.anycast {
        ensure_anycast(p, &links, vip)?;
    }
    if fresh {
        announce(p);
    }
    Ok(made)
}

/// A new port says where its MAC is now (a gratuitous ARP for its own address): the VPC
/// bridge learns it at once rather than flooding its frames to every port until the
/// port first speaks (a moved port: replicas of one load balancer hold the same virtual
/// address, see `ensure_anycast`).
fn announce(p: &Port) {
    let (Ok(mac), Ok(addr)) = (p.mac.parse(), p.address.parse()) else {
        return;
    };
    if let Err(e) = yunhan_net::realise::garp::announce(Some(p.netns), "eth0", mac, addr) {
        tracing::warn!(netns = %p.netns, error = %e, "cannot announce a load balancer's port");
    }
}

/// The virtual address on `lo`, answered by no ARP of eth0's and never the source of
/// one (`arp_ignore` 1, `arp_announce` 2): ARP for it is the routers' to answer, and the
/// replica's port may only speak ARP for its own address.
fn ensure_anycast(p: &Port, links: &[Link], vip: &str) -> Result<(), NsError> {
    let lo = links.iter().find(|l| l.ifname == "lo");
    let there = lo.is_some_and(|l| {
        (l.addr_info.iter()).any(|a| a.family == "inet" && a.local == vip && a.prefixlen == 32)
    });
    if there {
        return Ok(());
    }
    for (key, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
        for dev in ["all", "eth0"] {
            let set = format!("net.ipv4.conf.{dev}.{key}={value}");
            ip(None, &["netns", "exec", p.netns, "sysctl", "-qw", &set])?;
        }
    }
    ip(
        Some(p.netns),
        &["addr", "add", &format!("{vip}/32"), "dev", "lo"],
    )?;
    Ok(())
}

/// The links of the load balancer's namespace, with their addresses.
fn inside(p: &Port) -> Result<Vec<Link>, NsError> {
    Ok(ip_json(Some(p.netns), &["-j", "addr", "show"])?)
}

fn ensure_lo(p: &Port, links: &[Link]) -> Result<(), NsError> {
    if links.iter().any(|l| l.ifname == "lo" && l.up()) {
        return Ok(());
    }
    ip(Some(p.netns), &["link", "set", "dev", "lo", "up"])?;
    Ok(())
}

fn pair_is_there(p: &Port, links: &[Link]) -> Result<bool, NsError> {
    Ok(links.iter().any(|l| l.ifname == "eth0") && host_end_exists(p)?)
}

/// Makes the veth, after removing a lone end of a former one.
fn make_pair(p: &Port, links: &[Link]) -> Result<(), NsError> {
    if host_end_exists(p)? {
        ip(p.host_netns, &["link", "del", "dev", p.device])?;
    }
    if links.iter().any(|l| l.ifname == "eth0") {
        ip(Some(p.netns), &["link", "del", "dev", "eth0"])?;
    }
    let mtu = GUEST_MTU.to_string();
    #[rustfmt::skip]
    let args = [
        "link", "add", p.device, "mtu", &mtu, "type", "veth",
        "peer", "name", "eth0", "mtu", &mtu, "address", p.mac, "netns", p.netns,
    ];
    ip(p.host_netns, &args)?;
    Ok(())
}

fn host_end_exists(p: &Port) -> Result<bool, NsError> {
    match ip(p.host_netns, &["link", "show", "dev", p.device]) {
        Ok(_) => Ok(true),
        Err(e) if e.is_missing() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn ensure_eth0(p: &Port, eth0: &Link) -> Result<(), NsError> {
    let mtu = GUEST_MTU.to_string();
    let mut args = vec!["link", "set", "dev", "eth0"];
    if !eth0.address.eq_ignore_ascii_case(p.mac) {
        args.extend(["address", p.mac]);
    }
    if eth0.mtu != u32::from(GUEST_MTU) {
        args.extend(["mtu", &mtu]);
    }
    if !eth0.up() {
        args.push("up");
    }
    if args.len() == 4 {
        return Ok(());
    }
    ip(Some(p.netns), &args)?;
    Ok(())
}

/// Exactly the port's IPv4 address on `eth0`.
fn ensure_address(p: &Port, eth0: &Link) -> Result<(), NsError> {
    let want = format!("{}/{}", p.address, p.prefix_len);
    let mut have = false;
    for a in eth0.addr_info.iter().filter(|a| a.family == "inet") {
        let cidr = format!("{}/{}", a.local, a.prefixlen);
        if cidr == want {
            have = true;
        } else {
            ip(Some(p.netns), &["addr", "del", &cidr, "dev", "eth0"])?;
        }
    }
    if have {
        return Ok(());
    }
    ip(Some(p.netns), &["addr", "add", &want, "dev", "eth0"])?;
    Ok(())
}

fn ensure_route(p: &Port) -> Result<(), NsError> {
    if p.gateway.is_empty() {
        return Ok(());
    }
    let routes: Vec<Route> = ip_json(Some(p.netns), &["-j", "route", "show", "default"])?;
    if let [r] = routes.as_slice() {
        if r.gateway == p.gateway && r.dev == "eth0" {
            return Ok(());
        }
    }
    #[rustfmt::skip]
    let args = ["route", "replace", "default", "via", p.gateway, "dev", "eth0"];
    ip(Some(p.netns), &args)?;
    Ok(())
}

/// Whether the named namespace exists.
pub fn exists(netns: &str) -> bool {
    Path::new(NETNS_DIR).join(netns).exists()
}

/// Deletes the namespace if it is there; the veth (both ends) goes with it once nothing
/// runs in it any more.
pub fn delete(netns: &str) -> Result<(), NsError> {
    if !exists(netns) {
        return Ok(());
    }
    ip(None, &["netns", "del", netns])?;
    Ok(())
}

/// The named namespaces whose names start with `prefix`.
pub fn list(prefix: &str) -> Result<Vec<String>, NsError> {
    let entries = match std::fs::read_dir(NETNS_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NsError::List(e)),
    };
    let mut names = Vec::new();
    for e in entries {
        let name = e.map_err(NsError::List)?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) {
            names.push(name.into_owned());
        }
    }
    Ok(names)
}
