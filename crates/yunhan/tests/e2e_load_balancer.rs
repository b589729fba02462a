//! Load balancers through the real binary (issue #16): on one box (`yunhan up --netns`
//! with its default external network), two guests serve HTTP answering with their own
//! names; the issue's contract makes an external HTTP load balancer in front of them. From
//! the host's shell, requests to its elastic IP reach both; one guest's server stopped, it
//! is marked down within rise × interval + 1 s and no request fails after that; started
//! again, it is back in. A TCP listener (layer 4) forwards too; an HTTPS listener
//! terminates TLS with an uploaded certificate that `curl --cacert` verifies. Inside, a VM of the VPC
//! reaches the virtual address and a VM of another VPC does not.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::onebox::{
    http_get, http_request, ready_guest, running_vm, serve_http, vpc_with_open_group, within,
    OneBox, PUBLIC_CIDR,
};
use common::{console_text, eventually, guest_runs, serial_log, words, Cloud};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_external_http_load_balancer_on_one_box() {
    let onebox = OneBox::new();
    let cloud = Cloud::up(&["--netns", &onebox.host, "--public-cidr", PUBLIC_CIDR]).await;
    let ok = |line: &str| cloud.ok(&words(line));
    vpc_with_open_group(&cloud, &[("icmp", None), ("tcp", Some("80"))]);
    let mut guests = Vec::new();
    for vm in ["w1", "w2"] {
        running_vm(&cloud, vm, &["--security-group", "open"]);
    }
    for vm in ["w1", "w2"] {
        let g = ready_guest(&cloud, vm).await;
        serve_http(&g, vm, 1).await;
        guests.push(g);
    }

    // The issue's contract.
    let lb = ok("lb create lb1 --subnet s1 --external --wait");
    assert_eq!(lb["status"]["phase"], "Active", "{lb}");
    ok("lb listener add lb1 --name http --protocol http --port 80");
    ok("lb member add lb1 --listener http --vm w1 --port 80");
    ok("lb member add lb1 --listener http --vm w2 --port 80");
    ok("lb health set lb1 --listener http --type http --path / --interval 2s --fall 2 --rise 2");
    let shown = ok("lb show lb1");
    let addr = shown["status"]["external_address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        shown["status"]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.10.1.")),
        "{shown}"
    );
    let both_up = health_is(
        &cloud,
        &[("w1", "up"), ("w2", "up")],
        Duration::from_secs(60),
    )
    .await;
    assert!(both_up.is_some(), "members never up: {}", ok("lb show lb1"));

    // 100 requests from the host reach both.
    assert!(
        within(Duration::from_secs(30), || onebox
            .routed_by_the_platform(&addr))
        .is_some(),
        "{addr} is not routed to the platform: {}",
        onebox.diagnose(&addr)
    );
    let first = within(Duration::from_secs(30), || {
        !http_get(&onebox.host, &addr, 80).is_empty()
    });
    assert!(
        first.is_some(),
        "{addr}:80 never answered; {}",
        ok("lb show lb1")
    );
    let seen = spread(&onebox.host, &addr, 80, 100);
    assert_eq!(seen.get("failed"), None, "{seen:?}");
    assert!(
        seen.get("w1") > Some(&10) && seen.get("w2") > Some(&10),
        "{seen:?}"
    );

    // w1's server stops: down within rise/fall × interval + 1 s, and then no request fails.
    let t0 = Instant::now();
    guest_runs(
        &guests[0],
        "kill $(pidof httpd) && echo STOPPED-$((40+2))",
        "STOPPED-42",
        Duration::from_secs(60),
    )
    .await;
    let down = health_is(
        &cloud,
        &[("w1", "down"), ("w2", "up")],
        Duration::from_secs(30),
    )
    .await;
    let took = down.unwrap_or_else(|| panic!("w1 never down: {}", ok("lb show lb1")));
    eprintln!(
        "w1 marked down {took:?} after its server stopped ({:?} with typing)",
        t0.elapsed()
    );
    assert!(
        took <= Duration::from_secs(5),
        "down after {took:?} (limit 2 × 2 s + 1 s)"
    );
    let seen = spread(&onebox.host, &addr, 80, 30);
    assert_eq!(
        seen,
        BTreeMap::from([("w2".to_string(), 30)]),
        "only w2, nothing failed"
    );

    // Started again, it is back in.
    serve_http(&guests[0], "w1", 2).await;
    let up = health_is(
        &cloud,
        &[("w1", "up"), ("w2", "up")],
        Duration::from_secs(30),
    )
    .await;
    assert!(up.is_some(), "w1 never back: {}", ok("lb show lb1"));
    let seen = spread(&onebox.host, &addr, 80, 40);
    assert!(
        seen.get("w1") > Some(&5) && !seen.contains_key("failed"),
        "{seen:?}"
    );
    expected_codes(&cloud).await;

    // Layer 4.
    ok("lb listener add lb1 --name tcp --protocol tcp --port 8080");
    ok("lb member add lb1 --listener tcp --vm w2 --port 80");
    let l4 = within(Duration::from_secs(30), || {
        http_get(&onebox.host, &addr, 8080).contains("w2")
    });
    assert!(
        l4.is_some(),
        "{addr}:8080 never reached w2: {}",
        ok("lb show lb1")
    );
    let listeners = ok("lb show lb1")["status"]["listeners"].clone();
    let named = |name: &str| {
        let all = listeners.as_array().unwrap().iter();
        all.clone().find(|l| l["name"] == name).unwrap().clone()
    };
    assert!(
        named("http")["connections"].as_u64() >= Some(170),
        "{listeners}"
    );
    // Layer 4 is Vortex's: its tc program translates both ways, and counts both ways.
    assert_eq!(named("tcp")["engine"], "vortex-tc", "{listeners}");
    let counted = eventually("the layer-4 flow counted", Duration::from_secs(10), || {
        let tcp = listener_now(&cloud, "tcp");
        async move {
            let tcp = tcp?;
            let bytes = |k: &str| tcp[k].as_u64().filter(|b| *b > 0);
            (tcp["connections"].as_u64()? >= 1
                && bytes("bytes_in").and(bytes("bytes_out")).is_some())
            .then_some(())
        }
    });
    counted.await;

    https(&cloud, &onebox, &addr);
    udp(&cloud, &onebox, &addr).await;
    rules_and_cookies(&cloud, &onebox, &addr, &guests[1]).await;
    sticky_and_drain(&cloud, &onebox, &addr, &guests).await;
    idle_timeout(&cloud, &onebox, &addr).await;

    // Inside: a VM of the VPC reaches the virtual address; one of another VPC does not.
    let vip = shown["status"]["address"].as_str().unwrap();
    let fetch = |tag: &str| {
        format!("wget -q -T 3 -O - http://{vip}/ | grep -q w && echo {tag}-$((40+2)) || echo NO-{tag}-$((40+2))")
    };
    guest_runs(
        &guests[1],
        &fetch("INSIDE"),
        "INSIDE-42",
        Duration::from_secs(60),
    )
    .await;
    ok("vpc create net2 --cidr 10.20.0.0/16");
    ok("subnet create s2 --vpc net2 --cidr 10.20.1.0/24");
    ok("vm create x --image tiny --flavor tiny --subnet s2 --wait --timeout 120s");
    let x = ready_guest(&cloud, "x").await;
    guest_runs(&x, &fetch("OTHER"), "NO-OTHER-42", Duration::from_secs(60)).await;
    assert!(
        !console_text(&serial_log(&x)).contains("\nOTHER-42"),
        "another VPC reached it"
    );
}

