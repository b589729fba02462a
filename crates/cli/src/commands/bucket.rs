//! `yunhan bucket …`: S3 buckets of the project (docs/object-storage.md).

use clap::{Args, Subcommand};
use reqwest::Method;
use yunhan_model::{Bucket, BucketPhase, BucketSpec, Doc, Visibility};
use yunhan_types::sizes::parse_size;

use crate::client::ClientError;
use crate::ctx::Ctx;
use crate::kind::{Obj, Shown};
use crate::output::{cell, col, Column};
use crate::wait::{wait_for, WaitArgs};

use super::volume::{wait_storage, Fallible};

mod objects;

/// S3 buckets on the cloud's object storage (Ceph's S3 gateway)
///
/// A bucket belongs to the project; the project's S3 keys ('yunhan s3-key create')
/// read and write it with any S3 client, path-style:
///   aws --endpoint-url ENDPOINT s3 cp file.jpg s3://photos/
///
/// Examples:
///   yunhan bucket create photos --quota-size 100MiB --wait
///   yunhan bucket show photos              # usage (bytes, objects), visibility, URLs
///   yunhan bucket set photos --public-read # anyone may GET its objects
///   yunhan bucket delete photos --force    # with its objects
///
/// Its objects, through the API (no S3 key needed):
///   yunhan bucket ls photos [dir/]         # folders and objects under a prefix
///   yunhan bucket put photos cat.jpg [pics/cat.jpg]
///   yunhan bucket get photos pics/cat.jpg [FILE|-]
///   yunhan bucket rm photos pics/cat.jpg
#[derive(Subcommand, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub enum BucketCommand {
    /// Create a bucket (S3 names: 3-63 characters of a-z, 0-9, '-' and '.')
    Create(BucketCreate),
    /// List the project's buckets with their usage; with BUCKET, its folders and
    /// objects under PREFIX
    #[command(alias = "ls")]
    List {
        bucket: Option<String>,
        /// Only what is under this prefix (e.g. `dir/`)
        #[arg(requires = "bucket")]
        prefix: Option<String>,
    },
    /// Upload a file as an object (at most 5 GiB; larger ones with an S3 client)
    Put(objects::PutArgs),
    /// Download an object
    Get(objects::GetArgs),
    /// Show one, by name or id
    Show { name: String },
    /// Change a bucket's quota or visibility
    Set(BucketSet),
    /// Delete a bucket (one holding objects only with --force); with KEY, that
    /// object of the bucket
    #[command(alias = "rm")]
    Delete {
        name: String,
        /// The object to delete (not the bucket)
        key: Option<String>,
        /// Delete its objects too
        #[arg(long, conflicts_with = "key")]
        force: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Args, Debug, Clone)]
pub struct BucketCreate {
    pub name: String,
    /// The most the bucket may hold, e.g. 100MiB, 10GiB (default: only the project's quota)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub quota_size: Option<u64>,
    /// The most objects it may hold (default: no limit)
    #[arg(long, value_name = "N")]
    pub quota_objects: Option<u64>,
    /// Anyone may read its objects without a key (default: private)
    #[arg(long)]
    pub public_read: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Args, Debug, Clone)]
pub struct BucketSet {
    pub name: String,
    /// Anyone may read its objects without a key
    #[arg(long, conflicts_with = "private")]
    pub public_read: bool,
    /// Only the project's keys may read it
    #[arg(long)]
    pub private: bool,
    /// A new size quota (e.g. 1GiB), or `none`
    #[arg(long, value_name = "SIZE|none", value_parser = parse_limit_size)]
    pub quota_size: Option<Limit>,
    /// A new object-count quota, or `none`
    #[arg(long, value_name = "N|none", value_parser = parse_limit_count)]
    pub quota_objects: Option<Limit>,
}

/// A quota as `set` takes it: a value, or `none` for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<u64>);

fn parse_limit_size(s: &str) -> Result<Limit, String> {
    match s {
        "none" => Ok(Limit(None)),
        _ => parse_size(s)
            .map(|b| Limit(Some(b)))
            .map_err(|e| e.to_string()),
    }
}

