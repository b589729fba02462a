//! Host liveness: a host is Ready while its agent's lease-bound key exists.

use std::collections::HashSet;

use async_trait::async_trait;
use yunhan_model::{Host, HostPhase};
use yunhan_store::objects::{object_prefix, ObjectError, Objects, GLOBAL_SCOPE};
use yunhan_store::StoreExt;

use crate::{now, Reconciler, ALIVE_PREFIX};

pub struct HostLiveness;

#[async_trait]
impl Reconciler for HostLiveness {
    fn name(&self) -> &'static str {
        "host-liveness"
    }
    fn watches(&self) -> Vec<String> {
        vec![ALIVE_PREFIX.to_string(), object_prefix::<Host>(None)]
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let alive: HashSet<String> = objects
            .store()
            .range_all(ALIVE_PREFIX)
            .await?
            .into_iter()
            .map(|kv| kv.key[ALIVE_PREFIX.len()..].to_string())
            .collect();
        for host in objects.list_all::<Host>(Some(GLOBAL_SCOPE)).await? {
            let want = if alive.contains(&host.metadata.id) {
                HostPhase::Ready
            } else {
                HostPhase::NotReady
            };
            if host.status.phase != want {
                objects
                    .modify::<Host>(&host.metadata.id, |h| {
                        if h.status.phase == want {
                            return false;
                        }
                        tracing::info!(host = %h.metadata.name, phase = ?want, "host phase changed");
                        h.status.phase = want;
                        h.status.since = Some(now());
                        true
                    })
                    .await?;
            }
        }
        Ok(())
    }
}
