//! Yunhan hot patching: replace a function in a running x86-64 Linux process without
//! restarting it (`yunhan hotpatch apply|list|revert`). See `docs/hotpatch.md`.
//!
//! The pure parts (ELF reading, /proc/pid/maps parsing, jump encoding, mapping manifests)
//! are separate modules with their own tests; `ptrace` is the only module with `unsafe`.

pub mod cli;
pub mod elf;
pub mod engine;
pub mod error;
pub mod inject;
pub mod jump;
pub mod manifest;
pub mod maps;
pub mod procfs;
pub mod ptrace;
pub mod state;

pub use cli::{run, HotpatchCommand, OutputFormat};
pub use engine::{
    apply, list, revert, ApplyOptions, ApplyReport, ListEntry, RevertOptions, RevertReport,
};
pub use error::HotpatchError;
