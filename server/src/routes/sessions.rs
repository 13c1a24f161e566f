//! `/v1/sessions` and `POST /v1/sessions/{id}/events`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::clock::Now;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::model::{Event, EventData, LiveMessage, STATES, Session};
use crate::responses::{BAD_JSON, BAD_VALUE, NO_SESSION, NOT_JSON, TOO_LARGE, UNAUTHORIZED};
use crate::state::AppState;
use crate::storage::{NewEvent, NewSession, SessionFilter, StoreError};
use crate::validate;

use super::managed::{CreateManaged, ManagedBody};

/// Body of `POST /v1/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// Client-chosen UUID: makes the create idempotent.
    #[serde(default)]
    #[schema(format = "uuid")]
    pub id: Option<String>,
    /// E.g. `github.com/acme/app`: 1 to 300 characters, no control characters or surrounding
    /// spaces.
    #[schema(min_length = 1, max_length = 300)]
    pub repository: String,
    /// 1 to 255 characters, no control characters or surrounding spaces.
    #[schema(min_length = 1, max_length = 255)]
    pub branch: String,
    /// Lowercase letters, digits, `-`, `_` (e.g. `local`, `e2b`).
    #[schema(pattern = "^[a-z0-9_-]{1,32}$")]
    pub provider: String,
    /// Up to 255 characters without spaces.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    pub sandbox_id: Option<String>,
    /// 1 to 128 hexadecimal digits.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-fA-F]{1,128}$")]
    pub config_hash: Option<String>,
}

/// `{"session": Session}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionBody {
    pub session: Session,
}

/// Body of `POST /v1/sessions`: a session the client runs and reports on, or (with
/// `"managed": true`) one the server creates and runs.
#[derive(Debug)]
pub enum CreateRequest {
    Reported(CreateSession),
    Managed(CreateManaged),
}

/// The document's view of [`CreateRequest`].
#[derive(ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub enum CreateRequestDoc {
    Reported(CreateSession),
    Managed(CreateManaged),
}

impl<'de> Deserialize<'de> for CreateRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        // Which shape is decided by `managed`; errors still name the field at fault.
        fn shape<T: serde::de::DeserializeOwned, E: Error>(v: Value) -> Result<T, E> {
            serde_path_to_error::deserialize(v).map_err(|e| {
                let path = e.path().to_string();
                E::custom(format!("field `{path}`: {}", e.into_inner()))
            })
        }
        let v = Value::deserialize(d)?;
        if v.get("managed").is_some() {
            shape(v).map(CreateRequest::Managed)
        } else {
            shape(v).map(CreateRequest::Reported)
        }
    }
}

/// Create a session
///
/// A reported session (the client runs the sandbox): idempotent when the client chooses the
/// `id`; a retry with the same fields answers 200 with the same session, an `id` that names a
/// different session is a 409. A managed session (`"managed": true`): the server creates the
/// sandbox and answers how to reach its envd (`sandbox`); idempotent by the `Idempotency-Key`
/// header (a retry answers 200 with the same session).
#[utoipa::path(
    post,
    path = "/v1/sessions",
    operation_id = "create_session",
    tag = "sessions",
    request_body = CreateRequestDoc,
    params(("Idempotency-Key" = Option<String>, Header, description = "Managed sessions: a retry with the same key answers the same session")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = ManagedBody),
        (status = 200, description = "Already created with this `id` (or `Idempotency-Key`) and the same fields", body = ManagedBody),
        (status = 400, description = BAD_JSON, body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 409, description = "The `id` names a different session (`session_id_conflict`)", body = ErrorBody),
        (status = 413, description = TOO_LARGE, body = ErrorBody),
        (status = 415, description = NOT_JSON, body = ErrorBody),
        (status = 422, description = BAD_VALUE, body = ErrorBody),
        (status = 402, description = "A managed session, and the account's monthly budget is spent (`budget_exhausted`)", body = ErrorBody),
        (status = 429, description = "A managed session, and the account already runs as many as it may (`too_many_sessions`)", body = ErrorBody),
        (status = 501, description = "A managed session, and this server manages no sandboxes", body = ErrorBody),
        (status = 502, description = "A managed session, and the sandbox provider failed", body = ErrorBody),
        (status = 503, description = "A managed session, and the sandbox provider cannot be used on this machine", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<ManagedBody>), ApiError> {
    let body = match body {
        CreateRequest::Managed(m) => {
            return super::managed::create(&state, &p.account_id, now, &headers, m).await;
        }
        CreateRequest::Reported(b) => b,
    };
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
        managed: false,
        idempotency_key: None,
        idle_pause_ms: None,
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
    Ok((
        status,
        Json(ManagedBody {
            session,
            sandbox: None,
        }),
    ))
}

