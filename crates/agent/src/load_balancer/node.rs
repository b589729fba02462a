//! What realises the load balancers of one host (blocking: `ip`, HAProxy, its stats
//! socket, Vortex, its status file): a pass converges each of them, the health probe only
//! reads their stats.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use yunhan_model::{Doc, LoadBalancer};
use yunhan_net::names::lb_netns;

use super::local::Local;
use super::namespace::{self, Port};
use super::process::{Files, Spawner};
use super::{haproxy, lock, remove_dir, vortex, LbError, Report, Unit};

pub(super) struct Node {
    /// `<state_dir>/lb`, one directory per load balancer.
    dir: PathBuf,
    /// The agent's namespace (`--netns`), where ports' host ends live.
    host_netns: Option<String>,
    /// Of namespace names (`<netns>-` or empty).
    prefix: String,
    spawner: Spawner,
    /// The agent's own binary, run as `<exe> vortex`.
    vortex_exe: PathBuf,
    pub(super) state: Mutex<State>,
}

#[derive(Default)]
pub(super) struct State {
    /// Stale namespaces and directories were removed (once, at start).
    swept: bool,
    /// By load balancer id: those realised here.
    pub(super) local: BTreeMap<String, Local>,
}

impl Node {
    pub(super) fn new(state_dir: &Path, netns: Option<String>) -> Node {
        Node {
            dir: state_dir.join("lb"),
            prefix: netns.as_ref().map(|n| format!("{n}-")).unwrap_or_default(),
            host_netns: netns,
            spawner: Spawner::default(),
            vortex_exe: std::env::current_exe().unwrap_or_else(|_| "yunhan".into()),
            state: Mutex::default(),
        }
    }

    /// Runs `exe vortex …` rather than the agent's own binary.
    #[cfg(test)]
    pub(super) fn with_vortex_exe(mut self, exe: PathBuf) -> Node {
        self.vortex_exe = exe;
        self
    }

    pub(super) fn netns(&self, id: &str) -> String {
        format!("{}{}", self.prefix, lb_netns(id))
    }

    /// Whether load balancers run here (true while a pass holds the state).
    pub(super) fn busy(&self) -> bool {
        self.state.try_lock().map_or(true, |s| !s.local.is_empty())
    }

