//! The Northflank provider: a sandbox is a deployment service running the configured image with
//! `sleep infinity`, plus a volume holding the workspace; commands and files go through the exec
//! WebSocket (see [`sandbox`]).
//!
//! Lifecycle (`Authorization: Bearer NORTHFLANK_API_TOKEN`, `{data: …}` envelopes):
//! - create: `POST /v1/projects/{p}/volumes` (mounted at the workdir's parent), then
//!   `POST /v1/projects/{p}/services/deployment` (external image, `instances: 1`, custom command
//!   `sleep infinity`, plan from `cpu`/`memory_mb`, `runtimeEnvironment`, the volume attached),
//!   then poll until the rollout is `COMPLETED` and a container is `TASK_RUNNING`;
//! - pause = `POST …/services/{s}/pause` (compute stops, only the volume stays), resume =
//!   `POST …/services/{s}/resume` + the same poll; kill = `DELETE …/services/{s}?delete_child_objects=true`
//!   (the volume goes too); list = `GET /v1/projects/{p}/services` filtered on rclaude's
//!   description.
//!
//! The API allows about 1,000 requests per hour: polls are 2–5 s apart (15 s when the budget runs
//! low) and the client honours the rate-limit headers (see [`api`]).
//!
//! A sandbox id is `<project>/<service>`, so an existing sandbox is found without the config.
//!
//! Length: the lifecycle calls of one REST API (volume + service), the request budget and
//! error mapping they share.

pub mod api;
pub mod exec;
pub mod sandbox;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

pub use sandbox::NorthflankSandbox;
pub use settings::NorthflankSettings;

use super::{
    Capabilities, Provider, ProviderError, Sandbox, SandboxError, SandboxInfo, SandboxSpec,
    SandboxState,
};
use api::{Api, Reply};
use exec::Target;

/// The config's default workdir, replaced by [`DEFAULT_WORKDIR`] on Northflank.
pub const CONFIG_DEFAULT_WORKDIR: &str = "/home/user/repo";
/// Workdir when the config leaves the default: on the workspace volume, mounted at `/workspace`.
pub const DEFAULT_WORKDIR: &str = "/workspace/repo";
/// Start of every rclaude service's description (what `list` filters on).
pub const DESCRIPTION_PREFIX: &str = "rclaude ";
/// Northflank's description limit (assumed).
const MAX_DESCRIPTION: usize = 200;
/// The image when the config names none.
pub const DEFAULT_IMAGE: &str = "ubuntu:24.04";
/// Plans by size: (name, vCPU × 10, memory MB), smallest first.
pub const PLANS: [(&str, u32, u32); 5] = [
    ("nf-compute-20", 2, 512),
    ("nf-compute-100-2", 10, 2048),
    ("nf-compute-200", 20, 4096),
    ("nf-compute-400", 40, 8192),
    ("nf-compute-800-32", 80, 32768),
];
const MAX_PAGES: usize = 1000;

/// Northflank sandboxes for one API token.
#[derive(Clone)]
pub struct NorthflankProvider {
    api: Api,
}

impl std::fmt::Debug for NorthflankProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NorthflankProvider")
            .field("settings", &self.api.settings)
            .finish()
    }
}

