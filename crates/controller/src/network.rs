//! The SDN controller: maps the networking objects in the store to a
//! [`yunhan_net::NetworkModel`], compiles one plan per host and writes it to
//! `/yunhan/plans/net/<host>` only when its hash changed. Level-triggered: a pass
//! recomputes everything from the store, so a restarted controller converges.
//! Security groups (and each VPC's implicit default group) are mapped in
//! [`security_group`].
//!
//! It also collects garbage the API cannot: primary NICs of deleted instances (the
//! agent removes the instance object), NICs attached to instances that are gone, and
//! address claims whose owner never got written (a create that failed half-way). An
//! orphan is only removed when a later pass, at least [`ORPHAN_GRACE`] on, still sees it,
//! so a create in flight is never mistaken for one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use yunhan_model::network::{
    ip_claim_key, DEVICES_PREFIX, IP_CLAIM_PREFIX, PLAN_PREFIX, VIP_HOLDERS_PREFIX, VTEP_PREFIX,
};
use yunhan_model::network::{NetworkPhase, NetworkState};
use yunhan_model::{
    ElasticIp, ExternalNetwork, Host, Instance, Kind, LoadBalancer, NatGateway, NetworkInterface,
    RouteTable, SecurityGroup, Subnet, Vip, Vpc,
};
use yunhan_net::compile::CompileError;
use yunhan_net::model as net;
use yunhan_net::{HostPlan, Ipv4Cidr, MacAddr, NetworkModel, ObjectKind};
use yunhan_store::objects::{object_prefix, Doc, ObjectError, Objects, GLOBAL_SCOPE};
use yunhan_store::{KeyValue, StoreExt};

use crate::Reconciler;

mod external_network;
mod load_balancer;
mod route_table;
mod security_group;

use external_network::{gateway_host, map_external_networks};
use load_balancer::{
    fail_unrouted_lbs, lb_anycast_nics, lb_anycasts, lb_groups, lb_nics, place_load_balancers,
    write_lb_hosts,
};
pub use load_balancer::{lb_group, LbHosts};
use route_table::{dropped_routes, map_route_tables};
pub use security_group::default_group;
use security_group::{default_groups, map_groups};

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
#[derive(Default, Clone)]
pub struct Inputs {
    pub hosts: Vec<Doc<Host>>,
    /// Host id → VTEP the agent published (`--vtep`).
    pub vteps: HashMap<String, Ipv4Addr>,
    /// Host id → the network devices its agent reported (legs on external networks).
    pub devices: HashMap<String, std::collections::BTreeSet<String>>,
    /// VIP id → the NIC an agent last saw holding it.
    pub vip_holders: HashMap<String, String>,
    pub instances: Vec<Doc<Instance>>,
    pub vpcs: Vec<Doc<Vpc>>,
    pub subnets: Vec<Doc<Subnet>>,
    pub nics: Vec<Doc<NetworkInterface>>,
    pub groups: Vec<Doc<SecurityGroup>>,
    pub externals: Vec<Doc<ExternalNetwork>>,
    pub eips: Vec<Doc<ElasticIp>>,
    pub nat_gateways: Vec<Doc<NatGateway>>,
    pub vips: Vec<Doc<Vip>>,
    pub route_tables: Vec<Doc<RouteTable>>,
    pub load_balancers: Vec<Doc<LoadBalancer>>,
}

fn by_age<S, T>(v: &mut [yunhan_model::Resource<S, T>]) {
    v.sort_by(|a, b| {
        (&a.metadata.created, &a.metadata.id).cmp(&(&b.metadata.created, &b.metadata.id))
    });
}

/// What the controller decided: the model of the realisable objects (valid), the reason
/// for every object left out, and objects that are in the model but cannot be realised
/// anywhere yet (an elastic IP whose NIC's host has no leg on its external network).
#[derive(Debug, Default)]
pub struct Decision {
    pub model: NetworkModel,
    /// Host id → its plan.
    pub plans: BTreeMap<String, HostPlan>,
    /// (kind, id) → why it is not realised.
    pub failed: BTreeMap<(ObjectKind, String), String>,
    /// (kind, id) → the host realising it, for kinds realised on one host.
    pub realised: Placed,
    /// (kind, id) → what a realised object's status notes (a route table's dropped routes).
    pub notes: BTreeMap<(ObjectKind, String), String>,
    /// Where each load balancer is realised (or why nowhere).
    pub lb_hosts: LbHosts,
}

impl Decision {
    pub fn reason(&self, kind: ObjectKind, id: &str) -> Option<&str> {
        self.failed.get(&(kind, id.to_string())).map(String::as_str)
    }

    /// The id of the host realising an elastic IP, a NAT gateway or (its holder) a VIP.
    pub fn realised_on(&self, kind: ObjectKind, id: &str) -> Option<&str> {
        self.realised
            .get(&(kind, id.to_string()))
            .map(String::as_str)
    }
}

/// Where each object realised on one host is, computed once per pass: (kind, id) → host id.
fn realised_hosts(model: &NetworkModel, plans: &BTreeMap<String, HostPlan>) -> Placed {
    // An anycast's elastic IP is on every serving host: its host is the one answering.
    let eips = plans.iter().flat_map(|(h, p)| {
        (p.elastic_ips.iter().filter(|e| e.inbound))
            .map(move |e| ((ObjectKind::ElasticIp, e.id.clone()), h.clone()))
    });
    let gateways = model
        .nat_gateways
        .iter()
        .map(|g| ((ObjectKind::NatGateway, g.id.clone()), g.host.clone()));
    let port_host: HashMap<&str, &str> = model
        .ports
        .iter()
        .filter_map(|p| Some((p.id.as_str(), p.host.as_deref()?)))
        .collect();
    let vips = model.vips.iter().filter_map(|v| {
        let host = port_host.get(v.holder.as_deref()?)?;
        Some(((ObjectKind::Vip, v.id.clone()), host.to_string()))
    });
    eips.chain(gateways).chain(vips).collect()
}

type Placed = BTreeMap<(ObjectKind, String), String>;

