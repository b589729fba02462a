//! A fake QMP server for tests: a real UNIX-socket server that speaks the
//! protocol (greeting, capabilities negotiation, ids, error classes, events)
//! over a small state machine modelled on QEMU 10's observable behaviour:
//! run state (running/paused/shutdown/postmigrate), block nodes, devices with
//! asynchronous unplug, and a migration that walks setup → active → completed.
//!
//! ```no_run
//! # async fn demo() -> yunhan_qmp::Result<()> {
//! use yunhan_qmp::{fake::FakeQmpServer, Qmp, QmpClient};
//! let server = FakeQmpServer::start().await?;
//! let qmp = QmpClient::connect(server.socket_path()).await?;
//! qmp.stop().await?;
//! assert_eq!(server.status(), yunhan_qmp::RunState::Paused);
//! # Ok(()) }
//! ```
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::types::{MigrationStatus, RunState, VersionInfo, VersionTriple};

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub version: VersionInfo,
    pub initial_status: RunState,
    /// The "guest" reacts to `system_powerdown` by shutting down (after
    /// `powerdown_delay`); false behaves like a guest without ACPI.
    pub guest_handles_powerdown: bool,
    pub powerdown_delay: Duration,
    /// On shutdown the fake "exits" (closes every connection and stops
    /// listening), like QEMU without `-no-shutdown`.
    pub exit_on_shutdown: bool,
    /// How long the guest takes to release a device after `device_del`;
    /// `None`: never (a guest that ignores the unplug request).
    pub device_del_delay: Option<Duration>,
    /// Time between migration states.
    pub migration_step: Duration,
    /// Migrations end in `failed`.
    pub fail_migration: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            version: VersionInfo {
                qemu: VersionTriple {
                    major: 10,
                    minor: 0,
                    micro: 2,
                },
                package: "yunhan-qmp fake".into(),
            },
            initial_status: RunState::Running,
            guest_handles_powerdown: true,
            powerdown_delay: Duration::from_millis(30),
            exit_on_shutdown: true,
            device_del_delay: Some(Duration::from_millis(20)),
            migration_step: Duration::from_millis(10),
            fail_migration: false,
        }
    }
}

const MIGRATION_CAPS: &[&str] = &[
    "xbzrle",
    "rdma-pin-all",
    "auto-converge",
    "zero-blocks",
    "events",
    "postcopy-ram",
    "x-colo",
    "release-ram",
    "return-path",
    "pause-before-switchover",
    "multifd",
    "dirty-bitmaps",
    "postcopy-blocktime",
    "late-block-activate",
    "x-ignore-shared",
    "validate-uuid",
    "background-snapshot",
    "zero-copy-send",
    "postcopy-preempt",
    "switchover-ack",
    "dirty-limit",
    "mapped-ram",
];

#[derive(Debug, Default)]
struct FakeState {
    status: Option<RunState>,
    blockdevs: BTreeMap<String, Map<String, Value>>,
    devices: BTreeMap<String, Map<String, Value>>,
    unplugging: Vec<String>,
    migration: Option<MigrationStatus>,
    migration_started: Option<std::time::Instant>,
    migration_total_ms: u64,
    migration_error: Option<String>,
    capabilities: BTreeMap<String, bool>,
    parameters: Map<String, Value>,
    commands: Vec<String>,
    injected: HashMap<String, (String, String)>,
    stalled: Vec<String>,
    exited: bool,
}

struct Inner {
    config: FakeConfig,
    state: Mutex<FakeState>,
    events: broadcast::Sender<Value>,
    exit: watch::Sender<bool>,
}

