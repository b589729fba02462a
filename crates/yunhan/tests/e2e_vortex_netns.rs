//! End to end in network namespaces: client, two Vortex nodes (`yunhan vortex`,
//! the real binary), three backends (VIP on loopback, DSR) on one bridge. Needs root.
//!
//! Topology (all namespaces are named yvx<pid>-*; torn down by a Drop guard):
//!   c (10.77.0.2) ─┐
//!   l1 (.11) ──────┤ bridge in ns "br" (the bridge-side peers of l1/l2 carry
//!   l2 (.12) ──────┤ an XDP_PASS program so XDP_TX frames are delivered)
//!   b1..b3 (.21-23)┘ VIP 10.77.1.1 on lo, HTTP/line server on :80

// unsafe: setns(2) on a helper thread, to open sockets inside a test namespace.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const VIP: &str = "10.77.1.1";
const ALL: [&str; 3] = ["10.77.0.21", "10.77.0.22", "10.77.0.23"];

fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

struct Lab {
    prefix: String,
    children: Vec<(String, Child)>,
    stop: Arc<AtomicBool>,
    dir: tempfile::TempDir,
}

impl Lab {
    fn ns(&self, n: &str) -> String {
        format!("{}-{n}", self.prefix)
    }

    fn ip(&self, ns: &str, args: &str) -> Result<()> {
        let ns = self.ns(ns);
        let mut v = vec!["ip", "-n", ns.as_str()];
        v.extend(args.split_whitespace());
        sh(&v)
    }

    fn pin(&self, node: &str) -> PathBuf {
        PathBuf::from(format!("/sys/fs/bpf/yunhan-vortex-{}", self.ns(node)))
    }

    fn kill(&mut self, name: &str) {
        if let Some(i) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut c) = self.children.remove(i);
            // SIGTERM (graceful) to the PID we spawned.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let names: Vec<String> = self.children.iter().map(|(n, _)| n.clone()).collect();
        for n in names {
            self.kill(&n);
        }
        for n in ["c", "l1", "l2", "b1", "b2", "b3", "br"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .status();
        }
        for n in ["l1", "l2"] {
            let _ = std::fs::remove_dir_all(self.pin(n));
        }
    }
}

/// Run `f` on a thread that has entered namespace `ns` (sockets it creates stay there).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    std::thread::spawn(move || {
        // SAFETY: setns on this thread only, with an fd we own.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
}

