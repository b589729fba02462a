//! NAT mode's translation through BPF_PROG_TEST_RUN of the tc program: a client's packet
//! goes to its Maglev backend from the interface's address, the backend's answer and its
//! ICMP error come back as from the VIP (and are counted as its answers), checksums stay
//! right, and two nodes translate a flow alike. Needs root (BPF) — hence the e2e_ prefix.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use yunhan_vortex::control::{vip_key, Controller, DesiredBackend, DesiredVip, Forward};
use yunhan_vortex::dataplane::{Dataplane, Hook, TC_ACT_OK, TC_ACT_REDIRECT};
use yunhan_vortex::packet::{self, checksum, TCP, TCP_ACK, TCP_SYN, UDP};

const OURS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const BACKEND_PORT: u16 = 8080;
/// The test run's device (loopback: BPF_PROG_TEST_RUN classifies frames against it), so
/// frames to it are the host's.
const MAC_A: [u8; 6] = [0; 6];
const MAC_B: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 1];

fn backends() -> Vec<Ipv4Addr> {
    backends_of(3)
}

fn backends_of(n: u8) -> Vec<Ipv4Addr> {
    (11..11 + n).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect()
}

/// A NAT-mode data plane serving VIP tcp/80 and udp/53 over three backends on 8080.
fn node(tag: &str) -> Controller {
    node_of(tag, 3)
}

/// The same over `n` backends.
fn node_of(tag: &str, n: u8) -> Controller {
    let mut o = common::options(&format!("nat-{tag}"));
    o.hook = Hook::Tc;
    o.nat_source = OURS;
    let dp = Dataplane::load(o).expect("load the tc program (root + BPF needed)");
    let mut c = Controller::new(dp).unwrap();
    let vip = |port, proto| DesiredVip {
        addr: VIP.into(),
        port,
        proto,
        hash_source: false,
        backends: (backends_of(n).into_iter())
            .map(|a| DesiredBackend {
                addr: a.into(),
                mac: None,
                weight: 1,
                healthy: true,
                forward: Forward::Nat,
            })
            .collect(),
    };
    let desired = [vip(80, TCP), vip(53, UDP)];
    c.apply(&desired).unwrap();
    let mut targets = Vec::new();
    for d in &desired {
        let index = c.vip_info(&vip_key(d.addr, d.port, d.proto)).unwrap().index;
        for b in &d.backends {
            let id = c.backend_id(b.addr).unwrap();
            targets.push((index << 12 | id, BACKEND_PORT));
        }
    }
    c.dataplane_mut().set_nat_targets(&targets).unwrap();
    c
}

/// An IPv4 frame with a valid TCP/UDP checksum.
fn frame(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ports: (u16, u16), flags: u8) -> Vec<u8> {
    let mut seg = packet::l4(proto, ports.0, ports.1, flags, b"hello");
    let at = if proto == TCP { 16 } else { 6 };
    let c = checksum(&[pseudo(src, dst, proto, seg.len()), seg.clone()].concat());
    seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
    let mut f = packet::ethernet(MAC_A, MAC_B, packet::ETH_P_IP);
    f.extend(packet::ipv4_header(src, dst, proto, seg.len(), 0));
    f.extend(seg);
    f
}

fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = [src.octets(), dst.octets()].concat();
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

/// What a frame carries: (source, destination, source port, destination port).
fn tuple(f: &[u8]) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
    let ip = |at: usize| Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3]);
    let port = |at: usize| u16::from_be_bytes([f[at], f[at + 1]]);
    (ip(26), ip(30), port(34), port(36))
}

/// The IP header's and the TCP/UDP checksum are right.
fn assert_checksums(f: &[u8]) {
    assert_eq!(checksum(&f[14..34]), 0, "IP header checksum");
    let (src, dst, ..) = tuple(f);
    let seg = &f[34..];
    assert_eq!(
        checksum(&[pseudo(src, dst, f[23], seg.len()), seg.to_vec()].concat()),
        0,
        "L4 checksum"
    );
}

fn run(c: &Controller, f: &[u8]) -> (u32, Vec<u8>) {
    let r = c.dataplane().test_run(f, 1).unwrap();
    (r.verdict, r.data)
}

