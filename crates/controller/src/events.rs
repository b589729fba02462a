//! What the controllers do on their own, as events of the audit trail (docs/events.md):
//! by the actor `platform`, in the object's project.

use yunhan_model::{AuditEvent, Doc, Kind, PLATFORM_ACTOR};
use yunhan_store::events::{EventLog, PLATFORM_SCOPE};
use yunhan_store::objects::Objects;

/// Records `action` the platform did to `doc` of kind `K`, in its project (`what`, in
/// words, after its name); best effort: a store error is logged.
pub(crate) async fn platform_event<K: Kind>(
    objects: &Objects,
    doc: &Doc<K>,
    action: &str,
    what: String,
) {
    let event = AuditEvent {
        time: yunhan_model::now(),
        actor: PLATFORM_ACTOR.to_string(),
        project: doc.metadata.project.clone(),
        action: action.to_string(),
        kind: K::PLURAL.to_string(),
        target: doc.metadata.id.clone(),
        outcome: 0,
        message: format!("{}: {what}", doc.metadata.name),
        request_id: String::new(),
    };
    let scope = event.project.as_deref().unwrap_or(PLATFORM_SCOPE);
    let log = EventLog::new(objects.store().clone());
    if let Err(e) = log.record(scope, &event).await {
        tracing::warn!(target = %doc.metadata.id, action, error = %e, "cannot record an event");
    }
}
