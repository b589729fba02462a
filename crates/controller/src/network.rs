//! The SDN controller: maps the networking objects in the store to a
//! [`yunhan_net::NetworkModel`], compiles one plan per host and writes it to
//! `/yunhan/plans/net/<host>` only when its hash changed. Level-triggered: a pass
//! recomputes everything from the store, so a restarted controller converges.
//!
//! It also collects garbage the API cannot: primary NICs of deleted instances (the
//! agent removes the instance object), NICs attached to instances that are gone, and
//! address claims whose owner never got written (a create that failed half-way). An
//! orphan is only removed when a later pass, at least [`ORPHAN_GRACE`] on, still sees it,
//! so a create in flight is never mistaken for one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use yunhan_model::network::{ip_claim_key, IP_CLAIM_PREFIX, PLAN_PREFIX, VTEP_PREFIX};
use yunhan_model::{
    ElasticIp, Host, Instance, Kind, NetworkInterface, SecurityGroup, Subnet, Vip, Vpc,
};
use yunhan_net::model as net;
use yunhan_net::{Ipv4Cidr, MacAddr, NetworkModel};
use yunhan_store::objects::{Doc, ObjectError, Objects, GLOBAL_SCOPE};
use yunhan_store::StoreExt;

use crate::Reconciler;

/// How long an orphan must stay one before it is removed.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// MTU of the underlay network every host's VTEP sits on.
pub const UNDERLAY_MTU: u16 = 1500;

pub struct NetworkController {
    pub underlay_mtu: u16,
    /// Orphans seen by earlier passes, when first seen.
    orphans: Mutex<HashMap<String, Instant>>,
}

impl Default for NetworkController {
    fn default() -> Self {
        NetworkController {
            underlay_mtu: UNDERLAY_MTU,
            orphans: Mutex::new(HashMap::new()),
        }
    }
}

/// Everything the model is built from (one consistent-enough read of the store).
#[derive(Default)]
pub struct Inputs {
    pub hosts: Vec<Doc<Host>>,
    /// Host id → VTEP the agent published (`--vtep`).
    pub vteps: HashMap<String, Ipv4Addr>,
    pub instances: Vec<Doc<Instance>>,
    pub vpcs: Vec<Doc<Vpc>>,
    pub subnets: Vec<Doc<Subnet>>,
    pub nics: Vec<Doc<NetworkInterface>>,
    pub groups: Vec<Doc<SecurityGroup>>,
    pub eips: Vec<Doc<ElasticIp>>,
}

/// The id of the implicit group of NICs without security groups (members reach each other).
pub fn default_group(vpc: &str) -> String {
    format!("{vpc}-default")
}

fn by_age<S, T>(v: &mut [yunhan_model::Resource<S, T>]) {
    v.sort_by(|a, b| {
        (&a.metadata.created, &a.metadata.id).cmp(&(&b.metadata.created, &b.metadata.id))
    });
}