/// Backend server: "GET ..." → HTTP 200 with the name; other lines → name per line.
fn serve_backend(lab: &Lab, name: &'static str) -> Result<()> {
    let l = in_ns(&lab.ns(name), || TcpListener::bind("0.0.0.0:80"))??;
    l.set_nonblocking(true)?;
    let stop = lab.stop.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((s, _)) => {
                    let _ = s.set_nonblocking(false);
                    std::thread::spawn(move || {
                        let mut r = BufReader::new(s.try_clone().unwrap());
                        let mut w = s;
                        let mut line = String::new();
                        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                            if line.starts_with("GET ") {
                                let _ = write!(
                                    w,
                                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                                    name.len()
                                );
                                return;
                            }
                            if w.write_all(format!("{name}\n").as_bytes()).is_err() {
                                return;
                            }
                            line.clear();
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Ok(())
}

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn open(lab: &Lab) -> Result<Conn> {
        let addr: SocketAddr = format!("{VIP}:80").parse()?;
        let s = in_ns(&lab.ns("c"), move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        })??;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(Conn {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    /// Round trip; returns the backend name.
    fn ask(&mut self) -> Result<String> {
        self.w.write_all(b"ping\n")?;
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            bail!("connection closed");
        }
        Ok(line.trim().to_string())
    }
}

fn new_conn_backend(lab: &Lab) -> Result<String> {
    Conn::open(lab)?.ask()
}

fn status(lab: &Lab, node: &str) -> Result<serde_json::Value> {
    let p = lab.dir.path().join(format!("{node}.status.json"));
    Ok(serde_json::from_slice(&std::fs::read(p)?)?)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

fn backend_field(st: &serde_json::Value, addr: &str, field: &str) -> Option<serde_json::Value> {
    st["vips"][0]["backends"]
        .as_array()?
        .iter()
        .find(|b| b["address"] == addr)
        .map(|b| b[field].clone())
}

fn write_config(path: &Path, weights: [u32; 3]) -> Result<()> {
    let mut s = String::from(
        "table_size = 65537\n[[vip]]\nname = \"web\"\naddress = \"10.77.1.1\"\nport = 80\nprotocol = \"tcp\"\n\
         [vip.health]\nkind = \"http\"\ninterval_ms = 200\ntimeout_ms = 150\nrise = 2\nfall = 3\n",
    );
    for (i, w) in weights.iter().enumerate() {
        s += &format!(
            "[[vip.backend]]\naddress = \"10.77.0.{}\"\nweight = {w}\n",
            21 + i
        );
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, s)?;
    std::fs::rename(tmp, path)?;
    Ok(())
}

fn start_vortex(lab: &mut Lab, node: &str, need: &[&str]) -> Result<()> {
    let ns = lab.ns(node);
    let cfg = lab.dir.path().join("vortex.toml");
    let status_path = lab.dir.path().join(format!("{node}.status.json"));
    let _ = std::fs::remove_file(&status_path);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(lab.dir.path().join(format!("{node}.log")))?;
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{ns}"))
        .arg(env!("CARGO_BIN_EXE_yunhan"))
        .arg("vortex")
        .args(["-c", cfg.to_str().unwrap(), "-i", "eth0", "--name", &ns])
        .args([
            "--status-file",
            status_path.to_str().unwrap(),
            "--reload-interval-ms",
            "100",
        ])
        .args(["--conntrack-size", "65536"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    lab.children.push((node.to_string(), child));
    let all_ready = || {
        status(lab, node)
            .map(|st| {
                need.iter()
                    .all(|a| !backend_field(&st, a, "mac").unwrap_or_default().is_null())
            })
            .unwrap_or(false)
    };
    wait_for(
        &format!("{node} ready with resolved backends"),
        Duration::from_secs(15),
        all_ready,
    )
    .with_context(|| {
        std::fs::read_to_string(lab.dir.path().join(format!("{node}.log"))).unwrap_or_default()
    })?;
    Ok(())
}

fn setup() -> Result<Lab> {
    let prefix = format!("yvx{}", std::process::id());
    let lab = Lab {
        prefix,
        children: Vec::new(),
        stop: Arc::new(AtomicBool::new(false)),
        dir: tempfile::tempdir()?,
    };
    for n in ["br", "c", "l1", "l2", "b1", "b2", "b3"] {
        sh(&["ip", "netns", "add", &lab.ns(n)])?;
        lab.ip(n, "link set lo up")?;
    }
    lab.ip("br", "link add br0 type bridge")?;
    lab.ip("br", "link set br0 up")?;
    let pass = lab.dir.path().join("pass.bpf.o");
    std::fs::write(&pass, yunhan_vortex::dataplane::PASS_OBJ)?;
    let hosts = [
        ("c", 2),
        ("l1", 11),
        ("l2", 12),
        ("b1", 21),
        ("b2", 22),
        ("b3", 23),
    ];
    for (n, octet) in hosts {
        lab.ip(
            n,
            &format!(
                "link add eth0 type veth peer name p{n} netns {}",
                lab.ns("br")
            ),
        )?;
        lab.ip("br", &format!("link set p{n} master br0 up"))?;
        lab.ip(n, &format!("addr add 10.77.0.{octet}/24 dev eth0"))?;
        lab.ip(n, "link set eth0 up")?;
    }
    for n in ["l1", "l2"] {
        let peer = format!("p{n}");
        sh(&[
            "ip",
            "-n",
            &lab.ns("br"),
            "link",
            "set",
            "dev",
            &peer,
            "xdp",
            "obj",
            pass.to_str().unwrap(),
            "sec",
            "xdp",
        ])?;
    }
    // Client: VIP via l1; checksums must be complete (XDP_TX drops offload state).
    lab.ip("c", &format!("route add {VIP}/32 via 10.77.0.11"))?;
    sh(&[
        "ip",
        "netns",
        "exec",
        &lab.ns("c"),
        "ethtool",
        "-K",
        "eth0",
        "tx",
        "off",
    ])?;
    for b in ["b1", "b2", "b3"] {
        lab.ip(b, &format!("addr add {VIP}/32 dev lo"))?;
        sh(&[
            "ip",
            "netns",
            "exec",
            &lab.ns(b),
            "sysctl",
            "-qw",
            "net.ipv4.conf.all.arp_ignore=1",
            "net.ipv4.conf.all.arp_announce=2",
        ])?;
    }
    Ok(lab)
}

#[test]
fn e2e_netns_spread_failover_drain_restart_ecmp() -> Result<()> {
    let mut lab = setup()?;
    for b in ["b1", "b2", "b3"] {
        serve_backend(&lab, b)?;
    }
    let cfg = lab.dir.path().join("vortex.toml");
    write_config(&cfg, [1, 1, 1])?;
    start_vortex(&mut lab, "l1", &ALL)?;

    // 1. New connections spread over all backends.
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..30 {
        *seen.entry(new_conn_backend(&lab)?).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "spread: {seen:?}");

    // Long-lived connections.
    // At least 12, and at least 2 on each backend (the drain below needs some on b3):
    // 12 alone leave b3 without one in 0.8 % of runs.
    let mut ll: Vec<(Conn, String)> = Vec::new();
    let on = |ll: &[(Conn, String)], b: &str| ll.iter().filter(|(_, x)| x == b).count();
    while ll.len() < 12 || ["b1", "b2", "b3"].iter().any(|b| on(&ll, b) < 2) {
        anyhow::ensure!(
            ll.len() < 200,
            "200 connections and a backend still has < 2"
        );
        let mut c = Conn::open(&lab)?;
        let b = c.ask()?;
        ll.push((c, b));
    }

    // 2. ECMP: a second node with the same config; move the route there —
    //    flows arriving at l2 (no conntrack) keep their backend.
    start_vortex(&mut lab, "l2", &ALL)?;
    lab.ip("c", &format!("route replace {VIP}/32 via 10.77.0.12"))?;
    for (c, b) in ll.iter_mut() {
        assert_eq!(
            &c.ask().context("long-lived conn via l2")?,
            b,
            "l2 agrees with l1"
        );
    }
    lab.ip("c", &format!("route replace {VIP}/32 via 10.77.0.11"))?;
    lab.kill("l2");

    // 3. Kill b2 (link down): removed within the fall threshold.
    lab.ip("b2", "link set eth0 down")?;
    let took = wait_for("b2 marked unhealthy", Duration::from_secs(5), || {
        status(&lab, "l1")
            .ok()
            .and_then(|s| backend_field(&s, "10.77.0.22", "healthy"))
            == Some(false.into())
    })?;
    // fall=3 × interval 200 ms + timeout 150 ms + reload tick.
    eprintln!("b2 removed {took:?} after its link went down");
    assert!(took <= Duration::from_millis(2000), "removal took {took:?}");
    for _ in 0..20 {
        assert_ne!(new_conn_backend(&lab)?, "b2");
    }
    ll.retain(|(_, b)| b != "b2");
    for (c, b) in ll.iter_mut() {
        assert_eq!(&c.ask().context("long-lived conn after b2 died")?, b);
    }

    // 4. Drain b3: no new flows, existing stay.
    write_config(&cfg, [1, 1, 0])?;
    wait_for("b3 drained", Duration::from_secs(5), || {
        status(&lab, "l1")
            .ok()
            .and_then(|s| backend_field(&s, "10.77.0.23", "weight"))
            == Some(0.into())
    })?;
    for _ in 0..20 {
        assert_eq!(new_conn_backend(&lab)?, "b1");
    }
    for (c, b) in ll.iter_mut() {
        assert_eq!(&c.ask().context("long-lived conn after drain")?, b);
    }
    assert!(
        ll.iter().any(|(_, b)| b == "b3"),
        "some long-lived conn on the drained backend"
    );

    // 5. Restart Vortex mid-stream: the pinned link keeps forwarding while it is
    //    down; the new process reuses conntrack.
    lab.kill("l1");
    for (c, b) in ll.iter_mut() {
        assert_eq!(&c.ask().context("while vortex is down")?, b);
    }
    start_vortex(&mut lab, "l1", &["10.77.0.21", "10.77.0.23"])?;
    for (c, b) in ll.iter_mut() {
        assert_eq!(&c.ask().context("after restart")?, b);
    }
    let st = status(&lab, "l1")?;
    assert_eq!(
        backend_field(&st, "10.77.0.22", "healthy"),
        Some(false.into()),
        "health state recovered"
    );
    assert_eq!(new_conn_backend(&lab)?, "b1");
    let st = status(&lab, "l1")?;
    assert!(st["conntrack_entries"].as_u64().unwrap_or(0) > 0);
    Ok(())
}
