//! Object storage through the real binary: `yunhan up --ceph-conf` on a
//! `scripts/ceph-dev` cluster starts Ceph's S3 gateway (radosgw); the contract
//! commands, then a standard S3 client (boto3, `tests/s3/client.py`) with the keys the
//! platform issued: put/get/list/delete, a 3-part multipart upload of 15 MiB, a
//! presigned URL, anonymous reads of a public-read bucket (and refusals of a private
//! one), a bucket's quota (403 QuotaExceeded), another project's key and a revoked key
//! refused (403); usage shown; the file browser's API (uploads, listings, downloads,
//! deletes, another project refused); a guest in a VPC reading through object
//! storage's VPC address; bad input refused with nothing left in the gateway.

mod common;

use std::process::Command;
use std::time::Duration;

use common::onebox::{ready_guest, running_vm, vpc_with_open_group, OneBox};
use common::{eventually, guest_runs, stderr, words, Cloud};
use serde_json::Value;

/// An S3 key: access key, secret key, endpoint.
#[derive(Clone)]
struct Key {
    access: String,
    secret: String,
    endpoint: String,
}

impl Key {
    fn of(created: &Value) -> Key {
        let field = |f: &str| {
            created[f]
                .as_str()
                .unwrap_or_else(|| panic!("{f} in {created}"))
        };
        Key {
            access: field("access_key").to_string(),
            secret: field("secret_key").to_string(),
            endpoint: field("endpoint").to_string(),
        }
    }

    /// Runs `tests/s3/client.py` with this key; its JSON answer.
    fn s3(&self, op: &str, args: &[&str]) -> Value {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/s3/client.py");
        let out = Command::new("python3")
            .arg(script)
            .args([&self.endpoint, &self.access, &self.secret, op])
            .args(args)
            .output()
            .expect("run python3 (boto3: scripts/setup --test)");
        assert!(
            out.status.success(),
            "client.py {op} {args:?}: {}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).expect("client.py prints JSON")
    }
}

/// Waits until `bucket list` has (`there`) or has not bucket `name`; the bucket, or Null.
async fn listed(cloud: &Cloud, name: &str, there: bool) -> Value {
    let what = format!("bucket {name} listed: {there}");
    eventually(&what, Duration::from_secs(30), || {
        let list = cloud.ok(&["bucket", "list"]);
        let found = (list.as_array().unwrap().iter()).find(|b| b["metadata"]["name"] == name);
        let answer = (found.is_some() == there).then(|| found.cloned().unwrap_or(Value::Null));
        async move { answer }
    })
    .await
}

/// `/metrics` as the admin scrapes it.
async fn scrape(cloud: &Cloud) -> String {
    let url = format!("{}/metrics", cloud.endpoint);
    let r = cloud.http.get(url).bearer_auth(&cloud.token).send().await;
    r.expect("GET /metrics").text().await.unwrap_or_default()
}

/// The status of an anonymous GET of `url`.
async fn anonymous_get(url: &str) -> u16 {
    let r = reqwest::get(url).await.expect("GET the gateway");
    r.status().as_u16()
}

/// `bucket show NAME -o json`, polled until `done` accepts it.
async fn bucket_until(
    cloud: &Cloud,
    name: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, Duration::from_secs(30), || {
        let b = cloud.ok(&["bucket", "show", name]);
        let ok = done(&b);
        async move { ok.then_some(b) }
    })
    .await
}

