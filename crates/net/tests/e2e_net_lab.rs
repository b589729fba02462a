//! End-to-end: the realiser on a network-namespace lab (root; iproute2, nftables, conntrack,
//! ping). Hosts are namespaces on an underlay bridge; guests are namespaces behind veths.
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};
use yunhan_net::compile::compile_all;
use yunhan_net::lab::{fixtures, Lab};
use yunhan_net::model::{
    Anycast, DnatRule, ElasticIp, NatGateway, NetworkModel, Peer, Protocol, SecurityGroup, Vip,
};
use yunhan_net::plan::HostPlan;
use yunhan_net::realise::{Realiser, SystemRunner};

struct World {
    lab: Lab,
    plans: BTreeMap<String, HostPlan>,
    realisers: BTreeMap<String, Realiser<SystemRunner>>,
    /// The "outside" namespace on the external network (203.0.113.1), if any.
    outside: String,
}

impl World {
    fn new(tag: &str, m: &NetworkModel) -> World {
        Self::build(tag, m, false)
    }

    /// With the lab's external network (hosts' `ext0` at 203.0.113.10+i, outside at .1).
    fn with_external(tag: &str, m: &NetworkModel) -> World {
        Self::build(tag, m, true)
    }

    fn build(tag: &str, m: &NetworkModel, external: bool) -> World {
        let hosts: Vec<(&str, Ipv4Addr)> =
            m.hosts.iter().map(|h| (h.id.as_str(), h.vtep)).collect();
        let lab = Lab::new(tag, &hosts, m.underlay_mtu).expect("lab");
        let mut outside = String::new();
        if external {
            let addrs: Vec<Ipv4Addr> = (0..hosts.len())
                .map(|i| Ipv4Addr::new(203, 0, 113, 10 + i as u8))
                .collect();
            outside = lab
                .add_external("203.0.113.0/24".parse().unwrap(), ip("203.0.113.1"), &addrs)
                .expect("external network");
        }
        let plans = compile_all(m).expect("compile");
        for (h, p) in &plans {
            for port in &p.ports {
                lab.add_guest(h, port, p.mtu).expect("guest");
            }
        }
        let mut w = World {
            realisers: plans
                .keys()
                .map(|h| (h.clone(), Realiser::new(SystemRunner, lab.target(h))))
                .collect(),
            lab,
            plans: BTreeMap::new(),
            outside,
        };
        let t = Instant::now();
        let changes = w.apply(m);
        eprintln!("first apply: {changes} changes in {:?}", t.elapsed());
        w
    }

    /// Compiles and applies to every host; returns the number of changes.
    fn apply(&mut self, m: &NetworkModel) -> usize {
        self.plans = compile_all(m).expect("compile");
        let mut n = 0;
        for (h, r) in &mut self.realisers {
            let rep = r
                .apply(&self.plans[h])
                .unwrap_or_else(|e| panic!("apply {h}: {e}"));
            assert!(rep.missing_ports.is_empty(), "{h}: {rep:?}");
            n += rep.changes;
        }
        n
    }

    fn g(&self, port: &str) -> String {
        self.lab.guest_ns(port)
    }

    fn host_ns(&self, h: &str) -> String {
        self.lab.host(h).netns.clone()
    }
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// An echo server on `addr:port` inside a guest (runs until the test process ends).
fn echo_server(ns: &str, addr: Ipv4Addr, port: u16) {
    let l = Lab::in_netns(ns, move || TcpListener::bind((addr, port)))
        .expect("netns")
        .expect("bind");
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

fn connect(ns: &str, addr: Ipv4Addr, port: u16, timeout: Duration) -> Option<TcpStream> {
    let sa = SocketAddr::from((addr, port));
    Lab::in_netns(ns, move || TcpStream::connect_timeout(&sa, timeout))
        .expect("netns")
        .ok()
}

fn echo_ok(s: &mut TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(timeout)).unwrap();
    let msg = b"yunhan-echo";
    if s.write_all(msg).is_err() {
        return false;
    }
    let mut buf = [0u8; 11];
    s.read_exact(&mut buf).is_ok() && &buf == msg
}

/// A TCP round trip succeeds within `deadline` (retrying: first packets may wait for ARP).
fn tcp_ok(ns: &str, addr: Ipv4Addr, port: u16, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if let Some(mut s) = connect(ns, addr, port, Duration::from_millis(700)) {
            if echo_ok(&mut s, Duration::from_secs(1)) {
                return true;
            }
        }
        if Instant::now() >= end {
            return false;
        }
    }
}

/// No TCP connection can be made (the SYN is dropped or refused).
fn tcp_blocked(ns: &str, addr: Ipv4Addr, port: u16) -> bool {
    connect(ns, addr, port, Duration::from_millis(700)).is_none()
}

fn neigh_mac(lab: &Lab, ns: &str, addr: Ipv4Addr) -> Option<String> {
    let o = lab
        .exec(ns, &["ip", "-j", "neigh", "show", &addr.to_string()])
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    v.as_array()?
        .iter()
        .find_map(|n| n["lladdr"].as_str().map(String::from))
}

#[test]
fn e2e_same_vpc_two_hosts_ping_tcp_idempotent_and_drift() {
    let m = fixtures::two_host_model();
    let mut w = World::new("a", &m);
    // pa1 (host-a) and pa2 (host-b): same VPC, same subnet, same group.
    assert!(w
        .lab
        .ping_within(&w.g("pa1"), ip("10.0.1.11"), Duration::from_secs(5)));
    assert!(w
        .lab
        .ping_within(&w.g("pa2"), ip("10.0.1.10"), Duration::from_secs(5)));
    echo_server(&w.g("pa2"), ip("10.0.1.11"), 7000);
    assert!(tcp_ok(
        &w.g("pa1"),
        ip("10.0.1.11"),
        7000,
        Duration::from_secs(5)
    ));
    // ARP was answered from the plan (the VXLAN device's proxy), with the right MAC.
    assert_eq!(
        neigh_mac(&w.lab, &w.g("pa1"), ip("10.0.1.11")).as_deref(),
        Some("02:00:00:0a:01:0b")
    );

    // Idempotent: the same plan again changes nothing.
    let t = Instant::now();
    assert_eq!(w.apply(&m), 0);
    eprintln!("no-op apply (2 hosts): {:?}", t.elapsed());
    // Also for a fresh realiser (an agent restart): nothing in memory, still no changes.
    let mut fresh = Realiser::new(SystemRunner, w.lab.target("host-a"));
    assert_eq!(fresh.apply(&w.plans["host-a"]).unwrap().changes, 0);

    // Drift: a deleted VXLAN device, FDB entry, router neighbour and nft table come back.
    let ha = w.host_ns("host-a");
    let hb = w.host_ns("host-b");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["ip", "-n", &ha, "link", "del", "ynx-00002a"]);
    run(&[
        "bridge",
        "-n",
        &hb,
        "fdb",
        "del",
        "02:00:00:0a:01:0a",
        "dev",
        "ynx-00002a",
        "dst",
        "192.0.2.10",
        "self",
    ]);
    run(&[
        "ip", "netns", "exec", &ha, "nft", "delete", "table", "inet", "yunhan",
    ]);
    assert!(!w.lab.ping(&w.g("pa1"), ip("10.0.1.11"), 1));
    let repaired = w.apply(&m);
    assert!(repaired >= 3, "repaired {repaired}");
    assert!(w
        .lab
        .ping_within(&w.g("pa1"), ip("10.0.1.11"), Duration::from_secs(5)));
    assert!(tcp_ok(
        &w.g("pa1"),
        ip("10.0.1.11"),
        7000,
        Duration::from_secs(5)
    ));
    assert_eq!(w.apply(&m), 0);
}

