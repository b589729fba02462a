//! Network-namespace lab: N "hosts" (namespaces) on an underlay bridge namespace, and
//! "namespace guests" (a namespace behind a veth standing in for a VM's NIC; its host-side
//! end lives in the host's namespace, named like the VM tap would be).
//!
//! All names start with a per-lab prefix (`yn<pid><tag>`); dropping the [`Lab`] (also while
//! unwinding from a panic) kills the processes it started and deletes every namespace with
//! that prefix, which removes every link in them. Traffic stays inside these namespaces:
//! the underlay uses 192.0.2.0/24 (TEST-NET-1) on a bridge no other namespace is attached to.
use crate::plan::PortPlan;
use crate::realise::Target;
use std::io;
use std::net::Ipv4Addr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct LabHost {
    pub id: String,
    pub netns: String,
    pub vtep: Ipv4Addr,
}

pub struct Lab {
    pub prefix: String,
    pub underlay: String,
    pub hosts: Vec<LabHost>,
    children: Vec<Child>,
}

fn sh(argv: &[&str]) -> io::Result<Output> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{}: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

impl Lab {
    /// An underlay bridge and one namespace per host (`eth0` with the host's VTEP/24).
    pub fn new(tag: &str, hosts: &[(&str, Ipv4Addr)], underlay_mtu: u16) -> io::Result<Lab> {
        let prefix = format!("yn{}{tag}", std::process::id());
        let mut lab = Lab {
            underlay: format!("{prefix}-ul"),
            prefix,
            hosts: vec![],
            children: vec![],
        };
        let ul = lab.underlay.clone();
        let mtu = underlay_mtu.to_string();
        sh(&["ip", "netns", "add", &ul])?;
        sh(&[
            "ip", "-n", &ul, "link", "add", "ul", "mtu", &mtu, "type", "bridge",
        ])?;
        sh(&["ip", "-n", &ul, "link", "set", "ul", "up"])?;
        for (i, (id, vtep)) in hosts.iter().enumerate() {
            let ns = format!("{}-h-{id}", lab.prefix);
            sh(&["ip", "netns", "add", &ns])?;
            lab.hosts.push(LabHost {
                id: id.to_string(),
                netns: ns.clone(),
                vtep: *vtep,
            });
            let port = format!("u{i}");
            sh(&[
                "ip", "-n", &ns, "link", "add", "eth0", "mtu", &mtu, "type", "veth", "peer",
                "name", &port, "netns", &ul,
            ])?;
            sh(&[
                "ip", "-n", &ul, "link", "set", &port, "master", "ul", "mtu", &mtu, "up",
            ])?;
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{vtep}/24"),
                "dev",
                "eth0",
            ])?;
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    pub fn host(&self, id: &str) -> &LabHost {
        self.hosts
            .iter()
            .find(|h| h.id == id)
            .unwrap_or_else(|| panic!("no lab host {id}"))
    }

    /// Where the realiser of host `id` works.
    pub fn target(&self, id: &str) -> Target {
        Target {
            netns: Some(self.host(id).netns.clone()),
            router_prefix: format!("{}-{id}-", self.prefix),
            state_dir: None,
        }
    }

    pub fn guest_ns(&self, port: &str) -> String {
        format!("{}-g-{port}", self.prefix)
    }

    /// A namespace guest for a local port of `host`: `eth0` with the port's MAC, address,
    /// MTU and default route; the host end is `port.device` in the host namespace.
    pub fn add_guest(&self, host: &str, port: &PortPlan, mtu: u16) -> io::Result<String> {
        let g = self.guest_ns(&port.id);
        let h = &self.host(host).netns;
        let mtu = mtu.to_string();
        sh(&["ip", "netns", "add", &g])?;
        sh(&[
            "ip",
            "-n",
            h,
            "link",
            "add",
            &port.device,
            "mtu",
            &mtu,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &g,
        ])?;
        sh(&["ip", "-n", h, "link", "set", &port.device, "up"])?;
        let mac = port.mac.to_string();
        sh(&[
            "ip", "-n", &g, "link", "set", "eth0", "address", &mac, "mtu", &mtu, "up",
        ])?;
        sh(&["ip", "-n", &g, "link", "set", "lo", "up"])?;
        let addr = format!("{}/{}", port.ip, port.prefix_len);
        sh(&["ip", "-n", &g, "addr", "add", &addr, "dev", "eth0"])?;
        sh(&[
            "ip",
            "-n",
            &g,
            "route",
            "add",
            "default",
            "via",
            &port.gateway.to_string(),
        ])?;
        Ok(g)
    }

