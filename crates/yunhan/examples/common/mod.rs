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

impl Server {
    /// A request to this server's API as the admin.
    pub fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        http.request(method, format!("{}{path}", self.endpoint))
            .bearer_auth(&self.token)
    }

    /// Sends a JSON request that must succeed and returns the response body.
    pub async fn json(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let mut r = self.request(http, method.clone(), path);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// Builds the test guest (scripts/build-test-guest) and uploads it as image
    /// `name`: `kernel` (direct kernel boot) or `disk` (BIOS raw disk).
    pub async fn upload_test_guest(&self, http: &reqwest::Client, name: &str, kind: &str) {
        let guest = yunhan_testkit::test_guest();
        let spec = if kind == "disk" {
            serde_json::json!({})
        } else {
            serde_json::json!({"kernel_cmdline": "console=ttyS0 quiet panic=-1"})
        };
        let img = self
            .json(
                http,
                reqwest::Method::POST,
                "/v1/images",
                Some(serde_json::json!({"metadata": {"name": name}, "spec": spec})),
            )
            .await;
        let id = img["metadata"]["id"].as_str().unwrap().to_string();
        let parts: &[(&str, &str)] = if kind == "disk" {
            &[("disk", "test-guest.raw")]
        } else {
            &[
                ("kernel", "test-guest.vmlinux"),
                ("initrd", "test-guest.initrd"),
            ]
        };
        for (part, file) in parts {
            let body = tokio::fs::read(guest.join(file)).await.unwrap();
            let r = self
                .request(
                    http,
                    reqwest::Method::PUT,
                    &format!("/v1/images/{id}/data?part={part}"),
                )
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        }
    }
}

/// The value at quantile `p` of sorted latencies, in milliseconds.
pub fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}
