//! `yunhan vip …`: virtual IPs several NICs of a subnet may announce.

use clap::{Args, Subcommand};
use yunhan_model::network::{Vip, VipSpec};
use yunhan_model::Doc;

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{col, join, with_phase, Column};

/// Virtual IPs that several NICs of a subnet may announce (keepalived-style failover)
///
/// Example:
///   yunhan vip create db-vip --subnet s1 --nic db1-nic0 --nic db2-nic0
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum VipCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(VipCreate),
}

#[derive(Args, Debug, Clone)]
pub struct VipCreate {
    pub name: String,
    /// The subnet (name or id)
    #[arg(long)]
    pub subnet: String,
    /// A fixed address in the subnet [default: the next free one]
    #[arg(long)]
    pub ip: Option<String>,
    /// A NIC allowed to announce it (repeatable)
    #[arg(long = "nic")]
    pub nics: Vec<String>,
}

impl Shown for Vip {
    const NOUN: &'static str = "VIP";
    const COLUMNS: &'static [Column<Doc<Vip>>] = &with_phase![
        col!("NAME", metadata.name),
        col!("IP", status.ip),
        col!("SUBNET", spec.subnet),
        Column {
            header: "NICS",
            get: |v| join(&v.spec.nics),
        },
        col!("HOST", status.host),
    ];
}

pub(crate) async fn run(ctx: &Ctx, cmd: VipCommand) -> Result<(), ClientError> {
    match cmd {
        VipCommand::Common(verb) => ctx.common::<Vip>(verb).await,
        VipCommand::Create(a) => {
            let spec = VipSpec {
                subnet: a.subnet,
                ip: a.ip,
                nics: a.nics,
            };
            ctx.create_print::<Vip>(&a.name, spec).await
        }
    }
}
