//! `/v1/me` and `/v1/tokens`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::{self, Auth};
use crate::clock::Now;
use crate::error::{ApiError, ApiJsonOrEmpty, ApiPath};
use crate::storage::StoreError;
use crate::validate;

/// `GET /v1/me` → `{"account": Account, "token": {"id", "prefix"}}`.
pub async fn me(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<Value>, ApiError> {
    let account = state.store.account_by_id(&p.account_id).await?;
    Ok(Json(json!({
        "account": account,
        "token": { "id": p.token_id, "prefix": p.token_prefix },
    })))
}

/// `GET /v1/tokens` → `{"tokens": [TokenInfo]}`.
pub async fn list(State(state): State<AppState>, Auth(p): Auth) -> Result<Json<Value>, ApiError> {
    let tokens = state.store.list_tokens(&p.account_id).await?;
    Ok(Json(json!({ "tokens": tokens })))
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /v1/tokens` `{"name"?}` → 201 `{"token": TokenInfo, "secret": "rcl_…"}` (shown once).
pub async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<NewTokenBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = body.name.unwrap_or_else(|| "api".to_string());
    validate::text("name", &name, 100)?;
    let (info, secret) = auth::issue(&state.store, &p.account_id, &name, now.ms()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": info, "secret": secret })),
    ))
}

/// `DELETE /v1/tokens/{prefix_or_id_or_token}` → `{"token": TokenInfo}` (with `revoked_at`);
/// idempotent. Open WebSockets authenticated with the token are closed (1008).
pub async fn revoke(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let key = auth::token_key(&key);
    match state
        .store
        .revoke_token(Some(&p.account_id), key.clone(), now.ms())
        .await
    {
        Ok(info) => {
            state.revocations.token_revoked(&info.id);
            Ok(Json(json!({ "token": info })))
        }
        Err(StoreError::NotFound) => Err(ApiError::not_found(format!(
            "no token with prefix or id `{}` in this account",
            key.describe()
        ))),
        Err(e) => Err(e.into()),
    }
}
