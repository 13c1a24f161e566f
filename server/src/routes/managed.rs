//! Managed sessions: the server creates the sandbox (`POST /v1/sessions` with `"managed": true`),
//! pauses, resumes and deletes it, and records each transition itself, so billing follows the
//! server's own observations. Clients then talk to the sandbox's envd directly with the URL and
//! the per-sandbox token these answers carry; the server is never in the data path.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Auth;
use crate::clock::Now;
use crate::error::{ApiError, ApiPath, ErrorBody};
use crate::model::{EventKind, Session};
use crate::responses::{NO_SESSION, UNAUTHORIZED};
use crate::sandboxes::{Reached, Sandboxes};
use crate::state::AppState;
use crate::storage::NewSession;
use crate::validate;
use rclaude_sandbox::provider::ClientAccess;

/// Body of `POST /v1/sessions` creating a managed session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateManaged {
    /// `true`: the server creates and owns the sandbox.
    pub managed: bool,
    /// E.g. `github.com/acme/app`: 1 to 300 characters, no control characters or surrounding
    /// spaces.
    #[schema(min_length = 1, max_length = 300)]
    pub repository: String,
    /// The session's name, also the branch it works on (default: the branch cloned, else
    /// `main`); 1 to 255 characters.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    pub name: Option<String>,
    /// Start from a repository URL: the new sandbox clones it (any URL git accepts, optionally
    /// `@REF`: a branch, tag or commit). When the clone fails (not a repository, unknown REF,
    /// credentials) the sandbox is destroyed and nothing is recorded (422).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 2000)]
    pub clone_url: Option<String>,
    /// Token for cloning a private repository: handed to git in the sandbox for this clone only
    /// (a credential helper's environment), never stored, logged or answered.
    #[serde(default)]
    #[schema(value_type = Option<String>, write_only, max_length = 1000)]
    pub git_token: Option<GitToken>,
    /// The provider's template (image) to start the sandbox from (default: the provider's);
    /// 1 to 200 characters of letters, digits and `._:/@-`. One the provider does not know
    /// is a 422.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub template: Option<String>,
    /// CPU and memory for the sandbox (default: the provider's).
    #[serde(default)]
    pub resources: Option<Resources>,
    /// Seconds without client activity after which the server pauses the session (60 to
    /// 604800; default: the deployment's `--idle-pause`). Checked at least every 30 seconds.
    #[serde(default)]
    #[schema(minimum = 60, maximum = 604800)]
    pub idle_pause: Option<u64>,
}

/// A managed sandbox's size.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Virtual CPUs, 1 to 64.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 64)]
    pub cpu: Option<u32>,
    /// Memory in MiB, 128 to 262144.
    #[serde(default)]
    #[schema(minimum = 128, maximum = 262144)]
    pub memory_mb: Option<u32>,
}

