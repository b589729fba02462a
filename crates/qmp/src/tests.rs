//! Unit tests of the client against the fake server, and of the wire types.
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use crate::commands::{self as c, Command};
use crate::fake::{FakeConfig, FakeQmpServer};
use crate::*;

const WAIT: Duration = Duration::from_secs(5);

async fn pair(config: FakeConfig) -> (FakeQmpServer, QmpClient) {
    let server = FakeQmpServer::start_with(config).await.unwrap();
    let client = QmpClient::connect(server.socket_path()).await.unwrap();
    (server, client)
}

fn args<C: Command>(cmd: &C) -> Value {
    serde_json::to_value(cmd).unwrap()
}

#[test]
fn commands_serialise_like_qapi() {
    assert_eq!(args(&c::QueryStatus), Value::Null);
    assert_eq!(
        args(
            &DeviceAdd::new("virtio-blk-pci", "disk1")
                .prop("drive", "vol1")
                .prop("bootindex", 1)
        ),
        json!({"driver": "virtio-blk-pci", "id": "disk1", "drive": "vol1", "bootindex": 1})
    );
    assert_eq!(
        args(&BlockdevAdd::file("f", "/x.raw").read_only(true)),
        json!({"driver": "file", "node-name": "f", "filename": "/x.raw", "read-only": true})
    );
    assert_eq!(
        args(&c::BlockResize {
            node_name: "n".into(),
            size: 5
        }),
        json!({"node-name": "n", "size": 5})
    );
    assert_eq!(
        args(&c::HumanMonitorCommand {
            command_line: "info status".into()
        }),
        json!({"command-line": "info status"})
    );
    let mut p = MigrationParameters {
        max_bandwidth: Some(10),
        ..Default::default()
    };
    p.other.insert("announce-rounds".into(), 3.into());
    assert_eq!(
        args(&c::MigrateSetParameters(p)),
        json!({"max-bandwidth": 10, "announce-rounds": 3})
    );
    assert_eq!(
        args(&c::MigrateSetCapabilities {
            capabilities: vec![MigrationCapabilityStatus::new("postcopy-ram", true)]
        }),
        json!({"capabilities": [{"capability": "postcopy-ram", "state": true}]})
    );
}

#[test]
fn replies_and_events_parse() {
    let info: MigrationInfo = serde_json::from_value(json!({
        "status": "postcopy-active", "total-time": 12, "ram": {"transferred": 7, "mbps": 1.5},
        "some-new-field": true
    }))
    .unwrap();
    assert_eq!(info.status, Some(MigrationStatus::PostcopyActive));
    assert_eq!(info.ram.unwrap().transferred, 7);
    let s: StatusInfo =
        serde_json::from_value(json!({"status": "brand-new", "running": false})).unwrap();
    assert_eq!(s.status, RunState::Unknown);
    let ev: Event = serde_json::from_value(json!({"event": "DEVICE_DELETED",
        "data": {"device": "d1", "path": "/machine/peripheral/d1"},
        "timestamp": {"seconds": 1, "microseconds": 2}}))
    .unwrap();
    assert_eq!(
        ev.kind(),
        EventKind::DeviceDeleted {
            device: Some("d1".into()),
            path: "/machine/peripheral/d1".into()
        }
    );
    let ev: Event =
        serde_json::from_value(json!({"event": "MIGRATION", "data": {"status": "completed"}}))
            .unwrap();
    assert_eq!(
        ev.kind(),
        EventKind::Migration {
            status: MigrationStatus::Completed
        }
    );
}

#[tokio::test]
async fn device_hotplug_lifecycle() {
    let (server, q) = pair(FakeConfig::default()).await;
    let mut ev = q.events();
    q.blockdev_add(BlockdevAdd::null("vol1", 1 << 30))
        .await
        .unwrap();
    q.device_add(DeviceAdd::new("virtio-blk-pci", "disk1").prop("drive", "vol1"))
        .await
        .unwrap();
    let dup = q
        .device_add(DeviceAdd::new("virtio-blk-pci", "disk1"))
        .await
        .unwrap_err();
    assert_eq!(dup.class(), Some("GenericError"));
    let missing = q
        .device_add(DeviceAdd::new("virtio-blk-pci", "d2").prop("drive", "nope"))
        .await;
    assert_eq!(missing.unwrap_err().class(), Some("GenericError"));
    assert_eq!(server.devices(), vec!["disk1".to_string()]);
    // The node is in use until the device is gone.
    assert!(q.blockdev_del("vol1").await.is_err());
    q.device_del("disk1").await.unwrap();
    let e = ev.wait_for_name("DEVICE_DELETED", WAIT).await.unwrap();
    assert_eq!(
        e.kind(),
        EventKind::DeviceDeleted {
            device: Some("disk1".into()),
            path: "/machine/peripheral/disk1".into()
        }
    );
    assert!(server.devices().is_empty());
    q.block_resize("vol1", 2 << 30).await.unwrap();
    assert_eq!(server.blockdev("vol1").unwrap()["size"], 2u64 << 30);
    q.blockdev_del("vol1").await.unwrap();
    assert!(server.blockdevs().is_empty());
}

