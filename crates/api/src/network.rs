//! Rules of the VPC networking kinds: names resolved to ids within the caller's project
//! (another project's object is `not_found`), VNIs and addresses allocated atomically with
//! compare-and-swap claim keys, and deletion refused (409) while something still uses the
//! object. The SDN controller turns the result into per-host plans.

use std::net::Ipv4Addr;

use async_trait::async_trait;
use yunhan_model::network::{
    eip_claim_key, gateway_mac, ip_claim_key, parse_cidr, parse_ip, port_mac, ElasticIpPool,
    EIP_CLAIM_PREFIX, IP_CLAIM_PREFIX, VNI_COUNTER_KEY,
};
use yunhan_model::{
    ApiError, ElasticIp, ErrorCode, Instance, Kind, NatGateway, NetworkInterface, PrimaryNic,
    SecurityGroup, Subnet, Vip, Vpc,
};
use yunhan_store::objects::{Doc, GLOBAL_SCOPE};
use yunhan_store::{Compare, Op, StoreExt, Txn};
use yunhan_types::addr::MAX_VNI;
use yunhan_types::ipam::{Ipam, IpamError};
use yunhan_types::Ipv4Cidr;

use crate::auth::Principal;
use crate::error::Result;
use crate::hooks::{lookup, Deleted, Hooks};
use crate::AppState;

fn conflict(msg: String) -> crate::HttpError {
    ApiError::new(ErrorCode::Conflict, msg).into()
}

fn project_of<S, T>(doc: &yunhan_model::Resource<S, T>) -> &str {
    doc.metadata.project.as_deref().unwrap_or(GLOBAL_SCOPE)
}

/// The object `what` (name or id) of kind `K` in `project`; anything else — absent, or
/// another project's — is `not_found`, naming the field that referred to it.
pub(crate) async fn resolve<K: Kind>(
    s: &AppState,
    project: &str,
    field: &str,
    what: &str,
) -> Result<Doc<K>> {
    match lookup::<K>(s, project, what).await? {
        Some(d) if d.metadata.project.as_deref() == Some(project) => Ok(d),
        _ => Err(ApiError::not_found(K::KIND, what)
            .with_detail("field", field)
            .into()),
    }
}

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
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "all 16 million VXLAN network identifiers are used",
            )
            .into());
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

/// Claims an address in `cidr` (gateway reserved) under the claim keys `key(ip)` listed
/// under `prefix`: a fixed one, or the next free one. Claims are created with
/// compare-and-swap, so two concurrent creates never get the same address.
async fn claim_address(
    s: &AppState,
    prefix: &str,
    key: impl Fn(Ipv4Addr) -> String,
    cidr: Ipv4Cidr,
    gateway: Ipv4Addr,
    fixed: Option<(Ipv4Addr, &str)>,
    owner: &str,
) -> Result<Ipv4Addr> {
    let store = s.objects.store();
    for _ in 0..50 {
        let used: Vec<Ipv4Addr> = store
            .range_all(prefix)
            .await?
            .iter()
            .filter_map(|kv| kv.key.rsplit('/').next()?.parse().ok())
            .filter(|ip| cidr.contains(*ip))
            .collect();
        let mut ipam = Ipam::with_used(cidr, Some(gateway), used.iter().copied())
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        let ip = match fixed {
            Some((ip, field)) => match ipam.allocate_fixed(ip) {
                Ok(()) => ip,
                Err(IpamError::Taken(_)) => {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        format!(
                            "{ip} is already in use in {cidr}; pick another address or omit it"
                        ),
                    )
                    .with_detail("field", field)
                    .into())
                }
                Err(e) => {
                    return Err(ApiError::invalid_field(
                        field,
                        format!("{e}; use a free host address of {cidr}"),
                    )
                    .into())
                }
            },
            None => ipam.allocate().map_err(|_| {
                ApiError::new(
                    ErrorCode::IpExhausted,
                    format!(
                        "{cidr} has no free address left; delete unused NICs or use another subnet"
                    ),
                )
                .with_detail("cidr", cidr.to_string())
            })?,
        };
        if store.create(&key(ip), owner.as_bytes().to_vec()).await? {
            return Ok(ip);
        }
        // Someone claimed it between our read and write: read again.
    }
    Err(ApiError::new(
        ErrorCode::Unavailable,
        "address allocation kept racing; retry",
    )
    .into())
}

