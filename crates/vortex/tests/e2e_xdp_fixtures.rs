//! Packet fixtures through BPF_PROG_TEST_RUN: input packet → expected verdict
//! and output bytes. Needs root (BPF) — hence the e2e_ prefix.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::M;

use yunhan_vortex::control::{Controller, DesiredBackend, DesiredVip, Forward};
use yunhan_vortex::dataplane::{Dataplane, LoadOptions, XDP_DROP, XDP_PASS, XDP_TX};
use yunhan_vortex::hash::{flow_hash, FlowTuple};
use yunhan_vortex::maglev::{self, Member};
use yunhan_vortex::packet::{self, frame, TCP, UDP};

const LB_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [0x02, 0xcc, 0, 0, 0, 1];
const VIP4: &str = "10.0.1.1";
const VIP6: &str = "fd00::1:1";

fn opts(tag: &str) -> LoadOptions {
    let mut o = common::options(tag);
    o.vxlan_source = Ipv4Addr::new(192, 168, 0, 1);
    o
}

fn mac(i: u8) -> [u8; 6] {
    [0x02, 0xbb, 0, 0, 0, i]
}

fn backend(addr: &str, i: u8) -> DesiredBackend {
    DesiredBackend {
        addr: addr.parse().unwrap(),
        mac: Some(mac(i)),
        weight: 1,
        healthy: true,
        forward: Forward::Dsr,
    }
}

fn desired(n: u8) -> Vec<DesiredVip> {
    vec![
        DesiredVip {
            addr: VIP4.parse().unwrap(),
            port: 80,
            proto: TCP,
            hash_source: false,
            backends: (1..=n)
                .map(|i| backend(&format!("10.0.0.{}", 10 + i), i))
                .collect(),
        },
        DesiredVip {
            addr: VIP6.parse().unwrap(),
            port: 80,
            proto: TCP,
            hash_source: false,
            backends: (1..=n)
                .map(|i| backend(&format!("fd00::{}", 10 + i), i))
                .collect(),
        },
    ]
}

fn controller(tag: &str, d: &[DesiredVip]) -> Controller {
    let dp = Dataplane::load(opts(tag)).expect("load XDP program (root + BPF needed)");
    let mut c = Controller::new(dp).unwrap();
    c.apply(d).unwrap();
    c
}

/// The backend MAC Maglev (computed in Rust) picks for a new flow.
fn expected_mac(v: &DesiredVip, client: IpAddr, sport: u16) -> [u8; 6] {
    let members: Vec<Member> = v
        .backends
        .iter()
        .map(|b| Member::new(b.addr.to_string(), if b.healthy { b.weight } else { 0 }))
        .collect();
    let t = maglev::build(&members, M).unwrap();
    let h = flow_hash(&FlowTuple::new(client, v.addr, sport, v.port, v.proto));
    v.backends[t[(h % M) as usize] as usize].mac.unwrap()
}

fn syn(client: IpAddr, vip: IpAddr, sport: u16, dport: u16, proto: u8) -> Vec<u8> {
    frame(
        LB_MAC, CLIENT_MAC, client, vip, proto, sport, dport, b"hello",
    )
}

fn assert_dsr(input: &[u8], out: &[u8], backend_mac: [u8; 6]) {
    assert_eq!(out.len(), input.len());
    assert_eq!(&out[0..6], &backend_mac, "destination MAC = backend");
    assert_eq!(&out[6..12], &LB_MAC, "source MAC = ours");
    assert_eq!(&out[12..], &input[12..], "L3 and above untouched");
}

