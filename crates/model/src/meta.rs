use std::collections::BTreeMap;

use rand::Rng;
use schemars::gen::SchemaGenerator;
use schemars::schema::{InstanceType, Schema, SchemaObject, StringValidation};
use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{ApiError, Usage};

/// Whether a kind's objects belong to a project (tenant) or to the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Owned by one project; invisible (404) to every other project.
    Project,
    /// Platform-wide (hosts, flavors, projects themselves); readable by every member.
    Global,
}

/// A resource kind: ties the document types to their URL, key prefix and rules.
pub trait Kind: Send + Sync + 'static {
    /// Singular display name, e.g. `Instance`.
    const KIND: &'static str;
    /// URL and store segment, e.g. `instances`.
    const PLURAL: &'static str;
    /// Prefix of generated ids, e.g. `ins` (ids look like `ins-4f9c2a71b0d3e8a5`).
    const ID_PREFIX: &'static str;
    const SCOPE: Scope;
    /// Only platform admins may create, update or delete.
    const ADMIN_WRITE: bool;
    /// Only platform admins may read (e.g. users of other projects).
    const ADMIN_READ: bool = false;
    type Spec: Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static;
    type Status: Serialize + DeserializeOwned + JsonSchema + Clone + Default + Send + Sync + 'static;

    /// Checks a spec on create and update. Errors name the field (`spec.…`).
    fn validate(spec: &Self::Spec) -> Result<(), ApiError>;

    /// What this object holds of its project's quota. The status carries
    /// anything resolved at creation (e.g. the flavor's size), so charging and
    /// releasing always agree even if the flavor changes later.
    fn usage(_spec: &Self::Spec, _status: &Self::Status) -> Usage {
        Usage::default()
    }
}

/// The names and access rules of a kind, written first in its `impl Kind`:
/// `kind_consts!("Vpc", "vpcs", "vpc", Project, admin_write: false);` sets
/// `KIND`, `PLURAL`, `ID_PREFIX`, `SCOPE` (a [`Scope`] variant) and `ADMIN_WRITE`.
macro_rules! kind_consts {
    (
        $kind:literal, $plural:literal, $prefix:literal, $scope:ident, admin_write: $admin:literal
    ) => {
        const KIND: &'static str = $kind;
        const PLURAL: &'static str = $plural;
        const ID_PREFIX: &'static str = $prefix;
        const SCOPE: $crate::Scope = $crate::Scope::$scope;
        const ADMIN_WRITE: bool = $admin;
    };
}
pub(crate) use kind_consts;

/// Identity and bookkeeping of every object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Immutable id, unique across the platform.
    pub id: String,
    /// Unique per kind within the project (or platform, for global kinds).
    pub name: String,
    /// Owning project id; absent for platform-wide kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// The store revision of this version of the object; send it back as
    /// `If-Match` (or `metadata.revision` on update) for a compare-and-swap.
    #[serde(default)]
    pub revision: u64,
    /// Set when deletion was requested and cleanup is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleting: Option<String>,
}

impl Metadata {
    /// A new object's metadata: created now, without labels, not stored yet (revision 0).
    pub fn new(id: impl Into<String>, name: impl Into<String>, project: Option<String>) -> Self {
        Metadata {
            id: id.into(),
            name: name.into(),
            project,
            labels: BTreeMap::new(),
            created: now(),
            revision: 0,
            deleting: None,
        }
    }
}

/// A stored object: what the user asked for and what is true.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource<S, T> {
    pub metadata: Metadata,
    pub spec: S,
    pub status: T,
}

/// The stored document of kind `K`.
pub type Doc<K> = Resource<<K as Kind>::Spec, <K as Kind>::Status>;

/// The metadata a client may set when creating an object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectMeta {
    #[schemars(schema_with = "name_schema")]
    pub name: String,
    /// Target project (admins only; members always create in their own project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Body of `POST /v1/<kind>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest<S> {
    pub metadata: ObjectMeta,
    pub spec: S,
}

/// Body of `PUT /v1/<kind>/<id>`: replaces the spec (and labels), optionally
/// only if the object is still at `revision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest<S> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    pub spec: S,
}

/// `#[serde(default = "yes")]`: a flag that is on unless said otherwise.
pub(crate) fn yes() -> bool {
    true
}

/// The current time as stored in documents: RFC 3339 UTC, whole seconds.
pub fn now() -> String {
    let t = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// How long ago a time written by [`now`] was (None: unparsable, or in the future).
pub fn age_of(stamp: &str) -> Option<std::time::Duration> {
    let t =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    (time::OffsetDateTime::now_utc() - t).try_into().ok()
}

/// A new random id with the kind's prefix: `ins-` + 16 hex digits (64 bits).
pub fn new_id(prefix: &str) -> String {
    let n: u64 = rand::thread_rng().gen();
    format!("{prefix}-{n:016x}")
}

/// The JSON schema of a name: the rules of [`validate_name`].
pub(crate) fn name_schema(_: &mut SchemaGenerator) -> Schema {
    let string = StringValidation {
        max_length: Some(63),
        min_length: Some(1),
        pattern: Some(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$".into()),
    };
    let name = SchemaObject {
        instance_type: Some(InstanceType::String.into()),
        string: Some(Box::new(string)),
        ..Default::default()
    };
    name.into()
}

/// Names: 1–63 characters of `a-z A-Z 0-9 - _ .`, starting with a letter or digit.
/// Kept DNS-label-like so names can become hostnames and device names.
pub fn validate_name(field: &str, name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::invalid_field(
            field,
            format!("invalid name {name:?}: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("it must not be empty");
    }
    if name.chars().count() > 63 {
        return bad("it must be at most 63 characters");
    }
    if name.chars().any(|c| c.is_control()) {
        return bad("it must not contain control characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return bad("use only letters, digits, '-', '_' and '.'");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("it must start with a letter or digit");
    }
    Ok(())
}

/// [`validate_name`] of an optional reference; absent is fine.
pub(crate) fn validate_optional_name(field: &str, name: Option<&str>) -> Result<(), ApiError> {
    name.map_or(Ok(()), |n| validate_name(field, n))
}

/// Labels: at most 64, keys are names, values at most 255 printable characters.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if labels.len() > 64 {
        return Err(ApiError::invalid_field(
            "metadata.labels",
            "at most 64 labels are allowed",
        ));
    }
    for (k, v) in labels {
        validate_name("metadata.labels", k)?;
        if v.chars().count() > 255 || v.chars().any(|c| c.is_control()) {
            return Err(ApiError::invalid_field(
                "metadata.labels",
                format!(
                    "label {k:?}: values are at most 255 characters without control characters"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["vm1", "web-01", "a", "db_primary.eu", "9lives"] {
            validate_name("name", n).unwrap();
        }
    }

    #[test]
    fn rejects_bad_names_with_field() {
        for n in [
            "",
            "-x",
            "a b",
            "tab\tname",
            "nl\n",
            "ünïcode",
            &"x".repeat(64),
        ] {
            let err = validate_name("metadata.name", n).unwrap_err();
            assert_eq!(err.code, crate::ErrorCode::InvalidField);
            assert_eq!(err.details["field"], "metadata.name");
        }
    }

    #[test]
    fn ids_carry_prefix_and_are_unique() {
        let a = new_id("ins");
        let b = new_id("ins");
        assert!(a.starts_with("ins-") && a.len() == 20);
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn validation_never_panics(s in ".{0,80}") {
            let _ = validate_name("name", &s);
        }

        #[test]
        fn accepted_names_are_safe(s in "[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}") {
            prop_assert!(validate_name("name", &s).is_ok());
        }
    }
}
