//! Network benchmark: time from `POST /v1/network-interfaces` (a NIC attached to a VM on
//! lab host 1) to the first ping answered across the overlay by a peer on lab host 2, with
//! the real control plane: `yunhan server` on a 1-member etcd, two `yunhan agent`s whose
//! hosts are namespaces of a `yunhan_net::lab::Lab`. The NIC's "device" is a namespace
//! guest created as soon as the API answers (where a VM's tap would appear); the VMs stay
//! stopped, so no QEMU competes for the CPU. The guest pings every 10 ms and retries ARP
//! every 10 ms, so the figure is the control plane's (API → SDN compiler → plan → agent
//! realiser), not the guest's retry timers.
//!
//!   bench/nic.sh [COUNT=20]

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use yunhan_net::lab::Lab;

mod common;
use common::{binary, pct, start};

/// The lab's agents; killed when the run ends.
struct Agents(Vec<Child>);
impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn poll<T, F, Fut>(what: &str, within: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let every = Duration::from_millis(20);
    yunhan_testkit::wait_for_some(what, within, every, f).await
}

/// A namespace guest for `nic` on lab host `host`, with fast ARP retries.
fn guest(lab: &Lab, host: &str, nic: &Value) -> String {
    let g = lab.add_nic_guest(host, nic, 1450).expect("namespace guest");
    // ARP every 10 ms for up to 30 s: an unanswered ARP would count as ping's one packet.
    for sysctl in [
        "net.ipv4.neigh.eth0.retrans_time_ms=10",
        "net.ipv4.neigh.eth0.mcast_solicit=3000",
    ] {
        let out = lab.exec(&g, &["sysctl", "-qw", sysctl]).unwrap();
        assert!(out.status.success(), "{sysctl}");
    }
    g
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let lab = Lab::new(
        "nb",
        &[
            ("h1", Ipv4Addr::new(192, 0, 2, 1)),
            ("h2", Ipv4Addr::new(192, 0, 2, 2)),
        ],
        1500,
    )
    .expect("netns lab (run as root)");
    let etcd = yunhan_testkit::EtcdCluster::start(1);
    let url = etcd.store_url();
    let server = start(&["server", "--store", &url]);
    let state = tempfile::tempdir().unwrap();
    let mut agents = Agents(vec![]);
    for (i, h) in lab.hosts.iter().enumerate() {
        let name = format!("node-{}", i + 1);
        let mut cmd = Command::new(binary());
        cmd.args(["agent", "--store", &url, "--name", &name])
            .args(["--lease-ttl", "2", "--netns", &h.netns])
            .args(["--vtep", &h.vtep.to_string()])
            .arg("--state-dir")
            .arg(state.path().join(&name))
            .env("YUNHAN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        agents
            .0
            .push(yunhan_testkit::spawn_owned(cmd).expect("spawn agent"));
    }
    let http = reqwest::Client::new();
    let api = |m: Method, p: &'static str, body: Option<Value>| {
        let (server, http) = (&server, &http);
        async move { server.json(http, m, p, body).await }
    };
    let hosts: Vec<Value> = poll("two Ready hosts", Duration::from_secs(60), || async {
        let l = server.json(&http, Method::GET, "/v1/hosts", None).await;
        let items = l["items"].as_array()?.clone();
        (items
            .iter()
            .filter(|h| h["status"]["phase"] == "Ready")
            .count()
            == 2)
            .then_some(items)
    })
    .await;
    // Lab host of a host id: agent `node-N` runs lab host N.
    let lab_host = |host_id: &str| -> String {
        let h = hosts
            .iter()
            .find(|h| h["metadata"]["id"] == host_id)
            .expect("known host");
        let n: usize = h["metadata"]["name"].as_str().unwrap()[5..]
            .parse()
            .unwrap();
        lab.hosts[n - 1].id.clone()
    };

    server.upload_test_guest(&http, "guest", "kernel").await;
    api(
        Method::POST,
        "/v1/placement-groups",
        Some(json!({"metadata": {"name": "spread"}, "spec": {"policy": "hard_anti_affinity"}})),
    )
    .await;
    for vm in ["a", "b"] {
        let spec = json!({"image": "guest", "flavor": "tiny", "running": false, "placement_group": "spread"});
        api(
            Method::POST,
            "/v1/instances",
            Some(json!({"metadata": {"name": vm}, "spec": spec})),
        )
        .await;
    }
    let host_of = |vm: &'static str| {
        let (server, http) = (&server, &http);
        poll("a bound VM", Duration::from_secs(30), move || async move {
            let v = server
                .json(http, Method::GET, &format!("/v1/instances/{vm}"), None)
                .await;
            v["status"]["host"].as_str().map(str::to_string)
        })
    };
    let (host_a, host_b) = (lab_host(&host_of("a").await), lab_host(&host_of("b").await));
    api(
        Method::POST,
        "/v1/vpcs",
        Some(json!({"metadata": {"name": "bench"}, "spec": {"cidr": "10.20.0.0/16"}})),
    )
    .await;
    api(
        Method::POST,
        "/v1/subnets",
        Some(json!({"metadata": {"name": "s1"}, "spec": {"vpc": "bench", "cidr": "10.20.1.0/24"}})),
    )
    .await;
    let nic = |name: String, vm: &'static str| {
        let (server, http) = (&server, &http);
        async move {
            let body =
                json!({"metadata": {"name": name}, "spec": {"subnet": "s1", "instance": vm}});
            server
                .json(http, Method::POST, "/v1/network-interfaces", Some(body))
                .await
        }
    };
    let peer = nic("peer".into(), "b").await;
    let peer_ip: Ipv4Addr = peer["status"]["ip"].as_str().unwrap().parse().unwrap();
    let _peer_guest = guest(&lab, &host_b, &peer);

    let mut took = Vec::new();
    for i in 0..count {
        let t0 = Instant::now();
        let n = nic(format!("n{i}"), "a").await;
        let g = guest(&lab, &host_a, &n);
        let ping = lab
            .exec(
                &g,
                &[
                    "ping",
                    "-n",
                    "-q",
                    "-c",
                    "1",
                    "-i",
                    "0.01",
                    "-w",
                    "30",
                    &peer_ip.to_string(),
                ],
            )
            .unwrap();
        let t = t0.elapsed();
        assert!(
            ping.status.success(),
            "NIC n{i} never reached its peer: {}{}",
            String::from_utf8_lossy(&ping.stdout),
            String::from_utf8_lossy(&ping.stderr)
        );
        took.push(t);
        let id = n["metadata"]["id"].as_str().unwrap();
        server
            .request(
                &http,
                Method::DELETE,
                &format!("/v1/network-interfaces/{id}"),
            )
            .send()
            .await
            .unwrap();
        let _ = Command::new("ip").args(["netns", "del", &g]).status();
    }
    took.sort();
    println!("NIC create → first packet answered across the overlay ({count} NICs, 2 lab hosts, server on 1-member etcd)");
    println!(
        "p50 {:>7.0} ms   p99 {:>7.0} ms   min {:>7.0} ms   max {:>7.0} ms",
        pct(&took, 0.5),
        pct(&took, 0.99),
        pct(&took, 0.0),
        pct(&took, 1.0)
    );
    drop(agents);
    drop(server);
    drop(etcd);
    drop(lab);
}
