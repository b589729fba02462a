//! First start: the admin project, user and key, the default flavors and the platform's
//! alarm rules; for the all-in-one cloud, the default external network.

use yunhan_model::{
    new_id, AlarmRule, AlarmRuleSpec, ApiError, ApiKey, ApiKeySpec, ApiKeyStatus, Comparison,
    ExternalNetwork, ExternalNetworkSpec, Flavor, FlavorSpec, Kind, Metadata, Project, ProjectSpec,
    Resource, Role, Severity, User, UserSpec, DEFAULT_PUBLIC_NAME,
};
use yunhan_store::objects::{Doc, ObjectError, Objects, GLOBAL_SCOPE};

use crate::auth::{mint_token, store_secret};

/// Flavors every cloud starts with: (name, vCPUs, memory MiB, disk GiB).
pub const DEFAULT_FLAVORS: [(&str, u32, u64, u64); 4] = [
    ("tiny", 1, 256, 1),
    ("small", 1, 512, 5),
    ("medium", 2, 2048, 20),
    ("large", 4, 8192, 40),
];

/// What a first start created.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub admin_token: String,
    pub project_id: String,
}

fn meta(prefix: &str, name: &str, project: Option<String>) -> Metadata {
    Metadata::new(new_id(prefix), name, project)
}

async fn ensure<K: yunhan_model::Kind>(
    objects: &Objects,
    doc: Resource<K::Spec, K::Status>,
) -> Result<Option<Resource<K::Spec, K::Status>>, ObjectError> {
    match objects.create::<K>(doc).await {
        Ok(d) => Ok(Some(d)),
        Err(ObjectError::AlreadyExists { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates the admin identity on an empty store. Returns `None` when an admin
/// already exists (a later start, or another server won the race): creation
/// is a compare-and-swap on the name index, so exactly one server bootstraps.
pub async fn bootstrap(objects: &Objects) -> Result<Option<Bootstrap>, ObjectError> {
    for (name, vcpus, memory_mib, disk_gib) in DEFAULT_FLAVORS {
        ensure::<Flavor>(
            objects,
            Resource {
                metadata: meta("flv", name, None),
                spec: FlavorSpec {
                    vcpus,
                    memory_mib,
                    disk_gib,
                    gpus: 0,
                },
                status: Default::default(),
            },
        )
        .await?;
    }
    let project = match ensure::<Project>(
        objects,
        Resource {
            metadata: meta("prj", "admin", None),
            spec: ProjectSpec {
                description: "The platform operators' project".into(),
                quota: Default::default(),
            },
            status: Default::default(),
        },
    )
    .await?
    {
        Some(p) => p,
        None => objects
            .get_by_name::<Project>(yunhan_store::objects::GLOBAL_SCOPE, "admin")
            .await?
            .ok_or_else(|| ObjectError::ProjectNotFound("admin".into()))?,
    };
    let Some(user) = ensure::<User>(
        objects,
        Resource {
            metadata: meta("usr", "admin", None),
            spec: UserSpec {
                project: project.metadata.id.clone(),
                role: Role::Admin,
            },
            status: Default::default(),
        },
    )
    .await?
    else {
        return Ok(None);
    };
    platform_alarms(objects, &project.metadata.id).await?;
    let key_id = new_id("key");
    let (token, hash) = mint_token(&key_id);
    store_secret(objects, &key_id, hash)
        .await
        .map_err(|_| ObjectError::Conflict(0))?;
    let mut m = meta("key", "bootstrap", Some(project.metadata.id.clone()));
    m.id = key_id;
    objects
        .create::<ApiKey>(Resource {
            metadata: m,
            spec: ApiKeySpec {
                user: Some(user.metadata.id.clone()),
                expires_at: None,
            },
            status: ApiKeyStatus {
                prefix: token.chars().take(12).collect(),
                role: Some(Role::Admin),
                user: user.metadata.id,
            },
        })
        .await?;
    Ok(Some(Bootstrap {
        admin_token: token,
        project_id: project.metadata.id,
    }))
}

/// The platform's alarm rules, out of the box, in the admin project (docs/alarms.md):
/// (name, condition, threshold, seconds it must last, severity).
pub const PLATFORM_ALARMS: [(&str, &str, f64, u64, Severity); 5] = [
    (
        "host-not-ready",
        "platform:host_not_ready",
        0.0,
        0,
        Severity::Critical,
    ),
    (
        "pool-above-80-percent",
        "platform:pool_used_percent",
        80.0,
        60,
        Severity::Warning,
    ),
    (
        "ceph-unhealthy",
        "platform:ceph_unhealthy",
        0.0,
        60,
        Severity::Warning,
    ),
    (
        "ha-failover",
        "platform:ha_failovers",
        0.0,
        0,
        Severity::Warning,
    ),
    (
        "vm-start-failures",
        "platform:vm_start_failures",
        0.0,
        0,
        Severity::Warning,
    ),
];

async fn platform_alarms(objects: &Objects, admin_project: &str) -> Result<(), ObjectError> {
    for (name, metric, threshold, for_seconds, severity) in PLATFORM_ALARMS {
        let spec = AlarmRuleSpec {
            metric: metric.into(),
            instances: Vec::new(),
            selector: Default::default(),
            comparison: Comparison::Above,
            threshold,
            for_seconds,
            severity,
            webhooks: Vec::new(),
            enabled: true,
        };
        let doc = Resource {
            metadata: meta(AlarmRule::ID_PREFIX, name, Some(admin_project.to_string())),
            spec,
            status: Default::default(),
        };
        ensure::<AlarmRule>(objects, doc).await?;
    }
    Ok(())
}

/// Why the default external network could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PublicNetworkError {
    #[error("--public-cidr: {}", .0.message)]
    Invalid(ApiError),
    #[error(transparent)]
    Store(#[from] ObjectError),
}

/// `yunhan up`'s default external network: `public`, on the host itself (a bridge
/// holding the gateway address, masqueraded to the host's default route), made
/// when the cloud has no external network at all. Returns it when it was made.
pub async fn ensure_public_network(
    objects: &Objects,
    cidr: &str,
) -> Result<Option<Doc<ExternalNetwork>>, PublicNetworkError> {
    let spec = ExternalNetworkSpec {
        cidr: cidr.to_string(),
        host_gateway: true,
        ..Default::default()
    };
    ExternalNetwork::validate(&spec).map_err(PublicNetworkError::Invalid)?;
    if !objects
        .list_all::<ExternalNetwork>(Some(GLOBAL_SCOPE))
        .await?
        .is_empty()
    {
        return Ok(None);
    }
    let doc = Resource {
        metadata: meta(ExternalNetwork::ID_PREFIX, DEFAULT_PUBLIC_NAME, None),
        spec,
        status: Default::default(),
    };
    Ok(ensure::<ExternalNetwork>(objects, doc).await?)
}
