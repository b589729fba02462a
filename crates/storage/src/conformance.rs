//! The one behavioural suite every [`VolumeDriver`] must pass. Each check
//! works under its own name prefix, so checks can share one backend (a real
//! Ceph pool) and run concurrently. Data goes through QEMU's own block layer
//! (`qemu-io` on [`VolumeDriver::qemu_drive`]): for Ceph that is librbd, the
//! path a VM uses. Instantiate with [`volume_conformance!`](crate::volume_conformance).

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use crate::sizes::{GIB, MAX_VOLUME_BYTES, MIB, SECTOR};
use crate::{QemuDisk, StorageError, VolumeDriver};

/// Runs `qemu-io -f raw` commands against a disk; panics with its output on failure.
pub async fn qemu_io(disk: &QemuDisk, cmds: &[String]) -> String {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw"]);
    for cmd in cmds {
        c.arg("-c").arg(cmd);
    }
    c.arg(disk.filename()).stdin(Stdio::null());
    let out = c
        .output()
        .await
        .expect("run qemu-io (scripts/setup installs qemu-utils)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !stdout.contains("failed"),
        "qemu-io {cmds:?} on {}: {}\n{stdout}{}",
        disk.filename(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.into_owned()
}

/// Writes `len` bytes of `byte` at `offset`.
pub async fn write(d: &dyn VolumeDriver, vol: &str, byte: u8, offset: u64, len: u64) {
    let disk = d.qemu_drive(vol).await.unwrap();
    qemu_io(&disk, &[format!("write -P {byte:#x} {offset} {len}")]).await;
}

/// Asserts `len` bytes at `offset` all equal `byte`.
pub async fn expect(d: &dyn VolumeDriver, vol: &str, byte: u8, offset: u64, len: u64) {
    let disk = d.qemu_drive(vol).await.unwrap();
    qemu_io(&disk, &[format!("read -P {byte:#x} {offset} {len}")]).await;
}

fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str) {
    match r {
        Err(e @ StorageError::NotFound { .. }) => {
            assert!(e.to_string().contains("does not exist"), "{e}");
        }
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

fn assert_invalid<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str, mentions: &str) {
    match r {
        Err(e @ StorageError::Invalid { .. }) => {
            assert!(
                e.to_string().contains(mentions),
                "{what}: `{e}` should mention `{mentions}`"
            );
        }
        other => panic!("{what}: expected Invalid, got {other:?}"),
    }
}

/// Volumes of this check (the backend may be shared).
async fn mine(d: &dyn VolumeDriver, p: &str) -> Vec<String> {
    let mut v: Vec<String> = d
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(p))
        .collect();
    v.sort();
    v
}

pub async fn create_info_list_and_thin_usage(d: &dyn VolumeDriver, p: &str) {
    let name = format!("{p}-a");
    let info = d.create(&name, GIB).await.unwrap();
    assert_eq!((info.name.as_str(), info.size_bytes), (name.as_str(), GIB));
    assert_eq!(d.info(&name).await.unwrap().size_bytes, GIB);
    assert_eq!(mine(d, p).await, vec![name.clone()]);
    match d.create(&name, GIB).await {
        Err(StorageError::AlreadyExists { .. }) => {}
        other => panic!("second create: expected AlreadyExists, got {other:?}"),
    }
    // Thin: nothing is allocated for a fresh volume, and it reads as zeros.
    let u = d.usage(&name).await.unwrap();
    assert_eq!(u.logical_bytes, GIB);
    assert!(
        u.physical_bytes < MIB,
        "fresh volume uses {} bytes",
        u.physical_bytes
    );
    expect(d, &name, 0, 0, MIB).await;
    // What QEMU gets is usable by QEMU.
    let disk = d.qemu_drive(&name).await.unwrap();
    let [proto, fmt] = disk.blockdev_nodes("vol0");
    assert_eq!(fmt["driver"], "raw");
    assert_eq!(fmt["file"], "vol0-file");
    assert_eq!(proto["node-name"], "vol0-file");
    assert_eq!(
        proto["driver"],
        if d.kind() == "local" { "file" } else { "rbd" }
    );
    d.delete(&name).await.unwrap();
    assert!(mine(d, p).await.is_empty());
}

pub async fn bad_input_is_refused_and_leaks_nothing(d: &dyn VolumeDriver, p: &str) {
    let name = format!("{p}-v");
    assert_invalid(d.create(&name, 0).await, "size 0", "greater than 0");
    assert_invalid(
        d.create(&name, MAX_VOLUME_BYTES + GIB).await,
        "absurd size",
        "limit",
    );
    assert_invalid(d.create(&name, u64::MAX).await, "u64::MAX", "limit");
    assert_invalid(d.create(&name, 1000).await, "partial sector", "sector");
    for bad in ["", "../escape", "a/b", "-rf", ".hidden", "sp ace", "x@y"] {
        assert_invalid(d.create(bad, GIB).await, "bad name", "name");
    }
    assert!(
        mine(d, p).await.is_empty(),
        "refused creates left volumes behind"
    );

    let missing = format!("{p}-missing");
    assert_not_found(d.info(&missing).await, "info");
    assert_not_found(d.delete(&missing).await, "delete");
    assert_not_found(d.extend(&missing, 2 * GIB).await, "extend");
    assert_not_found(d.snapshot(&missing, "s").await, "snapshot");
    assert_not_found(d.usage(&missing).await, "usage");
    assert_not_found(d.qemu_drive(&missing).await, "qemu_drive");
    assert_not_found(d.restore(&missing, "s").await, "restore");
    assert_not_found(
        d.clone_for_root(&format!("{p}-noimage"), &name, GIB).await,
        "clone_for_root",
    );
    assert_not_found(
        d.delete_image(&format!("{p}-noimage")).await,
        "delete_image",
    );
    assert_not_found(
        d.import_image(Path::new("/nonexistent/yunhan.img"), &format!("{p}-img"))
            .await,
        "import of a missing file",
    );

    d.create(&name, GIB).await.unwrap();
    assert_invalid(d.extend(&name, GIB / 2).await, "shrink", "shrinking");
    assert_invalid(d.extend(&name, 0).await, "extend to 0", "greater than 0");
    assert_invalid(
        d.extend(&name, MAX_VOLUME_BYTES * 2).await,
        "absurd extend",
        "limit",
    );
    assert_eq!(
        d.info(&name).await.unwrap().size_bytes,
        GIB,
        "refused resizes change nothing"
    );
    assert_not_found(
        d.restore(&name, "nope").await,
        "restore of a missing snapshot",
    );
    assert_not_found(
        d.delete_snapshot(&name, "nope").await,
        "delete of a missing snapshot",
    );
    assert_not_found(
        d.clone_from_snapshot(&name, "nope", &format!("{p}-c"), None)
            .await,
        "clone of a missing snapshot",
    );
    assert_invalid(
        d.snapshot(&name, "bad/snap").await,
        "bad snapshot name",
        "name",
    );
    d.snapshot(&name, "s1").await.unwrap();
    match d.snapshot(&name, "s1").await {
        Err(StorageError::AlreadyExists { .. }) => {}
        other => panic!("duplicate snapshot: expected AlreadyExists, got {other:?}"),
    }
    assert_invalid(
        d.clone_from_snapshot(&name, "s1", &format!("{p}-c"), Some(GIB / 2))
            .await,
        "clone smaller than its snapshot",
        "shrinking",
    );
    match d.clone_from_snapshot(&name, "s1", &name, None).await {
        Err(StorageError::AlreadyExists { .. }) => {}
        other => panic!("clone onto an existing name: expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        mine(d, p).await,
        vec![name.clone()],
        "refused clones left volumes behind"
    );
    let snaps: Vec<String> = d
        .list_snapshots(&name)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        snaps,
        vec!["s1".to_string()],
        "refused snapshots left snapshots behind"
    );
    // A refused clone must not leave the snapshot pinned: it deletes cleanly.
    d.delete_snapshot(&name, "s1").await.unwrap();
    d.delete(&name).await.unwrap();
    assert!(mine(d, p).await.is_empty());
}

pub async fn extend_grows_and_refuses_shrink(d: &dyn VolumeDriver, p: &str) {
    let name = format!("{p}-x");
    d.create(&name, 64 * MIB).await.unwrap();
    write(d, &name, 0x5a, 0, MIB).await;
    let info = d.extend(&name, 20 * GIB).await.unwrap();
    assert_eq!(info.size_bytes, 20 * GIB);
    assert_eq!(d.usage(&name).await.unwrap().logical_bytes, 20 * GIB);
    // Data survives, the new space is zeros and writable at the far end.
    expect(d, &name, 0x5a, 0, MIB).await;
    expect(d, &name, 0, 20 * GIB - MIB, MIB).await;
    write(d, &name, 0x77, 20 * GIB - MIB, MIB).await;
    expect(d, &name, 0x77, 20 * GIB - MIB, MIB).await;
    // Same size is a no-op; smaller is refused.
    assert_eq!(
        d.extend(&name, 20 * GIB).await.unwrap().size_bytes,
        20 * GIB
    );
    assert_invalid(
        d.extend(&name, 20 * GIB - SECTOR).await,
        "shrink",
        "shrinking",
    );
    assert!(
        d.usage(&name).await.unwrap().physical_bytes < 20 * GIB / 10,
        "still thin"
    );
    d.delete(&name).await.unwrap();
}

pub async fn snapshot_restore_roundtrip(d: &dyn VolumeDriver, p: &str) {
    let name = format!("{p}-s");
    d.create(&name, 64 * MIB).await.unwrap();
    write(d, &name, 0xaa, 0, 4 * MIB).await;
    let s = d.snapshot(&name, "before").await.unwrap();
    assert_eq!((s.name.as_str(), s.size_bytes), ("before", 64 * MIB));
    write(d, &name, 0xbb, 0, 2 * MIB).await;
    d.extend(&name, 128 * MIB).await.unwrap();
    d.snapshot(&name, "after").await.unwrap();
    let snaps = d.list_snapshots(&name).await.unwrap();
    let mut names: Vec<&str> = snaps.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["after", "before"]);

    // Restore brings back the content and the size of the snapshot.
    d.restore(&name, "before").await.unwrap();
    expect(d, &name, 0xaa, 0, 4 * MIB).await;
    assert_eq!(d.info(&name).await.unwrap().size_bytes, 64 * MIB);
    // And forward again; snapshots are unchanged by restores.
    d.restore(&name, "after").await.unwrap();
    expect(d, &name, 0xbb, 0, 2 * MIB).await;
    expect(d, &name, 0xaa, 2 * MIB, 2 * MIB).await;
    assert_eq!(d.info(&name).await.unwrap().size_bytes, 128 * MIB);
    d.delete_snapshot(&name, "after").await.unwrap();
    assert_not_found(
        d.restore(&name, "after").await,
        "restore of a deleted snapshot",
    );
    d.restore(&name, "before").await.unwrap();
    expect(d, &name, 0xaa, 0, 4 * MIB).await;
    d.delete(&name).await.unwrap();
}

