//! Load balancers in the SDN controller: where each is realised (its host: the current
//! one while it stays Ready, else the first Ready host by id — with a leg on the external
//! network of its elastic IP, for an external one, and likewise each replica's), so that
//! its virtual address's NIC is
//! a port of that host, and the security group of that port (the listener ports open to
//! everyone, and ping), the group the load balancer's NIC is in. With replicas
//! (`model/src/load_balancer/replicas.rs`), each replica's NIC is the port, placed by
//! [`place_replicas`], and the virtual address becomes an anycast address served by them
//! ([`lb_anycasts`]). The host's agent serves it (`agent/src/load_balancer/`).

use std::collections::{BTreeMap, HashMap};

use yunhan_model::{HostPhase, LbProtocol, LoadBalancer};
use yunhan_net::model as net;
use yunhan_net::{Ipv4Cidr, ObjectKind};
use yunhan_store::objects::Doc;

use super::Inputs;

/// Load balancer id → for each replica (one for a load balancer without replicas) its
/// host id, or why no host can carry it.
pub type LbHosts = BTreeMap<String, Vec<Result<String, String>>>;

/// The host of every load balancer (of each of its replicas) that has its address.
pub(super) fn place_load_balancers(
    inp: &Inputs,
    hosts: &[net::Host],
    externals: &[net::ExternalNetwork],
) -> LbHosts {
    let mut ready: Vec<&str> = inp
        .hosts
        .iter()
        .filter(|h| {
            h.status.phase == HostPhase::Ready && hosts.iter().any(|x| x.id == h.metadata.id)
        })
        .map(|h| h.metadata.id.as_str())
        .collect();
    ready.sort();
    let mut out = LbHosts::new();
    for lb in inp
        .load_balancers
        .iter()
        .filter(|l| !l.status.nic.is_empty())
    {
        let (fit, why) = eligible(lb, &ready, externals);
        let placed = if lb.status.replicas.is_empty() {
            let current = Some(lb.status.host.as_str()).filter(|h| fit.contains(h));
            let chosen = current.or_else(|| fit.first().copied());
            vec![chosen.map(str::to_string).ok_or(why)]
        } else {
            let current: Vec<&str> = lb.status.replicas.iter().map(|r| r.host.as_str()).collect();
            let placed = place_replicas(&current, &fit).into_iter();
            placed.map(|p| p.map_err(|_| why.clone())).collect()
        };
        out.insert(lb.metadata.id.clone(), placed);
    }
    out
}

/// The Ready hosts (`ready`, sorted) that may carry `lb` (or each of its replicas): for an
/// external one, those with a leg on its elastic IP's network; and what to say when none
/// may. A load balancer without replicas stays on its host while that fits, else takes
/// the first that does; replicas are placed among them by [`place_replicas`].
fn eligible<'a>(
    lb: &Doc<LoadBalancer>,
    ready: &[&'a str],
    externals: &[net::ExternalNetwork],
) -> (Vec<&'a str>, String) {
    let leg = external_of(lb, externals);
    let fits = |h: &str| match &leg {
        Some(x) => x.legs.iter().any(|l| l.host == h),
        None => true,
    };
    let why = match &leg {
        Some(x) => format!("no Ready host has a leg on external network {}", x.cidr),
        None => "no Ready host".to_string(),
    };
    (ready.iter().copied().filter(|h| fits(h)).collect(), why)
}

/// Replicas' hosts (`current`: where each is now, empty for none; `ready`: sorted): each
/// stays on its host while that is Ready (a move would only make its flows change
/// hosts); the others go, one by one, to the Ready host carrying fewest of this load
/// balancer's replicas, the first by id among equals. So replicas are on distinct hosts
/// while there are enough, and a lost host's replicas go to survivors.
pub(super) fn place_replicas(current: &[&str], ready: &[&str]) -> Vec<Result<String, String>> {
    let mut placed: Vec<Option<&str>> = current
        .iter()
        .map(|h| ready.iter().copied().find(|r| r == h))
        .collect();
    for i in 0..placed.len() {
        if placed[i].is_some() {
            continue;
        }
        let load = |h: &&str| placed.iter().filter(|p| **p == Some(*h)).count();
        placed[i] = ready.iter().min_by_key(|h| (load(h), **h)).copied();
    }
    placed
        .into_iter()
        .map(|h| {
            h.map(str::to_string)
                .ok_or_else(|| "no Ready host".to_string())
        })
        .collect()
}

