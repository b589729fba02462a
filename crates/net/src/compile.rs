//! The network compiler: [`NetworkModel`] → one [`HostPlan`] per host. Pure and deterministic.
//!
//! A host's plan holds only what that host needs: the VPCs of its own ports; for each, the
//! exact FDB entries (remote MAC → remote VTEP) and neighbour entries (IP → MAC) of every
//! other port of the VPC (any port of a VPC can reach any other through the distributed
//! router, so the VPC is the reach set), a router namespace with every subnet's gateway,
//! and the security-group rules of its local ports with the address sets they refer to.
//! Its size grows with its own ports and their VPC peers, never with unrelated VPCs.
//! The security-group part (ports' rules, group address sets) is in [`security_group`].
use crate::addr::MacAddr;
use crate::model::{Anycast, NatGateway, Vip};
use crate::model::{Host, ModelError, NetworkModel, Port, SecurityGroup, Subnet, Vpc};
use crate::names;
use crate::plan::{
    EipPlan, ExternalPlan, FdbEntry, HostPlan, NatGatewayPlan, Neighbour, PortPlan,
    RouterInterface, RouterPlan, TransitPlan, UplinkPlan, VipPlan, VpcPlan, VXLAN_PORT,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

mod anycast;
mod route_table;
mod security_group;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("invalid network model: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<ModelError>),
    #[error("unknown host {0:?}")]
    UnknownHost(String),
}

/// Compiles every host's plan (hosts without ports get an empty plan).
pub fn compile_all(m: &NetworkModel) -> Result<BTreeMap<String, HostPlan>, CompileError> {
    let ix = Index::new(m)?;
    Ok(m.hosts
        .iter()
        .map(|h| (h.id.clone(), ix.host_plan(h)))
        .collect())
}

/// Compiles one host's plan.
pub fn compile_host(m: &NetworkModel, host: &str) -> Result<HostPlan, CompileError> {
    let ix = Index::new(m)?;
    let h = ix
        .hosts
        .get(host)
        .ok_or_else(|| CompileError::UnknownHost(host.into()))?;
    Ok(ix.host_plan(h))
}

/// Lookup tables over a validated model; build once, then ask for any host's plan.
pub struct Index<'a> {
    m: &'a NetworkModel,
    hosts: HashMap<&'a str, &'a Host>,
    vpcs: HashMap<&'a str, &'a Vpc>,
    subnets: HashMap<&'a str, &'a Subnet>,
    subnets_by_vpc: HashMap<&'a str, Vec<&'a Subnet>>,
    /// Bound ports (with a host) per VPC, by id.
    ports_by_vpc: HashMap<&'a str, Vec<&'a Port>>,
    ports_by_host: HashMap<&'a str, Vec<&'a Port>>,
    groups: HashMap<&'a str, &'a SecurityGroup>,
    members: HashMap<&'a str, Vec<Ipv4Addr>>,
    ports: HashMap<&'a str, &'a Port>,
    nat_by_vpc: HashMap<&'a str, &'a NatGateway>,
    vips_by_vpc: HashMap<&'a str, Vec<&'a Vip>>,
    /// Anycast addresses per VPC, by id.
    anycasts_by_vpc: HashMap<&'a str, Vec<&'a Anycast>>,
    anycasts: HashMap<&'a str, &'a Anycast>,
    /// The anycast addresses each port serves, sorted.
    serves: HashMap<&'a str, Vec<Ipv4Addr>>,
}

impl<'a> Index<'a> {
    /// Validates the model and indexes it.
    pub fn new(m: &'a NetworkModel) -> Result<Self, CompileError> {
        m.validate().map_err(CompileError::Invalid)?;
        let mut ix = Index {
            m,
            hosts: m.hosts.iter().map(|h| (h.id.as_str(), h)).collect(),
            vpcs: m.vpcs.iter().map(|v| (v.id.as_str(), v)).collect(),
            subnets: m.subnets.iter().map(|s| (s.id.as_str(), s)).collect(),
            subnets_by_vpc: HashMap::new(),
            ports_by_vpc: HashMap::new(),
            ports_by_host: HashMap::new(),
            groups: m
                .security_groups
                .iter()
                .map(|g| (g.id.as_str(), g))
                .collect(),
            members: HashMap::new(),
            ports: m.ports.iter().map(|p| (p.id.as_str(), p)).collect(),
            nat_by_vpc: m.nat_gateways.iter().map(|n| (n.vpc.as_str(), n)).collect(),
            vips_by_vpc: HashMap::new(),
            anycasts_by_vpc: HashMap::new(),
            anycasts: m.anycasts.iter().map(|a| (a.id.as_str(), a)).collect(),
            serves: HashMap::new(),
        };
        ix.index_anycasts();
        for v in &m.vips {
            ix.vips_by_vpc.entry(&v.vpc).or_default().push(v);
        }
        for v in ix.vips_by_vpc.values_mut() {
            v.sort_by(|a, b| a.id.cmp(&b.id));
        }
        for s in &m.subnets {
            ix.subnets_by_vpc.entry(&s.vpc).or_default().push(s);
        }
        for v in ix.subnets_by_vpc.values_mut() {
            v.sort_by(|a, b| a.id.cmp(&b.id));
        }
        for p in &m.ports {
            let Some(h) = &p.host else { continue };
            ix.ports_by_vpc.entry(&p.vpc).or_default().push(p);
            ix.ports_by_host.entry(h).or_default().push(p);
            for g in &p.security_groups {
                ix.members.entry(g).or_default().push(p.ip);
            }
        }
        for v in ix.ports_by_vpc.values_mut() {
            v.sort_by(|a, b| a.id.cmp(&b.id));
        }
        for v in ix.ports_by_host.values_mut() {
            v.sort_by(|a, b| a.id.cmp(&b.id));
        }
        for v in ix.members.values_mut() {
            v.sort();
            v.dedup();
        }
        Ok(ix)
    }

