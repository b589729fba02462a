//! Choosing the accelerator. `auto` proves KVM works by running guest code
//! under it, not by opening `/dev/kvm`: on PVM hosts (paravirtualised KVM
//! without VMX) `/dev/kvm` opens fine but stock guests never run.
//!
//! The probe boots a 512-byte boot sector under `-accel kvm` through SeaBIOS;
//! the sector writes 0x2a to an `isa-debug-exit` port, which makes QEMU exit
//! with status (0x2a << 1) | 1 = 85. Any other outcome within the deadline
//! (QEMU error, hang, other status) means "no KVM". Cost: ~0.2 s where KVM
//! works; the deadline (3 s) where it hangs, once per agent start.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::argv::Accelerator;

/// The `accel` setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelMode {
    /// KVM when the probe proves it works, else TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// An `accel` setting that is none of the three.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("accel must be auto, kvm or tcg, not {0:?}")]
pub struct BadAccelMode(pub String);

impl std::str::FromStr for AccelMode {
    type Err = BadAccelMode;
    fn from_str(s: &str) -> Result<Self, BadAccelMode> {
        match s {
            "auto" => Ok(AccelMode::Auto),
            "kvm" => Ok(AccelMode::Kvm),
            "tcg" => Ok(AccelMode::Tcg),
            _ => Err(BadAccelMode(s.to_string())),
        }
    }
}

impl std::fmt::Display for AccelMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AccelMode::Auto => "auto",
            AccelMode::Kvm => "kvm",
            AccelMode::Tcg => "tcg",
        })
    }
}

/// `mov al, 0x2a; out 0xf4, al; 1: hlt; jmp 1b`, padded, with the boot signature.
pub fn probe_boot_sector() -> [u8; 512] {
    let mut s = [0u8; 512];
    s[..7].copy_from_slice(&[0xb0, 0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd]);
    s[510] = 0x55;
    s[511] = 0xaa;
    s
}

/// The exit status the probe guest causes.
pub const PROBE_EXIT: i32 = (0x2a << 1) | 1;

/// Why guest code did not run under KVM.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("writing {}: {source}", .path.display())]
    Image {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run {}: {source}", .qemu.display())]
    Spawn {
        qemu: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("a boot-sector guest under KVM did not finish within {0:?} (e.g. PVM: /dev/kvm without VMX)")]
    Timeout(Duration),
    #[error("waiting for QEMU: {0}")]
    Wait(#[source] std::io::Error),
    #[error("QEMU -accel kvm exited with {status}: {last}")]
    Exited {
        status: std::process::ExitStatus,
        last: String,
    },
}

/// Runs the KVM probe; Ok(()) if guest code ran under KVM, else why not.
pub async fn probe_kvm(
    qemu: &Path,
    work_dir: &Path,
    run_as: Option<(u32, u32)>,
    deadline: Duration,
) -> Result<(), ProbeError> {
    let img = work_dir.join("kvm-probe.img");
    std::fs::write(&img, probe_boot_sector()).map_err(|source| ProbeError::Image {
        path: img.clone(),
        source,
    })?;
    let mut cmd = tokio::process::Command::new(qemu);
    cmd.args([
        "-accel",
        "kvm",
        "-machine",
        "pc",
        "-nodefaults",
        "-no-user-config",
    ])
    .args(["-display", "none", "-m", "16"])
    .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=4"])
    .arg("-drive")
    .arg(format!(
        "file={},format=raw,if=floppy,readonly=on",
        img.display()
    ))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    let child = cmd.spawn().map_err(|source| ProbeError::Spawn {
        qemu: qemu.to_path_buf(),
        source,
    })?;
    let out = tokio::time::timeout(deadline, child.wait_with_output()).await;
    let _ = std::fs::remove_file(&img);
    match out {
        Err(_) => Err(ProbeError::Timeout(deadline)),
        Ok(Err(e)) => Err(ProbeError::Wait(e)),
        Ok(Ok(o)) if o.status.code() == Some(PROBE_EXIT) => Ok(()),
        Ok(Ok(o)) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
            Err(ProbeError::Exited {
                status: o.status,
                last: last.to_string(),
            })
        }
    }
}

/// Resolves the mode into the accelerator VMs get (and why, for the log).
pub async fn choose(
    mode: AccelMode,
    qemu: &Path,
    work_dir: &Path,
    run_as: Option<(u32, u32)>,
) -> Accelerator {
    match mode {
        AccelMode::Kvm => Accelerator::Kvm,
        AccelMode::Tcg => Accelerator::Tcg,
        AccelMode::Auto => match probe_kvm(qemu, work_dir, run_as, Duration::from_secs(3)).await {
            Ok(()) => {
                tracing::info!("accel=auto: KVM works (probe guest ran); VMs use kvm");
                Accelerator::Kvm
            }
            Err(why) => {
                tracing::warn!("accel=auto: KVM unusable, VMs fall back to TCG (slow): {why}");
                Accelerator::Tcg
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        for m in [AccelMode::Auto, AccelMode::Kvm, AccelMode::Tcg] {
            assert_eq!(m.to_string().parse::<AccelMode>().unwrap(), m);
        }
        assert!("xen".parse::<AccelMode>().is_err());
    }

    #[test]
    fn boot_sector_shape() {
        let s = probe_boot_sector();
        assert_eq!(&s[510..], &[0x55, 0xaa]);
        assert_eq!(PROBE_EXIT, 85);
    }
}
