//! Route tables in a host's plan: for each VPC of the host, the tables with associated
//! subnets (a policy-routing table each in the VPC's router namespace), the ports that
//! are route targets (they forward), and the subnets that route to the NAT gateway (it
//! translates them). Realised by `realise/route_table.rs`. Design note: docs/network.md.
use std::collections::HashMap;

use super::Index;
use crate::model::{RouteTarget, Vpc};
use crate::plan::{RouteAction, RoutePlan, RouteTablePlan, RouterInterface, ROUTER_TABLE_ROUTES};

impl Index<'_> {
    /// The route tables of VPC `v` that have a realised subnet, by id; table numbers
    /// count up from [`ROUTER_TABLE_ROUTES`] in that order.
    pub(super) fn route_table_plans(
        &self,
        v: &Vpc,
        interfaces: &[RouterInterface],
    ) -> Vec<RouteTablePlan> {
        let dev_of: HashMap<&str, &str> = interfaces
            .iter()
            .map(|i| (i.subnet.as_str(), i.router_dev.as_str()))
            .collect();
        let mut tables: Vec<_> = self
            .m
            .route_tables
            .iter()
            .filter(|t| t.vpc == v.id)
            .collect();
        tables.sort_by(|a, b| a.id.cmp(&b.id));
        let mut out = Vec::new();
        for t in tables {
            let mut devs: Vec<String> = t
                .subnets
                .iter()
                .filter_map(|s| dev_of.get(s.as_str()).map(|d| d.to_string()))
                .collect();
            if devs.is_empty() {
                continue;
            }
            devs.sort();
            let mut routes = vec![RoutePlan {
                destination: v.cidr,
                metric: 0,
                action: RouteAction::Throw,
            }];
            routes.extend(t.routes.iter().map(|r| RoutePlan {
                destination: r.destination,
                metric: r.priority,
                action: self.route_action(&v.id, &r.target, &dev_of),
            }));
            routes.sort();
            out.push(RouteTablePlan {
                id: t.id.clone(),
                table: ROUTER_TABLE_ROUTES + out.len() as u32,
                interfaces: devs,
                routes,
            });
        }
        out
    }

    /// A target port of the VPC realised on a host is reached at its address through its
    /// subnet's interface; any other makes the destination unreachable.
    fn route_action(
        &self,
        vpc: &str,
        target: &RouteTarget,
        dev_of: &HashMap<&str, &str>,
    ) -> RouteAction {
        let RouteTarget::Port(id) = target else {
            return RouteAction::Throw;
        };
        self.ports
            .get(id.as_str())
            .filter(|p| p.host.is_some() && p.vpc == vpc)
            .and_then(|p| {
                let dev = dev_of.get(p.subnet.as_str())?;
                Some(RouteAction::Via {
                    ip: p.ip,
                    dev: dev.to_string(),
                })
            })
            .unwrap_or(RouteAction::Blackhole)
    }

    /// Whether port `id` is some route's target (it then forwards).
    pub(super) fn forwards(&self, port: &crate::model::Port) -> bool {
        (self.m.route_tables.iter())
            .filter(|t| t.vpc == port.vpc)
            .flat_map(|t| &t.routes)
            .any(|r| matches!(&r.target, RouteTarget::Port(p) if *p == port.id))
    }

    /// Whether subnet `id` of VPC `vpc` routes something to the VPC's NAT gateway.
    pub(super) fn routes_to_nat(&self, vpc: &str, id: &str) -> bool {
        self.m.route_tables.iter().any(|t| {
            t.vpc == vpc
                && t.subnets.iter().any(|s| s == id)
                && t.routes.iter().any(|r| r.target == RouteTarget::NatGateway)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::{compile_all, tests::small_model};
    use crate::model::{Route, RouteTable, RouteTarget};
    use crate::plan::RouteAction;

    fn route(dst: &str, target: RouteTarget, priority: u32) -> Route {
        Route {
            destination: dst.parse().unwrap(),
            target,
            priority,
        }
    }

    /// sn-a1 sends 172.16.0.0/12 to pa3 (an appliance in sn-a2), a /24 of it back to the
    /// VPC's own way, and 10.0.2.0/24 (a subnet of its own VPC) to pa3 as well.
    #[test]
    fn a_subnets_routes_reach_its_router_on_every_host_and_the_target_forwards() {
        let mut m = small_model();
        m.route_tables.push(RouteTable {
            id: "rt-1".into(),
            vpc: "vpc-a".into(),
            subnets: vec!["sn-a1".into()],
            routes: vec![
                route("172.16.0.0/12", RouteTarget::Port("pa3".into()), 100),
                route("172.16.5.0/24", RouteTarget::Local, 100),
                route("10.0.2.0/24", RouteTarget::Port("pa3".into()), 7),
            ],
        });
        let plans = compile_all(&m).unwrap();
        for host in ["host-a", "host-b"] {
            let p = &plans[host];
            let v = p.vpcs.iter().find(|v| v.vpc == "vpc-a").unwrap();
            let [t] = v.router.tables.as_slice() else {
                panic!("{host}: {:?}", v.router.tables)
            };
            assert_eq!(t.table, 200);
            assert_eq!(t.interfaces, vec![crate::names::router_dev("sn-a1")]);
            let dst: Vec<String> = t.routes.iter().map(|r| r.destination.to_string()).collect();
            assert_eq!(
                dst,
                [
                    "10.0.0.0/16",
                    "10.0.2.0/24",
                    "172.16.0.0/12",
                    "172.16.5.0/24"
                ]
            );
            let via = RouteAction::Via {
                ip: "10.0.2.10".parse().unwrap(),
                dev: crate::names::router_dev("sn-a2"),
            };
            assert_eq!(
                t.routes[0].action,
                RouteAction::Throw,
                "the VPC stays local"
            );
            assert_eq!(t.routes[2].action, via);
            assert_eq!(t.routes[3].action, RouteAction::Throw);
            assert!(p
                .vpcs
                .iter()
                .filter(|v| v.vpc == "vpc-b")
                .all(|v| v.router.tables.is_empty()));
        }
        let forwarding: Vec<&str> = plans["host-b"]
            .ports
            .iter()
            .filter(|p| p.forwarding)
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(forwarding, ["pa3"]);
        // The bridge lets the appliance send from other addresses, nobody else.
        let nft = crate::nft::render(&plans["host-b"]);
        let pa3 = crate::names::port_device("pa3");
        assert!(
            !nft.contains(&format!("iifname \"{pa3}\" ip saddr !=")),
            "{nft}"
        );
        assert!(
            nft.contains(&format!("iifname \"{pa3}\" ether saddr !=")),
            "{nft}"
        );
        let pa2 = crate::names::port_device("pa2");
        assert!(
            nft.contains(&format!("iifname \"{pa2}\" ip saddr !=")),
            "{nft}"
        );
    }

    /// While the appliance is nowhere (or the port is of another VPC), its destinations
    /// are dropped, never routed around it; such a port does not forward.
    #[test]
    fn a_route_to_a_port_that_is_not_realised_is_a_blackhole() {
        let mut m = small_model();
        m.ports.retain(|p| p.id != "pa3");
        m.route_tables.push(RouteTable {
            id: "rt-1".into(),
            vpc: "vpc-a".into(),
            subnets: vec!["sn-a1".into()],
            routes: vec![
                route("0.0.0.0/0", RouteTarget::Port("pa3".into()), 1),
                route("172.16.0.0/12", RouteTarget::Port("pb1".into()), 1),
            ],
        });
        let plans = compile_all(&m).unwrap();
        let v = &plans["host-a"].vpcs[0];
        assert_eq!(v.router.tables[0].routes[0].action, RouteAction::Blackhole);
        assert_eq!(v.router.tables[0].routes[2].action, RouteAction::Blackhole);
        assert!(plans["host-a"].ports.iter().all(|p| !p.forwarding));
    }

    #[test]
    fn bad_route_tables_are_refused_with_reasons() {
        let mut m = small_model();
        m.route_tables.push(RouteTable {
            id: "rt-1".into(),
            vpc: "vpc-a".into(),
            subnets: vec!["sn-a1".into(), "sn-b1".into()],
            routes: vec![
                route("10.0.0.0/16", RouteTarget::Local, 1),
                route("0.0.0.0/0", RouteTarget::NatGateway, 1),
                route("0.0.0.0/0", RouteTarget::Local, 1),
            ],
        });
        let mut second = m.route_tables[0].clone();
        second.id = "rt-2".into();
        second.subnets = vec!["sn-a1".into()];
        second.routes.clear();
        m.route_tables.push(second);
        let errs: Vec<String> = m
            .validate()
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        for want in [
            "subnet \"sn-b1\" is not in VPC \"vpc-a\"",
            "10.0.0.0/16 is the VPC's own CIDR",
            "two routes to 0.0.0.0/0 with priority 1",
            "route table \"rt-2\": subnet \"sn-a1\" is already in route table \"rt-1\"",
        ] {
            assert!(errs.iter().any(|e| e.contains(want)), "{want}: {errs:?}");
        }
    }

    /// A gateway limited to sn-a2 also translates sn-a1 once sn-a1's table routes to it.
    #[test]
    fn a_route_to_the_nat_gateway_makes_it_translate_the_subnet() {
        let mut m = crate::lab::fixtures::external_model();
        m.nat_gateways[0].subnets = vec!["sn-a2".into()];
        let sources = |m: &crate::model::NetworkModel| {
            let plans = compile_all(m).unwrap();
            let n = plans
                .values()
                .flat_map(|p| &p.nat_gateways)
                .find(|n| n.local)
                .cloned();
            n.unwrap()
                .sources
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(sources(&m), ["10.0.2.0/24"]);
        m.route_tables.push(RouteTable {
            id: "rt-1".into(),
            vpc: "vpc-a".into(),
            subnets: vec!["sn-a1".into()],
            routes: vec![Route {
                destination: "0.0.0.0/0".parse().unwrap(),
                target: RouteTarget::NatGateway,
                priority: 1,
            }],
        });
        assert_eq!(sources(&m), ["10.0.1.0/24", "10.0.2.0/24"]);
    }
}
