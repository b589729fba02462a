//! HA restart through the real binary: `yunhan server` on etcd with a real Ceph
//! pool, three `yunhan agent`s on the hosts of a netns lab (a provider network on
//! their `ext0`, an "outside" namespace holding its gateway), real TCG guests.
//! - A VM on a local disk is marked HostDown with the reason while its agent is
//!   stopped, and runs on when the agent resumes.
//! - Two VMs booting from RBD clones, in a hard anti-affinity group; one (ha1) has a
//!   VPC NIC with an elastic IP, which the outside pings (every 100 ms, watching its ARP
//!   entry for the address) through each failover. The host of ha1 is cut off (its
//!   agent SIGSTOPped: its QEMU runs on, and so does its network state, the proxy ARP
//!   entry for the elastic IP included, as behind a partition) and the control plane
//!   is restarted meanwhile. The VM is fenced (its QEMU's client blocklisted) and
//!   restarted once, on the host without the other VM, from the same disk (its boot
//!   counter goes on). The elastic IP follows it: the outside's ARP entry moves from
//!   the old host's `ext0` to the new host's (its gratuitous ARP) and never back, the
//!   outside gets answers through the new host only once the restarted guest has
//!   booted and within 5 s of its readiness marker, and `eip show` names the new host
//!   (Ready). Printed, relative to ha1 seen Running on the new host: the ARP switch,
//!   the boot and readiness markers on its console, the first answer through the new
//!   host, the last through the old one. The resumed agent kills its stale copy.
//! - The agent of its new host is killed (the host stays healthy): it moves again,
//!   the elastic IP with it (checked and timed the same way), and the restarted agent
//!   removes the copy left behind. Exactly one copy runs at the end of each step.

mod common;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::guest_disk::{device_of, read_pattern, write_pattern};
use common::{
    console_text, disk_image_args, eventually, qemus_of, serial_log, signal, stdout, strs, tiny_vm,
    words, CephCloud, Cluster,
};
use serde_json::Value;
use yunhan_net::lab::Lab;

