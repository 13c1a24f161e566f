//! `GET /v1/usage` and `GET /v1/invoices/{YYYY-MM}`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Auth;
use crate::billing::{self, Invoice, Month, Usage};
use crate::clock::Now;
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::responses::UNAUTHORIZED;
use crate::state::AppState;
use crate::validate;

/// Query of `GET /v1/usage`: a range of UTC days, both inclusive.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// `YYYY-MM-DD` (default: the first day of this month).
    #[param(format = Date)]
    pub from: Option<String>,
    /// `YYYY-MM-DD` (default: today); at most 366 days after `from`.
    #[param(format = Date)]
    pub to: Option<String>,
}

/// Longest range `GET /v1/usage` accepts, in days.
const MAX_USAGE_DAYS: i64 = 366;

/// Usage per repository and per day
///
/// Days are UTC, both ends inclusive (default: this month up to today). Money is integer
/// micro-dollars.
#[utoipa::path(
    get,
    path = "/v1/usage",
    operation_id = "usage",
    tag = "billing",
    params(UsageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Usage over the range", body = Usage),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 422, description = "Not a date, `to` before `from`, or longer than 366 days", body = ErrorBody),
    )
)]
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

/// The invoice of a month
///
/// `open` until the month (plus the heartbeat grace) is over, then `final`.
#[utoipa::path(
    get,
    path = "/v1/invoices/{month}",
    operation_id = "invoice",
    tag = "billing",
    params((
        "month" = String,
        Path,
        description = "`YYYY-MM`, from 1970-01 to 9998-12",
        pattern = "^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-(0[1-9]|1[0-2])$"
    )),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The invoice", body = Invoice),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 422, description = "Not a month, or outside 1970-01 to 9998-12", body = ErrorBody),
    )
)]
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