#[test]
fn e2e_tc_nat_translates_both_ways_and_nodes_agree() {
    let a = node("a");
    let syn = frame(CLIENT, VIP, TCP, (40000, 80), TCP_SYN);
    let (verdict, out) = run(&a, &syn);
    assert_eq!(verdict, TC_ACT_REDIRECT, "translated and redirected");
    let (src, backend, sport, dport) = tuple(&out);
    assert_eq!(
        (src, sport, dport),
        (OURS, 40000, BACKEND_PORT),
        "from us, the client's port kept"
    );
    assert!(backends().contains(&backend), "{backend}");
    assert_checksums(&out);

    // The backend's answer goes back to the client as from the VIP.
    let answer = frame(backend, OURS, TCP, (BACKEND_PORT, 40000), TCP_SYN | TCP_ACK);
    let (verdict, out) = run(&a, &answer);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(tuple(&out), (VIP, CLIENT, 80, 40000));
    assert_checksums(&out);
    let index = a.vip_info(&vip_key(VIP.into(), 80, TCP)).unwrap().index;
    let replies = a.dataplane().vip_reply_stats(index).unwrap();
    let expected = (1, answer.len() as u64);
    assert_eq!(
        (replies.packets, replies.bytes),
        expected,
        "answers counted"
    );

    // An answer nobody asked for passes untouched; so does traffic not to a VIP.
    let stray = frame(backend, OURS, TCP, (BACKEND_PORT, 40001), TCP_ACK);
    assert_eq!(run(&a, &stray), (TC_ACT_OK, stray.clone()));
    let other = frame(CLIENT, OURS, TCP, (40000, 22), TCP_SYN);
    assert_eq!(run(&a, &other), (TC_ACT_OK, other.clone()));

    // A client port in the kernel's range gets one from the flow's hash, below 49152, and
    // another node with the same configuration translates the flow exactly alike.
    let high = frame(CLIENT, VIP, TCP, (50000, 80), TCP_ACK);
    let (_, out_a) = run(&a, &high);
    let b = node("b");
    let (verdict, out_b) = run(&b, &high);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_eq!(tuple(&out_a), tuple(&out_b), "two nodes, one translation");
    assert!(
        (1024..49152).contains(&tuple(&out_a).2),
        "{:?}",
        tuple(&out_a)
    );
    let counters: Vec<(&str, u64)> = a.dataplane().counters().unwrap();
    let count = |n: &str| counters.iter().find(|(k, _)| *k == n).unwrap().1;
    assert_eq!((count("nat_forward"), count("nat_reply")), (2, 1));

    // A frame flooded here for another MAC (another replica holding the VIP) is left to
    // the stack, which drops it.
    let mut flooded = frame(CLIENT, VIP, TCP, (40002, 80), TCP_ACK);
    flooded[..6].copy_from_slice(&MAC_B);
    assert_eq!(run(&a, &flooded), (TC_ACT_OK, flooded.clone()));
}

#[test]
fn e2e_tc_nat_a_taken_port_goes_to_another_client_never() {
    let a = node("c");
    let (_, first) = run(&a, &frame(CLIENT, VIP, TCP, (40000, 80), TCP_SYN));
    // Another client with the same port, to whichever backend: it never gets a
    // translation that collides with the first flow's.
    let other = Ipv4Addr::new(192, 0, 2, 8);
    let seen: Vec<_> = (0..20)
        .map(|i| {
            let client = Ipv4Addr::new(192, 0, 2, 20 + i);
            tuple(&run(&a, &frame(client, VIP, TCP, (40000, 80), TCP_SYN)).1)
        })
        .chain([tuple(
            &run(&a, &frame(other, VIP, TCP, (40000, 80), TCP_SYN)).1,
        )])
        .collect();
    let taken = tuple(&first);
    for t in &seen {
        assert!((t.1, t.2) != (taken.1, taken.2), "{t:?} reuses {taken:?}");
    }
}

