//! Northflank's REST API (`{data: …}` envelopes, `{error: {message}}` errors) under its request
//! budget: about 1,000 requests per hour per account. Every reply's `x-ratelimit-limit`,
//! `-remaining` and `-reset` headers are remembered; when the budget is used up the client waits
//! for the reset if it is near (up to `max_budget_wait`) and otherwise fails with a hint instead
//! of sending requests that would be refused. A 429 is handled the same way.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::settings::NorthflankSettings;
use crate::provider::{ProviderError, SandboxError};

/// What the server said about the budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetState {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Unix seconds at which the window resets.
    pub reset_at: Option<u64>,
    /// Requests this client sent.
    pub sent: u64,
}

/// The shared budget of one provider (and its sandboxes).
#[derive(Debug, Clone, Default)]
pub struct Budget(Arc<Mutex<BudgetState>>);

impl Budget {
    pub fn state(&self) -> BudgetState {
        *self.0.lock().expect("budget")
    }

    /// Requests left this window, when the server said.
    pub fn remaining(&self) -> Option<u64> {
        self.state().remaining
    }

    fn observe(&self, headers: &HeaderMap, now: u64) {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        let mut s = self.0.lock().expect("budget");
        if let Some(l) = num("x-ratelimit-limit") {
            s.limit = Some(l as u64);
        }
        if let Some(r) = num("x-ratelimit-remaining") {
            s.remaining = Some(r as u64);
        }
        if let Some(r) = num("x-ratelimit-reset") {
            s.reset_at = Some(reset_instant(r, now));
        }
        if let Some(r) = num("retry-after") {
            s.reset_at = Some(now + r.ceil() as u64);
            s.remaining = Some(0);
        }
    }

    /// How long to wait before the next request may go out: `None` = now.
    fn wait_needed(&self, now: u64) -> Option<Duration> {
        let s = self.state();
        match (s.remaining, s.reset_at) {
            (Some(0), Some(reset)) if reset > now => Some(Duration::from_secs(reset - now)),
            _ => None,
        }
    }

    fn count(&self) {
        self.0.lock().expect("budget").sent += 1;
    }

    /// After the window reset: the old numbers no longer hold.
    fn forget_window(&self) {
        let mut s = self.0.lock().expect("budget");
        s.remaining = None;
        s.reset_at = None;
    }
}

/// `x-ratelimit-reset` as Unix seconds: an epoch in seconds or milliseconds, or seconds from now.
pub fn reset_instant(value: f64, now: u64) -> u64 {
    if value > 1e12 {
        (value / 1000.0).ceil() as u64
    } else if value > 1e9 {
        value.ceil() as u64
    } else {
        now + value.ceil() as u64
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Northflank's error envelope.
#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    details: Option<serde_json::Value>,
}

/// A response: any status.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
    pub what: String,
}

impl Reply {
    /// The `data` of a success envelope.
    pub fn data<T: serde::de::DeserializeOwned>(&self) -> Result<T, SandboxError> {
        #[derive(Deserialize)]
        struct Envelope<T> {
            data: T,
        }
        serde_json::from_slice::<Envelope<T>>(&self.body)
            .map(|e| e.data)
            .map_err(|e| {
                SandboxError::Protocol(format!(
                    "unexpected Northflank response to {}: {e} (the API changed, or a proxy answered)",
                    self.what
                ))
            })
    }

    /// The whole body as JSON (for `pagination`).
    pub fn value(&self) -> Result<serde_json::Value, SandboxError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            SandboxError::Protocol(format!(
                "unexpected Northflank response to {}: {e}",
                self.what
            ))
        })
    }

    /// Northflank's message (with validation details), or the body text, or the status line.
    pub fn message(&self) -> String {
        if let Ok(e) = serde_json::from_slice::<ErrorEnvelope>(&self.body) {
            let mut m = e.error.message.unwrap_or_default();
            if let Some(d) = e.error.details.filter(|d| !d.is_null()) {
                let d = d.to_string();
                m.push_str(&format!(" ({})", d.chars().take(300).collect::<String>()));
            }
            if !m.is_empty() {
                return m;
            }
        }
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        if text.is_empty() {
            self.status
                .canonical_reason()
                .unwrap_or("error")
                .to_string()
        } else {
            text.chars().take(500).collect()
        }
    }
}

/// The REST client.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    pub settings: Arc<NorthflankSettings>,
    pub budget: Budget,
}

