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
    /// 1:1 NAT of elastic IPs of local ports (not realised yet).
    #[serde(default)]
    pub elastic_ips: Vec<EipPlan>,
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterPlan {
    pub netns: String,
    /// One interface per subnet of the VPC, by subnet id.
    pub interfaces: Vec<RouterInterface>,
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
}

impl HostPlan {
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
            hash: String::new(),
        };
        p.hash = p.compute_hash();
        p
    }
}
