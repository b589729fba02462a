//! What is applied where: one JSON file per target process,
//! `<state dir>/<pid>.json` (default state dir `/run/yunhan/hotpatch`, override with
//! `YUNHAN_HOTPATCH_STATE_DIR`). `/run` is a tmpfs: the records vanish on reboot, as do the
//! processes they describe. Each file also records the process start time, so a record is
//! never applied to an unrelated process that reused the pid. Writers hold an flock on
//! `<pid>.lock`, and files are replaced atomically (write + rename).

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::elf::SymType;
use crate::error::HotpatchError;
use crate::jump::JumpKind;
use crate::ptrace;

pub const DEFAULT_STATE_DIR: &str = "/run/yunhan/hotpatch";
pub const STATE_DIR_ENV: &str = "YUNHAN_HOTPATCH_STATE_DIR";

/// The state directory: `$YUNHAN_HOTPATCH_STATE_DIR` or `/run/yunhan/hotpatch`.
pub fn default_dir() -> PathBuf {
    std::env::var_os(STATE_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// One redirected function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRecord {
    /// Old function (as named in the mapping) and where it was found.
    pub old_symbol: String,
    pub old_object: String,
    pub old_addr: u64,
    pub old_size: u64,
    pub sym_type: SymType,
    pub new_symbol: String,
    pub new_addr: u64,
    /// Canonical path of the patch library.
    pub patch: PathBuf,
    pub kind: JumpKind,
    /// The relay trampoline (14 bytes), for `relay` jumps.
    pub relay_addr: Option<u64>,
    /// Bytes at `old_addr` before patching (hex), and the jump written there (hex).
    pub original: String,
    pub written: String,
    /// Unix seconds.
    pub applied_at: u64,
    /// How long the target was stopped to write this patch, microseconds.
    pub stop_us: u64,
}

/// A page of relay trampolines mapped in the target (kept after revert: a thread may still
/// be passing through one, and a later apply reuses it instead of mapping another page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayPage {
    pub addr: u64,
    /// 16-byte slots handed out so far.
    pub used: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateFile {
    pub pid: i32,
    pub start_time: u64,
    pub patches: Vec<PatchRecord>,
    #[serde(default)]
    pub relay_pages: Vec<RelayPage>,
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 == 1 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The state of one process, locked for the lifetime of this value.
pub struct Locked {
    _lock: File,
    path: PathBuf,
    pub state: StateFile,
}

fn state_err(path: &Path, reason: impl Into<String>) -> HotpatchError {
    HotpatchError::State {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl Locked {
    /// Locks and loads the state of `pid`; records left by an earlier process with the same
    /// pid (different start time) are discarded.
    pub fn open(dir: &Path, pid: i32, start_time: u64) -> Result<Locked, HotpatchError> {
        std::fs::create_dir_all(dir).map_err(|e| HotpatchError::io(dir, e))?;
        let lock_path = dir.join(format!("{pid}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| HotpatchError::io(&lock_path, e))?;
        ptrace::flock_exclusive(&lock).map_err(|e| HotpatchError::io(&lock_path, e))?;
        let path = dir.join(format!("{pid}.json"));
        let fresh = StateFile {
            pid,
            start_time,
            ..StateFile::default()
        };
        let state = match std::fs::read(&path) {
            Ok(b) => {
                let s: StateFile = serde_json::from_slice(&b)
                    .map_err(|e| state_err(&path, format!("unreadable: {e}")))?;
                if s.pid == pid && s.start_time == start_time {
                    s
                } else {
                    fresh
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => fresh,
            Err(e) => return Err(HotpatchError::io(&path, e)),
        };
        Ok(Locked {
            _lock: lock,
            path,
            state,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the state (or removes the file when nothing is applied).
    pub fn save(&self) -> Result<(), HotpatchError> {
        if self.state.patches.is_empty() && self.state.relay_pages.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(HotpatchError::io(&self.path, e)),
            };
        }
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(&self.state)
            .map_err(|e| state_err(&self.path, e.to_string()))?;
        std::fs::write(&tmp, body).map_err(|e| HotpatchError::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| HotpatchError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> PatchRecord {
        PatchRecord {
            old_symbol: "func".into(),
            old_object: "/bin/x".into(),
            old_addr: 0x401000,
            old_size: 15,
            sym_type: SymType::Func,
            new_symbol: "func_v2".into(),
            new_addr: 0x7f00_0000_1000,
            patch: "/tmp/fix.so".into(),
            kind: JumpKind::Relay,
            relay_addr: Some(0x402000),
            original: "f30f1efa55".into(),
            written: "e9fb0f0000".into(),
            applied_at: 1,
            stop_us: 300,
        }
    }

    #[test]
    fn save_load_and_pid_reuse() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut l = Locked::open(d.path(), 42, 1000).unwrap();
            assert!(l.state.patches.is_empty());
            l.state.patches.push(record());
            l.save().unwrap();
        }
        {
            let l = Locked::open(d.path(), 42, 1000).unwrap();
            assert_eq!(l.state.patches, vec![record()]);
        }
        // Same pid, another process: old records are ignored.
        let l = Locked::open(d.path(), 42, 2000).unwrap();
        assert!(l.state.patches.is_empty());
        l.save().unwrap();
        assert!(!d.path().join("42.json").exists());
    }

    proptest! {
        #[test]
        fn hex_roundtrip(b: Vec<u8>) {
            prop_assert_eq!(unhex(&hex(&b)), Some(b));
        }
    }
}
