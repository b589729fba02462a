//! External networks → the compiler's [`net::ExternalNetwork`]s with their legs: a host
//! has a leg when its agent reports the device the network names for it (or always, for a
//! network that lives on the hosts themselves, through a bridge of the realiser's). NAT
//! gateways are placed on a Ready host with a leg.

use std::collections::BTreeSet;

use yunhan_model::{ExternalNetwork, HostPhase};
use yunhan_net::model as net;
use yunhan_net::{names, Ipv4Cidr, ObjectKind};
use yunhan_store::objects::Doc;

use super::{fail, Failed, GatewayError, Inputs};

/// Every external network that maps, with the legs of the hosts that have one.
pub(super) fn map_external_networks(
    inp: &Inputs,
    failed: &mut Failed,
) -> Vec<net::ExternalNetwork> {
    let mut out = Vec::new();
    for x in &inp.externals {
        let cidr = match x.spec.cidr.parse::<Ipv4Cidr>() {
            Ok(c) => c,
            Err(e) => {
                let why = format!("cidr {:?}: {e}", x.spec.cidr);
                fail(failed, ObjectKind::ExternalNetwork, &x.metadata.id, why);
                continue;
            }
        };
        let gateway_ip = x
            .spec
            .gateway
            .as_deref()
            .and_then(|g| g.parse().ok())
            .unwrap_or_else(|| yunhan_net::ipam::Ipam::default_gateway(cidr));
        out.push(net::ExternalNetwork {
            id: x.metadata.id.clone(),
            cidr,
            gateway_ip,
            legs: legs(inp, x),
            host_gateway: x.spec.host_gateway,
        });
    }
    out
}

fn legs(inp: &Inputs, x: &Doc<ExternalNetwork>) -> Vec<net::ExternalLeg> {
    let none = BTreeSet::new();
    inp.hosts
        .iter()
        .filter(|h| {
            let reported = inp.devices.get(&h.metadata.id).unwrap_or(&none);
            x.spec.has_leg(&h.metadata.id, &h.metadata.name, reported)
        })
        .filter_map(|h| {
            let device = match x.spec.host_gateway {
                true => names::external_bridge(&x.metadata.id),
                false => x
                    .spec
                    .device_on(&h.metadata.id, &h.metadata.name)?
                    .to_string(),
            };
            Some(net::ExternalLeg {
                host: h.metadata.id.clone(),
                device,
            })
        })
        .collect()
}

/// Where a NAT gateway on `x` runs: the first Ready host (by id) with a leg.
pub(super) fn gateway_host(inp: &Inputs, x: &net::ExternalNetwork) -> Result<String, GatewayError> {
    let ready: BTreeSet<&str> = inp
        .hosts
        .iter()
        .filter(|h| h.status.phase == HostPhase::Ready)
        .map(|h| h.metadata.id.as_str())
        .collect();
    x.legs
        .iter()
        .map(|l| l.host.as_str())
        .filter(|h| ready.contains(h))
        .min()
        .map(str::to_string)
        .ok_or_else(|| GatewayError::NoHost {
            name: network_name(inp, &x.id).to_string(),
            cidr: x.cidr,
            why: missing_device(inp, &x.id),
        })
}

/// The name of external network `id` (its id when unknown).
fn network_name<'a>(inp: &'a Inputs, id: &'a str) -> &'a str {
    inp.externals
        .iter()
        .find(|p| p.metadata.id == id)
        .map_or(id, |p| p.metadata.name.as_str())
}

/// Why hosts lack a leg, when the network names a device: ", no host reports device …".
fn missing_device(inp: &Inputs, id: &str) -> String {
    match inp
        .externals
        .iter()
        .find(|p| p.metadata.id == id)
        .and_then(|x| x.spec.device.as_deref())
    {
        Some(d) => format!(": no host reports a device {d:?}"),
        None => String::new(),
    }
}
