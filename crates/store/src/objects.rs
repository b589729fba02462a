//! Resource documents in the store: one key per object plus a name index and
//! an id index, written together in one transaction; quota usage kept in the
//! owning project's status and changed in the same transaction (so 100
//! concurrent creates at the edge of a quota cannot overshoot it).
//!
//! Key layout (documented in docs/ARCHITECTURE.md):
//! - `/yunhan/objects/<plural>/<scope>/<id>` — the JSON document;
//!   `<scope>` is the project id, or `_` for platform-wide kinds;
//! - `/yunhan/names/<plural>/<scope>/<name>` — the id;
//! - `/yunhan/ids/<id>` — the object key.

use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};
pub use yunhan_model::Doc;
use yunhan_model::{Kind, Project, ProjectSpec, ProjectStatus, Resource, Scope, Usage};

use crate::{Compare, KeyValue, Op, Store, StoreError, StoreExt, Txn};

pub const GLOBAL_SCOPE: &str = "_";

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{kind} named {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("project {0:?} not found")]
    ProjectNotFound(String),
    #[error("quota exceeded for {resource}: {used} requested, limit {limit}")]
    QuotaExceeded {
        resource: &'static str,
        used: u64,
        limit: u64,
    },
    #[error("the object changed since it was read (revision {0})")]
    Conflict(u64),
    #[error("stored document {key} is unreadable: {why}")]
    Corrupt { key: String, why: String },
}

/// Where agents' liveness keys live (each attached to the agent's lease).
pub const ALIVE_PREFIX: &str = "/yunhan/alive/hosts/";

/// The liveness key of host `host_id`.
pub fn alive_key(host_id: &str) -> String {
    format!("{ALIVE_PREFIX}{host_id}")
}

/// Where API keys' secrets (their hashes) live.
pub const API_KEY_SECRET_PREFIX: &str = "/yunhan/secrets/api-keys/";

/// Where HTTPS listeners' private keys live (never in the load balancer's document).
pub const LB_KEY_SECRET_PREFIX: &str = "/yunhan/secrets/lb-keys/";

/// The private key of load balancer `lb`'s listener `listener` (PEM).
pub fn lb_key_secret_key(lb: &str, listener: &str) -> String {
    format!("{LB_KEY_SECRET_PREFIX}{lb}/{listener}")
}

/// Where alarm rules' webhook signing secrets live.
pub const ALARM_SECRET_PREFIX: &str = "/yunhan/secrets/alarm-webhooks/";

/// The signing secret of webhook `index` of alarm rule `rule` (`index` empty: the
/// prefix of all the rule's).
pub fn alarm_secret_key(rule: &str, index: &str) -> String {
    format!("{ALARM_SECRET_PREFIX}{rule}/{index}")
}

/// Where hosts' metrics-endpoint tokens live.
pub const METRICS_TOKEN_PREFIX: &str = "/yunhan/secrets/metrics-tokens/";

/// The bearer token of host `host_id`'s metrics endpoint (written by its agent).
pub fn metrics_token_key(host_id: &str) -> String {
    format!("{METRICS_TOKEN_PREFIX}{host_id}")
}

/// The secret key of API key `key_id`.
pub fn api_key_secret_key(key_id: &str) -> String {
    format!("{API_KEY_SECRET_PREFIX}{key_id}")
}

/// Where users' console passwords (argon2id PHC strings) live, by user id.
pub const PASSWORD_PREFIX: &str = "/yunhan/secrets/passwords/";

pub fn password_key(user_id: &str) -> String {
    format!("{PASSWORD_PREFIX}{user_id}")
}

/// Where console sessions live, by the SHA-256 (hex) of the session cookie: a
/// copy of the store never holds a usable cookie.
pub const SESSION_PREFIX: &str = "/yunhan/secrets/sessions/";

pub fn session_key(digest_hex: &str) -> String {
    format!("{SESSION_PREFIX}{digest_hex}")
}

/// Where one-time console login links live, by the SHA-256 (hex) of their code.
pub const LOGIN_LINK_PREFIX: &str = "/yunhan/secrets/login-links/";

