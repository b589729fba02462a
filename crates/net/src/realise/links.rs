//! The host namespace: bridge netfilter, router namespaces (created and deleted here), VPC
//! bridges, VXLAN devices, the host ends of router veths (subnet gateways, uplink, transit),
//! local port devices, FDB entries and ARP-proxy neighbours (remote ports, and anycast
//! addresses answered with their subnet gateway's MAC).
use super::observe::{parse_json, Link, Masters, Neighbours, Tunnels};
use super::{owned, ApplyReport, Batch, Cmd, RealiseError, Realiser, Runner};
use crate::addr::MacAddr;
use crate::plan::{HostPlan, VpcPlan, UPLINK_ROUTER_IP};
use std::collections::{BTreeMap, BTreeSet};

/// The router namespaces seen before the apply and the planned ones.
pub(super) struct RouterNamespaces {
    existing: BTreeSet<String>,
    wanted: BTreeSet<String>,
    /// How many were created.
    pub(super) added: usize,
}

impl<R: Runner> Realiser<R> {
    /// Bridged IPv4 must traverse the inet hooks (conntrack, security groups).
    pub(super) fn bridge_netfilter(&self) -> Result<usize, RealiseError> {
        let ns = self.ns();
        let v = self.run(Cmd::new(
            ns,
            &["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"],
        ))?;
        if v.trim() == "1" {
            return Ok(0);
        }
        self.run(Cmd::new(
            ns,
            &["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"],
        ))?;
        Ok(1)
    }

    /// Router namespaces: creates the missing ones (from the root context, so the name is
    /// visible everywhere).
    pub(super) fn add_router_namespaces(
        &self,
        plan: &HostPlan,
    ) -> Result<RouterNamespaces, RealiseError> {
        let listed = self.run(Cmd::new(None, &["ip", "-j", "netns", "list"]))?;
        let existing: BTreeSet<String> = parse_json("ip netns list", &listed)?
            .iter()
            .filter_map(|n| n["name"].as_str().map(String::from))
            .collect();
        let wanted: BTreeSet<String> = plan.vpcs.iter().map(|v| self.router_ns(v)).collect();
        let mut added = 0;
        for n in &wanted {
            if !existing.contains(n) {
                self.run(Cmd::new(None, &["ip", "netns", "add", n]))?;
                added += 1;
            }
        }
        Ok(RouterNamespaces {
            existing,
            wanted,
            added,
        })
    }

    /// Deletes the router namespaces no longer planned (after their veths are gone with
    /// them).
    pub(super) fn delete_stale_router_namespaces(
        &self,
        n: &RouterNamespaces,
    ) -> Result<usize, RealiseError> {
        let router_prefix = format!("{}ynr-", self.target.router_prefix);
        let stale: Vec<&String> = n
            .existing
            .iter()
            .filter(|x| x.starts_with(&router_prefix) && !n.wanted.contains(*x))
            .collect();
        for x in &stale {
            self.run(Cmd::new(None, &["ip", "netns", "del", x]))?;
        }
        Ok(stale.len())
    }