/// The external network of an external load balancer's elastic IP.
fn external_of<'a>(
    lb: &Doc<LoadBalancer>,
    externals: &'a [net::ExternalNetwork],
) -> Option<&'a net::ExternalNetwork> {
    let addr = lb.status.external_address.parse().ok()?;
    externals.iter().find(|x| x.cidr.contains(addr))
}

/// The id of the security group of load balancer `lb`'s NIC.
pub fn lb_group(lb: &str) -> String {
    format!("{lb}-listeners")
}

/// Each NIC of a load balancer that is a port → its load balancer's id and its host: a
/// replica's NIC is on its replica's host (the address NIC of a load balancer with
/// replicas is no port: [`lb_anycast_nics`]).
pub(super) fn lb_nics<'a>(
    inp: &'a Inputs,
    lb_hosts: &LbHosts,
) -> HashMap<&'a str, (&'a str, Option<String>)> {
    let mut out = HashMap::new();
    for l in &inp.load_balancers {
        let id = l.metadata.id.as_str();
        let hosts = lb_hosts.get(id).map(Vec::as_slice).unwrap_or_default();
        let host = |i: usize| hosts.get(i).and_then(|h| h.clone().ok());
        if l.status.replicas.is_empty() {
            out.insert(l.status.nic.as_str(), (id, host(0)));
        }
        for (i, r) in l.status.replicas.iter().enumerate() {
            out.insert(r.nic.as_str(), (id, host(i)));
        }
    }
    out
}

/// The address NICs of load balancers with replicas → the load balancer (its anycast
/// address's id). Such a NIC is no port; an elastic IP bound to it is the anycast's.
pub(super) fn lb_anycast_nics(inp: &Inputs) -> HashMap<&str, &str> {
    (inp.load_balancers.iter())
        .filter(|l| !l.status.replicas.is_empty())
        .map(|l| (l.status.nic.as_str(), l.metadata.id.as_str()))
        .collect()
}

/// A load balancer whose anycast address the model refused cannot be served: every
/// replica `Failed` with the reason.
pub(super) fn fail_unrouted_lbs(failed: &super::Failed, lb_hosts: &mut LbHosts) {
    for ((kind, id), why) in failed {
        if let (ObjectKind::Anycast, Some(placed)) = (kind, lb_hosts.get_mut(id)) {
            for p in placed.iter_mut() {
                *p = Err(format!("its address: {why}"));
            }
        }
    }
}

/// The virtual address of each load balancer with replicas, served by their NICs.
pub(super) fn lb_anycasts(inp: &Inputs, failed: &mut super::Failed) -> Vec<net::Anycast> {
    let mut out = Vec::new();
    for l in inp
        .load_balancers
        .iter()
        .filter(|l| !l.status.replicas.is_empty())
    {
        let id = &l.metadata.id;
        let Some(ip) = super::parse_address(failed, ObjectKind::Anycast, id, &l.status.address)
        else {
            continue;
        };
        out.push(net::Anycast {
            id: id.clone(),
            vpc: l.status.vpc.clone(),
            subnet: l.spec.subnet.clone(),
            ip,
            ports: l.status.replicas.iter().map(|r| r.nic.clone()).collect(),
        });
    }
    out
}

/// Each load balancer's group: its listeners' ports (tcp) and ping open to everyone.
pub(super) fn lb_groups(inp: &Inputs) -> Vec<net::SecurityGroup> {
    let anyone = net::Peer::Cidr(Ipv4Cidr::containing(std::net::Ipv4Addr::UNSPECIFIED, 0));
    let rule = |protocol, ports| net::Rule {
        direction: net::Direction::Ingress,
        protocol,
        ports,
        peer: anyone.clone(),
    };
    inp.load_balancers
        .iter()
        .filter(|l| !l.status.vpc.is_empty())
        .map(|l| {
            let mut rules = vec![rule(net::Protocol::Icmp, None)];
            rules.extend(l.spec.listeners.iter().map(|x| {
                let protocol = match x.protocol {
                    LbProtocol::Udp => net::Protocol::Udp,
                    _ => net::Protocol::Tcp,
                };
                let ports = net::PortRange {
                    from: x.port,
                    to: x.port,
                };
                rule(protocol, Some(ports))
            }));
            net::SecurityGroup {
                id: lb_group(&l.metadata.id),
                vpc: l.status.vpc.clone(),
                rules,
            }
        })
        .collect()
}

