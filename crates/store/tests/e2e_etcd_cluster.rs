//! A real 3-member etcd cluster on loopback: writes keep being acknowledged
//! when the leader is SIGKILLed and none acknowledged is lost, and the whole
//! conformance suite holds against the cluster.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use yunhan_store::{Store, StoreExt};
use yunhan_testkit::{wait_until_async, EtcdCluster};

async fn make3() -> (Arc<dyn Store>, EtcdCluster) {
    let cluster = EtcdCluster::start(3);
    let store = yunhan_store::open(&cluster.store_url())
        .await
        .expect("connect to etcd");
    (store, cluster)
}

mod e2e_etcd_3 {
    use super::make3;
    yunhan_store::store_conformance!(make3());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn e2e_writes_resume_after_leader_kill_and_none_is_lost() {
    let (store, mut cluster) = make3().await;
    let prefix = yunhan_store::conformance::unique_prefix("leader_kill");
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    // One writer doing CAS creates of fresh keys back to back. A create that
    // errors or times out is unacknowledged: it may or may not have applied.
    let writer = {
        let (store, acked, failed, stop) =
            (store.clone(), acked.clone(), failed.clone(), stop.clone());
        let prefix = prefix.clone();
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("{prefix}/{i:06}");
                i += 1;
                let create = store.create(&key, key.clone().into_bytes());
                match tokio::time::timeout(Duration::from_secs(3), create).await {
                    Ok(Ok(true)) => acked.lock().unwrap().push((key, Instant::now())),
                    Ok(Ok(false)) => panic!("fresh key {key} already existed"),
                    Ok(Err(_)) | Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let acked_since = |t: Instant| {
        let n = acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at > t)
            .count();
        async move { n }
    };

    // Steady state first.
    let t0 = Instant::now();
    assert!(
        wait_until_async(Duration::from_secs(10), Duration::from_millis(10), || {
            let n = acked_since(t0);
            async move { n.await >= 50 }
        })
        .await,
        "the writer never got going"
    );

    let leader = cluster
        .wait_for_leader(Duration::from_secs(10))
        .expect("a leader");
    let before = acked.lock().unwrap().len();
    let killed_at = Instant::now();
    cluster.kill(leader);

    let resumed = wait_until_async(Duration::from_secs(10), Duration::from_millis(5), || {
        let n = acked_since(killed_at);
        async move { n.await >= 50 }
    })
    .await;
    let first_ack = acked
        .lock()
        .unwrap()
        .iter()
        .map(|(_, at)| *at)
        .find(|at| *at > killed_at);
    let new_leader = cluster.wait_for_leader(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    eprintln!(
        "killed leader m{leader} after {before} acknowledged creates; first ack after the kill \
         in {:?}; new leader {new_leader:?}; {} acknowledged, {} failed in total",
        first_ack.map(|t| t - killed_at),
        acked.len(),
        failed.load(Ordering::Relaxed),
    );
    assert!(
        resumed,
        "writes did not resume within 10 s of killing the leader"
    );
    assert!(new_leader.is_some_and(|l| l != leader), "{new_leader:?}");

    // Every acknowledged create reads back, through a fresh client that only
    // knows the surviving members.
    let survivors: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| {
            cluster
                .endpoint(i)
                .trim_start_matches("http://")
                .to_string()
        })
        .collect();
    let fresh = yunhan_store::open(&format!("etcd://{}", survivors.join(",")))
        .await
        .unwrap();
    let stored: std::collections::HashMap<String, Vec<u8>> = fresh
        .range_all(&format!("{prefix}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    for (key, _) in &acked {
        assert_eq!(
            stored.get(key),
            Some(&key.clone().into_bytes()),
            "acknowledged create of {key} was lost"
        );
    }
    assert_eq!(fresh.get(&acked[0].0).await.unwrap().unwrap().version, 1);
}
