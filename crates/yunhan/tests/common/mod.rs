//! Harness for end-to-end tests: spawns the real `yunhan` binary with a fresh
//! HOME and talks to it over HTTP like any client would.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod guest_disk;
pub mod onebox;

pub const BIN: &str = env!("CARGO_BIN_EXE_yunhan");

/// Where `yunhan up` run as root keeps its data by default.
pub const INSTALLED_DATA_DIR: &str = "/var/lib/yunhan";

/// Polls `f` every 50 ms until it returns Some, panicking after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let every = Duration::from_millis(50);
    yunhan_testkit::wait_for_some(what, timeout, every, f).await
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
    /// False: `up` runs with its default data directory, as a user would.
    own_data_dir: bool,
}

impl Cloud {
    /// A `scripts/ceph-dev` cluster and a cloud on it (pool `rbdvols`) with its own S3
    /// gateway on a free port, and `extra` arguments.
    pub async fn on_ceph_with_s3(extra: &[&str]) -> (yunhan_testkit::DevCeph, Cloud) {
        let ceph = tokio::task::spawn_blocking(yunhan_testkit::DevCeph::start)
            .await
            .unwrap();
        let conf = ceph.conf().to_str().unwrap().to_string();
        let mut args = vec!["--ceph-conf", &conf, "--ceph-pool", "rbdvols"];
        args.extend(["--ceph-failure-domain", "osd", "--s3-listen", "127.0.0.1:0"]);
        args.extend(extra);
        let cloud = Cloud::up(&args).await;
        (ceph, cloud)
    }

    pub async fn up(extra: &[&str]) -> Cloud {
        Cloud::start_new(extra, true).await
    }

    /// `yunhan up` as a user runs it: no --data-dir (as root: /var/lib/yunhan),
    /// HOME a fresh directory of mode 0700 (like /root).
    pub async fn up_as_installed(extra: &[&str]) -> Cloud {
        Cloud::start_new(extra, false).await
    }

    async fn start_new(extra: &[&str], own_data_dir: bool) -> Cloud {
        let mut c = Cloud {
            own_data_dir,
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
        if !own_data_dir {
            use std::os::unix::fs::PermissionsExt;
            let private = std::fs::Permissions::from_mode(0o700);
            std::fs::set_permissions(c.home.path(), private).expect("HOME 0700");
        }
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
        cmd.args(["up", "--listen", "127.0.0.1:0"]);
        if self.own_data_dir {
            cmd.arg("--data-dir").arg(self.home.path().join("data"));
        }
        // Tests run side by side on one machine: none gets the default external
        // network (a bridge and rules in the host's namespace) unless it asks.
        let asked = self
            .args
            .iter()
            .any(|a| a == "--public-cidr" || a == "--no-public-network");
        if !asked {
            cmd.arg("--no-public-network");
        }
        cmd.args(no_object_storage_unless_asked(&self.args));
        cmd.args(&self.args)
            .env_remove("YUNHAN_DATA_DIR")
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

    /// Stops `yunhan up` the way a service manager does (SIGTERM) and waits up to 30 s
    /// for it to exit; SIGKILL after that.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        signal(c.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // Reaped: its pid (and group id) may be anyone's now, so no kill after this.
            if c.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        yunhan_testkit::kill_group(&mut c);
    }

    /// Runs a client command with `-o json`; panics unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> Value {
        json_of(args, |a| self.cli(a))
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
        let (s, v) = self.post(token, plural, name, spec).await;
        assert_eq!(s, 201, "create {plural}/{name}: {v}");
        v
    }