fn refused(answer: &Value, status: u64, code: &str) {
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["status"], status, "{answer}");
    assert_eq!(answer["code"], code, "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn e2e_object_storage_buckets_keys_and_a_standard_s3_client() {
    let onebox = OneBox::new();
    // VPCs realised in the test's namespace `onebox.host`.
    let (ceph, cloud) = Cloud::on_ceph_with_s3(&["--netns", &onebox.host]).await;

    // The contract, as a user types it.
    let photos = cloud.ok(&words("bucket create photos --quota-size 100MiB --wait"));
    assert_eq!(photos["status"]["phase"], "Active", "{photos}");
    let created = cloud.ok(&["s3-key", "create"]);
    let key = Key::of(&created);
    assert!(key.endpoint.starts_with("http://127.0.0.1:"), "{created}");
    let shown = cloud.ok(&words("bucket show photos"));
    assert_eq!(shown["spec"]["visibility"], "private");
    assert_eq!(shown["spec"]["quota_bytes"], 100u64 << 20);
    assert_eq!(shown["status"]["usage"]["objects"], 0, "{shown}");

    // A standard client with the issued key.
    let rt = key.s3("roundtrip", &["photos"]);
    assert_eq!(rt["ok"], true, "{rt}");
    assert_eq!(rt["multipart_bytes"], 15u64 << 20);
    // 15 MiB + "kept\n" in 2 objects, as the gateway counts them (it lags a little).
    let used = bucket_until(&cloud, "photos", "usage of 2 objects", |b| {
        let u = &b["status"]["usage"];
        u["objects"] == 2 && u["bytes"] == (15u64 << 20) + 5
    })
    .await;

    // A bucket made straight through S3 is listed (labelled origin=s3); deleted through
    // S3, it is not any more.
    assert_eq!(key.s3("mkbucket", &["direct"])["ok"], true);
    let adopted = listed(&cloud, "direct", true).await;
    assert_eq!(adopted["metadata"]["labels"]["origin"], "s3", "{adopted}");
    assert_eq!(adopted["status"]["phase"], "Active", "{adopted}");
    assert_eq!(key.s3("rmbucket", &["direct"])["ok"], true);
    listed(&cloud, "direct", false).await;

    // Usage and traffic on /metrics (an admin's scrape).
    let project = used["metadata"]["project"].as_str().unwrap().to_string();
    let bytes = format!(
        "yunhan_bucket_bytes{{project=\"{project}\",bucket=\"photos\"}} {}",
        (15u64 << 20) + 5
    );
    let requests = format!("yunhan_s3_requests_total{{project=\"{project}\"}} ");
    eventually(
        "S3 usage and traffic on /metrics",
        Duration::from_secs(30),
        || async {
            let text = scrape(&cloud).await;
            (text.contains(&bytes) && text.contains(&requests)).then_some(())
        },
    )
    .await;

    // Private: refused without a key; public-read: anyone reads.
    let public = used["status"]["public_url"].as_str().unwrap().to_string();
    let object = format!("{public}/keep.txt");
    assert_eq!(anonymous_get(&object).await, 403);
    let set = cloud.ok(&words("bucket set photos --public-read"));
    assert_eq!(set["spec"]["visibility"], "public-read");
    eventually(
        "an anonymous read of keep.txt",
        Duration::from_secs(30),
        || async { (anonymous_get(&object).await == 200).then_some(()) },
    )
    .await;

    // A bucket's quota: the third object is refused by the gateway.
    cloud.ok(&words("bucket create two --quota-objects 2 --wait"));
    for k in ["a", "b"] {
        assert_eq!(key.s3("put", &["two", k, "10"])["ok"], true);
    }
    refused(&key.s3("put", &["two", "c", "10"]), 403, "QuotaExceeded");

    // Another project's key, and its member through the API, see nothing of ours.
    let other = cloud.tenant("other", None).await;
    let theirs = Key::of(&cloud.s3_key(&other.token, "other").await);
    // Their `photos` is their own (none); ours, by tenant-qualified name: the private
    // `two` refuses them everything, the public-read `photos` lets them read only.
    refused(&theirs.s3("list", &["photos"]), 404, "NoSuchBucket");
    let tenant = public
        .rsplit('/')
        .next()
        .unwrap()
        .trim_end_matches(":photos");
    let (two, photos) = (format!("{tenant}:two"), format!("{tenant}:photos"));
    refused(&theirs.s3("list", &[&two]), 403, "AccessDenied");
    refused(&theirs.s3("get", &[&two, "a"]), 403, "AccessDenied");
    refused(
        &theirs.s3("put", &[&photos, "intruder", "3"]),
        403,
        "AccessDenied",
    );
    assert_eq!(
        theirs.s3("get", &[&photos, "keep.txt"])["ok"],
        true,
        "public-read"
    );
    let (s, _) = cloud
        .call("GET", "/v1/buckets/photos", Some(&other.token), None)
        .await;
    assert_eq!(s, 404);
    file_browser(&cloud, &other.token).await;

    bad_input(&cloud).await;
    from_a_vpc(&cloud, &key, &object).await;

    // A revoked key is refused.
    let name = created["s3_key"]["metadata"]["name"].as_str().unwrap();
    let gone = cloud.cli(&["s3-key", "delete", name, "--wait"]);
    assert!(gone.status.success(), "{}", stderr(&gone));
    refused(&key.s3("list", &["photos"]), 403, "InvalidAccessKeyId");

    // Delete with its objects: gone from the platform and the gateway.
    let del = cloud.cli(&words("bucket delete photos --force --wait"));
    assert!(del.status.success(), "{}", stderr(&del));
    let list = cloud.ok(&["bucket", "list"]);
    let names: Vec<&str> = (list.as_array().unwrap().iter())
        .filter_map(|b| b["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["two"]);
    assert!(!gateway_buckets(ceph.conf()).contains("photos"));

    // A gateway that dies is started again, on the same address.
    let up = cloud.child.as_ref().unwrap().id();
    let old = gateway_pid(up).expect("radosgw under yunhan up");
    common::signal(old, "-KILL");
    eventually("radosgw started again", Duration::from_secs(90), || async {
        let new = gateway_pid(up).filter(|p| *p != old)?;
        let answer = theirs.s3("list", &["photos"]);
        (answer["code"] == "NoSuchBucket").then_some(new)
    })
    .await;
}

/// The web console's file browser through the API (`/v1/buckets/{id}/objects`) with
/// the project's token on `photos`: two uploads (one under `dir/`, one past the API's
/// 1 MiB JSON limit), listings with the folder, the objects boto3 put and pages, the
/// bytes read back, deletes; another project's token gets 404 for all of it.
async fn file_browser(cloud: &Cloud, others: &str) {
    let url = |rest: &str| format!("{}/v1/buckets/photos/objects{rest}", cloud.endpoint);
    let token = cloud.token.as_str();
    let top: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
    let nested = b"nested file\n".to_vec();
    // (key, as it goes in the URL, bytes, type)
    let uploads = [
        ("top.bin", "top.bin", &top, "application/octet-stream"),
        ("dir/a b+c.txt", "dir/a%20b%2Bc.txt", &nested, "text/plain"),
    ];
    for (key, path, body, ctype) in uploads {
        let r = cloud.http.put(url(&format!("/{path}"))).bearer_auth(token);
        let r = r
            .header("content-type", ctype)
            .body(body.clone())
            .send()
            .await;
        let r = r.expect("PUT an object");
        assert_eq!(r.status(), 201, "PUT {key}");
        let item: Value = r.json().await.unwrap();
        assert_eq!(
            (item["key"].as_str(), item["size"].as_u64()),
            (Some(key), Some(body.len() as u64)),
            "{item}"
        );
        assert!(
            item["etag"].as_str().is_some_and(|e| e.len() == 32),
            "{item}"
        );
    }
    let get = |rest: String, token: &str| {
        let r = cloud.http.get(url(&rest)).bearer_auth(token).send();
        async move { r.await.expect("GET from the API") }
    };
    let json = |r: reqwest::Response| async move { r.json::<Value>().await.unwrap() };
    let names = |page: &Value, field: &str| -> Vec<String> {
        let all = page[field]
            .as_array()
            .unwrap_or_else(|| panic!("{field} in {page}"));
        let name = |v: &Value| v.as_str().or(v["key"].as_str()).unwrap().to_string();
        all.iter().map(name).collect()
    };

    // The top: the objects boto3 put and ours, and the folder.
    let page = json(get("?delimiter=/".into(), token).await).await;
    assert_eq!(
        names(&page, "items"),
        ["big.bin", "keep.txt", "top.bin"],
        "{page}"
    );
    assert_eq!(names(&page, "prefixes"), ["dir/"], "{page}");
    let big = &page["items"][0];
    assert_eq!(big["size"], 15u64 << 20, "{page}");
    assert!(
        big["etag"].as_str().unwrap().ends_with("-3"),
        "multipart: {page}"
    );
    // In the folder; and the whole bucket in pages of one.
    let page = json(get("?prefix=dir/&delimiter=/".into(), token).await).await;
    assert_eq!(names(&page, "items"), ["dir/a b+c.txt"], "{page}");
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_string();
    loop {
        let page = json(get(query.clone(), token).await).await;
        seen.extend(names(&page, "items"));
        let Some(t) = page["next_page_token"].as_str() else {
            break;
        };
        let t: String = t.bytes().map(|b| format!("%{b:02X}")).collect();
        query = format!("?limit=1&page_token={t}");
    }
    assert_eq!(seen, ["big.bin", "dir/a b+c.txt", "keep.txt", "top.bin"]);

    // Downloads: byte for byte, as attachments, with the type given at upload.
    let r = get("/top.bin".into(), token).await;
    assert_eq!(r.status(), 200);
    let disposition = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"top.bin\""),
        "{disposition}"
    );
    assert!(
        r.bytes().await.unwrap()[..] == top[..],
        "top.bin read back differs"
    );
    let r = get("/dir/a%20b%2Bc.txt".into(), token).await;
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.bytes().await.unwrap()[..], nested[..]);
    let r = get("/keep.txt".into(), token).await;
    assert_eq!(r.bytes().await.unwrap()[..], b"kept\n"[..]);

    // Another project's member: 404, whatever the operation.
    let (s, e) = cloud
        .call("GET", "/v1/buckets/photos/objects", Some(others), None)
        .await;
    assert_eq!((s, e["code"].as_str()), (404, Some("not_found")), "{e}");
    assert_eq!(get("/keep.txt".into(), others).await.status(), 404);
    let put = cloud
        .http
        .put(url("/intruder"))
        .bearer_auth(others)
        .body("x")
        .send();
    assert_eq!(put.await.unwrap().status(), 404);
    let (s, _) = cloud
        .call(
            "DELETE",
            "/v1/buckets/photos/objects/keep.txt",
            Some(others),
            None,
        )
        .await;
    assert_eq!(s, 404);

    // The same through the CLI: put, ls, get (byte for byte), rm.
    let dir = cloud.home.path();
    let file = dir.join("notes.txt");
    std::fs::write(&file, "from the CLI\n").unwrap();
    let put = cloud.ok(&["bucket", "put", "photos", file.to_str().unwrap(), "cli/"]);
    assert_eq!(
        (put["key"].as_str(), put["size"].as_u64()),
        (Some("cli/notes.txt"), Some(13)),
        "{put}"
    );
    let ls = cloud.ok(&["bucket", "ls", "photos", "cli/"]);
    assert_eq!(names(&ls, "items"), ["cli/notes.txt"], "{ls}");
    let top = cloud.ok(&["bucket", "ls", "photos"]);
    assert_eq!(names(&top, "prefixes"), ["cli/", "dir/"], "{top}");
    let back = dir.join("back.txt");
    cloud.ok(&[
        "bucket",
        "get",
        "photos",
        "cli/notes.txt",
        back.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "from the CLI\n");
    cloud.ok(&["bucket", "rm", "photos", "cli/notes.txt"]);
    let gone = cloud.cli(&[
        "bucket",
        "get",
        "photos",
        "cli/notes.txt",
        back.to_str().unwrap(),
    ]);
    assert!(
        !gone.status.success() && stderr(&gone).contains("no such object"),
        "{}",
        stderr(&gone)
    );

    // Deletes: 204, then the objects are gone (a second delete is a 404).
    for path in ["/top.bin", "/dir/a%20b%2Bc.txt"] {
        let del = cloud.http.delete(url(path)).bearer_auth(token).send();
        assert_eq!(del.await.unwrap().status(), 204, "DELETE {path}");
    }
    let del = cloud.http.delete(url("/top.bin")).bearer_auth(token).send();
    assert_eq!(del.await.unwrap().status(), 404);
    assert_eq!(get("/top.bin".into(), token).await.status(), 404);
    let page = json(get("?delimiter=/".into(), token).await).await;
    assert_eq!(names(&page, "items"), ["big.bin", "keep.txt"], "{page}");
    assert_eq!(names(&page, "prefixes"), Vec::<String>::new(), "{page}");
}