#[test]
fn e2e_two_subnets_through_the_distributed_router() {
    let m = fixtures::two_host_model();
    let w = World::new("b", &m);
    // pa1 (10.0.1.10, host-a) → pa3 (10.0.2.10, host-b): one routed hop via the local router.
    assert!(w
        .lab
        .ping_within(&w.g("pa1"), ip("10.0.2.10"), Duration::from_secs(5)));
    assert!(w
        .lab
        .ping_within(&w.g("pa3"), ip("10.0.1.10"), Duration::from_secs(5)));
    let o = w
        .lab
        .exec(&w.g("pa1"), &["ping", "-c", "1", "-W", "2", "10.0.2.10"])
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("ttl=63"), "one router hop expected: {text}");
    // The gateway answers on every host with the same address and MAC.
    for g in ["pa1", "pa2"] {
        assert!(w
            .lab
            .ping_within(&w.g(g), ip("10.0.1.1"), Duration::from_secs(3)));
        assert_eq!(
            neigh_mac(&w.lab, &w.g(g), ip("10.0.1.1")).as_deref(),
            Some("02:00:00:00:a1:01")
        );
    }
    // sg-db allows 5432 from sg-web members only.
    echo_server(&w.g("pa3"), ip("10.0.2.10"), 5432);
    echo_server(&w.g("pa3"), ip("10.0.2.10"), 5433);
    assert!(tcp_ok(
        &w.g("pa1"),
        ip("10.0.2.10"),
        5432,
        Duration::from_secs(5)
    ));
    assert!(tcp_blocked(&w.g("pa1"), ip("10.0.2.10"), 5433));
}

#[test]
fn e2e_isolation_of_vpcs_with_identical_cidrs() {
    let mut m = fixtures::two_host_model();
    // A port only VPC B has, and open security groups in both VPCs so only isolation counts.
    m.ports.push(fixtures::port(
        "pb3",
        "vpc-b",
        "sn-b1",
        "host-b",
        "10.0.1.12",
        "02:00:00:0b:01:0c",
        &["sg-b"],
    ));
    for g in &mut m.security_groups {
        g.rules.push(fixtures::ingress(
            Protocol::Any,
            None,
            fixtures::cidr("0.0.0.0/0"),
        ));
    }
    let w = World::new("c", &m);
    // Same addresses, different VPCs: each reaches its own twin.
    assert!(w
        .lab
        .ping_within(&w.g("pa1"), ip("10.0.1.11"), Duration::from_secs(5)));
    assert!(w
        .lab
        .ping_within(&w.g("pb1"), ip("10.0.1.11"), Duration::from_secs(5)));
    assert_eq!(
        neigh_mac(&w.lab, &w.g("pa1"), ip("10.0.1.11")).as_deref(),
        Some("02:00:00:0a:01:0b")
    );
    assert_eq!(
        neigh_mac(&w.lab, &w.g("pb1"), ip("10.0.1.11")).as_deref(),
        Some("02:00:00:0b:01:0b")
    );
    // A listener only in VPC B is not reachable from VPC A at the same address.
    echo_server(&w.g("pb2"), ip("10.0.1.11"), 7001);
    assert!(tcp_ok(
        &w.g("pb1"),
        ip("10.0.1.11"),
        7001,
        Duration::from_secs(5)
    ));
    assert!(tcp_blocked(&w.g("pa1"), ip("10.0.1.11"), 7001));
    // Crafted frames: a VPC A guest addresses VPC B guests' MACs directly (remote and
    // local); each victim counts frames from pa1's MAC at its NIC's ingress.
    let pa1 = w.g("pa1");
    for (fake_ip, mac, victim) in [
        ("10.0.1.12", "02:00:00:0b:01:0c", "pb3"),
        ("10.0.1.11", "02:00:00:0b:01:0b", "pb2"),
        ("10.0.1.99", "02:00:00:0b:01:0a", "pb1"),
    ] {
        let counter = "table netdev spy {\n chain i { type filter hook ingress device \"eth0\" priority 0; ether saddr 02:00:00:0a:01:0a counter; }\n}\n";
        let path = std::env::temp_dir().join(format!("yn-spy-{}-{victim}.nft", std::process::id()));
        std::fs::write(&path, counter).unwrap();
        let o = w
            .lab
            .exec(&w.g(victim), &["nft", "-f", path.to_str().unwrap()])
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = w
            .lab
            .exec(
                &pa1,
                &[
                    "ip",
                    "neigh",
                    "replace",
                    fake_ip,
                    "lladdr",
                    mac,
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ],
            )
            .unwrap();
        assert!(o.status.success());
        assert!(!w
            .lab
            .exec(&pa1, &["ping", "-c", "3", "-i", "0.2", "-W", "1", fake_ip])
            .unwrap()
            .status
            .success());
        let o = w
            .lab
            .exec(&w.g(victim), &["nft", "list", "table", "netdev", "spy"])
            .unwrap();
        let listing = String::from_utf8_lossy(&o.stdout);
        assert!(
            listing.contains("counter packets 0 bytes 0"),
            "{victim} received frames from VPC A:\n{listing}"
        );
        let _ = w
            .lab
            .exec(&pa1, &["ip", "neigh", "del", fake_ip, "dev", "eth0"]);
    }
    // An address only VPC B has: no ping, no ARP answer.
    assert!(!w.lab.ping(&w.g("pa1"), ip("10.0.1.12"), 1));
    assert_eq!(neigh_mac(&w.lab, &w.g("pa1"), ip("10.0.1.12")), None);
    assert!(w
        .lab
        .ping_within(&w.g("pb1"), ip("10.0.1.12"), Duration::from_secs(5)));
}

/// The two-host model plus port `pa4`: in sn-a1 next to pa1, on host-a (10.0.1.12),
/// in `groups`.
fn model_with_pa4(groups: &[&str]) -> NetworkModel {
    let mut m = fixtures::two_host_model();
    let mac = "02:00:00:0a:01:0c";
    let pa4 = fixtures::port("pa4", "vpc-a", "sn-a1", "host-a", "10.0.1.12", mac, groups);
    m.ports.push(pa4);
    m
}