/// A service as `GET …/services/{s}` (and the list) return it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceDto {
    id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    service_paused: Option<bool>,
    #[serde(default)]
    deployment: Option<DeploymentDto>,
    #[serde(default)]
    status: Option<StatusDto>,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct DeploymentDto {
    #[serde(default)]
    instances: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
struct StatusDto {
    #[serde(default)]
    deployment: Option<RolloutDto>,
}

#[derive(Debug, Clone, Deserialize)]
struct RolloutDto {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

impl ServiceDto {
    fn paused(&self) -> bool {
        self.service_paused.unwrap_or(false)
            || self.deployment.as_ref().and_then(|d| d.instances) == Some(0)
    }
    fn rollout(&self) -> &str {
        self.status
            .as_ref()
            .and_then(|s| s.deployment.as_ref())
            .and_then(|d| d.status.as_deref())
            .unwrap_or("UNKNOWN")
    }
    fn reason(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.deployment.as_ref())
            .and_then(|d| d.reason.as_deref())
    }
}

#[derive(Debug, Clone, Deserialize)]
struct ContainerDto {
    #[serde(default)]
    status: String,
}

/// Which call failed, for the error hint.
enum Op<'a> {
    Create { image: &'a str, project: &'a str },
    Sandbox { id: &'a str },
    List { project: &'a str },
}

impl NorthflankProvider {
    pub fn new(settings: NorthflankSettings) -> Result<Self, ProviderError> {
        Ok(NorthflankProvider {
            api: Api::new(Arc::new(settings))?,
        })
    }

    /// From the environment; `config_project` is `[sandbox] project` from `.rclaude.toml`.
    pub fn from_env(config_project: Option<&str>) -> Result<Self, ProviderError> {
        Self::new(NorthflankSettings::from_env(config_project)?)
    }

    pub fn settings(&self) -> &NorthflankSettings {
        &self.api.settings
    }

    /// What the server last said about the request budget, and how many requests were sent.
    pub fn budget(&self) -> api::BudgetState {
        self.api.budget.state()
    }

    fn target(&self, project: &str, service: &str) -> Target {
        Target::new(
            &self.api.settings.api_url,
            &self.api.settings.token,
            project,
            service,
        )
    }

    async fn service(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Option<ServiceDto>, ProviderError> {
        let r = self
            .api
            .send(
                Method::GET,
                &format!("/v1/projects/{project}/services/{service}"),
                &[],
                None,
            )
            .await?;
        let id = format!("{project}/{service}");
        match r.status.as_u16() {
            200 => Ok(Some(r.data()?)),
            404 => Ok(None),
            _ => Err(api_error(&r, Op::Sandbox { id: &id })),
        }
    }

    async fn running_container(&self, project: &str, service: &str) -> Result<bool, ProviderError> {
        let r = self
            .api
            .send(
                Method::GET,
                &format!("/v1/projects/{project}/services/{service}/containers"),
                &[],
                None,
            )
            .await?;
        let id = format!("{project}/{service}");
        if !r.status.is_success() {
            return Err(api_error(&r, Op::Sandbox { id: &id }));
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Containers {
            Wrapped { containers: Vec<ContainerDto> },
            Bare(Vec<ContainerDto>),
        }
        let list = match r.data::<Containers>()? {
            Containers::Wrapped { containers } => containers,
            Containers::Bare(c) => c,
        };
        Ok(list.iter().any(|c| c.status == "TASK_RUNNING"))
    }

    /// Poll, gently, until the rollout is complete and a container runs.
    async fn wait_running(&self, project: &str, service: &str) -> Result<(), ProviderError> {
        let s = &self.api.settings;
        let deadline = tokio::time::Instant::now() + s.ready_timeout;
        let mut wait = s.poll_interval;
        loop {
            // Low: fewer than `low_budget` requests (at most a tenth of the limit) left.
            let b = self.api.budget.state();
            let threshold = b.limit.map_or(s.low_budget, |l| s.low_budget.min(l / 10));
            let low = b.remaining.is_some_and(|r| r < threshold);
            tokio::time::sleep(if low {
                s.low_budget_poll_interval
            } else {
                wait
            })
            .await;
            wait = wait.mul_f64(1.5).min(s.max_poll_interval);
            let svc = self
                .service(project, service)
                .await?
                .ok_or_else(|| ProviderError::NotFound(format!("{project}/{service}")))?;
            let running = match svc.rollout() {
                "FAILED" => {
                    return Err(ProviderError::Api {
                        provider: "northflank".into(),
                        status: 200,
                        message: format!(
                            "the deployment of {service} failed{}",
                            svc.reason().map(|r| format!(" ({r})")).unwrap_or_default()
                        ),
                        hint: Some("check that `image` in .rclaude.toml [sandbox] is a public image path (or one your registry credentials allow), and look at the service's logs in Northflank".into()),
                    });
                }
                "COMPLETED" if !svc.paused() => self.running_container(project, service).await?,
                _ => false,
            };
            if running {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProviderError::Sandbox(SandboxError::Timeout(format!(
                    "Northflank service {service} was not running after {} s (rollout {})",
                    s.ready_timeout.as_secs(),
                    svc.rollout()
                ))));
            }
        }
    }

    async fn delete_service(&self, project: &str, service: &str) -> Result<Reply, ProviderError> {
        self.api
            .send(
                Method::DELETE,
                &format!("/v1/projects/{project}/services/{service}"),
                &[("delete_child_objects", "true".into())],
                None,
            )
            .await
    }

    async fn create_inner(
        &self,
        project: &str,
        spec: &SandboxSpec,
        workdir: &str,
        mount: &str,
    ) -> Result<SandboxInfo, ProviderError> {
        let image = spec
            .image
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .unwrap_or(DEFAULT_IMAGE);
        let plan = match &self.api.settings.plan {
            Some(p) => p.clone(),
            None => pick_plan(spec.cpu, spec.memory_mb),
        };
        let service = service_name(&spec.name);
        let volume = format!("{service}-ws");
        let description = describe(workdir, &spec.metadata)?;
        let op = Op::Create { image, project };
        let r = self
            .api
            .send(
                Method::POST,
                &format!("/v1/projects/{project}/volumes"),
                &[],
                Some(json!({
                    "name": volume,
                    "mounts": [{ "containerMountPath": mount }],
                    "spec": {
                        "accessMode": "ReadWriteMany",
                        "storageClassName": self.api.settings.storage_class,
                        "storageSize": self.api.settings.volume_mb,
                    },
                })),
            )
            .await?;
        if !r.status.is_success() {
            return Err(api_error(&r, op));
        }
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        let vol: Created = r.data()?;
        let body = json!({
            "name": service,
            "description": description,
            "billing": { "deploymentPlan": plan },
            "deployment": {
                "instances": 1,
                "external": { "imagePath": image },
                "docker": { "configType": "customCommand", "customCommand": "sleep infinity" },
            },
            "runtimeEnvironment": spec.env,
            "createOptions": { "volumesToAttach": [volume] },
        });
        let r = self
            .api
            .send(
                Method::POST,
                &format!("/v1/projects/{project}/services/deployment"),
                &[],
                Some(body),
            )
            .await?;
        if !r.status.is_success() {
            let err = api_error(&r, op);
            let cleanup = self
                .api
                .send(
                    Method::DELETE,
                    &format!("/v1/projects/{project}/volumes/{}", vol.id),
                    &[],
                    None,
                )
                .await;
            if !matches!(&cleanup, Ok(r) if r.status.is_success()) {
                tracing::warn!(volume = %vol.id, "could not remove the volume of the failed create");
            }
            return Err(err);
        }
        let svc: Created = r.data()?;
        let id = format!("{project}/{}", svc.id);
        // From here on a failure must not leave a billed service behind.
        let ready = async {
            self.wait_running(project, &svc.id).await?;
            let sb = NorthflankSandbox::new(self.target(project, &svc.id), &id, workdir);
            sb.make_dir(workdir).await?;
            Ok::<_, ProviderError>(())
        };
        if let Err(e) = ready.await {
            if let Err(k) = self.delete_service(project, &svc.id).await {
                tracing::warn!(sandbox = %id, "could not remove the half-made sandbox: {k}");
            }
            return Err(e);
        }
        let mut metadata = spec.metadata.clone();
        metadata.insert("rclaude.workdir".into(), workdir.to_string());
        Ok(SandboxInfo {
            id,
            provider: "northflank".into(),
            state: SandboxState::Running,
            workdir: workdir.to_string(),
            metadata,
            started_at: Some(crate::time::now_rfc3339()),
            end_at: None,
        })
    }

    /// One page of the project's rclaude services and the next cursor.
    async fn list_page(
        &self,
        project: &str,
        cursor: Option<&str>,
    ) -> Result<(Vec<SandboxInfo>, Option<String>), ProviderError> {
        let mut q = vec![("per_page", "100".to_string())];
        if let Some(c) = cursor {
            q.push(("cursor", c.to_string()));
        }
        let r = self
            .api
            .send(
                Method::GET,
                &format!("/v1/projects/{project}/services"),
                &q,
                None,
            )
            .await?;
        if !r.status.is_success() {
            return Err(api_error(&r, Op::List { project }));
        }
        #[derive(Deserialize)]
        struct Page {
            services: Vec<ServiceDto>,
        }
        let page: Page = r.data()?;
        let v = r.value()?;
        let next = v["pagination"]["hasNextPage"]
            .as_bool()
            .unwrap_or(false)
            .then(|| v["pagination"]["cursor"].as_str().map(str::to_string))
            .flatten();
        let infos = page
            .services
            .into_iter()
            .filter_map(|svc| info_from(project, svc))
            .collect();
        Ok((infos, next))
    }
}

#[async_trait]
impl Provider for NorthflankProvider {
    fn name(&self) -> &'static str {
        "northflank"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pause_keeps_memory: false,
            // Only the workspace volume survives a pause; the rest of the container is reset.
            persistent_disk: true,
            auto_pause: false,
            pty: false,
        }
    }

    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo, ProviderError> {
        if !spec.network.is_open() {
            return Err(ProviderError::Config(
                "[network] restrictions are not enforceable on Northflank by rclaude yet (its egress rules are project-wide, not per sandbox): remove [network], or use the e2b, daytona or local provider".into(),
            ));
        }
        let project = self.api.settings.require_project()?.to_string();
        let workdir = if spec.workdir == CONFIG_DEFAULT_WORKDIR {
            DEFAULT_WORKDIR.to_string()
        } else {
            spec.workdir.trim_end_matches('/').to_string()
        };
        let mount = volume_mount(&workdir)?;
        self.create_inner(&project, spec, &workdir, &mount).await
    }

    async fn connect(&self, id: &str) -> Result<Arc<dyn Sandbox>, ProviderError> {
        let (project, service) = parse_id(id)?;
        let svc = self
            .service(project, service)
            .await?
            .ok_or_else(|| ProviderError::NotFound(id.into()))?;
        let path = format!("/v1/projects/{project}/services/{service}");
        if svc.service_paused.unwrap_or(false) {
            let r = self
                .api
                .send(
                    Method::POST,
                    &format!("{path}/resume"),
                    &[],
                    Some(json!({ "instances": 1 })),
                )
                .await?;
            if !r.status.is_success() {
                return Err(api_error(&r, Op::Sandbox { id }));
            }
            self.wait_running(project, service).await?;
        } else if svc.paused() {
            let r = self
                .api
                .send(
                    Method::POST,
                    &format!("{path}/scale"),
                    &[],
                    Some(json!({ "instances": 1 })),
                )
                .await?;
            if !r.status.is_success() {
                return Err(api_error(&r, Op::Sandbox { id }));
            }
            self.wait_running(project, service).await?;
        } else if svc.rollout() != "COMPLETED" {
            self.wait_running(project, service).await?;
        }
        let workdir = svc
            .description
            .as_deref()
            .and_then(|d| parse_description(d).remove("workdir"))
            .unwrap_or_else(|| DEFAULT_WORKDIR.into());
        Ok(Arc::new(NorthflankSandbox::new(
            self.target(project, service),
            id,
            &workdir,
        )))
    }

    async fn info(&self, id: &str) -> Result<Option<SandboxInfo>, ProviderError> {
        let (project, service) = parse_id(id)?;
        Ok(self
            .service(project, service)
            .await?
            .and_then(|svc| info_from(project, svc)))
    }

    async fn pause(&self, id: &str) -> Result<(), ProviderError> {
        let (project, service) = parse_id(id)?;
        let r = self
            .api
            .send(
                Method::POST,
                &format!("/v1/projects/{project}/services/{service}/pause"),
                &[],
                None,
            )
            .await?;
        match r.status.as_u16() {
            200..=299 => Ok(()),
            404 => Err(ProviderError::NotFound(id.into())),
            // Already paused.
            409 => Ok(()),
            _ => Err(api_error(&r, Op::Sandbox { id })),
        }
    }

    async fn kill(&self, id: &str) -> Result<(), ProviderError> {
        let (project, service) = parse_id(id)?;
        let r = self.delete_service(project, service).await?;
        match r.status.as_u16() {
            200..=299 => Ok(()),
            404 => Err(ProviderError::NotFound(id.into())),
            _ => Err(api_error(&r, Op::Sandbox { id })),
        }
    }

    async fn list(&self) -> Result<Vec<SandboxInfo>, ProviderError> {
        let project = self.api.settings.require_project()?.to_string();
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let (page, next) = self.list_page(&project, cursor.as_deref()).await?;
            out.extend(page);
            match next {
                Some(c) if Some(&c) != cursor.as_ref() => cursor = Some(c),
                _ => return Ok(out),
            }
        }
        Err(ProviderError::Api {
            provider: "northflank".into(),
            status: 200,
            message: format!("listing services did not finish after {MAX_PAGES} pages"),
            hint: Some("retry; if it persists, report it".into()),
        })
    }
}

