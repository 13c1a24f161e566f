//! The Daytona provider: sandboxes on Daytona's cloud, driven through its REST API, with
//! commands and files through the in-sandbox toolbox (see [`sandbox`]).
//!
//! Lifecycle (`Authorization: Bearer DAYTONA_API_KEY`, `X-Daytona-SDK-Version`):
//! - create: `POST /sandbox` with a snapshot, or `buildInfo.dockerfileContent = "FROM <image>"`
//!   (then `cpu`/`memory` are honoured), `env`, `labels`, `autoStopInterval` (the config's timeout
//!   in minutes), `target`; then poll `GET /sandbox/{id}` with backoff until `started` (fail on
//!   `error`/`build_failed` with `errorReason`), and make the workdir through the toolbox;
//! - pause = `POST /sandbox/{id}/stop` (disk kept, memory and processes lost), resume =
//!   `POST /sandbox/{id}/start` (also from `archived`), [`DaytonaProvider::archive`] moves a
//!   stopped sandbox to object storage; kill = `DELETE /sandbox/{id}`;
//! - list: `GET /sandbox?labels={"rclaude.managed":"true"}` (`{items, nextCursor}` or a bare
//!   array); keep-alive: `POST /sandbox/{id}/last-activity`.
//!
//! Transitions are refused while `state != desiredState`; every call first waits for the sandbox
//! to settle.
//!
//! Length: the lifecycle calls of one REST API with their state polling and error mapping.

mod api;
pub mod logs;
pub mod sandbox;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};

pub use sandbox::DaytonaSandbox;
pub use settings::DaytonaSettings;

use super::{
    Capabilities, ClientAccess, Provider, ProviderError, Sandbox, SandboxError, SandboxInfo,
    SandboxSpec, SandboxState,
};
use api::{Api, Call, Reply};

/// Label marking a sandbox as rclaude's (`"true"`); `list` filters on it.
pub const MANAGED_KEY: &str = "rclaude.managed";
/// Label holding the repository's path inside the sandbox.
pub const WORKDIR_KEY: &str = "rclaude.workdir";
/// The config's default workdir, replaced by [`DEFAULT_WORKDIR`] on Daytona.
pub const CONFIG_DEFAULT_WORKDIR: &str = "/home/user/repo";
/// Workdir when the config leaves the default: in the home of Daytona's default user.
pub const DEFAULT_WORKDIR: &str = "/home/daytona/repo";
/// Auto-stop interval when the config gives no timeout (Daytona's default).
pub const DEFAULT_AUTO_STOP_MINUTES: u64 = 15;
/// Page size of `GET /sandbox`.
const PAGE_SIZE: u32 = 100;
/// A port Daytona previews (3000–9999): its preview URL's token is the sandbox's own, the same
/// for every port, and its proxy takes it for the sandbox's toolbox too.
const PREVIEW_PORT: u16 = 3000;
const MAX_PAGES: usize = 1000;

/// Daytona sandboxes for one API key.
#[derive(Clone)]
pub struct DaytonaProvider {
    api: Api,
}

impl std::fmt::Debug for DaytonaProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaytonaProvider")
            .field("settings", &self.api.settings)
            .finish()
    }
}

/// `POST /sandbox` body (CreateSandbox).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct NewSandbox {
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    build_info: Option<BuildInfo>,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<u32>,
    /// GiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<u32>,
    auto_stop_interval: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_delete_interval: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    network_block_all: bool,
    /// Comma-separated IPv4 CIDR blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    network_allow_list: Option<String>,
}

