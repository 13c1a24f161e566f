//! A local stand-in for Daytona: the control-plane REST API (`/api/sandbox…`) for the endpoints
//! rclaude uses, validated the way Daytona's API validates them, and the toolbox proxy
//! (`/toolbox/{sandboxId}/…`) running real processes on this machine, speaking Daytona's
//! toolbox API.
//!
//! - Auth: `Authorization: Bearer <API_KEY>` on every call, WebSocket handshakes included (401
//!   `{statusCode, message}` otherwise); on a sandbox's toolbox calls its preview token
//!   (`X-Daytona-Preview-Token`, from `GET /sandbox/{id}/ports/{port}/preview-url`, ports
//!   3000–9999) in its place. Errors are `{statusCode, message, code}`.
//! - Sandboxes move through Daytona's states with a delay per step ([`FakeOptions::step`]):
//!   `creating`/`pending_build` → (`building_snapshot`) → `starting` → `started`, `stopping` →
//!   `stopped`, `archiving` → `archived`, `destroying` → `destroyed` (404 afterwards). While
//!   `state != desiredState` transitions are refused (409); a transition from a state that does
//!   not allow it is 400; `pause` is 422 (no VM class here). Images in
//!   [`FakeOptions::failing_images`] end in `build_failed` with an `errorReason`.
//! - Auto-stop: a started sandbox idle (no lifecycle, toolbox or `last-activity` call) for longer
//!   than its `autoStopInterval` is stopped on the next request; [`FakeDaytona::set_idle`] ages
//!   it. `autoDeleteInterval: 0` deletes it when it stops.
//! - Toolbox: sessions are real `bash` processes in their own process group (cwd = the sandbox
//!   home, env = the create `env` + `HOME`/`PATH`), commands are wrapped as the daemon wraps
//!   them (FIFOs, line relays prefixing `01 01 01`/`02 02 02`, an exit-code file written when the
//!   command ends), the log WebSocket replays and follows the log — split into frames that cut
//!   markers on purpose — and closes once the exit code exists and no output came for
//!   [`FakeOptions::log_close_after`]. Without `X-Daytona-SDK-Version` ≥ 0.27 the markers are
//!   stripped (merged output), as the daemon does. Session delete SIGTERMs then SIGKILLs the
//!   group. Files: `bulk-upload` (multipart `files[i].path`/`files[i].file`, written to a temp
//!   file and renamed), `download`, `info`, `DELETE /files`, `folder`, `move` (409 when the
//!   destination exists), on host paths verbatim.
//! - Sandbox roots: `<base>/sandboxes/<id>`, or [`FakeOptions::shared_root`] for every sandbox
//!   (so a test can name a workdir inside it before the sandbox exists). Home is
//!   `<root>/home/daytona`. Stop kills every session (files stay); delete removes the root (or
//!   empties the shared one).
#![allow(dead_code, clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt, TryStreamExt};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The API key the fake accepts.
pub const API_KEY: &str = "dtn_0123456789abcdef0123456789abcdef0123456789abcdef";
/// Known snapshots.
pub const DEFAULT_SNAPSHOT: &str = "daytonaio/sandbox:0.4.3";

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    pub shared_root: Option<PathBuf>,
    pub snapshots: Vec<String>,
    /// Images whose build fails.
    pub failing_images: Vec<String>,
    /// Delay of each state step.
    pub step: Duration,
    /// The log socket closes this long after the exit code appeared and output stopped.
    pub log_close_after: Duration,
    /// Page size of `GET /sandbox` (the client's `limit` is capped to it).
    pub page_size: usize,
    /// Answer `GET /sandbox` with a bare array (older servers).
    pub bare_list: bool,
    /// Leave `toolboxProxyUrl` out of sandbox objects (clients must ask for it).
    pub omit_toolbox_url: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            shared_root: None,
            snapshots: vec![DEFAULT_SNAPSHOT.into(), "python-dev".into()],
            failing_images: vec![],
            step: Duration::from_millis(100),
            log_close_after: Duration::from_millis(250),
            page_size: 100,
            bare_list: false,
            omit_toolbox_url: false,
        }
    }
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HashMap<String, String>,
    pub body: Option<Value>,
    pub status: u16,
}

/// A sandbox as the fake sees it.
#[derive(Debug, Clone)]
pub struct SandboxView {
    pub id: String,
    pub state: String,
    pub desired_state: String,
    pub labels: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub snapshot: Option<String>,
    pub dockerfile: Option<String>,
    pub cpu: i64,
    pub memory: i64,
    pub auto_stop_interval: i64,
    pub auto_delete_interval: i64,
    pub target: String,
    pub root: PathBuf,
    /// Live command sessions.
    pub sessions: usize,
}

/// The running fake.
pub struct FakeDaytona {
    pub addr: SocketAddr,
    /// The API base URL (`http://127.0.0.1:<port>/api`).
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

struct Shared {
    opts: FakeOptions,
    base: PathBuf,
    origin: String,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    sandboxes: BTreeMap<String, Sbx>,
    requests: Vec<Recorded>,
    /// Statuses to answer the next matching requests with: (method, path suffix) → status.
    injections: Vec<(String, String, u16, String)>,
}

struct Sbx {
    id: String,
    state: String,
    desired: String,
    error_reason: Option<String>,
    labels: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
    snapshot: Option<String>,
    dockerfile: Option<String>,
    cpu: i64,
    memory: i64,
    disk: i64,
    auto_stop: i64,
    auto_archive: i64,
    auto_delete: i64,
    target: String,
    user: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    last_activity: OffsetDateTime,
    root: PathBuf,
    sessions: HashMap<String, Session>,
    /// Bumped by every transition; a pending step of an older one is dropped.
    generation: u64,
    /// Its preview token: `X-Daytona-Preview-Token` reaches this sandbox's toolbox (and
    /// previews) and nothing else.
    preview_token: String,
}

struct Session {
    child: Option<std::process::Child>,
    stdin: std::process::ChildStdin,
    pgid: i32,
    dir: PathBuf,
    commands: HashMap<String, Cmd>,
    closed: tokio::sync::watch::Sender<bool>,
}

#[derive(Clone)]
struct Cmd {
    command: String,
    log: PathBuf,
    exit: PathBuf,
    input: PathBuf,
}

type St = State<Arc<Shared>>;

impl FakeDaytona {
    pub fn start() -> FakeDaytona {
        Self::start_with(FakeOptions::default())
    }

