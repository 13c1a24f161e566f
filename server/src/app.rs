//! The router with its middleware (every route is also listed in [`crate::routes::ROUTES`],
//! which the OpenAPI document is checked against).

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::{ApiError, method_not_allowed, route_not_found};
use crate::routes;
use crate::ws;

use crate::state::AppState;

/// Builds the router with all middleware.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/healthz", get(routes::system::healthz))
        .route("/metrics", get(routes::system::metrics))
        .route("/v1/openapi.json", get(routes::system::openapi))
        .route("/v1/me", get(routes::tokens::me))
        .route(
            "/v1/tokens",
            get(routes::tokens::list).post(routes::tokens::create),
        )
        .route(
            "/v1/tokens/{token}",
            axum::routing::delete(routes::tokens::revoke),
        )
        .route(
            "/v1/sessions",
            get(routes::sessions::list).post(routes::sessions::create),
        )
        .route(
            "/v1/sessions/{id}",
            get(routes::sessions::get_one).delete(routes::managed::delete),
        )
        .route(
            "/v1/sessions/{id}/pause",
            axum::routing::post(routes::managed::pause),
        )
        .route(
            "/v1/sessions/{id}/resume",
            axum::routing::post(routes::managed::resume),
        )
        .route(
            "/v1/sessions/{id}/events",
            get(ws::session_events).post(routes::sessions::append_event),
        )
        // Bundles stream in and out: no body limit but the checkpoint size limit, no deadline.
        .route(
            "/v1/sessions/{id}/checkpoints",
            get(routes::checkpoints::list)
                .post(routes::checkpoints::upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/sessions/{id}/checkpoints/{name}",
            get(routes::checkpoints::download),
        )
        .route("/v1/events", get(ws::account_events))
        .route("/v1/usage", get(routes::billing::usage))
        .route("/v1/invoices/{month}", get(routes::billing::invoice))
        // The web dashboard (HTML; not part of the /v1 API or its OpenAPI document).
        .merge(crate::dashboard::routes())
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // A handler that panics, for the test that a panic answers a plain JSON 500. Only with
    // --test-clock, which is for tests alone.
    let api = if state.config.test_clock {
        api.route(
            "/__test/panic",
            get(|| async {
                panic!("deliberate test panic: /home/secret/path token=rcl_internal");
                #[allow(unreachable_code)]
                ""
            }),
        )
    } else {
        api
    };

    api.layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn(crate::boundary::reject_control_chars))
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

/// Answers 503 `timeout` when a request takes longer than the configured deadline.
async fn deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = state.config.request_timeout;
    if streams_bundles(req.uri().path()) {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("the request took longer than {}s", limit.as_secs()),
        )
        .into_response(),
    }
}

/// Checkpoint uploads and downloads take as long as their bundles do.
fn streams_bundles(path: &str) -> bool {
    path.starts_with("/v1/sessions/") && path.contains("/checkpoints")
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::internal("internal error; see the server log").into_response()
}