#[test]
fn e2e_fixture_new_flow_ipv4_and_ipv6() {
    let d = desired(3);
    let c = controller("new", &d);
    let dp = c.dataplane();
    for sport in 40000..40040u16 {
        let client: IpAddr = "10.0.0.100".parse().unwrap();
        let pkt = syn(client, d[0].addr, sport, 80, TCP);
        let r = dp.test_run(&pkt, 1).unwrap();
        assert_eq!(r.verdict, XDP_TX);
        assert_dsr(&pkt, &r.data, expected_mac(&d[0], client, sport));

        let client6: IpAddr = "fd00::100".parse().unwrap();
        let pkt = syn(client6, d[1].addr, sport, 80, TCP);
        let r = dp.test_run(&pkt, 1).unwrap();
        assert_eq!(r.verdict, XDP_TX, "IPv6");
        assert_dsr(&pkt, &r.data, expected_mac(&d[1], client6, sport));
    }
    assert_eq!(dp.conntrack_len().unwrap(), 80);
    assert_eq!(
        dp.vip_stats(0).unwrap().packets + dp.vip_stats(1).unwrap().packets,
        80
    );
}

#[test]
fn e2e_fixture_known_flow_survives_table_change() {
    let d3 = desired(3);
    let d4 = desired(4);
    let mut c = controller("known", &d3);
    let client: IpAddr = "10.0.0.100".parse().unwrap();
    // Flows whose backend differs between the 3- and 4-backend tables.
    let moved: Vec<u16> = (30000..40000u16)
        .filter(|&p| expected_mac(&d3[0], client, p) != expected_mac(&d4[0], client, p))
        .take(5)
        .collect();
    assert_eq!(moved.len(), 5);
    for &p in &moved {
        let r = c
            .dataplane()
            .test_run(&syn(client, d3[0].addr, p, 80, TCP), 1)
            .unwrap();
        assert_eq!(&r.data[0..6], &expected_mac(&d3[0], client, p));
    }
    c.apply(&d4).unwrap();
    let dp = c.dataplane();
    for &p in &moved {
        let pkt = syn(client, d3[0].addr, p, 80, TCP);
        let r = dp.test_run(&pkt, 1).unwrap();
        assert_eq!(r.verdict, XDP_TX);
        assert_dsr(&pkt, &r.data, expected_mac(&d3[0], client, p)); // conntrack wins
                                                                    // The same flow from another client port (a new flow) follows the new table.
        let r = dp
            .test_run(&syn(client, d3[0].addr, p, 81, TCP), 1)
            .unwrap();
        assert_eq!(r.verdict, XDP_PASS, "port 81 is not a VIP");
    }
    let new_client: IpAddr = "10.0.0.101".parse().unwrap();
    for p in 50000..50020u16 {
        let r = dp
            .test_run(&syn(new_client, d4[0].addr, p, 80, TCP), 1)
            .unwrap();
        assert_eq!(&r.data[0..6], &expected_mac(&d4[0], new_client, p));
    }
}

#[test]
fn e2e_fixture_drain_keeps_flows_down_moves_them() {
    let d = desired(3);
    let mut c = controller("drain", &d);
    let client: IpAddr = "10.0.0.100".parse().unwrap();
    // A flow on backend 1.
    let p = (20000..30000u16)
        .find(|&p| expected_mac(&d[0], client, p) == mac(1))
        .unwrap();
    let pkt = syn(client, d[0].addr, p, 80, TCP);
    assert_eq!(
        &c.dataplane().test_run(&pkt, 1).unwrap().data[0..6],
        &mac(1)
    );

    let mut drained = d.clone();
    drained[0].backends[0].weight = 0;
    c.apply(&drained).unwrap();
    assert_eq!(
        &c.dataplane().test_run(&pkt, 1).unwrap().data[0..6],
        &mac(1),
        "drain keeps flow"
    );
    for q in 1..200u16 {
        let r = c
            .dataplane()
            .test_run(&syn(client, d[0].addr, q, 80, TCP), 1)
            .unwrap();
        assert_ne!(&r.data[0..6], &mac(1), "no new flows to a drained backend");
    }

    let mut down = d.clone();
    down[0].backends[0].healthy = false;
    down[1].backends[0].healthy = false;
    c.apply(&down).unwrap();
    let r = c.dataplane().test_run(&pkt, 1).unwrap();
    assert_eq!(r.verdict, XDP_TX);
    assert_eq!(
        &r.data[0..6],
        &expected_mac(&down[0], client, p),
        "DOWN backend: re-hashed"
    );
    assert_ne!(&r.data[0..6], &mac(1));
}

