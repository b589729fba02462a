//! Alarm rules (model: `model/src/alarm.rs`; evaluation and webhooks:
//! `controller/src/alarms.rs`; docs/alarms.md). The API checks who may watch what: a
//! rule watches instances of its own project (names resolved to ids) or, for admins
//! only, a `platform:` condition. Webhooks' signing secrets are kept as secrets
//! (`alarm_secret_key`), never in the document: `has_secret` tells one is set.

use async_trait::async_trait;
use yunhan_model::{vm_metric, AlarmRule, Instance, Webhook, PLATFORM_METRICS};
use yunhan_store::objects::{alarm_secret_key, Doc};
use yunhan_store::StoreExt;

use crate::auth::Principal;
use crate::error::Result;
use crate::lookup::{forbidden, resolve_each};
use crate::resource::{delete_with_secrets, project_of, Deleted, Hooks};
use crate::AppState;

#[async_trait]
impl Hooks for AlarmRule {
    async fn prepare_create(s: &AppState, p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        resolve(s, p, doc).await?;
        keep_secrets(s, &doc.metadata.id.clone(), &mut doc.spec.webhooks, &[]).await
    }

    async fn prepare_update(
        s: &AppState,
        p: &Principal,
        old: &Doc<Self>,
        new: &mut Doc<Self>,
    ) -> Result<()> {
        resolve(s, p, new).await?;
        keep_secrets(
            s,
            &old.metadata.id,
            &mut new.spec.webhooks,
            &old.spec.webhooks,
        )
        .await
    }

    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        let secrets = alarm_secret_key(&doc.metadata.id, "");
        delete_with_secrets::<Self>(s, doc, &secrets).await
    }
}

/// The metric's full name, and the instances' ids; platform conditions are for admins.
async fn resolve(s: &AppState, p: &Principal, doc: &mut Doc<AlarmRule>) -> Result<()> {
    if PLATFORM_METRICS.contains(&doc.spec.metric.as_str()) {
        if !p.is_admin() {
            return Err(forbidden("watching the platform's conditions"));
        }
        return Ok(());
    }
    if let Some(full) = vm_metric(&doc.spec.metric) {
        doc.spec.metric = full.to_owned();
    }
    let project = project_of(doc).to_string();
    doc.spec.instances = resolve_each::<Instance>(
        s,
        &project,
        "spec.instances",
        &doc.spec.instances,
        |_| true,
        |_| String::new(),
    )
    .await?;
    Ok(())
}

/// Stores each webhook's new secret and keeps the secret of a webhook given without one
/// whose URL had one before; drops the rest.
async fn keep_secrets(
    s: &AppState,
    rule: &str,
    webhooks: &mut [Webhook],
    before: &[Webhook],
) -> Result<()> {
    let store = s.objects.store();
    // Every secret is read before any is written: webhooks may have changed places.
    let mut secrets = Vec::new();
    for w in webhooks.iter_mut() {
        let had = (before.iter().position(|b| b.url == w.url && b.has_secret))
            .map(|j| alarm_secret_key(rule, &j.to_string()));
        let secret = match (w.secret.take(), had) {
            (Some(new), _) => Some(new.into_bytes()),
            (None, Some(old)) => store.get(&old).await?.map(|kv| kv.value),
            (None, None) => None,
        };
        w.has_secret = secret.is_some();
        secrets.push(secret);
    }
    let mut kept = Vec::new();
    for (i, secret) in secrets.into_iter().enumerate() {
        if let Some(secret) = secret {
            let key = alarm_secret_key(rule, &i.to_string());
            store.put(&key, secret).await?;
            kept.push(key);
        }
    }
    for kv in store.range_all(&alarm_secret_key(rule, "")).await? {
        if !kept.contains(&kv.key) {
            store.delete(&kv.key).await?;
        }
    }
    Ok(())
}