/// A running fake QMP server. Dropping it stops it and removes its socket
/// (when it created the directory).
pub struct FakeQmpServer {
    inner: Arc<Inner>,
    path: PathBuf,
    accept: JoinHandle<()>,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for FakeQmpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeQmpServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

type Reply = Result<Value, (&'static str, String)>;

fn generic(desc: impl Into<String>) -> (&'static str, String) {
    ("GenericError", desc.into())
}

fn timestamp() -> Value {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    json!({"seconds": d.as_secs(), "microseconds": d.subsec_micros()})
}

impl FakeQmpServer {
    /// Starts with the default config on a socket in a new temporary directory.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(FakeConfig::default()).await
    }

    pub async fn start_with(config: FakeConfig) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("yunhan-fake-qmp")
            .tempdir()?;
        let path = dir.path().join("qmp.sock");
        let mut s = Self::start_at(&path, config).await?;
        s._dir = Some(dir);
        Ok(s)
    }

    /// Starts listening on `path` (which must not exist).
    pub async fn start_at(path: &Path, config: FakeConfig) -> std::io::Result<Self> {
        let listener = UnixListener::bind(path)?;
        let (events, _) = broadcast::channel(1024);
        let (exit, _) = watch::channel(false);
        let state = FakeState {
            status: Some(config.initial_status),
            ..Default::default()
        };
        let inner = Arc::new(Inner {
            config,
            state: Mutex::new(state),
            events,
            exit,
        });
        let accept = tokio::spawn(accept_loop(listener, inner.clone()));
        Ok(Self {
            inner,
            path: path.to_owned(),
            accept,
            _dir: None,
        })
    }

    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    pub fn status(&self) -> RunState {
        self.inner.lock().status.unwrap_or(RunState::Unknown)
    }

    /// Forces the run state (no event).
    pub fn set_status(&self, status: RunState) {
        self.inner.lock().status = Some(status);
    }

    /// Emits an arbitrary event to every negotiated connection.
    pub fn emit_event(&self, name: &str, data: Option<Value>) {
        self.inner.emit(name, data);
    }

    /// Names of the commands executed so far, in order.
    pub fn commands(&self) -> Vec<String> {
        self.inner.lock().commands.clone()
    }

    /// Node names of the block nodes.
    pub fn blockdevs(&self) -> Vec<String> {
        self.inner.lock().blockdevs.keys().cloned().collect()
    }

    /// The options a block node was added (and resized) with.
    pub fn blockdev(&self, node_name: &str) -> Option<Map<String, Value>> {
        self.inner.lock().blockdevs.get(node_name).cloned()
    }

    /// Ids of the devices added with `device_add` and not yet deleted.
    pub fn devices(&self) -> Vec<String> {
        self.inner.lock().devices.keys().cloned().collect()
    }

    pub fn migration_capabilities(&self) -> BTreeMap<String, bool> {
        self.inner.lock().capabilities.clone()
    }

    pub fn migration_parameters(&self) -> Map<String, Value> {
        self.inner.lock().parameters.clone()
    }

    /// The next `command` fails with this QMP error class and description.
    pub fn inject_error(&self, command: &str, class: &str, desc: &str) {
        self.inner
            .lock()
            .injected
            .insert(command.into(), (class.into(), desc.into()));
    }

    /// The next `command` gets no reply at all (a hung QEMU), to test timeouts.
    pub fn stall_next(&self, command: &str) {
        self.inner.lock().stalled.push(command.into());
    }

    /// Simulates the QEMU process exiting: closes every connection.
    pub fn exit(&self) {
        self.inner.exit();
    }

    /// True once the fake "exited" (quit, or shutdown with `exit_on_shutdown`).
    pub fn has_exited(&self) -> bool {
        self.inner.lock().exited
    }
}

impl Drop for FakeQmpServer {
    fn drop(&mut self) {
        self.inner.exit();
        self.accept.abort();
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, name: &str, data: Option<Value>) {
        let mut ev = json!({"event": name, "timestamp": timestamp()});
        if let Some(d) = data {
            ev["data"] = d;
        }
        let _ = self.events.send(ev);
    }

    fn exit(&self) {
        self.lock().exited = true;
        self.exit.send_replace(true);
    }

