//! "Now", injectable for tests.
//!
//! The server's clock is the system clock. A server started with `--test-clock` also honours the
//! `x-rclaude-now: <RFC 3339>` request header, so tests can drive pause/resume cycles across month
//! boundaries and crashed clients without sleeping. Without the flag the header is ignored.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::ServerConfig;
use crate::error::ApiError;

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

/// Any state that holds the server's configuration (the app's state does).
impl<S> FromRequestParts<S> for Now
where
    S: Send + Sync,
    Arc<ServerConfig>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if !Arc::<ServerConfig>::from_ref(state).test_clock {
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