/// `[network]` as Daytona's create options: block everything, or allow IPv4 CIDR blocks (the
/// only kind of destination its allow list takes); anything else cannot be enforced there.
fn network_options(
    policy: &crate::network::NetworkPolicy,
) -> Result<(bool, Option<String>), ProviderError> {
    use crate::network::{NetworkPolicy, Rule};
    let allow = match policy {
        NetworkPolicy::Open => return Ok((false, None)),
        NetworkPolicy::Restricted { allow } if allow.is_empty() => return Ok((true, None)),
        NetworkPolicy::Restricted { allow } => allow,
    };
    let mut blocks = Vec::new();
    for rule in allow {
        match rule {
            Rule::Net(n) if n.addr().is_ipv4() => blocks.push(n.to_string()),
            other => {
                return Err(ProviderError::Config(format!(
                    "Daytona's network allow list takes IPv4 CIDR blocks only, so `{other}` in [network] allow cannot be enforced there (Claude Code's API host is added to allow lists): list addresses instead, use deny_all, or use the e2b or local provider"
                )));
            }
        }
    }
    Ok((false, Some(blocks.join(","))))
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildInfo {
    dockerfile_content: String,
}

/// The Sandbox object.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SandboxDto {
    id: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    desired_state: Option<String>,
    #[serde(default)]
    error_reason: Option<String>,
    #[serde(default)]
    recoverable: Option<bool>,
    #[serde(default)]
    toolbox_proxy_url: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    auto_stop_interval: Option<i64>,
    #[serde(default)]
    last_activity_at: Option<String>,
}

impl SandboxDto {
    fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("unknown")
    }
    /// Not in the middle of a transition.
    fn settled(&self) -> bool {
        match &self.desired_state {
            Some(d) => d == self.state(),
            None => !TRANSITIONAL.contains(&self.state()),
        }
    }
}

/// States a sandbox passes through on its way somewhere else.
const TRANSITIONAL: [&str; 13] = [
    "creating",
    "restoring",
    "pending_build",
    "building_snapshot",
    "pulling_snapshot",
    "starting",
    "stopping",
    "pausing",
    "resuming",
    "archiving",
    "resizing",
    "snapshotting",
    "destroying",
];