/// A guest in a VPC with no elastic IP or NAT gateway reads through object storage's
/// VPC address: a public object (its tenant's `:` escaped, as URLs allow) and a
/// private one by a URL presigned for that address.
async fn from_a_vpc(cloud: &Cloud, key: &Key, public_object: &str) {
    vpc_with_open_group(cloud, &[]);
    running_vm(cloud, "g1", &["--security-group", "open"]);
    let g1 = ready_guest(cloud, "g1").await;
    let path = public_object
        .trim_start_matches(&key.endpoint)
        .replace(':', "%3A");
    let inside = format!("{}{path}", yunhan_model::S3_VPC_ENDPOINT);
    let inside_key = Key {
        endpoint: yunhan_model::S3_VPC_ENDPOINT.to_string(),
        ..key.clone()
    };
    let signed = inside_key.s3("presign", &["two", "a"]);
    let signed = signed["url"].as_str().unwrap();
    assert!(
        signed.starts_with("http://100.100.100.100/two/a?"),
        "{signed}"
    );
    let fetch = |url: &str, body: &str, tag: &str| {
        // (busybox 1.35's wget crashes with -T: `timeout` bounds it instead)
        format!("timeout 10 wget -q -O - '{url}' | grep -q {body} && echo {tag}-$((40+2))")
    };
    let public = fetch(&inside, "kept", "PUBLIC");
    guest_runs(&g1, &public, "PUBLIC-42", Duration::from_secs(120)).await;
    let private = fetch(signed, "xxxxxxxxxx", "SIGNED");
    guest_runs(&g1, &private, "SIGNED-42", Duration::from_secs(60)).await;
}