/// Writes where each load balancer (each replica) goes: a new host resets it to
/// `Provisioning` (its agent reports `Active`); no host at all is `Failed` with the
/// reason. The agent's own phase and message are left alone while the host stays.
pub(super) async fn write_lb_hosts(
    objects: &yunhan_store::objects::Objects,
    lb_hosts: &LbHosts,
) -> Result<(), yunhan_store::objects::ObjectError> {
    // One listing; only the load balancers whose placement changes are written.
    for lb in objects.list_all::<LoadBalancer>(None).await? {
        let Some(placed) = lb_hosts.get(&lb.metadata.id) else {
            continue;
        };
        if !replace(placed, &mut lb.status.clone()) {
            continue;
        }
        let id = &lb.metadata.id;
        objects
            .modify::<LoadBalancer>(id, |doc| {
                let changed = replace(placed, &mut doc.status);
                if changed {
                    tracing::info!(lb = %id, host = %doc.status.host, "load balancer placed");
                }
                changed
            })
            .await?;
    }
    Ok(())
}

/// Puts the placement into `st` (of the load balancer, or of each replica: a new host
/// clears what the former one served); true when that changed it.
fn replace(placed: &[Result<String, String>], st: &mut yunhan_model::LoadBalancerStatus) -> bool {
    if st.replicas.is_empty() {
        let change = placed
            .first()
            .and_then(|p| placement_change(p, &st.host, st.phase, &st.message));
        let Some(new) = change else {
            return false;
        };
        (st.host, st.phase, st.message) = new;
        st.served.clear();
        st.listeners.clear();
        return true;
    }
    let mut changed = false;
    for (p, r) in placed.iter().zip(st.replicas.iter_mut()) {
        if let Some(new) = placement_change(p, &r.host, r.phase, &r.message) {
            (r.host, r.phase, r.message) = new;
            r.served.clear();
            r.listeners.clear();
            changed = true;
        }
    }
    if changed {
        st.sum_replicas();
    }
    changed
}

/// The (host, phase, message) a status must take, if it must change.
fn placement_change(
    placed: &Result<String, String>,
    host: &str,
    phase: yunhan_model::LbPhase,
    message: &str,
) -> Option<(String, yunhan_model::LbPhase, String)> {
    use yunhan_model::LbPhase;
    match placed {
        Ok(h) if host != h => Some((h.clone(), LbPhase::Provisioning, String::new())),
        Ok(_) => None,
        Err(why) if host.is_empty() && phase == LbPhase::Failed && message == why => None,
        Err(why) => Some((String::new(), LbPhase::Failed, why.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::place_replicas;
    use proptest::prelude::*;

    fn hosts(p: &[Result<String, String>]) -> Vec<&str> {
        p.iter().map(|h| h.as_deref().unwrap_or("-")).collect()
    }

    #[test]
    fn replicas_spread_and_survivors_adopt() {
        assert_eq!(
            hosts(&place_replicas(&["", ""], &["a", "b", "c"])),
            ["a", "b"]
        );
        // They stay where they are while their host is Ready.
        assert_eq!(
            hosts(&place_replicas(&["c", ""], &["a", "b", "c"])),
            ["c", "a"]
        );
        // b lost: its replica goes to the least loaded survivor.
        assert_eq!(
            hosts(&place_replicas(&["a", "b", "c"], &["a", "c"])),
            ["a", "a", "c"]
        );
        assert_eq!(hosts(&place_replicas(&["a", "b"], &[])), ["-", "-"]);
    }

    proptest! {
        /// Every replica has a Ready host when there is one; the kept ones stay; no host
        /// carries two more than another when all replicas were new.
        #[test]
        fn placement_is_total_and_stable(
            n in 1usize..5,
            ready in proptest::collection::btree_set("[a-e]", 0..5),
            kept in proptest::collection::vec("[a-f]?", 5),
        ) {
            let ready: Vec<&str> = ready.iter().map(String::as_str).collect();
            let current: Vec<&str> = kept.iter().take(n).map(String::as_str).collect();
            let placed = place_replicas(&current, &ready);
            prop_assert_eq!(placed.len(), current.len());
            for (p, c) in placed.iter().zip(&current) {
                match p {
                    Ok(h) => {
                        prop_assert!(ready.contains(&h.as_str()));
                        if ready.contains(c) {
                            prop_assert_eq!(h.as_str(), *c);
                        }
                    }
                    Err(_) => prop_assert!(ready.is_empty()),
                }
            }
            let fresh = place_replicas(&vec![""; current.len()], &ready);
            let count = |h: &str| fresh.iter().filter(|p| p.as_deref() == Ok(h)).count();
            if let (Some(max), Some(min)) = (ready.iter().map(|h| count(h)).max(), ready.iter().map(|h| count(h)).min()) {
                prop_assert!(max - min <= 1);
            }
        }
    }
}
