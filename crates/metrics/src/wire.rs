//! What a host's metrics endpoint answers (`serve.rs`) and its clients read
//! (`client.rs`): the API server and the alarm evaluator ask a host's agent for the
//! history or the latest samples of the series under a prefix (`vm/<instance id>/`,
//! `host/`, `pool/<pool>/`).

use serde::{Deserialize, Serialize};

/// `GET /series?prefix=P&from=T&to=T` (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesQuery {
    pub prefix: String,
    pub from: u64,
    pub to: u64,
}

/// One series' points in a window, `(slot start, value)` oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPoints {
    pub name: String,
    pub points: Vec<(u64, f64)>,
}

/// The answer to a [`SeriesQuery`]: every series under the prefix, in name order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesAnswer {
    /// The width in seconds of the slots the points come from (10, 60 or 600).
    pub step: u64,
    pub series: Vec<SeriesPoints>,
}

/// `GET /latest?prefix=P`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestQuery {
    pub prefix: String,
}

/// The newest sample of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub name: String,
    /// When it was taken, seconds since the epoch.
    pub t: u64,
    pub value: f64,
}

/// The answer to a [`LatestQuery`]: the newest sample of every series under the prefix
/// that the latest collection produced (a VM that stopped has none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatestAnswer {
    pub samples: Vec<Sample>,
}