/// Subnet facts needed to place an address in it.
struct SubnetInfo {
    id: String,
    vpc: String,
    cidr: Ipv4Cidr,
    gateway: Ipv4Addr,
}

fn subnet_info(d: &Doc<Subnet>) -> Result<SubnetInfo> {
    let cidr = parse_cidr("spec.cidr", &d.spec.cidr)?;
    Ok(SubnetInfo {
        id: d.metadata.id.clone(),
        vpc: d.spec.vpc.clone(),
        cidr,
        gateway: Ipam::default_gateway(cidr),
    })
}

async fn claim_in_subnet(
    s: &AppState,
    sn: &SubnetInfo,
    fixed: Option<&str>,
    field: &str,
    owner: &str,
) -> Result<Ipv4Addr> {
    let fixed = match fixed {
        Some(f) => Some((parse_ip(field, f)?, field)),
        None => None,
    };
    let prefix = format!("{IP_CLAIM_PREFIX}{}/", sn.id);
    claim_address(
        s,
        &prefix,
        |ip| ip_claim_key(&sn.id, ip),
        sn.cidr,
        sn.gateway,
        fixed,
        owner,
    )
    .await
}

/// Security groups (names or ids) of `project`, all in `vpc`; returns their ids.
async fn resolve_groups(
    s: &AppState,
    project: &str,
    vpc: &str,
    field: &str,
    groups: &[String],
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for g in groups {
        let sg = resolve::<SecurityGroup>(s, project, field, g).await?;
        if sg.spec.vpc != vpc {
            return Err(ApiError::invalid_field(
                field,
                format!("security group {g:?} belongs to another VPC"),
            )
            .into());
        }
        if !ids.contains(&sg.metadata.id) {
            ids.push(sg.metadata.id);
        }
    }
    Ok(ids)
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
        Some(i) => Some(resolve_instance(s, &project, i).await?),
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

async fn resolve_instance(s: &AppState, project: &str, what: &str) -> Result<String> {
    let inst = resolve::<Instance>(s, project, "spec.instance", what).await?;
    if inst.metadata.deleting.is_some() {
        return Err(conflict(format!("instance {what:?} is being deleted")));
    }
    Ok(inst.metadata.id)
}

/// Creates the primary NIC of a new instance (`spec.nic`), attached to it and deleted
/// with it. Called last in the instance's `prepare_create`, so only the instance write
/// itself can still fail; the SDN controller then removes the orphaned NIC.
pub(crate) async fn create_primary_nic(
    s: &AppState,
    inst: &Doc<Instance>,
    req: &PrimaryNic,
) -> Result<()> {
    use yunhan_model::{new_id, now, Metadata, Resource};
    let mut nic: Doc<NetworkInterface> = Resource {
        metadata: Metadata {
            id: new_id(NetworkInterface::ID_PREFIX),
            name: format!("{}-nic0", inst.metadata.name),
            project: inst.metadata.project.clone(),
            labels: Default::default(),
            created: now(),
            revision: 0,
            deleting: None,
        },
        spec: yunhan_model::network::NetworkInterfaceSpec {
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

/// Reports a NIC error in the instance's terms (`spec.nic.subnet` rather than `spec.subnet`).
fn renamed_fields(mut e: crate::HttpError, from: &str, to: &str) -> crate::HttpError {
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

async fn delete_nic(s: &AppState, nic: Doc<NetworkInterface>) -> Result<()> {
    let eips = s
        .objects
        .list_all::<ElasticIp>(nic.metadata.project.as_deref())
        .await?;
    if let Some(e) = eips
        .iter()
        .find(|e| e.spec.nic.as_deref() == Some(&nic.metadata.id))
    {
        return Err(conflict(format!(
            "NIC {:?} has elastic IP {} bound; unbind it first ('yunhan eip unbind {}')",
            nic.metadata.name, e.status.address, e.metadata.name
        )));
    }
    s.objects.delete::<NetworkInterface>(&nic).await?;
    release_ip(s, &nic).await;
    Ok(())
}

#[async_trait]
impl Hooks for Vpc {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        doc.status.vni = allocate_vni(s).await?;
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec.cidr != new.spec.cidr {
            return Err(conflict("a VPC's CIDR cannot change".into()));
        }
        Ok(())
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        let project = doc.metadata.project.as_deref();
        let id = doc.metadata.id.as_str();
        let name = &doc.metadata.name;
        let users: Vec<(&str, String)> = [
            (
                "subnet",
                s.objects
                    .list_all::<Subnet>(project)
                    .await?
                    .into_iter()
                    .find(|x| x.spec.vpc == id)
                    .map(|x| x.metadata.name),
            ),
            (
                "security group",
                s.objects
                    .list_all::<SecurityGroup>(project)
                    .await?
                    .into_iter()
                    .find(|x| x.spec.vpc == id)
                    .map(|x| x.metadata.name),
            ),
            (
                "NAT gateway",
                s.objects
                    .list_all::<NatGateway>(project)
                    .await?
                    .into_iter()
                    .find(|x| x.spec.vpc == id)
                    .map(|x| x.metadata.name),
            ),
        ]
        .into_iter()
        .filter_map(|(k, n)| n.map(|n| (k, n)))
        .collect();
        if let Some((kind, other)) = users.first() {
            return Err(conflict(format!(
                "VPC {name:?} still has {kind} {other:?}; delete it first"
            )));
        }
        s.objects.delete::<Self>(&doc).await?;
        Ok(Deleted::Now)
    }
}

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
        for o in siblings.iter().filter(|o| o.spec.vpc == vpc.metadata.id) {
            if o.spec
                .cidr
                .parse::<Ipv4Cidr>()
                .is_ok_and(|c| c.overlaps(&cidr))
            {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "{cidr} overlaps subnet {:?} ({}) of the same VPC; pick a free range",
                        o.metadata.name, o.spec.cidr
                    ),
                )
                .with_detail("field", "spec.cidr")
                .into());
            }
        }
        let gw = Ipam::default_gateway(cidr);
        doc.spec.vpc = vpc.metadata.id;
        doc.spec.cidr = cidr.to_string();
        doc.status.gateway_ip = gw.to_string();
        doc.status.gateway_mac = gateway_mac(gw).to_string();
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec != new.spec {
            return Err(conflict("a subnet's VPC and CIDR cannot change".into()));
        }
        Ok(())
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        let project = doc.metadata.project.as_deref();
        if let Some(n) = s
            .objects
            .list_all::<NetworkInterface>(project)
            .await?
            .into_iter()
            .find(|n| n.spec.subnet == doc.metadata.id)
        {
            return Err(conflict(format!(
                "subnet {:?} still has NIC {:?}; delete it (or its VM) first",
                doc.metadata.name, n.metadata.name
            )));
        }
        if let Some(v) = s
            .objects
            .list_all::<Vip>(project)
            .await?
            .into_iter()
            .find(|v| v.spec.subnet == doc.metadata.id)
        {
            return Err(conflict(format!(
                "subnet {:?} still has VIP {:?}; delete it first",
                doc.metadata.name, v.metadata.name
            )));
        }
        s.objects.delete::<Self>(&doc).await?;
        Ok(Deleted::Now)
    }
}

