//! Object storage's address inside every VPC: [`S3_VPC_ADDRESS`], port 80, answers in
//! every VPC router namespace realised on this host, so a guest with no elastic IP or NAT
//! gateway reaches the S3 gateway too (like OpenStack's metadata proxy).
//!
//! A guest's default route goes to its subnet's gateway, which lives in its VPC's router
//! namespace; there the address sits on `lo` (scope host: never a source the router
//! picks for its own traffic), so the router delivers it locally. Nothing in the router's
//! nft table drops it (its chains only NAT and mark, and a mark only picks a way out
//! after the `local` table), and `lo` addresses are the agent's, not the realiser's.
//!
//! For each such namespace the agent holds a TCP listener made *inside* it (a thread
//! `setns(2)`es into `/run/netns/<ns>` and binds; the socket stays in that namespace while
//! the agent stays in its own) and passes every connection on to the S3 gateway, from the
//! agent's own namespace, copying both ways. At most [`MAX_CONNECTIONS`] connections per
//! namespace are served at once; further ones wait in the listen backlog.
//!
//! The gateway is the URL in the store under [`S3_ENDPOINT_KEY`] (`http://host:port`),
//! read when connections come and kept for [`ENDPOINT_TTL`]; with the store away the last
//! one known is used. No key: object storage is off, and connections are accepted and
//! closed at once (the listener stays, so turning it on needs nothing here).
//!
//! The network reconciler tells [`S3Service::want`] the router namespaces of the plan it
//! has just realised (every pass); [`S3Service::run`] follows them without holding the
//! reconciler up: it starts a listener where one is missing or where the namespace was
//! made again under the same name, puts the address back if someone removed it, and stops
//! the listener (and removes the address, if the namespace is still there) when the
//! namespace leaves the plan. On agent shutdown the listeners stop and the addresses stay
//! for the next agent. The pure parts are [`router_namespaces`], [`diff`] and
//! [`parse_endpoint`].

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use yunhan_model::S3_VPC_ADDRESS;
use yunhan_net::HostPlan;
use yunhan_store::objects::{Objects, S3_ENDPOINT_KEY};

use crate::ip::{ip, parse_json, IpError, Link};

/// The port object storage answers on at [`S3_VPC_ADDRESS`].
pub const S3_VPC_PORT: u16 = 80;
/// Most connections served at once per router namespace (a guest cannot exhaust the
/// agent's descriptors).
pub const MAX_CONNECTIONS: usize = 256;
/// How long the gateway's URL read from the store is used before it is read again.
pub const ENDPOINT_TTL: Duration = Duration::from_secs(3);
/// How long a store read of the gateway's URL may take.
const STORE_DEADLINE: Duration = Duration::from_secs(2);
/// How long connecting to the gateway may take.
const CONNECT_DEADLINE: Duration = Duration::from_secs(5);
/// How often the listeners are checked without a pass of the reconciler.
const RECHECK: Duration = Duration::from_secs(5);
/// At most one warning about an unreachable gateway per this long.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// Where `ip netns` keeps named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// A namespace's identity: device and inode of its nsfs file. A namespace deleted and
/// made again under the same name has another one.
pub type NsId = (u64, u64);

/// The router namespaces of `plan` as the realiser names them on this host (with the
/// target's `router_prefix`).
pub fn router_namespaces(plan: &HostPlan, router_prefix: &str) -> BTreeSet<String> {
    (plan.vpcs.iter())
        .map(|v| format!("{router_prefix}{}", v.router.netns))
        .collect()
}

/// What to do to the listeners: stop some, start others (a namespace made again is in
/// both: its listener is in the old one).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub stop: Vec<String>,
    pub start: Vec<String>,
}

