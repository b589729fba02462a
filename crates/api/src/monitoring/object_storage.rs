//! Object storage on `/metrics` (docs/object-storage.md): every bucket's last usage
//! reading, `yunhan_bucket_bytes` / `yunhan_bucket_objects{project,bucket}` (gauges), and
//! each project's traffic through the S3 gateway, `yunhan_s3_requests_total`,
//! `yunhan_s3_bytes_sent_total`, `yunhan_s3_bytes_received_total{project}` (counters
//! from the gateway's usage log).

use std::fmt::Write;

use yunhan_model::{Bucket, Doc, S3Traffic};
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
    let measured = || {
        buckets
            .iter()
            .filter_map(|b| Some((b, b.status.usage.as_ref()?)))
    };
    let gauges: [(&str, &str, fn(&yunhan_model::BucketUsage) -> u64); 2] = [
        (
            "bucket_bytes",
            "Bytes a bucket holds (its last usage reading).",
            |u| u.bytes,
        ),
        (
            "bucket_objects",
            "Objects a bucket holds (its last usage reading).",
            |u| u.objects,
        ),
    ];
    for (family, help, value) in gauges {
        header(&mut out, family, help, "gauge");
        for (b, u) in measured() {
            let project = escape(b.metadata.project.as_deref().unwrap_or_default());
            let bucket = escape(&b.metadata.name);
            let labels = format!("project=\"{project}\",bucket=\"{bucket}\"");
            let _ = writeln!(out, "yunhan_{family}{{{labels}}} {}", value(u));
        }
    }
    let counters: [(&str, &str, fn(&S3Traffic) -> u64); 3] = [
        (
            "s3_requests_total",
            "S3 requests of a project's keys and anonymous readers of its buckets.",
            |t| t.requests,
        ),
        (
            "s3_bytes_sent_total",
            "Bytes the S3 gateway sent for a project.",
            |t| t.bytes_sent,
        ),
        (
            "s3_bytes_received_total",
            "Bytes the S3 gateway received for a project.",
            |t| t.bytes_received,
        ),
    ];
    for (family, help, value) in counters {
        header(&mut out, family, help, "counter");
        for (project, t) in traffic {
            let _ = writeln!(
                out,
                "yunhan_{family}{{project=\"{}\"}} {}",
                escape(project),
                value(t)
            );
        }
    }
    out
}

fn header(out: &mut String, family: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP yunhan_{family} {help}");
    let _ = writeln!(out, "# TYPE yunhan_{family} {kind}");
}

#[cfg(test)]
mod tests {
    use yunhan_model::{BucketStatus, BucketUsage, Metadata, Resource};

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
