//! Security groups in a host's plan: each local port's ingress and egress rules (the union
//! of its groups' rules) and the address set of every group those rules refer to. The
//! rendering into nftables is `nft/security_group.rs`.
use std::collections::BTreeSet;

use super::Index;
use crate::model::{Direction, Peer, Port};
use crate::plan::{GroupSet, PeerPlan, RulePlan};

/// A local port's part of the security groups.
pub(super) struct PortSecurity {
    /// The port's groups, sorted, without duplicates.
    pub groups: Vec<String>,
    pub ingress: Vec<RulePlan>,
    /// `None` when no group of the port has egress rules (egress is open).
    pub egress: Option<Vec<RulePlan>>,
}

impl<'a> Index<'a> {
    /// The rules of port `p`; every group they refer to (its own and peer groups) is added
    /// to `referenced`.
    pub(super) fn port_security(
        &self,
        p: &Port,
        referenced: &mut BTreeSet<&'a str>,
    ) -> PortSecurity {
        let mut groups = p.security_groups.clone();
        groups.sort();
        groups.dedup();
        let mut ingress = BTreeSet::new();
        let mut egress = BTreeSet::new();
        for g in &groups {
            let group = self.groups[g.as_str()];
            referenced.insert(group.id.as_str());
            for r in &group.rules {
                let peer = match &r.peer {
                    Peer::Cidr(c) => PeerPlan::Cidr(*c),
                    Peer::Group(o) => {
                        referenced.insert(self.groups[o.as_str()].id.as_str());
                        PeerPlan::Group(o.clone())
                    }
                };
                let rp = RulePlan {
                    protocol: r.protocol,
                    ports: r.ports,
                    peer,
                };
                match r.direction {
                    Direction::Ingress => ingress.insert(rp),
                    Direction::Egress => egress.insert(rp),
                };
            }
        }
        PortSecurity {
            groups,
            ingress: ingress.into_iter().collect(),
            egress: (!egress.is_empty()).then(|| egress.into_iter().collect()),
        }
    }

    /// The address sets of the `referenced` groups: the addresses of their bound ports.
    pub(super) fn group_sets(&self, referenced: BTreeSet<&str>) -> Vec<GroupSet> {
        referenced
            .into_iter()
            .map(|g| GroupSet {
                id: g.to_string(),
                vpc: self.groups[g].vpc.clone(),
                members: self.members.get(g).cloned().unwrap_or_default(),
            })
            .collect()
    }
}