    /// The plan of one host.
    pub fn host_plan(&self, host: &Host) -> HostPlan {
        let local: &[&Port] = self
            .ports_by_host
            .get(host.id.as_str())
            .map(|v| v.as_slice())
            .unwrap_or(&[]);
        // VPCs of the local ports and of the NAT gateways realised here, by VNI.
        let mut vpcs: Vec<&Vpc> = local
            .iter()
            .map(|p| p.vpc.as_str())
            .chain(
                self.m
                    .nat_gateways
                    .iter()
                    .filter(|n| n.host == host.id)
                    .map(|n| n.vpc.as_str()),
            )
            .map(|id| {
                let v = self.vpcs[id];
                (v.vni, v)
            })
            .collect::<BTreeMap<u32, &Vpc>>()
            .into_values()
            .collect();
        vpcs.sort_by_key(|v| v.vni);
        let zones = zones(vpcs.iter().map(|v| v.vni));

        let elastic_ips = self.eip_plans(host, local);
        let eip_vnis: BTreeSet<u32> = elastic_ips.iter().map(|e| e.vni).collect();
        let mut vpc_plans = Vec::with_capacity(vpcs.len());
        for v in &vpcs {
            let peers = self
                .ports_by_vpc
                .get(v.id.as_str())
                .map(|x| x.as_slice())
                .unwrap_or(&[]);
            let mut fdb: Vec<FdbEntry> = peers
                .iter()
                .filter(|p| p.host.as_deref() != Some(host.id.as_str()))
                .map(|p| FdbEntry {
                    mac: p.mac,
                    vtep: self.hosts[p.host.as_deref().unwrap_or_default()].vtep,
                })
                .collect();
            let mut neighbours: Vec<Neighbour> = peers
                .iter()
                .map(|p| Neighbour {
                    ip: p.ip,
                    mac: p.mac,
                    subnet: p.subnet.clone(),
                })
                .collect();
            let interfaces = self
                .subnets_by_vpc
                .get(v.id.as_str())
                .map(|x| x.as_slice())
                .unwrap_or(&[])
                .iter()
                .map(|s| RouterInterface {
                    subnet: s.id.clone(),
                    cidr: s.cidr,
                    gateway_ip: s.gateway_ip,
                    gateway_mac: s.gateway_mac,
                    host_dev: names::router_host_dev(&s.id),
                    router_dev: names::router_dev(&s.id),
                })
                .collect::<Vec<_>>();
            let nat = self.nat_by_vpc.get(v.id.as_str()).copied();
            let transit = nat.and_then(|n| {
                let via = interfaces.first()?;
                let t = TransitPlan {
                    nat_gateway: n.id.clone(),
                    mac: MacAddr::from_key(&format!("transit/{}", v.id)),
                    local: n.host == host.id,
                    host_dev: names::transit_host_dev(&v.id),
                    router_dev: names::TRANSIT_ROUTER_DEV.into(),
                    via_dev: via.router_dev.clone(),
                };
                if !t.local {
                    fdb.push(FdbEntry {
                        mac: t.mac,
                        vtep: self.hosts[n.host.as_str()].vtep,
                    });
                }
                Some(t)
            });
            let vips = self.vip_plans(host, v, &mut fdb, &mut neighbours);
            let anycasts = self.anycast_plans(v);
            fdb.sort();
            neighbours.sort();
            // The router needs a way out here for a local port's elastic IP or the gateway.
            let nat_here = nat.is_some_and(|n| n.host == host.id);
            let uplink = (nat_here || eip_vnis.contains(&v.vni)).then(|| UplinkPlan {
                host_dev: names::uplink_host_dev(v.vni),
                router_dev: names::UPLINK_ROUTER_DEV.into(),
                host_mac: MacAddr::from_key(&format!("uplink-host/{}", v.vni)),
                router_mac: MacAddr::from_key(&format!("uplink-router/{}", v.vni)),
            });
            vpc_plans.push(VpcPlan {
                uplink,
                transit,
                vips,
                anycasts,
                vpc: v.id.clone(),
                vni: v.vni,
                zone: zones[&v.vni],
                bridge: names::bridge(v.vni),
                vxlan: names::vxlan(v.vni),
                router: RouterPlan {
                    netns: names::router_netns(v.vni),
                    tables: self.route_table_plans(v, &interfaces),
                    interfaces,
                },
                fdb,
                neighbours,
            });
        }

        let mut referenced: BTreeSet<&str> = BTreeSet::new();
        let ports: Vec<PortPlan> = local
            .iter()
            .map(|p| {
                let s = self.subnets[p.subnet.as_str()];
                let security = self.port_security(p, &mut referenced);
                PortPlan {
                    id: p.id.clone(),
                    vpc: p.vpc.clone(),
                    vni: self.vpcs[p.vpc.as_str()].vni,
                    subnet: p.subnet.clone(),
                    device: names::port_device(&p.id),
                    mac: p.mac,
                    ip: p.ip,
                    prefix_len: s.cidr.prefix_len(),
                    gateway: s.gateway_ip,
                    groups: security.groups,
                    ingress: security.ingress,
                    egress: security.egress,
                    forwarding: self.forwards(p),
                    serves: self.serves.get(p.id.as_str()).cloned().unwrap_or_default(),
                }
            })
            .collect();
        let groups = self.group_sets(referenced);
        let nat_gateways = self.nat_plans(host, &vpc_plans, local);
        let externals = self.external_plans(host, &elastic_ips, &nat_gateways);

        let mut plan = HostPlan {
            host: host.id.clone(),
            vtep: host.vtep,
            vxlan_port: VXLAN_PORT,
            mtu: self.m.underlay_mtu.saturating_sub(50),
            vpcs: vpc_plans,
            ports,
            groups,
            elastic_ips,
            externals,
            nat_gateways,
            hash: String::new(),
        };
        plan.hash = plan.compute_hash();
        plan
    }
}

