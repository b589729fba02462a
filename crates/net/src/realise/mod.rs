//! The Linux realiser: makes a network namespace match a [`HostPlan`].
//!
//! Observe → diff → act. It reads the current state (`ip -j -d link`, `bridge -j fdb`,
//! `ip -j neigh`, `nft list table`), computes the commands that close the gap and runs them
//! in a few batches (`ip -batch`, `bridge -batch`, one atomic `nft -f`). Applying the same
//! plan twice runs nothing the second time ([`ApplyReport::changes`] is 0); a deleted link,
//! FDB entry, neighbour or nft rule is put back by the next apply. Everything it owns is
//! recognisable by name (`ynb-`, `ynx-`, `yng…`, the router namespaces, table
//! `inet yunhan`) or tag (routes of protocol [`ANYCAST_ROUTE_PROTO`] in a router
//! namespace), and what is no longer in the plan is removed.
//!
//! When security rules change, conntrack entries they may have allowed are deleted
//! (`conntrack -D -w <zone> -d <port ip>`), so removing a rule cuts open connections: the
//! next packet of such a flow is judged as new (TCP loose pickup) and the rules drop it.
//!
//! The seam is [`Runner`]: [`SystemRunner`] runs the real tools; `RecordingRunner` (with
//! `cfg(test)` or the `test-util` feature) records commands and answers observations from
//! canned output, for unit tests.
//!
//! [`Realiser::apply`] runs the stages in order, one module each:
//! - [`runner`]: the commands and the runners;
//! - [`observe`]: reading the current state (links, addresses, routes, rules, nft, VIPs);
//! - [`links`]: the host namespace: router namespaces, bridges, VXLAN, veths, ports, FDB
//!   and neighbours;
//! - [`router`]: each VPC's router namespace (interfaces, legs, neighbours);
//! - [`route_table`]: the route tables in it (a policy-routing table and `iif` rules each);
//! - [`anycast`]: the anycast addresses' equal-cost routes in it (`proto 121`);
//! - [`security_group`]: the security-group nft tables;
//! - [`conntrack`]: which flows to forget when rules or translations change;
//! - [`external`]: external networks on the host and each router's ways out (uplink,
//!   transit, the NAT table for elastic IPs and NAT gateways);
//! - [`shaping`]: HTB classes for capped elastic IPs.
use crate::plan::{HostPlan, VpcPlan};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

mod anycast;
mod conntrack;
mod external;
pub mod garp;
mod links;
mod observe;
mod route_table;
mod router;
mod runner;
mod security_group;
mod shaping;

pub use anycast::ANYCAST_ROUTE_PROTO;
pub use conntrack::{conntrack_flushes, nat_changes};
pub use observe::VIP_FRESH_SECS;
#[cfg(any(test, feature = "test-util"))]
pub use runner::RecordingRunner;
pub use runner::{Cmd, Runner, SystemRunner};

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
    /// External addresses this host started answering for lately: (device, address) →
    /// when. They are announced again on every apply for [`garp::ANNOUNCE_FOR`].
    announcing: HashMap<(String, String), std::time::Instant>,
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

/// Devices the realiser owns in the host namespace (it deletes unplanned ones).
fn owned(dev: &str) -> bool {
    crate::names::OWNED_PREFIXES
        .iter()
        .any(|p| dev.starts_with(p))
        || dev.starts_with(crate::names::UPLINK_PREFIX)
}

/// Hex SHA-256 of a rendered nft text (to recognise the listing that followed it).
fn text_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}

impl<R: Runner> Realiser<R> {
    pub fn new(runner: R, target: Target) -> Self {
        Realiser {
            runner,
            target,
            last: None,
            last_nft_listing: None,
            router_nft_listing: HashMap::new(),
            announcing: HashMap::new(),
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

    /// Adds the wanted policy rules and queues the deletion of ours (`is_ours(pref, table)`)
    /// that are not wanted, into `b`.
    fn sync_rules(
        &self,
        ns: Option<&str>,
        b: &mut Batch,
        want: &BTreeSet<(u64, String, String)>,
        is_ours: impl Fn(u64, &str) -> bool,
    ) -> Result<(), RealiseError> {
        let have = self.rules(ns)?;
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
        report.changes += self.bridge_netfilter()?;
        let namespaces = self.add_router_namespaces(plan)?;
        report.changes += namespaces.added;
        self.apply_links(plan, &mut report)?;
        report.changes += self.delete_stale_router_namespaces(&namespaces)?;
        for v in &plan.vpcs {
            let prev = previous.as_ref().filter(|p| p.vpc(v.vni).is_some());
            report.changes += self.apply_router(plan, v, prev)?;
        }
        report.changes += self.apply_security_groups(plan)?;
        if let Some(prev) = &previous {
            report.conntrack_flushes += self.flush_conntrack(prev, plan)?;
        }
        // External networks (policy routes, proxy ARP) and inbound shaping on the uplinks:
        // last, so a missing external device cannot hold back the rest of the plan.
        report.changes += self.apply_external(plan, previous.as_ref())?;
        report.changes += self.shape_uplinks(plan)?;
        self.save_last(plan)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
