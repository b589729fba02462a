//! The network compiler: [`NetworkModel`] → one [`HostPlan`] per host. Pure and deterministic.
//!
//! A host's plan holds only what that host needs: the VPCs of its own ports; for each, the
//! exact FDB entries (remote MAC → remote VTEP) and neighbour entries (IP → MAC) of every
//! other port of the VPC (any port of a VPC can reach any other through the distributed
//! router, so the VPC is the reach set), a router namespace with every subnet's gateway,
//! and the security-group rules of its local ports with the address sets they refer to.
//! Its size grows with its own ports and their VPC peers, never with unrelated VPCs.
use crate::model::{
    Direction, Host, ModelError, NetworkModel, Peer, Port, SecurityGroup, Subnet, Vpc,
};
use crate::names;
use crate::plan::{
    EipPlan, FdbEntry, GroupSet, HostPlan, Neighbour, PeerPlan, PortPlan, RouterInterface,
    RouterPlan, RulePlan, VpcPlan, VXLAN_PORT,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

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
        };
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
        // VPCs of the local ports, by VNI.
        let mut vpcs: Vec<&Vpc> = local
            .iter()
            .map(|p| {
                let v = self.vpcs[p.vpc.as_str()];
                (v.vni, v)
            })
            .collect::<BTreeMap<u32, &Vpc>>()
            .into_values()
            .collect();
        vpcs.sort_by_key(|v| v.vni);
        let zones = zones(vpcs.iter().map(|v| v.vni));

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
            fdb.sort();
            let mut neighbours: Vec<Neighbour> = peers
                .iter()
                .map(|p| Neighbour {
                    ip: p.ip,
                    mac: p.mac,
                    subnet: p.subnet.clone(),
                })
                .collect();
            neighbours.sort();
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
                .collect();
            vpc_plans.push(VpcPlan {
                vpc: v.id.clone(),
                vni: v.vni,
                zone: zones[&v.vni],
                bridge: names::bridge(v.vni),
                vxlan: names::vxlan(v.vni),
                router: RouterPlan {
                    netns: names::router_netns(v.vni),
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
                let mut groups = p.security_groups.clone();
                groups.sort();
                groups.dedup();
                let mut ingress = BTreeSet::new();
                let mut egress = BTreeSet::new();
                for g in &groups {
                    referenced.insert(self.groups[g.as_str()].id.as_str());
                    for r in &self.groups[g.as_str()].rules {
                        let peer = match &r.peer {
                            Peer::Cidr(c) => PeerPlan::Cidr(*c),
                            Peer::Group(o) => {
                                referenced.insert(self.groups[o.as_str()].id.as_str());
                                PeerPlan::Group(o.clone())
                            }
                        };
                        let rp = RulePlan {
                            protocol: r.protocol,
                            ports: r.ports,
                            peer,
                        };
                        match r.direction {
                            Direction::Ingress => ingress.insert(rp),
                            Direction::Egress => egress.insert(rp),
                        };
                    }
                }
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
                    groups,
                    ingress: ingress.into_iter().collect(),
                    egress: (!egress.is_empty()).then(|| egress.into_iter().collect()),
                }
            })
            .collect();
        let groups = referenced
            .into_iter()
            .map(|g| GroupSet {
                id: g.to_string(),
                vpc: self.groups[g].vpc.clone(),
                members: self.members.get(g).cloned().unwrap_or_default(),
            })
            .collect();
        let local_ids: HashMap<&str, &Port> = local.iter().map(|p| (p.id.as_str(), *p)).collect();
        let mut elastic_ips: Vec<EipPlan> = self
            .m
            .elastic_ips
            .iter()
            .filter_map(|e| {
                let p = local_ids.get(e.port.as_deref()?)?;
                Some(EipPlan {
                    id: e.id.clone(),
                    address: e.address,
                    port: p.id.clone(),
                    private_ip: p.ip,
                    vni: self.vpcs[p.vpc.as_str()].vni,
                    bandwidth_mbit: e.bandwidth_mbit,
                })
            })
            .collect();
        elastic_ips.sort_by(|a, b| a.id.cmp(&b.id));

        let mut plan = HostPlan {
            host: host.id.clone(),
            vtep: host.vtep,
            vxlan_port: VXLAN_PORT,
            mtu: self.m.underlay_mtu.saturating_sub(50),
            vpcs: vpc_plans,
            ports,
            groups,
            elastic_ips,
            hash: String::new(),
        };
        plan.hash = plan.compute_hash();
        plan
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
    use crate::model::{PortRange, Protocol, Rule};
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
        let mut m = NetworkModel {
            underlay_mtu: 1500,
            ..Default::default()
        };
        for h in 0..nh {
            m.hosts.push(Host {
                id: format!("h{h}"),
                vtep: Ipv4Addr::new(192, 0, 2, 10 + h as u8),
            });
        }
        for v in 0..nv {
            let vpc = format!("vpc{v}");
            m.vpcs.push(Vpc {
                id: vpc.clone(),
                vni: 100 + v as u32,
                cidr: "10.0.0.0/16".parse().unwrap(),
            });
            for s in 0..2u8 {
                m.subnets.push(Subnet {
                    id: format!("vpc{v}-sn{s}"),
                    vpc: vpc.clone(),
                    cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 0, s, 0), 24).unwrap(),
                    gateway_ip: Ipv4Addr::new(10, 0, s, 1),
                    gateway_mac: MacAddr::local([0xfe, v as u8, s, 0, 1]),
                });
            }
            m.security_groups.push(SecurityGroup {
                id: format!("vpc{v}-web"),
                vpc: vpc.clone(),
                rules: vec![Rule {
                    direction: Direction::Ingress,
                    protocol: Protocol::Tcp,
                    ports: Some(PortRange { from: 80, to: 80 }),
                    peer: Peer::Cidr("0.0.0.0/0".parse().unwrap()),
                }],
            });
            m.security_groups.push(SecurityGroup {
                id: format!("vpc{v}-db"),
                vpc: vpc.clone(),
                rules: vec![Rule {
                    direction: Direction::Ingress,
                    protocol: Protocol::Tcp,
                    ports: Some(PortRange {
                        from: 5432,
                        to: 5432,
                    }),
                    peer: Peer::Group(format!("vpc{v}-web")),
                }],
            });
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
}