/// Which call failed, for the error hint.
enum Op<'a> {
    Create { image: &'a str, snapshot: bool },
    Sandbox { id: &'a str },
    List,
}

impl DaytonaProvider {
    pub fn new(settings: DaytonaSettings) -> Result<Self, ProviderError> {
        Ok(DaytonaProvider {
            api: Api::new(Arc::new(settings))?,
        })
    }

    /// From `DAYTONA_API_KEY`, `DAYTONA_API_URL`, `DAYTONA_TARGET` (see
    /// [`DaytonaSettings::from_env`]).
    pub fn from_env() -> Result<Self, ProviderError> {
        Self::new(DaytonaSettings::from_env()?)
    }

    pub fn settings(&self) -> &DaytonaSettings {
        &self.api.settings
    }

    /// Move a sandbox's file system to object storage (no disk quota used, slower start). It is
    /// stopped first if needed; `connect` starts it again.
    pub async fn archive(&self, id: &str) -> Result<(), ProviderError> {
        let sb = self.settle(id).await?;
        match sb.state() {
            "archived" => return Ok(()),
            "started" | "paused" => {
                self.transition(id, "stop", &[]).await?;
                self.wait_for(id, "stopped").await?;
            }
            _ => {}
        }
        self.transition(id, "archive", &[]).await?;
        self.wait_for(id, "archived").await?;
        Ok(())
    }

    /// Reset the sandbox's inactivity timer (auto-stop counts only calls from outside).
    pub async fn ping(&self, id: &str) -> Result<(), ProviderError> {
        check_id(id)?;
        let r = self
            .api
            .send(Call::new(
                Method::POST,
                self.api.api_url(&format!("/sandbox/{id}/last-activity")),
            ))
            .await?;
        match r.status.as_u16() {
            200..=299 => Ok(()),
            404 => Err(ProviderError::NotFound(id.into())),
            _ => Err(api_error(&r, Op::Sandbox { id })),
        }
    }

    /// `GET /sandbox/{id}`; `None` when Daytona no longer knows it (or it is destroyed).
    async fn get(&self, id: &str) -> Result<Option<SandboxDto>, ProviderError> {
        check_id(id)?;
        let r = self
            .api
            .send(Call::new(
                Method::GET,
                self.api.api_url(&format!("/sandbox/{id}")),
            ))
            .await?;
        match r.status.as_u16() {
            200 => {
                let sb: SandboxDto = r.json()?;
                Ok((sb.state() != "destroyed").then_some(sb))
            }
            404 => Ok(None),
            _ => Err(api_error(&r, Op::Sandbox { id })),
        }
    }

    /// Poll until `check` accepts the sandbox, with backoff; errors on `error`/`build_failed`.
    async fn poll(
        &self,
        id: &str,
        what: &str,
        check: impl Fn(&SandboxDto) -> bool,
    ) -> Result<SandboxDto, ProviderError> {
        let s = &self.api.settings;
        let deadline = tokio::time::Instant::now() + s.state_timeout;
        let mut wait = s.poll_interval;
        loop {
            let sb = self
                .get(id)
                .await?
                .ok_or_else(|| ProviderError::NotFound(id.into()))?;
            if check(&sb) {
                return Ok(sb);
            }
            if matches!(sb.state(), "error" | "build_failed") {
                return Err(failed(&sb));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProviderError::Sandbox(SandboxError::Timeout(format!(
                    "Daytona sandbox {id} did not become {what} within {} s (it is {})",
                    s.state_timeout.as_secs(),
                    sb.state()
                ))));
            }
            tokio::time::sleep(wait).await;
            wait = wait.mul_f64(1.5).min(s.max_poll_interval);
        }
    }

    async fn wait_for(&self, id: &str, state: &str) -> Result<SandboxDto, ProviderError> {
        self.poll(id, state, |sb| sb.state() == state && sb.settled())
            .await
    }

    /// Wait until no transition is in progress.
    async fn settle(&self, id: &str) -> Result<SandboxDto, ProviderError> {
        self.poll(id, "settled", SandboxDto::settled).await
    }

    /// `POST /sandbox/{id}/{action}`.
    async fn transition(
        &self,
        id: &str,
        action: &str,
        query: &[(&str, &str)],
    ) -> Result<(), ProviderError> {
        let mut call = Call::new(
            Method::POST,
            self.api.api_url(&format!("/sandbox/{id}/{action}")),
        );
        for (k, v) in query {
            call = call.query(k, *v);
        }
        let r = self.api.send(call).await?;
        match r.status.as_u16() {
            200..=299 => Ok(()),
            404 => Err(ProviderError::NotFound(id.into())),
            _ => Err(api_error(&r, Op::Sandbox { id })),
        }
    }

    async fn toolbox_url(&self, sb: &SandboxDto) -> Result<String, ProviderError> {
        if let Some(url) = sb.toolbox_proxy_url.as_deref().filter(|u| !u.is_empty()) {
            return Ok(url.trim_end_matches('/').to_string());
        }
        #[derive(Deserialize)]
        struct Url {
            url: String,
        }
        let r = self
            .api
            .send(Call::new(
                Method::GET,
                self.api
                    .api_url(&format!("/sandbox/{}/toolbox-proxy-url", sb.id)),
            ))
            .await?;
        if !r.status.is_success() {
            return Err(api_error(&r, Op::Sandbox { id: &sb.id }));
        }
        let u: Url = r.json()?;
        Ok(u.url.trim_end_matches('/').to_string())
    }

    /// One page of rclaude's sandboxes and the next cursor.
    pub async fn list_page(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<SandboxInfo>, Option<String>), ProviderError> {
        let labels = serde_json::json!({ MANAGED_KEY: "true" }).to_string();
        let mut call = Call::new(Method::GET, self.api.api_url("/sandbox"))
            .query("labels", labels)
            .query("limit", PAGE_SIZE.to_string());
        if let Some(c) = cursor {
            call = call.query("cursor", c);
        }
        let r = self.api.send(call).await?;
        if !r.status.is_success() {
            return Err(api_error(&r, Op::List));
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Page {
            Items {
                items: Vec<SandboxDto>,
                #[serde(default, rename = "nextCursor")]
                next_cursor: Option<String>,
            },
            Bare(Vec<SandboxDto>),
        }
        let (items, next) = match r.json::<Page>()? {
            Page::Items { items, next_cursor } => (items, next_cursor.filter(|c| !c.is_empty())),
            Page::Bare(items) => (items, None),
        };
        let infos = items
            .into_iter()
            .filter(|sb| sb.labels.get(MANAGED_KEY).map(String::as_str) == Some("true"))
            .filter(|sb| sb.state() != "destroyed")
            .map(info_from)
            .collect();
        Ok((infos, next))
    }
}

#[async_trait]
impl Provider for DaytonaProvider {
    fn name(&self) -> &'static str {
        "daytona"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // rclaude pauses by stopping: the file system stays, memory and processes do not.
            pause_keeps_memory: false,
            persistent_disk: true,
            // Daytona stops an idle sandbox after autoStopInterval.
            auto_pause: true,
            pty: false,
        }
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo, ProviderError> {
        let workdir = if spec.workdir == CONFIG_DEFAULT_WORKDIR {
            DEFAULT_WORKDIR.to_string()
        } else {
            spec.workdir.clone()
        };
        check_workdir(&workdir)?;
        let image = spec
            .image
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty());
        let source = image.map(Source::parse);
        let (snapshot, build_info) = match &source {
            Some(Source::Snapshot(s)) => (Some(s.clone()), None),
            Some(Source::Image(i)) => (
                None,
                Some(BuildInfo {
                    dockerfile_content: format!("FROM {i}\n"),
                }),
            ),
            None => (None, None),
        };
        let building = build_info.is_some();
        if !building && (spec.cpu.is_some() || spec.memory_mb.is_some()) {
            tracing::warn!(
                "Daytona sizes snapshot sandboxes by the snapshot: `cpu` and `memory_mb` apply only when `image` names a container image"
            );
        }
        let auto_stop = spec
            .timeout
            .map(|t| t.as_secs().div_ceil(60).max(1))
            .unwrap_or(DEFAULT_AUTO_STOP_MINUTES);
        let (network_block_all, network_allow_list) = network_options(&spec.network)?;
        let mut labels = spec.metadata.clone();
        labels.insert(MANAGED_KEY.into(), "true".into());
        labels.insert(WORKDIR_KEY.into(), workdir.clone());
        let body = NewSandbox {
            snapshot,
            build_info,
            env: spec.env.clone(),
            labels,
            target: self.api.settings.target.clone(),
            cpu: spec.cpu.filter(|_| building),
            memory: spec
                .memory_mb
                .filter(|_| building)
                .map(|mb| mb.div_ceil(1024).max(1)),
            auto_stop_interval: auto_stop,
            // Without auto_pause the sandbox goes away at the timeout, as on E2B.
            auto_delete_interval: (!spec.auto_pause).then_some(0),
            network_block_all,
            network_allow_list,
        };
        let image_name = image.unwrap_or("(default snapshot)");
        let r = self
            .api
            .send(
                Call::new(Method::POST, self.api.api_url("/sandbox"))
                    .json(&body)
                    .once(),
            )
            .await?;
        if !r.status.is_success() {
            return Err(api_error(
                &r,
                Op::Create {
                    image: image_name,
                    snapshot: !building,
                },
            ));
        }
        let created: SandboxDto = r.json()?;
        let id = created.id.clone();
        check_id(&id)?;
        // A failure from here on must not leave a billed sandbox behind.
        let ready = async {
            let sb = self.wait_for(&id, "started").await?;
            let toolbox = self.toolbox_url(&sb).await?;
            let handle = DaytonaSandbox::new(self.api.clone(), &toolbox, &id, &workdir);
            handle.make_dir(&workdir).await?;
            Ok::<_, ProviderError>(sb)
        };
        let sb = match ready.await {
            Ok(sb) => sb,
            Err(e) => {
                if let Err(k) = self.kill(&id).await {
                    tracing::warn!(sandbox = %id, "could not remove the half-made sandbox: {k}");
                }
                return Err(e);
            }
        };
        let mut info = info_from(sb);
        info.workdir = workdir;
        Ok(info)
    }

    async fn connect(&self, id: &str) -> Result<Arc<dyn Sandbox>, ProviderError> {
        let mut sb = self
            .get(id)
            .await?
            .ok_or_else(|| ProviderError::NotFound(id.into()))?;
        if !sb.settled() {
            sb = self.settle(id).await?;
        }
        match sb.state() {
            "started" => {}
            "stopped" | "archived" | "paused" => {
                self.transition(id, "start", &[]).await?;
                sb = self.wait_for(id, "started").await?;
            }
            "error" | "build_failed" => return Err(failed(&sb)),
            _ => sb = self.wait_for(id, "started").await?,
        }
        let toolbox = self.toolbox_url(&sb).await?;
        let workdir = sb
            .labels
            .get(WORKDIR_KEY)
            .cloned()
            .unwrap_or_else(|| DEFAULT_WORKDIR.into());
        Ok(Arc::new(DaytonaSandbox::new(
            self.api.clone(),
            &toolbox,
            id,
            &workdir,
        )))
    }

    async fn info(&self, id: &str) -> Result<Option<SandboxInfo>, ProviderError> {
        Ok(self.get(id).await?.map(info_from))
    }

    /// The toolbox proxy and the sandbox's preview token (`GET
    /// /sandbox/{id}/ports/{port}/preview-url`), which Daytona's proxy takes in place of the
    /// API key for that one sandbox.
    async fn client_access(
        &self,
        id: &str,
        _sandbox: &dyn Sandbox,
    ) -> Result<Option<ClientAccess>, ProviderError> {
        #[derive(Deserialize)]
        struct Preview {
            token: String,
        }
        let sb = self
            .get(id)
            .await?
            .ok_or_else(|| ProviderError::NotFound(id.into()))?;
        let toolbox_url = self.toolbox_url(&sb).await?;
        let r = self
            .api
            .send(Call::new(
                Method::GET,
                self.api
                    .api_url(&format!("/sandbox/{id}/ports/{PREVIEW_PORT}/preview-url")),
            ))
            .await?;
        match r.status.as_u16() {
            200..=299 => {}
            404 => return Err(ProviderError::NotFound(id.into())),
            _ => return Err(api_error(&r, Op::Sandbox { id })),
        }
        let preview: Preview = r.json()?;
        Ok(Some(ClientAccess::DaytonaToolbox {
            toolbox_url,
            preview_token: preview.token,
        }))
    }

    async fn pause(&self, id: &str) -> Result<(), ProviderError> {
        let sb = self.settle(id).await?;
        match sb.state() {
            "stopped" | "archived" => return Ok(()),
            "error" | "build_failed" => return Err(failed(&sb)),
            _ => {}
        }
        self.transition(id, "stop", &[]).await?;
        self.wait_for(id, "stopped").await?;
        Ok(())
    }

    async fn kill(&self, id: &str) -> Result<(), ProviderError> {
        check_id(id)?;
        let mut tries = 0;
        loop {
            let r = self
                .api
                .send(Call::new(
                    Method::DELETE,
                    self.api.api_url(&format!("/sandbox/{id}")),
                ))
                .await?;
            match r.status.as_u16() {
                200..=299 => break,
                404 => return Err(ProviderError::NotFound(id.into())),
                // Busy changing state: wait for it to settle, then delete.
                409 if tries == 0 => {
                    tries += 1;
                    self.settle(id).await?;
                }
                _ => return Err(api_error(&r, Op::Sandbox { id })),
            }
        }
        // Deletion is asynchronous: wait until Daytona no longer lists it.
        let s = &self.api.settings;
        let deadline = tokio::time::Instant::now() + s.state_timeout;
        let mut wait = s.poll_interval;
        while self.get(id).await?.is_some() {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(sandbox = id, "Daytona is still deleting the sandbox");
                break;
            }
            tokio::time::sleep(wait).await;
            wait = wait.mul_f64(1.5).min(s.max_poll_interval);
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<SandboxInfo>, ProviderError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let (page, next) = self.list_page(cursor.as_deref()).await?;
            out.extend(page);
            match next {
                Some(c) if Some(&c) != cursor.as_ref() => cursor = Some(c),
                _ => return Ok(out),
            }
        }
        Err(ProviderError::Api {
            provider: "daytona".into(),
            status: 200,
            message: format!("listing sandboxes did not finish after {MAX_PAGES} pages"),
            hint: Some("retry; if it persists, report it".into()),
        })
    }

    async fn keep_alive(&self, id: &str, _lifetime: Duration) -> Result<(), ProviderError> {
        self.ping(id).await
    }
}

