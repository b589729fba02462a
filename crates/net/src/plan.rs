//! The per-host network plan: everything one host must realise, nothing more.
//! Plain serde data with a deterministic order (every list sorted), and a content hash.
use crate::addr::{Ipv4Cidr, MacAddr};
use crate::model::{PortRange, Protocol};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

pub const VXLAN_PORT: u16 = 4789;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPlan {
    pub host: String,
    /// Local tunnel endpoint (source address of VXLAN packets).
    pub vtep: Ipv4Addr,
    pub vxlan_port: u16,
    /// MTU of the overlay devices (underlay − 50).
    pub mtu: u16,
    /// VPCs with at least one port on this host, by VNI.
    pub vpcs: Vec<VpcPlan>,
    /// Ports on this host, by id.
    pub ports: Vec<PortPlan>,
    /// Address sets of the security groups the local ports' rules refer to, by id.
    pub groups: Vec<GroupSet>,
    /// 1:1 NAT of elastic IPs of local ports (in their VPC's router namespace), and the
    /// stateless NAT of elastic IPs of anycasts with a local serving port, by id.
    #[serde(default)]
    pub elastic_ips: Vec<EipPlan>,
    /// External networks this host reaches for its elastic IPs and NAT gateways, by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub externals: Vec<ExternalPlan>,
    /// NAT gateways of the local VPCs (`local`: realised on this host), by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nat_gateways: Vec<NatGatewayPlan>,
    /// SHA-256 of the plan's JSON with this field empty.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcPlan {
    pub vpc: String,
    pub vni: u32,
    /// Conntrack zone of the VPC on this host (VPCs may reuse CIDRs: their flows must not mix).
    pub zone: u16,
    pub bridge: String,
    pub vxlan: String,
    pub router: RouterPlan,
    /// Remote MAC → remote VTEP, one exact entry per remote port (no flooding entry).
    pub fdb: Vec<FdbEntry>,
    /// IP → MAC of every port of the VPC (local and remote): ARP is answered from these.
    pub neighbours: Vec<Neighbour>,
    /// The router's leg to the host namespace, towards the external networks (only where
    /// an elastic IP or NAT gateway needs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<UplinkPlan>,
    /// Where traffic for the VPC's NAT gateway goes (see [`TransitPlan`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit: Option<TransitPlan>,
    /// Shared virtual IPs of the VPC, by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vips: Vec<VipPlan>,
    /// Anycast addresses of the VPC, by id (on every host of the VPC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anycasts: Vec<AnycastPlan>,
}

/// Addresses of the point-to-point legs (link-local; the same on every VPC's leg: they are
/// only ever used as next hops with permanent neighbour entries, per device).
pub const UPLINK_HOST_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 0, 1);
pub const UPLINK_ROUTER_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 0, 2);
pub const TRANSIT_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 255, 1);
/// Policy routing tables inside a router namespace: external traffic leaves through the
/// uplink (mark 1) or through the transit to the NAT gateway's host (mark 2).
pub const ROUTER_TABLE_UPLINK: u32 = 100;
pub const ROUTER_TABLE_TRANSIT: u32 = 101;

/// A veth between a VPC's router namespace (`router_dev`) and the host namespace
/// (`host_dev`), with fixed MACs so both ends use permanent neighbours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkPlan {
    pub host_dev: String,
    pub router_dev: String,
    pub host_mac: MacAddr,
    pub router_mac: MacAddr,
}

/// Transit to the NAT gateway: the gateway host's router has an extra leg on the VPC bridge
/// with `mac` (`local` = this host is the gateway host: `host_dev`/`router_dev` exist here);
/// other hosts' routers send covered traffic to [`TRANSIT_IP`] = `mac` out of `via_dev`,
/// and their FDB points `mac` at the gateway host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitPlan {
    pub nat_gateway: String,
    pub mac: MacAddr,
    pub local: bool,
    pub host_dev: String,
    pub router_dev: String,
    /// Router interface (of the first subnet) the transit next hop is reached through.
    pub via_dev: String,
}

/// A shared VIP as one host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipPlan {
    pub id: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub subnet: String,
    pub holder: Option<String>,
    /// Member ports on this host (port id, device), by id: they may send from the VIP's
    /// address and MAC, and the holder is looked for among them.
    pub local_members: Vec<(String, String)>,
}

/// An anycast address as every host of its VPC sees it: the router sends it to the serving
/// ports' addresses as equal-cost next hops, and the VXLAN ARP proxy answers for it with the
/// subnet gateway's MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnycastPlan {
    pub id: String,
    pub ip: Ipv4Addr,
    pub subnet: String,
    /// The router interface of `subnet` (next hops are reached through it).
    pub router_dev: String,
    /// The subnet gateway's MAC: ARP for `ip` is answered with it.
    pub gateway_mac: MacAddr,
    /// Addresses of the serving ports realised on some host, sorted; empty: dropped
    /// (blackhole).
    pub next_hops: Vec<Ipv4Addr>,
}

/// An external network as one host uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalPlan {
    pub id: String,
    pub cidr: Ipv4Cidr,
    pub gateway_ip: Ipv4Addr,
    /// The host's device on the network.
    pub device: String,
    /// Policy routing table (host namespace) holding the network's routes and the routes of
    /// the external addresses realised here; selected by `from`/`to` the CIDR.
    pub table: u32,
    /// External addresses that live behind this host's routers: (address, VNI), sorted.
    pub addresses: Vec<(Ipv4Addr, u32)>,
    /// `device` is a bridge of the realiser's holding `gateway_ip` (see
    /// [`crate::model::ExternalNetwork::host_gateway`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub host_gateway: bool,
}

