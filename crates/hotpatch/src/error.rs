//! Errors. Every refusal names what was checked and states that nothing was changed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum HotpatchError {
    #[error("process {pid} does not exist")]
    ProcessNotFound { pid: i32 },

    #[error("no permission to trace process {pid}: {detail} (run as root or with CAP_SYS_PTRACE; check kernel.yama.ptrace_scope and that no debugger is attached)")]
    PermissionDenied { pid: i32, detail: String },

    #[error("unsupported target process {pid}: {reason}")]
    UnsupportedTarget { pid: i32, reason: String },

    #[error("symbol `{symbol}` not found in {place}")]
    SymbolNotFound { symbol: String, place: String },

    #[error("function `{symbol}` is {size} bytes long, shorter than the {needed}-byte jump that would replace its entry")]
    FunctionTooShort {
        symbol: String,
        size: u64,
        needed: usize,
    },

    #[error("symbol type mismatch: `{old}` is {old_type} but `{new}` is {new_type}")]
    SymbolTypeMismatch {
        old: String,
        old_type: String,
        new: String,
        new_type: String,
    },

    #[error("`{symbol}` is already patched by {patch} (to `{new}`); revert it first")]
    AlreadyPatched {
        symbol: String,
        patch: String,
        new: String,
    },

    #[error("invalid patch mapping: {0}")]
    BadMapping(crate::manifest::MappingError),

    #[error("patch library {path} maps no functions: add a `.yunhan_hotpatch` manifest section, name new functions NAME_vN, or pass --map OLD=NEW")]
    NoMapping { path: PathBuf },

    #[error("cannot use ELF file {path}: {reason}")]
    Elf { path: PathBuf, reason: String },

    #[error("a thread of process {pid} kept executing inside the bytes of `{symbol}` to be rewritten ({attempts} attempts); nothing was changed, try again")]
    Busy {
        pid: i32,
        symbol: String,
        attempts: u32,
    },

    #[error("nothing to revert in process {pid}{filter}")]
    NotApplied { pid: i32, filter: String },

    #[error("the entry of `{symbol}` at {addr:#x} no longer holds the jump written by hotpatch (someone else modified it); refusing to touch it")]
    Modified { symbol: String, addr: u64 },

    #[error("dlopen({path}) failed inside process {pid}: {message}")]
    DlopenFailed {
        pid: i32,
        path: PathBuf,
        message: String,
    },

    #[error("calling a function inside process {pid} failed: {reason}")]
    RemoteCall { pid: i32, reason: String },

    #[error("ptrace {op} on thread {tid} failed: {source}")]
    Ptrace {
        op: &'static str,
        tid: i32,
        #[source]
        source: std::io::Error,
    },

    #[error("process {pid} exited while being patched")]
    ProcessDied { pid: i32 },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("state file {path}: {reason}")]
    State { path: PathBuf, reason: String },

    #[error("hot patching is only supported on x86-64 Linux")]
    UnsupportedPlatform,
}

impl HotpatchError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HotpatchError::Io {
            path: path.into(),
            source,
        }
    }

    /// Stable short code, for scripts and JSON output.
    pub fn code(&self) -> &'static str {
        match self {
            HotpatchError::ProcessNotFound { .. } => "process_not_found",
            HotpatchError::PermissionDenied { .. } => "permission_denied",
            HotpatchError::UnsupportedTarget { .. } => "unsupported_target",
            HotpatchError::SymbolNotFound { .. } => "symbol_not_found",
            HotpatchError::FunctionTooShort { .. } => "function_too_short",
            HotpatchError::SymbolTypeMismatch { .. } => "symbol_type_mismatch",
            HotpatchError::AlreadyPatched { .. } => "already_patched",
            HotpatchError::BadMapping(_) => "bad_mapping",
            HotpatchError::NoMapping { .. } => "no_mapping",
            HotpatchError::Elf { .. } => "bad_elf",
            HotpatchError::Busy { .. } => "busy",
            HotpatchError::NotApplied { .. } => "not_applied",
            HotpatchError::Modified { .. } => "modified",
            HotpatchError::DlopenFailed { .. } => "dlopen_failed",
            HotpatchError::RemoteCall { .. } => "remote_call_failed",
            HotpatchError::Ptrace { .. } => "ptrace_failed",
            HotpatchError::ProcessDied { .. } => "process_died",
            HotpatchError::Io { .. } => "io",
            HotpatchError::State { .. } => "state",
            HotpatchError::UnsupportedPlatform => "unsupported_platform",
        }
    }
}