#[test]
fn e2e_tc_nat_icmp_error_from_a_backend_goes_back_translated() {
    let a = node("d");
    let (_, out) = run(&a, &frame(CLIENT, VIP, UDP, (40000, 53), 0));
    let (_, backend, nport, _) = tuple(&out);
    // The backend's "port unreachable", quoting the datagram as it received it.
    let quoted = &out[14..14 + 28];
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quoted);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut f = packet::ethernet(MAC_A, MAC_B, packet::ETH_P_IP);
    f.extend(packet::ipv4_header(backend, OURS, 1, icmp.len(), 0));
    f.extend(icmp);
    let (verdict, out) = run(&a, &f);
    assert_eq!(verdict, TC_ACT_REDIRECT);
    let ip = |at: usize| IpAddr::from([out[at], out[at + 1], out[at + 2], out[at + 3]]);
    assert_eq!(
        (ip(26), ip(30)),
        (VIP.into(), CLIENT.into()),
        "outer: VIP → client"
    );
    assert_eq!(checksum(&out[14..34]), 0, "outer IP checksum");
    assert_eq!(checksum(&out[34..]), 0, "ICMP checksum");
    let inner = &out[42..];
    assert_eq!(checksum(&inner[..20]), 0, "quoted IP checksum");
    assert_eq!(
        (ip(42 + 12), ip(42 + 16)),
        (CLIENT.into(), VIP.into()),
        "quoted: client → VIP"
    );
    let port = |at: usize| u16::from_be_bytes([inner[at], inner[at + 1]]);
    assert_eq!(
        (port(20), port(22)),
        (40000, 53),
        "quoted ports (was {nport})"
    );
}

#[test]
fn e2e_tc_nat_a_port_frees_10s_after_its_flow_ended_not_when_half_closed() {
    const FIN: u8 = 0x01;
    let a = node_of("e", 1);
    let backend = backends_of(1)[0];
    let port_of = |client: [u8; 4], port: u16, flags: u8| {
        let f = frame(client.into(), VIP, TCP, (port, 80), flags);
        tuple(&run(&a, &f).1).2
    };
    // Two flows keep their clients' ports; a second client's flow on the same port
    // towards the one backend gets another.
    assert_eq!(port_of([192, 0, 2, 1], 40000, TCP_SYN), 40000);
    assert_eq!(port_of([192, 0, 2, 2], 40001, TCP_SYN), 40001);
    assert_ne!(port_of([192, 0, 2, 3], 40000, TCP_SYN), 40000);
    // The first ends (a FIN each way); the second is only half closed (the client's FIN).
    port_of([192, 0, 2, 1], 40000, FIN | TCP_ACK);
    let backend_fin = frame(backend, OURS, TCP, (BACKEND_PORT, 40000), FIN | TCP_ACK);
    assert_eq!(run(&a, &backend_fin).0, TC_ACT_REDIRECT);
    port_of([192, 0, 2, 2], 40001, FIN | TCP_ACK);
    std::thread::sleep(std::time::Duration::from_millis(10_500));
    assert_eq!(
        port_of([192, 0, 2, 4], 40000, TCP_SYN),
        40000,
        "ended: free"
    );
    assert_ne!(
        port_of([192, 0, 2, 5], 40001, TCP_SYN),
        40001,
        "half closed: still taken"
    );
}

/// A flow whose first packet the kernel's NAT took (no target yet: a configuration being
/// written) stays the kernel's once the target is there: its later packets are not
/// translated here differently (the backend would see another connection). New flows are
/// translated here.
#[test]
fn e2e_tc_nat_a_flow_the_kernel_took_stays_the_kernels() {
    let mut a = node("k");
    let all: Vec<(u32, u16)> = {
        let index = a.vip_info(&vip_key(VIP.into(), 80, TCP)).unwrap().index;
        (backends().iter())
            .map(|b| {
                (
                    index << 12 | a.backend_id((*b).into()).unwrap(),
                    BACKEND_PORT,
                )
            })
            .collect()
    };
    a.dataplane_mut().set_nat_targets(&[]).unwrap();
    let syn = frame(CLIENT, VIP, TCP, (40000, 80), TCP_SYN);
    assert_eq!(
        run(&a, &syn),
        (TC_ACT_OK, syn.clone()),
        "to the kernel's NAT"
    );
    a.dataplane_mut().set_nat_targets(&all).unwrap();
    let ack = frame(CLIENT, VIP, TCP, (40000, 80), TCP_ACK);
    assert_eq!(
        run(&a, &ack),
        (TC_ACT_OK, ack.clone()),
        "still the kernel's"
    );
    let other = frame(CLIENT, VIP, TCP, (40001, 80), TCP_SYN);
    assert_eq!(run(&a, &other).0, TC_ACT_REDIRECT, "a new flow is ours");
    let counters: Vec<(&str, u64)> = a.dataplane().counters().unwrap();
    let count = |n: &str| counters.iter().find(|(k, _)| *k == n).unwrap().1;
    assert_eq!((count("nat_mark"), count("nat_forward")), (2, 1));
}
