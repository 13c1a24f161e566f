//! Stripe usage export (placeholder).