fn parse_limit_count(s: &str) -> Result<Limit, String> {
    match s {
        "none" => Ok(Limit(None)),
        _ => s
            .parse()
            .map(|n| Limit(Some(n)))
            .map_err(|_| format!("{s:?} is not a count (or `none`)")),
    }
}

impl Shown for Bucket {
    const NOUN: &'static str = "bucket";
    const COLUMNS: &'static [Column<Doc<Bucket>>] = &[
        col!("NAME", metadata.name),
        col!("VISIBILITY", spec.visibility),
        Column {
            header: "QUOTA",
            get: |b| quota_cell(b.spec.quota_bytes, b.spec.quota_objects),
        },
        Column {
            header: "USED",
            get: |b| match &b.status.usage {
                Some(u) => format!("{} / {} objects", human(u.bytes), u.objects),
                None => "-".into(),
            },
        },
        col!("PHASE", status.phase),
        col!("ID", metadata.id),
        col!("PUBLIC URL", status.public_url),
        col!("MESSAGE", status.message),
    ];
}

fn human(b: u64) -> String {
    yunhan_types::sizes::human(b)
}

fn quota_cell(bytes: Option<u64>, objects: Option<u64>) -> String {
    match (bytes, objects) {
        (None, None) => "-".into(),
        (Some(b), None) => human(b),
        (None, Some(o)) => format!("{o} objects"),
        (Some(b), Some(o)) => format!("{} / {o} objects", human(b)),
    }
}

impl Fallible for Bucket {
    fn failure(doc: &Doc<Bucket>) -> Option<String> {
        (doc.status.phase == BucketPhase::Failed).then(|| cell(&doc.status.message))
    }
}

fn spec_of(a: &BucketCreate) -> BucketSpec {
    BucketSpec {
        quota_bytes: a.quota_size,
        quota_objects: a.quota_objects,
        visibility: match a.public_read {
            true => Visibility::PublicRead,
            false => Visibility::Private,
        },
    }
}

fn apply(a: &BucketSet, spec: &mut BucketSpec) {
    if a.public_read {
        spec.visibility = Visibility::PublicRead;
    }
    if a.private {
        spec.visibility = Visibility::Private;
    }
    if let Some(Limit(b)) = a.quota_size {
        spec.quota_bytes = b;
    }
    if let Some(Limit(o)) = a.quota_objects {
        spec.quota_objects = o;
    }
}

pub(crate) async fn run(ctx: &Ctx, cmd: BucketCommand) -> Result<(), ClientError> {
    match cmd {
        BucketCommand::List { bucket: None, .. } => ctx.list::<Bucket>().await,
        BucketCommand::List {
            bucket: Some(b),
            prefix,
        } => objects::list(ctx, &b, prefix.as_deref()).await,
        BucketCommand::Put(a) => objects::put(ctx, &a).await,
        BucketCommand::Get(a) => objects::get(ctx, &a).await,
        BucketCommand::Delete {
            name,
            key: Some(key),
            ..
        } => objects::remove(ctx, &name, &key).await,
        BucketCommand::Show { name } => ctx.show::<Bucket>(&name).await,
        BucketCommand::Create(a) => {
            let b = ctx.create::<Bucket>(&a.name, spec_of(&a)).await?;
            let active = |c: &Doc<Bucket>| c.status.phase == BucketPhase::Active;
            let b = wait_storage::<Bucket>(ctx, b, &a.wait, "created", active).await?;
            ctx.print::<Bucket>(&b);
            Ok(())
        }
        BucketCommand::Set(a) => ctx.update_print::<Bucket>(&a.name, |s| apply(&a, s)).await,
        BucketCommand::Delete {
            name, force, wait, ..
        } => delete(ctx, &name, force, &wait).await,
    }
}