/// `<project>/<service>`.
fn parse_id(id: &str) -> Result<(&str, &str), ProviderError> {
    let bad = || {
        ProviderError::Config(format!(
            "invalid Northflank sandbox id {id:?}: expected <project>/<service>"
        ))
    };
    let (p, s) = id.split_once('/').ok_or_else(bad)?;
    settings::check_name("project id", p).map_err(|_| bad())?;
    settings::check_name("service id", s).map_err(|_| bad())?;
    Ok((p, s))
}

/// The workspace volume's mount point: the workdir's parent.
fn volume_mount(workdir: &str) -> Result<String, ProviderError> {
    if !workdir.starts_with('/') || workdir.contains('\0') || workdir.contains(char::is_whitespace)
    {
        return Err(ProviderError::Config(format!(
            "workdir {workdir:?} must be an absolute path without spaces"
        )));
    }
    let parent = std::path::Path::new(workdir)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if parent.is_empty() || parent == "/" {
        return Err(ProviderError::Config(format!(
            "workdir {workdir:?} is too shallow for Northflank: the workspace volume is mounted at the workdir's parent, so use at least two levels, e.g. \"/workspace/repo\""
        )));
    }
    Ok(parent)
}

/// The smallest plan with at least `cpu` vCPUs and `memory_mb`.
pub fn pick_plan(cpu: Option<u32>, memory_mb: Option<u32>) -> String {
    if cpu.is_none() && memory_mb.is_none() {
        return settings::DEFAULT_PLAN.into();
    }
    let want_cpu = cpu.unwrap_or(0) * 10;
    let want_mem = memory_mb.unwrap_or(0);
    match PLANS
        .iter()
        .find(|(_, c, m)| *c >= want_cpu && *m >= want_mem)
    {
        Some((name, _, _)) => name.to_string(),
        None => {
            let (name, _, _) = PLANS[PLANS.len() - 1];
            tracing::warn!(
                "no Northflank plan has {} vCPU and {} MB; using {name} (set NORTHFLANK_DEPLOYMENT_PLAN to choose another)",
                cpu.unwrap_or(0),
                want_mem
            );
            name.to_string()
        }
    }
}

