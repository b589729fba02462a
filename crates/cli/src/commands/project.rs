//! `yunhan project …`: projects (tenants) and their quotas.

use clap::{Args, Subcommand};
use yunhan_model::{Doc, Project, ProjectSpec, Quota};
use yunhan_types::sizes::human;

use crate::client::ClientError;
use crate::ctx::{Common, Ctx};
use crate::kind::Shown;
use crate::output::{col, Column};

/// Projects (tenants) and their quotas
#[derive(Subcommand, Debug, Clone)]
pub enum ProjectCommand {
    #[command(flatten)]
    Common(Common),
    /// Create one
    Create(ProjectCreate),
}

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

pub(crate) async fn run(ctx: &Ctx, cmd: ProjectCommand) -> Result<(), ClientError> {
    match cmd {
        ProjectCommand::Common(verb) => ctx.common::<Project>(verb).await,
        ProjectCommand::Create(a) => {
            let quota = Quota {
                instances: a.instances,
                vcpus: a.vcpus,
                memory_mib: a.memory_mib,
                volume_gib: a.volume_gib,
                elastic_ips: a.elastic_ips,
                images: a.images,
                image_bytes: a.image_bytes,
                load_balancers: a.load_balancers,
                listeners: a.listeners,
                buckets: a.buckets,
                object_bytes: a.object_bytes,
            };
            let spec = ProjectSpec {
                description: a.description,
                quota,
            };
            ctx.create_print::<Project>(&a.name, spec).await
        }
    }
}
