//! `yunhan placement-group …` (`pg`): spread VMs over hosts.

use clap::{Args, Subcommand};
use yunhan_model::{Doc, PlacementGroup, PlacementGroupSpec, PlacementPolicy};

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{col, Column};

/// Placement groups: spread VMs over hosts (anti-affinity)
#[derive(Subcommand, Debug, Clone)]
pub enum PlacementGroupCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(PlacementGroupCreate),
}

#[derive(Args, Debug, Clone)]
pub struct PlacementGroupCreate {
    pub name: String,
    /// hard: members never share a host; soft: they avoid it when they can
    #[arg(long, value_parser = ["hard", "soft"], default_value = "hard")]
    pub policy: String,
}

impl Shown for PlacementGroup {
    const NOUN: &'static str = "placement group";
    const COLUMNS: &'static [Column<Doc<PlacementGroup>>] = &[
        col!("NAME", metadata.name),
        col!("POLICY", spec.policy),
        col!("ID", metadata.id),
    ];
}

pub(crate) async fn run(ctx: &Ctx, cmd: PlacementGroupCommand) -> Result<(), ClientError> {
    match cmd {
        PlacementGroupCommand::Common(verb) => ctx.common::<PlacementGroup>(verb).await,
        PlacementGroupCommand::Create(a) => {
            let policy = if a.policy == "soft" {
                PlacementPolicy::SoftAntiAffinity
            } else {
                PlacementPolicy::HardAntiAffinity
            };
            let spec = PlacementGroupSpec { policy };
            ctx.create_print::<PlacementGroup>(&a.name, spec).await
        }
    }
}
