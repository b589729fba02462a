//! Cluster administration through the `ceph` CLI: CRUSH rules, replicated
//! and erasure-coded pools, redundancy, health and the client blocklist.

use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{errno_of, u64_at, CephCluster};
use crate::cmd;
use crate::error::{Result, StorageError};
use crate::sizes::validate_name;

/// CRUSH failure domain of a replicated rule / EC profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureDomain {
    /// Replicas on distinct OSDs: only for single-box dev clusters.
    Osd,
    Host,
    Rack,
    Datacenter,
}

impl FailureDomain {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureDomain::Osd => "osd",
            FailureDomain::Host => "host",
            FailureDomain::Rack => "rack",
            FailureDomain::Datacenter => "datacenter",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "osd" => FailureDomain::Osd,
            "host" => FailureDomain::Host,
            "rack" => FailureDomain::Rack,
            "datacenter" => FailureDomain::Datacenter,
            other => {
                return Err(StorageError::invalid(format!(
                    "failure domain `{other}` is not one of osd, host, rack, datacenter"
                )))
            }
        })
    }

    /// The replicated CRUSH rule Yunhan creates for this failure domain.
    pub fn rule_name(self) -> String {
        format!("yunhan-replicated-{}", self.as_str())
    }
}

/// A replicated RBD pool as the admin config describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub name: String,
    pub size: u32,
    pub min_size: u32,
    pub failure_domain: FailureDomain,
    pub pg_num: u32,
}

impl PoolSpec {
    /// Size 3 / min_size 2, 32 PGs.
    pub fn replicated(name: &str, failure_domain: FailureDomain) -> Self {
        PoolSpec {
            name: name.to_string(),
            size: 3,
            min_size: 2,
            failure_domain,
            pg_num: 32,
        }
    }

    pub fn validate(&self) -> Result<()> {
        validate_name("pool", &self.name)?;
        if self.size == 0 || self.min_size == 0 || self.min_size > self.size {
            return Err(StorageError::invalid(format!(
                "pool `{}`: need 1 <= min_size ({}) <= size ({})",
                self.name, self.min_size, self.size
            )));
        }
        if self.pg_num == 0 || !self.pg_num.is_power_of_two() {
            return Err(StorageError::invalid(format!(
                "pool `{}`: pg_num {} must be a power of two",
                self.name, self.pg_num
            )));
        }
        Ok(())
    }
}

/// A pool's redundancy as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRedundancy {
    pub size: u32,
    pub min_size: u32,
    pub crush_rule: String,
    /// The bucket type the rule spreads replicas over (`osd`, `host`, …).
    pub failure_domain: Option<String>,
}

/// `ceph health` + `ceph df`, for `yunhan storage status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterHealth {
    /// `HEALTH_OK`, `HEALTH_WARN` or `HEALTH_ERR`.
    pub status: String,
    /// Health check codes with their summaries.
    pub checks: Vec<(String, String)>,
    /// Raw capacity, all OSDs.
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub avail_bytes: u64,
}

impl CephCluster {
    /// Blocklists a client instance (`ip:port/nonce`, as `rbd status` lists
    /// watchers): the OSDs refuse its I/O from now on, so a VM on a lost host
    /// cannot write a disk that a new copy of it is about to open.
    pub async fn blocklist_add(&self, client_addr: &str) -> Result<()> {
        self.ceph_run(&["osd", "blocklist", "add", client_addr])
            .await
    }

