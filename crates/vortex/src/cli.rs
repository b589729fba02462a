//! `yunhan vortex`: the load-balancer daemon.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Config, FlowHash};
use crate::control::{Controller, DesiredBackend, DesiredVip, Forward};
use crate::dataplane::{
    remove_pin_dir, Dataplane, Hook, LoadOptions, DEFAULT_CONNTRACK, DEFAULT_MAX_VIPS,
};
use crate::error::VortexError;
use crate::health::{probe, HealthState};
use crate::packet::parse_mac;

/// Run a Vortex layer-4 load-balancer node: an XDP program on one interface
/// that spreads VIP traffic over backends with Maglev consistent hashing, keeps
/// established flows on their backend (connection tracking) and forwards by
/// direct server return (MAC rewrite) or VXLAN. Health checks, draining and
/// configuration reloads run here in userspace.
#[derive(clap::Args, Debug, Clone)]
pub struct VortexArgs {
    /// Configuration file (TOML): table_size, VIPs (address, port, protocol),
    /// backends (address, mac, weight, optional vxlan) and health checks.
    /// Re-read when its content changes and on SIGHUP. Give every node of an
    /// ECMP group the same file: identical files build identical tables, so
    /// all nodes send a flow to the same backend. See docs/vortex.md.
    #[arg(long, short = 'c', env = "YUNHAN_VORTEX_CONFIG")]
    pub config: PathBuf,

    /// Interface that receives VIP traffic. The XDP program is attached here
    /// and forwarded packets leave through it again (XDP_TX).
    #[arg(long, short = 'i')]
    pub interface: String,

    /// dsr: XDP, backends answer clients directly (they hold the VIP; see
    /// docs/vortex.md). nat: a tc program on the interface makes the Maglev choice
    /// and translates VIP traffic itself, to the backend's address and port from the
    /// interface's own address (the VIP), and its answers back, so backends need
    /// nothing; for virtual devices and tenant VMs (the platform's load balancers).
    #[arg(long, value_enum, default_value = "dsr")]
    pub mode: Mode,

    /// Node name. Maps and the XDP link are pinned under
    /// <bpffs>/yunhan-vortex-<name> and reused when the daemon restarts, so
    /// established connections survive a restart or upgrade.
    #[arg(long, default_value = "default")]
    pub name: String,

    /// Where bpffs is mounted (mounted there if missing).
    #[arg(long, default_value = "/sys/fs/bpf")]
    pub bpffs: PathBuf,

    /// Outer source IPv4 address for VXLAN-encapsulated packets (needed only
    /// when a backend has `vxlan = { ... }`).
    #[arg(long)]
    pub vxlan_source: Option<Ipv4Addr>,

    /// Maximum number of VIPs (sizes the pinned maps; changing it needs
    /// --reset-state).
    #[arg(long, default_value_t = DEFAULT_MAX_VIPS)]
    pub max_vips: u32,

    /// Connection-tracking capacity in flows (LRU: the oldest are evicted).
    /// About 120 bytes of kernel memory each; see docs/BENCHMARKS.md.
    #[arg(long, default_value_t = DEFAULT_CONNTRACK)]
    pub conntrack_size: u32,

    /// Use generic (skb) XDP instead of native driver mode.
    #[arg(long)]
    pub skb_mode: bool,

    /// On exit, detach the program and delete the pinned state. By default the
    /// data plane keeps forwarding while the daemon is down (only health
    /// checks and reloads pause) and a restarted daemon takes over seamlessly.
    #[arg(long)]
    pub detach_on_exit: bool,

    /// Delete pinned state before starting (forgets conntrack). Needed after
    /// changing table_size or --max-vips.
    #[arg(long)]
    pub reset_state: bool,

    /// Write a JSON status snapshot (backend health, ids, counters) to this
    /// file after every change and every reload tick.
    #[arg(long)]
    pub status_file: Option<PathBuf>,

    /// How often the configuration file is checked for changes, in ms.
    #[arg(long, default_value_t = 500)]
    pub reload_interval_ms: u64,
}

