//! Metering (docs/metering.md; model: `model/src/metering.rs`): `GET /v1/usage` prices a
//! project's hourly usage records and its open hour under the price list — a member their
//! own project's (another project answers 404 as everywhere), an admin any project's — and
//! `GET`/`PUT /v1/price-list` read (anyone) and set (admins) the prices.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use yunhan_model::{
    hour_of, month_start, report, when_of, ApiError, ErrorCode, PriceList, UsageRecord, UsageReport,
};
use yunhan_store::metering::{Metering, MeteringError};

use crate::auth::Principal;
use crate::error::{HttpError, Result};
use crate::extract::{JsonBody, QueryParams};
use crate::lookup::{forbidden, resolve_project};
use crate::Shared;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageQuery {
    project: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn stored(e: MeteringError) -> HttpError {
    match e {
        MeteringError::Store(e) => e.into(),
        MeteringError::Corrupt { key, why } => {
            tracing::error!(%key, %why, "corrupt metering document");
            ApiError::new(ErrorCode::Internal, "a stored usage document is unreadable").into()
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `from` or `to`: RFC 3339 or a time ago (`1h`, `30d`); absent: `default`.
fn bound(field: &str, v: Option<&str>, now: i64, default: i64) -> Result<i64> {
    let Some(v) = v else {
        return Ok(default);
    };
    when_of(v, now).ok_or_else(|| {
        let why = format!("{v:?} is not an RFC 3339 time or a time ago like 90s, 10m, 1h, 30d");
        ApiError::invalid_field(field, why).into()
    })
}

/// `GET /v1/usage`: the project's usage from `from` (default: the start of this month) to
/// `to` (default: now), per resource, priced; the period is read in whole hours.
pub(crate) async fn usage(
    State(s): State<Shared>,
    p: Principal,
    QueryParams(q): QueryParams<UsageQuery>,
) -> Result<Json<UsageReport>> {
    let now = unix_now();
    let from = bound("from", q.from.as_deref(), now, month_start(now))?;
    let to = bound("to", q.to.as_deref(), now, now)?;
    if from >= to {
        let why = "from must be before to";
        return Err(ApiError::invalid_field("from", why).into());
    }
    let project = resolve_project(&s, &p, q.project.as_deref()).await?;
    let m = Metering::new(s.objects.store().clone());
    let records = hours_of(&m, &project, hour_of(from), to).await?;
    let prices = m.price_list().await.map_err(stored)?;
    Ok(Json(report(
        &project,
        (hour_of(from), to),
        &records,
        &prices,
    )))
}

/// The project's hours starting in `[from, to)`: the closed ones and the ledger's open
/// one. The ledger is read first and closed hours from its open hour on are left out, so
/// a pass in between cannot count an hour twice.
async fn hours_of(m: &Metering, project: &str, from: i64, to: i64) -> Result<Vec<UsageRecord>> {
    let ledger = m.ledger(project).await.map_err(stored)?;
    let open_hour = ledger.as_ref().map_or(i64::MAX, |l| l.hour);
    let mut records = m
        .records(project, from, to.min(open_hour))
        .await
        .map_err(stored)?;
    if let Some(l) = ledger.filter(|l| (from..to).contains(&l.hour) && !l.open.is_empty()) {
        records.push(UsageRecord {
            project: l.project,
            hour: l.hour,
            lines: l.open.into_values().collect(),
        });
    }
    Ok(records)
}

/// `GET /v1/price-list`.
pub(crate) async fn price_list(State(s): State<Shared>, _p: Principal) -> Result<Json<PriceList>> {
    let m = Metering::new(s.objects.store().clone());
    Ok(Json(m.price_list().await.map_err(stored)?))
}

/// `PUT /v1/price-list` (admins): replaces the prices; checked first.
pub(crate) async fn set_price_list(
    State(s): State<Shared>,
    p: Principal,
    JsonBody(prices): JsonBody<PriceList>,
) -> Result<Json<PriceList>> {
    if !p.is_admin() {
        return Err(forbidden("setting the price list"));
    }
    prices.validate()?;
    let m = Metering::new(s.objects.store().clone());
    m.set_price_list(&prices).await.map_err(stored)?;
    Ok(Json(prices))
}
