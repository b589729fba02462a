//! One load balancer on two hosts at once (issue #16's ECMP, `lb create --replicas 2
//! --external`), through the real binary on the two-host lab (etcd, two agents, an
//! external network with an "outside" namespace). Host 1 is drained first, so the client
//! VM and both members run on host 2, and only a replica is on host 1.
//! The client VM opens 12 long TCP connections to the virtual address, and the outside
//! 12 more to the elastic IP, each sending a numbered line every second. The VPC's
//! routers spread both sets over both replicas (the outside's through the first replica's
//! host, where the elastic IP is answered), and each connection's lines reach one member
//! only. Then host 1 is lost (its agent killed, its underlay and external legs cut). Its replica moves,
//! address and MAC, to host 2 (and the elastic IP with it if it was answered there), and
//! every connection goes on: each keeps sending to the same member. So the same 5-tuple
//! reached the same member through either replica.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{console_text, eventually, guest_runs, serial_log, words};
use serde_json::Value;

/// How many long connections the client VM opens (flows 1 to 12), and the outside
/// (flows 13 to 24).
const INSIDE: usize = 12;
const FLOWS: usize = 2 * INSIDE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_load_balancer_replicas_spread_flows_and_survive_a_host() {
    let lab = common::two_host_lab("lbr");
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let outside = lab
        .add_external(
            "203.0.113.0/24".parse().unwrap(),
            ip("203.0.113.1"),
            &[ip("203.0.113.201"), ip("203.0.113.202")],
        )
        .unwrap();
    let (_etcd, mut c) = common::lab_cloud(&lab).await;
    let ok = |c: &common::Cluster, line: &str| c.ok(&words(line));
    c.ok(&common::strs(&common::kernel_image_args("tiny")));
    ok(
        &c,
        "external-network create ext --cidr 203.0.113.0/24 --gateway 203.0.113.1 --device ext0",
    );
    let hosts = ok(&c, "host list");
    let lost_host = (hosts.as_array().unwrap().iter())
        .find(|h| h["metadata"]["name"] == "node-1")
        .map(|h| h["metadata"]["id"].as_str().unwrap().to_string())
        .expect("node-1");
    let lost = c.agent_of(&lost_host);
    ok(&c, &format!("host drain {lost_host}"));
    c.vpc_open_on_9000();
    let mut vms = BTreeMap::new();
    for vm in ["m1", "m2", "c1"] {
        let line = format!("vm create {vm} --image tiny --flavor tiny --subnet s1 --security-group open --wait --timeout 120s");
        let v = ok(&c, &line);
        assert_ne!(
            v["status"]["host"],
            lost_host.as_str(),
            "{vm} on the drained host"
        );
        vms.insert(vm, v);
    }
    let lb = ok(
        &c,
        "lb create lb1 --subnet s1 --replicas 2 --external --wait",
    );
    let replicas = lb["status"]["replicas"].as_array().unwrap().clone();
    let on: Vec<&str> = replicas
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(on.len(), 2);
    assert_ne!(on[0], on[1], "replicas on distinct hosts: {on:?}");
    let gone = on.iter().position(|h| *h == lost_host).unwrap();
    let vip = lb["status"]["address"].as_str().unwrap().to_string();
    let eip = ip(lb["status"]["external_address"].as_str().unwrap());
    let eip_id = lb["status"]["elastic_ip"].as_str().unwrap().to_string();
    // The elastic IP is answered on the first replica's host (an elastic IP names its
    // host, a replica gives its id).
    let name_of: BTreeMap<String, Value> = (hosts.as_array().unwrap().iter())
        .map(|h| {
            (
                h["metadata"]["id"].as_str().unwrap().to_string(),
                h["metadata"]["name"].clone(),
            )
        })
        .collect();
    let answering = |c: &common::Cluster| {
        let lb = ok(c, "lb show lb1");
        let first = lb["status"]["replicas"][0]["host"]
            .as_str()
            .map(|h| name_of[h].clone());
        let host = ok(c, &format!("eip show {eip_id}"))["status"]["host"].clone();
        async move { (Some(&host) == first.as_ref()).then_some(host) }
    };
    let answered_before = eventually(
        "the elastic IP on replica 1's host",
        Duration::from_secs(60),
        || answering(&c),
    )
    .await;

    let minute = Duration::from_secs(60);
    for vm in vms.values() {
        eventually("the guest booted", Duration::from_secs(180), || async {
            (console_text(&serial_log(vm)).contains("YUNHAN-READY")).then_some(())
        })
        .await;
    }
    // Each member appends whatever each connection sends to one file.
    let serve = "[ -e /tmp/sink ] || { printf '#!/bin/sh\\ncat >> /tmp/got9\\n' > /tmp/sink; \
                 chmod +x /tmp/sink; (nc -ll -p 9000 -e /tmp/sink &) ; } ; echo NC-$((40+2))";
    for m in ["m1", "m2"] {
        guest_runs(&vms[m], serve, "NC-42", minute).await;
    }
    ok(
        &c,
        "lb listener add lb1 --name long --protocol tcp --port 9000",
    );
    for m in ["m1", "m2"] {
        ok(
            &c,
            &format!("lb member add lb1 --listener long --vm {m} --port 9000"),
        );
    }
    eventually("the listener served by each replica", minute, || {
        let lb = ok(&c, "lb show lb1");
        async move { (lb["status"]["phase"] == "Active" && listed(&lb)).then_some(()) }
    })
    .await;
    // Connection K sends `cK-1`, `cK-2`, … one a second (started once: the console may
    // take the command twice).
    let open = format!(
        "[ -e /tmp/open ] || {{ touch /tmp/open; for k in $(seq {FLOWS}); do \
         ( (i=0; while :; do i=$((i+1)); echo c$k-$i; sleep 1; done) | nc {vip} 9000 & ) ; \
         done ; }} ; echo OPEN-$((40+2))",
        FLOWS = INSIDE
    );
    guest_runs(&vms["c1"], &open, "OPEN-42", minute).await;
    let inside = counted(&c, INSIDE).await;
    assert!(
        inside.iter().all(|n| *n > 0),
        "the router spreads the client VM's flows over both replicas: {inside:?}"
    );
    let _outside = OutsideFlows::open(&outside, eip, INSIDE + 1..=FLOWS).await;
    let through = counted(&c, FLOWS).await;
    let from_outside: Vec<u64> = through.iter().zip(&inside).map(|(a, b)| a - b).collect();
    assert!(
        from_outside.iter().all(|n| *n > 0),
        "the elastic IP's host spreads the outside's flows over both replicas: {from_outside:?}"
    );
    let mut round = 0;
    let before = lines_per_flow(&vms, &mut round, |n| n.values().all(|k| *k >= 3)).await;
    // Metrics: the elastic IP's traffic summed over both replicas' hosts, the load
    // balancer's from the first replica's host (which reports the sums).
    let replica_hosts = replicas
        .iter()
        .map(|r| name_of[r["host"].as_str().unwrap()].clone());
    let mut both: Vec<String> = replica_hosts
        .map(|h| h.as_str().unwrap().to_string())
        .collect();
    both.sort();
    let (eip_metrics, lb_metrics) = (
        format!("eip metrics {eip_id} --since 10m"),
        "lb metrics lb1 --since 10m",
    );
    eventually("metrics of the elastic IP over both hosts", minute, || {
        let (e, l) = (ok(&c, &eip_metrics), ok(&c, lb_metrics));
        let both = both.join(",");
        let lb_ok =
            l["host"] == answered_before && l["series"].as_array().is_some_and(|s| !s.is_empty());
        async move {
            let rx = (e["series"].as_array()?.iter())
                .find(|s| s["name"] == "rx_bytes_per_second")?["points"]
                .as_array()?
                .iter()
                .any(|p| p[1].as_f64() > Some(0.0));
            (e["host"] == both.as_str() && rx && lb_ok).then_some(())
        }
    })
    .await;

    let t0 = Instant::now();
    c.cut_host(&lab, lost);
    eventually("the lost host's replica moved and active", minute, || {
        let lb = ok(&c, "lb show lb1");
        let lost_host = lost_host.clone();
        async move {
            let r = &lb["status"]["replicas"][gone];
            (r["host"] != lost_host.as_str() && r["phase"] == "Active").then_some(())
        }
    })
    .await;
    let moved = t0.elapsed();
    let answered_after = eventually("the elastic IP on replica 1's host", minute, || {
        answering(&c)
    })
    .await;
    let at_move = lines_per_flow(&vms, &mut round, |_| true).await;
    let after = lines_per_flow(&vms, &mut round, |n| {
        n.iter()
            .all(|(k, got)| *got >= at_move.get(k).map_or(0, |x| x.1) + 3)
    })
    .await;
    for (k, (member, _)) in &before {
        assert_eq!(after[k].0, *member, "flow {k} stays on its member");
    }
    eprintln!(
        "replicas: {inside:?} inside and {from_outside:?} outside flows per replica; the \
         elastic IP answered on {answered_before} then {answered_after}; the lost host's \
         replica active elsewhere \
         {:.1} s after the loss; every flow carried data again within {:.1} s",
        moved.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

/// Each replica's balanced connections, once they add up to `flows`.
async fn counted(c: &common::Cluster, flows: usize) -> Vec<u64> {
    eventually("every flow counted", Duration::from_secs(60), || {
        let lb = c.ok(&["lb", "show", "lb1"]);
        async move {
            let per = connections(&lb);
            (per.iter().sum::<u64>() >= flows as u64).then_some(per)
        }
    })
    .await
}

/// Long connections from the outside namespace to the elastic IP: flow K sends `cK-1`,
/// `cK-2`, … one a second (from a thread of its own) until dropped.
struct OutsideFlows {
    stop: Arc<AtomicBool>,
}

impl OutsideFlows {
    /// Connects once the elastic IP answers (a first connection that succeeds, then
    /// closed, shows it does), then starts the flows.
    async fn open(ns: &str, eip: Ipv4Addr, flows: std::ops::RangeInclusive<usize>) -> Self {
        let connect = |ns: &str| {
            yunhan_net::lab::Lab::in_netns(ns, move || {
                TcpStream::connect_timeout(&(eip, 9000).into(), Duration::from_secs(2))
            })
            .expect("the outside namespace")
        };
        eventually("the elastic IP answers", Duration::from_secs(60), || {
            let up = connect(ns).is_ok();
            async move { up.then_some(()) }
        })
        .await;
        let stop = Arc::new(AtomicBool::new(false));
        for k in flows {
            let mut conn = connect(ns).unwrap_or_else(|e| panic!("outside flow {k}: {e}"));
            let stop = stop.clone();
            std::thread::spawn(move || {
                for i in 1.. {
                    if stop.load(Ordering::Relaxed) || writeln!(conn, "c{k}-{i}").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
        }
        OutsideFlows { stop }
    }
}

impl Drop for OutsideFlows {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Whether every replica's Vortex serves the listener with its two members up.
fn listed(lb: &Value) -> bool {
    let replicas = lb["status"]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    replicas.iter().all(|r| {
        let l = &r["listeners"][0];
        let members = l["members"].as_array().cloned().unwrap_or_default();
        l["engine"] == "vortex-tc"
            && members.len() == 2
            && members.iter().all(|m| m["health"] == "up")
    })
}

/// Each replica's balanced connections.
fn connections(lb: &Value) -> Vec<u64> {
    let replicas = lb["status"]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (replicas.iter())
        .map(|r| {
            let ls = r["listeners"].as_array().cloned().unwrap_or_default();
            ls.iter()
                .map(|l| l["connections"].as_u64().unwrap_or(0))
                .sum()
        })
        .collect()
}

/// Flow K → (the member its lines reach, how many), read from both members until `done`
/// holds of the counts; no flow may reach both members.
async fn lines_per_flow(
    vms: &BTreeMap<&str, Value>,
    round: &mut u32,
    done: impl Fn(&BTreeMap<usize, usize>) -> bool,
) -> BTreeMap<usize, (String, usize)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut per: BTreeMap<usize, (String, usize)> = BTreeMap::new();
        for m in ["m1", "m2"] {
            for (k, n) in counts(&vms[m], round).await {
                if n == 0 {
                    continue;
                }
                if let Some((other, _)) = per.insert(k, (m.to_string(), n)) {
                    panic!("flow {k} reached {other} and {m}");
                }
            }
        }
        let counts: BTreeMap<usize, usize> = per.iter().map(|(k, v)| (*k, v.1)).collect();
        if counts.len() == FLOWS && done(&counts) {
            return per;
        }
        if Instant::now() > deadline {
            for (name, vm) in vms {
                let text = console_text(&serial_log(vm));
                let tail = &text[text.len().saturating_sub(3000)..];
                eprintln!("--- console of {name} ---\n{tail}");
            }
            panic!("flows never got there: {per:?}");
        }
    }
}

/// How many lines of each flow member `vm` got so far (its console, round `round`).
async fn counts(vm: &Value, round: &mut u32) -> BTreeMap<usize, usize> {
    *round += 1;
    let r = *round;
    let cmd = format!(
        "echo CNT-$(({r}+1000)) $(for k in $(seq {FLOWS}); do printf '%s:%s,' $k \
         $(grep -c \"^c$k-\" /tmp/got9 2>/dev/null); done) TNC"
    );
    let marker = format!("CNT-{} ", r + 1000);
    guest_runs(vm, &cmd, &marker, Duration::from_secs(60)).await;
    let text = eventually("the counts line", Duration::from_secs(30), || {
        let text = console_text(&serial_log(vm));
        let line = (text.lines())
            .find(|l| l.contains(&marker) && l.contains("TNC"))
            .map(str::to_string);
        async move { line }
    })
    .await;
    let body = text.split(&marker).nth(1).unwrap_or_default();
    (body.split(',').filter_map(|kv| {
        let (k, n) = kv.trim().split_once(':')?;
        Some((k.parse().ok()?, n.trim().parse().ok()?))
    }))
    .collect()
}
