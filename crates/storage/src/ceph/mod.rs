//! `ceph`: RBD images in one pool of a Ceph cluster.
//!
//! Control goes through the `rbd` and `ceph` CLIs (`-c conf --id user
//! [--keyring k] --format json`); their exit status is the errno of the
//! failure (2 = ENOENT, 16 = EBUSY, 17 = EEXIST), which maps to
//! [`StorageError`]. Data never passes through Yunhan: QEMU opens images with
//! its own librbd driver ([`QemuDisk::Rbd`](crate::QemuDisk::Rbd)).
//!
//! Base images are RBD images named `.img.<base>` (volume names cannot start
//! with `.`) with one protected snapshot `base`; root disks are copy-on-write
//! clones of it (`rbd clone`), so a 20 GiB root disk costs nothing until the
//! guest writes. `clone_from_snapshot` protects the volume's snapshot and
//! clones it the same way; a snapshot with clones cannot be deleted (InUse)
//! until the clones are deleted.
//!
//! [`cluster`] administers the cluster (pools, CRUSH rules, EC profiles,
//! health, blocklist); [`rbd`] is the [`VolumeDriver`](crate::VolumeDriver)
//! over RBD images.

use std::path::PathBuf;

use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::process::Command;

use crate::cmd;
use crate::error::{Result, StorageError};

pub mod cluster;
pub mod rbd;

pub use cluster::{ClusterHealth, FailureDomain, PoolRedundancy, PoolSpec};
pub use rbd::CephDriver;

/// How a Ceph cluster is reached: its ceph.conf and a cephx identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CephCluster {
    pub conf: PathBuf,
    /// cephx id without `client.` (e.g. `admin`).
    pub user: String,
    /// Keyring file, if ceph.conf does not name it.
    pub keyring: Option<PathBuf>,
}

/// How a `ceph`/`rbd` command ended: `Ok` on success, else the errno its
/// exit status carries (None when it was killed by a signal).
fn errno_of(out: &std::process::Output) -> std::result::Result<(), Option<Errno>> {
    match out.status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(Some(Errno::from_raw(code))),
        None => Err(None),
    }
}

fn json_of(bytes: &[u8], c: &Command) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Backend {
        command: cmd::render(c),
        stderr: format!(
            "unparsable JSON output ({e}): {}",
            String::from_utf8_lossy(bytes)
        ),
    })
}

fn u64_at(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl CephCluster {
    /// The `client.admin` identity; the keyring comes from ceph.conf.
    pub fn admin(conf: impl Into<PathBuf>) -> Self {
        CephCluster {
            conf: conf.into(),
            user: "admin".into(),
            keyring: None,
        }
    }

    pub(crate) fn base(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.arg("-c").arg(&self.conf).arg("--id").arg(&self.user);
        if let Some(k) = &self.keyring {
            c.arg("--keyring").arg(k);
        }
        c
    }

    /// `rbd …` (its progress lines are dropped from error messages).
    fn rbd(&self) -> Command {
        self.base("rbd")
    }

    /// `ceph …` with a connect timeout so a dead cluster fails instead of hanging.
    pub(crate) fn ceph(&self) -> Command {
        let mut c = self.base("ceph");
        c.args(["--connect-timeout", "15"]);
        c
    }

    async fn ceph_json(&self, args: &[&str]) -> Result<Value> {
        let mut c = self.ceph();
        c.args(args).args(["--format", "json"]);
        let out = cmd::run(&mut c).await?;
        json_of(&out, &c)
    }

    async fn ceph_run(&self, args: &[&str]) -> Result<()> {
        let mut c = self.ceph();
        c.args(args);
        cmd::run(&mut c).await.map(drop)
    }
}