/// `rclaude-<repo slug>-<6 hex>`: ≤ 40 characters, starts with a letter.
fn service_name(repo: &str) -> String {
    let mut slug = String::new();
    for c in repo.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(24).collect();
    let slug = slug.trim_end_matches('-');
    let tail = &uuid::Uuid::new_v4().simple().to_string()[..6];
    if slug.is_empty() {
        format!("rclaude-{tail}")
    } else {
        format!("rclaude-{slug}-{tail}")
    }
}

fn enc(v: &str) -> String {
    v.replace('%', "%25")
        .replace(' ', "%20")
        .replace('=', "%3D")
}

fn dec(v: &str) -> String {
    v.replace("%20", " ")
        .replace("%3D", "=")
        .replace("%25", "%")
}

/// The service description: `rclaude workdir=… repo=… branch=… session=…`.
fn describe(workdir: &str, metadata: &BTreeMap<String, String>) -> Result<String, ProviderError> {
    let get = |k: &str| metadata.get(k).map(String::as_str).unwrap_or("");
    let session = get("rclaude.session");
    let mut repo: String = get("rclaude.repo").chars().take(40).collect();
    let mut branch: String = get("rclaude.branch").chars().take(40).collect();
    loop {
        let d = format!(
            "{DESCRIPTION_PREFIX}workdir={} repo={} branch={} session={}",
            enc(workdir),
            enc(&repo),
            enc(&branch),
            enc(session)
        );
        if d.len() <= MAX_DESCRIPTION {
            return Ok(d);
        }
        if !branch.is_empty() {
            branch.pop();
        } else if !repo.is_empty() {
            repo.pop();
        } else {
            return Err(ProviderError::Config(format!(
                "workdir {workdir:?} is too long for Northflank's service description; use a shorter path"
            )));
        }
    }
}

