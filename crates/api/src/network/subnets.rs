//! Subnets: a range inside their VPC, overlapping no other subnet of it; the
//! first address is the gateway. A subnet goes once no NIC or VIP uses it.

use async_trait::async_trait;
use yunhan_model::network::{gateway_mac, parse_cidr};
use yunhan_model::{ApiError, NetworkInterface, Subnet, Vip, Vpc};
use yunhan_store::objects::Doc;
use yunhan_types::ipam::Ipam;

use crate::auth::Principal;
use crate::error::Result;
use crate::lookup::resolve;
use crate::network::addresses::refuse_overlap;
use crate::resource::{
    delete_now, project_of, refuse_change, refuse_while_referenced, Deleted, Hooks,
};
use crate::AppState;

#[async_trait]
impl Hooks for Subnet {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let project = project_of(doc).to_string();
        let vpc = resolve::<Vpc>(s, &project, "spec.vpc", &doc.spec.vpc).await?;
        let vpc_cidr = parse_cidr("spec.cidr", &vpc.spec.cidr)?;
        let cidr = parse_cidr("spec.cidr", &doc.spec.cidr)?;
        if !vpc_cidr.contains_cidr(&cidr) {
            return Err(ApiError::invalid_field(
                "spec.cidr",
                format!(
                    "{cidr} is not inside VPC {:?} ({vpc_cidr}); pick a range inside it",
                    vpc.metadata.name
                ),
            )
            .into());
        }
        let siblings = s.objects.list_all::<Subnet>(Some(&project)).await?;
        let same_vpc = siblings
            .iter()
            .filter(|o| o.spec.vpc == vpc.metadata.id)
            .map(|o| (o.metadata.name.as_str(), o.spec.cidr.as_str()));
        refuse_overlap(cidr, same_vpc, |name, other| {
            format!("{cidr} overlaps subnet {name:?} ({other}) of the same VPC; pick a free range")
        })?;
        let gw = Ipam::default_gateway(cidr);
        doc.spec.vpc = vpc.metadata.id;
        doc.spec.cidr = cidr.to_string();
        doc.status.gateway_ip = gw.to_string();
        doc.status.gateway_mac = gateway_mac(gw).to_string();
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        refuse_change(
            old.spec != new.spec,
            "a subnet's VPC and CIDR cannot change",
        )
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        let project = doc.metadata.project.as_deref();
        let (id, name) = (&doc.metadata.id, &doc.metadata.name);
        refuse_while_referenced::<NetworkInterface>(
            s,
            project,
            |n| &n.spec.subnet == id,
            |n| {
                format!(
                    "subnet {name:?} still has NIC {:?}; delete it (or its VM) first",
                    n.metadata.name
                )
            },
        )
        .await?;
        refuse_while_referenced::<Vip>(
            s,
            project,
            |v| &v.spec.subnet == id,
            |v| {
                format!(
                    "subnet {name:?} still has VIP {:?}; delete it first",
                    v.metadata.name
                )
            },
        )
        .await?;
        delete_now::<Self>(s, doc).await
    }
}