/// Whether `ns` reaches `to`: TCP to `ADDR:PORT`, or ping to a bare `ADDR`. Probed as
/// a security group matrix case expects: an `allowed` one waits up to `d` for an
/// answer, a denied one tries once.
fn reaches(lab: &Lab, ns: &str, to: &str, allowed: bool, d: Duration) -> bool {
    let (addr, port) = match to.split_once(':') {
        Some((a, p)) => (ip(a), Some(p.parse().expect("port"))),
        None => (ip(to), None),
    };
    match (port, allowed) {
        (Some(p), true) => tcp_ok(ns, addr, p, d),
        (Some(p), false) => !tcp_blocked(ns, addr, p),
        (None, true) => lab.ping_within(ns, addr, d),
        (None, false) => lab.ping(ns, addr, 1),
    }
}

#[test]
fn e2e_security_groups_matrix_and_rule_removal_cuts_connections() {
    // pa4: same subnet as pa1, on host-a, in no group (ingress: nothing allowed).
    let mut m = model_with_pa4(&[]);
    let mut w = World::new("d", &m);
    let (pa1, pa2, pa3, pa4) = (w.g("pa1"), w.g("pa2"), w.g("pa3"), w.g("pa4"));
    for (ns, a, p) in [
        (&pa2, "10.0.1.11", 80),
        (&pa2, "10.0.1.11", 22),
        (&pa3, "10.0.2.10", 5432),
        (&pa4, "10.0.1.12", 80),
        (&pa1, "10.0.1.10", 80),
        (&pa1, "10.0.1.10", 22),
    ] {
        echo_server(ns, ip(a), p);
    }
    let t = Instant::now();
    let d = Duration::from_secs(5);
    // (case, from, to: ADDR:PORT for TCP or ADDR for ping, allowed?)
    #[rustfmt::skip]
    let cases = [
        ("no group → web:80 (cidr rule, remote)", &pa4, "10.0.1.11:80", true),
        ("no group → web:22 (no rule)", &pa4, "10.0.1.11:22", false),
        ("web → web:22 (same group, remote)", &pa1, "10.0.1.11:22", true),
        ("no group → web:80 (same host)", &pa4, "10.0.1.10:80", true),
        ("no group → web:22 (same host)", &pa4, "10.0.1.10:22", false),
        ("web → db:5432 (group peer, routed)", &pa1, "10.0.2.10:5432", true),
        ("no group → db:5432 (not in peer group)", &pa4, "10.0.2.10:5432", false),
        ("web → no group:80 (default deny ingress)", &pa2, "10.0.1.12:80", false),
        ("no group → web icmp (icmp from 10/16)", &pa4, "10.0.1.11", true),
        ("web → no group icmp (default deny)", &pa1, "10.0.1.12", false),
        ("anyone → db icmp (icmp from 0/0)", &pa4, "10.0.2.10", true),
        ("db → web:22 (db not in web)", &pa3, "10.0.1.11:22", false),
    ];
    let mut bad = vec![];
    for (name, ns, to, want) in cases {
        let got = reaches(&w.lab, ns, to, want, d);
        eprintln!("{:5} {name}", if got == want { "ok" } else { "FAIL" });
        if got != want {
            bad.push(name);
        }
    }
    eprintln!("matrix: {} cases in {:?}", cases.len(), t.elapsed());
    assert!(bad.is_empty(), "security group matrix: {bad:?}");

    // An open connection (no group → web:80) dies within 2 s of removing the rule.
    let mut s = connect(&pa4, ip("10.0.1.11"), 80, Duration::from_secs(2)).expect("connect");
    assert!(echo_ok(&mut s, Duration::from_secs(1)));
    let web = m
        .security_groups
        .iter_mut()
        .find(|g| g.id == "sg-web")
        .unwrap();
    web.rules.retain(|r| {
        !(r.protocol == Protocol::Tcp && r.peer == Peer::Cidr("0.0.0.0/0".parse().unwrap()))
    });
    let t = Instant::now();
    assert!(w.apply(&m) > 0);
    let applied = t.elapsed();
    let mut cut = None;
    while t.elapsed() < Duration::from_secs(3) {
        if !echo_ok(&mut s, Duration::from_millis(200)) {
            cut = Some(t.elapsed());
            break;
        }
    }
    eprintln!("rule removal: applied in {applied:?}, connection cut after {cut:?}");
    let cut = cut.expect("the connection survived the rule removal");
    assert!(cut < Duration::from_secs(2), "cut after {cut:?}");
    assert!(tcp_blocked(&pa4, ip("10.0.1.11"), 80));
    // Same-group traffic is untouched.
    assert!(tcp_ok(&pa1, ip("10.0.1.11"), 22, d));
}

/// A server that answers every connection with one line and closes: `banner`, or the
/// address the connection came from (what the server sees as the source).
fn banner_server(ns: &str, addr: Ipv4Addr, port: u16, banner: Option<&str>) {
    let l = Lab::in_netns(ns, move || TcpListener::bind((addr, port)))
        .expect("netns")
        .expect("bind");
    let banner = banner.map(String::from);
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let line = match (&banner, c.peer_addr()) {
                (Some(b), _) => b.clone(),
                (None, Ok(p)) => p.ip().to_string(),
                (None, Err(_)) => continue,
            };
            let _ = c.write_all(format!("{line}\n").as_bytes());
        }
    });
}

/// The anycast routes (ours: protocol 121) of router namespace `rns`.
fn anycast_routes(lab: &Lab, rns: &str) -> String {
    let o = lab
        .exec(rns, &["ip", "route", "show", "proto", "121"])
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The line a connected [`banner_server`] sent, if any (within a second).
fn line_of(mut s: TcpStream) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut line = String::new();
    let read = s.read_to_string(&mut line).is_ok() && !line.is_empty();
    read.then(|| line.trim().to_string())
}

/// The line a [`banner_server`] answers, retrying until `deadline`.
fn banner(ns: &str, addr: Ipv4Addr, port: u16, deadline: Duration) -> Option<String> {
    let end = Instant::now() + deadline;
    loop {
        let got = connect(ns, addr, port, Duration::from_millis(700)).and_then(line_of);
        if got.is_some() {
            return got;
        }
        if Instant::now() >= end {
            return None;
        }
    }
}

/// Lets everything from the external network into every group (the guests' security
/// groups still judge external traffic after the NAT).
fn open_to_external(m: &mut NetworkModel) {
    for g in &mut m.security_groups {
        g.rules.push(fixtures::ingress(
            Protocol::Any,
            None,
            fixtures::cidr("203.0.113.0/24"),
        ));
    }
}

