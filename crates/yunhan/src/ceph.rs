//! The admin configuration of the Ceph volume pool, shared by `up`, `server`
//! and `agent`: at startup the RBD pool is ensured (replicated, size 3,
//! min_size 2, a CRUSH rule over the configured failure domain) and the
//! erasure-code profile k=4, m=2 created for later object and file pools.
//! Both are idempotent, so every process applies them.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use yunhan_storage::{CephCluster, FailureDomain, PoolSpec};

/// The erasure-code profile created next to the pool.
pub const EC_PROFILE: &str = "yunhan-ec-4-2";

#[derive(Args, Debug, Clone)]
pub struct CephArgs {
    /// ceph.conf of a Ceph cluster to keep volumes in (RBD), besides the local
    /// pool; it must name the keyring (e.g. scripts/ceph-dev up DIR prints one)
    #[arg(long, value_name = "PATH")]
    ceph_conf: Option<PathBuf>,
    /// cephx user (without `client.`)
    #[arg(long, default_value = "admin", value_name = "NAME")]
    ceph_user: String,
    /// The RBD pool Yunhan creates and uses; volumes name it in `--pool`
    #[arg(long, default_value = "ceph", value_name = "NAME")]
    ceph_pool: String,
    /// CRUSH failure domain the pool's three replicas are spread over:
    /// osd (single-box dev clusters only), host, rack or datacenter
    #[arg(long, default_value = "host", value_parser = ["osd", "host", "rack", "datacenter"])]
    ceph_failure_domain: String,
}

impl CephArgs {
    /// Ensures the pool and the EC profile; None without `--ceph-conf`.
    pub async fn apply(&self) -> anyhow::Result<Option<yunhan_agent::storage::CephPool>> {
        let Some(conf) = &self.ceph_conf else {
            return Ok(None);
        };
        if self.ceph_pool == yunhan_model::DEFAULT_POOL {
            anyhow::bail!("--ceph-pool cannot be `local`: that is the name of the host-local pool");
        }
        let cluster = CephCluster {
            conf: conf.clone(),
            user: self.ceph_user.clone(),
            keyring: None,
        };
        let fd = FailureDomain::parse(&self.ceph_failure_domain)?;
        cluster
            .ensure_pool(&PoolSpec::replicated(&self.ceph_pool, fd))
            .await
            .with_context(|| {
                format!(
                    "creating the Ceph pool {:?} with {} (is the cluster up and HEALTH_OK?)",
                    self.ceph_pool,
                    conf.display()
                )
            })?;
        cluster
            .ensure_ec_profile(EC_PROFILE, 4, 2, fd)
            .await
            .context("creating the k=4 m=2 erasure-code profile")?;
        tracing::info!(pool = %self.ceph_pool, failure_domain = %self.ceph_failure_domain, "Ceph pool ready (size 3, min_size 2)");
        Ok(Some(yunhan_agent::storage::CephPool {
            cluster,
            pool: self.ceph_pool.clone(),
        }))
    }
}
