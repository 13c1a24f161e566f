//! A local stand-in for Northflank: the REST endpoints rclaude uses (`/v1/projects/{p}/volumes`,
//! `/services/deployment`, `/services/{s}`, `…/containers`, `…/pause`, `…/resume`, `…/scale`,
//! `DELETE …?delete_child_objects=`, the service list) and the exec WebSocket
//! (`/v1/command-exec/projects/{p}/services/{s}`), which runs real processes on this machine.
//!
//! - REST: `Authorization: Bearer <TOKEN>`; `{data: …}` envelopes, `{error: {message, details}}`
//!   errors; request bodies validated (unknown keys refused, names, plans, image path, custom
//!   command, volume spec, volumes to attach, description length); unknown project → 404.
//! - Request budget: [`FakeOptions::budget`] requests per [`FakeOptions::window`] (the window
//!   starts with the first request); every reply carries `x-ratelimit-limit`, `-remaining` and
//!   `-reset` (seconds until the window resets); beyond the budget → 429 (counted in
//!   [`FakeNorthflank::rejected`]). Exec WebSockets are not counted (unknown for Northflank).
//! - Rollouts: a created or resumed service is `IN_PROGRESS` with a `TASK_STARTING` container
//!   for [`FakeOptions::rollout`], then `COMPLETED` with a `TASK_RUNNING` one; images in
//!   [`FakeOptions::failing_images`] end `FAILED`. Pause (or scale to 0) kills every exec'd
//!   process and wipes the container file system except the attached volumes' mount paths.
//! - Exec: no auth header; the first message must be `init` with the token (else
//!   `{"type":"init","data":{"auth":"failed"}}`); `shell: "none"` runs the argv directly;
//!   `encoding` `utf-8` or `base64` applies to payloads and output; only a running container
//!   accepts commands. Output goes out as text frames, `completion` carries the exit code once the
//!   process exited and its pipes closed.
//! - Container file system: every service's root is [`FakeOptions::shared_root`] (or
//!   `<base>/services/<id>`); processes see host paths, so tests put the workdir (and the volume
//!   mount, the workdir's parent) inside that root.
#![allow(dead_code, clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The token the fake accepts.
pub const TOKEN: &str = "nf-eyJhbGciOiJIUzI1NiJ9.fake-northflank-team-token";
/// The project that exists.
pub const PROJECT: &str = "rclaude-test";
/// Plans the fake knows.
pub const PLANS: &[&str] = &[
    "nf-compute-10",
    "nf-compute-20",
    "nf-compute-50",
    "nf-compute-100-1",
    "nf-compute-100-2",
    "nf-compute-200",
    "nf-compute-400",
    "nf-compute-800-32",
];

#[derive(Debug, Clone)]
pub struct FakeOptions {
    pub shared_root: Option<PathBuf>,
    pub rollout: Duration,
    pub budget: u64,
    pub window: Duration,
    pub failing_images: Vec<String>,
    pub page_size: usize,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            shared_root: None,
            rollout: Duration::from_millis(1500),
            budget: 1000,
            window: Duration::from_secs(3600),
            failing_images: vec![],
            page_size: 100,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub body: Option<Value>,
    pub status: u16,
    pub at: Instant,
}

/// A service as the fake sees it.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub id: String,
    pub description: String,
    pub plan: String,
    pub image: String,
    pub custom_command: String,
    pub instances: u64,
    pub paused: bool,
    pub env: BTreeMap<String, String>,
    pub volumes: Vec<String>,
    pub rollout: String,
    pub root: PathBuf,
    pub processes: usize,
}

#[derive(Debug, Clone)]
pub struct VolumeView {
    pub id: String,
    pub name: String,
    pub mount: String,
    pub size: u64,
    pub access_mode: String,
    pub storage_class: String,
    pub attached_to: Option<String>,
}