#[async_trait]
impl Hooks for NetworkInterface {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        doc.status = Default::default();
        prepare_nic(s, doc).await
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        let ip_changed = new.spec.ip.is_some() && new.spec.ip != old.spec.ip;
        if old.spec.subnet != new.spec.subnet || ip_changed {
            return Err(conflict(
                "a NIC's subnet and address cannot change; create another NIC".into(),
            ));
        }
        Ok(())
    }
    async fn prepare_update(
        s: &AppState,
        _p: &Principal,
        old: &Doc<Self>,
        new: &mut Doc<Self>,
    ) -> Result<()> {
        let project = project_of(old).to_string();
        new.spec.ip = old.spec.ip.clone();
        new.spec.security_groups = resolve_groups(
            s,
            &project,
            &old.status.vpc,
            "spec.security_groups",
            &new.spec.security_groups,
        )
        .await?;
        new.spec.instance = match &new.spec.instance {
            Some(i) if old.spec.instance.as_deref() == Some(i) => Some(i.clone()),
            Some(i) => Some(resolve_instance(s, &project, i).await?),
            None => None,
        };
        if new.spec.instance != old.spec.instance {
            // Moved or detached by hand: no longer tied to its first VM's life.
            new.status.primary = false;
        }
        Ok(())
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        if let Some(i) = &doc.spec.instance {
            let live = s
                .objects
                .get::<Instance>(i)
                .await?
                .is_some_and(|i| i.metadata.deleting.is_none());
            if live {
                return Err(conflict(format!(
                    "NIC {:?} is attached to instance {i}; detach it first ('yunhan nic detach {}')",
                    doc.metadata.name, doc.metadata.name
                )));
            }
        }
        delete_nic(s, doc).await?;
        Ok(Deleted::Now)
    }
}

