//! Alarm rules (docs/alarms.md): a metric of a project's VMs (or, for admins, a
//! condition of the platform) compared with a threshold; a rule fires when a watched
//! resource breaches it for `for_seconds`, resolves when none does, and tells its
//! webhooks each time. [`evaluate`] is the whole decision, pure.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::kind_consts;
use crate::{ApiError, Kind};

/// Conditions of the platform that admins' rules may watch instead of a VM metric; each
/// resource is a host (or the instance, for `vm_start_failures`, the cloud for
/// `ha_failovers`) and its value is what the name says.
pub const PLATFORM_METRICS: [&str; 5] = [
    // 1 while a host is NotReady
    "platform:host_not_ready",
    // a storage pool's physical use, percent of its capacity (per host and pool)
    "platform:pool_used_percent",
    // 1 while a Ceph pool reports anything but HEALTH_OK
    "platform:ceph_unhealthy",
    // HA failovers in the last 10 minutes
    "platform:ha_failovers",
    // 1 while an instance that should run is Failed
    "platform:vm_start_failures",
];

/// The VM series a rule may watch (`yunhan vm metrics` names), with short forms.
pub const VM_METRICS: [(&str, &str); 8] = [
    ("cpu", "cpu_percent"),
    ("memory", "memory_used_bytes"),
    ("disk_read", "disk_read_bytes_per_second"),
    ("disk_write", "disk_write_bytes_per_second"),
    ("disk_read_ops", "disk_read_ops_per_second"),
    ("disk_write_ops", "disk_write_ops_per_second"),
    ("net_rx", "net_rx_bytes_per_second"),
    ("net_tx", "net_tx_bytes_per_second"),
];

/// The full series name of a metric given by its short form or its name.
pub fn vm_metric(name: &str) -> Option<&'static str> {
    (VM_METRICS.iter())
        .find(|(short, full)| *short == name || *full == name)
        .map(|(_, full)| *full)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    #[default]
    Above,
    Below,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

/// Where a rule's notifications go: an HTTP(S) URL that gets a JSON POST, signed with
/// HMAC-SHA256 of the body under `secret` (header `X-Yunhan-Signature: sha256=<hex>`)
/// when one is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    #[schemars(length(min = 8, max = 2048))]
    pub url: String,
    /// Write-only: kept as a secret, never returned (`has_secret` says there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default)]
    pub has_secret: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmRuleSpec {
    /// A VM series (`cpu_percent` or `cpu`, `memory_used_bytes`, `disk_write_bytes_per_second`,
    /// …: see `yunhan alarm create --help`), or a `platform:` condition (admins).
    #[schemars(length(min = 1, max = 128))]
    pub metric: String,
    /// The instances watched, by name or id (stored as ids).
    #[serde(default)]
    pub instances: Vec<String>,
    /// And every instance of the project with these labels.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub comparison: Comparison,
    pub threshold: f64,
    /// How long a resource must breach before the rule fires, in seconds (0–86,400).
    #[serde(default = "default_for")]
    pub for_seconds: u64,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
    /// A disabled rule is not evaluated and stays `ok`.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_for() -> u64 {
    60
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlarmState {
    #[default]
    Ok,
    Firing,
}

/// One watched resource as the latest evaluation saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlarmResource {
    pub id: String,
    pub name: String,
    pub state: AlarmState,
    /// Its latest value (none: no data, which never breaches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Since when it breaches (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaching_since: Option<u64>,
}

/// A change of the rule's state, as its webhooks are told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlarmTransition {
    /// Seconds since the epoch.
    pub time: u64,
    /// `firing` or `ok` (resolved).
    pub state: AlarmState,
    /// The resources firing at that moment (none when resolved).
    pub resources: Vec<String>,
}