/// Check the sandbox settings of a create request.
fn check_settings(body: &CreateManaged) -> Result<(), ApiError> {
    if let Some(t) = &body.template
        && (t.is_empty()
            || t.len() > 200
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:/@-".contains(&b)))
    {
        return Err(ApiError::invalid(
            "template: 1 to 200 letters, digits and `._:/@-`",
        ));
    }
    if let Some(r) = &body.resources {
        if r.cpu.is_some_and(|c| !(1..=64).contains(&c)) {
            return Err(ApiError::invalid("resources.cpu: 1 to 64"));
        }
        if r.memory_mb.is_some_and(|m| !(128..=262_144).contains(&m)) {
            return Err(ApiError::invalid(
                "resources.memory_mb: 128 to 262144 (MiB)",
            ));
        }
    }
    if body
        .idle_pause
        .is_some_and(|s| !(60..=604_800).contains(&s))
    {
        return Err(ApiError::invalid(
            "idle_pause: 60 to 604800 seconds (one minute to a week)",
        ));
    }
    Ok(())
}

/// A token for the upstream: shown as `***` wherever it is printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct GitToken(pub String);

impl std::fmt::Debug for GitToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// How a client reaches a managed session's sandbox, directly: its envd (`kind` `envd`: E2B,
/// the local agent) or Daytona's toolbox proxy (`kind` `daytona_toolbox`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SandboxAccess {
    /// The provider's sandbox id.
    pub id: String,
    /// `envd` or `daytona_toolbox`: which of the URLs below is set and what the token is.
    #[schema(example = "envd")]
    pub kind: &'static str,
    /// `envd`: base URL of the sandbox's envd (process and file APIs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envd_url: Option<String>,
    /// `daytona_toolbox`: Daytona's toolbox proxy; the sandbox's toolbox is at
    /// `{toolbox_url}/{id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toolbox_url: Option<String>,
    /// `envd`: send as `X-Access-Token`; `daytona_toolbox`: the sandbox's preview token, send as
    /// `X-Daytona-Preview-Token`. Valid for this one sandbox only.
    #[schema(required = true)]
    pub access_token: Option<String>,
    /// The repository's directory inside the sandbox.
    pub workdir: String,
    /// Headers to send with every envd request besides the token (E2B's sandbox routing
    /// headers when its sandboxes share one address); absent when none are needed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// A managed session and, while it runs, how to reach its sandbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct ManagedBody {
    pub session: Session,
    /// Absent once the session is paused or stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxAccess>,
}

fn access(r: Reached) -> Result<SandboxAccess, ApiError> {
    let a = r.access.ok_or_else(|| {
        ApiError::internal("the sandbox provider gives no direct access to this sandbox")
    })?;
    Ok(match a {
        ClientAccess::Envd(a) => SandboxAccess {
            id: r.sandbox_id,
            kind: "envd",
            envd_url: Some(a.url),
            toolbox_url: None,
            access_token: a.access_token,
            workdir: r.workdir,
            headers: a.headers,
        },
        ClientAccess::DaytonaToolbox {
            toolbox_url,
            preview_token,
        } => SandboxAccess {
            id: r.sandbox_id,
            kind: "daytona_toolbox",
            envd_url: None,
            toolbox_url: Some(toolbox_url),
            access_token: Some(preview_token),
            workdir: r.workdir,
            headers: BTreeMap::new(),
        },
    })
}

/// The `Idempotency-Key` header, when sent: 1 to 200 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .map_err(|_| ApiError::invalid("Idempotency-Key: visible ASCII characters only"))?;
    validate::idempotency_key(key)?;
    Ok(Some(key.to_string()))
}

/// `POST /v1/sessions` with `"managed": true` (dispatched from `sessions::create`).
pub async fn create(
    state: &AppState,
    account_id: &str,
    now: Now,
    headers: &HeaderMap,
    body: CreateManaged,
) -> Result<(StatusCode, Json<ManagedBody>), ApiError> {
    if !body.managed {
        return Err(ApiError::invalid("`managed` must be true here"));
    }
    validate::repository(&body.repository)?;
    check_settings(&body)?;
    if let Some(n) = &body.name {
        validate::branch(n)?;
    }
    let source = match &body.clone_url {
        Some(u) => {
            if u.len() > 2000 {
                return Err(ApiError::invalid("clone_url: at most 2000 characters"));
            }
            let (url, git_ref) = rclaude_deliver::upstream::parse_start_target(u)
                .map_err(|m| ApiError::invalid(format!("clone_url: {m}")))?;
            Some((url, git_ref))
        }
        None => None,
    };
    if let Some(t) = &body.git_token
        && (t.0.is_empty() || t.0.len() > 1000 || t.0.chars().any(|c| c.is_control() || c == ' '))
    {
        return Err(ApiError::invalid("git_token: 1 to 1000 visible characters"));
    }
    let key = idempotency_key(headers)?;
    let sandboxes = crate::managed::sandboxes(state)?;
    if let Some(k) = &key
        && let Some(existing) = state
            .store
            .session_by_idempotency_key(account_id, k, now.ms())
            .await?
    {
        return again(state, sandboxes, existing).await;
    }
    crate::limits::admit(&state.store, account_id, now).await?;
    // Made in a task of its own: a client that goes away, or the request deadline, cannot cut a
    // start short between creating the sandbox and recording it (or destroying it). A clone that
    // outlasts the deadline finishes in the background; its session then shows in the list.
    let task = tokio::spawn(make(
        state.clone(),
        sandboxes.clone(),
        account_id.to_string(),
        now,
        Plan {
            repository: body.repository,
            name: body.name,
            source,
            token: body.git_token,
            key,
            template: body.template,
            resources: body.resources,
            idle_pause_ms: body.idle_pause.map(|s| s as i64 * 1000),
        },
    ));
    match task.await {
        Ok(Ok(Made::New(session, reached))) => Ok((
            StatusCode::CREATED,
            Json(ManagedBody {
                session,
                sandbox: Some(access(reached)?),
            }),
        )),
        Ok(Ok(Made::Existing(session))) => again(state, sandboxes, session).await,
        Ok(Err(e)) => Err(e),
        Err(e) => {
            tracing::error!(error = %e, "a managed session's start failed unexpectedly");
            Err(ApiError::internal(
                "starting the session failed; see the server log",
            ))
        }
    }
}