/// What `image` names.
enum Source {
    Snapshot(String),
    Image(String),
}

impl Source {
    /// `snapshot:NAME` / `image:REF` force the kind; otherwise a value with `/`, `:` or `@` is a
    /// container image and anything else a snapshot name.
    fn parse(value: &str) -> Source {
        if let Some(s) = value.strip_prefix("snapshot:") {
            return Source::Snapshot(s.trim().to_string());
        }
        if let Some(i) = value
            .strip_prefix("image:")
            .or_else(|| value.strip_prefix("docker:"))
        {
            return Source::Image(i.trim().to_string());
        }
        if value.contains(['/', ':', '@']) {
            Source::Image(value.to_string())
        } else {
            Source::Snapshot(value.to_string())
        }
    }
}

fn check_id(id: &str) -> Result<(), ProviderError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ProviderError::Config(format!(
            "invalid Daytona sandbox id {id:?}: expected letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

fn check_workdir(path: &str) -> Result<(), ProviderError> {
    if !path.starts_with('/') || path.trim_end_matches('/').is_empty() || path.contains('\0') {
        return Err(ProviderError::Config(format!(
            "workdir {path:?} must be an absolute path other than /"
        )));
    }
    Ok(())
}

fn info_from(sb: SandboxDto) -> SandboxInfo {
    let state = match sb.state() {
        "started" => SandboxState::Running,
        "stopped" | "paused" => SandboxState::Paused,
        other => SandboxState::Other(other.to_string()),
    };
    let end_at = if state == SandboxState::Running {
        auto_stop_at(&sb)
    } else {
        None
    };
    SandboxInfo {
        workdir: sb
            .labels
            .get(WORKDIR_KEY)
            .cloned()
            .unwrap_or_else(|| DEFAULT_WORKDIR.into()),
        id: sb.id,
        provider: "daytona".into(),
        state,
        metadata: sb.labels,
        started_at: sb.created_at,
        end_at,
    }
}

/// When an idle sandbox will be stopped: last activity + autoStopInterval.
fn auto_stop_at(sb: &SandboxDto) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let minutes = sb.auto_stop_interval.filter(|m| *m > 0)?;
    let last = time::OffsetDateTime::parse(sb.last_activity_at.as_deref()?, &Rfc3339).ok()?;
    (last + time::Duration::minutes(minutes))
        .replace_nanosecond(0)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// A sandbox in `error` or `build_failed`.
fn failed(sb: &SandboxDto) -> ProviderError {
    let reason = sb
        .error_reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "no reason given".into());
    let hint = if sb.state() == "build_failed" {
        "the image could not be built: check `image` in .rclaude.toml [sandbox] (a registry image Daytona can pull, or `snapshot:NAME`)".to_string()
    } else if sb.recoverable == Some(true) {
        format!(
            "Daytona marks it recoverable: retry, or recover it from the dashboard; `rclaude down` removes sandbox {}",
            sb.id
        )
    } else {
        format!(
            "`rclaude down` removes sandbox {} and `rclaude up` creates a new one",
            sb.id
        )
    };
    ProviderError::Api {
        provider: "daytona".into(),
        status: 200,
        message: format!("sandbox {} is in state {}: {reason}", sb.id, sb.state()),
        hint: Some(hint),
    }
}

/// An API failure with Daytona's message and what to do about it.
fn api_error(reply: &Reply, op: Op<'_>) -> ProviderError {
    let status = reply.status.as_u16();
    let message = reply.message();
    let hint = match (status, &op) {
        (401, _) => Some(format!(
            "Daytona rejected the API key: check DAYTONA_API_KEY (create a key at {})",
            settings::API_KEY_URL
        )),
        (403, _) => Some("this API key may not do that: check its permissions and that it belongs to the organization that owns the sandbox".into()),
        (404, Op::Create { image, snapshot: true }) => Some(format!(
            "snapshot \"{image}\" does not exist in your organization: set `image` in .rclaude.toml [sandbox] to a snapshot name, or to a container image (e.g. \"ubuntu:24.04\") that Daytona builds"
        )),
        (404, Op::Sandbox { id }) => Some(format!(
            "sandbox {id} no longer exists; `rclaude up` creates a new one and syncs your work tree into it"
        )),
        (400 | 422, Op::Create { .. }) => Some("Daytona refused the sandbox settings: check [sandbox] (cpu, memory_mb, image) and [env] in .rclaude.toml; your organization's per-sandbox limits may be lower".into()),
        (400 | 422, Op::Sandbox { id }) => Some(format!("sandbox {id} cannot do that in its current state (`rclaude status` shows it)")),
        (409, Op::Sandbox { id }) => Some(format!("sandbox {id} is busy changing state; retry in a few seconds")),
        (429, _) => Some("Daytona's rate limit or your organization's quota was reached: stop or remove sandboxes you no longer use (`rclaude ls`, `rclaude down`), or retry in a minute".into()),
        (500..=599, _) => Some("Daytona had a server problem (retried where safe); try again in a minute".into()),
        _ => None,
    };
    ProviderError::Api {
        provider: "daytona".into(),
        status,
        message,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_or_snapshot() {
        assert!(matches!(Source::parse("ubuntu:24.04"), Source::Image(i) if i == "ubuntu:24.04"));
        assert!(matches!(Source::parse("ghcr.io/a/b"), Source::Image(_)));
        assert!(matches!(Source::parse("my-snapshot"), Source::Snapshot(s) if s == "my-snapshot"));
        assert!(
            matches!(Source::parse("snapshot:daytonaio/sandbox:0.4"), Source::Snapshot(s) if s == "daytonaio/sandbox:0.4")
        );
        assert!(matches!(Source::parse("image:python"), Source::Image(i) if i == "python"));
    }

    #[test]
    fn settled_states() {
        let mut sb = SandboxDto {
            id: "x".into(),
            state: Some("stopping".into()),
            desired_state: Some("stopped".into()),
            error_reason: None,
            recoverable: None,
            toolbox_proxy_url: None,
            labels: BTreeMap::new(),
            created_at: None,
            auto_stop_interval: Some(15),
            last_activity_at: Some("2026-01-01T10:00:00.123Z".into()),
        };
        assert!(!sb.settled());
        sb.state = Some("stopped".into());
        assert!(sb.settled());
        sb.desired_state = None;
        assert!(sb.settled());
        sb.state = Some("started".into());
        assert_eq!(auto_stop_at(&sb).as_deref(), Some("2026-01-01T10:15:00Z"));
        assert_eq!(info_from(sb.clone()).state, SandboxState::Running);
        assert_eq!(info_from(sb).workdir, DEFAULT_WORKDIR);
    }
}
