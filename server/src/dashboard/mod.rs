//! The web dashboard, served by `rclaude-server` itself: sign-in with an API token (cookie
//! session), sessions per repository (live over the account WebSocket), a session's timeline and
//! task results, and usage (SVG charts, per-repository totals, the month's invoice, CSV).
//!
//! Plain server-rendered HTML (`maud`, escaped by construction), one small script for live
//! updates, one stylesheet; both embedded. Not part of the `/v1` API (not in the OpenAPI
//! document). Another account's session is a 404, as in the API.

pub mod assets;
pub mod auth;
pub mod chart;
pub mod layout;
pub mod session;
pub mod sessions;
pub mod sign_in;
mod start;
pub mod usage;

use axum::Router;
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::state::AppState;

/// Every dashboard route (method, path), for documentation and tests.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/sign-in"),
    ("post", "/sign-in"),
    ("post", "/sign-out"),
    ("get", "/sessions"),
    ("get", "/sessions/{id}"),
    ("get", "/sessions/{id}/section"),
    ("post", "/sessions/{id}/{action}"),
    ("get", "/usage"),
    ("get", "/usage.csv"),
    ("get", "/invoice.csv"),
    ("get", "/assets/{name}"),
];

/// The dashboard's routes, with security headers on every response.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/sign-in", get(sign_in::show).post(sign_in::submit))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/sessions", get(sessions::page_handler))
        .route("/sessions/start", axum::routing::post(start::submit))
        .route("/sessions/{id}", get(session::page_handler))
        .route("/sessions/{id}/section", get(sessions::section_fragment))
        .route("/sessions/{id}/{action}", post(session::action_handler))
        .route("/usage", get(usage::page_handler))
        .route("/usage.csv", get(usage::usage_csv))
        .route("/invoice.csv", get(usage::invoice_csv))
        .route("/assets/{name}", get(assets::serve))
        .layer(middleware::from_fn(layout::security_headers))
}

/// `GET /` → the sessions page (which sends strangers to sign in).
async fn index() -> Response {
    Redirect::to("/sessions").into_response()
}