    /// Links, FDB and neighbours of the host namespace, in three batches: links (`ip`), FDB
    /// (`bridge`), then neighbours on the VXLAN devices (`ip`, after their links).
    pub(super) fn apply_links(
        &self,
        plan: &HostPlan,
        report: &mut ApplyReport,
    ) -> Result<(), RealiseError> {
        let ns = self.ns();
        let links = self.links(ns)?;
        let mut ipb = Batch::default(); // links
        let mut ipb2 = Batch::default(); // neighbours on vxlan devices (after links)
        let mut brb = Batch::default();
        let mtu = u64::from(plan.mtu);

        // Stale devices first (a re-created VPC may reuse names).
        let planned = planned_devs(plan);
        for name in links.keys() {
            if owned(name) && !planned.contains(name) {
                ipb.push(format!("link del dev {name}"));
            }
        }
        for v in &plan.vpcs {
            let rns = self.router_ns(v);
            bridge(&mut ipb, links.get(&v.bridge), &v.bridge, mtu);
            vxlan(&mut ipb, &mut brb, &links, plan, v);
            router_veths(&mut ipb, &links, v, &rns, mtu);
            ways_out(&mut ipb, &links, v, &rns, mtu);
            ports(&mut ipb, &links, plan, v, &mut report.missing_ports);
        }
        for x in plan.externals.iter().filter(|x| x.host_gateway) {
            bridge(
                &mut ipb,
                links.get(&x.device),
                &x.device,
                mtu + VXLAN_OVERHEAD,
            );
        }

        // FDB (VXLAN: MAC → VTEP; bridge: MAC → VXLAN port; gateway MACs → router veths)
        // and ARP-proxy neighbours on the VXLAN devices.
        let (have_tunnel, have_master) = self.fdb()?;
        let have_neigh = self.neighbours(ns)?;
        let (want_tunnel, want_master, want_neigh) = wanted_fdb(plan);
        fdb_changes(
            &mut brb,
            &planned,
            &have_tunnel,
            &want_tunnel,
            &have_master,
            &want_master,
        );
        neighbour_changes(&mut ipb2, &planned, &have_neigh, &want_neigh);

        report.changes += ipb.len() + ipb2.len() + brb.len();
        self.ip_batch(ns, &ipb)?;
        self.bridge_batch(&brb)?;
        self.ip_batch(ns, &ipb2)
    }
}

/// What VXLAN over IPv4 adds to a frame: the underlay MTU is the overlay's plus this.
const VXLAN_OVERHEAD: u64 = 50;

/// The host-namespace devices the plan wants.
fn planned_devs(plan: &HostPlan) -> BTreeSet<String> {
    let external_bridges = plan
        .externals
        .iter()
        .filter(|x| x.host_gateway)
        .map(|x| x.device.clone());
    plan.vpcs
        .iter()
        .flat_map(|v| {
            let mut d = vec![v.bridge.clone(), v.vxlan.clone()];
            d.extend(v.router.interfaces.iter().map(|i| i.host_dev.clone()));
            d.extend(v.uplink.iter().map(|u| u.host_dev.clone()));
            d.extend(
                v.transit
                    .iter()
                    .filter(|t| t.local)
                    .map(|t| t.host_dev.clone()),
            );
            d
        })
        .chain(external_bridges)
        .collect()
}

/// A VPC's bridge.
fn bridge(ipb: &mut Batch, have: Option<&Link>, br: &str, mtu: u64) {
    match have {
        Some(l) if l.kind == "bridge" => repair(ipb, l, br, None, mtu),
        other => {
            let add = format!("link add name {br} mtu {mtu} type bridge stp_state 0");
            recreate(ipb, other, br, add, None);
        }
    }
}

/// A VPC's VXLAN device: exact attributes or re-create; a port of the bridge that never
/// learns (remote MACs sit behind it).
fn vxlan(
    ipb: &mut Batch,
    brb: &mut Batch,
    links: &BTreeMap<String, Link>,
    plan: &HostPlan,
    v: &VpcPlan,
) {
    let mtu = u64::from(plan.mtu);
    let vx_ok = links.get(&v.vxlan).is_some_and(|l| {
        l.kind == "vxlan"
            && l.data["id"].as_u64() == Some(u64::from(v.vni))
            && l.data["local"].as_str() == Some(&plan.vtep.to_string())
            && l.data["port"].as_u64() == Some(u64::from(plan.vxlan_port))
            && l.data["learning"].as_bool() == Some(false)
            && l.data["proxy"].as_bool() == Some(true)
    });
    let vx = links.get(&v.vxlan).filter(|_| vx_ok);
    if !vx_ok {
        if links.contains_key(&v.vxlan) {
            ipb.push(format!("link del dev {}", v.vxlan));
        }
        ipb.push(format!(
            "link add name {} mtu {mtu} type vxlan id {} local {} dstport {} nolearning proxy",
            v.vxlan, v.vni, plan.vtep, plan.vxlan_port
        ));
    }
    if vx.is_none_or(|l| l.mtu != mtu) && vx.is_some() {
        ipb.push(format!("link set dev {} mtu {mtu}", v.vxlan));
    }
    if vx.is_none_or(|l| l.master.as_deref() != Some(&v.bridge)) {
        ipb.push(format!("link set dev {} master {}", v.vxlan, v.bridge));
    }
    if vx.is_none_or(|l| !l.up) {
        ipb.push(format!("link set dev {} up", v.vxlan));
    }
    // Remote MACs sit behind the VXLAN port: never learn them from frames.
    if vx.is_none_or(|l| l.slave["learning"].as_bool() != Some(false)) {
        brb.push(format!("link set dev {} learning off", v.vxlan));
    }
}

