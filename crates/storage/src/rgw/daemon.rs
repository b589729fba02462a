//! [`RgwDaemon`]: one radosgw process owned by the caller (dev clusters,
//! tests, a single-box `up`).
//!
//! Options set on its command line, and why:
//! - `--rgw-enable-usage-log=true`, `--rgw-usage-log-tick-interval=1`,
//!   `--rgw-usage-log-flush-threshold=1`: metering reads the usage log; by
//!   default it is off, and flushed every 30 s or 1024 entries;
//! - `--rgw-bucket-quota-ttl=0` (default 600 s): quota checks read the
//!   bucket's stats instead of a cached copy, so a quota holds at once;
//! - `--rgw-user-quota-bucket-sync-interval=1` (180 s) and
//!   `--rgw-user-quota-sync-interval=1` (1 day): user quotas follow the
//!   buckets' use within a second. Not 0: at 0 the sync threads spin (half a
//!   core measured on 16.2.15);
//! - log, admin socket and pid file in `data_dir`, not the cluster's dirs.
//!
//! Stopping: SIGTERM, so radosgw drops its watches on the control objects; a
//! SIGKILLed radosgw leaves them for 30 s, during which every metadata write of
//! `radosgw-admin` (user, key, quota) waits 2 × 10 s for it to acknowledge.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::RgwError;
use crate::{cmd, CephCluster, StorageError};

/// The first start creates RGW's pools (10-25 s on a dev cluster).
const START_DEADLINE: Duration = Duration::from_secs(90);
/// How long radosgw may take to stop after SIGTERM before SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(200);
/// How much of the end of its stderr an error quotes.
const TAIL_BYTES: u64 = 2048;

/// How to run one radosgw.
#[derive(Debug, Clone)]
pub struct RgwDaemonConfig {
    /// The cluster, with an identity allowed to create cephx users.
    pub cluster: CephCluster,
    /// cephx id suffix: the daemon is `client.rgw.<name>`.
    pub name: String,
    /// Where S3 is served; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Its keyring, log, admin socket and pid file.
    pub data_dir: PathBuf,
}

/// A running radosgw (`radosgw -f`), stopped on Drop (SIGTERM, then SIGKILL
/// after 15 s, and waited for); it also gets SIGTERM if its owner dies
/// (`PR_SET_PDEATHSIG`).
pub struct RgwDaemon {
    child: Option<Child>,
    endpoint: String,
    log: PathBuf,
}

impl RgwDaemon {
    /// Creates the cephx identity `client.rgw.<name>` (`ceph auth
    /// get-or-create … mon 'allow rw' osd 'allow rwx'`, keyring written 0600
    /// into data_dir), starts radosgw and waits (90 s at most) until an HTTP
    /// `GET /` answers.
    pub async fn start(cfg: RgwDaemonConfig) -> Result<RgwDaemon, RgwError> {
        validate_name(&cfg.name)?;
        let listen = pick_port(cfg.listen)?;
        fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| StorageError::io(format!("create {}", cfg.data_dir.display()), e))?;
        let keyring = write_keyring(&cfg).await?;
        let files = Files::new(&cfg.data_dir);
        let command = radosgw_command(&cfg, listen, &keyring, &files);
        let rendered = render(&command);
        let stderr = fs::File::create(&files.stderr)
            .map_err(|e| StorageError::io(format!("create {}", files.stderr.display()), e))?;
        let child = spawn_owned(command, stderr).map_err(|e| StorageError::Backend {
            command: rendered.clone(),
            stderr: format!("cannot run it: {e}"),
        })?;
        let mut daemon = RgwDaemon {
            child: Some(child),
            endpoint: format!("http://{listen}"),
            log: files.log.clone(),
        };
        daemon.wait_ready(&rendered, &files).await?;
        Ok(daemon)
    }

    /// `http://ADDR:PORT`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The radosgw process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// radosgw's own log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// How radosgw ended, if it has (without waiting).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Polls `GET /` until any HTTP answer; fails if radosgw exits first or
    /// the deadline passes (the error names the log and quotes stderr).
    async fn wait_ready(&mut self, command: &str, files: &Files) -> Result<(), RgwError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| self.unreachable(format!("cannot build an HTTP client: {e}")))?;
        let t0 = Instant::now();
        loop {
            // An answer counts only while radosgw runs (not another server's).
            let answered = http.get(&self.endpoint).send().await.is_ok();
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(StorageError::Backend {
                    command: command.to_string(),
                    stderr: format!("exited ({status}) before serving; {}", files.explain()),
                }
                .into());
            }
            if answered {
                tracing::info!(endpoint = %self.endpoint, took = ?t0.elapsed(), "radosgw is up");
                return Ok(());
            }
            if t0.elapsed() > START_DEADLINE {
                let why = format!(
                    "radosgw did not answer within {START_DEADLINE:?}; {}",
                    files.explain()
                );
                return Err(self.unreachable(why));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn unreachable(&self, why: String) -> RgwError {
        RgwError::Unreachable {
            endpoint: self.endpoint.clone(),
            why,
        }
    }
}