/// UDP (Vortex too): a datagram to the elastic IP reaches w2, where nothing listens on
/// the port, so w2's kernel answers "port unreachable"; Vortex translates the error back
/// to the sender (its `nat_icmp` counter), so the error came from behind the load balancer,
/// not from its own namespace (where nothing listens either).
async fn udp(cloud: &Cloud, onebox: &OneBox, addr: &str) {
    let ok = |line: &str| cloud.ok(&words(line));
    ok("sg rule add open --protocol udp --port 5353 --cidr 10.10.0.0/16");
    ok("lb listener add lb1 --name dns --protocol udp --port 5353");
    ok("lb member add lb1 --listener dns --vm w2 --port 5353");
    let sa = std::net::SocketAddr::from((addr.parse::<std::net::Ipv4Addr>().unwrap(), 5353));
    let refused = || {
        let r = yunhan_net::lab::Lab::in_netns(&onebox.host, move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
            s.connect(sa)?;
            s.set_read_timeout(Some(Duration::from_millis(500)))?;
            s.send(b"ping")?;
            s.recv(&mut [0u8; 16])
        });
        matches!(r, Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    };
    let answered = within(Duration::from_secs(30), refused);
    assert!(answered.is_some(), "no answer from behind udp {addr}:5353");
    // Vortex writes its status file (with its counters) a few times a second.
    let lbs = cloud.home.path().join("data/agent/lb");
    let translated = || {
        let icmp: u64 = (std::fs::read_dir(&lbs).unwrap().flatten())
            .filter_map(|d| std::fs::read(d.path().join("vortex.json")).ok())
            .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter_map(|st| st["counters"]["nat_icmp"].as_u64())
            .sum();
        icmp > 0
    };
    let seen = within(Duration::from_secs(5), translated);
    assert!(
        seen.is_some(),
        "no ICMP error was translated back by Vortex"
    );
    // A UDP monitor: w2 serves nothing on 5353, so it answers "port unreachable" and is
    // down; without the monitor it counts as up again.
    let dns_member = |want: &'static str| {
        eventually(want, Duration::from_secs(30), move || {
            let dns = listener_now(cloud, "dns");
            async move { (dns?["members"][0]["health"] == want).then_some(()) }
        })
    };
    ok("lb health set lb1 --listener dns --type udp-connect --interval 1s --fall 2 --rise 2");
    dns_member("down").await;
    ok("lb health clear lb1 --listener dns");
    dns_member("up").await;
}

