//! North–south benchmarks (run by `bench/north-south.sh`, not by the test suite:
//! `#[ignore]`): `yunhan up --netns` on one box with its default external network on the
//! host (the same setup as `e2e_north_south`), a TCG test guest (flavor tiny).
//! - bind → first answer: `eip bind` to the first ping answered from the host, p50/p99
//!   over ROUNDS binds (each unbound again and silent before the next); pings wait 0.2 s
//!   and are 0.1 s apart, so the figure is within 0.3 s above the real one;
//! - TCP throughput host → guest: 64 MiB into `nc -l` in the guest, through the elastic IP
//!   (DNAT in the VPC's router) and, as the baseline of the same run, straight from the
//!   router namespace to the guest's private address (the overlay without NAT).

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::onebox::{running_vm, vpc_with_open_group, within, OneBox, PUBLIC_CIDR};
use common::{eventually, guest_runs, pct, rounds, serial_log, Cloud};
use yunhan_net::lab::Lab;

/// Sends `bytes` to `addr:port` from inside `ns`; Mbit/s.
fn push(ns: &str, addr: Ipv4Addr, port: u16, bytes: usize) -> f64 {
    let sa = SocketAddr::from((addr, port));
    Lab::in_netns(ns, move || {
        // The guest's `nc -l` may be a moment behind its "listening" marker.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut c = loop {
            match TcpStream::connect_timeout(&sa, Duration::from_secs(5)) {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => panic!("connect {sa}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        let chunk = vec![0x5a_u8; 64 * 1024];
        let t0 = Instant::now();
        for _ in 0..bytes / chunk.len() {
            c.write_all(&chunk).expect("send");
        }
        c.shutdown(std::net::Shutdown::Write).ok();
        // The guest closes once it has read everything.
        let mut sink = [0u8; 16];
        let _ = std::io::Read::read(&mut c, &mut sink);
        (bytes * 8) as f64 / t0.elapsed().as_secs_f64() / 1e6
    })
    .expect("netns")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/north-south.sh"]
async fn bench_north_south() {
    let onebox = OneBox::new();
    let cloud = Cloud::up(&["--netns", &onebox.host, "--public-cidr", PUBLIC_CIDR]).await;
    let ok = |args: &[&str]| cloud.ok(args);
    vpc_with_open_group(&cloud, &[("any", None)]);
    running_vm(&cloud, "a", &["--security-group", "open"]);
    let a = ok(&["vm", "show", "a"]);
    eventually("a ready", Duration::from_secs(120), || async {
        common::console_text(&serial_log(&a))
            .contains("YUNHAN-READY")
            .then_some(())
    })
    .await;
    let e1 = ok(&["eip", "create", "e1"]);
    let addr = e1["status"]["address"].as_str().unwrap().to_string();

    let mut binds = Vec::new();
    for _ in 0..rounds(20) {
        let t0 = Instant::now();
        ok(&["eip", "bind", "e1", "--nic", "a-nic0"]);
        // A ping lost before the address is realised costs its whole wait: 0.2 s, not 1 s.
        let answered = within(Duration::from_secs(30), || {
            onebox.routed_by_the_platform(&addr) && onebox.ping_waiting(&addr, "0.2")
        });
        answered.expect("answered after bind");
        binds.push(t0.elapsed().as_secs_f64() * 1000.0);
        ok(&["eip", "unbind", "e1"]);
        within(Duration::from_secs(10), || !onebox.ping_eip(&addr)).expect("silent");
    }
    let n = binds.len();
    println!(
        "eip bind → first ping answered: p50 {:.0} ms, p99 {:.0} ms (n={n})",
        pct(&mut binds, 0.5),
        pct(&mut binds, 0.99)
    );

    // Throughput: the guest reads into /dev/null.
    ok(&["eip", "bind", "e1", "--nic", "a-nic0"]);
    within(Duration::from_secs(30), || onebox.ping_eip(&addr)).expect("bound again");
    let private: Ipv4Addr = ok(&["nic", "show", "a-nic0"])["status"]["ip"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let router = format!("{}-ynr-000001", onebox.host);
    let bytes = 64 << 20;
    let mut results = Vec::new();
    let ways = [
        ("overlay, no NAT", router.as_str(), private),
        ("elastic IP", onebox.host.as_str(), addr.parse().unwrap()),
    ];
    for (i, (how, ns, to)) in ways.into_iter().enumerate() {
        guest_runs(
            &a,
            &format!("(nc -l -p 5001 > /dev/null &) ; echo LISTEN{i}-$((40+2))"),
            &format!("LISTEN{i}-42"),
            Duration::from_secs(60),
        )
        .await;
        let mbit = push(ns, to, 5001, bytes);
        println!("TCP host → guest via {how}: {mbit:.0} Mbit/s");
        results.push(mbit);
    }
    println!(
        "TCP host → guest via the elastic IP / via the overlay: {:.2}",
        results[1] / results[0]
    );
}