pub fn login_link_key(digest_hex: &str) -> String {
    format!("{LOGIN_LINK_PREFIX}{digest_hex}")
}

/// The S3 gateway's endpoint (a URL the hosts can reach), written by `up`/`server` when
/// the cloud has object storage; each host's agent passes guests' connections to the
/// VPC address of object storage on to it.
pub const S3_ENDPOINT_KEY: &str = "/yunhan/object-storage/endpoint";

/// Each project's S3 traffic (`S3Traffic` JSON) under this prefix + the project id,
/// written by the object-storage controller when it moves, read by `/metrics`.
pub const S3_TRAFFIC_PREFIX: &str = "/yunhan/object-storage/traffic/";

/// Where S3 keys' secret keys live (never in the S3Key document): the API writes one
/// when it makes the key, the object-storage controller gives it to the gateway.
pub const S3_KEY_SECRET_PREFIX: &str = "/yunhan/secrets/s3-keys/";

pub fn s3_key_secret_key(key_id: &str) -> String {
    format!("{S3_KEY_SECRET_PREFIX}{key_id}")
}

pub fn object_prefix<K: Kind>(scope: Option<&str>) -> String {
    match scope {
        Some(s) => format!("/yunhan/objects/{}/{s}/", K::PLURAL),
        None => format!("/yunhan/objects/{}/", K::PLURAL),
    }
}

pub fn object_key<K: Kind>(scope: &str, id: &str) -> String {
    format!("/yunhan/objects/{}/{scope}/{id}", K::PLURAL)
}

fn name_key<K: Kind>(scope: &str, name: &str) -> String {
    format!("/yunhan/names/{}/{scope}/{name}", K::PLURAL)
}

fn id_key(id: &str) -> String {
    format!("/yunhan/ids/{id}")
}

/// The scope segment of an object: its project, or `_` for global kinds.
pub fn scope_of<K: Kind>(project: Option<&str>) -> &str {
    match K::SCOPE {
        Scope::Project => project.unwrap_or(GLOBAL_SCOPE),
        Scope::Global => GLOBAL_SCOPE,
    }
}

/// `decode`, with a warning instead of an error (see [`Objects::list_all`]).
fn decoded<T: DeserializeOwned + HasRevision>(kv: &KeyValue) -> Option<T> {
    decode(kv)
        .inspect_err(|e| tracing::warn!("left out of a listing: {e}"))
        .ok()
}

pub fn decode<T: DeserializeOwned + HasRevision>(kv: &KeyValue) -> Result<T, ObjectError> {
    let mut doc: T = serde_json::from_slice(&kv.value).map_err(|e| ObjectError::Corrupt {
        key: kv.key.clone(),
        why: e.to_string(),
    })?;
    doc.set_revision(kv.mod_revision);
    Ok(doc)
}

fn encode<T: Serialize>(doc: &T) -> Vec<u8> {
    serde_json::to_vec(doc).expect("resource documents always serialize")
}

/// Documents carry the revision they were read at (not stored: the key's
/// mod revision is the truth).
pub trait HasRevision {
    fn set_revision(&mut self, rev: u64);
}

impl<S, T> HasRevision for Resource<S, T> {
    fn set_revision(&mut self, rev: u64) {
        self.metadata.revision = rev;
    }
}

/// Typed access to resource documents.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn Store>,
}

