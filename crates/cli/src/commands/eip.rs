//! `yunhan eip …` (`elastic-ip`): external addresses bound 1:1 to a NIC.

use clap::{Args, Subcommand};
use yunhan_model::network::{ElasticIp, ElasticIpSpec};
use yunhan_model::Doc;

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{col, with_phase, Column};

/// Elastic IPs: external addresses bound 1:1 to a NIC, with a bandwidth cap
///
/// Example:
///   yunhan eip create web-ip --bandwidth 100
///   yunhan eip bind web-ip --nic a-nic0
///   yunhan eip unbind web-ip
///   yunhan eip set web-ip --bandwidth 50
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum EipCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(EipCreate),
    /// An elastic IP's traffic in and out (bytes and packets per second) over a window,
    /// as small charts (rx: what came in to the address)
    Metrics(crate::commands::metrics::MetricsArgs),
    /// Bind an elastic IP to a NIC
    Bind {
        name: String,
        #[arg(long)]
        nic: String,
    },
    /// Unbind an elastic IP from its NIC
    Unbind { name: String },
    /// Change the bandwidth cap, also while bound (0: no cap)
    Set {
        name: String,
        #[arg(long, value_name = "MBIT")]
        bandwidth: u32,
    },
}

#[derive(Args, Debug, Clone)]
pub struct EipCreate {
    pub name: String,
    /// The external network (name or id) [default: the oldest, `yunhan up`'s `public`]
    #[arg(long, alias = "pool")]
    pub network: Option<String>,
    /// A specific address of the network
    #[arg(long)]
    pub address: Option<String>,
    /// Bandwidth cap in Mbit/s [default: none]
    #[arg(long, value_name = "MBIT")]
    pub bandwidth: Option<u32>,
    /// Bind it to this NIC at once
    #[arg(long)]
    pub nic: Option<String>,
}

impl Shown for ElasticIp {
    const NOUN: &'static str = "elastic IP";
    const COLUMNS: &'static [Column<Doc<ElasticIp>>] = &with_phase![
        col!("NAME", metadata.name),
        col!("ADDRESS", status.address),
        col!("NIC", spec.nic),
        col!("BANDWIDTH_MBIT", spec.bandwidth_mbit),
        col!("HOST", status.host),
    ];
}

pub(crate) async fn run(ctx: &Ctx, cmd: EipCommand) -> Result<(), ClientError> {
    match cmd {
        EipCommand::Common(verb) => ctx.common::<ElasticIp>(verb).await,
        EipCommand::Metrics(a) => crate::commands::metrics::show::<ElasticIp>(ctx, &a).await,
        EipCommand::Create(a) => {
            let spec = ElasticIpSpec {
                network: a.network,
                address: a.address,
                nic: a.nic,
                bandwidth_mbit: a.bandwidth,
            };
            ctx.create_print::<ElasticIp>(&a.name, spec).await
        }
        EipCommand::Bind { name, nic } => {
            let bind = |s: &mut ElasticIpSpec| s.nic = Some(nic.clone());
            ctx.update_print::<ElasticIp>(&name, bind).await
        }
        EipCommand::Unbind { name } => {
            let unbind = |s: &mut ElasticIpSpec| s.nic = None;
            ctx.update_print::<ElasticIp>(&name, unbind).await
        }
        EipCommand::Set { name, bandwidth } => {
            let cap =
                |s: &mut ElasticIpSpec| s.bandwidth_mbit = (bandwidth > 0).then_some(bandwidth);
            ctx.update_print::<ElasticIp>(&name, cap).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::table;

    #[test]
    fn eip_show_has_the_phase_and_why() {
        let bad: Doc<ElasticIp> = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e1", "id": "eip-1", "created": "2024-01-01T00:00:00Z"},
            "spec": {"nic": "nic-1"},
            "status": {"address": "198.51.100.2", "network": "extnet-1", "phase": "Failed",
                       "message": "198.51.100.2 is in no external network"},
        }))
        .unwrap();
        let out = table(ElasticIp::COLUMNS, [&bad]);
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME",
                "ADDRESS",
                "NIC",
                "BANDWIDTH_MBIT",
                "HOST",
                "PHASE",
                "ID",
                "MESSAGE"
            ]
        );
        let row = lines.next().unwrap();
        assert!(row.contains("Failed"), "{row}");
        assert!(
            row.ends_with("198.51.100.2 is in no external network"),
            "{row}"
        );
    }
}
