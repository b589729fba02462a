//! One QMP conformance suite, run against the fake server
//! (`tests/conformance_fake.rs`) and a real `qemu-system-x86_64 -machine none`
//! (`tests/e2e_conformance_qemu.rs`). Each check gets a fresh, running target.
#![allow(dead_code)]

use std::any::Any;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use yunhan_qmp::{
    BlockdevAdd, ConnectOptions, EventKind, MigrationCapabilityStatus, MigrationParameters,
    MigrationStatus, Qmp, QmpClient, QmpError, RunState,
};

pub const WAIT: Duration = Duration::from_secs(10);

/// A running QMP endpoint; `guard` owns the server or process.
pub struct Target {
    pub socket: PathBuf,
    /// A scratch directory for files the checks create.
    pub scratch: tempfile::TempDir,
    pub guard: Box<dyn Any + Send>,
}

impl Target {
    pub async fn client(&self) -> QmpClient {
        QmpClient::connect_retry(&self.socket, ConnectOptions::default(), WAIT)
            .await
            .expect("QMP connect")
    }
}

fn class(e: QmpError) -> String {
    match e {
        QmpError::Command { class, .. } => class,
        other => panic!("expected a QMP command error, got {other:?}"),
    }
}

pub async fn greeting_and_version(t: &Target) {
    let q = t.client().await;
    let v = q.query_version().await.unwrap();
    assert_eq!(&v, &q.greeting().version);
    assert!(v.qemu.major >= 10, "{v:?}");
    assert!(q.greeting().capabilities.iter().any(|c| c == "oob"));
}

pub async fn status_running_initially(t: &Target) {
    let q = t.client().await;
    let s = q.query_status().await.unwrap();
    assert_eq!(s.status, RunState::Running);
    assert!(s.running);
}

pub async fn stop_and_cont_emit_events(t: &Target) {
    let q = t.client().await;
    let mut ev = q.events();
    q.stop().await.unwrap();
    ev.wait_for_name("STOP", WAIT).await.unwrap();
    let s = q.query_status().await.unwrap();
    assert_eq!((s.status, s.running), (RunState::Paused, false));
    q.stop().await.expect("stop while paused is accepted");
    q.cont().await.unwrap();
    let e = ev.wait_for(WAIT, |e| e.name != "STOP").await.unwrap();
    assert_eq!(e.kind(), EventKind::Resume, "no second STOP: {e:?}");
    assert_eq!(q.query_status().await.unwrap().status, RunState::Running);
}

pub async fn unknown_command_is_command_not_found(t: &Target) {
    let q = t.client().await;
    let e = q
        .execute_raw("no-such-command", Value::Null)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert_eq!(class(e), "CommandNotFound");
    assert!(msg.contains("no-such-command"), "{msg}");
}

