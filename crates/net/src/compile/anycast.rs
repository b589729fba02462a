//! Anycast addresses in a host's plan: every VPC plan carries its VPC's anycasts (the
//! router's equal-cost route to the serving ports, the VXLAN proxy's answer for ARP), and
//! each serving port the addresses it may send from. Realised by `realise/anycast.rs` (router
//! route), `realise/links.rs` (ARP proxy neighbour) and `nft/security_group.rs` (filtering).
//! Design note: docs/network.md ("Anycast addresses").
use super::Index;
use crate::model::{ElasticIp, Host, Vpc};
use crate::names;
use crate::plan::{AnycastPlan, EipPlan};
use std::net::Ipv4Addr;

impl Index<'_> {
    /// Fills `anycasts_by_vpc` (by id) and `serves` (sorted, per serving port).
    pub(super) fn index_anycasts(&mut self) {
        let m = self.m;
        for a in &m.anycasts {
            self.anycasts_by_vpc.entry(&a.vpc).or_default().push(a);
            for p in &a.ports {
                self.serves.entry(p).or_default().push(a.ip);
            }
        }
        for v in self.anycasts_by_vpc.values_mut() {
            v.sort_by(|a, b| a.id.cmp(&b.id));
        }
        for v in self.serves.values_mut() {
            v.sort();
            v.dedup();
        }
    }

    /// The anycasts of VPC `v`, by id: next hops are the addresses of the serving ports
    /// that are realised on some host (none: a blackhole).
    pub(super) fn anycast_plans(&self, v: &Vpc) -> Vec<AnycastPlan> {
        let anycasts = self
            .anycasts_by_vpc
            .get(v.id.as_str())
            .map(|x| x.as_slice())
            .unwrap_or(&[]);
        anycasts
            .iter()
            .map(|a| {
                let s = self.subnets[a.subnet.as_str()];
                let mut next_hops: Vec<Ipv4Addr> = a
                    .ports
                    .iter()
                    .filter_map(|p| self.ports.get(p.as_str()))
                    .filter(|p| p.host.is_some())
                    .map(|p| p.ip)
                    .collect();
                next_hops.sort();
                next_hops.dedup();
                AnycastPlan {
                    id: a.id.clone(),
                    ip: a.ip,
                    subnet: a.subnet.clone(),
                    router_dev: names::router_dev(&a.subnet),
                    gateway_mac: s.gateway_mac,
                    next_hops,
                }
            })
            .collect()
    }
}