/// Layer 7: a rule by host and a rule by path send requests to w2, the rest go to the
/// listener's members; with cookie persistence a client that sends the cookie back stays
/// on its member, one that does not is spread.
async fn rules_and_cookies(cloud: &Cloud, onebox: &OneBox, addr: &str, w2: &Value) {
    let ok = |line: &str| cloud.ok(&words(line));
    let img = "mkdir -p /tmp/w/img && echo w2-img > /tmp/w/img/index.html && echo IMG-$((40+2))";
    guest_runs(w2, img, "IMG-42", Duration::from_secs(60)).await;
    ok("lb listener add lb1 --name web --protocol http --port 8090 --persistence http-cookie");
    ok("lb member add lb1 --listener web --vm w1 --port 80");
    ok("lb rule add lb1 --listener web --name api --host api.example.com");
    ok("lb rule add lb1 --listener web --name img --path-prefix /img/");
    ok("lb member add lb1 --listener web --rule api --vm w2 --port 80");
    ok("lb member add lb1 --listener web --rule img --vm w2 --port 80");
    let get = |path: &str, headers: &str| {
        let req = format!("GET {path} HTTP/1.0\r\n{headers}\r\n");
        http_request(&onebox.host, addr, 8090, &req)
    };
    let routed = within(Duration::from_secs(30), || {
        get("/", "Host: API.example.com:8090\r\n").contains("w2")
    });
    assert!(
        routed.is_some(),
        "the host rule never reached w2: {}",
        ok("lb show lb1")
    );
    for _ in 0..5 {
        assert!(get("/", "Host: api.example.com\r\n").contains("w2"));
        assert!(get("/img/", "Host: www.example.com\r\n").contains("w2-img"));
        assert!(get("/", "Host: www.example.com\r\n").contains("w1"));
    }
    let web = listener_now(cloud, "web").expect("listener web");
    let rules: Vec<_> = web["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["rule"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(rules, ["", "api", "img"], "{web}");
    // Rules that answer themselves; the first rule that matches wins.
    ok("lb rule add lb1 --listener web --name old --path-prefix /old/ --redirect http://example.com/new --redirect-code 301");
    ok("lb rule add lb1 --listener web --name shadow --path-prefix /img/ --reject");
    ok("lb rule add lb1 --listener web --name admin --path-prefix /admin --reject");
    let status = |path: &str| {
        let answer = get(path, "Host: www.example.com\r\n");
        let line = answer.lines().next().unwrap_or("").to_string();
        (line, answer.to_ascii_lowercase())
    };
    let refused = within(Duration::from_secs(30), || {
        status("/admin").0.contains(" 403")
    });
    assert!(
        refused.is_some(),
        "/admin never refused: {}",
        ok("lb show lb1")
    );
    let (line, answer) = status("/old/page");
    assert!(line.contains(" 301"), "{line}");
    assert!(
        answer.contains("location: http://example.com/new"),
        "{answer}"
    );
    let (line, answer) = status("/img/");
    assert!(
        line.contains(" 200") && answer.contains("w2-img"),
        "img comes first: {answer}"
    );
    assert!(get("/", "Host: www.example.com\r\n").contains("w1"));
    ok("lb rule remove lb1 --listener web --name old");
    ok("lb rule remove lb1 --listener web --name shadow");
    ok("lb rule remove lb1 --listener web --name admin");
    // Cookie persistence over the listener's own members, w1 and w2.
    ok("lb member add lb1 --listener web --vm w2 --port 80");
    let first = eventually("both members serve", Duration::from_secs(30), || {
        let answers: Vec<String> = (0..6).map(|_| get("/", "")).collect();
        async move {
            let both = answers.iter().any(|a| a.contains("w1"))
                && answers.iter().any(|a| a.contains("w2"));
            both.then(|| answers.into_iter().find(|a| a.contains("w2")).unwrap())
        }
    })
    .await;
    // HAProxy writes header names in lower case.
    let cookie = (first.lines())
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no cookie set: {first}"))
        .to_string();
    assert!(cookie.starts_with("YUNHAN_LB="), "{cookie}");
    for _ in 0..10 {
        let answer = get("/", &format!("Cookie: {cookie}\r\n"));
        assert!(answer.contains("w2"), "{cookie} left w2: {answer}");
    }
    app_cookie(cloud, onebox, addr).await;
}

/// The application's own cookie: requests carrying one session id stay on one member,
/// requests without it are spread.
async fn app_cookie(cloud: &Cloud, onebox: &OneBox, addr: &str) {
    let ok = |line: &str| cloud.ok(&words(line));
    ok("lb listener add lb1 --name app --protocol http --port 8091 --persistence app-cookie --persistence-cookie SID");
    ok("lb member add lb1 --listener app --vm w1 --port 80");
    ok("lb member add lb1 --listener app --vm w2 --port 80");
    let get = |cookie: &str| {
        let req = format!("GET / HTTP/1.0\r\n{cookie}\r\n");
        let answer = http_request(&onebox.host, addr, 8091, &req);
        ["w1", "w2"].into_iter().find(|w| answer.contains(w))
    };
    let spread = eventually("both members serve", Duration::from_secs(30), || {
        let seen: Vec<_> = (0..6).map(|_| get("")).collect();
        async move { (seen.contains(&Some("w1")) && seen.contains(&Some("w2"))).then_some(()) }
    });
    spread.await;
    for sid in ["a1", "b2", "c3"] {
        let header = format!("Cookie: SID={sid}\r\n");
        let first = get(&header).expect("an answer");
        let all: Vec<_> = (0..8).map(|_| get(&header)).collect();
        assert!(all.iter().all(|w| *w == Some(first)), "SID={sid}: {all:?}");
    }
}

/// Listener `name` of load balancer `lb1` as `lb show` reports it now.
fn listener_now(cloud: &Cloud, name: &str) -> Option<Value> {
    let lb = cloud.ok(&["lb", "show", "lb1"]);
    let listeners = lb["status"]["listeners"].as_array()?;
    listeners.iter().find(|l| l["name"] == name).cloned()
}

/// Layer 4: with source-IP persistence every connection from the host lands on one
/// member; a drained member keeps its open connection and gets no new one.
async fn sticky_and_drain(cloud: &Cloud, onebox: &OneBox, addr: &str, guests: &[Value]) {
    let ok = |line: &str| cloud.ok(&words(line));
    ok("lb listener add lb1 --name sticky --protocol tcp --port 8081 --algorithm source-ip");
    ok("lb member add lb1 --listener sticky --vm w1 --port 80");
    ok("lb member add lb1 --listener sticky --vm w2 --port 80");
    let up = within(Duration::from_secs(30), || {
        !http_get(&onebox.host, addr, 8081).is_empty()
    });
    assert!(up.is_some(), "{addr}:8081 never answered");
    let seen = spread(&onebox.host, addr, 8081, 20);
    assert_eq!(seen.len(), 1, "one client, one member: {seen:?}");
    assert!(!seen.contains_key("failed"), "{seen:?}");

    let minute = Duration::from_secs(60);
    for (g, round) in guests.iter().zip([1, 2]) {
        let listen = format!("(nc -l -p 9000 > /tmp/got9 &) ; echo NC-{round}-$((40+2))");
        guest_runs(g, &listen, &format!("NC-{round}-42"), minute).await;
    }
    ok("sg rule add open --protocol tcp --port 9000 --cidr 10.10.0.0/16");
    ok("lb listener add lb1 --name long --protocol tcp --port 9000");
    ok("lb member add lb1 --listener long --vm w1 --port 9000");
    let sa = std::net::SocketAddr::from((addr.parse::<std::net::Ipv4Addr>().unwrap(), 9000));
    let mut open = eventually(
        "a connection through the listener",
        Duration::from_secs(30),
        || {
            let c = yunhan_net::lab::Lab::in_netns(&onebox.host, move || {
                std::net::TcpStream::connect(sa)
            });
            async move { c.ok().and_then(Result::ok) }
        },
    )
    .await;
    std::io::Write::write_all(&mut open, b"first\n").unwrap();
    ok("lb member add lb1 --listener long --vm w2 --port 9000");
    ok("lb member drain lb1 --listener long --vm w1");
    let drained = eventually("w1 drained", minute, || {
        let long = listener_now(cloud, "long");
        async move { (long?["members"][0]["health"] == "drained").then_some(()) }
    });
    drained.await;
    std::io::Write::write_all(&mut open, b"second\n").unwrap();
    let mut new =
        yunhan_net::lab::Lab::in_netns(&onebox.host, move || std::net::TcpStream::connect(sa))
            .unwrap()
            .unwrap();
    std::io::Write::write_all(&mut new, b"fresh\n").unwrap();
    let kept = "grep -q second /tmp/got9 && echo KEPT-$((40+2))";
    guest_runs(&guests[0], kept, "KEPT-42", minute).await;
    let moved = "grep -q fresh /tmp/got9 && echo FRESH-$((40+2))";
    guest_runs(&guests[1], moved, "FRESH-42", minute).await;
    // Another member removed: the open connection to w1 goes on, not reset.
    ok("lb member remove lb1 --listener long --vm w2");
    let gone = eventually("w2 gone from the listener", minute, || {
        let long = listener_now(cloud, "long");
        async move { (long?["members"].as_array()?.len() == 1).then_some(()) }
    });
    gone.await;
    std::io::Write::write_all(&mut open, b"third\n").unwrap();
    let kept = "grep -q third /tmp/got9 && echo THIRD-$((40+2))";
    guest_runs(&guests[0], kept, "THIRD-42", minute).await;
    // Undrained, it is back in.
    ok("lb member set lb1 --listener long --vm w1 --weight 1");
    let back = eventually("w1 back", minute, || {
        let long = listener_now(cloud, "long");
        async move { (long?["members"][0]["health"] == "up").then_some(()) }
    });
    back.await;
}

/// An HTTPS listener with a certificate for the elastic IP: `curl --cacert` verifies it and
/// gets w1's answer over plain HTTP behind it; the key is never shown; a key that is not
/// the certificate's is refused (400) and nothing changes.
fn https(cloud: &Cloud, onebox: &OneBox, addr: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    yunhan_testkit::tls::self_signed(&cert, &key, Some(addr));
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    cloud.ok(&[
        "lb",
        "listener",
        "add",
        "lb1",
        "--name",
        "tls",
        "--protocol",
        "https",
        "--port",
        "443",
        "--certificate",
        c,
        "--key",
        k,
    ]);
    cloud.ok(&words("lb member add lb1 --listener tls --vm w1 --port 80"));
    let url = format!("https://{addr}/");
    let curl = || {
        let o = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &onebox.host,
                "curl",
                "-s",
                "-m",
                "3",
                "--cacert",
                c,
                &url,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let served = within(Duration::from_secs(30), || curl().contains("w1"));
    assert!(
        served.is_some(),
        "{url} never verified and answered: {}",
        cloud.ok(&["lb", "show", "lb1"])
    );
    let shown = cloud.ok(&["lb", "show", "lb1"]).to_string();
    assert!(!shown.contains("PRIVATE KEY"), "the key is never returned");
    let other = dir.path().join("other.pem");
    yunhan_testkit::tls::self_signed(&dir.path().join("c2.pem"), &other, Some(addr));
    let o = other.to_str().unwrap();
    let out = cloud.cli(&[
        "lb",
        "listener",
        "add",
        "lb1",
        "--name",
        "tls2",
        "--protocol",
        "https",
        "--port",
        "8443",
        "--certificate",
        c,
        "--key",
        o,
    ]);
    assert!(
        !out.status.success(),
        "a key that is not the certificate's was taken"
    );
    assert!(
        common::stderr(&out).contains("does not match the certificate"),
        "{}",
        common::stderr(&out)
    );
    let listeners = cloud.ok(&["lb", "show", "lb1"])["spec"]["listeners"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listeners, 3, "nothing changed");
}

/// A TCP listener with timeouts is HAProxy's (a proxy's feature), and a client that stays
/// silent is cut after its timeout, not before.
async fn idle_timeout(cloud: &Cloud, onebox: &OneBox, addr: &str) {
    let ok = |line: &str| cloud.ok(&words(line));
    ok("lb listener add lb1 --name idle --protocol tcp --port 8082 --timeout-client 2s --timeout-member-data 2s");
    ok("lb member add lb1 --listener idle --vm w2 --port 80");
    let up = within(Duration::from_secs(30), || {
        http_get(&onebox.host, addr, 8082).contains("w2")
    });
    assert!(up.is_some(), "{addr}:8082 never reached w2");
    let engine = eventually(
        "the idle listener's engine",
        Duration::from_secs(10),
        || {
            let idle = listener_now(cloud, "idle");
            async move { idle.map(|l| l["engine"].clone()).filter(|e| !e.is_null()) }
        },
    );
    assert_eq!(
        engine.await,
        "haproxy",
        "a listener with timeouts is a proxy's"
    );
    let sa = std::net::SocketAddr::from((addr.parse::<std::net::Ipv4Addr>().unwrap(), 8082));
    let silent = yunhan_net::lab::Lab::in_netns(&onebox.host, move || {
        let mut c = std::net::TcpStream::connect(sa)?;
        c.set_read_timeout(Some(Duration::from_secs(20)))?;
        let t0 = Instant::now();
        let n = std::io::Read::read(&mut c, &mut [0u8; 64])?;
        Ok::<_, std::io::Error>((n, t0.elapsed()))
    });
    let (n, after) = silent
        .unwrap()
        .expect("the connection ends, not the read timeout");
    assert_eq!(n, 0, "closed without an answer");
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(6)).contains(&after),
        "closed after {after:?}, the timeout is 2 s"
    );
    ok("lb listener remove lb1 --name idle");
}