#[test]
fn e2e_network_elastic_ip_nat_bandwidth_and_unbind() {
    let mut m = fixtures::two_host_model();
    m.external_networks.push(fixtures::external(&m));
    open_to_external(&mut m);
    // pa1 (vpc-a) and pb1 (vpc-b) are both 10.0.1.10 on host-a: each gets an elastic IP.
    const CAP: u32 = 20;
    m.elastic_ips = vec![
        ElasticIp {
            id: "eip-a".into(),
            address: ip("203.0.113.50"),
            port: Some("pa1".into()),
            bandwidth_mbit: Some(CAP),
        },
        ElasticIp {
            id: "eip-b".into(),
            address: ip("203.0.113.51"),
            port: Some("pb1".into()),
            bandwidth_mbit: None,
        },
    ];
    let mut w = World::with_external("e", &m);
    let out = w.outside.clone();
    // Outside → elastic IPs: ping, and TCP lands on the right guest of the right VPC.
    for a in ["203.0.113.50", "203.0.113.51"] {
        assert!(
            w.lab.ping_within(&out, ip(a), Duration::from_secs(5)),
            "ping {a}"
        );
    }
    banner_server(&w.g("pa1"), ip("10.0.1.10"), 7000, Some("pa1"));
    banner_server(&w.g("pb1"), ip("10.0.1.10"), 7000, Some("pb1"));
    let d = Duration::from_secs(5);
    assert_eq!(
        banner(&out, ip("203.0.113.50"), 7000, d).as_deref(),
        Some("pa1")
    );
    assert_eq!(
        banner(&out, ip("203.0.113.51"), 7000, d).as_deref(),
        Some("pb1")
    );
    // Guest → outside leaves from its elastic IP (SNAT), each VPC from its own.
    banner_server(&out, ip("203.0.113.1"), 9000, None);
    assert_eq!(
        banner(&w.g("pa1"), ip("203.0.113.1"), 9000, d).as_deref(),
        Some("203.0.113.50")
    );
    assert_eq!(
        banner(&w.g("pb1"), ip("203.0.113.1"), 9000, d).as_deref(),
        Some("203.0.113.51")
    );
    // A guest without an elastic IP (and no NAT gateway) has no way out.
    assert!(!w.lab.ping(&w.g("pa2"), ip("203.0.113.1"), 1));
    // Idempotent with the external pieces too.
    assert_eq!(w.apply(&m), 0);

    // The cap holds in both directions (iperf3, 4 s).
    let cap = f64::from(CAP) * 1e6;
    let (ga, out2) = (w.g("pa1"), out.clone());
    let up = w.lab.iperf3(&out2, &ga, "203.0.113.1", 4, false).unwrap();
    let down = w.lab.iperf3(&out2, &ga, "203.0.113.1", 4, true).unwrap();
    eprintln!(
        "elastic IP cap {CAP} Mbit/s: guest→outside {:.2} Mbit/s, outside→guest {:.2} Mbit/s",
        up / 1e6,
        down / 1e6
    );
    for (dir, r) in [("egress", up), ("ingress", down)] {
        assert!(
            (cap * 0.9..=cap * 1.1).contains(&r),
            "{dir} {:.2} Mbit/s not within ±10 % of {CAP}",
            r / 1e6
        );
    }

    // Drift: a deleted uplink, proxy entry, external route table and NAT table come back.
    let ha = w.host_ns("host-a");
    let rns = format!("{}-host-a-ynr-00002a", w.lab.prefix);
    for (ns, argv) in [
        (&ha, vec!["ip", "link", "del", "ynu-00002a"]),
        (
            &ha,
            vec!["ip", "neigh", "del", "proxy", "203.0.113.51", "dev", "ext0"],
        ),
        (&rns, vec!["nft", "delete", "table", "ip", "yunhan_router"]),
    ] {
        let o = w.lab.exec(ns, &argv).unwrap();
        assert!(o.status.success(), "{argv:?}");
    }
    let table = w.plans["host-a"].externals[0].table.to_string();
    let o = w
        .lab
        .exec(&ha, &["ip", "route", "flush", "table", &table])
        .unwrap();
    assert!(o.status.success());
    assert!(!w.lab.ping(&out, ip("203.0.113.50"), 1));
    let repaired = w.apply(&m);
    assert!(repaired >= 4, "repaired {repaired}");
    for a in ["203.0.113.50", "203.0.113.51"] {
        assert!(w.lab.ping_within(&out, ip(a), d), "ping {a} after repair");
    }
    assert_eq!(
        banner(&out, ip("203.0.113.50"), 7000, d).as_deref(),
        Some("pa1")
    );
    assert_eq!(w.apply(&m), 0);

    // Unbinding stops it: no answer at the address, no way out for the guest.
    m.elastic_ips[0].port = None;
    assert!(w.apply(&m) > 0);
    assert!(!w.lab.ping(&out, ip("203.0.113.50"), 1));
    assert!(tcp_blocked(&out, ip("203.0.113.50"), 7000));
    assert!(!w.lab.ping(&w.g("pa1"), ip("203.0.113.1"), 1));
    // The other VPC's elastic IP is untouched.
    assert_eq!(
        banner(&out, ip("203.0.113.51"), 7000, d).as_deref(),
        Some("pb1")
    );
    // Removing everything external leaves nothing behind (no tables, rules, proxies).
    m.elastic_ips.clear();
    w.apply(&m);
    assert_eq!(w.apply(&m), 0);
    let rules = w.lab.exec(&ha, &["ip", "rule", "show"]).unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains("203.0.113"), "{rules}");
    let proxies = w.lab.exec(&ha, &["ip", "neigh", "show", "proxy"]).unwrap();
    assert!(proxies.stdout.is_empty());
}

