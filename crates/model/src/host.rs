//! Hosts: the hypervisors, registered and kept alive by their agents (admins only).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::meta::{kind_consts, yes};
use crate::{ApiError, Kind};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub hostname: String,
    /// Address other hosts and the control plane reach this host's agent at.
    pub address: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    /// False in maintenance mode: the scheduler places nothing new here.
    #[serde(default = "yes")]
    pub schedulable: bool,
    /// PCI addresses of GPUs this host passes through to instances (VFIO).
    #[serde(default)]
    pub gpus: Vec<String>,
    /// vCPUs the scheduler may place per physical CPU on this host (1–16); absent: the
    /// cluster's ratio (`--cpu-overcommit` of the servers, 2 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_overcommit: Option<f64>,
    /// Memory the scheduler may promise per MiB on this host (1–4); absent: the
    /// cluster's ratio (`--memory-overcommit`, 1 by default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_overcommit: Option<f64>,
}

/// What the scheduler has given out on a host, against what it may give (capacity
/// times the overcommit ratio in force), written by the scheduler as it changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostAllocation {
    /// Instances bound to the host.
    pub instances: u64,
    /// vCPUs of those instances.
    pub vcpus: u64,
    /// vCPUs the host may carry: `spec.cpus × cpu_ratio`.
    pub vcpu_limit: u64,
    /// The CPU overcommit ratio in force (the host's own or the cluster's).
    pub cpu_ratio: f64,
    pub memory_mib: u64,
    /// `spec.memory_mib × memory_ratio`.
    pub memory_limit_mib: u64,
    pub memory_ratio: f64,
    pub disk_gib: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HostPhase {
    /// The agent holds its lease.
    Ready,
    /// The agent's lease expired (agent dead, host down or partitioned).
    #[default]
    NotReady,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HostStatus {
    pub phase: HostPhase,
    /// When the phase last changed, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    pub agent_version: String,
    /// The store lease the agent keeps alive (liveness).
    pub lease: i64,
    /// The storage pools this host's agent serves, as last measured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<crate::PoolReport>,
    /// The URL of the agent's metrics endpoint (history and latest samples of this
    /// host's VMs, the host and its pools), which the control plane reads with the
    /// token the agent keeps in the store (docs/monitoring.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// What the scheduler has allocated here, against the host's limits.
    pub allocation: HostAllocation,
    /// What the host really uses, as its agent last measured (written when it moves by
    /// 5 points of CPU or 5 % of memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<HostUsage>,
}

/// A host's measured use: CPU busy (all CPUs, percent) and memory in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostUsage {
    pub cpu_percent: u32,
    pub memory_used_mib: u64,
}

impl HostUsage {
    /// Worth writing over `before`: the first reading, 5 points of CPU or 5 % of memory.
    pub fn moved_from(&self, before: Option<&HostUsage>) -> bool {
        let Some(b) = before else {
            return true;
        };
        let mem = self.memory_used_mib.abs_diff(b.memory_used_mib) * 20;
        self.cpu_percent.abs_diff(b.cpu_percent) >= 5 || mem >= b.memory_used_mib.max(1)
    }
}

pub struct Host;
impl Kind for Host {
    kind_consts!("Host", "hosts", "hst", Global, admin_write: true);
    /// Tenants do not see the hypervisors.
    const ADMIN_READ: bool = true;
    type Spec = HostSpec;
    type Status = HostStatus;
    fn validate(spec: &HostSpec) -> Result<(), ApiError> {
        if spec.hostname.is_empty() || spec.hostname.len() > 253 {
            return Err(ApiError::invalid_field(
                "spec.hostname",
                "hostname is 1–253 characters",
            ));
        }
        check_ratio("spec.cpu_overcommit", spec.cpu_overcommit, 16.0)?;
        check_ratio("spec.memory_overcommit", spec.memory_overcommit, 4.0)
    }
}

/// An overcommit ratio is absent or from 1 to `max`.
fn check_ratio(field: &str, ratio: Option<f64>, max: f64) -> Result<(), ApiError> {
    match ratio {
        Some(r) if !(1.0..=max).contains(&r) => Err(ApiError::invalid_field(
            field,
            format!("an overcommit ratio is from 1 to {max}, not {r}"),
        )),
        _ => Ok(()),
    }
}

/// `GET /v1/rebalance`: the migrations (live, or cold for stopped VMs) that would bring every host at or under a
/// target load, and the VMs that cannot move (docs/compute.md "Day two").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RebalancePlan {
    /// The target: a host's load (the larger of its vCPU and memory shares of its
    /// limits) at most this percent.
    pub target_percent: f64,
    /// The migrations, in the order to make them.
    pub moves: Vec<RebalanceMove>,
    /// Every host's load before and after the moves.
    pub hosts: Vec<HostLoad>,
    /// VMs on hosts above the target that cannot move, and why.
    pub pinned: Vec<PinnedVm>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RebalanceMove {
    pub instance: String,
    pub name: String,
    /// Host ids and names.
    pub from: String,
    pub from_name: String,
    pub to: String,
    pub to_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostLoad {
    pub host: String,
    pub name: String,
    pub before_percent: f64,
    pub after_percent: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PinnedVm {
    pub instance: String,
    pub name: String,
    /// The host's name.
    pub host: String,
    pub reason: String,
}