/// The host ends of the router's subnet interfaces (veths on the VPC bridge).
fn router_veths(ipb: &mut Batch, links: &BTreeMap<String, Link>, v: &VpcPlan, rns: &str, mtu: u64) {
    for i in &v.router.interfaces {
        match links.get(&i.host_dev) {
            Some(l) if l.kind == "veth" => repair(ipb, l, &i.host_dev, Some(&v.bridge), mtu),
            other => {
                let add = format!(
                    "link add name {} mtu {mtu} type veth peer name {} netns {rns}",
                    i.host_dev, i.router_dev
                );
                recreate(ipb, other, &i.host_dev, add, Some(&v.bridge));
            }
        }
    }
}

/// Repairs an existing device: its master (where it belongs on a bridge), MTU, up.
fn repair(b: &mut Batch, l: &Link, dev: &str, master: Option<&str>, mtu: u64) {
    if let Some(br) = master.filter(|br| l.master.as_deref() != Some(*br)) {
        b.push(format!("link set dev {dev} master {br}"));
    }
    if l.mtu != mtu {
        b.push(format!("link set dev {dev} mtu {mtu}"));
    }
    if !l.up {
        b.push(format!("link set dev {dev} up"));
    }
}

/// (Re-)creates device `dev` with `add` (deleting what stands under its name first),
/// puts it on its bridge, if any, and sets it up.
fn recreate(b: &mut Batch, have: Option<&Link>, dev: &str, add: String, master: Option<&str>) {
    if have.is_some() {
        b.push(format!("link del dev {dev}"));
    }
    b.push(add);
    if let Some(br) = master {
        b.push(format!("link set dev {dev} master {br}"));
    }
    b.push(format!("link set dev {dev} up"));
}

/// Uplink (router ↔ host namespace) and, on the NAT gateway's host, the transit leg
/// (router ↔ VPC bridge): veths with fixed MACs.
fn ways_out(ipb: &mut Batch, links: &BTreeMap<String, Link>, v: &VpcPlan, rns: &str, mtu: u64) {
    if let Some(u) = &v.uplink {
        veth_to_router(
            ipb,
            links.get(&u.host_dev),
            (&u.host_dev, Some(u.host_mac)),
            (&u.router_dev, u.router_mac),
            rns,
            None,
            mtu,
        );
    }
    if let Some(t) = v.transit.as_ref().filter(|t| t.local) {
        veth_to_router(
            ipb,
            links.get(&t.host_dev),
            (&t.host_dev, None),
            (&t.router_dev, t.mac),
            rns,
            Some(&v.bridge),
            mtu,
        );
    }
}

/// Local port devices (created by the compute agent or the lab) join the VPC bridge; the
/// missing ones are reported.
fn ports(
    ipb: &mut Batch,
    links: &BTreeMap<String, Link>,
    plan: &HostPlan,
    v: &VpcPlan,
    missing: &mut Vec<String>,
) {
    let mtu = u64::from(plan.mtu);
    for p in plan.ports.iter().filter(|p| p.vni == v.vni) {
        match links.get(&p.device) {
            None => missing.push(p.id.clone()),
            Some(l) => repair(ipb, l, &p.device, Some(&v.bridge), mtu),
        }
    }
}

/// Creates (or repairs) a veth whose far end lives in a router namespace with a fixed MAC;
/// the near end optionally joins a bridge.
fn veth_to_router(
    b: &mut Batch,
    have: Option<&Link>,
    (near, near_mac): (&str, Option<MacAddr>),
    (far, far_mac): (&str, MacAddr),
    rns: &str,
    bridge: Option<&str>,
    mtu: u64,
) {
    match have {
        Some(l)
            if l.kind == "veth"
                && near_mac.is_none_or(|m| l.mac.eq_ignore_ascii_case(&m.to_string())) =>
        {
            repair(b, l, near, bridge, mtu)
        }
        other => {
            let addr = near_mac
                .map(|m| format!(" address {m}"))
                .unwrap_or_default();
            let add = format!(
                "link add name {near}{addr} mtu {mtu} type veth peer name {far} address {far_mac} netns {rns}"
            );
            recreate(b, other, near, add, bridge);
        }
    }
}