fn parse_description(d: &str) -> BTreeMap<String, String> {
    d.strip_prefix(DESCRIPTION_PREFIX)
        .unwrap_or("")
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), dec(v)))
        .collect()
}

/// A listed service as a sandbox; `None` when it is not rclaude's.
fn info_from(project: &str, svc: ServiceDto) -> Option<SandboxInfo> {
    let desc = svc.description.as_deref()?;
    if !desc.starts_with(DESCRIPTION_PREFIX) {
        return None;
    }
    let fields = parse_description(desc);
    let state = if svc.paused() {
        SandboxState::Paused
    } else {
        match svc.rollout() {
            "COMPLETED" => SandboxState::Running,
            "FAILED" => SandboxState::Other("failed".into()),
            _ => SandboxState::Other("starting".into()),
        }
    };
    let mut metadata = BTreeMap::new();
    for (k, v) in &fields {
        metadata.insert(format!("rclaude.{k}"), v.clone());
    }
    metadata.insert("rclaude.managed".into(), "true".into());
    Some(SandboxInfo {
        id: format!("{project}/{}", svc.id),
        provider: "northflank".into(),
        state,
        workdir: fields
            .get("workdir")
            .cloned()
            .unwrap_or_else(|| DEFAULT_WORKDIR.into()),
        metadata,
        started_at: svc.created_at,
        end_at: None,
    })
}