pub struct FakeNorthflank {
    pub addr: SocketAddr,
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

struct Shared {
    opts: FakeOptions,
    base: PathBuf,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    services: BTreeMap<String, Svc>,
    volumes: BTreeMap<String, Vol>,
    requests: Vec<Recorded>,
    execs: Vec<Value>,
    window_start: Option<Instant>,
    used: u64,
    rejected: u64,
}

struct Svc {
    id: String,
    name: String,
    description: String,
    plan: String,
    image: String,
    custom_command: String,
    instances: u64,
    paused: bool,
    env: BTreeMap<String, String>,
    volumes: Vec<String>,
    ready_at: Instant,
    failed: bool,
    created_at: String,
    root: PathBuf,
    generation: u64,
    pids: Vec<u32>,
}

struct Vol {
    id: String,
    name: String,
    mount: String,
    size: u64,
    access_mode: String,
    storage_class: String,
    attached_to: Option<String>,
}

impl Svc {
    fn running(&self) -> bool {
        !self.paused && self.instances > 0 && !self.failed && Instant::now() >= self.ready_at
    }
    fn rollout(&self) -> &'static str {
        if self.failed {
            "FAILED"
        } else if self.paused || self.instances == 0 || Instant::now() >= self.ready_at {
            "COMPLETED"
        } else {
            "IN_PROGRESS"
        }
    }
}

type St = State<Arc<Shared>>;

impl FakeNorthflank {
    pub fn start() -> FakeNorthflank {
        Self::start_with(FakeOptions::default())
    }

    pub fn start_with(opts: FakeOptions) -> FakeNorthflank {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(base.join("services")).unwrap();
        if let Some(root) = &opts.shared_root {
            std::fs::create_dir_all(root).unwrap();
        }
        let shared = Arc::new(Shared {
            opts,
            base,
            state: Mutex::new(FakeState::default()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name("fake-northflank".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    use axum::serve::ListenerExt;
                    // Real servers answer small frames at once: no Nagle delay.
                    let listener =
                        tokio::net::TcpListener::from_std(listener)
                            .unwrap()
                            .tap_io(|tcp| {
                                let _ = tcp.set_nodelay(true);
                            });
                    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    });
                    let _ = server.await;
                });
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .unwrap();
        FakeNorthflank {
            addr,
            url: format!("http://{addr}"),
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// Variables pointing rclaude at this fake (the project as `NORTHFLANK_PROJECT_ID`).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("NORTHFLANK_API_TOKEN", TOKEN.into()),
            ("NORTHFLANK_API_URL", self.url.clone()),
            ("NORTHFLANK_PROJECT_ID", PROJECT.into()),
        ]
    }

    pub fn services(&self) -> Vec<ServiceView> {
        let st = self.shared.state.lock().unwrap();
        st.services
            .values()
            .map(|s| ServiceView {
                id: s.id.clone(),
                description: s.description.clone(),
                plan: s.plan.clone(),
                image: s.image.clone(),
                custom_command: s.custom_command.clone(),
                instances: s.instances,
                paused: s.paused,
                env: s.env.clone(),
                volumes: s.volumes.clone(),
                rollout: s.rollout().to_string(),
                root: s.root.clone(),
                processes: s.pids.len(),
            })
            .collect()
    }

    pub fn volumes(&self) -> Vec<VolumeView> {
        let st = self.shared.state.lock().unwrap();
        st.volumes
            .values()
            .map(|v| VolumeView {
                id: v.id.clone(),
                name: v.name.clone(),
                mount: v.mount.clone(),
                size: v.size,
                access_mode: v.access_mode.clone(),
                storage_class: v.storage_class.clone(),
                attached_to: v.attached_to.clone(),
            })
            .collect()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    pub fn requests_to(&self, method: &str, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .collect()
    }

    /// The `context` of every exec `init` the fake accepted.
    pub fn exec_inits(&self) -> Vec<Value> {
        self.shared.state.lock().unwrap().execs.clone()
    }

    /// Requests refused with 429.
    pub fn rejected(&self) -> u64 {
        self.shared.state.lock().unwrap().rejected
    }

    /// Requests counted in the current window.
    pub fn used(&self) -> u64 {
        self.shared.state.lock().unwrap().used
    }

    /// Scale a service to zero behind rclaude's back (as the dashboard would).
    pub fn scale_to_zero(&self, id: &str) {
        let mut st = self.shared.state.lock().unwrap();
        let mounts = mounts_of(&st, id);
        if let Some(s) = st.services.get_mut(id) {
            s.instances = 0;
            stop_container(s, &mounts);
        }
    }
}

impl Drop for FakeNorthflank {
    fn drop(&mut self) {
        {
            let mut st = self.shared.state.lock().unwrap();
            for s in st.services.values_mut() {
                kill_pids(s);
            }
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------

fn error(status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({ "error": { "status": status, "message": message, "id": uuid::Uuid::new_v4().to_string() } })),
    )
        .into_response()
}

fn invalid(message: &str, field: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": {
            "status": 400,
            "message": "Validation failed",
            "details": { field: [message] },
        } })),
    )
        .into_response()
}

