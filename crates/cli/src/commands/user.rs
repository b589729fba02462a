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
    /// Set a user's web console password (admins: anyone's; members: their own)
    ///
    /// Prompts for it twice on a terminal (not echoed); with --password-stdin reads
    /// the first line of standard input instead:
    ///
    ///   printf '%s\n' "$PASSWORD" | yunhan user set-password alice --password-stdin
    #[command(name = "set-password", verbatim_doc_comment)]
    SetPassword(SetPasswordArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SetPasswordArgs {
    /// The user (name or id)
    pub name: String,
    /// Read the new password from the first line of standard input
    #[arg(long)]
    pub password_stdin: bool,
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
    /// Also give them a web console password, read from the first line of standard input
    #[arg(long)]
    pub password_stdin: bool,
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
            let password = a.password_stdin.then(read_stdin_line).transpose()?;
            ctx.create_print::<User>(&a.name, spec).await?;
            match password {
                Some(pw) => set_password(ctx, &a.name, pw).await,
                None => Ok(()),
            }
        }
        UserCommand::SetPassword(a) => {
            let pw = if a.password_stdin {
                read_stdin_line()?
            } else {
                crate::password::prompt_new()?
            };
            set_password(ctx, &a.name, pw).await?;
            eprintln!(
                "password of {} set; their other console sessions ended",
                a.name
            );
            Ok(())
        }
    }
}

fn read_stdin_line() -> Result<String, ClientError> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| {
        ClientError::Usage(format!("cannot read the password from standard input: {e}"))
    })?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn set_password(ctx: &Ctx, user: &str, password: String) -> Result<(), ClientError> {
    let path = format!("/v1/users/{}/password", crate::kind::path_segment(user));
    let body = serde_json::json!({ "password": password });
    ctx.client
        .request(reqwest::Method::PUT, &path, Some(&body))
        .await?;
    Ok(())
}
