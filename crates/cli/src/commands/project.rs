//! `yunhan project …`: projects (tenants) and their quotas.

use clap::Args;
use yunhan_model::{Doc, Project, ProjectSpec, Quota};
use yunhan_types::sizes::human;

use crate::client::ClientError;
use crate::ctx::{Create, Ctx};
use crate::kind::Shown;
use crate::output::{col, Column};

#[derive(Args, Debug, Clone)]
pub struct ProjectCreate {
    pub name: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Quota: instances
    #[arg(long, default_value_t = 20)]
    pub instances: u64,
    /// Quota: vCPUs
    #[arg(long, default_value_t = 40)]
    pub vcpus: u64,
    /// Quota: memory in MiB
    #[arg(long, default_value_t = 81920)]
    pub memory_mib: u64,
    /// Quota: volume GiB
    #[arg(long, default_value_t = 2000)]
    pub volume_gib: u64,
    /// Quota: elastic IPs
    #[arg(long, default_value_t = 10)]
    pub elastic_ips: u64,
    /// Quota: images (whatever their state)
    #[arg(long, default_value_t = 50)]
    pub images: u64,
    /// Quota: bytes the project's images may occupy in the image store, e.g. 200G, 512M
    #[arg(long, default_value = "200G", value_parser = yunhan_types::sizes::parse_size)]
    pub image_bytes: u64,
    /// Quota: load balancers
    #[arg(long, default_value_t = 10)]
    pub load_balancers: u64,
    /// Quota: listeners over all its load balancers
    #[arg(long, default_value_t = 50)]
    pub listeners: u64,
    /// Quota: S3 buckets
    #[arg(long, default_value_t = 100)]
    pub buckets: u64,
    /// Quota: bytes all the project's buckets may hold, e.g. 1T, 500G (the S3 gateway
    /// refuses uploads beyond it)
    #[arg(long, default_value = "1T", value_parser = yunhan_types::sizes::parse_size)]
    pub object_bytes: u64,
}

/// A column of usage against quota, `used/allowed`.
macro_rules! usage {
    ($header:literal, $field:ident) => {
        Column {
            header: $header,
            get: |v| format!("{}/{}", v.status.usage.$field, v.spec.quota.$field),
        }
    };
}

impl Shown for Project {
    const NOUN: &'static str = "project";
    const COLUMNS: &'static [Column<Doc<Project>>] = &[
        col!("NAME", metadata.name),
        usage!("INSTANCES", instances),
        usage!("VCPUS", vcpus),
        usage!("MEMORY_MIB", memory_mib),
        usage!("VOLUME_GIB", volume_gib),
        usage!("IMAGES", images),
        Column {
            header: "IMAGE_DATA",
            get: |v| {
                let (used, quota) = (v.status.usage.image_bytes, v.spec.quota.image_bytes);
                format!("{}/{}", human(used), human(quota))
            },
        },
        usage!("LBS", load_balancers),
        usage!("LISTENERS", listeners),
        usage!("BUCKETS", buckets),
        col!("ID", metadata.id),
    ];
}

impl Create for ProjectCreate {
    type Kind = Project;
    async fn run(self, ctx: &Ctx) -> Result<(), ClientError> {
        let quota = Quota {
            instances: self.instances,
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            volume_gib: self.volume_gib,
            elastic_ips: self.elastic_ips,
            images: self.images,
            image_bytes: self.image_bytes,
            load_balancers: self.load_balancers,
            listeners: self.listeners,
            buckets: self.buckets,
            object_bytes: self.object_bytes,
        };
        let spec = ProjectSpec {
            description: self.description,
            quota,
        };
        ctx.create_print::<Project>(&self.name, spec).await
    }
}