    pub fn start_with(opts: FakeOptions) -> FakeDaytona {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        for sub in ["sandboxes", "sessions"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        if let Some(root) = &opts.shared_root {
            std::fs::create_dir_all(root).unwrap();
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            opts,
            base,
            origin: format!("http://{addr}"),
            state: Mutex::new(FakeState::default()),
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let thread = std::thread::Builder::new()
            .name("fake-daytona".into())
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
        FakeDaytona {
            addr,
            url: format!("http://{addr}/api"),
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The variables that point rclaude at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DAYTONA_API_KEY", API_KEY.into()),
            ("DAYTONA_API_URL", self.url.clone()),
        ]
    }

    pub fn sandboxes(&self) -> Vec<SandboxView> {
        let st = self.shared.state.lock().unwrap();
        st.sandboxes
            .values()
            .filter(|s| s.state != "destroyed")
            .map(|s| SandboxView {
                id: s.id.clone(),
                state: s.state.clone(),
                desired_state: s.desired.clone(),
                labels: s.labels.clone(),
                env: s.env.clone(),
                snapshot: s.snapshot.clone(),
                dockerfile: s.dockerfile.clone(),
                cpu: s.cpu,
                memory: s.memory,
                auto_stop_interval: s.auto_stop,
                auto_delete_interval: s.auto_delete,
                target: s.target.clone(),
                root: s.root.clone(),
                sessions: s.sessions.len(),
            })
            .collect()
    }

    pub fn sandbox(&self, id: &str) -> Option<SandboxView> {
        self.sandboxes().into_iter().find(|s| s.id == id)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    /// Requests with this method whose path ends with `suffix`.
    pub fn requests_to(&self, method: &str, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .collect()
    }

    /// Requests with this method whose path contains `part`.
    pub fn requests_containing(&self, method: &str, part: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.contains(part))
            .collect()
    }

    /// Pretend the sandbox has seen no activity for `idle`.
    pub fn set_idle(&self, id: &str, idle: Duration) {
        let mut st = self.shared.state.lock().unwrap();
        if let Some(s) = st.sandboxes.get_mut(id) {
            s.last_activity = OffsetDateTime::now_utc() - idle;
        }
    }

    /// Answer the next request with `method` whose path ends with `suffix` with `status`.
    pub fn inject(&self, method: &str, suffix: &str, status: u16, message: &str) {
        self.shared.state.lock().unwrap().injections.push((
            method.into(),
            suffix.into(),
            status,
            message.into(),
        ));
    }

    /// Stop a started sandbox behind rclaude's back (e.g. Daytona's auto-stop).
    pub fn stop_now(&self, id: &str) {
        let mut st = self.shared.state.lock().unwrap();
        if let Some(s) = st.sandboxes.get_mut(id) {
            kill_sessions(s);
            s.state = "stopped".into();
            s.desired = "stopped".into();
        }
    }
}

impl Drop for FakeDaytona {
    fn drop(&mut self) {
        {
            let mut st = self.shared.state.lock().unwrap();
            for s in st.sandboxes.values_mut() {
                kill_sessions(s);
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
// Plumbing

fn error(status: u16, message: &str) -> Response {
    let code = match status {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        404 => "NOT_FOUND",
        409 => "CONFLICT",
        422 => "UNPROCESSABLE_ENTITY",
        _ => "ERROR",
    };
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({ "statusCode": status, "message": message, "code": code })),
    )
        .into_response()
}

fn ok(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        m.insert(pct_decode(k), pct_decode(v));
    }
    m
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match h.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {API_KEY}"))
}

/// A toolbox call for one sandbox carrying that sandbox's preview token.
fn preview_authorized(sh: &Arc<Shared>, path: &str, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get("x-daytona-preview-token")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(id) = path
        .strip_prefix("/toolbox/")
        .and_then(|r| r.split('/').next())
    else {
        return false;
    };
    sh.state
        .lock()
        .unwrap()
        .sandboxes
        .get(id)
        .is_some_and(|s| s.preview_token == token)
}

async fn handle(State(sh): St, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let is_json = headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/json"));
    let (parts, body) = req.into_parts();
    // Bodies other than JSON (uploads) are streamed, not recorded.
    let (json_body, raw_body, stream_body) = if is_json {
        let bytes = axum::body::to_bytes(body, 16 << 20)
            .await
            .unwrap_or_default();
        (
            serde_json::from_slice::<Value>(&bytes).ok(),
            Some(bytes),
            None,
        )
    } else {
        (None, None, Some(body))
    };
    let injected = {
        let mut st = sh.state.lock().unwrap();
        let at = st
            .injections
            .iter()
            .position(|(m, s, _, _)| *m == method.as_str() && path.ends_with(s.as_str()));
        at.map(|i| st.injections.remove(i))
    };
    let resp = if let Some((_, _, status, msg)) = injected {
        error(status, &msg)
    } else if !authorized(&parts.headers) && !preview_authorized(&sh, &path, &parts.headers) {
        error(401, "Unauthorized")
    } else if let Some(rest) = path.strip_prefix("/api/") {
        enforce_auto_stop(&sh);
        control(
            &sh,
            &method,
            rest,
            query.as_deref(),
            is_json,
            json_body.clone(),
            raw_body,
        )
        .await
    } else if let Some(rest) = path.strip_prefix("/toolbox/") {
        enforce_auto_stop(&sh);
        toolbox(
            &sh,
            parts,
            rest,
            query.as_deref(),
            json_body.clone(),
            stream_body,
        )
        .await
    } else {
        error(404, "Cannot route this path")
    };
    sh.state.lock().unwrap().requests.push(Recorded {
        method: method.to_string(),
        path,
        query,
        headers,
        body: json_body,
        status: resp.status().as_u16(),
    });
    resp
}

fn enforce_auto_stop(sh: &Arc<Shared>) {
    let due: Vec<String> = {
        let st = sh.state.lock().unwrap();
        st.sandboxes
            .values()
            .filter(|s| s.state == "started" && s.desired == "started" && s.auto_stop > 0)
            .filter(|s| now() - s.last_activity > time::Duration::minutes(s.auto_stop))
            .map(|s| s.id.clone())
            .collect()
    };
    for id in due {
        let mut st = sh.state.lock().unwrap();
        if let Some(s) = st.sandboxes.get_mut(&id) {
            kill_sessions(s);
            s.state = "stopped".into();
            s.desired = "stopped".into();
            if s.auto_delete == 0 {
                destroy(sh, s);
            }
        }
    }
}

fn touch(sh: &Arc<Shared>, id: &str) {
    if let Some(s) = sh.state.lock().unwrap().sandboxes.get_mut(id) {
        s.last_activity = now();
    }
}

// ---------------------------------------------------------------------------------------------
// Control plane

const CREATE_FIELDS: &[&str] = &[
    "name",
    "snapshot",
    "buildInfo",
    "user",
    "env",
    "labels",
    "public",
    "class",
    "target",
    "cpu",
    "gpu",
    "memory",
    "disk",
    "autoStopInterval",
    "autoArchiveInterval",
    "autoDeleteInterval",
    "volumes",
    "networkBlockAll",
    "networkAllowList",
];

async fn control(
    sh: &Arc<Shared>,
    method: &Method,
    rest: &str,
    query: Option<&str>,
    is_json: bool,
    body: Option<Value>,
    raw: Option<Bytes>,
) -> Response {
    let seg: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method.as_str(), seg.as_slice()) {
        ("POST", ["sandbox"]) => {
            if !is_json {
                return error(400, "Content-Type must be application/json");
            }
            match body {
                Some(Value::Object(b)) => create(sh, b),
                _ if raw.as_ref().is_some_and(|r| r.is_empty()) => {
                    error(400, "request body is required")
                }
                _ => error(400, "request body must be a JSON object"),
            }
        }
        ("GET", ["sandbox"]) => list(sh, query),
        ("GET", ["sandbox", id]) => match view_json(sh, id) {
            Some(v) => ok(200, v),
            None => error(404, &format!("Sandbox with ID or name {id} not found")),
        },
        ("GET", ["sandbox", id, "toolbox-proxy-url"]) => {
            if view_json(sh, id).is_none() {
                return error(404, &format!("Sandbox with ID or name {id} not found"));
            }
            ok(200, json!({ "url": format!("{}/toolbox", sh.origin) }))
        }
        ("GET", ["sandbox", id, "ports", port, "preview-url"]) => {
            let Ok(port) = port.parse::<u16>() else {
                return error(400, "port must be a number");
            };
            if !(3000..=9999).contains(&port) {
                return error(400, "Port must be between 3000 and 9999");
            }
            let st = sh.state.lock().unwrap();
            match st.sandboxes.get(*id).filter(|s| s.state != "destroyed") {
                Some(s) => ok(
                    200,
                    json!({
                        "sandboxId": s.id,
                        "url": format!("http://{port}-{}.proxy.localhost", s.id),
                        "token": s.preview_token,
                    }),
                ),
                None => error(404, &format!("Sandbox with ID or name {id} not found")),
            }
        }
        ("POST", ["sandbox", id, "last-activity"]) => {
            if view_json(sh, id).is_none() {
                return error(404, &format!("Sandbox with ID or name {id} not found"));
            }
            touch(sh, id);
            StatusCode::CREATED.into_response()
        }
        (
            "POST",
            [
                "sandbox",
                id,
                action @ ("start" | "stop" | "archive" | "pause"),
            ],
        ) => transition(sh, id, action, query),
        ("DELETE", ["sandbox", id]) => delete(sh, id),
        _ => error(404, &format!("Cannot {method} /api/{rest}")),
    }
}

fn create(sh: &Arc<Shared>, b: Map<String, Value>) -> Response {
    if let Some(k) = b.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        return error(400, &format!("property {k} should not exist"));
    }
    let string_map = |key: &str| -> Result<BTreeMap<String, String>, Response> {
        match b.get(key) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(error(400, &format!("{key}.{k} must be a string"))),
                })
                .collect(),
            Some(_) => Err(error(400, &format!("{key} must be an object"))),
        }
    };
    let env = match string_map("env") {
        Ok(m) => m,
        Err(r) => return r,
    };
    let labels = match string_map("labels") {
        Ok(m) => m,
        Err(r) => return r,
    };
    let int = |key: &str, min: i64, max: i64| -> Result<Option<i64>, Response> {
        match b.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) if n.is_i64() => {
                let v = n.as_i64().unwrap();
                if v < min || v > max {
                    Err(error(
                        400,
                        &format!("{key} must be between {min} and {max}"),
                    ))
                } else {
                    Ok(Some(v))
                }
            }
            Some(_) => Err(error(400, &format!("{key} must be an integer number"))),
        }
    };
    let (cpu, memory, disk) = match (int("cpu", 1, 4), int("memory", 1, 8), int("disk", 1, 10)) {
        (Ok(c), Ok(m), Ok(d)) => (c, m, d),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let (auto_stop, auto_archive, auto_delete) = match (
        int("autoStopInterval", 0, 60 * 24 * 30),
        int("autoArchiveInterval", 0, 60 * 24 * 30),
        int("autoDeleteInterval", -1, i64::MAX),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a.unwrap_or(15), b.unwrap_or(7 * 24 * 60), c.unwrap_or(-1)),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let target = match b.get("target") {
        None => "us".to_string(),
        Some(Value::String(t)) if t == "us" || t == "eu" => t.clone(),
        Some(Value::String(t)) => return error(400, &format!("Region {t} is not available")),
        Some(_) => return error(400, "target must be a string"),
    };
    let snapshot = match b.get("snapshot") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return error(400, "snapshot must be a non-empty string"),
    };
    let dockerfile = match b.get("buildInfo") {
        None => None,
        Some(Value::Object(bi)) => match bi.get("dockerfileContent") {
            Some(Value::String(d)) if d.trim_start().starts_with("FROM ") => Some(d.clone()),
            Some(Value::String(_)) => {
                return error(
                    400,
                    "buildInfo.dockerfileContent must start with a FROM instruction",
                );
            }
            _ => return error(400, "buildInfo.dockerfileContent must be a string"),
        },
        Some(_) => return error(400, "buildInfo must be an object"),
    };
    if snapshot.is_some() && dockerfile.is_some() {
        return error(400, "Cannot specify both snapshot and buildInfo");
    }
    if dockerfile.is_none() && (cpu.is_some() || memory.is_some() || disk.is_some()) {
        return error(
            400,
            "Cannot specify Sandbox resources when using a snapshot",
        );
    }
    if let Some(s) = &snapshot
        && !sh.opts.snapshots.contains(s)
    {
        return error(404, &format!("Snapshot {s} not found"));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let root = match &sh.opts.shared_root {
        Some(r) => r.clone(),
        None => sh.base.join("sandboxes").join(&id),
    };
    std::fs::create_dir_all(root.join("home/daytona")).unwrap();
    let failing = dockerfile.as_deref().is_some_and(|d| {
        sh.opts
            .failing_images
            .iter()
            .any(|img| d.trim() == format!("FROM {img}"))
    });
    let building = dockerfile.is_some();
    let sbx = Sbx {
        preview_token: uuid::Uuid::new_v4().simple().to_string(),
        id: id.clone(),
        state: if building {
            "pending_build"
        } else {
            "creating"
        }
        .into(),
        desired: "started".into(),
        error_reason: None,
        labels,
        env,
        snapshot: snapshot
            .clone()
            .or_else(|| (!building).then(|| DEFAULT_SNAPSHOT.into())),
        dockerfile,
        cpu: cpu.unwrap_or(1),
        memory: memory.unwrap_or(1),
        disk: disk.unwrap_or(3),
        auto_stop,
        auto_archive,
        auto_delete,
        target,
        user: match b.get("user") {
            Some(Value::String(u)) => u.clone(),
            _ => "daytona".into(),
        },
        created_at: now(),
        updated_at: now(),
        last_activity: now(),
        root,
        sessions: HashMap::new(),
        generation: 0,
    };
    let steps: Vec<&str> = if failing {
        vec!["building_snapshot", "build_failed"]
    } else if building {
        vec!["building_snapshot", "starting", "started"]
    } else {
        vec!["starting", "started"]
    };
    sh.state.lock().unwrap().sandboxes.insert(id.clone(), sbx);
    schedule(sh, &id, 0, steps);
    ok(200, view_json(sh, &id).unwrap())
}