async fn delete(ctx: &Ctx, name: &str, force: bool, w: &WaitArgs) -> Result<(), ClientError> {
    let b: Obj<Bucket> = ctx.fetch::<Bucket>(name).await?;
    let path = format!("/v1/buckets/{}", b.metadata.id);
    let query = if force { "?force=true" } else { "" };
    ctx.client
        .request(Method::DELETE, &format!("{path}{query}"), None)
        .await?;
    if w.wait {
        let what = format!("bucket {name} to be deleted");
        let gone = |cur: Option<&Doc<Bucket>>| match cur {
            None => Some(Ok(())),
            Some(c) if c.metadata.deleting.is_none() => Some(Err(cell(&c.status.message))),
            Some(_) => None,
        };
        wait_for::<Bucket>(&ctx.client, &path, &what, w.timeout, gone).await?;
    }
    ctx.deleted(name, &b.metadata.id, Bucket::NOUN);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::Command;
    use crate::testing::Cli;

    fn parse(line: &str) -> BucketCommand {
        match Cli::line(line).unwrap().command {
            Command::Bucket(c) => c,
            other => panic!("{line}: {other:?}"),
        }
    }

    /// The commands of the contract, as they are typed.
    #[test]
    fn the_contract_parses() {
        let BucketCommand::Create(a) =
            parse("yunhan bucket create photos --quota-size 100MiB --wait")
        else {
            panic!("not a create");
        };
        assert_eq!(spec_of(&a).quota_bytes, Some(100 << 20));
        assert!(a.wait.wait);
        let BucketCommand::Set(s) = parse("yunhan bucket set photos --public-read") else {
            panic!("not a set");
        };
        let mut spec = spec_of(&a);
        apply(&s, &mut spec);
        assert_eq!(spec.visibility, Visibility::PublicRead);
        assert_eq!(spec.quota_bytes, Some(100 << 20));
        let d = parse("yunhan bucket delete photos --force");
        assert!(matches!(d, BucketCommand::Delete { force: true, .. }));
        assert!(matches!(
            parse("yunhan bucket show photos"),
            BucketCommand::Show { .. }
        ));
    }

    #[test]
    fn set_takes_none_to_lift_a_quota() {
        let BucketCommand::Set(s) =
            parse("yunhan bucket set b --quota-size none --quota-objects 7")
        else {
            panic!("not a set");
        };
        let mut spec = BucketSpec {
            quota_bytes: Some(1),
            ..Default::default()
        };
        apply(&s, &mut spec);
        assert_eq!((spec.quota_bytes, spec.quota_objects), (None, Some(7)));
        assert!(Cli::line("yunhan bucket set b --public-read --private").is_err());
        assert!(Cli::line("yunhan bucket set b --quota-objects many").is_err());
    }

    #[test]
    fn object_commands_parse() {
        assert!(matches!(
            parse("yunhan bucket ls"),
            BucketCommand::List { bucket: None, .. }
        ));
        let BucketCommand::List { bucket, prefix } = parse("yunhan bucket ls photos dir/") else {
            panic!("not a list");
        };
        assert_eq!(
            (bucket.as_deref(), prefix.as_deref()),
            (Some("photos"), Some("dir/"))
        );
        let BucketCommand::Put(p) = parse("yunhan bucket put photos ./cat.jpg pics/") else {
            panic!("not a put");
        };
        assert_eq!(
            (p.bucket.as_str(), p.key.as_deref()),
            ("photos", Some("pics/"))
        );
        assert!(matches!(
            parse("yunhan bucket get photos pics/cat.jpg -"),
            BucketCommand::Get(_)
        ));
        let BucketCommand::Delete {
            name, key, force, ..
        } = parse("yunhan bucket rm photos a/b")
        else {
            panic!("not a delete");
        };
        assert_eq!(
            (name.as_str(), key.as_deref(), force),
            ("photos", Some("a/b"), false)
        );
        assert!(matches!(
            parse("yunhan bucket rm photos"),
            BucketCommand::Delete { key: None, .. }
        ));
        assert!(Cli::line("yunhan bucket rm photos a --force").is_err());
    }
}