impl Objects {
    /// Host `host`'s metrics endpoint and the token to read it with, once its agent has
    /// published both (docs/monitoring.md).
    pub async fn metrics_endpoint(
        &self,
        host: &Doc<yunhan_model::Host>,
    ) -> Result<Option<(String, String)>, ObjectError> {
        let Some(endpoint) = host.status.metrics.clone() else {
            return Ok(None);
        };
        let Some(token) = self
            .store
            .get(&metrics_token_key(&host.metadata.id))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((
            endpoint,
            String::from_utf8_lossy(&token.value).into_owned(),
        )))
    }

    pub fn new(store: Arc<dyn Store>) -> Objects {
        Objects { store }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn get<K: Kind>(&self, id: &str) -> Result<Option<Doc<K>>, ObjectError> {
        let Some(idx) = self.store.get(&id_key(id)).await? else {
            return Ok(None);
        };
        let key = String::from_utf8_lossy(&idx.value).into_owned();
        if !key.starts_with(&object_prefix::<K>(None)) {
            return Ok(None); // an id of another kind
        }
        match self.store.get(&key).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    pub async fn get_by_name<K: Kind>(
        &self,
        scope: &str,
        name: &str,
    ) -> Result<Option<Doc<K>>, ObjectError> {
        let Some(idx) = self.store.get(&name_key::<K>(scope, name)).await? else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&idx.value).into_owned();
        match self.store.get(&object_key::<K>(scope, &id)).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// A page of objects in `scope` (all scopes when None), after the object
    /// key `after`; returns the page and the key to continue from.
    pub async fn list<K: Kind>(
        &self,
        scope: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Doc<K>>, Option<String>), ObjectError> {
        let page = self
            .store
            .range(&object_prefix::<K>(scope), after, limit)
            .await?;
        let next = if page.more {
            page.kvs.last().map(|kv| kv.key.clone())
        } else {
            None
        };
        let docs = page.kvs.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        Ok((docs, next))
    }

    /// A document that does not decode (written by another version, damaged) is left
    /// out with a warning: one bad object never stops a listing, nor the controllers
    /// and agents that build their view of the cloud from it.
    pub async fn list_all<K: Kind>(&self, scope: Option<&str>) -> Result<Vec<Doc<K>>, ObjectError> {
        let kvs = self.store.range_all(&object_prefix::<K>(scope)).await?;
        Ok(kvs.iter().filter_map(decoded).collect())
    }

    /// Creates `doc`, charging `K::usage` to its project atomically.
    pub async fn create<K: Kind>(&self, mut doc: Doc<K>) -> Result<Doc<K>, ObjectError> {
        let scope = scope_of::<K>(doc.metadata.project.as_deref()).to_string();
        let key = object_key::<K>(&scope, &doc.metadata.id);
        let nkey = name_key::<K>(&scope, &doc.metadata.name);
        let usage = K::usage(&doc.spec, &doc.status);
        doc.metadata.revision = 0;
        let body = encode(&doc);
        loop {
            let mut txn = Txn::new()
                .when(Compare::ModRevision(nkey.clone(), 0))
                .when(Compare::ModRevision(key.clone(), 0))
                .then(Op::put(&key, body.clone()))
                .then(Op::put(&nkey, doc.metadata.id.clone()))
                .then(Op::put(id_key(&doc.metadata.id), key.clone()));
            if let Some(project) = doc.metadata.project.as_deref().filter(|_| !usage.is_zero()) {
                let (cmp, op) = self.charge(project, usage, Usage::default()).await?;
                txn = txn.when(cmp).then(op);
            }
            let r = self.store.txn(txn).await?;
            if r.succeeded {
                doc.metadata.revision = r.revision;
                return Ok(doc);
            }
            if self.store.get(&nkey).await?.is_some() {
                return Err(ObjectError::AlreadyExists {
                    kind: K::KIND,
                    name: doc.metadata.name,
                });
            }
            // The project's usage moved under us: re-read and try again.
        }
    }

    /// The compare + put that moves `project`'s usage by `add - remove`,
    /// refusing when the result exceeds its quota (only when growing).
    async fn charge(
        &self,
        project: &str,
        add: Usage,
        remove: Usage,
    ) -> Result<(Compare, Op), ObjectError> {
        let pkey = object_key::<Project>(GLOBAL_SCOPE, project);
        let kv = self
            .store
            .get(&pkey)
            .await?
            .ok_or_else(|| ObjectError::ProjectNotFound(project.to_string()))?;
        let mut p: Resource<ProjectSpec, ProjectStatus> = decode(&kv)?;
        let after = p.status.usage.plus(add).minus(remove);
        if !add.is_zero() {
            if let Some((resource, used, limit)) = after.exceeds(&p.spec.quota) {
                return Err(ObjectError::QuotaExceeded {
                    resource,
                    used,
                    limit,
                });
            }
        }
        p.status.usage = after;
        Ok((
            Compare::ModRevision(pkey.clone(), kv.mod_revision),
            Op::put(pkey, encode(&p)),
        ))
    }

    /// Writes `doc` if it is still at `doc.metadata.revision`; adjusts the
    /// project's usage if the object's usage changed.
    pub async fn update<K: Kind>(&self, doc: &Doc<K>) -> Result<Doc<K>, ObjectError> {
        let scope = scope_of::<K>(doc.metadata.project.as_deref()).to_string();
        let key = object_key::<K>(&scope, &doc.metadata.id);
        let expected = doc.metadata.revision;
        let current = self
            .store
            .get(&key)
            .await?
            .ok_or(ObjectError::Conflict(expected))?;
        if current.mod_revision != expected {
            return Err(ObjectError::Conflict(expected));
        }
        let old: Doc<K> = decode(&current)?;
        let (old_usage, new_usage) = (
            K::usage(&old.spec, &old.status),
            K::usage(&doc.spec, &doc.status),
        );
        let mut out = doc.clone();
        out.metadata.revision = 0;
        loop {
            let mut txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), expected))
                .then(Op::put(&key, encode(&out)));
            if old_usage != new_usage {
                if let Some(project) = doc.metadata.project.as_deref() {
                    let add = new_usage.minus(old_usage);
                    let remove = old_usage.minus(new_usage);
                    let (cmp, op) = self.charge(project, add, remove).await?;
                    txn = txn.when(cmp).then(op);
                }
            }
            let r = self.store.txn(txn).await?;
            if r.succeeded {
                out.metadata.revision = r.revision;
                return Ok(out);
            }
            if self.store.get(&key).await?.map(|kv| kv.mod_revision) != Some(expected) {
                return Err(ObjectError::Conflict(expected));
            }
        }
    }

    /// Read-modify-write with retries: `change` returns false to leave the
    /// object alone. Returns the object as written (or found), None if absent.
    pub async fn modify<K: Kind>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut Doc<K>) -> bool + Send,
    ) -> Result<Option<Doc<K>>, ObjectError> {
        loop {
            let Some(mut doc) = self.get::<K>(id).await? else {
                return Ok(None);
            };
            if !change(&mut doc) {
                return Ok(Some(doc));
            }
            match self.update::<K>(&doc).await {
                Ok(d) => return Ok(Some(d)),
                Err(ObjectError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes the current version of object `id`, whatever status writes moved it on
    /// meanwhile; gone already counts as deleted.
    pub async fn delete_latest<K: Kind>(&self, id: &str) -> Result<(), ObjectError> {
        loop {
            let Some(cur) = self.get::<K>(id).await? else {
                return Ok(());
            };
            match self.delete::<K>(&cur).await {
                Err(ObjectError::Conflict(_)) => continue,
                done => return done,
            }
        }
    }

    /// Deletes `doc` if it is still at its revision, releasing its usage.
    pub async fn delete<K: Kind>(&self, doc: &Doc<K>) -> Result<(), ObjectError> {
        let scope = scope_of::<K>(doc.metadata.project.as_deref()).to_string();
        let key = object_key::<K>(&scope, &doc.metadata.id);
        let usage = K::usage(&doc.spec, &doc.status);
        loop {
            let mut txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), doc.metadata.revision))
                .then(Op::delete(&key))
                .then(Op::delete(name_key::<K>(&scope, &doc.metadata.name)))
                .then(Op::delete(id_key(&doc.metadata.id)));
            if let Some(project) = doc.metadata.project.as_deref().filter(|_| !usage.is_zero()) {
                match self.charge(project, Usage::default(), usage).await {
                    Ok((cmp, op)) => txn = txn.when(cmp).then(op),
                    Err(ObjectError::ProjectNotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let r = self.store.txn(txn).await?;
            if r.succeeded {
                return Ok(());
            }
            if self.store.get(&key).await?.map(|kv| kv.mod_revision) != Some(doc.metadata.revision)
            {
                return Err(ObjectError::Conflict(doc.metadata.revision));
            }
        }
    }
}