/// Store objects → the model of what can be realised, and why the rest cannot. Pure.
/// Nothing one object holds stops the others: objects that cannot even be mapped (an
/// address that does not parse, a NAT gateway whose address no host can reach) are left
/// out here, then [`yunhan_net::admit`] leaves out what the model rejects and what depends
/// on it (see its rules; conflicts go to the older object).
/// Fails as a whole only for what no object can be blamed for (an underlay MTU below 1280).
pub fn decide(inp: Inputs, underlay_mtu: u16) -> Result<Decision, CompileError> {
    let names: HashMap<String, String> = inp
        .externals
        .iter()
        .map(|p| (p.metadata.id.clone(), p.metadata.name.clone()))
        .collect();
    let (model, mut failed, mut lb_hosts) = build_model(inp, underlay_mtu);
    let (plans, admitted) = yunhan_net::compile_admitted(model)?;
    for r in admitted.rejected {
        failed.entry((r.kind, r.id)).or_insert(r.reason);
    }
    fail_unrouted_lbs(&failed, &mut lb_hosts);
    for (id, why) in unrealised_eips(&admitted.model, &names) {
        failed.insert((ObjectKind::ElasticIp, id), why);
    }
    Ok(Decision {
        realised: realised_hosts(&admitted.model, &plans),
        notes: dropped_routes(&admitted.model),
        lb_hosts,
        model: admitted.model,
        plans,
        failed,
    })
}

type Failed = BTreeMap<(ObjectKind, String), String>;

/// Maps store objects to the compiler's input (oldest first in every list, so conflicts
/// go to the older object), with the objects that cannot be mapped and why.
pub fn build_model(mut inp: Inputs, underlay_mtu: u16) -> (NetworkModel, Failed, LbHosts) {
    by_age(&mut inp.vpcs);
    by_age(&mut inp.subnets);
    by_age(&mut inp.nics);
    by_age(&mut inp.groups);
    by_age(&mut inp.externals);
    by_age(&mut inp.eips);
    by_age(&mut inp.nat_gateways);
    by_age(&mut inp.vips);
    by_age(&mut inp.route_tables);
    by_age(&mut inp.load_balancers);
    let mut m = NetworkModel {
        underlay_mtu,
        hosts: map_hosts(&inp),
        ..Default::default()
    };
    let mut failed = Failed::new();
    m.vpcs = map_vpcs(&inp.vpcs, &mut failed);
    m.subnets = map_subnets(&inp.subnets, &mut failed);
    m.security_groups = map_groups(&inp.groups, &mut failed);
    m.external_networks = map_external_networks(&inp, &mut failed);
    let lb_hosts = place_load_balancers(&inp, &m.hosts, &m.external_networks);
    m.ports = map_ports(&inp, &m.hosts, &lb_hosts, &mut failed);
    let defaults = default_groups(&m.ports);
    m.security_groups.extend(defaults);
    m.security_groups.extend(lb_groups(&inp));
    m.nat_gateways = map_nat_gateways(&inp, &m.external_networks, &mut failed);
    m.elastic_ips = map_eips(&inp, &mut failed);
    m.vips = map_vips(&inp, &mut failed);
    m.route_tables = map_route_tables(&inp, &mut failed);
    m.anycasts = lb_anycasts(&inp, &mut failed);
    (m, failed, lb_hosts)
}

fn fail(failed: &mut Failed, kind: ObjectKind, id: &str, why: String) {
    failed.insert((kind, id.to_string()), why);
}

/// `addr` parsed; `None`, with the object marked failed, when it does not parse.
fn parse_address(failed: &mut Failed, kind: ObjectKind, id: &str, addr: &str) -> Option<Ipv4Addr> {
    let parsed = addr.parse().ok();
    if parsed.is_none() {
        fail(failed, kind, id, format!("address {addr:?} does not parse"));
    }
    parsed
}

/// The VPC of each subnet, by subnet id.
struct SubnetVpcs<'a>(HashMap<&'a str, &'a str>);

impl<'a> SubnetVpcs<'a> {
    fn new(inp: &'a Inputs) -> Self {
        let pairs = inp.subnets.iter();
        SubnetVpcs(
            pairs
                .map(|s| (s.metadata.id.as_str(), s.spec.vpc.as_str()))
                .collect(),
        )
    }