fn data(body: Value) -> Response {
    (StatusCode::OK, axum::Json(json!({ "data": body }))).into_response()
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn valid_name(n: &str) -> bool {
    (3..=54).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_alphabetic())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

async fn handle(State(sh): St, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    if path.starts_with("/v1/command-exec/") {
        let (mut parts, _) = req.into_parts();
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(e) => return e.into_response(),
        };
        let seg: Vec<String> = path.split('/').map(str::to_string).collect();
        // ["", "v1", "command-exec", "projects", p, "services", s]
        return match seg.as_slice() {
            [_, _, _, projects, p, services, s]
                if projects == "projects" && services == "services" =>
            {
                let (p, s) = (p.clone(), s.clone());
                ws.on_upgrade(move |socket| exec_session(sh, p, s, socket))
            }
            _ => error(404, "Unknown exec target"),
        };
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let is_json = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let json_body: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes).ok()
    };
    // The budget.
    let (limit, remaining, reset, over) = {
        let mut st = sh.state.lock().unwrap();
        let now = Instant::now();
        let start = *st.window_start.get_or_insert(now);
        let start = if now.duration_since(start) >= sh.opts.window {
            st.window_start = Some(now);
            st.used = 0;
            now
        } else {
            start
        };
        let over = st.used >= sh.opts.budget;
        if over {
            st.rejected += 1;
        } else {
            st.used += 1;
        }
        let reset = (start + sh.opts.window).saturating_duration_since(now);
        (
            sh.opts.budget,
            sh.opts.budget - st.used.min(sh.opts.budget),
            reset,
            over,
        )
    };
    let authorized = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    let mut resp = if over {
        error(429, "Too many requests: rate limit exceeded")
    } else if !authorized {
        error(401, "Unauthorized: invalid or missing API token")
    } else if !bytes.is_empty() && !is_json {
        error(415, "Content-Type must be application/json")
    } else if !bytes.is_empty() && json_body.is_none() {
        error(400, "Request body is not valid JSON")
    } else {
        route(&sh, &method, &path, query.as_deref(), json_body.clone())
    };
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert(
        "x-ratelimit-reset",
        HeaderValue::from(reset.as_secs_f64().ceil() as u64),
    );
    sh.state.lock().unwrap().requests.push(Recorded {
        method: method.to_string(),
        path,
        query,
        body: json_body,
        status: resp.status().as_u16(),
        at: Instant::now(),
    });
    resp
}

fn route(
    sh: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: Option<Value>,
) -> Response {
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let ["v1", "projects", project, rest @ ..] = seg.as_slice() else {
        return error(404, "Not found");
    };
    if *project != PROJECT {
        return error(404, &format!("Project {project} not found"));
    }
    match (method.as_str(), rest) {
        ("POST", ["volumes"]) => create_volume(sh, body),
        ("DELETE", ["volumes", v]) => delete_volume(sh, v),
        ("POST", ["services", "deployment"]) => create_service(sh, body),
        ("GET", ["services"]) => list_services(sh, query),
        ("GET", ["services", s]) => match service_json(sh, s) {
            Some(v) => data(v),
            None => error(404, &format!("Service {s} not found")),
        },
        ("GET", ["services", s, "containers"]) => containers(sh, s),
        ("POST", ["services", s, "pause"]) => pause(sh, s),
        ("POST", ["services", s, "resume"]) => resume(sh, s, body),
        ("POST", ["services", s, "scale"]) => scale(sh, s, body),
        ("DELETE", ["services", s]) => delete_service(sh, s, query),
        _ => error(404, &format!("Cannot {method} {path}")),
    }
}

fn object(body: Option<Value>, allowed: &[&str]) -> Result<Map<String, Value>, Response> {
    let Some(Value::Object(b)) = body else {
        return Err(error(400, "Request body must be a JSON object"));
    };
    if let Some(k) = b.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(&format!("\"{k}\" is not allowed"), k));
    }
    Ok(b)
}

