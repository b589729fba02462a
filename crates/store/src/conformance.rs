//! The one behavioural suite every [`Store`] backend must pass. Each check
//! works under its own key prefix so backends shared between tests (a real
//! etcd) need no cleanup. Instantiate with [`store_conformance!`](crate::store_conformance).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{Compare, EventKind, Op, Store, StoreError, StoreExt, Txn};

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// Waits for the next event, failing after `timeout`.
async fn next_event(w: &mut crate::Watch, timeout: Duration) -> crate::Event {
    match tokio::time::timeout(timeout, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        other => panic!("expected a watch event, got {other:?}"),
    }
}

pub async fn put_get_and_revisions(s: &dyn Store, p: &str) {
    let k = format!("{p}/a");
    assert_eq!(s.get(&k).await.unwrap(), None);
    let r1 = s.put(&k, v("one")).await.unwrap();
    let kv = s.get(&k).await.unwrap().unwrap();
    assert_eq!(kv.value, v("one"));
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r1, 1)
    );
    let r2 = s.put(&k, v("two")).await.unwrap();
    assert!(r2 > r1, "revisions grow");
    let kv = s.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r2, 2)
    );
    assert!(s.current_revision().await.unwrap() >= r2);
    let r3 = s.delete(&k).await.unwrap();
    assert!(r3 > r2);
    assert_eq!(s.get(&k).await.unwrap(), None);
}

pub async fn compare_and_swap(s: &dyn Store, p: &str) {
    let k = format!("{p}/cas");
    assert!(s.create(&k, v("1")).await.unwrap());
    assert!(
        !s.create(&k, v("again")).await.unwrap(),
        "create is exclusive"
    );
    let rev = s.get(&k).await.unwrap().unwrap().mod_revision;
    assert!(
        !s.update(&k, v("stale"), rev - 1).await.unwrap(),
        "stale revision loses"
    );
    assert!(s.update(&k, v("2"), rev).await.unwrap());
    assert!(
        !s.update(&k, v("3"), rev).await.unwrap(),
        "a revision is used once"
    );
    assert_eq!(s.get(&k).await.unwrap().unwrap().value, v("2"));

    // The failure branch runs when a compare fails; all ops share one revision.
    let other = format!("{p}/other");
    let r = s
        .txn(
            Txn::new()
                .when(Compare::ModRevision(k.clone(), 1))
                .then(Op::put(&other, v("success")))
                .otherwise(Op::put(&other, v("failure")))
                .otherwise(Op::delete(&k)),
        )
        .await
        .unwrap();
    assert!(!r.succeeded);
    assert_eq!(s.get(&other).await.unwrap().unwrap().value, v("failure"));
    assert_eq!(
        s.get(&other).await.unwrap().unwrap().mod_revision,
        r.revision
    );
    assert_eq!(s.get(&k).await.unwrap(), None);
}

pub async fn range_pages_in_order(s: &dyn Store, p: &str) {
    for i in (0..25).rev() {
        s.put(&format!("{p}/r/{i:03}"), v("x")).await.unwrap();
    }
    s.put(&format!("{p}/r0"), v("outside")).await.unwrap();
    s.put(&format!("{p}/q"), v("outside")).await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s
            .range(&format!("{p}/r/"), after.as_deref(), 10)
            .await
            .unwrap();
        assert!(page.kvs.len() <= 10);
        after = page.kvs.last().map(|kv| kv.key.clone());
        seen.extend(page.kvs.into_iter().map(|kv| kv.key));
        if !page.more {
            break;
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("{p}/r/{i:03}")).collect();
    assert_eq!(seen, want);
    assert_eq!(s.range_all(&format!("{p}/r/")).await.unwrap().len(), 25);
    let all = s.range(&format!("{p}/"), None, 0).await.unwrap();
    assert_eq!(all.kvs.len(), 27);
    assert!(!all.more);
}

pub async fn watch_is_ordered_gapless_and_resumable(s: &dyn Store, p: &str) {
    let start = s.current_revision().await.unwrap() + 1;
    let k = |i: u32| format!("{p}/w/{i}");
    for i in 0..5 {
        s.put(&k(i), v(&i.to_string())).await.unwrap();
    }
    s.delete(&k(0)).await.unwrap();
    s.put(&format!("{p}/elsewhere"), v("no")).await.unwrap();

    let mut w = s.watch(&format!("{p}/w/"), start).await.unwrap();
    let mut revs = Vec::new();
    for i in 0..5 {
        let ev = next_event(&mut w, Duration::from_secs(5)).await;
        assert_eq!(
            (ev.kind, ev.kv.key.as_str()),
            (EventKind::Put, k(i).as_str())
        );
        revs.push(ev.kv.mod_revision);
    }
    let del = next_event(&mut w, Duration::from_secs(5)).await;
    assert_eq!(
        (del.kind, del.kv.key.as_str()),
        (EventKind::Delete, k(0).as_str())
    );
    revs.push(del.kv.mod_revision);
    assert!(revs.windows(2).all(|w| w[0] < w[1]), "ordered: {revs:?}");

    // Live events follow the replayed history without a gap.
    s.put(&k(9), v("live")).await.unwrap();
    let live = next_event(&mut w, Duration::from_secs(5)).await;
    assert_eq!(live.kv.key, k(9));

    // Resuming from the middle replays exactly the rest.
    let mut resumed = s.watch(&format!("{p}/w/"), revs[3]).await.unwrap();
    let mut keys = Vec::new();
    for _ in 0..4 {
        keys.push(
            next_event(&mut resumed, Duration::from_secs(5))
                .await
                .kv
                .key,
        );
    }
    assert_eq!(keys, vec![k(3), k(4), k(0), k(9)]);

    // A watch from "now" sees only later changes.
    let mut now = s.watch(&format!("{p}/w/"), 0).await.unwrap();
    s.put(&k(7), v("new")).await.unwrap();
    assert_eq!(
        next_event(&mut now, Duration::from_secs(5)).await.kv.key,
        k(7)
    );
}

