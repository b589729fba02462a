//! What NICs and volumes share: both attach to an instance through their
//! `spec.instance`, only to a live one, and are not deleted while attached.

use yunhan_model::Instance;
use yunhan_store::objects::Doc;

use crate::error::Result;
use crate::lookup::resolve;
use crate::resource::conflict;
use crate::AppState;

/// The instance `what` (name or id) of `project` something is to be attached
/// to; one being deleted is refused.
pub(crate) async fn attachable_instance(
    s: &AppState,
    project: &str,
    what: &str,
) -> Result<Doc<Instance>> {
    let inst = resolve::<Instance>(s, project, "spec.instance", what).await?;
    if inst.metadata.deleting.is_some() {
        return Err(conflict(format!("instance {what:?} is being deleted")));
    }
    Ok(inst)
}

/// 409 while the `kind` (`"NIC"`, `"volume"`) called `name` is attached to a
/// live instance; `command` is the CLI noun that detaches it.
pub(crate) async fn refuse_while_attached(
    s: &AppState,
    kind: &str,
    command: &str,
    name: &str,
    instance: Option<&str>,
) -> Result<()> {
    let Some(i) = instance else {
        return Ok(());
    };
    let live = s
        .objects
        .get::<Instance>(i)
        .await?
        .is_some_and(|i| i.metadata.deleting.is_none());
    if live {
        return Err(conflict(format!(
            "{kind} {name:?} is attached to instance {i}; detach it first ('yunhan {command} detach {name}')"
        )));
    }
    Ok(())
}
