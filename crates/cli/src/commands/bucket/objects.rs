//! `yunhan bucket ls BUCKET [PREFIX]`, `put`, `get` and `rm BUCKET KEY`: a bucket's
//! objects through the API's file browser (`/v1/buckets/{id}/objects`), no S3 key
//! needed.

use std::path::{Path, PathBuf};

use clap::Args;
use futures::StreamExt;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::client::ClientError;
use crate::ctx::Ctx;
use crate::output::{print_json, table, Column, Format};

#[derive(Args, Debug, Clone)]
pub struct PutArgs {
    pub bucket: String,
    /// The file to upload
    pub file: PathBuf,
    /// The object's key (default: the file's name; one ending in `/` gets the file's
    /// name after it)
    pub key: Option<String>,
    /// The object's Content-Type (default: from the file's extension)
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    pub bucket: String,
    pub key: String,
    /// Where to write it (default: the key's last segment in this directory; `-`:
    /// standard output)
    pub file: Option<PathBuf>,
}

/// An object as the API lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Item {
    key: String,
    size: u64,
    last_modified: String,
    etag: String,
}

/// One page of a listing.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Page {
    #[serde(default)]
    items: Vec<Item>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

/// A row of `ls`: a folder (prefix) or an object.
struct Row {
    name: String,
    size: String,
    modified: String,
}

const COLUMNS: &[Column<Row>] = &[
    Column {
        header: "NAME",
        get: |r| r.name.clone(),
    },
    Column {
        header: "SIZE",
        get: |r| r.size.clone(),
    },
    Column {
        header: "MODIFIED",
        get: |r| r.modified.clone(),
    },
];

/// `s` percent-encoded for a URL: every byte but `A-Z a-z 0-9 - . _ ~` (and `/`
/// when `keep_slash`).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn object_path(bucket: &str, key: &str) -> String {
    format!(
        "/v1/buckets/{}/objects/{}",
        encode(bucket, false),
        encode(key, true)
    )
}

/// The key `put` writes: the file's name, after `key` when that ends with `/`.
fn put_key(file: &Path, key: Option<&str>) -> Result<String, ClientError> {
    let name = || {
        file.file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "{} has no file name to use as the key; give KEY",
                    file.display()
                ))
            })
    };
    match key {
        None => name(),
        Some(k) if k.ends_with('/') => Ok(format!("{k}{}", name()?)),
        Some(k) => Ok(k.to_string()),
    }
}

/// Where `get` writes: `file`, else the key's last segment.
fn get_target(key: &str, file: Option<&Path>) -> PathBuf {
    match file {
        Some(f) => f.to_path_buf(),
        None => {
            let last = key.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            PathBuf::from(match last {
                "" | "." | ".." => "object",
                name => name,
            })
        }
    }
}

/// A Content-Type from a file's extension (the common ones; else octet-stream).
fn content_type_of(file: &Path) -> &'static str {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("txt" | "log" | "md") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("css") => "text/css",
        Some("csv") => "text/csv",
        Some("js") => "text/javascript",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("pdf") => "application/pdf",
        Some("zip") => "application/zip",
        Some("gz" | "tgz") => "application/gzip",
        Some("tar") => "application/x-tar",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("webp") => "image/webp",
        Some("mp4") => "video/mp4",
        Some("mp3") => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

/// `ls BUCKET [PREFIX]`: the folders and objects directly under PREFIX (every page).
pub(crate) async fn list(ctx: &Ctx, bucket: &str, prefix: Option<&str>) -> Result<(), ClientError> {
    let prefix = prefix.unwrap_or("");
    let mut all = Page::default();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!(
            "/v1/buckets/{}/objects?delimiter=%2F&limit=1000&prefix={}",
            encode(bucket, false),
            encode(prefix, false)
        );
        if let Some(t) = &token {
            path.push_str(&format!("&page_token={}", encode(t, false)));
        }
        let raw = ctx.client.get(&path).await?;
        let page: Page =
            serde_json::from_value(raw).map_err(|e| ClientError::Unreadable(e.to_string()))?;
        all.items.extend(page.items);
        all.prefixes.extend(page.prefixes);
        match page.next_page_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => break,
        }
    }
    match ctx.format {
        Format::Json => print_json(&all),
        Format::Table => print!("{}", table(COLUMNS, &rows(&all))),
    }
    Ok(())
}

fn rows(page: &Page) -> Vec<Row> {
    let folders = page.prefixes.iter().map(|p| Row {
        name: p.clone(),
        size: "-".into(),
        modified: "-".into(),
    });
    let objects = page.items.iter().map(|i| Row {
        name: i.key.clone(),
        size: yunhan_types::sizes::human(i.size),
        modified: i.last_modified.clone(),
    });
    folders.chain(objects).collect()
}

