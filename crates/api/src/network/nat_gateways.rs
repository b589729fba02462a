//! NAT gateways: source NAT for subnets of one VPC, and DNAT to addresses in
//! it, through an elastic IP no NIC and no other gateway holds.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use yunhan_model::network::parse_ip;
use yunhan_model::{ApiError, ElasticIp, NatGateway, Subnet, Vpc};
use yunhan_store::objects::Doc;
use yunhan_types::Ipv4Cidr;

use crate::auth::Principal;
use crate::error::Result;
use crate::lookup::{resolve, resolve_each};
use crate::resource::{conflict, project_of, refuse_change, refuse_while_referenced, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for NatGateway {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let project = project_of(doc).to_string();
        let vpc = resolve::<Vpc>(s, &project, "spec.vpc", &doc.spec.vpc).await?;
        doc.spec.vpc = vpc.metadata.id;
        normalise_natgw(s, &project, doc).await
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        refuse_change(
            old.spec.vpc != new.spec.vpc,
            "a NAT gateway's VPC cannot change",
        )
    }
    async fn resolve_update(s: &AppState, old: &Doc<Self>, new: &mut Doc<Self>) -> Result<()> {
        normalise_natgw(s, project_of(old), new).await
    }
}

/// Resolves a NAT gateway's subnets and elastic IP, and checks its DNAT targets lie in the VPC.
async fn normalise_natgw(s: &AppState, project: &str, doc: &mut Doc<NatGateway>) -> Result<()> {
    let subnets = resolve_each::<Subnet>(
        s,
        project,
        "spec.subnets",
        &doc.spec.subnets,
        |d| d.spec.vpc == doc.spec.vpc,
        |sn| format!("subnet {sn:?} belongs to another VPC"),
    )
    .await?;
    let eip = free_eip(s, project, doc).await?;
    check_dnat(s, doc).await?;
    refuse_while_referenced::<NatGateway>(
        s,
        Some(project),
        |g| g.metadata.id != doc.metadata.id && g.spec.vpc == doc.spec.vpc,
        |g| {
            format!(
                "the VPC already has NAT gateway {:?} (one per VPC); add subnets or forwards to it instead",
                g.metadata.name
            )
        },
    )
    .await?;
    doc.spec.subnets = subnets;
    doc.spec.elastic_ip = eip;
    Ok(())
}

/// The id of the gateway's elastic IP, bound to no NIC and used by no other gateway.
async fn free_eip(s: &AppState, project: &str, doc: &Doc<NatGateway>) -> Result<String> {
    let eip = resolve::<ElasticIp>(s, project, "spec.elastic_ip", &doc.spec.elastic_ip).await?;
    if let Some(n) = &eip.spec.nic {
        return Err(conflict(format!(
            "elastic IP {} is bound to NIC {n}; unbind it or use another one",
            eip.status.address
        )));
    }
    refuse_while_referenced::<NatGateway>(
        s,
        Some(project),
        |g| g.metadata.id != doc.metadata.id && g.spec.elastic_ip == eip.metadata.id,
        |g| {
            format!(
                "elastic IP {} is already used by NAT gateway {:?}",
                eip.status.address, g.metadata.name
            )
        },
    )
    .await?;
    Ok(eip.metadata.id)
}

/// Every DNAT target lies inside the gateway's VPC.
async fn check_dnat(s: &AppState, doc: &Doc<NatGateway>) -> Result<()> {
    let vpc_doc = s.objects.get::<Vpc>(&doc.spec.vpc).await?;
    let vpc_cidr = vpc_doc.and_then(|v| v.spec.cidr.parse::<Ipv4Cidr>().ok());
    for (i, d) in doc.spec.dnat.iter().enumerate() {
        let ip: Ipv4Addr = parse_ip(&format!("spec.dnat[{i}].to_ip"), &d.to_ip)?;
        if !vpc_cidr.is_some_and(|c| c.contains(ip)) {
            return Err(ApiError::invalid_field(
                &format!("spec.dnat[{i}].to_ip"),
                format!("{ip} is not inside the NAT gateway's VPC"),
            )
            .into());
        }
    }
    Ok(())
}
