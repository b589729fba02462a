//! The one error type of the crate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VortexError {
    #[error("configuration {path}: {source}")]
    Config {
        path: PathBuf,
        source: crate::config::ConfigError,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error(transparent)]
    Table(#[from] crate::maglev::TableError),
    #[error("loading the XDP program: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("XDP program: {0}")]
    Program(#[from] aya::programs::ProgramError),
    #[error("XDP link: {0}")]
    Link(#[from] aya::programs::links::LinkError),
    #[error("BPF map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("pinning {path}: {msg}")]
    Pin { path: PathBuf, msg: String },
    #[error("BPF_PROG_TEST_RUN: {0}")]
    TestRun(std::io::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("capacity: {0}")]
    Capacity(String),
}

impl VortexError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
