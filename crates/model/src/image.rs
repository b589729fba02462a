//! Images: what instances boot from (disk images, or kernel + initrd), charged to their
//! project's image quota.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::kind_consts;
use crate::{ApiError, Kind, Usage};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Visible to every project (admins only).
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub os: String,
    /// Kernel command line of a direct-kernel image (kernel + initrd, like
    /// OpenStack's AKI/ARI); absent for disk images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_cmdline: Option<String>,
    /// Smallest root disk (GiB) instances of this image may have (0 = the image's size).
    #[serde(default)]
    #[schemars(range(max = 65536))]
    pub min_disk_gib: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ImageStatus {
    /// `Pending` (no data yet), `Active` (usable) or `Failed` (see `message`).
    pub phase: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Format the data was uploaded in (`raw`, `qcow2`); stored as RAW.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source_format: String,
    /// Virtual size of the disk, bytes.
    pub size_bytes: u64,
    /// Bytes actually allocated in the image store (thin).
    pub allocated_bytes: u64,
    /// `sha256:<hex>` of the stored RAW disk (or kernel for direct-kernel images).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub checksum: String,
    /// Bytes this image holds in the image store (disk, kernel and initrd as
    /// stored), charged to its project's `image_bytes` quota; while a disk
    /// converts, its virtual size is reserved here instead.
    pub stored_bytes: u64,
    /// Where the server keeps the RAW disk (on the image store). Shown to
    /// platform admins only; members' responses leave the server paths out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<String>,
}

pub struct Image;
impl Kind for Image {
    kind_consts!("Image", "images", "img", Project, admin_write: false);
    type Spec = ImageSpec;
    type Status = ImageStatus;
    fn validate(spec: &ImageSpec) -> Result<(), ApiError> {
        if spec.os.chars().count() > 64 || spec.os.chars().any(char::is_control) {
            return Err(ApiError::invalid_field(
                "spec.os",
                "os is at most 64 printable characters",
            ));
        }
        Ok(())
    }
    /// One image, and the bytes it holds (or has reserved) in the image store.
    fn usage(_spec: &ImageSpec, status: &ImageStatus) -> Usage {
        Usage {
            images: 1,
            image_bytes: status.stored_bytes,
            ..Usage::default()
        }
    }
}