pub async fn negotiation_required_on_the_wire(t: &Target) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let stream = loop {
        match tokio::net::UnixStream::connect(&t.socket).await {
            Ok(s) => break s,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("connect: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let greeting: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert!(greeting["QMP"]["version"]["qemu"]["major"].is_u64());
    let send = |v: Value| {
        let mut s = v.to_string();
        s.push('\n');
        s
    };
    w.write_all(send(json!({"execute": "query-status", "id": "a"})).as_bytes())
        .await
        .unwrap();
    let r: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(r["id"], "a");
    assert_eq!(r["error"]["class"], "CommandNotFound");
    w.write_all(send(json!({"execute": "qmp_capabilities", "id": {"n": 1}})).as_bytes())
        .await
        .unwrap();
    let r: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(r, json!({"return": {}, "id": {"n": 1}}));
    w.write_all(send(json!({"execute": "qmp_capabilities", "id": 2})).as_bytes())
        .await
        .unwrap();
    let r: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(r["error"]["class"], "CommandNotFound");
    w.write_all(send(json!({"execute": "query-status", "id": 3})).as_bytes())
        .await
        .unwrap();
    let r: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(r["return"]["status"], "running");
}

pub async fn human_monitor_command(t: &Target) {
    let q = t.client().await;
    let out = q.human_monitor_command("info status").await.unwrap();
    assert!(out.contains("VM status: running"), "{out:?}");
}

pub async fn powerdown_and_reset_emit_events(t: &Target) {
    let q = t.client().await;
    let mut ev = q.events();
    q.system_reset().await.unwrap();
    let e = ev.wait_for_name("RESET", WAIT).await.unwrap();
    assert_eq!(
        e.kind(),
        EventKind::Reset {
            guest: false,
            reason: "host-qmp-system-reset".into()
        }
    );
    q.system_powerdown().await.unwrap();
    ev.wait_for_name("POWERDOWN", WAIT).await.unwrap();
}

pub async fn blockdev_lifecycle(t: &Target) {
    let q = t.client().await;
    let img = t.scratch.path().join("disk.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let file = BlockdevAdd::file("f0", img.to_str().unwrap());
    q.blockdev_add(file.clone()).await.unwrap();
    assert_eq!(
        class(q.blockdev_add(file).await.unwrap_err()),
        "GenericError"
    );
    q.blockdev_add(BlockdevAdd::format("raw", "r0", "f0"))
        .await
        .unwrap();
    let busy = q.blockdev_del("f0").await.unwrap_err();
    assert_eq!(class(busy), "GenericError");
    q.block_resize("r0", 2 << 20).await.unwrap();
    assert_eq!(
        class(q.block_resize("nope", 1 << 20).await.unwrap_err()),
        "GenericError"
    );
    q.blockdev_del("r0").await.unwrap();
    q.blockdev_del("f0").await.unwrap();
    assert_eq!(
        class(q.blockdev_del("f0").await.unwrap_err()),
        "GenericError"
    );
}

pub async fn device_del_unknown_is_device_not_found(t: &Target) {
    let q = t.client().await;
    assert_eq!(
        class(q.device_del("nope").await.unwrap_err()),
        "DeviceNotFound"
    );
}

pub async fn migration_capabilities_and_parameters(t: &Target) {
    let q = t.client().await;
    q.migrate_set_capabilities(&[MigrationCapabilityStatus::new("events", true)])
        .await
        .unwrap();
    let e = q
        .migrate_set_capabilities(&[MigrationCapabilityStatus::new("bogus", true)])
        .await
        .unwrap_err();
    assert_eq!(class(e), "GenericError");
    let params = MigrationParameters {
        max_bandwidth: Some(1_000_000_000),
        downtime_limit: Some(500),
        ..Default::default()
    };
    q.migrate_set_parameters(params).await.unwrap();
    let p = q
        .execute(&yunhan_qmp::commands::QueryMigrateParameters)
        .await
        .unwrap();
    assert_eq!(p["max-bandwidth"], 1_000_000_000u64);
    assert_eq!(p["downtime-limit"], 500);
}

pub async fn migrate_to_file_completes(t: &Target) {
    let q = t.client().await;
    assert_eq!(q.query_migrate().await.unwrap().status, None);
    q.migrate_cancel()
        .await
        .expect("cancel with nothing to cancel is fine");
    q.migrate_set_capabilities(&[MigrationCapabilityStatus::new("events", true)])
        .await
        .unwrap();
    let mut ev = q.events();
    let out = t.scratch.path().join("state.mig");
    q.migrate(&format!("file:{}", out.display())).await.unwrap();
    let mut seen = Vec::new();
    while seen.last() != Some(&MigrationStatus::Completed) {
        let e = ev.wait_for_name("MIGRATION", WAIT).await.unwrap();
        let EventKind::Migration { status } = e.kind() else {
            unreachable!()
        };
        assert_ne!(status, MigrationStatus::Failed, "{e:?}");
        seen.push(status);
    }
    assert_eq!(seen.first(), Some(&MigrationStatus::Setup), "{seen:?}");
    let info = q.query_migrate().await.unwrap();
    assert_eq!(info.status, Some(MigrationStatus::Completed), "{info:?}");
    assert!(info.total_time.is_some());
    assert_eq!(
        q.query_status().await.unwrap().status,
        RunState::Postmigrate
    );
}

pub async fn concurrent_commands_get_their_own_replies(t: &Target) {
    let q = t.client().await;
    let mut ev = q.events();
    let status = async {
        for _ in 0..10 {
            assert_eq!(q.query_status().await.unwrap().status, RunState::Running);
        }
    };
    let hmp = async {
        for _ in 0..10 {
            assert!(q
                .human_monitor_command("info status")
                .await
                .unwrap()
                .contains("running"));
        }
    };
    let version = async {
        for _ in 0..10 {
            q.query_version().await.unwrap();
            q.system_reset().await.unwrap();
        }
    };
    tokio::join!(status, hmp, version);
    for _ in 0..10 {
        assert_eq!(ev.recv().await.unwrap().name, "RESET");
    }
}

pub async fn quit_closes_the_connection(t: &Target) {
    let q = t.client().await;
    let mut ev = q.events();
    q.quit().await.unwrap();
    let e = ev.wait_for_name("SHUTDOWN", WAIT).await.unwrap();
    assert_eq!(
        e.kind(),
        EventKind::Shutdown {
            guest: false,
            reason: "host-qmp-quit".into()
        }
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while !q.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "connection still open after quit"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(
        q.query_status().await,
        Err(QmpError::Disconnected)
    ));
    let end = tokio::time::timeout(WAIT, ev.recv())
        .await
        .expect("event stream ends");
    assert!(matches!(end, Err(QmpError::Disconnected)), "{end:?}");
}

/// Generates one `#[tokio::test]` per check, each on a fresh target from `$start`.
#[macro_export]
macro_rules! conformance_suite {
    ($start:path) => {
        $crate::conformance_suite!(@each $start;
            greeting_and_version,
            status_running_initially,
            stop_and_cont_emit_events,
            unknown_command_is_command_not_found,
            negotiation_required_on_the_wire,
            human_monitor_command,
            powerdown_and_reset_emit_events,
            blockdev_lifecycle,
            device_del_unknown_is_device_not_found,
            migration_capabilities_and_parameters,
            migrate_to_file_completes,
            concurrent_commands_get_their_own_replies,
            quit_closes_the_connection
        );
    };
    (@each $start:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let target = $start().await;
                conformance::$name(&target).await;
            }
        )*
    };
}
