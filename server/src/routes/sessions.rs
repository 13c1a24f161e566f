//! `/v1/sessions` and `POST /v1/sessions/{id}/events`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::auth::Auth;
use crate::clock::Now;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::model::STATES;
use crate::storage::{NewEvent, NewSession, SessionFilter, StoreError};
use crate::validate;

/// Body of `POST /v1/sessions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Client-chosen UUID: makes the create idempotent.
    #[serde(default)]
    pub id: Option<String>,
    pub repository: String,
    pub branch: String,
    pub provider: String,
    #[serde(default)]
    pub sandbox_id: Option<String>,
    #[serde(default)]
    pub config_hash: Option<String>,
}

/// `POST /v1/sessions` → 201 `{"session": Session}` (200 with the same session when a
/// client-chosen `id` is retried with the same fields; 409 if it names a different session).
pub async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiJson(body): ApiJson<CreateSession>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    validate::repository(&body.repository)?;
    validate::branch(&body.branch)?;
    validate::provider(&body.provider)?;
    if let Some(s) = &body.sandbox_id {
        validate::sandbox_id(s)?;
    }
    if let Some(h) = &body.config_hash {
        validate::config_hash(h)?;
    }
    let id = match &body.id {
        Some(id) => validate::session_id("id", id)?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let new = NewSession {
        id,
        repository: body.repository,
        branch: body.branch,
        provider: body.provider,
        sandbox_id: body.sandbox_id,
        config_hash: body.config_hash,
    };
    let (session, created) = state
        .store
        .create_session(&p.account_id, &new, now.ms())
        .await
        .map_err(|e| match e {
            StoreError::Conflict(m) => ApiError::conflict("session_id_conflict", m),
            e => e.into(),
        })?;
    if created {
        state
            .metrics
            .sessions_created
            .fetch_add(1, Ordering::Relaxed);
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "session": session }))))
}

/// Query of `GET /v1/sessions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub repository: Option<String>,
    pub state: Option<String>,
    pub provider: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// `GET /v1/sessions?repository=&state=&provider=&limit=&cursor=` →
/// `{"sessions": [Session], "next_cursor": null | "…"}`, newest first.
pub async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("`limit` must be between 1 and 200"));
    }
    if let Some(s) = &q.state
        && !STATES.contains(&s.as_str())
    {
        return Err(ApiError::invalid(format!(
            "`state` `{s}` is not a session state; use one of: {}",
            STATES.join(", ")
        )));
    }
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let filter = SessionFilter {
        repository: q.repository.filter(|s| !s.is_empty()),
        state: q.state,
        provider: q.provider.filter(|s| !s.is_empty()),
        limit,
        after,
    };
    let (sessions, next) = state
        .store
        .list_sessions(&p.account_id, &filter, now.s())
        .await?;
    let next_cursor = next.map(|(ms, id)| format!("{ms}.{id}"));
    Ok(Json(
        json!({ "sessions": sessions, "next_cursor": next_cursor }),
    ))
}

fn parse_cursor(c: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::invalid("`cursor` is not one this server returned as `next_cursor`");
    let (ms, id) = c.split_once('.').ok_or_else(bad)?;
    let ms: i64 = ms.parse().map_err(|_| bad())?;
    let id = validate::session_id("cursor", id).map_err(|_| bad())?;
    Ok((ms, id))
}

/// `GET /v1/sessions/{id}` → `{"session": Session, "events": [Event]}` (all events, by `seq`).
pub async fn get_one(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let sid = session_path_id(&id)?;
    let session = state
        .store
        .get_session(&p.account_id, &sid, now.s())
        .await?
        .ok_or_else(|| ApiError::session_not_found(&id))?;
    let events = state
        .store
        .list_events(&p.account_id, &sid, 0, 1_000_000)
        .await?;
    Ok(Json(json!({ "session": session, "events": events })))
}

/// A session id from a path; anything that is not a UUID cannot exist (404).
pub fn session_path_id(id: &str) -> Result<String, ApiError> {
    validate::session_id("id", id).map_err(|_| ApiError::session_not_found(id))
}

/// Body of `POST /v1/sessions/{id}/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub idempotency_key: String,
    #[serde(default)]
    pub data: Option<Value>,
}

/// `POST /v1/sessions/{id}/events` → 201 `{"event": Event, "session": Session}` the first time,
/// 200 with the stored event on a retry with the same `idempotency_key`.
pub async fn append_event(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AppendEvent>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let sid = session_path_id(&id)?;
    let kind = validate::event_kind(&body.kind)?;
    validate::idempotency_key(&body.idempotency_key)?;
    let data = validate::event_data(kind, body.data)?;
    let new = NewEvent {
        kind,
        idempotency_key: body.idempotency_key,
        data,
    };
    let out = state
        .store
        .append_event(&p.account_id, &sid, &new, now.ms())
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::session_not_found(&id),
            StoreError::Conflict(m) => ApiError::conflict("idempotency_key_reused", m),
            e => e.into(),
        })?;
    let status = if out.created {
        state
            .metrics
            .events_appended
            .fetch_add(1, Ordering::Relaxed);
        StatusCode::CREATED
    } else {
        state
            .metrics
            .events_duplicate
            .fetch_add(1, Ordering::Relaxed);
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "event": out.event, "session": out.session })),
    ))
}
