//! Image data: uploads (or admins' imports from the import directory) land
//! in the image store, are checked with `qemu-img info` (only raw and qcow2,
//! no backing or data files — a qcow2 pointing at another file could read host
//! data), converted once to sparse RAW, checksummed, and published in the
//! image's status. Data are written once (an Active image is never
//! re-uploaded) and count against the project's `image_bytes` quota: the
//! declared or received size first, then the disk's virtual size, reserved
//! atomically before conversion (so a small qcow2 cannot unpack past it).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use yunhan_model::{ApiError, ErrorCode, Image, Project};
use yunhan_store::objects::{Doc, ObjectError};

use crate::auth::Principal;
use crate::error::{HttpError, Result};
use crate::extract::QueryParams;
use crate::lookup::find_writable;
use crate::resource::conflict;
use crate::{AppState, Shared};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    #[default]
    Disk,
    Kernel,
    Initrd,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Disk => "disk",
            Part::Kernel => "kernel",
            Part::Initrd => "initrd",
        }
    }
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

pub(super) fn internal(what: &str, e: impl std::fmt::Display) -> HttpError {
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
    let stdout = qemu_img(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(path),
        "cannot run qemu-img (is qemu-utils installed?)",
        "not a disk image qemu-img can read",
    )
    .await?;
    let info: QemuImgInfo =
        serde_json::from_slice(&stdout).map_err(|e| internal("unexpected qemu-img output", e))?;
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
    if info.format == "raw" {
        check_whole_sectors(path).await?;
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

/// QEMU reads a raw disk in 512-byte sectors and would pad a partial last
/// one with zeros: such a file is refused rather than silently changed.
async fn check_whole_sectors(path: &Path) -> Result<()> {
    let len = tokio::fs::metadata(path)
        .await
        .map_err(|e| internal("cannot read the upload", e))?
        .len();
    if !len.is_multiple_of(512) {
        return Err(bad(
            "data",
            format!(
                "a raw disk must be whole 512-byte sectors: this one is {len} bytes \
                 ({} over); pad it with 'truncate -s %512 FILE' if that is what you meant",
                len % 512
            ),
        ));
    }
    Ok(())
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

/// What the project may still store, read before an upload (the atomic
/// check is the reservation in [`reserve`]).
struct Budget {
    used: u64,
    limit: u64,
}

impl Budget {
    async fn of(s: &AppState, image: &Doc<Image>) -> Result<Budget> {
        let Some(pid) = image.metadata.project.as_deref() else {
            return Ok(Budget {
                used: 0,
                limit: u64::MAX,
            });
        };
        let project = s
            .objects
            .get::<Project>(pid)
            .await?
            .ok_or_else(|| ApiError::not_found("Project", pid))?;
        Ok(Budget {
            used: project.status.usage.image_bytes,
            limit: project.spec.quota.image_bytes,
        })
    }

    /// Refuses `bytes` more than the project's `image_bytes` quota allows.
    fn check(&self, bytes: u64) -> Result<()> {
        let after = self.used.saturating_add(bytes);
        if after > self.limit {
            return Err(ObjectError::QuotaExceeded {
                resource: "image_bytes",
                used: after,
                limit: self.limit,
            }
            .into());
        }
        Ok(())
    }
}

/// Streams the request body to `dest`, refusing more than `max` bytes or
/// more than the project's quota allows.
async fn receive(body: Body, dest: &Path, max: u64, budget: &Budget) -> Result<u64> {
    let mut f = tokio::fs::File::create(dest)
        .await
        .map_err(|e| internal("cannot write to the image store", e))?;
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| bad("data", format!("the upload broke off: {e}")))?;
        total += chunk.len() as u64;
        check_size(total, max, budget)?;
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

fn check_size(bytes: u64, max: u64, budget: &Budget) -> Result<()> {
    if bytes > max {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("images are at most {max} bytes"),
        )
        .into());
    }
    budget.check(bytes)
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Where an upload's bytes come from.
enum Input {
    Body {
        body: Body,
        declared: Option<u64>,
    },
    /// A file in the import directory, already resolved (no symlinks left).
    Server(PathBuf),
}

/// One upload per image at a time (in this server): the claim is released
/// when the upload ends, however it ends.
static UPLOADING: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Default::default);

struct Claim(String);

impl Claim {
    fn take(image: &Doc<Image>) -> Result<Claim> {
        let mut busy = UPLOADING.lock().unwrap_or_else(|e| e.into_inner());
        if !busy.insert(image.metadata.id.clone()) {
            return Err(conflict(format!(
                "an upload to image {:?} is already running; wait for it",
                image.metadata.name
            )));
        }
        Ok(Claim(image.metadata.id.clone()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        UPLOADING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// A file removed when dropped (staged uploads, whatever happens to the request).
struct Staged(PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Image data are written once, and only the parts of the image's kind: a
/// disk for disk images, a kernel (and initrd) for direct-kernel images.
fn check_part_fits(image: &Doc<Image>, part: Part) -> Result<()> {
    let name = &image.metadata.name;
    if image.status.phase == "Active" {
        return Err(conflict(format!(
            "image {name:?} is Active: its data cannot be replaced or added to (instances boot from it); create a new image"
        )));
    }
    let direct_kernel = image.spec.kernel_cmdline.is_some();
    if direct_kernel && part == Part::Disk {
        return Err(conflict(format!(
            "image {name:?} is a direct-kernel image (it has spec.kernel_cmdline): upload part=kernel and part=initrd, not a disk"
        )));
    }
    if !direct_kernel && part != Part::Disk {
        return Err(conflict(format!(
            "image {name:?} is a disk image: a {} belongs to a direct-kernel image (create one with spec.kernel_cmdline)",
            part.name()
        )));
    }
    let present = match part {
        Part::Disk => image.status.disk_path.is_some(),
        Part::Kernel => image.status.kernel_path.is_some(),
        Part::Initrd => image.status.initrd_path.is_some(),
    };
    if present {
        return Err(conflict(format!(
            "the {} of image {name:?} is already uploaded; create a new image",
            part.name()
        )));
    }
    Ok(())
}

/// Admins' server-path imports: only regular files inside the import
/// directory, after resolving symlinks and `..`.
async fn import_source(s: &AppState, p: &Principal, src: &str) -> Result<PathBuf> {
    if !p.is_admin() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "importing from a server path needs the platform-admin role; upload the file instead",
        )
        .into());
    }
    let dir = &s.config.import_dir;
    let outside = |what: String| -> HttpError {
        ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "server-path imports must be files inside the import directory {} (--import-dir): {what}; copy the file there or upload it instead",
                dir.display()
            ),
        )
        .with_detail("import_dir", dir.to_string_lossy())
        .into()
    };
    let src = PathBuf::from(src);
    if !src.is_absolute() {
        return Err(bad("source", "give an absolute path on the server"));
    }
    let Ok(root) = tokio::fs::canonicalize(dir).await else {
        return Err(outside(
            "that directory does not exist on this server".into(),
        ));
    };
    let real = tokio::fs::canonicalize(&src)
        .await
        .map_err(|e| bad("source", format!("cannot read {}: {e}", src.display())))?;
    if !real.starts_with(&root) {
        return Err(outside(format!(
            "{} resolves to {}",
            src.display(),
            real.display()
        )));
    }
    if !real.is_file() {
        return Err(bad(
            "source",
            format!("{} is not a regular file", src.display()),
        ));
    }
    Ok(real)
}

/// `PUT /v1/images/{id}/data?part=disk|kernel|initrd` with the bytes as body
/// (or `?source=/path` for admins, inside the import directory): stores that
/// part and, once complete, marks the image Active. A refused upload leaves
/// no file and no quota charged; the image is then Failed with the reason.
pub async fn upload(
    State(s): State<Shared>,
    p: Principal,
    UrlPath(id): UrlPath<String>,
    QueryParams(q): QueryParams<DataQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Doc<Image>>> {
    let image = find_writable::<Image>(&s, &p, &id, q.project.as_deref()).await?;
    let input = match q.source.as_deref() {
        Some(src) => Input::Server(import_source(&s, &p, src).await?),
        None => Input::Body {
            body,
            declared: declared_length(&headers),
        },
    };
    let claim = Claim::take(&image)?;
    // In its own task: a client that goes away mid-conversion leaves nothing half-made.
    let task = tokio::spawn(async move {
        let _claim = claim;
        run_upload(&s, &image.metadata.id, q.part, input).await
    });
    task.await
        .map_err(|e| internal("the upload task failed", e))?
        .map(Json)
}

async fn run_upload(s: &AppState, id: &str, part: Part, input: Input) -> Result<Doc<Image>> {
    // Read again under the claim: another upload may have finished meanwhile.
    let image = s
        .objects
        .get::<Image>(id)
        .await?
        .ok_or_else(|| ApiError::not_found("Image", id))?;
    check_part_fits(&image, part)?;
    tokio::fs::create_dir_all(&s.config.image_dir)
        .await
        .map_err(|e| internal("cannot create the image store", e))?;
    match store_part(s, &image, part, input).await {
        Ok(stored) => publish(s, id, part, stored).await,
        Err(e) => {
            mark_failed(s, id, &e).await;
            Err(e)
        }
    }
}

/// A part in the image store, and what it is charged.
struct Stored {
    path: PathBuf,
    checksum: String,
    size: u64,
    format: String,
    /// Reserved in `stored_bytes` before it was written.
    reserved: u64,
    /// What it holds as stored (at most `reserved`).
    charged: u64,
}

async fn store_part(s: &AppState, image: &Doc<Image>, part: Part, input: Input) -> Result<Stored> {
    let budget = Budget::of(s, image).await?;
    let staged = Staged(s.config.image_dir.join(format!(
        "{}.{}.upload",
        image.metadata.id,
        part.name()
    )));
    let input = match input {
        Input::Server(path) => {
            let len = tokio::fs::metadata(&path)
                .await
                .map_err(|e| bad("source", format!("cannot read {}: {e}", path.display())))?
                .len();
            check_size(len, s.config.image_max_bytes, &budget)?;
            path
        }
        Input::Body { body, declared } => {
            if let Some(len) = declared {
                check_size(len, s.config.image_max_bytes, &budget)?;
            }
            receive(body, &staged.0, s.config.image_max_bytes, &budget).await?;
            staged.0.clone()
        }
    };
    match part {
        Part::Disk => store_disk(s, image, &input, &budget).await,
        Part::Kernel | Part::Initrd => store_file(s, image, part, &input).await,
    }
}

/// Checks the disk, reserves its virtual size (what conversion may write at
/// most) against the quota, converts it to sparse RAW and checksums it.
async fn store_disk(
    s: &AppState,
    image: &Doc<Image>,
    input: &Path,
    budget: &Budget,
) -> Result<Stored> {
    let info = inspect(input, s.config.image_max_bytes.saturating_mul(16)).await?;
    // Refused before any conversion: a small qcow2 may unpack to its virtual size.
    budget.check(info.virtual_size)?;
    let id = &image.metadata.id;
    let dest = s.config.image_dir.join(format!("{id}.raw"));
    let reserved = info.virtual_size;
    let converted = convert(&info.format, input, &dest);
    let checksum = write_charged(s, id, &dest, reserved, converted).await?;
    Ok(Stored {
        charged: allocated(&dest).min(reserved),
        path: dest,
        checksum,
        size: info.virtual_size,
        format: info.format,
        reserved,
    })
}

async fn convert(format: &str, input: &Path, dest: &Path) -> Result<()> {
    qemu_img(
        Command::new("qemu-img")
            .args(["convert", "-q", "-f", format, "-O", "raw", "-S", "4k"])
            .arg(input)
            .arg(dest),
        "cannot run qemu-img",
        "converting the image failed",
    )
    .await?;
    Ok(())
}

/// Runs a `qemu-img` command: its output, or (500) `cannot_run` when it does not start,
/// or (400 on `data`) `failed` and what it said when it fails.
async fn qemu_img(cmd: &mut Command, cannot_run: &str, failed: &str) -> Result<Vec<u8>> {
    let out = cmd.output().await.map_err(|e| internal(cannot_run, e))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(bad("data", format!("{failed}: {}", said.trim())));
    }
    Ok(out.stdout)
}

/// A kernel or initrd, copied as it is (its size was checked against the quota).
async fn store_file(s: &AppState, image: &Doc<Image>, part: Part, input: &Path) -> Result<Stored> {
    let id = &image.metadata.id;
    let size = tokio::fs::metadata(input)
        .await
        .map_err(|e| internal("cannot read the upload", e))?
        .len();
    let dest = s.config.image_dir.join(format!("{id}.{}", part.name()));
    let copied = async {
        tokio::fs::copy(input, &dest)
            .await
            .map_err(|e| internal("cannot store the file", e))?;
        Ok(())
    };
    let checksum = write_charged(s, id, &dest, size, copied).await?;
    Ok(Stored {
        charged: allocated(&dest).min(size),
        path: dest,
        checksum,
        size,
        format: part.name().into(),
        reserved: size,
    })
}

/// Charges `reserved` bytes to image `id`, runs `write` (which makes `dest`), then
/// makes `dest` private and checksums it. On failure `dest` goes and the charge with it.
async fn write_charged(
    s: &AppState,
    id: &str,
    dest: &Path,
    reserved: u64,
    write: impl std::future::Future<Output = Result<()>>,
) -> Result<String> {
    reserve(s, id, reserved).await?;
    let written = async {
        write.await?;
        private(dest).await?;
        sha256_of(dest).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(dest).await;
        release(s, id, reserved).await;
    }
    written
}

/// Stored images are the server's alone (0600, in a 0700 image store).
async fn private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .await
        .map_err(|e| internal("cannot restrict the stored image", e))
}

