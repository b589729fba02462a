//! One load balancer realised on this host: its HAProxy, the configuration it serves, why
//! it does not serve the one it should, and what its stats socket said; its Vortex
//! (`local_vortex.rs`) for the listeners Vortex serves.
//!
//! Counters survive HAProxy's reloads and restarts: a new worker counts from zero, so the
//! totals read last from the former one are kept ([`Counted`]) and added to the new
//! one's. Whatever the former worker still serves after a reload is not counted. Vortex's
//! survive its restarts the same way; a listener that moves from one to the other counts
//! from what the other counted of it before (usually nothing).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use yunhan_model::{ListenerStatus, LoadBalancerSpec, MemberHealth};

use super::haproxy;
use super::local_vortex::LocalVortex;
use super::namespace;
use super::process::{self, Files, Haproxy, ProcError, Spawner};
use super::vortex;
use super::Report;

/// A configuration HAProxy failed to load (or Vortex failed to start with) is tried again
/// after this long.
pub(super) const RETRY: Duration = Duration::from_secs(10);

/// A listener's connections, bytes in and bytes out.
type Counters = (u64, u64, u64);

pub(super) struct Local {
    pub(super) id: String,
    pub(super) netns: String,
    pub(super) files: Files,
    pub(super) proc: Option<Haproxy>,
    /// The hash of the configuration HAProxy serves (its file and PEM files).
    pub(super) served: Option<String>,
    failure: Option<Failure>,
    pub(super) vortex: LocalVortex,
    /// The document's, as of the last pass (what the health probe reads the stats with).
    spec: LoadBalancerSpec,
    /// HAProxy's listeners, from its stats socket.
    haproxy: Counted,
}

/// Why an engine does not serve what it should.
pub(super) struct Failure {
    pub(super) message: String,
    /// Of the configuration that failed to load ("" for other failures: no waiting).
    pub(super) hash: String,
    pub(super) retry_at: Instant,
}

impl Failure {
    /// Whether configuration `hash` failed a moment ago (it is not tried again yet).
    pub(super) fn waits(&self, hash: &str) -> bool {
        self.hash == hash && Instant::now() < self.retry_at
    }

    /// Puts it in `slot`, logged unless it says what the one there said.
    pub(super) fn set(self, slot: &mut Option<Failure>, id: &str) {
        if slot.as_ref().map(|f| &f.message) != Some(&self.message) {
            tracing::warn!(lb = %id, error = %self.message, "load balancer failed");
        }
        *slot = Some(self);
    }
}

/// One engine's listeners as last read (kept while it does not answer), counting on from
/// the totals of its former workers or runs.
#[derive(Default)]
pub(super) struct Counted {
    pub(super) listeners: Vec<ListenerStatus>,
    /// By listener: the totals of the workers (runs) a reload or restart retired.
    retired: BTreeMap<String, Counters>,
}

impl Counted {
    /// Every listener's totals as last read.
    fn totals(&self) -> BTreeMap<String, Counters> {
        let mut t = self.retired.clone();
        for l in &self.listeners {
            t.insert(l.name.clone(), (l.connections, l.bytes_in, l.bytes_out));
        }
        t
    }

    /// The engine counts from zero again from now on.
    pub(super) fn retire(&mut self) {
        self.retired = self.totals();
    }

    /// What the engine counts now, on top of what it counted before.
    pub(super) fn read(&mut self, mut now: Vec<ListenerStatus>) {
        for l in &mut now {
            let (c, i, o) = self.retired.get(&l.name).copied().unwrap_or_default();
            (l.connections, l.bytes_in, l.bytes_out) =
                (l.connections + c, l.bytes_in + i, l.bytes_out + o);
        }
        self.listeners = now;
    }
}

