//! `/healthz`, `/metrics`, `/v1/openapi.json` (no authentication).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ErrorDetail;
use crate::state::AppState;

/// The server's health.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when the database does not answer.
    #[schema(schema_with = health_status_schema)]
    pub status: &'static str,
    /// The database engine.
    #[schema(schema_with = engine_schema)]
    pub database: &'static str,
    /// Why the server is unavailable (only then).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<ErrorDetail>,
}

fn health_status_schema() -> utoipa::openapi::schema::Object {
    crate::model::string_enum(["ok", "unavailable"])
}

fn engine_schema() -> utoipa::openapi::schema::Object {
    crate::model::string_enum(["sqlite", "postgres"])
}

/// Liveness and database check
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "system",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The database does not answer", body = Health),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> Response {
    let engine = state.store.db().engine.as_str();
    match state.store.ping().await {
        Ok(()) => Json(Health {
            status: "ok",
            database: engine,
            error: None,
        })
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "unavailable",
                    database: engine,
                    error: Some(ErrorDetail {
                        code: "database_unavailable".into(),
                        message: "the database does not answer".into(),
                    }),
                }),
            )
                .into_response()
        }
    }
}

/// Prometheus metrics
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "system",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(state.store.commit_stats()),
    )
        .into_response()
}

/// This document
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "system",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object),
    )
)]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::json(),
    )
        .into_response()
}
