//! Network interfaces (NICs): an address in a subnet, security groups, and
//! optionally the instance they are attached to. An instance's primary NIC
//! (`spec.nic`) is created and deleted with it.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use yunhan_model::network::{ip_claim_key, port_mac, NetworkInterfaceSpec};
use yunhan_model::{
    new_id, ApiError, ElasticIp, ErrorCode, Instance, Kind, Metadata, NetworkInterface, PrimaryNic,
    Resource, Subnet,
};
use yunhan_store::objects::Doc;
use yunhan_store::StoreExt;

use crate::attachments::{attachable_instance, refuse_while_attached};
use crate::auth::Principal;
use crate::error::{HttpError, Result};
use crate::lookup::resolve;
use crate::network::addresses::{claim_in_subnet, subnet_info};
use crate::network::security_groups::resolve_groups;
use crate::resource::{
    changes, delete_current, project_of, refuse_change, refuse_while_referenced, Deleted, Hooks,
};
use crate::AppState;

#[async_trait]
impl Hooks for NetworkInterface {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        doc.status = Default::default();
        prepare_nic(s, doc).await
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        refuse_owned(old)?;
        refuse_change(
            old.spec.subnet != new.spec.subnet || changes(&old.spec.ip, &new.spec.ip),
            "a NIC's subnet and address cannot change; create another NIC",
        )
    }
    async fn resolve_update(s: &AppState, old: &Doc<Self>, new: &mut Doc<Self>) -> Result<()> {
        let project = project_of(old);
        new.spec.ip = old.spec.ip.clone();
        new.spec.security_groups = resolve_groups(
            s,
            project,
            &old.status.vpc,
            "spec.security_groups",
            &new.spec.security_groups,
        )
        .await?;
        new.spec.instance = match &new.spec.instance {
            Some(i) if old.spec.instance.as_deref() == Some(i) => Some(i.clone()),
            Some(i) => Some(attachable_instance(s, project, i).await?.metadata.id),
            None => None,
        };
        if new.spec.instance != old.spec.instance {
            // Moved or detached by hand: no longer tied to its first VM's life.
            new.status.primary = false;
        }
        Ok(())
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        refuse_owned(&doc)?;
        let (name, instance) = (&doc.metadata.name, doc.spec.instance.as_deref());
        refuse_while_attached(s, "NIC", "nic", name, instance).await?;
        delete_nic(s, doc).await?;
        Ok(Deleted::Now)
    }
}

/// Fills a new NIC's status (address, MAC, device) and resolves its references. On error
/// nothing is left claimed.
async fn prepare_nic(s: &AppState, doc: &mut Doc<NetworkInterface>) -> Result<()> {
    let project = project_of(doc).to_string();
    let subnet = resolve::<Subnet>(s, &project, "spec.subnet", &doc.spec.subnet).await?;
    let sn = subnet_info(&subnet)?;
    let groups = resolve_groups(
        s,
        &project,
        &sn.vpc,
        "spec.security_groups",
        &doc.spec.security_groups,
    )
    .await?;
    let instance = match &doc.spec.instance {
        Some(i) => Some(attachable_instance(s, &project, i).await?.metadata.id),
        None => None,
    };
    if s.objects
        .get_by_name::<NetworkInterface>(&project, &doc.metadata.name)
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!(
                "a NetworkInterface named {:?} already exists; choose another name",
                doc.metadata.name
            ),
        )
        .into());
    }
    let ip = claim_in_subnet(s, &sn, doc.spec.ip.as_deref(), "spec.ip", &doc.metadata.id).await?;
    doc.spec.subnet = sn.id;
    doc.spec.security_groups = groups;
    doc.spec.instance = instance;
    doc.status.vpc = sn.vpc;
    doc.status.ip = ip.to_string();
    doc.status.prefix_len = sn.cidr.prefix_len();
    doc.status.gateway = sn.gateway.to_string();
    doc.status.mac = port_mac(ip).to_string();
    doc.status.device = yunhan_types::names::port_device(&doc.metadata.id);
    Ok(())
}

