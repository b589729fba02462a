//! The alarm evaluator (docs/alarms.md), on the leader: every 10 s (and when rules
//! change) it observes what each enabled rule watches (`alarms/observe.rs`: the latest
//! samples of the VMs' hosts, or the platform's conditions from the store), runs the
//! pure [`yunhan_model::evaluate_alarm`], writes the rule's status when it changed, and on
//! a transition records an event and has the rule's webhooks told (`alarms/notify.rs`,
//! retried; a delivery a previous leader did not finish is sent again).

mod notify;
mod observe;

use std::sync::Arc;
use std::time::Duration;

use yunhan_model::{evaluate_alarm, AlarmRule, AlarmRuleStatus, AlarmState, AlarmTransition, Doc};
use yunhan_store::objects::{object_prefix, ObjectError, Objects};
use yunhan_store::reconcile::Reconciler;

pub use notify::{signature, Notifier, RETRY_FOR};

/// A rule's status is rewritten at least this often while only values move.
const REFRESH_SECS: u64 = 60;

/// The evaluator: the reconciler and its webhook sender.
pub struct Alarms {
    notifier: Arc<Notifier>,
}

impl Alarms {
    pub fn new(objects: Objects) -> Alarms {
        Alarms {
            notifier: Arc::new(Notifier::new(objects)),
        }
    }

    /// Evaluates one rule at `now` with what `seen` observed for it.
    async fn evaluate(
        &self,
        objects: &Objects,
        rule: &Doc<AlarmRule>,
        seen: &mut observe::Seen,
        now: u64,
    ) -> Result<(), ObjectError> {
        let (observed, message) = seen.observe(objects, rule).await?;
        let (mut next, transition) = evaluate_alarm(&rule.spec, &rule.status, &observed, now);
        next.message = message;
        if worth_writing(&rule.status, &next) {
            let id = rule.metadata.id.clone();
            // The delivery's progress is the notifier's to write: kept as it is now.
            let written = objects.modify::<AlarmRule>(&id, |r| {
                let notification = r.status.notification.take();
                r.status = next.clone();
                r.status.notification = notification;
                true
            });
            written.await?;
        }
        match transition {
            Some(t) => {
                record(objects, rule, &t).await;
                self.notifier.send(rule, &next, t.clone());
            }
            None => self.notifier.resume(rule),
        }
        Ok(())
    }
}

/// Whether `next` differs from `before` in more than values and the evaluation time, or
/// `before` is older than [`REFRESH_SECS`].
fn worth_writing(before: &AlarmRuleStatus, next: &AlarmRuleStatus) -> bool {
    let steady = |s: &AlarmRuleStatus| {
        let mut s = s.clone();
        s.evaluated = None;
        s.resources.iter_mut().for_each(|r| r.value = None);
        s
    };
    let stale = before
        .evaluated
        .is_none_or(|t| next.evaluated.unwrap_or(0) >= t + REFRESH_SECS);
    stale || steady(before) != steady(next)
}

/// The transition as an event of the audit trail, in the rule's project.
async fn record(objects: &Objects, rule: &Doc<AlarmRule>, t: &AlarmTransition) {
    let (action, what) = match t.state {
        AlarmState::Firing => ("firing", format!("fires for {}", t.resources.join(", "))),
        AlarmState::Ok => ("resolved", "resolved".to_string()),
    };
    crate::events::platform_event::<AlarmRule>(objects, rule, action, what).await;
}

#[async_trait::async_trait]
impl Reconciler for Alarms {
    fn name(&self) -> &'static str {
        "alarms"
    }

    fn watches(&self) -> Vec<String> {
        vec![object_prefix::<AlarmRule>(None)]
    }

    fn resync(&self) -> Duration {
        Duration::from_secs(10)
    }

    /// Every rule, each on its own: one that cannot be evaluated says why in its status
    /// and the others go on.
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        let now = unix_now();
        let mut seen = observe::Seen::default();
        for rule in objects.list_all::<AlarmRule>(None).await? {
            if let Err(e) = self.evaluate(objects, &rule, &mut seen, now).await {
                tracing::warn!(rule = %rule.metadata.id, error = %e, "alarm rule not evaluated");
            }
        }
        Ok(())
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yunhan_model::AlarmResource;

    fn status(evaluated: u64, value: f64) -> AlarmRuleStatus {
        AlarmRuleStatus {
            evaluated: Some(evaluated),
            resources: vec![AlarmResource {
                id: "ins-1".into(),
                name: "web1".into(),
                state: AlarmState::Ok,
                value: Some(value),
                breaching_since: None,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn moving_values_are_written_once_a_minute_changes_at_once() {
        assert!(!worth_writing(&status(1000, 5.0), &status(1010, 6.0)));
        assert!(worth_writing(&status(1000, 5.0), &status(1060, 6.0)));
        let mut breaching = status(1010, 95.0);
        breaching.resources[0].breaching_since = Some(1010);
        assert!(worth_writing(&status(1000, 5.0), &breaching));
    }
}
