//! The load balancers of this host (issue #16; model: `model/src/load_balancer.rs`).
//!
//! A load balancer is realised on the host the controller names in `status.host`, once the
//! API has given it a port (`status.address`, `device`, `mac`, …):
//!
//! 1. a namespace `<prefix>ynl-<hash of its id>` (`<prefix>` = `<netns>-` under `--netns`,
//!    like router namespaces) holding `eth0`, the far end of a veth whose host end is the
//!    port device (`namespace.rs`); the network agent plugs that into the VPC bridge like a
//!    VM's tap;
//! 2. HAProxy in that namespace, with a configuration rendered from the document
//!    (`haproxy.rs`) in `<state_dir>/lb/<id>/`, reloaded without dropping connections when
//!    it changes (`process.rs`);
//! 3. its status: `Active` with the configuration's hash in `served` and each listener's
//!    counters and members' health from HAProxy's stats socket, or `Failed` with HAProxy's
//!    own words in `message`. One failing load balancer never holds back the others.
//!
//! A load balancer that is gone, being deleted or placed elsewhere is stopped and its
//! namespace deleted; at start, namespaces of ours that no load balancer here wants go.
//!
//! HAProxy runs as a child of the agent and dies with it (`PR_SET_PDEATHSIG`): unlike VMs,
//! load balancers do not outlive their agent, and an agent restart restarts them (a short
//! outage; open connections are cut). Making them outlive the agent is future work.

mod haproxy;
mod namespace;
mod process;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use yunhan_model::{
    Doc, LbPhase, ListenerStatus, LoadBalancer, LoadBalancerSpec, LoadBalancerStatus,
};
use yunhan_net::names::lb_netns;
use yunhan_store::objects::{object_prefix, ObjectError, Objects};
use yunhan_store::reconcile::Reconciler;

use haproxy::{RenderError, StatError};
use namespace::{NsError, Port};
use process::{Files, Haproxy, ProcError, Spawner};

/// A pass at least this often while load balancers run here (their status), else
/// [`IDLE_RESYNC`].
const ACTIVE_RESYNC: Duration = Duration::from_secs(2);
const IDLE_RESYNC: Duration = Duration::from_secs(10);
/// A configuration HAProxy failed to load is tried again after this long.
const RETRY: Duration = Duration::from_secs(10);
/// Counters alone are written at most this often (every status write triggers a pass).
const COUNTERS_EVERY: Duration = Duration::from_millis(1500);

