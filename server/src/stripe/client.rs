//! The one Stripe call the export makes: `POST /v1/billing/meter_events`, and how its answers
//! are classified.
//!
//! Request: form-encoded `event_name`, `payload[stripe_customer_id]`, `payload[value]`,
//! `identifier` (our event id), `timestamp`; `Authorization: Bearer <key>`,
//! `Idempotency-Key: <our event id>`, `Stripe-Version`. Answers, per Stripe's documentation:
//! 2xx recorded; 400 with a duplicate `identifier` means Stripe already has the event (recorded);
//! 429, 409 (concurrent use of the idempotency key), 5xx and connection errors are retried with
//! backoff; 401/403 mean the key is wrong (nothing can be sent: the round stops, events stay
//! queued); other 4xx (400, 402, 404) fail the event. An explicit `Stripe-Should-Retry` header
//! overrides the status-based choice.

use std::time::Duration;

use serde::Deserialize;

use crate::config::StripeConfig;
use crate::storage::MeterEventRow;

/// What happened to one meter event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stripe recorded it (`request_id` for support).
    Recorded { request_id: Option<String> },
    /// Stripe already had an event with this identifier: recorded earlier.
    Duplicate { message: String },
    /// Try again later (after `retry_after` if Stripe said so).
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// The API key is missing, wrong or lacks permission: stop sending until fixed.
    Unauthorized { error: String },
    /// Stripe rejected the event; retrying the same request cannot succeed.
    Rejected { error: String },
}

/// Stripe's error body: `{"error": {"type", "code", "message", "param"}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StripeError {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: StripeError,
}

impl StripeError {
    /// Parses an error body; a body that is not Stripe's shape becomes a message with its start.
    pub fn parse(body: &str) -> StripeError {
        match serde_json::from_str::<ErrorBody>(body) {
            Ok(b) => b.error,
            Err(_) => StripeError {
                message: Some(format!(
                    "unexpected answer: {}",
                    body.chars().take(200).collect::<String>()
                )),
                ..Default::default()
            },
        }
    }

    fn describe(&self, status: u16) -> String {
        let mut s = format!("HTTP {status}");
        if let Some(k) = &self.kind {
            s.push_str(&format!(" {k}"));
        }
        if let Some(c) = &self.code {
            s.push_str(&format!(" ({c})"));
        }
        if let Some(p) = &self.param {
            s.push_str(&format!(" param {p}"));
        }
        if let Some(m) = &self.message {
            s.push_str(&format!(": {m}"));
        }
        s
    }

    /// Stripe's answer to an identifier it has already recorded.
    pub fn is_duplicate_identifier(&self) -> bool {
        self.code.as_deref() == Some("duplicate_meter_event")
            || self
                .message
                .as_deref()
                .is_some_and(|m| m.contains("already exists with identifier"))
    }
}

/// Decides what an HTTP answer means for the event.
pub fn classify(
    status: u16,
    should_retry: Option<bool>,
    retry_after: Option<Duration>,
    request_id: Option<String>,
    body: &str,
) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Recorded { request_id };
    }
    let err = StripeError::parse(body);
    let error = err.describe(status);
    if status == 400 && err.is_duplicate_identifier() {
        return Outcome::Duplicate { message: error };
    }
    if status == 401 || status == 403 {
        return Outcome::Unauthorized { error };
    }
    let retry = match should_retry {
        Some(explicit) => explicit,
        None => status == 409 || status == 429 || status >= 500,
    };
    if retry {
        Outcome::Retry { error, retry_after }
    } else {
        Outcome::Rejected { error }
    }
}

/// The form body of a meter event (fields in a fixed order, so every retry sends the same bytes).
pub fn form_body(e: &MeterEventRow) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("event_name", &e.event_name)
        .append_pair("payload[stripe_customer_id]", &e.customer_id)
        .append_pair("payload[value]", &e.value.to_string())
        .append_pair("identifier", &e.id)
        .append_pair("timestamp", &e.timestamp_s.to_string())
        .finish()
}

