//! Route tables → the compiler's [`net::RouteTable`]s (a NIC target is its port), and
//! what a realised table's status notes: routes whose NIC runs nowhere, whose traffic is
//! dropped until it does (fail closed: never routed around an appliance).

use std::collections::{BTreeMap, HashSet};

use yunhan_model::network::RouteTargetKind;
use yunhan_net::model as net;
use yunhan_net::{Ipv4Cidr, NetworkModel, ObjectKind};

use super::{fail, Failed, Inputs};

/// Every route table whose routes map.
pub(super) fn map_route_tables(inp: &Inputs, failed: &mut Failed) -> Vec<net::RouteTable> {
    let mut out = Vec::new();
    'tables: for t in &inp.route_tables {
        let mut routes = Vec::new();
        for r in &t.spec.routes {
            let Ok(destination) = r.destination.parse::<Ipv4Cidr>() else {
                let why = format!("route destination {:?} does not parse", r.destination);
                fail(failed, ObjectKind::RouteTable, &t.metadata.id, why);
                continue 'tables;
            };
            let target = match (r.target, &r.nic) {
                (RouteTargetKind::Nic, Some(nic)) => net::RouteTarget::Port(nic.clone()),
                (RouteTargetKind::Nic, None) => net::RouteTarget::Port(String::new()),
                (RouteTargetKind::Local, _) => net::RouteTarget::Local,
                (RouteTargetKind::NatGateway, _) => net::RouteTarget::NatGateway,
                (RouteTargetKind::External, _) => net::RouteTarget::External,
            };
            routes.push(net::Route {
                destination,
                target,
                priority: r.priority,
            });
        }
        out.push(net::RouteTable {
            id: t.metadata.id.clone(),
            vpc: t.spec.vpc.clone(),
            subnets: t.spec.subnets.clone(),
            routes,
        });
    }
    out
}

/// For each admitted route table with routes to NICs that run nowhere: which, and that
/// their traffic is dropped.
pub(super) fn dropped_routes(m: &NetworkModel) -> BTreeMap<(ObjectKind, String), String> {
    let running: HashSet<(&str, &str)> = m
        .ports
        .iter()
        .filter(|p| p.host.is_some())
        .map(|p| (p.vpc.as_str(), p.id.as_str()))
        .collect();
    let mut out = BTreeMap::new();
    for t in &m.route_tables {
        let dropped: Vec<String> = t
            .routes
            .iter()
            .filter_map(|r| match &r.target {
                net::RouteTarget::Port(p) if !running.contains(&(t.vpc.as_str(), p.as_str())) => {
                    Some(format!("{} (NIC {p:?})", r.destination))
                }
                _ => None,
            })
            .collect();
        if !dropped.is_empty() {
            let why = format!(
                "traffic to {} is dropped: the NIC is on no running VM of the VPC (or gone)",
                dropped.join(", ")
            );
            out.insert((ObjectKind::RouteTable, t.id.clone()), why);
        }
    }
    out
}
