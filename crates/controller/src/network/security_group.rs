//! Security groups in the SDN controller: the store's groups → the network compiler's
//! groups (a group whose rules cannot be mapped is left out, saying why), and each VPC's
//! implicit default group, the group of NICs that name none (its members reach each other).
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use yunhan_model::network::{RuleDirection, RuleProtocol, SecurityGroupRule};
use yunhan_model::SecurityGroup;
use yunhan_net::addr::AddrError;
use yunhan_net::model as net;
use yunhan_net::{Ipv4Cidr, ObjectKind};
use yunhan_store::objects::Doc;

use super::{fail, Failed};

/// The id of the implicit group of NICs without security groups (members reach each other).
pub fn default_group(vpc: &str) -> String {
    format!("{vpc}-default")
}

/// The implicit default groups the `ports` are in (no rules: members reach each other).
pub(super) fn default_groups(ports: &[net::Port]) -> Vec<net::SecurityGroup> {
    let vpcs: BTreeSet<&str> = ports
        .iter()
        .flat_map(|p| &p.security_groups)
        .filter_map(|g| g.strip_suffix("-default"))
        .collect();
    vpcs.into_iter()
        .map(|vpc| net::SecurityGroup {
            id: default_group(vpc),
            vpc: vpc.to_string(),
            rules: vec![],
        })
        .collect()
}

/// Why a group's rule cannot be mapped (the text becomes the group's status message).
#[derive(Debug, thiserror::Error)]
enum RuleError {
    #[error("rule {rule}: cidr {cidr:?}: {source}")]
    Cidr {
        rule: usize,
        cidr: String,
        source: AddrError,
    },
}

/// A group's rules; a peer group is kept as given (the model checks it exists, in the VPC).
pub(super) fn map_groups(
    groups: &[Doc<SecurityGroup>],
    failed: &mut Failed,
) -> Vec<net::SecurityGroup> {
    let mut out = Vec::new();
    for g in groups {
        match g
            .spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| map_rule(i, r))
            .collect()
        {
            Ok(rules) => out.push(net::SecurityGroup {
                id: g.metadata.id.clone(),
                vpc: g.spec.vpc.clone(),
                rules,
            }),
            Err(why) => fail(
                failed,
                ObjectKind::SecurityGroup,
                &g.metadata.id,
                why.to_string(),
            ),
        }
    }
    out
}

fn map_rule(i: usize, r: &SecurityGroupRule) -> Result<net::Rule, RuleError> {
    let peer = match (&r.group, &r.cidr) {
        (Some(g), _) => net::Peer::Group(g.clone()),
        (None, Some(c)) => net::Peer::Cidr(c.parse().map_err(|source| RuleError::Cidr {
            rule: i,
            cidr: c.clone(),
            source,
        })?),
        (None, None) => net::Peer::Cidr(Ipv4Cidr::containing(Ipv4Addr::UNSPECIFIED, 0)),
    };
    Ok(net::Rule {
        direction: match r.direction {
            RuleDirection::Ingress => net::Direction::Ingress,
            RuleDirection::Egress => net::Direction::Egress,
        },
        protocol: match r.protocol {
            RuleProtocol::Any => net::Protocol::Any,
            RuleProtocol::Tcp => net::Protocol::Tcp,
            RuleProtocol::Udp => net::Protocol::Udp,
            RuleProtocol::Icmp => net::Protocol::Icmp,
        },
        ports: r.ports().map(|(from, to)| net::PortRange { from, to }),
        peer,
    })
}
