//! Admission: a [`NetworkModel`] built from whatever the store holds → the largest model of
//! the objects that can be realised, plus the reason for every object left out. Pure.
//!
//! The compiler refuses an invalid model as a whole; the controller must never let one
//! tenant's object stop everyone's plans. So [`admit`] validates, lays every problem at the
//! door of one object (see [`ModelError`]), leaves those objects out and validates again,
//! until the model is valid. Rules:
//!
//! - **Own problems first.** Objects that are wrong by themselves (a bad range, an address
//!   outside its subnet, a reference to something absent) go first; conflicts between two
//!   objects are only settled once those are out, so a broken object never wins a conflict
//!   against a good one.
//! - **Conflicts: the earlier object wins.** Two objects claiming one thing (an id, a VNI,
//!   a VTEP, an address or MAC, a VPC's NAT gateway, overlapping ranges): the one listed
//!   later in its kind's list is left out (the controller lists objects oldest first). Across
//!   kinds, ports win addresses and MACs over VIPs and anycasts, VIPs over anycasts, elastic
//!   IPs over NAT gateways.
//! - **Dependents follow.** What needs a left-out object is left out too, saying why
//!   ("subnet "sn-1" is not realised: …"): a port of a left-out subnet, VPC, host or security
//!   group (fail closed: a NIC is never realised with other groups than it asked for), a
//!   subnet or group of a left-out VPC, an elastic IP bound to a left-out port or anycast.
//! - **References that only narrow are dropped instead.** A VIP member that is not a
//!   (realised) port is removed from the VIP (and from `holder`), and a NAT gateway's
//!   port-forward to an address no realised port of the VPC holds is removed: dropping them
//!   allows less, never more. So is an anycast's serving port that is not a port of its
//!   subnet (one next hop fewer). A route table's subnet that is not realised is dropped from
//!   it (it has no traffic to route). A route to a port that is not realised stays: the
//!   compiler makes its destination unreachable (fail closed: traffic meant for a
//!   firewall appliance never goes around it).
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::compile::{compile_all, CompileError};
use crate::model::{ModelError, NetworkModel};
use crate::plan::HostPlan;

/// The kinds of objects in a [`NetworkModel`], in precedence order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Host,
    Vpc,
    Subnet,
    SecurityGroup,
    Port,
    ExternalNetwork,
    ElasticIp,
    NatGateway,
    Vip,
    RouteTable,
    Anycast,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 11] = [
        ObjectKind::Host,
        ObjectKind::Vpc,
        ObjectKind::Subnet,
        ObjectKind::SecurityGroup,
        ObjectKind::Port,
        ObjectKind::ExternalNetwork,
        ObjectKind::ElasticIp,
        ObjectKind::NatGateway,
        ObjectKind::Vip,
        ObjectKind::RouteTable,
        ObjectKind::Anycast,
    ];

    /// The name [`ModelError`] uses for the kind.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Host => "host",
            ObjectKind::Vpc => "vpc",
            ObjectKind::Subnet => "subnet",
            ObjectKind::SecurityGroup => "security group",
            ObjectKind::Port => "port",
            ObjectKind::ExternalNetwork => "external network",
            ObjectKind::ElasticIp => "elastic ip",
            ObjectKind::NatGateway => "nat gateway",
            ObjectKind::Vip => "vip",
            ObjectKind::RouteTable => "route table",
            ObjectKind::Anycast => "anycast",
        }
    }

    fn from_name(name: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An object left out of the model, and why (a sentence about the object, without its id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: ObjectKind,
    pub id: String,
    pub reason: String,
}

/// The realisable part of a model and what was left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admitted {
    /// Valid: [`NetworkModel::validate`] passes (unless a problem no object can be blamed
    /// for remains, such as an underlay MTU below 1280).
    pub model: NetworkModel,
    pub rejected: Vec<Rejection>,
}

impl Admitted {
    /// The reason `id` of `kind` was left out, if it was.
    pub fn reason(&self, kind: ObjectKind, id: &str) -> Option<&str> {
        self.rejected
            .iter()
            .find(|r| r.kind == kind && r.id == id)
            .map(|r| r.reason.as_str())
    }
}

/// The ids of one kind of object, in model order.
pub fn ids(m: &NetworkModel, kind: ObjectKind) -> Vec<&str> {
    match kind {
        ObjectKind::Host => m.hosts.iter().map(|o| o.id.as_str()).collect(),
        ObjectKind::Vpc => m.vpcs.iter().map(|o| o.id.as_str()).collect(),
        ObjectKind::Subnet => m.subnets.iter().map(|o| o.id.as_str()).collect(),
        ObjectKind::SecurityGroup => m.security_groups.iter().map(|o| o.id.as_str()).collect(),
        ObjectKind::Port => m.ports.iter().map(|o| o.id.as_str()).collect(),
        ObjectKind::ExternalNetwork => m.external_networks.iter().map(|o| o.id.as_str()).collect(),
        ObjectKind::ElasticIp => m.elastic_ips.iter().map(|o| o.id.as_str()).collect(),
        ObjectKind::NatGateway => m.nat_gateways.iter().map(|o| o.id.as_str()).collect(),
        ObjectKind::Vip => m.vips.iter().map(|o| o.id.as_str()).collect(),
        ObjectKind::RouteTable => m.route_tables.iter().map(|o| o.id.as_str()).collect(),
        ObjectKind::Anycast => m.anycasts.iter().map(|o| o.id.as_str()).collect(),
    }
}

