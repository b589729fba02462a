//! The `yunhan` client commands. They talk only to the REST API, print tables
//! by default (`-o json` for scripts) and explain what to do next on errors.

mod client;
mod commands;
pub mod config;
mod console;
mod network;
mod output;
mod storage;

pub use client::{Client, ClientError, ConsoleStream};
pub use commands::{ensure_public_image, hint, run, ClientArgs, Command};
pub use config::ClientConfig;
