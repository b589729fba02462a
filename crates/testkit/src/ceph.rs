//! A real development Ceph cluster for end-to-end tests (`scripts/ceph-dev
//! run`: 1 mon, 1 mgr, 3 bluestore OSDs on loopback, ~15 s to HEALTH_OK).
//!
//! The cluster cannot outlive the test: the script runs as a child spawned
//! with PR_SET_PDEATHSIG ([`crate::spawn_owned`]) and starts its daemons the
//! same way, and the guard's Drop (also run while unwinding from a panic)
//! asks the script to tear down (stop by pid file, remove the dir).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `scripts/ceph-dev run` cluster, torn down on drop.
pub struct DevCeph {
    child: Child,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl DevCeph {
    /// Starts a cluster and waits for HEALTH_OK (the script's own deadline).
    pub fn start() -> DevCeph {
        for (bin, pkg) in [("ceph-mon", "ceph-mon"), ("rbd", "ceph-common")] {
            crate::require_binary(bin, pkg).unwrap();
        }
        let script = crate::workspace_root().join("scripts/ceph-dev");
        let dir = tempfile::Builder::new()
            .prefix("yunhan-ceph-")
            .tempdir()
            .unwrap();
        let cluster_dir = dir.path().join("cluster");
        let mut cmd = Command::new(script);
        cmd.arg("run")
            .arg(&cluster_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let t = Instant::now();
        let mut child = crate::spawn_owned(cmd).expect("spawn scripts/ceph-dev");
        // The script has its own deadline; it prints the conf path when healthy
        // and exits (closing stdout) when it gives up.
        let stdout = child.stdout.take().unwrap();
        let conf = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.ends_with("ceph.conf"))
            .map(PathBuf::from);
        let Some(conf) = conf else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scripts/ceph-dev run did not reach HEALTH_OK (its log is above)");
        };
        eprintln!(
            "ceph-dev cluster healthy in {:.1?}: {}",
            t.elapsed(),
            conf.display()
        );
        DevCeph {
            child,
            conf,
            _dir: dir,
        }
    }

    /// The cluster's ceph.conf (it names the admin keyring).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// Stops OSD `id` (`scripts/ceph-dev osd-stop`): returns once the monitor
    /// has marked it down.
    pub fn osd_stop(&self, id: u32) {
        self.script("osd-stop", id);
    }

    /// Starts OSD `id` again (owned by the running script, so it still dies
    /// with the test): returns once the monitor has marked it up.
    pub fn osd_start(&self, id: u32) {
        self.script("osd-start", id);
    }

    fn script(&self, verb: &str, id: u32) {
        let dir = self.conf.parent().expect("the cluster dir");
        let st = Command::new(crate::workspace_root().join("scripts/ceph-dev"))
            .arg(verb)
            .arg(dir)
            .arg(id.to_string())
            .status()
            .expect("run scripts/ceph-dev");
        assert!(st.success(), "scripts/ceph-dev {verb} {id} failed");
    }
}

impl Drop for DevCeph {
    fn drop(&mut self) {
        // SIGTERM: the script stops its daemons by pid file and removes the dir.
        let pid = self.child.id() as i32;
        #[allow(unsafe_code)]
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let done = crate::wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !done || Instant::now() > deadline {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
