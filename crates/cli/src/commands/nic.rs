//! `yunhan nic …`: network interfaces (elastic NICs) and attaching them to VMs.

use clap::{Args, Subcommand};
use yunhan_model::network::{NetworkInterface, NetworkInterfaceSpec};
use yunhan_model::Doc;

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{col, join, with_phase, Column};

/// Network interfaces (elastic NICs): an address in a subnet, security groups, a VM
///
/// Example:
///   yunhan nic create db-nic --subnet s1 --ip 10.10.1.50 --security-group db
///   yunhan nic attach db-nic --vm db1
///   yunhan nic detach db-nic
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum NicCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(NicCreate),
    /// Attach a NIC to a VM (or move it to another one)
    Attach {
        name: String,
        /// The VM (name or id)
        #[arg(long)]
        vm: String,
    },
    /// Detach a NIC from its VM
    Detach { name: String },
    /// Replace a NIC's security groups
    SetGroups {
        name: String,
        /// A security group (repeatable; none: the VPC's default group)
        #[arg(long = "security-group", value_name = "GROUP")]
        security_groups: Vec<String>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct NicCreate {
    pub name: String,
    /// The subnet (name or id)
    #[arg(long)]
    pub subnet: String,
    /// A fixed address in the subnet [default: the next free one]
    #[arg(long)]
    pub ip: Option<String>,
    /// A security group of the same VPC (repeatable) [default: the VPC's default group]
    #[arg(long = "security-group", value_name = "GROUP")]
    pub security_groups: Vec<String>,
    /// Attach it to this VM at once
    #[arg(long)]
    pub vm: Option<String>,
}

impl Shown for NetworkInterface {
    const NOUN: &'static str = "NIC";
    const COLUMNS: &'static [Column<Doc<NetworkInterface>>] = &with_phase![
        col!("NAME", metadata.name),
        col!("IP", status.ip),
        col!("MAC", status.mac),
        col!("SUBNET", spec.subnet),
        col!("INSTANCE", spec.instance),
        Column {
            header: "GROUPS",
            get: |v| join(&v.spec.security_groups),
        },
    ];
}

pub(crate) async fn run(ctx: &Ctx, cmd: NicCommand) -> Result<(), ClientError> {
    type Nic = NetworkInterface;
    match cmd {
        NicCommand::Common(verb) => ctx.common::<Nic>(verb).await,
        NicCommand::Create(a) => {
            let spec = NetworkInterfaceSpec {
                subnet: a.subnet,
                ip: a.ip,
                security_groups: a.security_groups,
                instance: a.vm,
            };
            ctx.create_print::<Nic>(&a.name, spec).await
        }
        NicCommand::Attach { name, vm } => {
            let attach = |s: &mut NetworkInterfaceSpec| s.instance = Some(vm.clone());
            ctx.update_print::<Nic>(&name, attach).await
        }
        NicCommand::Detach { name } => {
            let detach = |s: &mut NetworkInterfaceSpec| s.instance = None;
            ctx.update_print::<Nic>(&name, detach).await
        }
        NicCommand::SetGroups {
            name,
            security_groups,
        } => {
            let set = |s: &mut NetworkInterfaceSpec| s.security_groups = security_groups.clone();
            ctx.update_print::<Nic>(&name, set).await
        }
    }
}
