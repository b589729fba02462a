//! One box for north–south tests: a namespace standing for the host (`yunhan up
//! --netns`) whose default route leads to another standing for the internet.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{stderr, stdout};
use yunhan_net::lab::Lab;

/// The host (`<p>h`) and the internet (`<p>i`): a veth between them, the host's default
/// route through it. Removed on drop.
pub struct OneBox {
    pub host: String,
    pub internet: String,
}

/// The internet's address, the host's default gateway.
pub const INTERNET: &str = "100.127.0.2";
/// The public network of this test (not `up`'s default: tests share the machine).
pub const PUBLIC_CIDR: &str = "172.31.250.0/24";

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

impl OneBox {
    pub fn new() -> OneBox {
        let p = format!("ynns{}", std::process::id() % 100_000);
        let b = OneBox {
            host: format!("{p}h"),
            internet: format!("{p}i"),
        };
        let (h, i) = (b.host.as_str(), b.internet.as_str());
        sh(&["ip", "netns", "add", h]);
        sh(&["ip", "netns", "add", i]);
        sh(&["ip", "-n", h, "link", "set", "lo", "up"]);
        sh(&["ip", "-n", i, "link", "set", "lo", "up"]);
        sh(&[
            "ip", "-n", h, "link", "add", "wan0", "type", "veth", "peer", "name", "wan1", "netns",
            i,
        ]);
        sh(&[
            "ip",
            "-n",
            h,
            "addr",
            "add",
            "100.127.0.1/30",
            "dev",
            "wan0",
        ]);
        sh(&[
            "ip",
            "-n",
            i,
            "addr",
            "add",
            "100.127.0.2/30",
            "dev",
            "wan1",
        ]);
        sh(&["ip", "-n", h, "link", "set", "wan0", "up"]);
        sh(&["ip", "-n", i, "link", "set", "wan1", "up"]);
        sh(&["ip", "-n", h, "route", "add", "default", "via", INTERNET]);
        b
    }

    pub fn ping(&self, addr: &str) -> bool {
        self.ping_waiting(addr, "1")
    }

