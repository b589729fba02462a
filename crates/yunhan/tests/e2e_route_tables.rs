//! Route tables through the real binary (issue #15): on one box (`yunhan up --netns`), a
//! VM "fw" with a NIC in VPC net1 and one in VPC net2 joins them. Each VPC's table sends
//! the other VPC's range to fw's NIC on its side; a guest of net1 then pings a guest of
//! net2, and fw's forwarding counter shows every packet went through it. Before the
//! tables, nothing routes between the VPCs; with fw's net2 NIC detached, the table's
//! status says its traffic is dropped and the router holds a blackhole (fail closed:
//! never around the appliance). Bad routes are refused with a clear error, nothing made.

mod common;

use std::process::Command;
use std::time::Duration;

use common::onebox::{running_vm, vpc_with_open_group, OneBox};
use common::{
    console_text, eventually, guest_runs, serial_log, stderr, stdout, tiny_vm, words, Cloud,
};
use serde_json::Value;

/// ForwDatagrams of the guest's IP statistics (the second `Ip:` line, 7th field).
const FORWARDED: &str = "$(awk '/^Ip:/{n++} /^Ip:/&&n==2{print $7}' /proc/net/snmp)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_route_tables_join_two_vpcs_through_an_appliance_vm() {
    let onebox = OneBox::new();
    let cloud = Cloud::up(&["--netns", &onebox.host]).await;
    let ok = |args: &[&str]| cloud.ok(args);
    vpc_with_open_group(&cloud, &[("icmp", None)]);
    ok(&[
        "subnet",
        "create",
        "sa",
        "--vpc",
        "net1",
        "--cidr",
        "10.10.9.0/24",
    ]);
    ok(&["vpc", "create", "net2", "--cidr", "10.20.0.0/16"]);
    ok(&[
        "subnet",
        "create",
        "sb",
        "--vpc",
        "net2",
        "--cidr",
        "10.20.1.0/24",
    ]);
    ok(&["sg", "create", "open2", "--vpc", "net2"]);
    ok(&[
        "sg",
        "rule",
        "add",
        "open2",
        "--protocol",
        "icmp",
        "--cidr",
        "0.0.0.0/0",
    ]);
    running_vm(&cloud, "client", &["--security-group", "open"]);
    let wait = ["--wait", "--timeout", "120s"];
    let mut fw = tiny_vm("fw", &["--subnet", "sa", "--security-group", "open"]);
    fw.extend(wait);
    ok(&fw);
    let mut server = tiny_vm("server", &["--subnet", "sb", "--security-group", "open2"]);
    server.extend(wait);
    ok(&server);
    ok(&[
        "nic",
        "create",
        "fw-b",
        "--subnet",
        "sb",
        "--security-group",
        "open2",
        "--vm",
        "fw",
    ]);
    let ip = |nic: &str| {
        ok(&["nic", "show", nic])["status"]["ip"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (server_ip, fw_b_ip) = (ip("server-nic0"), ip("fw-b"));
    let vms: Vec<Value> = ["client", "fw", "server"]
        .map(|v| ok(&["vm", "show", v]))
        .into();
    for vm in &vms {
        eventually("guest ready", Duration::from_secs(180), || async {
            console_text(&serial_log(vm))
                .contains("YUNHAN-READY")
                .then_some(())
        })
        .await;
    }
    let (client, fw, _) = (&vms[0], &vms[1], &vms[2]);
    let minute = Duration::from_secs(60);

    // No table yet: net1 has no route to net2.
    let ping = format!("ping -c 1 -W 1 {server_ip} >/dev/null 2>&1 || echo NOROUTE-$((40+2))");
    guest_runs(client, &ping, "NOROUTE-42", minute).await;

    // fw forwards between its NICs; each VPC routes the other's range to fw's NIC there.
    let setup = format!(
        "[ -e /sys/class/net/eth1 ] && ip link set eth1 up && \
         (ip addr add {fw_b_ip}/24 dev eth1 2>/dev/null; true) && \
         echo 1 > /proc/sys/net/ipv4/ip_forward && echo {FORWARDED} > /tmp/f0 && echo FW-$((40+2))"
    );
    guest_runs(fw, &setup, "FW-42", minute).await;
    ok(&[
        "route-table",
        "create",
        "rt-a",
        "--vpc",
        "net1",
        "--subnet",
        "s1",
    ]);
    ok(&[
        "route-table",
        "route",
        "add",
        "rt-a",
        "--destination",
        "10.20.0.0/16",
        "--nic",
        "fw-nic0",
    ]);
    ok(&[
        "route-table",
        "create",
        "rt-b",
        "--vpc",
        "net2",
        "--subnet",
        "sb",
    ]);
    ok(&[
        "route-table",
        "route",
        "add",
        "rt-b",
        "--destination",
        "10.10.0.0/16",
        "--nic",
        "fw-b",
    ]);
    let routed = format!("ping -c 3 -W 2 {server_ip} >/dev/null 2>&1 && echo ROUTED-$((40+2))");
    guest_runs(client, &routed, "ROUTED-42", minute).await;
    // Both directions of every answered ping went through fw: its counter grew by at
    // least two per answer.
    guest_runs(
        fw,
        &format!("echo {FORWARDED} > /tmp/f0 && echo F0-$((40+2))"),
        "F0-42",
        minute,
    )
    .await;
    let answered = format!(
        "echo R$((40+2)) $(ping -c 4 -W 2 {server_ip} | awk '/received/{{print $4}}') $((40+2))END"
    );
    guest_runs(client, &answered, "42END", minute).await;
    let replies = last_number_after(&console_text(&serial_log(client)), "R42 ");
    assert!(replies >= 1, "no answer from {server_ip}");
    eprintln!("{replies} of 4 pings from net1 to net2 answered through fw");
    let counted = format!(
        "[ {FORWARDED} -ge $(( $(cat /tmp/f0) + {} )) ] && echo THROUGH-FW-$((40+2))",
        2 * replies
    );
    guest_runs(fw, &counted, "THROUGH-FW-42", minute).await;
    let rt_a = ok(&["route-table", "show", "rt-a"]);
    assert_eq!(rt_a["status"]["phase"], "Ready", "{rt_a}");
    assert_eq!(
        rt_a["spec"]["routes"][0]["nic"],
        ok(&["nic", "show", "fw-nic0"])["metadata"]["id"]
    );

    bad_routes_are_refused(&cloud);

    // fw's net2 NIC detached: net2's table drops what it sent there, never routes around.
    ok(&["nic", "detach", "fw-b"]);
    let noted = eventually("rt-b notes the dropped route", minute, || {
        let t = ok(&["route-table", "show", "rt-b"]);
        async move {
            t["status"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("dropped"))
                .then_some(t)
        }
    })
    .await;
    assert_eq!(noted["status"]["phase"], "Ready", "{noted}");
    eventually("a blackhole in net2's router", minute, || {
        let routes = router_routes(&onebox.host);
        async move { routes.contains("blackhole 10.10.0.0/16").then_some(()) }
    })
    .await;
    let cut = format!("ping -c 2 -W 1 {server_ip} >/dev/null 2>&1 || echo CUT-$((40+2))");
    guest_runs(client, &cut, "CUT-42", minute).await;
}

/// A route to another VPC's NIC, a route for the VPC's own range and a second table for a
/// subnet are refused with what to do; nothing changes.
fn bad_routes_are_refused(cloud: &Cloud) {
    let refused = |line: &str, why: &str| {
        let out = cloud.cli(&words(line));
        assert!(!out.status.success(), "{line} succeeded: {}", stdout(&out));
        assert!(stderr(&out).contains(why), "{line}: {}", stderr(&out));
    };
    let add = "route-table route add rt-a --destination";
    refused(
        &format!("{add} 10.30.0.0/16 --nic server-nic0"),
        "is in another VPC",
    );
    refused(
        &format!("{add} 10.10.0.0/16 --local"),
        "is the VPC's own range",
    );
    refused(
        "route-table create rt-x --vpc net1 --subnet s1",
        "already in route table \"rt-a\"",
    );
    let tables = cloud.ok(&["route-table", "list"]);
    assert_eq!(tables.as_array().map(Vec::len), Some(2), "{tables}");
    let rt_a = cloud.ok(&["route-table", "show", "rt-a"]);
    assert_eq!(
        rt_a["spec"]["routes"].as_array().map(Vec::len),
        Some(1),
        "{rt_a}"
    );
}

/// The number after the last `marker` in `text` (0 if none).
fn last_number_after(text: &str, marker: &str) -> u64 {
    text.rsplit(marker)
        .next()
        .filter(|_| text.contains(marker))
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Every route of the router namespaces the agent made for the host.
fn router_routes(host: &str) -> String {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    stdout(&list)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{host}-")))
        .map(|ns| {
            let o = Command::new("ip")
                .args(["-n", ns, "route", "show", "table", "all"])
                .output()
                .unwrap();
            stdout(&o)
        })
        .collect()
}