#[derive(Debug, thiserror::Error)]
enum LbError {
    #[error("namespace: {0}")]
    Namespace(#[from] NsError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error(transparent)]
    Haproxy(#[from] ProcError),
    #[error(transparent)]
    Stats(#[from] StatError),
}

/// The load-balancer reconciler of one host.
pub struct LbAgent {
    host_id: String,
    node: Arc<Node>,
    /// When each load balancer's status was last written (see [`COUNTERS_EVERY`]).
    written: Mutex<HashMap<String, Instant>>,
}

impl LbAgent {
    /// `netns`: the agent's `--netns` (the port's host end lives there; names get its prefix).
    pub fn new(host_id: String, state_dir: &Path, netns: Option<String>) -> LbAgent {
        let node = Node {
            dir: state_dir.join("lb"),
            prefix: netns.as_ref().map(|n| format!("{n}-")).unwrap_or_default(),
            host_netns: netns,
            spawner: Spawner::default(),
            state: Mutex::default(),
        };
        LbAgent {
            host_id,
            node: Arc::new(node),
            written: Mutex::default(),
        }
    }

    fn wants(&self, lb: &Doc<LoadBalancer>) -> bool {
        let s = &lb.status;
        s.host == self.host_id
            && !s.address.is_empty()
            && !s.device.is_empty()
            && lb.metadata.deleting.is_none()
    }

    /// Writes `report` into the load balancer's status when it says something new.
    async fn write(&self, objects: &Objects, id: &str, report: &Report) -> Result<(), ObjectError> {
        let counters_due = lock(&self.written)
            .get(id)
            .is_none_or(|t| t.elapsed() >= COUNTERS_EVERY);
        let mut wrote = false;
        objects
            .modify::<LoadBalancer>(id, |doc| {
                if doc.status.host != self.host_id {
                    return false; // moved meanwhile: no longer ours to report
                }
                let new = report.status(&doc.status);
                wrote = if counters_due {
                    new != doc.status
                } else {
                    without_counters(&new) != without_counters(&doc.status)
                };
                if wrote {
                    doc.status = new;
                }
                wrote
            })
            .await?;
        if wrote {
            lock(&self.written).insert(id.to_string(), Instant::now());
        }
        Ok(())
    }
}

fn without_counters(s: &LoadBalancerStatus) -> LoadBalancerStatus {
    let mut s = s.clone();
    for l in &mut s.listeners {
        (l.connections, l.bytes_in, l.bytes_out) = (0, 0, 0);
    }
    s
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl Reconciler for LbAgent {
    fn name(&self) -> &'static str {
        "agent-load-balancer"
    }
    fn watches(&self) -> Vec<String> {
        vec![object_prefix::<LoadBalancer>(None)]
    }
    fn resync(&self) -> Duration {
        match self.node.state.try_lock() {
            Ok(s) if s.local.is_empty() => IDLE_RESYNC,
            _ => ACTIVE_RESYNC,
        }
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let all = objects.list_all::<LoadBalancer>(None).await?;
        let mine: Vec<_> = all.into_iter().filter(|lb| self.wants(lb)).collect();
        lock(&self.written).retain(|id, _| mine.iter().any(|lb| lb.metadata.id == *id));
        let node = self.node.clone();
        let reports = match tokio::task::spawn_blocking(move || node.pass(&mine)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "load balancer pass failed");
                return Ok(());
            }
        };
        let mut first_error = None;
        for (id, report) in reports {
            if let Err(e) = self.write(objects, &id, &report).await {
                tracing::warn!(lb = %id, error = %e, "cannot write the load balancer's status");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// What a pass found of one load balancer.
#[derive(Debug, Clone, Default, PartialEq)]
struct Report {
    /// The hash of the configuration HAProxy serves.
    served: Option<String>,
    /// Why it is not serving what it should.
    failure: Option<String>,
    listeners: Vec<ListenerStatus>,
}

impl Report {
    fn status(&self, old: &LoadBalancerStatus) -> LoadBalancerStatus {
        let mut s = old.clone();
        s.phase = match (&self.failure, &self.served) {
            (Some(_), _) => LbPhase::Failed,
            (None, Some(_)) => LbPhase::Active,
            (None, None) => LbPhase::Provisioning,
        };
        s.message = self.failure.clone().unwrap_or_default();
        s.served = self.served.clone().unwrap_or_default();
        s.listeners = self.listeners.clone();
        s
    }
}

/// Realises the load balancers of one host (blocking: `ip`, HAProxy, its stats socket).
struct Node {
    /// `<state_dir>/lb`, one directory per load balancer.
    dir: PathBuf,
    host_netns: Option<String>,
    /// Of namespace names (`<netns>-` or empty).
    prefix: String,
    spawner: Spawner,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Stale namespaces and directories were removed (once, at start).
    swept: bool,
    /// By load balancer id: those realised here.
    local: BTreeMap<String, Local>,
}

/// One load balancer on this host.
struct Local {
    id: String,
    netns: String,
    files: Files,
    proc: Option<Haproxy>,
    served: Option<String>,
    failure: Option<Failure>,
    /// From the stats socket (the last answer, kept while it does not answer).
    listeners: Vec<ListenerStatus>,
}

struct Failure {
    message: String,
    /// Of the configuration that failed ("" if none could be rendered).
    hash: String,
    retry_at: Instant,
}

impl Node {
    fn netns(&self, id: &str) -> String {
        format!("{}{}", self.prefix, lb_netns(id))
    }

    /// One pass over the load balancers this host should run.
    fn pass(&self, mine: &[Doc<LoadBalancer>]) -> Vec<(String, Report)> {
        let mut st = lock(&self.state);
        let wanted: BTreeMap<&str, String> = (mine.iter())
            .map(|lb| (lb.metadata.id.as_str(), self.netns(&lb.metadata.id)))
            .collect();
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
        (mine.iter())
            .map(|lb| {
                let id = &lb.metadata.id;
                let l = (st.local.entry(id.clone())).or_insert_with(|| self.local(id));
                (id.clone(), self.realise(l, lb))
            })
            .collect()
    }

    fn local(&self, id: &str) -> Local {
        Local {
            id: id.to_string(),
            netns: self.netns(id),
            files: Files::new(self.dir.join(id)),
            proc: None,
            served: None,
            failure: None,
            listeners: Vec::new(),
        }
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

    fn realise(&self, l: &mut Local, lb: &Doc<LoadBalancer>) -> Report {
        match haproxy::render(&lb.spec, &lb.status.address, &l.files.socket) {
            Err(e) => l.failed("", e.into()),
            Ok(cfg) => {
                let hash = haproxy::config_hash(&cfg);
                if let Err(e) = self.converge(l, lb, &cfg, &hash) {
                    l.failed(&hash, e);
                }
            }
        }
        l.refresh(&lb.spec);
        l.report()
    }

    /// Namespace and port, then HAProxy serving `cfg` (started, restarted or reloaded).
    fn converge(
        &self,
        l: &mut Local,
        lb: &Doc<LoadBalancer>,
        cfg: &str,
        hash: &str,
    ) -> Result<(), LbError> {
        if namespace::ensure(&self.port(lb, &l.netns))? && l.proc.is_some() {
            tracing::warn!(lb = %l.id, "its namespace was gone; restarting HAProxy");
            l.stop();
        }
        l.reap();
        if l.served.as_deref() == Some(hash) {
            l.failure = None;
            return Ok(());
        }
        let waiting = |f: &Failure| f.hash == hash && Instant::now() < f.retry_at;
        if l.failure.as_ref().is_some_and(waiting) {
            return Ok(());
        }
        l.files.install(cfg)?;
        match l.proc.as_mut() {
            Some(p) => p.reload()?,
            None => l.proc = Some(Haproxy::start(&self.spawner, &l.netns, &l.files)?),
        }
        tracing::info!(lb = %l.id, served = hash, pid = l.proc.as_ref().map(Haproxy::pid), "load balancer serving");
        (l.served, l.failure) = (Some(hash.to_string()), None);
        Ok(())
    }

    fn port<'a>(&'a self, lb: &'a Doc<LoadBalancer>, netns: &'a str) -> Port<'a> {
        let s = &lb.status;
        Port {
            netns,
            host_netns: self.host_netns.as_deref(),
            device: &s.device,
            mac: &s.mac,
            address: &s.address,
            prefix_len: s.prefix_len,
            gateway: &s.gateway,
        }
    }
}

impl Local {
    fn failed(&mut self, hash: &str, e: LbError) {
        let message = e.to_string();
        if self.failure.as_ref().map(|f| &f.message) != Some(&message) {
            tracing::warn!(lb = %self.id, error = %message, "load balancer failed");
        }
        self.failure = Some(Failure {
            message,
            hash: hash.to_string(),
            retry_at: Instant::now() + RETRY,
        });
    }

    /// Forgets a HAProxy that exited by itself (it is started again at once).
    fn reap(&mut self) {
        if let Some(e) = self.proc.as_mut().and_then(Haproxy::exited) {
            tracing::warn!(lb = %self.id, error = %e, "HAProxy exited; starting it again");
            (self.proc, self.served) = (None, None);
        }
    }

    fn stop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.stop();
        }
        self.served = None;
    }

    /// Stops it and removes its namespace (with the port) and directory.
    fn remove(mut self) {
        self.stop();
        if let Err(e) = namespace::delete(&self.netns) {
            tracing::warn!(lb = %self.id, error = %e, "cannot delete the load balancer's namespace");
        }
        remove_dir(&self.files.dir);
        tracing::info!(lb = %self.id, "load balancer removed from this host");
    }

    /// Reads the listeners' counters and members' health (if HAProxy runs).
    fn refresh(&mut self, spec: &LoadBalancerSpec) {
        if self.proc.is_none() {
            self.listeners.clear();
            return;
        }
        let rows = process::show_stat(&self.files.socket)
            .map_err(LbError::from)
            .and_then(|text| Ok(haproxy::parse_stat(&text)?));
        match rows {
            Ok(rows) => self.listeners = haproxy::listener_status(spec, &rows),
            Err(e) => tracing::debug!(lb = %self.id, error = %e, "no stats this pass"),
        }
    }

    fn report(&self) -> Report {
        Report {
            served: self.served.clone(),
            failure: self.failure.as_ref().map(|f| f.message.clone()),
            listeners: self.listeners.clone(),
        }
    }
}

fn remove_dir(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a load balancer's directory")
        }
        _ => {}
    }
}