pub async fn clone_from_snapshot_is_independent(d: &dyn VolumeDriver, p: &str) {
    let src = format!("{p}-src");
    let dst = format!("{p}-dst");
    d.create(&src, 64 * MIB).await.unwrap();
    write(d, &src, 0x11, 0, 8 * MIB).await;
    d.snapshot(&src, "gold").await.unwrap();
    write(d, &src, 0x22, 0, MIB).await;

    let c = d
        .clone_from_snapshot(&src, "gold", &dst, Some(256 * MIB))
        .await
        .unwrap();
    assert_eq!(c.size_bytes, 256 * MIB);
    expect(d, &dst, 0x11, 0, 8 * MIB).await;
    write(d, &dst, 0x33, MIB, MIB).await;
    // Neither side sees the other's writes.
    expect(d, &src, 0x22, 0, MIB).await;
    expect(d, &src, 0x11, MIB, MIB).await;
    expect(d, &dst, 0x11, 0, MIB).await;
    expect(d, &dst, 0x33, MIB, MIB).await;
    let u = d.usage(&dst).await.unwrap();
    assert_eq!(u.logical_bytes, 256 * MIB);

    // The snapshot is either independent of the clone (local copies) or
    // pinned by it (Ceph CoW): then deleting it — or its volume — is InUse.
    match d.delete_snapshot(&src, "gold").await {
        Ok(()) => {}
        Err(e @ StorageError::InUse { .. }) => {
            assert!(
                e.to_string().contains(&dst),
                "InUse should name the clone: {e}"
            );
            match d.delete(&src).await {
                Err(StorageError::InUse { .. }) => {}
                other => panic!("deleting a volume whose snapshot has clones: {other:?}"),
            }
            expect(d, &src, 0x22, 0, MIB).await;
        }
        Err(e) => panic!("delete_snapshot: {e}"),
    }
    expect(d, &dst, 0x11, 2 * MIB, MIB).await;
    d.delete(&dst).await.unwrap();
    d.delete(&src).await.unwrap();
    assert!(mine(d, p).await.is_empty());
}