/// A NAT gateway as one host of its VPC sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatGatewayPlan {
    pub id: String,
    pub vni: u32,
    pub address: Ipv4Addr,
    /// Realised on this host (SNAT/DNAT here), else this host only sends covered traffic
    /// (and replies of port-forwards to its local ports) through the transit.
    pub local: bool,
    /// Sources that are SNATed (subnet CIDRs), sorted.
    pub sources: Vec<Ipv4Cidr>,
    /// Port-forwards (on other hosts: only those to local ports), sorted.
    pub dnat: Vec<crate::model::DnatRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterPlan {
    pub netns: String,
    /// One interface per subnet of the VPC, by subnet id.
    pub interfaces: Vec<RouterInterface>,
    /// The VPC's route tables, by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<RouteTablePlan>,
}

/// First policy-routing table of a router's route tables (`+ i` for the i-th by id).
pub const ROUTER_TABLE_ROUTES: u32 = 200;

/// One route table in a VPC's router namespace: table `table` holds the routes (and the
/// VPC's CIDR as a `throw`, so the VPC's own traffic stays local unless a more specific
/// route claims it), selected by `iif` rules for the associated subnets' interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTablePlan {
    pub id: String,
    pub table: u32,
    /// Router devices of the associated subnets, sorted.
    pub interfaces: Vec<String>,
    /// Sorted.
    pub routes: Vec<RoutePlan>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePlan {
    pub destination: Ipv4Cidr,
    /// The route's priority (lowest wins between equal destinations).
    pub metric: u32,
    pub action: RouteAction,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAction {
    /// To a port of the VPC: its address, through the router interface of its subnet.
    Via { ip: Ipv4Addr, dev: String },
    /// Back to the VPC's own routing (the next policy rules).
    Throw,
    /// Dropped: the target port is not realised anywhere (fail closed).
    Blackhole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterInterface {
    pub subnet: String,
    pub cidr: Ipv4Cidr,
    pub gateway_ip: Ipv4Addr,
    pub gateway_mac: MacAddr,
    /// Bridge side of the veth.
    pub host_dev: String,
    /// Router-namespace side of the veth (holds the gateway address).
    pub router_dev: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdbEntry {
    pub mac: MacAddr,
    pub vtep: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub subnet: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortPlan {
    pub id: String,
    pub vpc: String,
    pub vni: u32,
    pub subnet: String,
    /// Host-side device (tap of the VM, veth of a lab guest); plugged into the VPC bridge.
    pub device: String,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub groups: Vec<String>,
    /// Allowed ingress (besides established flows and the port's own groups).
    pub ingress: Vec<RulePlan>,
    /// `None`: all egress allowed; otherwise only these.
    pub egress: Option<Vec<RulePlan>>,
    /// A route's target: it forwards, so it may send from any IPv4 address (its MAC is
    /// still enforced).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarding: bool,
    /// The anycast addresses this port serves (sorted): it may send from them too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serves: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulePlan {
    pub protocol: Protocol,
    #[serde(default)]
    pub ports: Option<PortRange>,
    pub peer: PeerPlan,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerPlan {
    Cidr(Ipv4Cidr),
    /// Members of a group: see [`HostPlan::groups`].
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSet {
    pub id: String,
    pub vpc: String,
    pub members: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EipPlan {
    pub id: String,
    pub address: Ipv4Addr,
    pub port: String,
    pub private_ip: Ipv4Addr,
    pub vni: u32,
    pub bandwidth_mbit: Option<u32>,
    /// The external network holding `address`.
    #[serde(default)]
    pub external: String,
    /// `port` is an anycast's id and `private_ip` its address: stateless NAT (notrack and
    /// address rewrites, no conntrack), on every host with a serving port of the anycast.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anycast: bool,
    /// This host answers for `address` on the external network (proxy ARP, gratuitous
    /// ARP): always for a port's elastic IP; for an anycast's, only on its anchor host
    /// (the host of the first serving port, in the anycast's order, with a leg).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub inbound: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl HostPlan {
    /// The shared VIPs a local port may announce: (IP, MAC).
    pub fn port_vips(&self, p: &PortPlan) -> Vec<(Ipv4Addr, MacAddr)> {
        self.vpc(p.vni)
            .into_iter()
            .flat_map(|v| &v.vips)
            .filter(|x| x.local_members.iter().any(|(id, _)| *id == p.id))
            .map(|x| (x.ip, x.mac))
            .collect()
    }

    /// The hash of everything but the hash.
    pub fn compute_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut p = self.clone();
        p.hash.clear();
        let json = serde_json::to_vec(&p).expect("plans serialise");
        hex::encode(Sha256::digest(&json))
    }

    pub fn vpc(&self, vni: u32) -> Option<&VpcPlan> {
        self.vpcs.iter().find(|v| v.vni == vni)
    }

    /// An empty plan (a host with no ports): realising it removes everything Yunhan made.
    pub fn empty(host: &str, vtep: Ipv4Addr) -> HostPlan {
        let mut p = HostPlan {
            host: host.into(),
            vtep,
            vxlan_port: VXLAN_PORT,
            mtu: 1450,
            vpcs: vec![],
            ports: vec![],
            groups: vec![],
            elastic_ips: vec![],
            externals: vec![],
            nat_gateways: vec![],
            hash: String::new(),
        };
        p.hash = p.compute_hash();
        p
    }
}