    fn shutdown(&self, guest: bool, reason: &str) {
        self.lock().status = Some(RunState::Shutdown);
        self.emit("SHUTDOWN", Some(json!({"guest": guest, "reason": reason})));
        if self.config.exit_on_shutdown {
            self.exit();
        }
    }

    fn set_migration(&self, status: MigrationStatus) {
        let events = {
            let mut st = self.lock();
            st.migration = Some(status);
            st.capabilities.get("events").copied().unwrap_or(false)
        };
        if events {
            self.emit("MIGRATION", Some(json!({"status": status})));
        }
    }
}

/// Resolves once the exit flag is set (or the sender is gone).
async fn exited(rx: &mut watch::Receiver<bool>) {
    loop {
        let done = *rx.borrow_and_update();
        if done || rx.changed().await.is_err() {
            return;
        }
    }
}

async fn accept_loop(listener: UnixListener, inner: Arc<Inner>) {
    let mut exit = inner.exit.subscribe();
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok((stream, _)) => { tokio::spawn(serve(stream, inner.clone())); }
                Err(e) => { tracing::warn!("fake QMP accept: {e}"); break; }
            },
            _ = exited(&mut exit) => break,
        }
    }
}

async fn serve(stream: UnixStream, inner: Arc<Inner>) {
    if let Err(e) = serve_inner(stream, inner).await {
        tracing::debug!("fake QMP connection: {e}");
    }
}

async fn write_json(w: &mut tokio::net::unix::OwnedWriteHalf, v: &Value) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    line.extend_from_slice(b"\r\n");
    w.write_all(&line).await
}

async fn serve_inner(stream: UnixStream, inner: Arc<Inner>) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut exit = inner.exit.subscribe();
    let already = *exit.borrow();
    if already {
        return Ok(());
    }
    let mut events = inner.events.subscribe();
    let greeting = json!({"QMP": {"version": inner.config.version, "capabilities": ["oob"]}});
    write_json(&mut w, &greeting).await?;
    let mut lines = BufReader::new(r).lines();
    let mut negotiated = false;
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                if line.trim().is_empty() { continue; }
                if let Some(reply) = handle_line(&inner, &mut negotiated, &line) {
                    write_json(&mut w, &reply).await?;
                }
            }
            ev = events.recv() => match ev {
                Ok(ev) => if negotiated { write_json(&mut w, &ev).await? },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = exited(&mut exit) => {
                // Like QEMU: events raised before exiting are still delivered.
                while let Ok(ev) = events.try_recv() {
                    if negotiated { write_json(&mut w, &ev).await?; }
                }
                let _ = w.shutdown().await;
                return Ok(());
            }
        }
    }
}

fn handle_line(inner: &Arc<Inner>, negotiated: &mut bool, line: &str) -> Option<Value> {
    let msg: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            let desc = format!("JSON parse error, {e}");
            return Some(json!({"error": {"class": "GenericError", "desc": desc}}));
        }
    };
    let id = msg.get("id").cloned();
    let name = msg
        .get("execute")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let args = match msg.get("arguments") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            let e = generic("QMP input member 'arguments' must be an object");
            return Some(with_id(Err(e), id));
        }
    };
    {
        let mut st = inner.lock();
        if let Some(i) = st.stalled.iter().position(|c| c == &name) {
            st.stalled.remove(i);
            st.commands.push(name);
            return None;
        }
    }
    let reply = if name.is_empty() {
        Err(generic("QMP input lacks member 'execute'"))
    } else if !*negotiated {
        if name == "qmp_capabilities" {
            *negotiated = true;
            Ok(json!({}))
        } else {
            Err((
                "CommandNotFound",
                "Expecting capabilities negotiation with 'qmp_capabilities'".into(),
            ))
        }
    } else if name == "qmp_capabilities" {
        Err((
            "CommandNotFound",
            "Capabilities negotiation is already complete, command ignored".into(),
        ))
    } else {
        execute(inner, &name, &args)
    };
    Some(with_id(reply, id))
}

