//! Real etcd clusters on loopback.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{free_ports, require_binary, spawn_owned};

/// How a cluster is started. The defaults suit tests on a loaded 2-core box:
/// elections in about half a second, a generous readiness deadline.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// `--heartbeat-interval`.
    pub heartbeat: Duration,
    /// `--election-timeout` (etcd wants ≥ 5 × heartbeat). etcd's minimum lease
    /// TTL is 1.5 × this, so leases shorter than that are extended.
    pub election_timeout: Duration,
    /// How long [`EtcdCluster::start`] waits for every member to be healthy.
    pub ready_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            heartbeat: Duration::from_millis(50),
            election_timeout: Duration::from_millis(500),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

struct Member {
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A real etcd cluster on 127.0.0.1: each member has its own free client and
/// peer ports and its own data dir under one temp dir, with its output in
/// `m<i>.log` there. Members are indexed `0..member_count()`; indices stay
/// valid after a member is killed.
///
/// Dropping the cluster SIGKILLs every member and removes the temp dir. When
/// dropped during a panic it first prints the tail of every member's log to
/// stderr; set `YUNHAN_TESTKIT_KEEP=1` to keep the dir (its path is printed).
pub struct EtcdCluster {
    etcd: PathBuf,
    dir: Option<tempfile::TempDir>,
    token: String,
    opts: EtcdOptions,
    members: Vec<Member>,
}

/// A start that failed because a chosen port was taken meanwhile.
#[derive(Debug)]
struct PortClash;

impl std::fmt::Display for PortClash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a port was taken before etcd could bind it")
    }
}

impl std::error::Error for PortClash {}

impl EtcdCluster {
    /// Starts `members` members and waits until all are healthy (a leader is
    /// elected). Blocking; panics with the reason (and log tails) on failure.
    pub fn start(members: usize) -> EtcdCluster {
        EtcdCluster::start_with(members, EtcdOptions::default())
    }

    /// [`start`](EtcdCluster::start) with explicit options.
    pub fn start_with(members: usize, opts: EtcdOptions) -> EtcdCluster {
        EtcdCluster::try_start(members, opts).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts a cluster, retrying with fresh ports if one was taken meanwhile.
    pub fn try_start(members: usize, opts: EtcdOptions) -> anyhow::Result<EtcdCluster> {
        if members == 0 {
            bail!("an etcd cluster needs at least one member");
        }
        let etcd = require_binary("etcd", "etcd-server")?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match EtcdCluster::start_once(&etcd, members, &opts) {
                Err(e) if e.is::<PortClash>() && attempt < 5 => continue,
                other => return other,
            }
        }
    }