    /// `POST /v1/<plural>` of object `name` with `spec`, as `token`: the status and body.
    pub async fn post(&self, token: &str, plural: &str, name: &str, spec: Value) -> (u16, Value) {
        let body = json!({"metadata": {"name": name}, "spec": spec});
        let path = format!("/v1/{plural}");
        self.call("POST", &path, Some(token), Some(&body)).await
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

    /// An S3 key of the caller of `token` named `name`, once the gateway has it: the
    /// answer of `POST /v1/s3-keys` (`s3_key`, `access_key`, `secret_key`, `endpoint`).
    pub async fn s3_key(&self, token: &str, name: &str) -> Value {
        let body = json!({"metadata": {"name": name}, "spec": {}});
        let (s, v) = self
            .call("POST", "/v1/s3-keys", Some(token), Some(&body))
            .await;
        assert_eq!(s, 201, "{v}");
        let path = format!(
            "/v1/s3-keys/{}",
            v["s3_key"]["metadata"]["id"].as_str().unwrap()
        );
        eventually(
            "the S3 key to be Active",
            Duration::from_secs(30),
            || async {
                let (_, k) = self.call("GET", &path, Some(token), None).await;
                (k["status"]["phase"] == "Active").then_some(())
            },
        )
        .await;
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

/// Tests run side by side on one machine: a cloud on Ceph starts no S3 gateway (its
/// default port is one per machine) unless it asks, with `--s3-listen` or `--s3-endpoint`.
fn no_object_storage_unless_asked(args: &[String]) -> Option<&'static str> {
    let on_ceph = args.iter().any(|a| a == "--ceph-conf");
    let asked = (args.iter()).any(|a| a.starts_with("--s3-") || a == "--no-object-storage");
    (on_ceph && !asked).then_some("--no-object-storage")
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
        if !self.own_data_dir {
            yunhan_testkit::kill_vms_under(Path::new(INSTALLED_DATA_DIR));
        }
    }
}

/// `image create NAME` of the test guest booted directly from its kernel and initrd
/// (serial console, quiet, reboot on panic).
pub fn kernel_image_args(name: &str) -> Vec<String> {
    let guest = test_guest();
    let path = |f: &str| guest.join(f).to_string_lossy().into_owned();
    [
        "image",
        "create",
        name,
        "--kernel",
        &path("test-guest.vmlinux"),
        "--initrd",
        &path("test-guest.initrd"),
        "--cmdline",
        "console=ttyS0 quiet panic=-1",
    ]
    .map(String::from)
    .to_vec()
}

/// Borrowed views of `args`, for the CLI helpers that take `&[&str]`.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// How many rounds a benchmark test runs: `ROUNDS` from the environment, else `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// The value at quantile `q` of `v` (sorted here).
pub fn pct(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

/// `image create NAME` of the test guest's disk (`test-guest.raw`), uploaded.
pub fn disk_image_args(name: &str) -> Vec<String> {
    let raw = test_guest().join("test-guest.raw");
    let raw = raw.to_str().unwrap();
    ["image", "create", name, "--file", raw]
        .map(String::from)
        .to_vec()
}

/// `vm create NAME` of image `tiny` on flavor `tiny`, then `extra` arguments.
pub fn tiny_vm<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["vm", "create", name, "--image", "tiny", "--flavor", "tiny"];
    args.extend(extra);
    args
}

/// `volume create NAME` in `pool`: a bootable 1 GiB clone of image `tiny`, waited for.
pub fn bootable_root_args<'a>(name: &'a str, pool: &'a str) -> Vec<&'a str> {
    let mut args = vec!["volume", "create", name, "--pool", pool];
    args.extend(words("--image tiny --size 1GiB --bootable --wait"));
    args
}

/// A command line's words, e.g. `words("vpc create net1 --cidr 10.10.0.0/16")`.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Runs `args` with `-o json` through `run`; panics unless the command succeeds,
/// else returns its JSON output (Null if none).
fn json_of(args: &[&str], run: impl FnOnce(&[&str]) -> Output) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = run(&a);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// What runs client commands that must succeed: a [`Cloud`] or a [`Cluster`].
pub trait Client {
    fn ok(&self, args: &[&str]) -> Value;
}

impl Client for Cloud {
    fn ok(&self, args: &[&str]) -> Value {
        Cloud::ok(self, args)
    }
}

impl Client for Cluster {
    fn ok(&self, args: &[&str]) -> Value {
        Cluster::ok(self, args)
    }
}

/// External network `ext` (203.0.113.0/24, gateway .1) on every lab host's `ext0` (see
/// `Lab::add_external`), and security group `open` of VPC `net1` letting anyone ping.
pub fn provider_network_and_open_ping(c: &impl Client) {
    let dev = yunhan_net::lab::Lab::EXTERNAL_DEVICE;
    let ext = "external-network create ext --cidr 203.0.113.0/24 --gateway 203.0.113.1";
    c.ok(&words(&format!("{ext} --device {dev}")));
    c.ok(&words("sg create open --vpc net1"));
    c.ok(&words("sg rule add open --protocol icmp --cidr 0.0.0.0/0"));
}

/// VPC `net1` (10.10.0.0/16) and its subnet `s1` (10.10.1.0/24).
pub fn net1_with_s1(c: &impl Client) {
    c.ok(&words("vpc create net1 --cidr 10.10.0.0/16"));
    c.ok(&words("subnet create s1 --vpc net1 --cidr 10.10.1.0/24"));
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
        GuestShell::attach(&cloud.endpoint, &cloud.token, id).await
    }

