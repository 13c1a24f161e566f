//! Managed sandboxes: the provider this server creates, pauses, resumes and kills sandboxes with
//! (the same provider library the CLI uses in direct mode). Provider keys come from the server's
//! environment and never leave this module: answers carry only a sandbox's envd URL and its
//! per-sandbox access token.

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use rclaude_sandbox::ProviderKind;
use rclaude_sandbox::provider::{ClientAccess, Provider, ProviderError, SandboxSpec, SandboxState};

use crate::clock::Now;
use crate::config::SandboxSettings;
use crate::error::ApiError;
use crate::model::{EventKind, Session};
use crate::storage::{NewEvent, Store, StoreError};

/// The provider of this deployment's managed sandboxes.
#[derive(Clone)]
pub struct Sandboxes {
    kind: ProviderKind,
    /// Where the repository lives inside each sandbox.
    workdir: String,
    /// `Err`: why this provider cannot be used on this machine (said on every request).
    provider: Result<Arc<dyn Provider>, String>,
}

impl std::fmt::Debug for Sandboxes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandboxes")
            .field("provider", &self.kind.as_str())
            .finish()
    }
}

/// What a managed session asks of its sandbox (`None`: the provider's default).
#[derive(Debug, Clone, Default)]
pub struct Size {
    pub template: Option<String>,
    pub cpu: Option<u32>,
    pub memory_mb: Option<u32>,
}

/// A sandbox's work as [`Sandboxes::export_work`] brought it home.
#[derive(Debug)]
pub struct Work {
    /// The sandbox's HEAD, or a WIP commit of its uncommitted edits on top of it.
    pub tip: git2::Oid,
    pub head: Option<git2::Oid>,
    /// The branch HEAD is on (`None`: detached).
    pub branch: Option<String>,
    pub wip: bool,
    /// The (snapshot, index) commits the last sync from a laptop installed.
    pub synced: Option<(git2::Oid, git2::Oid)>,
    /// The bundle builds on the `base` asked for (else it is whole but for published history).
    pub base_used: bool,
    /// The bundle and its length (`None`: the bases already hold every commit).
    pub bundle: Option<(tempfile::TempPath, u64)>,
}

/// A sandbox just created or resumed, and how clients reach it.
#[derive(Debug, Clone)]
pub struct Reached {
    pub sandbox_id: String,
    pub workdir: String,
    pub access: Option<ClientAccess>,
}