#[async_trait]
impl Hooks for SecurityGroup {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let project = project_of(doc).to_string();
        let vpc = resolve::<Vpc>(s, &project, "spec.vpc", &doc.spec.vpc).await?;
        doc.spec.vpc = vpc.metadata.id;
        let id = doc.metadata.id.clone();
        resolve_rule_groups(s, &project, &id, doc).await
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec.vpc != new.spec.vpc {
            return Err(conflict("a security group's VPC cannot change".into()));
        }
        Ok(())
    }
    async fn prepare_update(
        s: &AppState,
        _p: &Principal,
        old: &Doc<Self>,
        new: &mut Doc<Self>,
    ) -> Result<()> {
        let project = project_of(old).to_string();
        resolve_rule_groups(s, &project, &old.metadata.id, new).await
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        let project = doc.metadata.project.as_deref();
        let id = doc.metadata.id.as_str();
        if let Some(n) = s
            .objects
            .list_all::<NetworkInterface>(project)
            .await?
            .into_iter()
            .find(|n| n.spec.security_groups.iter().any(|g| g == id))
        {
            return Err(conflict(format!(
                "security group {:?} is used by NIC {:?}; remove it there first",
                doc.metadata.name, n.metadata.name
            )));
        }
        if let Some(g) = s
            .objects
            .list_all::<SecurityGroup>(project)
            .await?
            .into_iter()
            .find(|g| {
                g.metadata.id != id && g.spec.rules.iter().any(|r| r.group.as_deref() == Some(id))
            })
        {
            return Err(conflict(format!(
                "security group {:?} is a rule peer of group {:?}; delete that rule first",
                doc.metadata.name, g.metadata.name
            )));
        }
        s.objects.delete::<Self>(&doc).await?;
        Ok(Deleted::Now)
    }
}

/// Rule peers given as group names or ids become ids of groups of the same VPC (a rule may
/// name its own group).
async fn resolve_rule_groups(
    s: &AppState,
    project: &str,
    own_id: &str,
    doc: &mut Doc<SecurityGroup>,
) -> Result<()> {
    let vpc = doc.spec.vpc.clone();
    let own_name = doc.metadata.name.clone();
    for (i, r) in doc.spec.rules.iter_mut().enumerate() {
        let Some(g) = r.group.clone() else { continue };
        if g == own_id || g == own_name {
            r.group = Some(own_id.to_string());
            continue;
        }
        let field = format!("spec.rules[{i}].group");
        r.group = resolve_groups(s, project, &vpc, &field, &[g]).await?.pop();
    }
    Ok(())
}

#[async_trait]
impl Hooks for ElasticIpPool {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let cidr = parse_cidr("spec.cidr", &doc.spec.cidr)?;
        for o in s.objects.list_all::<Self>(Some(GLOBAL_SCOPE)).await? {
            if o.spec
                .cidr
                .parse::<Ipv4Cidr>()
                .is_ok_and(|c| c.overlaps(&cidr))
            {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    format!(
                        "{cidr} overlaps pool {:?} ({})",
                        o.metadata.name, o.spec.cidr
                    ),
                )
                .with_detail("field", "spec.cidr")
                .into());
            }
        }
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec != new.spec {
            return Err(conflict("a pool's range cannot change".into()));
        }
        Ok(())
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        if let Some(e) = s
            .objects
            .list_all::<ElasticIp>(None)
            .await?
            .into_iter()
            .find(|e| e.status.pool == doc.metadata.id)
        {
            return Err(conflict(format!(
                "pool {:?} still has elastic IP {}; release it first",
                doc.metadata.name, e.status.address
            )));
        }
        s.objects.delete::<Self>(&doc).await?;
        Ok(Deleted::Now)
    }
}