fn with_id(reply: Reply, id: Option<Value>) -> Value {
    let mut v = match reply {
        Ok(ret) => json!({"return": ret}),
        Err((class, desc)) => json!({"error": {"class": class, "desc": desc}}),
    };
    if let Some(id) = id {
        v["id"] = id;
    }
    v
}

fn str_arg<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a str, (&'static str, String)> {
    match args.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(generic(format!(
            "Invalid parameter type for '{key}', expected: string"
        ))),
        None => Err(generic(format!("Parameter '{key}' is missing"))),
    }
}

fn execute(inner: &Arc<Inner>, name: &str, args: &Map<String, Value>) -> Reply {
    {
        let mut st = inner.lock();
        st.commands.push(name.to_owned());
        if let Some((class, desc)) = st.injected.remove(name) {
            // Leak-free: classes are few; map to the known static ones.
            let class: &'static str = match class.as_str() {
                "CommandNotFound" => "CommandNotFound",
                "DeviceNotFound" => "DeviceNotFound",
                "DeviceNotActive" => "DeviceNotActive",
                "KVMMissingCap" => "KVMMissingCap",
                _ => "GenericError",
            };
            return Err((class, desc));
        }
    }
    let cfg = &inner.config;
    match name {
        "query-status" => {
            let status = inner.lock().status.unwrap_or(RunState::Unknown);
            Ok(json!({"status": status, "running": status == RunState::Running}))
        }
        "query-version" => Ok(serde_json::to_value(&cfg.version).unwrap_or_default()),
        "stop" => {
            let was_running = {
                let mut st = inner.lock();
                let r = st.status == Some(RunState::Running);
                if r {
                    st.status = Some(RunState::Paused);
                }
                r
            };
            if was_running {
                inner.emit("STOP", None);
            }
            Ok(json!({}))
        }
        "cont" => {
            let status = inner.lock().status;
            match status {
                Some(RunState::Running) => Ok(json!({})),
                Some(RunState::Inmigrate) => Err(generic(
                    "Migration is not finalized yet, waiting for the incoming migration",
                )),
                _ => {
                    inner.lock().status = Some(RunState::Running);
                    inner.emit("RESUME", None);
                    Ok(json!({}))
                }
            }
        }
        "system_powerdown" => {
            inner.emit("POWERDOWN", None);
            if cfg.guest_handles_powerdown && inner.lock().status == Some(RunState::Running) {
                let inner = inner.clone();
                let delay = cfg.powerdown_delay;
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    inner.shutdown(true, "guest-shutdown");
                });
            }
            Ok(json!({}))
        }
        "system_reset" => {
            inner.emit(
                "RESET",
                Some(json!({"guest": false, "reason": "host-qmp-system-reset"})),
            );
            Ok(json!({}))
        }
        "quit" => {
            let inner = inner.clone();
            // After the reply is written (the connection task writes it first).
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                inner.lock().status = Some(RunState::Shutdown);
                inner.emit(
                    "SHUTDOWN",
                    Some(json!({"guest": false, "reason": "host-qmp-quit"})),
                );
                inner.exit();
            });
            Ok(json!({}))
        }
        "human-monitor-command" => {
            let cmd = str_arg(args, "command-line")?.trim().to_owned();
            let status = inner.lock().status.unwrap_or(RunState::Unknown);
            let out = match cmd.as_str() {
                "info status" => {
                    let s = serde_json::to_value(status).unwrap_or_default();
                    format!("VM status: {}\r\n", s.as_str().unwrap_or("unknown"))
                }
                "info version" => {
                    let v = &cfg.version.qemu;
                    format!(
                        "{}.{}.{} ({})\r\n",
                        v.major, v.minor, v.micro, cfg.version.package
                    )
                }
                "" => String::new(),
                other => {
                    let word = other.split_whitespace().next().unwrap_or("");
                    format!("unknown command: '{word}'\r\n")
                }
            };
            Ok(Value::String(out))
        }
        "blockdev-add" => {
            let driver = str_arg(args, "driver")?;
            let node = args
                .get("node-name")
                .and_then(Value::as_str)
                .ok_or_else(|| generic("A block device must be given a node-name"))?;
            if driver == "file" {
                str_arg(args, "filename")?;
            }
            let mut st = inner.lock();
            if st.blockdevs.contains_key(node) {
                return Err(generic(format!("Duplicate nodes with node-name='{node}'")));
            }
            if let Some(Value::String(child)) = args.get("file") {
                if !st.blockdevs.contains_key(child) {
                    return Err(generic(format!(
                        "Cannot find device='{child}' nor node-name='{child}'"
                    )));
                }
            }
            st.blockdevs.insert(node.to_owned(), args.clone());
            Ok(json!({}))
        }
        "blockdev-del" => {
            let node = str_arg(args, "node-name")?;
            let mut st = inner.lock();
            if !st.blockdevs.contains_key(node) {
                return Err(generic(format!(
                    "Failed to find node with node-name='{node}'"
                )));
            }
            let used_by_node = st
                .blockdevs
                .values()
                .any(|o| o.get("file").and_then(Value::as_str) == Some(node));
            let used_by_dev = st
                .devices
                .values()
                .any(|o| o.get("drive").and_then(Value::as_str) == Some(node));
            if used_by_node || used_by_dev {
                return Err(generic(format!(
                    "Node '{node}' is busy: block device is in use"
                )));
            }
            st.blockdevs.remove(node);
            Ok(json!({}))
        }
        "block_resize" => {
            let node = str_arg(args, "node-name")?;
            let size = args
                .get("size")
                .and_then(Value::as_u64)
                .ok_or_else(|| generic("Parameter 'size' is missing"))?;
            let mut st = inner.lock();
            match st.blockdevs.get_mut(node) {
                Some(opts) => {
                    opts.insert("size".into(), size.into());
                    Ok(json!({}))
                }
                None => Err(generic(format!(
                    "Cannot find device='' nor node-name='{node}'"
                ))),
            }
        }
        "device_add" => {
            str_arg(args, "driver")?;
            let id = str_arg(args, "id")?;
            let mut st = inner.lock();
            if st.devices.contains_key(id) {
                return Err(generic(format!("Duplicate device ID '{id}' for device")));
            }
            if let Some(Value::String(drive)) = args.get("drive") {
                if !st.blockdevs.contains_key(drive) {
                    return Err(generic(format!(
                        "Property 'drive' can't find value '{drive}'"
                    )));
                }
            }
            st.devices.insert(id.to_owned(), args.clone());
            Ok(json!({}))
        }
        "device_del" => {
            let id = str_arg(args, "id")?.to_owned();
            {
                let mut st = inner.lock();
                if !st.devices.contains_key(&id) {
                    return Err(("DeviceNotFound", format!("Device '{id}' not found")));
                }
                if !st.unplugging.contains(&id) {
                    st.unplugging.push(id.clone());
                }
            }
            if let Some(delay) = cfg.device_del_delay {
                let inner = inner.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let removed = {
                        let mut st = inner.lock();
                        st.unplugging.retain(|d| d != &id);
                        st.devices.remove(&id).is_some()
                    };
                    if removed {
                        inner.emit(
                            "DEVICE_DELETED",
                            Some(
                                json!({"device": id, "path": format!("/machine/peripheral/{id}")}),
                            ),
                        );
                    }
                });
            }
            Ok(json!({}))
        }
        "query-migrate" => {
            let st = inner.lock();
            let Some(status) = st.migration else {
                return Ok(json!({}));
            };
            let mut info = json!({"status": status});
            let total = match st.migration_started {
                Some(t) if !status.is_terminal() => t.elapsed().as_millis() as u64,
                _ => st.migration_total_ms,
            };
            info["total-time"] = total.into();
            if status == MigrationStatus::Completed {
                info["downtime"] = 1.into();
                info["setup-time"] = 0.into();
                info["ram"] = json!({"transferred": 4096, "remaining": 0, "total": 4096,
                    "duplicate": 0, "normal": 1, "mbps": 0.0, "dirty-sync-count": 1});
            }
            if let Some(e) = &st.migration_error {
                info["error-desc"] = e.clone().into();
            }
            Ok(info)
        }
        "query-migrate-parameters" => {
            let mut p = json!({"max-bandwidth": 134217728u64, "downtime-limit": 300,
                "multifd-channels": 2, "max-postcopy-bandwidth": 0});
            for (k, v) in &inner.lock().parameters {
                p[k] = v.clone();
            }
            Ok(p)
        }
        "migrate-set-capabilities" => {
            let caps = args
                .get("capabilities")
                .and_then(Value::as_array)
                .ok_or_else(|| generic("Parameter 'capabilities' is missing"))?;
            let mut parsed = Vec::new();
            for c in caps {
                let name = c.get("capability").and_then(Value::as_str).unwrap_or("");
                if !MIGRATION_CAPS.contains(&name) {
                    return Err(generic(format!(
                        "Parameter 'capability' does not accept value '{name}'"
                    )));
                }
                parsed.push((
                    name.to_owned(),
                    c.get("state").and_then(Value::as_bool).unwrap_or(false),
                ));
            }
            let mut st = inner.lock();
            if st.migration.is_some_and(|m| !m.is_terminal()) {
                return Err(generic("There's a migration process in progress"));
            }
            st.capabilities.extend(parsed);
            Ok(json!({}))
        }
        "migrate-set-parameters" => {
            let mut st = inner.lock();
            for (k, v) in args {
                st.parameters.insert(k.clone(), v.clone());
            }
            Ok(json!({}))
        }
        "migrate" => {
            let uri = str_arg(args, "uri")?.to_owned();
            {
                let mut st = inner.lock();
                if st.migration.is_some_and(|m| !m.is_terminal()) {
                    return Err(generic("There's a migration process in progress"));
                }
                st.migration_started = Some(std::time::Instant::now());
                st.migration_error = None;
            }
            inner.set_migration(MigrationStatus::Setup);
            tokio::spawn(run_migration(inner.clone(), uri));
            Ok(json!({}))
        }
        "migrate_cancel" => {
            let active = inner.lock().migration.is_some_and(|m| !m.is_terminal());
            if active {
                inner.set_migration(MigrationStatus::Cancelling);
                inner.set_migration(MigrationStatus::Cancelled);
                let mut st = inner.lock();
                st.migration_total_ms = st
                    .migration_started
                    .map(|t| t.elapsed().as_millis() as u64)
                    .unwrap_or(0);
            }
            Ok(json!({}))
        }
        other => Err((
            "CommandNotFound",
            format!("The command {other} has not been found"),
        )),
    }
}

async fn run_migration(inner: Arc<Inner>, uri: String) {
    let step = inner.config.migration_step;
    let still = |inner: &Inner, s: MigrationStatus| inner.lock().migration == Some(s);
    tokio::time::sleep(step).await;
    if !still(&inner, MigrationStatus::Setup) {
        return;
    }
    inner.emit("MIGRATION_PASS", Some(json!({"pass": 1})));
    inner.set_migration(MigrationStatus::Active);
    tokio::time::sleep(step).await;
    if !still(&inner, MigrationStatus::Active) {
        return;
    }
    if inner.config.fail_migration {
        inner.lock().migration_error = Some(format!("Failed to connect to '{uri}' (fake)"));
        inner.set_migration(MigrationStatus::Failed);
    } else {
        let was_running = {
            let mut st = inner.lock();
            let r = st.status == Some(RunState::Running);
            st.status = Some(RunState::Postmigrate);
            r
        };
        if was_running {
            inner.emit("STOP", None);
        }
        inner.set_migration(MigrationStatus::Completed);
    }
    let mut st = inner.lock();
    st.migration_total_ms = st
        .migration_started
        .map(|t| t.elapsed().as_millis() as u64)
        .unwrap_or(0);
}