pub async fn watch_from_compacted_revision_fails_clearly(s: &dyn Store, p: &str) {
    let k = format!("{p}/c");
    let old = s.put(&k, v("1")).await.unwrap();
    s.put(&k, v("2")).await.unwrap();
    let now = s.put(&k, v("3")).await.unwrap();
    s.compact(now).await.unwrap();
    let err = match s.watch(&format!("{p}/"), old).await {
        Err(e) => e,
        // etcd reports compaction on the stream rather than at the call.
        Ok(mut w) => match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
            Ok(Some(Err(e))) => e,
            other => panic!("expected a compaction error, got {other:?}"),
        },
    };
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
    assert!(err.to_string().contains("compacted"));
}

pub async fn leases_expire_and_delete_their_keys(s: &dyn Store, p: &str) {
    let ttl = Duration::from_secs(2);
    let lease = s.lease_grant(ttl).await.unwrap();
    let k = format!("{p}/lease/held");
    s.txn(Txn::new().then(Op::Put {
        key: k.clone(),
        value: v("alive"),
        lease: Some(lease),
    }))
    .await
    .unwrap();
    assert_eq!(s.get(&k).await.unwrap().unwrap().lease, Some(lease));
    let mut w = s.watch(&format!("{p}/lease/"), 0).await.unwrap();

    // Kept alive past its TTL, the key stays.
    let kept_until = Instant::now() + ttl + Duration::from_millis(500);
    while Instant::now() < kept_until {
        s.lease_keepalive(lease).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        s.get(&k).await.unwrap().is_some(),
        "kept-alive lease must not expire"
    );

    // Left alone, it expires and the key's deletion is a watch event.
    let ev = next_event(&mut w, ttl * 4).await;
    assert_eq!(
        (ev.kind, ev.kv.key.as_str()),
        (EventKind::Delete, k.as_str())
    );
    assert_eq!(s.get(&k).await.unwrap(), None);
    assert_eq!(
        s.lease_keepalive(lease).await,
        Err(StoreError::LeaseNotFound(lease))
    );
}

pub async fn revoke_deletes_keys_at_once(s: &dyn Store, p: &str) {
    let lease = s.lease_grant(Duration::from_secs(30)).await.unwrap();
    for i in 0..3 {
        s.txn(Txn::new().then(Op::Put {
            key: format!("{p}/rv/{i}"),
            value: v("x"),
            lease: Some(lease),
        }))
        .await
        .unwrap();
    }
    s.lease_revoke(lease).await.unwrap();
    assert!(s.range_all(&format!("{p}/rv/")).await.unwrap().is_empty());
    assert_eq!(
        s.lease_keepalive(lease).await,
        Err(StoreError::LeaseNotFound(lease))
    );
}

pub async fn concurrent_cas_loses_no_update(s: Arc<dyn Store>, p: &str) {
    let k = format!("{p}/counter");
    s.put(&k, v("0")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let cur = s.get(&k).await.unwrap().unwrap();
                let n: u64 = String::from_utf8(cur.value).unwrap().parse().unwrap();
                if s.update(&k, v(&(n + 1).to_string()), cur.mod_revision)
                    .await
                    .unwrap()
                {
                    return;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.get(&k).await.unwrap().unwrap().value, v("20"));
}

/// A unique key prefix for one check.
pub fn unique_prefix(check: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "/conformance/{check}/{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Generates one `#[tokio::test]` per conformance check for a backend.
/// `$make` is an async expression yielding `(Arc<dyn Store>, guard)`; the guard
/// (e.g. a temp dir or an etcd process) lives until the check ends.
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@one $make, put_get_and_revisions);
        $crate::store_conformance!(@one $make, compare_and_swap);
        $crate::store_conformance!(@one $make, range_pages_in_order);
        $crate::store_conformance!(@one $make, watch_is_ordered_gapless_and_resumable);
        $crate::store_conformance!(@one $make, watch_from_compacted_revision_fails_clearly);
        $crate::store_conformance!(@one $make, leases_expire_and_delete_their_keys);
        $crate::store_conformance!(@one $make, revoke_deletes_keys_at_once);

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_cas_loses_no_update() {
            let (store, _guard) = $make.await;
            let p = $crate::conformance::unique_prefix("concurrent_cas_loses_no_update");
            $crate::conformance::concurrent_cas_loses_no_update(store, &p).await;
        }
    };
    (@one $make:expr, $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let (store, _guard) = $make.await;
            let p = $crate::conformance::unique_prefix(stringify!($check));
            $crate::conformance::$check(&*store, &p).await;
        }
    };
}