    /// The VPC of `subnet`; `recorded` (kept in the object's status) once the subnet is gone.
    fn of(&self, subnet: &str, recorded: &'a str) -> &'a str {
        self.0.get(subnet).copied().unwrap_or(recorded)
    }
}

fn map_hosts(inp: &Inputs) -> Vec<net::Host> {
    inp.hosts
        .iter()
        .filter_map(|h| {
            let vtep = inp
                .vteps
                .get(&h.metadata.id)
                .copied()
                .or_else(|| h.spec.address.parse().ok())
                .filter(|v: &Ipv4Addr| !v.is_unspecified())?;
            Some(net::Host {
                id: h.metadata.id.clone(),
                vtep,
            })
        })
        .collect()
}

fn map_vpcs(vpcs: &[Doc<Vpc>], failed: &mut Failed) -> Vec<net::Vpc> {
    let mut out = Vec::new();
    for v in vpcs {
        match v.spec.cidr.parse::<Ipv4Cidr>() {
            Ok(cidr) => out.push(net::Vpc {
                id: v.metadata.id.clone(),
                vni: v.status.vni,
                cidr,
            }),
            Err(e) => fail(
                failed,
                ObjectKind::Vpc,
                &v.metadata.id,
                format!("cidr {:?}: {e}", v.spec.cidr),
            ),
        }
    }
    out
}

fn map_subnets(subnets: &[Doc<Subnet>], failed: &mut Failed) -> Vec<net::Subnet> {
    let mut out = Vec::new();
    for s in subnets {
        let (Ok(cidr), Ok(gateway_ip), Ok(gateway_mac)) = (
            s.spec.cidr.parse::<Ipv4Cidr>(),
            s.status.gateway_ip.parse::<Ipv4Addr>(),
            s.status.gateway_mac.parse::<MacAddr>(),
        ) else {
            let why = format!(
                "cidr {:?}, gateway {:?} or gateway MAC {:?} does not parse",
                s.spec.cidr, s.status.gateway_ip, s.status.gateway_mac
            );
            fail(failed, ObjectKind::Subnet, &s.metadata.id, why);
            continue;
        };
        out.push(net::Subnet {
            id: s.metadata.id.clone(),
            vpc: s.spec.vpc.clone(),
            cidr,
            gateway_ip,
            gateway_mac,
        });
    }
    out
}

/// NICs as ports: on the host of their instance when it is bound to a known host, in the
/// VPC of their subnet, in the VPC's default group when they name no group.
fn map_ports(
    inp: &Inputs,
    hosts: &[net::Host],
    lb_hosts: &LbHosts,
    failed: &mut Failed,
) -> Vec<net::Port> {
    let lbs = lb_nics(inp, lb_hosts);
    let anycast = lb_anycast_nics(inp);
    let known: HashSet<&str> = hosts.iter().map(|h| h.id.as_str()).collect();
    let bound: HashMap<&str, &str> = inp
        .instances
        .iter()
        .filter_map(|i| Some((i.metadata.id.as_str(), i.status.host.as_deref()?)))
        .filter(|(_, h)| known.contains(h))
        .collect();
    let vpcs = SubnetVpcs::new(inp);
    let mut out = Vec::new();
    for n in inp
        .nics
        .iter()
        .filter(|n| !anycast.contains_key(n.metadata.id.as_str()))
    {
        let (Ok(ip), Ok(mac)) = (
            n.status.ip.parse::<Ipv4Addr>(),
            n.status.mac.parse::<MacAddr>(),
        ) else {
            let why = format!(
                "address {:?} or MAC {:?} does not parse",
                n.status.ip, n.status.mac
            );
            fail(failed, ObjectKind::Port, &n.metadata.id, why);
            continue;
        };
        let vpc = vpcs.of(&n.spec.subnet, &n.status.vpc);
        let mut groups = n.spec.security_groups.clone();
        let lb = lbs.get(n.metadata.id.as_str());
        if let Some((lb, _)) = lb {
            groups = vec![lb_group(lb)];
        } else if groups.is_empty() {
            groups.push(default_group(vpc));
        }
        let host = match lb {
            Some((_, host)) => host.clone(),
            None => (n.spec.instance.as_deref())
                .and_then(|i| bound.get(i))
                .map(|h| h.to_string()),
        };
        out.push(net::Port {
            id: n.metadata.id.clone(),
            vpc: vpc.to_string(),
            subnet: n.spec.subnet.clone(),
            host,
            mac,
            ip,
            security_groups: groups,
        });
    }
    out
}

/// The elastic IPs NAT gateways use.
fn gateway_eips(inp: &Inputs) -> HashSet<&str> {
    let gateways = inp.nat_gateways.iter();
    gateways.map(|g| g.spec.elastic_ip.as_str()).collect()
}

/// Elastic IPs not used by a NAT gateway (a gateway's address is the gateway's); one
/// bound to the address NIC of a load balancer with replicas is bound to its anycast.
fn map_eips(inp: &Inputs, failed: &mut Failed) -> Vec<net::ElasticIp> {
    let of_gateways = gateway_eips(inp);
    let anycast = lb_anycast_nics(inp);
    let mut out = Vec::new();
    for e in inp
        .eips
        .iter()
        .filter(|e| !of_gateways.contains(e.metadata.id.as_str()))
    {
        let (kind, id) = (ObjectKind::ElasticIp, &e.metadata.id);
        let Some(address) = parse_address(failed, kind, id, &e.status.address) else {
            continue;
        };
        out.push(net::ElasticIp {
            id: e.metadata.id.clone(),
            address,
            port: (e.spec.nic.as_deref())
                .map(|nic| anycast.get(nic).map_or(nic, |lb| *lb).to_string()),
            bandwidth_mbit: e.spec.bandwidth_mbit,
        });
    }
    out
}

fn map_nat_gateways(
    inp: &Inputs,
    externals: &[net::ExternalNetwork],
    failed: &mut Failed,
) -> Vec<net::NatGateway> {
    let mut out = Vec::new();
    for g in &inp.nat_gateways {
        match map_nat_gateway(inp, externals, g) {
            Ok(n) => out.push(n),
            Err(why) => fail(
                failed,
                ObjectKind::NatGateway,
                &g.metadata.id,
                why.to_string(),
            ),
        }
    }
    out
}

/// Why a NAT gateway is left out (its status message).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("elastic IP {0:?} does not exist")]
    NoElasticIp(String),
    #[error("elastic IP address {0:?} does not parse")]
    BadAddress(String),
    #[error("{0} is in no external network")]
    NoNetwork(Ipv4Addr),
    #[error("no Ready host has a leg on external network {name} ({cidr}){why}")]
    NoHost {
        name: String,
        cidr: Ipv4Cidr,
        /// ": no host reports a device …", when the network names one.
        why: String,
    },
    #[error("forward to {0:?}: not an address")]
    BadForward(String),
}

/// A NAT gateway on the first host (by id) with a leg on its address's external network.
fn map_nat_gateway(
    inp: &Inputs,
    externals: &[net::ExternalNetwork],
    g: &Doc<NatGateway>,
) -> Result<net::NatGateway, GatewayError> {
    let eip = inp
        .eips
        .iter()
        .find(|e| e.metadata.id == g.spec.elastic_ip)
        .ok_or_else(|| GatewayError::NoElasticIp(g.spec.elastic_ip.clone()))?;
    let external_ip: Ipv4Addr = eip
        .status
        .address
        .parse()
        .map_err(|_| GatewayError::BadAddress(eip.status.address.clone()))?;
    let x = externals
        .iter()
        .find(|x| x.cidr.contains(external_ip))
        .ok_or(GatewayError::NoNetwork(external_ip))?;
    let host = gateway_host(inp, x)?;
    let dnat = g
        .spec
        .dnat
        .iter()
        .map(|d| {
            Ok(net::DnatRule {
                protocol: match d.protocol {
                    yunhan_model::network::DnatProtocol::Tcp => net::Protocol::Tcp,
                    yunhan_model::network::DnatProtocol::Udp => net::Protocol::Udp,
                },
                external_port: d.port,
                internal_ip: d
                    .to_ip
                    .parse()
                    .map_err(|_| GatewayError::BadForward(d.to_ip.clone()))?,
                internal_port: d.to_port,
            })
        })
        .collect::<Result<_, GatewayError>>()?;
    Ok(net::NatGateway {
        id: g.metadata.id.clone(),
        vpc: g.spec.vpc.clone(),
        external_ip,
        subnets: g.spec.subnets.clone(),
        dnat,
        host,
    })
}

