//! `yunhan console`: a one-time login link to the web console for the configured
//! credentials.

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::client::ClientError;
use crate::ctx::Ctx;
use crate::output::{col, print_one, Column, Format};

/// Print a one-time link that opens the web console logged in as you
///
/// The link works once, within 15 minutes, in any browser that reaches the API's
/// address. The console also takes a username and password (`yunhan user
/// set-password`) or an API key.
#[derive(Args, Debug, Clone)]
pub struct ConsoleArgs {}

/// The answer of `POST /v1/sessions/links` (the API's `LoginLink`).
#[derive(Debug, Serialize, Deserialize)]
struct LoginLink {
    login_link: String,
    expires_at: String,
}

#[derive(Debug, Serialize)]
struct Shown {
    url: String,
    expires_at: String,
}

const COLUMNS: &[Column<Shown>] = &[col!("URL", url), col!("EXPIRES", expires_at)];

pub(crate) async fn run(ctx: &Ctx, _a: ConsoleArgs) -> Result<(), ClientError> {
    let link = ctx
        .client
        .send::<_, LoginLink>(
            reqwest::Method::POST,
            "/v1/sessions/links",
            &serde_json::json!({}),
        )
        .await?
        .value;
    let url = format!(
        "{}/console/#login={}",
        ctx.client.endpoint(),
        link.login_link
    );
    if ctx.format == Format::Table {
        println!("{url}");
        eprintln!("(one use, until {})", link.expires_at);
        return Ok(());
    }
    let shown = Shown {
        url,
        expires_at: link.expires_at,
    };
    let raw = serde_json::to_value(&shown).unwrap_or_default();
    print_one(
        ctx.format,
        COLUMNS,
        &crate::client::Answer { raw, value: shown },
    );
    Ok(())
}
