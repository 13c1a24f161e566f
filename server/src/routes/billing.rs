//! `GET /v1/usage` and `GET /v1/invoices/{YYYY-MM}`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::Auth;
use crate::billing::{self, Invoice, Month, Usage};
use crate::clock::Now;
use crate::error::{ApiError, ApiPath, ApiQuery};
use crate::validate;

/// Query of `GET /v1/usage`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Longest range `GET /v1/usage` accepts, in days.
const MAX_USAGE_DAYS: i64 = 366;

/// `GET /v1/usage?from=YYYY-MM-DD&to=YYYY-MM-DD` (both inclusive, UTC; default: this month up
/// to today).
pub async fn usage(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<Usage>, ApiError> {
    let today = billing::date_of_s(now.s());
    let from = match &q.from {
        Some(f) => validate::date("from", f)?,
        None => Month::of(today).first_day(),
    };
    let to = match &q.to {
        Some(t) => validate::date("to", t)?,
        None => today.max(from),
    };
    if to < from {
        return Err(ApiError::invalid(format!(
            "`to` ({to}) is before `from` ({from})"
        )));
    }
    if (to - from).whole_days() >= MAX_USAGE_DAYS {
        return Err(ApiError::invalid(format!(
            "the range is longer than {MAX_USAGE_DAYS} days; ask for less"
        )));
    }
    let (from_s, to_s) = (
        billing::day_start_s(from),
        billing::day_start_s(to) + 86_400,
    );
    let intervals = state
        .store
        .intervals(&p.account_id, from_s, to_s, now.s())
        .await?;
    let lifetimes = state
        .store
        .lifetimes(&p.account_id, from_s * 1000, to_s * 1000)
        .await?;
    Ok(Json(billing::usage(
        from,
        to,
        state.store.prices(),
        &intervals,
        &lifetimes,
        now.ms(),
    )))
}

/// `GET /v1/invoices/{YYYY-MM}` → `{"month", "status", "currency", "lines": [...], "total_micros"}`.
pub async fn invoice(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath(month): ApiPath<String>,
) -> Result<Json<Invoice>, ApiError> {
    let m = Month::parse(&month).map_err(|e| ApiError::invalid(format!("`{month}` {e}")))?;
    let (from_s, to_s) = (m.start_s(), m.end_s());
    let intervals = state
        .store
        .intervals(&p.account_id, from_s, to_s, now.s())
        .await?;
    let lifetimes = state
        .store
        .lifetimes(&p.account_id, from_s * 1000, to_s * 1000)
        .await?;
    Ok(Json(billing::invoice(
        m,
        state.store.prices(),
        &intervals,
        &lifetimes,
        now.ms(),
    )))
}