#[tokio::test]
async fn device_del_needs_a_cooperating_guest() {
    let (server, q) = pair(FakeConfig {
        device_del_delay: None,
        ..Default::default()
    })
    .await;
    q.device_add(DeviceAdd::new("virtio-net-pci", "nic1"))
        .await
        .unwrap();
    let mut ev = q.events();
    q.device_del("nic1").await.unwrap();
    let r = ev
        .wait_for_name("DEVICE_DELETED", Duration::from_millis(200))
        .await;
    assert!(matches!(r, Err(QmpError::Timeout { .. })), "{r:?}");
    assert_eq!(server.devices(), vec!["nic1".to_string()]);
}

#[tokio::test]
async fn guest_powerdown_shuts_down_and_disconnects() {
    let (server, q) = pair(FakeConfig::default()).await;
    let mut ev = q.events();
    q.system_powerdown().await.unwrap();
    assert_eq!(ev.recv().await.unwrap().kind(), EventKind::Powerdown);
    let e = ev.wait_for_name("SHUTDOWN", WAIT).await.unwrap();
    assert_eq!(
        e.kind(),
        EventKind::Shutdown {
            guest: true,
            reason: "guest-shutdown".into()
        }
    );
    assert!(matches!(ev.recv().await, Err(QmpError::Disconnected)));
    assert!(q.is_closed());
    assert!(server.has_exited());
    assert!(matches!(
        q.query_status().await,
        Err(QmpError::Disconnected)
    ));
    assert!(matches!(
        q.events().recv().await,
        Err(QmpError::Disconnected)
    ));
}

#[tokio::test]
async fn shutdown_without_exit_keeps_the_monitor() {
    let config = FakeConfig {
        exit_on_shutdown: false,
        ..Default::default()
    };
    let (server, q) = pair(config).await;
    let mut ev = q.events();
    q.system_powerdown().await.unwrap();
    ev.wait_for_name("SHUTDOWN", WAIT).await.unwrap();
    assert_eq!(q.query_status().await.unwrap().status, RunState::Shutdown);
    assert!(!server.has_exited());
}

#[tokio::test]
async fn command_errors_carry_class_desc_and_command() {
    let (server, q) = pair(FakeConfig::default()).await;
    server.inject_error(
        "cont",
        "GenericError",
        "Resetting the Virtual Machine is required",
    );
    let e = q.cont().await.unwrap_err();
    match &e {
        QmpError::Command {
            command,
            class,
            desc,
        } => {
            assert_eq!((command.as_str(), class.as_str()), ("cont", "GenericError"));
            assert!(desc.contains("Resetting"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "QMP command cont failed: GenericError: Resetting the Virtual Machine is required"
    );
    q.cont().await.expect("the injected error is one-shot");
}

#[tokio::test]
async fn a_hung_command_times_out_and_the_session_goes_on() {
    let server = FakeQmpServer::start().await.unwrap();
    let opts = ConnectOptions {
        timeout: Duration::from_millis(200),
    };
    let q = QmpClient::connect_with(server.socket_path(), opts)
        .await
        .unwrap();
    server.stall_next("query-status");
    let e = q.query_status().await.unwrap_err();
    assert!(matches!(e, QmpError::Timeout { .. }), "{e:?}");
    assert_eq!(q.query_status().await.unwrap().status, RunState::Running);
    let v = q.execute_timeout(&c::QueryVersion, WAIT).await.unwrap();
    assert_eq!(v.qemu.major, 10);
}

#[tokio::test]
async fn events_never_answer_commands() {
    let (server, q) = pair(FakeConfig::default()).await;
    let mut ev = q.events();
    let flood = async {
        for i in 0..200 {
            server.emit_event("TEST_EVENT", Some(json!({"n": i})));
            tokio::task::yield_now().await;
        }
    };
    let commands = async {
        for _ in 0..50 {
            assert!(q.query_status().await.unwrap().running);
        }
    };
    tokio::join!(flood, commands);
    for i in 0..200 {
        let e = ev.recv().await.unwrap();
        assert_eq!((e.name.as_str(), &e.data), ("TEST_EVENT", &json!({"n": i})));
    }
    assert_eq!(
        server
            .commands()
            .iter()
            .filter(|c| *c == "query-status")
            .count(),
        50
    );
}

/// A client of a fake started with `config`, with migration events on, and its events.
async fn migrating(config: FakeConfig) -> (FakeQmpServer, QmpClient, EventStream) {
    let (server, q) = pair(config).await;
    q.migrate_set_capabilities(&[MigrationCapabilityStatus::new("events", true)])
        .await
        .unwrap();
    let ev = q.events();
    (server, q, ev)
}

/// Waits for the `MIGRATION` event of `status`.
async fn migration_event(ev: &mut EventStream, status: MigrationStatus) {
    let want = EventKind::Migration { status };
    ev.wait_for(WAIT, |e| e.kind() == want).await.unwrap();
}

#[tokio::test]
async fn migration_failure_and_cancel() {
    let config = FakeConfig {
        fail_migration: true,
        ..Default::default()
    };
    let (_server, q, mut ev) = migrating(config).await;
    q.migrate("tcp:127.0.0.1:1").await.unwrap();
    migration_event(&mut ev, MigrationStatus::Failed).await;
    let info = q.query_migrate().await.unwrap();
    assert_eq!(info.status, Some(MigrationStatus::Failed));
    assert!(info.error_desc.is_some());
    assert_eq!(q.query_status().await.unwrap().status, RunState::Running);

    let config = FakeConfig {
        migration_step: Duration::from_secs(30),
        ..Default::default()
    };
    let (_server, q, mut ev) = migrating(config).await;
    q.migrate("unix:/nonexistent").await.unwrap();
    let again = q.migrate("unix:/nonexistent").await.unwrap_err();
    assert_eq!(again.class(), Some("GenericError"));
    q.migrate_cancel().await.unwrap();
    migration_event(&mut ev, MigrationStatus::Cancelled).await;
    assert_eq!(
        q.query_migrate().await.unwrap().status,
        Some(MigrationStatus::Cancelled)
    );
}

#[tokio::test]
async fn paused_guest_has_no_powerdown_shutdown() {
    let config = FakeConfig {
        initial_status: RunState::Paused,
        ..Default::default()
    };
    let (server, q) = pair(config).await;
    q.system_powerdown().await.unwrap();
    q.cont().await.unwrap();
    assert_eq!(server.status(), RunState::Running);
    assert_eq!(
        q.human_monitor_command("info status").await.unwrap(),
        "VM status: running\r\n"
    );
}

/// A socket `name` in a new directory (kept while the caller holds it) whose first
/// connection `serve` handles, in a task.
fn hand_written_server<F, Fut>(
    name: &str,
    serve: F,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    JoinHandle<Fut::Output>,
)
where
    F: FnOnce(tokio::net::UnixStream) -> Fut + Send + 'static,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        serve(s).await
    });
    (dir, path, server)
}

