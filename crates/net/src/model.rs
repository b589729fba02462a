//! The input of the network compiler: a plain snapshot of the network resources.
//!
//! It is deliberately independent of the API's resource documents (`yunhan-model`): the
//! controller maps store objects into a [`NetworkModel`] and hands it to the compiler.
use crate::addr::{Ipv4Cidr, MacAddr};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

/// Largest VXLAN network identifier (24 bits); defined in `yunhan_types::addr`.
pub use crate::addr::MAX_VNI;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkModel {
    pub hosts: Vec<Host>,
    pub vpcs: Vec<Vpc>,
    pub subnets: Vec<Subnet>,
    pub ports: Vec<Port>,
    #[serde(default)]
    pub security_groups: Vec<SecurityGroup>,
    /// Elastic IPs: 1:1 NAT on the host of the port, on the external network whose CIDR
    /// holds the address.
    #[serde(default)]
    pub elastic_ips: Vec<ElasticIp>,
    /// Admin-defined external networks (where elastic IPs and NAT gateway addresses live).
    #[serde(default)]
    pub external_networks: Vec<ExternalNetwork>,
    /// NAT gateways: SNAT for a VPC (or some subnets) and DNAT port-forwards.
    #[serde(default)]
    pub nat_gateways: Vec<NatGateway>,
    /// Shared virtual IPs (keepalived-style failover between ports).
    #[serde(default)]
    pub vips: Vec<Vip>,
    /// Route tables: routes for the traffic of some subnets that leaves them through their
    /// VPC's router (to an appliance port, or back to the VPC's own way).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route_tables: Vec<RouteTable>,
    /// Anycast addresses: a load balancer's virtual address served by several ports at
    /// once (ECMP in every router of the VPC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anycasts: Vec<Anycast>,
    /// MTU of the underlay; the overlay gets 50 bytes less (VXLAN over IPv4).
    #[serde(default = "default_mtu")]
    pub underlay_mtu: u16,
}

fn default_mtu() -> u16 {
    1500
}

/// A hypervisor host and its underlay tunnel endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub id: String,
    pub vtep: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vpc {
    pub id: String,
    /// 24-bit VXLAN network identifier, unique across VPCs.
    pub vni: u32,
    pub cidr: Ipv4Cidr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    pub id: String,
    pub vpc: String,
    pub cidr: Ipv4Cidr,
    pub gateway_ip: Ipv4Addr,
    pub gateway_mac: MacAddr,
}

/// A network interface. `host` is where it is plugged in (the host of its VM); a detached
/// interface has none and is not part of any plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub id: String,
    pub vpc: String,
    pub subnet: String,
    #[serde(default)]
    pub host: Option<String>,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub security_groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroup {
    pub id: String,
    pub vpc: String,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Any,
    Tcp,
    Udp,
    Icmp,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

/// Who is on the other side of a rule: addresses, or the members of a security group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    Cidr(Ipv4Cidr),
    Group(String),
}

/// One allow rule. Semantics: ingress is denied unless a rule of one of the port's groups
/// allows it (members of the port's own groups are always allowed in); egress is allowed
/// unless the port's groups have egress rules, then only what they allow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub direction: Direction,
    pub protocol: Protocol,
    /// Only for tcp/udp; `None` = every port.
    #[serde(default)]
    pub ports: Option<PortRange>,
    pub peer: Peer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticIp {
    pub id: String,
    pub address: Ipv4Addr,
    /// The port it is bound to (1:1 NAT), or an [`Anycast`] by its id (stateless NAT on
    /// every host of a serving port; a port of the same id wins). `None`: unbound.
    #[serde(default)]
    pub port: Option<String>,
    #[serde(default)]
    pub bandwidth_mbit: Option<u32>,
}

/// An external (provider) network: addresses of elastic IPs and NAT gateways come from its
/// CIDR; `gateway_ip` is its upstream router. Each host reaches it through its own device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalNetwork {
    pub id: String,
    pub cidr: Ipv4Cidr,
    pub gateway_ip: Ipv4Addr,
    /// Per host, the host-namespace device (interface or bridge) on this network. Hosts
    /// without a leg cannot run elastic IPs or NAT gateways of this network.
    #[serde(default)]
    pub legs: Vec<ExternalLeg>,
    /// The network lives on each host itself (DevStack's "public" network): the leg's
    /// device is a bridge the realiser creates holding `gateway_ip`, and traffic from the
    /// network to anywhere else leaves masqueraded through the host's own routes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_gateway: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalLeg {
    pub host: String,
    pub device: String,
}

