//! VPC networking through the real binary: `yunhan server` on etcd, two
//! `yunhan agent --netns <host> --vtep <ip>` whose "hosts" are network namespaces of a
//! `yunhan_net::lab::Lab` underlay, real QEMU guests (TCG) on TAPs, guest-side pings
//! typed into the serial console; namespace guests standing in for further NICs; the
//! control plane killed; bad input and another project's ids through the API.

mod common;

use std::net::Ipv4Addr;

use std::time::Duration;

use common::{
    console_text, eventually, guest_runs, kernel_image_args, net1_with_s1, serial_log, stderr,
    strs, tiny_vm, Cloud, Cluster,
};
use serde_json::{json, Value};
use yunhan_net::lab::Lab;

fn ready_ip(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains("YUNHAN-READY"))?;
    Some(line.split("ips=").nth(1)?.trim().to_string())
}

/// The contract on two hosts with real guests; a guest-side ping across hosts;
/// then the control plane killed (guests keep talking, drift is still repaired) and, once
/// it is back, a new subnet and NIC (a namespace guest) reach b through the distributed
/// router; last, a NIC hot-plugged into a running guest, moved to the other one, detached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_network_two_hosts_guests_ping_and_survive_control_plane_loss() {
    let lab = common::two_host_lab("nw");
    let (etcd, mut c) = common::lab_cloud(&lab).await;
    c.ok(&strs(&kernel_image_args("tiny")));
    c.ok(&["placement-group", "create", "spread", "--policy", "hard"]);
    // The contract.
    net1_with_s1(&c);
    for name in ["a", "b"] {
        let mut args = tiny_vm(name, &["--subnet", "s1", "--placement-group", "spread"]);
        args.extend(["--wait", "--timeout", "120s"]);
        let out = c.cli(&args);
        assert!(out.status.success(), "vm create {name}: {}", stderr(&out));
    }
    // A stopped VM whose NICs namespace guests stand in for (its host hot-plugs nothing).
    c.ok(&tiny_vm("c", &["--stopped"]));
    let a = c.ok(&["vm", "show", "a"]);
    let b = c.ok(&["vm", "show", "b"]);
    assert_ne!(a["status"]["host"], b["status"]["host"], "on two hosts");
    let nics = c.ok(&["nic", "list"]);
    let ip_of = |vm: &Value| -> String {
        let nic = nics
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["spec"]["instance"] == vm["metadata"]["id"])
            .expect("the VM's primary NIC");
        nic["status"]["ip"].as_str().unwrap().to_string()
    };
    let (ip_a, ip_b) = (ip_of(&a), ip_of(&b));
    // b's console shows its address.
    let text = eventually("b ready", Duration::from_secs(90), || async {
        let t = console_text(&serial_log(&b));
        t.contains("YUNHAN-READY").then_some(t)
    })
    .await;
    assert_eq!(ready_ip(&text).as_deref(), Some(ip_b.as_str()), "{text}");
    eventually("a ready", Duration::from_secs(90), || async {
        console_text(&serial_log(&a))
            .contains("YUNHAN-READY")
            .then_some(())
    })
    .await;
    // Guest-side ping a → b across the overlay.
    let minute = Duration::from_secs(60);
    let ping = |ip: &str, tag: &str| {
        format!("ping -c 2 -W 2 {ip} >/dev/null 2>&1 && echo PING-{tag}-$((40+2))")
    };
    guest_runs(&a, &ping(&ip_b, "AB"), "PING-AB-42", minute).await;

    // The control plane goes away: guests keep talking, drift is still repaired.
    let a_host = lab_host_of(&c, &lab, &a);
    let a_host_ns = a_host.netns.clone();
    let vm_c = eventually("c bound to a host", Duration::from_secs(30), || async {
        let v = c.ok(&["vm", "show", "c"]);
        v["status"]["host"].is_string().then_some(v)
    })
    .await;
    let c_host = lab_host_of(&c, &lab, &vm_c);
    let vni = c_vni(&c);
    c.server.take().unwrap().kill9();
    let vx = yunhan_net::names::vxlan(vni);
    let del = lab.exec(&a_host_ns, &["ip", "link", "del", &vx]).unwrap();
    assert!(
        del.status.success(),
        "{}",
        String::from_utf8_lossy(&del.stderr)
    );
    eventually(
        "the deleted VXLAN device back",
        Duration::from_secs(20),
        || async {
            lab.exec(&a_host_ns, &["ip", "link", "show", &vx])
                .is_ok_and(|o| o.status.success())
                .then_some(())
        },
    )
    .await;
    guest_runs(&b, &ping(&ip_a, "BA"), "PING-BA-42", minute).await;

    // Back again: a change made now applies. A second subnet and a NIC in it (a namespace
    // guest standing in for stopped VM c) reach b through the router.
    c.start_server_and_wait().await;
    c.ok(&[
        "subnet",
        "create",
        "s2",
        "--vpc",
        "net1",
        "--cidr",
        "10.10.2.0/24",
    ]);
    let n2 = c.ok(&["nic", "create", "n2", "--subnet", "s2", "--vm", "c"]);
    let g = lab.add_nic_guest(&c_host.id, &n2, 1450).unwrap();
    let ip_b: Ipv4Addr = ip_b.parse().unwrap();
    assert!(
        lab.ping_within(&g, ip_b, Duration::from_secs(30)),
        "namespace guest in s2 cannot reach b across subnets"
    );
    let out = lab
        .exec(&g, &["ping", "-n", "-c", "1", "-W", "2", &ip_b.to_string()])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ttl=63"), "one routed hop: {text}");

    // Hot plug through QMP: a NIC in s2 attached to running VM a shows up in the guest as
    // eth1 and reaches n2; moved to b it leaves a and works on b; detached it leaves b.
    let n3 = c.ok(&["nic", "create", "n3", "--subnet", "s2", "--vm", "a"]);
    let (mac3, ip3) = (
        n3["status"]["mac"].as_str().unwrap().to_string(),
        n3["status"]["ip"].as_str().unwrap().to_string(),
    );
    let ip_g = n2["status"]["ip"].as_str().unwrap().to_string();
    let use_eth1 = |tag: &str| {
        format!(
            "grep -q {mac3} /sys/class/net/eth1/address && ip link set eth1 up && \
             ip addr add {ip3}/24 dev eth1 2>/dev/null; \
             ping -c 2 -W 2 -I eth1 {ip_g} >/dev/null 2>&1 && echo HOT-{tag}-$((40+2))"
        )
    };
    let eth1_gone = |tag: &str| format!("[ -e /sys/class/net/eth1 ] || echo GONE-{tag}-$((40+2))");
    guest_runs(&a, &use_eth1("A"), "HOT-A-42", minute).await;
    c.ok(&["nic", "attach", "n3", "--vm", "b"]);
    guest_runs(&a, &eth1_gone("A"), "GONE-A-42", minute).await;
    guest_runs(&b, &use_eth1("B"), "HOT-B-42", minute).await;
    c.ok(&["nic", "detach", "n3"]);
    guest_runs(&b, &eth1_gone("B"), "GONE-B-42", minute).await;
    drop(c);
    drop(etcd);
    drop(lab);
}

