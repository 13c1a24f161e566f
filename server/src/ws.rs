//! Live events over WebSocket: `GET /v1/sessions/{id}/events` and `GET /v1/events`.
//!
//! Each new event is one text message `{"event": Event, "session": Session}`. The session socket
//! accepts `?since_seq=N`: it first replays the stored events with `seq > N`, then streams live
//! ones; it subscribes before reading the database and skips `seq` it has already sent, so there
//! is no gap and no duplicate. If it ever sees a gap (a lagging subscriber), it fills it from the
//! database. Without `since_seq` it streams the events stored after the handshake.
//!
//! The account socket keeps the same per-session bookkeeping (starting from each open session's
//! `last_seq` at the handshake), so it too delivers every event once, in order per session.
//!
//! A plain `GET /v1/sessions/{id}/events` (no upgrade) answers the stored events as JSON
//! (`{"events": [Event]}`, `?since_seq=&limit=`), for clients that poll.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use crate::auth::AuthWithCredential;
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody};
use crate::events::LiveEvent;
use crate::model::{Event, LiveMessage, LiveMessageRef};
use crate::responses::{NO_SESSION, UNAUTHORIZED};
use crate::revocations::{Credential, Revoked};
use crate::routes::sessions::session_path_id;
use crate::state::AppState;
use crate::storage::Principal;

const PAGE: i64 = 1000;

/// `Some` when the request asks for a WebSocket upgrade (a failed handshake is a 400 JSON error),
/// `None` for a plain HTTP request.
pub struct MaybeWs(pub Option<WebSocketUpgrade>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for MaybeWs {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        if !parts.headers.contains_key(axum::http::header::UPGRADE) {
            return Ok(MaybeWs(None));
        }
        WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(|u| MaybeWs(Some(u)))
            .map_err(|r| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_websocket_handshake",
                    format!("WebSocket handshake refused: {}", r.body_text()),
                )
            })
    }
}

/// Query of the session event stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionEventsQuery {
    /// Only events with a greater `seq` (the WebSocket replays them first).
    #[param(minimum = 0)]
    pub since_seq: Option<i64>,
    /// JSON form only: at most this many events, 1 to 10000 (default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
    /// WebSocket only: the bearer token, for browsers, which cannot set the header.
    pub token: Option<String>,
}

/// Query of the account event stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccountEventsQuery {
    /// The bearer token, for browsers, which cannot set the header.
    pub token: Option<String>,
}

/// `{"events": [Event]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// By `seq`.
    pub events: Vec<Event>,
}

/// A session's events: live (WebSocket) or stored (JSON)
///
/// With `Upgrade: websocket` each new event is one text message, a `LiveMessage`; with
/// `since_seq` the stored events after it are replayed first, with no gap and no duplicate.
/// Without an upgrade the stored events are answered as JSON, for clients that poll.
#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/events",
    operation_id = "session_events",
    tag = "events",
    params(("id" = String, Path, description = "Session id (UUID)"), SessionEventsQuery),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "WebSocket: one `LiveMessage` per event", body = LiveMessage),
        (status = 200, description = "The stored events (no upgrade)", body = EventList),
        (status = 400, description = "A refused WebSocket handshake", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = NO_SESSION, body = ErrorBody),
        (status = 422, description = "Invalid `since_seq` or `limit`", body = ErrorBody),
    )
)]
pub async fn session_events(
    State(state): State<AppState>,
    AuthWithCredential(p, cred): AuthWithCredential,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SessionEventsQuery>,
    MaybeWs(ws): MaybeWs,
) -> Result<Response, ApiError> {
    let sid = session_path_id(&id)?;
    // Subscribe before reading the database (and before answering 101): nothing committed after
    // the read can be missed.
    let rx = state.hub.subscribe();
    let revoked = state.revocations.subscribe();
    let session = state
        .store
        .get_session(&p.account_id, &sid, 0)
        .await?
        .ok_or_else(|| ApiError::session_not_found(&id))?;
    if let Some(s) = q.since_seq
        && s < 0
    {
        return Err(ApiError::invalid("`since_seq` must be 0 or more"));
    }
    let Some(ws) = ws else {
        let limit = q.limit.unwrap_or(1000);
        if !(1..=10_000).contains(&limit) {
            return Err(ApiError::invalid("`limit` must be between 1 and 10000"));
        }
        let events = state
            .store
            .list_events(&p.account_id, &sid, q.since_seq.unwrap_or(0), limit)
            .await?;
        return Ok(Json(EventList { events }).into_response());
    };
    // Live only: start after the last event stored when the handshake was answered.
    let start = q.since_seq.unwrap_or(session.last_seq);
    let replay = q.since_seq.is_some();
    Ok(ws
        .on_upgrade(move |socket| async move {
            let _guard = state.sockets.enter();
            state.metrics.ws_connections.fetch_add(1, Ordering::Relaxed);
            let watch = Watch { cred, revoked };
            session_socket(&state, socket, rx, watch, p, sid, start, replay).await;
            state.metrics.ws_connections.fetch_sub(1, Ordering::Relaxed);
        })
        .into_response())
}

