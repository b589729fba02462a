//! Yunhan's test harness, used only as a dev-dependency: real daemons on
//! loopback for end-to-end tests, and polling helpers so tests never use
//! fixed sleeps as synchronisation.
//!
//! - [`EtcdCluster`]: 1..n real `etcd` members on 127.0.0.1 (free ports, one
//!   temp data dir each, logs captured), readiness by polling, leader lookup,
//!   `kill`/`restart` of single members, everything killed and removed on drop.
//! - [`DevCeph`]: a real 1 mon / 1 mgr / 3 OSD Ceph cluster (`scripts/ceph-dev`).
//! - [`wait_until`] / [`wait_until_async`]: poll a condition until a deadline;
//!   [`wait_for_some`]: poll until there is a value, or panic.
//! - [`free_port`] / [`free_ports`]: free TCP ports on 127.0.0.1.
//! - [`closed_loop`]: a benchmark's load, N concurrent clients each starting its next
//!   operation when the last is done.
//! - [`spawn_owned`]: spawn a child that the kernel kills if the test process
//!   dies without running destructors (e.g. a runner's timeout SIGKILL).
//! - [`hotpatch`]: C targets and patch libraries (gcc) and a reader of the
//!   target's reports, for the hot-patching end-to-end tests.
//! - [`tls::self_signed`]: a throwaway certificate and key (openssl).
//!
//! Binaries are looked up on `PATH`; when one is missing the error says to run
//! `scripts/setup`.

mod ceph;
mod etcd;
pub mod hotpatch;
mod process;
pub mod tls;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use ceph::DevCeph;
pub use etcd::{EtcdCluster, EtcdOptions};
pub use process::{kill_group, spawn_owned, spawn_owned_group};

/// Polls `cond` every `poll` until it returns true (→ `true`) or `within` has
/// passed (→ `false`). The condition is always tried at least once, and once
/// more at the deadline. Blocking: use [`wait_until_async`] inside async code.
pub fn wait_until(within: Duration, poll: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(poll.min(deadline - now));
    }
}

/// [`wait_until`] for an async condition (sleeps with `tokio::time`).
pub async fn wait_until_async<F, Fut>(within: Duration, poll: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
    }
}

/// Polls `f` every `every` until it returns `Some(v)` (→ `v`); panics naming `what` once
/// `within` has passed.
pub async fn wait_for_some<T, F, Fut>(what: &str, within: Duration, every: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Runs `op(i)` for every i in `0..count` from `clients` tokio tasks, each taking the next
/// i as soon as its last operation is done (a closed loop). Returns the latency of every
/// operation, sorted, and the time the whole run took.
pub async fn closed_loop<F, Fut>(count: usize, clients: usize, op: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = std::sync::Arc::new(op);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(count / clients + 1);
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return lat;
                    }
                    let t = Instant::now();
                    op(i).await;
                    lat.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(count);
    for t in tasks {
        all.extend(t.await.expect("a benchmark client"));
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    (all, elapsed)
}

/// A machine-wide lock (an `flock` on a file in the temp directory), held while alive:
/// tests that load the machine in a way others cannot share, such as a guest spinning its
/// CPU to be measured, take it in turn. Blocks until it is free.
pub struct MachineLock(#[allow(dead_code)] std::fs::File);

pub fn machine_lock(name: &str) -> MachineLock {
    let path = std::env::temp_dir().join(format!("yunhan-{name}.lock"));
    let file = (std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true))
    .open(&path)
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    MachineLock(file)
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read
/// back, released). Another process may take it before it is used: starters
/// that can detect that ([`EtcdCluster`]) retry with fresh ports.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free ports on 127.0.0.1 (all held until every one is chosen,
/// so they never repeat within one call).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .expect("local_addr of a bound listener")
                .port()
        })
        .collect()
}

/// The path of executable `name` on `PATH`, or an error telling the reader to
/// run `scripts/setup` (which installs the Debian `package`).
pub fn require_binary(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "`{name}` was not found on PATH: run scripts/setup \
                 (it installs the Debian package `{package}`)"
            )
        })
}

/// The repository root (where `scripts/` lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// The test guest (`scripts/build-test-guest`), built once and reused: the
/// script is idempotent and takes a lock. `YUNHAN_TEST_GUEST_DIR` overrides
/// where it goes (default `target/test-guest`).
pub fn test_guest() -> PathBuf {
    let dir = std::env::var_os("YUNHAN_TEST_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-guest"));
    let out = std::process::Command::new(workspace_root().join("scripts/build-test-guest"))
        .arg(&dir)
        .output()
        .expect("run scripts/build-test-guest");
    assert!(
        out.status.success(),
        "scripts/build-test-guest failed (run scripts/setup first): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// Kills the QEMU processes of VMs whose state lives under `dir` (found by
/// their `qemu.pid` files; a PID is killed only if its command line names a
/// path under `dir`). VMs deliberately outlive their agent, so a test that
/// stops its cloud must stop its VMs too.
pub fn kill_vms_under(dir: &Path) {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "qemu.pid") {
                out.push(p);
            }
        }
    }
    let mut pidfiles = Vec::new();
    walk(dir, &mut pidfiles);
    let needle = dir.to_string_lossy().into_owned();
    for f in pidfiles {
        let Some(pid) = std::fs::read_to_string(&f)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_polls_until_true_or_deadline() {
        let mut n = 0;
        assert!(wait_until(
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                n == 3
            }
        ));
        assert_eq!(n, 3);
        let start = Instant::now();
        assert!(!wait_until(
            Duration::from_millis(30),
            Duration::from_millis(5),
            || false
        ));
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn wait_until_async_polls() {
        let mut n = 0;
        assert!(
            wait_until_async(Duration::from_secs(5), Duration::from_millis(1), || {
                n += 1;
                let done = n == 2;
                async move { done }
            })
            .await
        );
        assert!(
            !wait_until_async(Duration::ZERO, Duration::from_millis(1), || async { false }).await
        );
    }

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports = free_ports(8);
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 8);
        std::net::TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    }

    #[test]
    fn missing_binary_says_to_run_setup() {
        let err = require_binary("yunhan-no-such-binary", "nothing").unwrap_err();
        assert!(err.to_string().contains("scripts/setup"), "{err}");
        assert!(require_binary("sh", "dash").is_ok());
    }
}
