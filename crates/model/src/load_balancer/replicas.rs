//! A load balancer on several hosts at once (`spec.replicas`, issue #16's ECMP): one
//! virtual address, served by N replicas, each a port of its own in the load balancer's
//! subnet (a NIC `<name>-r<i>` the API makes, owned by the load balancer) realised on a
//! host the controller picks, distinct while there are enough Ready hosts. Every router
//! of the VPC sends the virtual address to the replicas' addresses as equal-cost next
//! hops (an L4 hash: a flow keeps its replica); every replica makes the same member choice
//! for the same flow (Vortex's Maglev, HAProxy's hashes) and translates from its own
//! address, so members answer the replica that holds the flow. A lost host's replicas
//! move, address and MAC, to a surviving host, which picks their flows up mid-stream.
//! Design note: `docs/load-balancer.md`, "Replicas".

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LbPhase, ListenerStatus, LoadBalancerSpec, LoadBalancerStatus};
use crate::ApiError;

/// The most replicas a load balancer may have.
pub const MAX_REPLICAS: u8 = 4;

/// One replica of a load balancer: its port, its host, what that host serves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LbReplica {
    /// Its NIC (owned by the load balancer) and the port as the agent plugs it.
    pub nic: String,
    /// Its own address: members see its connections come from it.
    pub address: String,
    pub device: String,
    pub mac: String,
    /// The host realising it (id), chosen by the controller.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    pub phase: LbPhase,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The configuration its host serves (hash).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub served: String,
    /// Its own counters and its own view of the members' health.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
}

impl LoadBalancerSpec {
    /// How many replicas serve it (1 when `replicas` is left out).
    pub fn replica_count(&self) -> u8 {
        self.replicas.unwrap_or(1)
    }

    pub(super) fn validate_replicas(&self) -> Result<(), ApiError> {
        let n = self.replica_count();
        if !(1..=MAX_REPLICAS).contains(&n) {
            return Err(ApiError::invalid_field(
                "spec.replicas",
                format!("a load balancer has 1 to {MAX_REPLICAS} replicas, not {n}"),
            ));
        }
        Ok(())
    }
}

impl LoadBalancerStatus {
    /// Sums the replicas up into the load balancer's own phase, message, served hash,
    /// hosts and listeners: `Failed` if one replica is (its message, named), `Active` when
    /// all are; counters summed by listener; a member's health as the first active replica
    /// sees it. Nothing changes without replicas.
    pub fn sum_replicas(&mut self) {
        let r = &self.replicas;
        if r.is_empty() {
            return;
        }
        let failed = r
            .iter()
            .enumerate()
            .find(|(_, x)| x.phase == LbPhase::Failed);
        self.phase = match failed {
            Some(_) => LbPhase::Failed,
            None if r.iter().all(|x| x.phase == LbPhase::Active) => LbPhase::Active,
            None => LbPhase::Provisioning,
        };
        self.message = failed
            .map(|(i, x)| format!("replica {}: {}", i + 1, x.message))
            .unwrap_or_default();
        let served = &r[0].served;
        self.served = if r.iter().all(|x| x.served == *served) {
            served.clone()
        } else {
            String::new()
        };
        let mut hosts: Vec<&str> = r.iter().map(|x| x.host.as_str()).collect();
        hosts.retain(|h| !h.is_empty());
        hosts.sort();
        hosts.dedup();
        self.host = hosts.join(",");
        self.listeners = summed_listeners(r);
    }
}

/// Listeners in the order the first reporting replica has them, counters summed.
fn summed_listeners(replicas: &[LbReplica]) -> Vec<ListenerStatus> {
    let mut active: Vec<&LbReplica> = replicas.iter().collect();
    active.sort_by_key(|x| x.phase != LbPhase::Active);
    let mut out: Vec<ListenerStatus> = Vec::new();
    for l in active.iter().flat_map(|x| &x.listeners) {
        match out.iter_mut().find(|o| o.name == l.name) {
            Some(o) => {
                o.connections += l.connections;
                o.bytes_in += l.bytes_in;
                o.bytes_out += l.bytes_out;
            }
            None => out.push(l.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemberHealth, MemberStatus};

    fn replica(phase: LbPhase, conns: u64, health: MemberHealth) -> LbReplica {
        LbReplica {
            host: format!("h{conns}"),
            phase,
            served: "abc".into(),
            listeners: vec![ListenerStatus {
                name: "tcp".into(),
                engine: "vortex-tc".into(),
                connections: conns,
                bytes_in: 10 * conns,
                bytes_out: 100 * conns,
                members: vec![MemberStatus {
                    address: "10.0.0.5".into(),
                    port: 80,
                    health,
                    ..Default::default()
                }],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn replicas_sum_up() {
        let mut s = LoadBalancerStatus {
            replicas: vec![
                replica(LbPhase::Provisioning, 1, MemberHealth::Unknown),
                replica(LbPhase::Active, 2, MemberHealth::Up),
            ],
            ..Default::default()
        };
        s.sum_replicas();
        assert_eq!(s.phase, LbPhase::Provisioning);
        assert_eq!(s.host, "h1,h2");
        assert_eq!(s.served, "abc");
        let l = &s.listeners[0];
        assert_eq!((l.connections, l.bytes_in, l.bytes_out), (3, 30, 300));
        assert_eq!(
            l.members[0].health,
            MemberHealth::Up,
            "the active replica's view"
        );

        s.replicas[0].phase = LbPhase::Active;
        s.replicas[1].served = "def".into();
        s.sum_replicas();
        assert_eq!(s.phase, LbPhase::Active);
        assert_eq!(s.served, "", "replicas serving different configurations");

        s.replicas[1].phase = LbPhase::Failed;
        s.replicas[1].message = "no Ready host".into();
        s.sum_replicas();
        assert_eq!(s.phase, LbPhase::Failed);
        assert_eq!(s.message, "replica 2: no Ready host");
    }

    #[test]
    fn replica_counts_are_checked() {
        let spec = |replicas, external| LoadBalancerSpec {
            subnet: "s1".into(),
            replicas,
            external,
            ..Default::default()
        };
        assert!(spec(None, true).validate_replicas().is_ok());
        assert!(spec(Some(4), false).validate_replicas().is_ok());
        assert!(spec(Some(2), true).validate_replicas().is_ok());
        for (bad, why) in [
            (spec(Some(0), false), "1 to 4 replicas, not 0"),
            (spec(Some(5), true), "not 5"),
        ] {
            let e = bad.validate_replicas().unwrap_err();
            assert!(e.message.contains(why), "{}", e.message);
        }
    }
}
