//! The E2B provider: sandboxes on E2B's cloud, driven through its published REST API, and
//! reached through the same envd client the local provider uses.
//!
//! Lifecycle → REST (`X-API-KEY`):
//! - create: `POST /v2/sandboxes` (template, timeout, autoPause, metadata, envVars, and for a
//!   restricted `[network]` `allow_internet_access: false` or `network.{allowOut,denyOut}`) with an
//!   `Idempotency-Key` reused across retries of the same create;
//! - connect/resume: `GET /sandboxes/{id}` (the workdir and timeout rclaude stored in the
//!   metadata) then `POST /v2/sandboxes/{id}/connect` (200 running, 201 resumed);
//! - info: `GET /sandboxes/{id}`; pause: `POST /sandboxes/{id}/pause` (409 = already paused);
//!   kill: `DELETE /sandboxes/{id}`; list: `GET /v2/sandboxes` filtered on rclaude's metadata
//!   marker, following `x-next-token`; keep-alive: `POST /sandboxes/{id}/timeout`;
//! - fork: `GET /sandboxes/{id}` (the source's workdir and timeout) then
//!   `POST /sandboxes/{id}/fork` `{timeout, count: 1}` (201 with one `{sandbox}` or `{error}`
//!   element), sent again only after a failure to connect (E2B's fork takes no idempotency key).
//!
//! Everything else (exec, files, sync) goes through [`EnvdSandbox`] at the address
//! [`address::envd_address`] computes, with the sandbox's `envdAccessToken`.

pub mod address;
mod api;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;

pub use crate::provider::retry::RetryPolicy;
pub use address::{EnvdAddress, envd_address};
pub use settings::E2bSettings;

use super::{
    Capabilities, Provider, ProviderError, Sandbox, SandboxError, SandboxInfo, SandboxSpec,
    SandboxState,
};
use crate::envd::client::EnvdClient;
use crate::provider::envd_sandbox::EnvdSandbox;
use api::{
    Api, ApiErrorObject, Call, ForkRequest, ForkResult, NewSandbox, Reply, Resend, SandboxDetail,
    SandboxHandle,
};

/// Metadata key marking a sandbox as rclaude's (value `"true"`); `list` filters on it.
pub const MANAGED_KEY: &str = "rclaude.managed";
/// Metadata key holding the repository's absolute path inside the sandbox.
pub const WORKDIR_KEY: &str = "rclaude.workdir";
/// Metadata key holding the sandbox timeout in seconds (reused on every connect).
pub const TIMEOUT_KEY: &str = "rclaude.timeout";
/// E2B's default sandbox lifetime, used when a sandbox carries no rclaude timeout.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// Workdir assumed for a sandbox without rclaude metadata (the config's default).
const FALLBACK_WORKDIR: &str = "/home/user/repo";
/// Upper bound on pages followed by `list`, against a server that never stops paging.
const MAX_PAGES: usize = 1000;

/// E2B sandboxes for one API key.
#[derive(Clone)]
pub struct E2bProvider {
    api: Api,
    settings: Arc<E2bSettings>,
}