fn vm(c: &Cluster, name: &str) -> Value {
    c.ok(&["vm", "show", name])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_ha_local_vm_is_host_down_and_rbd_vm_fails_over_exactly_once() {
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let lab = Lab::new(
        "ha",
        &[
            ("h1", ip("192.0.2.1")),
            ("h2", ip("192.0.2.2")),
            ("h3", ip("192.0.2.3")),
        ],
        1500,
    )
    .expect("a three-host lab");
    let outside = lab
        .add_external(
            "203.0.113.0/24".parse().unwrap(),
            ip("203.0.113.1"),
            &[
                ip("203.0.113.201"),
                ip("203.0.113.202"),
                ip("203.0.113.203"),
            ],
        )
        .unwrap();
    let mut c = CephCloud::start("havols", &common::lab_agents(&lab), &["--ha-grace", "2"]).await;
    let conf = c.conf.clone();
    c.ok(&strs(&disk_image_args("tiny")));
    // A provider network on the hosts' `ext0`, and a group that lets the outside ping.
    common::net1_with_s1(&*c);
    common::provider_network_and_open_ping(&*c);
    let create = |name: &str, extra: &[&str]| {
        let mut a = tiny_vm(name, &["--ha", "--wait", "--timeout", "180s"]);
        a.extend(extra);
        c.ok(&a);
    };

    // A local disk cannot move: HostDown with the reason, and back when the host is.
    create("loc", &[]);
    let loc = vm(&c, "loc");
    let host = loc["status"]["host"].as_str().unwrap().to_string();
    let agent = c.agents[c.agent_of(&host)].pid();
    signal(agent, "-STOP");
    let down = eventually("loc HostDown", Duration::from_secs(60), || async {
        let v = vm(&c, "loc");
        (v["status"]["phase"] == "HostDown").then_some(v)
    })
    .await;
    let msg = down["status"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("local copy of the image"), "{down}");
    assert_eq!(down["status"]["host"], host.as_str(), "not moved");
    signal(agent, "-CONT");
    eventually("loc Running again", Duration::from_secs(60), || async {
        let v = vm(&c, "loc");
        (v["status"]["phase"] == "Running").then_some(())
    })
    .await;
    c.ok(&["vm", "delete", "loc", "--wait"]);

    // Two VMs booting from RBD clones, never on the same host; ha1 with a NIC.
    c.ok(&["placement-group", "create", "spread", "--policy", "hard"]);
    for n in ["1", "2"] {
        c.ok(&[
            "volume",
            "create",
            &format!("root{n}"),
            "--image",
            "tiny",
            "--size",
            "1GiB",
            "--pool",
            "havols",
            "--bootable",
            "--wait",
        ]);
        let root = format!("root{n}");
        let mut extra = vec!["--boot-volume", &root, "--placement-group", "spread"];
        if n == "1" {
            extra.extend(["--subnet", "s1", "--security-group", "open"]);
        }
        create(&format!("ha{n}"), &extra);
    }
    let ha2_host = vm(&c, "ha2")["status"]["host"]
        .as_str()
        .unwrap()
        .to_string();
    let id = vm(&c, "ha1")["metadata"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    booted(&c, 1).await;
    // A Ceph data volume on ha1, a marker written on it from inside the guest.
    let data = c.ok(&words(
        "volume create data --size 1GiB --pool havols --wait",
    ));
    let data_id = data["metadata"]["id"].as_str().unwrap().to_string();
    c.ok(&words("volume attach data --vm ha1 --wait"));
    let data_dev = {
        let mut sh = c.shell(&id).await;
        let dev = device_of(&mut sh, &data_id).await;
        write_pattern(&mut sh, &dev, "HA-DATA-KEPT").await;
        dev
    };
    // ha1's elastic IP, answering the outside through ha1's host.
    let eip = c.ok(&["eip", "create", "ha1-ip", "--nic", "ha1-nic0"]);
    let eip: Ipv4Addr = eip["status"]["address"].as_str().unwrap().parse().unwrap();
    assert!(
        lab.ping_within(&outside, eip, Duration::from_secs(60)),
        "outside → ha1's elastic IP before the failover"
    );

    // Host of ha1 cut off (agent stopped, QEMU running on), and the control plane
    // restarted while the host is NotReady: the failover completes, once.
    let (lost, moved, t) = {
        let before = vm(&c, "ha1");
        let lost = before["status"]["host"].as_str().unwrap().to_string();
        eip_realised_on(&c, &lost).await;
        let old_qemu = one_qemu(&id);
        let agent = c.agents[c.agent_of(&lost)].pid();
        // The outside pings the elastic IP all along.
        let pings = Pings::start(&outside, eip);
        let t0 = Instant::now();
        signal(agent, "-STOP");
        eventually("the host NotReady", Duration::from_secs(30), || async {
            let h = c.ok(&["host", "show", &lost]);
            (h["status"]["phase"] == "NotReady").then_some(())
        })
        .await;
        c.server.take().unwrap().kill9();
        c.start_server_and_wait().await;
        let moved = moved_off(&c, &lost, 1).await;
        let running = Instant::now();
        // The failover is an event of ha1's project, by the platform.
        let events = c.ok(&["events", "--since", "10m", "--kind", "instances"]);
        let failover = (events.as_array().unwrap().iter())
            .find(|e| e["action"] == "failover" && e["target"] == id.as_str());
        assert!(
            failover.is_some_and(|e| e["actor"] == "platform"),
            "no failover event for {id}: {events}"
        );
        let f = eip_follows(&c, &lab, &pings, &lost, &moved, 2, running).await;
        let t = (running - t0, f.boot - t0);
        f.report("HA failover (agent stopped, control plane restarted)");
        assert_ne!(moved, ha2_host, "anti-affinity: not next to ha2");
        // The lost host's QEMU was fenced off the disk, and still runs (its agent is stopped).
        let bl = Command::new("ceph")
            .args(["-c", &conf, "osd", "blocklist", "ls"])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&bl.stdout).to_string();
        assert!(
            bl.status.success() && listed.lines().any(|l| l.starts_with("127.0.0.1:")),
            "the old client is blocklisted: {listed}{}",
            String::from_utf8_lossy(&bl.stderr)
        );
        assert!(
            qemus_of(&id).contains(&old_qemu),
            "stopped agents kill nothing"
        );
        // The fenced copy cannot write: what it tries through its own console never
        // reaches the disk, where the new copy reads the marker written before.
        let console = (c.dir.path()).join(format!(
            "node-{}/vms/{id}/console.sock",
            c.agent_of(&lost) + 1
        ));
        let said = type_into(
            &console,
            &format!("printf 'FENCED-WRITE' > /tmp/f; dd if=/tmp/f of=/dev/{data_dev} bs=512 count=1 conv=sync,fsync; echo DD-DONE-$?"),
            Duration::from_secs(15),
        );
        let tail: Vec<&str> = said.lines().rev().take(3).collect();
        eprintln!("the fenced copy, writing to its data volume: {tail:?}");
        assert!(
            !said.contains("DD-DONE-0"),
            "the fenced copy's write succeeded: {said}"
        );
        // The data volume came along: attached on the new host, its marker there.
        data_comes_along(&c, &id, &data_id).await;
        // The lost agent resumes: it fences itself and drops its stale copy.
        signal(agent, "-CONT");
        stale_copy_gone(&id, old_qemu).await;
        (lost, moved, t)
    };
    eprintln!(
        "HA failover (agent stopped, control plane restarted): Running elsewhere after {:.1?}, guest booted after {:.1?}",
        t.0, t.1
    );

    // The agent of ha1's new host killed, the host itself healthy: ha1 moves again (to
    // the first host, Ready again and free of group members), its elastic IP with it,
    // and the restarted agent removes the copy it left running.
    let old_qemu = one_qemu(&id);
    let i = c.agent_of(&moved);
    let pings = Pings::start(&outside, eip);
    let t0 = Instant::now();
    c.agents[i].kill9();
    let again = moved_off(&c, &moved, 2).await;
    let running = Instant::now();
    assert_eq!(again, lost, "the only host without a group member");
    let f = eip_follows(&c, &lab, &pings, &moved, &again, 3, running).await;
    f.report("HA failover (agent killed)");
    eprintln!(
        "HA failover (agent killed): guest booted after {:.1?}",
        f.boot - t0
    );
    c.restart_agent(i);
    stale_copy_gone(&id, old_qemu).await;
    drop(pings);
    drop(c);
    drop(lab);
}

/// After a failover, ha1 has its data volume: attached (the volume says so) and in
/// the guest, with the marker written before the loss (read with the page cache
/// dropped: from the disk, not from memory).
async fn data_comes_along(c: &Cluster, id: &str, data_id: &str) {
    eventually(
        "the data volume InUse by ha1",
        Duration::from_secs(60),
        || async {
            let v = c.ok(&["volume", "show", "data"]);
            (v["status"]["phase"] == "InUse" && v["spec"]["instance"] == id).then_some(())
        },
    )
    .await;
    let mut sh = c.shell(id).await;
    let dev = device_of(&mut sh, data_id).await;
    sh.run("sync; echo 3 > /proc/sys/vm/drop_caches").await;
    assert_eq!(read_pattern(&mut sh, &dev, 12).await, "HA-DATA-KEPT");
}

/// Types `cmd` into the guest shell on the serial console at `socket` (a QEMU the API no
/// longer reaches: the fenced copy on the lost host) and reads until it printed
/// `DD-DONE-<status>` or `wait` passed (a write that hangs on a fenced disk never ends).
fn type_into(socket: &std::path::Path, cmd: &str, wait: Duration) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("the fenced copy's console {}: {e}", socket.display()));
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.write_all(format!("\n{cmd}\n").as_bytes()).unwrap();
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let done = |out: &[u8]| {
        let text = String::from_utf8_lossy(out);
        (text.match_indices("DD-DONE-"))
            .any(|(i, m)| text[i + m.len()..].starts_with(|c: char| c.is_ascii_digit()))
    };
    while Instant::now() < deadline && !done(&out) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// ha1's console shows boot number `n` of its root disk.
