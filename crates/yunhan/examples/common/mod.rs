//! Shared by the benchmark examples: a release `yunhan` server in a temp HOME.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Server {
    child: Child,
    pub endpoint: String,
    pub token: String,
    _home: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // VMs outlive the agent by design: stop the ones this run started.
        yunhan_testkit::kill_vms_under(self._home.path());
    }
}

/// The `yunhan` binary next to this example's target directory.
pub fn binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("yunhan")
}

/// Starts `yunhan <args>` (`up` or `server …`) and waits for its client config.
pub fn start(args: &[&str]) -> Server {
    let home = tempfile::tempdir().unwrap();
    let port = yunhan_testkit::free_port();
    let log = home.path().join("server.log");
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--rate-limit",
            "1000000",
            "--rate-burst",
            "1000000",
        ])
        .env("HOME", home.path())
        .env("YUNHAN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if args[0] == "up" {
        cmd.args(["--data-dir", home.path().join("data").to_str().unwrap()]);
    } else {
        cmd.args(["--image-dir", home.path().join("images").to_str().unwrap()]);
    }
    let child = yunhan_testkit::spawn_owned(cmd).expect("spawn yunhan");
    let cfg = home.path().join(".config/yunhan/config.toml");
    assert!(
        yunhan_testkit::wait_until(Duration::from_secs(60), Duration::from_millis(50), || cfg
            .exists()),
        "server did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        token,
        _home: home,
    }
}

/// The value at quantile `p` of sorted latencies, in milliseconds.
pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}
