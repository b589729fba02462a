//! Finishes deletions of instances bound to this host: once the host's data
//! planes have released everything (nothing to release until the compute
//! issue lands), the object and its quota are released.

use async_trait::async_trait;
use yunhan_model::Instance;
use yunhan_store::objects::{ObjectError, Objects};
use yunhan_store::reconcile::Reconciler;

pub struct Finalizer {
    pub host_id: String,
}

#[async_trait]
impl Reconciler for Finalizer {
    fn name(&self) -> &'static str {
        "agent-finalizer"
    }
    fn watches(&self) -> Vec<String> {
        vec!["/yunhan/objects/instances/".into()]
    }
    async fn reconcile(&self, objects: &Objects) -> Result<(), ObjectError> {
        for inst in objects.list_all::<Instance>(None).await? {
            if inst.status.host.as_deref() == Some(self.host_id.as_str())
                && inst.metadata.deleting.is_some()
            {
                match objects.delete::<Instance>(&inst).await {
                    Ok(()) | Err(ObjectError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}
