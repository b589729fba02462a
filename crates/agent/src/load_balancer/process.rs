//! HAProxy processes: one master-worker HAProxy per load balancer, run inside its
//! namespace as a child of the agent (`ip netns exec <ns> haproxy -W -db -f <cfg> -p
//! <pid>`), with `PR_SET_PDEATHSIG` = SIGTERM so that it never outlives the agent.
//! A new configuration is checked (`haproxy -c`), installed, then loaded by SIGUSR2 to the
//! master (a hitless reload: the old worker finishes its connections). HAProxy's output
//! goes to `haproxy.log` beside its configuration; its own words say why it failed.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::haproxy::alerts;

/// Debian's HAProxy (2.6), installed by `scripts/setup`.
pub const HAPROXY: &str = "/usr/sbin/haproxy";
/// How long a start or a reload may take to say "Loading success.".
const LOAD_DEADLINE: Duration = Duration::from_secs(10);
/// How long a stopping HAProxy gets before SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// The stats socket's answer deadline.
const STATS_DEADLINE: Duration = Duration::from_secs(2);
/// Longest path a Unix socket can bind (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot run {what}: {source}")]
    Spawn {
        what: &'static str,
        source: io::Error,
    },
    #[error("{path}: {source}")]
    File { path: PathBuf, source: io::Error },
    #[error("the stats socket path {0} is longer than a Unix socket allows")]
    SocketPath(PathBuf),
    #[error("HAProxy refused the configuration: {0}")]
    Refused(String),
    #[error("HAProxy did not start: {0}")]
    Start(String),
    #[error("HAProxy did not reload (the previous configuration is still served): {0}")]
    Reload(String),
    /// `detail`: HAProxy's alerts, after ": " (or nothing).
    #[error("exited ({status}){detail}")]
    Exited { status: String, detail: String },
    #[error("stats socket {path}: {source}")]
    Stats { path: PathBuf, source: io::Error },
}

fn file_err(path: &Path) -> impl FnOnce(io::Error) -> ProcError + '_ {
    move |source| ProcError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// The files of one load balancer's HAProxy, in `<state_dir>/lb/<id>/`.
#[derive(Debug, Clone)]
pub struct Files {
    pub dir: PathBuf,
    pub cfg: PathBuf,
    pub socket: PathBuf,
    pid: PathBuf,
    log: PathBuf,
}

impl Files {
    pub fn new(dir: PathBuf) -> Files {
        Files {
            cfg: dir.join("haproxy.cfg"),
            socket: dir.join("stats.sock"),
            pid: dir.join("haproxy.pid"),
            log: dir.join("haproxy.log"),
            dir,
        }
    }

    /// Writes HTTPS listeners' PEM files (certificate and key, mode 0600) before the
    /// configuration that names them is checked.
    pub fn install_pems(&self, pems: &[(PathBuf, String)]) -> Result<(), ProcError> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(&self.dir).map_err(file_err(&self.dir))?;
        for (path, pem) in pems {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(file_err(path))?;
            std::io::Write::write_all(&mut f, pem.as_bytes()).map_err(file_err(path))?;
        }
        Ok(())
    }

    /// Checks `cfg` with `haproxy -c`, then makes it the configuration file.
    pub fn install(&self, cfg: &str) -> Result<(), ProcError> {
        if self.socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(ProcError::SocketPath(self.socket.clone()));
        }
        std::fs::create_dir_all(&self.dir).map_err(file_err(&self.dir))?;
        let new = self.dir.join("haproxy.cfg.new");
        std::fs::write(&new, cfg).map_err(file_err(&new))?;
        let out = Command::new(HAPROXY)
            .args(["-c", "-f"])
            .arg(&new)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ProcError::Spawn {
                what: HAPROXY,
                source,
            })?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
            return Err(ProcError::Refused(or_status(
                alerts(&text, None),
                out.status,
            )));
        }
        std::fs::rename(&new, &self.cfg).map_err(file_err(&self.cfg))
    }
}

fn or_status(alerts: String, status: std::process::ExitStatus) -> String {
    if alerts.is_empty() {
        return status.to_string();
    }
    alerts
}

type Job = (Command, mpsc::Sender<io::Result<Child>>);

/// Forks HAProxy from one thread of its own: the parent-death signal follows the *thread*
/// that forked, not the process, and tokio's blocking threads come and go. The thread ends
/// with the spawner (its channel closes), which stops every HAProxy it started.
#[derive(Default)]
pub struct Spawner(Mutex<Option<mpsc::Sender<Job>>>);

impl Spawner {
    fn spawn(&self, cmd: Command) -> io::Result<Child> {
        let (tx, rx) = mpsc::channel();
        self.sender()?
            .send((cmd, tx))
            .map_err(|_| io::Error::other("the HAProxy spawner thread is gone"))?;
        rx.recv()
            .map_err(|_| io::Error::other("the HAProxy spawner thread is gone"))?
    }

