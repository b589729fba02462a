//! Finding objects: by id or name, always within what the caller may see
//! (objects of other projects do not exist for members), and refusing what
//! the caller may read but not change.

use yunhan_model::{ApiError, ErrorCode, Kind, Project, Scope};
use yunhan_store::objects::{Doc, GLOBAL_SCOPE};

use crate::auth::Principal;
use crate::error::{HttpError, Result};
use crate::resource::Hooks;
use crate::AppState;

/// 403 for an action only platform admins may take.
pub(crate) fn forbidden(what: &str) -> HttpError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!("{what} needs the platform-admin role"),
    )
    .into()
}

fn not_found<K: Kind>(what: &str) -> HttpError {
    ApiError::not_found(K::KIND, what).into()
}

/// Finds an object by id, or by name in `scope`.
pub(crate) async fn lookup<K: Kind>(
    s: &AppState,
    scope: &str,
    id_or_name: &str,
) -> Result<Option<Doc<K>>> {
    if looks_like_id::<K>(id_or_name) {
        return Ok(s.objects.get::<K>(id_or_name).await?);
    }
    Ok(s.objects.get_by_name::<K>(scope, id_or_name).await?)
}

fn looks_like_id<K: Kind>(s: &str) -> bool {
    s.strip_prefix(K::ID_PREFIX)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The object `what` (name or id) of kind `K` in `project`; anything else — absent, or
/// another project's — is `not_found`, naming the field that referred to it.
pub(crate) async fn resolve<K: Kind>(
    s: &AppState,
    project: &str,
    field: &str,
    what: &str,
) -> Result<Doc<K>> {
    match lookup::<K>(s, project, what).await? {
        Some(d) if d.metadata.project.as_deref() == Some(project) => Ok(d),
        _ => Err(ApiError::not_found(K::KIND, what)
            .with_detail("field", field)
            .into()),
    }
}

/// The ids of `names` (each a name or id, see [`resolve`]) of kind `K` in
/// `project`, each accepted by `fits`; the first that is not is refused on
/// `field` with `why(name)`.
pub(crate) async fn resolve_each<K: Kind>(
    s: &AppState,
    project: &str,
    field: &str,
    names: &[String],
    fits: impl Fn(&Doc<K>) -> bool,
    why: impl Fn(&str) -> String,
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for name in names {
        let d = resolve::<K>(s, project, field, name).await?;
        if !fits(&d) {
            return Err(ApiError::invalid_field(field, why(name)).into());
        }
        ids.push(d.metadata.id);
    }
    Ok(ids)
}

/// May `p` read `doc`? (Objects of other projects do not exist for members.)
pub(crate) fn visible<K: Hooks>(p: &Principal, doc: &Doc<K>) -> bool {
    p.is_admin()
        || (!K::ADMIN_READ && (K::owner(doc) == Some(p.project.as_str()) || K::public(doc)))
}

/// May `p` change `doc` (given it is visible)?
pub(crate) fn writable<K: Hooks>(p: &Principal, doc: &Doc<K>) -> bool {
    p.is_admin() || (!K::ADMIN_WRITE && K::owner(doc) == Some(p.project.as_str()))
}

/// The project an admin named (id or name), or the caller's own.
pub(crate) async fn resolve_project(
    s: &AppState,
    p: &Principal,
    named: Option<&str>,
) -> Result<String> {
    let Some(named) = named else {
        return Ok(p.project.clone());
    };
    let found = lookup::<Project>(s, GLOBAL_SCOPE, named).await?;
    match found {
        Some(proj) if p.is_admin() || proj.metadata.id == p.project => Ok(proj.metadata.id),
        _ => Err(not_found::<Project>(named)),
    }
}

/// The scope names are resolved in for kind `K`.
async fn name_scope<K: Kind>(s: &AppState, p: &Principal, project: Option<&str>) -> Result<String> {
    match K::SCOPE {
        Scope::Global => Ok(GLOBAL_SCOPE.to_string()),
        Scope::Project => resolve_project(s, p, project).await,
    }
}

/// Finds an object the caller may read (404 if invisible, 403 for admin-only kinds).
pub(crate) async fn find_visible<K: Hooks>(
    s: &AppState,
    p: &Principal,
    id: &str,
    project: Option<&str>,
) -> Result<Doc<K>> {
    if K::ADMIN_READ && !p.is_admin() {
        return Err(forbidden(&format!("reading {}", K::PLURAL)));
    }
    let scope = name_scope::<K>(s, p, project).await?;
    match lookup::<K>(s, &scope, id).await? {
        Some(doc) if visible::<K>(p, &doc) => Ok(doc),
        _ => Err(not_found::<K>(id)),
    }
}

/// Finds an object the caller may change (404 if invisible, 403 if read-only).
pub(crate) async fn find_writable<K: Hooks>(
    s: &AppState,
    p: &Principal,
    id: &str,
    project: Option<&str>,
) -> Result<Doc<K>> {
    if K::ADMIN_WRITE && !p.is_admin() {
        return Err(forbidden(&format!("changing {}", K::PLURAL)));
    }
    let doc = find_visible::<K>(s, p, id, project).await?;
    if !writable::<K>(p, &doc) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "this {} belongs to another project; it can be read but not changed",
                K::KIND
            ),
        )
        .into());
    }
    Ok(doc)
}
