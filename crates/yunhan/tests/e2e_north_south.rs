//! North–south networking through the real binary (issue #15): `yunhan up` with its
//! default external network on the host itself (`--public-cidr`), realised in a network
//! namespace that stands for the host (`--netns`), whose default route leads to another
//! namespace standing for the internet. A real guest gets an elastic IP the host's shell
//! pings; unbound, the address stops answering, and bound to another guest's NIC that one
//! answers; a NAT gateway lets a guest without one reach the internet (masqueraded by the
//! host) and forwards a port to its web server; the host sees each guest as its own
//! elastic IP or as the gateway's address; a cap set while bound shapes its uplink.
//! Then on two lab hosts (`yunhan server` on etcd, `yunhan agent --netns`): a NAT gateway
//! moves when its host is lost.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::onebox::{running_vm, sh, vpc_with_open_group, within, OneBox, INTERNET, PUBLIC_CIDR};
use common::{
    console_text, eventually, guest_runs, kernel_image_args, serial_log, strs, Cloud, Cluster,
};
use yunhan_net::lab::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_elastic_ip_and_nat_gateway_on_one_box() {
    let onebox = OneBox::new();
    let cloud = Cloud::up(&["--netns", &onebox.host, "--public-cidr", PUBLIC_CIDR]).await;
    let ok = |args: &[&str]| cloud.ok(args);
    let nets = ok(&["external-network", "list"]);
    assert_eq!(nets[0]["metadata"]["name"], "public", "{nets}");
    assert_eq!(nets[0]["spec"]["host_gateway"], true, "{nets}");
    // The contract (image, VPC, subnet, a group open to ping and web).
    vpc_with_open_group(&cloud, &[("icmp", None), ("tcp", Some("80"))]);
    for vm in ["a", "b"] {
        running_vm(&cloud, vm, &["--security-group", "open"]);
    }
    let e1 = ok(&["eip", "create", "e1", "--nic", "a-nic0"]);
    let addr = e1["status"]["address"].as_str().unwrap().to_string();
    assert!(addr.starts_with("172.31.250."), "{e1}");
    let a = ok(&["vm", "show", "a"]);
    eventually("a ready", Duration::from_secs(120), || async {
        console_text(&serial_log(&a))
            .contains("YUNHAN-READY")
            .then_some(())
    })
    .await;

    // The host's shell pings the elastic IP.
    let answered = within(Duration::from_secs(30), || onebox.ping_eip(&addr));
    let shown = ok(&["eip", "show", "e1"]);
    assert!(
        answered.is_some(),
        "{addr} never answered; eip: {shown}\n{}\nlog: {}",
        onebox.diagnose(&addr),
        std::fs::read_to_string(cloud.log_path()).unwrap_or_default()
    );
    assert_eq!(shown["status"]["phase"], "Ready", "{shown}");
    let host = ok(&["host", "list"])[0]["metadata"]["name"].clone();
    assert_eq!(
        shown["status"]["host"], host,
        "the host realising it: {shown}"
    );

    // Unbound, it stops answering within 2 s.
    ok(&["eip", "unbind", "e1"]);
    let gone = within(Duration::from_secs(2), || !onebox.ping_eip(&addr));
    assert!(gone.is_some(), "{addr} still answers 2 s after unbind");
    let unbound = eventually("no host once unbound", Duration::from_secs(10), || {
        let e = ok(&["eip", "show", "e1"]);
        async move { e["status"].get("host").is_none().then_some(e) }
    })
    .await;
    assert_eq!(unbound["status"]["phase"], "Ready", "{unbound}");

    // Rebound to b's NIC: b answers at it.
    ok(&["eip", "bind", "e1", "--nic", "b-nic0"]);
    let b = ok(&["vm", "show", "b"]);
    eventually("b ready", Duration::from_secs(120), || async {
        console_text(&serial_log(&b))
            .contains("YUNHAN-READY")
            .then_some(())
    })
    .await;
    assert!(
        within(Duration::from_secs(30), || onebox.ping_eip(&addr)).is_some(),
        "{addr} never answered for b"
    );
    // A bandwidth cap, changed while bound: the uplink's HTB class follows it.
    for (mbit, rate) in [("20", "rate 20Mbit"), ("50", "rate 50Mbit")] {
        ok(&["eip", "set", "e1", "--bandwidth", mbit]);
        let shaped = within(Duration::from_secs(10), || {
            onebox.tc_classes().contains(rate)
        });
        assert!(shaped.is_some(), "no {rate}: {}", onebox.tc_classes());
    }
    ok(&["eip", "set", "e1", "--bandwidth", "0"]);
    let unshaped = within(Duration::from_secs(10), || {
        !onebox.tc_classes().contains("rate")
    });
    assert!(unshaped.is_some(), "still shaped: {}", onebox.tc_classes());

    // A NAT gateway: a, without an elastic IP now, reaches the internet; a port forward
    // on the gateway's address reaches a's web server.
    let e2 = ok(&["eip", "create", "e2"]);
    let gw_addr = e2["status"]["address"].as_str().unwrap().to_string();
    let a_ip = ok(&["nic", "show", "a-nic0"])["status"]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    let forward = format!("tcp:8080:{a_ip}:80");
    ok(&[
        "natgw", "create", "gw1", "--vpc", "net1", "--eip", "e2", "--dnat", &forward,
    ]);
    guest_runs(
        &a,
        &format!("ping -c 2 -W 2 {INTERNET} >/dev/null 2>&1 && echo NAT-$((40+2))"),
        "NAT-42",
        Duration::from_secs(60),
    )
    .await;
    guest_runs(
        &a,
        "mkdir -p /tmp/w && echo DNAT-$((40+2)) > /tmp/w/index.html && httpd -p 80 -h /tmp/w && echo HTTPD-UP",
        "HTTPD-UP",
        Duration::from_secs(60),
    )
    .await;
    let page = within(Duration::from_secs(30), || {
        onebox.routed_by_the_platform(&gw_addr)
            && http_get(&onebox.host, &gw_addr, 8080).contains("DNAT-42")
    });
    assert!(page.is_some(), "{gw_addr}:8080 never forwarded to a:80");

    // Who the host sees: b as its elastic IP (instance-level SNAT), a as the gateway's.
    let gateway: Ipv4Addr = PUBLIC_CIDR.replace(".0/24", ".1").parse().unwrap();
    peer_server(&onebox.host, gateway, 9000);
    for (vm, seen_as) in [(&b, &addr), (&a, &gw_addr)] {
        guest_runs(
            vm,
            &format!("echo SRC-$(nc {gateway} 9000)"),
            &format!("SRC-{seen_as}"),
            Duration::from_secs(60),
        )
        .await;
    }
}

