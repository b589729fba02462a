//! The plumbing on this machine, without the API or the controller: load balancer documents
//! (with the status those would give them) in a MemStore, reconciled by [`LbAgent`] under
//! `--netns` = a namespace standing in for the host, where the test plays the VPC: the
//! port's host end gets the gateway's address, and a small HTTP server on it is the
//! members. Needs root, `ip` and HAProxy (skipped otherwise). Every name starts with
//! `ylb<pid>`; a guard deletes those namespaces, also when the test panics. Vortex is a
//! stand-in script here ([`FAKE_VORTEX`]): what the agent does with it, not what it does.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use yunhan_model::{
    HealthKind, HealthMonitor, LbAlgorithm, LbMember, LbProtocol, Listener, LoadBalancerSpec,
    MemberHealth, Metadata, Project, ProjectSpec, Resource,
};
use yunhan_store::MemStore;

use super::*;

struct Namespaces(String);
impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in namespace::list(&self.0).unwrap_or_default() {
            let _ = namespace::delete(&ns);
        }
    }
}

fn sh(args: &[&str]) {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// An HTTP server answering `hello` to anything, on `addr` in `ns`, until dropped.
struct Server(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);
impl Server {
    fn start(ns: &str, addr: &str) -> Server {
        let l = in_ns(ns, || TcpListener::bind(addr).unwrap());
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                        let _ = c.read(&mut [0; 1024]);
                        let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Server(stop, Some(t))
    }
}
impl Drop for Server {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

fn get(ns: &str, addr: &str) -> String {
    in_ns(ns, || {
        let mut c = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    })
}

fn member(port: u16, weight: u16) -> LbMember {
    LbMember {
        address: "10.77.0.1".into(),
        port,
        weight,
        ..Default::default()
    }
}

fn monitor(kind: HealthKind) -> Option<HealthMonitor> {
    Some(HealthMonitor {
        kind,
        path: "/health".into(),
        interval_secs: 1,
        timeout_secs: 1,
        rise: 1,
        fall: 1,
        ..Default::default()
    })
}

/// `web` (HTTP: a member and a drained one) and `raw` (TCP by least connections, so
/// HAProxy's: a member and one nobody serves).
fn spec() -> LoadBalancerSpec {
    let listener = |name: &str, protocol, port, members, health| Listener {
        name: name.into(),
        protocol,
        port,
        members,
        health,
        ..Default::default()
    };
    LoadBalancerSpec {
        subnet: "sn-test".into(),
        external: false,
        replicas: None,
        listeners: vec![
            listener(
                "web",
                LbProtocol::Http,
                80,
                vec![member(8080, 1), member(8081, 0)],
                monitor(HealthKind::Http),
            ),
            listener(
                "raw",
                LbProtocol::Tcp,
                9000,
                vec![member(8080, 1), member(8082, 1)],
                monitor(HealthKind::Tcp),
            ),
        ]
        .into_iter()
        .map(|mut l| {
            if l.protocol == LbProtocol::Tcp {
                l.algorithm = LbAlgorithm::LeastConnections;
            }
            l
        })
        .collect(),
    }
}

/// `fast`: plain TCP, so Vortex's, with two members (at two addresses).
fn fast() -> Listener {
    let at = |address: &str| LbMember {
        address: address.into(),
        port: 8080,
        weight: 1,
        ..Default::default()
    };
    Listener {
        name: "fast".into(),
        protocol: LbProtocol::Tcp,
        port: 9100,
        members: vec![at("10.77.0.1"), at("10.77.0.2")],
        health: monitor(HealthKind::Tcp),
        ..Default::default()
    }
}

/// Vortex's stand-in (`<exe> vortex … --status-file <file> …`): it notes its arguments and
/// namespace beside its status file, fails while `<state>/vortex-fails` exists, and says
/// `fast`'s first member is up and its second down.
const FAKE_VORTEX: &str = r#"#!/bin/sh
echo "$@" > "$STATE/vortex-args"
ip netns identify $$ > "$STATE/vortex-netns"
while [ $# -gt 0 ]; do
    case "$1" in --status-file) status="$2" ;; esac
    shift
done
if [ -e "$STATE/vortex-fails" ]; then
    echo "error: cannot attach to eth0: $(cat "$STATE/vortex-fails")" >&2
    exit 1
fi
trap 'exit 0' TERM
cat > "$status.new" <<END
{"config_revision": 1, "attach": "tc", "vips": [{"name": "fast", "address": "10.77.0.10",
 "port": 9100, "packets": 70, "bytes": 700, "flows": 7, "backends": [
  {"address": "10.77.0.1", "port": 8080, "id": 0, "weight": 1, "healthy": true, "packets": 70},
  {"address": "10.77.0.2", "port": 8080, "id": 1, "weight": 1, "healthy": false, "packets": 0}]}],
 "counters": {}, "conntrack_entries": 7}
END
mv "$status.new" "$status"
while :; do sleep 0.1; done
"#;

fn doc(id: &str, ip_last: u8, device: &str, spec: LoadBalancerSpec) -> Doc<LoadBalancer> {
    Resource {
        metadata: Metadata::new(id, id, Some("p-test".into())),
        spec,
        status: LoadBalancerStatus {
            host: "h-test".into(),
            address: format!("10.77.0.{ip_last}"),
            device: device.into(),
            mac: format!("02:00:0a:4d:00:{ip_last:02x}"),
            prefix_len: 24,
            gateway: "10.77.0.1".into(),
            ..Default::default()
        },
    }
}

fn healths(s: &LoadBalancerStatus, l: usize) -> Vec<MemberHealth> {
    s.listeners
        .get(l)
        .map(|l| l.members.iter().map(|m| m.health).collect())
        .unwrap_or_default()
}

fn runnable() -> bool {
    let ok = nix::unistd::geteuid().is_root() && Path::new(process::HAPROXY).exists();
    if !ok {
        eprintln!("skipped: needs root and {}", process::HAPROXY);
    }
    ok
}

/// A host namespace (the agent's `--netns`) with a stale load balancer namespace in it, a
/// store, an agent.
struct Fixture {
    pid: u32,
    host: String,
    objects: Objects,
    agent: Arc<LbAgent>,
    state: tempfile::TempDir,
    _cleanup: Namespaces,
}

impl Fixture {
    fn new() -> Fixture {
        let pid = std::process::id();
        let cleanup = Namespaces(format!("ylb{pid}-"));
        let host = format!("ylb{pid}-h");
        sh(&["ip", "netns", "add", &host]);
        sh(&["ip", "-n", &host, "link", "set", "lo", "up"]);
        sh(&["ip", "netns", "add", &format!("{host}-ynl-0000000000")]);
        let state = tempfile::tempdir().unwrap();
        let exe = state.path().join("fake-vortex");
        let script = FAKE_VORTEX.replace("$STATE", &state.path().to_string_lossy());
        std::fs::write(&exe, script).unwrap();
        sh(&["chmod", "755", &exe.to_string_lossy()]);
        let node = Node::new(state.path(), Some(host.clone())).with_vortex_exe(exe);
        Fixture {
            agent: Arc::new(LbAgent {
                host_id: "h-test".into(),
                node: Arc::new(node),
                written: Mutex::default(),
            }),
            objects: Objects::new(Arc::new(MemStore::new())),
            pid,
            host,
            state,
            _cleanup: cleanup,
        }
    }

    /// A load balancer `lb-<tag><pid>` on `host` at 10.77.0.`ip_last`; its id.
    async fn create(&self, tag: &str, ip_last: u8, spec: LoadBalancerSpec, host: &str) -> String {
        let (id, pid) = (format!("lb-{tag}{}", self.pid), self.pid);
        let mut d = doc(&id, ip_last, &format!("ylb{pid}{tag}"), spec);
        d.status.host = host.into();
        if self
            .objects
            .get::<Project>("p-test")
            .await
            .unwrap()
            .is_none()
        {
            let project = Resource {
                metadata: Metadata::new("p-test", "p-test", None),
                spec: ProjectSpec::default(),
                status: Default::default(),
            };
            self.objects.create::<Project>(project).await.unwrap();
        }
        self.objects.create::<LoadBalancer>(d).await.unwrap();
        id
    }

    /// The test plays the VPC bridge and the gateway on the port's host end.
    async fn plug(&self, id: &str) {
        let dev = self.status_now(id).await.device;
        sh(&[
            "ip",
            "-n",
            &self.host,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            &dev,
        ]);
        sh(&["ip", "-n", &self.host, "link", "set", &dev, "up"]);
    }

    async fn status_now(&self, id: &str) -> LoadBalancerStatus {
        let doc = self.objects.get::<LoadBalancer>(id).await.unwrap();
        doc.unwrap().status
    }

    /// Passes (when `pass`) until the status is `ok`.
    async fn until(
        &self,
        id: &str,
        what: &str,
        pass: bool,
        ok: impl Fn(&LoadBalancerStatus) -> bool,
    ) -> LoadBalancerStatus {
        let mut last = LoadBalancerStatus::default();
        for _ in 0..60 {
            if pass {
                self.agent.reconcile(&self.objects).await.unwrap();
            }
            last = self.status_now(id).await;
            if ok(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("{id}: never {what}: {last:#?}");
    }

    fn master(&self, id: &str) -> u32 {
        lock(&self.agent.node.state).local[id]
            .proc
            .as_ref()
            .unwrap()
            .pid()
    }

    fn netns(&self, id: &str) -> String {
        self.agent.node.netns(id)
    }

    fn vortex(&self, id: &str) -> Option<u32> {
        let st = lock(&self.agent.node.state);
        st.local[id].vortex.proc.as_ref().map(process::Vortex::pid)
    }

    /// A file of the state directory (`lb/<id>/…` or the stand-in's).
    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.state.path().join(path)).unwrap_or_default()
    }
}

fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn load_balancers_are_realised_reloaded_reported_and_removed() {
    if !runnable() {
        return;
    }
    let f = Fixture::new();
    let id = f.create("a", 10, spec(), "h-test").await;
    let mut bad_spec = spec();
    bad_spec.listeners[0].name = "a b".into(); // the API refuses it; HAProxy must too
    let bad = f.create("b", 20, bad_spec, "h-test").await;
    let elsewhere = f.create("c", 30, spec(), "h-other").await;

    f.agent.reconcile(&f.objects).await.unwrap();
    assert!(
        namespace::list(&format!("{}-ynl-0000", f.host))
            .unwrap()
            .is_empty(),
        "stale"
    );
    assert!(f.netns(&id).starts_with(&format!("{}-ynl-", f.host)));
    assert!(!namespace::exists(&f.netns(&elsewhere)));
    f.plug(&id).await;
    let members = Server::start(&f.host, "10.77.0.1:8080");
    let s = serves(&f, &id).await;
    fails_alone(&f, &bad).await;
    reloads(&f, &id, &s).await;
    keeps_serving_what_fails_to_load(&f, &id).await;
    probes_health(&f, &id, members).await;
    serves_layer_4_with_vortex(&f, &id).await;
    for id in [&id, &bad] {
        let d = f.objects.get::<LoadBalancer>(id).await.unwrap().unwrap();
        f.objects.delete::<LoadBalancer>(&d).await.unwrap();
    }
    let (master, vortex) = (f.master(&id), f.vortex(&id).unwrap());
    f.agent.reconcile(&f.objects).await.unwrap();
    assert!(!namespace::exists(&f.netns(&id)));
    assert!(!alive(master) && !alive(vortex));
    assert!(!f.state.path().join("lb").join(&id).exists());
    assert!(lock(&f.agent.node.state).local.is_empty());
    assert_eq!(f.agent.resync(), IDLE_RESYNC);
}

/// Healthy members up, the drained one drained, the one nobody serves down; both
/// listeners forward and count.
async fn serves(f: &Fixture, id: &str) -> LoadBalancerStatus {
    let s = f
        .until(id, "healthy", true, |s| {
            healths(s, 0) == [MemberHealth::Up, MemberHealth::Drained]
                && healths(s, 1) == [MemberHealth::Up, MemberHealth::Down]
        })
        .await;
    assert_eq!((s.phase, s.message.as_str()), (LbPhase::Active, ""));
    assert_eq!(s.listeners[0].engine, "haproxy");
    assert!(get(&f.host, "10.77.0.10:80").ends_with("hello"));
    assert!(get(&f.host, "10.77.0.10:9000").ends_with("hello"));
    f.until(id, "counted", true, |s| {
        s.listeners
            .iter()
            .all(|l| l.connections >= 1 && l.bytes_out > 0)
    })
    .await
}

/// The bad one failed in HAProxy's words, and held back nothing.
async fn fails_alone(f: &Fixture, bad: &str) {
    let b = f.status_now(bad).await;
    assert_eq!(b.phase, LbPhase::Failed);
    assert!(
        b.message.starts_with("HAProxy refused the configuration: "),
        "{}",
        b.message
    );
    assert!(b.message.contains("parsing ["), "{}", b.message);
}

/// Running again changes nothing; a new configuration is a reload of the same master,
/// and the counters go on.
async fn reloads(f: &Fixture, id: &str, s: &LoadBalancerStatus) {
    let links = |ns: &str| {
        let out = std::process::Command::new("ip")
            .args(["-n", ns, "-j", "addr", "show"])
            .output();
        String::from_utf8_lossy(&out.unwrap().stdout).into_owned()
    };
    let (before, master) = (links(&f.netns(id)), f.master(id));
    f.agent.reconcile(&f.objects).await.unwrap();
    assert_eq!(links(&f.netns(id)), before);
    let drain = |d: &mut Doc<LoadBalancer>| {
        d.spec.listeners[1].members[1].weight = 0;
        true
    };
    f.objects.modify::<LoadBalancer>(id, drain).await.unwrap();
    let s2 = f
        .until(id, "reloaded", true, |s2| {
            s2.served != s.served && healths(s2, 1).get(1) == Some(&MemberHealth::Drained)
        })
        .await;
    assert_eq!((s2.phase, f.master(id)), (LbPhase::Active, master));
    assert!(
        s2.listeners[0].connections >= s.listeners[0].connections,
        "{s2:#?}"
    );
    assert!(get(&f.host, "10.77.0.10:80").ends_with("hello"));
}

/// Members whose server stops are reported down by the probe, without a pass.
async fn probes_health(f: &Fixture, id: &str, members: Server) {
    let (stop, stopped) = watch::channel(false);
    let probe = tokio::spawn(f.agent.clone().watch_health(f.objects.clone(), stopped));
    drop(members);
    f.until(id, "down", false, |s| {
        healths(s, 0)[0] == MemberHealth::Down && healths(s, 1)[0] == MemberHealth::Down
    })
    .await;
    stop.send(true).unwrap();
    probe.await.unwrap();
}

/// A listener whose port is taken fails the reload in HAProxy's words; the previous
/// configuration goes on serving, and is back once the listener goes.
async fn keeps_serving_what_fails_to_load(f: &Fixture, id: &str) {
    let served = f.status_now(id).await.served;
    let _taken = in_ns(&f.netns(id), || {
        TcpListener::bind("10.77.0.10:7000").unwrap()
    });
    let listener = |d: &mut Doc<LoadBalancer>, add: bool| {
        let mut busy = d.spec.listeners[1].clone();
        (busy.name, busy.port) = ("busy".into(), 7000);
        match add {
            true => d.spec.listeners.push(busy),
            false => d.spec.listeners.retain(|l| l.name != "busy"),
        }
        true
    };
    f.objects
        .modify::<LoadBalancer>(id, |d| listener(d, true))
        .await
        .unwrap();
    let s = f
        .until(id, "failed", true, |s| s.phase == LbPhase::Failed)
        .await;
    assert!(
        s.message
            .starts_with("HAProxy did not reload (the previous configuration is still served): "),
        "{}",
        s.message
    );
    assert!(s.message.contains("cannot bind socket"), "{}", s.message);
    assert_eq!(s.served, served);
    assert!(get(&f.host, "10.77.0.10:80").ends_with("hello"));
    f.objects
        .modify::<LoadBalancer>(id, |d| listener(d, false))
        .await
        .unwrap();
    let s = f
        .until(id, "back", true, |s| s.phase == LbPhase::Active)
        .await;
    assert_eq!((s.served, s.message.as_str()), (served, ""));
}

/// A plain TCP listener is Vortex's: left out of HAProxy's configuration, reported from
/// Vortex's status file in the document's order; Vortex's failures are the load
/// balancer's, in its own words; it stops with the last such listener. Ends with `fast`
/// served.
async fn serves_layer_4_with_vortex(f: &Fixture, id: &str) {
    let before = f.status_now(id).await;
    let fast = |d: &mut Doc<LoadBalancer>, weight: Option<u16>| {
        d.spec.listeners.retain(|l| l.name != "fast");
        if let Some(w) = weight {
            let mut l = fast();
            l.members[1].weight = w;
            d.spec.listeners.insert(1, l);
        }
        true
    };
    std::fs::write(f.state.path().join("vortex-fails"), "no such device").unwrap();
    f.objects
        .modify::<LoadBalancer>(id, |d| fast(d, Some(1)))
        .await
        .unwrap();
    let s = (f.until(id, "failed", true, |s| s.phase == LbPhase::Failed)).await;
    let why = "vortex: did not start: exited (exit status: 1): error: cannot attach to eth0: \
               no such device";
    assert_eq!((s.message.as_str(), &s.served), (why, &before.served));
    assert_eq!(s.listeners.len(), 2, "{s:#?}");
    assert_eq!(f.read("vortex-netns").trim(), f.netns(id));
    let args = f.read("vortex-args");
    assert!(
        args.starts_with("vortex -c ") && args.contains(" --mode nat "),
        "{args}"
    );

    // Not tried again with that configuration yet; at once with another.
    std::fs::remove_file(f.state.path().join("vortex-fails")).unwrap();
    f.agent.reconcile(&f.objects).await.unwrap();
    assert_eq!(f.status_now(id).await.message, why);
    f.objects
        .modify::<LoadBalancer>(id, |d| fast(d, Some(2)))
        .await
        .unwrap();
    let s = f
        .until(id, "served", true, |s| s.phase == LbPhase::Active)
        .await;
    let names: Vec<_> = s.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["web", "fast", "raw"]);
    let l = &s.listeners[1];
    assert_eq!(
        (l.engine.as_str(), l.connections, l.bytes_in),
        ("vortex-tc", 7, 700)
    );
    assert_eq!(healths(&s, 1), [MemberHealth::Up, MemberHealth::Down]);
    assert_ne!(s.served, before.served);
    let lb = format!("lb/{id}/");
    let cfg = f.read(&(lb.clone() + "haproxy.cfg"));
    assert!(cfg.contains("ft_raw") && !cfg.contains("_fast"), "{cfg}");
    let toml = f.read(&(lb.clone() + "vortex.toml"));
    assert!(
        toml.contains("name = \"fast\"") && toml.contains("weight = 2"),
        "{toml}"
    );

    // Exited a moment after it started: a failure, not started again at once.
    let pid = f.vortex(id).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let s = (f.until(id, "failed", true, |s| s.phase == LbPhase::Failed)).await;
    assert!(
        s.message.starts_with("vortex: exited (signal: 9"),
        "{}",
        s.message
    );
    assert_eq!(f.vortex(id), None);

    // No Vortex listener left: none runs, nothing fails, HAProxy's hash again.
    f.objects
        .modify::<LoadBalancer>(id, |d| fast(d, None))
        .await
        .unwrap();
    let s = f
        .until(id, "back", true, |s| s.phase == LbPhase::Active)
        .await;
    assert_eq!((&s.served, s.listeners.len()), (&before.served, 2));
    f.objects
        .modify::<LoadBalancer>(id, |d| fast(d, Some(1)))
        .await
        .unwrap();
    f.until(id, "served again", true, |s| s.listeners.len() == 3)
        .await;
    assert!(f.vortex(id).is_some_and(alive));
}

/// A load balancer with three replicas, two of them placed here: each is a namespace of
/// its own with its replica's address on eth0 and the virtual address on `lo`, serving
/// the virtual address; each reports into its replica, and the status sums them up.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_here_are_realised_each_with_its_own_port() {
    if !runnable() {
        return;
    }
    let f = Fixture::new();
    let mut spec = spec();
    spec.listeners.truncate(1);
    spec.replicas = Some(3);
    let id = f.create("r", 10, spec, "").await;
    let replica = |n: u8, host: &str| yunhan_model::LbReplica {
        address: format!("10.77.0.{}", 20 + n),
        device: format!("ylb{}r{n}", f.pid),
        mac: format!("02:00:0a:4d:00:{:02x}", 20 + n),
        host: host.into(),
        ..Default::default()
    };
    f.objects
        .modify::<LoadBalancer>(&id, |d| {
            let r = [
                replica(1, "h-test"),
                replica(2, "h-other"),
                replica(3, "h-test"),
            ];
            d.status.replicas = r.into();
            true
        })
        .await
        .unwrap();
    f.agent.reconcile(&f.objects).await.unwrap();
    // The test plays the VPC: both host ends on one bridge holding the gateway's address.
    let br = format!("ylb{}br", f.pid);
    let inh = |args: &[&str]| {
        let mut a = vec!["ip", "-n", f.host.as_str()];
        a.extend(args);
        sh(&a);
    };
    inh(&["link", "add", &br, "type", "bridge"]);
    inh(&["addr", "add", "10.77.0.1/24", "dev", &br]);
    inh(&["link", "set", &br, "up"]);
    for n in [1, 3] {
        let dev = format!("ylb{}r{n}", f.pid);
        inh(&["link", "set", &dev, "master", &br, "up"]);
    }
    let _members = Server::start(&f.host, "10.77.0.1:8080");
    let s = f
        .until(&id, "both replicas here active", true, |s| {
            s.replicas[0].phase == LbPhase::Active && s.replicas[2].phase == LbPhase::Active
        })
        .await;
    assert_eq!(s.replicas[1].phase, LbPhase::Provisioning, "not ours");
    assert_eq!(
        s.phase,
        LbPhase::Provisioning,
        "one replica is not active yet"
    );
    assert_eq!(s.host, "h-other,h-test");
    for (key, own) in [
        (format!("{id}.r1"), "10.77.0.21"),
        (format!("{id}.r3"), "10.77.0.23"),
    ] {
        let ns = f.netns(&key);
        let addrs = |dev: &str| {
            let out = std::process::Command::new("ip")
                .args(["-n", &ns, "-4", "-o", "addr", "show", "dev", dev])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert!(
            addrs("eth0").contains(&format!("{own}/24")),
            "{}",
            addrs("eth0")
        );
        assert!(addrs("lo").contains("10.77.0.10/32"), "{}", addrs("lo"));
        // Through this replica (the routers' next hop), the virtual address answers.
        inh(&["route", "replace", "10.77.0.10/32", "via", own]);
        assert!(
            get(&f.host, "10.77.0.10:80").ends_with("hello"),
            "via {own}"
        );
    }
    let s = f
        .until(&id, "requests counted", true, |s| {
            s.listeners.first().is_some_and(|l| l.connections >= 2)
        })
        .await;
    assert_eq!(s.listeners[0].members[0].health, MemberHealth::Up);
    let d = f.objects.get::<LoadBalancer>(&id).await.unwrap().unwrap();
    f.objects.delete::<LoadBalancer>(&d).await.unwrap();
    f.agent.reconcile(&f.objects).await.unwrap();
    for key in [format!("{id}.r1"), format!("{id}.r3")] {
        assert!(!namespace::exists(&f.netns(&key)), "{key}");
    }
}

#[test]
fn unit_keys_name_the_load_balancer_and_its_replica() {
    let lb = doc("lb-abc", 10, "d", spec());
    for replica in [None, Some(0), Some(11)] {
        let u = Unit {
            lb: lb.clone(),
            replica,
        };
        assert_eq!(
            Unit::parse_key(&u.key()),
            ("lb-abc", replica),
            "{}",
            u.key()
        );
    }
    assert_eq!(
        Unit::parse_key("lb-abc.r0"),
        ("lb-abc.r0", None),
        "replicas count from 1"
    );
}
