use super::*;
use crate::compile::compile_all;
use crate::model::{Direction, Peer, PortRange, Protocol, Rule};

#[test]
fn first_apply_on_empty_namespace() {
    let plans = compile_all(&crate::lab::fixtures::two_host_model()).unwrap();
    let r = RecordingRunner::default();
    r.answer("sysctl -n", "0\n");
    let mut real = Realiser::new(
        r,
        Target {
            netns: Some("h".into()),
            router_prefix: "t-".into(),
            state_dir: None,
        },
    );
    let rep = real.apply(&plans["host-a"]).unwrap();
    assert!(rep.changes > 10, "{rep:?}");
    assert_eq!(rep.missing_ports.len(), plans["host-a"].ports.len());
    let lines = real.runner().lines().join("\n");
    assert!(lines.contains("ip netns add t-ynr-00002a"), "{lines}");
    assert!(
        lines.contains("type vxlan id 42 local 192.0.2.10 dstport 4789 nolearning proxy"),
        "{lines}"
    );
    assert!(lines.contains("dst 192.0.2.11 self permanent"), "{lines}");
    // Never a flooding entry.
    assert!(!lines.contains("00:00:00:00:00:00"), "{lines}");
    assert!(lines.contains("[h] nft -f -"), "{lines}");
}

