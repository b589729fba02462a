//! The QMP client: one UNIX-socket connection, a reader task that routes
//! replies to their callers by command id and events to subscribers.
use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::commands::{Command, QmpCapabilities};
use crate::error::{QmpError, Result};
use crate::types::{Event, Greeting};

/// How many events a slow subscriber may fall behind before it sees
/// [`QmpError::EventsLagged`].
pub const EVENT_BUFFER: usize = 1024;

type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Result<Value>>>>>>;
/// The event sender; the reader drops it when the connection ends so that
/// subscribers see the end of the stream.
type Events = Arc<Mutex<Option<broadcast::Sender<Event>>>>;

/// A connected, negotiated QMP session.
pub struct QmpClient {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    events: Events,
    greeting: Greeting,
    timeout: Duration,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for QmpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QmpClient")
            .field("greeting", &self.greeting)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Options of [`QmpClient::connect_with`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Per-command deadline (also used for the greeting).
    pub timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
        }
    }
}

impl QmpClient {
    /// Connects to a QMP UNIX socket, reads the greeting and negotiates
    /// capabilities, with the default 10 s command timeout.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self> {
        Self::connect_with(path, ConnectOptions::default()).await
    }

    pub async fn connect_with(path: impl AsRef<Path>, opts: ConnectOptions) -> Result<Self> {
        let stream = UnixStream::connect(path.as_ref()).await?;
        Self::handshake(stream, opts).await
    }

    /// Connects, retrying while the socket does not exist or refuses (QEMU
    /// still starting), until `deadline` has passed.
    pub async fn connect_retry(
        path: impl AsRef<Path>,
        opts: ConnectOptions,
        deadline: Duration,
    ) -> Result<Self> {
        let start = tokio::time::Instant::now();
        loop {
            match UnixStream::connect(path.as_ref()).await {
                Ok(stream) => return Self::handshake(stream, opts).await,
                Err(e) if start.elapsed() < deadline => {
                    tracing::trace!("QMP connect {}: {e}; retrying", path.as_ref().display());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn handshake(stream: UnixStream, opts: ConnectOptions) -> Result<Self> {
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting_line = tokio::time::timeout(opts.timeout, greeting_line(&mut lines))
            .await
            .map_err(|_| QmpError::Timeout {
                what: "greeting".into(),
                after: opts.timeout,
            })??;
        let greeting = parse_greeting(&greeting_line)?;

        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let events = Arc::new(Mutex::new(Some(events)));
        let reader = tokio::spawn(read_loop(lines, pending.clone(), events.clone()));
        let client = Self {
            writer: tokio::sync::Mutex::new(write),
            pending,
            next_id: AtomicU64::new(1),
            events,
            greeting,
            timeout: opts.timeout,
            reader,
        };
        client.execute(&QmpCapabilities).await?;
        Ok(client)
    }

    /// The server's greeting (QEMU version, capabilities).
    pub fn greeting(&self) -> &Greeting {
        &self.greeting
    }

    /// The per-command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A new subscription to the events received from now on.
    pub fn events(&self) -> EventStream {
        let rx = match lock(&self.events).as_ref() {
            Some(tx) => tx.subscribe(),
            // Closed: a receiver whose sender is already gone.
            None => broadcast::channel(1).1,
        };
        EventStream { rx }
    }

    /// True once the connection is gone (QEMU exited or closed the socket).
    pub fn is_closed(&self) -> bool {
        lock(&self.pending).is_none()
    }

    /// Runs a typed command with the client's timeout.
    pub async fn execute<C: Command>(&self, cmd: &C) -> Result<C::Response> {
        self.execute_timeout(cmd, self.timeout).await
    }

    /// Runs a typed command with an explicit timeout.
    pub async fn execute_timeout<C: Command>(
        &self,
        cmd: &C,
        timeout: Duration,
    ) -> Result<C::Response> {
        let args = serde_json::to_value(cmd).map_err(|source| QmpError::Json {
            what: format!("{} arguments", C::NAME),
            source,
        })?;
        let ret = self.execute_raw_timeout(C::NAME, args, timeout).await?;
        serde_json::from_value(ret).map_err(|source| QmpError::Json {
            what: format!("{} reply", C::NAME),
            source,
        })
    }

    /// Runs any command by name; `args` `null` or `{}` sends no arguments.
    pub async fn execute_raw(&self, name: &str, args: Value) -> Result<Value> {
        self.execute_raw_timeout(name, args, self.timeout).await
    }

    pub async fn execute_raw_timeout(
        &self,
        name: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value> {
        self.execute_with_fd(name, args, timeout, None).await
    }

    /// Hands QEMU the descriptor `fd` under `fdname` (QMP `getfd`: the descriptor
    /// travels as SCM_RIGHTS ancillary data with the command itself), for
    /// `netdev_add tap,fd=<fdname>` and the like. QEMU keeps its own copy.
    pub async fn send_fd(&self, fdname: &str, fd: BorrowedFd<'_>) -> Result<()> {
        self.execute_with_fd(
            "getfd",
            json!({ "fdname": fdname }),
            self.timeout,
            Some(fd.as_raw_fd()),
        )
        .await
        .map(drop)
    }

    async fn execute_with_fd(
        &self,
        name: &str,
        args: Value,
        timeout: Duration,
        fd: Option<RawFd>,
    ) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = Map::new();
        msg.insert("execute".into(), name.into());
        match args {
            Value::Null => {}
            Value::Object(m) if m.is_empty() => {}
            Value::Object(m) => {
                msg.insert("arguments".into(), Value::Object(m));
            }
            other => {
                return Err(QmpError::Protocol(format!(
                    "arguments of {name} must be an object, not {other}"
                )))
            }
        }
        msg.insert("id".into(), json!(id));
        let mut line =
            serde_json::to_vec(&Value::Object(msg)).map_err(|source| QmpError::Json {
                what: name.into(),
                source,
            })?;
        line.push(b'\n');

        let (tx, rx) = oneshot::channel();
        match lock(&self.pending).as_mut() {
            Some(p) => p.insert(id, tx),
            None => return Err(QmpError::Disconnected),
        };
        tracing::debug!(command = name, id, "QMP execute");
        let sent = async {
            let mut w = self.writer.lock().await;
            let mut rest = &line[..];
            if let Some(fd) = fd {
                let n = send_with_fd(w.as_ref(), rest, fd).await?;
                rest = &rest[n..];
            }
            w.write_all(rest).await?;
            w.flush().await
        };
        let result = tokio::time::timeout(timeout, async {
            if let Err(e) = sent.await {
                return Err(match e.kind() {
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                        QmpError::Disconnected
                    }
                    _ => QmpError::Io(e),
                });
            }
            rx.await.unwrap_or(Err(QmpError::Disconnected))
        })
        .await;
        match result {
            Ok(r) => r.map_err(|e| match e {
                QmpError::Command { class, desc, .. } => QmpError::Command {
                    command: name.into(),
                    class,
                    desc,
                },
                e => e,
            }),
            Err(_) => {
                if let Some(p) = lock(&self.pending).as_mut() {
                    p.remove(&id);
                }
                Err(QmpError::Timeout {
                    what: format!("command {name}"),
                    after: timeout,
                })
            }
        }
    }
}

/// Sends (the start of) `bytes` with `fd` attached; returns how many bytes went.
async fn send_with_fd(stream: &UnixStream, bytes: &[u8], fd: RawFd) -> std::io::Result<usize> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    loop {
        stream.writable().await?;
        let iov = [std::io::IoSlice::new(bytes)];
        let fds = [fd];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        match stream.try_io(tokio::io::Interest::WRITABLE, || {
            sendmsg::<UnixAddr>(
                stream.as_raw_fd(),
                &iov,
                &cmsg,
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        }) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Drop for QmpClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The greeting line. Events a previous client left unread in the monitor's output (QEMU
/// flushes them to the next connection, e.g. the `RESUME` of a `cont` whose client hung up
/// at once) may come first: a few are skipped.
async fn greeting_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
) -> Result<String> {
    const STALE_EVENTS: usize = 16;
    for _ in 0..STALE_EVENTS {
        let line = lines.next_line().await?.ok_or(QmpError::Disconnected)?;
        let stale_event = serde_json::from_str::<Value>(&line)
            .is_ok_and(|v| v.get("event").is_some() && v.get("QMP").is_none());
        if !stale_event {
            return Ok(line);
        }
        tracing::debug!(%line, "QMP: an event before the greeting, skipped");
    }
    Err(QmpError::Protocol(format!(
        "no QMP greeting within the first {STALE_EVENTS} lines"
    )))
}

fn parse_greeting(line: &str) -> Result<Greeting> {
    let v: Value = serde_json::from_str(line)
        .map_err(|e| QmpError::Protocol(format!("greeting is not JSON ({e}): {line}")))?;
    let g = v
        .get("QMP")
        .ok_or_else(|| QmpError::Protocol(format!("no QMP greeting: {line}")))?;
    serde_json::from_value(g.clone())
        .map_err(|e| QmpError::Protocol(format!("bad QMP greeting ({e}): {line}")))
}

async fn read_loop(
    mut lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    pending: Pending,
    events: Events,
) {
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!("QMP read error: {e}");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let msg: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("QMP: unparsable message ({e}): {line}");
                continue;
            }
        };
        if msg.get("event").is_some() {
            match serde_json::from_value::<Event>(msg) {
                Ok(ev) => {
                    tracing::debug!(event = %ev.name, "QMP event");
                    if let Some(tx) = lock(&events).as_ref() {
                        let _ = tx.send(ev);
                    }
                }
                Err(e) => tracing::warn!("QMP: bad event ({e}): {line}"),
            }
            continue;
        }
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            tracing::warn!("QMP: reply without a known id: {line}");
            continue;
        };
        let reply = if let Some(ret) = msg.get("return") {
            Ok(ret.clone())
        } else if let Some(err) = msg.get("error") {
            Err(QmpError::Command {
                command: String::new(),
                class: err
                    .get("class")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into(),
                desc: err.get("desc").and_then(Value::as_str).unwrap_or("").into(),
            })
        } else {
            Err(QmpError::Protocol(format!(
                "reply without return or error: {line}"
            )))
        };
        let tx = lock(&pending).as_mut().and_then(|p| p.remove(&id));
        match tx {
            Some(tx) => {
                let _ = tx.send(reply);
            }
            None => tracing::debug!(id, "QMP reply for a command nobody waits for (timed out?)"),
        }
    }
    // Connection gone: fail whoever waits, refuse new commands. Dropping the
    // senders makes their receivers yield Disconnected.
    lock(&pending).take();
    lock(&events).take();
}

/// A subscription to QMP events.
#[derive(Debug)]
pub struct EventStream {
    rx: broadcast::Receiver<Event>,
}

impl EventStream {
    /// The next event; `Disconnected` once the connection is closed and all
    /// buffered events were read.
    pub async fn recv(&mut self) -> Result<Event> {
        match self.rx.recv().await {
            Ok(ev) => Ok(ev),
            Err(broadcast::error::RecvError::Closed) => Err(QmpError::Disconnected),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                Err(QmpError::EventsLagged { skipped: n })
            }
        }
    }

    /// Waits up to `timeout` for an event matching `pred`, dropping others.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Result<Event> {
        tokio::time::timeout(timeout, async {
            loop {
                match self.recv().await {
                    Ok(ev) if pred(&ev) => return Ok(ev),
                    Ok(_) | Err(QmpError::EventsLagged { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await
        .map_err(|_| QmpError::Timeout {
            what: "event".into(),
            after: timeout,
        })?
    }

    /// Waits up to `timeout` for an event named `name`.
    pub async fn wait_for_name(&mut self, name: &str, timeout: Duration) -> Result<Event> {
        self.wait_for(timeout, |e| e.name == name).await
    }
}
