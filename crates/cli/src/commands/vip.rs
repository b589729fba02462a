//! `yunhan vip …`: virtual IPs several NICs of a subnet may announce.

use clap::Args;
use yunhan_model::network::{Vip, VipSpec};
use yunhan_model::Doc;

use crate::client::ClientError;
use crate::ctx::{Create, Ctx};
use crate::kind::Shown;
use crate::output::{col, join, with_phase, Column};

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

impl Create for VipCreate {
    type Kind = Vip;
    async fn run(self, ctx: &Ctx) -> Result<(), ClientError> {
        let spec = VipSpec {
            subnet: self.subnet,
            ip: self.ip,
            nics: self.nics,
        };
        ctx.create_print::<Vip>(&self.name, spec).await
    }
}