    /// A namespace guest for a NIC as the API reports it (a `NetworkInterface` document:
    /// `metadata.id`, `status.device/mac/ip/prefix_len/gateway`) on lab host `host`.
    pub fn add_nic_guest(
        &self,
        host: &str,
        nic: &serde_json::Value,
        mtu: u16,
    ) -> io::Result<String> {
        let bad = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("NIC without {what}: {nic}"),
            )
        };
        let st = &nic["status"];
        let text = |v: &serde_json::Value, what: &str| {
            v.as_str().map(str::to_string).ok_or_else(|| bad(what))
        };
        let port = PortPlan {
            id: text(&nic["metadata"]["id"], "metadata.id")?,
            vpc: String::new(),
            vni: 0,
            subnet: String::new(),
            device: text(&st["device"], "status.device")?,
            mac: text(&st["mac"], "status.mac")?
                .parse()
                .map_err(|_| bad("a valid status.mac"))?,
            ip: text(&st["ip"], "status.ip")?
                .parse()
                .map_err(|_| bad("a valid status.ip"))?,
            prefix_len: st["prefix_len"]
                .as_u64()
                .and_then(|p| u8::try_from(p).ok())
                .ok_or_else(|| bad("status.prefix_len"))?,
            gateway: text(&st["gateway"], "status.gateway")?
                .parse()
                .map_err(|_| bad("a valid status.gateway"))?,
            groups: vec![],
            ingress: vec![],
            egress: None,
            forwarding: false,
            serves: vec![],
        };
        self.add_guest(host, &port, mtu)
    }

    /// An external network: a bridge namespace, every host's `ext0` on it (with the
    /// address `host_addrs[i]`/len, like a node's provider-network address) and an "outside"
    /// namespace whose `eth0` holds `gateway` (the upstream router). Returns the outside
    /// namespace; the hosts' device is [`Lab::EXTERNAL_DEVICE`].
    pub fn add_external(
        &self,
        cidr: crate::addr::Ipv4Cidr,
        gateway: Ipv4Addr,
        host_addrs: &[Ipv4Addr],
    ) -> io::Result<String> {
        let br = format!("{}-ext", self.prefix);
        let out = format!("{}-out", self.prefix);
        let len = cidr.prefix_len();
        sh(&["ip", "netns", "add", &br])?;
        sh(&["ip", "-n", &br, "link", "add", "ext", "type", "bridge"])?;
        sh(&["ip", "-n", &br, "link", "set", "ext", "up"])?;
        let mut legs: Vec<(String, String, Option<Ipv4Addr>)> = self
            .hosts
            .iter()
            .zip(host_addrs)
            .map(|(h, a)| (h.netns.clone(), Self::EXTERNAL_DEVICE.to_string(), Some(*a)))
            .collect();
        sh(&["ip", "netns", "add", &out])?;
        legs.push((out.clone(), "eth0".into(), Some(gateway)));
        for (i, (ns, dev, addr)) in legs.iter().enumerate() {
            let port = format!("x{i}");
            sh(&[
                "ip", "-n", ns, "link", "add", dev, "type", "veth", "peer", "name", &port, "netns",
                &br,
            ])?;
            sh(&["ip", "-n", &br, "link", "set", &port, "master", "ext", "up"])?;
            if let Some(a) = addr {
                sh(&[
                    "ip",
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{a}/{len}"),
                    "dev",
                    dev,
                ])?;
            }
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(out)
    }

    /// A guest in `ns` takes a shared VIP over, keepalived-`use_vmac` style: a macvlan
    /// `vip0` on its `eth0` with the VIP's MAC and address, and a gratuitous ARP.
    pub fn take_vip(&self, ns: &str, vip: Ipv4Addr, mac: &str) {
        let vip = vip.to_string();
        for argv in [
            vec![
                "sysctl",
                "-q",
                "-w",
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2",
            ],
            vec![
                "ip", "link", "add", "vip0", "link", "eth0", "type", "macvlan", "mode", "private",
            ],
            vec!["ip", "link", "set", "vip0", "address", mac, "up"],
            vec!["ip", "addr", "add", &format!("{vip}/32"), "dev", "vip0"],
            vec![
                "busybox", "arping", "-U", "-c", "1", "-I", "vip0", "-s", &vip, &vip,
            ],
        ] {
            let o = self.exec(ns, &argv).expect("exec");
            assert!(
                o.status.success(),
                "{argv:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    /// The guest in `ns` lets its VIP go (see [`Lab::take_vip`]).
    pub fn drop_vip(&self, ns: &str) {
        let o = self.exec(ns, &["ip", "link", "del", "vip0"]).expect("exec");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// The hosts' device on the lab's external network.
    pub const EXTERNAL_DEVICE: &'static str = "ext0";

    /// Runs a command inside a namespace and returns its output (success or not).
    pub fn exec(&self, ns: &str, argv: &[&str]) -> io::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .output()
    }

    /// One ping with a deadline in seconds; true if answered.
    pub fn ping(&self, ns: &str, ip: Ipv4Addr, wait_s: u32) -> bool {
        self.exec(
            ns,
            &[
                "ping",
                "-n",
                "-q",
                "-c",
                "1",
                "-W",
                &wait_s.to_string(),
                &ip.to_string(),
            ],
        )
        .map(|o| o.status.success())
        .unwrap_or(false)
    }

    /// Pings until one answer or the deadline (first packets may wait for a link to settle).
    pub fn ping_within(&self, ns: &str, ip: Ipv4Addr, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        loop {
            if self.ping(ns, ip, 1) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
        }
    }

    /// Starts a long-running process in a namespace; it is killed when the lab drops.
    pub fn spawn(&mut self, ns: &str, argv: &[&str]) -> io::Result<u32> {
        let c = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pid = c.id();
        self.children.push(c);
        Ok(pid)
    }

    /// Kills a process started with [`Lab::spawn`].
    pub fn kill(&mut self, pid: u32) {
        if let Some(i) = self.children.iter().position(|c| c.id() == pid) {
            let mut c = self.children.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `f` on a thread that has entered namespace `ns`: sockets it creates belong to
    /// that namespace and can be used from any thread afterwards.
    pub fn in_netns<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || -> io::Result<T> {
            let fd = std::fs::File::open(&path)?;
            nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io::Error::other(format!("setns {path}: {e}")))?;
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
    }

    /// One iperf3 TCP run (`secs` seconds, the first one omitted) from `client_ns` to a
    /// server started in `server_ns` on `server_ip`; `reverse`: the server sends. Returns
    /// the received rate in bit/s. The server is polled for readiness, then stopped.
    pub fn iperf3(
        &mut self,
        server_ns: &str,
        client_ns: &str,
        server_ip: &str,
        secs: u32,
        reverse: bool,
    ) -> io::Result<f64> {
        let pid = self.spawn(server_ns, &["iperf3", "-s", "-1", "-B", server_ip])?;
        let end = Instant::now() + Duration::from_secs(5);
        let secs = secs.to_string();
        let mut argv = vec!["iperf3", "-c", server_ip, "-t", &secs, "-O", "1", "-J"];
        if reverse {
            argv.push("-R");
        }
        let result = loop {
            let o = self.exec(client_ns, &argv)?;
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            if o.status.success() && v.get("error").is_none() {
                break v["end"]["sum_received"]["bits_per_second"]
                    .as_f64()
                    .ok_or_else(|| io::Error::other("iperf3: no sum_received"));
            }
            if Instant::now() >= end {
                break Err(io::Error::other(format!(
                    "iperf3: {}",
                    String::from_utf8_lossy(&o.stdout)
                )));
            }
            std::thread::sleep(Duration::from_millis(50)); // poll interval, bounded by the deadline
        };
        self.kill(pid);
        result
    }

    /// Received packets on a guest's `eth0`.
    pub fn rx_packets(&self, ns: &str) -> io::Result<u64> {
        let o = self.exec(ns, &["cat", "/sys/class/net/eth0/statistics/rx_packets"])?;
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .map_err(|e| io::Error::other(format!("rx_packets: {e}")))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let listed = Command::new("ip").args(["netns", "list"]).output();
        if let Ok(o) = listed {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or_default();
                if name.starts_with(&format!("{}-", self.prefix)) {
                    let _ = Command::new("ip").args(["netns", "del", name]).output();
                }
            }
        }
    }
}

/// Small models shared by unit tests, snapshots and the e2e lab.
pub mod fixtures {
    use crate::addr::{Ipv4Cidr, MacAddr};
    use crate::model::*;
    use std::net::Ipv4Addr;

    pub fn mac(s: &str) -> MacAddr {
        s.parse().expect("mac")
    }

    pub fn port(
        id: &str,
        vpc: &str,
        subnet: &str,
        host: &str,
        ip: &str,
        m: &str,
        sgs: &[&str],
    ) -> Port {
        Port {
            id: id.into(),
            vpc: vpc.into(),
            subnet: subnet.into(),
            host: Some(host.into()),
            mac: mac(m),
            ip: ip.parse().expect("ip"),
            security_groups: sgs.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn subnet(id: &str, vpc: &str, cidr: &str, gw: &str, gw_mac: &str) -> Subnet {
        Subnet {
            id: id.into(),
            vpc: vpc.into(),
            cidr: cidr.parse().expect("cidr"),
            gateway_ip: gw.parse().expect("ip"),
            gateway_mac: mac(gw_mac),
        }
    }

    pub fn ingress(protocol: Protocol, ports: Option<(u16, u16)>, peer: Peer) -> Rule {
        Rule {
            direction: Direction::Ingress,
            protocol,
            ports: ports.map(|(from, to)| PortRange { from, to }),
            peer,
        }
    }

    pub fn cidr(s: &str) -> Peer {
        Peer::Cidr(s.parse().expect("cidr"))
    }

    /// Subnet `id` of `vpc` over `cidr`, its gateway the first host address.
    pub fn subnet_over(id: String, vpc: &str, cidr: Ipv4Cidr, gateway_mac: MacAddr) -> Subnet {
        Subnet {
            id,
            vpc: vpc.into(),
            cidr,
            gateway_ip: cidr.nth(1).expect("a host address"),
            gateway_mac,
        }
    }

    /// VPC `id` (VNI `vni`) over 10.0.0.0/16, the range every VPC of the fixtures reuses.
    pub fn vpc(id: &str, vni: u32) -> Vpc {
        Vpc {
            id: id.into(),
            vni,
            cidr: "10.0.0.0/16".parse().expect("cidr"),
        }
    }

    /// Groups `<vpc>-web` (TCP `web_ports` from anywhere) and `<vpc>-db` (TCP 5432 from
    /// members of `<vpc>-web`).
    pub fn web_and_db(vpc: &str, web_ports: (u16, u16)) -> [SecurityGroup; 2] {
        let web = format!("{vpc}-web");
        let group = |id: String, rule| SecurityGroup {
            id,
            vpc: vpc.into(),
            rules: vec![rule],
        };
        let db_rule = ingress(Protocol::Tcp, Some((5432, 5432)), Peer::Group(web.clone()));
        [
            group(
                web,
                ingress(Protocol::Tcp, Some(web_ports), cidr("0.0.0.0/0")),
            ),
            group(format!("{vpc}-db"), db_rule),
        ]
    }

    /// A model of `hosts` hosts `h0`, `h1`, … (VTEPs 192.0.2.10 on) and nothing else yet.
    pub fn hosts_model(hosts: usize) -> NetworkModel {
        let vtep = |h: usize| Ipv4Addr::from(0xc000_0200u32 + 10 + h as u32);
        NetworkModel {
            hosts: (0..hosts)
                .map(|h| Host {
                    id: format!("h{h}"),
                    vtep: vtep(h),
                })
                .collect(),
            underlay_mtu: 1500,
            ..Default::default()
        }
    }

    /// [`two_host_model`] with everything external: the lab's external network, an elastic
    /// IP for `pa1` (capped at 20 Mbit/s) and one for `pb1` (same private address, other
    /// VPC), a NAT gateway for `vpc-a` on host-b with a port-forward to `pa1`, and a VIP
    /// shared by `pa1` and `pa2`, held by `pa1`.
    pub fn external_model() -> NetworkModel {
        let mut m = two_host_model();
        m.external_networks.push(external(&m));
        m.elastic_ips = vec![
            ElasticIp {
                id: "eip-a".into(),
                address: "203.0.113.50".parse().expect("ip"),
                port: Some("pa1".into()),
                bandwidth_mbit: Some(20),
            },
            ElasticIp {
                id: "eip-b".into(),
                address: "203.0.113.51".parse().expect("ip"),
                port: Some("pb1".into()),
                bandwidth_mbit: None,
            },
        ];
        m.nat_gateways.push(NatGateway {
            id: "nat-a".into(),
            vpc: "vpc-a".into(),
            external_ip: "203.0.113.60".parse().expect("ip"),
            subnets: vec![],
            dnat: vec![DnatRule {
                protocol: Protocol::Tcp,
                external_port: 8080,
                internal_ip: "10.0.1.10".parse().expect("ip"),
                internal_port: 80,
            }],
            host: "host-b".into(),
        });
        m.vips.push(Vip {
            id: "vip1".into(),
            vpc: "vpc-a".into(),
            subnet: "sn-a1".into(),
            ip: "10.0.1.100".parse().expect("ip"),
            mac: None,
            ports: vec!["pa1".into(), "pa2".into()],
            holder: Some("pa1".into()),
        });
        m
    }

    /// [`two_host_model`] with anycast address `lb-1` = 10.0.1.200 in `sn-a1`, served by
    /// `pa1` (host-a, 10.0.1.10) and `pa2` (host-b, 10.0.1.11).
    pub fn anycast_model() -> NetworkModel {
        let mut m = two_host_model();
        m.anycasts.push(Anycast {
            id: "lb-1".into(),
            vpc: "vpc-a".into(),
            subnet: "sn-a1".into(),
            ip: "10.0.1.200".parse().expect("ip"),
            ports: vec!["pa1".into(), "pa2".into()],
        });
        m
    }

    /// The lab's external network: 203.0.113.0/24 (TEST-NET-3), upstream router .1, every
    /// host of `m` on it through `ext0`.
    pub fn external(m: &NetworkModel) -> ExternalNetwork {
        ExternalNetwork {
            id: "ext".into(),
            cidr: "203.0.113.0/24".parse().expect("cidr"),
            gateway_ip: "203.0.113.1".parse().expect("ip"),
            legs: m
                .hosts
                .iter()
                .map(|h| ExternalLeg {
                    host: h.id.clone(),
                    device: crate::lab::Lab::EXTERNAL_DEVICE.into(),
                })
                .collect(),
            host_gateway: false,
        }
    }

    /// Two hosts; VPC `vpc-a` (VNI 42, two subnets) and `vpc-b` (VNI 43) reuse 10.0.0.0/16.
    pub fn two_host_model() -> NetworkModel {
        NetworkModel {
            hosts: vec![
                Host {
                    id: "host-a".into(),
                    vtep: Ipv4Addr::new(192, 0, 2, 10),
                },
                Host {
                    id: "host-b".into(),
                    vtep: Ipv4Addr::new(192, 0, 2, 11),
                },
            ],
            vpcs: vec![vpc("vpc-a", 42), vpc("vpc-b", 43)],
            subnets: vec![
                subnet(
                    "sn-a1",
                    "vpc-a",
                    "10.0.1.0/24",
                    "10.0.1.1",
                    "02:00:00:00:a1:01",
                ),
                subnet(
                    "sn-a2",
                    "vpc-a",
                    "10.0.2.0/24",
                    "10.0.2.1",
                    "02:00:00:00:a2:01",
                ),
                subnet(
                    "sn-b1",
                    "vpc-b",
                    "10.0.1.0/24",
                    "10.0.1.1",
                    "02:00:00:00:b1:01",
                ),
            ],
            ports: vec![
                port(
                    "pa1",
                    "vpc-a",
                    "sn-a1",
                    "host-a",
                    "10.0.1.10",
                    "02:00:00:0a:01:0a",
                    &["sg-web"],
                ),
                port(
                    "pa2",
                    "vpc-a",
                    "sn-a1",
                    "host-b",
                    "10.0.1.11",
                    "02:00:00:0a:01:0b",
                    &["sg-web"],
                ),
                port(
                    "pa3",
                    "vpc-a",
                    "sn-a2",
                    "host-b",
                    "10.0.2.10",
                    "02:00:00:0a:02:0a",
                    &["sg-db"],
                ),
                port(
                    "pb1",
                    "vpc-b",
                    "sn-b1",
                    "host-a",
                    "10.0.1.10",
                    "02:00:00:0b:01:0a",
                    &["sg-b"],
                ),
                port(
                    "pb2",
                    "vpc-b",
                    "sn-b1",
                    "host-b",
                    "10.0.1.11",
                    "02:00:00:0b:01:0b",
                    &["sg-b"],
                ),
            ],
            security_groups: vec![
                SecurityGroup {
                    id: "sg-web".into(),
                    vpc: "vpc-a".into(),
                    rules: vec![
                        ingress(Protocol::Tcp, Some((80, 80)), cidr("0.0.0.0/0")),
                        ingress(Protocol::Icmp, None, cidr("10.0.0.0/16")),
                    ],
                },
                SecurityGroup {
                    id: "sg-db".into(),
                    vpc: "vpc-a".into(),
                    rules: vec![
                        ingress(
                            Protocol::Tcp,
                            Some((5432, 5432)),
                            Peer::Group("sg-web".into()),
                        ),
                        ingress(Protocol::Icmp, None, cidr("0.0.0.0/0")),
                    ],
                },
                SecurityGroup {
                    id: "sg-b".into(),
                    vpc: "vpc-b".into(),
                    rules: vec![ingress(Protocol::Any, None, cidr("0.0.0.0/0"))],
                },
            ],
            underlay_mtu: 1500,
            ..Default::default()
        }
    }
}