fn create_volume(sh: &Arc<Shared>, body: Option<Value>) -> Response {
    let b = match object(body, &["name", "mounts", "spec", "attachedObjects", "tags"]) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = b
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| valid_name(n))
    else {
        return invalid(
            "\"name\" must be 3-54 characters, start with a letter and contain only letters, digits and hyphens",
            "name",
        );
    };
    let mount = match b.get("mounts").and_then(Value::as_array).map(Vec::as_slice) {
        Some([m]) => match m.get("containerMountPath").and_then(Value::as_str) {
            Some(p) if p.starts_with('/') && p.len() > 1 => p.to_string(),
            _ => return invalid("\"containerMountPath\" must be an absolute path", "mounts"),
        },
        _ => return invalid("\"mounts\" must hold exactly one mount", "mounts"),
    };
    let spec = b.get("spec").cloned().unwrap_or(Value::Null);
    let access = spec["accessMode"].as_str().unwrap_or("");
    if !["ReadWriteOnce", "ReadWriteMany"].contains(&access) {
        return invalid(
            "\"accessMode\" must be one of [ReadWriteOnce, ReadWriteMany]",
            "spec.accessMode",
        );
    }
    let class = spec["storageClassName"].as_str().unwrap_or("");
    if !["nf-multi-rw", "ssd"].contains(&class) {
        return invalid(
            "\"storageClassName\" must be one of [nf-multi-rw, ssd]",
            "spec.storageClassName",
        );
    }
    let Some(size) = spec["storageSize"]
        .as_u64()
        .filter(|s| (1024..=1_000_000).contains(s))
    else {
        return invalid(
            "\"storageSize\" must be an integer from 1024 to 1000000 (MB)",
            "spec.storageSize",
        );
    };
    let mut st = sh.state.lock().unwrap();
    if st.volumes.values().any(|v| v.name == name) {
        return error(409, &format!("A volume named {name} already exists"));
    }
    let id = name.to_lowercase();
    st.volumes.insert(
        id.clone(),
        Vol {
            id: id.clone(),
            name: name.to_string(),
            mount: mount.clone(),
            size,
            access_mode: access.into(),
            storage_class: class.into(),
            attached_to: None,
        },
    );
    data(
        json!({ "id": id, "name": name, "mounts": [{ "containerMountPath": mount }], "spec": spec }),
    )
}

fn delete_volume(sh: &Arc<Shared>, v: &str) -> Response {
    let mut st = sh.state.lock().unwrap();
    match st.volumes.get(v) {
        None => error(404, &format!("Volume {v} not found")),
        Some(vol) if vol.attached_to.is_some() => error(409, "Volume is attached to a service"),
        Some(_) => {
            st.volumes.remove(v);
            data(json!({}))
        }
    }
}

