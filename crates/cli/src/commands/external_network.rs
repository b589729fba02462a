//! `yunhan external-network …` (`eip-pool`): the provider networks elastic IPs
//! and NAT gateway addresses come from, and how each host reaches them (admin).

use std::collections::BTreeMap;

use clap::Args;
use yunhan_model::{Doc, ExternalNetwork, ExternalNetworkSpec};

use crate::client::ClientError;
use crate::ctx::{Create, Ctx};
use crate::kind::Shown;
use crate::output::{col, with_phase, Column};

#[derive(Args, Debug, Clone)]
pub struct ExternalNetworkCreate {
    pub name: String,
    /// Its addresses, e.g. 203.0.113.0/24 (handed out as elastic IPs)
    #[arg(long)]
    pub cidr: String,
    /// Its upstream router (not handed out) [default: the first address]
    #[arg(long)]
    pub gateway: Option<String>,
    /// The device every host reaches it through, e.g. eth1 or br-ex
    #[arg(long)]
    pub device: Option<String>,
    /// A host's own device, HOST=DEVICE (repeatable; instead of --device there)
    #[arg(long = "leg", value_name = "HOST=DEVICE", value_parser = parse_leg)]
    pub legs: Vec<(String, String)>,
    /// The network lives on each host itself: a bridge holding the gateway,
    /// masqueraded to the host's default route (one-box clouds)
    #[arg(long, conflicts_with_all = ["device", "legs"])]
    pub host_gateway: bool,
    /// Only these addresses are handed out as elastic IPs, FIRST-LAST
    /// [default: every host address but the gateway]
    #[arg(long, value_name = "FIRST-LAST")]
    pub pool: Option<String>,
}

fn parse_leg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((h, d)) if !h.is_empty() && !d.is_empty() => Ok((h.into(), d.into())),
        _ => Err(format!("{s:?} is not HOST=DEVICE, e.g. node2=eth1")),
    }
}

impl Shown for ExternalNetwork {
    const NOUN: &'static str = "external network";
    const COLUMNS: &'static [Column<Doc<ExternalNetwork>>] = &with_phase![
        col!("NAME", metadata.name),
        col!("CIDR", spec.cidr),
        col!("GATEWAY", spec.gateway),
        col!("POOL", spec.pool),
        col!("DEVICE", spec.device),
        col!("HOST_GATEWAY", spec.host_gateway),
    ];
}

impl Create for ExternalNetworkCreate {
    type Kind = ExternalNetwork;
    async fn run(self, ctx: &Ctx) -> Result<(), ClientError> {
        let spec = ExternalNetworkSpec {
            cidr: self.cidr,
            gateway: self.gateway,
            device: self.device,
            legs: self.legs.into_iter().collect::<BTreeMap<_, _>>(),
            host_gateway: self.host_gateway,
            pool: self.pool,
        };
        ctx.create_print::<ExternalNetwork>(&self.name, spec).await
    }
}