/// What a managed start makes, decided before the sandbox exists.
struct Plan {
    repository: String,
    name: Option<String>,
    /// `(URL, REF)` to clone into the new sandbox.
    source: Option<(String, Option<String>)>,
    token: Option<GitToken>,
    key: Option<String>,
    template: Option<String>,
    resources: Option<Resources>,
    idle_pause_ms: Option<i64>,
}

/// What [`make`] answers.
enum Made {
    /// A new session, recorded, and how to reach its sandbox.
    New(Session, Reached),
    /// A concurrent create with the same idempotency key won: its session.
    Existing(Session),
}

/// Create the sandbox, clone into it when asked, record the session; on any failure nothing
/// is left (the sandbox is destroyed, nothing is recorded or billed).
async fn make(
    state: AppState,
    sandboxes: Sandboxes,
    account_id: String,
    now: Now,
    plan: Plan,
) -> Result<Made, ApiError> {
    let id = uuid::Uuid::new_v4().to_string();
    let size = crate::sandboxes::Size {
        template: plan.template.clone(),
        cpu: plan.resources.and_then(|r| r.cpu),
        memory_mb: plan.resources.and_then(|r| r.memory_mb),
    };
    let reached = sandboxes
        .create(&plan.repository, &id, &account_id, &size)
        .await?;
    let mut cloned_branch = None;
    if let Some((url, git_ref)) = &plan.source {
        let token = plan.token.as_ref().map(|t| t.0.as_str());
        match sandboxes
            .clone_into(&reached, url, git_ref.as_deref(), token)
            .await
        {
            Ok(c) => cloned_branch = c.branch,
            Err(e) => {
                let _ = sandboxes.kill(&reached.sandbox_id).await;
                return Err(e);
            }
        }
    }
    let branch = plan
        .name
        .or(cloned_branch)
        .unwrap_or_else(|| "main".to_string());
    let new = NewSession {
        id: id.clone(),
        repository: plan.repository,
        branch,
        provider: sandboxes.kind().as_str().to_string(),
        sandbox_id: Some(reached.sandbox_id.clone()),
        config_hash: None,
        managed: true,
        idempotency_key: plan.key.clone(),
        idle_pause_ms: plan.idle_pause_ms,
    };
    if let Err(e) = state
        .store
        .create_session(&account_id, &new, now.ms())
        .await
    {
        // Not recorded: the sandbox must not live on unbilled. A concurrent create with the
        // same key won the race: answer its session.
        let _ = sandboxes.kill(&reached.sandbox_id).await;
        if let Some(k) = &plan.key
            && let Some(existing) = state
                .store
                .session_by_idempotency_key(&account_id, k, now.ms())
                .await?
        {
            return Ok(Made::Existing(existing));
        }
        return Err(e.into());
    }
    let session = crate::managed::record(&state, &account_id, &id, EventKind::Started, now).await?;
    state
        .metrics
        .sessions_created
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Made::New(session, reached))
}