/// The error when the budget is spent and its reset is too far away to wait for.
pub fn budget_error(wait: Duration, state: BudgetState) -> ProviderError {
    ProviderError::Api {
        provider: "northflank".into(),
        status: 429,
        message: format!(
            "the API request budget is used up{} and resets in {} s",
            state
                .limit
                .map(|l| format!(" ({l} requests per hour)"))
                .unwrap_or_default(),
            wait.as_secs()
        ),
        hint: Some(
            "Northflank allows about 1,000 API requests per hour per account: wait for the reset, or ask Northflank support to raise the limit; rclaude polls every 2–5 s to stay well inside it".into(),
        ),
    }
}

impl Api {
    pub fn new(settings: Arc<NorthflankSettings>) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(settings.request_timeout)
            .user_agent(concat!("rclaude/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                ProviderError::Config(format!("cannot build the HTTP client for Northflank: {e}"))
            })?;
        Ok(Api {
            http,
            settings,
            budget: Budget::default(),
        })
    }

    /// `METHOD /v1/...` with an optional JSON body; waits out (or refuses on) a spent budget.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<Reply, ProviderError> {
        let url = format!("{}{path}", self.settings.api_url);
        let what = format!("{method} {path}");
        let mut refused = 0;
        loop {
            if let Some(wait) = self.budget.wait_needed(unix_now()) {
                if wait > self.settings.max_budget_wait {
                    return Err(budget_error(wait, self.budget.state()));
                }
                tracing::info!(
                    ?wait,
                    "Northflank's API budget is used up; waiting for the reset"
                );
                tokio::time::sleep(wait).await;
                self.budget.forget_window();
            }
            let mut rb = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.settings.token)
                .header(reqwest::header::ACCEPT, "application/json");
            if !query.is_empty() {
                rb = rb.query(query);
            }
            if let Some(b) = &body {
                rb = rb
                    .header(CONTENT_TYPE, "application/json")
                    .body(b.to_string());
            }
            self.budget.count();
            let resp = rb.send().await.map_err(|e| {
                ProviderError::Sandbox(if e.is_timeout() {
                    SandboxError::Timeout(format!("Northflank {what}: {e}"))
                } else {
                    SandboxError::Unreachable {
                        url: url.clone(),
                        reason: format!("{} (check your network or NORTHFLANK_API_URL)", chain(&e)),
                    }
                })
            })?;
            let status = resp.status();
            self.budget.observe(resp.headers(), unix_now());
            let body_bytes = resp.bytes().await.map_err(|e| {
                ProviderError::Sandbox(SandboxError::Unreachable {
                    url: url.clone(),
                    reason: format!("reading the response failed: {e}"),
                })
            })?;
            tracing::debug!(%what, %status, remaining = ?self.budget.remaining(), "Northflank reply");
            if status.as_u16() == 429 && refused == 0 {
                // Not processed: wait for the window (if near) and try once more.
                refused += 1;
                let wait = self
                    .budget
                    .wait_needed(unix_now())
                    .unwrap_or(Duration::from_secs(5));
                if wait > self.settings.max_budget_wait {
                    return Err(budget_error(wait, self.budget.state()));
                }
                tracing::info!(
                    ?wait,
                    "Northflank refused a request for the rate limit; waiting"
                );
                tokio::time::sleep(wait).await;
                self.budget.forget_window();
                continue;
            }
            return Ok(Reply {
                status,
                body: body_bytes,
                what,
            });
        }
    }
}

/// An error and its sources on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn reset_forms() {
        assert_eq!(reset_instant(30.0, 1000), 1030);
        assert_eq!(reset_instant(1_800_000_000.0, 1000), 1_800_000_000);
        assert_eq!(reset_instant(1_800_000_000_500.0, 1000), 1_800_000_001);
    }

    #[test]
    fn a_spent_budget_asks_for_a_wait_until_the_reset() {
        let b = Budget::default();
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit", HeaderValue::from_static("1000"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("3"));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("120"));
        b.observe(&h, 1000);
        assert_eq!(b.wait_needed(1000), None);
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        b.observe(&h, 1000);
        assert_eq!(b.wait_needed(1000), Some(Duration::from_secs(120)));
        assert_eq!(b.wait_needed(1200), None, "the window has reset");
        let e = budget_error(Duration::from_secs(120), b.state()).to_string();
        assert!(
            e.contains("1000 requests per hour") && e.contains("hint:"),
            "{e}"
        );
    }
}