/// Query of `GET /v1/sessions`: filters (all optional, combined with AND) and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Exact repository name.
    pub repository: Option<String>,
    /// `created`, `running`, `paused` or `stopped`.
    #[param(schema_with = crate::model::session_state_schema)]
    pub state: Option<String>,
    /// Provider name.
    pub provider: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page (absent for the first page).
    pub cursor: Option<String>,
}

/// One page of `GET /v1/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    /// Newest first.
    pub sessions: Vec<Session>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// List sessions, newest first
///
/// Paged: when `next_cursor` is not null, pass it as `cursor` (with the same filters) for the
/// next page.
#[utoipa::path(
    get,
    path = "/v1/sessions",
    operation_id = "list_sessions",
    tag = "sessions",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of sessions", body = SessionPage),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 422, description = "Invalid filter, `limit` or `cursor`", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<SessionPage>, ApiError> {
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
    Ok(Json(SessionPage {
        sessions,
        next_cursor,
    }))
}

fn parse_cursor(c: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::invalid("`cursor` is not one this server returned as `next_cursor`");
    let (ms, id) = c.split_once('.').ok_or_else(bad)?;
    let ms: i64 = ms.parse().map_err(|_| bad())?;
    let id = validate::session_id("cursor", id).map_err(|_| bad())?;
    Ok((ms, id))
}

/// A session with its whole history.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDetail {
    pub session: Session,
    /// Every event, by `seq`.
    pub events: Vec<Event>,
}

/// A session with its event history
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}",
    operation_id = "get_session",
    tag = "sessions",
    params(("id" = String, Path, description = "Session id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The session and all its events", body = SessionDetail),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = NO_SESSION, body = ErrorBody),
        (status = 422, description = BAD_VALUE, body = ErrorBody),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SessionDetail>, ApiError> {
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
    Ok(Json(SessionDetail { session, events }))
}

/// A session id from a path; anything that is not a UUID cannot exist (404).
pub fn session_path_id(id: &str) -> Result<String, ApiError> {
    validate::session_id("id", id).map_err(|_| ApiError::session_not_found(id))
}

/// Body of `POST /v1/sessions/{id}/events`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppendEvent {
    #[serde(rename = "type")]
    #[schema(schema_with = crate::model::event_type_schema)]
    pub kind: String,
    /// 1 to 200 visible ASCII characters (a client-generated UUID is typical); a retry with the
    /// same key is answered with the stored event.
    #[schema(pattern = "^[!-~]{1,200}$")]
    pub idempotency_key: String,
    /// An object of at most 16 KiB (absent or null: `{}`).
    #[serde(default)]
    #[schema(value_type = Option<EventData>)]
    pub data: Option<Value>,
}

/// Append an event to a session
///
/// Idempotent by `idempotency_key`: the first time answers 201, a retry with the same key and
/// event answers 200 with the stored event.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/events",
    operation_id = "append_event",
    tag = "sessions",
    params(("id" = String, Path, description = "Session id (UUID)")),
    request_body = AppendEvent,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = LiveMessage),
        (status = 200, description = "Already stored with this `idempotency_key`", body = LiveMessage),
        (status = 400, description = BAD_JSON, body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = NO_SESSION, body = ErrorBody),
        (status = 409, description = "The session is stopped (`session_stopped`), or the key was used for a different event (`idempotency_key_reused`)", body = ErrorBody),
        (status = 413, description = TOO_LARGE, body = ErrorBody),
        (status = 415, description = NOT_JSON, body = ErrorBody),
        (status = 422, description = BAD_VALUE, body = ErrorBody),
    )
)]
pub async fn append_event(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AppendEvent>,
) -> Result<(StatusCode, Json<LiveMessage>), ApiError> {
    let sid = session_path_id(&id)?;
    let kind = validate::event_kind(&body.kind)?;
    validate::idempotency_key(&body.idempotency_key)?;
    let data = validate::event_data(kind, body.data)?;
    let new = NewEvent {
        kind,
        idempotency_key: body.idempotency_key,
        data,
        by_server: false,
        lost: false,
    };
    let out = state
        .store
        .append_event(&p.account_id, &sid, &new, now.ms())
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::session_not_found(&id),
            StoreError::Managed(m) => ApiError::conflict("session_managed", m),
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
        Json(LiveMessage {
            event: out.event,
            session: out.session,
        }),
    ))
}