#[test]
fn e2e_network_nat_gateway_snat_from_another_host_and_dnat() {
    let mut m = fixtures::two_host_model();
    m.external_networks.push(fixtures::external(&m));
    open_to_external(&mut m);
    // The gateway runs on host-b; pa1 (10.0.1.10) is on host-a, pa3 (10.0.2.10) on host-b.
    m.nat_gateways.push(NatGateway {
        id: "nat-a".into(),
        vpc: "vpc-a".into(),
        external_ip: ip("203.0.113.60"),
        subnets: vec![],
        dnat: vec![
            DnatRule {
                protocol: Protocol::Tcp,
                external_port: 8080,
                internal_ip: ip("10.0.1.10"),
                internal_port: 80,
            },
            DnatRule {
                protocol: Protocol::Tcp,
                external_port: 8081,
                internal_ip: ip("10.0.2.10"),
                internal_port: 80,
            },
        ],
        host: "host-b".into(),
    });
    // pb1 (vpc-b, same 10.0.1.10 on host-a) has no NAT gateway: it must not get out.
    let mut w = World::with_external("f", &m);
    let out = w.outside.clone();
    let d = Duration::from_secs(5);
    banner_server(&out, ip("203.0.113.1"), 9000, None);
    // SNAT: from the other host (through the transit) and from the gateway's own host.
    assert_eq!(
        banner(&w.g("pa1"), ip("203.0.113.1"), 9000, d).as_deref(),
        Some("203.0.113.60")
    );
    assert_eq!(
        banner(&w.g("pa3"), ip("203.0.113.1"), 9000, d).as_deref(),
        Some("203.0.113.60")
    );
    assert!(w.lab.ping_within(&w.g("pa2"), ip("203.0.113.1"), d));
    assert!(!w.lab.ping(&w.g("pb1"), ip("203.0.113.1"), 1));
    // DNAT: port-forwards to a guest on another host and to one on the gateway's host.
    banner_server(&w.g("pa1"), ip("10.0.1.10"), 80, Some("pa1"));
    banner_server(&w.g("pa3"), ip("10.0.2.10"), 80, Some("pa3"));
    assert_eq!(
        banner(&out, ip("203.0.113.60"), 8080, d).as_deref(),
        Some("pa1")
    );
    assert_eq!(
        banner(&out, ip("203.0.113.60"), 8081, d).as_deref(),
        Some("pa3")
    );
    assert!(tcp_blocked(&out, ip("203.0.113.60"), 80));
    assert_eq!(w.apply(&m), 0);
    // An elastic IP wins over the gateway for its port.
    m.elastic_ips.push(ElasticIp {
        id: "eip-a".into(),
        address: ip("203.0.113.50"),
        port: Some("pa1".into()),
        bandwidth_mbit: None,
    });
    w.apply(&m);
    assert_eq!(
        banner(&w.g("pa1"), ip("203.0.113.1"), 9000, d).as_deref(),
        Some("203.0.113.50")
    );
    assert_eq!(
        banner(&w.g("pa3"), ip("203.0.113.1"), 9000, d).as_deref(),
        Some("203.0.113.60")
    );
    // pa1:80 is reachable both through its elastic IP and through the gateway's forward.
    assert_eq!(
        banner(&out, ip("203.0.113.50"), 80, d).as_deref(),
        Some("pa1")
    );
    assert_eq!(
        banner(&out, ip("203.0.113.60"), 8080, d).as_deref(),
        Some("pa1")
    );
    // Limited to subnet sn-a2: pa2 (sn-a1, no elastic IP) loses its way out.
    m.nat_gateways[0].subnets = vec!["sn-a2".into()];
    w.apply(&m);
    assert!(!w.lab.ping(&w.g("pa2"), ip("203.0.113.1"), 1));
    assert!(w.lab.ping_within(&w.g("pa3"), ip("203.0.113.1"), d));
    // Removing the gateway removes its address and transit.
    m.nat_gateways.clear();
    w.apply(&m);
    assert!(!w.lab.ping(&w.g("pa3"), ip("203.0.113.1"), 1));
    assert!(tcp_blocked(&out, ip("203.0.113.60"), 8081));
    assert_eq!(w.apply(&m), 0);
}

/// keepalived-style takeover inside a namespace guest: the VIP on a macvlan with the VIP's
/// MAC (`use_vmac`), ARP answered only by the interface holding an address and sent from
/// the interface's own address (`arp_ignore=1`, `arp_announce=2`), and a gratuitous ARP
/// from the VIP's MAC.
#[test]
fn e2e_network_vip_failover_between_hosts() {
    // pa4: a client on host-a next to the first holder; pa3 (host-b, other subnet) is routed.
    let mut m = model_with_pa4(&["sg-web"]);
    let vip = ip("10.0.1.100");
    m.vips.push(Vip {
        id: "vip1".into(),
        vpc: "vpc-a".into(),
        subnet: "sn-a1".into(),
        ip: vip,
        mac: None,
        ports: vec!["pa1".into(), "pa2".into()],
        holder: Some("pa1".into()),
    });
    let mac = m.vips[0].effective_mac().to_string();
    let mut w = World::new("g", &m);
    let d = Duration::from_secs(5);
    for (g, name) in [("pa1", "pa1"), ("pa2", "pa2")] {
        banner_server(&w.g(g), ip("0.0.0.0"), 80, Some(name));
    }
    w.lab.take_vip(&w.g("pa1"), vip, &mac);
    let holders = |w: &World, h: &str| w.realisers[h].vip_holders(&w.plans[h]).unwrap();
    assert_eq!(holders(&w, "host-a"), vec![("vip1".into(), "pa1".into())]);
    assert!(holders(&w, "host-b").is_empty());
    for c in ["pa4", "pa3"] {
        assert!(w.lab.ping_within(&w.g(c), vip, d), "{c} → VIP");
        assert_eq!(banner(&w.g(c), vip, 80, d).as_deref(), Some("pa1"));
    }
    assert_eq!(w.apply(&m), 0);

    // Failover: pa1 lets go, pa2 (host-b) takes over and announces; host-b's probe sees it,
    // the controller (here: the test) records the holder and every host applies its plan.
    let t0 = Instant::now();
    w.lab.drop_vip(&w.g("pa1"));
    w.lab.take_vip(&w.g("pa2"), vip, &mac);
    let deadline = t0 + Duration::from_secs(5);
    while holders(&w, "host-b") != vec![("vip1".to_string(), "pa2".to_string())] {
        assert!(Instant::now() < deadline, "host-b never saw pa2 announce");
        std::thread::sleep(Duration::from_millis(20)); // poll interval, bounded by the deadline
    }
    let detected = t0.elapsed();
    m.vips[0].holder = Some("pa2".into());
    assert!(w.apply(&m) > 0);
    let applied = t0.elapsed();
    for c in ["pa4", "pa3"] {
        assert!(
            w.lab.ping_within(&w.g(c), vip, d),
            "{c} → VIP after failover"
        );
    }
    let reachable = t0.elapsed();
    for c in ["pa4", "pa3"] {
        assert_eq!(banner(&w.g(c), vip, 80, d).as_deref(), Some("pa2"));
    }
    eprintln!(
        "VIP failover: detected {detected:?}, plans applied {applied:?}, reachable from both clients {reachable:?}"
    );
    // Host-a no longer claims it; the plans agree; a non-member may not send from the VIP.
    assert!(holders(&w, "host-a").is_empty());
    assert_eq!(w.apply(&m), 0);
    let o = w
        .lab
        .exec(
            &w.g("pa4"),
            &["ip", "addr", "add", "10.0.1.100/32", "dev", "eth0"],
        )
        .unwrap();
    assert!(o.status.success());
    assert!(!w
        .lab
        .exec(
            &w.g("pa4"),
            &[
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                "-I",
                "10.0.1.100",
                "10.0.1.11"
            ]
        )
        .unwrap()
        .status
        .success());
}

