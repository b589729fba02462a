//! Object storage's address inside VPCs, for real (root; iproute2, nftables, curl): the
//! network reconciler realises a compiled plan in a lab host namespace (`--netns`), two
//! VPCs with the same CIDR have a namespace guest each, and a tiny HTTP server on
//! loopback in the test's own namespace stands for the S3 gateway. Guests reach it at
//! 100.100.100.100:80 through their VPC's router namespace; the listener goes with the
//! VPC's last port on the host.
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use yunhan_agent::network::{NetAgent, NetworkConfig};
use yunhan_model::network::PLAN_PREFIX;
use yunhan_net::compile::compile_host;
use yunhan_net::lab::{fixtures, Lab};
use yunhan_net::model::NetworkModel;
use yunhan_store::objects::{Objects, S3_ENDPOINT_KEY};
use yunhan_store::reconcile::run_reconciler;
use yunhan_store::{MemStore, StoreExt};

const HOST: &str = "host-a";
const BODY: &str = "yunhan object storage says hello";
const DEADLINE: Duration = Duration::from_secs(20);

/// Answers every connection with one fixed HTTP response; its port on 127.0.0.1.
async fn gateway() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

/// `curl http://100.100.100.100/` from a guest: its exit code and body.
async fn curl(lab: &Arc<Lab>, guest: &str) -> (i32, String) {
    let (lab, guest) = (lab.clone(), guest.to_string());
    let argv = ["curl", "-s", "-m", "2", "http://100.100.100.100/"];
    let out = tokio::task::spawn_blocking(move || lab.exec(&guest, &argv).expect("curl"))
        .await
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls curl from `guest` until `ok` holds for its answer, or panics after [`DEADLINE`].
async fn curl_until(lab: &Arc<Lab>, guest: &str, what: &str, ok: impl Fn(i32, &str) -> bool) {
    let end = Instant::now() + DEADLINE;
    loop {
        let (code, body) = curl(lab, guest).await;
        if ok(code, &body) {
            return;
        }
        assert!(
            Instant::now() < end,
            "{guest}: {what}: curl exit {code}, body {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn until(what: &str, ok: impl Fn() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn put_plan(objects: &Objects, m: &NetworkModel) {
    let plan = compile_host(m, HOST).expect("compile");
    let body = serde_json::to_vec(&plan).unwrap();
    let key = format!("{PLAN_PREFIX}{HOST}");
    objects.store().put(&key, body).await.unwrap();
}

/// Whether a socket listens on 100.100.100.100:80 in the namespace `ns` refers to (read
/// from `/proc/thread-self/net/tcp` by a thread inside it).
fn listening_in(ns: &OwnedFd) -> bool {
    let ns = ns.try_clone().unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut tcp = String::new();
        std::fs::File::open("/proc/thread-self/net/tcp")
            .and_then(|mut f| f.read_to_string(&mut tcp))
            .unwrap();
        // local address 100.100.100.100:80 (little-endian hex), state 0A = LISTEN.
        tcp.lines()
            .any(|l| l.contains(" 64646464:0050 ") && l.split_whitespace().nth(3) == Some("0A"))
    })
    .join()
    .unwrap()
}

fn sh(argv: &[&str]) {
    let st = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .status();
    assert!(st.is_ok_and(|s| s.success()), "{argv:?}");
}

fn open_ns(name: &str) -> OwnedFd {
    std::fs::File::open(format!("/run/netns/{name}"))
        .expect("router namespace")
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_s3_address_in_every_vpc_router() {
    let lab = Arc::new(Lab::new("s3", &[(HOST, Ipv4Addr::new(192, 0, 2, 10))], 1500).unwrap());
    let host_ns = lab.host(HOST).netns.clone();
    let mut m = fixtures::two_host_model();
    let plan = compile_host(&m, HOST).expect("compile");
    // pa1 in vpc-a and pb1 in vpc-b: both 10.0.1.10, gateway 10.0.1.1.
    for port in &plan.ports {
        lab.add_guest(HOST, port, plan.mtu).expect("guest");
    }
    let (ga, gb) = (lab.guest_ns("pa1"), lab.guest_ns("pb1"));
    let router = |vpc: &str| {
        let v = plan.vpcs.iter().find(|v| v.vpc == vpc).unwrap();
        format!("{host_ns}-{}", v.router.netns)
    };
    let (ra, rb) = (router("vpc-a"), router("vpc-b"));

    let objects = Objects::new(Arc::new(MemStore::new()));
    put_plan(&objects, &m).await;
    let state = tempfile::tempdir().unwrap();
    let cfg = NetworkConfig {
        netns: Some(host_ns.clone()),
        vtep: None,
        resync: Duration::from_millis(500),
    };
    let net = Arc::new(NetAgent::new(HOST.into(), state.path(), cfg));
    let (stop, shutdown) = watch::channel(false);
    let reconciler = tokio::spawn(run_reconciler(
        net.clone(),
        objects.clone(),
        shutdown.clone(),
    ));
    let service = tokio::spawn(
        net.clone()
            .serve_object_storage(objects.clone(), shutdown.clone()),
    );
    let t0 = Instant::now();
    until("listeners in both routers", || {
        net.object_storage_namespaces() == [ra.clone(), rb.clone()].into()
    })
    .await;
    eprintln!("listening in both routers after {:?}", t0.elapsed());

    // Object storage off (no key): accepted and closed at once (curl: empty reply, 52).
    curl_until(&lab, &ga, "closed while off", |c, _| c == 52).await;

    let gw = gateway().await;
    let url = format!("http://127.0.0.1:{gw}");
    objects
        .store()
        .put(S3_ENDPOINT_KEY, url.into())
        .await
        .unwrap();
    let t0 = Instant::now();
    for g in [&ga, &gb] {
        curl_until(&lab, g, "the gateway's body", |c, b| c == 0 && b == BODY).await;
    }
    eprintln!("both guests served {:?} after the key", t0.elapsed());

    // The address removed by hand comes back; the listener still serves on it.
    sh(&[
        "ip",
        "-n",
        &ra,
        "addr",
        "del",
        "100.100.100.100/32",
        "dev",
        "lo",
    ]);
    let t0 = Instant::now();
    curl_until(&lab, &ga, "served again", |c, b| c == 0 && b == BODY).await;
    eprintln!("address repaired in {:?}", t0.elapsed());

    // vpc-a's router namespace deleted by hand: the realiser makes it again, and the
    // listener moves into the new one (the old one lived on only through its socket).
    let fa_old = open_ns(&ra);
    sh(&["ip", "netns", "del", &ra]);
    let t0 = Instant::now();
    until("no socket left in vpc-a's old router", || {
        !listening_in(&fa_old)
    })
    .await;
    drop(fa_old);
    curl_until(&lab, &ga, "served from the new namespace", |c, b| {
        c == 0 && b == BODY
    })
    .await;
    assert!(listening_in(&open_ns(&ra)));
    eprintln!("router namespace remade and served in {:?}", t0.elapsed());

    // vpc-b's only port leaves the host: its router goes, and the listener with it.
    let (fa, fb) = (open_ns(&ra), open_ns(&rb));
    assert!(listening_in(&fa) && listening_in(&fb));
    m.ports.retain(|p| p.id != "pb1");
    put_plan(&objects, &m).await;
    let t0 = Instant::now();
    until("vpc-b's listener stopped", || {
        net.object_storage_namespaces() == [ra.clone()].into()
    })
    .await;
    eprintln!("vpc-b's listener stopped {:?} after the plan", t0.elapsed());
    assert!(!std::path::Path::new("/run/netns").join(&rb).exists());
    until("no socket left in vpc-b's old router", || {
        !listening_in(&fb)
    })
    .await;
    assert!(listening_in(&fa));
    let (code, _) = curl(&lab, &gb).await;
    assert_ne!(
        code, 0,
        "pb1 reached object storage without its VPC's router"
    );
    curl_until(&lab, &ga, "vpc-a still served", |c, b| c == 0 && b == BODY).await;

    stop.send(true).unwrap();
    reconciler.await.unwrap();
    service.await.unwrap();
    assert!(net.object_storage_namespaces().is_empty());
    until("the listener closed on shutdown", || !listening_in(&fa)).await;
}
