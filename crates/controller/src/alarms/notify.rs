//! Telling an alarm rule's webhooks of a transition: a JSON POST to each, signed with
//! HMAC-SHA256 of the body under the webhook's secret (`X-Yunhan-Signature:
//! sha256=<hex>`), retried with backoff (1 s doubling to 30 s) until every webhook
//! answered 2xx or [`RETRY_FOR`] has passed since the transition. Progress is in the
//! rule's `status.notification`, so a new leader finishes what the old one could not;
//! a newer transition of the same rule supersedes an older one still being retried.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use yunhan_model::{AlarmNotification, AlarmRule, AlarmRuleStatus, AlarmTransition, Doc};
use yunhan_store::objects::{alarm_secret_key, Objects};

/// How long a transition's delivery is retried.
pub const RETRY_FOR: Duration = Duration::from_secs(600);
/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `body`): what `X-Yunhan-Signature` carries.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a webhook receives (pure).
fn payload(rule: &Doc<AlarmRule>, status: &AlarmRuleStatus, t: &AlarmTransition) -> Value {
    let resources: Vec<Value> = (status.resources.iter())
        .map(|r| json!({"id": r.id, "name": r.name, "state": r.state, "value": r.value}))
        .collect();
    json!({
        "rule": {"id": rule.metadata.id, "name": rule.metadata.name},
        "project": rule.metadata.project,
        "state": t.state,
        "time": t.time,
        "firing": t.resources,
        "severity": rule.spec.severity,
        "metric": rule.spec.metric,
        "comparison": rule.spec.comparison,
        "threshold": rule.spec.threshold,
        "for_seconds": rule.spec.for_seconds,
        "resources": resources,
    })
}

/// Deliveries in flight, at most one per rule.
pub struct Notifier {
    objects: Objects,
    http: reqwest::Client,
    in_flight: Mutex<HashSet<String>>,
}

impl Notifier {
    pub fn new(objects: Objects) -> Notifier {
        Notifier {
            objects,
            http: reqwest::Client::new(),
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// Starts telling `rule`'s webhooks of `t` (the status it led to: `status`).
    pub fn send(
        self: &Arc<Self>,
        rule: &Doc<AlarmRule>,
        status: &AlarmRuleStatus,
        t: AlarmTransition,
    ) {
        if rule.spec.webhooks.is_empty() {
            return;
        }
        self.flight().insert(rule.metadata.id.clone());
        let me = self.clone();
        let body = payload(rule, status, &t).to_string();
        let rule = rule.clone();
        tokio::spawn(async move {
            me.deliver(&rule, &t, body).await;
            me.flight().remove(&rule.metadata.id);
        });
    }

    /// Sends again a delivery the rule's status says is unfinished and nobody here is
    /// retrying (a previous leader's).
    pub fn resume(self: &Arc<Self>, rule: &Doc<AlarmRule>) {
        let Some(n) = &rule.status.notification else {
            return;
        };
        let due = !n.delivered && super::unix_now() < n.time + RETRY_FOR.as_secs();
        if !due || self.flight().contains(&rule.metadata.id) {
            return;
        }
        let Some(t) = rule.status.history.iter().find(|t| t.time == n.time) else {
            return;
        };
        self.send(rule, &rule.status, t.clone());
    }

    fn flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Retries until every webhook took it, the time is up, or a newer transition of
    /// the rule took over.
    async fn deliver(&self, rule: &Doc<AlarmRule>, t: &AlarmTransition, body: String) {
        let mut pending: Vec<usize> = (0..rule.spec.webhooks.len()).collect();
        let mut backoff = Duration::from_secs(1);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut failures = Vec::new();
            for i in std::mem::take(&mut pending) {
                if let Err(why) = self.post(rule, i, &body).await {
                    failures.push(why);
                    pending.push(i);
                }
            }
            let gave_up = super::unix_now() >= t.time + RETRY_FOR.as_secs();
            let note = AlarmNotification {
                time: t.time,
                state: t.state,
                delivered: pending.is_empty(),
                attempts,
                message: failures.join("; "),
            };
            if !self.note(rule, note).await || pending.is_empty() || gave_up {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One POST to webhook `i`; why it failed.
    async fn post(&self, rule: &Doc<AlarmRule>, i: usize, body: &str) -> Result<(), String> {
        let hook = &rule.spec.webhooks[i];
        let mut req = (self.http.post(&hook.url))
            .timeout(POST_TIMEOUT)
            .header("content-type", "application/json")
            .header("x-yunhan-event", "alarm");
        if hook.has_secret {
            let key = alarm_secret_key(&rule.metadata.id, &i.to_string());
            if let Ok(Some(secret)) = self.objects.store().get(&key).await {
                req = req.header(
                    "x-yunhan-signature",
                    signature(&secret.value, body.as_bytes()),
                );
            }
        }
        match req.body(body.to_owned()).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{} answered {}", hook.url, r.status().as_u16())),
            Err(e) => Err(format!("{}: {e}", hook.url)),
        }
    }

    /// Writes the delivery's progress; false when a newer transition took over (or the
    /// rule is gone), which ends this delivery.
    async fn note(&self, rule: &Doc<AlarmRule>, note: AlarmNotification) -> bool {
        let mut current = true;
        let written = self
            .objects
            .modify::<AlarmRule>(&rule.metadata.id, |r| {
                let newer = (r.status.history.last()).is_some_and(|last| last.time > note.time);
                current = !newer;
                let changed = !newer && r.status.notification.as_ref() != Some(&note);
                if changed {
                    r.status.notification = Some(note.clone());
                }
                changed
            })
            .await;
        match written {
            Ok(Some(_)) => current,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(rule = %rule.metadata.id, error = %e, "alarm notification status");
                current
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2.
    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