    /// The blocklisted client addresses.
    pub async fn blocklist(&self) -> Result<Vec<String>> {
        let v = self.ceph_json(&["osd", "blocklist", "ls"]).await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.get("addr").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn health(&self) -> Result<ClusterHealth> {
        let h = self.ceph_json(&["health"]).await?;
        let df = self.ceph_json(&["df"]).await?;
        let stats = df.get("stats").cloned().unwrap_or_default();
        let checks = h
            .get("checks")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(code, c)| {
                        let msg = c
                            .pointer("/summary/message")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        (code.clone(), msg.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ClusterHealth {
            status: h
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN")
                .to_string(),
            checks,
            total_bytes: u64_at(&stats, "total_bytes"),
            used_bytes: u64_at(&stats, "total_used_raw_bytes"),
            avail_bytes: u64_at(&stats, "total_avail_bytes"),
        })
    }

    /// Creates (idempotently) the replicated CRUSH rule for `fd`; returns its name.
    pub async fn ensure_replicated_rule(&self, fd: FailureDomain) -> Result<String> {
        let name = fd.rule_name();
        self.ceph_run(&[
            "osd",
            "crush",
            "rule",
            "create-replicated",
            &name,
            "default",
            fd.as_str(),
        ])
        .await?;
        Ok(name)
    }

    /// Creates (or re-applies) a replicated RBD pool: CRUSH rule for the
    /// failure domain, size/min_size, the `rbd` application, `rbd pool init`.
    pub async fn ensure_pool(&self, spec: &PoolSpec) -> Result<()> {
        spec.validate()?;
        let rule = self.ensure_replicated_rule(spec.failure_domain).await?;
        let pg = spec.pg_num.to_string();
        let name = spec.name.as_str();
        self.ceph_run(&["osd", "pool", "create", name, &pg, &pg, "replicated", &rule])
            .await?;
        self.ceph_run(&["osd", "pool", "set", name, "crush_rule", &rule])
            .await?;
        self.ceph_run(&["osd", "pool", "set", name, "size", &spec.size.to_string()])
            .await?;
        self.ceph_run(&[
            "osd",
            "pool",
            "set",
            name,
            "min_size",
            &spec.min_size.to_string(),
        ])
        .await?;
        self.ceph_run(&["osd", "pool", "application", "enable", name, "rbd"])
            .await?;
        let mut c = self.rbd();
        c.args(["pool", "init", name]);
        cmd::run(&mut c).await.map(drop)
    }

    /// An erasure-code profile (k data + m coding chunks) for later object and
    /// file pools; refused by Ceph if a profile of that name differs.
    pub async fn ensure_ec_profile(
        &self,
        name: &str,
        k: u32,
        m: u32,
        fd: FailureDomain,
    ) -> Result<()> {
        validate_name("erasure-code profile", name)?;
        if k < 2 || m < 1 {
            return Err(StorageError::invalid(format!(
                "erasure-code profile `{name}`: need k >= 2 and m >= 1 (got k={k} m={m})"
            )));
        }
        self.ceph_run(&[
            "osd",
            "erasure-code-profile",
            "set",
            name,
            &format!("k={k}"),
            &format!("m={m}"),
            &format!("crush-failure-domain={}", fd.as_str()),
        ])
        .await
    }

    /// `(k, m, failure domain)` of an erasure-code profile.
    pub async fn ec_profile(&self, name: &str) -> Result<(u32, u32, String)> {
        let v = self
            .ceph_json(&["osd", "erasure-code-profile", "get", name])
            .await?;
        let num = |key: &str| {
            v.get(key)
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StorageError::not_found("erasure-code profile", name))
        };
        Ok((
            num("k")?,
            num("m")?,
            v.get("crush-failure-domain")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ))
    }

    pub async fn pool_exists(&self, pool: &str) -> Result<bool> {
        let mut c = self.ceph();
        c.args(["osd", "pool", "get", pool, "size"]);
        let out = cmd::output(&mut c).await?;
        match errno_of(&out) {
            Ok(()) => Ok(true),
            Err(Some(Errno::ENOENT)) => Ok(false),
            _ => Err(cmd::backend(&c, &out)),
        }
    }

    pub async fn delete_pool(&self, pool: &str) -> Result<()> {
        self.ceph_run(&[
            "osd",
            "pool",
            "rm",
            pool,
            pool,
            "--yes-i-really-really-mean-it",
        ])
        .await
    }

    /// Size, min_size and the failure domain of a pool's CRUSH rule.
    pub async fn pool_redundancy(&self, pool: &str) -> Result<PoolRedundancy> {
        if !self.pool_exists(pool).await? {
            return Err(StorageError::not_found("pool", pool));
        }
        let v = self.ceph_json(&["osd", "pool", "get", pool, "all"]).await?;
        let rule = v
            .get("crush_rule")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let r = self
            .ceph_json(&["osd", "crush", "rule", "dump", &rule])
            .await?;
        let failure_domain = r.get("steps").and_then(Value::as_array).and_then(|steps| {
            steps.iter().find_map(|s| {
                let op = s.get("op")?.as_str()?;
                op.starts_with("choose")
                    .then(|| s.get("type")?.as_str().map(String::from))?
            })
        });
        Ok(PoolRedundancy {
            size: u64_at(&v, "size") as u32,
            min_size: u64_at(&v, "min_size") as u32,
            crush_rule: rule,
            failure_domain,
        })
    }
}