    /// One pass over the load balancers (and replicas) this host should run: by key.
    pub(super) fn pass(&self, mine: &[Unit]) -> Vec<(String, Report)> {
        let mut st = lock(&self.state);
        let keys: Vec<String> = mine.iter().map(Unit::key).collect();
        let wanted: BTreeMap<&str, String> =
            (keys.iter()).map(|k| (k.as_str(), self.netns(k))).collect();
        let gone: Vec<String> = (st.local.keys())
            .filter(|id| !wanted.contains_key(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(l) = st.local.remove(&id) {
                l.remove();
            }
        }
        if !st.swept {
            st.swept = self.sweep(&wanted);
        }
        (mine.iter().zip(keys))
            .map(|(u, key)| {
                let l = (st.local.entry(key.clone())).or_insert_with(|| self.local(&key));
                (key, self.realise(l, u))
            })
            .collect()
    }

    /// Reads every running HAProxy's stats and Vortex's status (unless a pass is on): the
    /// reports of the load balancers where a member's health changed.
    pub(super) fn probe(&self) -> Vec<(String, Report)> {
        let Ok(mut st) = self.state.try_lock() else {
            return Vec::new();
        };
        (st.local.values_mut())
            .filter(|l| l.running())
            .filter_map(|l| l.refresh().then(|| (l.id.clone(), l.report())))
            .collect()
    }

    fn local(&self, id: &str) -> Local {
        Local::new(id, self.netns(id), Files::new(self.dir.join(id)))
    }

    /// Removes our namespaces and directories that no load balancer here wants (left by a
    /// former agent); true when it could look.
    fn sweep(&self, wanted: &BTreeMap<&str, String>) -> bool {
        let names = match namespace::list(&format!("{}ynl-", self.prefix)) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for stale load balancer namespaces");
                return false;
            }
        };
        for ns in names.iter().filter(|n| !wanted.values().any(|w| w == *n)) {
            tracing::info!(netns = %ns, "removing a stale load balancer namespace");
            if let Err(e) = namespace::delete(ns) {
                tracing::warn!(netns = %ns, error = %e, "cannot remove a stale namespace");
            }
        }
        for dir in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if !wanted.contains_key(dir.file_name().to_string_lossy().as_ref()) {
                remove_dir(&dir.path());
            }
        }
        true
    }

    fn realise(&self, l: &mut Local, u: &Unit) -> Report {
        let lb = &u.lb;
        l.set_spec(&lb.spec);
        match haproxy::render(&lb.spec, &lb.status.address, &l.files.socket) {
            Err(e) => l.failed("", e.to_string()),
            Ok(cfg) => {
                let pems = pems(lb, &l.files.socket);
                let all: String = std::iter::once(cfg.as_str())
                    .chain(pems.iter().map(|(_, p)| p.as_str()))
                    .collect();
                let hash = haproxy::config_hash(&all);
                let installed = l.files.install_pems(&pems).map_err(LbError::from);
                if let Err(e) = installed.and_then(|()| self.converge(l, u, &cfg, &hash)) {
                    // Only what HAProxy refused waits before it is tried again.
                    let refused = matches!(e, LbError::Haproxy(_));
                    l.failed(if refused { &hash } else { "" }, e.to_string());
                }
            }
        }
        l.refresh();
        l.report()
    }

    /// Namespace and port, then HAProxy serving `cfg` (started, restarted or reloaded),
    /// then Vortex serving the listeners it serves (started or stopped; its failure is its
    /// own).
    fn converge(&self, l: &mut Local, u: &Unit, cfg: &str, hash: &str) -> Result<(), LbError> {
        let lb = &u.lb;
        if namespace::ensure(&self.port(u, &l.netns))? && l.running() {
            tracing::warn!(lb = %l.id, "its namespace was gone; restarting HAProxy and Vortex");
            l.stop();
        }
        let haproxy = self.haproxy(l, cfg, hash);
        let vortex_cfg = vortex::render(&lb.spec, &lb.status.address);
        (l.vortex).converge(&self.spawner, &self.vortex_exe, vortex_cfg.as_deref());
        haproxy
    }

    /// HAProxy serving `cfg`, of hash `hash` (with its PEM files).
    fn haproxy(&self, l: &mut Local, cfg: &str, hash: &str) -> Result<(), LbError> {
        l.reap();
        if l.served.as_deref() == Some(hash) {
            l.serving(hash);
            return Ok(());
        }
        if l.waiting(hash) {
            return Ok(());
        }
        l.files.install(cfg)?;
        l.load(&self.spawner)?;
        l.serving(hash);
        Ok(())
    }

    /// The unit's port: the load balancer's own, or its replica's with the virtual
    /// address on the namespace's loopback.
    fn port<'a>(&'a self, u: &'a Unit, netns: &'a str) -> Port<'a> {
        let s = &u.lb.status;
        let replica = u.replica.and_then(|i| s.replicas.get(i));
        let (device, mac, address) = match replica {
            Some(r) => (&r.device, &r.mac, &r.address),
            None => (&s.device, &s.mac, &s.address),
        };
        Port {
            netns,
            host_netns: self.host_netns.as_deref(),
            device,
            mac,
            address,
            prefix_len: s.prefix_len,
            gateway: &s.gateway,
            anycast: replica.map(|_| s.address.as_str()),
        }
    }
}

/// The PEM file of each HTTPS listener (its certificate, then the key the reconciler put
/// in the listener from the secret store): (path, content).
fn pems(lb: &Doc<LoadBalancer>, socket: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    (lb.spec.listeners.iter())
        .filter_map(|l| {
            let (cert, key) = (l.certificate.as_deref()?, l.key.as_deref()?);
            Some((
                haproxy::pem_path(socket, &l.name),
                format!("{}\n{}\n", cert.trim(), key.trim()),
            ))
        })
        .collect()
}
