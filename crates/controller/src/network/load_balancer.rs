//! Load balancers in the SDN controller: where each is realised (its host: the current
//! one while it stays Ready, else the first Ready host by id — with a leg on the external
//! network of its elastic IP, for an external one), so that its virtual address's NIC is
//! a port of that host, and the security group of that port (the listener ports open to
//! everyone, and ping), the group the load balancer's NIC is in. The host's agent serves
//! it (`agent/src/load_balancer/`).

use std::collections::{BTreeMap, HashMap};

use yunhan_model::{HostPhase, LbProtocol, LoadBalancer};
use yunhan_net::model as net;
use yunhan_net::Ipv4Cidr;
use yunhan_store::objects::Doc;

use super::Inputs;

/// Load balancer id → its host id, or why no host can carry it.
pub type LbHosts = BTreeMap<String, Result<String, String>>;

/// The host of every load balancer that has its address.
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
        let leg = external_of(lb, externals);
        let fits = |h: &str| match &leg {
            Some(x) => x.legs.iter().any(|l| l.host == h),
            None => true,
        };
        let current = Some(lb.status.host.as_str()).filter(|h| ready.contains(h) && fits(h));
        let chosen = current.or_else(|| ready.iter().copied().find(|h| fits(h)));
        let placed = chosen.map(str::to_string).ok_or_else(|| match &leg {
            Some(x) => format!("no Ready host has a leg on external network {}", x.cidr),
            None => "no Ready host".to_string(),
        });
        out.insert(lb.metadata.id.clone(), placed);
    }
    out
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

/// NIC id → the id of its load balancer, for NICs that hold one's address.
pub(super) fn lb_of_nic(inp: &Inputs) -> HashMap<&str, &str> {
    inp.load_balancers
        .iter()
        .map(|l| (l.status.nic.as_str(), l.metadata.id.as_str()))
        .collect()
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

/// Writes where each load balancer goes: a new host resets it to `Provisioning` (its
/// agent reports `Active`); no host at all is `Failed` with the reason. The agent's own
/// phase and message are left alone while the host stays.
pub(super) async fn write_lb_hosts(
    objects: &yunhan_store::objects::Objects,
    lb_hosts: &LbHosts,
) -> Result<(), yunhan_store::objects::ObjectError> {
    // One listing; only the load balancers whose placement changes are written.
    for lb in objects.list_all::<LoadBalancer>(None).await? {
        let Some(placed) = lb_hosts.get(&lb.metadata.id) else {
            continue;
        };
        if placement_change(placed, &lb.status).is_none() {
            continue;
        }
        let id = &lb.metadata.id;
        objects
            .modify::<LoadBalancer>(id, |doc| match placement_change(placed, &doc.status) {
                Some((host, phase, message)) => {
                    tracing::info!(lb = %id, %host, %phase, "load balancer placed");
                    let st = &mut doc.status;
                    (st.host, st.phase, st.message) = (host, phase, message);
                    st.served.clear();
                    st.listeners.clear();
                    true
                }
                None => false,
            })
            .await?;
    }
    Ok(())
}

/// The (host, phase, message) a load balancer's status must take, if it must change.
fn placement_change(
    placed: &Result<String, String>,
    st: &yunhan_model::LoadBalancerStatus,
) -> Option<(String, yunhan_model::LbPhase, String)> {
    use yunhan_model::LbPhase;
    match placed {
        Ok(h) if st.host != *h => Some((h.clone(), LbPhase::Provisioning, String::new())),
        Ok(_) => None,
        Err(why) if st.host.is_empty() && st.phase == LbPhase::Failed && st.message == *why => None,
        Err(why) => Some((String::new(), LbPhase::Failed, why.clone())),
    }
}