fn create_service(sh: &Arc<Shared>, body: Option<Value>) -> Response {
    let b = match object(
        body,
        &[
            "name",
            "description",
            "tags",
            "billing",
            "deployment",
            "ports",
            "runtimeEnvironment",
            "runtimeFiles",
            "createOptions",
            "healthChecks",
        ],
    ) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = b
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| valid_name(n))
    else {
        return invalid(
            "\"name\" must be 3-54 characters, start with a letter and contain only letters, digits and hyphens",
            "name",
        );
    };
    let b = Value::Object(b.clone());
    let description = match b.get("description") {
        None => String::new(),
        Some(Value::String(d)) if d.len() <= 200 => d.clone(),
        Some(_) => {
            return invalid(
                "\"description\" must be a string of at most 200 characters",
                "description",
            );
        }
    };
    if let Some(tags) = b.get("tags").and_then(Value::as_array)
        && !tags.is_empty()
    {
        return invalid("tags must be defined in the team settings first", "tags");
    }
    let Some(plan) = b["billing"]["deploymentPlan"]
        .as_str()
        .filter(|p| PLANS.contains(p))
    else {
        return invalid(
            "\"deploymentPlan\" must be a valid plan id",
            "billing.deploymentPlan",
        );
    };
    let dep = &b["deployment"];
    if !dep.is_object() {
        return invalid("\"deployment\" is required", "deployment");
    }
    let Some(instances) = dep["instances"].as_u64().filter(|i| *i <= 10) else {
        return invalid(
            "\"instances\" must be an integer from 0 to 10",
            "deployment.instances",
        );
    };
    let Some(image) = dep["external"]["imagePath"]
        .as_str()
        .filter(|i| !i.trim().is_empty())
    else {
        return invalid(
            "\"external.imagePath\" is required",
            "deployment.external.imagePath",
        );
    };
    let config_type = dep["docker"]["configType"].as_str().unwrap_or("default");
    let custom = dep["docker"]["customCommand"].as_str().unwrap_or("");
    match config_type {
        "default" => {}
        "customCommand" if !custom.trim().is_empty() => {}
        "customCommand" => {
            return invalid(
                "\"customCommand\" is required with configType customCommand",
                "deployment.docker.customCommand",
            );
        }
        _ => {
            return invalid(
                "\"configType\" must be one of [default, customEntrypoint, customCommand, customEntrypointCustomCommand]",
                "deployment.docker.configType",
            );
        }
    }
    let env: BTreeMap<String, String> = match b.get("runtimeEnvironment") {
        None => BTreeMap::new(),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
        Some(_) => {
            return invalid(
                "\"runtimeEnvironment\" must be an object of strings",
                "runtimeEnvironment",
            );
        }
    };
    let attach: Vec<String> = match b["createOptions"]["volumesToAttach"].as_array() {
        None => vec![],
        Some(a) => match a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
        {
            Some(v) => v,
            None => {
                return invalid(
                    "\"volumesToAttach\" must be a list of volume names",
                    "createOptions.volumesToAttach",
                );
            }
        },
    };
    let id = name.to_lowercase();
    let mut st = sh.state.lock().unwrap();
    if st.services.contains_key(&id) {
        return error(409, &format!("A service named {name} already exists"));
    }
    let mut vol_ids = Vec::new();
    for v in &attach {
        match st
            .volumes
            .values()
            .find(|vol| vol.name == *v || vol.id == *v)
        {
            None => {
                return invalid(
                    &format!("volume {v} does not exist"),
                    "createOptions.volumesToAttach",
                );
            }
            Some(vol) if vol.attached_to.is_some() => {
                return error(409, &format!("Volume {v} is already attached"));
            }
            Some(vol) => vol_ids.push(vol.id.clone()),
        }
    }
    for v in &vol_ids {
        st.volumes.get_mut(v).unwrap().attached_to = Some(id.clone());
    }
    let root = match &sh.opts.shared_root {
        Some(r) => r.clone(),
        None => sh.base.join("services").join(&id),
    };
    std::fs::create_dir_all(root.join("root")).unwrap();
    for v in &vol_ids {
        // Mount paths are host paths here; only those inside the service root are made.
        let mount = PathBuf::from(&st.volumes[v].mount);
        if mount.starts_with(&root) {
            std::fs::create_dir_all(&mount).unwrap();
        }
    }
    st.services.insert(
        id.clone(),
        Svc {
            id: id.clone(),
            name: name.to_string(),
            description,
            plan: plan.to_string(),
            image: image.to_string(),
            custom_command: custom.to_string(),
            instances,
            paused: false,
            env,
            volumes: vol_ids,
            ready_at: Instant::now() + sh.opts.rollout,
            failed: sh.opts.failing_images.iter().any(|f| f == image),
            created_at: now_rfc3339(),
            root,
            generation: 0,
            pids: vec![],
        },
    );
    drop(st);
    data(service_json(sh, &id).unwrap())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn service_json(sh: &Arc<Shared>, id: &str) -> Option<Value> {
    let st = sh.state.lock().unwrap();
    let s = st.services.get(id)?;
    Some(json!({
        "id": s.id,
        "name": s.name,
        "appId": format!("/{PROJECT}/{}", s.id),
        "description": s.description,
        "serviceType": "deployment",
        "createdAt": s.created_at,
        "servicePaused": s.paused,
        "billing": { "deploymentPlan": s.plan },
        "deployment": {
            "instances": s.instances,
            "external": { "imagePath": s.image },
            "docker": { "configType": "customCommand", "customCommand": s.custom_command },
        },
        "status": { "deployment": {
            "status": s.rollout(),
            "reason": if s.failed { "IMAGE_PULL_FAILED" } else if s.rollout() == "COMPLETED" { "DEPLOYING" } else { "SCALING" },
            "lastTransitionTime": s.created_at,
        } },
    }))
}

