//! The `yunhan` client commands. They talk only to the REST API, print tables
//! by default (`-o json` for scripts) and explain what to do next on errors.
//!
//! Layers, each using only those below it:
//! - plumbing: `client` (HTTP, answers read as the model's types), `config`,
//!   `output` (tables, JSON), `kind` (how a kind is shown and addressed),
//!   `wait` (polling with progress), `ctx` (the verbs and spec edits every
//!   kind shares), `console` (the terminal side of a serial console);
//! - `commands/`: one module per command noun (`vm.rs`, `security_group.rs`, …);
//! - `dispatch`: the command tree and the match that runs it.

mod client;
mod commands;
pub mod config;
mod console;
mod ctx;
mod dispatch;
mod kind;
mod output;
mod password;
#[cfg(test)]
mod testing;
mod wait;

pub use client::{Answer, Client, ClientError, ConsoleStream};
pub use commands::image::ensure_public_image;
pub use config::ClientConfig;
pub use ctx::ClientArgs;
pub use dispatch::{hint, run, Command};
