//! VPC networking resources: VPCs, subnets, network interfaces (elastic NICs), security
//! groups (in `security_group.rs`, re-exported here), elastic IPs (from the admin's external
//! networks, `external_network.rs`), NAT gateways, shared virtual IPs and route tables
//! (`route_table.rs`, re-exported here).
//! Design note: `docs/network.md`. References to other objects are stored as ids (the API
//! resolves names at create time); addresses are strings in the usual notations.

use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use yunhan_types::{Ipv4Cidr, MacAddr};

use crate::meta::{kind_consts, validate_optional_name};
use crate::{validate_name, ApiError, Kind, Usage};

// Security groups live in `security_group.rs`; their public path stays `network::…`.
pub use crate::security_group::{
    RuleDirection, RuleProtocol, SecurityGroup, SecurityGroupRule, SecurityGroupSpec,
    SecurityGroupStatus,
};
// Route tables live in `route_table.rs`.
pub use crate::route_table::{
    Route, RouteTable, RouteTableSpec, RouteTableStatus, RouteTargetKind, DEFAULT_ROUTE_PRIORITY,
};

/// Parses an IPv4 CIDR (`10.0.0.0/16`, no host bits) for `field`.
pub fn parse_cidr(field: &str, s: &str) -> Result<Ipv4Cidr, ApiError> {
    s.parse::<Ipv4Cidr>().map_err(|e| {
        ApiError::invalid_field(
            field,
            format!("{s:?} is not an IPv4 CIDR like 10.0.0.0/16: {e}"),
        )
    })
}

/// Parses an IPv4 address for `field`.
pub fn parse_ip(field: &str, s: &str) -> Result<Ipv4Addr, ApiError> {
    s.parse::<Ipv4Addr>().map_err(|_| {
        ApiError::invalid_field(field, format!("{s:?} is not an IPv4 address like 10.0.1.5"))
    })
}

/// The MAC of a port with address `ip`: unique within a VPC because addresses are, stable
/// when the NIC moves between VMs (the guest's configuration matches on it).
pub fn port_mac(ip: Ipv4Addr) -> MacAddr {
    let o = ip.octets();
    MacAddr([0x52, 0x54, o[0], o[1], o[2], o[3]])
}

/// The MAC of a subnet gateway (the same on every host: distributed routing). Distinct from
/// every port MAC by its second octet.
pub fn gateway_mac(gateway: Ipv4Addr) -> MacAddr {
    let o = gateway.octets();
    MacAddr([0x52, 0x55, o[0], o[1], o[2], o[3]])
}

/// Store key claiming `ip` in a subnet (created with compare-and-swap: one owner per address).
pub fn ip_claim_key(subnet: &str, ip: Ipv4Addr) -> String {
    format!("{}{subnet}/{ip}", IP_CLAIM_PREFIX)
}
pub const IP_CLAIM_PREFIX: &str = "/yunhan/net/ipam/";

/// Store key claiming an external (elastic) address.
pub fn eip_claim_key(ip: Ipv4Addr) -> String {
    format!("{}{ip}", EIP_CLAIM_PREFIX)
}
pub const EIP_CLAIM_PREFIX: &str = "/yunhan/net/eips/";

/// The counter VNIs are allocated from (compare-and-swap increments; never reused).
pub const VNI_COUNTER_KEY: &str = "/yunhan/net/vni-next";

/// Where an agent publishes its VXLAN tunnel endpoint (`--vtep`), by host id.
pub const VTEP_PREFIX: &str = "/yunhan/net/vteps/";

/// Where an agent publishes the network devices of its host (a JSON list of names), by
/// host id: a host has a leg on an external network when the network's device is there.
pub const DEVICES_PREFIX: &str = "/yunhan/net/devices/";

/// Where agents report which NIC holds a shared VIP (the NIC id), by VIP id: the host that
/// sees the VIP's MAC fresh on a local member's port writes it when it changes.
pub const VIP_HOLDERS_PREFIX: &str = "/yunhan/net/vip-holders/";

/// Where the SDN controller writes each host's plan, by host id.
pub const PLAN_PREFIX: &str = "/yunhan/plans/net/";

pub(crate) fn check_refs(field: &str, refs: &[String], max: usize) -> Result<(), ApiError> {
    if refs.len() > max {
        return Err(ApiError::invalid_field(
            field,
            format!("at most {max} entries"),
        ));
    }
    for r in refs {
        validate_name(field, r)?;
    }
    Ok(())
}