/// Advance `id` through `steps`, one per [`FakeOptions::step`], unless another transition
/// (a newer generation) took over.
fn schedule(sh: &Arc<Shared>, id: &str, generation: u64, steps: Vec<&'static str>) {
    let sh = sh.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        for step in steps {
            tokio::time::sleep(sh.opts.step).await;
            let mut st = sh.state.lock().unwrap();
            let Some(s) = st.sandboxes.get_mut(&id) else {
                return;
            };
            if s.generation != generation {
                return;
            }
            s.state = step.into();
            s.updated_at = now();
            match step {
                "build_failed" => {
                    s.desired = "build_failed".into();
                    s.error_reason = Some(format!(
                        "failed to build the image: {} could not be pulled",
                        s.dockerfile.as_deref().unwrap_or("").trim()
                    ));
                }
                "started" => s.last_activity = now(),
                "stopped" => {
                    kill_sessions(s);
                    if s.auto_delete == 0 {
                        destroy(&sh, s);
                    }
                }
                "destroyed" => destroy(&sh, s),
                _ => {}
            }
        }
    });
}

fn destroy(sh: &Arc<Shared>, s: &mut Sbx) {
    kill_sessions(s);
    s.state = "destroyed".into();
    s.desired = "destroyed".into();
    if sh.opts.shared_root.as_deref() == Some(s.root.as_path()) {
        if let Ok(entries) = std::fs::read_dir(&s.root) {
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    let _ = std::fs::remove_dir_all(&p);
                } else {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    } else {
        let _ = std::fs::remove_dir_all(&s.root);
    }
}

fn transition(sh: &Arc<Shared>, id: &str, action: &str, query: Option<&str>) -> Response {
    let q = query_map(query);
    if let Some(f) = q.get("force")
        && f != "true"
        && f != "false"
    {
        return error(400, "force must be a boolean");
    }
    let generation;
    let steps: Vec<&'static str>;
    {
        let mut st = sh.state.lock().unwrap();
        let Some(s) = st.sandboxes.get_mut(id).filter(|s| s.state != "destroyed") else {
            return error(404, &format!("Sandbox with ID or name {id} not found"));
        };
        s.last_activity = now();
        if s.state != s.desired {
            return error(
                409,
                &format!(
                    "Sandbox {id} is {} (changing to {}); wait until the change finishes",
                    s.state, s.desired
                ),
            );
        }
        match (action, s.state.as_str()) {
            ("pause", _) => {
                return error(422, "Pause is only supported for sandboxes of the VM class");
            }
            ("start", "stopped" | "archived" | "paused") => {
                s.desired = "started".into();
                s.state = if s.state == "archived" {
                    "restoring"
                } else {
                    "starting"
                }
                .into();
                steps = vec!["started"];
            }
            ("start", other) => {
                return error(
                    400,
                    &format!(
                        "Sandbox is {other}; only stopped, archived or paused sandboxes can be started"
                    ),
                );
            }
            ("stop", "started" | "paused") => {
                s.desired = "stopped".into();
                s.state = "stopping".into();
                steps = vec!["stopped"];
            }
            ("stop", other) => {
                return error(
                    400,
                    &format!("Sandbox is {other}; only started sandboxes can be stopped"),
                );
            }
            ("archive", "stopped") => {
                s.desired = "archived".into();
                s.state = "archiving".into();
                steps = vec!["archived"];
            }
            ("archive", other) => {
                return error(
                    400,
                    &format!("Sandbox is {other}; it must be stopped to be archived"),
                );
            }
            _ => unreachable!(),
        }
        s.generation += 1;
        s.updated_at = now();
        generation = s.generation;
    }
    schedule(sh, id, generation, steps);
    ok(200, view_json(sh, id).unwrap())
}

fn delete(sh: &Arc<Shared>, id: &str) -> Response {
    let generation;
    {
        let mut st = sh.state.lock().unwrap();
        let Some(s) = st.sandboxes.get_mut(id).filter(|s| s.state != "destroyed") else {
            return error(404, &format!("Sandbox with ID or name {id} not found"));
        };
        if s.state == "destroying" {
            return error(409, &format!("Sandbox {id} is already being deleted"));
        }
        kill_sessions(s);
        s.state = "destroying".into();
        s.desired = "destroyed".into();
        s.generation += 1;
        generation = s.generation;
    }
    schedule(sh, id, generation, vec!["destroyed"]);
    ok(200, view_json(sh, id).unwrap())
}

fn list(sh: &Arc<Shared>, query: Option<&str>) -> Response {
    let q = query_map(query);
    let filter: BTreeMap<String, String> = match q.get("labels") {
        None => BTreeMap::new(),
        Some(l) => match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) if m.values().all(Value::is_string) => m
                .into_iter()
                .map(|(k, v)| (k, v.as_str().unwrap().to_string()))
                .collect(),
            _ => return error(400, "labels must be a JSON object of strings"),
        },
    };
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) if (1..=200).contains(&l) => l,
        _ => return error(400, "limit must be an integer from 1 to 200"),
    }
    .min(sh.opts.page_size);
    let start = match q.get("cursor") {
        None => 0,
        Some(c) => match c.strip_prefix("c-").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => n,
            None => return error(400, "invalid cursor"),
        },
    };
    let ids: Vec<String> = {
        let st = sh.state.lock().unwrap();
        let mut all: Vec<&Sbx> = st
            .sandboxes
            .values()
            .filter(|s| s.state != "destroyed")
            .filter(|s| filter.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .collect();
        all.sort_by_key(|s| s.created_at);
        all.iter().map(|s| s.id.clone()).collect()
    };
    let page: Vec<Value> = ids
        .iter()
        .skip(start)
        .take(limit)
        .filter_map(|id| view_json(sh, id))
        .collect();
    if sh.opts.bare_list {
        return ok(200, Value::Array(page));
    }
    let next = (start + limit < ids.len()).then(|| format!("c-{}", start + limit));
    ok(200, json!({ "items": page, "nextCursor": next }))
}