/// The latest delivery to the rule's webhooks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AlarmNotification {
    /// The transition it tells (seconds since the epoch).
    pub time: u64,
    pub state: AlarmState,
    pub delivered: bool,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlarmRuleStatus {
    pub state: AlarmState,
    /// When the state last changed (seconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// When it was last evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluated: Option<u64>,
    pub resources: Vec<AlarmResource>,
    /// The latest transitions, newest last (at most [`HISTORY`]).
    pub history: Vec<AlarmTransition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification: Option<AlarmNotification>,
    /// Why it cannot be evaluated (e.g. an instance it names was deleted).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Transitions kept in a rule's status.
pub const HISTORY: usize = 20;
/// Webhooks per rule.
pub const MAX_WEBHOOKS: usize = 5;

pub struct AlarmRule;
impl Kind for AlarmRule {
    kind_consts!("AlarmRule", "alarm-rules", "alm", Project, admin_write: false);
    type Spec = AlarmRuleSpec;
    type Status = AlarmRuleStatus;
    fn validate(spec: &AlarmRuleSpec) -> Result<(), ApiError> {
        let platform = PLATFORM_METRICS.contains(&spec.metric.as_str());
        if !platform && vm_metric(&spec.metric).is_none() {
            let names: Vec<&str> = VM_METRICS.iter().map(|(s, _)| *s).collect();
            let why = format!(
                "unknown metric {:?}; one of {} (or their full names), or a platform condition",
                spec.metric,
                names.join(", ")
            );
            return Err(ApiError::invalid_field("spec.metric", why));
        }
        if !platform && spec.instances.is_empty() && spec.selector.is_empty() {
            let why = "name the instances to watch (instances) or a label selector (selector)";
            return Err(ApiError::invalid_field("spec.instances", why));
        }
        if !spec.threshold.is_finite() {
            return Err(ApiError::invalid_field("spec.threshold", "a finite number"));
        }
        if spec.for_seconds > 86_400 {
            return Err(ApiError::invalid_field(
                "spec.for_seconds",
                "at most 86400 (a day)",
            ));
        }
        if spec.webhooks.len() > MAX_WEBHOOKS {
            let why = format!("at most {MAX_WEBHOOKS} webhooks");
            return Err(ApiError::invalid_field("spec.webhooks", why));
        }
        for (i, w) in spec.webhooks.iter().enumerate() {
            let ok = (w.url.starts_with("http://") || w.url.starts_with("https://"))
                && w.url.len() <= 2048
                && !w.url.contains(char::is_whitespace);
            if !ok {
                let why = format!("{:?} is not an http:// or https:// URL", w.url);
                return Err(ApiError::invalid_field(
                    &format!("spec.webhooks[{i}].url"),
                    why,
                ));
            }
        }
        Ok(())
    }
}

/// One watched resource's latest value (none: no data).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub id: String,
    pub name: String,
    pub value: Option<f64>,
}