/// Whether the SDN controller realises a networking object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NetworkPhase {
    /// In the network model: realised wherever it applies.
    #[default]
    Ready,
    /// Left out of the network model (`message` says why); nothing else is affected.
    Failed,
}

impl std::fmt::Display for NetworkPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetworkPhase::Ready => "Ready",
            NetworkPhase::Failed => "Failed",
        })
    }
}

/// The status fields the SDN controller owns, the same in every networking kind.
pub trait NetworkState {
    fn network_state(&self) -> (NetworkPhase, &str);
    fn set_network_state(&mut self, phase: NetworkPhase, message: String);
    /// The host realising it, for kinds realised on one host (elastic IPs, NAT gateways).
    fn host(&self) -> &str {
        ""
    }
    fn set_host(&mut self, _host: String) {}
}

macro_rules! network_state {
    (@impl $t:ty { $($host:tt)* }) => {
        impl NetworkState for $t {
            fn network_state(&self) -> (NetworkPhase, &str) {
                (self.phase, &self.message)
            }
            fn set_network_state(&mut self, phase: NetworkPhase, message: String) {
                self.phase = phase;
                self.message = message;
            }
            $($host)*
        }
    };
    ($($t:ty),*; on a host: $($h:ty),*) => {
        $(network_state!(@impl $t {});)*
        $(network_state!(@impl $h {
            fn host(&self) -> &str {
                &self.host
            }
            fn set_host(&mut self, host: String) {
                self.host = host;
            }
        });)*
    };
}
network_state!(
    VpcStatus,
    SubnetStatus,
    NetworkInterfaceStatus,
    SecurityGroupStatus,
    crate::external_network::ExternalNetworkStatus,
    crate::route_table::RouteTableStatus;
    on a host: ElasticIpStatus, NatGatewayStatus, VipStatus
);