/// `GET /` from inside `ns`; the answer (empty when there is none within 2 s).
fn http_get(ns: &str, addr: &str, port: u16) -> String {
    let sa = std::net::SocketAddr::from((addr.parse::<Ipv4Addr>().unwrap(), port));
    let answer = Lab::in_netns(ns, move || -> std::io::Result<String> {
        let mut c = TcpStream::connect_timeout(&sa, Duration::from_secs(2))?;
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut out = String::new();
        c.read_to_string(&mut out)?;
        Ok(out)
    });
    answer.ok().and_then(Result::ok).unwrap_or_default()
}

/// A server on `addr:port` in `ns` that tells each client the address it came from
/// (runs until the test process ends).
fn peer_server(ns: &str, addr: Ipv4Addr, port: u16) {
    let l = Lab::in_netns(ns, move || TcpListener::bind((addr, port)))
        .expect("netns")
        .expect("bind");
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            if let Ok(peer) = c.peer_addr() {
                let _ = c.write_all(format!("{}\n", peer.ip()).as_bytes());
            }
        }
    });
}

/// Several hosts on a provider network (the lab hosts' `ext0`, an "outside" namespace
/// holding its gateway): a NAT gateway runs on one of them; that host is lost (its agent
/// killed, its external leg down), the gateway moves to the other host and a guest there
/// reaches the outside again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_nat_gateway_moves_when_its_host_is_lost() {
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let lab = common::two_host_lab("ng");
    let cidr = "203.0.113.0/24";
    lab.add_external(
        cidr.parse().unwrap(),
        ip("203.0.113.1"),
        &[ip("203.0.113.201"), ip("203.0.113.202")],
    )
    .unwrap();
    let (_etcd, mut c) = common::lab_cloud(&lab).await;
    c.ok(&strs(&kernel_image_args("tiny")));
    c.ok(&[
        "external-network",
        "create",
        "ext",
        "--cidr",
        cidr,
        "--gateway",
        "203.0.113.1",
        "--device",
        "ext0",
    ]);
    c.ok(&["vpc", "create", "net1", "--cidr", "10.10.0.0/16"]);
    c.ok(&[
        "subnet",
        "create",
        "s1",
        "--vpc",
        "net1",
        "--cidr",
        "10.10.1.0/24",
    ]);
    c.ok(&["placement-group", "create", "spread", "--policy", "hard"]);
    for vm in ["a", "b"] {
        c.ok(&[
            "vm",
            "create",
            vm,
            "--image",
            "tiny",
            "--flavor",
            "tiny",
            "--subnet",
            "s1",
            "--placement-group",
            "spread",
            "--wait",
            "--timeout",
            "120s",
        ]);
    }
    c.ok(&["eip", "create", "g1"]);
    c.ok(&["natgw", "create", "gw1", "--vpc", "net1", "--eip", "g1"]);
    let placed = |c: &Cluster| c.ok(&["natgw", "show", "gw1"])["status"]["host"].clone();
    let first = eventually("the gateway placed", Duration::from_secs(30), || {
        let h = placed(&c);
        async move { h.as_str().filter(|h| !h.is_empty()).map(String::from) }
    })
    .await;
    let lost = c.agent_of(&first);
    // The guest on the other host.
    let vm = ["a", "b"]
        .map(|n| c.ok(&["vm", "show", n]))
        .into_iter()
        .find(|v| c.agent_of(v["status"]["host"].as_str().unwrap()) != lost)
        .expect("a guest on the other host");
    let out =
        |tag: &str| format!("ping -c 2 -W 2 203.0.113.1 >/dev/null 2>&1 && echo {tag}-$((40+2))");
    guest_runs(&vm, &out("OUT1"), "OUT1-42", Duration::from_secs(120)).await;

    let t0 = Instant::now();
    c.agents[lost].kill9();
    sh(&[
        "ip",
        "-n",
        &lab.hosts[lost].netns,
        "link",
        "set",
        "ext0",
        "down",
    ]);
    let moved = eventually("the gateway moved", Duration::from_secs(60), || {
        let h = placed(&c);
        let first = first.clone();
        async move {
            h.as_str()
                .filter(|h| !h.is_empty() && *h != first)
                .map(String::from)
        }
    })
    .await;
    assert_ne!(c.agent_of(&moved), lost);
    let moved_after = t0.elapsed();
    guest_runs(&vm, &out("OUT2"), "OUT2-42", Duration::from_secs(90)).await;
    eprintln!(
        "NAT gateway failover: moved {:.1} s after its host was lost, egress again within {:.1} s",
        moved_after.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
