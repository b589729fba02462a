//! Shared VIPs with real guests (issue #15): `yunhan server` on etcd and two `yunhan
//! agent`s in lab host namespaces; two TCG guests on the two hosts are the VIP's members
//! and take it in turn the way keepalived does with `use_vmac` (a macvlan with the MAC
//! `vip show` gives, the VIP on it, gratuitous ARP repeated while holding it). The
//! holder's agent reports it, `vip show` names its host, and a client on a third NIC
//! reaches the VIP after each takeover. Timings are printed.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{
    console_text, eventually, guest_runs, kernel_image_args, net1_with_s1, serial_log, strs,
    tiny_vm, Cluster,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_vip_takeover_between_real_guests_on_two_hosts() {
    let lab = common::two_host_lab("vg");
    let (_etcd, c) = common::lab_cloud(&lab).await;
    c.ok(&strs(&kernel_image_args("tiny")));
    c.ok(&["placement-group", "create", "spread", "--policy", "hard"]);
    net1_with_s1(&c);
    let mut members = Vec::new();
    for vm in ["m1", "m2"] {
        let mut args = tiny_vm(vm, &["--subnet", "s1", "--placement-group", "spread"]);
        args.extend(["--wait", "--timeout", "120s"]);
        c.ok(&args);
        members.push(c.ok(&["vm", "show", vm]));
    }
    // The client: a NIC of a stopped VM, played by a namespace guest on its host.
    c.ok(&tiny_vm("p3", &["--stopped"]));
    let host = eventually("p3 placed", Duration::from_secs(30), || async {
        c.ok(&["vm", "show", "p3"])["status"]["host"]
            .as_str()
            .map(String::from)
    })
    .await;
    let client_nic = c.ok(&["nic", "create", "n3", "--subnet", "s1", "--vm", "p3"]);
    let client = lab
        .add_nic_guest(&lab.hosts[c.agent_of(&host)].id, &client_nic, 1450)
        .unwrap();
    for m in &members {
        eventually("guest ready", Duration::from_secs(180), || async {
            console_text(&serial_log(m))
                .contains("YUNHAN-READY")
                .then_some(())
        })
        .await;
    }
    let v = c.ok(&[
        "vip", "create", "v1", "--subnet", "s1", "--nic", "m1-nic0", "--nic", "m2-nic0",
    ]);
    let vip: Ipv4Addr = v["status"]["ip"].as_str().unwrap().parse().unwrap();
    let mac = v["status"]["mac"]
        .as_str()
        .expect("the VIP's MAC")
        .to_string();
    let held_on = |c: &Cluster| c.ok(&["vip", "show", "v1"])["status"]["host"].clone();
    let minute = Duration::from_secs(60);

    for (i, m) in members.iter().enumerate() {
        let t0 = Instant::now();
        if i > 0 {
            let drop =
                format!("ip link del vip0; [ -e /sys/class/net/vip0 ] || echo LET-GO-$((40+{i}))");
            guest_runs(
                &members[i - 1],
                &drop,
                &format!("LET-GO-{}", 40 + i),
                minute,
            )
            .await;
        }
        guest_runs(m, &take(vip, &mac, i), &format!("TOOK-{}", 40 + i), minute).await;
        let want = c.ok(&["host", "show", m["status"]["host"].as_str().unwrap()])["metadata"]
            ["name"]
            .clone();
        eventually("the holder reported", minute, || {
            let now = held_on(&c);
            let want = want.clone();
            async move { (now == want).then_some(()) }
        })
        .await;
        let reported = t0.elapsed();
        assert!(
            lab.ping_within(&client, vip, Duration::from_secs(10)),
            "the client reaches the VIP held by {}",
            m["metadata"]["name"]
        );
        eprintln!(
            "VIP held by {}: reported after {reported:?}, reachable after {:?}",
            m["metadata"]["name"],
            t0.elapsed()
        );
    }
}

/// Keepalived-style takeover inside a guest: a macvlan `vip0` with the VIP's MAC holding
/// the VIP, and a gratuitous ARP every second while it exists. Prints `TOOK-<40+i>`.
fn take(vip: Ipv4Addr, mac: &str, i: usize) -> String {
    format!(
        "echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore; echo 2 > /proc/sys/net/ipv4/conf/all/arp_announce; \
         ip link add vip0 link eth0 type macvlan mode private && ip link set vip0 address {mac} up && \
         ip addr add {vip}/32 dev vip0 && \
         (while [ -e /sys/class/net/vip0 ]; do arping -U -c 1 -I vip0 -s {vip} {vip} >/dev/null 2>&1; sleep 1; done &) ; \
         [ -e /sys/class/net/vip0 ] && echo TOOK-$((40+{i}))"
    )
}
