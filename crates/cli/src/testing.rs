//! Test helpers: `yunhan`'s client command line as the binary parses it.

use clap::Parser;

use crate::ctx::ClientArgs;
use crate::dispatch::Command;

/// The client's part of `yunhan`'s command line.
#[derive(Parser, Debug)]
#[command(name = "yunhan")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// `line`, split on whitespace, parsed.
    pub(crate) fn line(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(line.split_whitespace())
    }
}
