//! The Linux realiser: makes a network namespace match a [`HostPlan`].
//!
//! Observe → diff → act. It reads the current state (`ip -j -d link`, `bridge -j fdb`,
//! `ip -j neigh`, `nft list table`), computes the commands that close the gap and runs them
//! in a few batches (`ip -batch`, `bridge -batch`, one atomic `nft -f`). Applying the same
//! plan twice runs nothing the second time ([`ApplyReport::changes`] is 0); a deleted link,
//! FDB entry, neighbour or nft rule is put back by the next apply. Everything it owns is
//! recognisable by name (`ynb-`, `ynx-`, `yng…`, the router namespaces, table
//! `inet yunhan`), and what is no longer in the plan is removed.
//!
//! When security rules change, conntrack entries they may have allowed are deleted
//! (`conntrack -D -w <zone> -d <port ip>`), so removing a rule cuts open connections: the
//! next packet of such a flow is judged as new (TCP loose pickup) and the rules drop it.
//!
//! The seam is [`Runner`]: [`SystemRunner`] runs the real tools; [`RecordingRunner`] records
//! commands and answers observations from canned output, for unit tests.
use crate::names::{self, NFT_TABLE};
use crate::nft;
use crate::plan::{
    HostPlan, PortPlan, VpcPlan, ROUTER_TABLE_TRANSIT, ROUTER_TABLE_UPLINK, TRANSIT_IP,
    UPLINK_HOST_IP, UPLINK_ROUTER_IP,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum RealiseError {
    #[error("{cmd}: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("running {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing the output of {cmd}: {reason}")]
    Parse { cmd: String, reason: String },
    #[error("state file {path}: {reason}")]
    State { path: PathBuf, reason: String },
}

/// One command: a program, its arguments, optional stdin, in a network namespace or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub netns: Option<String>,
    pub argv: Vec<String>,
    pub stdin: Option<String>,
    /// A failure is expected sometimes and not an error (e.g. nothing to delete).
    pub tolerate_failure: bool,
}

impl Cmd {
    pub fn new(netns: Option<&str>, argv: &[&str]) -> Cmd {
        Cmd {
            netns: netns.map(String::from),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            stdin: None,
            tolerate_failure: false,
        }
    }
    fn stdin(mut self, s: String) -> Cmd {
        self.stdin = Some(s);
        self
    }
    fn tolerant(mut self) -> Cmd {
        self.tolerate_failure = true;
        self
    }
    pub fn display(&self) -> String {
        match &self.netns {
            Some(ns) => format!("[{ns}] {}", self.argv.join(" ")),
            None => self.argv.join(" "),
        }
    }
}

/// Runs commands; returns stdout.
pub trait Runner: Send + Sync {
    fn run(&self, cmd: &Cmd) -> Result<String, RealiseError>;
}

/// Runs the real tools. `ip`/`bridge` get `-n <netns>`; others run under `ip netns exec`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner;