pub async fn import_image_once_and_clone_for_root(d: &dyn VolumeDriver, p: &str) {
    // A qcow2 source proves import converts to RAW.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("image.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&src)
        .arg("64M")
        .status()
        .await
        .unwrap();
    assert!(st.success());
    let out = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 0xc4 0 3M",
            "-c",
            "write -P 0xc5 32M 1M",
        ])
        .arg(&src)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let base = format!("{p}-img");
    assert!(
        d.import_image(&src, &base).await.unwrap(),
        "first import imports"
    );
    assert!(
        !d.import_image(&src, &base).await.unwrap(),
        "second import is a no-op"
    );
    assert!(mine(d, p).await.is_empty(), "base images are not volumes");

    let root = format!("{p}-root");
    let t = std::time::Instant::now();
    let v = d.clone_for_root(&base, &root, 20 * GIB).await.unwrap();
    let took = t.elapsed();
    assert_eq!(v.size_bytes, 20 * GIB);
    let u = d.usage(&root).await.unwrap();
    assert_eq!(u.logical_bytes, 20 * GIB);
    assert!(
        u.physical_bytes <= 8 * MIB,
        "a new root disk is thin: {u:?} ({took:?})"
    );
    expect(d, &root, 0xc4, 0, 3 * MIB).await;
    expect(d, &root, 0xc5, 32 * MIB, MIB).await;
    expect(d, &root, 0, 64 * MIB, MIB).await;
    // Writes to one root disk touch neither the image nor its siblings.
    write(d, &root, 0xee, 0, MIB).await;
    let root2 = format!("{p}-root2");
    d.clone_for_root(&base, &root2, 64 * MIB).await.unwrap();
    expect(d, &root2, 0xc4, 0, MIB).await;
    assert_invalid(
        d.clone_for_root(&base, &format!("{p}-tiny"), 32 * MIB)
            .await,
        "root disk smaller than its image",
        "smaller",
    );
    match d.clone_for_root(&base, &root2, GIB).await {
        Err(StorageError::AlreadyExists { .. }) => {}
        other => panic!("root disk onto an existing name: {other:?}"),
    }
    assert_eq!(mine(d, p).await, vec![root.clone(), root2.clone()]);

    // The image is either independent (local) or pinned by its clones (Ceph).
    match d.delete_image(&base).await {
        Ok(()) => {}
        Err(StorageError::InUse { .. }) => {
            d.delete(&root).await.unwrap();
            d.delete(&root2).await.unwrap();
            d.delete_image(&base).await.unwrap();
        }
        Err(e) => panic!("delete_image: {e}"),
    }
    let _ = d.delete(&root).await;
    let _ = d.delete(&root2).await;
    assert!(mine(d, p).await.is_empty());
    assert_not_found(d.clone_for_root(&base, &root, GIB).await, "deleted image");
}