    fn start_once(etcd: &Path, members: usize, opts: &EtcdOptions) -> anyhow::Result<EtcdCluster> {
        static CLUSTERS: AtomicU64 = AtomicU64::new(0);
        let dir = tempfile::Builder::new()
            .prefix("yunhan-etcd-")
            .tempdir()
            .context("creating the etcd temp dir")?;
        let ports = free_ports(2 * members);
        let mut cluster = EtcdCluster {
            etcd: etcd.to_path_buf(),
            dir: Some(dir),
            token: format!(
                "yunhan-test-{}-{}",
                std::process::id(),
                CLUSTERS.fetch_add(1, Ordering::Relaxed)
            ),
            opts: opts.clone(),
            members: ports
                .chunks(2)
                .map(|p| Member {
                    client_port: p[0],
                    peer_port: p[1],
                    child: None,
                })
                .collect(),
        };
        for i in 0..members {
            cluster.spawn(i)?;
        }
        let deadline = Instant::now() + opts.ready_timeout;
        for i in 0..members {
            cluster.wait_healthy(i, deadline)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let initial_cluster = self
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| format!("m{j}=http://127.0.0.1:{}", m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let log_path = self.log_path(i);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut cmd = Command::new(&self.etcd);
        // Stray ETCD_* variables would override the flags.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--name")
            .arg(format!("m{i}"))
            .arg("--data-dir")
            .arg(self.dir().join(format!("m{i}")))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            // Ignored by a member that restarts on its existing data dir.
            .args(["--initial-cluster-state", "new"])
            .arg(format!(
                "--heartbeat-interval={}",
                self.opts.heartbeat.as_millis()
            ))
            .arg(format!(
                "--election-timeout={}",
                self.opts.election_timeout.as_millis()
            ))
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file")?)
            .stderr(log);
        let child =
            spawn_owned(cmd).with_context(|| format!("spawning {}", self.etcd.display()))?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Waits until member `i` answers `/health` with `true`, failing early if
    /// it exits.
    fn wait_healthy(&mut self, i: usize, deadline: Instant) -> anyhow::Result<()> {
        loop {
            let exited = match self.members[i].child.as_mut() {
                Some(c) => c.try_wait().ok().flatten(),
                None => bail!("etcd member m{i} is not running"),
            };
            if let Some(status) = exited {
                self.members[i].child = None;
                let log = self.log_tail(i, 30);
                let e = anyhow::anyhow!(
                    "etcd member m{i} exited during startup ({status}); log tail:\n{log}"
                );
                if log.contains("address already in use") {
                    return Err(e.context(PortClash));
                }
                return Err(e);
            }
            if self.healthy(i) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "etcd member m{i} was not healthy within {:?}; log tail:\n{}",
                    self.opts.ready_timeout,
                    self.log_tail(i, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether member `i` answers `GET /health` with `{"health":"true"}`.
    pub fn healthy(&self, i: usize) -> bool {
        self.ask(i, "GET", "/health", "")
            .is_some_and(|v| v["health"] == "true")
    }

    /// Member `i`'s JSON answer to `method path` with `body` (`None`: no 200 answer in
    /// half a second).
    fn ask(&self, i: usize, method: &str, path: &str, body: &str) -> Option<serde_json::Value> {
        let port = self.members[i].client_port;
        http(port, method, path, body, Duration::from_millis(500))
            .and_then(|b| serde_json::from_str(&b).ok())
    }

    /// Number of members (running or killed).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Client URL of member `i`: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Client URLs of every member, in member order (killed ones included).
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// `etcd://127.0.0.1:p0,127.0.0.1:p1,…`: what `yunhan_store::open` and
    /// `yunhan server --store` take.
    pub fn store_url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// PID of member `i`, if it is running (as far as this harness knows).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    /// SIGKILLs member `i` (the process this harness spawned) and reaps it.
    /// Does nothing if it is not running.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts killed member `i` again on its data dir and ports, and waits
    /// until it is healthy.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        self.spawn(i)?;
        let deadline = Instant::now() + self.opts.ready_timeout;
        self.wait_healthy(i, deadline)
    }

    /// The member that currently leads, from the members' own
    /// `/v3/maintenance/status` (the member whose id is the leader it reports).
    /// `None` while there is no leader or it does not answer.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].child.is_some()
                && self
                    .ask(i, "POST", "/v3/maintenance/status", "{}")
                    .is_some_and(|v| {
                        let leader = &v["leader"];
                        leader.is_string() && leader != "0" && *leader == v["header"]["member_id"]
                    })
        })
    }

    /// Polls [`leader`](EtcdCluster::leader) until there is one or `within`
    /// has passed. Blocking.
    pub fn wait_for_leader(&self, within: Duration) -> Option<usize> {
        let mut found = None;
        crate::wait_until(within, Duration::from_millis(20), || {
            found = self.leader();
            found.is_some()
        });
        found
    }

    /// The temp dir holding every member's data dir (`m<i>/`) and log.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// Where member `i`'s stdout and stderr go.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir().join(format!("m{i}.log"))
    }

    /// The last `lines` lines of member `i`'s log.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(self.log_path(i)) {
            let _ = f.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if std::thread::panicking() {
            for i in 0..self.members.len() {
                eprintln!(
                    "--- etcd m{i} ({}) log tail ---\n{}",
                    self.endpoint(i),
                    self.log_tail(i, 20)
                );
            }
        }
        if std::env::var_os("YUNHAN_TESTKIT_KEEP").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("keeping etcd dir {}", d.keep().display());
            }
        }
    }
}

/// One HTTP/1.0 request to 127.0.0.1:`port`; the body of a 200 answer.
fn http(port: u16, method: &str, path: &str, body: &str, timeout: Duration) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}