impl Drop for RgwDaemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Our own unreaped child: its pid cannot name another process.
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let t0 = Instant::now();
        while t0.elapsed() < STOP_DEADLINE {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        tracing::warn!(pid = child.id(), "radosgw ignored SIGTERM: SIGKILL");
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The daemon's files in `data_dir`.
struct Files {
    log: PathBuf,
    stderr: PathBuf,
    asok: PathBuf,
    pid: PathBuf,
}

impl Files {
    fn new(dir: &Path) -> Self {
        Files {
            log: dir.join("radosgw.log"),
            stderr: dir.join("radosgw.stderr"),
            asok: dir.join("radosgw.asok"),
            pid: dir.join("radosgw.pid"),
        }
    }

    /// `see its log LOG; stderr ends with: …`.
    fn explain(&self) -> String {
        let tail = read_tail(&self.stderr);
        match tail.trim().is_empty() {
            true => format!("see its log {}", self.log.display()),
            false => format!(
                "see its log {}; stderr ends with: {}",
                self.log.display(),
                tail.trim()
            ),
        }
    }
}

/// A cephx id suffix: letters, digits, `_`, `-`, `.`.
fn validate_name(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    match ok {
        true => Ok(()),
        false => Err(StorageError::invalid(format!(
            "radosgw name `{name}`: use 1-64 letters, digits, `_`, `-` and `.`"
        ))),
    }
}

/// `ceph auth get-or-create client.rgw.<name> …` into `data_dir/keyring` (0600).
async fn write_keyring(cfg: &RgwDaemonConfig) -> Result<PathBuf, RgwError> {
    let mut c = cfg.cluster.ceph();
    c.args(["auth", "get-or-create", &format!("client.rgw.{}", cfg.name)])
        .args(["mon", "allow rw", "osd", "allow rwx"]);
    let keyring = cmd::run(&mut c).await?;
    let path = cfg.data_dir.join("keyring");
    let io_err = |e| StorageError::io(format!("write {}", path.display()), e);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err)?;
    // An existing file keeps its mode on open: set it.
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io_err)?;
    f.write_all(&keyring).map_err(io_err)?;
    Ok(path)
}

/// `listen` if it is free now; with port 0, the same address with a port
/// free now. (A taken port would otherwise look like a radosgw answering.)
fn pick_port(listen: SocketAddr) -> Result<SocketAddr, StorageError> {
    let err = |e| StorageError::io(format!("listen on {listen} for radosgw"), e);
    TcpListener::bind(listen)
        .and_then(|l| l.local_addr())
        .map_err(err)
}

fn radosgw_command(
    cfg: &RgwDaemonConfig,
    listen: SocketAddr,
    keyring: &Path,
    f: &Files,
) -> Command {
    let mut c = Command::new("radosgw");
    c.arg("-c")
        .arg(&cfg.cluster.conf)
        .args(["-n", &format!("client.rgw.{}", cfg.name), "-f"])
        .arg("--keyring")
        .arg(keyring)
        // tcp_nodelay: small answers do not wait for the client's delayed ACK (2x the rate of 4 KiB GETs)
        .args([
            "--rgw-frontends",
            &format!("beast endpoint={listen} tcp_nodelay=1"),
        ])
        .arg("--rgw-data")
        .arg(&cfg.data_dir)
        .arg("--log-file")
        .arg(&f.log)
        .arg("--admin-socket")
        .arg(&f.asok)
        .arg("--pid-file")
        .arg(&f.pid)
        .args([
            "--rgw-enable-usage-log=true",
            "--rgw-usage-log-tick-interval=1",
            "--rgw-usage-log-flush-threshold=1",
            "--rgw-bucket-quota-ttl=0",
            "--rgw-user-quota-bucket-sync-interval=1",
            "--rgw-user-quota-sync-interval=1",
        ]);
    c
}

