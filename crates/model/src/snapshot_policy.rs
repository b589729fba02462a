//! Snapshot policies (docs/snapshot-policies.md): snapshots of a volume, or of every
//! disk of an instance, taken on a cron schedule, the newest `keep` of them kept. The
//! schedule is parsed and checked here ([`Cron`], pure); the snapshot-policy controller
//! takes and prunes the snapshots.

mod cron;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{kind_consts, yes};
use crate::{validate_name, ApiError, Kind};

pub use cron::{Cron, CronError, HORIZON_DAYS};

/// The label every snapshot a policy takes carries: its value is the policy's id. The
/// API refuses it on snapshots users make, so a policy prunes only its own.
pub const POLICY_LABEL: &str = "snapshot-policy";

/// What the snapshots are: the guests have no agent to freeze their file systems, so
/// each disk is as a power cut would have left it.
pub const CRASH_CONSISTENT: &str = "crash-consistent";

/// The longest schedule.
pub const MAX_SCHEDULE: usize = 128;

/// The most snapshots a policy keeps.
pub const MAX_KEEP: u32 = 100;

/// The longest policy name: its snapshots are named `<policy>-<YYYYMMDDTHHMMSSZ>`
/// (and `-d<N>`, the disk, for an instance), within the 63 characters of a name.
pub const MAX_POLICY_NAME: usize = 40;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPolicySpec {
    /// The volume (name or id) to snapshot; stored as its id. Exactly one of
    /// `volume` and `instance`; neither can change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Or the instance (name or id) whose disks (a boot volume and the attached
    /// volumes) are all snapshotted in the same pass; stored as its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Cron, UTC: `minute hour day-of-month month day-of-week`, or six fields with a
    /// leading second field (e.g. `0 3 * * *`: every day at 03:00).
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,
    /// How many of the policy's snapshots to keep (1–100); older ones are deleted.
    #[schemars(range(min = 1, max = 100))]
    pub keep: u32,
    /// A disabled policy takes no snapshots (and deletes none).
    #[serde(default = "yes")]
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotPolicyStatus {
    /// When the policy last took snapshots (RFC 3339 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<String>,
    /// When it will next (RFC 3339 UTC); none while disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// Why the last run failed (e.g. the volume is gone); empty when it succeeded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    /// How many runs took their snapshots.
    #[serde(default)]
    pub taken: u64,
    /// `crash-consistent`: disks are not frozen in the guest before a snapshot.
    #[serde(default = "crash_consistent")]
    pub consistency: String,
}

fn crash_consistent() -> String {
    CRASH_CONSISTENT.to_string()
}

impl Default for SnapshotPolicyStatus {
    fn default() -> Self {
        SnapshotPolicyStatus {
            last_run: None,
            next_run: None,
            last_error: String::new(),
            taken: 0,
            consistency: crash_consistent(),
        }
    }
}

pub struct SnapshotPolicy;
impl Kind for SnapshotPolicy {
    kind_consts!("SnapshotPolicy", "snapshot-policies", "spol", Project, admin_write: false);
    type Spec = SnapshotPolicySpec;
    type Status = SnapshotPolicyStatus;
    fn validate(spec: &SnapshotPolicySpec) -> Result<(), ApiError> {
        match (&spec.volume, &spec.instance) {
            (Some(v), None) => validate_name("spec.volume", v)?,
            (None, Some(i)) => validate_name("spec.instance", i)?,
            _ => {
                return Err(ApiError::invalid_field(
                    "spec.volume",
                    "give exactly one of spec.volume and spec.instance",
                ))
            }
        }
        if spec.schedule.len() > MAX_SCHEDULE {
            return Err(ApiError::invalid_field(
                "spec.schedule",
                format!("a schedule is at most {MAX_SCHEDULE} characters"),
            ));
        }
        Cron::parse(&spec.schedule).map_err(|e| {
            ApiError::invalid_field(
                "spec.schedule",
                format!("schedule {:?}: {e}", spec.schedule),
            )
        })?;
        if !(1..=MAX_KEEP).contains(&spec.keep) {
            return Err(ApiError::invalid_field(
                "spec.keep",
                format!("keep is 1 to {MAX_KEEP}, not {}", spec.keep),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(schedule: &str, keep: u32) -> SnapshotPolicySpec {
        SnapshotPolicySpec {
            volume: Some("data1".into()),
            instance: None,
            schedule: schedule.into(),
            keep,
            enabled: true,
        }
    }

    fn refused_field(s: &SnapshotPolicySpec) -> String {
        let e = SnapshotPolicy::validate(s).unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::InvalidField);
        e.details["field"].as_str().unwrap().to_string()
    }

    #[test]
    fn validation_names_the_field() {
        SnapshotPolicy::validate(&spec("*/1 * * * *", 3)).unwrap();
        SnapshotPolicy::validate(&spec("*/5 * * * * *", 100)).unwrap();
        assert_eq!(refused_field(&spec("0 0 30 2 *", 3)), "spec.schedule");
        assert_eq!(refused_field(&spec("every day", 3)), "spec.schedule");
        assert_eq!(refused_field(&spec("* * * * *", 0)), "spec.keep");
        assert_eq!(refused_field(&spec("* * * * *", 101)), "spec.keep");
        let both = SnapshotPolicySpec {
            instance: Some("vm1".into()),
            ..spec("* * * * *", 1)
        };
        assert_eq!(refused_field(&both), "spec.volume");
        let neither = SnapshotPolicySpec {
            volume: None,
            ..spec("* * * * *", 1)
        };
        assert_eq!(refused_field(&neither), "spec.volume");
        let e = SnapshotPolicy::validate(&spec("0 0 30 2 *", 3)).unwrap_err();
        assert!(e.message.contains("never fires"), "{}", e.message);
    }

    #[test]
    fn a_new_status_says_crash_consistent_and_enabled_is_the_default() {
        assert_eq!(
            SnapshotPolicyStatus::default().consistency,
            CRASH_CONSISTENT
        );
        let s: SnapshotPolicySpec = serde_json::from_value(
            serde_json::json!({"volume": "v", "schedule": "* * * * *", "keep": 1}),
        )
        .unwrap();
        assert!(s.enabled);
    }
}
