//! The conformance suite against the local driver (a temp dir of sparse RAW
//! files), plus what only the local driver promises.
use std::sync::Arc;

use yunhan_storage::{LocalDriver, SnapshotMethod, VolumeDriver};

async fn make() -> (Arc<dyn VolumeDriver>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let d = LocalDriver::open(dir.path()).await.unwrap();
    (Arc::new(d), dir)
}

yunhan_storage::volume_conformance!(make());

#[tokio::test]
async fn snapshot_method_matches_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let d = LocalDriver::open(dir.path()).await.unwrap();
    // Decide independently: does this file system reflink?
    let a = dir.path().join("probe-a");
    std::fs::write(&a, b"x").unwrap();
    let reflinks = std::process::Command::new("cp")
        .arg("--reflink=always")
        .arg(&a)
        .arg(dir.path().join("probe-b"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    let want = if reflinks {
        SnapshotMethod::Reflink
    } else {
        SnapshotMethod::SparseCopy
    };
    assert_eq!(d.snapshot_method(), want);
}

#[tokio::test]
async fn snapshots_of_sparse_volumes_stay_sparse() {
    let (d, _dir) = make().await;
    d.create("big", 10 << 30).await.unwrap();
    yunhan_storage::conformance::write(&*d, "big", 0x61, 5 << 30, 1 << 20).await;
    d.snapshot("big", "s").await.unwrap();
    d.restore("big", "s").await.unwrap();
    let u = d.usage("big").await.unwrap();
    assert_eq!(u.logical_bytes, 10 << 30);
    assert!(
        u.physical_bytes <= 2 << 20,
        "restored copy is sparse: {u:?}"
    );
    let c = d
        .clone_from_snapshot("big", "s", "copy", None)
        .await
        .unwrap();
    assert_eq!(c.size_bytes, 10 << 30);
    assert!(d.usage("copy").await.unwrap().physical_bytes <= 2 << 20);
}

#[tokio::test]
async fn pool_usage_reports_the_file_system() {
    let (d, dir) = make().await;
    d.create("a", 1 << 40).await.unwrap();
    let u = d.pool_usage().await.unwrap();
    let st = nix_statvfs(dir.path());
    assert_eq!(u.capacity_bytes, st.0);
    assert!(u.logical_allocated_bytes == 1 << 40);
    assert!(u.overcommit_ratio > 0.0);
}

fn nix_statvfs(p: &std::path::Path) -> (u64,) {
    let out = std::process::Command::new("stat")
        .args(["-f", "-c", "%b %S"])
        .arg(p)
        .output()
        .unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    let v: Vec<u64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0] * v[1],)
}