#[test]
fn e2e_fixture_non_vip_passes_untouched() {
    let d = desired(3);
    let c = controller("pass", &d);
    let dp = c.dataplane();
    let client: IpAddr = "10.0.0.100".parse().unwrap();
    let cases = vec![
        syn(client, "10.0.0.200".parse().unwrap(), 1234, 80, TCP), // other address
        syn(client, d[0].addr, 1234, 443, TCP),                    // VIP address, other port
        syn(client, d[0].addr, 1234, 80, UDP),                     // VIP address, other protocol
        syn(
            "fd00::100".parse().unwrap(),
            "fd00::200".parse().unwrap(),
            1,
            80,
            TCP,
        ),
        {
            // ARP
            let mut a = packet::ethernet([0xff; 6], CLIENT_MAC, 0x0806);
            a.extend_from_slice(&[0u8; 28]);
            a
        },
    ];
    for pkt in cases {
        let r = dp.test_run(&pkt, 1).unwrap();
        assert_eq!(r.verdict, XDP_PASS);
        assert_eq!(r.data, pkt);
    }
    assert_eq!(dp.conntrack_len().unwrap(), 0);
}

#[test]
fn e2e_fixture_fragments() {
    let d = desired(3);
    let c = controller("frag", &d);
    let dp = c.dataplane();
    let client: Ipv4Addr = "10.0.0.100".parse().unwrap();
    let vip: Ipv4Addr = VIP4.parse().unwrap();
    let frag = |dst: Ipv4Addr, off: u16| {
        let seg = packet::l4(TCP, 1234, 80, packet::TCP_SYN, &[0u8; 32]);
        let mut f = packet::ethernet(LB_MAC, CLIENT_MAC, packet::ETH_P_IP);
        f.extend(packet::ipv4_header(client, dst, TCP, seg.len(), off));
        f.extend(seg);
        f
    };
    assert_eq!(
        dp.test_run(&frag(vip, 0x2000), 1).unwrap().verdict,
        XDP_DROP,
        "first fragment (MF)"
    );
    assert_eq!(
        dp.test_run(&frag(vip, 0x0004), 1).unwrap().verdict,
        XDP_DROP,
        "later fragment"
    );
    assert_eq!(
        dp.test_run(&frag(vip, 0x4000), 1).unwrap().verdict,
        XDP_TX,
        "DF only is not a fragment"
    );
    let other = frag("10.0.0.200".parse().unwrap(), 0x2000);
    let r = dp.test_run(&other, 1).unwrap();
    assert_eq!(
        (r.verdict, r.data),
        (XDP_PASS, other),
        "non-VIP fragment passes"
    );

    // IPv6 fragment header (44) to the VIP address.
    let v6: Ipv6Addr = VIP6.parse().unwrap();
    let mut body = vec![TCP, 0, 0, 1, 0, 0, 0, 1];
    body.extend(packet::l4(TCP, 1, 80, packet::TCP_SYN, b""));
    let mut f = packet::ethernet(LB_MAC, CLIENT_MAC, packet::ETH_P_IPV6);
    f.extend(packet::ipv6_header(
        "fd00::100".parse().unwrap(),
        v6,
        44,
        body.len(),
    ));
    f.extend(body);
    assert_eq!(dp.test_run(&f, 1).unwrap().verdict, XDP_DROP);
    assert_eq!(dp.counter("fragment").unwrap(), 3);
}

