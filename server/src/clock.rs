//! "Now", injectable for tests.
//!
//! The server's clock is the system clock. A server started with `--test-clock` also honours the
//! `x-rclaude-now: <RFC 3339>` request header, so tests can drive pause/resume cycles across month
//! boundaries and crashed clients without sleeping. Without the flag the header is ignored.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;
use crate::state::AppState;

/// The header tests use to set the request's "now".
pub const TEST_NOW_HEADER: &str = "x-rclaude-now";

/// The current time of a request, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now(pub i64);

impl Now {
    pub fn system() -> Now {
        Now((OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64)
    }

    pub fn ms(self) -> i64 {
        self.0
    }

    pub fn s(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

impl FromRequestParts<AppState> for Now {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if !state.config.test_clock {
            return Ok(Now::system());
        }
        match parts.headers.get(TEST_NOW_HEADER) {
            None => Ok(Now::system()),
            Some(v) => {
                let text = v.to_str().unwrap_or("");
                let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
                    ApiError::invalid(format!("{TEST_NOW_HEADER}: `{text}` is not RFC 3339: {e}"))
                })?;
                Ok(Now((t.unix_timestamp_nanos() / 1_000_000) as i64))
            }
        }
    }
}