/// Charges `bytes` to the image (and so its project) atomically: refused
/// with `quota_exceeded` when the project's `image_bytes` would be exceeded.
async fn reserve(s: &AppState, id: &str, bytes: u64) -> Result<()> {
    s.objects
        .modify::<Image>(id, |img| {
            img.status.stored_bytes = img.status.stored_bytes.saturating_add(bytes);
            true
        })
        .await?
        .ok_or_else(|| ApiError::not_found("Image", id))?;
    Ok(())
}

/// Gives a reservation back after a failed write.
async fn release(s: &AppState, id: &str, bytes: u64) {
    let r = s
        .objects
        .modify::<Image>(id, |img| {
            img.status.stored_bytes = img.status.stored_bytes.saturating_sub(bytes);
            true
        })
        .await;
    if let Err(e) = r {
        tracing::error!(image = id, error = %e, "cannot release an image upload's quota reservation");
    }
}

async fn publish(s: &AppState, id: &str, part: Part, st: Stored) -> Result<Doc<Image>> {
    let path = st.path.to_string_lossy().into_owned();
    let doc = s
        .objects
        .modify::<Image>(id, |img| {
            img.status.stored_bytes =
                img.status.stored_bytes.saturating_sub(st.reserved) + st.charged;
            match part {
                Part::Disk => {
                    img.status.disk_path = Some(path.clone());
                    img.status.size_bytes = st.size;
                    img.status.allocated_bytes = allocated(&st.path);
                    img.status.checksum = st.checksum.clone();
                    img.status.source_format = st.format.clone();
                }
                Part::Kernel => {
                    img.status.kernel_path = Some(path.clone());
                    img.status.checksum = st.checksum.clone();
                    img.status.size_bytes = st.size;
                    img.status.source_format = st.format.clone();
                }
                Part::Initrd => img.status.initrd_path = Some(path.clone()),
            }
            let ready = img.status.disk_path.is_some()
                || (img.spec.kernel_cmdline.is_some() && img.status.kernel_path.is_some());
            img.status.phase = if ready { "Active" } else { "Pending" }.into();
            img.status.message = if ready {
                String::new()
            } else {
                format!(
                    "waiting for its kernel: upload it with PUT /v1/images/{id}/data?part=kernel"
                )
            };
            true
        })
        .await?;
    match doc {
        Some(doc) => Ok(doc),
        None => {
            // Deleted while it uploaded: its files go too.
            let _ = tokio::fs::remove_file(&st.path).await;
            Err(ApiError::not_found("Image", id).into())
        }
    }
}

/// Records why the last upload was refused (nothing of it was kept).
async fn mark_failed(s: &AppState, id: &str, e: &HttpError) {
    let why = format!("the last upload was refused: {}", e.error.message);
    let r = s
        .objects
        .modify::<Image>(id, |img| {
            img.status.phase = "Failed".into();
            img.status.message = why.clone();
            true
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(image = id, error = %e, "cannot record a failed image upload");
    }
}

/// Removes an image's files from the store (after its object is deleted).
pub async fn remove_files(dir: &Path, id: &str) {
    for ext in ["raw", "kernel", "initrd"] {
        let _ = tokio::fs::remove_file(dir.join(format!("{id}.{ext}"))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refuses_what_would_pass_the_quota() {
        let b = Budget {
            used: 10,
            limit: 20,
        };
        assert!(b.check(10).is_ok());
        let e = b.check(11).unwrap_err();
        assert_eq!(e.error.code, ErrorCode::QuotaExceeded);
        assert!(check_size(
            21,
            20,
            &Budget {
                used: 0,
                limit: 100
            }
        )
        .is_err_and(|e| e.error.code == ErrorCode::PayloadTooLarge));
    }
}
