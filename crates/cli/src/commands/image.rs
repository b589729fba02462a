//! `yunhan image …`: images VMs boot from, created with their data (an
//! upload, or an import from a path on the server).

use std::path::{Path, PathBuf};

use clap::Args;
use reqwest::Method;
use yunhan_model::{Doc, Image, ImageSpec};

use crate::client::{Answer, Client, ClientError};
use crate::ctx::{Create, Ctx};
use crate::kind::{create_in, path_of, Obj, Shown};
use crate::output::{col, Column};

/// An image is created with its data: a disk (--file) or a kernel (--kernel).
/// Examples:
///   yunhan image create tiny --file target/test-guest/test-guest.raw
///   yunhan image create debian12 --file debian-12-generic-amd64.qcow2 --min-disk-gib 3
#[derive(Args, Debug, Clone)]
#[command(
    verbatim_doc_comment,
    group = clap::ArgGroup::new("data").required(true).args(["file", "kernel"])
)]
pub struct ImageCreate {
    pub name: String,
    /// Disk image to upload (qcow2 or raw); stored as sparse RAW
    #[arg(long, conflicts_with = "kernel")]
    pub file: Option<PathBuf>,
    /// Direct-kernel image: the kernel to upload (with --initrd and --cmdline)
    #[arg(long, requires = "cmdline")]
    pub kernel: Option<PathBuf>,
    /// Direct-kernel image: the initrd to upload
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// Direct-kernel image: the kernel command line
    #[arg(long)]
    pub cmdline: Option<String>,
    /// Admins: import --file/--kernel/--initrd from paths on the server instead of uploading
    #[arg(long)]
    pub server_path: bool,
    /// Visible to every project (admins only)
    #[arg(long)]
    pub public: bool,
    #[arg(long, default_value = "")]
    pub os: String,
    /// Smallest root disk, GiB, instances of this image need
    #[arg(long, default_value_t = 0)]
    pub min_disk_gib: u64,
}

impl Shown for Image {
    const NOUN: &'static str = "image";
    const COLUMNS: &'static [Column<Doc<Image>>] = &[
        col!("NAME", metadata.name),
        col!("STATUS", status.phase),
        col!("PUBLIC", spec.public),
        col!("OS", spec.os),
        col!("ID", metadata.id),
    ];
}

impl Create for ImageCreate {
    type Kind = Image;
    async fn run(self, ctx: &Ctx) -> Result<(), ClientError> {
        let v = create_with_data(&ctx.client, &self).await?;
        ctx.print::<Image>(&v);
        Ok(())
    }
}

/// Makes sure a public image `name` is Active, uploading `file` when it is
/// missing or unusable; returns whether it imported. `yunhan up
/// --import-image` uses it, as the admin.
pub async fn ensure_public_image(
    client: &Client,
    name: &str,
    file: &Path,
) -> Result<bool, ClientError> {
    let path = path_of::<Image>(name);
    match client.get_as::<Doc<Image>>(&path).await {
        Ok(v) if v.status.phase == "Active" => return Ok(false),
        Ok(_) => {
            client.request(Method::DELETE, &path, None).await?;
        }
        Err(ClientError::Api(_, 404)) => {}
        Err(e) => return Err(e),
    }
    let a = ImageCreate {
        name: name.into(),
        file: Some(file.into()),
        kernel: None,
        initrd: None,
        cmdline: None,
        server_path: false,
        public: true,
        os: String::new(),
        min_disk_gib: 0,
    };
    create_with_data(client, &a).await.map(|_| true)
}

/// Creates the image, then uploads (or imports) its parts; a failed upload
/// deletes the image again so nothing half-made is left.
async fn create_with_data(client: &Client, a: &ImageCreate) -> Result<Obj<Image>, ClientError> {
    let spec = ImageSpec {
        public: a.public,
        os: a.os.clone(),
        kernel_cmdline: a.cmdline.clone(),
        min_disk_gib: a.min_disk_gib,
    };
    let mut v: Obj<Image> = create_in::<Image, _>(client, &a.name, spec).await?;
    let id = v.metadata.id.clone();
    // The initrd before the kernel: the kernel completes the image (Active,
    // and then never changed again).
    for (part, file) in [
        ("disk", &a.file),
        ("initrd", &a.initrd),
        ("kernel", &a.kernel),
    ] {
        let Some(file) = file else { continue };
        let put = put_part(client, &id, part, file, a.server_path).await;
        match put.and_then(|doc| doc.map(Answer::read).transpose()) {
            Ok(Some(doc)) => v = doc,
            Ok(None) => {}
            Err(e) => {
                let _ = client
                    .request(Method::DELETE, &format!("/v1/images/{id}"), None)
                    .await;
                return Err(e);
            }
        }
    }
    Ok(v)
}

/// Uploads one part of image `id`, or has the server import it from `file`.
async fn put_part(
    client: &Client,
    id: &str,
    part: &str,
    file: &Path,
    server_path: bool,
) -> Result<Option<serde_json::Value>, ClientError> {
    if server_path {
        let src = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let path = format!(
            "/v1/images/{id}/data?part={part}&source={}",
            query_escape(&src.to_string_lossy())
        );
        client.request(Method::PUT, &path, None).await
    } else {
        let path = format!("/v1/images/{id}/data?part={part}");
        client.upload(&path, file).await
    }
}

fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
