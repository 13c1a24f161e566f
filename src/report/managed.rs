//! Managed mode: the rclaude server owns the sandbox. A [`Provider`] whose lifecycle calls go to
//! the server's API (create, pause, resume, delete) and whose sandboxes are reached directly
//! through the envd URL (or Daytona toolbox) and per-sandbox token the server answers; the
//! server is never in the data path of files and processes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{ServerClient, ServerError};
use crate::envd::client::EnvdClient;
use crate::provider::daytona::DaytonaSandbox;
use crate::provider::envd_sandbox::EnvdSandbox;
use crate::provider::{
    Capabilities, Provider, ProviderError, Sandbox, SandboxError, SandboxInfo, SandboxSpec,
    SandboxState,
};

/// The name managed sessions are recorded under (in place of a provider's).
pub const MANAGED: &str = "managed";

/// Sandboxes the server creates and runs for this account. Sandbox ids are the server's
/// session ids.
pub struct ManagedProvider {
    client: ServerClient,
    /// Where the envd access the server answered is kept between commands (files 0600, one
    /// per session), so that `exec` reaches a running sandbox without asking the server first.
    cache: PathBuf,
    /// The repository and branch new sessions are for; `None`: only listing (every repository).
    target: Option<(String, String)>,
}

impl ManagedProvider {
    /// Sessions for `repository` (as the server names it) on `branch`.
    pub fn new(client: ServerClient, repository: String, branch: String) -> ManagedProvider {
        ManagedProvider {
            client,
            cache: default_cache(),
            target: Some((repository, branch)),
        }
    }

    /// The account's managed sessions of every repository, from every machine (`list` only).
    pub fn account(client: ServerClient) -> ManagedProvider {
        ManagedProvider {
            client,
            cache: default_cache(),
            target: None,
        }
    }

    fn cache_file(&self, session: &str) -> Option<PathBuf> {
        let safe = !session.is_empty()
            && session
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        safe.then(|| self.cache.join(format!("{session}.json")))
    }

