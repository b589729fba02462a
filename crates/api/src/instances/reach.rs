//! A migration's target must carry the VM's networks. VPC subnets are overlays every
//! host carries; an elastic IP is realised only on a host with a leg on its external
//! network, so a target without that leg would leave the VM's address unreachable from
//! outside: refused before anything moves.

use std::collections::BTreeSet;

use yunhan_model::network::DEVICES_PREFIX;
use yunhan_model::{Doc, ElasticIp, ExternalNetwork, Host, Instance, NetworkInterface};

use crate::error::Result;
use crate::resource::conflict;
use crate::AppState;

/// 409 when `host` has no leg on the external network of an elastic IP bound to one of
/// `vm`'s NICs.
pub(super) async fn check(s: &AppState, vm: &Doc<Instance>, host: &Doc<Host>) -> Result<()> {
    let project = vm.metadata.project.as_deref();
    let mine = Some(vm.metadata.id.as_str());
    let nics: Vec<String> = (s.objects.list_all::<NetworkInterface>(project).await?)
        .into_iter()
        .filter(|n| n.spec.instance.as_deref() == mine)
        .map(|n| n.metadata.id)
        .collect();
    if nics.is_empty() {
        return Ok(());
    }
    let reported = devices(s, &host.metadata.id).await?;
    let eips = s.objects.list_all::<ElasticIp>(project).await?;
    for eip in eips
        .iter()
        .filter(|e| e.spec.nic.as_ref().is_some_and(|n| nics.contains(n)))
    {
        let Some(x) = s
            .objects
            .get::<ExternalNetwork>(&eip.status.network)
            .await?
        else {
            continue;
        };
        if !x
            .spec
            .has_leg(&host.metadata.id, &host.metadata.name, &reported)
        {
            return Err(conflict(format!(
                "host {:?} has no leg on external network {:?}, which elastic IP {:?} of {:?} needs; pick a host that has one ('yunhan external-network show {}')",
                host.metadata.name, x.metadata.name, eip.metadata.name, vm.metadata.name, x.metadata.name
            )));
        }
    }
    Ok(())
}

/// The network devices `host`'s agent reports (none reported: none).
async fn devices(s: &AppState, host: &str) -> Result<BTreeSet<String>> {
    let raw = s
        .objects
        .store()
        .get(&format!("{DEVICES_PREFIX}{host}"))
        .await?;
    Ok(raw
        .and_then(|kv| serde_json::from_slice(&kv.value).ok())
        .unwrap_or_default())
}