fn pool_gateway(p: &Doc<ElasticIpPool>, cidr: Ipv4Cidr) -> Ipv4Addr {
    p.spec
        .gateway
        .as_deref()
        .and_then(|g| g.parse().ok())
        .unwrap_or_else(|| Ipam::default_gateway(cidr))
}

/// The NIC an elastic IP may be bound to: in the project, and not holding another EIP.
async fn bindable_nic(s: &AppState, project: &str, eip_id: &str, what: &str) -> Result<String> {
    let nic = resolve::<NetworkInterface>(s, project, "spec.nic", what).await?;
    let eips = s.objects.list_all::<ElasticIp>(Some(project)).await?;
    if let Some(e) = eips
        .iter()
        .find(|e| e.metadata.id != eip_id && e.spec.nic.as_deref() == Some(&nic.metadata.id))
    {
        return Err(conflict(format!(
            "NIC {what:?} already has elastic IP {} bound; unbind that one first",
            e.status.address
        )));
    }
    if s.objects
        .list_all::<NatGateway>(Some(project))
        .await?
        .iter()
        .any(|g| g.spec.elastic_ip == eip_id)
    {
        return Err(conflict(
            "this elastic IP is used by a NAT gateway; it cannot be bound to a NIC".into(),
        ));
    }
    Ok(nic.metadata.id)
}

/// 409 for binding an elastic IP that is bound elsewhere, naming the current binding.
async fn already_bound(s: &AppState, eip: &Doc<ElasticIp>, nic_id: &str) -> crate::HttpError {
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

#[async_trait]
impl Hooks for ElasticIp {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let project = project_of(doc).to_string();
        let pool = match &doc.spec.pool {
            Some(p) => lookup::<ElasticIpPool>(s, GLOBAL_SCOPE, p).await?,
            None => s
                .objects
                .list_all::<ElasticIpPool>(Some(GLOBAL_SCOPE))
                .await?
                .into_iter()
                .next(),
        };
        let pool = pool.ok_or_else(|| {
            ApiError::invalid_field(
                "spec.pool",
                "no such elastic IP pool; an admin creates one with 'yunhan eip-pool create'",
            )
        })?;
        if let Some(n) = &doc.spec.nic {
            doc.spec.nic = Some(bindable_nic(s, &project, &doc.metadata.id, n).await?);
        }
        let cidr = parse_cidr("spec.cidr", &pool.spec.cidr)?;
        let fixed = match &doc.spec.address {
            Some(a) => Some((parse_ip("spec.address", a)?, "spec.address")),
            None => None,
        };
        let ip = claim_address(
            s,
            EIP_CLAIM_PREFIX,
            eip_claim_key,
            cidr,
            pool_gateway(&pool, cidr),
            fixed,
            &doc.metadata.id,
        )
        .await?;
        doc.spec.pool = Some(pool.metadata.id.clone());
        doc.status.address = ip.to_string();
        doc.status.pool = pool.metadata.id;
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec.pool != new.spec.pool
            || (new.spec.address.is_some() && old.spec.address != new.spec.address)
        {
            return Err(conflict(
                "an elastic IP's pool and address cannot change".into(),
            ));
        }
        Ok(())
    }
    async fn prepare_update(
        s: &AppState,
        _p: &Principal,
        old: &Doc<Self>,
        new: &mut Doc<Self>,
    ) -> Result<()> {
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
        if let Some(g) = s
            .objects
            .list_all::<NatGateway>(doc.metadata.project.as_deref())
            .await?
            .into_iter()
            .find(|g| g.spec.elastic_ip == doc.metadata.id)
        {
            return Err(conflict(format!(
                "elastic IP {} is used by NAT gateway {:?}; delete it first",
                doc.status.address, g.metadata.name
            )));
        }
        s.objects.delete::<Self>(&doc).await?;
        if let Ok(ip) = doc.status.address.parse() {
            s.objects.store().delete(&eip_claim_key(ip)).await?;
        }
        Ok(Deleted::Now)
    }
}

