//! The background job that turns closed active intervals into Stripe meter events.
//!
//! Each round: (1) *enqueue*: every closed active interval of an account with a Stripe customer,
//! not yet in the outbox and inside Stripe's 35-day window, becomes one outbox row per UTC month
//! it touches (value = its active seconds in that month, timestamp = its last second there), with
//! a fresh UUID as our event id; (2) *send*: due pending rows are claimed one by one (a lease, so
//! several replicas never send the same row at once), sent, and marked `sent`, `failed`, or
//! pending again with exponential backoff. The identifier and the Idempotency-Key are the row's
//! id, fixed at enqueue, so neither our retries nor Stripe's own dedupe can bill twice.

use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use super::client::{Outcome, StripeClient};
use crate::billing::{Month, date_of_s};
use crate::clock::Now;
use crate::config::StripeConfig;
use crate::storage::{MeterEventRow, Store, StoreError};

/// Stripe accepts meter event timestamps up to 35 days old; we stop an hour short of that.
pub const EXPORT_WINDOW_S: i64 = 35 * 86_400 - 3600;
/// How long a claimed row stays hidden from other workers (longer than a request can take).
const LEASE_MS: i64 = 5 * 60 * 1000;
/// Rows handled per query.
const BATCH: i64 = 200;

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundStats {
    pub enqueued: usize,
    pub sent: usize,
    pub duplicates: usize,
    pub retried: usize,
    pub failed: usize,
    /// The round stopped early because Stripe refused the key.
    pub unauthorized: bool,
}

/// `[start_s, end_s)` split at UTC month boundaries: `(month, start, end)` parts, never empty.
pub fn split_by_month(start_s: i64, end_s: i64) -> Vec<(Month, i64, i64)> {
    let mut out = Vec::new();
    let mut t = start_s;
    while t < end_s {
        let m = Month::of(date_of_s(t));
        let next = m.end_s().min(end_s);
        out.push((m, t, next));
        t = next;
    }
    out
}

/// Delay before attempt `attempts + 1`: `base × 2^(attempts-1)`, at most `max`, with jitter
/// (uniform in its upper half) so replicas and rows spread out.
pub fn backoff(attempts: i64, base: Duration, max: Duration) -> Duration {
    let exp = attempts.clamp(1, 30) as u32 - 1;
    let d = base.saturating_mul(2u32.saturating_pow(exp)).min(max);
    let ms = d.as_millis() as u64;
    let jittered = if ms < 2 {
        ms
    } else {
        rand::rng().random_range(ms / 2..=ms)
    };
    Duration::from_millis(jittered)
}

/// Adds new usage to the outbox; returns how many rows were added.
pub async fn enqueue(store: &Store, cfg: &StripeConfig, now_ms: i64) -> Result<usize, StoreError> {
    let since = now_ms.div_euclid(1000) - EXPORT_WINDOW_S;
    let mut added = 0;
    loop {
        let candidates = store.stripe_export_candidates(since, BATCH).await?;
        let n = candidates.len();
        for c in candidates {
            for (month, start, end) in split_by_month(c.start_s, c.end_s) {
                let row = MeterEventRow {
                    id: uuid::Uuid::new_v4().to_string(),
                    source: format!("{}/{month}", c.interval_id),
                    interval_id: c.interval_id.clone(),
                    account_id: c.account_id.clone(),
                    customer_id: c.customer_id.clone(),
                    event_name: cfg.meter_event_name.clone(),
                    value: end - start,
                    timestamp_s: end - 1,
                    state: "pending".into(),
                    attempts: 0,
                    next_attempt_ms: now_ms,
                    last_error: None,
                    created_at_ms: now_ms,
                    sent_at_ms: None,
                };
                if store.enqueue_meter_event(&row).await? {
                    added += 1;
                }
            }
        }
        if (n as i64) < BATCH {
            return Ok(added);
        }
    }
}

