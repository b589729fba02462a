//! Network data-plane benchmark on the netns lab (root):
//!
//! - `apply N`: realiser apply time for one host with N local ports (+ N remote peers in the
//!   same VPCs): first apply, no-op apply, apply after one rule change.
//! - `iperf SECONDS`: TCP throughput guest→guest across two lab hosts over VXLAN (overlay)
//!   vs host→host on the underlay, same run, with iperf3; prints the ratio.
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};
use yunhan_net::addr::{Ipv4Cidr, MacAddr};
use yunhan_net::compile::compile_all;
use yunhan_net::lab::{fixtures, Lab};
use yunhan_net::model::*;
use yunhan_net::realise::{Realiser, SystemRunner};

fn scale_model(ports: usize) -> NetworkModel {
    let vpcs = ports.div_ceil(50);
    let mut m = fixtures::hosts_model(2);
    for v in 0..vpcs {
        let vpc = format!("vpc{v}");
        m.vpcs.push(fixtures::vpc(&vpc, 5000 + v as u32));
        let cidr = Ipv4Cidr::new(Ipv4Addr::new(10, 0, 0, 0), 24).unwrap();
        let mac = MacAddr::from_key(&format!("{vpc}-gw"));
        m.subnets
            .push(fixtures::subnet_over(format!("{vpc}-s"), &vpc, cidr, mac));
        m.security_groups.push(SecurityGroup {
            id: format!("{vpc}-web"),
            vpc: vpc.clone(),
            rules: vec![fixtures::ingress(
                Protocol::Tcp,
                Some((80, 80)),
                fixtures::cidr("0.0.0.0/0"),
            )],
        });
    }
    for i in 0..ports * 2 {
        let v = (i / 2) % vpcs;
        let vpc = format!("vpc{v}");
        m.ports.push(Port {
            id: format!("p{i}"),
            vpc: vpc.clone(),
            subnet: format!("{vpc}-s"),
            host: Some(format!("h{}", i % 2)),
            mac: MacAddr::from_key(&format!("p{i}")),
            ip: Ipv4Addr::new(10, 0, 0, 10 + (i / 2 / vpcs) as u8 * 2 + (i % 2) as u8),
            security_groups: vec![format!("{vpc}-web")],
        });
    }
    m
}

fn apply_bench(n: usize) {
    let mut m = scale_model(n);
    let lab = Lab::new("bench", &[("h0", Ipv4Addr::new(192, 0, 2, 10))], 1500).expect("lab");
    let plans = compile_all(&m).unwrap();
    let plan = &plans["h0"];
    let ns = lab.host("h0").netns.clone();
    // Port devices: veth pairs inside the host namespace (what a VM tap is to the realiser).
    let mut batch = String::new();
    for p in &plan.ports {
        batch.push_str(&format!(
            "link add {} type veth peer name x{}\n",
            p.device,
            &p.device[3..]
        ));
        batch.push_str(&format!("link set {} up\n", p.device));
    }
    let mut c = Command::new("ip")
        .args(["-n", &ns, "-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(batch.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success());
    let mut r = Realiser::new(SystemRunner, lab.target("h0"));
    let t = Instant::now();
    let rep = r.apply(plan).unwrap();
    let first = t.elapsed();
    assert!(rep.missing_ports.is_empty());
    let t = Instant::now();
    let noop = r.apply(plan).unwrap();
    let second = t.elapsed();
    m.security_groups[0].rules.clear();
    let plan2 = compile_all(&m).unwrap().remove("h0").unwrap();
    let t = Instant::now();
    let rep3 = r.apply(&plan2).unwrap();
    let third = t.elapsed();
    let json = serde_json::to_vec(plan).unwrap().len();
    println!(
        "apply ports={} vpcs={} fdb={} plan_json={}B: first {:.0} ms ({} changes), no-op {:.0} ms ({} changes), one rule removed {:.0} ms ({} changes, {} conntrack flushes)",
        plan.ports.len(),
        plan.vpcs.len(),
        plan.vpcs.iter().map(|v| v.fdb.len()).sum::<usize>(),
        json,
        first.as_secs_f64() * 1e3,
        rep.changes,
        second.as_secs_f64() * 1e3,
        noop.changes,
        third.as_secs_f64() * 1e3,
        rep3.changes,
        rep3.conntrack_flushes
    );
}

fn iperf(ns_server: &str, ns_client: &str, server_ip: &str, secs: u32, lab: &mut Lab) -> f64 {
    lab.iperf3(ns_server, ns_client, server_ip, secs, false)
        .expect("iperf3 ran")
        / 1e9
}

fn iperf_bench(secs: u32) {
    let m = fixtures::two_host_model();
    let hosts: Vec<(&str, Ipv4Addr)> = m.hosts.iter().map(|h| (h.id.as_str(), h.vtep)).collect();
    let mut lab = Lab::new("iperf", &hosts, m.underlay_mtu).expect("lab");
    let plans = compile_all(&m).unwrap();
    for (h, p) in &plans {
        for port in &p.ports {
            lab.add_guest(h, port, p.mtu).unwrap();
        }
        Realiser::new(SystemRunner, lab.target(h)).apply(p).unwrap();
    }
    // Let iperf3 (tcp 5201) into pa2: same group as pa1, so already allowed.
    let (ga, gb) = (lab.guest_ns("pa1"), lab.guest_ns("pa2"));
    assert!(lab.ping_within(&ga, "10.0.1.11".parse().unwrap(), Duration::from_secs(5)));
    let (ha, hb) = (
        lab.host("host-a").netns.clone(),
        lab.host("host-b").netns.clone(),
    );
    if let Ok(cmd) = std::env::var("NET_BENCH_SETUP") {
        let o = Command::new("sh")
            .args(["-c", &cmd])
            .env("HA", &ha)
            .env("HB", &hb)
            .env("GA", &ga)
            .env("GB", &gb)
            .env("UL", &lab.underlay)
            .output()
            .unwrap();
        eprintln!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let mut under = vec![];
    let mut over = vec![];
    for _ in 0..2 {
        under.push(iperf(&hb, &ha, "192.0.2.11", secs, &mut lab));
        over.push(iperf(&gb, &ga, "10.0.1.11", secs, &mut lab));
    }
    let u = under.iter().sum::<f64>() / under.len() as f64;
    let o = over.iter().sum::<f64>() / over.len() as f64;
    println!(
        "iperf3 TCP {secs}s x2 (underlay MTU {}, overlay MTU {}): underlay {:.2} Gbit/s {:?}, overlay (VXLAN + bridge + nft + distributed router ns present) {:.2} Gbit/s {:?}, ratio {:.2}",
        m.underlay_mtu,
        plans["host-a"].mtu,
        u,
        under.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>(),
        o,
        over.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>(),
        o / u
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("apply") => apply_bench(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(500)),
        Some("iperf") => iperf_bench(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5)),
        _ => {
            eprintln!("usage: net_bench apply [PORTS] | iperf [SECONDS]");
            std::process::exit(2);
        }
    }
}