/// An API failure with Northflank's message and what to do about it.
fn api_error(reply: &Reply, op: Op<'_>) -> ProviderError {
    let status = reply.status.as_u16();
    let message = reply.message();
    let hint = match (status, &op) {
        (401, _) => Some(format!(
            "Northflank rejected the API token: check NORTHFLANK_API_TOKEN ({})",
            settings::TOKEN_HELP
        )),
        (403, _) => Some("the token's API role may not do that: it needs services, volumes and command execution (create, read, update, delete) in this project".into()),
        (404, Op::Create { project, .. }) | (404, Op::List { project }) => Some(format!(
            "project \"{project}\" does not exist for this token's team: check `project` in .rclaude.toml [sandbox] or NORTHFLANK_PROJECT_ID"
        )),
        (404, Op::Sandbox { id }) => Some(format!(
            "sandbox {id} no longer exists; `rclaude up` creates a new one and syncs your work tree into it"
        )),
        (400, Op::Create { image, .. }) => Some(format!(
            "Northflank refused the sandbox settings: check `image` (\"{image}\", an external image path), `cpu`/`memory_mb` (or NORTHFLANK_DEPLOYMENT_PLAN) in .rclaude.toml"
        )),
        (409, Op::Create { .. }) => Some("a service or volume with this name already exists; run `rclaude up` again (the name has a random part)".into()),
        (409, Op::Sandbox { id }) => Some(format!("sandbox {id} is busy changing state; retry in a few seconds")),
        (429, _) => Some("Northflank's API rate limit (about 1,000 requests per hour) was reached: wait a few minutes".into()),
        (500..=599, _) => Some("Northflank had a server problem; try again in a minute".into()),
        _ => None,
    };
    ProviderError::Api {
        provider: "northflank".into(),
        status,
        message,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_by_size() {
        assert_eq!(pick_plan(None, None), "nf-compute-200");
        assert_eq!(pick_plan(Some(1), None), "nf-compute-100-2");
        assert_eq!(pick_plan(Some(1), Some(3000)), "nf-compute-200");
        assert_eq!(pick_plan(None, Some(512)), "nf-compute-20");
        assert_eq!(pick_plan(Some(4), Some(8192)), "nf-compute-400");
        assert_eq!(pick_plan(Some(64), None), "nf-compute-800-32");
    }

    #[test]
    fn names_ids_and_mounts() {
        let n = service_name("My Repo_2!");
        assert!(n.starts_with("rclaude-my-repo-2-") && n.len() <= 40, "{n}");
        let n = service_name(&"x".repeat(100));
        assert!(n.len() <= 40, "{n}");
        assert!(service_name("☃").starts_with("rclaude-"));
        assert_eq!(parse_id("proj/svc").unwrap(), ("proj", "svc"));
        for bad in ["svc", "p/", "/s", "P/s", "p/s/x", "p/../s"] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
        assert_eq!(volume_mount("/workspace/repo").unwrap(), "/workspace");
        assert!(volume_mount("/repo").is_err());
        assert!(volume_mount("relative/x").is_err());
    }

    #[test]
    fn descriptions_round_trip_and_fit() {
        let mut m = BTreeMap::new();
        m.insert("rclaude.repo".to_string(), "my repo".to_string());
        m.insert("rclaude.branch".to_string(), "feat=x%".to_string());
        m.insert(
            "rclaude.session".to_string(),
            "0f4c2b8e-1111-2222-3333-444455556666".to_string(),
        );
        let d = describe("/workspace/repo", &m).unwrap();
        let f = parse_description(&d);
        assert_eq!(f["workdir"], "/workspace/repo");
        assert_eq!(f["repo"], "my repo");
        assert_eq!(f["branch"], "feat=x%");
        m.insert("rclaude.branch".to_string(), "b".repeat(300));
        assert!(describe("/workspace/repo", &m).unwrap().len() <= MAX_DESCRIPTION);
        assert!(describe(&format!("/w/{}", "d".repeat(300)), &m).is_err());
    }
}
