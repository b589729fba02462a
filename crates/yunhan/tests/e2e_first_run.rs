//! A newcomer's first run, through the real binary: `yunhan up` as root with a fresh
//! HOME of mode 0700 and no --data-dir (so /var/lib/yunhan), the test guest imported as
//! the public image `tiny` as `scripts/up` does, then the README's tour exactly as
//! written (every ```sh block between the tour markers, in order, in one
//! `bash -euo pipefail`). Also: `up` refusing a data directory the QEMU user cannot
//! reach, and the image mistakes a newcomer makes.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, guest_runs, stderr, stdout, test_guest, Cloud, INSTALLED_DATA_DIR};
use serde_json::{json, Value};

/// The tour: the ```sh blocks between `<!-- tour:begin -->` and `<!-- tour:end -->`.
fn tour() -> String {
    let readme = std::fs::read_to_string(yunhan_testkit::workspace_root().join("README.md"))
        .expect("README.md");
    let begin = readme
        .find("<!-- tour:begin -->")
        .expect("tour begin marker");
    let end = readme.find("<!-- tour:end -->").expect("tour end marker");
    let mut script = String::new();
    let mut in_block = false;
    for line in readme[begin..end].lines() {
        match (in_block, line.trim_end()) {
            (false, "```sh") => in_block = true,
            (true, "```") => in_block = false,
            (true, l) => script.push_str(&format!("{l}\n")),
            _ => {}
        }
    }
    assert!(
        script.lines().count() > 20,
        "the tour has its commands:\n{script}"
    );
    script
}

/// Claims the default data directory for this test: refuses to touch a real cloud's
/// data (present and not marked as a test's), removes it when dropped.
struct InstalledDataDir;

const MARK: &str = ".e2e-first-run";

impl InstalledDataDir {
    fn claim() -> InstalledDataDir {
        let dir = Path::new(INSTALLED_DATA_DIR);
        if dir.exists() {
            assert!(
                dir.join(MARK).exists() || !dir.join("store").exists(),
                "{INSTALLED_DATA_DIR} holds a cloud this test did not make; refusing to touch it"
            );
            yunhan_testkit::kill_vms_under(dir);
            std::fs::remove_dir_all(dir).expect("remove a stale test data dir");
        }
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(MARK), "made by e2e_first_run; safe to delete\n").unwrap();
        InstalledDataDir
    }
}

impl Drop for InstalledDataDir {
    fn drop(&mut self) {
        yunhan_testkit::kill_vms_under(Path::new(INSTALLED_DATA_DIR));
        let _ = std::fs::remove_dir_all(INSTALLED_DATA_DIR);
    }
}

/// A directory where `target/release/yunhan` is the binary under test, so the tour's
/// `export PATH=$PWD/target/release:$PATH` finds it.
fn checkout_like() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("target/release")).unwrap();
    std::os::unix::fs::symlink(common::BIN, d.path().join("target/release/yunhan")).unwrap();
    d
}

fn nft_tables() -> String {
    stdout(
        &Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap(),
    )
}

/// A user of the cloud (its HOME holds the admin's config; `token` overrides it).
struct User<'a> {
    cloud: &'a Cloud,
    token: String,
}

