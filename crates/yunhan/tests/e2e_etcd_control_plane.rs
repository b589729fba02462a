//! Multi-node control plane on a real etcd: `yunhan server` ×2 (one elected
//! leader runs the controllers) and a separate `yunhan agent` process whose
//! host turns NotReady within seconds of a kill -9 and Ready again on restart.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, Proc, BIN};
use serde_json::Value;
use yunhan_testkit::{free_port, EtcdCluster};

fn host_phase(dir: &Path, cfg: &Path, name: &str) -> Option<String> {
    let out = Command::new(BIN)
        .args(["host", "list", "-o", "json", "--config"])
        .arg(cfg)
        .env("HOME", dir)
        .output()
        .ok()?;
    let hosts: Value = serde_json::from_slice(&out.stdout).ok()?;
    hosts
        .as_array()?
        .iter()
        .find(|h| h["metadata"]["name"] == name)
        .and_then(|h| h["status"]["phase"].as_str().map(str::to_string))
}

async fn leader_pid(store: &dyn yunhan_store::Store) -> Option<u32> {
    let kv = store.get("/yunhan/leader/controllers").await.ok()??;
    String::from_utf8(kv.value)
        .ok()?
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_servers_on_etcd_elect_one_leader_and_track_agent_liveness() {
    let etcd = EtcdCluster::start(1);
    let url = etcd.store_url();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("client.toml");
    let cfg_s = cfg.to_str().unwrap().to_string();
    // Never the default /var/lib/yunhan/images: that is a real cloud's place.
    let images = dir.path().join("images").to_str().unwrap().to_string();
    let ports = [free_port(), free_port()];
    let listen = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let mut s1 = Proc::spawn(
        dir.path(),
        "server1",
        &[
            "server",
            "--store",
            &url,
            "--listen",
            &listen(0),
            "--write-config",
            &cfg_s,
            "--image-dir",
            &images,
        ],
    );
    eventually(
        "server1 wrote the admin config",
        Duration::from_secs(60),
        || async { cfg.exists().then_some(()) },
    )
    .await;
    let s2 = Proc::spawn(
        dir.path(),
        "server2",
        &[
            "server",
            "--store",
            &url,
            "--listen",
            &listen(1),
            "--write-config",
            &cfg_s,
            "--image-dir",
            &images,
        ],
    );
    let store = yunhan_store::open(&url).await.unwrap();

    // Exactly one of the two runs the controllers.
    let first = eventually("a controller leader", Duration::from_secs(30), || async {
        leader_pid(&*store).await
    })
    .await;
    assert!(
        first == s1.pid() || first == s2.pid(),
        "leader {first} is one of our servers"
    );
    let mut servers = [Some(s1.pid()), Some(s2.pid())];

    let state = dir.path().join("agent-state");
    let state_s = state.to_str().unwrap().to_string();
    let agent_args = [
        "agent",
        "--store",
        &url,
        "--name",
        "node-a",
        "--state-dir",
        &state_s,
        "--lease-ttl",
        "2",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    let mut agent = Proc::spawn(dir.path(), "agent1", &agent_args);
    eventually("node-a Ready", Duration::from_secs(60), || async {
        (host_phase(dir.path(), &cfg, "node-a").as_deref() == Some("Ready")).then_some(())
    })
    .await;

    // kill -9 the agent: NotReady within a few seconds.
    agent.kill9();
    let t0 = Instant::now();
    eventually(
        "node-a NotReady after kill -9",
        Duration::from_secs(15),
        || async {
            (host_phase(dir.path(), &cfg, "node-a").as_deref() == Some("NotReady")).then_some(())
        },
    )
    .await;
    eprintln!("agent kill -9 → NotReady in {:?}", t0.elapsed());

    // Back again: Ready, same host (the identity survives in the state dir).
    let _agent2 = Proc::spawn(dir.path(), "agent2", &agent_args);
    eventually("node-a Ready again", Duration::from_secs(30), || async {
        (host_phase(dir.path(), &cfg, "node-a").as_deref() == Some("Ready")).then_some(())
    })
    .await;
    let out = Command::new(BIN)
        .args(["host", "list", "-o", "json", "--config", &cfg_s])
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let hosts: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        hosts.as_array().unwrap().len(),
        1,
        "re-registration reuses the host: {hosts}"
    );

    // Kill the leading server: the other takes over the controllers.
    if first == s1.pid() {
        s1.kill9();
        servers[0] = None;
    } else {
        drop(s2);
        servers[1] = None;
    }
    let t1 = Instant::now();
    let next = eventually("a new leader", Duration::from_secs(20), || async {
        leader_pid(&*store).await.filter(|p| *p != first)
    })
    .await;
    assert!(servers.contains(&Some(next)), "the surviving server leads");
    eprintln!("controller failover in {:?}", t1.elapsed());
    let logs: String = [
        dir.path().join("server1.log"),
        dir.path().join("server2.log"),
    ]
    .iter()
    .map(|p| std::fs::read_to_string(p).unwrap_or_default())
    .collect();
    assert_eq!(
        logs.matches("became leader").count(),
        2,
        "one leader at a time, two terms:\n{logs}"
    );
    let _ = std::fs::remove_file(&agent.log);
}
