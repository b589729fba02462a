//! Object storage on `/metrics` (docs/object-storage.md): every bucket's last usage
//! reading, `yunhan_bucket_bytes` / `yunhan_bucket_objects{project,bucket}` (gauges), and
//! each project's traffic through the S3 gateway, `yunhan_s3_requests_total`,
//! `yunhan_s3_bytes_sent_total`, `yunhan_s3_bytes_received_total{project}` (counters
//! from the gateway's usage log).

use std::fmt::Write;

use yunhan_model::{Bucket, BucketUsage, Doc, S3Traffic};
use yunhan_store::objects::S3_TRAFFIC_PREFIX;
use yunhan_store::StoreExt;

use super::prometheus::escape;
use crate::AppState;

/// The exposition of object storage, read from the store.
pub(crate) async fn scrape(s: &AppState) -> crate::error::Result<String> {
    let buckets = s.objects.list_all::<Bucket>(None).await?;
    let mut traffic = Vec::new();
    for kv in s.objects.store().range_all(S3_TRAFFIC_PREFIX).await? {
        let project = kv.key.trim_start_matches(S3_TRAFFIC_PREFIX).to_string();
        if let Ok(t) = serde_json::from_slice::<S3Traffic>(&kv.value) {
            traffic.push((project, t));
        }
    }
    Ok(render(&buckets, &traffic))
}

/// The exposition of `buckets` and the projects' `traffic` (pure).
pub(crate) fn render(buckets: &[Doc<Bucket>], traffic: &[(String, S3Traffic)]) -> String {
    let mut out = String::new();
    let measured: Vec<(String, &BucketUsage)> = (buckets.iter())
        .filter_map(|b| Some((bucket_labels(b), b.status.usage.as_ref()?)))
        .collect();
    let held = |f: fn(&BucketUsage) -> u64| measured.iter().map(move |(l, u)| (l.clone(), f(u)));
    let gauge = "gauge";
    family(&mut out, "bucket_bytes", BYTES, gauge, held(|u| u.bytes));
    family(
        &mut out,
        "bucket_objects",
        OBJECTS,
        gauge,
        held(|u| u.objects),
    );
    let projects: Vec<(String, &S3Traffic)> = (traffic.iter())
        .map(|(p, t)| (format!("project=\"{}\"", escape(p)), t))
        .collect();
    let sum = |f: fn(&S3Traffic) -> u64| projects.iter().map(move |(l, t)| (l.clone(), f(t)));
    let counter = "counter";
    family(
        &mut out,
        "s3_requests_total",
        REQUESTS,
        counter,
        sum(|t| t.requests),
    );
    family(
        &mut out,
        "s3_bytes_sent_total",
        SENT,
        counter,
        sum(|t| t.bytes_sent),
    );
    family(
        &mut out,
        "s3_bytes_received_total",
        RECEIVED,
        counter,
        sum(|t| t.bytes_received),
    );
    out
}

const BYTES: &str = "Bytes a bucket holds (its last usage reading).";
const OBJECTS: &str = "Objects a bucket holds (its last usage reading).";
const REQUESTS: &str = "S3 requests of a project's keys and anonymous readers of its buckets.";
const SENT: &str = "Bytes the S3 gateway sent for a project.";
const RECEIVED: &str = "Bytes the S3 gateway received for a project.";

fn bucket_labels(b: &Doc<Bucket>) -> String {
    let project = escape(b.metadata.project.as_deref().unwrap_or_default());
    format!(
        "project=\"{project}\",bucket=\"{}\"",
        escape(&b.metadata.name)
    )
}

/// One family: its `# HELP` and `# TYPE`, then a line per (labels, value).
fn family(
    out: &mut String,
    name: &str,
    help: &str,
    kind: &str,
    rows: impl Iterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP yunhan_{name} {help}");
    let _ = writeln!(out, "# TYPE yunhan_{name} {kind}");
    for (labels, value) in rows {
        let _ = writeln!(out, "yunhan_{name}{{{labels}}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use yunhan_model::{BucketStatus, Metadata, Resource};

    use super::*;

    #[test]
    fn buckets_and_traffic_become_labelled_series() {
        let bucket = |name: &str, usage: Option<(u64, u64)>| Resource {
            metadata: Metadata::new(format!("bkt-{name}"), name, Some("prj-a".into())),
            spec: Default::default(),
            status: BucketStatus {
                usage: usage.map(|(bytes, objects)| BucketUsage {
                    bytes,
                    objects,
                    measured_at: String::new(),
                }),
                ..Default::default()
            },
        };
        let buckets = [bucket("photos", Some((15 << 20, 2))), bucket("new", None)];
        let traffic = [(
            "prj-a".to_string(),
            S3Traffic {
                requests: 42,
                bytes_sent: 1000,
                bytes_received: 15 << 20,
            },
        )];
        insta::assert_snapshot!(render(&buckets, &traffic));
    }
}
