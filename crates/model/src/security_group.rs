//! Security groups: stateful allow rules for the NICs that are members (the resource and
//! its validation). Re-exported as `yunhan_model::network::…`; the SDN controller maps them
//! into the network compiler's model (`controller/src/network/security_group.rs`), which
//! compiles and renders them per host (`net/src/compile/security_group.rs`,
//! `net/src/nft/security_group.rs`). Design note: `docs/network.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{kind_consts, validate_optional_name};
use crate::network::{parse_cidr, NetworkPhase};
use crate::{validate_name, ApiError, Kind};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleDirection {
    #[default]
    Ingress,
    Egress,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleProtocol {
    #[default]
    Any,
    Tcp,
    Udp,
    Icmp,
}

/// One allow rule. The peer is a CIDR or another group of the same VPC (by id); neither
/// means everyone (`0.0.0.0/0`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupRule {
    pub direction: RuleDirection,
    pub protocol: RuleProtocol,
    /// First port (tcp/udp only; absent: every port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_from: Option<u16>,
    /// Last port, inclusive (default: `port_from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_to: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// A security group id (its members' addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl SecurityGroupRule {
    /// The inclusive port range, if any.
    pub fn ports(&self) -> Option<(u16, u16)> {
        self.port_from.map(|f| (f, self.port_to.unwrap_or(f)))
    }

    fn validate(&self, i: usize) -> Result<(), ApiError> {
        let field = format!("spec.rules[{i}]");
        let bad = |m: &str| Err(ApiError::invalid_field(&field, m.to_string()));
        if self.port_to.is_some() && self.port_from.is_none() {
            return bad("port_to needs port_from");
        }
        if let Some((from, to)) = self.ports() {
            if !matches!(self.protocol, RuleProtocol::Tcp | RuleProtocol::Udp) {
                return bad("ports only apply to tcp and udp rules");
            }
            if from == 0 || from > to {
                return bad("ports are 1–65535 and port_from ≤ port_to");
            }
        }
        if self.cidr.is_some() && self.group.is_some() {
            return bad("give a cidr or a group as the peer, not both");
        }
        if let Some(c) = &self.cidr {
            parse_cidr(&format!("{field}.cidr"), c)?;
        }
        validate_optional_name(&format!("{field}.group"), self.group.as_deref())?;
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupSpec {
    /// The VPC (name or id; stored as the id). Cannot change.
    pub vpc: String,
    #[serde(default)]
    pub rules: Vec<SecurityGroupRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityGroupStatus {
    /// `Failed` when the SDN controller cannot realise it (`message` says why); everything
    /// else keeps being realised. Cleared once the problem goes away.
    pub phase: NetworkPhase,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Stateful firewall rules for the NICs that are members. Ingress is denied unless a rule
/// allows it (members of the same group always reach each other); egress is open unless the
/// group has egress rules.
pub struct SecurityGroup;
impl Kind for SecurityGroup {
    kind_consts!("SecurityGroup", "security-groups", "sg", Project, admin_write: false);
    type Spec = SecurityGroupSpec;
    type Status = SecurityGroupStatus;
    fn validate(spec: &SecurityGroupSpec) -> Result<(), ApiError> {
        validate_name("spec.vpc", &spec.vpc)?;
        if spec.rules.len() > 100 {
            return Err(ApiError::invalid_field(
                "spec.rules",
                "at most 100 rules per group",
            ));
        }
        for (i, r) in spec.rules.iter().enumerate() {
            r.validate(i)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: RuleProtocol, from: Option<u16>, to: Option<u16>) -> SecurityGroupSpec {
        SecurityGroupSpec {
            vpc: "net1".into(),
            rules: vec![SecurityGroupRule {
                direction: RuleDirection::Ingress,
                protocol,
                port_from: from,
                port_to: to,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn rules_check_ports_and_protocols() {
        SecurityGroup::validate(&rule(RuleProtocol::Tcp, Some(22), None)).unwrap();
        SecurityGroup::validate(&rule(RuleProtocol::Udp, Some(1000), Some(2000))).unwrap();
        SecurityGroup::validate(&rule(RuleProtocol::Icmp, None, None)).unwrap();
        for bad in [
            rule(RuleProtocol::Icmp, Some(1), None),
            rule(RuleProtocol::Tcp, Some(0), None),
            rule(RuleProtocol::Tcp, Some(80), Some(79)),
            rule(RuleProtocol::Tcp, None, Some(80)),
        ] {
            let e = SecurityGroup::validate(&bad).unwrap_err();
            assert_eq!(e.details["field"], "spec.rules[0]", "{bad:?}");
        }
    }
}
