//! Elastic IP pools: platform-wide public ranges (admins only) elastic IPs
//! are claimed from; pools do not overlap, and a pool goes once it is empty.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use yunhan_model::network::{parse_cidr, ElasticIpPool};
use yunhan_model::ElasticIp;
use yunhan_store::objects::{Doc, GLOBAL_SCOPE};
use yunhan_types::ipam::Ipam;
use yunhan_types::Ipv4Cidr;

use crate::auth::Principal;
use crate::error::Result;
use crate::network::addresses::refuse_overlap;
use crate::resource::{conflict, refuse_while_referenced, Deleted, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for ElasticIpPool {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let cidr = parse_cidr("spec.cidr", &doc.spec.cidr)?;
        let pools = s.objects.list_all::<Self>(Some(GLOBAL_SCOPE)).await?;
        let ranges = pools
            .iter()
            .map(|o| (o.metadata.name.as_str(), o.spec.cidr.as_str()));
        refuse_overlap(cidr, ranges, |name, other| {
            format!("{cidr} overlaps pool {name:?} ({other})")
        })
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec != new.spec {
            return Err(conflict("a pool's range cannot change"));
        }
        Ok(())
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        refuse_while_referenced::<ElasticIp>(
            s,
            None,
            |e| e.status.pool == doc.metadata.id,
            |e| {
                format!(
                    "pool {:?} still has elastic IP {}; release it first",
                    doc.metadata.name, e.status.address
                )
            },
        )
        .await?;
        s.objects.delete::<Self>(&doc).await?;
        Ok(Deleted::Now)
    }
}

/// The gateway of pool `p` (range `cidr`): its own, or the range's first address.
pub(crate) fn pool_gateway(p: &Doc<ElasticIpPool>, cidr: Ipv4Cidr) -> Ipv4Addr {
    p.spec
        .gateway
        .as_deref()
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| Ipam::default_gateway(cidr))
}