fn map_vips(inp: &Inputs, failed: &mut Failed) -> Vec<net::Vip> {
    let vpcs = SubnetVpcs::new(inp);
    let mut out = Vec::new();
    for v in &inp.vips {
        let Some(ip) = parse_address(failed, ObjectKind::Vip, &v.metadata.id, &v.status.ip) else {
            continue;
        };
        out.push(net::Vip {
            id: v.metadata.id.clone(),
            vpc: vpcs.of(&v.spec.subnet, &v.status.vpc).to_string(),
            subnet: v.spec.subnet.clone(),
            ip,
            mac: None,
            ports: v.spec.nics.clone(),
            holder: inp
                .vip_holders
                .get(&v.metadata.id)
                .filter(|nic| v.spec.nics.contains(nic))
                .cloned(),
        });
    }
    out
}

/// Elastic IPs bound to a port on a host without a leg on their external network: valid,
/// but realised nowhere.
pub fn unrealised_eips(m: &NetworkModel, names: &HashMap<String, String>) -> Vec<(String, String)> {
    let host_of: HashMap<&str, &str> = m
        .ports
        .iter()
        .filter_map(|p| Some((p.id.as_str(), p.host.as_deref()?)))
        .collect();
    // What serves an address: its NIC's host, or every host of an anycast's ports.
    let serving = |id: &str| -> Option<(Vec<&str>, &str)> {
        if let Some(h) = host_of.get(id) {
            return Some((vec![*h], "of its NIC"));
        }
        let a = m.anycasts.iter().find(|a| a.id == id)?;
        let hosts = a
            .ports
            .iter()
            .filter_map(|p| host_of.get(p.as_str()).copied());
        Some((hosts.collect(), "of one of its replicas"))
    };
    m.elastic_ips
        .iter()
        .filter_map(|e| {
            let (hosts, whose) = serving(e.port.as_deref()?)?;
            let x = m.external_of(e.address)?;
            let host = hosts.iter().find(|h| !x.legs.iter().any(|l| l.host == **h))?;
            let why = format!(
                "host {host:?} {whose} has no leg on external network {} ({}): its agent reports none of the network's devices",
                names.get(&x.id).unwrap_or(&x.id),
                x.cidr
            );
            Some((e.id.clone(), why))
        })
        .collect()
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

/// The entries under `prefix`, by the rest of their key; values `parse` refuses are left out.
async fn read_under<T>(
    objects: &Objects,
    prefix: &str,
    parse: impl Fn(Vec<u8>) -> Option<T>,
) -> Result<HashMap<String, T>, ObjectError> {
    let kvs = objects.store().range_all(prefix).await?;
    let entry = |kv: KeyValue| Some((kv.key.strip_prefix(prefix)?.to_string(), parse(kv.value)?));
    Ok(kvs.into_iter().filter_map(entry).collect())
}

async fn read_inputs(objects: &Objects) -> Result<Inputs, ObjectError> {
    let vteps = read_under(objects, VTEP_PREFIX, |v| {
        std::str::from_utf8(&v).ok()?.trim().parse().ok()
    })
    .await?;
    let devices = read_under(objects, DEVICES_PREFIX, |v| serde_json::from_slice(&v).ok()).await?;
    let vip_holders =
        read_under(objects, VIP_HOLDERS_PREFIX, |v| String::from_utf8(v).ok()).await?;
    Ok(Inputs {
        hosts: objects.list_all::<Host>(Some(GLOBAL_SCOPE)).await?,
        vteps,
        devices,
        vip_holders,
        instances: objects.list_all::<Instance>(None).await?,
        vpcs: objects.list_all::<Vpc>(None).await?,
        subnets: objects.list_all::<Subnet>(None).await?,
        nics: objects.list_all::<NetworkInterface>(None).await?,
        groups: objects.list_all::<SecurityGroup>(None).await?,
        externals: objects
            .list_all::<ExternalNetwork>(Some(GLOBAL_SCOPE))
            .await?,
        eips: objects.list_all::<ElasticIp>(None).await?,
        nat_gateways: objects.list_all::<NatGateway>(None).await?,
        vips: objects.list_all::<Vip>(None).await?,
        route_tables: objects.list_all::<RouteTable>(None).await?,
        load_balancers: objects.list_all::<LoadBalancer>(None).await?,
    })
}

#[async_trait]
impl Reconciler for NetworkController {
    fn name(&self) -> &'static str {
        "network"
    }
    fn watches(&self) -> Vec<String> {
        vec![
            object_prefix::<Vpc>(None),
            object_prefix::<Subnet>(None),
            object_prefix::<NetworkInterface>(None),
            object_prefix::<SecurityGroup>(None),
            object_prefix::<ExternalNetwork>(None),
            object_prefix::<ElasticIp>(None),
            object_prefix::<NatGateway>(None),
            object_prefix::<Vip>(None),
            object_prefix::<RouteTable>(None),
            object_prefix::<LoadBalancer>(None),
            object_prefix::<Instance>(None),
            object_prefix::<Host>(None),
            VTEP_PREFIX.into(),
            DEVICES_PREFIX.into(),
            VIP_HOLDERS_PREFIX.into(),
        ]
    }
    fn resync(&self) -> Duration {
        Duration::from_secs(5)
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let inp = read_inputs(objects).await?;
        self.collect_garbage(objects, &inp).await?;
        let host_ids: Vec<String> = inp.hosts.iter().map(|h| h.metadata.id.clone()).collect();
        let host_names: HashMap<String, String> = inp
            .hosts
            .iter()
            .map(|h| (h.metadata.id.clone(), h.metadata.name.clone()))
            .collect();
        let decision = match decide(inp, self.underlay_mtu) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "the network model does not compile; plans unchanged");
                return Ok(());
            }
        };
        write_plans(objects, &decision.plans, &host_ids).await?;
        write_states(objects, &decision, &host_names).await
    }
}