    /// Keep a create/resume answer for the next command (best effort: a failure only costs a
    /// round trip to the server later).
    fn remember(&self, session: &str, answer: &Value) {
        let Some(path) = self.cache_file(session) else {
            return;
        };
        let keep = serde_json::json!({
            "session": { "provider": answer["session"]["provider"] },
            "sandbox": answer["sandbox"],
        });
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::create_dir_all(&self.cache)?;
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(keep.to_string().as_bytes())?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::debug!(
                "cannot keep the sandbox's access in {}: {e}",
                path.display()
            );
        }
    }

    fn forget(&self, session: &str) {
        if let Some(path) = self.cache_file(session) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The sandbox of a kept answer, when it still answers (envd access only: a Daytona
    /// toolbox is asked for through the server each time, which also resumes it).
    async fn remembered(&self, session: &str) -> Option<Arc<dyn Sandbox>> {
        let path = self.cache_file(session)?;
        let answer: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let url = answer["sandbox"]["envd_url"].as_str()?;
        let token = answer["sandbox"]["access_token"]
            .as_str()
            .map(str::to_string);
        let client = EnvdClient::new(url, token, routing(&answer["sandbox"]).ok()?).ok()?;
        client.health().await.ok()?;
        Self::sandbox_with(client, &answer).ok()
    }

    /// The sandbox a managed-session answer points at.
    fn sandbox(answer: &Value) -> Result<Arc<dyn Sandbox>, ProviderError> {
        let s = &answer["sandbox"];
        if s["kind"] == "daytona_toolbox" {
            let (Some(url), Some(id), Some(workdir), Some(token)) = (
                s["toolbox_url"].as_str(),
                s["id"].as_str(),
                s["workdir"].as_str(),
                s["access_token"].as_str(),
            ) else {
                return Err(protocol(
                    "the server's answer names no Daytona toolbox to reach",
                ));
            };
            return Ok(Arc::new(DaytonaSandbox::with_preview_token(
                url, id, workdir, token,
            )?));
        }
        let Some(url) = s["envd_url"].as_str() else {
            return Err(protocol(
                "the server's answer names no sandbox to reach (is the session running?)",
            ));
        };
        let client = EnvdClient::new(
            url,
            s["access_token"].as_str().map(str::to_string),
            routing(s)?,
        )?;
        Self::sandbox_with(client, answer)
    }

    /// Like [`Self::sandbox`], through an envd client already made for it.
    fn sandbox_with(client: EnvdClient, answer: &Value) -> Result<Arc<dyn Sandbox>, ProviderError> {
        let s = &answer["sandbox"];
        let (Some(id), Some(workdir)) = (s["id"].as_str(), s["workdir"].as_str()) else {
            return Err(protocol("the server's answer names no sandbox to reach"));
        };
        // E2B's envd runs commands in a login shell, as its SDK does; the local agent does not.
        let login_shell = answer["session"]["provider"] == "e2b";
        let sandbox = EnvdSandbox::new(client, id, workdir, login_shell);
        Ok(Arc::new(if answer["session"]["provider"] == "local" {
            sandbox.rclaude_agent()
        } else {
            sandbox
        }))
    }

    fn info(session: &Value, workdir: &str) -> Option<SandboxInfo> {
        let state = match session["state"].as_str()? {
            "running" => SandboxState::Running,
            "paused" => SandboxState::Paused,
            "stopped" => return None,
            other => SandboxState::Other(other.to_string()),
        };
        Some(SandboxInfo {
            id: session["id"].as_str()?.to_string(),
            provider: MANAGED.to_string(),
            state,
            workdir: workdir.to_string(),
            metadata: BTreeMap::from([
                (
                    "rclaude.repo".to_string(),
                    session["repository"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                ),
                (
                    "rclaude.branch".to_string(),
                    session["branch"].as_str().unwrap_or_default().to_string(),
                ),
                (
                    "rclaude.provider".to_string(),
                    session["provider"].as_str().unwrap_or_default().to_string(),
                ),
            ]),
            started_at: session["created_at"].as_str().map(str::to_string),
            end_at: None,
        })
    }
}

fn protocol(m: &str) -> ProviderError {
    ProviderError::Sandbox(SandboxError::Protocol(m.to_string()))
}

/// A server error as a provider error: a session the server no longer has is gone.
fn server_error(e: ServerError) -> ProviderError {
    match e {
        ServerError::NotFound(m) => ProviderError::NotFound(m),
        ServerError::Rejected {
            status: 410,
            message,
            ..
        } => ProviderError::NotFound(message),
        ServerError::Rejected {
            status: 409,
            code,
            message,
        } if code == "session_stopped" => ProviderError::NotFound(message),
        other => ProviderError::Api {
            provider: "rclaude server".into(),
            status: match &other {
                ServerError::Rejected { status, .. } => *status,
                ServerError::Unauthorized(_) => 401,
                _ => 0,
            },
            message: other.to_string(),
            hint: None,
        },
    }
}

#[async_trait]
impl Provider for ManagedProvider {
    fn name(&self) -> &'static str {
        MANAGED
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pause_keeps_memory: false,
            persistent_disk: true,
            auto_pause: false,
            pty: true,
        }
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo, ProviderError> {
        if !spec.network.is_open() {
            return Err(ProviderError::Config(
                "[network] restrictions are not enforced for sessions the server manages yet: remove [network], or run this session in direct mode (RCLAUDE_DIRECT=1) with a provider that enforces it".into(),
            ));
        }
        // The client's session id makes a retried create the same session on the server.
        let key = spec
            .metadata
            .get("rclaude.session")
            .cloned()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let (repository, branch) = self
            .target
            .as_ref()
            .ok_or_else(|| protocol("no repository to create a managed session for"))?;
        let answer = self
            .client
            .create_managed(
                repository,
                branch,
                &key,
                &super::client::ManagedSettings {
                    template: spec.image.clone(),
                    cpu: spec.cpu,
                    memory_mb: spec.memory_mb,
                    idle_pause: spec.idle_pause,
                },
            )
            .await
            .map_err(server_error)?;
        let workdir = answer["sandbox"]["workdir"].as_str().unwrap_or_default();
        let info = Self::info(&answer["session"], workdir)
            .ok_or_else(|| protocol("the server created a session that is not running"))?;
        self.remember(&info.id, &answer);
        Ok(info)
    }

    async fn connect(&self, id: &str) -> Result<Arc<dyn Sandbox>, ProviderError> {
        // A running sandbox answers on the address the server gave last time: no server round
        // trip (the server is not in the data path). Otherwise the server resumes it.
        if let Some(s) = self.remembered(id).await {
            return Ok(s);
        }
        let answer = self
            .client
            .session_action(id, "resume")
            .await
            .map_err(server_error)?;
        self.remember(id, &answer);
        Self::sandbox(&answer)
    }

    async fn info(&self, id: &str) -> Result<Option<SandboxInfo>, ProviderError> {
        match self.client.session(id).await {
            Ok(v) => Ok(Self::info(&v["session"], "")),
            Err(ServerError::NotFound(_)) => Ok(None),
            Err(e) => Err(server_error(e)),
        }
    }

    async fn pause(&self, id: &str) -> Result<(), ProviderError> {
        self.forget(id);
        self.client
            .session_action(id, "pause")
            .await
            .map(|_| ())
            .map_err(server_error)
    }

    async fn kill(&self, id: &str) -> Result<(), ProviderError> {
        self.forget(id);
        match self.client.delete_session(id).await {
            Ok(_) => Ok(()),
            Err(e) => match server_error(e) {
                ProviderError::NotFound(_) => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn list(&self) -> Result<Vec<SandboxInfo>, ProviderError> {
        let repository = self.target.as_ref().map(|(r, _)| r.as_str());
        let v = self
            .client
            .list_sessions(repository)
            .await
            .map_err(server_error)?;
        Ok(v["sessions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|s| s["managed"] == true)
                    .filter_map(|s| Self::info(s, ""))
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// `$XDG_STATE_HOME/rclaude/managed-access`.
fn default_cache() -> PathBuf {
    crate::dirs::state_dir().join("managed-access")
}

/// The headers a managed-session answer says every envd request needs (`sandbox.headers`:
/// E2B's routing headers when its sandboxes share one address).
fn routing(sandbox: &Value) -> Result<reqwest::header::HeaderMap, ProviderError> {
    let mut out = reqwest::header::HeaderMap::new();
    if let Some(map) = sandbox["headers"].as_object() {
        for (k, v) in map {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| protocol("the server's answer names a bad envd header"))?;
            let value = v
                .as_str()
                .and_then(|v| reqwest::header::HeaderValue::from_str(v).ok())
                .ok_or_else(|| protocol("the server's answer names a bad envd header value"))?;
            out.insert(name, value);
        }
    }
    Ok(out)
}
