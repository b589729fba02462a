//! Route tables: routes for the traffic of some subnets of a VPC — to an appliance NIC
//! (a firewall, a VPN, a VM joining two VPCs), the NAT gateway, the external gateway, or
//! back to the VPC's own routing — with priorities (the resource and its validation).
//! Re-exported as `yunhan_model::network::…`. The SDN controller maps them into the
//! network compiler's model (`controller/src/network/route_table.rs`); the compiler and
//! realiser make a policy-routing table of each in the VPC's router namespace
//! (`net/src/compile/route_table.rs`, `net/src/realise/route_table.rs`). Design note:
//! `docs/network.md`, "Route tables".

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::kind_consts;
use crate::network::{check_refs, parse_cidr, NetworkPhase};
use crate::{validate_name, ApiError, Kind};

/// The priority a route gets when none is given.
pub const DEFAULT_ROUTE_PRIORITY: u32 = 100;

/// Where a route sends its traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RouteTargetKind {
    /// The VPC's own routing (to exempt part of a wider route).
    #[default]
    Local,
    /// A NIC of the VPC (`nic`): an appliance that forwards. While it is not running
    /// anywhere, the destination is unreachable (never routed around it).
    Nic,
    /// The VPC's NAT gateway, which then translates the associated subnets.
    NatGateway,
    /// The external gateway: out through the sender's elastic IP.
    External,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// An IPv4 CIDR (`0.0.0.0/0` for everything); longest prefix wins.
    pub destination: String,
    pub target: RouteTargetKind,
    /// With `target: nic`: the NIC (name or id; stored as the id), of the same VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<String>,
    /// Between routes to the same destination, the lowest wins.
    #[serde(default = "default_priority")]
    pub priority: u32,
}

fn default_priority() -> u32 {
    DEFAULT_ROUTE_PRIORITY
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteTableSpec {
    /// The VPC (name or id; stored as the id). Cannot change.
    pub vpc: String,
    /// Subnets whose traffic follows this table (names or ids; stored as ids); a subnet is
    /// in at most one table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RouteTableStatus {
    /// `Failed` when the SDN controller cannot realise it (`message` says why); everything
    /// else keeps being realised. Cleared once the problem goes away.
    pub phase: NetworkPhase,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Routes for the traffic of some subnets of a VPC.
pub struct RouteTable;
impl Kind for RouteTable {
    kind_consts!("RouteTable", "route-tables", "rtb", Project, admin_write: false);
    type Spec = RouteTableSpec;
    type Status = RouteTableStatus;
    fn validate(spec: &RouteTableSpec) -> Result<(), ApiError> {
        validate_name("spec.vpc", &spec.vpc)?;
        check_refs("spec.subnets", &spec.subnets, 64)?;
        if spec.routes.len() > 200 {
            return Err(ApiError::invalid_field("spec.routes", "at most 200 routes"));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, r) in spec.routes.iter().enumerate() {
            let field = format!("spec.routes[{i}]");
            let dst = parse_cidr(&format!("{field}.destination"), &r.destination)?;
            match (r.target, &r.nic) {
                (RouteTargetKind::Nic, Some(n)) => validate_name(&format!("{field}.nic"), n)?,
                (RouteTargetKind::Nic, None) => {
                    return Err(ApiError::invalid_field(&field, "target nic needs a nic"))
                }
                (_, Some(_)) => {
                    return Err(ApiError::invalid_field(
                        &field,
                        "only a route with target nic names a nic",
                    ))
                }
                (_, None) => {}
            }
            if !seen.insert((dst, r.priority)) {
                return Err(ApiError::invalid_field(
                    &field,
                    format!(
                        "a route to {dst} with priority {} is already there",
                        r.priority
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, target: RouteTargetKind, nic: Option<&str>) -> Route {
        Route {
            destination: dst.into(),
            target,
            nic: nic.map(Into::into),
            priority: DEFAULT_ROUTE_PRIORITY,
        }
    }

    #[test]
    fn routes_are_checked() {
        let spec = |routes| RouteTableSpec {
            vpc: "net1".into(),
            subnets: vec!["s1".into()],
            routes,
        };
        RouteTable::validate(&spec(vec![
            route("0.0.0.0/0", RouteTargetKind::Nic, Some("fw-nic0")),
            route("10.20.0.0/16", RouteTargetKind::Local, None),
        ]))
        .unwrap();
        for (bad, why) in [
            (
                route("10.0.0.1/16", RouteTargetKind::Local, None),
                "host bits",
            ),
            (
                route("0.0.0.0/0", RouteTargetKind::Nic, None),
                "needs a nic",
            ),
            (
                route("0.0.0.0/0", RouteTargetKind::External, Some("x")),
                "only a route with target nic",
            ),
        ] {
            let e = RouteTable::validate(&spec(vec![bad])).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        let twice = route("0.0.0.0/0", RouteTargetKind::Local, None);
        let e = RouteTable::validate(&spec(vec![twice.clone(), twice])).unwrap_err();
        assert!(e.to_string().contains("already there"), "{e}");
    }
}