impl Local {
    pub(super) fn new(id: &str, netns: String, files: Files) -> Local {
        Local {
            id: id.to_string(),
            vortex: LocalVortex::new(id, &netns, files.vortex.clone()),
            netns,
            files,
            proc: None,
            served: None,
            failure: None,
            spec: LoadBalancerSpec::default(),
            haproxy: Counted::default(),
        }
    }

    pub(super) fn set_spec(&mut self, spec: &LoadBalancerSpec) {
        if self.spec != *spec {
            self.spec = spec.clone();
        }
    }

    /// Whether HAProxy or Vortex runs.
    pub(super) fn running(&self) -> bool {
        self.proc.is_some() || self.vortex.proc.is_some()
    }

    pub(super) fn failed(&mut self, hash: &str, message: String) {
        let f = Failure {
            message,
            hash: hash.to_string(),
            retry_at: Instant::now() + RETRY,
        };
        f.set(&mut self.failure, &self.id);
    }

    /// Whether configuration `hash` failed a moment ago (it is not tried again yet).
    pub(super) fn waiting(&self, hash: &str) -> bool {
        self.failure.as_ref().is_some_and(|f| f.waits(hash))
    }

    pub(super) fn serving(&mut self, hash: &str) {
        if self.served.as_deref() != Some(hash) {
            let pid = self.proc.as_ref().map(Haproxy::pid);
            tracing::info!(lb = %self.id, served = hash, ?pid, "load balancer serving");
        }
        (self.served, self.failure) = (Some(hash.to_string()), None);
    }

    /// Loads the installed configuration: a reload of the running HAProxy, else a start.
    pub(super) fn load(&mut self, spawner: &Spawner) -> Result<(), ProcError> {
        if self.proc.is_none() {
            self.proc = Some(Haproxy::start(spawner, &self.netns, &self.files)?);
            return Ok(());
        }
        self.refresh_haproxy();
        if let Some(p) = self.proc.as_mut() {
            p.reload()?;
        }
        self.haproxy.retire();
        Ok(())
    }

    /// Forgets a HAProxy that exited by itself (it is started again at once).
    pub(super) fn reap(&mut self) {
        if let Some(e) = self.proc.as_mut().and_then(Haproxy::exited) {
            tracing::warn!(lb = %self.id, why = %e, "HAProxy exited; starting it again");
            self.haproxy.retire();
            (self.proc, self.served) = (None, None);
        }
    }

    /// Stops HAProxy and Vortex.
    pub(super) fn stop(&mut self) {
        self.refresh_haproxy();
        self.haproxy.retire();
        if let Some(p) = self.proc.take() {
            p.stop();
        }
        self.served = None;
        self.vortex.refresh(&self.spec);
        self.vortex.stop();
    }

    /// Stops it and removes its namespace (with the port) and directory.
    pub(super) fn remove(mut self) {
        self.stop();
        if let Err(e) = namespace::delete(&self.netns) {
            tracing::warn!(lb = %self.id, error = %e, "cannot delete the load balancer's namespace");
        }
        super::remove_dir(&self.files.dir);
        tracing::info!(lb = %self.id, "load balancer removed from this host");
    }

    /// Reads the listeners' counters and members' health from HAProxy and Vortex (those
    /// that run); whether a member's health changed.
    pub(super) fn refresh(&mut self) -> bool {
        let before = health(&self.listeners());
        self.refresh_haproxy();
        self.vortex.refresh(&self.spec);
        health(&self.listeners()) != before
    }