/// Removes the object at `index` of `kind`'s list.
fn remove_at(m: &mut NetworkModel, kind: ObjectKind, index: usize) {
    match kind {
        ObjectKind::Host => drop(m.hosts.remove(index)),
        ObjectKind::Vpc => drop(m.vpcs.remove(index)),
        ObjectKind::Subnet => drop(m.subnets.remove(index)),
        ObjectKind::SecurityGroup => drop(m.security_groups.remove(index)),
        ObjectKind::Port => drop(m.ports.remove(index)),
        ObjectKind::ExternalNetwork => drop(m.external_networks.remove(index)),
        ObjectKind::ElasticIp => drop(m.elastic_ips.remove(index)),
        ObjectKind::NatGateway => drop(m.nat_gateways.remove(index)),
        ObjectKind::Vip => drop(m.vips.remove(index)),
        ObjectKind::RouteTable => drop(m.route_tables.remove(index)),
        ObjectKind::Anycast => drop(m.anycasts.remove(index)),
    }
}

/// One object to leave out, found in a validation error.
struct Blame {
    kind: ObjectKind,
    id: String,
    reason: String,
    /// A conflict between two objects (settled after the objects wrong by themselves).
    conflict: bool,
}

/// The object `e` is about, and why, phrased for that object's status.
fn blame(
    e: &ModelError,
    m: &NetworkModel,
    rejected: &HashMap<(ObjectKind, String), String>,
) -> Option<Blame> {
    let own = |kind: ObjectKind, id: &str, reason: String| {
        Some(Blame {
            kind,
            id: id.to_string(),
            reason,
            conflict: false,
        })
    };
    let conflict = |kind: ObjectKind, id: &str, reason: String| {
        Some(Blame {
            kind,
            id: id.to_string(),
            reason,
            conflict: true,
        })
    };
    let kind = |name: &str| ObjectKind::from_name(name);
    match e {
        ModelError::DuplicateId { kind: k, id } => {
            conflict(kind(k)?, id, format!("another {k} has the same id"))
        }
        ModelError::BadId { kind: k, id } => own(
            kind(k)?,
            id,
            "invalid id (letters, digits and '-' only, 1-64 characters)".into(),
        ),
        ModelError::Unknown {
            kind: k,
            id,
            target,
            target_id,
        } => {
            // An elastic IP's `port` may also name an anycast.
            let anycast = (*k == "elastic ip" && *target == "port").then_some(ObjectKind::Anycast);
            let left_out = (kind(target).into_iter().chain(anycast))
                .find_map(|t| Some((t, rejected.get(&(t, target_id.clone()))?)));
            let reason = match left_out {
                Some((t, why)) => format!("{t} {target_id:?} is not realised: {why}"),
                None => format!("{target} {target_id:?} does not exist"),
            };
            own(kind(k)?, id, reason)
        }
        ModelError::BadVni { vpc, vni } => own(
            ObjectKind::Vpc,
            vpc,
            format!("VNI {vni} out of range 1..={}", crate::model::MAX_VNI),
        ),
        ModelError::DuplicateVni { vni, a, b } => conflict(
            ObjectKind::Vpc,
            b,
            format!("VNI {vni} is also used by VPC {a:?}"),
        ),
        ModelError::DuplicateVtep { vtep, a, b } => conflict(
            ObjectKind::Host,
            b,
            format!("VTEP {vtep} is also used by host {a:?}"),
        ),
        ModelError::SubnetOutsideVpc {
            subnet,
            cidr,
            vpc_cidr,
        } => own(
            ObjectKind::Subnet,
            subnet,
            format!("{cidr} is not inside its VPC's CIDR {vpc_cidr}"),
        ),
        ModelError::SubnetOverlap { a, b, .. } => {
            let pos = |id: &str| m.subnets.iter().position(|s| s.id == id);
            let (first, later) = if pos(a) <= pos(b) { (a, b) } else { (b, a) };
            conflict(
                ObjectKind::Subnet,
                later,
                format!("overlaps subnet {first:?} of the same VPC"),
            )
        }
        ModelError::BadSubnet { subnet, reason } => own(ObjectKind::Subnet, subnet, reason.clone()),
        ModelError::BadPort { port, reason } => own(ObjectKind::Port, port, reason.clone()),
        ModelError::BadGroup { group, reason } => {
            own(ObjectKind::SecurityGroup, group, reason.clone())
        }
        ModelError::Bad {
            kind: k,
            id,
            reason,
        } => own(kind(k)?, id, reason.clone()),
        ModelError::Conflict {
            kind: k,
            id,
            reason,
        } => conflict(kind(k)?, id, reason.clone()),
    }
}

