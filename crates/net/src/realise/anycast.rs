//! Anycast addresses in a VPC's router namespace (see `compile/anycast.rs`): one route per
//! address in the main table, tagged with our routing protocol number
//! ([`ANYCAST_ROUTE_PROTO`]) so that ours can be told from anything else:
//! `V/32 proto 121 nexthop via A1 dev D nexthop via A2 dev D` (equal cost, hashed on the
//! L4 header: `fib_multipath_hash_policy = 1` among the router's sysctls), `V/32 proto 121
//! via A1 dev D` for one serving port, `blackhole V/32 proto 121` for none. Observe → diff
//! → act like the rest: `ip -j route show table main proto 121`, then `route replace` for
//! the missing or different and `route del … proto 121` for ours that are not planned.
//! (ARP for the address is answered in the host namespace, `realise/links.rs`.)
use std::collections::BTreeMap;

use super::observe::{parse_json, route_dst};
use super::{Batch, Cmd, RealiseError, Realiser, Runner};
use crate::plan::AnycastPlan;
use serde_json::Value;

/// The routing protocol number of our anycast routes (unassigned in iproute2's
/// `rt_protos`): `ip route show proto 121` lists exactly them.
pub const ANYCAST_ROUTE_PROTO: u8 = 121;

/// Where an anycast route sends its address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hops {
    /// Dropped: no serving port is realised anywhere.
    Blackhole,
    /// (next hop address, device), sorted; one or more.
    Via(Vec<(String, String)>),
    /// Anything else (a route type we never make): replaced.
    Other,
}

/// Destination (`a.b.c.d/len`) → what the route does.
type Routes = BTreeMap<String, Hops>;

impl<R: Runner> Realiser<R> {
    /// Makes our routes in the router namespace's main table match `anycasts`; returns the
    /// number of commands run.
    pub(super) fn apply_anycast_routes(
        &self,
        rns: Option<&str>,
        anycasts: &[AnycastPlan],
    ) -> Result<usize, RealiseError> {
        let proto = ANYCAST_ROUTE_PROTO.to_string();
        let out = self.run(
            Cmd::new(
                rns,
                &[
                    "ip", "-j", "route", "show", "table", "main", "proto", &proto,
                ],
            )
            .tolerant(),
        )?;
        // A namespace without a main table yet: `ip -j` prints an unterminated list.
        let have = if out.trim() == "[" {
            Routes::new()
        } else {
            observed(&parse_json("ip route show", &out)?)
        };
        let want = wanted(anycasts);
        let mut b = Batch::default();
        for dst in have.keys().filter(|d| !want.contains_key(*d)) {
            b.push(format!("route del {dst} proto {proto}"));
        }
        for (dst, hops) in &want {
            if have.get(dst) != Some(hops) {
                b.push(replace(dst, hops));
            }
        }
        self.ip_batch(rns, &b)?;
        Ok(b.len())
    }
}

/// The routes the plan wants, by destination.
fn wanted(anycasts: &[AnycastPlan]) -> Routes {
    anycasts
        .iter()
        .map(|a| {
            let hops = if a.next_hops.is_empty() {
                Hops::Blackhole
            } else {
                let mut v: Vec<(String, String)> = a
                    .next_hops
                    .iter()
                    .map(|h| (h.to_string(), a.router_dev.clone()))
                    .collect();
                v.sort();
                Hops::Via(v)
            };
            (format!("{}/32", a.ip), hops)
        })
        .collect()
}

/// The `ip -batch` line that makes route `dst`.
fn replace(dst: &str, hops: &Hops) -> String {
    let p = ANYCAST_ROUTE_PROTO;
    match hops {
        Hops::Via(v) if v.len() == 1 => {
            format!(
                "route replace {dst} proto {p} via {} dev {}",
                v[0].0, v[0].1
            )
        }
        Hops::Via(v) => {
            let hops: String = v
                .iter()
                .map(|(ip, dev)| format!(" nexthop via {ip} dev {dev}"))
                .collect();
            format!("route replace {dst} proto {p}{hops}")
        }
        Hops::Blackhole | Hops::Other => format!("route replace blackhole {dst} proto {p}"),
    }
}

/// Our routes as `ip -j route show … proto 121` lists them.
fn observed(v: &[Value]) -> Routes {
    v.iter()
        .filter_map(|r| {
            let dst = route_dst(r)?;
            let via = |h: &Value| {
                Some((
                    h["gateway"].as_str()?.to_string(),
                    h["dev"].as_str()?.to_string(),
                ))
            };
            let hops = match (r["type"].as_str(), r["nexthops"].as_array()) {
                (Some("blackhole"), _) => Hops::Blackhole,
                (None | Some("unicast"), Some(nhs)) => {
                    let mut v: Vec<_> = nhs.iter().filter_map(via).collect();
                    v.sort();
                    if v.len() == nhs.len() && !v.is_empty() {
                        Hops::Via(v)
                    } else {
                        Hops::Other
                    }
                }
                (None | Some("unicast"), None) => {
                    via(r).map_or(Hops::Other, |h| Hops::Via(vec![h]))
                }
                _ => Hops::Other,
            };
            Some((dst, hops))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_routes_key_like_the_plan() {
        let json: Vec<Value> = serde_json::from_str(
            r#"[{"dst":"10.0.1.100","flags":[],"nexthops":[
                    {"gateway":"10.0.1.11","dev":"gw1","weight":1,"flags":[]},
                    {"gateway":"10.0.1.10","dev":"gw1","weight":1,"flags":[]}]},
                {"dst":"10.0.1.101","gateway":"10.0.1.10","dev":"gw1","flags":[]},
                {"type":"blackhole","dst":"10.0.1.102","flags":[]},
                {"type":"unreachable","dst":"10.0.1.103","flags":[]}]"#,
        )
        .unwrap();
        let have = observed(&json);
        let plan = |ip: &str, hops: &[&str]| AnycastPlan {
            id: ip.into(),
            ip: ip.parse().unwrap(),
            subnet: "s".into(),
            router_dev: "gw1".into(),
            gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
            next_hops: hops.iter().map(|h| h.parse().unwrap()).collect(),
        };
        let want = wanted(&[
            plan("10.0.1.100", &["10.0.1.10", "10.0.1.11"]),
            plan("10.0.1.101", &["10.0.1.10"]),
            plan("10.0.1.102", &[]),
            plan("10.0.1.103", &[]),
        ]);
        for d in ["10.0.1.100/32", "10.0.1.101/32", "10.0.1.102/32"] {
            assert_eq!(have[d], want[d], "{d}");
        }
        assert_eq!(have["10.0.1.103/32"], Hops::Other);
        assert_eq!(
            replace("10.0.1.100/32", &want["10.0.1.100/32"]),
            "route replace 10.0.1.100/32 proto 121 nexthop via 10.0.1.10 dev gw1 nexthop via 10.0.1.11 dev gw1"
        );
        assert_eq!(
            replace("10.0.1.101/32", &want["10.0.1.101/32"]),
            "route replace 10.0.1.101/32 proto 121 via 10.0.1.10 dev gw1"
        );
        assert_eq!(
            replace("10.0.1.102/32", &want["10.0.1.102/32"]),
            "route replace blackhole 10.0.1.102/32 proto 121"
        );
    }
}