impl std::fmt::Debug for E2bProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2bProvider")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Which call failed, for the error hint.
enum Op<'a> {
    Create { template: &'a str },
    Sandbox { id: &'a str },
    Fork { source: &'a str },
    List,
}

impl E2bProvider {
    /// A provider with explicit settings.
    pub fn new(settings: E2bSettings) -> Result<Self, ProviderError> {
        let settings = Arc::new(settings);
        Ok(E2bProvider {
            api: Api::new(settings.clone())?,
            settings,
        })
    }

    /// A provider configured from `E2B_API_KEY`, `E2B_DOMAIN`, `E2B_API_URL`, `E2B_SANDBOX_URL`,
    /// `E2B_DEBUG` and `E2B_CONNECTION_RETRIES` (see [`E2bSettings::from_lookup`]).
    pub fn from_env() -> Result<Self, ProviderError> {
        Self::new(E2bSettings::from_env()?)
    }

    pub fn settings(&self) -> &E2bSettings {
        &self.settings
    }

    /// Keep a running sandbox alive: it now expires `lifetime` from now (E2B's set-timeout;
    /// this may also shorten it). Call it from a session's heartbeat.
    pub async fn keep_alive(&self, id: &str, lifetime: Duration) -> Result<(), ProviderError> {
        address::check_sandbox_id(id)?;
        let secs = lifetime.as_secs().max(1);
        let call = Call::new(Method::POST, format!("/sandboxes/{id}/timeout"))
            .json(serde_json::json!({ "timeout": secs }));
        let reply = self.api.send(call).await?;
        match reply.status.as_u16() {
            200..=299 => Ok(()),
            404 => Err(ProviderError::NotFound(id.into())),
            _ => Err(api_error(&reply, Op::Sandbox { id })),
        }
    }

    /// Pause, keeping memory (processes survive) or only the file system (`memory: false`;
    /// resume then cold-boots).
    pub async fn pause_with(&self, id: &str, memory: bool) -> Result<(), ProviderError> {
        address::check_sandbox_id(id)?;
        let mut call = Call::new(Method::POST, format!("/sandboxes/{id}/pause"));
        if !memory {
            call = call.json(serde_json::json!({ "memory": false }));
        }
        let reply = self.api.send(call).await?;
        match reply.status.as_u16() {
            200..=299 | 409 => Ok(()),
            404 => Err(ProviderError::NotFound(id.into())),
            _ => Err(api_error(&reply, Op::Sandbox { id })),
        }
    }

    /// One page of rclaude's sandboxes (running and paused) and the cursor of the next.
    pub async fn list_page(
        &self,
        next: Option<&str>,
    ) -> Result<(Vec<SandboxInfo>, Option<String>), ProviderError> {
        let mut call = Call::new(Method::GET, "/v2/sandboxes")
            .query(
                "metadata",
                format!("{}={}", urlencode(MANAGED_KEY), urlencode("true")),
            )
            .query("state", "running,paused")
            .query(
                "limit",
                self.settings
                    .page_size
                    .clamp(1, settings::MAX_PAGE_SIZE)
                    .to_string(),
            );
        if let Some(token) = next {
            call = call.query("nextToken", token);
        }
        let reply = self.api.send(call).await?;
        if !reply.status.is_success() {
            return Err(api_error(&reply, Op::List));
        }
        let page: Vec<SandboxDetail> = reply.json("GET /v2/sandboxes")?;
        let next = reply
            .headers
            .get("x-next-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .filter(|t| !t.is_empty());
        Ok((page.into_iter().map(info_from).collect(), next))
    }

    /// `GET /sandboxes/{id}`; `None` when E2B no longer knows it.
    async fn detail(&self, id: &str) -> Result<Option<SandboxDetail>, ProviderError> {
        address::check_sandbox_id(id)?;
        let reply = self
            .api
            .send(Call::new(Method::GET, format!("/sandboxes/{id}")))
            .await?;
        match reply.status.as_u16() {
            200 => Ok(Some(reply.json("GET /sandboxes/{id}")?)),
            404 => Ok(None),
            _ => Err(api_error(&reply, Op::Sandbox { id })),
        }
    }

    /// `POST /v2/sandboxes/{id}/connect`: resumes a paused sandbox, extends a running one.
    async fn connect_api(&self, id: &str, timeout: u64) -> Result<SandboxHandle, ProviderError> {
        let mut body = serde_json::json!({ "timeout": timeout });
        for attempt in 0..2 {
            let call = Call::new(Method::POST, format!("/v2/sandboxes/{id}/connect")).json(&body);
            let reply = self.api.send(call).await?;
            match reply.status.as_u16() {
                200 | 201 => return reply.json("POST /v2/sandboxes/{id}/connect"),
                404 => return Err(ProviderError::NotFound(id.into())),
                // Its agent did not answer when it was paused: the memory snapshot is unusable,
                // so boot again from the disk (E2B's documented recovery).
                _ if attempt == 0
                    && reply.error_code().as_deref() == Some("envd_unresponsive_at_pause") =>
                {
                    tracing::warn!(
                        sandbox = id,
                        "E2B could not restore the sandbox's memory; resuming from its disk"
                    );
                    body["memory"] = serde_json::Value::Bool(false);
                }
                _ => return Err(api_error(&reply, Op::Sandbox { id })),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    fn envd_client(
        &self,
        id: &str,
        token: Option<String>,
        domain: Option<&str>,
    ) -> Result<EnvdClient, ProviderError> {
        let addr = envd_address(&self.settings, id, domain)?;
        let token = if addr.send_token { token } else { None };
        Ok(EnvdClient::new(addr.base_url, token, addr.headers)?)
    }
}

#[async_trait]
impl Provider for E2bProvider {
    fn name(&self) -> &'static str {
        "e2b"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pause_keeps_memory: true,
            persistent_disk: true,
            auto_pause: true,
            pty: true,
        }
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo, ProviderError> {
        if spec.cpu.is_some() || spec.memory_mb.is_some() {
            tracing::warn!(
                "E2B sizes sandboxes by template: `cpu` and `memory_mb` are ignored (build a template with the sizes you need)"
            );
        }
        let template = spec
            .image
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or(settings::DEFAULT_TEMPLATE);
        let timeout = spec
            .timeout
            .map(|d| d.as_secs().max(1))
            .unwrap_or(DEFAULT_TIMEOUT_SECS);
        let mut metadata = spec.metadata.clone();
        metadata.insert(MANAGED_KEY.into(), "true".into());
        metadata.insert(WORKDIR_KEY.into(), spec.workdir.clone());
        metadata.insert(TIMEOUT_KEY.into(), timeout.to_string());
        let (allow_internet_access, network) =
            api::network_options(&spec.network, spec.public_ports);
        let body = NewSandbox {
            template_id: template.to_string(),
            timeout,
            auto_pause: spec.auto_pause,
            metadata: metadata.clone(),
            env_vars: spec.env.clone(),
            allow_internet_access,
            network,
        };
        let mut call = Call::new(Method::POST, "/v2/sandboxes").json(&body);
        // One key per create, reused by every retry of it: E2B answers a replay with the
        // sandbox it already made instead of making a second one.
        call.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
        let reply = self.api.send(call).await?;
        if !matches!(reply.status.as_u16(), 200 | 201) {
            return Err(api_error(&reply, Op::Create { template }));
        }
        let handle: SandboxHandle = reply.json("POST /v2/sandboxes")?;
        let id = handle.sandbox_id.clone();
        // Templates have /home/user but not the repository's directory: make it now, so commands
        // can run there before the first sync. A failure here must not leave a paid sandbox behind.
        let prepared = async {
            let client = self.envd_client(
                &id,
                handle.envd_access_token.clone(),
                handle.domain.as_deref(),
            )?;
            match client.make_dir(&spec.workdir).await {
                Ok(_) | Err(SandboxError::AlreadyExists(_)) => Ok(()),
                Err(e) => Err(ProviderError::Sandbox(e)),
            }
        };
        if let Err(e) = prepared.await {
            if let Err(kill) = self.kill(&id).await {
                tracing::warn!(sandbox = %id, "could not remove the half-made sandbox: {kill}");
            }
            return Err(e);
        }
        let now = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
        let end = now + Duration::from_secs(timeout);
        Ok(SandboxInfo {
            id,
            provider: "e2b".into(),
            state: SandboxState::Running,
            workdir: spec.workdir.clone(),
            metadata,
            started_at: rfc3339(now),
            end_at: rfc3339(end),
        })
    }

    async fn connect(&self, id: &str) -> Result<Arc<dyn Sandbox>, ProviderError> {
        let detail = self
            .detail(id)
            .await?
            .ok_or_else(|| ProviderError::NotFound(id.into()))?;
        let metadata = detail.metadata.clone().unwrap_or_default();
        let timeout = stored_timeout(&metadata);
        let workdir = stored_workdir(&metadata);
        let handle = self.connect_api(id, timeout).await?;
        let token = handle.envd_access_token.or(detail.envd_access_token);
        let domain = handle.domain.or(detail.domain);
        let client = self.envd_client(id, token, domain.as_deref())?;
        let ports = address::E2bPorts::new(
            self.settings.clone(),
            id,
            domain.as_deref(),
            handle.traffic_access_token,
        )?;
        Ok(Arc::new(
            EnvdSandbox::new(client, id.to_string(), workdir, true).with_ports(Arc::new(ports)),
        ))
    }

    async fn info(&self, id: &str) -> Result<Option<SandboxInfo>, ProviderError> {
        Ok(self.detail(id).await?.map(info_from))
    }

    async fn pause(&self, id: &str) -> Result<(), ProviderError> {
        self.pause_with(id, true).await
    }

    async fn kill(&self, id: &str) -> Result<(), ProviderError> {
        address::check_sandbox_id(id)?;
        let reply = self
            .api
            .send(Call::new(Method::DELETE, format!("/sandboxes/{id}")))
            .await?;
        match reply.status.as_u16() {
            200..=299 => Ok(()),
            404 => Err(ProviderError::NotFound(id.into())),
            _ => Err(api_error(&reply, Op::Sandbox { id })),
        }
    }

    async fn list(&self) -> Result<Vec<SandboxInfo>, ProviderError> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let (page, cursor) = self.list_page(next.as_deref()).await?;
            out.extend(page);
            match cursor {
                Some(c) if Some(&c) != next.as_ref() => next = Some(c),
                _ => return Ok(out),
            }
        }
        Err(ProviderError::Api {
            provider: "e2b".into(),
            status: 200,
            message: format!("listing sandboxes did not finish after {MAX_PAGES} pages"),
            hint: Some("retry; if it persists, report it".into()),
        })
    }

    async fn keep_alive(&self, id: &str, lifetime: Duration) -> Result<(), ProviderError> {
        E2bProvider::keep_alive(self, id, lifetime).await
    }

    fn can_fork(&self) -> bool {
        true
    }

    /// A new sandbox that starts as a copy of `source` (files, memory, running processes), with
    /// E2B's fork: `POST /sandboxes/{source}/fork` `{timeout, count: 1}`. E2B checkpoints the
    /// source in place; it keeps running.
    ///
    /// The fork gets the source's lifetime (the `rclaude.timeout` in its metadata, which every
    /// later connect reuses) and lives at the source's workdir. E2B's fork API takes no metadata:
    /// in E2B the fork carries the source's metadata (so `rclaude ls --json` shows the source's
    /// `rclaude.session` for it); the returned [`SandboxInfo`] has the source's metadata with
    /// `spec.metadata` on top, which is what rclaude records. The rest of `spec` (template,
    /// sizes, env) is the source's and cannot change.
    ///
    /// Not retried after an answer: a fork is not idempotent and E2B's takes no idempotency key,
    /// so it is sent again only when it never reached E2B ([`Resend::UnsentOnly`]).
    async fn fork(&self, source: &str, spec: &SandboxSpec) -> Result<SandboxInfo, ProviderError> {
        let detail = self
            .detail(source)
            .await?
            .ok_or_else(|| ProviderError::NotFound(source.into()))?;
        let mut metadata = detail.metadata.unwrap_or_default();
        let timeout = stored_timeout(&metadata);
        let workdir = stored_workdir(&metadata);
        let mut call = Call::new(Method::POST, format!("/sandboxes/{source}/fork"))
            .json(ForkRequest { timeout, count: 1 });
        call.resend = Resend::UnsentOnly;
        let reply = match self.api.send(call).await {
            Ok(r) => r,
            // The request left but no answer came back in time: E2B may have made the fork.
            Err(ProviderError::Sandbox(SandboxError::Timeout(m))) => {
                return Err(ProviderError::Sandbox(SandboxError::Timeout(format!(
                    "{m} (not retried, as E2B may have made the fork anyway: `rclaude ls` lists such a fork without `*`, as no session records it; `rclaude down --sandbox ID` removes it)"
                ))));
            }
            Err(e) => return Err(e),
        };
        match reply.status.as_u16() {
            200 | 201 => {}
            404 => return Err(ProviderError::NotFound(source.into())),
            _ => return Err(api_error(&reply, Op::Fork { source })),
        }
        let results: Vec<ForkResult> = reply.json("POST /sandboxes/{id}/fork")?;
        let mut results = results.into_iter();
        let first = results.next();
        // Asked for one; should E2B make more, they are nobody's: remove them.
        for extra in results.filter_map(|r| r.sandbox) {
            tracing::warn!(sandbox = %extra.sandbox_id, "E2B made an extra fork; removing it");
            if let Err(e) = self.kill(&extra.sandbox_id).await {
                tracing::warn!(sandbox = %extra.sandbox_id, "could not remove the extra fork: {e}");
            }
        }
        let handle = match first {
            Some(ForkResult {
                sandbox: Some(handle),
                ..
            }) => handle,
            Some(ForkResult {
                error: Some(err), ..
            }) => return Err(fork_element_error(&err, source)),
            _ => {
                return Err(ProviderError::Api {
                    provider: "e2b".into(),
                    status: reply.status.as_u16(),
                    message: format!("E2B answered the fork of sandbox {source} without a sandbox or an error"),
                    hint: Some("the E2B API changed or a proxy answered instead; `rclaude ls` lists a fork made anyway without `*` (`rclaude down --sandbox ID` removes it)".into()),
                });
            }
        };
        metadata.extend(spec.metadata.clone());
        let now = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
        Ok(SandboxInfo {
            id: handle.sandbox_id,
            provider: "e2b".into(),
            state: SandboxState::Running,
            workdir,
            metadata,
            started_at: rfc3339(now),
            end_at: rfc3339(now + Duration::from_secs(timeout)),
        })
    }
}

/// An `error` element of the fork response, with the hint its status calls for.
fn fork_element_error(err: &ApiErrorObject, source: &str) -> ProviderError {
    let status = err.code.and_then(|c| u16::try_from(c).ok()).unwrap_or(500);
    let message = err
        .message
        .clone()
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| format!("E2B could not fork sandbox {source}"));
    // Unlike a failed request, an error element says this fork was not made.
    let hint = match status {
        500..=599 => Some("E2B could not make the fork; try again in a minute".into()),
        _ => error_hint(status, &message, &Op::Fork { source }),
    };
    ProviderError::Api {
        provider: "e2b".into(),
        status,
        message,
        hint,
    }
}

/// The repository's path in the sandbox, as rclaude stored it in the sandbox's metadata.
fn stored_workdir(metadata: &std::collections::BTreeMap<String, String>) -> String {
    metadata
        .get(WORKDIR_KEY)
        .cloned()
        .unwrap_or_else(|| FALLBACK_WORKDIR.into())
}

/// The sandbox timeout in seconds rclaude stored in the sandbox's metadata (E2B's default
/// when there is none).
fn stored_timeout(metadata: &std::collections::BTreeMap<String, String>) -> u64 {
    metadata
        .get(TIMEOUT_KEY)
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .unwrap_or(DEFAULT_TIMEOUT_SECS)
}

fn info_from(d: SandboxDetail) -> SandboxInfo {
    let state = match d.state.as_str() {
        "running" => SandboxState::Running,
        "paused" => SandboxState::Paused,
        other => SandboxState::Other(other.to_string()),
    };
    let metadata = d.metadata.unwrap_or_default();
    let workdir = stored_workdir(&metadata);
    // A paused sandbox has no deadline (E2B keeps it until it is killed).
    let end_at = (state == SandboxState::Running).then_some(d.end_at);
    SandboxInfo {
        id: d.sandbox_id,
        provider: "e2b".into(),
        state,
        workdir,
        metadata,
        started_at: Some(d.started_at),
        end_at,
    }
}

fn rfc3339(t: time::OffsetDateTime) -> Option<String> {
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Percent-encode everything but RFC 3986 unreserved characters (E2B's metadata filter wants
/// keys and values URL-encoded inside the `metadata` query value).
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An API failure with E2B's message and what to do about it.
fn api_error(reply: &Reply, op: Op<'_>) -> ProviderError {
    let status = reply.status.as_u16();
    let message = reply.message();
    let hint = error_hint(status, &message, &op);
    ProviderError::Api {
        provider: "e2b".into(),
        status,
        message,
        hint,
    }
}

/// What to do about E2B answering `status` with `message` to `op`.
fn error_hint(status: u16, message: &str, op: &Op<'_>) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    match (status, op) {
        (401, _) => Some(format!(
            "E2B rejected the API key: check E2B_API_KEY (create a key at {})",
            settings::API_KEY_URL
        )),
        (403, _) => Some("this API key may not do that: check that E2B_API_KEY belongs to the team that owns the sandbox or template".into()),
        (404, Op::Create { template }) => Some(format!(
            "template \"{template}\" does not exist for this API key's team: set `image` in .rclaude.toml [sandbox] to a template id or name (`e2b template list` shows yours; \"base\" is E2B's default)"
        )),
        (404, Op::Sandbox { id }) => Some(format!(
            "sandbox {id} expired or was killed; `rclaude up` creates a new one and syncs your work tree into it"
        )),
        (404, Op::Fork { source }) => Some(format!(
            "sandbox {source} expired or was killed, so there is nothing to fork; `rclaude up -s NAME` makes a fresh session"
        )),
        (429, _) => Some(
            "E2B's rate or concurrency limit for your plan was reached (Hobby 20, Pro 100 running sandboxes): pause or remove sandboxes you no longer use (`rclaude ls`, `rclaude down`), or retry in a minute".into(),
        ),
        (400, Op::Create { .. } | Op::Fork { .. }) if lower.contains("timeout") => Some(
            "E2B caps the sandbox timeout by plan (Hobby 1 h, Pro 24 h): lower `timeout` in .rclaude.toml [sandbox]".into(),
        ),
        (400, Op::Create { .. }) => Some("E2B refused the sandbox settings: check [sandbox] and [env] in .rclaude.toml".into()),
        (400, Op::List) => Some("E2B refused the list query; please report this with RCLAUDE_LOG=debug output".into()),
        (409, Op::Sandbox { id } | Op::Fork { source: id }) => Some(format!("sandbox {id} is busy changing state; retry in a few seconds (`rclaude status` shows it)")),
        // Not resent: E2B may have made the fork before the failure.
        (500..=599, Op::Fork { .. }) => Some("the fork was not retried, as E2B may have made it anyway: `rclaude ls` lists such a fork without `*`, as no session records it (`rclaude down --sandbox ID` removes it); then try again".into()),
        (500..=599, _) => Some("E2B had a server problem (retried where E2B allows it); try again in a minute".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn urlencode_escapes_separators() {
        assert_eq!(urlencode("rclaude.managed"), "rclaude.managed");
        assert_eq!(urlencode("a=b&c d/é"), "a%3Db%26c%20d%2F%C3%A9");
    }

    #[test]
    fn fork_error_elements_keep_e2b_message_and_get_a_hint() {
        let err: api::ApiErrorObject =
            serde_json::from_str(r#"{"code": 429, "message": "too many sandboxes"}"#).unwrap();
        match fork_element_error(&err, "src") {
            ProviderError::Api {
                status,
                message,
                hint,
                ..
            } => {
                assert_eq!(status, 429);
                assert_eq!(message, "too many sandboxes");
                assert!(hint.unwrap().contains("limit"));
            }
            other => panic!("{other:?}"),
        }
        let err: api::ApiErrorObject = serde_json::from_str("{}").unwrap();
        match fork_element_error(&err, "src") {
            ProviderError::Api {
                status,
                message,
                hint,
                ..
            } => {
                assert_eq!(status, 500);
                assert!(message.contains("could not fork sandbox src"), "{message}");
                assert!(hint.unwrap().contains("try again"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paused_sandboxes_have_no_deadline() {
        let d = SandboxDetail {
            sandbox_id: "s".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            end_at: "2026-01-01T01:00:00Z".into(),
            state: "paused".into(),
            metadata: Some(BTreeMap::from([(
                WORKDIR_KEY.to_string(),
                "/w".to_string(),
            )])),
            envd_access_token: None,
            domain: None,
        };
        let i = info_from(d.clone());
        assert_eq!(i.state, SandboxState::Paused);
        assert_eq!(i.end_at, None);
        assert_eq!(i.workdir, "/w");
        let i = info_from(SandboxDetail {
            state: "running".into(),
            ..d
        });
        assert_eq!(i.end_at.as_deref(), Some("2026-01-01T01:00:00Z"));
    }
}