/// A path the members answer 404 takes them down under the default codes (2xx, 3xx),
/// and up again once 404 is expected; then the contract's monitor is back.
async fn expected_codes(cloud: &Cloud) {
    let ok = |line: &str| cloud.ok(&words(line));
    let monitor = "lb health set lb1 --listener http --type http --interval 2s --fall 2 --rise 2";
    let members = |state| [("w1", state), ("w2", state)];
    ok(&format!("{monitor} --path /nope"));
    let down = health_is(cloud, &members("down"), Duration::from_secs(30)).await;
    assert!(down.is_some(), "404 counted as up: {}", ok("lb show lb1"));
    ok(&format!("{monitor} --path /nope --expected-codes 200,404"));
    let up = health_is(cloud, &members("up"), Duration::from_secs(30)).await;
    assert!(
        up.is_some(),
        "404 expected, still down: {}",
        ok("lb show lb1")
    );
    let shown = ok("lb show lb1");
    assert_eq!(
        shown["spec"]["listeners"][0]["health"]["expected_codes"], "200,404",
        "{shown}"
    );
    ok(&format!("{monitor} --path /"));
    let up = health_is(cloud, &members("up"), Duration::from_secs(30)).await;
    assert!(up.is_some(), "members not up again: {}", ok("lb show lb1"));
}