impl Runner for SystemRunner {
    fn run(&self, cmd: &Cmd) -> Result<String, RealiseError> {
        let mut argv: Vec<String> = Vec::new();
        match (&cmd.netns, cmd.argv[0].as_str()) {
            (Some(ns), "ip" | "bridge") => {
                argv.push(cmd.argv[0].clone());
                argv.extend(["-n".into(), ns.clone()]);
                argv.extend(cmd.argv[1..].iter().cloned());
            }
            (Some(ns), _) => {
                argv.extend(["ip", "netns", "exec"].map(String::from));
                argv.push(ns.clone());
                argv.extend(cmd.argv.iter().cloned());
            }
            (None, _) => argv.extend(cmd.argv.iter().cloned()),
        }
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_err = |source| RealiseError::Spawn {
            cmd: cmd.display(),
            source,
        };
        let mut child = c.spawn().map_err(spawn_err)?;
        if let Some(input) = &cmd.stdin {
            let mut si = child.stdin.take().expect("piped stdin");
            si.write_all(input.as_bytes()).map_err(spawn_err)?;
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if !out.status.success() && !cmd.tolerate_failure {
            let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if let Some(input) = &cmd.stdin {
                if stderr.len() < 2000 {
                    stderr.push_str(&format!("\n--- input ---\n{}", truncate(input, 4000)));
                }
            }
            return Err(RealiseError::Command {
                cmd: cmd.display(),
                stderr,
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Records every command; answers with canned stdout by command prefix (else `[]` for
/// JSON observations and empty text otherwise).
#[derive(Debug, Default)]
pub struct RecordingRunner {
    pub commands: Mutex<Vec<Cmd>>,
    pub answers: Mutex<Vec<(String, String)>>,
}

impl RecordingRunner {
    pub fn answer(&self, prefix: &str, stdout: &str) {
        self.answers
            .lock()
            .unwrap()
            .push((prefix.into(), stdout.into()));
    }
    pub fn lines(&self) -> Vec<String> {
        self.commands
            .lock()
            .unwrap()
            .iter()
            .map(|c| {
                let mut s = c.display();
                if let Some(i) = &c.stdin {
                    s.push_str(" <<\n");
                    s.push_str(i);
                }
                s
            })
            .collect()
    }
}

impl Runner for RecordingRunner {
    fn run(&self, cmd: &Cmd) -> Result<String, RealiseError> {
        self.commands.lock().unwrap().push(cmd.clone());
        let line = cmd.argv.join(" ");
        for (p, out) in self.answers.lock().unwrap().iter() {
            if line.starts_with(p.as_str()) {
                return Ok(out.clone());
            }
        }
        Ok(if cmd.argv.iter().any(|a| a == "-j") {
            "[]".into()
        } else {
            String::new()
        })
    }
}

/// Where to realise: the host's namespace (`None` = the current one) and a prefix for router
/// namespace names (so several lab "hosts" can share one machine).
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub netns: Option<String>,
    pub router_prefix: String,
    /// Keep the last applied plan here (`last-plan.json`), to survive restarts and to know
    /// what changed for conntrack flushing.
    pub state_dir: Option<PathBuf>,
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Mutating commands run (0 = the namespace already matched the plan).
    pub changes: usize,
    /// Conntrack deletions issued.
    pub conntrack_flushes: usize,
    /// Local ports whose device does not exist (yet).
    pub missing_ports: Vec<String>,
}

pub struct Realiser<R: Runner> {
    runner: R,
    target: Target,
    last: Option<HostPlan>,
    /// (hash of the nft text applied, what `nft list` showed right after).
    last_nft_listing: Option<(String, String)>,
    /// The same per router namespace (its NAT table).
    router_nft_listing: HashMap<String, (String, String)>,
}

// ---- observed state ----

#[derive(Debug, Clone, Default)]
struct Link {
    kind: String,
    master: Option<String>,
    up: bool,
    mtu: u64,
    mac: String,
    data: Value,
    slave: Value,
}

fn parse_json(cmd: &str, out: &str) -> Result<Vec<Value>, RealiseError> {
    if out.trim().is_empty() {
        return Ok(vec![]);
    }
    match serde_json::from_str::<Value>(out) {
        Ok(Value::Array(v)) => Ok(v),
        Ok(_) => Err(RealiseError::Parse {
            cmd: cmd.into(),
            reason: "not a JSON array".into(),
        }),
        Err(e) => Err(RealiseError::Parse {
            cmd: cmd.into(),
            reason: e.to_string(),
        }),
    }
}

fn links_of(v: &[Value]) -> BTreeMap<String, Link> {
    v.iter()
        .filter_map(|l| {
            let name = l["ifname"].as_str()?.to_string();
            let li = &l["linkinfo"];
            Some((
                name,
                Link {
                    kind: li["info_kind"].as_str().unwrap_or_default().to_string(),
                    master: l["master"].as_str().map(String::from),
                    up: l["flags"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|x| x == "UP")),
                    mtu: l["mtu"].as_u64().unwrap_or(0),
                    mac: l["address"].as_str().unwrap_or_default().to_string(),
                    data: li["info_data"].clone(),
                    slave: li["info_slave_data"].clone(),
                },
            ))
        })
        .collect()
}

/// Batches of commands for one tool in one namespace.
#[derive(Default)]
struct Batch {
    lines: Vec<String>,
}

impl Batch {
    fn push(&mut self, s: String) {
        self.lines.push(s);
    }
    fn len(&self) -> usize {
        self.lines.len()
    }
}

impl<R: Runner> Realiser<R> {
    pub fn new(runner: R, target: Target) -> Self {
        Realiser {
            runner,
            target,
            last: None,
            last_nft_listing: None,
            router_nft_listing: HashMap::new(),
        }
    }

    pub fn runner(&self) -> &R {
        &self.runner
    }

    fn ns(&self) -> Option<&str> {
        self.target.netns.as_deref()
    }

    fn router_ns(&self, v: &VpcPlan) -> String {
        format!("{}{}", self.target.router_prefix, v.router.netns)
    }

    fn run(&self, c: Cmd) -> Result<String, RealiseError> {
        self.runner.run(&c)
    }

    fn ip_batch(&self, ns: Option<&str>, b: &Batch) -> Result<(), RealiseError> {
        if b.len() > 0 {
            let mut s = b.lines.join("\n");
            s.push('\n');
            self.run(Cmd::new(ns, &["ip", "-batch", "-"]).stdin(s))?;
        }
        Ok(())
    }

    fn bridge_batch(&self, b: &Batch) -> Result<(), RealiseError> {
        if b.len() > 0 {
            let mut s = b.lines.join("\n");
            s.push('\n');
            self.run(Cmd::new(self.ns(), &["bridge", "-batch", "-"]).stdin(s))?;
        }
        Ok(())
    }

    /// The last plan applied (from memory or the state file), for running on when the control
    /// plane is away.
    pub fn last_plan(&mut self) -> Result<Option<HostPlan>, RealiseError> {
        if self.last.is_none() {
            if let Some(dir) = &self.target.state_dir {
                let path = dir.join("last-plan.json");
                match std::fs::read(&path) {
                    Ok(b) => {
                        self.last =
                            Some(serde_json::from_slice(&b).map_err(|e| RealiseError::State {
                                path: path.clone(),
                                reason: e.to_string(),
                            })?)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(RealiseError::State {
                            path,
                            reason: e.to_string(),
                        })
                    }
                }
            }
        }
        Ok(self.last.clone())
    }

    fn save_last(&mut self, plan: &HostPlan) -> Result<(), RealiseError> {
        if let Some(dir) = &self.target.state_dir {
            let path = dir.join("last-plan.json");
            let tmp = dir.join("last-plan.json.tmp");
            let err = |e: std::io::Error| RealiseError::State {
                path: path.clone(),
                reason: e.to_string(),
            };
            std::fs::create_dir_all(dir).map_err(err)?;
            std::fs::write(
                &tmp,
                serde_json::to_vec_pretty(plan).expect("plans serialise"),
            )
            .map_err(err)?;
            std::fs::rename(&tmp, &path).map_err(err)?;
        }
        self.last = Some(plan.clone());
        Ok(())
    }

    /// Makes the namespace match `plan`. Safe to repeat; repairs drift.
    pub fn apply(&mut self, plan: &HostPlan) -> Result<ApplyReport, RealiseError> {
        let previous = self.last_plan()?;
        let mut report = ApplyReport::default();
        let ns = self.ns().map(String::from);
        let ns = ns.as_deref();

        // Bridged IPv4 must traverse the inet hooks (conntrack, security groups).
        let v = self.run(Cmd::new(
            ns,
            &["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"],
        ))?;
        if v.trim() != "1" {
            self.run(Cmd::new(
                ns,
                &["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"],
            ))?;
            report.changes += 1;
        }

        // Router namespaces: create the missing ones (from the root context, so the name is
        // visible everywhere), delete the ones no longer planned.
        let listed = self.run(Cmd::new(None, &["ip", "-j", "netns", "list"]))?;
        let existing: BTreeSet<String> = parse_json("ip netns list", &listed)?
            .iter()
            .filter_map(|n| n["name"].as_str().map(String::from))
            .collect();
        let wanted: BTreeSet<String> = plan.vpcs.iter().map(|v| self.router_ns(v)).collect();
        let router_prefix = format!("{}ynr-", self.target.router_prefix);
        for n in &wanted {
            if !existing.contains(n) {
                self.run(Cmd::new(None, &["ip", "netns", "add", n]))?;
                report.changes += 1;
            }
        }

        let links_out = self.run(Cmd::new(ns, &["ip", "-j", "-d", "link", "show"]))?;
        let links = links_of(&parse_json("ip link show", &links_out)?);
        let mut ipb = Batch::default(); // links
        let mut ipb2 = Batch::default(); // neighbours on vxlan devices (after links)
        let mut brb = Batch::default();
        let mtu = u64::from(plan.mtu);

        // Stale devices first (a re-created VPC may reuse names).
        let planned_devs: BTreeSet<String> = plan
            .vpcs
            .iter()
            .flat_map(|v| {
                let mut d = vec![v.bridge.clone(), v.vxlan.clone()];
                d.extend(v.router.interfaces.iter().map(|i| i.host_dev.clone()));
                d.extend(v.uplink.iter().map(|u| u.host_dev.clone()));
                d.extend(
                    v.transit
                        .iter()
                        .filter(|t| t.local)
                        .map(|t| t.host_dev.clone()),
                );
                d
            })
            .collect();
        for name in links.keys() {
            if owned(name) && !planned_devs.contains(name) {
                ipb.push(format!("link del dev {name}"));
            }
        }

        for v in &plan.vpcs {
            let rns = self.router_ns(v);
            // Bridge.
            match links.get(&v.bridge) {
                Some(l) if l.kind == "bridge" => {
                    if l.mtu != mtu {
                        ipb.push(format!("link set dev {} mtu {mtu}", v.bridge));
                    }
                    if !l.up {
                        ipb.push(format!("link set dev {} up", v.bridge));
                    }
                }
                other => {
                    if other.is_some() {
                        ipb.push(format!("link del dev {}", v.bridge));
                    }
                    ipb.push(format!(
                        "link add name {} mtu {mtu} type bridge stp_state 0",
                        v.bridge
                    ));
                    ipb.push(format!("link set dev {} up", v.bridge));
                }
            }
            // VXLAN device: exact attributes or re-create.
            let vx_ok = links.get(&v.vxlan).is_some_and(|l| {
                l.kind == "vxlan"
                    && l.data["id"].as_u64() == Some(u64::from(v.vni))
                    && l.data["local"].as_str() == Some(&plan.vtep.to_string())
                    && l.data["port"].as_u64() == Some(u64::from(plan.vxlan_port))
                    && l.data["learning"].as_bool() == Some(false)
                    && l.data["proxy"].as_bool() == Some(true)
            });
            let vx = links.get(&v.vxlan).filter(|_| vx_ok);
            if !vx_ok {
                if links.contains_key(&v.vxlan) {
                    ipb.push(format!("link del dev {}", v.vxlan));
                }
                ipb.push(format!(
                    "link add name {} mtu {mtu} type vxlan id {} local {} dstport {} nolearning proxy",
                    v.vxlan, v.vni, plan.vtep, plan.vxlan_port
                ));
            }
            if vx.is_none_or(|l| l.mtu != mtu) && vx.is_some() {
                ipb.push(format!("link set dev {} mtu {mtu}", v.vxlan));
            }
            if vx.is_none_or(|l| l.master.as_deref() != Some(&v.bridge)) {
                ipb.push(format!("link set dev {} master {}", v.vxlan, v.bridge));
            }
            if vx.is_none_or(|l| !l.up) {
                ipb.push(format!("link set dev {} up", v.vxlan));
            }
            // Remote MACs sit behind the VXLAN port: never learn them from frames.
            if vx.is_none_or(|l| l.slave["learning"].as_bool() != Some(false)) {
                brb.push(format!("link set dev {} learning off", v.vxlan));
            }

            // Router veths.
            for i in &v.router.interfaces {
                match links.get(&i.host_dev) {
                    Some(l) if l.kind == "veth" => {
                        if l.master.as_deref() != Some(&v.bridge) {
                            ipb.push(format!("link set dev {} master {}", i.host_dev, v.bridge));
                        }
                        if l.mtu != mtu {
                            ipb.push(format!("link set dev {} mtu {mtu}", i.host_dev));
                        }
                        if !l.up {
                            ipb.push(format!("link set dev {} up", i.host_dev));
                        }
                    }
                    other => {
                        if other.is_some() {
                            ipb.push(format!("link del dev {}", i.host_dev));
                        }
                        ipb.push(format!(
                            "link add name {} mtu {mtu} type veth peer name {} netns {rns}",
                            i.host_dev, i.router_dev
                        ));
                        ipb.push(format!("link set dev {} master {}", i.host_dev, v.bridge));
                        ipb.push(format!("link set dev {} up", i.host_dev));
                    }
                }
            }
            // Uplink (router ↔ host namespace) and, on the NAT gateway's host, the transit
            // leg (router ↔ VPC bridge): veths with fixed MACs.
            if let Some(u) = &v.uplink {
                veth_to_router(
                    &mut ipb,
                    links.get(&u.host_dev),
                    (&u.host_dev, Some(u.host_mac)),
                    (&u.router_dev, u.router_mac),
                    &rns,
                    None,
                    mtu,
                );
            }
            if let Some(t) = v.transit.as_ref().filter(|t| t.local) {
                veth_to_router(
                    &mut ipb,
                    links.get(&t.host_dev),
                    (&t.host_dev, None),
                    (&t.router_dev, t.mac),
                    &rns,
                    Some(&v.bridge),
                    mtu,
                );
            }
            // Local port devices (created by the compute agent or the lab).
            for p in plan.ports.iter().filter(|p| p.vni == v.vni) {
                match links.get(&p.device) {
                    None => report.missing_ports.push(p.id.clone()),
                    Some(l) => {
                        if l.master.as_deref() != Some(&v.bridge) {
                            ipb.push(format!("link set dev {} master {}", p.device, v.bridge));
                        }
                        if l.mtu != mtu {
                            ipb.push(format!("link set dev {} mtu {mtu}", p.device));
                        }
                        if !l.up {
                            ipb.push(format!("link set dev {} up", p.device));
                        }
                    }
                }
            }
        }

        // FDB (VXLAN: MAC → VTEP; bridge: MAC → VXLAN port; gateway MACs → router veths)
        // and ARP-proxy neighbours on the VXLAN devices.
        let fdb_out = self.run(Cmd::new(ns, &["bridge", "-j", "fdb", "show"]))?;
        let fdb = parse_json("bridge fdb show", &fdb_out)?;
        let neigh_out = self.run(Cmd::new(ns, &["ip", "-j", "neigh", "show"]))?;
        let neighs = parse_json("ip neigh show", &neigh_out)?;
        let mut have_tunnel: BTreeSet<(String, String, String)> = BTreeSet::new(); // dev, mac, dst
        let mut have_master: BTreeSet<(String, String)> = BTreeSet::new(); // dev, mac (static)
        for e in &fdb {
            let (Some(dev), Some(mac)) = (e["ifname"].as_str(), e["mac"].as_str()) else {
                continue;
            };
            let flags: Vec<&str> = e["flags"]
                .as_array()
                .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            let is_self = flags.contains(&"self") || e["master"].is_null();
            if let Some(dst) = e["dst"].as_str() {
                have_tunnel.insert((dev.into(), mac.into(), dst.into()));
            } else if !is_self && e["state"].as_str() == Some("static") {
                have_master.insert((dev.into(), mac.into()));
            }
        }
        let mut have_neigh: BTreeMap<(String, String), String> = BTreeMap::new();
        for n in &neighs {
            let (Some(dev), Some(ip)) = (n["dev"].as_str(), n["dst"].as_str()) else {
                continue;
            };
            let permanent = n["state"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == "PERMANENT"));
            if permanent {
                have_neigh.insert(
                    (dev.into(), ip.into()),
                    n["lladdr"].as_str().unwrap_or_default().to_string(),
                );
            }
        }
        let mut want_tunnel = BTreeSet::new();
        let mut want_master = BTreeSet::new();
        let mut want_neigh: BTreeMap<(String, String), String> = BTreeMap::new();
        for v in &plan.vpcs {
            let remote: BTreeSet<String> = v.fdb.iter().map(|f| f.mac.to_string()).collect();
            for f in &v.fdb {
                want_tunnel.insert((v.vxlan.clone(), f.mac.to_string(), f.vtep.to_string()));
                want_master.insert((v.vxlan.clone(), f.mac.to_string()));
            }
            for i in &v.router.interfaces {
                want_master.insert((i.host_dev.clone(), i.gateway_mac.to_string()));
            }
            if let Some(t) = v.transit.as_ref().filter(|t| t.local) {
                want_master.insert((t.host_dev.clone(), t.mac.to_string()));
            }
            if let Some(u) = &v.uplink {
                want_neigh.insert(
                    (u.host_dev.clone(), UPLINK_ROUTER_IP.to_string()),
                    u.router_mac.to_string(),
                );
            }
            for n in &v.neighbours {
                if remote.contains(&n.mac.to_string()) {
                    want_neigh.insert((v.vxlan.clone(), n.ip.to_string()), n.mac.to_string());
                }
            }
        }
        for (dev, mac, dst) in &have_tunnel {
            if owned(dev)
                && planned_devs.contains(dev)
                && !want_tunnel.contains(&(dev.clone(), mac.clone(), dst.clone()))
            {
                brb.push(format!("fdb del {mac} dev {dev} dst {dst} self"));
            }
        }
        for (dev, mac) in &have_master {
            if owned(dev)
                && planned_devs.contains(dev)
                && !want_master.contains(&(dev.clone(), mac.clone()))
            {
                brb.push(format!("fdb del {mac} dev {dev} master"));
            }
        }
        for (dev, mac, dst) in &want_tunnel {
            if !have_tunnel.contains(&(dev.clone(), mac.clone(), dst.clone())) {
                brb.push(format!(
                    "fdb append {mac} dev {dev} dst {dst} self permanent"
                ));
            }
        }
        for (dev, mac) in &want_master {
            if !have_master.contains(&(dev.clone(), mac.clone())) {
                brb.push(format!("fdb replace {mac} dev {dev} master static"));
            }
        }
        for (dev, ip) in have_neigh.keys() {
            if owned(dev)
                && planned_devs.contains(dev)
                && !want_neigh.contains_key(&(dev.clone(), ip.clone()))
            {
                ipb2.push(format!("neigh del {ip} dev {dev}"));
            }
        }
        for ((dev, ip), mac) in &want_neigh {
            if have_neigh.get(&(dev.clone(), ip.clone())) != Some(mac) {
                ipb2.push(format!(
                    "neigh replace {ip} lladdr {mac} dev {dev} nud permanent"
                ));
            }
        }

        // Delete stale router namespaces (after their veths are gone with them).
        let mut stale_ns = Vec::new();
        for n in &existing {
            if n.starts_with(&router_prefix) && !wanted.contains(n) {
                stale_ns.push(n.clone());
            }
        }

        report.changes += ipb.len() + ipb2.len() + brb.len();
        self.ip_batch(ns, &ipb)?;
        self.bridge_batch(&brb)?;
        self.ip_batch(ns, &ipb2)?;
        for n in stale_ns {
            self.run(Cmd::new(None, &["ip", "netns", "del", &n]))?;
            report.changes += 1;
        }

        // Router namespaces.
        for v in &plan.vpcs {
            let prev = previous.as_ref().filter(|p| p.vpc(v.vni).is_some());
            report.changes += self.apply_router(plan, v, prev)?;
        }

        // Security groups: one atomic table replacement when anything differs.
        let listing = nft::normalize(&self.nft_listing()?);
        let rendered = nft::render(plan);
        let rendered_hash = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(rendered.as_bytes()))
        };
        let nft_same = listing == nft::normalize(&rendered)
            || self.last_nft_listing.as_ref() == Some(&(rendered_hash.clone(), listing.clone()));
        if !nft_same || listing.is_empty() {
            self.run(Cmd::new(ns, &["nft", "-f", "-"]).stdin(nft::render_batch(plan)))?;
            report.changes += 1;
            self.last_nft_listing = Some((rendered_hash, nft::normalize(&self.nft_listing()?)));
        }

        // Conntrack: forget flows that rules which changed may have allowed.
        if let Some(prev) = &previous {
            for (zone, flag, ip) in conntrack_flushes(prev, plan) {
                self.run(
                    Cmd::new(
                        ns,
                        &[
                            "conntrack",
                            "-D",
                            "-w",
                            &zone.to_string(),
                            flag,
                            &ip.to_string(),
                        ],
                    )
                    .tolerant(),
                )?;
                report.conntrack_flushes += 1;
            }
        }
        // External networks (policy routes, proxy ARP) and inbound shaping on the uplinks:
        // last, so a missing external device cannot hold back the rest of the plan.
        report.changes += self.apply_external(plan, previous.as_ref())?;
        for v in &plan.vpcs {
            if let Some(u) = &v.uplink {
                report.changes += self.apply_tc(ns, &u.host_dev, &shaping_classes(plan, v.vni))?;
            }
        }
        self.save_last(plan)?;
        Ok(report)
    }

    /// Sets the sysctls that differ; returns 1 if it had to.
    fn sysctls(&self, ns: Option<&str>, want: &[(String, String)]) -> Result<usize, RealiseError> {
        let mut argv = vec!["sysctl", "-n"];
        argv.extend(want.iter().map(|(k, _)| k.as_str()));
        let got = self.run(Cmd::new(ns, &argv).tolerant())?;
        let got: Vec<&str> = got.lines().map(str::trim).collect();
        let wrong: Vec<String> = want
            .iter()
            .enumerate()
            .filter(|(i, (_, v))| got.get(*i) != Some(&v.as_str()))
            .map(|(_, (k, v))| format!("{k}={v}"))
            .collect();
        if wrong.is_empty() {
            return Ok(0);
        }
        let mut argv = vec!["sysctl", "-q", "-w"];
        argv.extend(wrong.iter().map(String::as_str));
        self.run(Cmd::new(ns, &argv))?;
        Ok(1)
    }

    /// The host side of external networks: forwarding, proxy ARP for the external addresses
    /// realised here (answered on the external device, without delay), and one policy
    /// routing table per network, used `from`/`to` its CIDR: the network, its gateway as
    /// default route, and each external address via its VPC's uplink.
    fn apply_external(
        &self,
        plan: &HostPlan,
        previous: Option<&HostPlan>,
    ) -> Result<usize, RealiseError> {
        let ns = self.ns();
        let all: Vec<&crate::plan::ExternalPlan> = plan
            .externals
            .iter()
            .chain(previous.into_iter().flat_map(|p| p.externals.iter()))
            .collect();
        if all.is_empty() {
            return Ok(0);
        }
        let mut changes = 0;
        if !plan.externals.is_empty() {
            let mut want = vec![("net.ipv4.ip_forward".to_string(), "1".to_string())];
            for x in &plan.externals {
                want.push((
                    format!("net.ipv4.neigh.{}.proxy_delay", x.device),
                    "0".into(),
                ));
            }
            changes += self.sysctls(ns, &want)?;
        }
        let mut b = Batch::default();
        let out = self.run(Cmd::new(ns, &["ip", "-j", "neigh", "show", "proxy"]))?;
        let have: BTreeSet<(String, String)> = parse_json("ip neigh show proxy", &out)?
            .iter()
            .filter_map(|n| Some((n["dev"].as_str()?.into(), n["dst"].as_str()?.into())))
            .collect();
        let want: BTreeSet<(String, String)> = plan
            .externals
            .iter()
            .flat_map(|x| {
                x.addresses
                    .iter()
                    .map(|(a, _)| (x.device.clone(), a.to_string()))
            })
            .collect();
        for (dev, a) in have.difference(&want) {
            let ours = all
                .iter()
                .any(|x| x.device == *dev && a.parse().is_ok_and(|ip| x.cidr.contains(ip)));
            if ours {
                b.push(format!("neigh del proxy {a} dev {dev}"));
            }
        }
        for (dev, a) in want.difference(&have) {
            b.push(format!("neigh replace proxy {a} dev {dev}"));
        }
        let tables: BTreeSet<u32> = all.iter().map(|x| x.table).collect();
        for t in &tables {
            let have = self.route_table(ns, *t)?;
            let mut want: BTreeMap<String, String> = BTreeMap::new();
            if let Some(x) = plan.externals.iter().find(|x| x.table == *t) {
                let d = &x.device;
                want.insert(
                    format!("{} dev {d}", x.cidr),
                    format!("route replace {} dev {d} table {t}", x.cidr),
                );
                want.insert(
                    format!("default via {} dev {d}", x.gateway_ip),
                    format!(
                        "route replace default via {} dev {d} table {t}",
                        x.gateway_ip
                    ),
                );
                for (a, vni) in &x.addresses {
                    let up = names::uplink_host_dev(*vni);
                    want.insert(
                        format!("{a} via {UPLINK_ROUTER_IP} dev {up}"),
                        format!(
                            "route replace {a}/32 via {UPLINK_ROUTER_IP} dev {up} onlink table {t}"
                        ),
                    );
                }
            }
            for h in have.iter().filter(|h| !want.contains_key(*h)) {
                let dst = h.split(' ').next().unwrap_or_default();
                b.push(format!("route del {dst} table {t}"));
            }
            for (k, cmd) in &want {
                if !have.contains(k) {
                    b.push(cmd.clone());
                }
            }
        }
        let want: BTreeSet<(u64, String, String)> = plan
            .externals
            .iter()
            .flat_map(|x| {
                [
                    (EXT_RULE_PREF, format!("to {}", x.cidr), x.table.to_string()),
                    (
                        EXT_RULE_PREF + 1,
                        format!("from {}", x.cidr),
                        x.table.to_string(),
                    ),
                ]
            })
            .collect();
        self.sync_rules(ns, &mut b, &want, |_, t| {
            t.parse::<u32>().is_ok_and(|t| tables.contains(&t))
        })?;
        changes += b.len();
        self.ip_batch(ns, &b)?;
        Ok(changes)
    }

    /// The routes of a table as canonical lines (empty if the table does not exist: then
    /// `ip -j` fails after printing an unterminated list).
    fn route_table(&self, ns: Option<&str>, t: u32) -> Result<BTreeSet<String>, RealiseError> {
        let out = self.run(
            Cmd::new(ns, &["ip", "-j", "route", "show", "table", &t.to_string()]).tolerant(),
        )?;
        if out.trim() == "[" {
            return Ok(BTreeSet::new());
        }
        Ok(routes_of(&parse_json("ip route show", &out)?))
    }

    /// Adds the wanted policy rules and queues the deletion of ours (`is_ours(pref, table)`)
    /// that are not wanted, into `b`.
    fn sync_rules(
        &self,
        ns: Option<&str>,
        b: &mut Batch,
        want: &BTreeSet<(u64, String, String)>,
        is_ours: impl Fn(u64, &str) -> bool,
    ) -> Result<(), RealiseError> {
        let out = self.run(Cmd::new(ns, &["ip", "-j", "rule", "show"]))?;
        let have: BTreeSet<(u64, String, String)> = rules_of(&parse_json("ip rule show", &out)?)
            .into_iter()
            .collect();
        for (p, sel, t) in have.difference(want) {
            if is_ours(*p, t) {
                b.push(format!("rule del pref {p} {sel} table {t}"));
            }
        }
        for (p, sel, t) in want.difference(&have) {
            b.push(format!("rule add pref {p} {sel} table {t}"));
        }
        Ok(())
    }

    /// An HTB root with one class per capped address (`classes`: classid, Mbit/s), or no
    /// HTB at all when nothing is capped. Classification is done by nftables
    /// (`meta priority set`), so there are no tc filters to keep in sync.
    fn apply_tc(
        &self,
        ns: Option<&str>,
        dev: &str,
        classes: &[(String, u32)],
    ) -> Result<usize, RealiseError> {
        let q = self.run(Cmd::new(ns, &["tc", "-j", "qdisc", "show", "dev", dev]))?;
        let is_htb = parse_json("tc qdisc show", &q)?.iter().any(|q| {
            q["root"].as_bool() == Some(true) && q["kind"] == "htb" && q["handle"] == "1:"
        });
        let mut cmds: Vec<Vec<String>> = Vec::new();
        let tc = |args: &str| -> Vec<String> {
            std::iter::once("tc".to_string())
                .chain(args.split(' ').map(String::from))
                .collect()
        };
        if classes.is_empty() {
            if is_htb {
                cmds.push(tc(&format!("qdisc del dev {dev} root")));
            }
        } else {
            let mut have: BTreeMap<String, f64> = BTreeMap::new();
            if is_htb {
                // `tc -j class show` prints no JSON for htb here: parse the text.
                let out = self.run(Cmd::new(ns, &["tc", "class", "show", "dev", dev]))?;
                for l in out.lines() {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    let rate = w
                        .iter()
                        .position(|x| *x == "rate")
                        .and_then(|i| w.get(i + 1))
                        .and_then(|r| parse_rate(r));
                    if let (Some("htb"), Some(id), Some(r)) = (w.get(1).copied(), w.get(2), rate) {
                        have.insert(id.to_string(), r);
                    }
                }
            } else {
                cmds.push(tc(&format!(
                    "qdisc replace dev {dev} root handle 1: htb default 0"
                )));
            }
            for (id, mbit) in classes {
                let want = f64::from(*mbit) * 1e6;
                if have.get(id).is_none_or(|r| (r - want).abs() > want * 0.01) {
                    cmds.push(tc(&format!(
                        "class replace dev {dev} parent 1: classid {id} htb rate {mbit}mbit ceil {mbit}mbit"
                    )));
                }
            }
            for id in have.keys() {
                if !classes.iter().any(|(c, _)| c == id) {
                    cmds.push(tc(&format!("class del dev {dev} classid {id}")));
                }
            }
        }
        for c in &cmds {
            let argv: Vec<&str> = c.iter().map(String::as_str).collect();
            self.run(Cmd::new(ns, &argv))?;
        }
        Ok(cmds.len())
    }

    /// Which local member port announces each shared VIP now: the VPC bridge saw a frame
    /// from the VIP's MAC on that member's device within [`VIP_FRESH_SECS`] (a holder sends
    /// from the VIP MAC: gratuitous ARP on takeover, then its replies). Returns
    /// (vip id, port id), sorted. The agent reports these to the controller, which
    /// recompiles (the holder's MAC moves in every host's FDB); probe before re-applying
    /// the current plan, which moves the VIP MAC back where the plan says it is.
    pub fn vip_holders(&self, plan: &HostPlan) -> Result<Vec<(String, String)>, RealiseError> {
        let mut out = BTreeSet::new();
        for v in plan
            .vpcs
            .iter()
            .filter(|v| v.vips.iter().any(|x| !x.local_members.is_empty()))
        {
            let fdb = self.run(Cmd::new(
                self.ns(),
                &["bridge", "-s", "-j", "fdb", "show", "br", &v.bridge],
            ))?;
            for e in parse_json("bridge fdb show", &fdb)? {
                let (Some(mac), Some(dev)) = (e["mac"].as_str(), e["ifname"].as_str()) else {
                    continue;
                };
                if e["updated"].as_u64().is_none_or(|u| u > VIP_FRESH_SECS) {
                    continue;
                }
                for vip in &v.vips {
                    if !mac.eq_ignore_ascii_case(&vip.mac.to_string()) {
                        continue;
                    }
                    if let Some((port, _)) = vip.local_members.iter().find(|(_, d)| d == dev) {
                        out.insert((vip.id.clone(), port.clone()));
                    }
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Both of our tables as `nft` lists them (empty text for a missing one).
    fn nft_listing(&self) -> Result<String, RealiseError> {
        let mut s = String::new();
        for family in ["inet", "bridge"] {
            s.push_str(&self.run(
                Cmd::new(self.ns(), &["nft", "list", "table", family, NFT_TABLE]).tolerant(),
            )?);
        }
        Ok(s)
    }

    /// One VPC's router namespace: loopback, forwarding, gateway interfaces, neighbours,
    /// and its way out (uplink, transit, NAT table, outbound shaping) where planned now or
    /// before (`previous`: the last plan, when it had this VPC).
    fn apply_router(
        &mut self,
        plan: &HostPlan,
        v: &VpcPlan,
        previous: Option<&HostPlan>,
    ) -> Result<usize, RealiseError> {
        let rns_name = self.router_ns(v);
        let rns = Some(rns_name.as_str());
        let mut changes = 0;
        // Forwarding on; every subnet's gateway sits on the same L2 segment (one VNI per
        // VPC), so each interface must answer ARP only for its own address (no ARP flux).
        const SYSCTLS: [(&str, &str); 9] = [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.arp_ignore", "1"),
            ("net.ipv4.conf.all.arp_announce", "2"),
            ("net.ipv4.conf.default.arp_ignore", "1"),
            ("net.ipv4.conf.default.arp_announce", "2"),
            // IPv4 only for now: no router advertisements or MLD into the VPC.
            ("net.ipv6.conf.all.disable_ipv6", "1"),
            ("net.ipv6.conf.default.disable_ipv6", "1"),
            // NAT gateway transit: covered traffic enters the gateway's router through the
            // transit leg while its replies leave through a subnet interface.
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ];
        let want: Vec<(String, String)> = SYSCTLS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        changes += self.sysctls(rns, &want)?;
        let out = self.run(Cmd::new(rns, &["ip", "-j", "-d", "addr", "show"]))?;
        let raw = parse_json("ip addr show", &out)?;
        let links = links_of(&raw);
        let mut addrs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for l in &raw {
            let Some(name) = l["ifname"].as_str() else {
                continue;
            };
            for a in l["addr_info"].as_array().into_iter().flatten() {
                if a["family"] == "inet" {
                    addrs.entry(name.into()).or_default().insert(format!(
                        "{}/{}",
                        a["local"].as_str().unwrap_or_default(),
                        a["prefixlen"].as_u64().unwrap_or(0)
                    ));
                }
            }
        }
        let mut b = Batch::default();
        if links.get("lo").is_none_or(|l| !l.up) {
            b.push("link set dev lo up".into());
        }
        let mtu = u64::from(plan.mtu);
        for i in &v.router.interfaces {
            let Some(l) = links.get(&i.router_dev) else {
                // Created with the host-side veth in this same apply; configure it fully.
                b.push(format!(
                    "link set dev {} address {} mtu {mtu}",
                    i.router_dev, i.gateway_mac
                ));
                b.push(format!(
                    "addr add {}/{} dev {}",
                    i.gateway_ip,
                    i.cidr.prefix_len(),
                    i.router_dev
                ));
                b.push(format!("link set dev {} up", i.router_dev));
                continue;
            };
            if !l.mac.eq_ignore_ascii_case(&i.gateway_mac.to_string()) {
                b.push(format!(
                    "link set dev {} address {}",
                    i.router_dev, i.gateway_mac
                ));
            }
            if l.mtu != mtu {
                b.push(format!("link set dev {} mtu {mtu}", i.router_dev));
            }
            let want = format!("{}/{}", i.gateway_ip, i.cidr.prefix_len());
            let have = addrs.get(&i.router_dev).cloned().unwrap_or_default();
            for a in &have {
                if *a != want {
                    b.push(format!("addr del {a} dev {}", i.router_dev));
                }
            }
            if !have.contains(&want) {
                b.push(format!("addr add {want} dev {}", i.router_dev));
            }
            if !l.up {
                b.push(format!("link set dev {} up", i.router_dev));
            }
        }
        // The uplink and the transit leg (created from the host side with their MACs).
        let legs: Vec<(&str, crate::addr::MacAddr)> = v
            .uplink
            .iter()
            .map(|u| (u.router_dev.as_str(), u.router_mac))
            .chain(
                v.transit
                    .iter()
                    .filter(|t| t.local)
                    .map(|t| (t.router_dev.as_str(), t.mac)),
            )
            .collect();
        for (dev, mac) in &legs {
            match links.get(*dev) {
                None => b.push(format!("link set dev {dev} mtu {mtu} up")),
                Some(l) => {
                    if !l.mac.eq_ignore_ascii_case(&mac.to_string()) {
                        b.push(format!("link set dev {dev} address {mac}"));
                    }
                    if l.mtu != mtu {
                        b.push(format!("link set dev {dev} mtu {mtu}"));
                    }
                    if !l.up {
                        b.push(format!("link set dev {dev} up"));
                    }
                }
            }
        }
        // Stale interfaces (a deleted subnet, a gone uplink) go away with their veth.
        let planned: BTreeSet<&str> = v
            .router
            .interfaces
            .iter()
            .map(|i| i.router_dev.as_str())
            .collect();
        for (name, l) in &links {
            let ours = name.starts_with("gw")
                || name == names::UPLINK_ROUTER_DEV
                || name == names::TRANSIT_ROUTER_DEV;
            if ours
                && l.kind == "veth"
                && !planned.contains(name.as_str())
                && !legs.iter().any(|(d, _)| d == name)
            {
                b.push(format!("link del dev {name}"));
            }
        }
        // Neighbours: every port of the VPC on its subnet's interface, permanent.
        let nout = self.run(Cmd::new(rns, &["ip", "-j", "neigh", "show"]))?;
        let mut have: BTreeMap<(String, String), String> = BTreeMap::new();
        for n in parse_json("ip neigh show", &nout)? {
            let permanent = n["state"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x == "PERMANENT"));
            if let (Some(dev), Some(ip), true) = (n["dev"].as_str(), n["dst"].as_str(), permanent) {
                have.insert(
                    (dev.into(), ip.into()),
                    n["lladdr"].as_str().unwrap_or_default().to_string(),
                );
            }
        }
        let dev_of: HashMap<&str, &str> = v
            .router
            .interfaces
            .iter()
            .map(|i| (i.subnet.as_str(), i.router_dev.as_str()))
            .collect();
        let mut want: BTreeMap<(String, String), String> = BTreeMap::new();
        for n in &v.neighbours {
            if let Some(dev) = dev_of.get(n.subnet.as_str()) {
                want.insert((dev.to_string(), n.ip.to_string()), n.mac.to_string());
            }
        }
        // Next hops of the ways out: the host end of the uplink, the gateway's transit leg.
        if let Some(u) = &v.uplink {
            want.insert(
                (u.router_dev.clone(), UPLINK_HOST_IP.to_string()),
                u.host_mac.to_string(),
            );
        }
        if let Some(t) = v.transit.as_ref().filter(|t| !t.local) {
            want.insert(
                (t.via_dev.clone(), TRANSIT_IP.to_string()),
                t.mac.to_string(),
            );
        }
        for (k, _) in have.iter().filter(|(k, _)| !want.contains_key(*k)) {
            if planned.contains(k.0.as_str()) {
                b.push(format!("neigh del {} dev {}", k.1, k.0));
            }
        }
        for ((dev, ip), mac) in &want {
            if have.get(&(dev.clone(), ip.clone())) != Some(mac) {
                b.push(format!(
                    "neigh replace {ip} lladdr {mac} dev {dev} nud permanent"
                ));
            }
        }
        changes += b.len();
        self.ip_batch(rns, &b)?;
        changes += self.apply_router_exits(plan, v, previous, &rns_name)?;
        Ok(changes)
    }

    /// A router's ways out of the VPC: table 100 (uplink, mark 1) and table 101 (transit,
    /// mark 2) with their rules, the NAT table, outbound shaping on the uplink. Skipped
    /// (no observation at all) for VPCs without any, now and before.
    fn apply_router_exits(
        &mut self,
        plan: &HostPlan,
        v: &VpcPlan,
        previous: Option<&HostPlan>,
        rns_name: &str,
    ) -> Result<usize, RealiseError> {
        let rns = Some(rns_name);
        let transit = v.transit.as_ref().filter(|t| !t.local);
        let rendered = nft::render_router(plan, v.vni);
        let prev_v = previous.and_then(|p| p.vpc(v.vni));
        let had = prev_v.is_some_and(|p| p.uplink.is_some() || p.transit.is_some())
            || previous.is_some_and(|p| nft::render_router(p, v.vni).is_some());
        if v.uplink.is_none() && transit.is_none() && rendered.is_none() && !had {
            return Ok(0);
        }
        let mut changes = 0;
        let mut b = Batch::default();
        let mut want_rules = BTreeSet::new();
        let tables = [
            (
                ROUTER_TABLE_UPLINK,
                v.uplink
                    .as_ref()
                    .map(|u| (UPLINK_HOST_IP, u.router_dev.clone())),
                "0x1",
            ),
            (
                ROUTER_TABLE_TRANSIT,
                transit.map(|t| (TRANSIT_IP, t.via_dev.clone())),
                "0x2",
            ),
        ];
        for (t, via, mark) in &tables {
            let have = self.route_table(rns, *t)?;
            let want: BTreeSet<String> = via
                .iter()
                .map(|(gw, dev)| format!("default via {gw} dev {dev}"))
                .collect();
            for h in have.difference(&want) {
                let dst = h.split(' ').next().unwrap_or_default();
                b.push(format!("route del {dst} table {t}"));
            }
            if let Some((gw, dev)) = via {
                if !have.contains(&format!("default via {gw} dev {dev}")) {
                    b.push(format!(
                        "route replace default via {gw} dev {dev} onlink table {t}"
                    ));
                }
                let pref = u64::from(ROUTER_RULE_PREF + *t - ROUTER_TABLE_UPLINK);
                want_rules.insert((pref, format!("fwmark {mark}"), t.to_string()));
            }
        }
        self.sync_rules(rns, &mut b, &want_rules, |p, _| {
            (u64::from(ROUTER_RULE_PREF)..u64::from(ROUTER_RULE_PREF) + 2).contains(&p)
        })?;
        changes += b.len();
        self.ip_batch(rns, &b)?;

        // The NAT table: replaced atomically when it differs, deleted when unplanned.
        let table = names::NFT_ROUTER_TABLE;
        let listing = self.run(Cmd::new(rns, &["nft", "list", "table", "ip", table]).tolerant())?;
        match rendered {
            Some(r) => {
                let hash = {
                    use sha2::{Digest, Sha256};
                    hex::encode(Sha256::digest(r.as_bytes()))
                };
                let norm = nft::normalize(&listing);
                let same = norm == nft::normalize(&r)
                    || self.router_nft_listing.get(rns_name) == Some(&(hash.clone(), norm));
                if !same || listing.trim().is_empty() {
                    let batch = format!("table ip {table}\ndelete table ip {table}\n{r}");
                    self.run(Cmd::new(rns, &["nft", "-f", "-"]).stdin(batch))?;
                    changes += 1;
                    let after =
                        self.run(Cmd::new(rns, &["nft", "list", "table", "ip", table]).tolerant())?;
                    self.router_nft_listing
                        .insert(rns_name.to_string(), (hash, nft::normalize(&after)));
                }
            }
            None if !listing.trim().is_empty() => {
                self.run(Cmd::new(rns, &["nft", "delete", "table", "ip", table]))?;
                changes += 1;
            }
            None => {}
        }
        if let Some(u) = &v.uplink {
            changes += self.apply_tc(rns, &u.router_dev, &shaping_classes(plan, v.vni))?;
        }
        // Flows NATed to an address whose mapping changed or went keep no old translation.
        if let Some(prev) = previous {
            for a in nat_changes(prev, plan, v.vni) {
                for dir in ["-d", "-q"] {
                    self.run(Cmd::new(rns, &["conntrack", "-D", dir, &a.to_string()]).tolerant())?;
                }
            }
        }
        Ok(changes)
    }
}

/// Priority of the policy rules selecting an external network's table (`to`, then `from`).
const EXT_RULE_PREF: u64 = 1000;
/// Priority of the router namespace's mark rules (after `main`: routes inside the VPC win).
const ROUTER_RULE_PREF: u32 = 33001;
/// A VIP announcement older than this (seconds since the bridge last saw the VIP's MAC on
/// a member port) is not news.
pub const VIP_FRESH_SECS: u64 = 10;

/// Devices the realiser owns in the host namespace (it deletes unplanned ones).
fn owned(dev: &str) -> bool {
    names::OWNED_PREFIXES.iter().any(|p| dev.starts_with(p))
        || dev.starts_with(names::UPLINK_PREFIX)
}

/// Creates (or repairs) a veth whose far end lives in a router namespace with a fixed MAC;
/// the near end optionally joins a bridge.
fn veth_to_router(
    b: &mut Batch,
    have: Option<&Link>,
    (near, near_mac): (&str, Option<crate::addr::MacAddr>),
    (far, far_mac): (&str, crate::addr::MacAddr),
    rns: &str,
    bridge: Option<&str>,
    mtu: u64,
) {
    match have {
        Some(l)
            if l.kind == "veth"
                && near_mac.is_none_or(|m| l.mac.eq_ignore_ascii_case(&m.to_string())) =>
        {
            if let Some(br) = bridge.filter(|br| l.master.as_deref() != Some(*br)) {
                b.push(format!("link set dev {near} master {br}"));
            }
            if l.mtu != mtu {
                b.push(format!("link set dev {near} mtu {mtu}"));
            }
            if !l.up {
                b.push(format!("link set dev {near} up"));
            }
        }
        other => {
            if other.is_some() {
                b.push(format!("link del dev {near}"));
            }
            let addr = near_mac
                .map(|m| format!(" address {m}"))
                .unwrap_or_default();
            b.push(format!(
                "link add name {near}{addr} mtu {mtu} type veth peer name {far} address {far_mac} netns {rns}"
            ));
            if let Some(br) = bridge {
                b.push(format!("link set dev {near} master {br}"));
            }
            b.push(format!("link set dev {near} up"));
        }
    }
}

/// HTB classes (classid, Mbit/s) of a VPC's capped elastic IPs on this host.
fn shaping_classes(plan: &HostPlan, vni: u32) -> Vec<(String, u32)> {
    nft::shaping(plan)
        .into_iter()
        .filter(|s| s.vni == vni)
        .map(|s| (s.classid, s.mbit))
        .collect()
}

/// A tc rate as printed (`20Mbit`, `1Gbit`, `500Kbit`, `1500bit`) in bit/s.
fn parse_rate(s: &str) -> Option<f64> {
    let i = s.find(|c: char| c.is_ascii_alphabetic())?;
    let n: f64 = s[..i].parse().ok()?;
    let mul = match &s[i..] {
        "bit" => 1.0,
        "Kbit" => 1e3,
        "Mbit" => 1e6,
        "Gbit" => 1e9,
        _ => return None,
    };
    Some(n * mul)
}

/// Routes of a table as canonical `dst [via gw] dev dev` lines.
fn routes_of(v: &[Value]) -> BTreeSet<String> {
    v.iter()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?;
            let dev = r["dev"].as_str()?;
            Some(match r["gateway"].as_str() {
                Some(gw) => format!("{dst} via {gw} dev {dev}"),
                None => format!("{dst} dev {dev}"),
            })
        })
        .collect()
}

/// Policy rules as (priority, canonical selector + table) pairs.
fn rules_of(v: &[Value]) -> Vec<(u64, String, String)> {
    v.iter()
        .filter_map(|r| {
            let pref = r["priority"].as_u64()?;
            let table = match &r["table"] {
                Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            let mut sel = Vec::new();
            if let Some(src) = r["src"].as_str().filter(|s| *s != "all") {
                sel.push(format!("from {src}/{}", r["srclen"].as_u64().unwrap_or(32)));
            }
            if let Some(dst) = r["dst"].as_str() {
                sel.push(format!("to {dst}/{}", r["dstlen"].as_u64().unwrap_or(32)));
            }
            if let Some(m) = r["fwmark"].as_str() {
                sel.push(format!("fwmark {m}"));
            }
            Some((pref, sel.join(" "), table))
        })
        .collect()
}

/// External addresses of a VPC whose translation differs between two plans (changed or
/// gone): their conntrack entries (original destination, reply destination) must go.
pub fn nat_changes(prev: &HostPlan, next: &HostPlan, vni: u32) -> Vec<std::net::Ipv4Addr> {
    let mappings = |p: &HostPlan| -> BTreeMap<std::net::Ipv4Addr, String> {
        let eips = p
            .elastic_ips
            .iter()
            .filter(|e| e.vni == vni)
            .map(|e| (e.address, e.private_ip.to_string()));
        let nats = p
            .nat_gateways
            .iter()
            .filter(|n| n.vni == vni && n.local)
            .map(|n| (n.address, format!("{:?}{:?}", n.sources, n.dnat)));
        eips.chain(nats).collect()
    };
    let (before, after) = (mappings(prev), mappings(next));
    before
        .into_iter()
        .filter(|(a, m)| after.get(a) != Some(m))
        .map(|(a, _)| a)
        .collect()
}

/// What a port's rules allow, resolved (rules + the member addresses of the groups used).
fn fingerprint(plan: &HostPlan, p: &PortPlan, ingress: bool) -> String {
    let members: HashMap<&str, &Vec<std::net::Ipv4Addr>> = plan
        .groups
        .iter()
        .map(|g| (g.id.as_str(), &g.members))
        .collect();
    let mut groups: BTreeSet<&str> = BTreeSet::new();
    let rules = if ingress {
        groups.extend(p.groups.iter().map(String::as_str));
        serde_json::to_string(&p.ingress).unwrap_or_default()
    } else {
        serde_json::to_string(&p.egress).unwrap_or_default()
    };
    let rs: Vec<&crate::plan::RulePlan> = if ingress {
        p.ingress.iter().collect()
    } else {
        p.egress.iter().flatten().collect()
    };
    for r in rs {
        if let crate::plan::PeerPlan::Group(g) = &r.peer {
            groups.insert(g);
        }
    }
    let resolved: Vec<(&str, Option<&&Vec<std::net::Ipv4Addr>>)> =
        groups.iter().map(|g| (*g, members.get(g))).collect();
    format!("{}|{rules}|{resolved:?}", p.ip)
}

/// Conntrack deletions needed between two plans: (zone, "-d"/"-s", address).
/// A port whose ingress changed loses the flows towards it; whose egress changed, the flows
/// it started; a port that left loses both. Flows allowed by rules that still hold are picked
/// up again as new (and allowed) on their next packet.
pub fn conntrack_flushes(
    prev: &HostPlan,
    next: &HostPlan,
) -> Vec<(u16, &'static str, std::net::Ipv4Addr)> {
    let zone = |p: &HostPlan, vni: u32| p.vpc(vni).map(|v| v.zone);
    let next_ports: HashMap<&str, &PortPlan> =
        next.ports.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut out = BTreeSet::new();
    for p in &prev.ports {
        let Some(z) = zone(prev, p.vni) else { continue };
        match next_ports.get(p.id.as_str()) {
            Some(n) if n.vni == p.vni && n.ip == p.ip && zone(next, n.vni) == Some(z) => {
                if fingerprint(prev, p, true) != fingerprint(next, n, true) {
                    out.insert((z, "-d", p.ip));
                }
                if fingerprint(prev, p, false) != fingerprint(next, n, false) {
                    out.insert((z, "-s", p.ip));
                }
            }
            _ => {
                out.insert((z, "-d", p.ip));
                out.insert((z, "-s", p.ip));
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile_all;
    use crate::model::{Direction, Peer, PortRange, Protocol, Rule};

    #[test]
    fn first_apply_on_empty_namespace() {
        let plans = compile_all(&crate::lab::fixtures::two_host_model()).unwrap();
        let r = RecordingRunner::default();
        r.answer("sysctl -n", "0\n");
        let mut real = Realiser::new(
            r,
            Target {
                netns: Some("h".into()),
                router_prefix: "t-".into(),
                state_dir: None,
            },
        );
        let rep = real.apply(&plans["host-a"]).unwrap();
        assert!(rep.changes > 10, "{rep:?}");
        assert_eq!(rep.missing_ports.len(), plans["host-a"].ports.len());
        let lines = real.runner().lines().join("\n");
        assert!(lines.contains("ip netns add t-ynr-00002a"), "{lines}");
        assert!(
            lines.contains("type vxlan id 42 local 192.0.2.10 dstport 4789 nolearning proxy"),
            "{lines}"
        );
        assert!(lines.contains("dst 192.0.2.11 self permanent"), "{lines}");
        // Never a flooding entry.
        assert!(!lines.contains("00:00:00:00:00:00"), "{lines}");
        assert!(lines.contains("[h] nft -f -"), "{lines}");
    }

    #[test]
    fn external_pieces_are_realised_and_removed() {
        let m = crate::lab::fixtures::external_model();
        let plans = compile_all(&m).unwrap();
        let mut real = Realiser::new(RecordingRunner::default(), Target::default());
        real.apply(&plans["host-a"]).unwrap();
        let lines = real.runner().lines().join("\n");
        for want in [
            "link add name ynu-00002a address",
            "type veth peer name uplink address",
            "neigh replace proxy 203.0.113.50 dev ext0",
            "route replace 203.0.113.50/32 via 169.254.0.2 dev ynu-00002a onlink table",
            "route replace default via 203.0.113.1 dev ext0 table",
            "rule add pref 1000 to 203.0.113.0/24 table",
            "rule add pref 1001 from 203.0.113.0/24 table",
            "route replace default via 169.254.0.1 dev uplink onlink table 100",
            "route replace default via 169.254.255.1 dev gwe565d34afe onlink table 101",
            "rule add pref 33001 fwmark 0x1 table 100",
            "rule add pref 33002 fwmark 0x2 table 101",
            "tc qdisc replace dev ynu-00002a root handle 1: htb default 0",
            "tc class replace dev uplink parent 1: classid 1:10 htb rate 20mbit ceil 20mbit",
            "snat to 203.0.113.50",
            "net.ipv4.neigh.ext0.proxy_delay=0",
        ] {
            assert!(lines.contains(want), "missing {want:?} in\n{lines}");
        }
        // Unbinding the capped elastic IP flushes its translations.
        let mut m2 = m.clone();
        m2.elastic_ips[0].port = None;
        let p2 = compile_all(&m2).unwrap();
        assert_eq!(
            nat_changes(&plans["host-a"], &p2["host-a"], 42),
            vec!["203.0.113.50".parse::<std::net::Ipv4Addr>().unwrap()]
        );
        assert!(nat_changes(&plans["host-a"], &plans["host-a"], 42).is_empty());
        real.runner().commands.lock().unwrap().clear();
        real.apply(&p2["host-a"]).unwrap();
        let lines = real.runner().lines().join("\n");
        assert!(lines.contains("conntrack -D -d 203.0.113.50"), "{lines}");
        assert!(lines.contains("conntrack -D -q 203.0.113.50"), "{lines}");
    }

    #[test]
    fn rule_changes_flush_only_what_they_allowed() {
        let mut m = crate::lab::fixtures::two_host_model();
        let a = compile_all(&m).unwrap();
        // No change: nothing to flush.
        assert!(conntrack_flushes(&a["host-a"], &a["host-a"]).is_empty());
        // Remove the web group's ingress rule: flows towards its members on host-a go.
        let web = m
            .security_groups
            .iter_mut()
            .find(|g| g.id == "sg-web")
            .unwrap();
        web.rules.retain(|r| r.direction != Direction::Ingress);
        let b = compile_all(&m).unwrap();
        let f = conntrack_flushes(&a["host-a"], &b["host-a"]);
        assert_eq!(f, vec![(43, "-d", "10.0.1.10".parse().unwrap())]);
        // Adding an egress rule to the web group restricts egress: flows it started go.
        m.security_groups[0].rules.push(Rule {
            direction: Direction::Egress,
            protocol: Protocol::Tcp,
            ports: Some(PortRange { from: 443, to: 443 }),
            peer: Peer::Cidr("0.0.0.0/0".parse().unwrap()),
        });
        let c = compile_all(&m).unwrap();
        assert!(conntrack_flushes(&b["host-a"], &c["host-a"])
            .iter()
            .any(|(_, f, _)| *f == "-s"));
    }
}