/// The lab host a VM runs on (agent `node-N` runs lab host N).
fn lab_host_of<'a>(c: &Cluster, lab: &'a Lab, vm: &Value) -> &'a yunhan_net::lab::LabHost {
    &lab.hosts[c.agent_of(vm["status"]["host"].as_str().unwrap())]
}

fn c_vni(c: &Cluster) -> u32 {
    let v = c.ok(&["vpc", "show", "net1"]);
    v["status"]["vni"].as_u64().unwrap() as u32
}

/// An API error: its HTTP status and its `code`.
type Refusal = (u16, &'static str);
const INVALID: Refusal = (400, "invalid_field");
const NOT_FOUND: Refusal = (404, "not_found");
const CONFLICT: Refusal = (409, "conflict");
const EXHAUSTED: Refusal = (409, "ip_exhausted");

/// Asserts that the answer `(status, body)` is the API error `want`; `why` names the
/// case. Returns the body.
#[track_caller]
fn refused((s, v): (u16, Value), want: Refusal, why: &str) -> Value {
    assert_eq!(
        (s, v["code"].as_str()),
        (want.0, Some(want.1)),
        "{why}: {v}"
    );
    v
}

/// Bad input gets a clear 4xx and leaves nothing behind; another project's ids are 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_network_bad_input_and_other_projects() {
    let cloud = Cloud::up(&[]).await;
    let t = cloud.tenant("netbad", None).await;
    let other = cloud.tenant("netother", None).await;
    let call = |token: &str, m: &'static str, path: String, body: Option<Value>| {
        let token = token.to_string();
        let cloud = &cloud;
        async move { cloud.call(m, &path, Some(&token), body.as_ref()).await }
    };
    let create = |token: &str, plural: &str, name: &str, spec: Value| {
        call(
            token,
            "POST",
            format!("/v1/{plural}"),
            Some(json!({"metadata": {"name": name}, "spec": spec})),
        )
    };
    let tk = t.token.as_str();
    let nic = |name: &str, spec: Value| create(tk, "network-interfaces", name, spec);
    let eip = |name: &str, spec: Value| create(tk, "elastic-ips", name, spec);
    let natgw = |spec: Value| create(tk, "nat-gateways", "gw", spec);
    let created = |(s, v): (u16, Value)| {
        assert_eq!(s, 201, "{v}");
        v
    };
    let vpc = created(create(tk, "vpcs", "net1", json!({"cidr": "10.10.0.0/16"})).await);
    assert!(vpc["status"]["vni"].as_u64().unwrap() > 0);
    let vpc2 = created(create(tk, "vpcs", "net2", json!({"cidr": "10.10.0.0/16"})).await);
    assert_ne!(vpc["status"]["vni"], vpc2["status"]["vni"], "unique VNIs");
    for cidr in ["10.10.0.1/16", "banana"] {
        let answer = create(tk, "vpcs", "bad", json!({ "cidr": cidr })).await;
        refused(answer, INVALID, cidr);
    }
    let subnet = |name: &str, vpc: &str, cidr: &str| {
        create(tk, "subnets", name, json!({"vpc": vpc, "cidr": cidr}))
    };
    let sn = created(subnet("s1", "net1", "10.10.1.0/29").await);
    assert_eq!(sn["status"]["gateway_ip"], "10.10.1.1");
    // The same range in another VPC is fine.
    created(subnet("s1b", "net2", "10.10.1.0/24").await);
    for (name, vpc, cidr, want) in [
        ("ov", "net1", "10.10.1.0/24", CONFLICT),
        ("out", "net1", "10.20.1.0/24", INVALID),
        ("tiny", "net1", "10.10.9.0/30", INVALID),
        ("novpc", "nope", "10.10.9.0/24", NOT_FOUND),
    ] {
        refused(subnet(name, vpc, cidr).await, want, name);
    }
    // IPAM: a /29 has 5 usable addresses (network, gateway, broadcast reserved).
    let outside = nic("fixed", json!({"subnet": "s1", "ip": "10.10.1.9"})).await;
    refused(outside, INVALID, "outside");
    let gateway = nic("gw", json!({"subnet": "s1", "ip": "10.10.1.1"})).await;
    refused(gateway, INVALID, "gateway");
    let mut ips = Vec::new();
    for i in 0..5 {
        let v = created(nic(&format!("n{i}"), json!({"subnet": "s1"})).await);
        assert_eq!(v["status"]["mac"].as_str().unwrap().len(), 17);
        ips.push(v["status"]["ip"].as_str().unwrap().to_string());
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 5, "{ips:?}");
    refused(nic("n5", json!({"subnet": "s1"})).await, EXHAUSTED, "n5");
    let (s, v) = call(tk, "GET", "/v1/network-interfaces/n5".into(), None).await;
    assert_eq!(s, 404, "nothing half-made: {v}");
    // A freed address is usable again; a taken fixed one is a conflict.
    let (s, _) = call(tk, "DELETE", "/v1/network-interfaces/n0".into(), None).await;
    assert_eq!(s, 204);
    let taken = nic("n5", json!({"subnet": "s1", "ip": ips[1]})).await;
    refused(taken, CONFLICT, "a taken address");
    created(nic("n5", json!({"subnet": "s1"})).await);
    // Deleting what is in use.
    for path in ["/v1/vpcs/net1", "/v1/subnets/s1"] {
        refused(call(tk, "DELETE", path.into(), None).await, CONFLICT, path);
    }
    // Security group rules.
    let sg = created(create(tk, "security-groups", "web", json!({"vpc": "net1", "rules": [
        {"direction": "ingress", "protocol": "tcp", "port_from": 80, "port_to": 81, "cidr": "0.0.0.0/0"},
        {"direction": "ingress", "protocol": "icmp", "group": "web"}]})).await);
    assert_eq!(sg["spec"]["rules"][1]["group"], sg["metadata"]["id"]);
    let group = |rules: &Value| {
        create(
            tk,
            "security-groups",
            "bad",
            json!({"vpc": "net1", "rules": rules}),
        )
    };
    for rules in [
        json!([{"direction": "ingress", "protocol": "icmp", "port_from": 1}]),
        json!([{"direction": "ingress", "protocol": "tcp", "port_from": 0}]),
        json!([{"direction": "ingress", "protocol": "tcp", "port_from": 90, "port_to": 80}]),
        json!([{"direction": "sideways", "protocol": "tcp"}]),
        json!([{"direction": "ingress", "protocol": "gre"}]),
    ] {
        let (s, v) = group(&rules).await;
        assert_eq!(s, 400, "{rules}: {v}");
    }
    let unknown = json!([{"direction": "ingress", "protocol": "any", "group": "nope"}]);
    refused(group(&unknown).await, NOT_FOUND, "an unknown group");
    // Elastic IPs: from an admin's external network, bound once.
    let external = |name: &str, spec: Value| {
        let body = json!({"metadata": {"name": name}, "spec": spec});
        let cloud = &cloud;
        async move {
            cloud
                .admin("POST", "/v1/external-networks", Some(&body))
                .await
        }
    };
    let public = json!({"cidr": "203.0.113.0/29", "device": "ext0"});
    created(external("public", public).await);
    let mine = json!({"cidr": "198.51.100.0/24", "device": "ext0"});
    let (s, v) = create(tk, "external-networks", "mine", mine).await;
    assert_eq!(s, 403, "admins only: {v}");
    let overlapping = json!({"cidr": "203.0.113.0/24", "device": "ext0"});
    let answer = external("overlaps", overlapping).await;
    refused(answer, CONFLICT, "overlapping external networks");
    let e1 = created(eip("e1", json!({"nic": "n1", "bandwidth_mbit": 10})).await);
    assert_eq!(e1["status"]["address"], "203.0.113.2");
    let again = eip("e2", json!({"nic": "n1"})).await;
    refused(again, CONFLICT, "NIC already has one");
    created(eip("e2", json!({})).await);
    let mut upd = json!({"spec": e1["spec"].clone()});
    upd["spec"]["nic"] = json!("n2");
    let answer = call(tk, "PUT", "/v1/elastic-ips/e1".into(), Some(upd)).await;
    refused(answer, CONFLICT, "already bound");
    let answer = call(tk, "DELETE", "/v1/network-interfaces/n1".into(), None).await;
    refused(answer, CONFLICT, "EIP bound");
    let (s, v) = eip("e3", json!({"bandwidth_mbit": 0})).await;
    assert_eq!(s, 400, "{v}");
    // NAT gateway and VIP validation.
    let bound = natgw(json!({"vpc": "net1", "elastic_ip": "e1"})).await;
    refused(bound, CONFLICT, "bound EIP");
    let outside = natgw(json!({"vpc": "net1", "elastic_ip": "e2",
        "dnat": [{"protocol": "tcp", "port": 8080, "to_ip": "192.168.1.1", "to_port": 80}]}));
    refused(outside.await, INVALID, "outside the VPC");
    created(
        natgw(json!({"vpc": "net1", "elastic_ip": "e2", "subnets": ["s1"],
        "dnat": [{"protocol": "tcp", "port": 8080, "to_ip": ips[2], "to_port": 80}]}))
        .await,
    );
    // A forward to a port that is already forwarded.
    let twice = json!({"spec": {"vpc": "net1", "elastic_ip": "e2", "subnets": ["s1"], "dnat": [
        {"protocol": "tcp", "port": 8080, "to_ip": ips[2], "to_port": 80},
        {"protocol": "tcp", "port": 8080, "to_ip": ips[2], "to_port": 81}]}});
    let answer = call(tk, "PUT", "/v1/nat-gateways/gw".into(), Some(twice)).await;
    let v = refused(answer, INVALID, "a port forwarded twice");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("port 8080 is forwarded twice"),
        "{v}"
    );
    // A second gateway for the VPC, on another elastic IP: refused, and that one stays free.
    created(eip("e4", json!({})).await);
    let second = json!({"vpc": "net1", "elastic_ip": "e4"});
    let second = create(tk, "nat-gateways", "gw2", second).await;
    let v = refused(second, CONFLICT, "one NAT gateway per VPC");
    assert!(v["message"].as_str().unwrap().contains("\"gw\""), "{v}");
    let (s, v) = call(tk, "GET", "/v1/nat-gateways".into(), None).await;
    assert_eq!(
        (s, v["items"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{v}"
    );
    // The /29 has 5 addresses for elastic IPs (the gateway .1 is not one): exhausted now?
    created(eip("e5", json!({})).await);
    created(eip("e6", json!({})).await);
    let answer = eip("e7", json!({})).await;
    refused(
        answer,
        EXHAUSTED,
        "the external network is out of addresses",
    );
    // A network handing out only a range: addresses come from it, others are refused.
    let range = "198.51.100.10-198.51.100.11";
    let ranged = json!({"cidr": "198.51.100.0/24", "device": "ext0", "pool": range});
    created(external("ranged", ranged).await);
    let r1 = created(eip("r1", json!({"network": "ranged"})).await);
    assert_eq!(r1["status"]["address"], "198.51.100.10", "{r1}");
    let elsewhere = json!({"network": "ranged", "address": "198.51.100.50"});
    let (s, v) = eip("r2", elsewhere).await;
    assert_eq!(
        (s, v["details"]["field"].as_str()),
        (400, Some("spec.address")),
        "{v}"
    );
    let r2 = created(eip("r2", json!({"network": "ranged"})).await);
    assert_eq!(r2["status"]["address"], "198.51.100.11", "{r2}");
    let r3 = eip("r3", json!({"network": "ranged"})).await;
    refused(r3, EXHAUSTED, "r3");
    for r in ["r1", "r2"] {
        let (s, v) = call(tk, "DELETE", format!("/v1/elastic-ips/{r}"), None).await;
        assert_eq!(s, 204, "{v}");
    }
    let vip = create(
        tk,
        "vips",
        "vip1",
        json!({"subnet": "s1", "nics": ["n1", "n2"]}),
    );
    refused(vip.await, EXHAUSTED, "the /29 is full");
    // Another project sees none of it, by name or by id.
    let ok = other.token.as_str();
    let id = |v: &Value| v["metadata"]["id"].as_str().unwrap().to_string();
    for path in [
        format!("/v1/vpcs/{}", id(&vpc)),
        format!("/v1/subnets/{}", id(&sn)),
        format!("/v1/security-groups/{}", id(&sg)),
        format!("/v1/elastic-ips/{}", id(&e1)),
    ] {
        let (s, v) = call(ok, "GET", path.clone(), None).await;
        assert_eq!(s, 404, "{path}: {v}");
        let (s, _) = call(ok, "DELETE", path.clone(), None).await;
        assert_eq!(s, 404, "{path}");
    }
    let steal = json!({"vpc": vpc["metadata"]["id"], "cidr": "10.10.5.0/24"});
    let answer = create(ok, "subnets", "steal", steal).await;
    refused(answer, NOT_FOUND, "a subnet");
    let steal = json!({"subnet": sn["metadata"]["id"]});
    let answer = create(ok, "network-interfaces", "steal", steal).await;
    refused(answer, NOT_FOUND, "a NIC");
    let (s, v) = call(ok, "GET", "/v1/vpcs".into(), None).await;
    assert_eq!(
        (s, v["items"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
    // The CLI shows the same objects as tables.
    let out = cloud.cli(&["vpc", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Issue #12: binding an elastic IP. Another project's NIC is `not_found`; an elastic IP
/// bound elsewhere is a 409 naming the current binding; binding to the NIC it is already
/// bound to (by name) is a no-op; a refused bind changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_network_eip_binding_rules() {
    let cloud = Cloud::up(&[]).await;
    let t = cloud.tenant("eipbind", None).await;
    let other = cloud.tenant("eipother", None).await;
    let (s, v) = cloud
        .admin(
            "POST",
            "/v1/external-networks",
            Some(&json!({"metadata": {"name": "ext"}, "spec": {"cidr": "198.51.100.0/24", "device": "ext0"}})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    for (tk, vpc) in [(&t.token, "10.10.0.0/16"), (&other.token, "10.20.0.0/16")] {
        cloud.create(tk, "vpcs", "net", json!({"cidr": vpc})).await;
        let cidr = vpc.replace(".0.0/16", ".1.0/24");
        cloud
            .create(tk, "subnets", "sn", json!({"vpc": "net", "cidr": cidr}))
            .await;
    }
    let tk = t.token.as_str();
    cloud
        .create(tk, "network-interfaces", "a-nic0", json!({"subnet": "sn"}))
        .await;
    cloud
        .create(tk, "network-interfaces", "a-nic1", json!({"subnet": "sn"}))
        .await;
    let theirs = cloud
        .create(
            &other.token,
            "network-interfaces",
            "b-nic0",
            json!({"subnet": "sn"}),
        )
        .await;
    let e1 = cloud.create(tk, "elastic-ips", "e1", json!({})).await;
    let put = |nic: &Value| {
        let mut spec = e1["spec"].clone();
        spec["nic"] = nic.clone();
        let cloud = &cloud;
        async move {
            let body = json!({"spec": spec});
            cloud
                .call("PUT", "/v1/elastic-ips/e1", Some(tk), Some(&body))
                .await
        }
    };
    let (s, v) = put(&theirs["metadata"]["id"]).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = put(&json!("a-nic0")).await;
    assert_eq!(s, 200, "{v}");
    let bound = v["spec"]["nic"].clone();
    let (s, v) = put(&json!("a-nic0")).await;
    assert_eq!((s, &v["spec"]["nic"]), (200, &bound), "same NIC again: {v}");
    let (s, v) = put(&json!("a-nic1")).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("\"a-nic0\""),
        "names the current binding: {v}"
    );
    let (_, now) = cloud
        .call("GET", "/v1/elastic-ips/e1", Some(tk), None)
        .await;
    assert_eq!(now["spec"]["nic"], bound, "nothing half-made: {now}");
    assert_eq!(now["status"]["phase"], "Ready", "{now}");
}
