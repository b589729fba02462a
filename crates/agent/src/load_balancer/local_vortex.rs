//! The Vortex of one load balancer realised on this host, for the listeners Vortex serves
//! (`vortex.rs`): the configuration it was given, why it does not serve the one it should,
//! and what its status file said.
//!
//! It runs while the load balancer has such listeners: a new configuration is written for
//! it to pick up (within 200 ms), and it is stopped once none is left. One that exits is
//! started again at once, unless it started less than [`RETRY`] ago; one that fails to
//! start is not tried again before [`RETRY`] either (unless its configuration changes).

use std::path::Path;
use std::time::Instant;

use yunhan_model::LoadBalancerSpec;

use super::haproxy::config_hash;
use super::local::{Counted, Failure, RETRY};
use super::process::{ProcError, Spawner, Vortex, VortexFiles};
use super::vortex;

pub(super) struct LocalVortex {
    id: String,
    netns: String,
    files: VortexFiles,
    pub(super) proc: Option<Vortex>,
    /// The configuration it was given (while it runs).
    served: Option<String>,
    /// When it last started.
    started: Instant,
    pub(super) failure: Option<Failure>,
    /// Its listeners, from its status file.
    pub(super) counted: Counted,
}

impl LocalVortex {
    pub(super) fn new(id: &str, netns: &str, files: VortexFiles) -> LocalVortex {
        LocalVortex {
            id: id.to_string(),
            netns: netns.to_string(),
            files,
            proc: None,
            served: None,
            started: Instant::now(),
            failure: None,
            counted: Counted::default(),
        }
    }

    /// Serves `cfg` (from [`vortex::render`]; None: stops): writes it for the running
    /// Vortex, or starts Vortex (`exe vortex …`) on it.
    pub(super) fn converge(&mut self, spawner: &Spawner, exe: &Path, cfg: Option<&str>) {
        self.reap();
        let Some(cfg) = cfg else {
            self.stop();
            self.failure = None;
            return;
        };
        let hash = config_hash(cfg);
        if self.proc.is_none() && self.failure.as_ref().is_some_and(|f| f.waits(&hash)) {
            return;
        }
        if let Err(e) = self.serve(spawner, exe, cfg) {
            self.failed(&hash, &e, Instant::now() + RETRY);
        }
    }

    fn serve(&mut self, spawner: &Spawner, exe: &Path, cfg: &str) -> Result<(), ProcError> {
        if self.served.as_deref() != Some(cfg) {
            self.files.install(cfg)?;
        }
        if self.proc.is_none() {
            let v = Vortex::start(spawner, exe, &self.netns, &self.files)?;
            tracing::info!(lb = %self.id, pid = v.pid(), "Vortex serving");
            (self.proc, self.started) = (Some(v), Instant::now());
        }
        (self.served, self.failure) = (Some(cfg.to_string()), None);
        Ok(())
    }

    /// Its failure: the load balancer's too, in `vortex: …` words.
    fn failed(&mut self, hash: &str, e: &ProcError, retry_at: Instant) {
        let f = Failure {
            message: format!("vortex: {e}"),
            hash: hash.to_string(),
            retry_at,
        };
        f.set(&mut self.failure, &self.id);
    }

    /// Forgets a Vortex that exited by itself: a failure, waited for until [`RETRY`] after
    /// it started.
    fn reap(&mut self) {
        let Some(e) = self.proc.as_mut().and_then(Vortex::exited) else {
            return;
        };
        tracing::warn!(lb = %self.id, why = %e, "Vortex exited");
        self.counted.retire();
        self.proc = None;
        let hash = self.served.take().map(|c| config_hash(&c));
        self.failed(&hash.unwrap_or_default(), &e, self.started + RETRY);
    }

    /// Stops it (its counters as last read are kept for the next one).
    pub(super) fn stop(&mut self) {
        self.counted.retire();
        if let Some(p) = self.proc.take() {
            p.stop();
        }
        self.served = None;
    }

    /// Reads its status file (if it runs; kept as it was when unreadable).
    pub(super) fn refresh(&mut self, spec: &LoadBalancerSpec) {
        if self.proc.is_none() {
            self.counted.listeners.clear();
            return;
        }
        let read = std::fs::read_to_string(&self.files.status)
            .map_err(|e| e.to_string())
            .and_then(|t| vortex::listener_status(spec, &t).map_err(|e| e.to_string()));
        match read {
            Ok(now) => self.counted.read(now),
            Err(e) => tracing::debug!(lb = %self.id, error = %e, "no Vortex status this time"),
        }
    }

    /// The hash reported as served: HAProxy's (`haproxy`) with the configuration it serves.
    pub(super) fn served_with(&self, haproxy: &str) -> String {
        match &self.served {
            None => haproxy.to_string(),
            Some(cfg) => config_hash(&format!("{haproxy}\n{cfg}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HAProxy's hash alone without a Vortex configuration, else one of both.
    #[test]
    fn served_is_both_configurations() {
        let mut v = LocalVortex::new("lb-1", "ynl-1", VortexFiles::new(Path::new("/d")));
        assert_eq!(v.served_with("abc"), "abc");
        v.served = Some("table_size = 65537\n".into());
        let both = v.served_with("abc");
        assert_eq!(both.len(), 12);
        assert_ne!(both, v.served_with("abd"));
        v.served = Some("table_size = 65537\n# other\n".into());
        assert_ne!(v.served_with("abc"), both);
    }

    /// With nothing to serve: nothing runs, nothing fails, nothing is reported.
    #[test]
    fn nothing_to_serve_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = LocalVortex::new("lb-1", "ynl-1", VortexFiles::new(dir.path()));
        v.failed(
            "h",
            &ProcError::VortexStart("x".into()),
            Instant::now() + RETRY,
        );
        assert!(v.failure.as_ref().is_some_and(|f| f.waits("h")));
        v.converge(&Spawner::default(), Path::new("/nonexistent"), None);
        assert!(v.failure.is_none() && v.proc.is_none());
        v.refresh(&LoadBalancerSpec::default());
        assert!(v.counted.listeners.is_empty());
    }

    /// A configuration that failed to start waits; another is tried at once (and fails
    /// here: there is no such namespace).
    #[test]
    fn a_failed_start_waits_for_its_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = LocalVortex::new("lb-1", "ynl-none", VortexFiles::new(dir.path()));
        let cfg = "table_size = 65537\n";
        v.failed(
            &config_hash(cfg),
            &ProcError::VortexStart("x".into()),
            Instant::now() + RETRY,
        );
        let exe = Path::new("/nonexistent");
        v.converge(&Spawner::default(), exe, Some(cfg));
        assert_eq!(
            v.failure.as_ref().unwrap().message,
            "vortex: did not start: x"
        );
        assert!(!dir.path().join("vortex.toml").exists());
        v.converge(&Spawner::default(), exe, Some("table_size = 65537\n\n"));
        let f = v.failure.as_ref().unwrap();
        // `ip` refuses the namespace (or cannot be run): either way, Vortex's failure.
        let tried = f.message.starts_with("vortex: ") && !f.message.ends_with(": x");
        assert!(tried, "{}", f.message);
        assert!(f.waits(&config_hash("table_size = 65537\n\n")));
        assert!(dir.path().join("vortex.toml").exists() && v.proc.is_none());
    }
}