/// Maps store objects to the compiler's input. Pure. Whatever would make the model invalid
/// (a subnet that races past the API's overlap check, a duplicate VTEP, a rule whose peer
/// group is gone) is left out — older objects win — so one bad object never stops the
/// whole cloud's plans.
pub fn build_model(mut inp: Inputs, underlay_mtu: u16) -> NetworkModel {
    by_age(&mut inp.vpcs);
    by_age(&mut inp.subnets);
    by_age(&mut inp.nics);
    let mut m = NetworkModel {
        underlay_mtu,
        ..Default::default()
    };
    let mut vteps = HashSet::new();
    for h in &inp.hosts {
        let vtep = inp
            .vteps
            .get(&h.metadata.id)
            .copied()
            .or_else(|| h.spec.address.parse().ok());
        if let Some(v) = vtep.filter(|v: &Ipv4Addr| !v.is_unspecified() && vteps.insert(*v)) {
            m.hosts.push(net::Host {
                id: h.metadata.id.clone(),
                vtep: v,
            });
        }
    }
    let hosts: HashSet<&str> = m.hosts.iter().map(|h| h.id.as_str()).collect();
    let mut vnis = HashSet::new();
    for v in &inp.vpcs {
        let Ok(cidr) = v.spec.cidr.parse::<Ipv4Cidr>() else {
            continue;
        };
        if v.status.vni == 0 || v.status.vni > net::MAX_VNI || !vnis.insert(v.status.vni) {
            continue;
        }
        m.vpcs.push(net::Vpc {
            id: v.metadata.id.clone(),
            vni: v.status.vni,
            cidr,
        });
    }
    let vpcs: HashMap<&str, Ipv4Cidr> = m.vpcs.iter().map(|v| (v.id.as_str(), v.cidr)).collect();
    for s in &inp.subnets {
        let (Ok(cidr), Ok(gw), Ok(mac)) = (
            s.spec.cidr.parse::<Ipv4Cidr>(),
            s.status.gateway_ip.parse::<Ipv4Addr>(),
            s.status.gateway_mac.parse::<MacAddr>(),
        ) else {
            continue;
        };
        let Some(vc) = vpcs.get(s.spec.vpc.as_str()) else {
            continue;
        };
        let overlaps = m
            .subnets
            .iter()
            .any(|o| o.vpc == s.spec.vpc && o.cidr.overlaps(&cidr));
        if !vc.contains_cidr(&cidr) || overlaps {
            continue;
        }
        m.subnets.push(net::Subnet {
            id: s.metadata.id.clone(),
            vpc: s.spec.vpc.clone(),
            cidr,
            gateway_ip: gw,
            gateway_mac: mac,
        });
    }
    let subnets: HashMap<&str, &net::Subnet> =
        m.subnets.iter().map(|s| (s.id.as_str(), s)).collect();
    // Groups: the real ones, then rules whose peer is missing or in another VPC dropped.
    let group_vpc: HashMap<&str, &str> = inp
        .groups
        .iter()
        .filter(|g| vpcs.contains_key(g.spec.vpc.as_str()))
        .map(|g| (g.metadata.id.as_str(), g.spec.vpc.as_str()))
        .collect();
    for g in &inp.groups {
        if !vpcs.contains_key(g.spec.vpc.as_str()) {
            continue;
        }
        let rules = g
            .spec
            .rules
            .iter()
            .filter_map(|r| {
                let peer = match (&r.cidr, &r.group) {
                    (_, Some(pg)) if group_vpc.get(pg.as_str()) == Some(&g.spec.vpc.as_str()) => {
                        net::Peer::Group(pg.clone())
                    }
                    (_, Some(_)) => return None,
                    (Some(c), None) => net::Peer::Cidr(c.parse().ok()?),
                    (None, None) => net::Peer::Cidr("0.0.0.0/0".parse().ok()?),
                };
                use yunhan_model::network::{RuleDirection as D, RuleProtocol as P};
                Some(net::Rule {
                    direction: match r.direction {
                        D::Ingress => net::Direction::Ingress,
                        D::Egress => net::Direction::Egress,
                    },
                    protocol: match r.protocol {
                        P::Any => net::Protocol::Any,
                        P::Tcp => net::Protocol::Tcp,
                        P::Udp => net::Protocol::Udp,
                        P::Icmp => net::Protocol::Icmp,
                    },
                    ports: r.ports().map(|(from, to)| net::PortRange { from, to }),
                    peer,
                })
            })
            .collect();
        m.security_groups.push(net::SecurityGroup {
            id: g.metadata.id.clone(),
            vpc: g.spec.vpc.clone(),
            rules,
        });
    }
    let bound: HashMap<&str, &str> = inp
        .instances
        .iter()
        .filter_map(|i| Some((i.metadata.id.as_str(), i.status.host.as_deref()?)))
        .filter(|(_, h)| hosts.contains(h))
        .collect();
    let mut used: HashSet<(String, Ipv4Addr)> = HashSet::new();
    let mut defaults: BTreeSet<String> = BTreeSet::new();
    for n in &inp.nics {
        let Ok(ip) = n.status.ip.parse::<Ipv4Addr>() else {
            continue;
        };
        let (Ok(mac), Some(s)) = (
            n.status.mac.parse::<MacAddr>(),
            subnets.get(n.spec.subnet.as_str()),
        ) else {
            continue;
        };
        let usable = s.cidr.contains(ip)
            && ip != s.gateway_ip
            && ip != s.cidr.network()
            && ip != s.cidr.broadcast();
        if !usable || !used.insert((s.vpc.clone(), ip)) {
            continue;
        }
        let mut groups: Vec<String> = n
            .spec
            .security_groups
            .iter()
            .filter(|g| group_vpc.get(g.as_str()) == Some(&s.vpc.as_str()))
            .cloned()
            .collect();
        if groups.is_empty() {
            groups.push(default_group(&s.vpc));
            defaults.insert(s.vpc.clone());
        }
        m.ports.push(net::Port {
            id: n.metadata.id.clone(),
            vpc: s.vpc.clone(),
            subnet: s.id.clone(),
            host: n
                .spec
                .instance
                .as_deref()
                .and_then(|i| bound.get(i))
                .map(|h| h.to_string()),
            mac,
            ip,
            security_groups: groups,
        });
    }
    for vpc in defaults {
        m.security_groups.push(net::SecurityGroup {
            id: default_group(&vpc),
            vpc,
            rules: vec![],
        });
    }
    let ports: HashSet<&str> = m.ports.iter().map(|p| p.id.as_str()).collect();
    let mut eip_addrs = HashSet::new();
    let mut eip_ports = HashSet::new();
    for e in &inp.eips {
        let Ok(address) = e.status.address.parse::<Ipv4Addr>() else {
            continue;
        };
        let port = e.spec.nic.clone().filter(|n| ports.contains(n.as_str()));
        if !eip_addrs.insert(address) || port.as_ref().is_some_and(|p| !eip_ports.insert(p.clone()))
        {
            continue;
        }
        m.elastic_ips.push(net::ElasticIp {
            id: e.metadata.id.clone(),
            address,
            port,
            bandwidth_mbit: e.spec.bandwidth_mbit,
        });
    }
    m
}