fn containers(sh: &Arc<Shared>, id: &str) -> Response {
    let st = sh.state.lock().unwrap();
    let Some(s) = st.services.get(id) else {
        return error(404, &format!("Service {id} not found"));
    };
    let list = if s.paused || s.instances == 0 {
        vec![]
    } else {
        let status = if s.failed {
            "TASK_FAILED"
        } else if s.running() {
            "TASK_RUNNING"
        } else {
            "TASK_STARTING"
        };
        vec![
            json!({ "name": format!("{}-{}-x7k2p", s.id, s.generation), "status": status, "createdAt": s.created_at }),
        ]
    };
    data(json!({ "containers": list }))
}

fn mounts_of(st: &FakeState, id: &str) -> Vec<PathBuf> {
    st.services
        .get(id)
        .map(|s| {
            s.volumes
                .iter()
                .filter_map(|v| st.volumes.get(v))
                .map(|v| PathBuf::from(&v.mount))
                .collect()
        })
        .unwrap_or_default()
}

fn kill_pids(s: &mut Svc) {
    for pid in s.pids.drain(..) {
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

/// The container goes away: its processes die and its file system is reset, volumes excepted.
fn stop_container(s: &mut Svc, mounts: &[PathBuf]) {
    kill_pids(s);
    s.generation += 1;
    wipe_except(&s.root, mounts);
    let _ = std::fs::create_dir_all(s.root.join("root"));
}

fn wipe_except(dir: &Path, keep: &[PathBuf]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if keep.iter().any(|k| k == &p) {
            continue;
        }
        if keep.iter().any(|k| k.starts_with(&p)) {
            wipe_except(&p, keep);
            continue;
        }
        if p.is_dir() && !p.is_symlink() {
            let _ = std::fs::remove_dir_all(&p);
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }
}

fn pause(sh: &Arc<Shared>, id: &str) -> Response {
    let mut st = sh.state.lock().unwrap();
    let mounts = mounts_of(&st, id);
    let Some(s) = st.services.get_mut(id) else {
        return error(404, &format!("Service {id} not found"));
    };
    if s.paused {
        return error(409, "Service is already paused");
    }
    s.paused = true;
    stop_container(s, &mounts);
    data(json!({}))
}

fn resume(sh: &Arc<Shared>, id: &str, body: Option<Value>) -> Response {
    let instances = match body {
        None => None,
        Some(Value::Object(b)) => match b.get("instances") {
            None => None,
            Some(v) => match v.as_u64().filter(|i| (1..=10).contains(i)) {
                Some(i) => Some(i),
                None => {
                    return invalid("\"instances\" must be an integer from 1 to 10", "instances");
                }
            },
        },
        Some(_) => return error(400, "Request body must be a JSON object"),
    };
    let mut st = sh.state.lock().unwrap();
    let Some(s) = st.services.get_mut(id) else {
        return error(404, &format!("Service {id} not found"));
    };
    if !s.paused {
        return error(409, "Service is not paused");
    }
    s.paused = false;
    if let Some(i) = instances {
        s.instances = i;
    } else if s.instances == 0 {
        s.instances = 1;
    }
    s.ready_at = Instant::now() + sh.opts.rollout;
    data(json!({}))
}

fn scale(sh: &Arc<Shared>, id: &str, body: Option<Value>) -> Response {
    let Some(instances) = body
        .as_ref()
        .and_then(|b| b["instances"].as_u64())
        .filter(|i| *i <= 10)
    else {
        return invalid("\"instances\" must be an integer from 0 to 10", "instances");
    };
    let mut st = sh.state.lock().unwrap();
    let mounts = mounts_of(&st, id);
    let Some(s) = st.services.get_mut(id) else {
        return error(404, &format!("Service {id} not found"));
    };
    if s.paused {
        return error(409, "Service is paused; resume it instead");
    }
    if instances == 0 {
        s.instances = 0;
        stop_container(s, &mounts);
    } else if s.instances == 0 {
        s.instances = instances;
        s.ready_at = Instant::now() + sh.opts.rollout;
    }
    data(json!({}))
}

fn delete_service(sh: &Arc<Shared>, id: &str, query: Option<&str>) -> Response {
    let q = query_map(query);
    let children = match q.get("delete_child_objects").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return invalid(
                "\"delete_child_objects\" must be a boolean",
                "delete_child_objects",
            );
        }
    };
    let mut st = sh.state.lock().unwrap();
    let mounts = mounts_of(&st, id);
    let Some(mut s) = st.services.remove(id) else {
        return error(404, &format!("Service {id} not found"));
    };
    kill_pids(&mut s);
    for v in &s.volumes {
        if children {
            st.volumes.remove(v);
        } else if let Some(vol) = st.volumes.get_mut(v) {
            vol.attached_to = None;
        }
    }
    if children {
        wipe_except(&s.root, &[]);
        if sh.opts.shared_root.as_deref() != Some(s.root.as_path()) {
            let _ = std::fs::remove_dir_all(&s.root);
        }
    } else {
        wipe_except(&s.root, &mounts);
    }
    data(json!({}))
}