impl User<'_> {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(common::BIN)
            .args(args)
            .env("HOME", self.cloud.home.path())
            .env("YUNHAN_TOKEN", &self.token)
            .env_remove("YUNHAN_ENDPOINT")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.run(&a);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_str(&stdout(&out)).unwrap()
    }

    /// Deletes in order, retrying what still has dependants being deleted.
    async fn delete_all(&self, what: &[(&str, &str)]) {
        for (kind, name) in what {
            eventually(
                &format!("{kind} {name} deleted"),
                Duration::from_secs(120),
                || {
                    let out = self.run(&[kind, "delete", name, "--wait"]);
                    let gone = out.status.success() || stderr(&out).contains("not found");
                    async move { gone.then_some(()) }
                },
            )
            .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_readme_tour_runs_verbatim_as_root_with_a_private_home() {
    let guest = test_guest();
    let tables_before = nft_tables();
    let _data = InstalledDataDir::claim();
    let import = format!("tiny={}", guest.join("test-guest.raw").display());
    // `public` as `up` makes it by default (named here: the harness leaves it out else).
    let public = ["--public-cidr", "172.24.4.0/24"];
    let cloud = Cloud::up_as_installed(&["--import-image", &import, public[0], public[1]]).await;
    assert!(
        std::fs::read_to_string(cloud.log_path())
            .unwrap()
            .contains(&format!("data in {INSTALLED_DATA_DIR}")),
        "as root, up keeps its data in {INSTALLED_DATA_DIR}"
    );

    let work = checkout_like();
    let script = format!("{}\necho \"TOUR-TOKEN=$YUNHAN_TOKEN\"\n", tour());
    let started = Instant::now();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(work.path())
        .env("HOME", cloud.home.path())
        .env_remove("YUNHAN_TOKEN")
        .env_remove("YUNHAN_ENDPOINT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (so, se) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "the tour failed:\n{so}\n{se}");
    eprintln!("the tour ran in {:?}", started.elapsed());
    let token = so
        .lines()
        .find_map(|l| l.strip_prefix("TOUR-TOKEN="))
        .expect("alice's token")
        .to_string();
    assert!(token.starts_with("yh_"), "the tour ran as alice");
    let alice = User {
        cloud: &cloud,
        token,
    };

    // The first VM boots the public test guest.
    let web1 = alice.json(&["vm", "show", "web1"]);
    assert_eq!(web1["status"]["phase"], "Running", "{web1}");
    eventually("web1's guest marker", Duration::from_secs(240), || {
        let log = stdout(&alice.run(&["vm", "log", "web1"]));
        async move { log.contains("YUNHAN-READY hostname=web1").then_some(()) }
    })
    .await;

    // The elastic IP, unbound at the end of the tour, is realised nowhere and fine.
    let e1 = alice.json(&["eip", "show", "e1"]);
    assert_eq!(e1["status"]["phase"], "Ready", "{e1}");
    assert!(e1["spec"]["nic"].is_null(), "{e1}");

    // b, bound to it for a while, still has its network: it reaches its gateway.
    let b = alice.json(&["vm", "show", "b"]);
    assert_eq!(b["status"]["phase"], "Running", "{b}");
    guest_runs(
        &b,
        "ping -c1 -W2 10.10.1.1 >/dev/null && echo GW-$((40+2))",
        "GW-42",
        Duration::from_secs(240),
    )
    .await;
    // a has no elastic IP: the NAT gateway takes it to the host's public bridge.
    let a = alice.json(&["vm", "show", "a"]);
    guest_runs(
        &a,
        "ping -c1 -W2 172.24.4.1 >/dev/null && echo NAT-$((40+2))",
        "NAT-42",
        Duration::from_secs(240),
    )
    .await;

    // The tour's writes are alice's events.
    let events = alice.json(&["events", "--since", "10m"]);
    assert!(
        (events.as_array().unwrap().iter())
            .any(|e| e["action"] == "create" && e["kind"] == "vpcs" && e["outcome"] == 201),
        "{events}"
    );

    // b's metrics, the alarm on them, and what the project used so far.
    eventually("b's CPU samples", Duration::from_secs(60), || {
        let m = alice.json(&["vm", "metrics", "b", "--since", "10m", "--series", "cpu"]);
        async move { (m["series"][0]["points"].as_array()?.len() >= 2).then_some(()) }
    })
    .await;
    let alarms = alice.json(&["alarm", "list"]);
    assert_eq!(alarms[0]["metadata"]["name"], "busy", "{alarms}");
    let usage = alice.json(&["usage", "--project", "team-a"]);
    let b_line = (usage["lines"].as_array().unwrap().iter()).find(|l| l["name"] == "b");
    assert!(
        b_line.is_some_and(|l| l["meters"]["vcpu_seconds"].as_f64() > Some(0.0)),
        "{usage}"
    );

    // The load balancer: Active, its TCP listener on Vortex, its HTTP one on HAProxy.
    let served = eventually("lb1's listeners served", Duration::from_secs(60), || {
        let lb = alice.json(&["lb", "show", "lb1"]);
        async move {
            let engines: Vec<String> = (lb["status"]["listeners"].as_array()?.iter())
                .map(|l| {
                    format!(
                        "{}={}",
                        l["name"].as_str().unwrap_or(""),
                        l["engine"].as_str().unwrap_or("")
                    )
                })
                .collect();
            (lb["status"]["phase"] == "Active" && engines.len() == 2).then_some(engines)
        }
    });
    assert_eq!(served.await, ["http=haproxy", "tcp=vortex-tc"]);

    // The nightly snapshot policy waits for 03:00 UTC; it goes before its volume.
    let policy = alice.json(&["snapshot", "policy", "show", "nightly"]);
    let next = policy["status"]["next_run"].as_str().unwrap_or_default();
    assert!(next.contains("T03:00:00"), "{policy}");
    let out = alice.run(&["snapshot", "policy", "delete", "nightly"]);
    assert!(out.status.success(), "{}", stderr(&out));

    alice
        .delete_all(&[
            ("alarm", "busy"),
            ("lb", "lb1"),
            ("natgw", "gw1"),
            ("eip", "e2"),
            ("vm", "b"),
            ("vm", "a"),
            ("vm", "web1"),
            ("eip", "e1"),
            ("nic", "n2"),
            ("sg", "web"),
            ("snapshot", "before-upgrade"),
            ("volume", "data1"),
            ("subnet", "s1"),
            ("vpc", "net1"),
        ])
        .await;
    // The admin's public network goes too, and with it the host's bridge and rules.
    let out = cloud.cli(&["external-network", "delete", "public"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(60);
    let ours = |links: String| {
        links.contains("ynb-000001") || links.contains("ynp-") || links.contains("ynl-")
    };
    let links_and_netns = || {
        let links = Command::new("ip").args(["-br", "link"]).output().unwrap();
        let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
        stdout(&links) + &stdout(&netns)
    };
    let rules = || stdout(&Command::new("ip").arg("rule").output().unwrap());
    // Devices and the policy rules go in the realiser's passes (the rules may take one
    // more than the devices): wait for both, then say which stayed.
    while ours(links_and_netns()) || rules().contains("172.24.4.0/24") {
        let log = std::fs::read_to_string(cloud.log_path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        assert!(
            Instant::now() < deadline,
            "the VPC's devices or the public network's rules are still there a minute after \
             they were deleted:\n{}\n{}\nlog:\n{}",
            links_and_netns(),
            rules(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(cloud);
    for table in ["inet yunhan", "bridge yunhan"] {
        if !tables_before.contains(&format!("table {table}\n")) {
            let mut args = vec!["delete", "table"];
            args.extend(table.split(' '));
            let _ = Command::new("nft").args(&args).output();
        }
    }
}

/// A private HOME as the data directory (what `/root/.local/share/yunhan` was): `up`
/// stops at once and says how to fix it, instead of failing every VM later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_up_refuses_a_data_dir_the_qemu_user_cannot_reach() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data: PathBuf = home.path().join(".local/share/yunhan");
    let mut child = yunhan_testkit::spawn_owned_group({
        let mut c = Command::new(common::BIN);
        c.args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(home.path().join("up.log")).unwrap());
        c
    })
    .unwrap();
    let status = eventually("up to stop", Duration::from_secs(30), || {
        let s = child.try_wait().unwrap();
        async move { s }
    })
    .await;
    let log = std::fs::read_to_string(home.path().join("up.log")).unwrap();
    assert!(!status.success(), "up must refuse to run: {log}");
    let private = home.path().display().to_string();
    for needle in [
        format!("{private} (mode 0700) is not searchable"),
        "--data-dir /var/lib/yunhan".to_string(),
        format!("chmod o+x {private}"),
    ] {
        assert!(log.contains(&needle), "{needle:?} in:\n{log}");
    }
}

/// Image mistakes: no data (the CLI refuses and says what to pass; through the API
/// the image stays Pending and says how to upload), and a VM from an image that is not
/// Active (409 with the phase; nothing created, no quota used).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_images_without_data_are_refused_and_never_boot() {
    let cloud = Cloud::up(&[]).await;
    let out = cloud.cli(&["image", "create", "tiny", "--os", "busybox"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--file"), "{}", stderr(&out));
    let (s, _) = cloud.admin("GET", "/v1/images/tiny", None).await;
    assert_eq!(s, 404, "nothing half-made");

    let img = cloud
        .create(&cloud.token, "images", "empty", json!({"os": "test"}))
        .await;
    assert_eq!(img["status"]["phase"], "Pending");
    let msg = img["status"]["message"].as_str().unwrap();
    assert!(msg.contains("/data"), "{msg}");

    let t = cloud.tenant("t1", None).await;
    let (s, _) = cloud
        .call("GET", "/v1/images/empty", Some(&t.token), None)
        .await;
    assert_eq!(s, 404, "a private image is invisible to other projects");
    let vm = json!({"metadata": {"name": "v"}, "spec": {"image": "empty", "flavor": "tiny"}});
    let (s, v) = cloud.admin("POST", "/v1/instances", Some(&vm)).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["code"], "conflict");
    let m = v["message"].as_str().unwrap();
    assert!(m.contains("\"empty\" is Pending, not Active"), "{m}");
    let (_, list) = cloud.admin("GET", "/v1/instances", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}