/// Keeps the first object of each id and drops invalid ids, before anything looks ids up.
fn dedupe(m: &mut NetworkModel, out: &mut Vec<Rejection>) {
    for kind in ObjectKind::ALL {
        let mut seen = HashSet::new();
        let drop: Vec<(usize, String, String)> = ids(m, kind)
            .into_iter()
            .enumerate()
            .filter_map(|(i, id)| {
                let reason = if !crate::model::valid_id(id) {
                    "invalid id (letters, digits and '-' only, 1-64 characters)".to_string()
                } else if !seen.insert(id) {
                    format!("another {kind} has the same id")
                } else {
                    return None;
                };
                Some((i, id.to_string(), reason))
            })
            .collect();
        for (i, id, reason) in drop.into_iter().rev() {
            remove_at(m, kind, i);
            out.push(Rejection { kind, id, reason });
        }
    }
}

/// Drops references that only narrow what is allowed when their target is not in the model:
/// VIP members (and holders) that are no port of the VIP's VPC, anycasts' serving ports
/// that are no port of the anycast's subnet, and NAT port-forwards to an address no port
/// of the VPC holds.
fn prune(m: &mut NetworkModel) {
    let ports: HashMap<&str, &str> = m
        .ports
        .iter()
        .map(|p| (p.id.as_str(), p.vpc.as_str()))
        .collect();
    let port_subnets: HashSet<(&str, &str, &str)> = m
        .ports
        .iter()
        .map(|p| (p.id.as_str(), p.vpc.as_str(), p.subnet.as_str()))
        .collect();
    for a in &mut m.anycasts {
        a.ports
            .retain(|p| port_subnets.contains(&(p.as_str(), a.vpc.as_str(), a.subnet.as_str())));
    }
    let ips: HashSet<(&str, std::net::Ipv4Addr)> =
        m.ports.iter().map(|p| (p.vpc.as_str(), p.ip)).collect();
    for v in &mut m.vips {
        v.ports
            .retain(|p| ports.get(p.as_str()) == Some(&v.vpc.as_str()));
        if v.holder.as_ref().is_some_and(|h| !v.ports.contains(h)) {
            v.holder = None;
        }
    }
    for n in &mut m.nat_gateways {
        n.dnat
            .retain(|d| ips.contains(&(n.vpc.as_str(), d.internal_ip)));
    }
    let subnets: HashSet<&str> = m.subnets.iter().map(|s| s.id.as_str()).collect();
    for t in &mut m.route_tables {
        t.subnets.retain(|s| subnets.contains(s.as_str()));
    }
}

/// The realisable part of `m` and the reasons for the rest. See the module documentation.
pub fn admit(mut m: NetworkModel) -> Admitted {
    let mut out = Vec::new();
    dedupe(&mut m, &mut out);
    loop {
        prune(&mut m);
        let Err(errs) = m.validate() else { break };
        if !leave_out(&mut m, &errs, &mut out) {
            break;
        }
    }
    Admitted {
        model: m,
        rejected: out,
    }
}

/// Leaves out the objects `errs` blame (own problems first); false if none could be.
fn leave_out(m: &mut NetworkModel, errs: &[ModelError], out: &mut Vec<Rejection>) -> bool {
    let known: HashMap<(ObjectKind, String), String> = out
        .iter()
        .map(|r| ((r.kind, r.id.clone()), r.reason.clone()))
        .collect();
    let blames: Vec<Blame> = errs.iter().filter_map(|e| blame(e, m, &known)).collect();
    let own_only = blames.iter().any(|b| !b.conflict);
    // First reason per object; objects in model order within their kind.
    let mut chosen: BTreeMap<(ObjectKind, String), String> = BTreeMap::new();
    for b in blames.into_iter().filter(|b| !own_only || !b.conflict) {
        chosen.entry((b.kind, b.id)).or_insert(b.reason);
    }
    let mut removed = false;
    for ((kind, id), reason) in chosen {
        // The last object of that id (ids are unique after `dedupe`).
        let Some(i) = ids(m, kind).iter().rposition(|x| *x == id) else {
            continue;
        };
        remove_at(m, kind, i);
        out.push(Rejection { kind, id, reason });
        removed = true;
    }
    removed
}

