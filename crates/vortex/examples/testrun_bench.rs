//! ns/packet of the XDP program through BPF_PROG_TEST_RUN (conntrack hit and
//! miss) and kernel memory per tracked connection. Needs root. Run by
//! `bench/vortex.sh`; prints one JSON object.
use std::net::IpAddr;
use std::process::Command;

use yunhan_vortex::control::{Controller, DesiredBackend, DesiredVip, Forward};
use yunhan_vortex::dataplane::{Dataplane, LoadOptions, XDP_TX};
use yunhan_vortex::packet::{frame, TCP};

fn memlock(dir: &std::path::Path) -> anyhow::Result<u64> {
    let out = Command::new("bpftool")
        .args(["-j", "map", "show", "pinned"])
        .arg(dir.join("conntrack"))
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["bytes_memlock"].as_u64().unwrap_or(0))
}

fn main() -> anyhow::Result<()> {
    let desired = vec![DesiredVip {
        addr: "10.0.1.1".parse()?,
        port: 80,
        proto: TCP,
        hash_source: false,
        backends: (1..=3u8)
            .map(|i| DesiredBackend {
                addr: format!("10.0.0.{}", 10 + i).parse().unwrap(),
                mac: Some([2, 0, 0, 0, 0, i]),
                weight: 1,
                healthy: true,
                forward: Forward::Dsr,
            })
            .collect(),
    }];
    let mut mem = Vec::new();
    for ct in [262_144u32, 1_048_576] {
        let mut o = LoadOptions::new(format!(
            "/sys/fs/bpf/yunhan-vortex-bench-{}-{ct}",
            std::process::id()
        ));
        o.conntrack_size = ct;
        o.ephemeral = true;
        let dp = Dataplane::load(o)?;
        mem.push((ct, memlock(&dp.options().pin_dir)?));
    }
    let mut o = LoadOptions::new(format!(
        "/sys/fs/bpf/yunhan-vortex-bench-{}",
        std::process::id()
    ));
    o.ephemeral = true;
    o.conntrack_size = 1_048_576;
    let mut c = Controller::new(Dataplane::load(o)?)?;
    c.apply(&desired)?;
    let dp = c.dataplane();
    let client: IpAddr = "10.0.0.100".parse()?;
    let mk = |sport: u16, a: u8| {
        let src: IpAddr = format!("10.1.{a}.100").parse().unwrap();
        let _ = client;
        frame(
            [2, 0xaa, 0, 0, 0, 1],
            [2, 0xcc, 0, 0, 0, 1],
            src,
            "10.0.1.1".parse().unwrap(),
            TCP,
            sport,
            80,
            b"0123456789",
        )
    };
    // Hit: one flow, repeated (the first run creates the entry).
    let pkt = mk(40000, 1);
    assert_eq!(dp.test_run(&pkt, 1)?.verdict, XDP_TX);
    let mut hit = Vec::new();
    for _ in 0..5 {
        hit.push(dp.test_run(&pkt, 1_000_000)?.duration_ns);
    }
    hit.sort();
    // Miss: distinct flows, one run each (lookup miss + Maglev + LRU insert).
    let n = 50_000u32;
    let mut total = 0u64;
    for i in 0..n {
        let r = dp.test_run(&mk((i % 60000) as u16 + 1024, (i / 60000) as u8 + 2), 1)?;
        total += u64::from(r.duration_ns);
    }
    let (small, big) = (mem[0], mem[1]);
    let per_entry = (big.1 - small.1) as f64 / f64::from(big.0 - small.0);
    println!(
        "{}",
        serde_json::json!({
            "hit_ns_per_packet_median_of_5x1M": hit[2],
            "miss_ns_per_packet_avg_of_50k_single_runs": total as f64 / f64::from(n),
            "conntrack_memlock_bytes": {"262144": small.1, "1048576": big.1},
            "bytes_per_tracked_connection": per_entry,
            "gib_for_30M_connections": per_entry * 30e6 / (1u64 << 30) as f64,
        })
    );
    Ok(())
}