/// Live events of the whole account (WebSocket)
///
/// Each new event of any of the account's sessions is one text message, a `LiveMessage`, in
/// order per session.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "account_events",
    tag = "events",
    params(AccountEventsQuery),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "WebSocket: one `LiveMessage` per event", body = LiveMessage),
        (status = 400, description = "A refused WebSocket handshake", body = ErrorBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 422, description = "Invalid query string", body = ErrorBody),
        (status = 426, description = "Not a WebSocket request (`websocket_required`)", body = ErrorBody),
    )
)]
pub async fn account_events(
    State(state): State<AppState>,
    AuthWithCredential(p, cred): AuthWithCredential,
    ApiQuery(_q): ApiQuery<AccountEventsQuery>,
    MaybeWs(ws): MaybeWs,
) -> Result<Response, ApiError> {
    let Some(ws) = ws else {
        return Err(ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket_required",
            "/v1/events is a WebSocket: connect with `Upgrade: websocket`",
        ));
    };
    // Subscribe, then note where each open session stands: later events are exactly those with
    // a higher seq (sessions created later start at 0).
    let rx = state.hub.subscribe();
    let revoked = state.revocations.subscribe();
    let seen = state.store.live_session_seqs(&p.account_id).await?;
    Ok(ws
        .on_upgrade(move |socket| async move {
            let _guard = state.sockets.enter();
            state.metrics.ws_connections.fetch_add(1, Ordering::Relaxed);
            let watch = Watch { cred, revoked };
            account_socket(&state, socket, rx, watch, p, seen).await;
            state.metrics.ws_connections.fetch_sub(1, Ordering::Relaxed);
        })
        .into_response())
}

enum Step {
    Continue,
    Stop,
}

async fn send_text(state: &AppState, socket: &mut WebSocket, text: &str) -> Step {
    match socket.send(Message::Text(text.to_string().into())).await {
        Ok(()) => {
            state
                .metrics
                .ws_messages_sent
                .fetch_add(1, Ordering::Relaxed);
            Step::Continue
        }
        Err(_) => Step::Stop,
    }
}