/// The listeners to stop and to start, given the `wanted` namespaces, the `running`
/// listeners (namespace → the identity of the namespace it was made in) and the
/// namespaces `present` now (name → identity). A listener runs exactly in each wanted
/// namespace that is present, in that very namespace.
pub fn diff(
    wanted: &BTreeSet<String>,
    running: &BTreeMap<String, NsId>,
    present: &BTreeMap<String, NsId>,
) -> Changes {
    let stop = (running.iter())
        .filter(|(ns, id)| !wanted.contains(*ns) || present.get(*ns) != Some(id))
        .map(|(ns, _)| ns.clone())
        .collect();
    let start = (wanted.iter())
        .filter(|ns| present.contains_key(*ns) && running.get(*ns) != present.get(*ns))
        .cloned()
        .collect();
    Changes { stop, start }
}

/// Where the S3 gateway listens, from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// A name or an address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

/// Why a gateway URL is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("not a URL with a scheme: {0:?}")]
    NoScheme(String),
    #[error("only http:// gateways are supported, not {0}://")]
    Scheme(String),
    #[error("no host in {0:?}")]
    NoHost(String),
    #[error("user information in a gateway URL is not supported")]
    UserInfo,
    #[error("bad host {0:?}")]
    Host(String),
    #[error("bad port {0:?}")]
    Port(String),
}

/// The host and port of an `http://host[:port][/path]` URL (port 80 by default; IPv6
/// addresses in brackets).
pub fn parse_endpoint(url: &str) -> Result<Endpoint, EndpointError> {
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| EndpointError::NoScheme(url.to_string()))?;
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(EndpointError::Scheme(scheme.to_string()));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(EndpointError::UserInfo);
    }
    let (host, port) = split_authority(authority)?;
    if host.is_empty() {
        return Err(EndpointError::NoHost(url.to_string()));
    }
    let port = match port {
        None => 80,
        Some(p) => (p.parse::<u16>().ok())
            .filter(|p| *p != 0)
            .ok_or_else(|| EndpointError::Port(p.to_string()))?,
    };
    Ok(Endpoint {
        host: host.to_string(),
        port,
    })
}

/// `host[:port]` or `[v6][:port]`.
fn split_authority(a: &str) -> Result<(&str, Option<&str>), EndpointError> {
    if let Some(v6) = a.strip_prefix('[') {
        let (host, rest) = v6
            .split_once(']')
            .ok_or_else(|| EndpointError::Host(a.to_string()))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(EndpointError::Host(host.to_string()));
        }
        return match rest {
            "" => Ok((host, None)),
            r => (r.strip_prefix(':'))
                .map(|p| (host, Some(p)))
                .ok_or_else(|| EndpointError::Host(a.to_string())),
        };
    }
    let (host, port) = match a.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (a, None),
    };
    let fine = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_';
    if !host.chars().all(fine) {
        return Err(EndpointError::Host(host.to_string()));
    }
    Ok((host, port))
}

