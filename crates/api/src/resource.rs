//! The core every resource family builds on: the [`Hooks`] a kind plugs into
//! the generic CRUD handlers, how a deletion ends ([`Deleted`]), and the
//! shared refusals (409 `conflict`, "still referenced").

use async_trait::async_trait;
use yunhan_model::{ApiError, ErrorCode, Kind, Resource, Scope};
use yunhan_store::objects::{Doc, ObjectError, GLOBAL_SCOPE};
use yunhan_store::StoreExt;

use crate::auth::Principal;
use crate::error::{HttpError, Result};
use crate::AppState;

pub enum Deleted<K: Kind> {
    /// Gone now (204).
    Now,
    /// Marked for deletion; a controller or agent finishes it (202).
    Pending(Box<Doc<K>>),
}

/// Per-kind rules layered on the generic CRUD handlers: reference checks on
/// create, what may change on update, visibility and how deletion proceeds.
#[async_trait]
pub trait Hooks: Kind + Sized {
    /// Resolves references and fills creation-time status before the write.
    async fn prepare_create(_s: &AppState, _p: &Principal, _doc: &mut Doc<Self>) -> Result<()> {
        Ok(())
    }

    /// Refuses changes an update may not make.
    fn check_update(_old: &Doc<Self>, _new: &Doc<Self>) -> Result<()> {
        Ok(())
    }

    /// Resolves references of an update (names → ids) and checks them against the store;
    /// by default [`Hooks::resolve_update`], which does not depend on who asks.
    async fn prepare_update(
        s: &AppState,
        _p: &Principal,
        old: &Doc<Self>,
        new: &mut Doc<Self>,
    ) -> Result<()> {
        Self::resolve_update(s, old, new).await
    }

    /// [`Hooks::prepare_update`] of a kind whose updates are the same whoever asks.
    async fn resolve_update(_s: &AppState, _old: &Doc<Self>, _new: &mut Doc<Self>) -> Result<()> {
        Ok(())
    }

    /// The project an object is owned by, for scoping (None: platform-wide).
    fn owner(doc: &Doc<Self>) -> Option<&str> {
        doc.metadata.project.as_deref()
    }

    /// Some objects of other projects are public (list must look beyond the
    /// caller's project).
    const HAS_PUBLIC: bool = false;

    /// Readable by members of every project (e.g. public images).
    fn public(_doc: &Doc<Self>) -> bool {
        Self::SCOPE == Scope::Global
    }

    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        delete_now::<Self>(s, doc).await
    }
}

/// How many times [`delete_current`] re-reads an object whose status moved on.
const DELETE_ATTEMPTS: usize = 8;

/// Deletes `doc`. Controllers and agents write objects' status meanwhile (a placement, a
/// health report): a compare-and-swap lost to such a write is retried on the current
/// version, never the user's problem. Gone meanwhile counts as deleted.
pub(crate) async fn delete_current<K: Kind>(s: &AppState, mut doc: Doc<K>) -> Result<()> {
    for _ in 1..DELETE_ATTEMPTS {
        match s.objects.delete::<K>(&doc).await {
            Err(ObjectError::Conflict(_)) => {}
            done => return Ok(done?),
        }
        match s.objects.get::<K>(&doc.metadata.id).await? {
            Some(current) => doc = current,
            None => return Ok(()),
        }
    }
    Ok(s.objects.delete::<K>(&doc).await?)
}

/// [`delete_current`] as a deletion's answer: gone now (204).
pub(crate) async fn delete_now<K: Kind>(s: &AppState, doc: Doc<K>) -> Result<Deleted<K>> {
    delete_current::<K>(s, doc).await?;
    Ok(Deleted::Now)
}

/// [`delete_now`], and the secrets stored under the key prefix `secrets` go with it.
pub(crate) async fn delete_with_secrets<K: Kind>(
    s: &AppState,
    doc: Doc<K>,
    secrets: &str,
) -> Result<Deleted<K>> {
    delete_current::<K>(s, doc).await?;
    let store = s.objects.store();
    for kv in store.range_all(secrets).await? {
        store.delete(&kv.key).await?;
    }
    Ok(Deleted::Now)
}

/// 409 `conflict` with `msg`.
pub(crate) fn conflict(msg: impl Into<String>) -> HttpError {
    ApiError::new(ErrorCode::Conflict, msg).into()
}

/// 409 `msg` when an update `changed` what may not change.
pub(crate) fn refuse_change(changed: bool, msg: &str) -> Result<()> {
    match changed {
        true => Err(conflict(msg)),
        false => Ok(()),
    }
}

/// Whether an update changes an optional field it gives (it may leave it out).
pub(crate) fn changes<T: PartialEq>(old: &Option<T>, new: &Option<T>) -> bool {
    new.is_some() && new != old
}

/// The scope an object's names live in: its project, or the platform's.
pub(crate) fn project_of<S, T>(doc: &Resource<S, T>) -> &str {
    doc.metadata.project.as_deref().unwrap_or(GLOBAL_SCOPE)
}

/// 409 while an object of kind `U` in `scope` (every scope: `None`) still
/// refers to something: the first that `refers` accepts is named by `why`.
pub(crate) async fn refuse_while_referenced<U: Kind>(
    s: &AppState,
    scope: Option<&str>,
    refers: impl Fn(&Doc<U>) -> bool,
    why: impl FnOnce(&Doc<U>) -> String,
) -> Result<()> {
    let others = s.objects.list_all::<U>(scope).await?;
    match others.iter().find(|o| refers(o)) {
        Some(o) => Err(conflict(why(o))),
        None => Ok(()),
    }
}

/// Deletes `doc` now when no host holds its data (`hosted` false); else
/// marks it, once, for that host's agent to finish (202).
pub(crate) async fn delete_or_mark<K: Hooks>(
    s: &AppState,
    mut doc: Doc<K>,
    hosted: bool,
) -> Result<Deleted<K>> {
    if !hosted {
        return delete_now::<K>(s, doc).await;
    }
    if doc.metadata.deleting.is_none() {
        doc.metadata.deleting = Some(yunhan_model::now());
        doc = s.objects.update::<K>(&doc).await?;
    }
    Ok(Deleted::Pending(Box::new(doc)))
}