impl Sandboxes {
    /// The provider the settings name; `None` when the deployment manages no sandboxes.
    pub fn from_settings(s: &SandboxSettings) -> anyhow::Result<Option<Sandboxes>> {
        let Some(kind) = s.provider else {
            return Ok(None);
        };
        let provider: Result<Arc<dyn Provider>, String> = match kind {
            ProviderKind::Local => match s.agent_bin.clone().or_else(find_agent_bin) {
                Some(agent) => Ok(Arc::new(
                    rclaude_sandbox::provider::local::LocalProvider::at(s.dir.clone(), agent),
                )),
                None => {
                    let why = "managed sandboxes on the local provider need the `rclaude` \
                               executable (it runs each sandbox's agent): put it beside \
                               rclaude-server or on PATH, or start the server with --agent-bin"
                        .to_string();
                    tracing::warn!("{why}");
                    Err(why)
                }
            },
            ProviderKind::Northflank => anyhow::bail!(
                "--sandbox-provider {name}: managed sessions need a credential that reaches one \
                 sandbox and nothing else, handed to the client so the server stays out of the \
                 data path; rclaude cannot get one from {name} (its sandboxes are reached with \
                 the account's own key, which never leaves this server). Use `local`, `e2b` or \
                 `daytona` for managed sessions; people with their own {name} key use it in direct mode \
                 (`[sandbox] provider = \"{name}\"` and `managed = false` in `.rclaude.toml`)",
                name = kind.as_str()
            ),
            other => Ok(Arc::from(
                rclaude_sandbox::provider::select::for_kind(other)
                    .map_err(|e| anyhow::anyhow!("sandbox provider {}: {e}", other.as_str()))?,
            )),
        };
        Ok(Some(Sandboxes {
            kind,
            workdir: s.workdir.clone(),
            provider,
        }))
    }

    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn provider(&self) -> Result<&Arc<dyn Provider>, ApiError> {
        self.provider.as_ref().map_err(|why| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "sandbox_provider_unavailable",
                why.clone(),
            )
        })
    }

    /// Create a sandbox for `repository` and connect to it.
    pub async fn create(
        &self,
        repository: &str,
        session_id: &str,
        account_id: &str,
        size: &Size,
    ) -> Result<Reached, ApiError> {
        let spec = SandboxSpec {
            name: repository
                .rsplit('/')
                .next()
                .unwrap_or(repository)
                .to_string(),
            workdir: self.workdir.clone(),
            metadata: [
                ("rclaude.repo".to_string(), repository.to_string()),
                ("rclaude.session".to_string(), session_id.to_string()),
                ("rclaude.account".to_string(), account_id.to_string()),
                ("rclaude.managed".to_string(), "true".to_string()),
            ]
            .into(),
            image: size.template.clone(),
            cpu: size.cpu,
            memory_mb: size.memory_mb,
            // A provider's own timeout pauses (stops) the sandbox and keeps its files, never
            // deletes it: pausing and reaping are this server's decisions (Daytona deletes a
            // stopped sandbox created without this, E2B kills one at its timeout).
            auto_pause: true,
            ..SandboxSpec::default()
        };
        let info = self
            .provider()?
            .create(&spec)
            .await
            .map_err(|e| match e {
                // Create refused what the request asked for (a template it does not know, a size
                // it does not offer): the request's fault.
                ProviderError::Api {
                    status: 400 | 404 | 422,
                    message,
                    ..
                } => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "sandbox_settings_refused",
                    format!(
                        "the sandbox provider refused this session's settings (template, resources): {message}"
                    ),
                ),
                other => provider_error(other),
            })?;
        self.reach(&info.id).await
    }

    /// Connect to (and so resume) a sandbox.
    pub async fn reach(&self, sandbox_id: &str) -> Result<Reached, ApiError> {
        let provider = self.provider()?;
        let sandbox = provider.connect(sandbox_id).await.map_err(provider_error)?;
        let access = provider
            .client_access(sandbox_id, &*sandbox)
            .await
            .map_err(provider_error)?;
        Ok(Reached {
            sandbox_id: sandbox_id.to_string(),
            workdir: sandbox.workdir().to_string(),
            access,
        })
    }

    /// Clone `url` (at `git_ref`) into a new sandbox's work tree, from inside the sandbox, with
    /// `token` (for this clone only) in a credential helper's environment.
    pub async fn clone_into(
        &self,
        reached: &Reached,
        url: &str,
        git_ref: Option<&str>,
        token: Option<&str>,
    ) -> Result<rclaude_deliver::clone::Cloned, ApiError> {
        let sandbox = self
            .provider()?
            .connect(&reached.sandbox_id)
            .await
            .map_err(provider_error)?;
        let shown = rclaude_deliver::Upstream::parse(url).display();
        rclaude_deliver::clone::clone(&*sandbox, &reached.workdir, url, &shown, git_ref, token)
            .await
            .map_err(|e| {
                use rclaude_deliver::DeliverError as D;
                let code = match &e {
                    D::Auth { .. } => "repository_auth",
                    D::NotARepository { .. } => "not_a_repository",
                    D::UnknownRef { .. } => "unknown_ref",
                    D::Unreachable { .. } => "repository_unreachable",
                    _ => "clone_failed",
                };
                tracing::info!(code, "clone into a new managed sandbox failed");
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, e.to_string())
            })
    }

    /// What the provider says of a sandbox now (`None`: it no longer exists).
    pub async fn state(&self, sandbox_id: &str) -> Result<Option<SandboxState>, ApiError> {
        Ok(self
            .provider()?
            .info(sandbox_id)
            .await
            .map_err(provider_error)?
            .map(|i| i.state))
    }

    /// Sandboxes a server created (any server of this deployment): those carrying the
    /// `rclaude.account` label.
    pub async fn server_made(&self) -> Result<Vec<String>, ApiError> {
        Ok(self
            .provider()?
            .list()
            .await
            .map_err(provider_error)?
            .into_iter()
            .filter(|i| i.metadata.contains_key("rclaude.account"))
            .map(|i| i.id)
            .collect())
    }

    /// Snapshot a sandbox's work (its commits and a WIP commit of its uncommitted edits, made
    /// without touching its index, HEAD or branches) and bring home a bundle of what `base` and
    /// the sandbox's remote-tracking branches do not hold. `Ok(None)`: no commits and an empty
    /// work tree, or no repository there yet.
    pub async fn export_work(
        &self,
        sandbox_id: &str,
        base: Option<git2::Oid>,
    ) -> Result<Option<Work>, ApiError> {
        use rclaude_sandbox_git::{ExportMode, RepoState, StepError};
        let sandbox = self
            .provider()?
            .connect(sandbox_id)
            .await
            .map_err(provider_error)?;
        let step_failed = |e: StepError| {
            tracing::warn!(sandbox = sandbox_id, error = %e, "checkpoint export failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "checkpoint_export",
                format!("cannot snapshot the sandbox's work: {e}"),
            )
        };
        let q = rclaude_sandbox_git::query(&*sandbox)
            .await
            .map_err(step_failed)?;
        if q.state != RepoState::Ready {
            return Ok(None);
        }
        let out = rclaude_sandbox_git::remote_tmp_path(
            &*sandbox,
            &format!("checkpoint-{}.bundle", uuid::Uuid::new_v4()),
        );
        let bases: Vec<git2::Oid> = base.into_iter().collect();
        let e = rclaude_sandbox_git::export(
            &*sandbox,
            &ExportMode::Worktree,
            &bases,
            &["refs/remotes"],
            &out,
        )
        .await
        .map_err(step_failed)?;
        let Some(tip) = e.tip else {
            return Ok(None);
        };
        let bundle = match &e.bundle {
            None => None,
            Some((path, size)) => {
                let tmp = tempfile::NamedTempFile::new()
                    .map_err(|e| ApiError::internal(format!("creating a temporary file: {e}")))?
                    .into_temp_path();
                let got = sandbox.download(path, &tmp, None).await;
                let _ = sandbox.remove(path).await;
                let got = got.map_err(|err| {
                    ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "checkpoint_export",
                        format!("cannot download the checkpoint bundle from the sandbox: {err}"),
                    )
                })?;
                if got != *size {
                    return Err(ApiError::new(
                        StatusCode::BAD_GATEWAY,
                        "checkpoint_export",
                        format!("the checkpoint bundle arrived with {got} of {size} bytes"),
                    ));
                }
                Some((tmp, got))
            }
        };
        Ok(Some(Work {
            tip,
            head: e.head,
            branch: e.branch,
            wip: e.wip,
            synced: e.synced,
            base_used: base.is_some_and(|b| e.bases_found.contains(&b)),
            bundle,
        }))
    }

    /// Keep a running sandbox from being paused by its provider for `lifetime` more.
    pub async fn keep_alive(
        &self,
        sandbox_id: &str,
        lifetime: std::time::Duration,
    ) -> Result<(), ApiError> {
        self.provider()?
            .keep_alive(sandbox_id, lifetime)
            .await
            .map_err(provider_error)
    }

    pub async fn pause(&self, sandbox_id: &str) -> Result<(), ApiError> {
        self.provider()?
            .pause(sandbox_id)
            .await
            .map_err(provider_error)
    }

    /// Kill a sandbox; one that is already gone is not an error.
    pub async fn kill(&self, sandbox_id: &str) -> Result<(), ApiError> {
        match self.provider()?.kill(sandbox_id).await {
            Ok(()) | Err(ProviderError::NotFound(_)) => Ok(()),
            Err(e) => Err(provider_error(e)),
        }
    }
}