/// Creates the primary NIC of a new instance (`spec.nic`), attached to it and deleted
/// with it. Called last in the instance's `prepare_create`, so only the instance write
/// itself can still fail; the SDN controller then removes the orphaned NIC.
pub(crate) async fn create_primary_nic(
    s: &AppState,
    inst: &Doc<Instance>,
    req: &PrimaryNic,
) -> Result<()> {
    let mut nic: Doc<NetworkInterface> = Resource {
        metadata: Metadata::new(
            new_id(NetworkInterface::ID_PREFIX),
            format!("{}-nic0", inst.metadata.name),
            inst.metadata.project.clone(),
        ),
        spec: NetworkInterfaceSpec {
            subnet: req.subnet.clone(),
            ip: req.ip.clone(),
            security_groups: req.security_groups.clone(),
            instance: None,
        },
        status: Default::default(),
    };
    prepare_nic(s, &mut nic)
        .await
        .map_err(|e| renamed_fields(e, "spec.", "spec.nic."))?;
    nic.spec.instance = Some(inst.metadata.id.clone());
    nic.status.primary = true;
    if let Err(e) = s.objects.create::<NetworkInterface>(nic.clone()).await {
        release_ip(s, &nic).await;
        return Err(e.into());
    }
    Ok(())
}

/// A load balancer's virtual address is the load balancer's to change and delete.
fn refuse_owned(nic: &Doc<NetworkInterface>) -> Result<()> {
    refuse_change(
        !nic.status.load_balancer.is_empty(),
        &format!(
            "NIC {:?} is the address of load balancer {}; it goes with the load balancer",
            nic.metadata.name, nic.status.load_balancer
        ),
    )
}

/// Creates a NIC of load balancer `lb` in `subnet`, named `<lb name>-<suffix>` and owned by
/// it (`status.load_balancer`): its virtual address (`vip`) or a replica's (`r1`…). On
/// error nothing is left claimed.
pub(crate) async fn create_lb_nic(
    s: &AppState,
    lb: &Doc<yunhan_model::LoadBalancer>,
    subnet: &str,
    suffix: &str,
) -> Result<Doc<NetworkInterface>> {
    let mut nic: Doc<NetworkInterface> = Resource {
        metadata: Metadata::new(
            new_id(NetworkInterface::ID_PREFIX),
            format!("{}-{suffix}", lb.metadata.name),
            lb.metadata.project.clone(),
        ),
        spec: NetworkInterfaceSpec {
            subnet: subnet.to_string(),
            ip: None,
            security_groups: vec![],
            instance: None,
        },
        status: Default::default(),
    };
    prepare_nic(s, &mut nic).await?;
    nic.status.load_balancer = lb.metadata.id.clone();
    match s.objects.create::<NetworkInterface>(nic.clone()).await {
        Ok(created) => Ok(created),
        Err(e) => {
            release_ip(s, &nic).await;
            Err(e.into())
        }
    }
}

/// Reports a NIC error in the instance's terms (`spec.nic.subnet` rather than `spec.subnet`).
fn renamed_fields(mut e: HttpError, from: &str, to: &str) -> HttpError {
    if let Some(serde_json::Value::String(f)) = e.error.details.get_mut("field") {
        if let Some(rest) = f.strip_prefix(from) {
            *f = format!("{to}{rest}");
        }
    }
    e
}

async fn release_ip(s: &AppState, nic: &Doc<NetworkInterface>) {
    if let Ok(ip) = nic.status.ip.parse::<Ipv4Addr>() {
        let key = ip_claim_key(&nic.spec.subnet, ip);
        if let Err(e) = s.objects.store().delete(&key).await {
            tracing::warn!(%key, error = %e, "cannot release an address claim; the SDN controller will");
        }
    }
}

/// Deletes the NICs created with `instance` (its primary NIC) and detaches the others.
pub(crate) async fn release_instance_nics(s: &AppState, inst: &Doc<Instance>) -> Result<()> {
    let nics = s
        .objects
        .list_all::<NetworkInterface>(inst.metadata.project.as_deref())
        .await?;
    for nic in nics {
        if nic.spec.instance.as_deref() != Some(&inst.metadata.id) {
            continue;
        }
        if nic.status.primary {
            delete_nic(s, nic).await?;
        } else {
            let id = nic.metadata.id.clone();
            s.objects
                .modify::<NetworkInterface>(&id, |d| {
                    let attached = d.spec.instance.is_some();
                    d.spec.instance = None;
                    attached
                })
                .await?;
        }
    }
    Ok(())
}

pub(crate) async fn delete_nic(s: &AppState, nic: Doc<NetworkInterface>) -> Result<()> {
    refuse_while_referenced::<ElasticIp>(
        s,
        nic.metadata.project.as_deref(),
        |e| e.spec.nic.as_deref() == Some(&nic.metadata.id),
        |e| {
            format!(
                "NIC {:?} has elastic IP {} bound; unbind it first ('yunhan eip unbind {}')",
                nic.metadata.name, e.status.address, e.metadata.name
            )
        },
    )
    .await?;
    let claimed = nic.clone();
    delete_current::<NetworkInterface>(s, nic).await?;
    release_ip(s, &claimed).await;
    Ok(())
}