impl Index<'_> {
    /// The elastic IPs realised here, by id: those of local ports (1:1 NAT) and those of
    /// anycasts with a local serving port (stateless NAT), where this host has a leg.
    fn eip_plans(&self, host: &Host, local: &[&Port]) -> Vec<EipPlan> {
        let local_ids: HashMap<&str, &Port> = local.iter().map(|p| (p.id.as_str(), *p)).collect();
        let mut out: Vec<EipPlan> = (self.m.elastic_ips.iter())
            .filter_map(|e| {
                let target = e.port.as_deref()?;
                let Some(p) = local_ids.get(target) else {
                    return self.anycast_eip(host, e);
                };
                let x = self.external_leg(host, e.address)?;
                Some(EipPlan {
                    external: x.0.id.clone(),
                    id: e.id.clone(),
                    address: e.address,
                    port: p.id.clone(),
                    private_ip: p.ip,
                    vni: self.vpcs[p.vpc.as_str()].vni,
                    bandwidth_mbit: e.bandwidth_mbit,
                    anycast: false,
                    inbound: true,
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The external network holding `addr` and this host's device on it.
    fn external_leg(
        &self,
        host: &Host,
        addr: Ipv4Addr,
    ) -> Option<(&crate::model::ExternalNetwork, &str)> {
        let x = self.m.external_of(addr)?;
        let leg = x.legs.iter().find(|l| l.host == host.id)?;
        Some((x, leg.device.as_str()))
    }

    /// The VPC's shared VIPs on this host; the holder's MAC location goes into the FDB
    /// (when remote) and its address into the neighbours (ARP answered from the plan).
    fn vip_plans(
        &self,
        host: &Host,
        v: &Vpc,
        fdb: &mut Vec<FdbEntry>,
        neighbours: &mut Vec<Neighbour>,
    ) -> Vec<VipPlan> {
        let vips = self
            .vips_by_vpc
            .get(v.id.as_str())
            .map(|x| x.as_slice())
            .unwrap_or(&[]);
        vips.iter()
            .map(|vip| {
                let mac = vip.effective_mac();
                let holder_host = vip
                    .holder
                    .as_deref()
                    .and_then(|h| self.ports.get(h))
                    .and_then(|p| p.host.as_deref());
                if let Some(hh) = holder_host {
                    neighbours.push(Neighbour {
                        ip: vip.ip,
                        mac,
                        subnet: vip.subnet.clone(),
                    });
                    if hh != host.id {
                        fdb.push(FdbEntry {
                            mac,
                            vtep: self.hosts[hh].vtep,
                        });
                    }
                }
                let mut local_members: Vec<(String, String)> = vip
                    .ports
                    .iter()
                    .filter(|p| {
                        self.ports
                            .get(p.as_str())
                            .is_some_and(|p| p.host.as_deref() == Some(&host.id))
                    })
                    .map(|p| (p.clone(), names::port_device(p)))
                    .collect();
                local_members.sort();
                local_members.dedup();
                VipPlan {
                    id: vip.id.clone(),
                    ip: vip.ip,
                    mac,
                    subnet: vip.subnet.clone(),
                    holder: vip.holder.clone(),
                    local_members,
                }
            })
            .collect()
    }

    /// NAT gateways of the planned VPCs: everything on the gateway host; elsewhere the
    /// covered sources and the port-forwards to local ports (their replies take the transit).
    fn nat_plans(&self, host: &Host, vpcs: &[VpcPlan], local: &[&Port]) -> Vec<NatGatewayPlan> {
        let mut out: Vec<NatGatewayPlan> = vpcs
            .iter()
            .filter(|v| v.transit.is_some())
            .filter_map(|v| {
                let n = self.nat_by_vpc.get(v.vpc.as_str())?;
                let here = n.host == host.id;
                if here && self.external_leg(host, n.external_ip).is_none() {
                    return None;
                }
                let subnets = self
                    .subnets_by_vpc
                    .get(v.vpc.as_str())
                    .map(|x| x.as_slice())
                    .unwrap_or(&[]);
                let mut sources: Vec<_> = subnets
                    .iter()
                    .filter(|s| {
                        n.subnets.is_empty()
                            || n.subnets.contains(&s.id)
                            || self.routes_to_nat(&v.vpc, &s.id)
                    })
                    .map(|s| s.cidr)
                    .collect();
                sources.sort();
                let mut dnat: Vec<_> = n
                    .dnat
                    .iter()
                    .filter(|d| {
                        here || local
                            .iter()
                            .any(|p| p.vpc == v.vpc && p.ip == d.internal_ip)
                    })
                    .cloned()
                    .collect();
                dnat.sort();
                Some(NatGatewayPlan {
                    id: n.id.clone(),
                    vni: v.vni,
                    address: n.external_ip,
                    local: here,
                    sources,
                    dnat,
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// External networks with addresses realised on this host. Routing tables are
    /// `0x10000 + 16 bits of SHA-256(id)`, probing upwards on a collision (in id order).
    fn external_plans(
        &self,
        host: &Host,
        eips: &[EipPlan],
        nats: &[NatGatewayPlan],
    ) -> Vec<ExternalPlan> {
        let plan = |x: &crate::model::ExternalNetwork, dev: &str| ExternalPlan {
            id: x.id.clone(),
            cidr: x.cidr,
            gateway_ip: x.gateway_ip,
            device: dev.into(),
            table: 0,
            addresses: vec![],
            host_gateway: x.host_gateway,
        };
        // A network on the host itself is there whether or not an address of it is
        // realised here: its addresses stay on the host's bridge, never on its default
        // route, and the host reaches whatever is realised elsewhere in it.
        let mut by_id: BTreeMap<&str, ExternalPlan> = self
            .m
            .external_networks
            .iter()
            .filter(|x| x.host_gateway)
            .filter_map(|x| {
                let leg = x.legs.iter().find(|l| l.host == host.id)?;
                Some((x.id.as_str(), plan(x, &leg.device)))
            })
            .collect();
        let addrs = eips
            .iter()
            .map(|e| (e.address, e.vni))
            .chain(nats.iter().filter(|n| n.local).map(|n| (n.address, n.vni)));
        for (addr, vni) in addrs {
            let Some((x, dev)) = self.external_leg(host, addr) else {
                continue;
            };
            by_id
                .entry(x.id.as_str())
                .or_insert_with(|| plan(x, dev))
                .addresses
                .push((addr, vni));
        }
        let mut taken = BTreeSet::new();
        by_id
            .into_values()
            .map(|mut x| {
                use sha2::{Digest, Sha256};
                let h = Sha256::digest(x.id.as_bytes());
                let mut t = 0x10000 + u32::from(u16::from_be_bytes([h[0], h[1]]));
                while !taken.insert(t) {
                    t += 1;
                }
                x.table = t;
                x.addresses.sort();
                x
            })
            .collect()
    }
}

/// Conntrack zones for a host's VNIs: preferably `1 + vni % 65535`, probing upwards on a
/// collision (in VNI order), so a VPC's zone only moves if a colliding VPC arrives first.
fn zones(vnis: impl Iterator<Item = u32>) -> HashMap<u32, u16> {
    let mut taken = BTreeSet::new();
    let mut out = HashMap::new();
    for vni in vnis {
        let mut z = (vni % 65535) as u16 + 1;
        while !taken.insert(z) {
            z = if z == u16::MAX { 1 } else { z + 1 };
        }
        out.insert(vni, z);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::addr::{Ipv4Cidr, MacAddr};
    use crate::lab::fixtures;
    use proptest::prelude::*;
    use std::collections::HashSet;

    pub(crate) fn small_model() -> NetworkModel {
        crate::lab::fixtures::two_host_model()
    }

    #[test]
    fn small_plan_snapshot() {
        let plans = compile_all(&small_model()).unwrap();
        insta::assert_json_snapshot!("plan_host_a", plans["host-a"]);
        insta::assert_snapshot!("nft_host_a", crate::nft::render(&plans["host-a"]));
        insta::assert_snapshot!("nft_host_b", crate::nft::render(&plans["host-b"]));
    }

    #[test]
    fn deterministic_and_hashed() {
        let m = small_model();
        let a = compile_all(&m).unwrap();
        let mut shuffled = m.clone();
        shuffled.ports.reverse();
        shuffled.subnets.reverse();
        shuffled.vpcs.reverse();
        let b = compile_all(&shuffled).unwrap();
        assert_eq!(a, b);
        for p in a.values() {
            assert_eq!(p.hash, p.compute_hash());
        }
    }

    #[test]
    fn invalid_models_are_refused() {
        let mut m = small_model();
        m.ports[0].ip = "10.0.1.1".parse().unwrap(); // the gateway
        assert!(matches!(compile_all(&m), Err(CompileError::Invalid(_))));
        assert!(matches!(
            compile_host(&small_model(), "nope"),
            Err(CompileError::UnknownHost(_))
        ));
    }

    // ---- property tests over random models ----

    /// A random valid model: `h` hosts, VPCs that all reuse 10.0.0.0/16 (two /24 subnets
    /// each), ports spread over hosts, one or two groups per VPC with random rules.
    pub(crate) fn arb_model() -> impl Strategy<Value = NetworkModel> {
        (
            2usize..5,
            1usize..5,
            proptest::collection::vec((0usize..8, 0usize..5, 0usize..2, 0u8..4), 0..40),
        )
            .prop_map(|(nh, nv, raw_ports)| build_model(nh, nv, &raw_ports))
    }

    pub(crate) fn build_model(
        nh: usize,
        nv: usize,
        raw: &[(usize, usize, usize, u8)],
    ) -> NetworkModel {
        let mut m = fixtures::hosts_model(nh);
        for v in 0..nv {
            let vpc = format!("vpc{v}");
            m.vpcs.push(fixtures::vpc(&vpc, 100 + v as u32));
            for s in 0..2u8 {
                let cidr = Ipv4Cidr::new(Ipv4Addr::new(10, 0, s, 0), 24).unwrap();
                let mac = MacAddr::local([0xfe, v as u8, s, 0, 1]);
                let id = format!("vpc{v}-sn{s}");
                m.subnets.push(fixtures::subnet_over(id, &vpc, cidr, mac));
            }
            m.security_groups
                .extend(fixtures::web_and_db(&vpc, (80, 80)));
        }
        let mut next = vec![[10u8; 2]; nv];
        for (i, &(h, v, s, g)) in raw.iter().enumerate() {
            let v = v % nv;
            let host = if h >= nh { None } else { Some(format!("h{h}")) };
            let o = next[v][s];
            next[v][s] += 1;
            let mut sgs = vec![];
            if g & 1 == 1 {
                sgs.push(format!("vpc{v}-web"));
            }
            if g & 2 == 2 {
                sgs.push(format!("vpc{v}-db"));
            }
            m.ports.push(Port {
                id: format!("p{i}"),
                vpc: format!("vpc{v}"),
                subnet: format!("vpc{v}-sn{s}"),
                host,
                // Same IPs and MACs reused across VPCs on purpose: isolation must hold anyway.
                mac: MacAddr::local([0x10, 0, s as u8, 0, o]),
                ip: Ipv4Addr::new(10, 0, s as u8, o),
                security_groups: sgs,
            });
        }
        m
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A host's plan mentions exactly the VPCs it has ports in; every port of those VPCs
        /// on another host has an FDB entry to that host's VTEP, every port has a neighbour
        /// entry; no entry ever crosses VPCs.
        #[test]
        fn plans_hold_exactly_the_reach_set(m in arb_model()) {
            let plans = compile_all(&m).unwrap();
            let vtep: HashMap<&str, Ipv4Addr> = m.hosts.iter().map(|h| (h.id.as_str(), h.vtep)).collect();
            for (host, plan) in &plans {
                let local_vpcs: BTreeSet<&str> = m.ports.iter()
                    .filter(|p| p.host.as_deref() == Some(host.as_str()))
                    .map(|p| p.vpc.as_str()).collect();
                let planned: BTreeSet<&str> = plan.vpcs.iter().map(|v| v.vpc.as_str()).collect();
                prop_assert_eq!(&local_vpcs, &planned);
                for vp in &plan.vpcs {
                    let in_vpc: Vec<&Port> = m.ports.iter()
                        .filter(|p| p.vpc == vp.vpc && p.host.is_some()).collect();
                    let want_fdb: BTreeSet<(MacAddr, Ipv4Addr)> = in_vpc.iter()
                        .filter(|p| p.host.as_deref() != Some(host.as_str()))
                        .map(|p| (p.mac, vtep[p.host.as_deref().unwrap()])).collect();
                    let got_fdb: BTreeSet<(MacAddr, Ipv4Addr)> = vp.fdb.iter().map(|f| (f.mac, f.vtep)).collect();
                    prop_assert_eq!(want_fdb, got_fdb, "fdb of {} on {}", vp.vpc, host);
                    let want_nb: BTreeSet<(Ipv4Addr, MacAddr)> = in_vpc.iter().map(|p| (p.ip, p.mac)).collect();
                    let got_nb: BTreeSet<(Ipv4Addr, MacAddr)> = vp.neighbours.iter().map(|n| (n.ip, n.mac)).collect();
                    prop_assert_eq!(want_nb, got_nb, "neighbours of {} on {}", vp.vpc, host);
                    // No entry from another VPC: every neighbour's subnet is in this VPC.
                    for n in &vp.neighbours {
                        let want = format!("{}-", vp.vpc);
                        prop_assert!(n.subnet.starts_with(&want), "{} not in {}", n.subnet, vp.vpc);
                    }
                }
                let zones: HashSet<u16> = plan.vpcs.iter().map(|v| v.zone).collect();
                prop_assert_eq!(zones.len(), plan.vpcs.len());
                for g in &plan.groups {
                    prop_assert!(planned.contains(g.vpc.as_str()));
                }
            }
        }

        /// Adding a port on another host in a VPC this host has no port in changes nothing here.
        #[test]
        fn unrelated_changes_leave_a_plan_alone(m in arb_model(), s in 0usize..2) {
            let before = compile_all(&m).unwrap();
            let mut m2 = m.clone();
            // A fresh VPC reusing the same CIDR, with one port on h1.
            let v = m2.vpcs.len();
            let extra = build_model(2, v + 1, &[(1, v, s, 3)]);
            m2.vpcs.push(extra.vpcs[v].clone());
            m2.subnets.extend(extra.subnets.iter().filter(|x| x.vpc == format!("vpc{v}")).cloned());
            m2.security_groups.extend(extra.security_groups.iter().filter(|x| x.vpc == format!("vpc{v}")).cloned());
            let mut p = extra.ports[0].clone();
            p.id = "extra".into();
            m2.ports.push(p);
            let after = compile_all(&m2).unwrap();
            prop_assert_eq!(&before["h0"], &after["h0"]);
        }
    }

    // ---- external networks, elastic IPs, NAT gateways, VIPs ----

    #[test]
    fn external_plan_snapshots() {
        let plans = compile_all(&crate::lab::fixtures::external_model()).unwrap();
        for h in ["host-a", "host-b"] {
            insta::assert_json_snapshot!(format!("external_plan_{h}"), plans[h]);
            insta::assert_snapshot!(format!("external_nft_{h}"), crate::nft::render(&plans[h]));
            for v in &plans[h].vpcs {
                if let Some(r) = crate::nft::render_router(&plans[h], v.vni) {
                    insta::assert_snapshot!(format!("router_nft_{h}_{}", v.vni), r);
                }
            }
        }
    }

    fn errors_of(m: &NetworkModel) -> String {
        match m.validate() {
            Ok(()) => String::new(),
            Err(e) => e
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn bad_external_input_is_refused_with_reasons() {
        use crate::model::{Anycast, DnatRule, Protocol};
        let mut base = crate::lab::fixtures::external_model();
        base.anycasts.push(Anycast {
            id: "ac-1".into(),
            vpc: "vpc-a".into(),
            subnet: "sn-a1".into(),
            ip: "10.0.1.200".parse().unwrap(),
            ports: vec!["pa1".into(), "pa2".into()],
        });
        assert_eq!(errors_of(&base), "");
        type Edit = fn(&mut NetworkModel);
        let cases: Vec<(Edit, &str)> = vec![
            (
                |m| m.elastic_ips[0].address = "198.51.100.7".parse().unwrap(),
                "in no external network",
            ),
            (
                |m| m.elastic_ips[0].address = "203.0.113.1".parse().unwrap(),
                "not a usable address",
            ),
            (
                |m| m.elastic_ips[1].address = "203.0.113.50".parse().unwrap(),
                "also used by",
            ),
            (
                |m| m.nat_gateways[0].external_ip = "203.0.113.50".parse().unwrap(),
                "also used by",
            ),
            (
                |m| m.elastic_ips[1].port = Some("pa1".into()),
                "already has an elastic IP",
            ),
            (
                |m| m.elastic_ips[0].bandwidth_mbit = Some(0),
                "bandwidth must be > 0",
            ),
            (
                |m| m.external_networks[0].gateway_ip = "10.1.1.1".parse().unwrap(),
                "outside",
            ),
            (
                |m| m.external_networks[0].legs[0].device = "a/b".into(),
                "bad device name",
            ),
            (
                |m| m.external_networks[0].legs.retain(|l| l.host != "host-b"),
                "has no leg",
            ),
            (
                |m| m.nat_gateways[0].subnets = vec!["sn-b1".into()],
                "is not in VPC",
            ),
            (|m| m.nat_gateways[0].host = "nope".into(), "unknown host"),
            (
                |m| m.nat_gateways[0].dnat[0].protocol = Protocol::Icmp,
                "tcp or udp",
            ),
            (|m| m.nat_gateways[0].dnat[0].external_port = 0, "port 0"),
            (
                |m| m.nat_gateways[0].dnat[0].internal_ip = "10.0.1.99".parse().unwrap(),
                "is no port",
            ),
            (
                |m| {
                    let d = m.nat_gateways[0].dnat[0].clone();
                    m.nat_gateways[0].dnat.push(DnatRule {
                        internal_port: 81,
                        ..d
                    });
                },
                "forwarded twice",
            ),
            (
                |m| {
                    let mut n = m.nat_gateways[0].clone();
                    n.id = "nat-2".into();
                    n.external_ip = "203.0.113.61".parse().unwrap();
                    m.nat_gateways.push(n);
                },
                "already has a NAT gateway",
            ),
            (
                |m| m.vips[0].ip = "10.0.2.100".parse().unwrap(),
                "not a usable address",
            ),
            (
                |m| m.vips[0].ip = "10.0.1.11".parse().unwrap(),
                "already used",
            ),
            (|m| m.vips[0].ports.push("pb1".into()), "is no port of VPC"),
            (|m| m.vips[0].holder = Some("pa3".into()), "not a member"),
            (
                |m| m.vips[0].mac = Some("02:00:00:0a:01:0b".parse().unwrap()),
                "is a port's MAC",
            ),
            (|m| m.anycasts[0].id = "ac 1".into(), "invalid anycast id"),
            (
                |m| m.anycasts[0].vpc = "nope".into(),
                "anycast \"ac-1\" refers to unknown vpc \"nope\"",
            ),
            (
                |m| m.anycasts[0].subnet = "nope".into(),
                "anycast \"ac-1\" refers to unknown subnet \"nope\"",
            ),
            (
                |m| m.anycasts[0].subnet = "sn-b1".into(),
                "subnet \"sn-b1\" is not in VPC \"vpc-a\"",
            ),
            (
                |m| m.anycasts[0].ip = "10.0.2.200".parse().unwrap(),
                "10.0.2.200 is not a usable address of 10.0.1.0/24",
            ),
            (
                |m| m.anycasts[0].ip = "10.0.1.1".parse().unwrap(),
                "10.0.1.1 is not a usable address of 10.0.1.0/24",
            ),
            (
                |m| m.anycasts[0].ip = "10.0.1.11".parse().unwrap(),
                "anycast \"ac-1\": address 10.0.1.11 is already used",
            ),
            (
                |m| m.anycasts[0].ip = "10.0.1.100".parse().unwrap(),
                "anycast \"ac-1\": address 10.0.1.100 is already used",
            ),
            (
                |m| {
                    let mut b = m.anycasts[0].clone();
                    b.id = "ac-2".into();
                    m.anycasts.push(b);
                },
                "anycast \"ac-2\": address 10.0.1.200 is already used",
            ),
            (
                |m| m.anycasts[0].ports.push("gone".into()),
                "anycast \"ac-1\" refers to unknown port \"gone\"",
            ),
            (
                |m| m.anycasts[0].ports.push("pa3".into()),
                "port \"pa3\" is no port of subnet \"sn-a1\"",
            ),
            (
                |m| m.anycasts[0].ports.push("pb1".into()),
                "port \"pb1\" is no port of subnet \"sn-a1\"",
            ),
        ];
        for (i, (edit, want)) in cases.into_iter().enumerate() {
            let mut m = base.clone();
            edit(&mut m);
            let got = errors_of(&m);
            assert!(got.contains(want), "case {i}: want {want:?}, got {got:?}");
            assert!(matches!(compile_all(&m), Err(CompileError::Invalid(_))));
        }
    }

    /// Random external extras on a random model: an external network with a leg on every
    /// host but the last, elastic IPs on random ports, a NAT gateway for vpc0 on a random
    /// host, a VIP in vpc0 with random members and holder, an anycast in vpc0's first
    /// subnet served by random ports of it (in random order, repeats included), maybe with
    /// an elastic IP.
    fn arb_external_model() -> impl Strategy<Value = NetworkModel> {
        (
            arb_model(),
            proptest::collection::vec((0usize..40, proptest::option::of(1u32..1000)), 0..6),
            0usize..5,
            proptest::collection::vec(0usize..40, 0..4),
            0usize..4,
            (
                proptest::collection::vec(0usize..40, 0..4),
                proptest::option::of(proptest::option::of(1u32..1000)),
            ),
        )
            .prop_map(|(mut m, eips, nat_host, members, holder, serving)| {
                let (serving, ac_eip) = serving;
                let legs = m.hosts.len() - 1;
                m.external_networks.push(crate::model::ExternalNetwork {
                    id: "ext".into(),
                    cidr: "203.0.113.0/24".parse().unwrap(),
                    gateway_ip: "203.0.113.1".parse().unwrap(),
                    legs: m.hosts[..legs]
                        .iter()
                        .map(|h| crate::model::ExternalLeg {
                            host: h.id.clone(),
                            device: "ext0".into(),
                        })
                        .collect(),
                    host_gateway: false,
                });
                let n = m.ports.len();
                let mut bound = HashSet::new();
                for (i, (p, bw)) in eips.into_iter().enumerate() {
                    let port = (n > 0 && bound.insert(p % n)).then(|| m.ports[p % n].id.clone());
                    m.elastic_ips.push(crate::model::ElasticIp {
                        id: format!("eip{i}"),
                        address: Ipv4Addr::new(203, 0, 113, 50 + i as u8),
                        port,
                        bandwidth_mbit: bw,
                    });
                }
                m.nat_gateways.push(crate::model::NatGateway {
                    id: "nat0".into(),
                    vpc: "vpc0".into(),
                    external_ip: "203.0.113.200".parse().unwrap(),
                    subnets: vec![],
                    dnat: vec![],
                    host: m.hosts[nat_host % legs].id.clone(),
                });
                let vpc0: Vec<String> = m
                    .ports
                    .iter()
                    .filter(|p| p.vpc == "vpc0")
                    .map(|p| p.id.clone())
                    .collect();
                if !vpc0.is_empty() {
                    let mut ports: Vec<String> = members
                        .iter()
                        .map(|i| vpc0[i % vpc0.len()].clone())
                        .collect();
                    ports.sort();
                    ports.dedup();
                    let holder = ports.get(holder).cloned();
                    m.vips.push(crate::model::Vip {
                        id: "vip0".into(),
                        vpc: "vpc0".into(),
                        subnet: "vpc0-sn0".into(),
                        ip: "10.0.0.250".parse().unwrap(),
                        mac: None,
                        ports,
                        holder,
                    });
                }
                // An anycast in vpc0-sn0 served by random ports of that subnet (maybe none).
                let sn0: Vec<String> = m
                    .ports
                    .iter()
                    .filter(|p| p.subnet == "vpc0-sn0")
                    .map(|p| p.id.clone())
                    .collect();
                if m.vpcs.iter().any(|v| v.id == "vpc0") {
                    m.anycasts.push(crate::model::Anycast {
                        id: "ac0".into(),
                        vpc: "vpc0".into(),
                        subnet: "vpc0-sn0".into(),
                        ip: "10.0.0.251".parse().unwrap(),
                        ports: serving
                            .iter()
                            .filter(|_| !sn0.is_empty())
                            .map(|i| sn0[i % sn0.len()].clone())
                            .collect(),
                    });
                    if let Some(bandwidth_mbit) = ac_eip {
                        m.elastic_ips.push(crate::model::ElasticIp {
                            id: "eip-ac0".into(),
                            address: "203.0.113.240".parse().unwrap(),
                            port: Some("ac0".into()),
                            bandwidth_mbit,
                        });
                    }
                }
                m
            })
    }

    /// Where an anycast's elastic IP goes: (hosts with a serving port and a leg, the
    /// anchor: the host of the first serving port in the anycast's order with a leg).
    fn anycast_eip_hosts<'m>(
        m: &'m NetworkModel,
        ac: &crate::model::Anycast,
        legs: &[&str],
    ) -> (BTreeSet<&'m str>, Option<&'m str>) {
        let hosts: Vec<&str> = (ac.ports.iter())
            .filter_map(|p| m.ports.iter().find(|x| x.id == *p)?.host.as_deref())
            .filter(|h| legs.contains(h))
            .collect();
        (hosts.iter().copied().collect(), hosts.first().copied())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Each host gets exactly the external pieces it realises: elastic IPs of its own
        /// ports (where it has a leg) and of anycasts it has a serving port of (answered
        /// for on the anchor only), an uplink only where one is needed, the NAT gateway's
        /// VPC (even without local ports) and transit on every host of that VPC, VIP
        /// entries pointing at the holder's host, anycasts on every host of their VPC with
        /// the realised serving ports as next hops; deterministic under reordering.
        #[test]
        fn external_pieces_go_exactly_where_needed(m in arb_external_model()) {
            prop_assert_eq!(m.validate(), Ok(()));
            let plans = compile_all(&m).unwrap();
            let host_of: HashMap<&str, Option<&str>> =
                m.ports.iter().map(|p| (p.id.as_str(), p.host.as_deref())).collect();
            let vtep: HashMap<&str, Ipv4Addr> =
                m.hosts.iter().map(|h| (h.id.as_str(), h.vtep)).collect();
            let last = m.hosts.last().unwrap().id.clone();
            let legs: Vec<&str> = m.external_networks[0].legs.iter().map(|l| l.host.as_str()).collect();
            let nat = &m.nat_gateways[0];
            let anycast_of = |e: &crate::model::ElasticIp| {
                m.anycasts.iter().find(|a| e.port.as_deref() == Some(a.id.as_str()))
            };
            for (host, plan) in &plans {
                let want: BTreeSet<&str> = m.elastic_ips.iter()
                    .filter(|e| match anycast_of(e) {
                        Some(ac) => anycast_eip_hosts(&m, ac, &legs).0.contains(host.as_str()),
                        None => e.port.as_deref().and_then(|p| host_of[p]) == Some(host.as_str()) && *host != last,
                    })
                    .map(|e| e.id.as_str()).collect();
                let got: BTreeSet<&str> = plan.elastic_ips.iter().map(|e| e.id.as_str()).collect();
                prop_assert_eq!(&want, &got);
                for e in &plan.elastic_ips {
                    let me = m.elastic_ips.iter().find(|x| x.id == e.id).unwrap();
                    match anycast_of(me) {
                        Some(ac) => {
                            let anchor = anycast_eip_hosts(&m, ac, &legs).1;
                            prop_assert!(e.anycast && e.port == ac.id && e.private_ip == ac.ip);
                            prop_assert_eq!(e.inbound, anchor == Some(host.as_str()), "anchor {:?}", anchor);
                        }
                        None => prop_assert!(!e.anycast && e.inbound),
                    }
                }
                for v in &plan.vpcs {
                    let needs = plan.elastic_ips.iter().any(|e| e.vni == v.vni)
                        || (v.vpc == nat.vpc && nat.host == *host);
                    prop_assert_eq!(v.uplink.is_some(), needs, "uplink of {} on {}", v.vpc, host);
                    match &v.transit {
                        Some(t) => {
                            prop_assert_eq!(&v.vpc, &nat.vpc);
                            prop_assert_eq!(t.local, nat.host == *host);
                            let to_gw = v.fdb.iter().any(|f| f.mac == t.mac && f.vtep == vtep[nat.host.as_str()]);
                            prop_assert_eq!(to_gw, !t.local);
                        }
                        None => prop_assert!(v.vpc != nat.vpc),
                    }
                    for vip in m.vips.iter().filter(|x| x.vpc == v.vpc) {
                        let hh = vip.holder.as_deref().and_then(|h| host_of[h]);
                        let mac = vip.effective_mac();
                        prop_assert_eq!(v.neighbours.iter().any(|n| n.ip == vip.ip && n.mac == mac), hh.is_some());
                        let fdb: Vec<_> = v.fdb.iter().filter(|f| f.mac == mac).collect();
                        match hh {
                            Some(hh) if hh != host => prop_assert!(fdb.len() == 1 && fdb[0].vtep == vtep[hh]),
                            _ => prop_assert!(fdb.is_empty()),
                        }
                    }
                }
                // Anycasts: on every host of their VPC, next hops = the serving ports that
                // are on a host; `serves` exactly on the serving ports.
                for v in &plan.vpcs {
                    let want: Vec<&str> = m.anycasts.iter()
                        .filter(|a| a.vpc == v.vpc).map(|a| a.id.as_str()).collect();
                    let got: Vec<&str> = v.anycasts.iter().map(|a| a.id.as_str()).collect();
                    prop_assert_eq!(want, got);
                    for a in &v.anycasts {
                        let ac = m.anycasts.iter().find(|x| x.id == a.id).unwrap();
                        let hops: BTreeSet<Ipv4Addr> = m.ports.iter()
                            .filter(|p| ac.ports.contains(&p.id) && p.host.is_some())
                            .map(|p| p.ip).collect();
                        prop_assert_eq!(a.next_hops.iter().copied().collect::<BTreeSet<_>>(), hops);
                        prop_assert!(a.next_hops.windows(2).all(|w| w[0] < w[1]));
                    }
                }
                for p in &plan.ports {
                    let want: Vec<Ipv4Addr> = m.anycasts.iter()
                        .filter(|a| a.ports.contains(&p.id)).map(|a| a.ip).collect();
                    prop_assert_eq!(&p.serves, &want, "serves of {}", p.id);
                }
                if nat.host == *host {
                    prop_assert!(plan.vpcs.iter().any(|v| v.vpc == nat.vpc));
                    prop_assert!(plan.nat_gateways.iter().any(|n| n.local));
                }
                let addrs: BTreeSet<Ipv4Addr> = plan.externals.iter()
                    .flat_map(|x| x.addresses.iter().map(|(a, _)| *a)).collect();
                let mut want: BTreeSet<Ipv4Addr> = plan.elastic_ips.iter().map(|e| e.address).collect();
                if plan.nat_gateways.iter().any(|n| n.local) {
                    want.insert(nat.external_ip);
                }
                prop_assert_eq!(addrs, want);
            }
            // Each anycast elastic IP has exactly one anchor, if realised anywhere.
            for e in m.elastic_ips.iter().filter(|e| anycast_of(e).is_some()) {
                let here = plans.values().flat_map(|p| &p.elastic_ips).filter(|x| x.id == e.id);
                let (n, inbound) = here.fold((0, 0), |(n, i), x| (n + 1, i + usize::from(x.inbound)));
                prop_assert_eq!(inbound, usize::from(n > 0));
            }
            let mut shuffled = m.clone();
            shuffled.elastic_ips.reverse();
            shuffled.ports.reverse();
            // The anchor follows the order of the serving ports: reversed only without one.
            if let Some(a) = shuffled.anycasts.first_mut().filter(|_| !m.elastic_ips.iter().any(|e| anycast_of(e).is_some())) {
                a.ports.reverse();
            }
            prop_assert_eq!(compile_all(&shuffled).unwrap(), plans);
        }
    }
}