#[tokio::test]
async fn bad_greeting_is_a_protocol_error() {
    let (dir, path, server) = hand_written_server("bad.sock", |mut s| async move {
        s.write_all(b"{\"hello\": 1}\n").await.unwrap();
        s
    });
    let e = QmpClient::connect(&path).await.unwrap_err();
    assert!(matches!(e, QmpError::Protocol(_)), "{e:?}");
    drop(server.await);

    let e = QmpClient::connect(dir.path().join("missing.sock"))
        .await
        .unwrap_err();
    assert!(matches!(e, QmpError::Io(_)), "{e:?}");
}

/// QEMU flushes events a previous client left unread to the next connection, before the
/// greeting (seen: a `RESUME` after a `cont` whose client hung up at once).
#[tokio::test]
async fn events_before_the_greeting_are_skipped() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let (_dir, path, server) = hand_written_server("stale.sock", |s| async move {
        let (r, mut w) = s.into_split();
        let stale = r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}"#;
        let greeting = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": []}}"#;
        w.write_all(format!("{stale}\n{greeting}\n").as_bytes())
            .await
            .unwrap();
        let mut lines = BufReader::new(r).lines();
        let negotiate = lines.next_line().await.unwrap().unwrap();
        let cmd: Value = serde_json::from_str(&negotiate).unwrap();
        assert_eq!(cmd["execute"], "qmp_capabilities", "{negotiate}");
        let reply = json!({"return": {}, "id": cmd["id"]});
        w.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
        (lines, w)
    });
    let client = QmpClient::connect(&path)
        .await
        .expect("connected past the stale event");
    assert_eq!(client.greeting().version.qemu.major, 10);
    drop(server.await);
}

#[tokio::test]
async fn silent_server_times_out_on_greeting() {
    let (_dir, path, keep) = hand_written_server("silent.sock", |s| async move { s });
    let opts = ConnectOptions {
        timeout: Duration::from_millis(100),
    };
    let e = QmpClient::connect_with(&path, opts).await.unwrap_err();
    assert!(matches!(e, QmpError::Timeout { .. }), "{e:?}");
    keep.abort();
}

#[tokio::test]
async fn trait_object_works() {
    let server = FakeQmpServer::start().await.unwrap();
    let q: Box<dyn Qmp> = Box::new(QmpClient::connect(server.socket_path()).await.unwrap());
    let mut ev = q.events();
    q.stop().await.unwrap();
    assert_eq!(ev.recv().await.unwrap().kind(), EventKind::Stop);
    assert_eq!(q.query_status().await.unwrap().status, RunState::Paused);
    q.quit().await.unwrap();
}