fn view_json(sh: &Arc<Shared>, id: &str) -> Option<Value> {
    let st = sh.state.lock().unwrap();
    let s = st.sandboxes.get(id).filter(|s| s.state != "destroyed")?;
    let mut v = json!({
        "id": s.id,
        "organizationId": "00000000-0000-0000-0000-000000000001",
        "name": s.id,
        "snapshot": s.snapshot,
        "user": s.user,
        "env": s.env,
        "labels": s.labels,
        "public": false,
        "target": s.target,
        "cpu": s.cpu,
        "gpu": 0,
        "memory": s.memory,
        "disk": s.disk,
        "state": s.state,
        "desiredState": s.desired,
        "errorReason": s.error_reason,
        "recoverable": false,
        "backupState": "None",
        "autoStopInterval": s.auto_stop,
        "autoArchiveInterval": s.auto_archive,
        "autoDeleteInterval": s.auto_delete,
        "createdAt": rfc3339(s.created_at),
        "updatedAt": rfc3339(s.updated_at),
        "lastActivityAt": rfc3339(s.last_activity),
    });
    if let Some(d) = &s.dockerfile {
        v["buildInfo"] = json!({ "dockerfileContent": d, "snapshotRef": "build-cache-1" });
    }
    if !sh.opts.omit_toolbox_url {
        v["toolboxProxyUrl"] = json!(format!("{}/toolbox", sh.origin));
    }
    Some(v)
}