/// `put BUCKET FILE [KEY]`.
pub(crate) async fn put(ctx: &Ctx, a: &PutArgs) -> Result<(), ClientError> {
    let key = put_key(&a.file, a.key.as_deref())?;
    let content_type = a
        .content_type
        .clone()
        .unwrap_or_else(|| content_type_of(&a.file).to_string());
    let made = ctx
        .client
        .upload_object(&object_path(&a.bucket, &key), &a.file, &content_type)
        .await?
        .unwrap_or_default();
    match ctx.format {
        Format::Json => print_json(&made),
        Format::Table => {
            let item: Item =
                serde_json::from_value(made).map_err(|e| ClientError::Unreadable(e.to_string()))?;
            let page = Page {
                items: vec![item],
                ..Default::default()
            };
            print!("{}", table(COLUMNS, &rows(&page)));
        }
    }
    Ok(())
}

/// `get BUCKET KEY [FILE]`: streamed to the file (written beside it, then renamed).
pub(crate) async fn get(ctx: &Ctx, a: &GetArgs) -> Result<(), ClientError> {
    let resp = ctx.client.download(&object_path(&a.bucket, &a.key)).await?;
    let broke = |e: reqwest::Error| ClientError::Unreachable {
        endpoint: ctx.client.endpoint().to_string(),
        why: format!("the download broke off: {e}"),
    };
    let mut body = resp.bytes_stream();
    let target = get_target(&a.key, a.file.as_deref());
    if target.as_os_str() == "-" {
        let mut out = tokio::io::stdout();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(broke)?;
            out.write_all(&chunk)
                .await
                .map_err(|e| write_error(&target, e))?;
        }
        return out.flush().await.map_err(|e| write_error(&target, e));
    }
    let partial = target.with_file_name(format!(
        ".{}.part",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object")
    ));
    let mut f = tokio::fs::File::create(&partial)
        .await
        .map_err(|e| write_error(&partial, e))?;
    let mut written = 0u64;
    let result = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(broke)?;
            f.write_all(&chunk)
                .await
                .map_err(|e| write_error(&partial, e))?;
            written += chunk.len() as u64;
        }
        f.flush().await.map_err(|e| write_error(&partial, e))?;
        tokio::fs::rename(&partial, &target)
            .await
            .map_err(|e| write_error(&target, e))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result?;
    match ctx.format {
        Format::Json => print_json(&serde_json::json!({
            "key": a.key,
            "file": target.display().to_string(),
            "bytes": written,
        })),
        Format::Table => eprintln!(
            "{} ({}) -> {}",
            a.key,
            yunhan_types::sizes::human(written),
            target.display()
        ),
    }
    Ok(())
}

fn write_error(path: &Path, e: std::io::Error) -> ClientError {
    ClientError::Usage(format!("cannot write {}: {e}", path.display()))
}

/// `rm BUCKET KEY`.
pub(crate) async fn remove(ctx: &Ctx, bucket: &str, key: &str) -> Result<(), ClientError> {
    ctx.client
        .request(Method::DELETE, &object_path(bucket, key), None)
        .await?;
    match ctx.format {
        Format::Json => print_json(&serde_json::json!({ "deleted": key })),
        Format::Table => eprintln!("deleted {key} from bucket {bucket}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names() {
        assert_eq!(
            object_path("photos", "dir/a b+c é.txt"),
            "/v1/buckets/photos/objects/dir/a%20b%2Bc%20%C3%A9.txt"
        );
        assert_eq!(encode("a/b?c", false), "a%2Fb%3Fc");
        let f = Path::new("/tmp/x/cat.jpg");
        assert_eq!(put_key(f, None).unwrap(), "cat.jpg");
        assert_eq!(put_key(f, Some("pics/")).unwrap(), "pics/cat.jpg");
        assert_eq!(put_key(f, Some("pics/dog.jpg")).unwrap(), "pics/dog.jpg");
        assert!(put_key(Path::new("/"), None).is_err());
        assert_eq!(get_target("dir/cat.jpg", None), PathBuf::from("cat.jpg"));
        assert_eq!(get_target("dir/", None), PathBuf::from("dir"));
        assert_eq!(get_target("..", None), PathBuf::from("object"));
        assert_eq!(get_target("a", Some(Path::new("-"))), PathBuf::from("-"));
        assert_eq!(content_type_of(f), "image/jpeg");
        assert_eq!(content_type_of(Path::new("x.TXT")), "text/plain");
        assert_eq!(
            content_type_of(Path::new("noext")),
            "application/octet-stream"
        );
    }

    #[test]
    fn listings_show_folders_first() {
        let page: Page = serde_json::from_value(serde_json::json!({
            "items": [{"key": "dir/a.txt", "size": 2048, "last_modified": "2024-05-01T12:00:00Z", "etag": "x"}],
            "prefixes": ["dir/sub/"],
        }))
        .unwrap();
        assert_eq!(
            table(COLUMNS, &rows(&page)),
            "NAME       SIZE   MODIFIED\n\
             dir/sub/   -      -\n\
             dir/a.txt  2 KiB  2024-05-01T12:00:00Z\n"
        );
    }
}