/// `program arg…`, for error messages.
fn render(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

type Job = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` (stdout and stderr to `stderr`) with `PR_SET_PDEATHSIG` =
/// SIGTERM, from a thread that lives as long as the process: the death
/// signal follows the thread that forked, and tokio's threads come and go.
fn spawn_owned(mut cmd: Command, stderr: fs::File) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let stdout = stderr.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
    die_with_parent(&mut cmd);
    let spawner = match SPAWNER.get() {
        Some(s) => s,
        None => {
            let (tx, rx) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("yunhan-rgw-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(cmd.spawn());
                    }
                })?;
            SPAWNER.get_or_init(|| tx)
        }
    };
    let gone = || io::Error::other("the radosgw spawner thread is gone");
    let (tx, rx) = mpsc::channel();
    spawner.send((cmd, tx)).map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}

#[allow(unsafe_code)] // pre_exec: no safe way to run code between fork and exec
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the hook only calls prctl(2), async-signal-safe, touching no shared memory.
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(io::Error::from));
    }
}

/// The last [`TAIL_BYTES`] of a file (empty if unreadable).
fn read_tail(path: &Path) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = fs::File::open(path) {
        let len = f.metadata().map_or(0, |m| m.len());
        if f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
            .is_ok()
        {
            let _ = f.read_to_end(&mut bytes);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(listen: &str) -> RgwDaemonConfig {
        RgwDaemonConfig {
            cluster: CephCluster::admin("/etc/ceph/ceph.conf"),
            name: "y".into(),
            listen: listen.parse().unwrap(),
            data_dir: "/var/lib/rgw".into(),
        }
    }

    #[test]
    fn command_line() {
        let c = cfg("127.0.0.1:7480");
        let f = Files::new(&c.data_dir);
        let cmd = radosgw_command(&c, c.listen, Path::new("/var/lib/rgw/keyring"), &f);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        assert!(
            line.starts_with(
                "-c /etc/ceph/ceph.conf -n client.rgw.y -f --keyring /var/lib/rgw/keyring"
            ),
            "{line}"
        );
        let frontends = args.iter().position(|a| a == "--rgw-frontends").unwrap();
        assert_eq!(
            args[frontends + 1],
            "beast endpoint=127.0.0.1:7480 tcp_nodelay=1"
        );
        for opt in [
            "--rgw-enable-usage-log=true",
            "--rgw-bucket-quota-ttl=0",
            "--log-file",
        ] {
            assert!(args.iter().any(|a| a == opt), "{opt} missing: {line}");
        }
        let v6 = cfg("[::1]:7480");
        let cmd = radosgw_command(&v6, v6.listen, Path::new("k"), &f);
        assert!(cmd
            .get_args()
            .any(|a| a == "beast endpoint=[::1]:7480 tcp_nodelay=1"));
    }

    #[test]
    fn names_and_ports() {
        assert!(validate_name("y").is_ok() && validate_name("host-1.a_b").is_ok());
        for bad in ["", "a b", "a/b", "a;b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        let picked = pick_port("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_ne!(picked.port(), 0);
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = pick_port(addr).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("listen on {addr} for radosgw: ")),
            "{e}"
        );
        drop(taken);
        assert_eq!(pick_port(addr).unwrap(), addr);
    }

    #[test]
    fn errors_quote_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let f = Files::new(dir.path());
        assert!(f.explain().starts_with("see its log "));
        fs::write(
            &f.stderr,
            "x".repeat(5000) + "\nfailed to bind address 127.0.0.1:1\n",
        )
        .unwrap();
        let e = f.explain();
        assert!(e.ends_with("failed to bind address 127.0.0.1:1"), "{e}");
        assert!(e.len() < 2200);
    }
}
