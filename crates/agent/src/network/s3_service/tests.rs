use super::*;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use yunhan_store::{MemStore, StoreExt};

fn ep(host: &str, port: u16) -> Endpoint {
    Endpoint {
        host: host.into(),
        port,
    }
}

#[test]
fn endpoints_parse() {
    let ok = [
        ("http://127.0.0.1:7480", ep("127.0.0.1", 7480)),
        ("http://127.0.0.1:7480/", ep("127.0.0.1", 7480)),
        (
            "  HTTP://rgw.example:8080/s3?x#y\n",
            ep("rgw.example", 8080),
        ),
        ("http://rgw", ep("rgw", 80)),
        ("http://[::1]:7480", ep("::1", 7480)),
        ("http://[fd00::5]", ep("fd00::5", 80)),
    ];
    for (url, want) in ok {
        assert_eq!(parse_endpoint(url), Ok(want), "{url}");
    }
}

#[test]
fn bad_endpoints_are_refused_with_a_reason() {
    use EndpointError as E;
    let bad = [
        ("127.0.0.1:7480", E::NoScheme("127.0.0.1:7480".into())),
        ("https://rgw:443", E::Scheme("https".into())),
        ("ftp://rgw", E::Scheme("ftp".into())),
        ("http://", E::NoHost("http://".into())),
        ("http://:80", E::NoHost("http://:80".into())),
        ("http://u:p@rgw", E::UserInfo),
        ("http://rgw:0", E::Port("0".into())),
        ("http://rgw:99999", E::Port("99999".into())),
        ("http://rgw:", E::Port(String::new())),
        ("http://rgw:80:81", E::Port("80:81".into())),
        ("http://r g w", E::Host("r g w".into())),
        ("http://[::1", E::Host("[::1".into())),
        ("http://[zz]:80", E::Host("zz".into())),
        ("http://[::1]x", E::Host("[::1]x".into())),
        ("", E::NoScheme(String::new())),
    ];
    for (url, want) in bad {
        assert_eq!(parse_endpoint(url), Err(want), "{url:?}");
    }
}

#[test]
fn the_gateway_after_a_read() {
    let last = Some(ep("old", 1));
    let found = endpoint_after(Lookup::Found(b"http://new:2"), last.clone());
    assert_eq!(found, Ok(Some(ep("new", 2))));
    assert_eq!(endpoint_after(Lookup::Absent, last.clone()), Ok(None));
    assert_eq!(endpoint_after(Lookup::Unreachable, last.clone()), Ok(last));
    assert_eq!(endpoint_after(Lookup::Unreachable, None), Ok(None));
    let bad = endpoint_after(Lookup::Found(b"https://x"), Some(ep("old", 1)));
    assert_eq!(bad, Err(EndpointError::Scheme("https".into())));
}

#[test]
fn router_namespaces_carry_the_router_prefix() {
    let m = yunhan_net::lab::fixtures::two_host_model();
    let plan = yunhan_net::compile::compile_host(&m, "host-a").unwrap();
    let names: Vec<String> = router_namespaces(&plan, "lab-h-a-").into_iter().collect();
    let want: Vec<String> = (plan.vpcs.iter())
        .map(|v| format!("lab-h-a-{}", v.router.netns))
        .collect();
    assert_eq!(names.len(), 2);
    assert_eq!(names, want);
    let empty = HostPlan::empty("host-a", Ipv4Addr::LOCALHOST);
    assert!(router_namespaces(&empty, "").is_empty());
}

#[test]
fn addresses_on_lo_are_read_from_ip_json() {
    let json = r#"[{"ifindex":1,"ifname":"lo","addr_info":[
        {"family":"inet","local":"127.0.0.1","prefixlen":8},
        {"family":"inet","local":"100.100.100.100","prefixlen":32}]}]"#;
    let links: Vec<Link> = serde_json::from_str(json).unwrap();
    assert!(lists_address(&links, S3_VPC_ADDRESS));
    let wrong_len = json.replace("\"prefixlen\":32", "\"prefixlen\":24");
    let links: Vec<Link> = serde_json::from_str(&wrong_len).unwrap();
    assert!(!lists_address(&links, S3_VPC_ADDRESS));
    let bare: Vec<Link> = serde_json::from_str(r#"[{"ifname":"lo"}]"#).unwrap();
    assert!(!lists_address(&bare, S3_VPC_ADDRESS));
}

