//! Security groups: stateful rules for the NICs of one VPC; a rule's peer is
//! another group of that VPC (or the group itself).

use std::collections::HashSet;

use async_trait::async_trait;
use yunhan_model::{NetworkInterface, SecurityGroup, Vpc};
use yunhan_store::objects::Doc;

use crate::auth::Principal;
use crate::error::Result;
use crate::lookup::{resolve, resolve_each};
use crate::resource::{
    delete_now, project_of, refuse_change, refuse_while_referenced, Deleted, Hooks,
};
use crate::AppState;

#[async_trait]
impl Hooks for SecurityGroup {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let project = project_of(doc).to_string();
        let vpc = resolve::<Vpc>(s, &project, "spec.vpc", &doc.spec.vpc).await?;
        doc.spec.vpc = vpc.metadata.id;
        let id = doc.metadata.id.clone();
        resolve_rule_groups(s, &project, &id, doc).await
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        refuse_change(
            old.spec.vpc != new.spec.vpc,
            "a security group's VPC cannot change",
        )
    }
    async fn resolve_update(s: &AppState, old: &Doc<Self>, new: &mut Doc<Self>) -> Result<()> {
        resolve_rule_groups(s, project_of(old), &old.metadata.id, new).await
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        let project = doc.metadata.project.as_deref();
        let (id, name) = (doc.metadata.id.as_str(), &doc.metadata.name);
        refuse_while_referenced::<NetworkInterface>(
            s,
            project,
            |n| n.spec.security_groups.iter().any(|g| g == id),
            |n| {
                format!(
                    "security group {name:?} is used by NIC {:?}; remove it there first",
                    n.metadata.name
                )
            },
        )
        .await?;
        refuse_while_referenced::<SecurityGroup>(
            s,
            project,
            |g| g.metadata.id != id && g.spec.rules.iter().any(|r| r.group.as_deref() == Some(id)),
            |g| {
                format!(
                    "security group {name:?} is a rule peer of group {:?}; delete that rule first",
                    g.metadata.name
                )
            },
        )
        .await?;
        delete_now::<Self>(s, doc).await
    }
}

/// Rule peers given as group names or ids become ids of groups of the same VPC (a rule may
/// name its own group).
async fn resolve_rule_groups(
    s: &AppState,
    project: &str,
    own_id: &str,
    doc: &mut Doc<SecurityGroup>,
) -> Result<()> {
    let vpc = doc.spec.vpc.clone();
    let own_name = doc.metadata.name.clone();
    for (i, r) in doc.spec.rules.iter_mut().enumerate() {
        let Some(g) = r.group.clone() else { continue };
        if g == own_id || g == own_name {
            r.group = Some(own_id.to_string());
            continue;
        }
        let field = format!("spec.rules[{i}].group");
        r.group = resolve_groups(s, project, &vpc, &field, &[g]).await?.pop();
    }
    Ok(())
}

/// Security groups (names or ids) of `project`, all in `vpc`; returns their ids, each once.
pub(crate) async fn resolve_groups(
    s: &AppState,
    project: &str,
    vpc: &str,
    field: &str,
    groups: &[String],
) -> Result<Vec<String>> {
    let mut ids = resolve_each::<SecurityGroup>(
        s,
        project,
        field,
        groups,
        |sg| sg.spec.vpc == vpc,
        |g| format!("security group {g:?} belongs to another VPC"),
    )
    .await?;
    let mut seen = HashSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    Ok(ids)
}
