//! The etcd harness itself: start, health, leader, kill, restart, cleanup.
use std::time::{Duration, Instant};

use yunhan_testkit::{wait_until, EtcdCluster};

fn alive(pid: u32) -> bool {
    // A reaped child's /proc entry is gone (no zombie is left behind).
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn e2e_single_member_starts_and_cleans_up() {
    let t = Instant::now();
    let c = EtcdCluster::start(1);
    eprintln!("1 member healthy in {:?}", t.elapsed());
    assert_eq!(c.member_count(), 1);
    assert!(c.healthy(0));
    assert_eq!(c.leader(), Some(0));
    let url = c.store_url();
    assert!(
        url.starts_with("etcd://127.0.0.1:") && !url.contains(','),
        "{url}"
    );
    assert!(c.endpoints()[0].starts_with("http://127.0.0.1:"));
    let pid = c.pid(0).unwrap();
    let dir = c.dir().to_path_buf();
    assert!(c.log_path(0).exists());
    drop(c);
    assert!(!alive(pid), "member killed on drop");
    assert!(!dir.exists(), "temp dir removed on drop");
}

#[test]
fn e2e_three_members_survive_a_killed_leader() {
    let t = Instant::now();
    let mut c = EtcdCluster::start(3);
    eprintln!("3 members healthy in {:?}", t.elapsed());
    assert_eq!(c.endpoints().len(), 3);
    assert_eq!(c.store_url().matches(',').count(), 2);
    let leader = c
        .wait_for_leader(Duration::from_secs(10))
        .expect("a leader");
    let pid = c.pid(leader).unwrap();
    let t = Instant::now();
    c.kill(leader);
    assert!(!alive(pid));
    assert_eq!(c.pid(leader), None);
    assert!(!c.healthy(leader));
    let next = c
        .wait_for_leader(Duration::from_secs(10))
        .expect("a new leader");
    eprintln!("new leader m{next} after {:?}", t.elapsed());
    assert_ne!(next, leader);
    // The killed member rejoins on its data dir.
    c.restart(leader).unwrap();
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || { (0..3).all(|i| c.healthy(i)) }
    ));
}
