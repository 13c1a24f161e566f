//! HTTP handlers, one file per resource, and the list of every route.

pub mod billing;
pub mod checkpoints;
pub mod managed;
pub mod sessions;
pub mod system;
pub mod tokens;

/// Every (method, path) the server answers; `/v1/openapi.json` documents exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/me"),
    ("get", "/v1/tokens"),
    ("post", "/v1/tokens"),
    ("delete", "/v1/tokens/{token}"),
    ("get", "/v1/sessions"),
    ("post", "/v1/sessions"),
    ("get", "/v1/sessions/{id}"),
    ("delete", "/v1/sessions/{id}"),
    ("post", "/v1/sessions/{id}/pause"),
    ("post", "/v1/sessions/{id}/resume"),
    ("get", "/v1/sessions/{id}/events"),
    ("post", "/v1/sessions/{id}/events"),
    ("get", "/v1/sessions/{id}/checkpoints"),
    ("post", "/v1/sessions/{id}/checkpoints"),
    ("get", "/v1/sessions/{id}/checkpoints/{name}"),
    ("get", "/v1/events"),
    ("get", "/v1/usage"),
    ("get", "/v1/invoices/{month}"),
];