// ---------------------------------------------------------------------------------------------
// Toolbox

fn kill_sessions(s: &mut Sbx) {
    for (_, mut sess) in s.sessions.drain() {
        end_session(&mut sess, Duration::ZERO);
    }
}

/// SIGTERM the session's group, SIGKILL it after `grace`, reap, and close its log sockets.
fn end_session(sess: &mut Session, grace: Duration) {
    let pgid = sess.pgid;
    unsafe {
        libc::kill(
            -pgid,
            if grace.is_zero() {
                libc::SIGKILL
            } else {
                libc::SIGTERM
            },
        )
    };
    let _ = sess.closed.send(true);
    let child = sess.child.take();
    std::thread::spawn(move || {
        if !grace.is_zero() {
            std::thread::sleep(grace);
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        if let Some(mut c) = child {
            let _ = c.wait();
        }
    });
}

fn sdk_keeps_markers(headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get("x-daytona-sdk-version")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = v.trim().split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (0, 27)
}

async fn toolbox(
    sh: &Arc<Shared>,
    mut parts: axum::http::request::Parts,
    rest: &str,
    query: Option<&str>,
    json: Option<Value>,
    body: Option<Body>,
) -> Response {
    let seg: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let Some((&id, seg)) = seg.split_first() else {
        return error(404, "sandbox id required");
    };
    {
        let st = sh.state.lock().unwrap();
        match st.sandboxes.get(id).filter(|s| s.state != "destroyed") {
            None => return error(404, &format!("Sandbox with ID or name {id} not found")),
            Some(s) if s.state != "started" => {
                return error(
                    400,
                    &format!("Sandbox {id} is not running (state {})", s.state),
                );
            }
            Some(_) => {}
        }
    }
    touch(sh, id);
    let q = query_map(query);
    let method = parts.method.clone();
    match (method.as_str(), seg) {
        ("POST", ["process", "session"])
        | ("POST", ["process", "session", _, "exec"])
        | ("POST", ["process", "session", _, "command", _, "input"]) => {
            match toolbox_json(sh, id, seg, json).await {
                Some(r) => r,
                None => error(
                    400,
                    "the request body must be a JSON object (Content-Type: application/json)",
                ),
            }
        }
        ("GET", ["process", "session", sid, "command", cid]) => command_get(sh, id, sid, cid),
        ("GET", ["process", "session", sid, "command", cid, "logs"]) => {
            let cmd = {
                let st = sh.state.lock().unwrap();
                let s = &st.sandboxes[id];
                match s.sessions.get(*sid) {
                    None => return error(404, "session not found"),
                    Some(sess) => match sess.commands.get(*cid) {
                        None => return error(404, "command not found"),
                        Some(c) => (c.clone(), sess.closed.subscribe()),
                    },
                }
            };
            let markers = sdk_keeps_markers(&parts.headers);
            let follow = q.get("follow").map(String::as_str) == Some("true");
            if parts.headers.get("upgrade").is_some() {
                let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
                    Ok(ws) => ws,
                    Err(e) => return e.into_response(),
                };
                let close_after = sh.opts.log_close_after;
                ws.on_upgrade(move |socket| {
                    stream_log(socket, cmd.0, cmd.1, follow, markers, close_after)
                })
            } else {
                let data = std::fs::read(&cmd.0.log).unwrap_or_default();
                let data = if markers { data } else { strip_markers(&data) };
                (StatusCode::OK, data).into_response()
            }
        }
        ("DELETE", ["process", "session", sid]) => {
            let mut st = sh.state.lock().unwrap();
            let s = st.sandboxes.get_mut(id).unwrap();
            match s.sessions.remove(*sid) {
                None => error(404, "session not found"),
                Some(mut sess) => {
                    end_session(&mut sess, Duration::from_millis(500));
                    StatusCode::NO_CONTENT.into_response()
                }
            }
        }
        ("POST", ["files", "bulk-upload"]) => bulk_upload(parts.headers, body).await,
        ("GET", ["files", "download"]) => download(q.get("path")).await,
        ("GET", ["files", "info"]) => file_info(q.get("path")),
        ("DELETE", ["files"]) => delete_file(q.get("path"), q.get("recursive")),
        ("POST", ["files", "folder"]) => folder(q.get("path"), q.get("mode")),
        ("POST", ["files", "move"]) => move_file(q.get("source"), q.get("destination")),
        _ => error(404, &format!("Cannot {method} /{}", seg.join("/"))),
    }
}

