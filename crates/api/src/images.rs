//! Image data: uploads (or server-side imports) land in the image store,
//! are checked with `qemu-img info` (only raw and qcow2, no backing or data
//! files — a qcow2 pointing at another file could read host data), converted
//! once to sparse RAW, checksummed, and published in the image's status.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use yunhan_model::{ApiError, ErrorCode, Image};
use yunhan_store::objects::Doc;

use crate::auth::Principal;
use crate::error::{HttpError, Result};
use crate::extract::QueryParams;
use crate::Shared;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    #[default]
    Disk,
    Kernel,
    Initrd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataQuery {
    #[serde(default)]
    part: Part,
    /// Admins: import from this absolute path on the server instead of the body.
    source: Option<String>,
    project: Option<String>,
}

fn bad(field: &str, msg: impl Into<String>) -> HttpError {
    ApiError::invalid_field(field, msg).into()
}

fn internal(what: &str, e: impl std::fmt::Display) -> HttpError {
    tracing::error!(error = %e, "{what}");
    ApiError::new(ErrorCode::Internal, format!("{what}: {e}")).into()
}

#[derive(Debug, Deserialize)]
struct QemuImgInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
    #[serde(rename = "format-specific")]
    format_specific: Option<serde_json::Value>,
}

/// What `qemu-img info` says about an uploaded file, refusing anything that
/// is not a self-contained raw or qcow2 disk.
async fn inspect(path: &Path, max_virtual: u64) -> Result<QemuImgInfo> {
    let out = tokio::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .await
        .map_err(|e| internal("cannot run qemu-img (is qemu-utils installed?)", e))?;
    if !out.status.success() {
        return Err(bad(
            "data",
            format!(
                "not a disk image qemu-img can read: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    let info: QemuImgInfo = serde_json::from_slice(&out.stdout)
        .map_err(|e| internal("unexpected qemu-img output", e))?;
    if !matches!(info.format.as_str(), "raw" | "qcow2") {
        return Err(bad(
            "data",
            format!("images must be raw or qcow2, this is {}", info.format),
        ));
    }
    if let Some(b) = &info.backing_filename {
        return Err(bad("data", format!("qcow2 images with a backing file are refused (backing file {b:?}): flatten it with 'qemu-img convert' first")));
    }
    let external_data = info
        .format_specific
        .as_ref()
        .and_then(|f| f.pointer("/data/data-file"))
        .is_some();
    if external_data {
        return Err(bad(
            "data",
            "qcow2 images with an external data file are refused",
        ));
    }
    if info.format == "raw" && !info.virtual_size.is_multiple_of(512) {
        return Err(bad(
            "data",
            format!(
                "this is not a disk image: {} bytes is not a whole number of 512-byte sectors",
                info.virtual_size
            ),
        ));
    }
    if info.virtual_size == 0 || info.virtual_size > max_virtual {
        return Err(bad(
            "data",
            format!(
                "the disk's virtual size {} bytes is outside 1 byte – {max_virtual} bytes",
                info.virtual_size
            ),
        ));
    }
    Ok(info)
}

async fn sha256_of(path: &Path) -> Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut f = std::fs::File::open(&path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok::<_, std::io::Error>(format!("sha256:{}", hex::encode(h.finalize())))
    })
    .await
    .map_err(|e| internal("checksum task failed", e))?
    .map_err(|e| internal("cannot read the stored image", e))
}

fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// Streams the request body to `dest`, refusing more than `max` bytes.
async fn receive(body: Body, dest: &Path, max: u64) -> Result<u64> {
    let mut f = tokio::fs::File::create(dest)
        .await
        .map_err(|e| internal("cannot write to the image store", e))?;
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad("data", format!("the upload broke off: {e}")))?;
        total += chunk.len() as u64;
        if total > max {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("images are at most {max} bytes"),
            )
            .into());
        }
        f.write_all(&chunk)
            .await
            .map_err(|e| internal("cannot write to the image store", e))?;
    }
    f.sync_all()
        .await
        .map_err(|e| internal("cannot write to the image store", e))?;
    if total == 0 {
        return Err(bad("data", "the upload is empty"));
    }
    Ok(total)
}