// ---------------------------------------------------------------- VPCs

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcSpec {
    /// The VPC's address range, e.g. `10.10.0.0/16` (prefix /8–/28); subnets lie inside it.
    pub cidr: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct VpcStatus {
    /// The VXLAN network identifier (24 bits), allocated by the server, unique.
    pub vni: u32,
    /// `Failed` when the SDN controller cannot realise it (`message` says why); everything
    /// else keeps being realised. Cleared once the problem goes away.
    pub phase: NetworkPhase,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A tenant's isolated layer-3 network (one VXLAN segment across hosts).
pub struct Vpc;
impl Kind for Vpc {
    kind_consts!("Vpc", "vpcs", "vpc", Project, admin_write: false);
    type Spec = VpcSpec;
    type Status = VpcStatus;
    fn validate(spec: &VpcSpec) -> Result<(), ApiError> {
        let c = parse_cidr("spec.cidr", &spec.cidr)?;
        if !(8..=28).contains(&c.prefix_len()) {
            return Err(ApiError::invalid_field(
                "spec.cidr",
                "a VPC's prefix is /8 to /28",
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- subnets

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    /// The VPC (name or id; stored as the id).
    pub vpc: String,
    /// Inside the VPC's range, not overlapping its other subnets; prefix at most /29.
    pub cidr: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SubnetStatus {
    /// The first host address; held by the VPC's distributed router on every host.
    pub gateway_ip: String,
    pub gateway_mac: String,
    /// `Failed` when the SDN controller cannot realise it (`message` says why); everything
    /// else keeps being realised. Cleared once the problem goes away.
    pub phase: NetworkPhase,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

pub struct Subnet;
impl Kind for Subnet {
    kind_consts!("Subnet", "subnets", "sn", Project, admin_write: false);
    type Spec = SubnetSpec;
    type Status = SubnetStatus;
    fn validate(spec: &SubnetSpec) -> Result<(), ApiError> {
        validate_name("spec.vpc", &spec.vpc)?;
        let c = parse_cidr("spec.cidr", &spec.cidr)?;
        if c.prefix_len() > yunhan_types::ipam::MAX_PREFIX {
            return Err(ApiError::invalid_field(
                "spec.cidr",
                format!(
                    "a subnet's prefix is at most /{}",
                    yunhan_types::ipam::MAX_PREFIX
                ),
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- network interfaces

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterfaceSpec {
    /// The subnet (name or id; stored as the id). Cannot change.
    pub subnet: String,
    /// A fixed address; absent: the next free one. Cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Security groups of the same VPC (names or ids; stored as ids). Empty: the VPC's
    /// implicit default group (members reach each other, nothing else gets in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// The instance it is attached to (name or id; stored as the id). Change it to attach,
    /// detach (null) or move the NIC; running VMs get it hot-plugged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkInterfaceStatus {
    pub vpc: String,
    /// The address allocated at creation.
    pub ip: String,
    pub prefix_len: u8,
    pub gateway: String,
    pub mac: String,
    /// The host-side device (the VM's tap).
    pub device: String,
    /// Created with an instance as its primary NIC: deleted with it.
    pub primary: bool,
    /// The load balancer whose virtual address this is (it is the load balancer's to
    /// change and delete; the port lives where the load balancer is realised).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub load_balancer: String,
    /// `Failed` when the SDN controller cannot realise it (`message` says why); everything
    /// else keeps being realised. Cleared once the problem goes away.
    pub phase: NetworkPhase,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

pub struct NetworkInterface;
impl Kind for NetworkInterface {
    kind_consts!("NetworkInterface", "network-interfaces", "nic", Project, admin_write: false);
    type Spec = NetworkInterfaceSpec;
    type Status = NetworkInterfaceStatus;
    fn validate(spec: &NetworkInterfaceSpec) -> Result<(), ApiError> {
        validate_name("spec.subnet", &spec.subnet)?;
        if let Some(ip) = &spec.ip {
            parse_ip("spec.ip", ip)?;
        }
        check_refs("spec.security_groups", &spec.security_groups, 5)?;
        validate_optional_name("spec.instance", spec.instance.as_deref())?;
        Ok(())
    }
}

/// The primary NIC requested with an instance (`InstanceSpec.nic`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrimaryNic {
    /// Subnet name or id.
    pub subnet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
}

impl PrimaryNic {
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_name("spec.nic.subnet", &self.subnet)?;
        if let Some(ip) = &self.ip {
            parse_ip("spec.nic.ip", ip)?;
        }
        check_refs("spec.nic.security_groups", &self.security_groups, 5)
    }
}

// ---------------------------------------------------------------- elastic IPs

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElasticIpSpec {
    /// The external network (name or id; default: the oldest one, `yunhan up`'s
    /// `public`). Cannot change.
    #[serde(default, alias = "pool", skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// A specific address of the network; absent: the next free one. Cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The NIC it is bound to (name or id; stored as the id): 1:1 NAT on the NIC's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<String>,
    /// Bandwidth cap in Mbit/s, each direction (absent: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_mbit: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ElasticIpStatus {
    pub address: String,
    /// The id of its external network.
    #[serde(alias = "pool")]
    pub network: String,
    /// `Failed` when the SDN controller cannot realise it (`message` says why); everything
    /// else keeps being realised. Cleared once the problem goes away.
    pub phase: NetworkPhase,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The name of the host realising it (empty: none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
}

pub struct ElasticIp;
impl Kind for ElasticIp {
    kind_consts!("ElasticIp", "elastic-ips", "eip", Project, admin_write: false);
    type Spec = ElasticIpSpec;
    type Status = ElasticIpStatus;
    fn validate(spec: &ElasticIpSpec) -> Result<(), ApiError> {
        validate_optional_name("spec.network", spec.network.as_deref())?;
        if let Some(a) = &spec.address {
            parse_ip("spec.address", a)?;
        }
        validate_optional_name("spec.nic", spec.nic.as_deref())?;
        if spec.bandwidth_mbit == Some(0) || spec.bandwidth_mbit > Some(100_000) {
            return Err(ApiError::invalid_field(
                "spec.bandwidth_mbit",
                "bandwidth_mbit is 1–100000 (omit it for no cap)",
            ));
        }
        Ok(())
    }
    fn usage(_spec: &ElasticIpSpec, _status: &ElasticIpStatus) -> Usage {
        Usage {
            elastic_ips: 1,
            ..Usage::default()
        }
    }
}

// ---------------------------------------------------------------- NAT gateways

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DnatProtocol {
    #[default]
    Tcp,
    Udp,
}

/// Port forwarding: `elastic IP:port` → `to_ip:to_port` inside the VPC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnatRule {
    pub protocol: DnatProtocol,
    pub port: u16,
    pub to_ip: String,
    pub to_port: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatGatewaySpec {
    /// The VPC (name or id; stored as the id). Cannot change.
    pub vpc: String,
    /// Subnets whose egress it translates (names or ids; empty: the whole VPC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// The elastic IP it translates to (name or id; stored as the id; must not be bound to a NIC).
    pub elastic_ip: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dnat: Vec<DnatRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NatGatewayStatus {
    /// `Failed` when the SDN controller cannot realise it (`message` says why); everything
    /// else keeps being realised. Cleared once the problem goes away.
    pub phase: NetworkPhase,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The name of the host realising it (empty: none).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
}

/// SNAT for a VPC (or some of its subnets) behind one elastic IP, plus DNAT port forwards.
pub struct NatGateway;
impl Kind for NatGateway {
    kind_consts!("NatGateway", "nat-gateways", "natgw", Project, admin_write: false);
    type Spec = NatGatewaySpec;
    type Status = NatGatewayStatus;
    fn validate(spec: &NatGatewaySpec) -> Result<(), ApiError> {
        validate_name("spec.vpc", &spec.vpc)?;
        validate_name("spec.elastic_ip", &spec.elastic_ip)?;
        check_refs("spec.subnets", &spec.subnets, 64)?;
        if spec.dnat.len() > 100 {
            return Err(ApiError::invalid_field("spec.dnat", "at most 100 rules"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, d) in spec.dnat.iter().enumerate() {
            let field = format!("spec.dnat[{i}]");
            if d.port == 0 || d.to_port == 0 {
                return Err(ApiError::invalid_field(&field, "ports are 1–65535"));
            }
            parse_ip(&format!("{field}.to_ip"), &d.to_ip)?;
            if !seen.insert((d.protocol, d.port)) {
                return Err(ApiError::invalid_field(
                    &field,
                    format!("port {} is forwarded twice", d.port),
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- shared virtual IPs

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VipSpec {
    /// The subnet (name or id; stored as the id). Cannot change.
    pub subnet: String,
    /// A fixed address; absent: the next free one. Cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// NICs (names or ids; stored as ids) allowed to announce the address (keepalived-style
    /// failover between them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct VipStatus {
    pub vpc: String,
    pub ip: String,
    /// The MAC members announce it with (keepalived `use_vmac`: a macvlan with this
    /// address holds the VIP); derived from the id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// `Failed` when the SDN controller cannot realise it (`message` says why); everything
    /// else keeps being realised. Cleared once the problem goes away.
    pub phase: NetworkPhase,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The name of the host of the NIC that holds it (announced it last), as agents
    /// report it (empty: nobody yet).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
}

/// A virtual IP several NICs of one subnet may announce.
pub struct Vip;
impl Kind for Vip {
    kind_consts!("Vip", "vips", "vip", Project, admin_write: false);
    type Spec = VipSpec;
    type Status = VipStatus;
    fn validate(spec: &VipSpec) -> Result<(), ApiError> {
        validate_name("spec.subnet", &spec.subnet)?;
        if let Some(ip) = &spec.ip {
            parse_ip("spec.ip", ip)?;
        }
        check_refs("spec.nics", &spec.nics, 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cidrs_are_checked() {
        Vpc::validate(&VpcSpec {
            cidr: "10.10.0.0/16".into(),
        })
        .unwrap();
        for bad in [
            "10.10.0.1/16",
            "10.10.0.0/33",
            "x",
            "10.0.0.0/30",
            "10.0.0.0/4",
        ] {
            assert!(
                Vpc::validate(&VpcSpec { cidr: bad.into() }).is_err(),
                "{bad}"
            );
        }
        let s = |c: &str| SubnetSpec {
            vpc: "net1".into(),
            cidr: c.into(),
        };
        Subnet::validate(&s("10.10.1.0/24")).unwrap();
        assert!(Subnet::validate(&s("10.10.1.0/30")).is_err());
    }

    proptest! {
        /// Port MACs are unicast, locally administered, and never a gateway's.
        #[test]
        fn macs_are_unicast_and_distinct(a in any::<u32>(), b in any::<u32>()) {
            let (p, g) = (port_mac(Ipv4Addr::from(a)), gateway_mac(Ipv4Addr::from(b)));
            prop_assert!(!p.is_multicast() && !g.is_multicast());
            prop_assert!(p.0[0] & 2 == 2);
            prop_assert_ne!(p, g);
            prop_assert_eq!(port_mac(Ipv4Addr::from(a)) == port_mac(Ipv4Addr::from(b)), a == b);
        }

        #[test]
        fn validation_never_panics(c in ".{0,40}", ip in ".{0,20}") {
            let _ = Vpc::validate(&VpcSpec { cidr: c.clone() });
            let _ = NetworkInterface::validate(&NetworkInterfaceSpec {
                subnet: "s".into(), ip: Some(ip), ..Default::default()
            });
        }
    }
}