/// How packets reach backends.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Dsr,
    Nat,
}

/// Run the daemon until SIGINT or SIGTERM (needs a tokio runtime).
pub async fn run(args: VortexArgs) -> Result<(), VortexError> {
    Daemon::start(args)?.serve().await
}

#[derive(Debug, Clone, Serialize)]
struct Status {
    config_revision: u64,
    /// Where the program runs: `xdp`, `xdp-skb` or `tc`.
    attach: &'static str,
    vips: Vec<VipStatus>,
    counters: HashMap<&'static str, u64>,
    conntrack_entries: usize,
}

#[derive(Debug, Clone, Serialize)]
struct VipStatus {
    name: String,
    address: String,
    port: u16,
    packets: u64,
    bytes: u64,
    /// Answers translated back to clients (NAT mode on tc; 0 elsewhere).
    reply_packets: u64,
    reply_bytes: u64,
    /// New flows balanced.
    flows: u64,
    backends: Vec<BackendStatus>,
}

#[derive(Debug, Clone, Serialize)]
struct BackendStatus {
    address: String,
    /// Its port (the VIP's but in NAT mode).
    port: u16,
    id: Option<u32>,
    weight: u32,
    healthy: bool,
    mac: Option<String>,
    packets: u64,
}

type HealthKey = (String, IpAddr);

struct Daemon {
    args: VortexArgs,
    config: Config,
    config_text: String,
    revision: u64,
    ctl: Controller,
    health: HashMap<HealthKey, HealthState>,
    checkers: Vec<JoinHandle<()>>,
    tx: mpsc::Sender<(HealthKey, bool)>,
    rx: mpsc::Receiver<(HealthKey, bool)>,
    last_applied: Option<Vec<DesiredVip>>,
    /// NAT mode: the nftables ruleset (the slow path) last written.
    nat_written: Option<String>,
}

fn pin_dir(args: &VortexArgs) -> PathBuf {
    args.bpffs.join(format!("yunhan-vortex-{}", args.name))
}

impl Daemon {
    fn start(args: VortexArgs) -> Result<Self, VortexError> {
        if args.name.is_empty() || args.name.contains('/') {
            return Err(VortexError::Invalid(format!(
                "bad node name {:?}",
                args.name
            )));
        }
        let config_text = std::fs::read_to_string(&args.config)
            .map_err(|e| VortexError::io(format!("reading {}", args.config.display()), e))?;
        let config = Config::parse(&config_text, &args.config)?;
        let dir = pin_dir(&args);
        if args.reset_state {
            remove_pin_dir(&dir)?;
        }
        let mut opts = LoadOptions::new(&dir);
        opts.table_size = config.table_size;
        opts.max_vips = args.max_vips;
        opts.conntrack_size = args.conntrack_size;
        opts.vxlan_source = args.vxlan_source.unwrap_or(Ipv4Addr::UNSPECIFIED);
        if args.mode == Mode::Nat {
            opts.hook = Hook::Tc;
            opts.nat_source = interface_ipv4(&args.interface)?;
            forwarding(&args.interface)?;
        }
        let mut dp = Dataplane::load(opts)?;
        match args.mode {
            Mode::Nat => dp.attach_tc(&args.interface)?,
            Mode::Dsr => dp.attach(&args.interface, args.skb_mode)?,
        }
        let ctl = Controller::new(dp)?;
        let (tx, rx) = mpsc::channel(1024);
        let mut d = Self {
            args,
            config,
            config_text,
            revision: 1,
            ctl,
            health: HashMap::new(),
            checkers: Vec::new(),
            tx,
            rx,
            last_applied: None,
            nat_written: None,
        };
        // Health survives restarts: backends the previous run had marked DOWN
        // start unhealthy (rise successes bring them back).
        for v in &d.config.vips {
            for b in &v.backends {
                if d.ctl.is_down(b.address) {
                    d.health
                        .insert((v.name.clone(), b.address), HealthState::down());
                }
            }
        }
        d.spawn_checkers();
        d.apply()?;
        tracing::info!(
            interface = %d.args.interface,
            pins = %dir.display(),
            vips = d.config.vips.len(),
            "vortex running"
        );
        Ok(d)
    }