/// The FDB entries and permanent neighbours the plan wants in the host namespace.
fn wanted_fdb(plan: &HostPlan) -> (Tunnels, Masters, Neighbours) {
    let mut want_tunnel = Tunnels::new();
    let mut want_master = Masters::new();
    let mut want_neigh = Neighbours::new();
    for v in &plan.vpcs {
        let remote: BTreeSet<String> = v.fdb.iter().map(|f| f.mac.to_string()).collect();
        for f in &v.fdb {
            want_tunnel.insert((v.vxlan.clone(), f.mac.to_string(), f.vtep.to_string()));
            want_master.insert((v.vxlan.clone(), f.mac.to_string()));
        }
        for i in &v.router.interfaces {
            want_master.insert((i.host_dev.clone(), i.gateway_mac.to_string()));
        }
        if let Some(t) = v.transit.as_ref().filter(|t| t.local) {
            want_master.insert((t.host_dev.clone(), t.mac.to_string()));
        }
        if let Some(u) = &v.uplink {
            want_neigh.insert(
                (u.host_dev.clone(), UPLINK_ROUTER_IP.to_string()),
                u.router_mac.to_string(),
            );
        }
        for n in &v.neighbours {
            if remote.contains(&n.mac.to_string()) {
                want_neigh.insert((v.vxlan.clone(), n.ip.to_string()), n.mac.to_string());
            }
        }
        // The VXLAN device's ARP proxy answers local requests for an anycast address with
        // the gateway's MAC: clients in its subnet send it to their router too.
        for a in &v.anycasts {
            want_neigh.insert(
                (v.vxlan.clone(), a.ip.to_string()),
                a.gateway_mac.to_string(),
            );
        }
    }
    (want_tunnel, want_master, want_neigh)
}

/// FDB deletions (of entries on our planned devices only), then additions, into `brb`.
fn fdb_changes(
    brb: &mut Batch,
    planned: &BTreeSet<String>,
    have_tunnel: &Tunnels,
    want_tunnel: &Tunnels,
    have_master: &Masters,
    want_master: &Masters,
) {
    let ours = |dev: &String| owned(dev) && planned.contains(dev);
    for (dev, mac, dst) in have_tunnel {
        if ours(dev) && !want_tunnel.contains(&(dev.clone(), mac.clone(), dst.clone())) {
            brb.push(format!("fdb del {mac} dev {dev} dst {dst} self"));
        }
    }
    for (dev, mac) in have_master {
        if ours(dev) && !want_master.contains(&(dev.clone(), mac.clone())) {
            brb.push(format!("fdb del {mac} dev {dev} master"));
        }
    }
    for (dev, mac, dst) in want_tunnel {
        if !have_tunnel.contains(&(dev.clone(), mac.clone(), dst.clone())) {
            brb.push(format!(
                "fdb append {mac} dev {dev} dst {dst} self permanent"
            ));
        }
    }
    for (dev, mac) in want_master {
        if !have_master.contains(&(dev.clone(), mac.clone())) {
            brb.push(format!("fdb replace {mac} dev {dev} master static"));
        }
    }
}

/// Permanent-neighbour deletions (on our planned devices only) and replacements.
fn neighbour_changes(
    ipb: &mut Batch,
    planned: &BTreeSet<String>,
    have: &Neighbours,
    want: &Neighbours,
) {
    for (dev, ip) in have.keys() {
        if owned(dev) && planned.contains(dev) && !want.contains_key(&(dev.clone(), ip.clone())) {
            ipb.push(format!("neigh del {ip} dev {dev}"));
        }
    }
    for ((dev, ip), mac) in want {
        if have.get(&(dev.clone(), ip.clone())) != Some(mac) {
            ipb.push(format!(
                "neigh replace {ip} lladdr {mac} dev {dev} nud permanent"
            ));
        }
    }
}