/// A provider failure as an API error (its message never carries a key: providers redact).
fn provider_error(e: ProviderError) -> ApiError {
    tracing::warn!(error = %e, "sandbox provider call failed");
    match e {
        ProviderError::NotFound(m) => ApiError::new(StatusCode::GONE, "sandbox_gone", m),
        ProviderError::Config(m) => ApiError::invalid(m),
        other => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "sandbox_provider",
            format!("the sandbox provider failed: {other}"),
        ),
    }
}

/// `rclaude` beside this executable, else on PATH.
fn find_agent_bin() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("rclaude")))
        .filter(|p| p.is_file());
    beside.or_else(|| rclaude_sandbox::host::find_on_path("rclaude"))
}

/// Record a transition the server made on a managed session (its clock, its own idempotency
/// key): the server's record is what managed sessions are billed from.
pub async fn record(
    store: &Store,
    account_id: &str,
    session_id: &str,
    kind: EventKind,
    now: Now,
    data: serde_json::Value,
) -> Result<Session, StoreError> {
    let lost = data["reason"] == "lost" || data["reason"] == "gone";
    let new = NewEvent {
        kind,
        idempotency_key: format!("server:{}:{}", kind.as_str(), uuid::Uuid::new_v4()),
        data,
        by_server: true,
        lost,
    };
    Ok(store
        .append_event(account_id, session_id, &new, now.ms())
        .await?
        .session)
}