#[async_trait]
impl Hooks for NatGateway {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let project = project_of(doc).to_string();
        let vpc = resolve::<Vpc>(s, &project, "spec.vpc", &doc.spec.vpc).await?;
        doc.spec.vpc = vpc.metadata.id;
        normalise_natgw(s, &project, doc).await
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec.vpc != new.spec.vpc {
            return Err(conflict("a NAT gateway's VPC cannot change".into()));
        }
        Ok(())
    }
    async fn prepare_update(
        s: &AppState,
        _p: &Principal,
        old: &Doc<Self>,
        new: &mut Doc<Self>,
    ) -> Result<()> {
        let project = project_of(old).to_string();
        normalise_natgw(s, &project, new).await
    }
}

/// Resolves a NAT gateway's subnets and elastic IP, and checks its DNAT targets lie in the VPC.
async fn normalise_natgw(s: &AppState, project: &str, doc: &mut Doc<NatGateway>) -> Result<()> {
    let vpc = doc.spec.vpc.clone();
    let mut subnets = Vec::new();
    for sn in &doc.spec.subnets {
        let d = resolve::<Subnet>(s, project, "spec.subnets", sn).await?;
        if d.spec.vpc != vpc {
            return Err(ApiError::invalid_field(
                "spec.subnets",
                format!("subnet {sn:?} belongs to another VPC"),
            )
            .into());
        }
        subnets.push(d.metadata.id);
    }
    let eip = resolve::<ElasticIp>(s, project, "spec.elastic_ip", &doc.spec.elastic_ip).await?;
    if let Some(n) = &eip.spec.nic {
        return Err(conflict(format!(
            "elastic IP {} is bound to NIC {n}; unbind it or use another one",
            eip.status.address
        )));
    }
    if let Some(g) = s
        .objects
        .list_all::<NatGateway>(Some(project))
        .await?
        .into_iter()
        .find(|g| g.metadata.id != doc.metadata.id && g.spec.elastic_ip == eip.metadata.id)
    {
        return Err(conflict(format!(
            "elastic IP {} is already used by NAT gateway {:?}",
            eip.status.address, g.metadata.name
        )));
    }
    let vpc_doc = s.objects.get::<Vpc>(&vpc).await?;
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
    doc.spec.subnets = subnets;
    doc.spec.elastic_ip = eip.metadata.id;
    Ok(())
}

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
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec.subnet != new.spec.subnet
            || (new.spec.ip.is_some() && new.spec.ip != old.spec.ip)
        {
            return Err(conflict("a VIP's subnet and address cannot change".into()));
        }
        Ok(())
    }
    async fn prepare_update(
        s: &AppState,
        _p: &Principal,
        old: &Doc<Self>,
        new: &mut Doc<Self>,
    ) -> Result<()> {
        let project = project_of(old).to_string();
        new.spec.ip = old.spec.ip.clone();
        new.spec.nics = resolve_vip_nics(s, &project, &old.spec.subnet, &new.spec.nics).await?;
        Ok(())
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        s.objects.delete::<Self>(&doc).await?;
        if let Ok(ip) = doc.status.ip.parse() {
            s.objects
                .store()
                .delete(&ip_claim_key(&doc.spec.subnet, ip))
                .await?;
        }
        Ok(Deleted::Now)
    }
}

async fn resolve_vip_nics(
    s: &AppState,
    project: &str,
    subnet: &str,
    nics: &[String],
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for n in nics {
        let nic = resolve::<NetworkInterface>(s, project, "spec.nics", n).await?;
        if nic.spec.subnet != subnet {
            return Err(ApiError::invalid_field(
                "spec.nics",
                format!("NIC {n:?} is in another subnet than the VIP"),
            )
            .into());
        }
        ids.push(nic.metadata.id);
    }
    Ok(ids)
}

/// CRUD routes of the networking kinds.
pub(crate) fn routes(r: axum::Router<crate::Shared>) -> axum::Router<crate::Shared> {
    let r = crate::handlers::crud::<Vpc>(r);
    let r = crate::handlers::crud::<Subnet>(r);
    let r = crate::handlers::crud::<NetworkInterface>(r);
    let r = crate::handlers::crud::<SecurityGroup>(r);
    let r = crate::handlers::crud::<ElasticIpPool>(r);
    let r = crate::handlers::crud::<ElasticIp>(r);
    let r = crate::handlers::crud::<NatGateway>(r);
    crate::handlers::crud::<Vip>(r)
}