pub async fn usage_and_pool_figures(d: &dyn VolumeDriver, p: &str) {
    let name = format!("{p}-u");
    let before = d.pool_usage().await.unwrap();
    assert!(before.capacity_bytes > 0);
    d.create(&name, 10 * GIB).await.unwrap();
    write(d, &name, 0x42, 0, 8 * MIB).await;
    let u = d.usage(&name).await.unwrap();
    assert_eq!(u.logical_bytes, 10 * GIB);
    assert!(
        (8 * MIB..=16 * MIB).contains(&u.physical_bytes),
        "8 MiB written, physical {}",
        u.physical_bytes
    );
    let after = d.pool_usage().await.unwrap();
    assert!(
        after.logical_allocated_bytes >= 10 * GIB,
        "the pool counts the volume's logical size: {after:?}"
    );
    let ratio = after.logical_allocated_bytes as f64 / after.capacity_bytes as f64;
    assert!((after.overcommit_ratio - ratio).abs() < 1e-9, "{after:?}");
    assert_eq!(
        after.warning,
        after.physical_used_bytes * 100 >= after.capacity_bytes * 80
    );
    assert!(
        after.physical_used_bytes <= after.capacity_bytes,
        "{after:?}"
    );
    d.delete(&name).await.unwrap();
}

pub async fn delete_removes_snapshots_too(d: &dyn VolumeDriver, p: &str) {
    let name = format!("{p}-d");
    d.create(&name, 16 * MIB).await.unwrap();
    write(d, &name, 0x99, 0, MIB).await;
    d.snapshot(&name, "one").await.unwrap();
    d.snapshot(&name, "two").await.unwrap();
    d.delete(&name).await.unwrap();
    assert_not_found(d.info(&name).await, "info after delete");
    assert_not_found(d.list_snapshots(&name).await, "snapshots after delete");
    // The name is free again, and the new volume starts empty.
    d.create(&name, 16 * MIB).await.unwrap();
    assert!(d.list_snapshots(&name).await.unwrap().is_empty());
    expect(d, &name, 0, 0, MIB).await;
    d.delete(&name).await.unwrap();
}

