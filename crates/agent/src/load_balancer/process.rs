//! The processes of a load balancer, run inside its namespace as children of the agent
//! (`ip netns exec <ns> …`, [`Daemon`]), with `PR_SET_PDEATHSIG` = SIGTERM so that they
//! never outlive the agent, each with its output in a log beside its configuration (its
//! own words say why it failed):
//!
//! - one master-worker HAProxy (`haproxy -W -db -f <cfg> -p <pid>`): a new configuration
//!   is checked (`haproxy -c`), installed, then loaded by SIGUSR2 to the master (a hitless
//!   reload: the old worker finishes its connections);
//! - when some listeners are Vortex's, Vortex (`yunhan vortex --mode nat`, the agent's own
//!   binary): it re-reads its configuration file when that changes (written whole, then
//!   renamed) and writes its status file every 200 ms; SIGTERM stops it (it detaches).

use std::ffi::OsStr;
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
use super::vortex::last_words;

/// Debian's HAProxy (2.6), installed by `scripts/setup`.
pub const HAPROXY: &str = "/usr/sbin/haproxy";
/// How long a start or a reload may take to say "Loading success.".
const LOAD_DEADLINE: Duration = Duration::from_secs(10);
/// How long Vortex may take to write its status file once started.
const VORTEX_DEADLINE: Duration = Duration::from_secs(5);
/// How much of the end of Vortex's log is read for its last words.
const LOG_TAIL: u64 = 4096;
/// How long a stopping process gets before SIGKILL.
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
    #[error("did not start: {0}")]
    VortexStart(String),
    /// `detail`: HAProxy's alerts or Vortex's last words, after ": " (or nothing).
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

/// The files of one load balancer's HAProxy, in `<state_dir>/lb/<id>/`, and its Vortex's.
#[derive(Debug, Clone)]
pub struct Files {
    pub dir: PathBuf,
    pub cfg: PathBuf,
    pub socket: PathBuf,
    pid: PathBuf,
    log: PathBuf,
    pub vortex: VortexFiles,
}

