use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{Client, ClientError};
use crate::config::{default_path, ClientConfig};
use crate::output::{print, text, Column, Format};
use yunhan_types::sizes::human;

/// Options every client command takes.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// API endpoint, e.g. http://127.0.0.1:7070 [default: from the config file]
    #[arg(long, env = "YUNHAN_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// API token (yh_…) [default: from the config file]
    #[arg(long, env = "YUNHAN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Client config file [default: ~/.config/yunhan/config.toml]
    #[arg(long, env = "YUNHAN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Output format: a table for people, JSON for scripts
    #[arg(short = 'o', long, value_enum, default_value_t, global = true)]
    pub output: Format,
}

/// `list`, `show`, `create`, `delete` for one resource kind.
macro_rules! resource_command {
    ($(#[$m:meta])* $name:ident, $create:ty $(, { $($extra:tt)* })?) => {
        #[derive(Subcommand, Debug, Clone)]
        $(#[$m])*
        // Parsed once per process: the size of a variant does not matter.
        #[allow(clippy::large_enum_variant)]
        pub enum $name {
            /// List them (all pages)
            #[command(alias = "ls")]
            List,
            /// Show one, by name or id
            Show { name: String },
            /// Create one
            Create($create),
            /// Delete one, by name or id
            #[command(alias = "rm")]
            Delete {
                name: String,
                /// Wait until it is completely gone
                #[arg(long)]
                wait: bool,
            },
            $($($extra)*)?
        }

        impl $name {
            /// The verbs every kind shares, or the command back if it is kind-specific.
            // The command is handed straight back to a match; boxing it buys nothing.
            #[allow(clippy::result_large_err)]
            fn verb(self) -> Result<Verb, $name> {
                match self {
                    $name::List => Ok(Verb::List),
                    $name::Show { name } => Ok(Verb::Show(name)),
                    $name::Delete { name, wait } => Ok(Verb::Delete(name, wait)),
                    other => Err(other),
                }
            }
        }
    };
}
pub(crate) use resource_command;

/// `list`, `show`, `delete`: the same for every kind.
pub(crate) enum Verb {
    List,
    Show(String),
    Delete(String, bool),
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
}

#[derive(Args, Debug, Clone)]
pub struct UserCreate {
    pub name: String,
    /// The user's project (name or id)
    #[arg(long)]
    pub project: String,
    /// Make the user a platform admin
    #[arg(long)]
    pub admin: bool,
}

#[derive(Args, Debug, Clone)]
pub struct KeyCreate {
    pub name: String,
    /// Create the key for this user (admins only; default: yourself)
    #[arg(long)]
    pub user: Option<String>,
    /// The key stops working after this long: 30d, 12h, 90m, 2w (default: never)
    #[arg(long, value_name = "DURATION", value_parser = parse_key_ttl, conflicts_with = "expires_at")]
    pub expires_in: Option<Duration>,
    /// The key stops working at this time (RFC 3339, e.g. 2030-01-31T00:00:00Z)
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a key lifetime like 30d, 12h, 90m or 2w (at most 100 years)")]
pub struct BadKeyTtl(String);

/// `<n><unit>` with unit s, m, h, d or w, up to 100 years.
fn parse_key_ttl(s: &str) -> Result<Duration, BadKeyTtl> {
    let bad = || BadKeyTtl(s.to_string());
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    let secs = n
        .checked_mul(unit_secs)
        .filter(|s| (1..=100 * 365 * 86_400).contains(s));
    secs.map(Duration::from_secs).ok_or_else(bad)
}

#[cfg(test)]
mod key_ttl_tests {
    use super::*;

    #[test]
    fn key_lifetimes_parse_with_units_and_bounds() {
        assert_eq!(
            parse_key_ttl("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_key_ttl("2w").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(parse_key_ttl("90m").unwrap(), Duration::from_secs(5400));
        for bad in [
            "",
            "30",
            "0d",
            "d",
            "-1d",
            "1y",
            "99999999999999999w",
            "40000d",
        ] {
            assert!(parse_key_ttl(bad).is_err(), "{bad:?}");
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct FlavorCreate {
    pub name: String,
    #[arg(long)]
    pub vcpus: u32,
    /// Memory in MiB
    #[arg(long)]
    pub memory_mib: u64,
    /// Root disk in GiB
    #[arg(long)]
    pub disk_gib: u64,
    #[arg(long, default_value_t = 0)]
    pub gpus: u32,
}

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

#[derive(Args, Debug, Clone)]
pub struct VmCreate {
    pub name: String,
    /// Image name or id ('yunhan image list')
    #[arg(long)]
    pub image: String,
    /// Flavor name or id ('yunhan flavor list')
    #[arg(long)]
    pub flavor: String,
    /// Boot from this bootable Ceph volume instead of a copy of the image, e.g. an
    /// RBD copy-on-write clone: 'yunhan volume create root1 --image IMG --size 10GiB
    /// --pool ceph --bootable'
    #[arg(long, value_name = "VOLUME")]
    pub boot_volume: Option<String>,
    /// Placement group (name or id): spread over hosts by its anti-affinity rule
    #[arg(long)]
    pub placement_group: Option<String>,
    /// cloud-init user-data file (a '#!' script or '#cloud-config')
    #[arg(long)]
    pub user_data: Option<PathBuf>,
    /// SSH public key (its text, e.g. "$(cat ~/.ssh/id_ed25519.pub)") that cloud-init
    /// authorises for the image's default user (repeatable)
    #[arg(long = "ssh-key")]
    pub ssh_keys: Vec<String>,
    /// Give the VM a primary NIC in this subnet (name or id); it is deleted with the VM
    #[arg(long)]
    pub subnet: Option<String>,
    /// The primary NIC's fixed address [default: the next free one]
    #[arg(long, requires = "subnet")]
    pub ip: Option<String>,
    /// A security group of the primary NIC (repeatable) [default: the VPC's default group]
    #[arg(long = "security-group", value_name = "GROUP", requires = "subnet")]
    pub security_groups: Vec<String>,
    /// High availability: if its host is lost, fence the host and restart the VM
    /// on another one (needs every disk on shared storage, e.g. --boot-volume in
    /// the Ceph pool; otherwise the VM is marked HostDown with the reason)
    #[arg(long)]
    pub ha: bool,
    /// Create it stopped
    #[arg(long)]
    pub stopped: bool,
    /// Wait until the VM runs (or fails), showing progress
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct PlacementGroupCreate {
    pub name: String,
    /// hard: members never share a host; soft: they avoid it when they can
    #[arg(long, value_parser = ["hard", "soft"], default_value = "hard")]
    pub policy: String,
}

resource_command!(
    /// Projects (tenants) and their quotas
    ProjectCommand, ProjectCreate);
resource_command!(
    /// Users (admin)
    UserCommand, UserCreate);
resource_command!(
    /// API keys: bearer tokens for the API and this CLI
    KeyCommand, KeyCreate);
resource_command!(
    /// Flavors: instance sizes
    FlavorCommand, FlavorCreate);
resource_command!(
    /// Images that VMs boot from
    ImageCommand, ImageCreate);
/// Wait options for power operations.
#[derive(Args, Debug, Clone)]
pub struct PowerArgs {
    pub name: String,
    /// Wait until the VM reaches the new state, showing progress
    #[arg(long)]
    pub wait: bool,
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct MigrateArgs {
    pub name: String,
    /// Target host (name or id) [default: the scheduler's choice]
    #[arg(long, conflicts_with = "cancel")]
    pub to: Option<String>,
    /// Cancel the migration in progress (the VM stays on its host)
    #[arg(long)]
    pub cancel: bool,
    /// Bandwidth cap in MiB/s [default: QEMU's]
    #[arg(long, value_name = "MIB_S")]
    pub bandwidth: Option<u64>,
    /// Longest pause allowed for the final switch-over, in ms
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub max_downtime: u64,
    /// Switch to post-copy after the first pass (busy guests: the VM runs on the
    /// target at once and pulls the rest of its memory)
    #[arg(long)]
    pub postcopy: bool,
    /// Wait until it is done, showing transferred/remaining memory and the dirty rate
    #[arg(long)]
    pub wait: bool,
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    pub timeout: Duration,
}

resource_command!(
/// Virtual machines
VmCommand, VmCreate, {
    /// Shut a VM down (ACPI power button, then forced after a timeout)
    Stop(PowerArgs),
    /// Start a stopped VM
    Start(PowerArgs),
    /// Reboot a VM (guest reboot; --hard for a reset)
    Reboot {
        #[command(flatten)]
        power: PowerArgs,
        /// Reset the VM instead of asking the guest to reboot
        #[arg(long)]
        hard: bool,
    },
    /// Live-migrate a running VM to another host, without stopping it (admins)
    ///
    /// Its disks must be on shared storage (e.g. it boots from a Ceph volume).
    ///
    /// Example:
    ///   yunhan vm migrate db1 --wait              # the scheduler picks the host
    ///   yunhan vm migrate db1 --to node-2 --wait
    ///   yunhan vm migrate db1 --cancel            # it stays where it runs
    #[command(verbatim_doc_comment)]
    Migrate(MigrateArgs),
    /// Print the VM's serial console log (the boot log)
    Log { name: String },
    /// Attach to the VM's serial console (interactive; Ctrl-] leaves).
    /// Without a terminal, or with --read-only, follow the console output.
    Console {
        name: String,
        /// Only follow the output (never type into the guest)
        #[arg(long)]
        read_only: bool,
    },
});
resource_command!(
    /// Placement groups: spread VMs over hosts (anti-affinity)
    PlacementGroupCommand, PlacementGroupCreate);

/// Hypervisor hosts (agents register them)
#[derive(Subcommand, Debug, Clone)]
pub enum HostCommand {
    /// List hosts with their health (Ready / NotReady)
    #[command(alias = "ls")]
    List,
    /// Show one host, by name or id
    Show { name: String },
    /// Maintenance mode: mark the host unschedulable and live-migrate every
    /// running VM off it, showing progress; fails listing the VMs that could not
    /// move (e.g. on local disks)
    Drain {
        name: String,
        #[arg(long, default_value = "1800s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// End maintenance mode: the scheduler may place VMs on the host again
    Uncordon { name: String },
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    #[command(subcommand)]
    Host(HostCommand),
    #[command(subcommand)]
    Project(ProjectCommand),
    #[command(subcommand)]
    User(UserCommand),
    #[command(subcommand)]
    Key(KeyCommand),
    #[command(subcommand)]
    Flavor(FlavorCommand),
    #[command(subcommand)]
    Image(ImageCommand),
    #[command(subcommand, alias = "instance")]
    Vm(VmCommand),
    #[command(subcommand, name = "placement-group", alias = "pg")]
    PlacementGroup(PlacementGroupCommand),
    /// Show who the configured token belongs to
    Whoami,
    #[command(flatten)]
    Network(crate::network::NetworkCommand),
    #[command(flatten)]
    Storage(crate::storage::StorageCommand),
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s or 5m"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(format!("{s:?} is not a duration like 90s or 5m")),
    }
}

/// A column showing `v[a][b]`.
macro_rules! col {
    ($header:literal, $a:literal, $b:literal) => {
        Column {
            header: $header,
            get: |v| text(&v[$a][$b]),
        }
    };
}

/// Table columns and URL segment of a kind.
pub(crate) struct Kind {
    pub plural: &'static str,
    pub singular: &'static str,
    pub columns: &'static [Column],
}

const HOSTS: Kind = Kind {
    plural: "hosts",
    singular: "host",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("STATUS", "status", "phase"),
        col!("CPUS", "spec", "cpus"),
        col!("MEMORY_MIB", "spec", "memory_mib"),
        col!("DISK_GIB", "spec", "disk_gib"),
        col!("ADDRESS", "spec", "address"),
        col!("SCHEDULABLE", "spec", "schedulable"),
        col!("ID", "metadata", "id"),
    ],
};
const PROJECTS: Kind = Kind {
    plural: "projects",
    singular: "project",
    columns: &[
        col!("NAME", "metadata", "name"),
        Column {
            header: "INSTANCES",
            get: |v| {
                format!(
                    "{}/{}",
                    v["status"]["usage"]["instances"], v["spec"]["quota"]["instances"]
                )
            },
        },
        Column {
            header: "VCPUS",
            get: |v| {
                format!(
                    "{}/{}",
                    v["status"]["usage"]["vcpus"], v["spec"]["quota"]["vcpus"]
                )
            },
        },
        Column {
            header: "MEMORY_MIB",
            get: |v| {
                format!(
                    "{}/{}",
                    v["status"]["usage"]["memory_mib"], v["spec"]["quota"]["memory_mib"]
                )
            },
        },
        Column {
            header: "VOLUME_GIB",
            get: |v| {
                format!(
                    "{}/{}",
                    v["status"]["usage"]["volume_gib"], v["spec"]["quota"]["volume_gib"]
                )
            },
        },
        Column {
            header: "IMAGES",
            get: |v| {
                format!(
                    "{}/{}",
                    v["status"]["usage"]["images"], v["spec"]["quota"]["images"]
                )
            },
        },
        Column {
            header: "IMAGE_DATA",
            get: |v| {
                let size = |b: &Value| b.as_u64().map_or_else(|| "-".into(), human);
                format!(
                    "{}/{}",
                    size(&v["status"]["usage"]["image_bytes"]),
                    size(&v["spec"]["quota"]["image_bytes"])
                )
            },
        },
        col!("ID", "metadata", "id"),
    ],
};
const USERS: Kind = Kind {
    plural: "users",
    singular: "user",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("ROLE", "spec", "role"),
        col!("PROJECT", "spec", "project"),
        col!("ID", "metadata", "id"),
    ],
};
const KEYS: Kind = Kind {
    plural: "api-keys",
    singular: "API key",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("PREFIX", "status", "prefix"),
        col!("USER", "status", "user"),
        col!("ROLE", "status", "role"),
        col!("CREATED", "metadata", "created"),
        col!("ID", "metadata", "id"),
    ],
};
const FLAVORS: Kind = Kind {
    plural: "flavors",
    singular: "flavor",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("VCPUS", "spec", "vcpus"),
        col!("MEMORY_MIB", "spec", "memory_mib"),
        col!("DISK_GIB", "spec", "disk_gib"),
        col!("GPUS", "spec", "gpus"),
        col!("ID", "metadata", "id"),
    ],
};
const IMAGES: Kind = Kind {
    plural: "images",
    singular: "image",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("STATUS", "status", "phase"),
        col!("PUBLIC", "spec", "public"),
        col!("OS", "spec", "os"),
        col!("ID", "metadata", "id"),
    ],
};
const VMS: Kind = Kind {
    plural: "instances",
    singular: "VM",
    columns: &[
        col!("NAME", "metadata", "name"),
        col!("STATUS", "status", "phase"),
        col!("HOST", "status", "host"),
        col!("FLAVOR", "spec", "flavor"),
        col!("IMAGE", "spec", "image"),
        col!("ID", "metadata", "id"),
        col!("MESSAGE", "status", "message"),
    ],
};
const PLACEMENT_GROUPS: Kind = Kind {
    plural: "placement-groups",
    singular: "placement group",
    columns: &[
        Column {
            header: "NAME",
            get: |v| text(&v["metadata"]["name"]),
        },
        Column {
            header: "POLICY",
            get: |v| text(&v["spec"]["policy"]),
        },
        Column {
            header: "ID",
            get: |v| text(&v["metadata"]["id"]),
        },
    ],
};

/// The client from flags, environment and config file; an empty flag or
/// variable (`YUNHAN_TOKEN= yunhan …`) counts as unset, so the config's applies.
fn client_for(args: &ClientArgs) -> Result<Client, ClientError> {
    let path = args.config.clone().unwrap_or_else(default_path);
    let file = ClientConfig::load(&path).ok();
    let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let endpoint = set(&args.endpoint)
        .or_else(|| file.as_ref().map(|c| c.endpoint.clone()))
        .ok_or_else(|| ClientError::Usage(format!(
            "no API endpoint configured: {} does not exist.\nStart an all-in-one cloud with 'yunhan up' (it writes that file), or pass --endpoint and --token.",
            path.display()
        )))?;
    let token = set(&args.token)
        .or_else(|| file.map(|c| c.token))
        .unwrap_or_default();
    Ok(Client::new(&endpoint, &token))
}

pub(crate) fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) struct Ctx {
    pub client: Client,
    pub format: Format,
}

impl Ctx {
    pub(crate) async fn verb(&self, k: &Kind, v: Verb) -> Result<(), ClientError> {
        match v {
            Verb::List => self.list(k).await,
            Verb::Show(name) => self.show(k, &name).await.map(drop),
            Verb::Delete(name, wait) => self.delete(k, &name, wait).await,
        }
    }

    async fn list(&self, k: &Kind) -> Result<(), ClientError> {
        let items = self.client.list(&format!("/v1/{}", k.plural)).await?;
        print(self.format, k.columns, &Value::Array(items));
        Ok(())
    }

    async fn show(&self, k: &Kind, name: &str) -> Result<Value, ClientError> {
        let v = self
            .client
            .get(&format!("/v1/{}/{}", k.plural, path_segment(name)))
            .await?;
        print(self.format, k.columns, &v);
        Ok(v)
    }

    pub(crate) async fn create(&self, k: &Kind, body: Value) -> Result<Value, ClientError> {
        let v = self
            .client
            .request(Method::POST, &format!("/v1/{}", k.plural), Some(&body))
            .await?
            .unwrap_or(Value::Null);
        Ok(v)
    }

    async fn delete(&self, k: &Kind, name: &str, wait: bool) -> Result<(), ClientError> {
        let path = format!("/v1/{}/{}", k.plural, path_segment(name));
        let obj = self.client.get(&path).await?;
        let id = text(&obj["metadata"]["id"]);
        self.client.request(Method::DELETE, &path, None).await?;
        if wait {
            let by_id = format!("/v1/{}/{}", k.plural, id);
            wait_for(
                &self.client,
                &by_id,
                &format!("{} {name} to be deleted", k.singular),
                Duration::from_secs(300),
                |v| v.is_none().then_some(Ok(())),
            )
            .await?;
        }
        if self.format == Format::Json {
            println!("{}", json!({"deleted": id}));
        } else {
            eprintln!("deleted {} {name} ({id})", k.singular);
        }
        Ok(())
    }
}

/// Creates the image, then uploads (or imports) its parts; a failed upload
/// deletes the image again so nothing half-made is left.
async fn create_image(ctx: &Ctx, a: ImageCreate) -> Result<(), ClientError> {
    let v = create_image_with_data(&ctx.client, &a).await?;
    print(ctx.format, IMAGES.columns, &v);
    Ok(())
}

/// Makes sure a public image `name` is Active, uploading `file` when it is
/// missing or unusable; returns whether it imported. `yunhan up
/// --import-image` uses it, as the admin.
pub async fn ensure_public_image(
    client: &Client,
    name: &str,
    file: &std::path::Path,
) -> Result<bool, ClientError> {
    let path = format!("/v1/images/{}", path_segment(name));
    match client.request(Method::GET, &path, None).await {
        Ok(Some(v)) if v["status"]["phase"] == "Active" => return Ok(false),
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
    create_image_with_data(client, &a).await.map(|_| true)
}

async fn create_image_with_data(client: &Client, a: &ImageCreate) -> Result<Value, ClientError> {
    let mut spec = json!({"public": a.public, "os": a.os, "min_disk_gib": a.min_disk_gib});
    if let Some(c) = &a.cmdline {
        spec["kernel_cmdline"] = json!(c);
    }
    let mut v = client
        .request(
            Method::POST,
            "/v1/images",
            Some(&json!({"metadata": {"name": a.name}, "spec": spec})),
        )
        .await?
        .unwrap_or_default();
    let id = text(&v["metadata"]["id"]);
    // The initrd before the kernel: the kernel completes the image (Active,
    // and then never changed again).
    for (part, file) in [
        ("disk", &a.file),
        ("initrd", &a.initrd),
        ("kernel", &a.kernel),
    ] {
        let Some(file) = file else { continue };
        let uploaded = if a.server_path {
            let src = std::path::absolute(file).unwrap_or_else(|_| file.clone());
            let path = format!(
                "/v1/images/{id}/data?part={part}&source={}",
                query_escape(&src.to_string_lossy())
            );
            client.request(Method::PUT, &path, None).await
        } else {
            client
                .upload(&format!("/v1/images/{id}/data?part={part}"), file)
                .await
        };
        match uploaded {
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

impl Ctx {
    /// Changes a VM's spec with `change`, then optionally waits for `phase`.
    async fn power(
        &self,
        a: &PowerArgs,
        change: impl Fn(&mut Value),
        phase: &'static str,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/instances/{}", path_segment(&a.name));
        let (mut v, cur) = self
            .edit_spec(&path, |spec| {
                change(spec);
                Ok(())
            })
            .await?;
        if a.wait {
            let by_id = format!("/v1/instances/{}", text(&cur["metadata"]["id"]));
            let what = format!("VM {} to be {phase}", a.name);
            v = wait_for(&self.client, &by_id, &what, a.timeout, |cur| {
                let cur = cur?;
                match cur["status"]["phase"].as_str() {
                    Some(p) if p == phase => Some(Ok(())),
                    Some("Failed") => Some(Err(format!(
                        "VM {} failed: {}",
                        a.name,
                        text(&cur["status"]["message"])
                    ))),
                    _ => None,
                }
            })
            .await?
            .unwrap_or(v);
        }
        print(self.format, VMS.columns, &v);
        Ok(())
    }
}

impl Ctx {
    /// Reads `name`, changes its spec with `change` and writes it back at the read revision.
    pub(crate) async fn update_spec(
        &self,
        k: &Kind,
        name: &str,
        change: impl FnMut(&mut Value) -> Result<(), ClientError>,
    ) -> Result<Value, ClientError> {
        let path = format!("/v1/{}/{}", k.plural, path_segment(name));
        Ok(self.edit_spec(&path, change).await?.0)
    }

    /// Read-modify-write of the spec at `path` (compare-and-swap on the read revision).
    /// A write that lost the race to a controller or agent writing the object's status
    /// meanwhile is redone on the fresh object, so a user never sees that race. Returns
    /// the object as written and as it was read.
    async fn edit_spec(
        &self,
        path: &str,
        mut change: impl FnMut(&mut Value) -> Result<(), ClientError>,
    ) -> Result<(Value, Value), ClientError> {
        let mut retries = 5;
        loop {
            let cur = self.client.get(path).await?;
            let mut spec = cur["spec"].clone();
            change(&mut spec)?;
            let body = json!({"revision": cur["metadata"]["revision"], "spec": spec});
            match self.client.request(Method::PUT, path, Some(&body)).await {
                Ok(v) => return Ok((v.unwrap_or(Value::Null), cur)),
                Err(ClientError::Api(e, 409))
                    if retries > 0 && e.details.contains_key("revision") =>
                {
                    retries -= 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `vm migrate`: a new request (or a cancel of the current one) in
    /// `spec.migration`; with --wait, follows `status.migration`.
    async fn migrate(&self, a: &MigrateArgs) -> Result<(), ClientError> {
        let (request, mut v) = self.request_migration(a).await?;
        if a.wait {
            let by_id = format!("/v1/instances/{}", text(&v["metadata"]["id"]));
            v = wait_migrated(&self.client, &by_id, &a.name, request, a.cancel, a.timeout).await?;
            let m = &v["status"]["migration"];
            if m["phase"] == "Completed" {
                eprintln!(
                    "migrated {} to {} in {} ms (downtime {} ms)",
                    a.name,
                    text(&v["status"]["host"]),
                    m["total_ms"].as_u64().unwrap_or(0),
                    m["downtime_ms"].as_u64().unwrap_or(0)
                );
            }
        }
        print(self.format, VMS.columns, &v);
        Ok(())
    }

    /// Writes the request (or the cancel) into `spec.migration`; returns the
    /// request number and the instance as written.
    async fn request_migration(&self, a: &MigrateArgs) -> Result<(u64, Value), ClientError> {
        let mut request = 0;
        let v = self
            .update_spec(&VMS, &a.name, |spec| {
                let last = spec["migration"]["request"].as_u64().unwrap_or(0);
                if a.cancel {
                    if last == 0 {
                        return Err(ClientError::Usage(format!(
                            "{} has no migration to cancel",
                            a.name
                        )));
                    }
                    spec["migration"]["cancel"] = json!(true);
                    request = last;
                } else {
                    let mut m = json!({"request": last + 1, "max_downtime_ms": a.max_downtime, "postcopy": a.postcopy});
                    if let Some(to) = &a.to {
                        m["to"] = json!(to);
                    }
                    if let Some(b) = a.bandwidth {
                        m["bandwidth_mib_s"] = json!(b);
                    }
                    spec["migration"] = m;
                    request = last + 1;
                }
                Ok(())
            })
            .await?;
        Ok((request, v))
    }

    /// Sets a host's `spec.schedulable`; returns the host.
    async fn set_schedulable(&self, name: &str, on: bool) -> Result<Value, ClientError> {
        self.update_spec(&HOSTS, name, |spec| {
            spec["schedulable"] = json!(on);
            Ok(())
        })
        .await
    }

    /// `host drain`: unschedulable, then every running VM migrated away, one
    /// at a time (they would compete for bandwidth).
    async fn drain(&self, name: &str, timeout: Duration) -> Result<(), ClientError> {
        let host = self.set_schedulable(name, false).await?;
        let id = text(&host["metadata"]["id"]);
        eprintln!("host {name} is unschedulable (maintenance mode)");
        let on_host: Vec<Value> = self
            .client
            .list("/v1/instances")
            .await?
            .into_iter()
            .filter(|v| v["status"]["host"] == id.as_str())
            .collect();
        let mut stuck = Vec::new();
        for vm in &on_host {
            let vm_id = text(&vm["metadata"]["id"]);
            let label = format!("{} ({vm_id})", text(&vm["metadata"]["name"]));
            if vm["status"]["phase"] != "Running" {
                stuck.push(format!(
                    "{label}: {} (only running VMs migrate live)",
                    text(&vm["status"]["phase"])
                ));
                continue;
            }
            let args = MigrateArgs {
                name: vm_id.clone(),
                to: None,
                cancel: false,
                bandwidth: None,
                max_downtime: 50,
                postcopy: false,
                wait: true,
                timeout,
            };
            let (request, _) = self.request_migration(&args).await?;
            let path = format!("/v1/instances/{vm_id}");
            match wait_migrated(&self.client, &path, &label, request, false, timeout).await {
                Ok(v) => eprintln!("moved {label} to {}", text(&v["status"]["host"])),
                Err(ClientError::Usage(why)) => stuck.push(why),
                Err(e) => return Err(e),
            }
        }
        if stuck.is_empty() {
            eprintln!("host {name} is drained");
            Ok(())
        } else {
            Err(ClientError::Usage(format!(
                "host {name} still holds {} VM(s):\n  {}",
                stuck.len(),
                stuck.join("\n  ")
            )))
        }
    }
}

/// Follows migration `request` of the instance at `path` until it is over,
/// showing transferred/remaining memory and the dirty rate; a failure (or a
/// cancel that was not asked for) is an error.
async fn wait_migrated(
    client: &Client,
    path: &str,
    name: &str,
    request: u64,
    cancel: bool,
    timeout: Duration,
) -> Result<Value, ClientError> {
    let mine = move |v: &Value| v["status"]["migration"]["request"].as_u64() == Some(request);
    let v = wait_showing(
        client,
        path,
        &format!("VM {name} to migrate"),
        timeout,
        move |v| {
            let m = &v["status"]["migration"];
            if !mine(v) {
                return "Accepted".into();
            }
            let mib = |k: &str| m[k].as_u64().unwrap_or(0) >> 20;
            format!(
                "{} {} MiB sent, {} MiB left, {} dirty pages/s",
                text(&m["phase"]),
                mib("transferred_bytes"),
                mib("remaining_bytes"),
                m["dirty_pages_rate"].as_u64().unwrap_or(0)
            )
        },
        move |cur| {
            let cur = cur?;
            let m = &cur["status"]["migration"];
            if !mine(cur) {
                return None;
            }
            match m["phase"].as_str() {
                // Done once the binding moved and the target reports the VM running.
                Some("Completed")
                    if cur["status"]["host"] == m["target"]
                        && cur["status"]["phase"] == "Running" =>
                {
                    Some(Ok(()))
                }
                Some("Failed") => Some(Err(format!(
                    "migration of {name} failed: {}",
                    text(&m["message"])
                ))),
                Some("Cancelled") if cancel => Some(Ok(())),
                Some("Cancelled") => Some(Err(format!(
                    "migration of {name} was cancelled: {}",
                    text(&m["message"])
                ))),
                _ => None,
            }
        },
    )
    .await?;
    Ok(v.unwrap_or(Value::Null))
}

/// Polls `path` until `done` says so, drawing a spinner with the current
/// phase on a terminal (plain lines on phase changes otherwise).
pub(crate) async fn wait_for(
    client: &Client,
    path: &str,
    what: &str,
    timeout: Duration,
    done: impl Fn(Option<&Value>) -> Option<Result<(), String>>,
) -> Result<Option<Value>, ClientError> {
    wait_showing(
        client,
        path,
        what,
        timeout,
        |v| text(&v["status"]["phase"]),
        done,
    )
    .await
}

/// [`wait_for`] showing `progress` of the object instead of its phase.
pub(crate) async fn wait_showing(
    client: &Client,
    path: &str,
    what: &str,
    timeout: Duration,
    progress: impl Fn(&Value) -> String,
    done: impl Fn(Option<&Value>) -> Option<Result<(), String>>,
) -> Result<Option<Value>, ClientError> {
    const SPIN: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last_phase = String::new();
    let mut i = 0;
    loop {
        let current = match client.get(path).await {
            Ok(v) => Some(v),
            Err(ClientError::Api(e, 404)) if e.code == yunhan_model::ErrorCode::NotFound => None,
            Err(e) => return Err(e),
        };
        let phase = current.as_ref().map_or("gone".to_string(), &progress);
        if tty {
            eprint!(
                "\r\x1b[2K{} waiting for {what}: {phase} ({}s)",
                SPIN[i % SPIN.len()],
                start.elapsed().as_secs()
            );
            let _ = std::io::stderr().flush();
        } else if phase != last_phase {
            eprintln!("waiting for {what}: {phase}");
        }
        last_phase = phase;
        if let Some(result) = done(current.as_ref()) {
            if tty {
                eprintln!();
            }
            return result.map(|_| current).map_err(ClientError::Usage);
        }
        if start.elapsed() > timeout {
            if tty {
                eprintln!();
            }
            return Err(ClientError::Timeout(timeout, what.to_string()));
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs one client command.
pub async fn run(args: ClientArgs, cmd: Command) -> Result<(), ClientError> {
    let ctx = Ctx {
        client: client_for(&args)?,
        format: args.output,
    };
    match cmd {
        Command::Whoami => {
            let v = ctx.client.get("/v1/whoami").await?;
            let cols = [
                Column {
                    header: "USER",
                    get: |v| text(&v["user"]),
                },
                Column {
                    header: "PROJECT",
                    get: |v| text(&v["project"]),
                },
                Column {
                    header: "ROLE",
                    get: |v| text(&v["role"]),
                },
            ];
            print(ctx.format, &cols, &v);
        }
        Command::Network(c) => crate::network::run(&ctx, c).await?,
        Command::Host(HostCommand::List) => ctx.list(&HOSTS).await?,
        Command::Host(HostCommand::Show { name }) => drop(ctx.show(&HOSTS, &name).await?),
        Command::Host(HostCommand::Drain { name, timeout }) => ctx.drain(&name, timeout).await?,
        Command::Host(HostCommand::Uncordon { name }) => {
            let v = ctx.set_schedulable(&name, true).await?;
            print(ctx.format, HOSTS.columns, &v);
        }
        Command::Project(c) => match c.verb() {
            Ok(v) => ctx.verb(&PROJECTS, v).await?,
            Err(c) => match c {
                ProjectCommand::Create(a) => {
                    let v = ctx.create(&PROJECTS, json!({
                    "metadata": {"name": a.name},
                    "spec": {"description": a.description, "quota": {
                        "instances": a.instances, "vcpus": a.vcpus, "memory_mib": a.memory_mib,
                        "volume_gib": a.volume_gib, "elastic_ips": a.elastic_ips,
                        "images": a.images, "image_bytes": a.image_bytes}},
                })).await?;
                    print(ctx.format, PROJECTS.columns, &v);
                }
                _ => unreachable!("list, show and delete are handled by verb()"),
            },
        },
        Command::User(c) => match c.verb() {
            Ok(v) => ctx.verb(&USERS, v).await?,
            Err(c) => match c {
                UserCommand::Create(a) => {
                    let project = ctx
                        .client
                        .get(&format!("/v1/projects/{}", path_segment(&a.project)))
                        .await?;
                    let v = ctx.create(&USERS, json!({
                    "metadata": {"name": a.name},
                    "spec": {"project": project["metadata"]["id"], "role": if a.admin { "admin" } else { "member" }},
                })).await?;
                    print(ctx.format, USERS.columns, &v);
                }
                _ => unreachable!("list, show and delete are handled by verb()"),
            },
        },
        Command::Key(c) => match c.verb() {
            Ok(v) => ctx.verb(&KEYS, v).await?,
            Err(c) => match c {
                KeyCommand::Create(a) => {
                    let mut spec = json!({});
                    let expires_at = match a.expires_in {
                        Some(ttl) => {
                            Some(yunhan_model::ApiKeySpec::expiry_in(ttl).ok_or_else(|| {
                                ClientError::Usage(format!("--expires-in {ttl:?} is too far away"))
                            })?)
                        }
                        None => a.expires_at,
                    };
                    if let Some(at) = expires_at {
                        spec["expires_at"] = json!(at);
                    }
                    if let Some(u) = a.user {
                        let user = ctx
                            .client
                            .get(&format!("/v1/users/{}", path_segment(&u)))
                            .await?;
                        spec["user"] = user["metadata"]["id"].clone();
                    }
                    let v = ctx
                        .create(&KEYS, json!({"metadata": {"name": a.name}, "spec": spec}))
                        .await?;
                    match ctx.format {
                        Format::Json => {
                            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())
                        }
                        Format::Table => {
                            print!(
                                "{}",
                                crate::output::table(
                                    KEYS.columns,
                                    std::slice::from_ref(&v["api_key"])
                                )
                            );
                            println!("\ntoken: {}\nThis token is shown only once: store it now (e.g. YUNHAN_TOKEN).", text(&v["token"]));
                        }
                    }
                }
                _ => unreachable!("list, show and delete are handled by verb()"),
            },
        },
        Command::Flavor(c) => match c.verb() {
            Ok(v) => ctx.verb(&FLAVORS, v).await?,
            Err(c) => match c {
                FlavorCommand::Create(a) => {
                    let v = ctx.create(&FLAVORS, json!({
                    "metadata": {"name": a.name},
                    "spec": {"vcpus": a.vcpus, "memory_mib": a.memory_mib, "disk_gib": a.disk_gib, "gpus": a.gpus},
                })).await?;
                    print(ctx.format, FLAVORS.columns, &v);
                }
                _ => unreachable!("list, show and delete are handled by verb()"),
            },
        },
        Command::Image(c) => match c.verb() {
            Ok(v) => ctx.verb(&IMAGES, v).await?,
            Err(c) => match c {
                ImageCommand::Create(a) => create_image(&ctx, a).await?,
                _ => unreachable!("list, show and delete are handled by verb()"),
            },
        },
        Command::Vm(c) => match c.verb() {
            Ok(v) => ctx.verb(&VMS, v).await?,
            Err(c) => match c {
                VmCommand::Stop(a) => {
                    ctx.power(&a, |spec| spec["running"] = json!(false), "Stopped")
                        .await?
                }
                VmCommand::Start(a) => {
                    ctx.power(&a, |spec| spec["running"] = json!(true), "Running")
                        .await?
                }
                VmCommand::Reboot { power, hard } => {
                    let before = ctx
                        .client
                        .get(&format!("/v1/instances/{}", path_segment(&power.name)))
                        .await?;
                    let current = before["spec"]["reboot_generation"].as_u64().unwrap_or(0);
                    let generation = current.checked_add(1).ok_or_else(|| {
                        ClientError::Usage(format!(
                            "VM {} cannot count another reboot: its reboot_generation is {current}, the largest value",
                            power.name
                        ))
                    })?;
                    let request = PowerArgs {
                        wait: false,
                        ..power.clone()
                    };
                    ctx.power(
                        &request,
                        |spec| {
                            spec["reboot_generation"] = json!(generation);
                            spec["reboot_hard"] = json!(hard);
                        },
                        "Running",
                    )
                    .await?;
                    if power.wait {
                        let path = format!("/v1/instances/{}", text(&before["metadata"]["id"]));
                        wait_for(
                            &ctx.client,
                            &path,
                            &format!("VM {} to reboot", power.name),
                            power.timeout,
                            |cur| {
                                let cur = cur?;
                                let done = cur["status"]["reboot_generation"].as_u64()
                                    >= Some(generation)
                                    && cur["status"]["phase"] == "Running";
                                done.then_some(Ok(()))
                            },
                        )
                        .await?;
                    }
                }
                VmCommand::Migrate(a) => ctx.migrate(&a).await?,
                VmCommand::Log { name } => {
                    let v = ctx
                        .client
                        .get(&format!("/v1/instances/{}", path_segment(&name)))
                        .await?;
                    let (text, _) = ctx.client.console(&text(&v["metadata"]["id"]), 0).await?;
                    print!("{text}");
                }
                VmCommand::Console { name, read_only } => {
                    let v = ctx
                        .client
                        .get(&format!("/v1/instances/{}", path_segment(&name)))
                        .await?;
                    let id = text(&v["metadata"]["id"]);
                    if !read_only && std::io::stdin().is_terminal() {
                        let ws = ctx.client.attach_console(&id).await?;
                        return crate::console::interactive(ws, &name).await;
                    }
                    eprintln!("following the console of {name} (Ctrl-C to leave)");
                    let mut offset = 0;
                    loop {
                        let (chunk, next) = ctx.client.console(&id, offset).await?;
                        print!("{chunk}");
                        let _ = std::io::stdout().flush();
                        if next == offset {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        offset = next;
                    }
                }
                VmCommand::Create(a) => {
                    let mut spec = json!({"image": a.image, "flavor": a.flavor, "running": !a.stopped, "ha": a.ha});
                    if let Some(g) = &a.placement_group {
                        spec["placement_group"] = json!(g);
                    }
                    if let Some(v) = &a.boot_volume {
                        spec["boot_volume"] = json!(v);
                    }
                    if let Some(f) = &a.user_data {
                        let data = std::fs::read_to_string(f).map_err(|e| {
                            ClientError::Usage(format!("cannot read {}: {e}", f.display()))
                        })?;
                        spec["user_data"] = json!(data);
                    }
                    if !a.ssh_keys.is_empty() {
                        spec["ssh_keys"] = json!(a.ssh_keys);
                    }
                    if let Some(subnet) = &a.subnet {
                        let mut nic =
                            json!({"subnet": subnet, "security_groups": a.security_groups});
                        if let Some(ip) = &a.ip {
                            nic["ip"] = json!(ip);
                        }
                        spec["nic"] = nic;
                    }
                    let mut v = ctx
                        .create(&VMS, json!({"metadata": {"name": a.name}, "spec": spec}))
                        .await?;
                    if a.wait {
                        let path = format!("/v1/instances/{}", text(&v["metadata"]["id"]));
                        let what = format!("VM {} to run", a.name);
                        v = wait_for(&ctx.client, &path, &what, a.timeout, |cur| {
                            let cur = cur?;
                            match cur["status"]["phase"].as_str() {
                                Some("Running") => Some(Ok(())),
                                Some(p @ ("Failed" | "Unschedulable")) => Some(Err(format!(
                                    "VM {} is {p}: {}",
                                    text(&cur["metadata"]["name"]),
                                    text(&cur["status"]["message"])
                                ))),
                                _ => None,
                            }
                        })
                        .await?
                        .unwrap_or(v);
                    }
                    print(ctx.format, VMS.columns, &v);
                }
                _ => unreachable!("list, show and delete are handled by verb()"),
            },
        },
        Command::PlacementGroup(c) => match c.verb() {
            Ok(v) => ctx.verb(&PLACEMENT_GROUPS, v).await?,
            Err(PlacementGroupCommand::Create(a)) => {
                let policy = if a.policy == "soft" {
                    "soft_anti_affinity"
                } else {
                    "hard_anti_affinity"
                };
                let v = ctx
                    .create(
                        &PLACEMENT_GROUPS,
                        json!({"metadata": {"name": a.name}, "spec": {"policy": policy}}),
                    )
                    .await?;
                print(ctx.format, PLACEMENT_GROUPS.columns, &v);
            }
            Err(_) => unreachable!("list, show and delete are handled by verb()"),
        },
        Command::Storage(c) => crate::storage::run(&ctx, c).await?,
    }
    Ok(())
}

/// A hint for an API error code, printed under the error.
pub fn hint(e: &ClientError) -> Option<&'static str> {
    use yunhan_model::ErrorCode::*;
    match e {
        ClientError::Api(api, _) => match api.code {
            Unauthenticated => {
                Some("check the token: ~/.config/yunhan/config.toml, --token or YUNHAN_TOKEN")
            }
            Forbidden => Some("this needs an admin token"),
            NotFound => Some("'yunhan <kind> list' shows what exists in your project"),
            RateLimited => Some("slow down, or ask an admin for a higher rate limit"),
            Unavailable => {
                Some("the control plane's store is unreachable; check 'yunhan server' logs")
            }
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn escapes_path_segments() {
        assert_eq!(path_segment("vm-1.a_b"), "vm-1.a_b");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
