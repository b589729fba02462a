//! Load balancers: creating one makes its virtual address, a NIC in its subnet owned by it
//! (`network/nics.rs`, `create_lb_nic`), and for an external one an elastic IP from the
//! default external network bound to that NIC; deleting it deletes both. Members are
//! resolved to the NIC of the VM (or the NIC) in the load balancer's VPC and its address;
//! a member of another VPC is refused (400), another project's VM or NIC is 404. An HTTPS
//! listener's private key is checked against its certificate and kept as a secret the API
//! never returns.

use async_trait::async_trait;
use yunhan_model::network::parse_cidr;
use yunhan_model::network::ElasticIpSpec;
use yunhan_model::{
    ApiError, ElasticIp, Instance, Kind, LbMember, LbReplica, LoadBalancer, Metadata,
    NetworkInterface, Resource, Subnet, Vpc,
};
use yunhan_store::objects::{lb_key_secret_key, Doc};
use yunhan_store::StoreExt;

use crate::auth::Principal;
use crate::error::Result;
use crate::lookup::resolve;
use crate::network::nics::{create_lb_nic, delete_nic};
use crate::resource::{delete_with_secrets, project_of, refuse_change, Deleted, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for LoadBalancer {
    async fn prepare_create(s: &AppState, p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let project = project_of(doc).to_string();
        let subnet = resolve::<Subnet>(s, &project, "spec.subnet", &doc.spec.subnet).await?;
        doc.spec.subnet = subnet.metadata.id.clone();
        doc.status = Default::default();
        doc.status.vpc = subnet.spec.vpc.clone();
        resolve_members(s, &project, doc).await?;
        keep_keys(s, doc).await?;
        let nic = create_lb_nic(s, doc, &subnet.metadata.id, "vip").await?;
        if let Err(e) = create_replicas(s, doc, &subnet.metadata.id).await {
            undo_nics(s, doc, nic).await;
            return Err(e);
        }
        let st = &mut doc.status;
        st.nic = nic.metadata.id.clone();
        st.address = nic.status.ip.clone();
        st.device = nic.status.device.clone();
        st.mac = nic.status.mac.clone();
        st.prefix_len = nic.status.prefix_len;
        st.gateway = nic.status.gateway.clone();
        if doc.spec.external {
            match external_address(s, p, doc, &nic).await {
                Ok(eip) => {
                    doc.status.elastic_ip = eip.metadata.id;
                    doc.status.external_address = eip.status.address;
                }
                Err(e) => {
                    undo_nics(s, doc, nic).await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        refuse_change(
            old.spec.subnet != new.spec.subnet
                || old.spec.external != new.spec.external
                || old.spec.replica_count() != new.spec.replica_count(),
            "a load balancer's subnet, whether it is external and its replicas cannot \
             change; create another",
        )
    }
    async fn resolve_update(s: &AppState, old: &Doc<Self>, new: &mut Doc<Self>) -> Result<()> {
        resolve_members(s, project_of(old), new).await?;
        keep_keys(s, new).await
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        if let Some(eip) = s.objects.get::<ElasticIp>(&doc.status.elastic_ip).await? {
            <ElasticIp as Hooks>::delete(s, eip).await?;
        }
        let nics = doc.status.replicas.iter().map(|r| &r.nic);
        for id in std::iter::once(&doc.status.nic).chain(nics) {
            if let Some(nic) = s.objects.get::<NetworkInterface>(id).await? {
                delete_nic(s, nic).await?;
            }
        }
        let secrets = lb_key_secret_key(&doc.metadata.id, "");
        delete_with_secrets::<Self>(s, doc, &secrets).await
    }
}

/// With more than one replica, a NIC of its own for each (`<name>-r1`…) in the load
/// balancer's subnet, into `status.replicas` (on error the caller deletes those made).
async fn create_replicas(s: &AppState, doc: &mut Doc<LoadBalancer>, subnet: &str) -> Result<()> {
    let n = doc.spec.replica_count();
    if n < 2 {
        return Ok(());
    }
    for i in 1..=n {
        let nic = create_lb_nic(s, doc, subnet, &format!("r{i}")).await?;
        doc.status.replicas.push(LbReplica {
            nic: nic.metadata.id,
            address: nic.status.ip,
            device: nic.status.device,
            mac: nic.status.mac,
            ..Default::default()
        });
    }
    Ok(())
}

/// Deletes the NICs a failed create made (its address's and its replicas').
async fn undo_nics(s: &AppState, doc: &mut Doc<LoadBalancer>, vip: Doc<NetworkInterface>) {
    undo_nic(s, vip).await;
    for r in std::mem::take(&mut doc.status.replicas) {
        if let Ok(Some(nic)) = s.objects.get::<NetworkInterface>(&r.nic).await {
            undo_nic(s, nic).await;
        }
    }
}

async fn undo_nic(s: &AppState, nic: Doc<NetworkInterface>) {
    let name = nic.metadata.name.clone();
    if let Err(undo) = delete_nic(s, nic).await {
        tracing::warn!(nic = %name, error = %undo.error.message, "a load balancer's NIC stays; delete it by hand");
    }
}

/// An elastic IP from the default external network, bound to the load balancer's NIC.
async fn external_address(
    s: &AppState,
    p: &Principal,
    lb: &Doc<LoadBalancer>,
    nic: &Doc<NetworkInterface>,
) -> Result<Doc<ElasticIp>> {
    let mut eip: Doc<ElasticIp> = Resource {
        metadata: Metadata::new(
            yunhan_model::new_id(ElasticIp::ID_PREFIX),
            format!("{}-eip", lb.metadata.name),
            lb.metadata.project.clone(),
        ),
        spec: ElasticIpSpec {
            nic: Some(nic.metadata.id.clone()),
            ..Default::default()
        },
        status: Default::default(),
    };
    <ElasticIp as Hooks>::prepare_create(s, p, &mut eip).await?;
    s.objects.create::<ElasticIp>(eip.clone()).await?;
    Ok(eip)
}

/// Every member's `vm`/`nic` to ids and its address, inside the load balancer's VPC.
async fn resolve_members(s: &AppState, project: &str, doc: &mut Doc<LoadBalancer>) -> Result<()> {
    let vpc = s.objects.get::<Vpc>(&doc.status.vpc).await?;
    let cidr = vpc.and_then(|v| parse_cidr("spec.cidr", &v.spec.cidr).ok());
    let vpc_id = doc.status.vpc.clone();
    for (i, l) in doc.spec.listeners.iter_mut().enumerate() {
        for (k, (_, members)) in l.pools_mut().enumerate() {
            let pool = match k {
                0 => format!("spec.listeners[{i}].members"),
                k => format!("spec.listeners[{i}].rules[{}].members", k - 1),
            };
            for (j, m) in members.iter_mut().enumerate() {
                let field = format!("{pool}[{j}]");
                resolve_member(s, project, &vpc_id, cidr, &field, m).await?;
            }
        }
    }
    Ok(())
}

async fn resolve_member(
    s: &AppState,
    project: &str,
    vpc: &str,
    cidr: Option<yunhan_types::Ipv4Cidr>,
    field: &str,
    m: &mut LbMember,
) -> Result<()> {
    let other_vpc = |what: &str| {
        ApiError::invalid_field(
            field,
            format!("{what} is in another VPC than the load balancer; members are in its VPC"),
        )
    };
    let nic = match (m.vm.clone(), m.nic.clone()) {
        (Some(vm), _) => {
            let inst = resolve::<Instance>(s, project, &format!("{field}.vm"), &vm).await?;
            m.vm = Some(inst.metadata.id.clone());
            let nics = s
                .objects
                .list_all::<NetworkInterface>(Some(project))
                .await?;
            let mine = nics
                .into_iter()
                .filter(|n| n.spec.instance.as_deref() == Some(inst.metadata.id.as_str()))
                .find(|n| n.status.vpc == vpc);
            Some(mine.ok_or_else(|| other_vpc(&format!("VM {vm:?}")))?)
        }
        (None, Some(n)) => {
            let nic = resolve::<NetworkInterface>(s, project, &format!("{field}.nic"), &n).await?;
            if nic.status.vpc != vpc {
                return Err(other_vpc(&format!("NIC {n:?}")).into());
            }
            m.nic = Some(nic.metadata.id.clone());
            Some(nic)
        }
        (None, None) => None,
    };
    match nic {
        Some(n) => m.address = n.status.ip,
        None => {
            let ip = yunhan_model::network::parse_ip(&format!("{field}.address"), &m.address)?;
            if !cidr.is_some_and(|c| c.contains(ip)) {
                return Err(other_vpc(&format!("address {ip}")).into());
            }
        }
    }
    Ok(())
}

/// HTTPS listeners' private keys: a key given is checked against its certificate and kept
/// as a secret (`lb_key_secret_key`), never in the document; a listener given none keeps
/// the stored one (checked against its certificate, which may have changed). Keys of
/// listeners that are gone or no longer HTTPS are dropped.
async fn keep_keys(s: &AppState, doc: &mut Doc<LoadBalancer>) -> Result<()> {
    let store = s.objects.store();
    let id = doc.metadata.id.clone();
    let mut kept = Vec::new();
    for (i, l) in doc.spec.listeners.iter_mut().enumerate() {
        let Some(cert) = l.certificate.as_deref() else {
            continue;
        };
        let field = format!("spec.listeners[{i}]");
        let secret = lb_key_secret_key(&id, &l.name);
        let key = match l.key.take() {
            Some(k) => k,
            None => match store.get(&secret).await? {
                Some(kv) => String::from_utf8_lossy(&kv.value).into_owned(),
                None => {
                    let why = "an https listener needs the certificate's key (--key)";
                    return Err(ApiError::invalid_field(&format!("{field}.key"), why).into());
                }
            },
        };
        check_pair(&field, cert, &key)?;
        store.put(&secret, key.into_bytes()).await?;
        kept.push(secret);
    }
    for kv in store.range_all(&lb_key_secret_key(&id, "")).await? {
        if !kept.contains(&kv.key) {
            store.delete(&kv.key).await?;
        }
    }
    Ok(())
}

/// The certificate chain parses and its first certificate is the key's.
fn check_pair(field: &str, cert: &str, key: &str) -> std::result::Result<(), ApiError> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        ApiError::invalid_field(&format!("{field}.{what}"), format!("{e}"))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| {
            bad(
                "certificate",
                &format!("not a PEM certificate chain: {e:?}"),
            )
        })?;
    if chain.is_empty() {
        return Err(bad("certificate", &"no certificate in the PEM text"));
    }
    let der = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| bad("key", &format!("not a PEM private key: {e:?}")))?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain, der, &provider)
        .map(drop)
        .map_err(|e| {
            bad(
                "key",
                &format!("the key does not match the certificate: {e}"),
            )
        })
}