/// [`admit`], then compile every host's plan. Should the compiler still refuse the admitted
/// model, the objects its errors blame are left out and it is tried again; only a problem
/// no object can be blamed for (the underlay MTU) fails the whole compilation.
pub fn compile_admitted(
    m: NetworkModel,
) -> Result<(BTreeMap<String, HostPlan>, Admitted), CompileError> {
    let mut a = admit(m);
    loop {
        match compile_all(&a.model) {
            Ok(plans) => return Ok((plans, a)),
            Err(CompileError::Invalid(errs)) if leave_out(&mut a.model, &errs, &mut a.rejected) => {
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{Ipv4Cidr, MacAddr};
    use crate::model::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// Mostly sensible, sometimes garbage: `g` is 0 one time in `GARBAGE`.
    const GARBAGE: u8 = 6;
    fn g() -> impl Strategy<Value = bool> {
        (0..GARBAGE).prop_map(|n| n == 0)
    }
    /// Id number `i` of its kind, or (garbage) a small one that may repeat.
    fn ident(prefix: &str, i: usize, garbage: bool, r: usize) -> String {
        if garbage {
            format!("{prefix}{}", r % 3)
        } else {
            format!("{prefix}{i}")
        }
    }
    fn port_mac(ip: Ipv4Addr) -> MacAddr {
        let o = ip.octets();
        MacAddr([0x52, 0x54, o[0], o[1], o[2], o[3]])
    }
    /// A random list of raw tuples, numbered.
    fn list<T: std::fmt::Debug + Clone>(
        s: impl Strategy<Value = T>,
        sizes: std::ops::Range<usize>,
    ) -> impl Strategy<Value = Vec<(usize, T)>> {
        prop::collection::vec(s, sizes).prop_map(|v| v.into_iter().enumerate().collect())
    }

    fn hosts() -> impl Strategy<Value = Vec<Host>> {
        list((g(), 0usize..9), 2..4).prop_map(|v| {
            v.into_iter()
                .map(|(i, (bad, r))| Host {
                    id: ident("h", i, bad && r % 2 == 0, r),
                    vtep: Ipv4Addr::new(192, 0, 2, if bad { (r % 3) as u8 } else { 10 + i as u8 }),
                })
                .collect()
        })
    }
    fn vpcs() -> impl Strategy<Value = Vec<Vpc>> {
        list((g(), 0usize..9), 1..4).prop_map(|v| {
            v.into_iter()
                .map(|(i, (bad, r))| Vpc {
                    id: ident("v", i, bad && r % 2 == 0, r),
                    vni: if bad { (r % 3) as u32 } else { 100 + i as u32 },
                    cidr: if bad && r > 6 {
                        "10.0.0.0/20"
                    } else {
                        "10.0.0.0/16"
                    }
                    .parse()
                    .unwrap(),
                })
                .collect()
        })
    }
    fn subnets() -> impl Strategy<Value = Vec<Subnet>> {
        list((g(), 0usize..9, 0usize..4), 0..6).prop_map(|v| {
            v.into_iter()
                .map(|(i, (bad, r, vpc))| {
                    let third = if bad && r < 3 { r as u8 } else { i as u8 * 16 };
                    let len = if bad && r >= 6 { 22 } else { 24 };
                    let cidr = Ipv4Cidr::containing(Ipv4Addr::new(10, 0, third, 0), len);
                    let gw = if bad && (3..6).contains(&r) { 0 } else { 1 };
                    let gateway_ip = Ipv4Addr::from(u32::from(cidr.network()) + gw);
                    let o = gateway_ip.octets();
                    Subnet {
                        id: ident("s", i, bad && r % 3 == 0, r),
                        vpc: format!("v{vpc}"),
                        cidr,
                        gateway_ip,
                        gateway_mac: MacAddr([0x52, 0x55, o[0], o[1], o[2], o[3]]),
                    }
                })
                .collect()
        })
    }
    fn rule() -> impl Strategy<Value = Rule> {
        (g(), any::<bool>(), 0usize..9, 0usize..5).prop_map(|(bad, ingress, r, peer)| Rule {
            direction: if ingress {
                Direction::Ingress
            } else {
                Direction::Egress
            },
            protocol: if bad && r < 3 {
                Protocol::Icmp
            } else {
                Protocol::Tcp
            },
            ports: Some(PortRange {
                from: if bad && r >= 6 { 0 } else { 22 },
                to: 80,
            }),
            peer: if r % 2 == 0 {
                Peer::Group(format!("g{peer}"))
            } else {
                Peer::Cidr("0.0.0.0/0".parse().unwrap())
            },
        })
    }
    fn groups() -> impl Strategy<Value = Vec<SecurityGroup>> {
        list(
            (
                g(),
                0usize..9,
                0usize..4,
                prop::collection::vec(rule(), 0..3),
            ),
            0..4,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(i, (bad, r, vpc, rules))| SecurityGroup {
                    id: ident("g", i, bad, r),
                    vpc: format!("v{vpc}"),
                    rules,
                })
                .collect()
        })
    }
    /// Ports: `vpc` is set to their subnet's in [`world`] unless the flag says garbage.
    fn ports() -> impl Strategy<Value = Vec<(Port, bool)>> {
        let raw = (
            g(),
            0usize..9,
            0usize..6,
            0u8..30,
            0usize..3,
            prop::option::weighted(0.2, 0usize..5),
        );
        list(raw, 0..10).prop_map(|v| {
            v.into_iter()
                .map(|(i, (bad, r, subnet, last, host, group))| {
                    let ip = Ipv4Addr::new(10, 0, subnet as u8 * 16, 2 + last);
                    let port = Port {
                        id: ident("p", i, bad && r < 3, r),
                        vpc: "v9".into(),
                        subnet: format!("s{subnet}"),
                        host: (!(bad && (3..6).contains(&r))).then(|| format!("h{host}")),
                        mac: port_mac(ip),
                        ip: if bad && r >= 6 {
                            Ipv4Addr::new(10, 0, 200, 1)
                        } else {
                            ip
                        },
                        security_groups: group.map(|g| format!("g{g}")).into_iter().collect(),
                    };
                    (port, bad && r == 8)
                })
                .collect()
        })
    }
    fn externals() -> impl Strategy<Value = Vec<ExternalNetwork>> {
        list(
            (g(), 0usize..9, prop::collection::vec(0usize..4, 1..3)),
            0..3,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(i, (bad, r, legs))| {
                    let third = if bad && r < 4 { 113 } else { 113 + i as u8 };
                    let cidr = Ipv4Cidr::containing(Ipv4Addr::new(203, 0, third, 0), 24);
                    ExternalNetwork {
                        id: ident("x", i, bad && r >= 4, r),
                        cidr,
                        gateway_ip: Ipv4Addr::new(203, 0, third, 1),
                        legs: legs
                            .into_iter()
                            .map(|h| ExternalLeg {
                                host: format!("h{h}"),
                                device: "ext0".into(),
                            })
                            .collect(),
                        host_gateway: false,
                    }
                })
                .collect()
        })
    }
    /// Bound to ports `p0`..`p10` or (11..14) to anycasts `a0`..`a2`.
    fn eips() -> impl Strategy<Value = Vec<ElasticIp>> {
        list((g(), 0usize..9, 0u8..4, prop::option::of(0usize..14)), 0..5).prop_map(|v| {
            v.into_iter()
                .map(|(i, (bad, r, net, port))| ElasticIp {
                    id: ident("e", i, bad && r < 3, r),
                    address: Ipv4Addr::new(
                        203,
                        0,
                        113 + net,
                        if bad && r >= 6 { 1 } else { 10 + i as u8 },
                    ),
                    port: port.map(|p| match p {
                        11.. => format!("a{}", p - 11),
                        _ => format!("p{p}"),
                    }),
                    bandwidth_mbit: if bad && (3..6).contains(&r) {
                        Some(0)
                    } else {
                        Some(10)
                    },
                })
                .collect()
        })
    }
    fn nats() -> impl Strategy<Value = Vec<NatGateway>> {
        let fwd = (0usize..7, 0u8..8, 1u16..3).prop_map(|(s, last, port)| DnatRule {
            protocol: Protocol::Tcp,
            external_port: port,
            internal_ip: Ipv4Addr::new(10, 0, s as u8 * 16, 2 + last),
            internal_port: 80,
        });
        let raw = (
            g(),
            0usize..9,
            0usize..4,
            0u8..4,
            prop::collection::vec(0usize..7, 0..2),
            prop::collection::vec(fwd, 0..3),
            0usize..4,
        );
        list(raw, 0..3).prop_map(|v| {
            v.into_iter()
                .map(|(i, (bad, r, vpc, net, subnets, dnat, host))| NatGateway {
                    id: ident("n", i, bad && r < 3, r),
                    vpc: format!("v{vpc}"),
                    external_ip: Ipv4Addr::new(
                        203,
                        0,
                        113 + net,
                        if bad && r >= 6 { 10 } else { 50 + i as u8 },
                    ),
                    subnets: subnets.into_iter().map(|s| format!("s{s}")).collect(),
                    dnat,
                    host: format!("h{host}"),
                })
                .collect()
        })
    }
    /// What a shared address (a VIP, an anycast) is drawn from: (garbage?, which garbage,
    /// subnet, VPC, its ports).
    type Shared = (bool, usize, usize, usize, Vec<usize>);
    fn shared() -> impl Strategy<Value = Shared> {
        (
            g(),
            0usize..9,
            0usize..7,
            0usize..4,
            prop::collection::vec(0usize..11, 0..3),
        )
    }
    fn vips() -> impl Strategy<Value = Vec<Vip>> {
        list((shared(), any::<bool>()), 0..3).prop_map(|v| {
            v.into_iter()
                .map(|(i, ((bad, r, subnet, vpc, ports), held))| {
                    let ports: Vec<String> = ports.into_iter().map(|p| format!("p{p}")).collect();
                    Vip {
                        id: ident("i", i, bad && r < 3, r),
                        vpc: format!("v{vpc}"),
                        subnet: format!("s{subnet}"),
                        ip: Ipv4Addr::new(
                            10,
                            0,
                            subnet as u8 * 16,
                            if bad && r >= 6 { 2 } else { 200 + i as u8 },
                        ),
                        mac: None,
                        holder: ports.first().filter(|_| held).cloned(),
                        ports,
                    }
                })
                .collect()
        })
    }

    fn anycasts() -> impl Strategy<Value = Vec<Anycast>> {
        list(shared(), 0..3).prop_map(|v| {
            v.into_iter()
                .map(|(i, (bad, r, subnet, vpc, ports))| Anycast {
                    id: ident("a", i, bad && r < 3, r),
                    vpc: format!("v{vpc}"),
                    subnet: format!("s{subnet}"),
                    ip: Ipv4Addr::new(
                        10,
                        0,
                        subnet as u8 * 16,
                        // Garbage: the gateway, or a VIP's address.
                        match (bad, r) {
                            (true, 6..) => 1,
                            (true, 3..6) => 200,
                            _ => 220 + i as u8,
                        },
                    ),
                    ports: ports.into_iter().map(|p| format!("p{p}")).collect(),
                })
                .collect()
        })
    }

    fn route_tables() -> impl Strategy<Value = Vec<RouteTable>> {
        let route = (0u8..4, 0usize..12, 0u32..3, 8u8..=24).prop_map(|(t, p, priority, len)| {
            let target = match t {
                0 => RouteTarget::Local,
                1 => RouteTarget::NatGateway,
                2 => RouteTarget::External,
                _ => RouteTarget::Port(format!("p{p}")),
            };
            Route {
                destination: Ipv4Cidr::containing(Ipv4Addr::new(172, 16, 0, 0), len),
                target,
                priority,
            }
        });
        let raw = (
            g(),
            0usize..9,
            0usize..4,
            prop::collection::vec(0usize..7, 0..3),
            prop::collection::vec(route, 0..4),
        );
        list(raw, 0..3).prop_map(|v| {
            v.into_iter()
                .map(|(i, (bad, r, vpc, subnets, routes))| RouteTable {
                    id: ident("r", i, bad && r < 3, r),
                    vpc: format!("v{vpc}"),
                    subnets: subnets.into_iter().map(|s| format!("s{s}")).collect(),
                    routes,
                })
                .collect()
        })
    }

    /// Any model, garbage included: dangling and cross-VPC references, duplicate ids,
    /// VNIs, VTEPs, addresses and MACs, addresses outside every range, bad port ranges.
    /// VIPs and anycasts take their subnet's VPC (as the controller gives them) unless that
    /// is absent.
    fn world() -> impl Strategy<Value = NetworkModel> {
        (
            hosts(),
            vpcs(),
            subnets(),
            groups(),
            ports(),
            externals(),
            eips(),
            nats(),
            vips(),
            route_tables(),
            anycasts(),
        )
            .prop_map(
                |(
                    hosts,
                    vpcs,
                    subnets,
                    security_groups,
                    ports,
                    external_networks,
                    elastic_ips,
                    nat_gateways,
                    mut vips,
                    route_tables,
                    mut anycasts,
                )| {
                    let vpc_of: HashMap<&str, &str> = subnets
                        .iter()
                        .map(|s| (s.id.as_str(), s.vpc.as_str()))
                        .collect();
                    let ports = ports
                        .into_iter()
                        .map(|(mut p, garbage)| {
                            if let Some(v) = vpc_of.get(p.subnet.as_str()).filter(|_| !garbage) {
                                p.vpc = v.to_string();
                            }
                            p
                        })
                        .collect();
                    for v in &mut vips {
                        if let Some(vpc) = vpc_of.get(v.subnet.as_str()) {
                            v.vpc = vpc.to_string();
                        }
                    }
                    for a in &mut anycasts {
                        if let Some(vpc) = vpc_of.get(a.subnet.as_str()) {
                            a.vpc = vpc.to_string();
                        }
                    }
                    NetworkModel {
                        hosts,
                        vpcs,
                        subnets,
                        ports,
                        security_groups,
                        elastic_ips,
                        external_networks,
                        nat_gateways,
                        vips,
                        route_tables,
                        anycasts,
                        underlay_mtu: 1500,
                    }
                },
            )
    }

    /// Each object of `m` is in `a.model` or rejected, exactly once.
    fn accounted(m: &NetworkModel, a: &Admitted) -> Result<(), TestCaseError> {
        for kind in ObjectKind::ALL {
            let mut inp: Vec<&str> = ids(m, kind);
            let mut out: Vec<&str> = ids(&a.model, kind);
            out.extend(
                a.rejected
                    .iter()
                    .filter(|r| r.kind == kind)
                    .map(|r| r.id.as_str()),
            );
            inp.sort();
            out.sort();
            prop_assert_eq!(inp, out, "{}", kind);
        }
        Ok(())
    }

    /// Admitted ports, elastic IPs and NAT gateways are in the plans of their hosts (an
    /// anycast's elastic IP in those of its serving ports), admitted anycasts in every plan
    /// of their VPC.
    fn realised(a: &Admitted, plans: &BTreeMap<String, HostPlan>) -> Result<(), TestCaseError> {
        let m = &a.model;
        let host_of: HashMap<&str, &str> = m
            .ports
            .iter()
            .filter_map(|p| Some((p.id.as_str(), p.host.as_deref()?)))
            .collect();
        for p in &m.ports {
            if let Some(h) = &p.host {
                prop_assert!(plans[h].ports.iter().any(|x| x.id == p.id), "port {}", p.id);
            }
        }
        for e in &m.elastic_ips {
            let Some(target) = e.port.as_deref() else {
                continue;
            };
            let hosts: Vec<&str> = match m.anycasts.iter().find(|a| a.id == target) {
                Some(ac) if !host_of.contains_key(target) => (ac.ports.iter())
                    .filter_map(|p| host_of.get(p.as_str()).copied())
                    .collect(),
                _ => host_of.get(target).copied().into_iter().collect(),
            };
            for h in hosts {
                if m.external_of(e.address)
                    .is_some_and(|x| x.legs.iter().any(|l| l.host == h))
                {
                    prop_assert!(
                        plans[h].elastic_ips.iter().any(|x| x.id == e.id),
                        "eip {} on {}",
                        e.id,
                        h
                    );
                }
            }
        }
        for a in &m.anycasts {
            for p in plans.values() {
                if let Some(v) = p.vpcs.iter().find(|v| v.vpc == a.vpc) {
                    prop_assert!(v.anycasts.iter().any(|x| x.id == a.id), "anycast {}", a.id);
                }
            }
        }
        for n in &m.nat_gateways {
            prop_assert!(
                plans[&n.host]
                    .nat_gateways
                    .iter()
                    .any(|x| x.id == n.id && x.local),
                "nat {}",
                n.id
            );
        }
        Ok(())
    }

    /// `extra`'s object number `i` of `kind`, appended to `m`.
    fn append(m: &mut NetworkModel, extra: &NetworkModel, kind: ObjectKind, i: usize) -> bool {
        macro_rules! push {
            ($f:ident) => {{
                let Some(o) = extra.$f.get(i % extra.$f.len().max(1)) else {
                    return false;
                };
                m.$f.push(o.clone());
            }};
        }
        match kind {
            ObjectKind::Host => push!(hosts),
            ObjectKind::Vpc => push!(vpcs),
            ObjectKind::Subnet => push!(subnets),
            ObjectKind::SecurityGroup => push!(security_groups),
            ObjectKind::Port => push!(ports),
            ObjectKind::ExternalNetwork => push!(external_networks),
            ObjectKind::ElasticIp => push!(elastic_ips),
            ObjectKind::NatGateway => push!(nat_gateways),
            ObjectKind::Vip => push!(vips),
            ObjectKind::RouteTable => push!(route_tables),
            ObjectKind::Anycast => push!(anycasts),
        }
        true
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Whatever the model holds, the admitted part compiles, every object is admitted or
        /// rejected with a reason, and admitted objects are in the plans.
        #[test]
        fn whatever_the_model_holds_it_compiles(m in world()) {
            let (plans, a) = compile_admitted(m.clone()).expect("compiles");
            prop_assert!(a.model.validate().is_ok());
            accounted(&m, &a)?;
            realised(&a, &plans)?;
            for r in &a.rejected {
                prop_assert!(!r.reason.is_empty());
            }
        }

        /// One more object never costs a valid world anything if it is rejected itself:
        /// the admitted model and every plan stay identical. If it is admitted, only what
        /// loses an address or MAC to it across kinds (a VIP to a port, a NAT gateway to an
        /// elastic IP) may go, and an elastic IP bound to an anycast that went.
        #[test]
        fn one_bad_object_does_not_change_the_others(
            m in world(), extra in world(), k in 0usize..11, i in 0usize..8,
        ) {
            let valid = admit(m).model;
            let before = compile_all(&valid).expect("valid");
            let mut more = valid.clone();
            let kind = ObjectKind::ALL[k];
            prop_assume!(append(&mut more, &extra, kind, i));
            let new_id = ids(&more, kind).last().unwrap().to_string();
            let dup = ids(&valid, kind).contains(&new_id.as_str());
            let (plans, a) = compile_admitted(more).expect("compiles");
            let rejected_new = dup || a.reason(kind, &new_id).is_some();
            if rejected_new {
                prop_assert_eq!(&a.model, &valid);
                prop_assert_eq!(plans, before);
            } else {
                for r in &a.rejected {
                    let anycasts_eip = r.kind == ObjectKind::ElasticIp
                        && r.reason.starts_with("anycast ")
                        && r.reason.contains(" is not realised: ");
                    prop_assert!(
                        anycasts_eip
                            || matches!(r.kind, ObjectKind::Vip | ObjectKind::NatGateway | ObjectKind::Anycast),
                        "{:?}",
                        r
                    );
                }
            }
        }
    }

    #[test]
    fn an_eip_in_no_external_network_leaves_the_rest_alone() {
        let mut m = crate::lab::fixtures::external_model();
        let before = compile_all(&m).unwrap();
        m.elastic_ips.push(ElasticIp {
            id: "eip-bad".into(),
            address: "198.51.100.2".parse().unwrap(),
            port: None,
            bandwidth_mbit: None,
        });
        assert!(compile_all(&m).is_err(), "the compiler alone refuses it");
        let (plans, a) = compile_admitted(m).unwrap();
        assert_eq!(plans, before);
        assert_eq!(
            a.rejected,
            vec![Rejection {
                kind: ObjectKind::ElasticIp,
                id: "eip-bad".into(),
                reason: "198.51.100.2 is in no external network".into(),
            }]
        );
    }

    #[test]
    fn an_eip_on_a_refused_anycast_goes_with_it_and_says_why() {
        let mut m = crate::lab::fixtures::anycast_model();
        m.external_networks.push(crate::lab::fixtures::external(&m));
        let eip = |id: &str, last: u8, to: &str| ElasticIp {
            id: id.into(),
            address: Ipv4Addr::new(203, 0, 113, last),
            port: Some(to.into()),
            bandwidth_mbit: None,
        };
        m.elastic_ips = vec![eip("eip-lb", 70, "lb-1"), eip("eip-twice", 71, "lb-1")];
        let a = admit(m.clone());
        assert_eq!(
            a.rejected,
            vec![Rejection {
                kind: ObjectKind::ElasticIp,
                id: "eip-twice".into(),
                reason: "anycast \"lb-1\" already has an elastic IP".into(),
            }]
        );
        // The anycast's address is its subnet's gateway: it goes, and its elastic IP too.
        m.anycasts[0].ip = "10.0.1.1".parse().unwrap();
        m.elastic_ips.truncate(1);
        let before = {
            let mut good = m.clone();
            good.anycasts.clear();
            good.elastic_ips.clear();
            compile_all(&good).unwrap()
        };
        let (plans, a) = compile_admitted(m).unwrap();
        assert_eq!(plans, before);
        assert_eq!(
            a.reason(ObjectKind::ElasticIp, "eip-lb"),
            Some(
                "anycast \"lb-1\" is not realised: \
                 10.0.1.1 is not a usable address of 10.0.1.0/24"
            )
        );
        // Neither a port nor an anycast: today's error.
        let mut m = crate::lab::fixtures::anycast_model();
        m.external_networks.push(crate::lab::fixtures::external(&m));
        m.elastic_ips = vec![eip("eip-x", 72, "nothing")];
        assert_eq!(
            admit(m).reason(ObjectKind::ElasticIp, "eip-x"),
            Some("port \"nothing\" does not exist")
        );
    }

    #[test]
    fn dependents_follow_with_the_cause_and_narrowing_references_are_dropped() {
        let mut m = crate::lab::fixtures::two_host_model();
        m.vpcs[0].vni = 0; // vpc-a is broken: its subnets, groups and ports go with it
        let a = admit(m);
        assert_eq!(
            a.reason(ObjectKind::Subnet, "sn-a1"),
            Some("vpc \"vpc-a\" is not realised: VNI 0 out of range 1..=16777215")
        );
        let port = a.reason(ObjectKind::Port, "pa1").unwrap();
        assert!(
            port.starts_with("subnet \"sn-a1\" is not realised: vpc"),
            "{port}"
        );
        assert!(a.model.ports.iter().all(|p| p.vpc == "vpc-b"));
        assert!(a.model.validate().is_ok());

        let mut m = crate::lab::fixtures::two_host_model();
        m.vips.push(Vip {
            id: "vip-1".into(),
            vpc: "vpc-a".into(),
            subnet: "sn-a1".into(),
            ip: "10.0.1.200".parse().unwrap(),
            mac: None,
            ports: vec!["pa1".into(), "gone".into()],
            holder: Some("gone".into()),
        });
        let a = admit(m);
        assert!(a.rejected.is_empty(), "{:?}", a.rejected);
        assert_eq!(a.model.vips[0].ports, vec!["pa1".to_string()]);
        assert_eq!(a.model.vips[0].holder, None);
    }
}
