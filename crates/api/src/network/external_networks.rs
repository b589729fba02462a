//! External networks: platform-wide provider networks (admins only) that elastic
//! IPs are claimed from; they do not overlap, and one goes once no elastic IP is
//! left in it.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use yunhan_model::network::parse_cidr;
use yunhan_model::{ElasticIp, ExternalNetwork};
use yunhan_store::objects::{Doc, GLOBAL_SCOPE};
use yunhan_types::ipam::Ipam;
use yunhan_types::Ipv4Cidr;

use crate::auth::Principal;
use crate::error::Result;
use crate::network::addresses::refuse_overlap;
use crate::resource::{delete_now, refuse_change, refuse_while_referenced, Deleted, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for ExternalNetwork {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let cidr = parse_cidr("spec.cidr", &doc.spec.cidr)?;
        let pools = s.objects.list_all::<Self>(Some(GLOBAL_SCOPE)).await?;
        let ranges = pools
            .iter()
            .map(|o| (o.metadata.name.as_str(), o.spec.cidr.as_str()));
        refuse_overlap(cidr, ranges, |name, other| {
            format!("{cidr} overlaps external network {name:?} ({other})")
        })
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        refuse_change(
            old.spec.cidr != new.spec.cidr || old.spec.gateway != new.spec.gateway,
            "an external network's cidr and gateway cannot change (its devices can)",
        )
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        refuse_while_referenced::<ElasticIp>(
            s,
            None,
            |e| e.status.network == doc.metadata.id,
            |e| {
                format!(
                    "external network {:?} still has elastic IP {}; release it first",
                    doc.metadata.name, e.status.address
                )
            },
        )
        .await?;
        delete_now::<Self>(s, doc).await
    }
}

/// The gateway of external network `p` (range `cidr`): its own, or the range's first
/// address.
pub(crate) fn network_gateway(p: &Doc<ExternalNetwork>, cidr: Ipv4Cidr) -> Ipv4Addr {
    p.spec
        .gateway
        .as_deref()
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| Ipam::default_gateway(cidr))
}