/// Writes each host's plan when its hash changed; removes plans of hosts that are gone.
async fn write_plans(
    objects: &Objects,
    plans: &BTreeMap<String, HostPlan>,
    host_ids: &[String],
) -> Result<(), ObjectError> {
    let store = objects.store();
    for (host, plan) in plans {
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
    let known: HashSet<&str> = host_ids.iter().map(String::as_str).collect();
    for kv in store.range_all(PLAN_PREFIX).await? {
        let host = kv.key.strip_prefix(PLAN_PREFIX).unwrap_or_default();
        if !known.contains(host) && !plans.contains_key(host) {
            store.delete(&kv.key).await?;
        }
    }
    Ok(())
}

/// Every networking object's `phase`/`message` (and, for those realised on one host, the
/// host's name): `Failed` with the reason when it is not realised, `Ready` otherwise.
/// Compare-and-swap, and only where it changes.
async fn write_states(
    objects: &Objects,
    d: &Decision,
    hosts: &HashMap<String, String>,
) -> Result<(), ObjectError> {
    let w = StateWriter { objects, d, hosts };
    w.write::<Vpc>(ObjectKind::Vpc, None).await?;
    w.write::<Subnet>(ObjectKind::Subnet, None).await?;
    w.write::<SecurityGroup>(ObjectKind::SecurityGroup, None)
        .await?;
    w.write::<NetworkInterface>(ObjectKind::Port, None).await?;
    let global = Some(GLOBAL_SCOPE);
    w.write::<ExternalNetwork>(ObjectKind::ExternalNetwork, global)
        .await?;
    w.write::<ElasticIp>(ObjectKind::ElasticIp, None).await?;
    w.write::<NatGateway>(ObjectKind::NatGateway, None).await?;
    w.write::<Vip>(ObjectKind::Vip, None).await?;
    w.write::<RouteTable>(ObjectKind::RouteTable, None).await?;
    write_lb_hosts(objects, &d.lb_hosts).await?;
    for ((kind, id), why) in d.failed.iter().filter(|(k, _)| k.0 == ObjectKind::Host) {
        tracing::warn!(%kind, %id, reason = %why, "host left out of the network model");
    }
    Ok(())
}

/// The state an object should show.
pub fn desired_state(d: &Decision, kind: ObjectKind, id: &str) -> (NetworkPhase, String) {
    match d.reason(kind, id) {
        Some(why) => (NetworkPhase::Failed, why.to_string()),
        None => {
            let note = d.notes.get(&(kind, id.to_string()));
            (NetworkPhase::Ready, note.cloned().unwrap_or_default())
        }
    }
}

struct StateWriter<'a> {
    objects: &'a Objects,
    d: &'a Decision,
    /// Host id → name.
    hosts: &'a HashMap<String, String>,
}