/// A Stripe API client for meter events.
#[derive(Debug, Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    cfg: StripeConfig,
}

impl StripeClient {
    pub fn new(cfg: StripeConfig) -> anyhow::Result<StripeClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("rclaude-server/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(StripeClient { http, cfg })
    }

    pub fn config(&self) -> &StripeConfig {
        &self.cfg
    }

    /// Sends one meter event and classifies the answer (connection errors are retried).
    pub async fn send(&self, e: &MeterEventRow) -> Outcome {
        let url = format!("{}/v1/billing/meter_events", self.cfg.api_base);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(self.cfg.api_key.expose())
            .header("Idempotency-Key", &e.id)
            .header("Stripe-Version", &self.cfg.api_version)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form_body(e))
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(err) => {
                // reqwest errors never contain the Authorization header.
                return Outcome::Retry {
                    error: format!("cannot reach Stripe at {}: {err}", self.cfg.api_base),
                    retry_after: None,
                };
            }
        };
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let should_retry = header("stripe-should-retry").and_then(|v| match v.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        });
        let retry_after = header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let request_id = header("request-id");
        let body = match resp.text().await {
            Ok(b) => b,
            Err(err) => {
                return Outcome::Retry {
                    error: format!("Stripe's answer (HTTP {status}) was cut off: {err}"),
                    retry_after: None,
                };
            }
        };
        classify(status, should_retry, retry_after, request_id, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> MeterEventRow {
        MeterEventRow {
            id: "4c1f0d3e-0000-4000-8000-000000000001".into(),
            source: "i/2025-02".into(),
            interval_id: "i".into(),
            account_id: "a".into(),
            customer_id: "cus_123".into(),
            event_name: "rclaude_active_seconds".into(),
            value: 3600,
            timestamp_s: 1_738_400_000,
            state: "pending".into(),
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
            created_at_ms: 0,
            sent_at_ms: None,
        }
    }

    #[test]
    fn body_is_form_encoded() {
        assert_eq!(
            form_body(&row()),
            "event_name=rclaude_active_seconds&payload%5Bstripe_customer_id%5D=cus_123\
             &payload%5Bvalue%5D=3600&identifier=4c1f0d3e-0000-4000-8000-000000000001\
             &timestamp=1738400000"
        );
    }

    #[test]
    fn answers_are_classified() {
        let err = |t: &str, c: &str, m: &str| {
            format!(r#"{{"error":{{"type":"{t}","code":"{c}","message":"{m}"}}}}"#)
        };
        assert!(matches!(
            classify(200, None, None, None, "{}"),
            Outcome::Recorded { .. }
        ));
        let dup = r#"{"error":{"type":"invalid_request_error","message":"An event already exists with identifier x."}}"#;
        assert!(matches!(
            classify(400, Some(false), None, None, dup),
            Outcome::Duplicate { .. }
        ));
        let dup2 = err("invalid_request_error", "duplicate_meter_event", "dup");
        assert!(matches!(
            classify(400, None, None, None, &dup2),
            Outcome::Duplicate { .. }
        ));
        let bad = err(
            "invalid_request_error",
            "parameter_missing",
            "Missing required param: event_name.",
        );
        match classify(400, None, None, None, &bad) {
            Outcome::Rejected { error } => assert!(error.contains("parameter_missing"), "{error}"),
            o => panic!("{o:?}"),
        }
        assert!(matches!(
            classify(401, None, None, None, "{}"),
            Outcome::Unauthorized { .. }
        ));
        assert!(matches!(
            classify(402, None, None, None, "{}"),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(
            classify(429, None, None, None, "{}"),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(409, None, None, None, "{}"),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(503, None, None, None, "<html>"),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(500, Some(false), None, None, "{}"),
            Outcome::Rejected { .. }
        ));
        assert!(matches!(
            classify(400, Some(true), None, None, "{}"),
            Outcome::Retry { .. }
        ));
    }
}