    /// [`GuestShell::open`] through the API at `endpoint` with `token`.
    pub async fn attach(endpoint: &str, token: &str, id: &str) -> GuestShell {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!(
            "{}/v1/instances/{id}/console/attach",
            endpoint.replace("http://", "ws://")
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
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

/// A multi-host cloud: `yunhan server` on a store URL (etcd) and `yunhan agent`s
/// named `node-1`, `node-2`, … each with its own state dir, all in one temp dir.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub cfg: String,
    pub url: String,
    listen: String,
    server_args: Vec<String>,
    agent_args: Vec<Vec<String>>,
    pub server: Option<Proc>,
    pub agents: Vec<Proc>,
}

impl Cluster {
    /// Starts the server (with `server_args`) and one agent per entry of
    /// `agents` (its extra arguments), and waits until they are all Ready.
    pub async fn start(url: String, server_args: &[&str], agents: &[Vec<String>]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("client.toml");
        let mut c = Cluster {
            cfg: cfg.to_str().unwrap().to_string(),
            url,
            listen: format!("127.0.0.1:{}", yunhan_testkit::free_port()),
            server_args: server_args.iter().map(|a| a.to_string()).collect(),
            agent_args: agents.to_vec(),
            server: None,
            agents: vec![],
            dir,
        };
        c.start_server();
        eventually("admin config", Duration::from_secs(60), || async {
            cfg.exists().then_some(())
        })
        .await;
        for i in 0..agents.len() {
            let agent = c.spawn_agent(i);
            c.agents.push(agent);
        }
        let n = agents.len();
        eventually(
            &format!("{n} Ready hosts"),
            Duration::from_secs(60),
            || async {
                let hosts: Value =
                    serde_json::from_slice(&c.cli(&["host", "list", "-o", "json"]).stdout).ok()?;
                let ready = hosts
                    .as_array()?
                    .iter()
                    .filter(|h| h["status"]["phase"] == "Ready")
                    .count();
                (ready == n).then_some(())
            },
        )
        .await;
        c
    }

    /// Agent `i` (`node-{i+1}`, its own state dir).
    fn spawn_agent(&self, i: usize) -> Proc {
        let name = format!("node-{}", i + 1);
        let state = self.dir.path().join(&name);
        let mut args = vec![
            "agent",
            "--store",
            &self.url,
            "--name",
            &name,
            "--state-dir",
            state.to_str().unwrap(),
            "--lease-ttl",
            "2",
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        args.extend(self.agent_args[i].iter().map(String::as_str));
        Proc::spawn(self.dir.path(), &name, &args)
    }

    /// The guest shell of instance `id`, through the server's API (its endpoint and
    /// the admin token in the client configuration).
    pub async fn shell(&self, id: &str) -> GuestShell {
        let cfg = std::fs::read_to_string(&self.cfg).expect("client config");
        let field = |name: &str| {
            (cfg.lines())
                .find_map(|l| l.strip_prefix(&format!("{name} = ")))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_else(|| panic!("{name} in {cfg}"))
        };
        GuestShell::attach(&field("endpoint"), &field("token"), id).await
    }

    /// Starts agent `i` again (after it was killed), with the same state dir.
    pub fn restart_agent(&mut self, i: usize) {
        self.agents[i].kill9();
        self.agents[i] = self.spawn_agent(i);
    }

    /// Starts the server again and waits until its API answers.
    pub async fn start_server_and_wait(&mut self) {
        self.start_server();
        eventually("the API back", Duration::from_secs(60), || async {
            self.cli(&["host", "list"]).status.success().then_some(())
        })
        .await;
    }

    /// (Re)starts the server.
    pub fn start_server(&mut self) {
        let images = self.dir.path().join("images");
        let mut args = vec![
            "server",
            "--store",
            &self.url,
            "--listen",
            &self.listen,
            "--write-config",
            &self.cfg,
            "--image-dir",
            images.to_str().unwrap(),
        ];
        args.extend(no_object_storage_unless_asked(&self.server_args));
        args.extend(self.server_args.iter().map(String::as_str));
        self.server = Some(Proc::spawn(self.dir.path(), "server", &args));
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .args(["--config", &self.cfg])
            .env("HOME", self.dir.path())
            .output()
            .unwrap()
    }

    /// Runs a client command that must succeed; returns its JSON output.
    pub fn ok(&self, args: &[&str]) -> Value {
        json_of(args, |a| self.cli(a))
    }

    /// The agent (index into `agents`) of host id `host`: agent `node-N` is `agents[N-1]`.
    /// Host `agent` of `lab` lost: its agent killed (SIGKILL) and its external leg down.
    pub fn lose_host(&mut self, lab: &yunhan_net::lab::Lab, agent: usize) {
        self.agents[agent].kill9();
        let netns = &lab.hosts[agent].netns;
        onebox::sh(&["ip", "-n", netns, "link", "set", "ext0", "down"]);
    }

    /// VPC `net1` (10.10.0.0/16) with subnet `s1` (10.10.1.0/24) and group `open`, which
    /// lets TCP port 9000 in from the VPC.
    pub fn vpc_open_on_9000(&self) {
        for line in [
            "vpc create net1 --cidr 10.10.0.0/16",
            "subnet create s1 --vpc net1 --cidr 10.10.1.0/24",
            "sg create open --vpc net1",
            "sg rule add open --protocol tcp --port 9000 --cidr 10.10.0.0/16",
        ] {
            self.ok(&words(line));
        }
    }

    /// Host `agent` of `lab` gone from the network: its agent killed (SIGKILL), its
    /// underlay link down (nothing on it reaches the other hosts any more) and its leg on
    /// the lab's external network too, if it has one (nothing outside reaches it either).
    pub fn cut_host(&mut self, lab: &yunhan_net::lab::Lab, agent: usize) {
        self.agents[agent].kill9();
        let netns = &lab.hosts[agent].netns;
        let ext = yunhan_net::lab::Lab::EXTERNAL_DEVICE;
        let has_ext = (Command::new("ip").args(["-n", netns, "link", "show", ext]))
            .output()
            .is_ok_and(|o| o.status.success());
        for dev in std::iter::once("eth0").chain(has_ext.then_some(ext)) {
            onebox::sh(&["ip", "-n", netns, "link", "set", dev, "down"]);
        }
    }

    /// The first of the VMs `names` whose host is not agent `agent`'s.
    pub fn vm_not_on(&self, names: &[&str], agent: usize) -> Value {
        (names.iter())
            .map(|n| self.ok(&["vm", "show", n]))
            .find(|v| self.agent_of(v["status"]["host"].as_str().unwrap()) != agent)
            .expect("a VM on another host")
    }

    pub fn agent_of(&self, host: &str) -> usize {
        let h = self.ok(&["host", "show", host]);
        let n: usize = h["metadata"]["name"]
            .as_str()
            .and_then(|n| n.strip_prefix("node-"))
            .and_then(|n| n.parse().ok())
            .expect("agents are named node-N");
        n - 1
    }
}

impl Drop for Cluster {
    /// Agents first, then the VMs they ran: an agent still alive would restart a killed VM.
    fn drop(&mut self) {
        self.agents.clear();
        self.server.take();
        yunhan_testkit::kill_vms_under(self.dir.path());
    }
}

/// Sends `sig` (e.g. `-STOP`) to process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

/// The QEMU processes running instance `id` (on any host of this machine).
pub fn qemus_of(id: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.starts_with("qemu-system") && cmd.contains(&format!("/vms/{id}/")) {
            pids.push(pid);
        }
    }
    pids
}

impl Cluster {
    /// `<kind> show NAME -o json` (Null if it fails).
    pub fn show(&self, kind: &str, name: &str) -> Value {
        serde_json::from_slice(&self.cli(&[kind, "show", name, "-o", "json"]).stdout)
            .unwrap_or(Value::Null)
    }
}

/// A [`Cluster`] of `hosts` agents on its own 1-member etcd, with the same
/// `extra` arguments for the server and every agent.
pub struct EtcdCloud {
    /// First: the processes go before their store.
    pub cluster: Cluster,
    _etcd: yunhan_testkit::EtcdCluster,
}

impl EtcdCloud {
    pub async fn start(hosts: usize, extra: &[&str]) -> EtcdCloud {
        let etcd = yunhan_testkit::EtcdCluster::start(1);
        let per_agent: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let cluster = Cluster::start(etcd.store_url(), extra, &vec![per_agent; hosts]).await;
        EtcdCloud {
            cluster,
            _etcd: etcd,
        }
    }
}

impl std::ops::Deref for EtcdCloud {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

// ---------------------------------------------------------------- guest consoles (by socket)

/// The serial log of a VM document (`status.console_log`).
pub fn serial_log(vm: &Value) -> PathBuf {
    PathBuf::from(vm["status"]["console_log"].as_str().expect("console log"))
}

pub fn console_text(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Types `cmd` into the guest's serial shell until `marker` shows on its console.
/// (The echoed command line never contains the marker: the guest computes it.)
///
/// One connection to the console socket stays open meanwhile (QEMU drops what it has not
/// yet fed to the guest's UART when the client hangs up, which would cut the command
/// short), and what the guest prints to it is drained (QEMU writes the console byte by
/// byte: an unread socket fills up after a few hundred bytes and stalls the guest).
pub async fn guest_runs(vm: &Value, cmd: &str, marker: &str, timeout: Duration) {
    let sock = PathBuf::from(vm["status"]["console_socket"].as_str().unwrap());
    let log = serial_log(vm);
    let mut last_sent: Option<Instant> = None;
    let mut console: Option<std::os::unix::net::UnixStream> = None;
    eventually(
        &format!("{marker} on the console of {}", vm["metadata"]["name"]),
        timeout,
        || {
            if last_sent.is_none_or(|t| t.elapsed() > Duration::from_secs(4)) {
                if console.is_none() {
                    console = drained_console(&sock);
                }
                if let Some(s) = console.as_mut() {
                    if s.write_all(format!("\n{cmd}\n").as_bytes()).is_err() {
                        console = None;
                    }
                }
                last_sent = Some(Instant::now());
            }
            let seen = console_text(&log).contains(marker);
            async move { seen.then_some(()) }
        },
    )
    .await;
    if let Some(s) = console {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

/// A connection to a guest's console socket whose output a thread discards (the serial
/// log keeps it); the thread ends when the connection is shut down.
fn drained_console(sock: &Path) -> Option<std::os::unix::net::UnixStream> {
    let s = std::os::unix::net::UnixStream::connect(sock).ok()?;
    let mut reader = s.try_clone().ok()?;
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    Some(s)
}

/// A [`Cluster`] on its own 1-member etcd and a real Ceph development cluster,
/// with an RBD pool (`pool`, failure domain osd) given to the server and every
/// agent; `agents[i]` are agent i's extra arguments, `server_extra` the server's.
pub struct CephCloud {
    /// First: the processes go before their store and their Ceph cluster.
    pub cluster: Cluster,
    /// The Ceph cluster's ceph.conf.
    pub conf: String,
    _etcd: yunhan_testkit::EtcdCluster,
    _ceph: yunhan_testkit::DevCeph,
}

impl CephCloud {
    pub async fn start(pool: &str, agents: &[Vec<String>], server_extra: &[&str]) -> CephCloud {
        let ceph = tokio::task::spawn_blocking(yunhan_testkit::DevCeph::start)
            .await
            .unwrap();
        let conf = ceph.conf().to_str().unwrap().to_string();
        let etcd = yunhan_testkit::EtcdCluster::start(1);
        let ceph_args = [
            "--ceph-conf",
            conf.as_str(),
            "--ceph-pool",
            pool,
            "--ceph-failure-domain",
            "osd",
        ];
        let mut server_args = ceph_args.to_vec();
        server_args.extend(server_extra);
        let agents: Vec<Vec<String>> = agents
            .iter()
            .map(|extra| {
                ceph_args
                    .iter()
                    .map(|a| a.to_string())
                    .chain(extra.iter().cloned())
                    .collect()
            })
            .collect();
        let cluster = Cluster::start(etcd.store_url(), &server_args, &agents).await;
        CephCloud {
            cluster,
            conf,
            _etcd: etcd,
            _ceph: ceph,
        }
    }
}

impl std::ops::Deref for CephCloud {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for CephCloud {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

/// A netns lab of two hosts, `h1` (192.0.2.1) and `h2` (192.0.2.2), on a 1500-byte
/// underlay; `tag` keeps its names apart from other tests'.
pub fn two_host_lab(tag: &str) -> yunhan_net::lab::Lab {
    use std::net::Ipv4Addr;
    let hosts = [
        ("h1", Ipv4Addr::new(192, 0, 2, 1)),
        ("h2", Ipv4Addr::new(192, 0, 2, 2)),
    ];
    yunhan_net::lab::Lab::new(tag, &hosts, 1500).expect("a two-host lab")
}

/// A `yunhan server` on its own 1-member etcd and one agent per host of `lab`.
pub async fn lab_cloud(lab: &yunhan_net::lab::Lab) -> (yunhan_testkit::EtcdCluster, Cluster) {
    let etcd = yunhan_testkit::EtcdCluster::start(1);
    let c = Cluster::start(etcd.store_url(), &[], &lab_agents(lab)).await;
    (etcd, c)
}

/// Agent arguments that make agent i realise lab host i's network (`--netns`,
/// `--vtep`): agent `node-N` runs lab host N.
pub fn lab_agents(lab: &yunhan_net::lab::Lab) -> Vec<Vec<String>> {
    lab.hosts
        .iter()
        .map(|h| {
            vec![
                "--netns".into(),
                h.netns.clone(),
                "--vtep".into(),
                h.vtep.to_string(),
            ]
        })
        .collect()
}
