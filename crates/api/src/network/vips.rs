//! Virtual IPs: an address of a subnet shared by some of its NICs.

use async_trait::async_trait;
use yunhan_model::network::ip_claim_key;
use yunhan_model::{NetworkInterface, Subnet, Vip};
use yunhan_store::objects::Doc;
use yunhan_store::StoreExt;

use crate::auth::Principal;
use crate::error::Result;
use crate::lookup::{resolve, resolve_each};
use crate::network::addresses::{claim_in_subnet, subnet_info};
use crate::resource::{changes, delete_current, project_of, refuse_change, Deleted, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for Vip {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let project = project_of(doc).to_string();
        let subnet = resolve::<Subnet>(s, &project, "spec.subnet", &doc.spec.subnet).await?;
        let sn = subnet_info(&subnet)?;
        doc.spec.nics = resolve_vip_nics(s, &project, &sn.id, &doc.spec.nics).await?;
        let ip =
            claim_in_subnet(s, &sn, doc.spec.ip.as_deref(), "spec.ip", &doc.metadata.id).await?;
        doc.spec.subnet = sn.id;
        doc.status.vpc = sn.vpc;
        doc.status.ip = ip.to_string();
        doc.status.mac = yunhan_types::MacAddr::of_vip(&doc.metadata.id).to_string();
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        refuse_change(
            old.spec.subnet != new.spec.subnet || changes(&old.spec.ip, &new.spec.ip),
            "a VIP's subnet and address cannot change",
        )
    }
    async fn resolve_update(s: &AppState, old: &Doc<Self>, new: &mut Doc<Self>) -> Result<()> {
        new.spec.ip = old.spec.ip.clone();
        new.spec.nics =
            resolve_vip_nics(s, project_of(old), &old.spec.subnet, &new.spec.nics).await?;
        Ok(())
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        delete_current::<Self>(s, doc.clone()).await?;
        if let Ok(ip) = doc.status.ip.parse() {
            s.objects
                .store()
                .delete(&ip_claim_key(&doc.spec.subnet, ip))
                .await?;
        }
        Ok(Deleted::Now)
    }
}

/// The ids of `nics` (names or ids), all in the VIP's subnet.
async fn resolve_vip_nics(
    s: &AppState,
    project: &str,
    subnet: &str,
    nics: &[String],
) -> Result<Vec<String>> {
    resolve_each::<NetworkInterface>(
        s,
        project,
        "spec.nics",
        nics,
        |n| n.spec.subnet == subnet,
        |n| format!("NIC {n:?} is in another subnet than the VIP"),
    )
    .await
}