#[test]
fn external_pieces_are_realised_and_removed() {
    let m = crate::lab::fixtures::external_model();
    let plans = compile_all(&m).unwrap();
    let mut real = Realiser::new(RecordingRunner::default(), Target::default());
    real.apply(&plans["host-a"]).unwrap();
    let lines = real.runner().lines().join("\n");
    for want in [
        "link add name ynu-00002a address",
        "type veth peer name uplink address",
        "neigh replace proxy 203.0.113.50 dev ext0",
        "route replace 203.0.113.50/32 via 169.254.0.2 dev ynu-00002a onlink table",
        "route replace default via 203.0.113.1 dev ext0 table",
        "rule add pref 1000 to 203.0.113.0/24 table",
        "rule add pref 1001 from 203.0.113.0/24 table",
        "route replace default via 169.254.0.1 dev uplink onlink table 100",
        "route replace default via 169.254.255.1 dev gwe565d34afe onlink table 101",
        "rule add pref 33001 fwmark 0x1 table 100",
        "rule add pref 33002 fwmark 0x2 table 101",
        "tc qdisc replace dev ynu-00002a root handle 1: htb default 0",
        "tc class replace dev uplink parent 1: classid 1:10 htb rate 20mbit ceil 20mbit",
        "snat to 203.0.113.50",
        "net.ipv4.neigh.ext0.proxy_delay=0",
    ] {
        assert!(lines.contains(want), "missing {want:?} in\n{lines}");
    }
    // Unbinding the capped elastic IP flushes its translations.
    let mut m2 = m.clone();
    m2.elastic_ips[0].port = None;
    let p2 = compile_all(&m2).unwrap();
    assert_eq!(
        nat_changes(&plans["host-a"], &p2["host-a"], 42),
        vec!["203.0.113.50".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert!(nat_changes(&plans["host-a"], &plans["host-a"], 42).is_empty());
    real.runner().commands.lock().unwrap().clear();
    real.apply(&p2["host-a"]).unwrap();
    let lines = real.runner().lines().join("\n");
    assert!(lines.contains("conntrack -D -d 203.0.113.50"), "{lines}");
    assert!(lines.contains("conntrack -D -q 203.0.113.50"), "{lines}");
}

/// Rules a former agent left for an external network that is gone are removed; an
/// administrator's own rule at the same preference (another table) is left alone.
#[test]
fn stale_external_rules_are_removed() {
    let m = crate::lab::fixtures::two_host_model();
    let plans = compile_all(&m).unwrap();
    let runner = RecordingRunner::default();
    runner.answer(
        "ip -j rule",
        r#"[{"priority":1000,"dst":"172.24.4.0","dstlen":24,"table":"105153"},
            {"priority":1001,"src":"172.24.4.0","srclen":24,"table":"105153"},
            {"priority":1000,"dst":"192.0.2.0","dstlen":24,"table":"7"}]"#,
    );
    let mut real = Realiser::new(runner, Target::default());
    real.apply(&plans["host-a"]).unwrap();
    let lines = real.runner().lines().join("\n");
    assert!(
        lines.contains("rule del pref 1000 to 172.24.4.0/24 table 105153"),
        "{lines}"
    );
    assert!(
        lines.contains("rule del pref 1001 from 172.24.4.0/24 table 105153"),
        "{lines}"
    );
    assert!(!lines.contains("table 7"), "{lines}");
}

#[test]
fn rule_changes_flush_only_what_they_allowed() {
    let mut m = crate::lab::fixtures::two_host_model();
    let a = compile_all(&m).unwrap();
    // No change: nothing to flush.
    assert!(conntrack_flushes(&a["host-a"], &a["host-a"]).is_empty());
    // Remove the web group's ingress rule: flows towards its members on host-a go.
    let web = m
        .security_groups
        .iter_mut()
        .find(|g| g.id == "sg-web")
        .unwrap();
    web.rules.retain(|r| r.direction != Direction::Ingress);
    let b = compile_all(&m).unwrap();
    let f = conntrack_flushes(&a["host-a"], &b["host-a"]);
    assert_eq!(f, vec![(43, "-d", "10.0.1.10".parse().unwrap())]);
    // Adding an egress rule to the web group restricts egress: flows it started go.
    m.security_groups[0].rules.push(Rule {
        direction: Direction::Egress,
        protocol: Protocol::Tcp,
        ports: Some(PortRange { from: 443, to: 443 }),
        peer: Peer::Cidr("0.0.0.0/0".parse().unwrap()),
    });
    let c = compile_all(&m).unwrap();
    assert!(conntrack_flushes(&b["host-a"], &c["host-a"])
        .iter()
        .any(|(_, f, _)| *f == "-s"));
}

/// An anycast address is judged by its first local serving port's rules: when they change,
/// or the port stops serving, the address's flows are forgotten too.
#[test]
fn anycast_flows_are_flushed_with_their_judging_rules() {
    let mut m = crate::lab::fixtures::anycast_model();
    let a = compile_all(&m).unwrap();
    let v: std::net::Ipv4Addr = "10.0.1.200".parse().unwrap();
    assert!(conntrack_flushes(&a["host-a"], &a["host-a"]).is_empty());
    let web = m.security_groups.iter_mut().find(|g| g.id == "sg-web");
    web.unwrap()
        .rules
        .retain(|r| r.direction != Direction::Ingress);
    let b = compile_all(&m).unwrap();
    let f = conntrack_flushes(&a["host-a"], &b["host-a"]);
    assert_eq!(
        f,
        vec![(43, "-d", "10.0.1.10".parse().unwrap()), (43, "-d", v)]
    );
    m.anycasts[0].ports = vec!["pa2".into()];
    let c = compile_all(&m).unwrap();
    let f = conntrack_flushes(&b["host-a"], &c["host-a"]);
    assert_eq!(f, vec![(43, "-d", v), (43, "-s", v)]);
}

/// A host keeps announcing an address it took over (a host that still answers for it may
/// win a fresh lookup), and stops once the address is no longer its own.
#[test]
fn a_taken_over_address_is_announced_again_on_each_apply() {
    let m = crate::lab::fixtures::external_model();
    let plans = compile_all(&m).unwrap();
    let mut real = Realiser::new(RecordingRunner::default(), Target::default());
    let ext0 = r#"[{"ifname":"ext0","address":"02:00:00:00:00:e0","mtu":1500,"flags":["UP"],"operstate":"UP"}]"#;
    real.runner().answer("ip -j -d link show", ext0);
    let garps = |real: &Realiser<RecordingRunner>| {
        let n = (real.runner().lines().iter())
            .filter(|l| l.contains("garp ext0 02:00:00:00:00:e0 203.0.113.50"))
            .count();
        real.runner().commands.lock().unwrap().clear();
        n
    };
    real.apply(&plans["host-a"]).unwrap();
    assert_eq!(garps(&real), 1, "announced when taken");
    // Already answered now (the proxy entry is there): announced again all the same.
    real.runner().answer(
        "ip -j neigh show proxy",
        r#"[{"dst":"203.0.113.50","dev":"ext0"}]"#,
    );
    real.apply(&plans["host-a"]).unwrap();
    assert_eq!(garps(&real), 1, "announced again");
    let mut gone = m.clone();
    gone.elastic_ips
        .retain(|e| e.address.to_string() != "203.0.113.50");
    real.apply(&compile_all(&gone).unwrap()["host-a"]).unwrap();
    assert_eq!(garps(&real), 0, "no longer this host's");
}

/// Devices that drifted are repaired in place (master, MTU, up); those of the wrong kind or
/// MAC are deleted and created again, on their bridge where they belong.
#[test]
fn drifted_devices_are_repaired_or_created_again() {
    let plans = compile_all(&crate::lab::fixtures::external_model()).unwrap();
    let plan = &plans["host-a"];
    let v = plan.vpcs.iter().find(|v| v.uplink.is_some()).unwrap();
    let (br, mtu) = (&v.bridge, plan.mtu);
    let (leg, other_leg) = (&v.router.interfaces[0], &v.router.interfaces[1]);
    let uplink = v.uplink.as_ref().unwrap();
    let port = plan.ports.iter().find(|p| p.vni == v.vni).unwrap();
    let link = |name: &str, kind: &str, master: &str, mtu: u16, up: bool| {
        serde_json::json!({
            "ifname": name, "master": master, "mtu": mtu, "address": "02:00:00:00:00:01",
            "flags": if up { vec!["UP"] } else { vec![] },
            "linkinfo": { "info_kind": kind },
        })
    };
    let links = serde_json::Value::from(vec![
        link(br, "bridge", "", mtu - 1, false),
        link(&leg.host_dev, "veth", "elsewhere", mtu, true),
        link(&other_leg.host_dev, "dummy", br, mtu, true),
        link(&uplink.host_dev, "veth", "", mtu, true),
        link(&port.device, "veth", br, mtu + 1, true),
    ]);
    let r = RecordingRunner::default();
    r.answer("ip -j -d link show", &links.to_string());
    let mut real = Realiser::new(r, Target::default());
    real.apply(plan).unwrap();
    let lines = real.runner().lines().join("\n");
    let (other, up_dev, dev) = (&other_leg.host_dev, &uplink.host_dev, &port.device);
    for want in [
        format!("link set dev {br} mtu {mtu}\nlink set dev {br} up\n"),
        format!("link set dev {} master {br}\n", leg.host_dev),
        format!("link del dev {other}\nlink add name {other} mtu {mtu} type veth peer name "),
        format!("link set dev {other} master {br}\nlink set dev {other} up\n"),
        format!(
            "link del dev {up_dev}\nlink add name {up_dev} address {}",
            uplink.host_mac
        ),
        format!("link set dev {dev} mtu {mtu}\n"),
    ] {
        assert!(lines.contains(&want), "missing {want:?} in\n{lines}");
    }
    assert!(!lines.contains(&format!("link add name {br} ")), "{lines}");
    assert!(
        !lines.contains(&format!("link set dev {dev} master")),
        "{lines}"
    );
}

/// Anycast: the router's equal-cost route (proto 121), the VXLAN proxy's neighbour, the
/// sysctls (L4 hash, no redirects, per existing interface); a second apply over the
/// resulting state changes nothing; fewer serving ports, none, and none at all follow.
#[test]
fn anycast_routes_are_realised_changed_and_removed() {
    let m = crate::lab::fixtures::anycast_model();
    let plans = compile_all(&m).unwrap();
    let plan = &plans["host-a"];
    let v = plan.vpcs.iter().find(|v| v.vni == 42).unwrap();
    let gw = crate::names::router_dev("sn-a1");
    let router_links = serde_json::json!([
        {"ifname": "lo", "flags": ["UP"], "mtu": 65536, "address": "00:00:00:00:00:00"},
        {"ifname": gw, "flags": ["UP"], "mtu": plan.mtu, "address": "02:00:00:00:a1:01",
         "linkinfo": {"info_kind": "veth"}},
    ]);
    let target = Target {
        netns: Some("h".into()),
        router_prefix: "t-".into(),
        state_dir: None,
    };
    let real = |answers: &[(&str, String)]| {
        let r = RecordingRunner::default();
        for (p, out) in answers {
            r.answer(p, out);
        }
        let mut real = Realiser::new(r, target.clone());
        real.apply(plan).unwrap();
        let lines = real.runner().lines().join("\n");
        lines
    };
    let addr_show = ("ip -j -d addr show", router_links.to_string());
    let lines = real(std::slice::from_ref(&addr_show));
    let rns = "[t-ynr-00002a]";
    for want in [
        format!("{rns} ip -j route show table main proto 121"),
        format!(
            "route replace 10.0.1.200/32 proto 121 nexthop via 10.0.1.10 dev {gw} nexthop via 10.0.1.11 dev {gw}"
        ),
        format!("neigh replace 10.0.1.200 lladdr 02:00:00:00:a1:01 dev {} nud permanent", v.vxlan),
        "net.ipv4.fib_multipath_hash_policy=3 net.ipv4.fib_multipath_hash_fields=55".into(),
        "net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0".into(),
        format!("net.ipv4.conf.{gw}.send_redirects=0"),
    ] {
        assert!(lines.contains(&want), "missing {want:?} in\n{lines}");
    }
    // Only the interfaces that exist get the per-device setting.
    let other = crate::names::router_dev("sn-a2");
    assert!(!lines.contains(&format!("conf.{other}.")), "{lines}");
    // Every router of the VPC hashes with the VPC's seed, where the kernel has one.
    let seed = super::router::hash_seed(&v.vpc);
    assert_ne!(seed, super::router::hash_seed("vpc-other"));
    assert_eq!(
        lines.contains(&format!("net.ipv4.fib_multipath_hash_seed={seed}")),
        super::router::kernel_has_hash_seed(),
        "{lines}"
    );

    // The route as the kernel lists it: nothing to do; a stale one of ours goes.
    let listed = format!(
        r#"[{{"dst":"10.0.1.200","flags":[],"nexthops":[
            {{"gateway":"10.0.1.11","dev":"{gw}","weight":1,"flags":[]}},
            {{"gateway":"10.0.1.10","dev":"{gw}","weight":1,"flags":[]}}]}},
            {{"type":"blackhole","dst":"10.0.1.250","flags":[]}}]"#
    );
    let lines = real(&[
        addr_show.clone(),
        ("ip -j route show table main proto 121", listed.clone()),
    ]);
    assert!(!lines.contains("route replace 10.0.1.200"), "{lines}");
    assert!(
        lines.contains("route del 10.0.1.250/32 proto 121"),
        "{lines}"
    );

    // One serving port left, then none: one next hop, then a blackhole.
    let mut m1 = m.clone();
    m1.anycasts[0].ports = vec!["pa2".into()];
    let p1 = compile_all(&m1).unwrap();
    let mut real1 = Realiser::new(RecordingRunner::default(), target.clone());
    real1
        .runner()
        .answer("ip -j route show table main proto 121", &listed);
    real1.apply(&p1["host-a"]).unwrap();
    let lines = real1.runner().lines().join("\n");
    assert!(
        lines.contains(&format!(
            "route replace 10.0.1.200/32 proto 121 via 10.0.1.11 dev {gw}\n"
        )),
        "{lines}"
    );
    m1.anycasts[0].ports.clear();
    let p0 = compile_all(&m1).unwrap();
    real1.runner().commands.lock().unwrap().clear();
    real1.apply(&p0["host-a"]).unwrap();
    let lines = real1.runner().lines().join("\n");
    assert!(
        lines.contains("route replace blackhole 10.0.1.200/32 proto 121"),
        "{lines}"
    );

    // No anycast any more: our route and the proxy neighbour go.
    let vx_neigh = format!(
        r#"[{{"dst":"10.0.1.200","dev":"{}","lladdr":"02:00:00:00:a1:01","state":["PERMANENT"]}}]"#,
        v.vxlan
    );
    let links = serde_json::json!([
        {"ifname": v.vxlan, "flags": ["UP"], "mtu": plan.mtu, "linkinfo": {"info_kind": "vxlan"}},
    ]);
    let r = RecordingRunner::default();
    r.answer("ip -j route show table main proto 121", &listed);
    r.answer("ip -j neigh show", &vx_neigh);
    r.answer("ip -j -d link show", &links.to_string());
    let mut real2 = Realiser::new(r, target.clone());
    let plain = compile_all(&crate::lab::fixtures::two_host_model()).unwrap();
    real2.apply(&plain["host-a"]).unwrap();
    let lines = real2.runner().lines().join("\n");
    assert!(
        lines.contains("route del 10.0.1.200/32 proto 121"),
        "{lines}"
    );
    assert!(
        lines.contains(&format!("neigh del 10.0.1.200 dev {}", v.vxlan)),
        "{lines}"
    );
}