#[test]
fn e2e_fixture_bad_and_truncated_headers() {
    let d = desired(3);
    let c = controller("bad", &d);
    let dp = c.dataplane();
    let client: IpAddr = "10.0.0.100".parse().unwrap();
    let good = syn(client, d[0].addr, 1234, 80, TCP);

    // Truncated inside the IPv4 header: pass (the kernel drops it).
    for len in [14usize, 20, 33] {
        let r = dp.test_run(&good[..len], 1).unwrap();
        assert_eq!(
            (r.verdict, &r.data[..]),
            (XDP_PASS, &good[..len]),
            "len {len}"
        );
    }
    // Truncated TCP header to a VIP: drop (cannot be balanced).
    for len in [34usize, 37, 40, 53] {
        assert_eq!(
            dp.test_run(&good[..len], 1).unwrap().verdict,
            XDP_DROP,
            "len {len}"
        );
    }
    // IHL < 5 and a wrong version: pass untouched.
    let mut bad = good.clone();
    bad[14] = 0x44;
    assert_eq!(dp.test_run(&bad, 1).unwrap().verdict, XDP_PASS);
    bad[14] = 0x65;
    assert_eq!(dp.test_run(&bad, 1).unwrap().verdict, XDP_PASS);
    // IPv4 options (IHL 6): parsed correctly, still balanced.
    let seg = packet::l4(TCP, 1234, 80, packet::TCP_SYN, b"x");
    let mut opt = packet::ethernet(LB_MAC, CLIENT_MAC, packet::ETH_P_IP);
    let mut ip = packet::ipv4_header(
        "10.0.0.100".parse().unwrap(),
        VIP4.parse().unwrap(),
        TCP,
        seg.len() + 4,
        0,
    );
    ip[0] = 0x46;
    ip.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
    opt.extend(ip);
    opt.extend(seg);
    let r = dp.test_run(&opt, 1).unwrap();
    assert_eq!(r.verdict, XDP_TX);
    assert_eq!(&r.data[0..6], &expected_mac(&d[0], client, 1234));
    // Truncated IPv6 header: pass; truncated UDP to a v6 VIP address: drop.
    let g6 = syn("fd00::100".parse().unwrap(), d[1].addr, 1, 80, UDP);
    assert_eq!(dp.test_run(&g6[..50], 1).unwrap().verdict, XDP_PASS);
    assert_eq!(dp.test_run(&g6[..58], 1).unwrap().verdict, XDP_DROP);
}

