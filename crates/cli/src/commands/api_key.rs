//! `yunhan key …`: API keys, the bearer tokens of the API and this CLI.

use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use yunhan_model::{ApiKey, ApiKeySpec, Doc};

use crate::client::{Answer, ClientError};
use crate::ctx::{Create, Ctx};
use crate::kind::Shown;
use crate::output::{cell, col, print_json, table, Column, Format};

#[derive(Args, Debug, Clone)]
pub struct KeyCreate {
    pub name: String,
    /// Create the key for this user (admins only; default: yourself)
    #[arg(long)]
    pub user: Option<String>,
    /// The key stops working after this long: 30d, 12h, 90m, 2w (default: never)
    #[arg(long, value_name = "DURATION", value_parser = parse_key_ttl, conflicts_with = "expires_at")]
    pub expires_in: Option<Duration>,
    /// The key stops working at this time (RFC 3339, e.g. 2030-01-31T00:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a key lifetime like 30d, 12h, 90m or 2w (at most 100 years)")]
pub struct BadKeyTtl(String);

/// `<n><unit>` with unit s, m, h, d or w, up to 100 years.
fn parse_key_ttl(s: &str) -> Result<Duration, BadKeyTtl> {
    let bad = || BadKeyTtl(s.to_string());
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let secs = n
        .checked_mul(unit_secs)
        .filter(|s| (1..=100 * 365 * 86_400).contains(s));
    secs.map(Duration::from_secs).ok_or_else(bad)
}

impl Shown for ApiKey {
    const NOUN: &'static str = "API key";
    const COLUMNS: &'static [Column<Doc<ApiKey>>] = &[
        col!("NAME", metadata.name),
        col!("PREFIX", status.prefix),
        col!("USER", status.user),
        col!("ROLE", status.role),
        col!("CREATED", metadata.created),
        col!("ID", metadata.id),
    ];
}

/// The answer of `POST /v1/api-keys` (the API's `CreatedApiKey`): the key
/// and its token, shown this once.
#[derive(Debug, Deserialize)]
struct CreatedApiKey {
    api_key: Doc<ApiKey>,
    token: String,
}

impl Create for KeyCreate {
    type Kind = ApiKey;
    async fn run(self, ctx: &Ctx) -> Result<(), ClientError> {
        let expires_at = match self.expires_in {
            Some(ttl) => Some(ApiKeySpec::expiry_in(ttl).ok_or_else(|| {
                ClientError::Usage(format!("--expires-in {ttl:?} is too far away"))
            })?),
            None => self.expires_at,
        };
        let user = ctx.user_id(self.user).await?;
        let spec = ApiKeySpec { user, expires_at };
        let created: Answer<CreatedApiKey> = ctx.create_as::<ApiKey, _>(&self.name, spec).await?;
        print_created(ctx.format, &created);
        Ok(())
    }
}

/// The new key, then its token.
fn print_created(format: Format, created: &Answer<CreatedApiKey>) {
    match format {
        Format::Json => print_json(&created.raw),
        Format::Table => {
            print!("{}", table(ApiKey::COLUMNS, [&created.api_key]));
            println!(
                "\ntoken: {}\nThis token is shown only once: store it now (e.g. YUNHAN_TOKEN).",
                cell(&created.token)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lifetimes_parse_with_units_and_bounds() {
        assert_eq!(
            parse_key_ttl("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_key_ttl("2w").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(parse_key_ttl("90m").unwrap(), Duration::from_secs(5400));
        for bad in [
            "",
            "30",
            "0d",
            "d",
            "-1d",
            "1y",
            "99999999999999999w",
            "40000d",
        ] {
            assert!(parse_key_ttl(bad).is_err(), "{bad:?}");
        }
    }
}
