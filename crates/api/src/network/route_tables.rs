//! Route tables: routes for some subnets of one VPC, to an appliance NIC of the same VPC,
//! the NAT gateway, the external gateway or back to the VPC's own routing. A subnet is in
//! at most one table. Deleting a NIC a route targets is allowed: the route's destination
//! is then dropped (the table's status says so) until the route changes; a deleted
//! subnet's association lapses.

use async_trait::async_trait;
use yunhan_model::network::parse_cidr;
use yunhan_model::network::RouteTargetKind;
use yunhan_model::{ApiError, NetworkInterface, RouteTable, Subnet, Vpc};
use yunhan_store::objects::Doc;

use crate::auth::Principal;
use crate::error::Result;
use crate::lookup::{resolve, resolve_each};
use crate::resource::{project_of, refuse_change, refuse_while_referenced, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for RouteTable {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let project = project_of(doc).to_string();
        let vpc = resolve::<Vpc>(s, &project, "spec.vpc", &doc.spec.vpc).await?;
        doc.spec.vpc = vpc.metadata.id.clone();
        normalise(s, &project, &vpc, doc).await
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        refuse_change(
            old.spec.vpc != new.spec.vpc,
            "a route table's VPC cannot change",
        )
    }
    async fn resolve_update(s: &AppState, old: &Doc<Self>, new: &mut Doc<Self>) -> Result<()> {
        let project = project_of(old).to_string();
        let vpc = resolve::<Vpc>(s, &project, "spec.vpc", &old.spec.vpc).await?;
        normalise(s, &project, &vpc, new).await
    }
}

/// Resolves subnets and target NICs to ids within the VPC; a subnet of another table is
/// 409, a NIC of another VPC or a route for the VPC's own CIDR 400.
async fn normalise(
    s: &AppState,
    project: &str,
    vpc: &Doc<Vpc>,
    doc: &mut Doc<RouteTable>,
) -> Result<()> {
    let vpc_id = vpc.metadata.id.as_str();
    doc.spec.subnets = resolve_each::<Subnet>(
        s,
        project,
        "spec.subnets",
        &doc.spec.subnets,
        |d| d.spec.vpc == vpc_id,
        |sn| format!("subnet {sn:?} is in another VPC than the route table"),
    )
    .await?;
    let subnets = doc.spec.subnets.clone();
    refuse_while_referenced::<RouteTable>(
        s,
        Some(project),
        |t| t.metadata.id != doc.metadata.id && t.spec.subnets.iter().any(|x| subnets.contains(x)),
        |t| {
            format!(
                "a subnet is already in route table {:?} (one table per subnet); take it out there first",
                t.metadata.name
            )
        },
    )
    .await?;
    for (i, r) in doc.spec.routes.iter_mut().enumerate() {
        let field = format!("spec.routes[{i}]");
        if parse_cidr(&format!("{field}.destination"), &r.destination)?.to_string() == vpc.spec.cidr
        {
            return Err(ApiError::invalid_field(
                &format!("{field}.destination"),
                format!(
                    "{} is the VPC's own range: its traffic stays in the VPC (route a smaller range)",
                    r.destination
                ),
            )
            .into());
        }
        if let (RouteTargetKind::Nic, Some(nic)) = (r.target, &r.nic) {
            let n = resolve::<NetworkInterface>(s, project, &format!("{field}.nic"), nic).await?;
            if n.status.vpc != vpc_id {
                return Err(ApiError::invalid_field(
                    &format!("{field}.nic"),
                    format!(
                        "NIC {nic:?} is in another VPC; a route's NIC must be in VPC {:?} (give the appliance a NIC there)",
                        vpc.metadata.name
                    ),
                )
                .into());
            }
            r.nic = Some(n.metadata.id);
        }
    }
    Ok(())
}