/// Refusals: S3's naming rules, a quota below what a bucket holds, deleting a
/// bucket with objects; nothing of them reaches the gateway.
async fn bad_input(cloud: &Cloud) {
    // The API weighs a quota against the last usage reading (every 5 s).
    bucket_until(cloud, "two", "usage of 2 objects in two", |b| {
        b["status"]["usage"]["objects"] == 2
    })
    .await;
    for bad in ["Bad_Name", "ab", "192.168.1.1"] {
        let out = cloud.cli(&["bucket", "create", bad]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("not valid in S3"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    let out = cloud.cli(&words("bucket set two --quota-objects 1"));
    assert!(stderr(&out).contains("cannot be below"), "{}", stderr(&out));
    let out = cloud.cli(&words("bucket delete two"));
    assert!(stderr(&out).contains("holds 2 objects"), "{}", stderr(&out));
    let two = cloud.ok(&words("bucket show two"));
    assert_eq!(two["status"]["phase"], "Active", "{two}");
}

/// The radosgw whose parent is process `up`.
fn gateway_pid(up: u32) -> Option<u32> {
    let stat_of = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let children = std::fs::read_dir("/proc").ok()?.flatten().filter_map(|e| {
        let pid = e.file_name().to_str()?.to_string();
        let stat = stat_of(&pid)?;
        let (comm, rest) = stat.split_once(") ")?;
        let ppid: u32 = rest.split(' ').nth(1)?.parse().ok()?;
        (comm.ends_with("(radosgw") && ppid == up).then(|| pid.parse().ok())?
    });
    children.into_iter().next()
}

/// `radosgw-admin bucket list` of the whole gateway (every tenant's buckets).
fn gateway_buckets(conf: &std::path::Path) -> String {
    let out = Command::new("radosgw-admin")
        .arg("-c")
        .arg(conf)
        .args(["bucket", "list"])
        .output()
        .expect("radosgw-admin");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
