//! `yunhan s3-key …`: a user's keys for the S3 gateway (docs/object-storage.md).

use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Deserialize;
use yunhan_model::{Doc, S3Key, S3KeyPhase, S3KeySpec};

use crate::client::{Answer, ClientError};
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{cell, col, print_json, table, Column, Format};
use crate::wait::wait_for;

use super::volume::Fallible;

/// S3 keys: access key + secret key for S3 clients (aws, s3cmd, boto3)
///
/// A key reads and writes every bucket of its user's project, and no other
/// project's. The secret key is shown once, when the key is created.
///
/// Examples:
///   yunhan s3-key create -o json     # access_key, secret_key, endpoint
///   aws configure set aws_access_key_id AK; aws configure set aws_secret_access_key SK
///   aws --endpoint-url ENDPOINT s3 ls
///   yunhan s3-key delete NAME        # requests signed with it are refused from then on
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum S3KeyCommand {
    #[command(flatten)]
    Common(Common),
    /// Create a key (it works when this returns)
    Create(S3KeyCreate),
}

#[derive(Args, Debug, Clone)]
pub struct S3KeyCreate {
    /// A name for the key [default: s3-<UTC date and time>]
    pub name: Option<String>,
    /// Create the key for this user (admins only; default: yourself)
    #[arg(long)]
    pub user: Option<String>,
    /// What the key is for
    #[arg(long, default_value = "")]
    pub description: String,
}

impl Shown for S3Key {
    const NOUN: &'static str = "S3 key";
    const COLUMNS: &'static [Column<Doc<S3Key>>] = &[
        col!("NAME", metadata.name),
        col!("ACCESS KEY", status.access_key),
        col!("USER", status.user),
        col!("PHASE", status.phase),
        col!("CREATED", metadata.created),
        col!("ID", metadata.id),
        col!("MESSAGE", status.message),
    ];
}

impl Fallible for S3Key {
    fn failure(doc: &Doc<S3Key>) -> Option<String> {
        (doc.status.phase == S3KeyPhase::Failed).then(|| cell(&doc.status.message))
    }
}

/// The answer of `POST /v1/s3-keys` (the API's `CreatedS3Key`).
#[derive(Debug, Deserialize)]
struct CreatedS3Key {
    s3_key: Doc<S3Key>,
    access_key: String,
    secret_key: String,
    endpoint: String,
}

pub(crate) async fn run(ctx: &Ctx, cmd: S3KeyCommand) -> Result<(), ClientError> {
    match cmd {
        S3KeyCommand::Common(verb) => ctx.common::<S3Key>(verb).await,
        S3KeyCommand::Create(a) => create(ctx, a).await,
    }
}

/// `s3-<UTC date and time>`, e.g. `s3-20261207t101500z`.
fn default_name() -> String {
    let stamp: String = yunhan_model::now()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    format!("s3-{stamp}")
}

async fn create(ctx: &Ctx, a: S3KeyCreate) -> Result<(), ClientError> {
    let user = ctx.user_id(a.user).await?;
    let spec = S3KeySpec {
        user,
        description: a.description,
    };
    let name = a.name.unwrap_or_else(default_name);
    let made: Answer<CreatedS3Key> = ctx.create_as::<S3Key, _>(&name, spec).await?;
    let path = format!("/v1/s3-keys/{}", made.s3_key.metadata.id);
    let what = format!("S3 key {name} to reach the gateway");
    let ready = |k: Option<&Doc<S3Key>>| match k {
        None => Some(Err("the key was deleted meanwhile".to_string())),
        Some(k) if k.status.phase == S3KeyPhase::Active => Some(Ok(())),
        Some(k) => S3Key::failure(k).map(Err),
    };
    let timeout = Duration::from_secs(60);
    wait_for::<S3Key>(&ctx.client, &path, &what, timeout, ready).await?;
    match ctx.format {
        Format::Json => print_json(&made.raw),
        Format::Table => {
            print!("{}", table(S3Key::COLUMNS, [&made.s3_key]));
            println!(
                "\naccess key: {}\nsecret key: {}\nendpoint:   {}\nThe secret key is shown only once: store it now.",
                made.access_key, made.secret_key, made.endpoint
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::Command;
    use crate::testing::Cli;

    #[test]
    fn create_needs_no_name() {
        let cmd = Cli::line("yunhan s3-key create -o json").unwrap().command;
        let Command::S3Key(S3KeyCommand::Create(a)) = cmd else {
            panic!("{cmd:?}");
        };
        assert_eq!(a.name, None);
        assert!(default_name().starts_with("s3-"));
        assert!(validate(&default_name()));
    }

    fn validate(name: &str) -> bool {
        yunhan_model::validate_name("metadata.name", name).is_ok()
    }
}