/// A unique, valid volume-name prefix for one check.
pub fn unique_prefix(check: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let short: String = check.split('_').filter_map(|w| w.chars().next()).collect();
    format!(
        "t{short}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every check, by name, for runners that drive them themselves.
pub const CHECKS: &[&str] = &[
    "create_info_list_and_thin_usage",
    "bad_input_is_refused_and_leaks_nothing",
    "extend_grows_and_refuses_shrink",
    "snapshot_restore_roundtrip",
    "clone_from_snapshot_is_independent",
    "import_image_once_and_clone_for_root",
    "usage_and_pool_figures",
    "delete_removes_snapshots_too",
];

/// Runs check `name` (one of [`CHECKS`]).
pub async fn run_check(name: &str, d: &dyn VolumeDriver, p: &str) {
    match name {
        "create_info_list_and_thin_usage" => create_info_list_and_thin_usage(d, p).await,
        "bad_input_is_refused_and_leaks_nothing" => {
            bad_input_is_refused_and_leaks_nothing(d, p).await
        }
        "extend_grows_and_refuses_shrink" => extend_grows_and_refuses_shrink(d, p).await,
        "snapshot_restore_roundtrip" => snapshot_restore_roundtrip(d, p).await,
        "clone_from_snapshot_is_independent" => clone_from_snapshot_is_independent(d, p).await,
        "import_image_once_and_clone_for_root" => import_image_once_and_clone_for_root(d, p).await,
        "usage_and_pool_figures" => usage_and_pool_figures(d, p).await,
        "delete_removes_snapshots_too" => delete_removes_snapshots_too(d, p).await,
        other => panic!("no conformance check named {other}"),
    }
}

/// Runs every check concurrently against one driver (for expensive shared
/// backends), then fails naming every check that panicked.
pub async fn run_all(d: std::sync::Arc<dyn VolumeDriver>) {
    let mut tasks = Vec::new();
    for &check in CHECKS {
        let d = d.clone();
        tasks.push((
            check,
            tokio::spawn(async move {
                let t = std::time::Instant::now();
                run_check(check, &*d, &unique_prefix(check)).await;
                eprintln!("conformance {check}: ok in {:.1?}", t.elapsed());
            }),
        ));
    }
    let mut failed = Vec::new();
    for (check, t) in tasks {
        if t.await.is_err() {
            failed.push(check);
        }
    }
    assert!(failed.is_empty(), "conformance checks failed: {failed:?}");
}

/// Generates the conformance tests for a driver. `$make` is an async
/// expression yielding `(Arc<dyn VolumeDriver>, guard)`; the guard (a temp
/// dir, a cluster) lives until the test ends.
///
/// - `volume_conformance!(make())`: one `#[tokio::test]` per check.
/// - `volume_conformance!(all e2e_name, make(), also = [f, g])`: one test
///   that runs every check concurrently on a single backend (a Ceph cluster
///   is too costly to start per test, and nextest runs each test in its own
///   process), alongside the backend-specific checks `f(&guard)`, `g(&guard)`
///   (run concurrently too).
#[macro_export]
macro_rules! volume_conformance {
    (all $name:ident, $make:expr $(, also = [$($extra:path),* $(,)?])?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $name() {
            let (driver, guard) = $make.await;
            let extras = async {
                $(tokio::join!($( $extra(&guard) ),*);)?
            };
            tokio::join!(extras, $crate::conformance::run_all(driver));
            drop(guard);
        }
    };
    ($make:expr) => {
        $crate::volume_conformance!(@one $make, create_info_list_and_thin_usage);
        $crate::volume_conformance!(@one $make, bad_input_is_refused_and_leaks_nothing);
        $crate::volume_conformance!(@one $make, extend_grows_and_refuses_shrink);
        $crate::volume_conformance!(@one $make, snapshot_restore_roundtrip);
        $crate::volume_conformance!(@one $make, clone_from_snapshot_is_independent);
        $crate::volume_conformance!(@one $make, import_image_once_and_clone_for_root);
        $crate::volume_conformance!(@one $make, usage_and_pool_figures);
        $crate::volume_conformance!(@one $make, delete_removes_snapshots_too);
    };
    (@one $make:expr, $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let (driver, _guard) = $make.await;
            let p = $crate::conformance::unique_prefix(stringify!($check));
            $crate::conformance::$check(&*driver, &p).await;
        }
    };
}
