//! `/v1/me` and `/v1/tokens`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{self, Auth};
use crate::clock::Now;
use crate::error::{ApiError, ApiJsonOrEmpty, ApiPath, ErrorBody};
use crate::model::{Account, TokenInfo};
use crate::responses::{BAD_JSON, BAD_VALUE, NOT_JSON, TOO_LARGE, UNAUTHORIZED};
use crate::state::AppState;
use crate::storage::StoreError;
use crate::validate;

/// The caller: its account and the token it used.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub account: Account,
    pub token: TokenRef,
    /// What this server offers its clients.
    pub capabilities: Capabilities,
    /// The account's limits on managed sessions and its cost so far this month.
    pub limits: AccountLimits,
}

/// An account's limits (`null`: none) and what it has spent this calendar month (UTC).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountLimits {
    /// Monthly budget in micro-dollars.
    #[schema(required = true)]
    pub max_month_micros: Option<i64>,
    /// Managed sessions that may run at once.
    #[schema(required = true)]
    pub max_running: Option<i64>,
    /// Cost so far this month (active time and storage), in micro-dollars.
    pub month_cost_micros: i64,
}

/// What a server offers its clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct Capabilities {
    /// The provider of managed sessions (`POST /v1/sessions` with `"managed": true`): `local`,
    /// `e2b`, `daytona` or `northflank`; null when this server manages no sandboxes.
    #[schema(required = true)]
    pub managed_sessions: Option<String>,
}

/// The token a request was made with.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenRef {
    /// UUID.
    pub id: String,
    /// The public prefix, `rcl_` and 8 characters.
    pub prefix: String,
}

/// The calling account and token
#[utoipa::path(
    get,
    path = "/v1/me",
    operation_id = "me",
    tag = "tokens",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
    )
)]
pub async fn me(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: crate::clock::Now,
) -> Result<Json<Me>, ApiError> {
    let account = state.store.account_by_id(&p.account_id).await?;
    let limits = state.store.limits(&p.account_id).await?;
    let month_cost_micros = crate::limits::month_cost(&state.store, &p.account_id, now).await?;
    Ok(Json(Me {
        account,
        token: TokenRef {
            id: p.token_id,
            prefix: p.token_prefix,
        },
        capabilities: Capabilities {
            managed_sessions: state
                .sandboxes
                .as_ref()
                .map(|s| s.kind().as_str().to_string()),
        },
        limits: AccountLimits {
            max_month_micros: limits.max_month_micros,
            max_running: limits.max_running,
            month_cost_micros,
        },
    }))
}

/// `{"tokens": [TokenInfo]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// Newest first, revoked ones included.
    pub tokens: Vec<TokenInfo>,
}

/// List the account's tokens
///
/// Prefixes only: a token's secret is shown once, when it is created.
#[utoipa::path(
    get,
    path = "/v1/tokens",
    operation_id = "list_tokens",
    tag = "tokens",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account's tokens", body = TokenList),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.store.list_tokens(&p.account_id).await?;
    Ok(Json(TokenList { tokens }))
}

/// Body of `POST /v1/tokens` (the body itself is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    /// 1 to 100 characters, no control characters or surrounding spaces (default `api`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
}

/// A new token, with its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: TokenInfo,
    /// The whole token (`rcl_xxxxxxxx_…`): shown this once, never again.
    pub secret: String,
}

/// Create a token
///
/// The answer holds the secret; the server keeps only its hash.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "create_token",
    tag = "tokens",
    // A reference (not the type) leaves the body optional, as it is.
    request_body(
        content = ref("#/components/schemas/NewTokenBody"),
        content_type = "application/json",
        description = "Optional: an empty body (no `Content-Type` needed) is `{}`",
    ),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = CreatedToken),
        (status = 400, description = BAD_JSON, body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 413, description = TOO_LARGE, body = ErrorBody),
        (status = 415, description = NOT_JSON, body = ErrorBody),
        (status = 422, description = BAD_VALUE, body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<NewTokenBody>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = body.name.unwrap_or_else(|| "api".to_string());
    validate::text("name", &name, 100)?;
    let (token, secret) = auth::issue(&state.store, &p.account_id, &name, now.ms()).await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, secret })))
}

/// `{"token": TokenInfo}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenBody {
    pub token: TokenInfo,
}

/// Revoke a token
///
/// By its prefix or id (or the whole token, looked up by its hash and never echoed). Idempotent.
/// Open WebSockets authenticated with the token close at once (1008).
#[utoipa::path(
    delete,
    path = "/v1/tokens/{token}",
    operation_id = "revoke_token",
    tag = "tokens",
    params(("token" = String, Path, description = "The token's prefix (`rcl_xxxxxxxx`) or id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Revoked (`revoked_at` is set)", body = TokenBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = "No such token in this account", body = ErrorBody),
        (status = 422, description = BAD_VALUE, body = ErrorBody),
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<TokenBody>, ApiError> {
    let key = auth::token_key(&key);
    match state
        .store
        .revoke_token(Some(&p.account_id), key.clone(), now.ms())
        .await
    {
        Ok(info) => {
            state.revocations.token_revoked(&info.id);
            Ok(Json(TokenBody { token: info }))
        }
        Err(StoreError::NotFound) => Err(ApiError::not_found(format!(
            "no token with prefix or id `{}` in this account",
            key.describe()
        ))),
        Err(e) => Err(e.into()),
    }
}