/// Sends stored events with `last < seq < until` (all when `until` is None); updates `last`.
async fn backfill(
    state: &AppState,
    socket: &mut WebSocket,
    p: &Principal,
    sid: &str,
    last: &mut i64,
    until: Option<i64>,
) -> Result<Step, ApiError> {
    loop {
        let events = state
            .store
            .list_events(&p.account_id, sid, *last, PAGE)
            .await?;
        if events.is_empty() {
            return Ok(Step::Continue);
        }
        let session = state
            .store
            .get_session(&p.account_id, sid, crate::clock::Now::system().s())
            .await?
            .ok_or_else(|| ApiError::session_not_found(sid))?;
        for ev in events {
            if until.is_some_and(|u| ev.seq >= u) {
                return Ok(Step::Continue);
            }
            *last = ev.seq;
            let text = serde_json::to_string(&LiveMessageRef {
                event: &ev,
                session: &session,
            })
            .unwrap_or_default();
            if let Step::Stop = send_text(state, socket, &text).await {
                return Ok(Step::Stop);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn session_socket(
    state: &AppState,
    mut socket: WebSocket,
    mut rx: Receiver<Arc<LiveEvent>>,
    mut watch: Watch,
    p: Principal,
    sid: String,
    start: i64,
    replay: bool,
) {
    let mut shutdown = state.shutdown.clone();
    let mut last = start;
    if replay {
        match backfill(state, &mut socket, &p, &sid, &mut last, None).await {
            Ok(Step::Continue) => {}
            Ok(Step::Stop) => return,
            Err(e) => return close_with_error(socket, &e).await,
        }
    }
    let mut ping = tokio::time::interval(state.config.ws_ping);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let step = match msg {
                    Ok(ev) => {
                        if ev.account_id != p.account_id || ev.session_id != sid || ev.seq <= last {
                            continue;
                        }
                        if ev.seq > last + 1 {
                            match backfill(state, &mut socket, &p, &sid, &mut last, Some(ev.seq)).await {
                                Ok(Step::Continue) => {}
                                Ok(Step::Stop) => return,
                                Err(e) => return close_with_error(socket, &e).await,
                            }
                        }
                        last = ev.seq;
                        send_text(state, &mut socket, &ev.message).await
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "session socket lagged; refilling from the database");
                        match backfill(state, &mut socket, &p, &sid, &mut last, None).await {
                            Ok(step) => step,
                            Err(e) => return close_with_error(socket, &e).await,
                        }
                    }
                    Err(RecvError::Closed) => Step::Stop,
                };
                if let Step::Stop = step {
                    return;
                }
            }
            incoming = socket.recv() => {
                if let Step::Stop = on_incoming(incoming) {
                    return;
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
                if !watch.still_valid(state).await {
                    return credentials_withdrawn(socket).await;
                }
            }
            r = watch.revoked.recv() => {
                if watch.must_close(r, &p, state).await {
                    return credentials_withdrawn(socket).await;
                }
            }
            _ = shutdown.changed() => {
                return going_away(socket).await;
            }
        }
    }
}

async fn account_socket(
    state: &AppState,
    mut socket: WebSocket,
    mut rx: Receiver<Arc<LiveEvent>>,
    mut watch: Watch,
    p: Principal,
    mut seen: HashMap<String, i64>,
) {
    let mut shutdown = state.shutdown.clone();
    let mut ping = tokio::time::interval(state.config.ws_ping);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = rx.recv() => {
                match msg {
                    Ok(ev) => {
                        let ev: Arc<LiveEvent> = ev;
                        if ev.account_id != p.account_id {
                            continue;
                        }
                        let mut last = seen.get(&ev.session_id).copied().unwrap_or(0);
                        if ev.seq <= last {
                            continue;
                        }
                        if ev.seq > last + 1 {
                            match backfill(state, &mut socket, &p, &ev.session_id, &mut last, Some(ev.seq)).await {
                                Ok(Step::Continue) => {}
                                Ok(Step::Stop) => return,
                                Err(e) => return close_with_error(socket, &e).await,
                            }
                        }
                        seen.insert(ev.session_id.clone(), ev.seq);
                        if let Step::Stop = send_text(state, &mut socket, &ev.message).await {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        let e = ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "lagged",
                            format!("this connection fell {n} events behind; reconnect and catch up per session with since_seq"),
                        );
                        return close_with_error(socket, &e).await;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
            incoming = socket.recv() => {
                if let Step::Stop = on_incoming(incoming) {
                    return;
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
                if !watch.still_valid(state).await {
                    return credentials_withdrawn(socket).await;
                }
            }
            r = watch.revoked.recv() => {
                if watch.must_close(r, &p, state).await {
                    return credentials_withdrawn(socket).await;
                }
            }
            _ = shutdown.changed() => {
                return going_away(socket).await;
            }
        }
    }
}

/// What a socket keeps to notice that its credential was withdrawn.
struct Watch {
    cred: Credential,
    revoked: broadcast::Receiver<Revoked>,
}

impl Watch {
    /// Asks the database again; a database error keeps the socket (it is not a revocation).
    async fn still_valid(&self, state: &AppState) -> bool {
        match self.cred.still_valid(&state.store).await {
            Ok(valid) => valid,
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-check a WebSocket's credential");
                true
            }
        }
    }

    /// Whether a revocation notice (or a gap in them) ends this socket.
    async fn must_close(
        &self,
        r: Result<Revoked, broadcast::error::RecvError>,
        p: &Principal,
        state: &AppState,
    ) -> bool {
        match r {
            Ok(r) => r.applies_to(p, &self.cred),
            // Notices were missed: ask the database instead.
            Err(broadcast::error::RecvError::Lagged(_)) => !self.still_valid(state).await,
            Err(broadcast::error::RecvError::Closed) => false,
        }
    }
}

/// Closes with 1008: the token was revoked, or the dashboard user signed out.
async fn credentials_withdrawn(mut socket: WebSocket) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: close_code::POLICY,
            reason: "credentials revoked".into(),
        })))
        .await;
}

/// Client messages are ignored (axum answers pings); a close or an error ends the loop.
fn on_incoming(incoming: Option<Result<Message, axum::Error>>) -> Step {
    match incoming {
        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => Step::Stop,
        Some(Ok(_)) => Step::Continue,
    }
}

async fn going_away(mut socket: WebSocket) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: close_code::AWAY,
            reason: "server shutting down".into(),
        })))
        .await;
}

async fn close_with_error(mut socket: WebSocket, e: &ApiError) {
    let text =
        serde_json::to_string(&ErrorBody::new(e.code, e.message.clone())).unwrap_or_default();
    let _ = socket.send(Message::Text(text.into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: close_code::AGAIN,
            reason: e.code.into(),
        })))
        .await;
}
