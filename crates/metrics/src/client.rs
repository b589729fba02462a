//! The control plane's side of a host's metrics endpoint (`serve.rs`).

use std::time::Duration;

use crate::wire::{LatestAnswer, LatestQuery, SeriesAnswer, SeriesQuery};

/// Why a host's metrics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the metrics endpoint {endpoint} did not answer: {source}")]
    Unreachable {
        endpoint: String,
        source: reqwest::Error,
    },
    #[error("the metrics endpoint {endpoint} answered {status}")]
    Status { endpoint: String, status: u16 },
}

/// A client of one host's metrics endpoint (`http://ADDR:PORT`), with its token.
#[derive(Clone)]
pub struct HostMetrics {
    http: reqwest::Client,
    endpoint: String,
    token: String,
}

/// How long a host may take to answer before it counts as unreachable.
pub const TIMEOUT: Duration = Duration::from_secs(3);

impl HostMetrics {
    pub fn new(http: reqwest::Client, endpoint: &str, token: &str) -> HostMetrics {
        HostMetrics {
            http,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// The history of the series under `query.prefix`.
    pub async fn series(&self, query: &SeriesQuery) -> Result<SeriesAnswer, ClientError> {
        self.get("series", query).await
    }

    /// The newest sample of each series under `prefix`.
    pub async fn latest(&self, prefix: &str) -> Result<LatestAnswer, ClientError> {
        let query = LatestQuery {
            prefix: prefix.to_owned(),
        };
        self.get("latest", &query).await
    }

    async fn get<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<A, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            endpoint: self.endpoint.clone(),
            source,
        };
        let answer = (self.http.get(format!("{}/{path}", self.endpoint)))
            .bearer_auth(&self.token)
            .query(query)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(unreachable)?;
        if !answer.status().is_success() {
            return Err(ClientError::Status {
                endpoint: self.endpoint.clone(),
                status: answer.status().as_u16(),
            });
        }
        answer.json().await.map_err(unreachable)
    }
}