/// `PUT /v1/images/{id}/data?part=disk|kernel|initrd` with the bytes as body
/// (or `?source=/path` for admins): stores that part and, once complete,
/// marks the image Active.
pub async fn upload(
    State(s): State<Shared>,
    p: Principal,
    UrlPath(id): UrlPath<String>,
    QueryParams(q): QueryParams<DataQuery>,
    body: Body,
) -> Result<Json<Doc<Image>>> {
    let image = crate::handlers::find_writable::<Image>(&s, &p, &id, q.project.as_deref()).await?;
    let dir = s.image_dir.clone();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| internal("cannot create the image store", e))?;
    let id = image.metadata.id.clone();
    let staging = dir.join(format!("{id}.{:?}.upload", q.part).to_lowercase());
    let result = store_part(&s, &p, &image, q.part, q.source.as_deref(), body, &staging).await;
    let _ = tokio::fs::remove_file(&staging).await;
    let (final_path, checksum, size, source_format) = result?;

    let path_str = final_path.to_string_lossy().into_owned();
    let doc = s
        .objects
        .modify::<Image>(&id, |img| {
            match q.part {
                Part::Disk => {
                    img.status.disk_path = Some(path_str.clone());
                    img.status.size_bytes = size;
                    img.status.allocated_bytes = allocated(&final_path);
                    img.status.checksum = checksum.clone();
                    img.status.source_format = source_format.clone();
                }
                Part::Kernel => {
                    img.status.kernel_path = Some(path_str.clone());
                    img.status.checksum = checksum.clone();
                    img.status.size_bytes = size;
                    img.status.source_format = "kernel".into();
                }
                Part::Initrd => img.status.initrd_path = Some(path_str.clone()),
            }
            let ready = img.status.disk_path.is_some()
                || (img.spec.kernel_cmdline.is_some() && img.status.kernel_path.is_some());
            img.status.phase = if ready { "Active" } else { "Pending" }.into();
            img.status.message.clear();
            true
        })
        .await?
        .ok_or_else(|| ApiError::not_found("Image", &id))?;
    Ok(Json(doc))
}

async fn store_part(
    s: &Shared,
    p: &Principal,
    image: &Doc<Image>,
    part: Part,
    source: Option<&str>,
    body: Body,
    staging: &Path,
) -> Result<(PathBuf, String, u64, String)> {
    let id = &image.metadata.id;
    let input: PathBuf = match source {
        Some(src) => {
            if !p.is_admin() {
                return Err(ApiError::new(ErrorCode::Forbidden, "importing from a server path needs the platform-admin role; upload the file instead").into());
            }
            let src = PathBuf::from(src);
            if !src.is_absolute() || !src.is_file() {
                return Err(bad(
                    "source",
                    format!(
                        "{} is not a file the server can read (give an absolute path)",
                        src.display()
                    ),
                ));
            }
            src
        }
        None => {
            receive(body, staging, s.image_max_bytes).await?;
            staging.to_path_buf()
        }
    };
    match part {
        Part::Disk => {
            let info = inspect(&input, s.image_max_bytes.saturating_mul(16)).await?;
            let dest = s.image_dir.join(format!("{id}.raw"));
            let out = tokio::process::Command::new("qemu-img")
                .args(["convert", "-q", "-f", &info.format, "-O", "raw", "-S", "4k"])
                .arg(&input)
                .arg(&dest)
                .output()
                .await
                .map_err(|e| internal("cannot run qemu-img", e))?;
            if !out.status.success() {
                let _ = tokio::fs::remove_file(&dest).await;
                return Err(bad(
                    "data",
                    format!(
                        "converting the image failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                ));
            }
            let sum = sha256_of(&dest).await?;
            Ok((dest, sum, info.virtual_size, info.format))
        }
        Part::Kernel | Part::Initrd => {
            let ext = if part == Part::Kernel {
                "kernel"
            } else {
                "initrd"
            };
            let dest = s.image_dir.join(format!("{id}.{ext}"));
            tokio::fs::copy(&input, &dest)
                .await
                .map_err(|e| internal("cannot store the file", e))?;
            let size = tokio::fs::metadata(&dest)
                .await
                .map(|m| m.len())
                .unwrap_or(0);
            let sum = sha256_of(&dest).await?;
            Ok((dest, sum, size, ext.into()))
        }
    }
}

/// Removes an image's files from the store (after its object is deleted).
pub async fn remove_files(dir: &Path, id: &str) {
    for ext in ["raw", "kernel", "initrd"] {
        let _ = tokio::fs::remove_file(dir.join(format!("{id}.{ext}"))).await;
    }
}