async fn booted(c: &Cluster, n: u32) {
    let marker = format!("YUNHAN-BOOT count={n}");
    eventually(&marker, Duration::from_secs(180), || async {
        stdout(&c.cli(&["vm", "log", "ha1"]))
            .contains(&marker)
            .then_some(())
    })
    .await;
}

/// Waits for ha1 Running on a host other than `from` after its `n`th failover; returns
/// the new host.
async fn moved_off(c: &Cluster, from: &str, n: u64) -> String {
    let v = eventually(
        "ha1 Running on another host",
        Duration::from_secs(90),
        || async {
            let v = vm(c, "ha1");
            (v["status"]["phase"] == "Running" && v["status"]["host"] != from).then_some(v)
        },
    )
    .await;
    assert_eq!(v["status"]["failovers"], n, "moved exactly once more: {v}");
    v["status"]["host"].as_str().unwrap().to_string()
}

/// The one QEMU running instance `id`.
fn one_qemu(id: &str) -> u32 {
    let q = qemus_of(id);
    assert_eq!(q.len(), 1, "one QEMU: {q:?}");
    q[0]
}

/// The stale QEMU `old` goes away and exactly one copy of `id` runs.
async fn stale_copy_gone(id: &str, old: u32) {
    eventually("the stale copy gone", Duration::from_secs(60), || async {
        (!qemus_of(id).contains(&old)).then_some(())
    })
    .await;
    one_qemu(id);
}

