//! Per-kind rules layered on the generic CRUD handlers: reference checks on
//! create, what may change on update, visibility and how deletion proceeds.

use async_trait::async_trait;
use yunhan_model::{
    ApiError, ApiKey, ErrorCode, Flavor, Host, Image, Instance, InstancePhase, Kind,
    PlacementGroup, Project, Scope, User,
};
use yunhan_store::objects::{Doc, GLOBAL_SCOPE};
use yunhan_store::StoreExt;

use crate::auth::Principal;
use crate::error::Result;
use crate::AppState;

pub enum Deleted<K: Kind> {
    /// Gone now (204).
    Now,
    /// Marked for deletion; a controller or agent finishes it (202).
    Pending(Box<Doc<K>>),
}

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

    /// Resolves references of an update (names → ids) and checks them against the store.
    async fn prepare_update(
        _s: &AppState,
        _p: &Principal,
        _old: &Doc<Self>,
        _new: &mut Doc<Self>,
    ) -> Result<()> {
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
        s.objects.delete::<Self>(&doc).await?;
        Ok(Deleted::Now)
    }
}

fn conflict(msg: String) -> crate::HttpError {
    ApiError::new(ErrorCode::Conflict, msg).into()
}

#[async_trait]
impl Hooks for Project {
    fn owner(doc: &Doc<Self>) -> Option<&str> {
        Some(&doc.metadata.id)
    }
    fn public(_doc: &Doc<Self>) -> bool {
        false
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        if !doc.status.usage.is_zero() {
            return Err(conflict(format!(
                "project {:?} still holds resources ({:?}); delete them first",
                doc.metadata.name, doc.status.usage
            )));
        }
        let users = s.objects.list_all::<User>(Some(GLOBAL_SCOPE)).await?;
        if let Some(u) = users.iter().find(|u| u.spec.project == doc.metadata.id) {
            return Err(conflict(format!(
                "project {:?} still has users (e.g. {:?}); delete them first",
                doc.metadata.name, u.metadata.name
            )));
        }
        s.objects.delete::<Self>(&doc).await?;
        Ok(Deleted::Now)
    }
}

#[async_trait]
impl Hooks for User {
    async fn prepare_create(s: &AppState, _p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        if s.objects.get::<Project>(&doc.spec.project).await?.is_none() {
            return Err(ApiError::invalid_field(
                "spec.project",
                format!("project {:?} does not exist", doc.spec.project),
            )
            .into());
        }
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec.project != new.spec.project {
            return Err(
                ApiError::invalid_field("spec.project", "a user's project cannot change").into(),
            );
        }
        Ok(())
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        // The user's keys go with the user.
        for key in s
            .objects
            .list_all::<ApiKey>(Some(&doc.spec.project))
            .await?
        {
            if key.status.user == doc.metadata.id {
                <ApiKey as Hooks>::delete(s, key).await?;
            }
        }
        s.objects.delete::<Self>(&doc).await?;
        Ok(Deleted::Now)
    }
}

#[async_trait]
impl Hooks for ApiKey {
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        s.objects.delete::<Self>(&doc).await?;
        s.objects
            .store()
            .delete(&yunhan_store::objects::api_key_secret_key(&doc.metadata.id))
            .await?;
        s.auth.forget_key(&doc.metadata.id);
        Ok(Deleted::Now)
    }
}

#[async_trait]
impl Hooks for Host {}

#[async_trait]
impl Hooks for Flavor {}

#[async_trait]
impl Hooks for PlacementGroup {
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        let members = s
            .objects
            .list_all::<Instance>(doc.metadata.project.as_deref())
            .await?;
        if let Some(m) = members
            .iter()
            .find(|i| i.spec.placement_group.as_deref() == Some(doc.metadata.id.as_str()))
        {
            return Err(conflict(format!(
                "placement group {:?} still has instance {:?}; delete it first",
                doc.metadata.name, m.metadata.name
            )));
        }
        s.objects.delete::<Self>(&doc).await?;
        Ok(Deleted::Now)
    }
}

#[async_trait]
impl Hooks for Image {
    const HAS_PUBLIC: bool = true;
    async fn prepare_create(_s: &AppState, p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        if doc.spec.public && !p.is_admin() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only platform admins may publish public images",
            )
            .into());
        }
        doc.status.phase = "Pending".into();
        doc.status.message = format!(
            "waiting for its data: upload it with PUT /v1/images/{}/data \
             ('yunhan image create NAME --file DISK' does both steps)",
            doc.metadata.id
        );
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec.kernel_cmdline != new.spec.kernel_cmdline {
            return Err(conflict(format!(
                "image {:?}: the kernel command line is part of what boots and cannot change; create a new image",
                old.metadata.name
            )));
        }
        Ok(())
    }
    async fn prepare_update(
        _s: &AppState,
        p: &Principal,
        old: &Doc<Self>,
        new: &mut Doc<Self>,
    ) -> Result<()> {
        if old.spec.public != new.spec.public && !p.is_admin() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only platform admins may publish images or withdraw them (spec.public)",
            )
            .into());
        }
        Ok(())
    }
    fn public(doc: &Doc<Self>) -> bool {
        doc.spec.public
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        s.objects.delete::<Self>(&doc).await?;
        crate::images::remove_files(&s.image_dir, &doc.metadata.id).await;
        Ok(Deleted::Now)
    }
}