    fn sender(&self) -> io::Result<mpsc::Sender<Job>> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = s.as_ref() {
            return Ok(tx.clone());
        }
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("yunhan-lb-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })?;
        *s = Some(tx.clone());
        Ok(tx)
    }
}

/// A running HAProxy master (stopped with SIGTERM when dropped).
pub struct Haproxy {
    child: Option<Child>,
    log: PathBuf,
}

impl Haproxy {
    /// Starts HAProxy on `files.cfg` in namespace `netns`; returns once it has loaded.
    pub fn start(spawner: &Spawner, netns: &str, files: &Files) -> Result<Haproxy, ProcError> {
        let _ = std::fs::remove_file(&files.socket);
        let log = File::create(&files.log).map_err(file_err(&files.log))?;
        let log2 = log.try_clone().map_err(file_err(&files.log))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, HAPROXY, "-W", "-db", "-f"])
            .arg(&files.cfg)
            .arg("-p")
            .arg(&files.pid)
            .current_dir(&files.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        die_with_parent(&mut cmd);
        let child = spawner.spawn(cmd).map_err(|source| ProcError::Spawn {
            what: "ip netns exec haproxy",
            source,
        })?;
        let mut h = Haproxy {
            child: Some(child),
            log: files.log.clone(),
        };
        h.loaded(0).map_err(ProcError::Start)?;
        Ok(h)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Loads the installed configuration (SIGUSR2 to the master).
    pub fn reload(&mut self) -> Result<(), ProcError> {
        let from = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        self.signal(Signal::SIGUSR2);
        self.loaded(from).map_err(ProcError::Reload)
    }

    /// Waits for the master to say it loaded its configuration (in the log after `from`).
    fn loaded(&mut self, from: u64) -> Result<(), String> {
        let t0 = Instant::now();
        loop {
            let text = read_from(&self.log, from);
            if text.contains("Loading success.") {
                return Ok(());
            }
            let words = alerts(&text, Some(self.pid()));
            if text.contains("Loading failure!") {
                return Err(words);
            }
            if let Some(e) = self.exited() {
                return Err(e.to_string());
            }
            if t0.elapsed() > LOAD_DEADLINE {
                return Err(format!("no answer within {LOAD_DEADLINE:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Why the master has exited, if it has (it is then reaped).
    pub fn exited(&mut self) -> Option<ProcError> {
        let child = self.child.as_mut()?;
        let status = child.try_wait().ok()??;
        let pid = child.id();
        self.child = None;
        let words = alerts(&read_from(&self.log, 0), Some(pid));
        Some(ProcError::Exited {
            status: status.to_string(),
            detail: if words.is_empty() {
                words
            } else {
                format!(": {words}")
            },
        })
    }

    fn signal(&self, sig: Signal) {
        if let Some(c) = &self.child {
            // Our own unreaped child: its pid cannot name another process.
            let _ = kill(Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// Stops HAProxy: SIGTERM, then SIGKILL after [`STOP_DEADLINE`].
    pub fn stop(mut self) {
        self.signal(Signal::SIGTERM);
        if let Some(child) = self.child.take() {
            reap(child);
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.signal(Signal::SIGTERM);
        if let Some(child) = self.child.take() {
            let _ = std::thread::Builder::new()
                .name("yunhan-lb-reaper".into())
                .spawn(move || reap(child));
        }
    }
}

/// Waits for a signalled child, SIGKILLs it after the deadline.
fn reap(mut child: Child) {
    let t0 = Instant::now();
    while t0.elapsed() < STOP_DEADLINE {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `PR_SET_PDEATHSIG` = SIGTERM in the child: it is stopped when the thread that forked
/// it (the spawner's) ends, whatever way the agent goes. `ip netns exec` then execs
/// HAProxy, which keeps the setting (it is not set-user-ID), across its reloads too.
#[allow(unsafe_code)] // pre_exec: no safe way to run code between fork and exec
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the hook only calls prctl(2), async-signal-safe, touching no shared memory.
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(io::Error::from));
    }
}

/// What a file holds after byte `from` (empty if unreadable).
fn read_from(path: &Path, from: u64) -> String {
    let mut bytes = Vec::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.read_to_end(&mut bytes);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The answer to `show stat` on the stats socket.
pub fn show_stat(socket: &Path) -> Result<String, ProcError> {
    let err = |source| ProcError::Stats {
        path: socket.to_path_buf(),
        source,
    };
    let mut s = UnixStream::connect(socket).map_err(err)?;
    s.set_read_timeout(Some(STATS_DEADLINE)).map_err(err)?;
    s.set_write_timeout(Some(STATS_DEADLINE)).map_err(err)?;
    s.write_all(b"show stat\n").map_err(err)?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(err)?;
    Ok(out)
}