#[test]
fn e2e_fixture_icmp_frag_needed_goes_to_flow_backend() {
    let d = desired(3);
    let c = controller("icmp", &d);
    let dp = c.dataplane();
    let client: Ipv4Addr = "10.0.0.100".parse().unwrap();
    let vip: Ipv4Addr = VIP4.parse().unwrap();
    for sport in [1000u16, 2000, 3000, 4000] {
        let want = expected_mac(&d[0], client.into(), sport);
        // What the backend sent (DSR: from the VIP to the client), quoted by a router.
        let mut inner = packet::ipv4_header(vip, client, TCP, 20, 0x4000);
        inner.extend(&packet::l4(TCP, 80, sport, packet::TCP_ACK, b"")[..8]);
        let mut icmp = vec![3u8, 4, 0, 0, 0, 0, 0x05, 0x78]; // MTU 1400
        icmp.extend(&inner);
        let mut f = packet::ethernet(LB_MAC, CLIENT_MAC, packet::ETH_P_IP);
        f.extend(packet::ipv4_header(
            "10.0.0.254".parse().unwrap(),
            vip,
            1,
            icmp.len(),
            0,
        ));
        f.extend(&icmp);
        let r = dp.test_run(&f, 1).unwrap();
        assert_eq!(r.verdict, XDP_TX);
        assert_dsr(&f, &r.data, want);
    }
    assert_eq!(dp.counter("icmp_ptb").unwrap(), 4);
    assert_eq!(dp.conntrack_len().unwrap(), 0, "ICMP does not create flows");
    // ICMP echo to the VIP: pass.
    let mut echo = packet::ethernet(LB_MAC, CLIENT_MAC, packet::ETH_P_IP);
    echo.extend(packet::ipv4_header(client, vip, 1, 8, 0));
    echo.extend([8u8, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(dp.test_run(&echo, 1).unwrap().verdict, XDP_PASS);
}

#[test]
fn e2e_fixture_vxlan_encapsulation() {
    let mut d = desired(2);
    d.truncate(1);
    let inner_mac = [0x02, 0xdd, 0, 0, 0, 9];
    for b in &mut d[0].backends {
        b.forward = Forward::Vxlan {
            remote: "192.168.0.20".parse().unwrap(),
            vni: 4242,
            inner_mac,
        };
    }
    let c = controller("vxlan", &d);
    let client: IpAddr = "10.0.0.100".parse().unwrap();
    let pkt = syn(client, d[0].addr, 5555, 80, TCP);
    let r = c.dataplane().test_run(&pkt, 1).unwrap();
    assert_eq!(r.verdict, XDP_TX);
    let o = &r.data;
    assert_eq!(o.len(), pkt.len() + 50);
    assert_eq!(
        &o[0..6],
        &expected_mac(&d[0], client, 5555),
        "outer dst = next hop"
    );
    assert_eq!(&o[6..12], &LB_MAC);
    assert_eq!(&o[12..14], &[0x08, 0x00]);
    let ip = &o[14..34];
    assert_eq!(ip[0], 0x45);
    assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, pkt.len() + 36);
    assert_eq!(ip[9], 17);
    assert_eq!(&ip[12..16], &[192, 168, 0, 1]);
    assert_eq!(&ip[16..20], &[192, 168, 0, 20]);
    assert_eq!(packet::checksum(ip), 0, "valid IPv4 header checksum");
    let udp = &o[34..42];
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
    assert!(u16::from_be_bytes([udp[0], udp[1]]) >= 49152);
    assert_eq!(
        &o[42..50],
        &[0x08, 0, 0, 0, 0x00, 0x10, 0x92, 0x00],
        "VNI 4242"
    );
    assert_eq!(&o[50..56], &inner_mac, "inner dst = backend VXLAN device");
    assert_eq!(&o[56..62], &LB_MAC);
    assert_eq!(&o[62..], &pkt[12..]);
}

#[test]
fn e2e_fixture_two_nodes_agree_and_restart_keeps_conntrack() {
    let d = desired(3);
    // Node B learns its backends in another order (different backend ids).
    let mut rev = d.clone();
    for v in &mut rev {
        v.backends.reverse();
    }
    let a = controller("agreeA", &d);
    let b = controller("agreeB", &rev);
    let client: IpAddr = "10.0.0.100".parse().unwrap();
    for p in 1..300u16 {
        let pkt = syn(client, d[0].addr, p, 80, TCP);
        let ra = a.dataplane().test_run(&pkt, 1).unwrap();
        let rb = b.dataplane().test_run(&pkt, 1).unwrap();
        assert_eq!(ra.data, rb.data, "port {p}");
    }
    drop(b);

    // Restart: a non-ephemeral data plane, dropped and reloaded from its pins.
    let mut o = opts("restart");
    o.ephemeral = false;
    let dir = o.pin_dir.clone();
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _g = Cleanup(dir);
    let mut c = Controller::new(Dataplane::load(o.clone()).unwrap()).unwrap();
    c.apply(&desired(3)).unwrap();
    let pkt = syn(client, d[0].addr, 7777, 80, TCP);
    let before = c.dataplane().test_run(&pkt, 1).unwrap();
    drop(c);
    let mut c = Controller::new(Dataplane::load(o).unwrap()).unwrap();
    assert_eq!(
        c.dataplane().conntrack_len().unwrap(),
        1,
        "conntrack survived"
    );
    c.apply(&desired(4)).unwrap(); // table changes after restart
    let after = c.dataplane().test_run(&pkt, 1).unwrap();
    assert_eq!(
        before.data, after.data,
        "flow kept its backend across restart + table change"
    );
}