/// Finds an object by id, or by name in `scope`.
pub async fn lookup<K: Kind>(
    s: &AppState,
    scope: &str,
    id_or_name: &str,
) -> Result<Option<Doc<K>>> {
    if looks_like_id::<K>(id_or_name) {
        return Ok(s.objects.get::<K>(id_or_name).await?);
    }
    Ok(s.objects.get_by_name::<K>(scope, id_or_name).await?)
}

pub fn looks_like_id<K: Kind>(s: &str) -> bool {
    s.strip_prefix(K::ID_PREFIX)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[async_trait]
impl Hooks for Instance {
    async fn prepare_create(s: &AppState, p: &Principal, doc: &mut Doc<Self>) -> Result<()> {
        let flavor = lookup::<Flavor>(s, GLOBAL_SCOPE, &doc.spec.flavor)
            .await?
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "spec.flavor",
                    format!(
                        "flavor {:?} does not exist; 'yunhan flavor list' shows the flavors",
                        doc.spec.flavor
                    ),
                )
            })?;
        let project = doc
            .metadata
            .project
            .clone()
            .unwrap_or_else(|| p.project.clone());
        if let Some(g) = doc.spec.placement_group.clone() {
            doc.spec.placement_group = Some(placement_group(s, &project, &g).await?);
        }
        let Some(image) = resolve_image(s, &project, &doc.spec.image).await? else {
            return Err(ApiError::invalid_field(
                "spec.image",
                format!(
                    "image {:?} does not exist; 'yunhan image list' shows the images",
                    doc.spec.image
                ),
            )
            .into());
        };
        if image.status.phase != "Active" {
            return Err(conflict(format!(
                "image {:?} is {}, not Active: {}",
                image.metadata.name,
                image.status.phase,
                if image.status.message.is_empty() {
                    "wait for it or pick another ('yunhan image list')"
                } else {
                    &image.status.message
                }
            )));
        }
        doc.status.vcpus = flavor.spec.vcpus;
        doc.status.memory_mib = flavor.spec.memory_mib;
        doc.status.disk_gib = flavor.spec.disk_gib;
        if doc.spec.reboot_generation != 0 {
            let msg = "a new VM has had no reboots: leave reboot_generation out (or 0)";
            return Err(ApiError::invalid_field("spec.reboot_generation", msg).into());
        }
        doc.status.phase = InstancePhase::Pending;
        if let Some(v) = doc.spec.boot_volume.clone() {
            doc.spec.boot_volume = Some(crate::storage::boot_volume(s, &project, &v).await?);
        }
        if let Some(nic) = doc.spec.nic.clone() {
            crate::network::create_primary_nic(s, doc, &nic).await?;
        }
        Ok(())
    }
    fn check_update(old: &Doc<Self>, new: &Doc<Self>) -> Result<()> {
        if old.spec.flavor != new.spec.flavor
            || old.spec.image != new.spec.image
            || new.spec.boot_volume.is_some() && new.spec.boot_volume != old.spec.boot_volume
        {
            return Err(conflict(
                "an instance's flavor, image and boot volume cannot change".into(),
            ));
        }
        if old.spec.nic != new.spec.nic {
            return Err(conflict(
                "an instance's primary NIC request cannot change; attach NICs with 'yunhan nic attach'".into(),
            ));
        }
        // One reboot per request: +1 only, and below 2^53 so JSON clients read it exactly.
        let (was, wants) = (old.spec.reboot_generation, new.spec.reboot_generation);
        let next = was.checked_add(1).filter(|n| *n < 1 << 53);
        if wants != was && Some(wants) != next {
            let why = match next {
                Some(n) => format!("send {n} to request a reboot"),
                None => "it is at its limit; no more reboots can be requested".into(),
            };
            let msg =
                format!("reboot_generation is {was} and only grows by one, not to {wants}: {why}");
            return Err(ApiError::invalid_field("spec.reboot_generation", msg).into());
        }
        if old.spec.placement_group != new.spec.placement_group {
            return Err(conflict(
                "an instance's placement group cannot change".into(),
            ));
        }
        Ok(())
    }
    async fn prepare_update(
        s: &AppState,
        p: &Principal,
        old: &Doc<Self>,
        new: &mut Doc<Self>,
    ) -> Result<()> {
        if old.spec.migration == new.spec.migration {
            return Ok(());
        }
        if !p.is_admin() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "live migration is an admin operation",
            )
            .into());
        }
        let Some(m) = new.spec.migration.as_mut() else {
            return Ok(());
        };
        let before = old.spec.migration.as_ref().map_or(0, |m| m.request);
        if m.request < before {
            return Err(ApiError::invalid_field(
                "spec.migration.request",
                format!("request numbers only grow (the last one was {before})"),
            )
            .into());
        }
        if m.request == before {
            return Ok(()); // a cancel (or a no-op) of the current request
        }
        if old
            .status
            .migration
            .as_ref()
            .is_some_and(|s| s.phase.active())
        {
            return Err(conflict(format!(
                "{:?} is already migrating; wait for it or cancel it with 'yunhan vm migrate {} --cancel'",
                old.metadata.name, old.metadata.name
            )));
        }
        if old.status.phase != InstancePhase::Running {
            return Err(conflict(format!(
                "{:?} is {:?}: only running VMs migrate live",
                old.metadata.name, old.status.phase
            )));
        }
        if let Some(to) = m.to.clone() {
            let host = lookup::<Host>(s, GLOBAL_SCOPE, &to).await?.ok_or_else(|| {
                ApiError::invalid_field(
                    "spec.migration.to",
                    format!("host {to:?} does not exist; 'yunhan host list' shows the hosts"),
                )
            })?;
            if old.status.host.as_deref() == Some(host.metadata.id.as_str()) {
                return Err(ApiError::invalid_field(
                    "spec.migration.to",
                    format!("{:?} already runs on host {to:?}", old.metadata.name),
                )
                .into());
            }
            m.to = Some(host.metadata.id);
        }
        Ok(())
    }
    async fn delete(s: &AppState, doc: Doc<Self>) -> Result<Deleted<Self>> {
        crate::storage::detach_all(s, &doc).await?;
        let id = doc.metadata.id.clone();
        let mut doc = doc;
        // Controllers and agents write the instance's status meanwhile: a lost
        // compare-and-swap is retried on the current version, never the user's problem.
        loop {
            if doc.status.host.is_none() {
                match s.objects.delete::<Self>(&doc).await {
                    Ok(()) => {
                        crate::network::release_instance_nics(s, &doc).await?;
                        return Ok(Deleted::Now);
                    }
                    Err(yunhan_store::objects::ObjectError::Conflict(_)) => {
                        match s.objects.get::<Self>(&id).await? {
                            Some(d) => doc = d,
                            None => return Ok(Deleted::Now),
                        }
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // Bound to a host: its agent tears the VM down and removes the object.
            let now = crate::handlers::now();
            let marked = s
                .objects
                .modify::<Self>(&id, |d| {
                    if d.metadata.deleting.is_some() || d.status.host.is_none() {
                        return false;
                    }
                    d.metadata.deleting = Some(now.clone());
                    true
                })
                .await?;
            match marked {
                None => return Ok(Deleted::Now),
                // Unbound meanwhile: no agent will finish it, delete it directly.
                Some(d) if d.status.host.is_none() => doc = d,
                Some(d) => return Ok(Deleted::Pending(Box::new(d))),
            }
        }
    }
}

/// The id of placement group `id_or_name` of `project`. Another project's group
/// is refused exactly like one that does not exist (nothing tells it is there).
async fn placement_group(s: &AppState, project: &str, id_or_name: &str) -> Result<String> {
    lookup::<PlacementGroup>(s, project, id_or_name)
        .await?
        .filter(|g| g.metadata.project.as_deref() == Some(project))
        .map(|g| g.metadata.id)
        .ok_or_else(|| {
            ApiError::invalid_field(
                "spec.placement_group",
                format!(
                    "placement group {id_or_name:?} does not exist; \
                     'yunhan placement-group list' shows the placement groups"
                ),
            )
            .into()
        })
}

/// The image `id_or_name` means to `project`: by id, its own or a public
/// one; by name, its own first, else the public image of that name. Only
/// platform admins publish images, so another tenant cannot plant a name.
pub(crate) async fn resolve_image(
    s: &AppState,
    project: &str,
    id_or_name: &str,
) -> Result<Option<Doc<Image>>> {
    let image = match lookup::<Image>(s, project, id_or_name).await? {
        Some(i) => Some(i),
        None => find_public_image(s, id_or_name).await?,
    };
    Ok(image.filter(|i| i.spec.public || i.metadata.project.as_deref() == Some(project)))
}

/// The public image called `name`; two public images of one name (in
/// different projects) are ambiguous and refused with their ids.
pub(crate) async fn find_public_image(s: &AppState, name: &str) -> Result<Option<Doc<Image>>> {
    let mut found: Vec<Doc<Image>> = s
        .objects
        .list_all::<Image>(None)
        .await?
        .into_iter()
        .filter(|i| i.spec.public && i.metadata.name == name)
        .collect();
    if found.len() > 1 {
        let ids: Vec<&str> = found.iter().map(|i| i.metadata.id.as_str()).collect();
        return Err(conflict(format!(
            "{} public images are called {name:?} ({}); name one by its id",
            found.len(),
            ids.join(", ")
        )));
    }
    Ok(found.pop())
}
