//! VPCs: an address range and a VXLAN network identifier (VNI) of its own.
//! A VPC goes only once its subnets, security groups and NAT gateways have.

use async_trait::async_trait;
use yunhan_model::network::VNI_COUNTER_KEY;
use yunhan_model::{Kind, NatGateway, RouteTable, SecurityGroup, Subnet, Vpc};
use yunhan_store::objects::Doc;
use yunhan_store::{Compare, Op, Txn};
use yunhan_types::addr::MAX_VNI;

use crate::auth::Principal;
use crate::error::Result;
use crate::resource::{
    conflict, delete_now, refuse_change, refuse_while_referenced, Deleted, Hooks,
};
use crate::AppState;

/// Allocates the next VNI: a compare-and-swap increment of one counter (never reused).
async fn allocate_vni(s: &AppState) -> Result<u32> {
    let store = s.objects.store();
    loop {
        let cur = store.get(VNI_COUNTER_KEY).await?;
        let (next, rev) = match &cur {
            Some(kv) => (
                std::str::from_utf8(&kv.value)
                    .ok()
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(1),
                kv.mod_revision,
            ),
            None => (1, 0),
        };
        if next > MAX_VNI {
            return Err(conflict(
                "all 16 million VXLAN network identifiers are used",
            ));
        }
        let r = store
            .txn(
                Txn::new()
                    .when(Compare::ModRevision(VNI_COUNTER_KEY.into(), rev))
                    .then(Op::put(VNI_COUNTER_KEY, (next + 1).to_string())),
            )
            .await?;
        if r.succeeded {
            return Ok(next);
        }
    }
}

#[async_trait]
impl Hooks for Vpc {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        doc.status.vni = allocate_vni(s).await?;
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        refuse_change(old.spec.cidr != new.spec.cidr, "a VPC's CIDR cannot change")
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        refuse_while_in::<Subnet>(s, &doc, "subnet", |x| &x.spec.vpc).await?;
        refuse_while_in::<SecurityGroup>(s, &doc, "security group", |x| &x.spec.vpc).await?;
        refuse_while_in::<NatGateway>(s, &doc, "NAT gateway", |x| &x.spec.vpc).await?;
        refuse_while_in::<RouteTable>(s, &doc, "route table", |x| &x.spec.vpc).await?;
        delete_now::<Self>(s, doc).await
    }
}

/// 409 while an object of kind `U` (a `kind`, as the message says) is still in `vpc`;
/// `vpc_of` is the VPC an object is in.
async fn refuse_while_in<U: Kind>(
    s: &AppState,
    vpc: &Doc<Vpc>,
    kind: &str,
    vpc_of: impl Fn(&Doc<U>) -> &str,
) -> Result<()> {
    let (id, name) = (&vpc.metadata.id, &vpc.metadata.name);
    refuse_while_referenced::<U>(
        s,
        vpc.metadata.project.as_deref(),
        |x| vpc_of(x) == id,
        |x| {
            let other = &x.metadata.name;
            format!("VPC {name:?} still has {kind} {other:?}; delete it first")
        },
    )
    .await
}