impl Index<'_> {
    /// An elastic IP bound to an anycast (`port` names it; a port of that id wins), on a
    /// host with a serving port of it and a leg on the address's network: stateless NAT,
    /// answered for (`inbound`) only on the anchor, the host of the first serving port in
    /// the anycast's order whose host has a leg.
    pub(super) fn anycast_eip(&self, host: &Host, e: &ElasticIp) -> Option<EipPlan> {
        let id = e.port.as_deref()?;
        if self.ports.contains_key(id) {
            return None;
        }
        let a = self.anycasts.get(id)?;
        let (x, _) = self.external_leg(host, e.address)?;
        let mut hosts = (a.ports.iter())
            .filter_map(|p| self.ports.get(p.as_str())?.host.as_deref())
            .filter(|h| x.legs.iter().any(|l| l.host == *h));
        let anchor = hosts.next()?;
        if anchor != host.id && !hosts.any(|h| h == host.id) {
            return None;
        }
        Some(EipPlan {
            id: e.id.clone(),
            address: e.address,
            port: a.id.clone(),
            private_ip: a.ip,
            vni: self.vpcs[a.vpc.as_str()].vni,
            bandwidth_mbit: e.bandwidth_mbit,
            external: x.id.clone(),
            anycast: true,
            inbound: anchor == host.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::compile_all;
    use crate::model::{NetworkModel, Port};
    use crate::names;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// [`crate::lab::fixtures::anycast_model`] with `pa4` (sn-a1, on no host) serving too.
    fn anycast_model() -> NetworkModel {
        let mut m = crate::lab::fixtures::anycast_model();
        let mut pa4: Port = crate::lab::fixtures::port(
            "pa4",
            "vpc-a",
            "sn-a1",
            "host-a",
            "10.0.1.12",
            "02:00:00:0a:01:0c",
            &["sg-web"],
        );
        pa4.host = None;
        m.ports.push(pa4);
        m.anycasts[0].ports = vec!["pa2".into(), "pa1".into(), "pa4".into()];
        m
    }

    /// Serving ports may send from the address (not in ARP); traffic to it is judged by
    /// the first local serving port's ingress chain, once per zone and address.
    #[test]
    fn anycast_nft_snapshots() {
        let plans = compile_all(&crate::lab::fixtures::anycast_model()).unwrap();
        for h in ["host-a", "host-b"] {
            insta::assert_snapshot!(format!("anycast_nft_{h}"), crate::nft::render(&plans[h]));
        }
        insta::assert_json_snapshot!("anycast_plan_host-a", plans["host-a"]);
    }

    #[test]
    fn every_host_of_the_vpc_routes_to_the_realised_ports_and_only_they_serve() {
        let m = anycast_model();
        let plans = compile_all(&m).unwrap();
        for host in ["host-a", "host-b"] {
            let p = &plans[host];
            let v = p.vpcs.iter().find(|v| v.vpc == "vpc-a").unwrap();
            let [a] = v.anycasts.as_slice() else {
                panic!("{host}: {:?}", v.anycasts)
            };
            assert_eq!(a.id, "lb-1");
            assert_eq!(a.ip, ip("10.0.1.200"));
            assert_eq!(a.router_dev, names::router_dev("sn-a1"));
            assert_eq!(a.gateway_mac.to_string(), "02:00:00:00:a1:01");
            // pa4 is on no host: not a next hop.
            assert_eq!(a.next_hops, vec![ip("10.0.1.10"), ip("10.0.1.11")]);
            // The other VPC (same CIDR) knows nothing of it.
            assert!(p
                .vpcs
                .iter()
                .filter(|v| v.vpc != "vpc-a")
                .all(|v| v.anycasts.is_empty()));
            for port in &p.ports {
                let want = if ["pa1", "pa2"].contains(&port.id.as_str()) {
                    vec![ip("10.0.1.200")]
                } else {
                    vec![]
                };
                assert_eq!(port.serves, want, "{host}: {}", port.id);
            }
        }
    }

    #[test]
    fn an_anycast_whose_ports_are_nowhere_is_a_blackhole() {
        let mut m = anycast_model();
        m.anycasts[0].ports = vec!["pa4".into()];
        let plans = compile_all(&m).unwrap();
        let v = &plans["host-a"].vpcs[0];
        assert_eq!(v.anycasts[0].next_hops, Vec::<Ipv4Addr>::new());
        assert!(plans
            .values()
            .flat_map(|p| &p.ports)
            .all(|p| p.serves.is_empty()));
        // Without any anycast the plans are what they were (the fields are omitted).
        m.anycasts.clear();
        let json = serde_json::to_string(&compile_all(&m).unwrap()["host-a"]).unwrap();
        assert!(
            !json.contains("anycasts") && !json.contains("serves"),
            "{json}"
        );
    }

    /// [`crate::lab::fixtures::external_model`] (a port's elastic IP `eip-a` on pa1, a NAT
    /// gateway for vpc-a on host-b) with anycast `lb-1` (10.0.1.200, served by pa1 on
    /// host-a and pa2 on host-b) and elastic IP `eip-lb` (203.0.113.70, 30 Mbit/s) on it.
    fn anycast_eip_model() -> NetworkModel {
        let mut m = crate::lab::fixtures::external_model();
        m.anycasts = crate::lab::fixtures::anycast_model().anycasts;
        m.elastic_ips.push(crate::model::ElasticIp {
            id: "eip-lb".into(),
            address: ip("203.0.113.70"),
            port: Some("lb-1".into()),
            bandwidth_mbit: Some(30),
        });
        m
    }

    /// Stateless NAT in every router with a serving port (no `dnat to`/`snat to`, notrack,
    /// marked out of the uplink before the NAT gateway's sources); in the host table, the
    /// elastic IP untracked, and what the router sends from outside to the remote replica.
    #[test]
    fn anycast_eip_nft_snapshots() {
        let plans = compile_all(&anycast_eip_model()).unwrap();
        for h in ["host-a", "host-b"] {
            let r = crate::nft::render_router(&plans[h], 42).unwrap();
            insta::assert_snapshot!(format!("anycast_eip_router_nft_{h}"), r);
        }
        insta::assert_snapshot!(
            "anycast_eip_host_nft_host-a",
            crate::nft::render(&plans["host-a"])
        );
    }

    #[test]
    fn an_anycasts_eip_is_on_every_serving_host_and_answered_on_the_anchor() {
        let mut m = anycast_eip_model();
        let eip = |plans: &std::collections::BTreeMap<String, crate::plan::HostPlan>, h: &str| {
            plans[h]
                .elastic_ips
                .iter()
                .find(|e| e.id == "eip-lb")
                .cloned()
        };
        let plans = compile_all(&m).unwrap();
        let (a, b) = (
            eip(&plans, "host-a").unwrap(),
            eip(&plans, "host-b").unwrap(),
        );
        assert_eq!((a.port.as_str(), a.private_ip), ("lb-1", ip("10.0.1.200")));
        assert!(a.anycast && b.anycast);
        assert_eq!(
            (a.inbound, b.inbound),
            (true, false),
            "pa1 (host-a) is first"
        );
        for h in ["host-a", "host-b"] {
            let p = &plans[h];
            assert!(p.vpcs[0].uplink.is_some(), "{h}");
            assert!(p.externals[0].addresses.contains(&(ip("203.0.113.70"), 42)));
        }
        // The anchor follows the order of the serving ports.
        m.anycasts[0].ports.reverse();
        let plans = compile_all(&m).unwrap();
        let (a, b) = (
            eip(&plans, "host-a").unwrap(),
            eip(&plans, "host-b").unwrap(),
        );
        assert_eq!((a.inbound, b.inbound), (false, true));
        // A host without a leg neither carries it nor anchors it.
        m.external_networks[0].legs.retain(|l| l.host != "host-b");
        m.nat_gateways.clear();
        let plans = compile_all(&m).unwrap();
        assert!(eip(&plans, "host-a").unwrap().inbound);
        assert_eq!(eip(&plans, "host-b"), None);
        // A port's elastic IP is unchanged: inbound, not an anycast's, neither field in JSON.
        let json = serde_json::to_string(&plans["host-a"].elastic_ips).unwrap();
        assert!(json.contains(r#""id":"eip-a""#), "{json}");
        assert_eq!(json.matches("inbound").count(), 0, "{json}");
        assert_eq!(json.matches(r#""anycast":true"#).count(), 1, "{json}");
    }

    #[test]
    fn anycasts_are_sorted_by_id_and_plans_deterministic() {
        let mut m = anycast_model();
        let mut b = m.anycasts[0].clone();
        b.id = "lb-0".into();
        b.ip = ip("10.0.1.201");
        b.ports = vec!["pa1".into()];
        m.anycasts.push(b);
        let plans = compile_all(&m).unwrap();
        let ids: Vec<&str> = plans["host-b"].vpcs[0]
            .anycasts
            .iter()
            .map(|a| a.id.as_str())
            .collect();
        assert_eq!(ids, ["lb-0", "lb-1"]);
        let pa1 = plans["host-a"]
            .ports
            .iter()
            .find(|p| p.id == "pa1")
            .unwrap();
        assert_eq!(pa1.serves, vec![ip("10.0.1.200"), ip("10.0.1.201")]);
        let mut shuffled = m.clone();
        shuffled.anycasts.reverse();
        shuffled.ports.reverse();
        assert_eq!(compile_all(&shuffled).unwrap(), plans);
    }
}