impl NetworkController {
    /// An orphan seen now: true once it has been one for [`ORPHAN_GRACE`].
    fn ripe(&self, key: &str, now: Instant, seen: &mut HashSet<String>) -> bool {
        seen.insert(key.to_string());
        let mut o = self.orphans.lock().unwrap_or_else(|e| e.into_inner());
        let first = *o.entry(key.to_string()).or_insert(now);
        now.duration_since(first) >= ORPHAN_GRACE
    }

    /// Removes NICs of deleted instances and address claims nobody owns.
    async fn collect_garbage(&self, objects: &Objects, inp: &Inputs) -> Result<(), ObjectError> {
        let now = Instant::now();
        let mut seen = HashSet::new();
        let instances: HashSet<&str> = inp
            .instances
            .iter()
            .map(|i| i.metadata.id.as_str())
            .collect();
        for n in &inp.nics {
            let Some(i) = n.spec.instance.as_deref() else {
                continue;
            };
            if instances.contains(i) || !self.ripe(&n.metadata.id, now, &mut seen) {
                continue;
            }
            if n.status.primary {
                tracing::info!(nic = %n.metadata.id, instance = i, "deleting the primary NIC of a deleted instance");
                match objects.delete::<NetworkInterface>(n).await {
                    Ok(()) | Err(ObjectError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
                if let Ok(ip) = n.status.ip.parse() {
                    objects
                        .store()
                        .delete(&ip_claim_key(&n.spec.subnet, ip))
                        .await?;
                }
            } else {
                tracing::info!(nic = %n.metadata.id, instance = i, "detaching a NIC from a deleted instance");
                objects
                    .modify::<NetworkInterface>(&n.metadata.id, |d| {
                        d.spec.instance.as_deref() == Some(i) && {
                            d.spec.instance = None;
                            true
                        }
                    })
                    .await?;
            }
        }
        let mut owners: HashSet<String> = inp.nics.iter().map(|n| n.metadata.id.clone()).collect();
        owners.extend(
            objects
                .list_all::<Vip>(None)
                .await?
                .into_iter()
                .map(|v| v.metadata.id),
        );
        for kv in objects.store().range_all(IP_CLAIM_PREFIX).await? {
            let owner = String::from_utf8_lossy(&kv.value).into_owned();
            if owners.contains(&owner) || !self.ripe(&kv.key, now, &mut seen) {
                continue;
            }
            // Still unowned (the owner may have been created meanwhile: check again).
            if objects.get::<NetworkInterface>(&owner).await?.is_none()
                && objects.get::<Vip>(&owner).await?.is_none()
            {
                tracing::info!(claim = %kv.key, %owner, "releasing an address claim without owner");
                objects.store().delete(&kv.key).await?;
            }
        }
        self.orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| seen.contains(k));
        Ok(())
    }
}

async fn read_inputs(objects: &Objects) -> Result<Inputs, ObjectError> {
    let vteps = objects
        .store()
        .range_all(VTEP_PREFIX)
        .await?
        .into_iter()
        .filter_map(|kv| {
            let id = kv.key.strip_prefix(VTEP_PREFIX)?.to_string();
            let ip = std::str::from_utf8(&kv.value).ok()?.trim().parse().ok()?;
            Some((id, ip))
        })
        .collect();
    Ok(Inputs {
        hosts: objects.list_all::<Host>(Some(GLOBAL_SCOPE)).await?,
        vteps,
        instances: objects.list_all::<Instance>(None).await?,
        vpcs: objects.list_all::<Vpc>(None).await?,
        subnets: objects.list_all::<Subnet>(None).await?,
        nics: objects.list_all::<NetworkInterface>(None).await?,
        groups: objects.list_all::<SecurityGroup>(None).await?,
        eips: objects.list_all::<ElasticIp>(None).await?,
    })
}

#[async_trait]
impl Reconciler for NetworkController {
    fn name(&self) -> &'static str {
        "network"
    }
    fn watches(&self) -> Vec<String> {
        let mut w: Vec<String> = [
            Vpc::PLURAL,
            Subnet::PLURAL,
            NetworkInterface::PLURAL,
            SecurityGroup::PLURAL,
            ElasticIp::PLURAL,
            Instance::PLURAL,
            Host::PLURAL,
        ]
        .iter()
        .map(|p| format!("/yunhan/objects/{p}/"))
        .collect();
        w.push(VTEP_PREFIX.into());
        w
    }
    fn resync(&self) -> Duration {
        Duration::from_secs(5)
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let inp = read_inputs(objects).await?;
        self.collect_garbage(objects, &inp).await?;
        let host_ids: Vec<String> = inp.hosts.iter().map(|h| h.metadata.id.clone()).collect();
        let model = build_model(inp, self.underlay_mtu);
        let plans = match yunhan_net::compile_all(&model) {
            Ok(p) => p,
            Err(e) => {
                // build_model keeps the model valid; if not, keep the plans we have.
                tracing::error!(error = %e, "the network model does not compile; plans unchanged");
                return Ok(());
            }
        };
        let store = objects.store();
        for (host, plan) in &plans {
            let key = format!("{PLAN_PREFIX}{host}");
            let current = store.get(&key).await?;
            let same = current
                .as_ref()
                .and_then(|kv| serde_json::from_slice::<serde_json::Value>(&kv.value).ok())
                .is_some_and(|v| v["hash"] == plan.hash.as_str());
            if !same {
                let body = serde_json::to_vec(plan).expect("plans serialise");
                store.put(&key, body).await?;
                tracing::info!(%host, hash = %&plan.hash[..12], ports = plan.ports.len(), "network plan written");
            }
        }
        // Plans of hosts that are gone.
        let known: BTreeMap<&str, ()> = host_ids.iter().map(|h| (h.as_str(), ())).collect();
        for kv in store.range_all(PLAN_PREFIX).await? {
            let host = kv.key.strip_prefix(PLAN_PREFIX).unwrap_or_default();
            if !known.contains_key(host) && !plans.contains_key(host) {
                store.delete(&kv.key).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use yunhan_model::network::*;
    use yunhan_model::{Metadata, Resource};

    fn doc<S, T: Default>(id: &str, spec: S) -> Resource<S, T> {
        Resource {
            metadata: Metadata {
                id: id.into(),
                name: id.into(),
                project: Some("prj-1".into()),
                labels: Default::default(),
                created: "2026-01-01T00:00:00Z".into(),
                revision: 1,
                deleting: None,
            },
            spec,
            status: T::default(),
        }
    }

    fn subnet(id: &str, vpc: &str, cidr: &str) -> Doc<Subnet> {
        let c: Ipv4Cidr = cidr.parse().unwrap();
        let gw = yunhan_net::ipam::Ipam::default_gateway(c);
        let mut s: Doc<Subnet> = doc(
            id,
            SubnetSpec {
                vpc: vpc.into(),
                cidr: cidr.into(),
            },
        );
        s.status.gateway_ip = gw.to_string();
        s.status.gateway_mac = gateway_mac(gw).to_string();
        s
    }

    fn nic(id: &str, subnet: &str, ip: Ipv4Addr, instance: Option<&str>) -> Doc<NetworkInterface> {
        let mut n: Doc<NetworkInterface> = doc(
            id,
            NetworkInterfaceSpec {
                subnet: subnet.into(),
                instance: instance.map(String::from),
                ..Default::default()
            },
        );
        n.status.ip = ip.to_string();
        n.status.mac = port_mac(ip).to_string();
        n
    }

    fn inputs(extra_subnets: &[(u8, u8)], nic_ips: &[(u8, u8, bool)]) -> Inputs {
        let mut inp = Inputs::default();
        for (i, h) in ["hst-1", "hst-2"].iter().enumerate() {
            let mut d: Doc<Host> = doc(h, Default::default());
            d.spec.address = format!("192.0.2.{}", i + 1);
            inp.hosts.push(d);
            let mut vm: Doc<Instance> = doc(&format!("ins-{i}"), Default::default());
            vm.status.host = Some(h.to_string());
            inp.instances.push(vm);
        }
        let mut v: Doc<Vpc> = doc(
            "vpc-1",
            VpcSpec {
                cidr: "10.10.0.0/16".into(),
            },
        );
        v.status.vni = 7;
        inp.vpcs.push(v);
        inp.subnets.push(subnet("sn-0", "vpc-1", "10.10.1.0/24"));
        for (i, (third, len)) in extra_subnets.iter().enumerate() {
            let c = Ipv4Cidr::containing(Ipv4Addr::new(10, 10, *third, 0), *len);
            inp.subnets
                .push(subnet(&format!("sn-{}", i + 1), "vpc-1", &c.to_string()));
        }
        for (i, (last, sub, attached)) in nic_ips.iter().enumerate() {
            let inst = format!("ins-{}", i % 2);
            inp.nics.push(nic(
                &format!("nic-{i}"),
                &format!("sn-{}", *sub as usize % (extra_subnets.len() + 1)),
                Ipv4Addr::new(10, 10, 1, *last),
                attached.then_some(inst.as_str()),
            ));
        }
        inp
    }

    #[test]
    fn two_vms_on_two_hosts_share_the_default_group() {
        let m = build_model(inputs(&[], &[(5, 0, true), (6, 0, true)]), UNDERLAY_MTU);
        m.validate().unwrap();
        assert_eq!(m.ports.len(), 2);
        assert_eq!(m.ports[0].host.as_deref(), Some("hst-1"));
        assert_eq!(m.ports[1].host.as_deref(), Some("hst-2"));
        assert_eq!(
            m.ports[0].security_groups,
            vec!["vpc-1-default".to_string()]
        );
        let plans = yunhan_net::compile_all(&m).unwrap();
        assert_eq!(plans["hst-1"].ports.len(), 1);
        assert_eq!(plans["hst-1"].vpcs[0].fdb.len(), 1);
    }

    proptest! {
        /// Whatever overlaps, duplicates or dangles in the store, the model compiles.
        #[test]
        fn the_model_always_validates(
            subnets in proptest::collection::vec((0u8..4, 22u8..=26), 0..5),
            nics in proptest::collection::vec((0u8..255, 0u8..6, any::<bool>()), 0..12),
        ) {
            let m = build_model(inputs(&subnets, &nics), UNDERLAY_MTU);
            prop_assert!(m.validate().is_ok(), "{:?}", m.validate());
            prop_assert!(yunhan_net::compile_all(&m).is_ok());
        }
    }
}