/// Toolbox calls with JSON bodies: sessions, exec, input.
async fn toolbox_json(
    sh: &Arc<Shared>,
    id: &str,
    seg: &[&str],
    body: Option<Value>,
) -> Option<Response> {
    let Some(Value::Object(b)) = body else {
        return None;
    };
    Some(match seg {
        ["process", "session"] => {
            let Some(Value::String(sid)) = b.get("sessionId") else {
                return Some(error(400, "sessionId must be a string"));
            };
            if sid.is_empty() || sid.contains('/') {
                return Some(error(400, "sessionId is invalid"));
            }
            create_session(sh, id, sid)
        }
        ["process", "session", sid, "exec"] => {
            let command = match b.get("command") {
                Some(Value::String(c)) if !c.trim().is_empty() => c.clone(),
                _ => return Some(error(400, "command cannot be empty")),
            };
            for key in ["runAsync", "async", "suppressInputEcho"] {
                if b.get(key).is_some_and(|v| !v.is_boolean()) {
                    return Some(error(400, &format!("{key} must be a boolean")));
                }
            }
            let run_async = b.get("runAsync").and_then(Value::as_bool).unwrap_or(false)
                || b.get("async").and_then(Value::as_bool).unwrap_or(false);
            exec(sh, id, sid, &command, run_async).await
        }
        ["process", "session", sid, "command", cid, "input"] => {
            let Some(Value::String(data)) = b.get("data") else {
                return Some(error(400, "data must be a string"));
            };
            send_input(sh, id, sid, cid, data).await
        }
        _ => return None,
    })
}

fn create_session(sh: &Arc<Shared>, id: &str, sid: &str) -> Response {
    let mut st = sh.state.lock().unwrap();
    let s = st.sandboxes.get_mut(id).unwrap();
    if s.sessions.contains_key(sid) {
        return error(409, "session already exists");
    }
    let home = s.root.join("home/daytona");
    std::fs::create_dir_all(&home).unwrap();
    let dir = sh.base.join("sessions").join(&s.id).join(sid);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = std::process::Command::new("bash");
    cmd.current_dir(&home)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env("HOME", &home)
        .env("USER", &s.user)
        .env("LANG", "C.UTF-8")
        .envs(&s.env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().unwrap();
    let stdin = child.stdin.take().unwrap();
    let pgid = child.id() as i32;
    let (closed, _) = tokio::sync::watch::channel(false);
    s.sessions.insert(
        sid.to_string(),
        Session {
            child: Some(child),
            stdin,
            pgid,
            dir,
            commands: HashMap::new(),
            closed,
        },
    );
    StatusCode::CREATED.into_response()
}

fn sh_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', "'\\''"))
}