fn names(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ids(v: &[(&str, u64)]) -> BTreeMap<String, NsId> {
    v.iter().map(|(n, i)| (n.to_string(), (1, *i))).collect()
}

#[test]
fn diff_starts_stops_and_restarts_a_remade_namespace() {
    let wanted = names(&["a", "b", "c", "d"]);
    let running = ids(&[("a", 1), ("b", 2), ("x", 9)]);
    // a as before, b made again, c new, d not made yet, x gone from the plan.
    let present = ids(&[("a", 1), ("b", 3), ("c", 4), ("x", 9)]);
    let c = diff(&wanted, &running, &present);
    assert_eq!(c.stop, vec!["b".to_string(), "x".to_string()]);
    assert_eq!(c.start, vec!["b".to_string(), "c".to_string()]);
    // A running listener whose namespace vanished (deleted by hand) stops.
    let c = diff(&names(&["a"]), &ids(&[("a", 1)]), &BTreeMap::new());
    assert_eq!((c.stop, c.start), (vec!["a".to_string()], vec![]));
}

fn arb_names() -> impl Strategy<Value = BTreeSet<String>> {
    proptest::collection::btree_set("[a-e]", 0..5)
}

fn arb_ids() -> impl Strategy<Value = BTreeMap<String, NsId>> {
    proptest::collection::btree_map("[a-e]", (0u64..2, 0u64..3), 0..5)
}

proptest! {
    /// After the changes a listener runs exactly in each wanted, present namespace, in
    /// that very one; a second diff changes nothing; a listener that was right is kept.
    #[test]
    fn diff_converges(wanted in arb_names(), running in arb_ids(), present in arb_ids()) {
        let c = diff(&wanted, &running, &present);
        let mut after = running.clone();
        for ns in &c.stop {
            prop_assert!(after.remove(ns).is_some(), "stops only what runs");
        }
        for ns in &c.start {
            prop_assert!(!after.contains_key(ns), "starts only what does not run");
            after.insert(ns.clone(), present[ns]);
        }
        let want: BTreeMap<String, NsId> = (present.iter())
            .filter(|(ns, _)| wanted.contains(*ns))
            .map(|(ns, id)| (ns.clone(), *id))
            .collect();
        prop_assert_eq!(&after, &want);
        prop_assert_eq!(diff(&wanted, &after, &present), Changes::default());
        for (ns, id) in &running {
            if want.get(ns) == Some(id) {
                prop_assert!(!c.stop.contains(ns), "a right listener is kept");
            }
        }
    }
}

/// An echo server on loopback; its port.
async fn echo_gateway() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    port
}

/// A listener on loopback served like a router namespace's, with `cap`; its address.
async fn served(objects: Objects, cap: usize) -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(serve(l, Arc::new(Gateway::new(objects)), cap));
    (addr, task)
}

/// Writes `msg` and reads its echo within `wait`; false on timeout, EOF or error.
async fn echoes(s: &mut TcpStream, msg: &[u8], wait: Duration) -> bool {
    let round = async {
        s.write_all(msg).await.ok()?;
        let mut buf = vec![0; msg.len()];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf == msg)
    };
    matches!(tokio::time::timeout(wait, round).await, Ok(Some(true)))
}

/// The store says the gateway is at 127.0.0.1:`port`.
async fn point_at(objects: &Objects, port: u16) {
    let url = format!("http://127.0.0.1:{port}");
    let put = objects.store().put(S3_ENDPOINT_KEY, url.into());
    put.await.unwrap();
}

#[tokio::test]
async fn connections_pass_to_the_gateway_at_most_cap_at_once() {
    let objects = Objects::new(Arc::new(MemStore::new()));
    let gw = echo_gateway().await;
    point_at(&objects, gw).await;
    let (addr, task) = served(objects, 2).await;
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    assert!(echoes(&mut a, b"one", Duration::from_secs(5)).await);
    assert!(echoes(&mut b, b"two", Duration::from_secs(5)).await);
    // The third waits in the backlog while two are open...
    let mut c = TcpStream::connect(addr).await.unwrap();
    assert!(!echoes(&mut c, b"three", Duration::from_millis(300)).await);
    // ...and is served once one closes (its bytes were queued meanwhile).
    drop(a);
    let mut buf = [0; 5];
    let read = tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(_))), "{read:?}");
    assert_eq!(&buf, b"three");
    // Stopping the listener's task closes its connections.
    task.abort();
    let mut one = [0; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), b.read(&mut one)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
}

#[tokio::test]
async fn without_a_gateway_connections_are_closed_at_once() {
    let objects = Objects::new(Arc::new(MemStore::new()));
    let (addr, _task) = served(objects.clone(), 4).await;
    let closed = |addr| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
        matches!(n, Ok(Ok(0)) | Ok(Err(_)))
    };
    assert!(closed(addr).await, "no key: accepted and closed");
    // A gateway nobody listens on: closed too.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    point_at(&objects, port).await;
    tokio::time::sleep(ENDPOINT_TTL).await;
    assert!(closed(addr).await, "unreachable gateway: closed");
}
