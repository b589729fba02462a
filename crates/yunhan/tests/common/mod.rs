//! Harness for end-to-end tests: spawns the real `yunhan` binary with a fresh
//! HOME and talks to it over HTTP like any client would.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_yunhan");

/// Polls `f` every 50 ms until it returns Some, panicking after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `yunhan up` all-in-one cloud in its own HOME.
pub struct Cloud {
    pub home: tempfile::TempDir,
    pub child: Option<Child>,
    pub endpoint: String,
    pub token: String,
    pub http: reqwest::Client,
    args: Vec<String>,
    starts: usize,
}

impl Cloud {
    pub async fn up(extra: &[&str]) -> Cloud {
        let mut c = Cloud {
            home: tempfile::tempdir().expect("temp HOME"),
            child: None,
            endpoint: String::new(),
            token: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            starts: 0,
        };
        c.start().await;
        c
    }

    pub fn log_path(&self) -> PathBuf {
        self.home.path().join(format!("up-{}.log", self.starts))
    }

    /// Starts (or restarts) the process and waits until it serves.
    pub async fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.home.path().join("data"))
            .args(&self.args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env("YUNHAN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = yunhan_testkit::spawn_owned_group(cmd).expect("spawn yunhan up");
        self.child = Some(child);
        let log_path = self.log_path();
        let endpoint = eventually(
            "yunhan up to announce its API",
            Duration::from_secs(60),
            || {
                let log_path = log_path.clone();
                async move {
                    let text = std::fs::read_to_string(&log_path).ok()?;
                    let line = text.lines().find(|l| l.starts_with("Yunhan is up: API "))?;
                    Some(
                        line["Yunhan is up: API ".len()..]
                            .split(',')
                            .next()?
                            .to_string(),
                    )
                }
            },
        )
        .await;
        self.endpoint = endpoint;
        let cfg = std::fs::read_to_string(self.config_path()).expect("config.toml written");
        self.token = cfg
            .lines()
            .find_map(|l| l.strip_prefix("token = "))
            .map(|t| t.trim_matches('"').to_string())
            .expect("token in config");
        let http = self.http.clone();
        let url = format!("{}/healthz", self.endpoint);
        eventually("healthz", Duration::from_secs(30), || {
            let http = http.clone();
            let url = url.clone();
            async move {
                http.get(&url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status() == 200)
                    .map(|_| ())
            }
        })
        .await;
    }

    pub fn config_path(&self) -> PathBuf {
        self.home.path().join(".config/yunhan/config.toml")
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGKILL, with whatever it was running (ceph/rbd commands).
            yunhan_testkit::kill_group(&mut c);
        }
    }

    /// Runs a client command as this cloud's user.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("YUNHAN_ENDPOINT")
            .env_remove("YUNHAN_TOKEN")
            .output()
            .expect("run yunhan")
    }

    /// One API request; returns the status and the JSON body (Null if none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{}", self.endpoint, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.call(method, path, Some(&self.token.clone()), body)
            .await
    }

    /// Creates `kind` as admin, asserting 201; returns the document.
    pub async fn create(&self, token: &str, plural: &str, name: &str, spec: Value) -> Value {
        let (s, v) = self
            .call(
                "POST",
                &format!("/v1/{plural}"),
                Some(token),
                Some(&json!({"metadata": {"name": name}, "spec": spec})),
            )
            .await;
        assert_eq!(s, 201, "create {plural}/{name}: {v}");
        v
    }

    /// An Active image: created, then a 1 MiB raw disk uploaded to it.
    pub async fn image(&self, token: &str, name: &str) -> Value {
        let img = self
            .create(token, "images", name, json!({"os": "test"}))
            .await;
        let id = img["metadata"]["id"].as_str().unwrap();
        let r = self
            .http
            .put(format!("{}/v1/images/{id}/data", self.endpoint))
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .body(vec![0u8; 1 << 20])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"]["phase"], "Active", "{v}");
        v
    }

    /// A project with a member user and that user's token.
    pub async fn tenant(&self, name: &str, quota: Option<Value>) -> Tenant {
        let mut spec = json!({"description": format!("tenant {name}")});
        if let Some(q) = quota {
            spec["quota"] = q;
        }
        let admin = self.token.clone();
        let project = self.create(&admin, "projects", name, spec).await;
        let pid = project["metadata"]["id"].as_str().unwrap().to_string();
        let user = self
            .create(
                &admin,
                "users",
                &format!("{name}-user"),
                json!({"project": pid, "role": "member"}),
            )
            .await;
        let uid = user["metadata"]["id"].as_str().unwrap().to_string();
        let (s, key) = self
            .admin(
                "POST",
                "/v1/api-keys",
                Some(&json!({"metadata": {"name": format!("{name}-key")}, "spec": {"user": uid}})),
            )
            .await;
        assert_eq!(s, 201, "{key}");
        Tenant {
            project: pid,
            user: uid,
            token: key["token"].as_str().unwrap().to_string(),
        }
    }
}

pub struct Tenant {
    pub project: String,
    pub user: String,
    pub token: String,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.kill9();
        // VMs outlive the agent by design: stop this cloud's VMs too.
        yunhan_testkit::kill_vms_under(self.home.path());
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

#[allow(unused_imports)] // only the compute tests boot guests
pub use yunhan_testkit::test_guest;

/// A `yunhan` process (server, agent) with its stderr in a log file.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    /// Killed and reaped already (its pid, hence its group id, may be reused).
    killed: bool,
}