/// The line a [`banner_server`] answers to a connection from exactly `src` (SO_REUSEADDR:
/// the same 5-tuple again after the previous connection closed), retrying until `deadline`
/// (the previous connection may still be closing).
fn banner_from(
    ns: &str,
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    deadline: Duration,
) -> Option<String> {
    use nix::sys::socket::{self as so, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
    use nix::sys::time::{TimeVal, TimeValLike};
    use std::os::fd::AsRawFd;
    let end = Instant::now() + deadline;
    loop {
        let attempt = Lab::in_netns(ns, move || -> nix::Result<TcpStream> {
            let fd = so::socket(
                AddressFamily::Inet,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC,
                None,
            )?;
            so::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
            so::setsockopt(&fd, sockopt::SendTimeout, &TimeVal::milliseconds(700))?;
            so::bind(fd.as_raw_fd(), &SockaddrIn::from(src))?;
            so::connect(fd.as_raw_fd(), &SockaddrIn::from(dst))?;
            Ok(TcpStream::from(fd))
        })
        .expect("netns");
        let got = attempt.ok().and_then(line_of);
        if got.is_some() {
            return got;
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20)); // retry interval, bounded by the deadline
    }
}

/// A counter of the `Icmp:` lines of `/proc/net/snmp` in namespace `ns`.
fn icmp_counter(lab: &Lab, ns: &str, name: &str) -> u64 {
    let o = lab.exec(ns, &["cat", "/proc/net/snmp"]).expect("exec");
    let text = String::from_utf8_lossy(&o.stdout);
    let mut icmp = text.lines().filter(|l| l.starts_with("Icmp: "));
    let (names, values) = (icmp.next().expect("header"), icmp.next().expect("values"));
    let i = names
        .split_whitespace()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no {name} in {names}"));
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// Port `r`'s guest serves anycast address `v` the way a load balancer replica does: `v`
/// on `lo`, `arp_ignore=1`/`arp_announce=2` on `eth0` (it never answers ARP for `v` nor
/// announces it), and a TCP responder on `v:port` answering its name.
fn replica(w: &World, r: &str, v: Ipv4Addr, port: u16) {
    let g = w.g(r);
    let addr = format!("{v}/32");
    for argv in [
        vec!["ip", "addr", "add", &addr, "dev", "lo"],
        vec![
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.conf.eth0.arp_ignore=1",
            "net.ipv4.conf.eth0.arp_announce=2",
        ],
    ] {
        let o = w.lab.exec(&g, &argv).unwrap();
        assert!(
            o.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    banner_server(&g, v, port, Some(r));
}

/// Which replicas answered `n` connections from `ns` to `addr:port` (by name → count).
fn spread(ns: &str, addr: Ipv4Addr, port: u16, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let name = banner(ns, addr, port, Duration::from_secs(3)).expect("an answer");
        *seen.entry(name).or_default() += 1;
    }
    seen
}

/// Anycast `lb-1` of `vpc-a`: address `ip` in sn-a1, served by ports r1 and r2.
fn anycast_over_r1_r2(ip: Ipv4Addr) -> Anycast {
    Anycast {
        id: "lb-1".into(),
        vpc: "vpc-a".into(),
        subnet: "sn-a1".into(),
        ip,
        ports: vec!["r1".into(), "r2".into()],
    }
}

/// The replicas' group `sg-lb`: TCP `port` open to everyone.
fn lb_group(port: u16) -> SecurityGroup {
    SecurityGroup {
        id: "sg-lb".into(),
        vpc: "vpc-a".into(),
        rules: vec![fixtures::ingress(
            Protocol::Tcp,
            Some((port, port)),
            fixtures::cidr("0.0.0.0/0"),
        )],
    }
}

/// An anycast address served by two replicas (r1 on host-a, r2 on host-b), each a
/// namespace with the address on `lo` (`arp_ignore=1`, `arp_announce=2` on `eth0`) and a
/// TCP responder on it answering its name. A client in the address's own subnet (host-a)
/// and one in another subnet (host-b) reach both replicas over connections from different
/// source ports, a fixed 5-tuple keeps its replica across reconnects, the client's ARP
/// entry for the address is the gateway's MAC, and no ICMP redirect is sent or received
/// (the router forwards the same-subnet client's packets back out of the interface they
/// came in by); with one replica removed from the anycast, the other answers everything.
#[test]
fn e2e_network_anycast_ecmp_over_two_replicas() {
    let v_ip = ip("10.0.1.100");
    const PORT: u16 = 8080;
    let mut m = fixtures::two_host_model();
    m.ports.clear();
    m.security_groups = vec![
        lb_group(PORT),
        SecurityGroup {
            id: "sg-client".into(),
            vpc: "vpc-a".into(),
            rules: vec![],
        },
    ];
    for (id, subnet, host, addr, mac, sg) in [
        (
            "cl",
            "sn-a1",
            "host-a",
            "10.0.1.20",
            "02:00:00:0a:01:14",
            "sg-client",
        ),
        (
            "r1",
            "sn-a1",
            "host-a",
            "10.0.1.21",
            "02:00:00:0a:01:15",
            "sg-lb",
        ),
        (
            "r2",
            "sn-a1",
            "host-b",
            "10.0.1.22",
            "02:00:00:0a:01:16",
            "sg-lb",
        ),
        (
            "cr",
            "sn-a2",
            "host-b",
            "10.0.2.20",
            "02:00:00:0a:02:14",
            "sg-client",
        ),
    ] {
        m.ports
            .push(fixtures::port(id, "vpc-a", subnet, host, addr, mac, &[sg]));
    }
    m.anycasts.push(anycast_over_r1_r2(v_ip));
    let gateway_mac = m.subnets[0].gateway_mac.to_string();
    let mut w = World::new("k", &m);
    let (cl, cr) = (w.g("cl"), w.g("cr"));
    for r in ["r1", "r2"] {
        replica(&w, r, v_ip, PORT);
    }
    let d = Duration::from_secs(5);
    let routers: Vec<String> = ["host-a", "host-b"]
        .iter()
        .map(|h| format!("{}-{h}-ynr-00002a", w.lab.prefix))
        .collect();
    // Every router holds the equal-cost route, tagged as ours.
    for rns in &routers {
        let text = anycast_routes(&w.lab, rns);
        for hop in ["nexthop via 10.0.1.21", "nexthop via 10.0.1.22"] {
            assert!(text.contains(hop), "{rns}: {text}");
        }
    }
    assert_eq!(w.apply(&m), 0, "idempotent with an anycast");

    // The first answer waits for ARP; then many connections (new source ports each) spread.
    assert!(banner(&cl, v_ip, PORT, d).is_some());
    assert!(banner(&cr, v_ip, PORT, d).is_some());
    let t = Instant::now();
    let same_subnet = spread(&cl, v_ip, PORT, 64);
    let routed = spread(&cr, v_ip, PORT, 64);
    eprintln!(
        "anycast: 64 connections from the same subnet {same_subnet:?}, 64 routed {routed:?} in {:?}",
        t.elapsed()
    );
    for seen in [&same_subnet, &routed] {
        assert_eq!(
            seen.keys().map(String::as_str).collect::<Vec<_>>(),
            ["r1", "r2"],
            "{seen:?}"
        );
    }

    // A given 5-tuple keeps its replica: five connections from each fixed source port,
    // ports taken until each replica has some (so stickiness is not everything going to
    // one replica).
    let dst = std::net::SocketAddrV4::new(v_ip, PORT);
    let mut sticky = BTreeMap::new();
    for sport in 40001u16..40033 {
        let src = std::net::SocketAddrV4::new(ip("10.0.1.20"), sport);
        let names: Vec<String> = (0..5)
            .map(|_| banner_from(&cl, src, dst, d).expect("an answer"))
            .collect();
        assert!(names.iter().all(|n| *n == names[0]), "{sport}: {names:?}");
        sticky.insert(sport, names[0].clone());
        if sticky.values().any(|n| n == "r1") && sticky.values().any(|n| n == "r2") {
            break;
        }
    }
    eprintln!("anycast: fixed source ports keep their replica: {sticky:?}");
    assert!(
        sticky.values().any(|n| n == "r1") && sticky.values().any(|n| n == "r2"),
        "{sticky:?}"
    );

    // ARP for the address was answered with the gateway's MAC (the VXLAN proxy).
    assert_eq!(
        neigh_mac(&w.lab, &cl, v_ip).as_deref(),
        Some(gateway_mac.as_str())
    );
    // No ICMP redirect: none sent by the routers, none received, none cached by the client.
    for rns in &routers {
        assert_eq!(icmp_counter(&w.lab, rns, "OutRedirects"), 0, "{rns}");
    }
    assert_eq!(icmp_counter(&w.lab, &cl, "InRedirects"), 0);
    let o = w
        .lab
        .exec(&cl, &["ip", "route", "get", "10.0.1.100"])
        .unwrap();
    let route = String::from_utf8_lossy(&o.stdout);
    assert!(
        !route.contains("redirected") && !route.contains(" via "),
        "{route}"
    );
    // `send_redirects` counts per device (all OR device): one turned on again is repaired.
    let gw = yunhan_net::names::router_dev("sn-a1");
    let key = format!("net.ipv4.conf.{gw}.send_redirects");
    let read = |w: &World| {
        let o = w.lab.exec(&routers[0], &["sysctl", "-n", &key]).unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(read(&w), "0");
    let o = w
        .lab
        .exec(&routers[0], &["sysctl", "-q", "-w", &format!("{key}=1")])
        .unwrap();
    assert!(o.status.success());
    assert!(w.apply(&m) > 0);
    assert_eq!(read(&w), "0");

    // The counters above would see redirects: allowed again on host-a's router, the next
    // connection from the client is redirected (a Linux client ignores a redirect for an
    // address it sends to on-link, other stacks need not); the next apply turns them off.
    for k in ["net.ipv4.conf.all.send_redirects", key.as_str()] {
        let o = w
            .lab
            .exec(&routers[0], &["sysctl", "-q", "-w", &format!("{k}=1")])
            .unwrap();
        assert!(o.status.success());
    }
    let end = Instant::now() + d;
    while icmp_counter(&w.lab, &cl, "InRedirects") == 0 {
        assert!(Instant::now() < end, "no redirect with send_redirects on");
        banner(&cl, v_ip, PORT, d).expect("an answer");
    }
    assert!(icmp_counter(&w.lab, &routers[0], "OutRedirects") > 0);
    assert!(w.apply(&m) > 0);
    assert_eq!(read(&w), "0");
    let o = w
        .lab
        .exec(
            &routers[0],
            &["sysctl", "-n", "net.ipv4.conf.all.send_redirects"],
        )
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "0");
    let redirects = icmp_counter(&w.lab, &cl, "InRedirects");
    assert!(spread(&cl, v_ip, PORT, 16).len() == 2);
    assert_eq!(icmp_counter(&w.lab, &cl, "InRedirects"), redirects);

    // r2 leaves the anycast: everything reaches r1, from both clients.
    m.anycasts[0].ports = vec!["r1".into()];
    assert!(w.apply(&m) > 0);
    for rns in &routers {
        let text = anycast_routes(&w.lab, rns);
        assert!(
            text.contains("10.0.1.100 via 10.0.1.21 dev") && !text.contains("10.0.1.22"),
            "{rns}: {text}"
        );
    }
    for c in [&cl, &cr] {
        let seen = spread(c, v_ip, PORT, 32);
        assert_eq!(
            seen.keys().map(String::as_str).collect::<Vec<_>>(),
            ["r1"],
            "{seen:?}"
        );
    }
    for sport in sticky.keys() {
        let src = std::net::SocketAddrV4::new(ip("10.0.1.20"), *sport);
        assert_eq!(banner_from(&cl, src, dst, d).as_deref(), Some("r1"));
    }
    assert_eq!(w.apply(&m), 0);

    // The anycast goes: its routes and the proxy's neighbour go with it.
    m.anycasts.clear();
    assert!(w.apply(&m) > 0);
    for rns in &routers {
        let o = w
            .lab
            .exec(rns, &["ip", "route", "show", "proto", "121"])
            .unwrap();
        assert!(
            o.stdout.is_empty(),
            "{rns}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let o = w
        .lab
        .exec(&w.host_ns("host-a"), &["ip", "neigh", "show", "10.0.1.100"])
        .unwrap();
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(w.apply(&m), 0);
}

/// The MAC of `dev` in namespace `ns`.
fn link_mac(lab: &Lab, ns: &str, dev: &str) -> String {
    let o = lab.exec(ns, &["ip", "-j", "link", "show", dev]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0]["address"].as_str().unwrap().to_string()
}

/// An elastic IP's (inbound, outbound) bytes as router namespace `rns` counted them.
fn eip_bytes(lab: &Lab, rns: &str, id: &str) -> (u64, u64) {
    let o = lab
        .exec(rns, &["nft", "-j", "list", "table", "ip", "yunhan_router"])
        .unwrap();
    let counters = yunhan_net::nft::eip_counters(&String::from_utf8_lossy(&o.stdout));
    let sum = |inbound: bool| {
        (counters.iter())
            .filter(|(e, i, _, _)| e == id && *i == inbound)
            .map(|(_, _, _, bytes)| bytes)
            .sum()
    };
    (sum(true), sum(false))
}

/// An elastic IP on an anycast address served by replicas r1 (host-a) and r2 (host-b),
/// with a NAT gateway of the VPC on host-b covering the replicas' subnet: stateless NAT.
/// The outside opens many connections to the elastic IP: all complete (so the answers
/// come from the elastic IP, through whichever host holds the replica) and both replicas
/// serve; the outside's ARP entry is the anchor's (host-a, pa1 listed first) external MAC;
/// host-a's router counts the traffic in, both routers the answers out. With the serving
/// ports listed the other way round host-b becomes the anchor: the outside's entry moves
/// to it (gratuitous ARP), host-a stops answering, connections still reach both replicas;
/// with r2 gone from the anycast, host-b drops it and everything reaches r1 via host-a.
#[test]
fn e2e_network_elastic_ip_on_an_anycast_address() {
    let (v_ip, eip) = (ip("10.0.1.100"), ip("203.0.113.70"));
    const PORT: u16 = 8080;
    let mut m = fixtures::two_host_model();
    m.ports.clear();
    m.security_groups = vec![lb_group(PORT)];
    for (id, host, addr, mac) in [
        ("r1", "host-a", "10.0.1.21", "02:00:00:0a:01:15"),
        ("r2", "host-b", "10.0.1.22", "02:00:00:0a:01:16"),
    ] {
        let p = fixtures::port(id, "vpc-a", "sn-a1", host, addr, mac, &["sg-lb"]);
        m.ports.push(p);
    }
    m.anycasts.push(anycast_over_r1_r2(v_ip));
    m.external_networks.push(fixtures::external(&m));
    m.nat_gateways.push(NatGateway {
        id: "nat-a".into(),
        vpc: "vpc-a".into(),
        external_ip: ip("203.0.113.60"),
        subnets: vec![],
        dnat: vec![],
        host: "host-b".into(),
    });
    m.elastic_ips.push(ElasticIp {
        id: "eip-lb".into(),
        address: eip,
        port: Some("lb-1".into()),
        bandwidth_mbit: None,
    });
    let mut w = World::with_external("n", &m);
    let out = w.outside.clone();
    for r in ["r1", "r2"] {
        replica(&w, r, v_ip, PORT);
    }
    assert_eq!(w.apply(&m), 0, "idempotent with an anycast's elastic IP");
    let (ha, hb) = (w.host_ns("host-a"), w.host_ns("host-b"));
    let (mac_a, mac_b) = (link_mac(&w.lab, &ha, "ext0"), link_mac(&w.lab, &hb, "ext0"));
    let rns = |h: &str| format!("{}-{h}-ynr-00002a", w.lab.prefix);
    let d = Duration::from_secs(5);

    // The first answer waits for ARP; then many connections (new source ports) spread.
    let t = Instant::now();
    assert!(
        banner(&out, eip, PORT, d).is_some(),
        "the elastic IP answers"
    );
    eprintln!("anycast elastic IP: first answer after {:?}", t.elapsed());
    let t = Instant::now();
    let seen = spread(&out, eip, PORT, 64);
    eprintln!(
        "anycast elastic IP: 64 connections from the outside {seen:?} in {:?}",
        t.elapsed()
    );
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        ["r1", "r2"]
    );
    assert_eq!(
        neigh_mac(&w.lab, &out, eip),
        Some(mac_a.clone()),
        "anchor host-a"
    );
    let proxies = |w: &World, ns: &str| {
        let o = w.lab.exec(ns, &["ip", "neigh", "show", "proxy"]).unwrap();
        String::from_utf8_lossy(&o.stdout).contains("203.0.113.70")
    };
    assert!(proxies(&w, &ha) && !proxies(&w, &hb));
    // In through host-a's router only; out through both (each replica's answers).
    let (a_in, a_out) = eip_bytes(&w.lab, &rns("host-a"), "eip-lb");
    let (b_in, b_out) = eip_bytes(&w.lab, &rns("host-b"), "eip-lb");
    eprintln!(
        "anycast elastic IP bytes: host-a in {a_in} out {a_out}, host-b in {b_in} out {b_out}"
    );
    assert!(a_in > 0 && a_out > 0 && b_out > 0 && b_in == 0);
    // Conntrack neither translates nor judges them: no entry for the anycast address in
    // the routers, none for the elastic IP in the host namespaces.
    for (ns, flag, addr) in [
        (rns("host-a"), "-s", "10.0.1.100"),
        (rns("host-b"), "-s", "10.0.1.100"),
        (ha.clone(), "-d", "203.0.113.70"),
        (hb.clone(), "-s", "203.0.113.70"),
    ] {
        let o = w.lab.exec(&ns, &["conntrack", "-L", flag, addr]).unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.trim().is_empty(), "{ns} {flag} {addr}: {text}");
    }

    // Both routers hash with the VPC's seed: whichever host the elastic IP enters by, a
    // 5-tuple takes the same next hop (so an outside flow keeps its replica when the
    // anchor moves). `ip route get` asks each router's forwarding decision.
    let gw = yunhan_net::names::router_dev("sn-a1");
    let next_hop = |ns: &str, sport: u16| {
        let (sport, dport) = (sport.to_string(), PORT.to_string());
        let argv = [
            "ip",
            "route",
            "get",
            "10.0.1.100",
            "from",
            "203.0.113.1",
            "iif",
            &gw,
            "ipproto",
            "tcp",
            "sport",
            &sport,
            "dport",
            &dport,
        ];
        let o = w.lab.exec(ns, &argv).unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let via = text.split_whitespace().skip_while(|t| *t != "via").nth(1);
        via.map(String::from).unwrap_or(text)
    };
    let mut hops = BTreeMap::new();
    for sport in 40000..40032 {
        let a = next_hop(&rns("host-a"), sport);
        assert_eq!(a, next_hop(&rns("host-b"), sport), "source port {sport}");
        *hops.entry(a).or_insert(0) += 1;
    }
    eprintln!("anycast elastic IP: 32 source ports, the same next hop on both routers: {hops:?}");
    assert_eq!(hops.len(), 2, "{hops:?}");

    // host-b becomes the anchor: it answers (and announces) the address, host-a stops.
    m.anycasts[0].ports.reverse();
    let t = Instant::now();
    assert!(w.apply(&m) > 0);
    let applied = t.elapsed();
    while neigh_mac(&w.lab, &out, eip).as_deref() != Some(mac_b.as_str()) {
        assert!(
            t.elapsed() < d,
            "the outside still has {:?}",
            neigh_mac(&w.lab, &out, eip)
        );
        std::thread::sleep(Duration::from_millis(10)); // poll interval, bounded by `d`
    }
    eprintln!(
        "anycast elastic IP: anchor moved to host-b, applied in {applied:?}, outside's ARP entry moved after {:?}",
        t.elapsed()
    );
    assert!(proxies(&w, &hb) && !proxies(&w, &ha));
    let seen = spread(&out, eip, PORT, 32);
    eprintln!("anycast elastic IP: 32 connections through host-b {seen:?}");
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        ["r1", "r2"]
    );
    assert_eq!(w.apply(&m), 0);

    // r2 leaves the anycast: host-b has no serving port, so neither the address nor its
    // uplink; host-a anchors it again and r1 answers everything.
    m.anycasts[0].ports = vec!["r1".into()];
    assert!(w.apply(&m) > 0);
    assert!(w.plans["host-b"].elastic_ips.is_empty());
    let seen = spread(&out, eip, PORT, 16);
    assert_eq!(seen.keys().map(String::as_str).collect::<Vec<_>>(), ["r1"]);
    assert_eq!(neigh_mac(&w.lab, &out, eip), Some(mac_a));
    assert!(proxies(&w, &ha) && !proxies(&w, &hb));
    assert_eq!(w.apply(&m), 0);
}