    /// One ping from the host's namespace, waiting `wait` seconds (fractions allowed) for
    /// the answer.
    pub fn ping_waiting(&self, addr: &str, wait: &str) -> bool {
        Command::new("ip")
            .args([
                "netns", "exec", &self.host, "ping", "-n", "-c", "1", "-W", wait, addr,
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Whether the host's route to `addr` is one the platform made (a `yn…` device), never
    /// the default route towards the internet: nothing is sent to `addr` otherwise.
    pub fn routed_by_the_platform(&self, addr: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.host, "route", "get", addr])
            .output()
            .unwrap();
        let route = stdout(&out);
        !route.contains("wan0") && route.contains(" dev yn")
    }

    /// What the host's namespace looks like on the way to `addr`, for failure messages.
    pub fn diagnose(&self, addr: &str) -> String {
        let run = |a: &[&str]| {
            let o = Command::new("ip")
                .args(["-n", &self.host])
                .args(a)
                .output()
                .unwrap();
            format!("$ ip {}\n{}{}", a.join(" "), stdout(&o), stderr(&o))
        };
        [
            run(&["route", "get", addr]),
            run(&["-br", "addr"]),
            run(&["rule"]),
            run(&["route", "show", "table", "all"]),
        ]
        .join("\n")
    }

    /// The HTB classes on the host side of every VPC uplink (inbound caps).
    pub fn tc_classes(&self) -> String {
        let links = Command::new("ip")
            .args(["-n", &self.host, "-br", "link"])
            .output()
            .unwrap();
        stdout(&links)
            .lines()
            .filter_map(|l| l.split(['@', ' ']).next())
            .filter(|d| d.starts_with("ynu-"))
            .map(|d| {
                let o = Command::new("tc")
                    .args(["-n", &self.host, "class", "show", "dev", d])
                    .output()
                    .unwrap();
                stdout(&o)
            })
            .collect()
    }

    /// Pings `addr` once if the platform routes it (else does not send at all).
    pub fn ping_eip(&self, addr: &str) -> bool {
        self.routed_by_the_platform(addr) && self.ping(addr)
    }
}

impl Drop for OneBox {
    /// The two namespaces and the router namespaces the agent made for the host
    /// (named after it).
    fn drop(&mut self) {
        let listed = Command::new("ip").args(["netns", "list"]).output();
        let routers: Vec<String> = listed
            .map(|o| stdout(&o))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{}-", self.host)))
            .map(String::from)
            .collect();
        for ns in routers.iter().chain([&self.host, &self.internet]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Polls `ok` every 100 ms until it holds; the time it took, or None after `limit`.
pub fn within(limit: Duration, mut ok: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if ok() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// On `cloud`: the test guest as image `tiny`, VPC `net1` (10.10.0.0/16), subnet `s1`
/// (10.10.1.0/24) and security group `open` allowing `rules` (protocol, port) from
/// anywhere.
pub fn vpc_with_open_group(cloud: &super::Cloud, rules: &[(&str, Option<&str>)]) {
    cloud.ok(&super::strs(&super::kernel_image_args("tiny")));
    super::net1_with_s1(cloud);
    cloud.ok(&["sg", "create", "open", "--vpc", "net1"]);
    for (protocol, port) in rules {
        let mut rule = vec!["sg", "rule", "add", "open", "--protocol", protocol];
        rule.extend(port.iter().flat_map(|p| ["--port", p]));
        rule.extend(["--cidr", "0.0.0.0/0"]);
        cloud.ok(&rule);
    }
}

/// `vm create NAME` of the test guest in subnet `s1` with `extra` arguments (e.g. its
/// security group), waiting until it runs.
pub fn running_vm(cloud: &super::Cloud, name: &str, extra: &[&str]) {
    let mut args = super::tiny_vm(name, &["--subnet", "s1", "--wait", "--timeout", "120s"]);
    args.extend(extra);
    cloud.ok(&args);
}

/// Waits until VM `name`'s test guest has booted (`YUNHAN-READY` on its console); its
/// `vm show`.
pub async fn ready_guest(cloud: &super::Cloud, name: &str) -> serde_json::Value {
    let g = cloud.ok(&["vm", "show", name]);
    super::eventually(
        &format!("{name} ready"),
        Duration::from_secs(180),
        || async {
            super::console_text(&super::serial_log(&g))
                .contains("YUNHAN-READY")
                .then_some(())
        },
    )
    .await;
    g
}

/// busybox httpd on port 80 of guest `g`, answering `GET /` with `name`; `round` tells
/// this start's marker from an earlier one's.
pub async fn serve_http(g: &serde_json::Value, name: &str, round: u32) {
    let cmd = format!(
        "mkdir -p /tmp/w && echo {name} > /tmp/w/index.html && httpd -p 80 -h /tmp/w && echo HTTPD-{round}-$((40+2))"
    );
    let marker = format!("HTTPD-{round}-42");
    super::guest_runs(g, &cmd, &marker, Duration::from_secs(60)).await;
}

/// `GET /` from inside `ns`; the answer (empty when there is none within 2 s).
pub fn http_get(ns: &str, addr: &str, port: u16) -> String {
    http_request(ns, addr, port, "GET / HTTP/1.0\r\n\r\n")
}

/// The whole answer to `request` (raw HTTP) sent to `addr:port` from `ns`; empty on failure.
pub fn http_request(ns: &str, addr: &str, port: u16, request: &str) -> String {
    let sa = std::net::SocketAddr::from((addr.parse::<Ipv4Addr>().unwrap(), port));
    let request = request.to_string();
    let answer = Lab::in_netns(ns, move || -> std::io::Result<String> {
        let mut c = TcpStream::connect_timeout(&sa, Duration::from_secs(2))?;
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        c.write_all(request.as_bytes())?;
        let mut out = String::new();
        c.read_to_string(&mut out)?;
        Ok(out)
    });
    answer.ok().and_then(Result::ok).unwrap_or_default()
}