/// Sends due rows until none is due (or Stripe refuses the key).
pub async fn send_due(
    store: &Store,
    client: &StripeClient,
    now: impl Fn() -> i64,
) -> Result<RoundStats, StoreError> {
    let cfg = client.config();
    let mut stats = RoundStats::default();
    loop {
        let due = store.due_meter_events(now(), BATCH).await?;
        if due.is_empty() {
            return Ok(stats);
        }
        for row in due {
            let t = now();
            if t.div_euclid(1000) - row.timestamp_s > 35 * 86_400 {
                let msg = "older than Stripe's 35-day window for meter events; not sent";
                store
                    .finish_meter_event(&row.id, "failed", t, Some(msg), t)
                    .await?;
                tracing::error!(event = %row.id, account = %row.account_id, "{msg}");
                stats.failed += 1;
                continue;
            }
            if !store.claim_meter_event(&row.id, t, t + LEASE_MS).await? {
                continue; // another replica has it
            }
            let attempts = row.attempts + 1;
            let outcome = client.send(&row).await;
            let t = now();
            match outcome {
                Outcome::Recorded { request_id } => {
                    store
                        .finish_meter_event(&row.id, "sent", t, None, t)
                        .await?;
                    tracing::debug!(event = %row.id, request_id, "meter event recorded by Stripe");
                    stats.sent += 1;
                }
                Outcome::Duplicate { message } => {
                    let note = format!("Stripe already had this identifier: {message}");
                    store
                        .finish_meter_event(&row.id, "sent", t, Some(&note), t)
                        .await?;
                    tracing::info!(event = %row.id, "meter event was already recorded by Stripe");
                    stats.duplicates += 1;
                }
                Outcome::Retry { error, retry_after } => {
                    let wait = backoff(attempts, cfg.retry_base, cfg.retry_max)
                        .max(retry_after.unwrap_or_default().min(cfg.retry_max));
                    let next = t + wait.as_millis() as i64;
                    store
                        .finish_meter_event(&row.id, "pending", next, Some(&error), t)
                        .await?;
                    tracing::warn!(event = %row.id, attempts, retry_in_ms = wait.as_millis() as u64, %error, "Stripe meter event will be retried");
                    stats.retried += 1;
                }
                Outcome::Unauthorized { error } => {
                    let wait = backoff(attempts, cfg.retry_base, cfg.retry_max);
                    let next = t + wait.as_millis() as i64;
                    let msg = format!("{error} (check STRIPE_API_KEY)");
                    store
                        .finish_meter_event(&row.id, "pending", next, Some(&msg), t)
                        .await?;
                    tracing::error!(%error, "Stripe refused the API key; meter events stay queued until it is fixed");
                    stats.unauthorized = true;
                    return Ok(stats);
                }
                Outcome::Rejected { error } => {
                    store
                        .finish_meter_event(&row.id, "failed", t, Some(&error), t)
                        .await?;
                    tracing::error!(event = %row.id, account = %row.account_id, %error, "Stripe rejected a meter event; see `rclaude-server admin stripe-status`");
                    stats.failed += 1;
                }
            }
        }
    }
}

/// One round: enqueue, then send what is due.
pub async fn round(store: &Store, client: &StripeClient) -> Result<RoundStats, StoreError> {
    let enqueued = enqueue(store, client.config(), Now::system().ms()).await?;
    let mut stats = send_due(store, client, || Now::system().ms()).await?;
    stats.enqueued = enqueued;
    Ok(stats)
}

/// Runs rounds every `poll_interval` until `shutdown` turns true. A round that hit Stripe's
/// refusal of the key waits for the backoff's maximum before the next one.
pub async fn run(store: Store, cfg: StripeConfig, mut shutdown: watch::Receiver<bool>) {
    let client = match StripeClient::new(cfg.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the Stripe client; usage export is off");
            return;
        }
    };
    tracing::info!(
        api_base = %cfg.api_base,
        event_name = %cfg.meter_event_name,
        "Stripe usage export on"
    );
    loop {
        let wait = match round(&store, &client).await {
            Ok(s) => {
                if s != RoundStats::default() {
                    tracing::info!(
                        enqueued = s.enqueued,
                        sent = s.sent,
                        duplicates = s.duplicates,
                        retried = s.retried,
                        failed = s.failed,
                        "Stripe export round"
                    );
                }
                if s.unauthorized {
                    cfg.poll_interval
                        .max(cfg.retry_max.min(Duration::from_secs(600)))
                } else {
                    cfg.poll_interval
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "Stripe export round failed (database); retrying");
                cfg.poll_interval
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn intervals_split_at_months() {
        let a = datetime!(2025-01-31 23:00 UTC).unix_timestamp();
        let b = datetime!(2025-02-01 00:30 UTC).unix_timestamp();
        let parts = split_by_month(a, b);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0.to_string(), "2025-01");
        assert_eq!(parts[0].2 - parts[0].1, 3600);
        assert_eq!(parts[1].0.to_string(), "2025-02");
        assert_eq!(parts[1].2 - parts[1].1, 1800);
        assert_eq!(split_by_month(a, a + 10).len(), 1);
        assert!(split_by_month(a, a).is_empty());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        for (attempts, hi) in [(1, 2), (2, 4), (3, 8), (10, 60), (100, 60)] {
            let d = backoff(attempts, base, max);
            assert!(d <= Duration::from_secs(hi), "{attempts}: {d:?}");
            assert!(d >= Duration::from_secs(hi) / 2, "{attempts}: {d:?}");
        }
    }
}