/// What went wrong with one namespace's listener.
#[derive(Debug, thiserror::Error)]
pub enum S3ServiceError {
    #[error("namespace {ns}: {source}")]
    Netns { ns: String, source: io::Error },
    #[error("binding {addr} in {ns}: {source}")]
    Bind {
        ns: String,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error(transparent)]
    Ip(#[from] IpError),
    #[error("the listener thread of {0} panicked")]
    Thread(String),
}

/// Object storage's address in this host's VPC router namespaces (see the module's doc).
pub struct S3Service {
    wanted: watch::Sender<BTreeSet<String>>,
    /// The namespaces with a listener now.
    serving: Mutex<BTreeSet<String>>,
}

impl Default for S3Service {
    fn default() -> Self {
        S3Service::new()
    }
}

/// One namespace's listener; dropping it stops the listener and its connections.
struct Listening {
    id: NsId,
    task: JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl S3Service {
    /// A service that serves nowhere until told [`S3Service::want`] and [`S3Service::run`].
    pub fn new() -> S3Service {
        S3Service {
            wanted: watch::Sender::new(BTreeSet::new()),
            serving: Mutex::new(BTreeSet::new()),
        }
    }

    /// The router namespaces to serve in (all of them, after each realised plan): never
    /// waits; [`S3Service::run`] catches up.
    pub fn want(&self, namespaces: BTreeSet<String>) {
        self.wanted.send_replace(namespaces);
    }

    /// The namespaces a listener serves in now.
    pub fn serving(&self) -> BTreeSet<String> {
        lock(&self.serving).clone()
    }

    /// Follows [`S3Service::want`] until `shutdown` (see the module's doc).
    pub async fn run(&self, objects: Objects, mut shutdown: watch::Receiver<bool>) {
        let gateway = Arc::new(Gateway::new(objects));
        let mut wanted = self.wanted.subscribe();
        let mut running: BTreeMap<String, Listening> = BTreeMap::new();
        let mut failing: BTreeMap<String, String> = BTreeMap::new();
        while !*shutdown.borrow() {
            let want = wanted.borrow_and_update().clone();
            sync(&want, &mut running, &mut failing, &gateway).await;
            *lock(&self.serving) = running.keys().cloned().collect();
            tokio::select! {
                _ = wanted.changed() => {}
                _ = tokio::time::sleep(RECHECK) => {}
                r = shutdown.changed() => if r.is_err() { break },
            }
        }
        lock(&self.serving).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One pass: stop, check the address of the kept listeners, start.
async fn sync(
    wanted: &BTreeSet<String>,
    running: &mut BTreeMap<String, Listening>,
    failing: &mut BTreeMap<String, String>,
    gateway: &Arc<Gateway>,
) {
    let present = present(wanted.iter().chain(running.keys()));
    let ids = running.iter().map(|(ns, l)| (ns.clone(), l.id)).collect();
    let changes = diff(wanted, &ids, &present);
    for ns in &changes.stop {
        running.remove(ns);
        tracing::info!(netns = %ns, "object storage address: listener stopped");
        if !wanted.contains(ns) && present.contains_key(ns) {
            if let Err(e) = remove_address(ns).await {
                tracing::warn!(netns = %ns, error = %e, "cannot remove the object storage address");
            }
        }
    }
    failing.retain(|ns, _| wanted.contains(ns));
    for ns in running.keys() {
        let r = ensure_address(ns).await.map(|added| {
            if added {
                tracing::info!(netns = %ns, "object storage address put back");
            }
        });
        report(failing, ns, r);
    }
    for ns in changes.start {
        let r = start(&ns, gateway.clone()).await.map(|l| {
            tracing::info!(netns = %ns, "object storage address: listening");
            running.insert(ns.clone(), l);
        });
        report(failing, &ns, r);
    }
}

/// Logs a namespace's failure once (until it changes), and its recovery.
fn report(failing: &mut BTreeMap<String, String>, ns: &str, r: Result<(), S3ServiceError>) {
    match r {
        Ok(()) => {
            if failing.remove(ns).is_some() {
                tracing::info!(netns = %ns, "object storage address: recovered");
            }
        }
        Err(e) => {
            let e = e.to_string();
            if failing.get(ns) != Some(&e) {
                tracing::warn!(netns = %ns, error = %e, "object storage address: will retry");
                failing.insert(ns.to_string(), e);
            }
        }
    }
}

/// The identity of each of these namespaces that exists.
fn present<'a>(names: impl Iterator<Item = &'a String>) -> BTreeMap<String, NsId> {
    names
        .filter_map(|ns| {
            let m = std::fs::metadata(netns_path(ns)).ok()?;
            Some((ns.clone(), (m.dev(), m.ino())))
        })
        .collect()
}

fn netns_path(ns: &str) -> std::path::PathBuf {
    std::path::Path::new(NETNS_DIR).join(ns)
}

/// The address on `lo`, then a listener bound to it inside `ns`, served on this runtime.
async fn start(ns: &str, gateway: Arc<Gateway>) -> Result<Listening, S3ServiceError> {
    ensure_address(ns).await?;
    let addr = SocketAddr::from((S3_VPC_ADDRESS, S3_VPC_PORT));
    let name = ns.to_string();
    let bound = tokio::task::spawn_blocking(move || bind_in_netns(&name, addr))
        .await
        .map_err(|_| S3ServiceError::Thread(ns.to_string()))??;
    let (listener, id) = bound;
    let listener = TcpListener::from_std(listener).map_err(|source| S3ServiceError::Bind {
        ns: ns.to_string(),
        addr,
        source,
    })?;
    let task = tokio::spawn(serve(listener, gateway, MAX_CONNECTIONS));
    Ok(Listening { id, task })
}

/// A non-blocking listener on `addr` made inside namespace `ns` by a thread of its own
/// (which then ends: the agent's threads stay in the agent's namespace), and the identity
/// of the namespace it is in.
fn bind_in_netns(
    ns: &str,
    addr: SocketAddr,
) -> Result<(std::net::TcpListener, NsId), S3ServiceError> {
    let path = netns_path(ns);
    let name = ns.to_string();
    std::thread::spawn(move || {
        let netns_err = |source| S3ServiceError::Netns {
            ns: name.clone(),
            source,
        };
        let bind_err = |source| S3ServiceError::Bind {
            ns: name.clone(),
            addr,
            source,
        };
        let f = std::fs::File::open(&path).map_err(netns_err)?;
        let m = f.metadata().map_err(netns_err)?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| netns_err(io::Error::from(e)))?;
        let l = std::net::TcpListener::bind(addr).map_err(bind_err)?;
        l.set_nonblocking(true).map_err(bind_err)?;
        Ok((l, (m.dev(), m.ino())))
    })
    .join()
    .map_err(|_| S3ServiceError::Thread(ns.to_string()))?
}

/// Whether `ip -j addr show dev lo` output lists the address as a /32.
fn lists_address(links: &[Link], addr: Ipv4Addr) -> bool {
    links.iter().any(|l| l.holds(addr, 32))
}

/// Whether [`S3_VPC_ADDRESS`]/32 is on `lo` in `ns`.
async fn has_address(ns: &str) -> Result<bool, S3ServiceError> {
    let args = ["-j", "addr", "show", "dev", "lo"];
    let links: Vec<Link> = parse_json(&args, &ip_in(ns, &args).await?)?;
    Ok(lists_address(&links, S3_VPC_ADDRESS))
}

/// [`S3_VPC_ADDRESS`]/32 on `lo` in `ns` (scope host); true if it had to be added.
async fn ensure_address(ns: &str) -> Result<bool, S3ServiceError> {
    if has_address(ns).await? {
        return Ok(false);
    }
    let cidr = format!("{S3_VPC_ADDRESS}/32");
    ip_in(ns, &["addr", "add", &cidr, "dev", "lo", "scope", "host"]).await?;
    Ok(true)
}

/// Removes [`S3_VPC_ADDRESS`] from `lo` in `ns` (if it is there).
async fn remove_address(ns: &str) -> Result<(), S3ServiceError> {
    if !has_address(ns).await? {
        return Ok(());
    }
    let cidr = format!("{S3_VPC_ADDRESS}/32");
    ip_in(ns, &["addr", "del", &cidr, "dev", "lo"])
        .await
        .map(drop)
}

/// `ip -n ns args…` off the runtime's threads; its standard output.
async fn ip_in(ns: &str, args: &[&str]) -> Result<String, S3ServiceError> {
    let ns = ns.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let run = move || {
        ip(
            Some(&ns),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let joined = tokio::task::spawn_blocking(run).await;
    Ok(joined.map_err(|_| S3ServiceError::Thread("ip".into()))??)
}

/// Accepts connections while fewer than `cap` are open and passes each on to the gateway.
/// Aborting the task closes the listener and every connection.
async fn serve(listener: TcpListener, gateway: Arc<Gateway>, cap: usize) {
    let permits = Arc::new(Semaphore::new(cap));
    let mut conns = JoinSet::new();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let guest = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, or a connection reset before it was accepted.
                tracing::debug!(error = %e, "object storage address: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        conns.spawn(proxy(guest, gateway.clone(), permit));
    }
}

/// One guest connection, copied both ways to the gateway (closed at once when object
/// storage is off or the gateway cannot be reached).
async fn proxy(mut guest: TcpStream, gateway: Arc<Gateway>, _permit: OwnedSemaphorePermit) {
    let Some(ep) = gateway.endpoint().await else {
        return;
    };
    let connect = TcpStream::connect((ep.host.as_str(), ep.port));
    let mut upstream = match tokio::time::timeout(CONNECT_DEADLINE, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return gateway.unreachable(&ep, &e.to_string()),
        Err(_) => return gateway.unreachable(&ep, "timed out"),
    };
    let _ = guest.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut guest, &mut upstream).await {
        tracing::debug!(error = %e, "object storage connection ended");
    }
}

/// The gateway's URL as the store has it, read at most every [`ENDPOINT_TTL`].
struct Gateway {
    objects: Objects,
    /// When it was last read, and what it said (None: object storage is off).
    cached: tokio::sync::Mutex<Option<(Instant, Option<Endpoint>)>>,
    warned: Mutex<Option<Instant>>,
}

/// What a read of [`S3_ENDPOINT_KEY`] found.
enum Lookup<'a> {
    Found(&'a [u8]),
    Absent,
    /// The store did not answer (in time).
    Unreachable,
}

/// The gateway after a read: the key's URL, none without a key, the last one known when
/// the store is away. A bad URL is an error (and means none).
fn endpoint_after(
    lookup: Lookup,
    last: Option<Endpoint>,
) -> Result<Option<Endpoint>, EndpointError> {
    match lookup {
        Lookup::Found(v) => parse_endpoint(&String::from_utf8_lossy(v)).map(Some),
        Lookup::Absent => Ok(None),
        Lookup::Unreachable => Ok(last),
    }
}

impl Gateway {
    fn new(objects: Objects) -> Gateway {
        Gateway {
            objects,
            cached: tokio::sync::Mutex::new(None),
            warned: Mutex::new(None),
        }
    }

    /// Where to pass connections to now (None: object storage is off).
    async fn endpoint(&self) -> Option<Endpoint> {
        let mut cached = self.cached.lock().await;
        if let Some((at, ep)) = &*cached {
            if at.elapsed() < ENDPOINT_TTL {
                return ep.clone();
            }
        }
        let last = cached.as_ref().and_then(|(_, ep)| ep.clone());
        let read = tokio::time::timeout(STORE_DEADLINE, self.objects.store().get(S3_ENDPOINT_KEY));
        let read = read.await;
        let lookup = match &read {
            Ok(Ok(Some(kv))) => Lookup::Found(&kv.value),
            Ok(Ok(None)) => Lookup::Absent,
            Ok(Err(_)) | Err(_) => Lookup::Unreachable,
        };
        let ep = endpoint_after(lookup, last).unwrap_or_else(|e| {
            tracing::warn!(key = S3_ENDPOINT_KEY, error = %e, "unusable object storage endpoint");
            None
        });
        *cached = Some((Instant::now(), ep.clone()));
        ep
    }

    /// Says (at most every [`WARN_EVERY`]) that the gateway did not take a connection.
    fn unreachable(&self, ep: &Endpoint, why: &str) {
        let mut warned = lock(&self.warned);
        if warned.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        *warned = Some(Instant::now());
        tracing::warn!(host = %ep.host, port = ep.port, error = why, "object storage gateway unreachable");
    }
}

#[cfg(test)]
mod tests;
