//! Test helpers: `yunhan`'s client command line as the binary parses it.

use clap::{CommandFactory, Parser};

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

    /// The help `line` (one asking for it) prints, after clap's own checks
    /// of the whole command tree.
    pub(crate) fn help(line: &str) -> String {
        Cli::command().debug_assert();
        let e = Cli::line(line).expect_err(line);
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{line}");
        e.to_string()
    }
}
