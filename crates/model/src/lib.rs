//! Yunhan's resource model: every resource is one document of `metadata`, `spec`
//! (what the user wants, written only by the API) and `status` (what is true,
//! written by controllers and agents). Pure types and validation; no I/O.

mod alarm;
mod error;
mod event;
mod external_network;
mod flavor;
mod host;
mod identity;
mod image;
mod instance;
mod load_balancer;
mod meta;
mod metering;
mod migration;
mod monitoring;
pub mod network;
mod object_storage;
mod placement;
mod quota;
mod route_table;
pub mod scheduling;
mod security_group;
mod snapshot_policy;
mod storage;

pub use alarm::{
    evaluate as evaluate_alarm, vm_metric, AlarmNotification, AlarmResource, AlarmRule,
    AlarmRuleSpec, AlarmRuleStatus, AlarmState, AlarmTransition, Comparison, Observation, Severity,
    Webhook, PLATFORM_METRICS, VM_METRICS,
};
pub use error::{ApiError, ErrorCode};
pub use event::{
    sane_request_id, write_of, AuditEvent, AuditEventList, EVENT_RETENTION_SECS, PLATFORM_ACTOR,
};
pub use external_network::{
    ExternalNetwork, ExternalNetworkSpec, ExternalNetworkStatus, DEFAULT_PUBLIC_CIDR,
    DEFAULT_PUBLIC_NAME,
};
pub use flavor::{Flavor, FlavorSpec, FlavorStatus, GPU_SHAPES};
pub use host::{
    Host, HostAllocation, HostLoad, HostPhase, HostSpec, HostStatus, HostUsage, PinnedVm,
    RebalanceMove, RebalancePlan,
};
pub use identity::{
    ApiKey, ApiKeySpec, ApiKeyStatus, Project, ProjectSpec, ProjectStatus, Role, User, UserSpec,
    UserStatus,
};
pub use image::{Image, ImageSpec, ImageStatus};
pub use instance::{Instance, InstancePhase, InstanceSpec, InstanceStatus};
pub use load_balancer::{
    HealthKind, HealthMonitor, L7Action, L7Rule, LbAlgorithm, LbMember, LbPhase, LbProtocol,
    LbReplica, Listener, ListenerStatus, LoadBalancer, LoadBalancerSpec, LoadBalancerStatus,
    MemberHealth, MemberStatus, Persistence, MAX_LISTENERS, MAX_MEMBERS, MAX_REPLICAS, MAX_RULES,
    REDIRECT_CODES,
};
pub use meta::{
    age_of, new_id, now, validate_labels, validate_name, CreateRequest, Doc, Kind, Metadata,
    ObjectMeta, Resource, Scope, UpdateRequest,
};
pub use metering::{
    bucket_metered, eip_metered, epoch_of, hour_of, instance_metered, lb_metered, merge,
    month_start, report, rfc3339_of, roll_up, snapshot_metered, volume_metered, when_of, BadTime,
    Cursor, Ledger, Meter, Metered, Meters, Pass, PriceList, PricedLine, Span, UsageLine,
    UsageRecord, UsageReport, HOUR_SECS,
};
pub use migration::{DeviceKind, MigrationPhase, MigrationSpec, MigrationStatus, PluggedDevice};
pub use monitoring::{metric_unit, metric_wanted, sum_series, MetricSeries, MetricsAnswer};
pub use network::{
    ElasticIp, NatGateway, NetworkInterface, PrimaryNic, RouteTable, SecurityGroup, Subnet, Vip,
    Vpc,
};
pub use object_storage::{
    bucket_name_error, bucket_public_url, tenant_of, Bucket, BucketPhase, BucketSpec, BucketStatus,
    BucketUsage, S3Key, S3KeyPhase, S3KeySpec, S3KeyStatus, S3Traffic, Visibility,
    MAX_BUCKET_BYTES, MAX_BUCKET_OBJECTS, MAX_S3_KEYS_PER_USER, MAX_S3_KEY_DESCRIPTION,
    ORIGIN_LABEL, S3_VPC_ADDRESS, S3_VPC_ENDPOINT,
};
pub use placement::{PlacementGroup, PlacementGroupSpec, PlacementGroupStatus, PlacementPolicy};
pub use quota::{Quota, Usage};
pub use snapshot_policy::{
    Cron, CronError, SnapshotPolicy, SnapshotPolicySpec, SnapshotPolicyStatus, CRASH_CONSISTENT,
    HORIZON_DAYS, MAX_KEEP, MAX_POLICY_NAME, POLICY_LABEL,
};
pub use storage::{
    check_snapshottable, restoring_from, storage_why, PoolReport, Snapshot, SnapshotPhase,
    SnapshotSpec, SnapshotStatus, Volume, VolumePhase, VolumeRestore, VolumeSource, VolumeSpec,
    VolumeStatus, DEFAULT_POOL, MAX_VOLUME_BYTES,
};