    /// Reads HAProxy's stats socket (if HAProxy runs).
    fn refresh_haproxy(&mut self) {
        if self.proc.is_none() {
            self.haproxy.listeners.clear();
            return;
        }
        let rows = match process::show_stat(&self.files.socket) {
            Ok(text) => haproxy::parse_stat(&text).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match rows {
            Ok(rows) => (self.haproxy).read(haproxy::listener_status(&self.spec, &rows)),
            Err(e) => tracing::debug!(lb = %self.id, error = %e, "no stats this time"),
        }
    }

    /// Every listener's status as last read, in the document's order, from the engine
    /// that serves it.
    fn listeners(&self) -> Vec<ListenerStatus> {
        (self.spec.listeners.iter())
            .filter_map(|l| {
                let engine = match vortex::serves(l) {
                    true => &self.vortex.counted,
                    false => &self.haproxy,
                };
                engine.listeners.iter().find(|s| s.name == l.name).cloned()
            })
            .collect()
    }

    /// `served` is the hash of HAProxy's configuration, with Vortex's when it has one;
    /// `failure` HAProxy's, then Vortex's.
    pub(super) fn report(&self) -> Report {
        let failures: Vec<&str> = [&self.failure, &self.vortex.failure]
            .into_iter()
            .flatten()
            .map(|f| f.message.as_str())
            .collect();
        Report {
            served: self.served.as_deref().map(|h| self.vortex.served_with(h)),
            failure: (!failures.is_empty()).then(|| failures.join("; ")),
            listeners: self.listeners(),
        }
    }
}

fn health(listeners: &[ListenerStatus]) -> Vec<Vec<MemberHealth>> {
    (listeners.iter())
        .map(|l| l.members.iter().map(|m| m.health).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunhan_model::{LbAlgorithm, LbProtocol, Listener};

    fn status(name: &str, engine: &str, connections: u64) -> ListenerStatus {
        ListenerStatus {
            name: name.into(),
            engine: engine.into(),
            connections,
            ..Default::default()
        }
    }

    /// Counters go on from the retired ones, whatever is read again.
    #[test]
    fn counters_go_on_across_runs() {
        let mut c = Counted::default();
        c.read(vec![status("a", "haproxy", 5)]);
        c.retire();
        c.retire();
        c.read(vec![status("a", "haproxy", 2), status("b", "haproxy", 1)]);
        let n: Vec<_> = c.listeners.iter().map(|l| l.connections).collect();
        assert_eq!(n, [7, 1]);
        c.read(vec![status("a", "haproxy", 3)]);
        assert_eq!(c.listeners[0].connections, 8);
    }

    /// Listeners in the document's order, each from the engine serving it; both engines'
    /// failures.
    #[test]
    fn reports_both_engines() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Local::new("lb-1", "ynl-1".into(), Files::new(dir.path().into()));
        let listener = |name: &str, algorithm| Listener {
            name: name.into(),
            protocol: LbProtocol::Tcp,
            port: 1,
            algorithm,
            ..Default::default()
        };
        l.set_spec(&LoadBalancerSpec {
            listeners: vec![
                listener("a", LbAlgorithm::LeastConnections),
                listener("b", LbAlgorithm::RoundRobin),
                listener("c", LbAlgorithm::LeastConnections),
            ],
            ..Default::default()
        });
        // A stale HAProxy row for `b` (before it moved to Vortex) is not taken.
        (l.haproxy).read(["c", "b", "a"].map(|n| status(n, "haproxy", 1)).to_vec());
        (l.vortex.counted).read(vec![status("b", "vortex-tc", 2)]);
        l.serving("abc");
        l.vortex.failure = Some(Failure {
            message: "vortex: did not start".into(),
            hash: String::new(),
            retry_at: Instant::now(),
        });
        let r = l.report();
        let got: Vec<_> = (r.listeners.iter())
            .map(|l| (l.name.as_str(), l.engine.as_str()))
            .collect();
        assert_eq!(
            got,
            [("a", "haproxy"), ("b", "vortex-tc"), ("c", "haproxy")]
        );
        assert_eq!(r.served.as_deref(), Some("abc"));
        assert_eq!(r.failure.as_deref(), Some("vortex: did not start"));
        l.failed("h", "HAProxy refused the configuration: x".into());
        assert!(l.waiting("h") && !l.waiting("g"));
        assert_eq!(
            l.report().failure.as_deref(),
            Some("HAProxy refused the configuration: x; vortex: did not start")
        );
    }
}
