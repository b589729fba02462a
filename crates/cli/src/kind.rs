//! How the client shows and addresses a kind of the model.

use reqwest::Method;
use serde::de::DeserializeOwned;
use yunhan_model::{CreateRequest, Doc, Kind, ObjectMeta};

use crate::client::{Answer, Client, ClientError};
use crate::output::Column;

/// An object of kind `K` as the API answered it.
pub(crate) type Obj<K> = Answer<Doc<K>>;

/// A kind the client prints: the noun its messages use and its table.
pub(crate) trait Shown: Kind {
    /// How messages name one, e.g. `VM`.
    const NOUN: &'static str;
    /// The table `list`, `show` and the changing commands print.
    const COLUMNS: &'static [Column<Doc<Self>>];

    /// What a wait shows of the object while it lasts: its cell in the
    /// table's `PHASE` (or `STATUS`) column, `-` when the kind has neither.
    fn phase(doc: &Doc<Self>) -> String {
        let column = Self::COLUMNS
            .iter()
            .find(|c| matches!(c.header, "PHASE" | "STATUS"));
        column.map_or_else(|| "-".into(), |c| (c.get)(doc))
    }
}

/// A name or id as one URL path segment.
pub(crate) fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `path` with the parameters that are set as its query, their values URL-encoded.
pub(crate) fn with_query(path: &str, params: &[(&str, &Option<String>)]) -> String {
    let query: Vec<String> = (params.iter())
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", path_segment(v))))
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// `/v1/<kind>/<name or id>`.
pub(crate) fn path_of<K: Kind>(name: &str) -> String {
    format!("/v1/{}/{}", K::PLURAL, path_segment(name))
}

/// `POST /v1/<kind>` of a new object `name`, the answer read as a `T`.
pub(crate) async fn create_in<K: Kind, T: DeserializeOwned>(
    client: &Client,
    name: &str,
    spec: K::Spec,
) -> Result<Answer<T>, ClientError> {
    let metadata = ObjectMeta {
        name: name.into(),
        ..ObjectMeta::default()
    };
    let body = CreateRequest { metadata, spec };
    let path = format!("/v1/{}", K::PLURAL);
    client.send(Method::POST, &path, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_path_segments() {
        assert_eq!(path_segment("vm-1.a_b"), "vm-1.a_b");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(
            path_of::<yunhan_model::Instance>("a b"),
            "/v1/instances/a%20b"
        );
    }

    #[test]
    fn a_wait_shows_the_phase_column() {
        let meta = serde_json::json!({"name": "n", "id": "x-1", "created": "2024-01-01T00:00:00Z"});
        let vpc: Doc<yunhan_model::network::Vpc> = serde_json::from_value(serde_json::json!({
            "metadata": meta, "spec": {"cidr": "10.0.0.0/16"}, "status": {"phase": "Failed"},
        }))
        .unwrap();
        assert_eq!(yunhan_model::network::Vpc::phase(&vpc), "Failed");
        let flavor: Doc<yunhan_model::Flavor> = serde_json::from_value(serde_json::json!({
            "metadata": meta, "spec": {"vcpus": 1, "memory_mib": 64, "disk_gib": 1}, "status": {},
        }))
        .unwrap();
        assert_eq!(yunhan_model::Flavor::phase(&flavor), "-");
    }
}
