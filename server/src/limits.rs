//! Per-account limits on managed sessions: a monthly budget (the month's cost so far, active time
//! and storage, as the invoice computes it) and a cap on sessions running at once.

use axum::http::StatusCode;

use crate::billing::{self, Month};
use crate::clock::Now;
use crate::error::ApiError;
use crate::storage::{Store, StoreError};

/// The account's cost so far this calendar month (UTC), in micro-dollars.
pub async fn month_cost(store: &Store, account_id: &str, now: Now) -> Result<i64, StoreError> {
    let today = billing::date_of_s(now.s());
    let from = Month::of(today).first_day();
    let (from_s, to_s) = (
        billing::day_start_s(from),
        billing::day_start_s(today) + 86_400,
    );
    let intervals = store.intervals(account_id, from_s, to_s, now.s()).await?;
    let lifetimes = store
        .lifetimes(account_id, from_s * 1000, to_s * 1000)
        .await?;
    Ok(billing::usage(
        from,
        today,
        store.prices(),
        &intervals,
        &lifetimes,
        now.ms(),
    )
    .total_cost_micros)
}

/// Whether the account may start one more managed session now (create or resume): 402 once its
/// monthly budget is spent, 429 when as many sessions as it may run at once already run.
pub async fn admit(store: &Store, account_id: &str, now: Now) -> Result<(), ApiError> {
    let limits = store.limits(account_id).await?;
    if let Some(max) = limits.max_running {
        let running = store.running_managed_of(account_id).await?.len() as i64;
        if running >= max {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sessions",
                format!(
                    "{running} managed session(s) already run, the most this account may run at \
                     once; pause or delete one first"
                ),
            ));
        }
    }
    if let Some(max) = limits.max_month_micros {
        let spent = month_cost(store, account_id, now).await?;
        if spent >= max {
            return Err(ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "budget_exhausted",
                format!(
                    "this account has used its budget for the month ({} of {}); sessions can \
                     start again next month, or when an admin raises the budget",
                    billing::format_usd(spent),
                    billing::format_usd(max)
                ),
            ));
        }
    }
    Ok(())
}