/// Polls until the members (by VM name) have the healths wanted; how long it took.
async fn health_is(cloud: &Cloud, want: &[(&str, &str)], limit: Duration) -> Option<Duration> {
    let ids: Vec<(String, &str)> = want
        .iter()
        .map(|(vm, h)| {
            (
                cloud.ok(&["nic", "show", &format!("{vm}-nic0")])["status"]["ip"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                *h,
            )
        })
        .collect();
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let lb = cloud.ok(&["lb", "show", "lb1"]);
        let members = lb["status"]["listeners"][0]["members"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let health = |ip: &str| {
            members
                .iter()
                .find(|m| m["address"] == ip)
                .map(|m| m["health"].clone())
        };
        if ids
            .iter()
            .all(|(ip, h)| health(ip) == Some(Value::from(*h)))
        {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// `n` requests to `addr:port` from `ns`: how many each guest answered ("failed": none).
fn spread(ns: &str, addr: &str, port: u16, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let answer = http_get(ns, addr, port);
        let who = ["w1", "w2"]
            .into_iter()
            .find(|w| answer.contains(w))
            .unwrap_or("failed");
        *seen.entry(who.to_string()).or_insert(0) += 1;
    }
    seen
}

/// Bad input gets a clear 4xx and leaves nothing behind; another project's NIC is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_load_balancer_bad_input() {
    // Its load balancers are realised: in a namespace standing for the host, not on it.
    let onebox = OneBox::new();
    let cloud = Cloud::up(&["--netns", &onebox.host]).await;
    let t = cloud.tenant("lbbad", None).await;
    let other = cloud.tenant("lbother", None).await;
    for tk in [&t.token, &other.token] {
        vpc_and_subnet(&cloud, tk, ("net1", "10.10.0.0/16"), ("s1", "10.10.1.0/24")).await;
    }
    vpc_and_subnet(
        &cloud,
        &t.token,
        ("net2", "10.20.0.0/16"),
        ("s2", "10.20.1.0/24"),
    )
    .await;
    let n2 = serde_json::json!({"subnet": "s2"});
    cloud.create(&t.token, "network-interfaces", "n2", n2).await;
    let theirs = serde_json::json!({"subnet": "s1"});
    let theirs = cloud
        .create(&other.token, "network-interfaces", "theirs", theirs)
        .await;
    let theirs_id = theirs["metadata"]["id"].as_str().unwrap().to_string();
    let listener = |members: Value| serde_json::json!([{"name": "web", "protocol": "http", "port": 80, "members": members}]);
    let cases = [
        (
            listener(serde_json::json!([{"nic": "n2", "port": 80}])),
            400,
            "another VPC",
        ),
        (
            listener(serde_json::json!([{"address": "10.99.0.5", "port": 80}])),
            400,
            "another VPC",
        ),
        (
            listener(serde_json::json!([{"nic": theirs_id, "port": 80}])),
            404,
            "not found",
        ),
        (
            serde_json::json!([{"name": "a", "protocol": "tcp", "port": 80}, {"name": "b", "protocol": "http", "port": 80}]),
            400,
            "already listener \"a\"'s",
        ),
        (
            serde_json::json!([{"name": "s", "protocol": "https", "port": 443}]),
            400,
            "needs a certificate and its key",
        ),
        (
            serde_json::json!([{"name": "u", "protocol": "udp", "port": 53, "health": {"type": "tcp"}}]),
            400,
            "checked by type udp_connect",
        ),
        (
            serde_json::json!([{"name": "t", "protocol": "tcp", "port": 81, "rules": [{"name": "r", "host": "a.example"}]}]),
            400,
            "layer-7 rules need an http or https listener",
        ),
        (
            serde_json::json!([{"name": "e", "protocol": "http", "port": 83, "health": {"type": "http", "expected_codes": "2xx"}}]),
            400,
            "codes are 100–599",
        ),
        (
            serde_json::json!([{"name": "e", "protocol": "http", "port": 83, "health": {"type": "https"}}]),
            400,
            "use type http",
        ),
        (
            serde_json::json!([{"name": "t0", "protocol": "tcp", "port": 84, "timeout_member_data_ms": 0}]),
            400,
            "timeouts are 1 ms to 24 days",
        ),
        (
            serde_json::json!([{"name": "h", "protocol": "http", "port": 85, "rules": [{"name": "r", "path_prefix": "/a", "action": "redirect"}]}]),
            400,
            "a redirect needs redirect_url",
        ),
        (
            serde_json::json!([{"name": "h", "protocol": "http", "port": 82, "rules": [{"name": "r", "members": [{"nic": "n2", "port": 80}], "path_prefix": "/a"}]}]),
            400,
            "another VPC",
        ),
    ];
    for (listeners, status, why) in cases {
        let spec = serde_json::json!({"subnet": "s1", "listeners": listeners});
        let (s, v) = cloud.post(&t.token, "load-balancers", "bad", spec).await;
        assert_eq!(s, status, "{listeners}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains(why)),
            "{why}: {v}"
        );
    }
    // External without any external network: refused, and its address NIC is gone again.
    let (s, v) = cloud
        .post(
            &t.token,
            "load-balancers",
            "ext",
            serde_json::json!({"subnet": "s1", "external": true}),
        )
        .await;
    assert!((400..500).contains(&s), "{v}");
    for (spec, why) in [
        (
            serde_json::json!({"subnet": "s1", "replicas": 5}),
            "1 to 4 replicas",
        ),
        (
            serde_json::json!({"subnet": "s1", "replicas": 0, "external": true}),
            "not 0",
        ),
    ] {
        let (s, v) = cloud.post(&t.token, "load-balancers", "rep", spec).await;
        assert_eq!(s, 400, "{v}");
        assert!(
            v["message"].as_str().is_some_and(|m| m.contains(why)),
            "{why}: {v}"
        );
    }
    let (_, nics) = cloud
        .call("GET", "/v1/network-interfaces", Some(&t.token), None)
        .await;
    let names: Vec<&str> = nics["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["n2"], "nothing half-made");
    let (_, lbs) = cloud
        .call("GET", "/v1/load-balancers", Some(&t.token), None)
        .await;
    assert_eq!(lbs["items"].as_array().map(Vec::len), Some(0), "{lbs}");
    // A load balancer's address NIC is the load balancer's.
    let lb1 = serde_json::json!({"subnet": "s1"});
    let lb = cloud.create(&t.token, "load-balancers", "lb1", lb1).await;
    let vip = format!(
        "/v1/network-interfaces/{}",
        lb["status"]["nic"].as_str().unwrap()
    );
    let (s, v) = cloud.call("DELETE", &vip, Some(&t.token), None).await;
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
    let (s, _) = cloud
        .call("DELETE", "/v1/load-balancers/lb1", Some(&t.token), None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = cloud.call("GET", &vip, Some(&t.token), None).await;
    assert_eq!(s, 404, "the address NIC goes with the load balancer");
    replica_nics(&cloud, &t.token).await;
    lb_quotas(&cloud).await;
}

/// A load balancer with three replicas has a NIC for each, the load balancer's like its
/// address NIC; its replicas cannot change; its NICs go with it.
async fn replica_nics(cloud: &Cloud, token: &str) {
    let spec = serde_json::json!({"subnet": "s1", "replicas": 3});
    let lb = cloud.create(token, "load-balancers", "lb3", spec).await;
    let replicas = lb["status"]["replicas"].as_array().unwrap().clone();
    assert_eq!(replicas.len(), 3, "{lb}");
    let mut paths = vec![];
    for (i, r) in replicas.iter().enumerate() {
        let path = format!("/v1/network-interfaces/{}", r["nic"].as_str().unwrap());
        let (s, nic) = cloud.call("GET", &path, Some(token), None).await;
        assert_eq!(s, 200);
        assert_eq!(nic["metadata"]["name"], format!("lb3-r{}", i + 1));
        assert_eq!(nic["status"]["ip"], r["address"]);
        let (s, v) = cloud.call("DELETE", &path, Some(token), None).await;
        assert_eq!(s, 409, "{v}");
        paths.push(path);
    }
    let mut changed = lb["spec"].clone();
    changed["replicas"] = serde_json::json!(2);
    let body = serde_json::json!({"spec": changed});
    let (s, v) = cloud
        .call("PUT", "/v1/load-balancers/lb3", Some(token), Some(&body))
        .await;
    assert_eq!((s, v["code"].as_str()), (409, Some("conflict")), "{v}");
    let (s, _) = cloud
        .call("DELETE", "/v1/load-balancers/lb3", Some(token), None)
        .await;
    assert_eq!(s, 204);
    for path in paths {
        let (s, _) = cloud.call("GET", &path, Some(token), None).await;
        assert_eq!(s, 404, "a replica's NIC goes with the load balancer");
    }
}

/// VPC `vpc` (name, CIDR) with subnet `subnet` (name, CIDR), as the holder of `token`.
async fn vpc_and_subnet(cloud: &Cloud, token: &str, vpc: (&str, &str), subnet: (&str, &str)) {
    for (plural, name, spec) in [
        ("vpcs", vpc.0, serde_json::json!({"cidr": vpc.1})),
        (
            "subnets",
            subnet.0,
            serde_json::json!({"vpc": vpc.0, "cidr": subnet.1}),
        ),
    ] {
        cloud.create(token, plural, name, spec).await;
    }
}

/// A project's quota on load balancers and on listeners (over all of them).
async fn lb_quotas(cloud: &Cloud) {
    let quota = serde_json::json!({"instances": 1, "vcpus": 1, "memory_mib": 1024,
        "volume_gib": 1, "elastic_ips": 1, "load_balancers": 1, "listeners": 1});
    let t = cloud.tenant("lbquota", Some(quota)).await;
    vpc_and_subnet(
        cloud,
        &t.token,
        ("net1", "10.10.0.0/16"),
        ("s1", "10.10.1.0/24"),
    )
    .await;
    let web = serde_json::json!([{"name": "web", "protocol": "http", "port": 80}]);
    let a = serde_json::json!({"subnet": "s1", "listeners": web});
    cloud.create(&t.token, "load-balancers", "a", a).await;
    let (s, v) = cloud
        .post(
            &t.token,
            "load-balancers",
            "b",
            serde_json::json!({"subnet": "s1"}),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("quota_exceeded")),
        "{v}"
    );
    let (_, a) = cloud
        .call("GET", "/v1/load-balancers/a", Some(&t.token), None)
        .await;
    let mut spec = a["spec"].clone();
    let tcp = serde_json::json!({"name": "tcp", "protocol": "tcp", "port": 81});
    spec["listeners"].as_array_mut().unwrap().push(tcp);
    let two = serde_json::json!({"spec": spec});
    let (s, v) = cloud
        .call("PUT", "/v1/load-balancers/a", Some(&t.token), Some(&two))
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("quota_exceeded")),
        "{v}"
    );
    let (_, p) = cloud
        .call(
            "GET",
            &format!("/v1/projects/{}", t.project),
            Some(&cloud.token),
            None,
        )
        .await;
    assert_eq!(p["status"]["usage"]["load_balancers"], 1, "{p}");
    assert_eq!(p["status"]["usage"]["listeners"], 1, "{p}");
}

/// Two hosts (etcd and two agents in the lab), an external load balancer with a TCP
/// listener (Vortex) in front of a guest on the other host. An outside client holds a
/// connection through the elastic IP; the load balancer's host is lost (its agent killed,
/// its external leg down): the controller moves the load balancer to the surviving host,
/// whose Vortex makes the same Maglev choice and whose conntrack picks the flow up
/// mid-stream, so data sent on the same connection afterwards reaches the same member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_load_balancer_host_lost_keeps_layer_4_flows() {
    let ip = |s: &str| s.parse::<std::net::Ipv4Addr>().unwrap();
    let lab = common::two_host_lab("lbf");
    let cidr = "203.0.113.0/24";
    let outside = lab
        .add_external(
            cidr.parse().unwrap(),
            ip("203.0.113.1"),
            &[ip("203.0.113.201"), ip("203.0.113.202")],
        )
        .unwrap();
    let (_etcd, mut c) = common::lab_cloud(&lab).await;
    let ok = |c: &common::Cluster, line: &str| c.ok(&words(line));
    c.ok(&common::strs(&common::kernel_image_args("tiny")));
    ok(
        &c,
        &format!("external-network create ext --cidr {cidr} --gateway 203.0.113.1 --device ext0"),
    );
    c.vpc_open_on_9000();
    ok(&c, "placement-group create spread --policy hard");
    for vm in ["m1", "m2"] {
        let line = format!("vm create {vm} --image tiny --flavor tiny --subnet s1 --security-group open --placement-group spread --wait --timeout 120s");
        ok(&c, &line);
    }
    let lb = ok(&c, "lb create lb1 --subnet s1 --external --wait");
    let first = lb["status"]["host"].as_str().unwrap().to_string();
    let eip = lb["status"]["external_address"]
        .as_str()
        .unwrap()
        .to_string();
    let lost = c.agent_of(&first);
    // The member: the guest on the other host.
    let member = c.vm_not_on(&["m1", "m2"], lost);
    let name = member["metadata"]["name"].as_str().unwrap().to_string();
    let minute = Duration::from_secs(60);
    eventually("the member booted", Duration::from_secs(180), || async {
        console_text(&serial_log(&member))
            .contains("YUNHAN-READY")
            .then_some(())
    })
    .await;
    let listen = "(nc -l -p 9000 > /tmp/got9 &) ; echo NC-$((40+2))";
    guest_runs(&member, listen, "NC-42", minute).await;
    ok(
        &c,
        "lb listener add lb1 --name long --protocol tcp --port 9000",
    );
    ok(
        &c,
        &format!("lb member add lb1 --listener long --vm {name} --port 9000"),
    );
    let sa = std::net::SocketAddr::from((ip(&eip), 9000));
    let mut open = eventually("a connection from outside", minute, || {
        let c = yunhan_net::lab::Lab::in_netns(&outside, move || {
            std::net::TcpStream::connect_timeout(&sa, Duration::from_secs(2))
        });
        async move { c.ok().and_then(Result::ok) }
    })
    .await;
    std::io::Write::write_all(&mut open, b"first\n").unwrap();
    let got = |word: &'static str| format!("grep -q {word} /tmp/got9 && echo GOT-{word}-$((40+2))");
    guest_runs(&member, &got("first"), "GOT-first-42", minute).await;

    let t0 = Instant::now();
    c.lose_host(&lab, lost);
    let moved = eventually("the load balancer moved", minute, || {
        let lb = c.ok(&["lb", "show", "lb1"]);
        let first = first.clone();
        async move {
            let s = &lb["status"];
            let host = s["host"]
                .as_str()
                .filter(|h| !h.is_empty() && *h != first)?;
            (s["phase"] == "Active").then(|| host.to_string())
        }
    })
    .await;
    assert_ne!(c.agent_of(&moved), lost);
    let moved_after = t0.elapsed();
    std::io::Write::write_all(&mut open, b"second\n").unwrap();
    guest_runs(
        &member,
        &got("second"),
        "GOT-second-42",
        Duration::from_secs(90),
    )
    .await;
    eprintln!(
        "load balancer failover: Active on the other host {:.1} s after its host was lost; \
         the open connection carried data again within {:.1} s",
        moved_after.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}