/// Waits (10 s) until `eip show ha1-ip` names host `id` as the one realising it, Ready.
async fn eip_realised_on(c: &Cluster, id: &str) {
    let name = c.ok(&["host", "show", id])["metadata"]["name"].clone();
    let shown = eventually(
        &format!("ha1-ip realised on {name}"),
        Duration::from_secs(10),
        || {
            let e = c.show("eip", "ha1-ip");
            let name = name.clone();
            async move { (e["status"]["host"] == name).then_some(e) }
        },
    )
    .await;
    assert_eq!(shown["status"]["phase"], "Ready", "{shown}");
}

/// When things happened after a failover of ha1 from one host to another.
struct Followed {
    /// ha1 seen Running on the new host.
    running: Instant,
    /// The outside's ARP entry for the elastic IP moved to the new host's `ext0`.
    switched: Instant,
    /// ha1's boot marker on the new host's console.
    boot: Instant,
    /// ha1's readiness marker (its network configured).
    ready: Instant,
    /// The outside's first answer through the new host.
    answer: Instant,
    /// The outside's last answer before the switch (through the old host).
    last_old: Option<Instant>,
    /// The outside's ARP entry for the address as it changed (`ip monitor neigh`).
    arp_log: String,
}

impl Followed {
    /// Prints each time relative to ha1 seen Running on the new host.
    fn report(&self, what: &str) {
        let at = |t: Instant| at(t, self.running);
        eprintln!(
            "{what}: the elastic IP, relative to ha1 seen Running on the new host: the outside's ARP entry at the new host {}, boot marker {}, readiness marker {}, first answer through the new host {} ({:.1?} after the readiness marker); last answer through the old host (the fenced copy) {}, so the outside went unanswered for {}",
            at(self.switched),
            at(self.boot),
            at(self.ready),
            at(self.answer),
            self.answer.saturating_duration_since(self.ready),
            self.last_old.map_or("none".into(), at),
            self.last_old
                .map_or("-".into(), |t| format!("{:.1?}", self.answer - t)),
        );
    }
}

