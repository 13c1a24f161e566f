//! Managed sessions' transitions, shared by the API and the dashboard: pause, resume and delete
//! a session the server runs, after checking it is the caller's, managed and not stopped.

use axum::http::StatusCode;

use crate::clock::Now;
use crate::error::ApiError;
use crate::model::{EventKind, Session};
use crate::sandboxes::{Reached, Sandboxes};
use crate::state::AppState;

/// The deployment's provider of managed sandboxes, or 501 when it has none.
pub fn sandboxes(state: &AppState) -> Result<&Sandboxes, ApiError> {
    state.sandboxes.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "managed_sessions_disabled",
            "this server manages no sandboxes (started with --sandbox-provider none); report a \
             session you run yourself instead (without `managed`)",
        )
    })
}

/// Record a transition the server made on a managed session.
pub async fn record(
    state: &AppState,
    account_id: &str,
    session_id: &str,
    kind: EventKind,
    now: Now,
) -> Result<Session, ApiError> {
    let data = serde_json::json!({ "by": "server" });
    Ok(crate::sandboxes::record(&state.store, account_id, session_id, kind, now, data).await?)
}

/// A managed session of the caller's account, or the error that says why not.
pub async fn managed_session(
    state: &AppState,
    account_id: &str,
    id: &str,
    now: Now,
) -> Result<(String, Session), ApiError> {
    let sid = crate::validate::session_id("id", id).map_err(|_| ApiError::session_not_found(id))?;
    let session = state
        .store
        .get_session(account_id, &sid, now.s())
        .await?
        .ok_or_else(|| ApiError::session_not_found(id))?;
    if !session.managed {
        return Err(ApiError::conflict(
            "session_not_managed",
            format!(
                "session `{id}` runs in a sandbox its client controls; pause or stop it there \
                 (`rclaude pause` / `rclaude down`)"
            ),
        ));
    }
    if session.state == "stopped" {
        return Err(ApiError::conflict(
            "session_stopped",
            format!("session `{id}` is stopped; create a new one"),
        ));
    }
    Ok((sid, session))
}

pub fn sandbox_id(session: &Session) -> Result<&str, ApiError> {
    session
        .sandbox_id
        .as_deref()
        .ok_or_else(|| ApiError::internal("a managed session without a sandbox id"))
}

/// Pause a managed session (a paused one stays as it is).
pub async fn pause(
    state: &AppState,
    account: &str,
    id: &str,
    now: Now,
) -> Result<Session, ApiError> {
    let (sid, session) = managed_session(state, account, id, now).await?;
    if session.state == "paused" {
        return Ok(session);
    }
    let sandbox = sandbox_id(&session)?;
    if let Some(keeper) = state.safekeeper() {
        keeper.checkpoint(account, &sid, sandbox, "pause").await;
    }
    sandboxes(state)?.pause(sandbox).await?;
    record(state, account, &sid, EventKind::Paused, now).await
}

/// Resume a managed session (within the account's limits) and reach its sandbox.
pub async fn resume(
    state: &AppState,
    account: &str,
    id: &str,
    now: Now,
) -> Result<(Session, Reached), ApiError> {
    let (sid, session) = managed_session(state, account, id, now).await?;
    if session.state != "running" {
        crate::limits::admit(&state.store, account, now).await?;
    }
    let reached = sandboxes(state)?.reach(sandbox_id(&session)?).await?;
    let session = if session.state == "running" {
        session
    } else {
        record(state, account, &sid, EventKind::Resumed, now).await?
    };
    Ok((session, reached))
}

/// Kill a managed session's sandbox and stop the session.
pub async fn delete(
    state: &AppState,
    account: &str,
    id: &str,
    now: Now,
) -> Result<Session, ApiError> {
    let (sid, session) = managed_session(state, account, id, now).await?;
    let sandbox = sandbox_id(&session)?;
    // A paused sandbox is resumed by the export only to be killed: its pause checkpoint holds
    // its work already.
    if session.state == "running"
        && let Some(keeper) = state.safekeeper()
    {
        keeper.checkpoint(account, &sid, sandbox, "down").await;
    }
    sandboxes(state)?.kill(sandbox).await?;
    record(state, account, &sid, EventKind::Stopped, now).await
}
