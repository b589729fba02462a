//! Route tables in a VPC's router namespace (see `compile/route_table.rs`): one policy
//! routing table each (from [`ROUTER_TABLE_ROUTES`]), holding its routes, and one `iif`
//! rule per associated subnet interface selecting it, before `main`. Observe → diff → act
//! like the rest: `ip -j route show table all` and `ip -j rule show`, then `route
//! replace`/`del` and `rule add`/`del` for the differences; tables and rules in our ranges
//! that are not planned go.
use std::collections::BTreeSet;

use super::observe::{parse_json, route_dst};
use super::{Batch, Cmd, RealiseError, Realiser, Runner};
use crate::addr::Ipv4Cidr;
use crate::plan::{RouteAction, RouteTablePlan, ROUTER_TABLE_ROUTES};
use serde_json::Value;

/// Priority of the first route-table rule (after the `local` table, before `main`).
const ROUTE_RULE_PREF: u64 = 1000;
/// How many tables and rules of ours a router may hold (the ranges we own).
const MAX_ROUTE_TABLES: u32 = 1000;

/// A route as a comparable key and the command that makes it.
type Want = BTreeSet<(u32, String)>;

impl<R: Runner> Realiser<R> {
    /// Makes the router namespace's route tables and their rules match `tables`.
    pub(super) fn apply_route_tables(
        &self,
        rns: Option<&str>,
        tables: &[RouteTablePlan],
    ) -> Result<usize, RealiseError> {
        let out = self.run(Cmd::new(
            rns,
            &["ip", "-j", "route", "show", "table", "all"],
        ))?;
        let have = routes_in_our_tables(&parse_json("ip route show", &out)?);
        let want: Want = tables
            .iter()
            .flat_map(|t| t.routes.iter().map(|r| (t.table, route_key(r))))
            .collect();
        let mut b = Batch::default();
        for (t, key) in have.difference(&want) {
            b.push(format!("route del {} table {t}", delete_spec(key)));
        }
        for (t, key) in want.difference(&have) {
            b.push(format!("route replace {key} table {t}"));
        }
        let rules: BTreeSet<(u64, String, String)> = tables
            .iter()
            .flat_map(|t| t.interfaces.iter().map(move |d| (t.table, d)))
            .enumerate()
            .map(|(i, (t, dev))| {
                (
                    ROUTE_RULE_PREF + i as u64,
                    format!("iif {dev}"),
                    t.to_string(),
                )
            })
            .collect();
        let ours = ROUTE_RULE_PREF..ROUTE_RULE_PREF + u64::from(MAX_ROUTE_TABLES);
        self.sync_rules(rns, &mut b, &rules, |p, _| ours.contains(&p))?;
        self.ip_batch(rns, &b)?;
        Ok(b.len())
    }
}

/// `[type ]DST metric M[ via IP dev DEV]`: what `ip route replace` takes, and the key the
/// observation yields for the same route.
fn route_key(r: &crate::plan::RoutePlan) -> String {
    let (d, m) = (r.destination, r.metric);
    match &r.action {
        RouteAction::Via { ip, dev } => format!("{d} metric {m} via {ip} dev {dev}"),
        RouteAction::Throw => format!("throw {d} metric {m}"),
        RouteAction::Blackhole => format!("blackhole {d} metric {m}"),
    }
}

/// What `ip route del` needs of a key: type, destination and metric.
fn delete_spec(key: &str) -> String {
    key.split(" via ").next().unwrap_or(key).to_string()
}

/// The routes of the tables we own, as (table, key).
fn routes_in_our_tables(v: &[Value]) -> Want {
    let ours = ROUTER_TABLE_ROUTES..ROUTER_TABLE_ROUTES + MAX_ROUTE_TABLES;
    v.iter()
        .filter_map(|r| {
            let table: u32 = r["table"].as_str()?.parse().ok()?;
            if !ours.contains(&table) {
                return None;
            }
            let dst = route_dst(r)?;
            let dst: Ipv4Cidr = dst.parse().ok()?;
            let m = r["metric"].as_u64().unwrap_or(0);
            let key = match (r["type"].as_str(), r["gateway"].as_str(), r["dev"].as_str()) {
                (Some(kind @ ("throw" | "blackhole")), _, _) => format!("{kind} {dst} metric {m}"),
                (None | Some("unicast"), Some(gw), Some(dev)) => {
                    format!("{dst} metric {m} via {gw} dev {dev}")
                }
                // Anything else in our tables is not ours to keep.
                (kind, _, _) => format!("{} {dst} metric {m}", kind.unwrap_or("unicast")),
            };
            Some((table, key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_routes_key_like_the_plan() {
        let json: Vec<Value> = serde_json::from_str(
            r#"[{"type":"throw","dst":"10.10.0.0/16","table":"200","flags":[]},
                {"dst":"default","gateway":"10.10.9.5","dev":"gw1","table":"200","metric":50,"flags":[]},
                {"type":"blackhole","dst":"10.30.0.1","table":"201","metric":5,"flags":[]},
                {"dst":"10.0.0.0/24","dev":"d0","protocol":"kernel","scope":"link","flags":[]},
                {"type":"local","dst":"10.0.0.1","dev":"d0","table":"local","flags":[]}]"#,
        )
        .unwrap();
        let have = routes_in_our_tables(&json);
        let want: Want = [
            (200, "throw 10.10.0.0/16 metric 0".to_string()),
            (200, "0.0.0.0/0 metric 50 via 10.10.9.5 dev gw1".to_string()),
            (201, "blackhole 10.30.0.1/32 metric 5".to_string()),
        ]
        .into();
        assert_eq!(have, want);
        assert_eq!(
            delete_spec("0.0.0.0/0 metric 50 via 10.10.9.5 dev gw1"),
            "0.0.0.0/0 metric 50"
        );
    }
}
