//! Start-up check: the unprivileged QEMU user must be able to reach the VM
//! directories. A data directory under a private home (`/root` is 0700) would
//! otherwise make every VM fail later with "Permission denied", and the KVM
//! probe report the wrong reason; the agent refuses to start instead, saying
//! how to fix it.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "the QEMU user {user} cannot reach {dir}: {blocked} (mode {mode:04o}) is not searchable by it. \
         Start with a data directory it can reach (e.g. --data-dir /var/lib/yunhan, the default for root) \
         or grant it search permission: chmod o+x {blocked}"
    )]
    Blocked {
        user: String,
        dir: PathBuf,
        blocked: PathBuf,
        mode: u32,
    },
    #[error("cannot check that the QEMU user {user} reaches {dir}: {source}")]
    Check {
        user: String,
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// `dir` and its ancestors, outermost first.
fn chain(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = dir.ancestors().map(Path::to_path_buf).collect();
    v.reverse();
    v
}

/// Checks, as `ids` (the QEMU user), that every directory down to `dir` is
/// searchable; the kernel decides (modes, ACLs), through `test -x` run as that user.
pub fn check_reachable(dir: &Path, user: &str, ids: (u32, u32)) -> Result<(), AccessError> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"for d; do test -x "$d" || { printf '%s' "$d"; exit 1; }; done"#)
        .arg("sh")
        .args(chain(&dir))
        .uid(ids.0)
        .gid(ids.1)
        .output()
        .map_err(|source| AccessError::Check {
            user: user.into(),
            dir: dir.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let blocked = PathBuf::from(String::from_utf8_lossy(&out.stdout).into_owned());
    let mode = std::fs::metadata(&blocked).map_or(0, |m| m.permissions().mode() & 0o7777);
    Err(AccessError::Blocked {
        user: user.into(),
        dir,
        blocked,
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_lists_ancestors_outermost_first() {
        let c = chain(Path::new("/a/b/c"));
        assert_eq!(c, ["/", "/a", "/a/b", "/a/b/c"].map(PathBuf::from));
    }

    #[test]
    fn a_private_parent_is_named_with_its_mode() {
        if !nix::unistd::geteuid().is_root() {
            return; // dropping to another uid needs root
        }
        let home = tempfile::tempdir().unwrap();
        let private = home.path().join("private");
        let dir = private.join("agent/vms");
        std::fs::create_dir_all(&dir).unwrap();
        for d in [home.path(), dir.parent().unwrap(), dir.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let nobody = (65534, 65534);
        let err = check_reachable(&dir, "nobody", nobody).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{} (mode 0700)", private.display())),
            "{msg}"
        );
        assert!(msg.contains("--data-dir /var/lib/yunhan"), "{msg}");
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
        check_reachable(&dir, "nobody", nobody).unwrap();
    }
}
