//! Optional export of usage to Stripe as billing meter events (on when `STRIPE_API_KEY` is set).
//!
//! The meter value is **active seconds** (whole seconds of a closed active interval within one
//! UTC month); storage is not exported. Each account that should be billed through Stripe gets
//! its customer id with `rclaude-server admin set-stripe-customer ACCOUNT cus_…`. What was sent is
//! kept in the `stripe_meter_events` outbox; `rclaude-server admin stripe-status` shows the
//! backlog. See docs/server.md, "Stripe export".

pub mod client;
pub mod exporter;

/// Validates a Stripe customer id (`cus_` followed by letters and digits).
pub fn valid_customer_id(s: &str) -> bool {
    s.len() > 4
        && s.len() <= 255
        && s.starts_with("cus_")
        && s[4..].bytes().all(|b| b.is_ascii_alphanumeric())
}
