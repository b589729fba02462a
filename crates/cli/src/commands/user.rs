//! `yunhan user …`: users (admin).

use clap::{Args, Subcommand};
use yunhan_model::{Doc, Project, Role, User, UserSpec};

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{col, Column};

/// Users (admin)
#[derive(Subcommand, Debug, Clone)]
pub enum UserCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(UserCreate),
}

#[derive(Args, Debug, Clone)]
pub struct UserCreate {
    pub name: String,
    /// The user's project (name or id)
    #[arg(long)]
    pub project: String,
    /// Make the user a platform admin
    #[arg(long)]
    pub admin: bool,
}

impl Shown for User {
    const NOUN: &'static str = "user";
    const COLUMNS: &'static [Column<Doc<User>>] = &[
        col!("NAME", metadata.name),
        col!("ROLE", spec.role),
        col!("PROJECT", spec.project),
        col!("ID", metadata.id),
    ];
}

pub(crate) async fn run(ctx: &Ctx, cmd: UserCommand) -> Result<(), ClientError> {
    match cmd {
        UserCommand::Common(verb) => ctx.common::<User>(verb).await,
        UserCommand::Create(a) => {
            let project = ctx.fetch::<Project>(&a.project).await?;
            let role = if a.admin { Role::Admin } else { Role::Member };
            let spec = UserSpec {
                project: project.value.metadata.id,
                role,
            };
            ctx.create_print::<User>(&a.name, spec).await
        }
    }
}