/// A NAT gateway of a VPC, realised on `host` (picked by the controller).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatGateway {
    pub id: String,
    pub vpc: String,
    /// Its address on an external network (SNAT source, DNAT destination).
    pub external_ip: Ipv4Addr,
    /// Subnets whose ports without an elastic IP are SNATed; empty = the whole VPC.
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub dnat: Vec<DnatRule>,
    pub host: String,
}

/// A port-forward: `external_ip:external_port` → `internal_ip:internal_port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnatRule {
    /// `tcp` or `udp`.
    pub protocol: Protocol,
    pub external_port: u16,
    pub internal_ip: Ipv4Addr,
    pub internal_port: u16,
}

/// A shared virtual IP: any member port may announce it (send from it, answer ARP for it);
/// `holder` is the member that currently does, as detected on its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    pub id: String,
    pub vpc: String,
    pub subnet: String,
    pub ip: Ipv4Addr,
    /// The MAC members announce the VIP with (keepalived `use_vmac`); default: derived from
    /// the id ([`Vip::effective_mac`]).
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Member ports allowed to announce it.
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub holder: Option<String>,
}

impl Vip {
    /// The VIP's MAC: the given one, or a stable locally administered one from the id.
    pub fn effective_mac(&self) -> MacAddr {
        self.mac.unwrap_or_else(|| MacAddr::of_vip(&self.id))
    }
}

/// A virtual address served by several ports at once (a load balancer's replicas): every
/// router of the VPC sends it to the ports' own addresses as equal-cost next hops (L4 hash),
/// and ARP for it is answered with the subnet gateway's MAC, so clients in its subnet go
/// through their router too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anycast {
    pub id: String,
    pub vpc: String,
    pub subnet: String,
    pub ip: Ipv4Addr,
    /// The ports serving it (ports of `subnet`, each with its own address).
    pub ports: Vec<String>,
}

/// A VPC's route table: the traffic of its `subnets` that enters the VPC's router (to
/// anything outside the sender's own subnet) follows `routes` first, longest prefix
/// first, then the lowest `priority`; what no route matches, and anything inside the VPC's
/// CIDR no more specific route claims, takes the VPC's own way (its subnets, elastic IPs,
/// NAT gateway).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    pub id: String,
    pub vpc: String,
    /// Associated subnets (a subnet is in at most one table).
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub destination: Ipv4Cidr,
    pub target: RouteTarget,
    /// Between routes to the same destination, the lowest wins.
    pub priority: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteTarget {
    /// The VPC's own routing (its subnets; e.g. to exempt part of a wider route).
    Local,
    /// A port of the VPC (an appliance: firewall, VPN, a router into another VPC). It may
    /// forward: it sends from addresses other than its own. While it is not realised on a
    /// host, the destination is unreachable (fail closed: never around the appliance).
    Port(String),
    /// The VPC's NAT gateway (which then translates the associated subnets).
    NatGateway,
    /// The external gateway: out through the sender's elastic IP.
    External,
}