/// A retried create: the session it made, reachable again while it runs.
async fn again(
    _state: &AppState,
    sandboxes: &Sandboxes,
    session: Session,
) -> Result<(StatusCode, Json<ManagedBody>), ApiError> {
    let sandbox = match (&session.sandbox_id, session.state.as_str()) {
        (Some(sid), "running") => Some(access(sandboxes.reach(sid).await?)?),
        _ => None,
    };
    Ok((StatusCode::OK, Json(ManagedBody { session, sandbox })))
}

/// Pause a managed session
///
/// Pauses the sandbox at the provider and stops billing active time. Pausing a paused session
/// changes nothing.
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/pause",
    operation_id = "pause_session",
    tag = "sessions",
    params(("id" = String, Path, description = "Session id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Paused", body = ManagedBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = NO_SESSION, body = ErrorBody),
        (status = 409, description = "Not a managed session (`session_not_managed`) or stopped (`session_stopped`)", body = ErrorBody),
        (status = 501, description = "This server manages no sandboxes", body = ErrorBody),
        (status = 502, description = "The sandbox provider failed", body = ErrorBody),
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ManagedBody>, ApiError> {
    let session = crate::managed::pause(&state, &p.account_id, &id, now).await?;
    Ok(Json(ManagedBody {
        session,
        sandbox: None,
    }))
}

/// Resume a managed session
///
/// Resumes the sandbox and answers how to reach it. Resuming a running session only answers
/// how to reach it (what another machine of the same account does to join the session).
#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/resume",
    operation_id = "resume_session",
    tag = "sessions",
    params(("id" = String, Path, description = "Session id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Running", body = ManagedBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = NO_SESSION, body = ErrorBody),
        (status = 409, description = "Not a managed session (`session_not_managed`) or stopped (`session_stopped`)", body = ErrorBody),
        (status = 402, description = "The account's monthly budget is spent (`budget_exhausted`)", body = ErrorBody),
        (status = 410, description = "The provider lost the sandbox (`sandbox_gone`)", body = ErrorBody),
        (status = 429, description = "The account already runs as many sessions as it may (`too_many_sessions`)", body = ErrorBody),
        (status = 501, description = "This server manages no sandboxes", body = ErrorBody),
        (status = 502, description = "The sandbox provider failed", body = ErrorBody),
        (status = 503, description = "The sandbox provider cannot be used on this machine", body = ErrorBody),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ManagedBody>, ApiError> {
    let (session, reached) = crate::managed::resume(&state, &p.account_id, &id, now).await?;
    Ok(Json(ManagedBody {
        session,
        sandbox: Some(access(reached)?),
    }))
}

/// Delete a managed session
///
/// Kills the sandbox (its files are gone) and stops the session; billing ends now.
#[utoipa::path(
    delete,
    path = "/v1/sessions/{id}",
    operation_id = "delete_session",
    tag = "sessions",
    params(("id" = String, Path, description = "Session id (UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Stopped; the sandbox is gone", body = ManagedBody),
        (status = 401, description = UNAUTHORIZED, body = ErrorBody),
        (status = 404, description = NO_SESSION, body = ErrorBody),
        (status = 409, description = "Not a managed session (`session_not_managed`) or already stopped (`session_stopped`)", body = ErrorBody),
        (status = 501, description = "This server manages no sandboxes", body = ErrorBody),
        (status = 502, description = "The sandbox provider failed", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    now: Now,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ManagedBody>, ApiError> {
    let session = crate::managed::delete(&state, &p.account_id, &id, now).await?;
    Ok(Json(ManagedBody {
        session,
        sandbox: None,
    }))
}