impl Files {
    pub fn new(dir: PathBuf) -> Files {
        Files {
            cfg: dir.join("haproxy.cfg"),
            socket: dir.join("stats.sock"),
            pid: dir.join("haproxy.pid"),
            log: dir.join("haproxy.log"),
            vortex: VortexFiles::new(&dir),
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

/// The files of one load balancer's Vortex, beside HAProxy's.
#[derive(Debug, Clone)]
pub struct VortexFiles {
    dir: PathBuf,
    pub cfg: PathBuf,
    pub status: PathBuf,
    log: PathBuf,
}

impl VortexFiles {
    pub fn new(dir: &Path) -> VortexFiles {
        VortexFiles {
            cfg: dir.join("vortex.toml"),
            status: dir.join("vortex.json"),
            log: dir.join("vortex.log"),
            dir: dir.to_path_buf(),
        }
    }

    /// Makes `cfg` the configuration file at once (a running Vortex never reads half of it).
    pub fn install(&self, cfg: &str) -> Result<(), ProcError> {
        std::fs::create_dir_all(&self.dir).map_err(file_err(&self.dir))?;
        let new = self.dir.join("vortex.toml.new");
        std::fs::write(&new, cfg).map_err(file_err(&new))?;
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

/// Forks the processes from one thread of its own: the parent-death signal follows the
/// *thread* that forked, not the process, and tokio's blocking threads come and go. The
/// thread ends with the spawner (its channel closes), which stops every process it started.
#[derive(Default)]
pub struct Spawner(Mutex<Option<mpsc::Sender<Job>>>);

impl Spawner {
    fn spawn(&self, cmd: Command) -> io::Result<Child> {
        let (tx, rx) = mpsc::channel();
        self.sender()?
            .send((cmd, tx))
            .map_err(|_| io::Error::other("the load balancers' spawner thread is gone"))?;
        rx.recv()
            .map_err(|_| io::Error::other("the load balancers' spawner thread is gone"))?
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

/// A child of the agent: `ip netns exec <ns> <program> …` with its output in a log file,
/// dying with the agent ([`die_with_parent`]); stopped with SIGTERM when dropped.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` (from [`in_netns`]) with its output in `log` (emptied first).
    fn spawn(
        spawner: &Spawner,
        mut cmd: Command,
        log: &Path,
        what: &'static str,
    ) -> Result<Daemon, ProcError> {
        let out = File::create(log).map_err(file_err(log))?;
        let err = out.try_clone().map_err(file_err(log))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        die_with_parent(&mut cmd);
        let child = spawner
            .spawn(cmd)
            .map_err(|source| ProcError::Spawn { what, source })?;
        Ok(Daemon {
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its exit status and pid, if it has exited (it is then reaped).
    fn exited(&mut self) -> Option<(std::process::ExitStatus, u32)> {
        let child = self.child.as_mut()?;
        let status = child.try_wait().ok()??;
        let pid = child.id();
        self.child = None;
        Some((status, pid))
    }

    fn signal(&self, sig: Signal) {
        if let Some(c) = &self.child {
            // Our own unreaped child: its pid cannot name another process.
            let _ = kill(Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// SIGTERM, then SIGKILL after [`STOP_DEADLINE`].
    fn stop(mut self) {
        self.signal(Signal::SIGTERM);
        if let Some(child) = self.child.take() {
            reap(child);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal(Signal::SIGTERM);
        if let Some(child) = self.child.take() {
            let _ = std::thread::Builder::new()
                .name("yunhan-lb-reaper".into())
                .spawn(move || reap(child));
        }
    }
}

/// `ip netns exec <netns> <program>`, run in `dir`.
fn in_netns(netns: &str, program: impl AsRef<OsStr>, dir: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .arg(program)
        .current_dir(dir);
    cmd
}

fn exited(status: std::process::ExitStatus, words: String) -> ProcError {
    ProcError::Exited {
        status: status.to_string(),
        detail: detail(words),
    }
}

/// `words` after ": " (nothing without words).
fn detail(words: String) -> String {
    if words.is_empty() {
        return words;
    }
    format!(": {words}")
}

/// A running HAProxy master (stopped with SIGTERM when dropped).
pub struct Haproxy(Daemon);

impl Haproxy {
    /// Starts HAProxy on `files.cfg` in namespace `netns`; returns once it has loaded.
    pub fn start(spawner: &Spawner, netns: &str, files: &Files) -> Result<Haproxy, ProcError> {
        let _ = std::fs::remove_file(&files.socket);
        let mut cmd = in_netns(netns, HAPROXY, &files.dir);
        cmd.args(["-W", "-db", "-f"])
            .arg(&files.cfg)
            .arg("-p")
            .arg(&files.pid);
        let d = Daemon::spawn(spawner, cmd, &files.log, "ip netns exec haproxy")?;
        let mut h = Haproxy(d);
        h.loaded(0).map_err(ProcError::Start)?;
        Ok(h)
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Loads the installed configuration (SIGUSR2 to the master).
    pub fn reload(&mut self) -> Result<(), ProcError> {
        let from = std::fs::metadata(&self.0.log).map_or(0, |m| m.len());
        self.0.signal(Signal::SIGUSR2);
        self.loaded(from).map_err(ProcError::Reload)
    }

    /// Waits for the master to say it loaded its configuration (in the log after `from`).
    fn loaded(&mut self, from: u64) -> Result<(), String> {
        let t0 = Instant::now();
        loop {
            let text = read_from(&self.0.log, from);
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
        let (status, pid) = self.0.exited()?;
        Some(exited(
            status,
            alerts(&read_from(&self.0.log, 0), Some(pid)),
        ))
    }

    /// Stops HAProxy: SIGTERM, then SIGKILL after [`STOP_DEADLINE`].
    pub fn stop(self) {
        self.0.stop();
    }
}

/// A running Vortex (stopped with SIGTERM when dropped).
pub struct Vortex(Daemon);

impl Vortex {
    /// Starts Vortex (`exe vortex …`: the agent's own binary) on `files.cfg` in namespace
    /// `netns`, attached to its `eth0`; returns once it has written its status file.
    pub fn start(
        spawner: &Spawner,
        exe: &Path,
        netns: &str,
        files: &VortexFiles,
    ) -> Result<Vortex, ProcError> {
        let cmd = vortex_command(exe, netns, files);
        Vortex::run(spawner, cmd, files, VORTEX_DEADLINE)
    }

    /// Starts `cmd` and waits up to `deadline` for the status file.
    fn run(
        spawner: &Spawner,
        cmd: Command,
        files: &VortexFiles,
        deadline: Duration,
    ) -> Result<Vortex, ProcError> {
        let _ = std::fs::remove_file(&files.status);
        let d = Daemon::spawn(spawner, cmd, &files.log, "ip netns exec yunhan vortex")?;
        let mut v = Vortex(d);
        let t0 = Instant::now();
        while !files.status.exists() {
            if let Some(e) = v.exited() {
                return Err(ProcError::VortexStart(e.to_string()));
            }
            if t0.elapsed() > deadline {
                let said = detail(last_words(&read_tail(&files.log)));
                return Err(ProcError::VortexStart(format!(
                    "no status within {deadline:?}{said}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(v)
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Why it has exited, if it has (it is then reaped): its log's last words.
    pub fn exited(&mut self) -> Option<ProcError> {
        let (status, _) = self.0.exited()?;
        Some(exited(status, last_words(&read_tail(&self.0.log))))
    }

    /// Stops Vortex: SIGTERM, then SIGKILL after [`STOP_DEADLINE`].
    pub fn stop(self) {
        self.0.stop();
    }
}

/// `ip netns exec <netns> <exe> vortex …`: in NAT mode on `eth0`, named after the
/// namespace, its state reset when it starts and its program detached when it stops.
fn vortex_command(exe: &Path, netns: &str, files: &VortexFiles) -> Command {
    let mut cmd = in_netns(netns, exe, &files.dir);
    cmd.arg("vortex")
        .arg("-c")
        .arg(&files.cfg)
        .args([
            "-i",
            "eth0",
            "--mode",
            "nat",
            "--name",
            netns,
            "--status-file",
        ])
        .arg(&files.status)
        .args([
            "--detach-on-exit",
            "--reset-state",
            "--reload-interval-ms",
            "200",
        ])
        // Plain words in its log (tracing's colours otherwise).
        .env("NO_COLOR", "1");
    cmd
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
/// HAProxy or Vortex, which keep the setting (they are not set-user-ID), across HAProxy's
/// reloads too.
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

/// The last [`LOG_TAIL`] bytes of a file (from a line's start; empty if unreadable).
fn read_tail(path: &Path) -> String {
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    let text = read_from(path, len.saturating_sub(LOG_TAIL));
    match len > LOG_TAIL {
        true => text
            .split_once('\n')
            .map_or("", |(_, rest)| rest)
            .to_string(),
        false => text,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `sh -c script` in `dir`: a stand-in for Vortex (no namespace, no root).
    fn sh(script: &str, dir: &Path) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).current_dir(dir);
        cmd
    }

    /// What runs `script`, with its directory and its spawner (dropped: it is stopped).
    struct Run {
        v: Result<Vortex, ProcError>,
        _dir: tempfile::TempDir,
        _spawner: Spawner,
    }

    fn run(script: &str, deadline: Duration) -> Run {
        let dir = tempfile::tempdir().unwrap();
        let files = VortexFiles::new(dir.path());
        // A former run's: not taken for the new one's.
        std::fs::write(&files.status, "{}").unwrap();
        let spawner = Spawner::default();
        let v = Vortex::run(&spawner, sh(script, dir.path()), &files, deadline);
        Run {
            v,
            _dir: dir,
            _spawner: spawner,
        }
    }

    #[test]
    fn vortex_runs_in_the_namespace() {
        let files = VortexFiles::new(Path::new("/lb/lb-1"));
        let cmd = vortex_command(Path::new("/usr/bin/yunhan"), "ynl-ab", &files);
        let args: Vec<_> = (cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            (cmd.get_program(), args.join(" ").as_str()),
            (
                OsStr::new("ip"),
                "netns exec ynl-ab /usr/bin/yunhan vortex -c /lb/lb-1/vortex.toml -i eth0 \
                 --mode nat --name ynl-ab --status-file /lb/lb-1/vortex.json --detach-on-exit \
                 --reset-state --reload-interval-ms 200"
            )
        );
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/lb/lb-1")));
    }

    #[test]
    fn vortex_is_up_once_it_writes_its_status() {
        let script = "sleep 0.3; echo '{}' > vortex.json; exec sleep 30";
        let t0 = Instant::now();
        let r = run(script, Duration::from_secs(5));
        let mut v = r.v.unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(300));
        std::thread::sleep(Duration::from_millis(100));
        assert!(v.exited().is_none());
        let pid = v.pid();
        v.stop();
        assert!(kill(Pid::from_raw(pid as i32), None).is_err());
    }

    #[test]
    fn vortex_failing_to_start_says_why() {
        let script = "echo starting; echo; echo 'error: cannot attach to eth0' >&2; exit 3";
        let e = run(script, Duration::from_secs(5)).v.err().unwrap();
        assert_eq!(
            e.to_string(),
            "did not start: exited (exit status: 3): starting; error: cannot attach to eth0"
        );
        let e = run("echo quiet; exec sleep 30", Duration::from_millis(300));
        assert_eq!(
            e.v.err().unwrap().to_string(),
            "did not start: no status within 300ms: quiet"
        );
    }

    #[test]
    fn vortex_exiting_later_says_why() {
        let script = "echo '{}' > vortex.json; sleep 0.2; echo 'error: eth0 is gone'; exit 1";
        let r = run(script, Duration::from_secs(5));
        let mut v = r.v.unwrap();
        let t0 = Instant::now();
        let e = loop {
            if let Some(e) = v.exited() {
                break e;
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "still running");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(
            e.to_string(),
            "exited (exit status: 1): error: eth0 is gone"
        );
        assert!(v.exited().is_none());
    }

    #[test]
    fn the_tail_of_a_log_starts_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("vortex.log");
        let text = format!("{}\nsecond\nlast\n", "x".repeat(LOG_TAIL as usize));
        std::fs::write(&log, text).unwrap();
        assert_eq!(read_tail(&log), "second\nlast\n");
        assert_eq!(read_tail(&dir.path().join("none")), "");
    }
}
