//! What the controllers do on their own, as events of the audit trail (docs/events.md):
//! by the actor `platform`, in the instance's project.

use yunhan_model::{AuditEvent, Doc, Instance, Kind, PLATFORM_ACTOR};
use yunhan_store::events::{EventLog, PLATFORM_SCOPE};
use yunhan_store::objects::Objects;

/// Records `action` done to `inst` (`what`, in words, after its name); best effort: a
/// store error is logged.
pub(crate) async fn instance_event(
    objects: &Objects,
    inst: &Doc<Instance>,
    action: &str,
    what: String,
) {
    let event = AuditEvent {
        time: yunhan_model::now(),
        actor: PLATFORM_ACTOR.to_string(),
        project: inst.metadata.project.clone(),
        action: action.to_string(),
        kind: Instance::PLURAL.to_string(),
        target: inst.metadata.id.clone(),
        outcome: 0,
        message: format!("{}: {what}", inst.metadata.name),
    };
    let scope = event.project.as_deref().unwrap_or(PLATFORM_SCOPE);
    let log = EventLog::new(objects.store().clone());
    if let Err(e) = log.record(scope, &event).await {
        tracing::warn!(instance = %inst.metadata.id, action, error = %e, "cannot record an event");
    }
}