async fn exec(sh: &Arc<Shared>, id: &str, sid: &str, command: &str, run_async: bool) -> Response {
    let cid = uuid::Uuid::new_v4().to_string();
    let (exit_path, log_path) = {
        let mut st = sh.state.lock().unwrap();
        let s = st.sandboxes.get_mut(id).unwrap();
        let Some(sess) = s.sessions.get_mut(sid) else {
            return error(404, "session not found");
        };
        let dir = sess.dir.join(&cid);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("output.log");
        std::fs::File::create(&log).unwrap();
        let exit = dir.join("exit_code");
        let input = dir.join("input.pipe");
        // What the daemon writes into the session shell: the command's stdout and stderr go
        // through FIFOs to two line relays that prefix each line with its stream's marker and
        // append it to the log; stdin is a FIFO kept open; the exit code goes to a file.
        let script = format!(
            "{{\n\
             log={log}; dir={dir}; ip={input}\n\
             sp=\"$dir/stdout.pipe\"; ep=\"$dir/stderr.pipe\"\n\
             rm -f \"$sp\" \"$ep\" \"$ip\" && mkfifo \"$sp\" \"$ep\" \"$ip\" || exit 1\n\
             ( while IFS= read -r line || [ -n \"$line\" ]; do printf '\\001\\001\\001%s\\n' \"$line\"; done < \"$sp\" ) >> \"$log\" & r1=$!\n\
             ( while IFS= read -r line || [ -n \"$line\" ]; do printf '\\002\\002\\002%s\\n' \"$line\"; done < \"$ep\" ) >> \"$log\" & r2=$!\n\
             sleep infinity > \"$ip\" &\n\
             {{ {command}\n}} < \"$ip\" > \"$sp\" 2> \"$ep\"\n\
             echo \"$?\" >> {exit}\n\
             wait \"$r1\" \"$r2\"\n\
             rm -f \"$sp\" \"$ep\" \"$ip\"\n\
             }}\n",
            log = sh_quote(&log),
            dir = sh_quote(&dir),
            input = sh_quote(&input),
            exit = sh_quote(&exit),
        );
        sess.commands.insert(
            cid.clone(),
            Cmd {
                command: command.to_string(),
                log: log.clone(),
                exit: exit.clone(),
                input,
            },
        );
        if sess.stdin.write_all(script.as_bytes()).is_err() {
            return error(400, "failed to write command: the session shell is gone");
        }
        (exit, log)
    };
    if run_async {
        return ok(202, json!({ "cmdId": cid }));
    }
    loop {
        if let Ok(code) = std::fs::read_to_string(&exit_path)
            && let Ok(code) = code.trim().parse::<i64>()
        {
            let output = strip_markers(&std::fs::read(&log_path).unwrap_or_default());
            return ok(
                200,
                json!({ "cmdId": cid, "output": String::from_utf8_lossy(&output), "exitCode": code }),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn command_get(sh: &Arc<Shared>, id: &str, sid: &str, cid: &str) -> Response {
    let st = sh.state.lock().unwrap();
    let s = &st.sandboxes[id];
    let Some(sess) = s.sessions.get(sid) else {
        return error(404, "session not found");
    };
    let Some(c) = sess.commands.get(cid) else {
        return error(404, "command not found");
    };
    let mut v = json!({ "id": cid, "command": c.command });
    if let Ok(code) = std::fs::read_to_string(&c.exit)
        && let Ok(code) = code.trim().parse::<i64>()
    {
        v["exitCode"] = json!(code);
    }
    ok(200, v)
}

async fn send_input(sh: &Arc<Shared>, id: &str, sid: &str, cid: &str, data: &str) -> Response {
    let cmd = {
        let st = sh.state.lock().unwrap();
        let s = &st.sandboxes[id];
        let Some(sess) = s.sessions.get(sid) else {
            return error(404, "session not found");
        };
        match sess.commands.get(cid) {
            None => return error(404, "command not found"),
            Some(c) => c.clone(),
        }
    };
    if cmd.exit.exists() {
        return error(410, "command has already completed");
    }
    let mut data = data.to_string();
    if !data.ends_with('\n') {
        data.push('\n');
    }
    let r = tokio::task::spawn_blocking(move || {
        let mut f = std::fs::OpenOptions::new().write(true).open(&cmd.input)?;
        f.write_all(data.as_bytes())
    })
    .await
    .unwrap();
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(500, &format!("failed to write to input pipe: {e}")),
    }
}

fn strip_markers(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if i + 3 <= data.len() && (data[i..i + 3] == [1, 1, 1] || data[i..i + 3] == [2, 2, 2]) {
            i += 3;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// Cut `data` into frames so that every marker is split between two frames.
fn frames(data: &[u8], counter: &mut usize) -> Vec<Vec<u8>> {
    let mut cuts = Vec::new();
    for i in 0..data.len().saturating_sub(2) {
        if data[i..i + 3] == [1, 1, 1] || data[i..i + 3] == [2, 2, 2] {
            *counter += 1;
            cuts.push(i + 1 + (*counter % 2));
        }
    }
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts {
        if c > at && c < data.len() {
            out.push(data[at..c].to_vec());
            at = c;
        }
    }
    if at < data.len() {
        out.push(data[at..].to_vec());
    }
    out
}

async fn stream_log(
    socket: WebSocket,
    cmd: Cmd,
    mut closed: tokio::sync::watch::Receiver<bool>,
    follow: bool,
    markers: bool,
    close_after: Duration,
) {
    let (mut tx, mut rx) = socket.split();
    // Drain (and ignore) client frames so pings are answered and a client close is seen.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
    let mut offset = 0usize;
    let mut counter = 0usize;
    let mut quiet_since: Option<tokio::time::Instant> = None;
    let mut held: Vec<u8> = Vec::new();
    loop {
        let data = std::fs::read(&cmd.log).unwrap_or_default();
        if data.len() > offset {
            let new = &data[offset..];
            offset = data.len();
            quiet_since = None;
            let chunk = if markers {
                new.to_vec()
            } else {
                // Strip markers, holding back bytes that may start one.
                let mut buf = std::mem::take(&mut held);
                buf.extend_from_slice(new);
                let keep = buf
                    .iter()
                    .rev()
                    .take(2)
                    .take_while(|b| **b == 1 || **b == 2)
                    .count();
                held = buf[buf.len() - keep..].to_vec();
                strip_markers(&buf[..buf.len() - keep])
            };
            for f in frames(&chunk, &mut counter) {
                if tx.send(Message::Binary(Bytes::from(f))).await.is_err() {
                    reader.abort();
                    return;
                }
            }
        } else if !follow || *closed.borrow() {
            break;
        } else if cmd.exit.exists() {
            let since = *quiet_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= close_after {
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = closed.changed() => {}
        }
    }
    if !held.is_empty() {
        let _ = tx.send(Message::Binary(Bytes::from(held))).await;
    }
    let _ = tx
        .send(Message::Close(Some(axum::extract::ws::CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    // Wait for the client's close (the reader ends with it) so no frame is left unread.
    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
}

// ---------------------------------------------------------------------------------------------
// Files

fn go_mode_string(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    let mut s = String::new();
    s.push(if meta.is_dir() { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn need_path(p: Option<&String>) -> Result<PathBuf, Response> {
    match p {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Err(error(400, "path is required")),
    }
}

fn io_error(e: &std::io::Error, path: &Path) -> Response {
    match e.kind() {
        std::io::ErrorKind::NotFound => error(
            404,
            &format!("{}: no such file or directory", path.display()),
        ),
        std::io::ErrorKind::PermissionDenied => {
            error(403, &format!("{}: permission denied", path.display()))
        }
        _ => error(400, &format!("{}: {e}", path.display())),
    }
}

async fn bulk_upload(headers: HeaderMap, body: Option<Body>) -> Response {
    let Some(ct) = headers.get("content-type").and_then(|v| v.to_str().ok()) else {
        return ok(400, json!({ "errors": ["invalid multipart form"] }));
    };
    let Ok(boundary) = multer::parse_boundary(ct) else {
        return ok(400, json!({ "errors": ["invalid multipart form"] }));
    };
    let stream = body.unwrap_or_else(Body::empty).into_data_stream();
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut dests: HashMap<String, String> = HashMap::new();
    let mut errors: Vec<String> = Vec::new();
    let mut files: Vec<Value> = Vec::new();
    loop {
        let field = match mp.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                errors.push(format!("reading part: {e}"));
                break;
            }
        };
        let name = field.name().unwrap_or("").to_string();
        let idx = name
            .trim_start_matches("files[")
            .trim_end_matches("].path")
            .trim_end_matches("].file")
            .to_string();
        if name.starts_with("files[") && name.ends_with("].path") {
            match field.text().await {
                Ok(t) if !t.trim().is_empty() => {
                    dests.insert(idx, t.trim().to_string());
                }
                Ok(_) => errors.push(format!("path[{idx}]: empty path")),
                Err(e) => errors.push(format!("path[{idx}]: {e}")),
            }
        } else if name.starts_with("files[") && name.ends_with("].file") {
            let Some(dest) = dests.get(&idx).cloned() else {
                errors.push(format!("file[{idx}]: missing .path metadata"));
                continue;
            };
            match write_part(field, Path::new(&dest)).await {
                Ok(n) => files.push(json!({ "path": dest, "bytes": n })),
                Err(e) => errors.push(format!("{dest}: {e}")),
            }
        } else {
            errors.push(format!("unexpected part {name:?}"));
        }
    }
    if files.is_empty() && errors.is_empty() {
        errors.push("no files in the form".into());
    }
    if !errors.is_empty() {
        return ok(400, json!({ "errors": errors, "files": files }));
    }
    ok(200, json!({ "files": files }))
}

async fn write_part(mut field: multer::Field<'static>, dest: &Path) -> std::io::Result<u64> {
    use tokio::io::AsyncWriteExt;
    if !dest.is_absolute() {
        return Err(std::io::Error::other("path must be absolute"));
    }
    let dir = dest.parent().unwrap_or(Path::new("/"));
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!(".daytona-upload-{}", uuid::Uuid::new_v4().simple()));
    let mut f = tokio::fs::File::create(&tmp).await?;
    let mut n = 0u64;
    let res = async {
        while let Some(chunk) = field.chunk().await.map_err(std::io::Error::other)? {
            f.write_all(&chunk).await?;
            n += chunk.len() as u64;
        }
        f.flush().await?;
        drop(f);
        tokio::fs::rename(&tmp, dest).await
    }
    .await;
    if res.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    res.map(|_| n)
}

async fn download(path: Option<&String>) -> Response {
    let path = match need_path(path) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match tokio::fs::metadata(&path).await {
        Err(e) => return io_error(&e, &path),
        Ok(m) if m.is_dir() => return error(400, "path must be a file"),
        Ok(_) => {}
    }
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return io_error(&e, &path),
    };
    let stream = tokio_util::io::ReaderStream::new(file).map_err(axum::Error::new);
    Response::builder()
        .status(200)
        .header("content-type", "application/octet-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn file_info(path: Option<&String>) -> Response {
    use std::os::unix::fs::MetadataExt;
    let path = match need_path(path) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match std::fs::metadata(&path) {
        Err(e) => io_error(&e, &path),
        Ok(m) => {
            let modified: OffsetDateTime = m.modified().unwrap().into();
            ok(
                200,
                json!({
                    "name": path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "/".into()),
                    "size": m.len(),
                    "mode": go_mode_string(&m),
                    "modTime": rfc3339(modified),
                    "isDir": m.is_dir(),
                    "owner": m.uid().to_string(),
                    "group": m.gid().to_string(),
                    "permissions": format!("{:04o}", m.mode() & 0o7777),
                }),
            )
        }
    }
}

fn delete_file(path: Option<&String>, recursive: Option<&String>) -> Response {
    let path = match need_path(path) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let recursive = recursive.map(String::as_str) == Some("true");
    match std::fs::metadata(&path) {
        Err(e) => io_error(&e, &path),
        Ok(m) if m.is_dir() && !recursive => {
            error(400, "cannot delete directory without recursive flag")
        }
        Ok(m) => {
            let r = if m.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match r {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => io_error(&e, &path),
            }
        }
    }
}

fn folder(path: Option<&String>, mode: Option<&String>) -> Response {
    use std::os::unix::fs::DirBuilderExt;
    let path = match need_path(path) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let mode = match mode {
        None => 0o755,
        Some(m) => match u32::from_str_radix(m, 8) {
            Ok(m) => m,
            Err(_) => return error(400, "invalid mode format"),
        },
    };
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(&path)
    {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(e) => io_error(&e, &path),
    }
}

fn move_file(source: Option<&String>, dest: Option<&String>) -> Response {
    let (Some(src), Some(dst)) = (
        source.filter(|s| !s.is_empty()),
        dest.filter(|d| !d.is_empty()),
    ) else {
        return error(400, "source and destination paths are required");
    };
    let (src, dst) = (PathBuf::from(src), PathBuf::from(dst));
    if let Err(e) = std::fs::metadata(&src) {
        return io_error(&e, &src);
    }
    if let Err(e) = std::fs::metadata(dst.parent().unwrap_or(Path::new("/"))) {
        return io_error(&e, &dst);
    }
    if dst.exists() {
        return error(409, "destination already exists");
    }
    match std::fs::rename(&src, &dst) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error(400, &format!("failed to move file: {e}")),
    }
}
