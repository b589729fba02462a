//! Elastic IPs: a public address claimed from an external network, bound to at most one
//! NIC (and a NIC holds at most one) or used by a NAT gateway, not both.

use async_trait::async_trait;
use yunhan_model::network::{eip_claim_key, parse_cidr, EIP_CLAIM_PREFIX};
use yunhan_model::{ApiError, ElasticIp, ErrorCode, ExternalNetwork, NatGateway, NetworkInterface};
use yunhan_store::objects::{Doc, GLOBAL_SCOPE};
use yunhan_store::StoreExt;

use crate::auth::Principal;
use crate::error::{HttpError, Result};
use crate::lookup::{lookup, resolve};
use crate::network::addresses::{claim_address, fixed_address, Space};
use crate::network::external_networks::network_gateway;
use crate::resource::{
    changes, delete_current, project_of, refuse_change, refuse_while_referenced, Deleted, Hooks,
};
use crate::AppState;

#[async_trait]
impl Hooks for ElasticIp {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let project = project_of(doc).to_string();
        let pool = network_for(s, doc.spec.network.as_deref()).await?;
        if let Some(n) = &doc.spec.nic {
            doc.spec.nic = Some(bindable_nic(s, &project, &doc.metadata.id, n).await?);
        }
        let cidr = parse_cidr("spec.cidr", &pool.spec.cidr)?;
        let fixed = fixed_address("spec.address", doc.spec.address.as_deref())?;
        let space = Space {
            prefix: EIP_CLAIM_PREFIX,
            key: eip_claim_key,
            cidr,
            gateway: network_gateway(&pool, cidr),
            range: pool.spec.pool_range(),
        };
        let ip = claim_address(s, &space, fixed, &doc.metadata.id).await?;
        doc.spec.network = Some(pool.metadata.id.clone());
        doc.status.address = ip.to_string();
        doc.status.network = pool.metadata.id;
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        refuse_change(
            old.spec.network != new.spec.network || changes(&old.spec.address, &new.spec.address),
            "an elastic IP's external network and address cannot change",
        )
    }
    async fn resolve_update(s: &AppState, old: &Doc<Self>, new: &mut Doc<Self>) -> Result<()> {
        new.spec.address = old.spec.address.clone();
        let Some(n) = new.spec.nic.clone() else {
            return Ok(());
        };
        let project = project_of(old).to_string();
        match &old.spec.nic {
            None => new.spec.nic = Some(bindable_nic(s, &project, &old.metadata.id, &n).await?),
            Some(cur) => {
                let nic = resolve::<NetworkInterface>(s, &project, "spec.nic", &n).await?;
                if &nic.metadata.id != cur {
                    return Err(already_bound(s, old, cur).await);
                }
                new.spec.nic = Some(nic.metadata.id);
            }
        }
        Ok(())
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        refuse_while_referenced::<NatGateway>(
            s,
            doc.metadata.project.as_deref(),
            |g| g.spec.elastic_ip == doc.metadata.id,
            |g| {
                format!(
                    "elastic IP {} is used by NAT gateway {:?}; delete it first",
                    doc.status.address, g.metadata.name
                )
            },
        )
        .await?;
        let address = doc.status.address.clone();
        delete_current::<Self>(s, doc).await?;
        if let Ok(ip) = address.parse() {
            s.objects.store().delete(&eip_claim_key(ip)).await?;
        }
        Ok(Deleted::Now)
    }
}

/// The external network an elastic IP is claimed from: the one named, or the
/// oldest there is (`yunhan up`'s `public`).
async fn network_for(s: &AppState, named: Option<&str>) -> Result<Doc<ExternalNetwork>> {
    let network = match named {
        Some(p) => lookup::<ExternalNetwork>(s, GLOBAL_SCOPE, p).await?,
        None => s
            .objects
            .list_all::<ExternalNetwork>(Some(GLOBAL_SCOPE))
            .await?
            .into_iter()
            .min_by(|a, b| {
                (&a.metadata.created, &a.metadata.id).cmp(&(&b.metadata.created, &b.metadata.id))
            }),
    };
    Ok(network.ok_or_else(|| {
        ApiError::invalid_field(
            "spec.network",
            "no such external network; an admin creates one with 'yunhan external-network create'",
        )
    })?)
}

/// The NIC an elastic IP may be bound to: in the project, and not holding another EIP.
async fn bindable_nic(s: &AppState, project: &str, eip_id: &str, what: &str) -> Result<String> {
    let nic = resolve::<NetworkInterface>(s, project, "spec.nic", what).await?;
    refuse_while_referenced::<ElasticIp>(
        s,
        Some(project),
        |e| e.metadata.id != eip_id && e.spec.nic.as_deref() == Some(&nic.metadata.id),
        |e| {
            format!(
                "NIC {what:?} already has elastic IP {} bound; unbind that one first",
                e.status.address
            )
        },
    )
    .await?;
    refuse_while_referenced::<NatGateway>(
        s,
        Some(project),
        |g| g.spec.elastic_ip == eip_id,
        |_| "this elastic IP is used by a NAT gateway; it cannot be bound to a NIC".into(),
    )
    .await?;
    Ok(nic.metadata.id)
}

/// 409 for binding an elastic IP that is bound elsewhere, naming the current binding.
async fn already_bound(s: &AppState, eip: &Doc<ElasticIp>, nic_id: &str) -> HttpError {
    let name = match s.objects.get::<NetworkInterface>(nic_id).await {
        Ok(Some(n)) => n.metadata.name,
        _ => nic_id.to_string(),
    };
    ApiError::new(
        ErrorCode::Conflict,
        format!(
            "elastic IP {:?} ({}) is already bound to NIC {name:?}; unbind it first ('yunhan eip unbind {}')",
            eip.metadata.name, eip.status.address, eip.metadata.name
        ),
    )
    .with_detail("bound_to", nic_id)
    .into()
}