fn list_services(sh: &Arc<Shared>, query: Option<&str>) -> Response {
    let q = query_map(query);
    let per_page = match q.get("per_page").map(|p| p.parse::<usize>()) {
        None => 50,
        Some(Ok(p)) if (1..=100).contains(&p) => p,
        _ => return invalid("\"per_page\" must be an integer from 1 to 100", "per_page"),
    }
    .min(sh.opts.page_size);
    let start = match q.get("cursor") {
        None => 0,
        Some(c) => match c.strip_prefix("cur").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => return invalid("\"cursor\" is not valid", "cursor"),
        },
    };
    let ids: Vec<String> = sh.state.lock().unwrap().services.keys().cloned().collect();
    let page: Vec<Value> = ids
        .iter()
        .skip(start)
        .take(per_page)
        .filter_map(|id| service_json(sh, id))
        .collect();
    let more = start + per_page < ids.len();
    (
        StatusCode::OK,
        axum::Json(json!({
            "data": { "services": page },
            "pagination": { "hasNextPage": more, "cursor": more.then(|| format!("cur{}", start + per_page)), "count": page.len() },
        })),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Exec

async fn send_json(tx: &mut futures::stream::SplitSink<WebSocket, Message>, v: Value) -> bool {
    tx.send(Message::Text(v.to_string().into())).await.is_ok()
}

async fn refuse(mut socket: WebSocket, v: Value) {
    let _ = socket.send(Message::Text(v.to_string().into())).await;
    let _ = socket
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
}

fn message_json(msg: Message) -> Option<Value> {
    match msg {
        Message::Text(t) => serde_json::from_str(t.as_str()).ok(),
        Message::Binary(b) => serde_json::from_slice(&b).ok(),
        _ => None,
    }
}

async fn exec_session(sh: Arc<Shared>, project: String, service: String, mut socket: WebSocket) {
    // The first message: init with the token and the command.
    let init = loop {
        match socket.recv().await {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => break message_json(m),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        }
    };
    let Some(init) = init.filter(|v| v["type"] == "init") else {
        return refuse(
            socket,
            json!({ "type": "error", "data": { "message": "expected an init message" } }),
        )
        .await;
    };
    let auth = &init["data"]["auth"];
    if auth["type"] != "apiToken" || auth["apiToken"] != TOKEN {
        return refuse(
            socket,
            json!({ "type": "init", "data": { "auth": "failed", "message": "Invalid API token" } }),
        )
        .await;
    }
    let ctx = init["data"]["context"].clone();
    let encoding = ctx["encoding"].as_str().unwrap_or("utf-8").to_string();
    if encoding != "utf-8" && encoding != "base64" {
        return refuse(
            socket,
            json!({ "type": "error", "data": { "message": "encoding must be utf-8 or base64" } }),
        )
        .await;
    }
    if ctx["tty"].as_bool() == Some(true) {
        return refuse(
            socket,
            json!({ "type": "error", "data": { "message": "tty is not supported by this fake" } }),
        )
        .await;
    }
    let argv: Vec<String> = match (&ctx["command"], ctx["shell"].as_str()) {
        (Value::Array(a), Some("none")) => match a.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<Vec<_>>>() {
            Some(v) if !v.is_empty() => v,
            _ => return refuse(socket, json!({ "type": "error", "data": { "message": "command must be a non-empty list of strings" } })).await,
        },
        (Value::String(s), Some("none")) => s.split_whitespace().map(str::to_string).collect(),
        (Value::String(s), Some(sh_cmd)) => {
            let mut v: Vec<String> = sh_cmd.split_whitespace().map(str::to_string).collect();
            v.push(s.clone());
            v
        }
        _ => return refuse(socket, json!({ "type": "error", "data": { "message": "command and shell are required" } })).await,
    };
    if project != PROJECT {
        return refuse(
            socket,
            json!({ "type": "error", "data": { "message": "Project not found" } }),
        )
        .await;
    }
    let found = {
        let st = sh.state.lock().unwrap();
        match st.services.get(&service) {
            Some(s) if s.running() => Ok((s.root.clone(), s.env.clone())),
            Some(_) => Err("No running container found for this service"),
            None => Err("Service not found"),
        }
    };
    let (root, env) = match found {
        Ok(v) => v,
        Err(m) => {
            return refuse(socket, json!({ "type": "error", "data": { "message": m } })).await;
        }
    };
    let home = root.join("root");
    let _ = std::fs::create_dir_all(&home);
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir("/")
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env("HOME", &home)
        .env("LANG", "C.UTF-8")
        .envs(&env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(false);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return refuse(
                socket,
                json!({ "type": "error", "data": { "message": format!("exec failed: {e}") } }),
            )
            .await;
        }
    };
    let pid = child.id().unwrap_or(0);
    {
        let mut st = sh.state.lock().unwrap();
        st.execs.push(ctx.clone());
        if let Some(s) = st.services.get_mut(&service) {
            s.pids.push(pid);
        }
    }
    let (mut tx, mut rx) = socket.split();
    if !send_json(&mut tx, json!({ "type": "init", "data": { "auth": "successful", "context": { "instanceName": format!("{service}-x7k2p"), "containerName": "main" } } })).await {
        return;
    }
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(bool, Vec<u8>)>(16);
    for (is_err, mut pipe) in [
        (
            false,
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        ),
        (
            true,
            Box::new(stderr) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        ),
    ] {
        let out_tx = out_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out_tx.send((is_err, buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(out_tx);
    let encode = |b: &[u8]| -> String {
        if encoding == "base64" {
            B64.encode(b)
        } else {
            String::from_utf8_lossy(b).into_owned()
        }
    };
    let mut client_open = true;
    let mut output_open = true;
    while output_open {
        tokio::select! {
            out = out_rx.recv() => match out {
                Some((is_err, bytes)) => {
                    let kind = if is_err { "stdErr" } else { "stdOut" };
                    if !send_json(&mut tx, json!({ "type": kind, "data": encode(&bytes) })).await {
                        return;
                    }
                }
                None => output_open = false,
            },
            msg = rx.next(), if client_open => match msg {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    let Some(v) = message_json(m) else { continue };
                    match v["type"].as_str() {
                        Some("payload") => {
                            let raw = v["data"].as_str().unwrap_or("");
                            let bytes = if encoding == "base64" {
                                match B64.decode(raw) {
                                    Ok(b) => b,
                                    Err(_) => {
                                        let _ = send_json(&mut tx, json!({ "type": "error", "data": { "message": "payload is not base64" } })).await;
                                        return;
                                    }
                                }
                            } else {
                                raw.as_bytes().to_vec()
                            };
                            if let Some(s) = stdin.as_mut() {
                                let _ = s.write_all(&bytes).await;
                            }
                        }
                        Some("stdInEnd") => {
                            if let Some(mut s) = stdin.take() {
                                let _ = s.shutdown().await;
                            }
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => client_open = false,
                Some(Ok(_)) => {}
            },
        }
    }
    drop(stdin);
    let status = child.wait().await.ok();
    {
        let mut st = sh.state.lock().unwrap();
        if let Some(s) = st.services.get_mut(&service) {
            s.pids.retain(|p| *p != pid);
        }
    }
    let code = status.and_then(|s| s.code());
    let _ = send_json(
        &mut tx,
        json!({ "type": "completion", "data": {
            "exitCode": code,
            "status": if code == Some(0) { "Success" } else { "Failure" },
        } }),
    )
    .await;
    let _ = tx
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    // Finish the closing handshake: dropping a socket with unread client frames (a late
    // `stdInEnd`) resets the connection, and the client then loses the completion.
    if client_open {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(m)) = rx.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}