/// The rule's next status at `now` given what its resources show, and the transition
/// to tell its webhooks, if any (pure). A resource breaches while its value is beyond
/// the threshold; it fires once it has breached for `for_seconds`; the rule fires while
/// any resource does. A resource with no data does not breach.
pub fn evaluate(
    spec: &AlarmRuleSpec,
    status: &AlarmRuleStatus,
    observed: &[Observation],
    now: u64,
) -> (AlarmRuleStatus, Option<AlarmTransition>) {
    let breaches = |v: f64| match spec.comparison {
        Comparison::Above => v > spec.threshold,
        Comparison::Below => v < spec.threshold,
    };
    let resources: Vec<AlarmResource> = (observed.iter())
        .map(|o| {
            let before = status.resources.iter().find(|r| r.id == o.id);
            let breaching = spec.enabled && o.value.is_some_and(breaches);
            let since = breaching.then(|| before.and_then(|b| b.breaching_since).unwrap_or(now));
            let firing = since.is_some_and(|s| now.saturating_sub(s) >= spec.for_seconds);
            AlarmResource {
                id: o.id.clone(),
                name: o.name.clone(),
                state: if firing {
                    AlarmState::Firing
                } else {
                    AlarmState::Ok
                },
                value: o.value,
                breaching_since: since,
            }
        })
        .collect();
    let firing: Vec<String> = (resources.iter())
        .filter(|r| r.state == AlarmState::Firing)
        .map(|r| r.name.clone())
        .collect();
    let state = if firing.is_empty() {
        AlarmState::Ok
    } else {
        AlarmState::Firing
    };
    let mut next = AlarmRuleStatus {
        state,
        since: status.since,
        evaluated: Some(now),
        resources,
        history: status.history.clone(),
        notification: status.notification.clone(),
        message: String::new(),
    };
    if state == status.state {
        return (next, None);
    }
    let transition = AlarmTransition {
        time: now,
        state,
        resources: firing,
    };
    next.since = Some(now);
    next.history.push(transition.clone());
    let excess = next.history.len().saturating_sub(HISTORY);
    next.history.drain(..excess);
    (next, Some(transition))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(threshold: f64, for_seconds: u64) -> AlarmRuleSpec {
        AlarmRuleSpec {
            metric: "cpu".into(),
            instances: vec!["ins-1".into()],
            selector: BTreeMap::new(),
            comparison: Comparison::Above,
            threshold,
            for_seconds,
            severity: Severity::Warning,
            webhooks: vec![],
            enabled: true,
        }
    }

    fn seen(value: Option<f64>) -> Vec<Observation> {
        vec![Observation {
            id: "ins-1".into(),
            name: "web1".into(),
            value,
        }]
    }

    #[test]
    fn a_breach_fires_only_after_its_duration_and_resolves_when_it_ends() {
        let spec = rule(80.0, 30);
        let s0 = AlarmRuleStatus::default();
        let (s1, t) = evaluate(&spec, &s0, &seen(Some(95.0)), 1000);
        assert_eq!((s1.state, t), (AlarmState::Ok, None));
        assert_eq!(s1.resources[0].breaching_since, Some(1000));
        let (s2, t) = evaluate(&spec, &s1, &seen(Some(90.0)), 1020);
        assert_eq!((s2.state, t), (AlarmState::Ok, None));
        let (s3, t) = evaluate(&spec, &s2, &seen(Some(99.0)), 1030);
        assert_eq!(s3.state, AlarmState::Firing);
        assert_eq!(t.unwrap().resources, ["web1"]);
        let (s4, t) = evaluate(&spec, &s3, &seen(Some(99.0)), 1040);
        assert_eq!((s4.state, t), (AlarmState::Firing, None), "told once");
        let (s5, t) = evaluate(&spec, &s4, &seen(Some(5.0)), 1050);
        assert_eq!(s5.state, AlarmState::Ok);
        assert_eq!(t.unwrap().state, AlarmState::Ok);
        assert_eq!(s5.history.len(), 2);
    }

    #[test]
    fn no_data_and_disabled_rules_never_fire() {
        let spec = rule(80.0, 0);
        let (s, t) = evaluate(&spec, &AlarmRuleStatus::default(), &seen(None), 10);
        assert_eq!((s.state, t), (AlarmState::Ok, None));
        let off = AlarmRuleSpec {
            enabled: false,
            ..rule(80.0, 0)
        };
        let (s, _) = evaluate(&off, &AlarmRuleStatus::default(), &seen(Some(99.0)), 10);
        assert_eq!(s.state, AlarmState::Ok);
    }

    #[test]
    fn validation_names_the_field() {
        let mut bad = rule(80.0, 30);
        bad.metric = "cpu_load".into();
        assert!(format!("{:?}", AlarmRule::validate(&bad).unwrap_err()).contains("spec.metric"));
        let mut bad = rule(80.0, 30);
        bad.instances.clear();
        assert!(AlarmRule::validate(&bad).is_err());
        let mut bad = rule(f64::NAN, 30);
        bad.threshold = f64::NAN;
        assert!(AlarmRule::validate(&bad).is_err());
        let mut bad = rule(80.0, 30);
        bad.webhooks = vec![Webhook {
            url: "ftp://x".into(),
            secret: None,
            has_secret: false,
        }];
        assert!(AlarmRule::validate(&bad).is_err());
    }

    proptest! {
        /// Whatever the values, the history only records real changes, alternating, and
        /// a rule fires only if a value breached for at least `for_seconds`.
        #[test]
        fn transitions_alternate_and_respect_the_duration(
            values in proptest::collection::vec(proptest::option::of(0.0f64..100.0), 1..60),
            for_steps in 0u64..6,
        ) {
            let spec = rule(50.0, for_steps * 10);
            let mut status = AlarmRuleStatus::default();
            let mut run = 0u64;
            for (i, v) in values.iter().enumerate() {
                let now = 1000 + 10 * i as u64;
                run = if v.is_some_and(|v| v > 50.0) { run + 1 } else { 0 };
                let (next, _) = evaluate(&spec, &status, &seen(*v), now);
                let should_fire = run > for_steps;
                prop_assert_eq!(next.state == AlarmState::Firing, should_fire);
                status = next;
            }
            for pair in status.history.windows(2) {
                prop_assert_ne!(pair[0].state, pair[1].state);
            }
        }
    }
}