/// Why a model is not valid. The compiler refuses invalid models as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("duplicate {kind} id {id:?}")]
    DuplicateId { kind: &'static str, id: String },
    #[error("invalid {kind} id {id:?} (letters, digits and '-' only, 1-64 characters)")]
    BadId { kind: &'static str, id: String },
    #[error("{kind} {id:?} refers to unknown {target} {target_id:?}")]
    Unknown {
        kind: &'static str,
        id: String,
        target: &'static str,
        target_id: String,
    },
    #[error("VPC {vpc:?}: VNI {vni} out of range 1..={max}", max = MAX_VNI)]
    BadVni { vpc: String, vni: u32 },
    #[error("VNI {vni} is used by VPCs {a:?} and {b:?}")]
    DuplicateVni { vni: u32, a: String, b: String },
    #[error("VTEP {vtep} is used by hosts {a:?} and {b:?}")]
    DuplicateVtep {
        vtep: Ipv4Addr,
        a: String,
        b: String,
    },
    #[error("subnet {subnet:?} ({cidr}) is not inside its VPC's CIDR {vpc_cidr}")]
    SubnetOutsideVpc {
        subnet: String,
        cidr: Ipv4Cidr,
        vpc_cidr: Ipv4Cidr,
    },
    #[error("subnets {a:?} and {b:?} of VPC {vpc:?} overlap")]
    SubnetOverlap { vpc: String, a: String, b: String },
    #[error("subnet {subnet:?}: {reason}")]
    BadSubnet { subnet: String, reason: String },
    #[error("port {port:?}: {reason}")]
    BadPort { port: String, reason: String },
    #[error("security group {group:?}: {reason}")]
    BadGroup { group: String, reason: String },
    #[error("{kind} {id:?}: {reason}")]
    Bad {
        kind: &'static str,
        id: String,
        reason: String,
    },
    /// `id` claims something (an address, a MAC, a VPC's only NAT gateway, …) an object
    /// listed earlier already holds: the later one is the one to leave out.
    #[error("{kind} {id:?}: {reason}")]
    Conflict {
        kind: &'static str,
        id: String,
        reason: String,
    },
}

/// Ids become parts of device, chain and set names: keep them tame.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Pairs of overlapping CIDRs among `items` (sorted sweep: O(n log n) + overlaps).
pub fn overlapping<'a, K: Clone>(
    items: impl IntoIterator<Item = (K, &'a Ipv4Cidr)>,
) -> Vec<(K, K)> {
    let mut v: Vec<(u32, u32, K)> = items
        .into_iter()
        .map(|(k, c)| (u32::from(c.network()), u32::from(c.broadcast()), k))
        .collect();
    v.sort_by_key(|(lo, hi, _)| (*lo, *hi));
    let mut out = Vec::new();
    // CIDR blocks either nest or are disjoint, so comparing with the widest open block suffices
    // to find at least one overlap for every block that has one.
    let mut open: Option<(u32, usize)> = None;
    for i in 0..v.len() {
        if let Some((hi, j)) = open {
            if v[i].0 <= hi {
                out.push((v[j].2.clone(), v[i].2.clone()));
                continue;
            }
        }
        open = Some((v[i].1, i));
    }
    out
}

impl NetworkModel {
    /// Checks every invariant the compiler relies on; returns all problems found.
    pub fn validate(&self) -> Result<(), Vec<ModelError>> {
        let mut errs = Vec::new();
        let mut ids = |kind: &'static str, it: &mut dyn Iterator<Item = &String>| {
            let mut seen = HashSet::new();
            for id in it {
                if !valid_id(id) {
                    errs.push(ModelError::BadId {
                        kind,
                        id: id.clone(),
                    });
                }
                if !seen.insert(id.clone()) {
                    errs.push(ModelError::DuplicateId {
                        kind,
                        id: id.clone(),
                    });
                }
            }
        };
        ids("host", &mut self.hosts.iter().map(|h| &h.id));
        ids("vpc", &mut self.vpcs.iter().map(|v| &v.id));
        ids("subnet", &mut self.subnets.iter().map(|s| &s.id));
        ids("port", &mut self.ports.iter().map(|p| &p.id));
        ids(
            "security group",
            &mut self.security_groups.iter().map(|g| &g.id),
        );
        ids("elastic ip", &mut self.elastic_ips.iter().map(|e| &e.id));
        ids(
            "external network",
            &mut self.external_networks.iter().map(|e| &e.id),
        );
        ids("nat gateway", &mut self.nat_gateways.iter().map(|e| &e.id));
        ids("vip", &mut self.vips.iter().map(|e| &e.id));
        ids("route table", &mut self.route_tables.iter().map(|e| &e.id));
        ids("anycast", &mut self.anycasts.iter().map(|e| &e.id));

        let mut vteps: HashMap<Ipv4Addr, &str> = HashMap::new();
        for h in &self.hosts {
            if let Some(a) = vteps.insert(h.vtep, &h.id) {
                errs.push(ModelError::DuplicateVtep {
                    vtep: h.vtep,
                    a: a.into(),
                    b: h.id.clone(),
                });
            }
        }
        let hosts: HashSet<&str> = self.hosts.iter().map(|h| h.id.as_str()).collect();
        let mut vnis: HashMap<u32, &str> = HashMap::new();
        let vpcs: HashMap<&str, &Vpc> = self.vpcs.iter().map(|v| (v.id.as_str(), v)).collect();
        for v in &self.vpcs {
            if v.vni == 0 || v.vni > MAX_VNI {
                errs.push(ModelError::BadVni {
                    vpc: v.id.clone(),
                    vni: v.vni,
                });
            }
            if let Some(a) = vnis.insert(v.vni, &v.id) {
                errs.push(ModelError::DuplicateVni {
                    vni: v.vni,
                    a: a.into(),
                    b: v.id.clone(),
                });
            }
        }
        let unknown = |kind, id: &str, target, target_id: &str| ModelError::Unknown {
            kind,
            id: id.into(),
            target,
            target_id: target_id.into(),
        };
        let subnets: HashMap<&str, &Subnet> =
            self.subnets.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut by_vpc: BTreeMap<&str, Vec<&Subnet>> = BTreeMap::new();
        for s in &self.subnets {
            let Some(v) = vpcs.get(s.vpc.as_str()) else {
                errs.push(unknown("subnet", &s.id, "vpc", &s.vpc));
                continue;
            };
            if !v.cidr.contains_cidr(&s.cidr) {
                errs.push(ModelError::SubnetOutsideVpc {
                    subnet: s.id.clone(),
                    cidr: s.cidr,
                    vpc_cidr: v.cidr,
                });
            }
            if let Err(e) = crate::ipam::Ipam::new(s.cidr, Some(s.gateway_ip)) {
                errs.push(ModelError::BadSubnet {
                    subnet: s.id.clone(),
                    reason: e.to_string(),
                });
            }
            if s.gateway_mac.is_multicast() || s.gateway_mac.is_zero() {
                errs.push(ModelError::BadSubnet {
                    subnet: s.id.clone(),
                    reason: format!("gateway MAC {} is not unicast", s.gateway_mac),
                });
            }
            by_vpc.entry(&s.vpc).or_default().push(s);
        }
        for (vpc, ss) in &by_vpc {
            for (a, b) in overlapping(ss.iter().map(|s| (s.id.clone(), &s.cidr))) {
                errs.push(ModelError::SubnetOverlap {
                    vpc: (*vpc).into(),
                    a,
                    b,
                });
            }
        }
        let groups: HashMap<&str, &SecurityGroup> = self
            .security_groups
            .iter()
            .map(|g| (g.id.as_str(), g))
            .collect();
        for g in &self.security_groups {
            if !vpcs.contains_key(g.vpc.as_str()) {
                errs.push(unknown("security group", &g.id, "vpc", &g.vpc));
            }
            for r in &g.rules {
                let bad = |reason: String| ModelError::BadGroup {
                    group: g.id.clone(),
                    reason,
                };
                if let Some(p) = r.ports {
                    if !matches!(r.protocol, Protocol::Tcp | Protocol::Udp) {
                        errs.push(bad("port ranges only apply to tcp and udp".into()));
                    }
                    if p.from > p.to || p.from == 0 {
                        errs.push(bad(format!("bad port range {}-{}", p.from, p.to)));
                    }
                }
                if let Peer::Group(other) = &r.peer {
                    match groups.get(other.as_str()) {
                        None => {
                            errs.push(unknown("security group", &g.id, "security group", other))
                        }
                        Some(o) if o.vpc != g.vpc => {
                            errs.push(bad(format!("peer group {other:?} is in another VPC")))
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut ips: HashSet<(&str, Ipv4Addr)> = HashSet::new();
        let mut macs: HashSet<(&str, MacAddr)> = HashSet::new();
        let gateway_macs: HashMap<(&str, MacAddr), &str> = self
            .subnets
            .iter()
            .map(|s| ((s.vpc.as_str(), s.gateway_mac), s.id.as_str()))
            .collect();
        for p in &self.ports {
            let conflict = |reason: String| ModelError::Conflict {
                kind: "port",
                id: p.id.clone(),
                reason,
            };
            let bad = |reason: String| ModelError::BadPort {
                port: p.id.clone(),
                reason,
            };
            let Some(s) = subnets.get(p.subnet.as_str()) else {
                errs.push(unknown("port", &p.id, "subnet", &p.subnet));
                continue;
            };
            if s.vpc != p.vpc {
                errs.push(bad(format!("subnet {:?} is not in VPC {:?}", s.id, p.vpc)));
            }
            if !s.cidr.contains(p.ip)
                || p.ip == s.gateway_ip
                || p.ip == s.cidr.network()
                || p.ip == s.cidr.broadcast()
            {
                errs.push(bad(format!(
                    "{} is not a usable address of {}",
                    p.ip, s.cidr
                )));
            }
            if p.mac.is_multicast() || p.mac.is_zero() {
                errs.push(bad(format!("MAC {} is not unicast", p.mac)));
            }
            if !ips.insert((&p.vpc, p.ip)) {
                errs.push(conflict(format!(
                    "address {} is used twice in VPC {:?}",
                    p.ip, p.vpc
                )));
            }
            if !macs.insert((&p.vpc, p.mac)) {
                errs.push(conflict(format!(
                    "MAC {} is used twice in VPC {:?}",
                    p.mac, p.vpc
                )));
            }
            if let Some(s) = gateway_macs.get(&(p.vpc.as_str(), p.mac)) {
                errs.push(conflict(format!(
                    "MAC {} is the gateway MAC of subnet {s:?}",
                    p.mac
                )));
            }
            if let Some(h) = &p.host {
                if !hosts.contains(h.as_str()) {
                    errs.push(unknown("port", &p.id, "host", h));
                }
            }
            for g in &p.security_groups {
                match groups.get(g.as_str()) {
                    None => errs.push(unknown("port", &p.id, "security group", g)),
                    Some(sg) if sg.vpc != p.vpc => {
                        errs.push(bad(format!("security group {g:?} is in another VPC")))
                    }
                    _ => {}
                }
            }
        }
        // An elastic IP is bound to a port or, by its id, to an anycast (a port wins).
        let ports: BTreeSet<&str> = (self.ports.iter().map(|p| p.id.as_str()))
            .chain(self.anycasts.iter().map(|a| a.id.as_str()))
            .collect();
        for e in &self.elastic_ips {
            if let Some(p) = &e.port {
                if !ports.contains(p.as_str()) {
                    errs.push(unknown("elastic ip", &e.id, "port", p));
                }
            }
        }
        self.validate_external(&mut errs);
        self.validate_route_tables(&mut errs);
        self.validate_anycasts(&mut errs);
        if self.underlay_mtu < 1280 {
            errs.push(ModelError::BadSubnet {
                subnet: String::new(),
                reason: format!("underlay MTU {} below 1280", self.underlay_mtu),
            });
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// The external network whose CIDR holds `addr`.
    pub fn external_of(&self, addr: Ipv4Addr) -> Option<&ExternalNetwork> {
        self.external_networks
            .iter()
            .find(|x| x.cidr.contains(addr))
    }

    /// External networks, elastic IP / NAT gateway addresses, NAT gateways and VIPs.
    fn validate_external(&self, errs: &mut Vec<ModelError>) {
        let bad = |kind, id: &str, reason: String| ModelError::Bad {
            kind,
            id: id.into(),
            reason,
        };
        let conflict = |kind, id: &str, reason: String| ModelError::Conflict {
            kind,
            id: id.into(),
            reason,
        };
        let hosts: HashSet<&str> = self.hosts.iter().map(|h| h.id.as_str()).collect();
        for (a, b) in overlapping(
            self.external_networks
                .iter()
                .enumerate()
                .map(|(i, x)| (i, &x.cidr)),
        ) {
            let (first, later) = (
                &self.external_networks[a.min(b)],
                &self.external_networks[a.max(b)],
            );
            errs.push(conflict(
                "external network",
                &later.id,
                format!("overlaps external network {:?}", first.id),
            ));
        }
        for x in &self.external_networks {
            if !x.cidr.contains(x.gateway_ip) {
                errs.push(bad(
                    "external network",
                    &x.id,
                    format!("gateway {} is outside {}", x.gateway_ip, x.cidr),
                ));
            }
            let mut seen = HashSet::new();
            for l in &x.legs {
                if !hosts.contains(l.host.as_str()) {
                    errs.push(ModelError::Unknown {
                        kind: "external network",
                        id: x.id.clone(),
                        target: "host",
                        target_id: l.host.clone(),
                    });
                }
                if !seen.insert(&l.host) {
                    errs.push(bad(
                        "external network",
                        &x.id,
                        format!("two legs on host {:?}", l.host),
                    ));
                }
                if l.device.is_empty()
                    || l.device.len() > 15
                    || !l.device.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
                {
                    errs.push(bad(
                        "external network",
                        &x.id,
                        format!("bad device name {:?}", l.device),
                    ));
                }
            }
        }
        // Every external address (elastic IP or NAT gateway) is used once, inside an external
        // network, and is neither its network, broadcast nor gateway address.
        let mut used: HashMap<Ipv4Addr, String> = HashMap::new();
        let addresses = self
            .elastic_ips
            .iter()
            .map(|e| ("elastic ip", &e.id, e.address))
            .chain(
                self.nat_gateways
                    .iter()
                    .map(|n| ("nat gateway", &n.id, n.external_ip)),
            );
        for (kind, id, a) in addresses {
            match self.external_of(a) {
                None => errs.push(bad(kind, id, format!("{a} is in no external network"))),
                Some(x)
                    if a == x.gateway_ip || a == x.cidr.network() || a == x.cidr.broadcast() =>
                {
                    errs.push(bad(
                        kind,
                        id,
                        format!("{a} is not a usable address of {}", x.cidr),
                    ))
                }
                _ => {}
            }
            if let Some(other) = used.get(&a) {
                errs.push(conflict(kind, id, format!("{a} is also used by {other:?}")));
            } else {
                used.insert(a, id.clone());
            }
        }
        let port_of: HashMap<&str, &Port> = self.ports.iter().map(|p| (p.id.as_str(), p)).collect();
        let port_ips: HashSet<(&str, Ipv4Addr)> =
            self.ports.iter().map(|p| (p.vpc.as_str(), p.ip)).collect();
        let port_macs: HashSet<(&str, MacAddr)> =
            self.ports.iter().map(|p| (p.vpc.as_str(), p.mac)).collect();
        let mut vip_ips: HashSet<(&str, Ipv4Addr)> = HashSet::new();
        let mut bound = HashSet::new();
        for e in &self.elastic_ips {
            if let Some(p) = &e.port {
                if !bound.insert(p) {
                    let what = if port_of.contains_key(p.as_str()) {
                        "port"
                    } else {
                        "anycast"
                    };
                    errs.push(conflict(
                        "elastic ip",
                        &e.id,
                        format!("{what} {p:?} already has an elastic IP"),
                    ));
                }
            }
            if e.bandwidth_mbit == Some(0) {
                errs.push(bad("elastic ip", &e.id, "bandwidth must be > 0".into()));
            }
        }
        let subnets: HashMap<&str, &Subnet> =
            self.subnets.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut per_vpc = HashSet::new();
        for n in &self.nat_gateways {
            if !self.vpcs.iter().any(|v| v.id == n.vpc) {
                errs.push(ModelError::Unknown {
                    kind: "nat gateway",
                    id: n.id.clone(),
                    target: "vpc",
                    target_id: n.vpc.clone(),
                });
            }
            if !per_vpc.insert(&n.vpc) {
                errs.push(conflict(
                    "nat gateway",
                    &n.id,
                    format!("VPC {:?} already has a NAT gateway", n.vpc),
                ));
            }
            if !hosts.contains(n.host.as_str()) {
                errs.push(ModelError::Unknown {
                    kind: "nat gateway",
                    id: n.id.clone(),
                    target: "host",
                    target_id: n.host.clone(),
                });
            } else if let Some(x) = self.external_of(n.external_ip) {
                if !x.legs.iter().any(|l| l.host == n.host) {
                    errs.push(bad(
                        "nat gateway",
                        &n.id,
                        format!(
                            "host {:?} has no leg on external network {:?}",
                            n.host, x.id
                        ),
                    ));
                }
            }
            if !self.subnets.iter().any(|s| s.vpc == n.vpc) {
                errs.push(bad(
                    "nat gateway",
                    &n.id,
                    format!("VPC {:?} has no subnet to translate", n.vpc),
                ));
            }
            for s in &n.subnets {
                if subnets.get(s.as_str()).is_none_or(|s| s.vpc != n.vpc) {
                    errs.push(bad(
                        "nat gateway",
                        &n.id,
                        format!("subnet {s:?} is not in VPC {:?}", n.vpc),
                    ));
                }
            }
            let mut fwd = HashSet::new();
            for d in &n.dnat {
                if !matches!(d.protocol, Protocol::Tcp | Protocol::Udp) {
                    errs.push(bad(
                        "nat gateway",
                        &n.id,
                        "port-forwards are tcp or udp".into(),
                    ));
                }
                if d.external_port == 0 || d.internal_port == 0 {
                    errs.push(bad("nat gateway", &n.id, "port 0 is not a port".into()));
                }
                if !fwd.insert((d.protocol, d.external_port)) {
                    errs.push(bad(
                        "nat gateway",
                        &n.id,
                        format!("{:?} port {} forwarded twice", d.protocol, d.external_port),
                    ));
                }
                if !port_ips.contains(&(n.vpc.as_str(), d.internal_ip)) {
                    errs.push(bad(
                        "nat gateway",
                        &n.id,
                        format!("{} is no port of VPC {:?}", d.internal_ip, n.vpc),
                    ));
                }
            }
        }
        for v in &self.vips {
            let b = |reason: String| bad("vip", &v.id, reason);
            match subnets.get(v.subnet.as_str()) {
                Some(s) if s.vpc == v.vpc => {
                    if !s.cidr.contains(v.ip)
                        || v.ip == s.gateway_ip
                        || v.ip == s.cidr.network()
                        || v.ip == s.cidr.broadcast()
                    {
                        errs.push(b(format!("{} is not a usable address of {}", v.ip, s.cidr)));
                    }
                }
                _ => errs.push(b(format!(
                    "subnet {:?} is not in VPC {:?}",
                    v.subnet, v.vpc
                ))),
            }
            // A VIP loses an address or MAC to a port, and to a VIP listed before it.
            if port_ips.contains(&(v.vpc.as_str(), v.ip)) || !vip_ips.insert((&v.vpc, v.ip)) {
                errs.push(conflict(
                    "vip",
                    &v.id,
                    format!("address {} is already used", v.ip),
                ));
            }
            let mac = v.effective_mac();
            if mac.is_multicast() || mac.is_zero() {
                errs.push(b(format!("MAC {mac} is not a unicast MAC")));
            } else if port_macs.contains(&(v.vpc.as_str(), mac)) {
                errs.push(conflict("vip", &v.id, format!("MAC {mac} is a port's MAC")));
            }
            for p in &v.ports {
                if port_of.get(p.as_str()).is_none_or(|p| p.vpc != v.vpc) {
                    errs.push(b(format!("member {p:?} is no port of VPC {:?}", v.vpc)));
                }
            }
            if let Some(h) = &v.holder {
                if !v.ports.contains(h) {
                    errs.push(b(format!("holder {h:?} is not a member")));
                }
            }
        }
    }
}

impl NetworkModel {
    /// Route tables: their VPC exists, their subnets are in it and in no earlier table, no
    /// two routes share destination and priority, and no route claims the whole VPC. A
    /// target port that is absent, unplaced or of another VPC is not the table's error (a
    /// bad port must not take the table down with it): the compiler makes its
    /// destinations unreachable.
    fn validate_route_tables(&self, errs: &mut Vec<ModelError>) {
        let bad = |id: &str, reason: String| ModelError::Bad {
            kind: "route table",
            id: id.into(),
            reason,
        };
        let vpcs: HashMap<&str, &Vpc> = self.vpcs.iter().map(|v| (v.id.as_str(), v)).collect();
        let subnet_vpc: HashMap<&str, &str> = self
            .subnets
            .iter()
            .map(|s| (s.id.as_str(), s.vpc.as_str()))
            .collect();
        let mut associated: HashMap<&str, &str> = HashMap::new();
        for t in &self.route_tables {
            let Some(v) = vpcs.get(t.vpc.as_str()) else {
                errs.push(ModelError::Unknown {
                    kind: "route table",
                    id: t.id.clone(),
                    target: "vpc",
                    target_id: t.vpc.clone(),
                });
                continue;
            };
            for s in &t.subnets {
                match subnet_vpc.get(s.as_str()) {
                    Some(vpc) if *vpc == t.vpc => {}
                    _ => errs.push(bad(
                        &t.id,
                        format!("subnet {s:?} is not in VPC {:?}", t.vpc),
                    )),
                }
                if let Some(other) = associated.insert(s, &t.id) {
                    errs.push(ModelError::Conflict {
                        kind: "route table",
                        id: t.id.clone(),
                        reason: format!("subnet {s:?} is already in route table {other:?}"),
                    });
                }
            }
            let mut seen = HashSet::new();
            for r in &t.routes {
                if !seen.insert((r.destination, r.priority)) {
                    errs.push(bad(
                        &t.id,
                        format!(
                            "two routes to {} with priority {}",
                            r.destination, r.priority
                        ),
                    ));
                }
                if r.destination == v.cidr {
                    errs.push(bad(
                        &t.id,
                        format!(
                            "{} is the VPC's own CIDR: its traffic stays in the VPC",
                            r.destination
                        ),
                    ));
                }
            }
        }
    }
}

impl NetworkModel {
    /// Anycast addresses: VPC and subnet known, the subnet in the VPC, the address usable
    /// in the subnet and nobody else's in the VPC (ports and VIPs win it, and an anycast
    /// listed earlier), every serving port a port of the subnet.
    fn validate_anycasts(&self, errs: &mut Vec<ModelError>) {
        let bad = |id: &str, reason: String| ModelError::Bad {
            kind: "anycast",
            id: id.into(),
            reason,
        };
        let unknown = |id: &str, target, target_id: &str| ModelError::Unknown {
            kind: "anycast",
            id: id.into(),
            target,
            target_id: target_id.into(),
        };
        let vpcs: HashSet<&str> = self.vpcs.iter().map(|v| v.id.as_str()).collect();
        let subnets: HashMap<&str, &Subnet> =
            self.subnets.iter().map(|s| (s.id.as_str(), s)).collect();
        let ports: HashMap<&str, &Port> = self.ports.iter().map(|p| (p.id.as_str(), p)).collect();
        let taken: HashSet<(&str, Ipv4Addr)> = (self.ports.iter())
            .map(|p| (p.vpc.as_str(), p.ip))
            .chain(self.vips.iter().map(|v| (v.vpc.as_str(), v.ip)))
            .collect();
        let mut anycast_ips: HashSet<(&str, Ipv4Addr)> = HashSet::new();
        for a in &self.anycasts {
            if !vpcs.contains(a.vpc.as_str()) {
                errs.push(unknown(&a.id, "vpc", &a.vpc));
            }
            match subnets.get(a.subnet.as_str()) {
                None => errs.push(unknown(&a.id, "subnet", &a.subnet)),
                Some(s) if s.vpc != a.vpc => errs.push(bad(
                    &a.id,
                    format!("subnet {:?} is not in VPC {:?}", a.subnet, a.vpc),
                )),
                Some(s) => {
                    if !s.cidr.contains(a.ip)
                        || a.ip == s.gateway_ip
                        || a.ip == s.cidr.network()
                        || a.ip == s.cidr.broadcast()
                    {
                        errs.push(bad(
                            &a.id,
                            format!("{} is not a usable address of {}", a.ip, s.cidr),
                        ));
                    }
                }
            }
            // An anycast loses its address to a port or a VIP, and to an anycast listed
            // before it.
            if taken.contains(&(a.vpc.as_str(), a.ip)) || !anycast_ips.insert((&a.vpc, a.ip)) {
                errs.push(ModelError::Conflict {
                    kind: "anycast",
                    id: a.id.clone(),
                    reason: format!("address {} is already used", a.ip),
                });
            }
            for p in &a.ports {
                match ports.get(p.as_str()) {
                    None => errs.push(unknown(&a.id, "port", p)),
                    Some(port) if port.vpc != a.vpc || port.subnet != a.subnet => errs.push(bad(
                        &a.id,
                        format!("port {p:?} is no port of subnet {:?}", a.subnet),
                    )),
                    Some(_) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cidr() -> impl Strategy<Value = Ipv4Cidr> {
        (0u32..64, 20u8..=28)
            .prop_map(|(a, l)| Ipv4Cidr::containing(Ipv4Addr::from(0x0a00_0000 | (a << 8)), l))
    }

    proptest! {
        /// The sweep finds an overlap exactly when some pair overlaps (brute force).
        #[test]
        fn overlap_detection_matches_brute_force(cs in proptest::collection::vec(cidr(), 0..12)) {
            let brute = (0..cs.len()).any(|i| (i + 1..cs.len()).any(|j| cs[i].overlaps(&cs[j])));
            let found = overlapping(cs.iter().enumerate());
            prop_assert_eq!(!found.is_empty(), brute);
            for (i, j) in found {
                prop_assert!(cs[i].overlaps(&cs[j]));
            }
        }
    }

    #[test]
    fn rejects_overlapping_subnets_but_not_across_vpcs() {
        let mut m = crate::compile::tests::small_model();
        m.validate().unwrap();
        let mut s = m.subnets[0].clone();
        s.id = "sn-dup".into();
        s.cidr = "10.0.1.128/25".parse().unwrap();
        s.gateway_ip = "10.0.1.129".parse().unwrap();
        m.subnets.push(s);
        let errs = m.validate().unwrap_err();
        assert!(
            errs.iter()
                .any(|e| matches!(e, ModelError::SubnetOverlap { .. })),
            "{errs:?}"
        );
    }
}