/// After ha1 was seen Running on host `to` (having failed over from `from`) for its
/// boot `n`: waits until the outside's ARP entry for the elastic IP (`pings`' address),
/// `from`'s `ext0` when the pinging began, moves to `to`'s (never going back), ha1's boot
/// and readiness markers show on its new console, and the outside gets an answer
/// through `to` — only once the guest booted, within 5 s of its readiness. Then `eip
/// show` names `to`.
async fn eip_follows(
    c: &Cluster,
    lab: &Lab,
    pings: &Pings,
    from: &str,
    to: &str,
    n: u32,
    running: Instant,
) -> Followed {
    let (outside, eip) = (pings.ns.as_str(), pings.addr);
    let mac = |host: &str| ext_mac(&lab.hosts[c.agent_of(host)].netns);
    let (old_mac, new_mac) = (mac(from), mac(to));
    assert_ne!(old_mac, new_mac);
    assert_eq!(
        pings.initial,
        Some(old_mac.clone()),
        "the outside reached {eip} at the old host before the failover"
    );
    let log = serial_log(&vm(c, "ha1"));
    let marker = format!("YUNHAN-BOOT count={n}");
    let (mut switched, mut boot, mut ready, mut answer, mut last_old) =
        (None, None, None, None, None);
    let mut arp_log = String::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let followed = loop {
        let now = Instant::now();
        // The outside's ARP entry for the address, as the kernel changed it.
        for (t, (mac, line)) in pings.arp.try_iter() {
            arp_log += &format!("\n  {} {line}", at(t, running));
            if mac.as_deref() == Some(new_mac.as_str()) {
                switched.get_or_insert(t);
            } else if mac.as_deref() == Some(old_mac.as_str()) && switched.is_some() {
                panic!(
                    "the outside's ARP entry for {eip} went back to the old host ({old_mac}, \
                     new {new_mac}):{arp_log}"
                );
            }
        }
        // Answers just after the switch may still be the old copy's (in flight).
        let answered_new = pings
            .answers
            .try_iter()
            .fold(false, |new, (t, ())| match switched {
                Some(s) if t > s + Duration::from_millis(200) => {
                    answer.get_or_insert(t);
                    true
                }
                _ => {
                    last_old = Some(t);
                    new
                }
            });
        let text = console_text(&log);
        let booted_at = text.find(&marker);
        assert!(
            !answered_new || booted_at.is_some(),
            "{eip} answered through the new host before ha1 booted there"
        );
        if let Some(i) = booted_at {
            boot.get_or_insert(now);
            if text[i..].contains("YUNHAN-READY") {
                ready.get_or_insert(now);
            }
        }
        if let (Some(switched), Some(boot), Some(ready), Some(answer)) =
            (switched, boot, ready, answer)
        {
            break Followed {
                running,
                switched,
                boot,
                ready,
                answer,
                last_old,
                arp_log,
            };
        }
        assert!(
            now < deadline,
            "after 180 s: the outside's ARP entry for {eip} {:?} (old host {old_mac}, new \
             {new_mac}), switched {}, {marker} {}, ready {}, answered through the new host {}; \
             eip: {}; the ARP entry's changes:{arp_log}",
            arp_entry(outside, eip),
            switched.is_some(),
            boot.is_some(),
            ready.is_some(),
            answer.is_some(),
            c.show("eip", "ha1-ip")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        arp_entry(outside, eip),
        Some(new_mac),
        "the outside's ARP entry for {eip} stays at the new host"
    );
    let late = followed.answer.saturating_duration_since(followed.ready);
    assert!(
        late < Duration::from_secs(5),
        "{eip} answered through the new host {late:?} after ha1 was ready there; the ARP \
         entry's changes:{}",
        followed.arp_log
    );
    eip_realised_on(c, to).await;
    followed
}

/// `t` relative to `zero`, signed.
fn at(t: Instant, zero: Instant) -> String {
    match t.checked_duration_since(zero) {
        Some(d) => format!("+{d:.1?}"),
        None => format!("-{:.1?}", zero - t),
    }
}

/// What an outside namespace sees of an address, in the background: `ping -i 0.1`
/// (when each answer arrived) and `ip monitor neigh` (when the address's ARP entry
/// changed, to which MAC).
struct Pings {
    ns: String,
    addr: Ipv4Addr,
    children: Vec<Child>,
    answers: mpsc::Receiver<(Instant, ())>,
    /// The MAC of the address's entry when this started.
    initial: Option<String>,
    /// Each change of the address's entry: its MAC (if any) and the line.
    arp: mpsc::Receiver<(Instant, (Option<String>, String))>,
}

impl Pings {
    fn start(ns: &str, addr: Ipv4Addr) -> Pings {
        let mut children = vec![];
        let a = addr.to_string();
        let arp = lines_of(&["ip", "-n", ns, "monitor", "neigh"], &mut children, {
            let a = a.clone();
            move |l| {
                let mut w = l.split_whitespace().skip_while(|w| *w == "Deleted");
                if w.next() != Some(a.as_str()) {
                    return None;
                }
                let mac = w.skip_while(|w| *w != "lladdr").nth(1).map(str::to_string);
                Some((mac.filter(|_| !l.starts_with("Deleted")), l.to_string()))
            }
        });
        let ping = [
            "ip", "netns", "exec", ns, "ping", "-n", "-i", "0.1", "-W", "1", &a,
        ];
        let answers = lines_of(&ping, &mut children, |l| {
            l.contains(" bytes from ").then_some(())
        });
        Pings {
            initial: arp_entry(ns, addr),
            ns: ns.to_string(),
            addr,
            children,
            answers,
            arp,
        }
    }
}

impl Drop for Pings {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `argv` (the process goes into `children`): each line of its output that `pick`
/// maps to Some, with the time it was read.
fn lines_of<T: Send + 'static>(
    argv: &[&str],
    children: &mut Vec<Child>,
    pick: impl Fn(&str) -> Option<T> + Send + 'static,
) -> mpsc::Receiver<(Instant, T)> {
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect(argv[0]);
    let out = BufReader::new(child.stdout.take().unwrap());
    children.push(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if let Some(v) = pick(&line) {
                if tx.send((Instant::now(), v)).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

/// The MAC namespace `ns`'s ARP cache holds for `addr`, if any.
fn arp_entry(ns: &str, addr: Ipv4Addr) -> Option<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "neigh", "show", &addr.to_string()])
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?
        .iter()
        .find_map(|n| n["lladdr"].as_str().map(str::to_string))
}

/// The MAC of a lab host's external device (namespace `ns`).
fn ext_mac(ns: &str) -> String {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", Lab::EXTERNAL_DEVICE])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v[0]["address"].as_str().expect("ext0's MAC").to_string()
}