impl Proc {
    pub fn spawn(dir: &Path, tag: &str, args: &[&str]) -> Proc {
        let log = dir.join(format!("{tag}.log"));
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        Proc {
            child: yunhan_testkit::spawn_owned_group(cmd).expect("spawn yunhan"),
            killed: false,
            log,
        }
    }
    pub fn kill9(&mut self) {
        if !std::mem::replace(&mut self.killed, true) {
            yunhan_testkit::kill_group(&mut self.child);
        }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The interactive serial console of a VM, through the API's WebSocket: types
/// commands into the guest's root shell and reads their output.
pub struct GuestShell {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    n: u32,
}

impl GuestShell {
    /// Attaches to instance `id`'s console and waits for the shell (it starts
    /// when Enter is pressed).
    pub async fn open(cloud: &Cloud, id: &str) -> GuestShell {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!(
            "{}/v1/instances/{id}/console/attach",
            cloud.endpoint.replace("http://", "ws://")
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", cloud.token).parse().unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("console WebSocket");
        let mut sh = GuestShell { ws, n: 0 };
        sh.send("\n").await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = sh
                .run_within("echo shell-$((6*7))", Duration::from_secs(3))
                .await;
            if out.is_some_and(|o| o.contains("shell-42")) {
                return sh;
            }
            assert!(Instant::now() < deadline, "no shell on the console of {id}");
        }
    }

    async fn send(&mut self, text: &str) {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        self.ws
            .send(Message::Binary(text.as_bytes().to_vec().into()))
            .await
            .expect("typing into the console");
    }

    /// Runs `cmd` in the guest's shell; the console text up to its end
    /// marker, or None if it did not finish within `timeout`.
    pub async fn run_within(&mut self, cmd: &str, timeout: Duration) -> Option<String> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        self.n += 1;
        // The typed line echoes `$?` literally; only the shell prints digits.
        let end = format!("@@end-{}-", self.n);
        self.send(&format!("{cmd}; echo \"{end}$?\"\n")).await;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = String::new();
        loop {
            let done = seen
                .match_indices(&end)
                .any(|(i, _)| seen[i + end.len()..].starts_with(|c: char| c.is_ascii_digit()));
            if done {
                return Some(seen);
            }
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
                Ok(Some(Ok(Message::Text(t)))) => seen.push_str(t.as_str()),
                Ok(Some(Ok(_))) => {}
                _ => return None,
            }
        }
    }

    /// Runs `cmd`, panicking if it does not finish within a minute.
    pub async fn run(&mut self, cmd: &str) -> String {
        self.run_within(cmd, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("{cmd:?} did not finish in the guest"))
    }
}

/// A multi-host cloud: one `yunhan server` and one `yunhan agent` per host
/// name on a real etcd, in one temp dir (the agents' VMs are stopped on drop).
pub struct EtcdCloud {
    pub cfg: PathBuf,
    pub agents: Vec<Proc>,
    pub server: Proc,
    _etcd: yunhan_testkit::EtcdCluster,
    /// Last: removed once every process is gone.
    pub dir: tempfile::TempDir,
}

impl EtcdCloud {
    /// Starts etcd, the server (with `extra` too) and an agent per name (with
    /// `extra` too), and waits until every host is Ready.
    pub async fn start(hosts: &[&str], extra: &[&str]) -> EtcdCloud {
        let etcd = yunhan_testkit::EtcdCluster::start(1);
        let url = etcd.store_url();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("client.toml");
        let images = dir.path().join("images");
        let listen = format!("127.0.0.1:{}", yunhan_testkit::free_port());
        let mut args = vec![
            "server",
            "--store",
            &url,
            "--listen",
            &listen,
            "--write-config",
            cfg.to_str().unwrap(),
            "--image-dir",
            images.to_str().unwrap(),
        ];
        args.extend(extra);
        let server = Proc::spawn(dir.path(), "server", &args);
        eventually("admin config", Duration::from_secs(60), || async {
            cfg.exists().then_some(())
        })
        .await;
        let agents = hosts
            .iter()
            .map(|n| {
                let state = dir.path().join(n);
                let mut args = vec![
                    "agent",
                    "--store",
                    &url,
                    "--name",
                    n,
                    "--state-dir",
                    state.to_str().unwrap(),
                    "--lease-ttl",
                    "2",
                ];
                args.extend(extra);
                Proc::spawn(dir.path(), n, &args)
            })
            .collect();
        let c = EtcdCloud {
            cfg,
            agents,
            server,
            _etcd: etcd,
            dir,
        };
        eventually("every host Ready", Duration::from_secs(60), || async {
            let hosts_now: Value =
                serde_json::from_slice(&c.cli(&["host", "list", "-o", "json"]).stdout).ok()?;
            let ready = hosts_now
                .as_array()?
                .iter()
                .filter(|h| h["status"]["phase"] == "Ready")
                .count();
            (ready == hosts.len()).then_some(())
        })
        .await;
        c
    }

    /// Runs a client command as the admin.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--config", self.cfg.to_str().unwrap()])
            .env("HOME", self.dir.path())
            .output()
            .expect("run yunhan")
    }

    /// `<kind> show NAME -o json` (Null if it fails).
    pub fn show(&self, kind: &str, name: &str) -> Value {
        serde_json::from_slice(&self.cli(&[kind, "show", name, "-o", "json"]).stdout)
            .unwrap_or(Value::Null)
    }
}

impl Drop for EtcdCloud {
    fn drop(&mut self) {
        self.agents.clear();
        yunhan_testkit::kill_vms_under(self.dir.path());
    }
}