impl StateWriter<'_> {
    async fn write<K: Kind>(&self, kind: ObjectKind, scope: Option<&str>) -> Result<(), ObjectError>
    where
        K::Status: NetworkState,
    {
        for doc in self.objects.list_all::<K>(scope).await? {
            let id = &doc.metadata.id;
            let (phase, message) = desired_state(self.d, kind, id);
            let host = self
                .d
                .realised_on(kind, id)
                .map(|h| self.hosts.get(h).map_or(h, String::as_str))
                .unwrap_or_default()
                .to_string();
            let differs =
                |s: &K::Status| s.network_state() != (phase, message.as_str()) || s.host() != host;
            if !differs(&doc.status) {
                continue;
            }
            if phase == NetworkPhase::Failed {
                tracing::warn!(kind = K::KIND, %id, reason = %message, "not realised");
            }
            self.objects
                .modify::<K>(id, |doc| {
                    differs(&doc.status) && {
                        doc.status.set_network_state(phase, message.clone());
                        doc.status.set_host(host.clone());
                        true
                    }
                })
                .await?;
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

    /// An external network every host reaches through `ext0` (when it reports it).
    fn pool(id: &str, cidr: &str) -> Doc<ExternalNetwork> {
        let mut p: Doc<ExternalNetwork> = doc(
            id,
            yunhan_model::ExternalNetworkSpec {
                cidr: cidr.into(),
                device: Some("ext0".into()),
                ..Default::default()
            },
        );
        p.metadata.project = None;
        p
    }

    fn eip(id: &str, address: &str, nic: Option<&str>) -> Doc<ElasticIp> {
        let mut e: Doc<ElasticIp> = doc(
            id,
            ElasticIpSpec {
                nic: nic.map(String::from),
                ..Default::default()
            },
        );
        e.status.address = address.into();
        e
    }

    /// NAT gateway `natgw-1` of `vpc-1` on elastic IP `eip-gw` (203.0.113.9).
    fn add_gateway(inp: &mut Inputs) {
        inp.eips.push(eip("eip-gw", "203.0.113.9", None));
        let spec = NatGatewaySpec {
            vpc: "vpc-1".into(),
            elastic_ip: "eip-gw".into(),
            ..Default::default()
        };
        inp.nat_gateways.push(doc("natgw-1", spec));
    }

    fn later<S, T>(mut d: Resource<S, T>, project: &str) -> Resource<S, T> {
        d.metadata.created = "2026-06-01T00:00:00Z".into();
        d.metadata.project = Some(project.into());
        d
    }

    #[test]
    fn two_vms_on_two_hosts_share_the_default_group() {
        let d = decide(inputs(&[], &[(5, 0, true), (6, 0, true)]), UNDERLAY_MTU).unwrap();
        let m = &d.model;
        assert!(d.failed.is_empty(), "{:?}", d.failed);
        assert_eq!(m.ports.len(), 2);
        assert_eq!(m.ports[0].host.as_deref(), Some("hst-1"));
        assert_eq!(m.ports[1].host.as_deref(), Some("hst-2"));
        assert_eq!(
            m.ports[0].security_groups,
            vec!["vpc-1-default".to_string()]
        );
        assert_eq!(d.plans["hst-1"].ports.len(), 1);
        assert_eq!(d.plans["hst-1"].vpcs[0].fdb.len(), 1);
    }

    /// Issue #12: an elastic IP in no external network used to freeze every plan.
    #[test]
    fn a_bad_eip_fails_alone_and_a_later_vm_in_another_project_gets_its_plan() {
        let mut inp = inputs(&[], &[(5, 0, true)]);
        inp.externals.push(pool("eipp-1", "203.0.113.0/24"));
        inp.eips.push(eip("eip-bad", "198.51.100.2", Some("nic-0")));
        inp.eips.push(eip("eip-ok", "203.0.113.7", None));
        // Another project's VPC, subnet and VM NIC, created afterwards.
        let mut v: Doc<Vpc> = later(
            doc(
                "vpc-2",
                VpcSpec {
                    cidr: "10.20.0.0/16".into(),
                },
            ),
            "prj-2",
        );
        v.status.vni = 8;
        inp.vpcs.push(v);
        inp.subnets
            .push(later(subnet("sn-2", "vpc-2", "10.20.1.0/24"), "prj-2"));
        let n = nic("nic-2", "sn-2", Ipv4Addr::new(10, 20, 1, 5), Some("ins-1"));
        inp.nics.push(later(n, "prj-2"));

        let d = decide(inp, UNDERLAY_MTU).unwrap();
        assert_eq!(
            desired_state(&d, ObjectKind::ElasticIp, "eip-bad"),
            (
                NetworkPhase::Failed,
                "198.51.100.2 is in no external network".to_string()
            )
        );
        assert_eq!(
            desired_state(&d, ObjectKind::ElasticIp, "eip-ok"),
            (NetworkPhase::Ready, String::new())
        );
        assert_eq!(d.failed.len(), 1, "{:?}", d.failed);
        let ports = |h: &str| {
            d.plans[h]
                .ports
                .iter()
                .map(|p| p.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ports("hst-1"), vec!["nic-0"]);
        assert_eq!(ports("hst-2"), vec!["nic-2"]);
    }

    #[test]
    fn a_nat_gateway_without_a_leg_and_a_nic_with_a_missing_group_fail_alone() {
        let mut inp = inputs(&[], &[(5, 0, true), (6, 0, true)]);
        inp.externals.push(pool("ext", "203.0.113.0/24"));
        add_gateway(&mut inp);
        inp.eips.push(eip("eip-vm", "203.0.113.10", Some("nic-1")));
        inp.nics[0].spec.security_groups = vec!["sg-gone".into()];
        let d = decide(inp, UNDERLAY_MTU).unwrap();
        assert_eq!(
            d.reason(ObjectKind::NatGateway, "natgw-1"),
            Some("no Ready host has a leg on external network ext (203.0.113.0/24): no host reports a device \"ext0\"")
        );
        assert_eq!(
            d.reason(ObjectKind::Port, "nic-0"),
            Some("security group \"sg-gone\" does not exist")
        );
        assert!(d.reason(ObjectKind::ElasticIp, "eip-gw").is_none());
        assert!(d
            .reason(ObjectKind::ElasticIp, "eip-vm")
            .is_some_and(|r| r.starts_with("host \"hst-2\" of its NIC has no leg")));
        assert_eq!(d.plans["hst-2"].ports[0].id, "nic-1");
        assert!(d.plans["hst-1"].ports.is_empty());
    }

    /// Two Ready hosts, a VM on each and a NIC of the first (10.10.1.5).
    fn ready_inputs() -> Inputs {
        let mut inp = inputs(&[], &[(5, 0, true)]);
        for h in &mut inp.hosts {
            h.status.phase = yunhan_model::HostPhase::Ready;
        }
        inp
    }

    /// Load balancer `id` in sn-0 with its address NIC `<id>-vip` (10.10.1.`vip`) and two
    /// replicas, `<id>-r0` and `<id>-r1` (10.10.1.`replicas[i]`).
    fn replicated_lb(inp: &mut Inputs, id: &str, vip: u8, replicas: [u8; 2]) {
        let ip = |last| Ipv4Addr::new(10, 10, 1, last);
        let vip_nic = format!("{id}-vip");
        inp.nics.push(nic(&vip_nic, "sn-0", ip(vip), None));
        let mut d: Doc<LoadBalancer> = doc(id, Default::default());
        d.spec.subnet = "sn-0".into();
        (d.status.vpc, d.status.nic) = ("vpc-1".into(), vip_nic);
        d.status.address = ip(vip).to_string();
        for (i, last) in replicas.into_iter().enumerate() {
            let n = nic(&format!("{id}-r{i}"), "sn-0", ip(last), None);
            d.status.replicas.push(yunhan_model::LbReplica {
                nic: n.metadata.id.clone(),
                address: n.status.ip.clone(),
                ..Default::default()
            });
            inp.nics.push(n);
        }
        inp.load_balancers.push(d);
    }

    /// A load balancer with replicas: its replicas' NICs are ports on distinct hosts, its
    /// address an anycast served by them (its own NIC no port). Another one whose address
    /// the model refuses (a port holds it) has every replica `Failed` with the reason, and
    /// the first is realised all the same.
    #[test]
    fn replicated_load_balancers_are_anycast_and_a_refused_one_fails_alone() {
        let mut inp = ready_inputs();
        replicated_lb(&mut inp, "lb-good", 20, [21, 22]);
        replicated_lb(&mut inp, "lb-bad", 5, [23, 24]);
        let d = decide(inp, UNDERLAY_MTU).unwrap();
        let ok = |h: &str| Ok(h.to_string());
        assert_eq!(d.lb_hosts["lb-good"], [ok("hst-1"), ok("hst-2")]);
        let ports: Vec<&str> = d.model.ports.iter().map(|p| p.id.as_str()).collect();
        assert!(!ports.contains(&"lb-good-vip"), "{ports:?}");
        for h in ["hst-1", "hst-2"] {
            let anycasts = &d.plans[h].vpcs[0].anycasts;
            assert_eq!(anycasts.len(), 1, "{h}: {anycasts:?}");
            assert_eq!(anycasts[0].next_hops.len(), 2, "{h}");
        }
        for placed in &d.lb_hosts["lb-bad"] {
            assert!(
                placed
                    .as_ref()
                    .is_err_and(|why| why.starts_with("its address: ")),
                "{placed:?}"
            );
        }
    }

    /// An elastic IP on the address NIC of a load balancer with replicas is bound to its
    /// anycast: every replica's host realises it, the first replica's answers for it. An
    /// external load balancer's replicas go to hosts with a leg on its elastic IP's
    /// network only; an elastic IP bound to one that is not external (so placed anywhere)
    /// fails, saying which replica's host has no leg.
    #[test]
    fn an_elastic_ip_on_a_replicated_load_balancer_is_its_anycasts() {
        let mut inp = ready_inputs();
        replicated_lb(&mut inp, "lb-1", 20, [21, 22]);
        inp.externals.push(pool("ext", "203.0.113.0/24"));
        inp.eips
            .push(eip("eip-lb", "203.0.113.10", Some("lb-1-vip")));
        let ext0 = |inp: &mut Inputs, h: &str| {
            let devices = ["eth0", "ext0"].iter().map(|d| d.to_string()).collect();
            inp.devices.insert(h.into(), devices);
        };
        ext0(&mut inp, "hst-2");
        let d = decide(inp.clone(), UNDERLAY_MTU).unwrap();
        assert_eq!(d.model.elastic_ips[0].port.as_deref(), Some("lb-1"));
        let first = d.lb_hosts["lb-1"][0].clone().unwrap();
        let why = d
            .reason(ObjectKind::ElasticIp, "eip-lb")
            .unwrap_or_default();
        assert!(
            why.starts_with(&format!("host {first:?} of one of its replicas has no leg")),
            "{why}"
        );

        // External: both replicas on the one host with a leg, then on both.
        inp.load_balancers[0].status.external_address = "203.0.113.10".into();
        let d = decide(inp.clone(), UNDERLAY_MTU).unwrap();
        let ok = |h: &str| Ok(h.to_string());
        assert_eq!(d.lb_hosts["lb-1"], [ok("hst-2"), ok("hst-2")]);
        assert_eq!(d.reason(ObjectKind::ElasticIp, "eip-lb"), None);
        assert_eq!(
            d.realised_on(ObjectKind::ElasticIp, "eip-lb"),
            Some("hst-2")
        );
        ext0(&mut inp, "hst-1");
        for r in &mut inp.load_balancers[0].status.replicas {
            r.host = "hst-2".into();
        }
        inp.load_balancers[0].status.replicas[0].host = "hst-1".into();
        let d = decide(inp, UNDERLAY_MTU).unwrap();
        assert_eq!(d.lb_hosts["lb-1"], [ok("hst-1"), ok("hst-2")]);
        assert_eq!(d.reason(ObjectKind::ElasticIp, "eip-lb"), None);
        for h in ["hst-1", "hst-2"] {
            let eips = &d.plans[h].elastic_ips;
            assert_eq!(eips.len(), 1, "{h}: {eips:?}");
            assert_eq!(eips[0].private_ip, Ipv4Addr::new(10, 10, 1, 20), "{h}");
        }
        assert_eq!(
            d.realised_on(ObjectKind::ElasticIp, "eip-lb"),
            Some("hst-1")
        );
    }

    /// Issue #15: legs come from the devices agents report; NAT gateways go to a Ready
    /// host with a leg; a network on the hosts themselves is everywhere, on its bridge.
    #[test]
    fn legs_follow_reported_devices_and_gateways_avoid_hosts_that_are_not_ready() {
        let mut inp = inputs(&[], &[(5, 0, true), (6, 0, true)]);
        for h in &mut inp.hosts {
            h.status.phase = yunhan_model::HostPhase::Ready;
        }
        let devices = |names: &[&str]| names.iter().map(|d| d.to_string()).collect();
        inp.devices.insert("hst-1".into(), devices(&["eth0"]));
        inp.devices
            .insert("hst-2".into(), devices(&["eth0", "ext0"]));
        inp.externals.push(pool("ext", "203.0.113.0/24"));
        let mut public = pool("public", "172.24.4.0/24");
        public.spec.device = None;
        public.spec.host_gateway = true;
        inp.externals.push(later(public, "prj-1"));
        add_gateway(&mut inp);
        inp.eips.push(eip("eip-1", "203.0.113.10", Some("nic-0")));
        inp.eips.push(eip("eip-2", "172.24.4.10", Some("nic-1")));
        let d = decide(inp.clone(), UNDERLAY_MTU).unwrap();
        assert_eq!(d.model.nat_gateways[0].host, "hst-2");
        assert_eq!(
            d.realised_on(ObjectKind::NatGateway, "natgw-1"),
            Some("hst-2")
        );
        assert_eq!(d.realised_on(ObjectKind::ElasticIp, "eip-2"), Some("hst-2"));
        assert_eq!(d.realised_on(ObjectKind::ElasticIp, "eip-1"), None);
        assert!(d
            .reason(ObjectKind::ElasticIp, "eip-1")
            .is_some_and(|r| r.starts_with("host \"hst-1\" of its NIC has no leg")));
        let public = &d.model.external_networks[1];
        assert!(public.host_gateway);
        assert_eq!(public.legs.len(), 2);
        assert!(public.legs.iter().all(|l| l.device.starts_with("ynp-")));
        // It is on every host, with or without an address of it realised there.
        let on = |h: &str| {
            d.plans[h]
                .externals
                .iter()
                .find(|x| x.host_gateway)
                .cloned()
        };
        assert_eq!(on("hst-1").map(|x| x.addresses.len()), Some(0));
        assert_eq!(on("hst-2").map(|x| x.addresses.len()), Some(1));

        // The gateway host is lost: the gateway moves, or fails with why.
        inp.hosts[1].status.phase = yunhan_model::HostPhase::NotReady;
        let d = decide(inp.clone(), UNDERLAY_MTU).unwrap();
        assert_eq!(
            d.reason(ObjectKind::NatGateway, "natgw-1"),
            Some("no Ready host has a leg on external network ext (203.0.113.0/24): no host reports a device \"ext0\"")
        );
        inp.devices.insert("hst-1".into(), devices(&["ext0"]));
        let d = decide(inp, UNDERLAY_MTU).unwrap();
        assert_eq!(d.model.nat_gateways[0].host, "hst-1");
    }

    #[tokio::test]
    async fn status_shows_the_reason_once_and_clears_when_fixed() {
        use yunhan_model::{Project, ProjectSpec};
        let objects = Objects::new(std::sync::Arc::new(yunhan_store::MemStore::new()));
        let mut p: Doc<Project> = doc("prj-1", ProjectSpec::default());
        p.metadata.project = None;
        objects.create::<Project>(p).await.unwrap();
        let mut h: Doc<Host> = doc("hst-1", Default::default());
        h.metadata.project = None;
        h.spec.address = "192.0.2.1".into();
        objects.create::<Host>(h).await.unwrap();
        objects
            .create::<ElasticIp>(eip("eip-1", "198.51.100.2", None))
            .await
            .unwrap();
        let c = NetworkController::default();
        c.reconcile(&objects).await.unwrap();
        let e = objects.get::<ElasticIp>("eip-1").await.unwrap().unwrap();
        assert_eq!(e.status.phase, NetworkPhase::Failed);
        assert_eq!(e.status.message, "198.51.100.2 is in no external network");
        assert!(objects
            .store()
            .get(&format!("{PLAN_PREFIX}hst-1"))
            .await
            .unwrap()
            .is_some());
        c.reconcile(&objects).await.unwrap();
        let again = objects.get::<ElasticIp>("eip-1").await.unwrap().unwrap();
        assert_eq!(
            again.metadata.revision, e.metadata.revision,
            "no write when nothing changed"
        );
        objects
            .create::<ExternalNetwork>(pool("ext", "198.51.100.0/24"))
            .await
            .unwrap();
        c.reconcile(&objects).await.unwrap();
        let fixed = objects.get::<ElasticIp>("eip-1").await.unwrap().unwrap();
        assert_eq!(
            (fixed.status.phase, fixed.status.message.as_str()),
            (NetworkPhase::Ready, "")
        );
    }

    /// Garbage of every networking kind on top of [`inputs`]: references to missing or
    /// other-VPC objects, addresses outside every pool or subnet, duplicates, bad strings.
    fn garbage(inp: &mut Inputs, raw: &[(u8, u8, u8)]) {
        for (i, &(a, b, c)) in raw.iter().enumerate() {
            let pick = |n: u8| format!("{}", b % n);
            match a % 7 {
                0 => inp.externals.push(pool(
                    &format!("eipp-{i}"),
                    ["203.0.113.0/24", "198.51.100.0/25", "x"][c as usize % 3],
                )),
                1 => inp.eips.push(eip(
                    &format!("eip-{i}"),
                    &format!(
                        "{}.{c}",
                        ["203.0.113", "198.51.100", "192.0.2"][b as usize % 3]
                    ),
                    (c % 2 == 0).then(|| format!("nic-{}", b % 8)).as_deref(),
                )),
                2 => {
                    let mut n = nic(
                        &format!("nic-x{i}"),
                        &format!("sn-{}", pick(4)),
                        Ipv4Addr::new(10, 10, 1, c),
                        Some(&format!("ins-{}", b % 3)),
                    );
                    if b % 3 == 0 {
                        n.spec.security_groups = vec![format!("sg-{}", c % 3)];
                    }
                    inp.nics.push(n)
                }
                3 => inp.groups.push(doc(
                    &format!("sg-{}", i % 3),
                    SecurityGroupSpec {
                        vpc: format!("vpc-{}", b % 3),
                        rules: vec![SecurityGroupRule {
                            group: Some(format!("sg-{}", c % 4)),
                            ..Default::default()
                        }],
                    },
                )),
                4 => inp.nat_gateways.push(doc(
                    &format!("natgw-{i}"),
                    NatGatewaySpec {
                        vpc: format!("vpc-{}", b % 3),
                        elastic_ip: format!("eip-{}", c % 6),
                        ..Default::default()
                    },
                )),
                5 => {
                    let mut v: Doc<Vip> = doc(
                        &format!("vip-{i}"),
                        VipSpec {
                            subnet: format!("sn-{}", pick(3)),
                            nics: vec![format!("nic-{}", c % 8)],
                            ..Default::default()
                        },
                    );
                    v.status.ip = format!("10.10.1.{c}");
                    inp.vips.push(v)
                }
                _ => {
                    let mut v: Doc<Vpc> = doc(
                        &format!("vpc-{i}"),
                        VpcSpec {
                            cidr: ["10.10.0.0/16", "bad"][c as usize % 2].into(),
                        },
                    );
                    v.status.vni = u32::from(b % 9);
                    inp.vpcs.push(v)
                }
            }
        }
    }

    /// Every object of `inp` is in the model or failed (a NAT gateway's elastic IP is its).
    fn accounted(inp: &Inputs, d: &Decision) -> Result<(), TestCaseError> {
        let in_model = |k: ObjectKind, id: &str| yunhan_net::admit::ids(&d.model, k).contains(&id);
        let check = |k: ObjectKind, id: &str| in_model(k, id) || d.reason(k, id).is_some();
        let gw_eips = gateway_eips(inp);
        for v in &inp.vpcs {
            prop_assert!(check(ObjectKind::Vpc, &v.metadata.id));
        }
        for s in &inp.subnets {
            prop_assert!(check(ObjectKind::Subnet, &s.metadata.id));
        }
        for g in &inp.groups {
            prop_assert!(check(ObjectKind::SecurityGroup, &g.metadata.id));
        }
        for n in &inp.nics {
            prop_assert!(check(ObjectKind::Port, &n.metadata.id));
        }
        for p in &inp.externals {
            prop_assert!(check(ObjectKind::ExternalNetwork, &p.metadata.id));
        }
        for e in &inp.eips {
            let id = e.metadata.id.as_str();
            prop_assert!(
                check(ObjectKind::ElasticIp, id) || gw_eips.contains(id),
                "{}",
                id
            );
        }
        for g in &inp.nat_gateways {
            prop_assert!(check(ObjectKind::NatGateway, &g.metadata.id));
        }
        for v in &inp.vips {
            prop_assert!(check(ObjectKind::Vip, &v.metadata.id));
        }
        Ok(())
    }

    proptest! {
        /// Whatever the store holds, the model compiles, every object is realised or says
        /// why not, and one more bad object (an elastic IP in no external network, the newest
        /// object) changes no plan.
        #[test]
        fn whatever_the_store_holds_the_model_compiles(
            subnets in proptest::collection::vec((0u8..4, 22u8..=26), 0..5),
            nics in proptest::collection::vec((0u8..255, 0u8..6, any::<bool>()), 0..12),
            raw in proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 0..12),
        ) {
            let mut inp = inputs(&subnets, &nics);
            garbage(&mut inp, &raw);
            let d = decide(Clone::clone(&inp), UNDERLAY_MTU).expect("compiles");
            prop_assert!(d.model.validate().is_ok());
            accounted(&inp, &d)?;
            inp.eips.push(later(eip("eip-new", "192.0.2.200", None), "prj-3"));
            let more = decide(Clone::clone(&inp), UNDERLAY_MTU).expect("compiles");
            prop_assert_eq!(&more.plans, &d.plans);
            prop_assert_eq!(more.reason(ObjectKind::ElasticIp, "eip-new"), Some("192.0.2.200 is in no external network"));
        }
    }
}
