//! When and how long to wait before retrying a provider's REST call (E2B and Daytona), as E2B's
//! SDK does: connection failures (the request never left) up to `E2B_CONNECTION_RETRIES` times; responses 429, 502,
//! 503, 504 or carrying `Should-Retry: true` up to 3 times, after `Retry-After` when the server
//! sends it, else after a jittered exponential backoff from 0.1 s to 10 s. Nothing else is
//! retried (other 4xx and 500 mean the request itself was wrong or failed).

use std::time::Duration;

use reqwest::header::HeaderMap;
use time::OffsetDateTime;

/// Retry limits and backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after a failure to connect (default 3).
    pub connection_retries: u32,
    /// Retries after a retryable status (default 3).
    pub status_retries: u32,
    /// First backoff (default 100 ms); doubles per attempt.
    pub initial_backoff: Duration,
    /// Longest backoff (default 10 s).
    pub max_backoff: Duration,
    /// Longest wait honoured from `Retry-After` (default 60 s): a longer one fails at once.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            connection_retries: 3,
            status_retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Statuses E2B's SDK retries.
pub const RETRY_STATUSES: [u16; 4] = [429, 502, 503, 504];

/// Whether a response with this status and headers may be retried.
pub fn is_retryable(status: u16, headers: &HeaderMap) -> bool {
    RETRY_STATUSES.contains(&status)
        || headers
            .get("should-retry")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The wait a `Retry-After` value asks for: delta-seconds or an HTTP date (past dates → 0).
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let delta = at - now;
    Some(if delta.is_negative() {
        Duration::ZERO
    } else {
        delta.unsigned_abs()
    })
}

impl RetryPolicy {
    /// Backoff before retry number `attempt` (0-based): `initial · 2^attempt`, capped, with the
    /// upper half jittered so concurrent clients spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max_backoff);
        base.mul_f64(0.5 + 0.5 * unit_random())
    }

    /// The wait before retrying a retryable response: its `Retry-After`, else the backoff.
    /// `None` when `Retry-After` asks for longer than `max_retry_after`.
    pub fn wait_for(&self, headers: &HeaderMap, attempt: u32) -> Option<Duration> {
        let asked = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, OffsetDateTime::now_utc()));
        match asked {
            Some(d) if d > self.max_retry_after => None,
            Some(d) => Some(d),
            None => Some(self.backoff(attempt)),
        }
    }
}

/// A number in [0, 1) from the OS-seeded generator behind v4 UUIDs.
fn unit_random() -> f64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use time::macros::datetime;

    #[test]
    fn retryable_statuses_and_header() {
        let none = HeaderMap::new();
        for s in [429, 502, 503, 504] {
            assert!(is_retryable(s, &none), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 500, 501] {
            assert!(!is_retryable(s, &none), "{s}");
        }
        let mut h = HeaderMap::new();
        h.insert("should-retry", HeaderValue::from_static("true"));
        assert!(is_retryable(500, &h));
        h.insert("should-retry", HeaderValue::from_static("false"));
        assert!(!is_retryable(500, &h));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = datetime!(2026-03-01 12:00:00 UTC);
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn backoff_doubles_jitters_and_caps() {
        let p = RetryPolicy::default();
        for attempt in 0..12 {
            let d = p.backoff(attempt);
            let base = Duration::from_millis(100)
                .saturating_mul(1 << attempt)
                .min(Duration::from_secs(10));
            assert!(
                d >= base / 2 && d <= base,
                "attempt {attempt}: {d:?} vs {base:?}"
            );
        }
    }

    #[test]
    fn retry_after_beyond_the_cap_is_not_waited_for() {
        let p = RetryPolicy::default();
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("3600"),
        );
        assert_eq!(p.wait_for(&h, 0), None);
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(p.wait_for(&h, 0), Some(Duration::from_secs(2)));
    }
}
