//! A host's metrics endpoint: the agent serves its [`History`] and its latest samples
//! over HTTP to the control plane (the API server's metric queries and `/metrics`, the
//! alarm evaluator). Every request carries the host's bearer token, which the agent
//! publishes in the control-plane store for the servers to read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::wire::{LatestAnswer, LatestQuery, Sample, SeriesAnswer, SeriesPoints, SeriesQuery};
use crate::{History, TIERS};

/// The newest sample of each series the latest collection produced, replaced whole at
/// every collection (so a stopped VM's series drop out of it).
#[derive(Default)]
pub struct Latest(Mutex<BTreeMap<String, (u64, f64)>>);

impl Latest {
    /// Replaces every sample with `samples` (`(series, t, value)`).
    pub fn replace(&self, samples: &[(String, u64, f64)]) {
        let fresh = (samples.iter())
            .map(|(name, t, v)| (name.clone(), (*t, *v)))
            .collect();
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
    }

    /// The samples of the series under `prefix`, in name order.
    pub fn under(&self, prefix: &str) -> Vec<Sample> {
        let latest = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (latest.range(prefix.to_owned()..))
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, &(t, value))| Sample {
                name: name.clone(),
                t,
                value,
            })
            .collect()
    }
}

struct Served {
    history: Arc<History>,
    latest: Arc<Latest>,
    token: String,
}

/// The endpoint's routes: `GET /series` ([`SeriesQuery`] → [`SeriesAnswer`]) and
/// `GET /latest` ([`LatestQuery`] → [`LatestAnswer`]), each 401 without
/// `Authorization: Bearer <token>`.
pub fn router(history: Arc<History>, latest: Arc<Latest>, token: String) -> Router {
    let served = Arc::new(Served {
        history,
        latest,
        token,
    });
    Router::new()
        .route("/series", get(series))
        .route("/latest", get(latest_samples))
        .with_state(served)
}

fn authorised(served: &Served, headers: &HeaderMap) -> bool {
    let given = (headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    given.is_some_and(|t| constant_time_eq(t.as_bytes(), served.token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The slot width the points of a window starting at `from` come from, seen at `now`.
pub fn step_for(from: u64, now: u64) -> u64 {
    let age = now.saturating_sub(from);
    let [.., coarsest] = TIERS;
    (TIERS.iter().find(|t| age < t.span()))
        .unwrap_or(&coarsest)
        .step
}

async fn series(
    State(served): State<Arc<Served>>,
    headers: HeaderMap,
    Query(q): Query<SeriesQuery>,
) -> Response {
    if !authorised(&served, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let now = crate::unix_now();
    let mut answer = SeriesAnswer {
        step: step_for(q.from, now),
        series: Vec::new(),
    };
    for name in served.history.series_names(&q.prefix) {
        match served.history.query(&name, q.from, q.to) {
            Ok(points) => answer.series.push(SeriesPoints { name, points }),
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
    Json(answer).into_response()
}

async fn latest_samples(
    State(served): State<Arc<Served>>,
    headers: HeaderMap,
    Query(q): Query<LatestQuery>,
) -> Response {
    if !authorised(&served, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let samples = served.latest.under(&q.prefix);
    Json(LatestAnswer { samples }).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_is_the_finest_tier_that_still_holds_the_window() {
        assert_eq!(step_for(1_000_000 - 600, 1_000_000), 10);
        assert_eq!(step_for(1_000_000 - 3_600, 1_000_000), 60);
        assert_eq!(step_for(1_000_000 - 86_400, 1_000_000), 600);
        assert_eq!(step_for(0, 100_000_000), 600);
    }

    #[test]
    fn latest_lists_only_the_prefix_and_forgets_what_the_last_collection_left_out() {
        let latest = Latest::default();
        latest.replace(&[
            ("vm/a/cpu".into(), 10, 1.0),
            ("vm/ab/cpu".into(), 10, 2.0),
            ("vm/b/cpu".into(), 10, 3.0),
        ]);
        let names =
            |p: &str| -> Vec<String> { latest.under(p).into_iter().map(|s| s.name).collect() };
        assert_eq!(names("vm/a/"), ["vm/a/cpu"]);
        latest.replace(&[("vm/b/cpu".into(), 20, 4.0)]);
        assert!(names("vm/a/").is_empty());
        assert_eq!(latest.under("vm/").len(), 1);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