    fn spawn_checkers(&mut self) {
        for h in self.checkers.drain(..) {
            h.abort();
        }
        for v in &self.config.vips {
            for b in &v.backends {
                let key: HealthKey = (v.name.clone(), b.address);
                self.health.entry(key.clone()).or_default();
                let cfg = v.health.clone();
                let port = cfg.port.or(b.port).unwrap_or(v.port);
                let target = SocketAddr::new(b.address, port);
                let tx = self.tx.clone();
                self.checkers.push(tokio::spawn(async move {
                    let mut tick =
                        tokio::time::interval(Duration::from_millis(cfg.interval_ms.max(10)));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let ok = probe(&cfg, target).await;
                        if tx.send((key.clone(), ok)).await.is_err() {
                            return;
                        }
                    }
                }));
            }
        }
        // Forget health of backends no longer configured.
        let live: std::collections::HashSet<HealthKey> = self
            .config
            .vips
            .iter()
            .flat_map(|v| v.backends.iter().map(move |b| (v.name.clone(), b.address)))
            .collect();
        self.health.retain(|k, _| live.contains(k));
    }

    fn desired(&self) -> Vec<DesiredVip> {
        let arp = read_arp_table();
        self.config
            .vips
            .iter()
            .map(|v| DesiredVip {
                addr: v.address,
                port: v.port,
                proto: v.protocol.number(),
                hash_source: v.hash == FlowHash::Source,
                backends: v
                    .backends
                    .iter()
                    .map(|b| {
                        let healthy = self
                            .health
                            .get(&(v.name.clone(), b.address))
                            .map(|h| h.healthy)
                            .unwrap_or(true);
                        let mac = b
                            .mac
                            .as_deref()
                            .and_then(parse_mac)
                            .or_else(|| arp.get(&b.address).copied());
                        let forward = match (&b.vxlan, self.args.mode) {
                            (_, Mode::Nat) => Forward::Nat,
                            (Some(x), Mode::Dsr) => Forward::Vxlan {
                                remote: x.remote,
                                vni: x.vni,
                                inner_mac: parse_mac(&x.inner_mac).unwrap_or_default(),
                            },
                            (None, Mode::Dsr) => Forward::Dsr,
                        };
                        DesiredBackend {
                            addr: b.address,
                            mac,
                            weight: b.weight,
                            healthy,
                            forward,
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    fn apply(&mut self) -> Result<(), VortexError> {
        let desired = self.desired();
        if self.last_applied.as_ref() == Some(&desired) {
            self.write_status(&desired);
            return Ok(());
        }
        let r = self.ctl.apply(&desired)?;
        self.last_applied = Some(desired.clone());
        self.write_nat()?;
        if r.swapped > 0 {
            tracing::info!(swapped = r.swapped, vips = r.vips, "tables updated");
        }
        self.write_status(&desired);
        Ok(())
    }

    fn write_status(&self, desired: &[DesiredVip]) {
        let Some(path) = &self.args.status_file else {
            return;
        };
        let dp = self.ctl.dataplane();
        let vips = self
            .config
            .vips
            .iter()
            .zip(desired)
            .map(|(v, d)| {
                let index = self.ctl.vip_info(&d.key()).map(|i| i.index);
                let stats = index.and_then(|i| dp.vip_stats(i).ok()).unwrap_or_default();
                let replies = (index.and_then(|i| dp.vip_reply_stats(i).ok())).unwrap_or_default();
                VipStatus {
                    name: v.name.clone(),
                    address: v.address.to_string(),
                    port: v.port,
                    packets: stats.packets,
                    bytes: stats.bytes,
                    reply_packets: replies.packets,
                    reply_bytes: replies.bytes,
                    flows: index.and_then(|i| dp.vip_flows(i).ok()).unwrap_or(0),
                    backends: (d.backends.iter().zip(&v.backends))
                        .map(|(b, c)| {
                            let id = self.ctl.backend_id(b.addr);
                            BackendStatus {
                                address: b.addr.to_string(),
                                port: c.port.unwrap_or(v.port),
                                id,
                                weight: b.weight,
                                healthy: b.healthy,
                                mac: b.mac.as_ref().map(crate::packet::format_mac),
                                packets: id
                                    .and_then(|i| dp.backend_stats(i).ok())
                                    .map(|s| s.packets)
                                    .unwrap_or(0),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        let st = Status {
            config_revision: self.revision,
            attach: match (self.args.mode, self.args.skb_mode) {
                (Mode::Nat, _) => "tc",
                (Mode::Dsr, true) => "xdp-skb",
                (Mode::Dsr, false) => "xdp",
            },
            vips,
            counters: dp.counters().unwrap_or_default().into_iter().collect(),
            conntrack_entries: dp.conntrack_len().unwrap_or(0),
        };
        if let Err(e) = write_atomic(path, &serde_json::to_vec_pretty(&st).unwrap_or_default()) {
            tracing::warn!(error = %e, "cannot write status file");
        }
    }

    /// NAT mode: each (VIP, backend)'s port for Vortex's own NAT, and the nftables table
    /// that sends the marks of its slow path to the backend's address and port, both
    /// rewritten when they change.
    fn write_nat(&mut self) -> Result<(), VortexError> {
        if self.args.mode != Mode::Nat {
            return Ok(());
        }
        let mut targets = Vec::new();
        for v in &self.config.vips {
            let key = crate::control::vip_key(v.address, v.port, v.protocol.number());
            let Some(info) = self.ctl.vip_info(&key) else {
                continue;
            };
            for b in &v.backends {
                if let (IpAddr::V4(addr), Some(id)) = (b.address, self.ctl.backend_id(b.address)) {
                    let port = b.port.unwrap_or(v.port);
                    let mark = crate::nat::mark(info.index, id);
                    targets.push(crate::nat::Target { mark, addr, port });
                }
            }
        }
        let rules = crate::nat::ruleset(&crate::nat::table(&self.args.name), &targets);
        if self.nat_written.as_ref() != Some(&rules) {
            nft(&rules)?;
            let ports: Vec<(u32, u16)> = (targets.iter())
                .map(|t| (t.mark & !crate::nat::MARK_MASK, t.port))
                .collect();
            self.ctl.dataplane_mut().set_nat_targets(&ports)?;
            self.nat_written = Some(rules);
        }
        Ok(())
    }

    /// Re-read the config file; returns true if it changed and was applied.
    fn reload(&mut self) -> bool {
        let text = match std::fs::read_to_string(&self.args.config) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read config; keeping the current one");
                return false;
            }
        };
        if text == self.config_text {
            return false;
        }
        self.config_text = text.clone();
        match Config::parse(&text, &self.args.config) {
            Ok(c) if c.table_size != self.ctl.dataplane().options().table_size => {
                tracing::error!(
                    "table_size changed: restart with --reset-state; keeping the current config"
                );
                false
            }
            Ok(c) => {
                self.config = c;
                self.revision += 1;
                self.spawn_checkers();
                tracing::info!(revision = self.revision, "configuration reloaded");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "invalid configuration; keeping the current one");
                false
            }
        }
    }

    async fn serve(mut self) -> Result<(), VortexError> {
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| VortexError::io("SIGTERM", e))?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| VortexError::io("SIGINT", e))?;
        let mut hup = signal(SignalKind::hangup()).map_err(|e| VortexError::io("SIGHUP", e))?;
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.args.reload_interval_ms.max(50)));
        let result = loop {
            let mut dirty = false;
            tokio::select! {
                _ = term.recv() => break Ok(()),
                _ = int.recv() => break Ok(()),
                _ = hup.recv() => dirty = self.reload(),
                _ = tick.tick() => {
                    self.reload();
                    // Always re-apply: picks up newly resolved MACs and refreshes
                    // the status file (tables are swapped only if they changed).
                    dirty = true;
                }
                Some((key, ok)) = self.rx.recv() => {
                    let Some(v) = self.config.vips.iter().find(|v| v.name == key.0) else { continue };
                    let (rise, fall) = (v.health.rise, v.health.fall);
                    if let Some(st) = self.health.get_mut(&key) {
                        if st.record(ok, rise, fall) {
                            tracing::warn!(vip = %key.0, backend = %key.1, healthy = st.healthy, "health changed");
                            dirty = true;
                        }
                    }
                }
            }
            if dirty {
                if let Err(e) = self.apply() {
                    tracing::error!(error = %e, "applying state failed");
                }
            }
        };
        for h in self.checkers.drain(..) {
            h.abort();
        }
        if self.args.mode == Mode::Nat {
            if let Err(e) = nft(&crate::nat::teardown(&crate::nat::table(&self.args.name))) {
                tracing::warn!(error = %e, "cannot remove the NAT table");
            }
        }
        if self.args.detach_on_exit {
            tracing::info!("detaching and removing pinned state");
            self.ctl.into_dataplane().destroy()?;
        } else {
            tracing::info!("exiting; the data plane keeps running (pinned)");
        }
        result
    }
}

/// Runs `nft -f -` on `rules`.
fn nft(rules: &str) -> Result<(), VortexError> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| VortexError::io("running nft", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(rules.as_bytes())
            .map_err(|e| VortexError::io("writing to nft", e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| VortexError::io("running nft", e))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(VortexError::Invalid(format!(
            "nft refused the NAT table: {why}"
        )));
    }
    Ok(())
}

/// NAT mode forwards what arrives on `iface` back out of it: IPv4 forwarding on (for
/// the kernel's NAT, the slow path), no ICMP redirects telling clients to go to the
/// backend directly, and the namespace's own sockets (HAProxy's) kept above the source
/// ports Vortex's NAT gives flows.
fn forwarding(iface: &str) -> Result<(), VortexError> {
    let set = |path: String, value: &str| {
        std::fs::write(&path, value).map_err(|e| VortexError::io(format!("writing {path}"), e))
    };
    set("/proc/sys/net/ipv4/ip_forward".into(), "1")?;
    set(
        "/proc/sys/net/ipv4/ip_local_port_range".into(),
        &format!("{} 65535", crate::nat::PORT_END),
    )?;
    for dev in ["all", iface] {
        set(format!("/proc/sys/net/ipv4/conf/{dev}/send_redirects"), "0")?;
    }
    Ok(())
}

/// The first IPv4 address of `iface` (what NAT mode translates sources to).
fn interface_ipv4(iface: &str) -> Result<Ipv4Addr, VortexError> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", iface])
        .output()
        .map_err(|e| VortexError::io("running ip addr", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    first_inet(&text).ok_or_else(|| {
        VortexError::Invalid(format!(
            "{iface} has no IPv4 address for NAT mode to translate sources to"
        ))
    })
}

/// The address of the first `inet A.B.C.D/N` in `ip -4 -o addr` output.
fn first_inet(text: &str) -> Option<Ipv4Addr> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == "inet")?;
    words.next()?.split('/').next()?.parse().ok()
}

/// IPv4 neighbours of the current network namespace (complete entries only).
fn read_arp_table() -> HashMap<IpAddr, [u8; 6]> {
    let mut m = HashMap::new();
    let Ok(text) = std::fs::read_to_string("/proc/net/arp") else {
        return m;
    };
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || f[2] != "0x2" {
            continue;
        }
        if let (Ok(ip), Some(mac)) = (f[0].parse::<IpAddr>(), parse_mac(f[3])) {
            m.insert(ip, mac);
        }
    }
    m
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::first_inet;

    #[test]
    fn the_first_inet_address_of_ip_addr_output() {
        let out = "7: eth0    inet 10.10.1.9/24 brd 10.10.1.255 scope global eth0\\       valid_lft forever preferred_lft forever\n\
                   7: eth0    inet 10.10.1.20/32 scope global eth0\n";
        assert_eq!(first_inet(out), Some([10, 10, 1, 9].into()));
        assert_eq!(first_inet(""), None);
        assert_eq!(first_inet("inet nonsense/24"), None);
    }
}
