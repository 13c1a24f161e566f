//! A local stand-in for E2B: its control-plane REST API for the endpoints rclaude uses, validated
//! the way E2B's OpenAPI spec and API validate them, plus E2B's envd edge, routing sandbox
//! traffic to one real `rclaude agent` process per sandbox.
//!
//! - REST on `http://127.0.0.1:<port>`: `POST/GET /v2/sandboxes`, `GET/DELETE /sandboxes/{id}`,
//!   `POST /sandboxes/{id}/pause|timeout|refreshes|fork`, `POST /v2/sandboxes/{id}/connect`,
//!   `GET /health`. `X-API-KEY` is required ([`API_KEY`]); errors are E2B's
//!   `{"code": <status>, "message": "..."}`.
//! - envd on the same address: a request carrying `E2b-Sandbox-Id` + `E2b-Sandbox-Port` (E2B's
//!   header-routed form), or whose `Host` is `<port>-<sandboxID>.<domain>` (the host form), is
//!   proxied, streaming both ways, to that sandbox's agent. Point rclaude (or E2B's SDK) at it
//!   with the SDK's own override variables: `E2B_API_URL=<url>` and `E2B_SANDBOX_URL=<url>`
//!   ([`FakeE2b::env`]).
//! - Sandboxes: each is an `rclaude agent` (the binary under test) with a random access token
//!   (`envdAccessToken`), HOME `<root>/home/user`. Its root is `<base>/sandboxes/<id>` — or, with
//!   [`FakeOptions::shared_root`], one fixed directory for every sandbox of this fake, so a test
//!   can name a workdir inside it before the sandbox exists (use one sandbox at a time then).
//!   Pause stops the agent (files stay), connect on a paused sandbox starts it again (201),
//!   kill stops it and deletes the root (or empties the shared one). A sandbox whose `endAt`
//!   has passed is paused (`autoPause`) or killed on the next request; [`FakeE2b::expire`]
//!   makes that happen now.
//! - Fork copies the source's root (`cp -a --reflink=auto`, running or paused) to
//!   `<base>/sandboxes/<new id>` and starts a running sandbox on the copy with the source's
//!   template, metadata, env vars and `autoPause`. Like a VM's disk image, the copy must appear at
//!   the source's paths (the workdir in the metadata names one): its agent runs in a private
//!   mount namespace with the copy bind-mounted over the path the source's processes see
//!   (a user namespace too when the process may not mount; a host that allows neither gets a
//!   500 naming why). This works with [`FakeOptions::shared_root`] as well: forks are the
//!   exception to "one sandbox at a time".
//! - Tests can queue canned responses per route ([`FakeE2b::inject`]) and read every API request
//!   back ([`FakeE2b::requests`]).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::TryStreamExt;
use rclaude_sandbox::port_proxy::HOP_BY_HOP;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

/// The API key the fake accepts.
pub const API_KEY: &str = "e2b_0123456789abcdef0123456789abcdef01234567";
/// The envd version the fake reports.
pub const ENVD_VERSION: &str = "0.6.13";
/// envd's port inside a sandbox.
pub const ENVD_PORT: u16 = 49983;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// One root directory for every sandbox (see the module docs).
    pub shared_root: Option<PathBuf>,
    /// The team's longest allowed timeout in seconds (Pro: 24 h).
    pub max_timeout: i64,
    /// Templates: (template id, name). Sandboxes may name either, or `name:default`, or
    /// `<team>/name`.
    pub templates: Vec<(String, String)>,
    /// `false`: the control plane only. Created sandboxes run no agent: their envd answers
    /// `MakeDir` (what a create asks for) as already done and everything else 502 (for loads
    /// of many sandboxes nobody execs in, like a guardian benchmark).
    pub agents: bool,
}

impl Default for FakeOptions {
    fn default() -> Self {
        FakeOptions {
            shared_root: None,
            max_timeout: 24 * 3600,
            templates: vec![
                ("rki5dems9wqfm4r03t7g".into(), "base".into()),
                ("x0k1code7tmpl8id9sbx".into(), "code-interpreter-v1".into()),
            ],
            agents: true,
        }
    }
}

/// The endpoints a response can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Create,
    List,
    Get,
    Kill,
    Pause,
    Connect,
    Timeout,
    Refresh,
    Fork,
}

/// A canned response.
#[derive(Debug, Clone)]
pub struct Injection {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Injection {
    /// `status` with E2B's error body.
    pub fn error(status: u16, message: &str) -> Self {
        Injection {
            status,
            headers: Vec::new(),
            body: json!({ "code": status, "message": message }),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = body;
        self
    }
}

/// One API request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HashMap<String, String>,
    pub body: Option<Value>,
    /// What the fake answered.
    pub status: u16,
}

/// One envd request as the edge routed it.
#[derive(Debug, Clone)]
pub struct EnvdRecorded {
    pub sandbox: String,
    pub path: String,
    pub routed_by: &'static str,
    pub had_access_token: bool,
    pub status: u16,
}

/// A sandbox as the fake sees it.
#[derive(Debug, Clone)]
pub struct SandboxView {
    pub id: String,
    pub template_id: String,
    pub state: String,
    pub metadata: BTreeMap<String, String>,
    pub env_vars: BTreeMap<String, String>,
    pub auto_pause: bool,
    pub started_at: OffsetDateTime,
    pub end_at: OffsetDateTime,
    pub root: PathBuf,
    pub agent_pid: Option<u32>,
    pub token: String,
    /// Its traffic access token, when its ports are not public.
    pub traffic_token: Option<String>,
    /// Whether the last pause kept memory.
    pub paused_with_memory: Option<bool>,
    /// Where its processes see `root` (the source's path, for a fork).
    pub seen_at: PathBuf,
    /// The sandbox it was forked from.
    pub forked_from: Option<String>,
}

/// The running fake; dropping it stops every sandbox and the server.
pub struct FakeE2b {
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
    http: reqwest::Client,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    sandboxes: BTreeMap<String, Sbx>,
    idempotency: HashMap<String, Value>,
    injections: HashMap<Route, VecDeque<Injection>>,
    requests: Vec<Recorded>,
    envd_requests: Vec<EnvdRecorded>,
}

struct Sbx {
    id: String,
    template_id: String,
    alias: String,
    started_at: OffsetDateTime,
    end_at: OffsetDateTime,
    metadata: BTreeMap<String, String>,
    env_vars: BTreeMap<String, String>,
    auto_pause: bool,
    paused: bool,
    paused_with_memory: Option<bool>,
    token: String,
    /// Set when it was created with `network.allowPublicTraffic: false`: its ports answer only
    /// requests carrying it in `e2b-traffic-access-token`.
    traffic_token: Option<String>,
    /// Where its files are on this host.
    root: PathBuf,
    /// Where its processes see them: `root`, or for a fork the source's `seen_at`.
    seen_at: PathBuf,
    /// `root` is [`FakeOptions::shared_root`] (emptied, not deleted, by a kill).
    in_shared_root: bool,
    forked_from: Option<String>,
    agent: Option<AgentProc>,
    /// Serializes lifecycle changes (start/stop of the agent) of this sandbox.
    lifecycle: Arc<tokio::sync::Mutex<()>>,
}

struct AgentProc {
    child: std::process::Child,
    port: u16,
}

impl FakeE2b {
    /// A fake with default options.
    pub fn start() -> FakeE2b {
        Self::start_with(FakeOptions::default())
    }

    pub fn start_with(opts: FakeOptions) -> FakeE2b {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        for sub in ["sandboxes", "agents"] {
            std::fs::create_dir_all(base.join(sub)).unwrap();
        }
        if let Some(root) = &opts.shared_root {
            std::fs::create_dir_all(root).unwrap();
        }
        let http = reqwest::Client::builder()
            .http1_only()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            opts,
            base,
            http,
            state: Mutex::new(FakeState::default()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = router(shared.clone());
        let thread = std::thread::Builder::new()
            .name("fake-e2b".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    use axum::serve::ListenerExt;
                    // Like E2B's edge (Go's net/http sets it by default): no Nagle delay on a
                    // response's second write.
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
        FakeE2b {
            addr,
            url: format!("http://{addr}"),
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The variables that point rclaude (or E2B's SDK) at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("E2B_API_KEY", API_KEY.into()),
            ("E2B_API_URL", self.url.clone()),
            ("E2B_SANDBOX_URL", self.url.clone()),
        ]
    }

    /// Answer the next requests to `route` with these responses, in order.
    pub fn inject(&self, route: Route, responses: impl IntoIterator<Item = Injection>) {
        self.shared
            .state
            .lock()
            .unwrap()
            .injections
            .entry(route)
            .or_default()
            .extend(responses);
    }

    /// Every API request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    /// API requests with this method whose path is `path`.
    pub fn requests_to(&self, method: &str, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path == path)
            .collect()
    }

    /// Every envd request routed so far.
    pub fn envd_requests(&self) -> Vec<EnvdRecorded> {
        self.shared.state.lock().unwrap().envd_requests.clone()
    }

    pub fn sandbox(&self, id: &str) -> Option<SandboxView> {
        self.shared
            .state
            .lock()
            .unwrap()
            .sandboxes
            .get(id)
            .map(view)
    }

    pub fn sandboxes(&self) -> Vec<SandboxView> {
        self.shared
            .state
            .lock()
            .unwrap()
            .sandboxes
            .values()
            .map(view)
            .collect()
    }

    /// Let the sandbox's timeout elapse now: the next request pauses or kills it.
    pub fn expire(&self, id: &str) {
        let mut st = self.shared.state.lock().unwrap();
        let sbx = st.sandboxes.get_mut(id).expect("unknown sandbox");
        sbx.end_at = OffsetDateTime::now_utc() - Duration::from_secs(1);
    }

    /// The directory a sandbox's files live in.
    pub fn sandbox_root(&self, id: &str) -> PathBuf {
        self.sandbox(id).expect("unknown sandbox").root
    }
}

impl Drop for FakeE2b {
    fn drop(&mut self) {
        let agents: Vec<AgentProc> = {
            let mut st = self.shared.state.lock().unwrap();
            st.sandboxes
                .values_mut()
                .filter_map(|s| s.agent.take())
                .collect()
        };
        for a in agents {
            stop_agent(a);
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn view(s: &Sbx) -> SandboxView {
    SandboxView {
        id: s.id.clone(),
        template_id: s.template_id.clone(),
        state: if s.paused { "paused" } else { "running" }.into(),
        metadata: s.metadata.clone(),
        env_vars: s.env_vars.clone(),
        auto_pause: s.auto_pause,
        started_at: s.started_at,
        end_at: s.end_at,
        root: s.root.clone(),
        agent_pid: s.agent.as_ref().map(|a| a.child.id()),
        token: s.token.clone(),
        traffic_token: s.traffic_token.clone(),
        paused_with_memory: s.paused_with_memory,
        seen_at: s.seen_at.clone(),
        forked_from: s.forked_from.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Routing

type St = State<Arc<Shared>>;

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(|| async { StatusCode::NO_CONTENT }))
        .route("/v2/sandboxes", post(create).get(list))
        .route("/sandboxes/{id}", get(detail).delete(kill))
        .route("/sandboxes/{id}/pause", post(pause))
        .route("/sandboxes/{id}/timeout", post(set_timeout))
        .route("/sandboxes/{id}/refreshes", post(refresh))
        .route("/sandboxes/{id}/fork", post(fork))
        .route("/v2/sandboxes/{id}/connect", post(connect))
        .fallback(|uri: Uri| async move { error(404, &format!("no route for {}", uri.path())) })
        .layer(axum::middleware::from_fn_with_state(shared.clone(), edge))
        .with_state(shared)
}

/// E2B's edge: envd traffic (by routing headers or host name) goes to the sandbox; the rest
/// is the API, recorded and subject to injected responses.
async fn edge(State(shared): St, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let id_header = headers
        .get("e2b-sandbox-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let port_header = headers
        .get("e2b-sandbox-port")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match (id_header, port_header) {
        (Some(id), Some(port)) => return envd_proxy(shared, id, &port, "headers", req).await,
        (Some(_), None) | (None, Some(_)) => {
            return error(
                400,
                "E2b-Sandbox-Id and E2b-Sandbox-Port must be sent together",
            );
        }
        (None, None) => {}
    }
    if let Some((port, id)) = host.as_deref().and_then(host_route) {
        return envd_proxy(shared, id, &port, "host", req).await;
    }
    reap(&shared).await;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let route = route_of(&parts.method, parts.uri.path());
    let mut recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&bytes).ok(),
        status: 0,
    };
    let injected = route.and_then(|r| {
        shared
            .state
            .lock()
            .unwrap()
            .injections
            .get_mut(&r)
            .and_then(VecDeque::pop_front)
    });
    let resp = match injected {
        Some(inj) => {
            let mut resp = (
                StatusCode::from_u16(inj.status).unwrap(),
                axum::Json(inj.body),
            )
                .into_response();
            for (k, v) in inj.headers {
                resp.headers_mut().insert(
                    HeaderName::try_from(k).unwrap(),
                    HeaderValue::try_from(v).unwrap(),
                );
            }
            resp
        }
        None => match check_api_key(&parts.headers, parts.uri.path()) {
            Err(r) => r.into_response(),
            Ok(()) => {
                next.run(Request::from_parts(parts, Body::from(bytes)))
                    .await
            }
        },
    };
    recorded.status = resp.status().as_u16();
    shared.state.lock().unwrap().requests.push(recorded);
    resp
}

fn route_of(method: &Method, path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    Some(match (method.as_str(), parts.as_slice()) {
        ("POST", ["v2", "sandboxes"]) => Route::Create,
        ("GET", ["v2", "sandboxes"]) => Route::List,
        ("GET", ["sandboxes", _]) => Route::Get,
        ("DELETE", ["sandboxes", _]) => Route::Kill,
        ("POST", ["sandboxes", _, "pause"]) => Route::Pause,
        ("POST", ["sandboxes", _, "timeout"]) => Route::Timeout,
        ("POST", ["sandboxes", _, "refreshes"]) => Route::Refresh,
        ("POST", ["sandboxes", _, "fork"]) => Route::Fork,
        ("POST", ["v2", "sandboxes", _, "connect"]) => Route::Connect,
        _ => return None,
    })
}

/// `<port>-<sandboxID>.<domain>` → (port, id).
fn host_route(host: &str) -> Option<(String, String)> {
    let name = host.split(':').next()?;
    let (first, rest) = name.split_once('.')?;
    if rest.is_empty() {
        return None;
    }
    let (port, id) = first.split_once('-')?;
    (port.parse::<u16>().is_ok() && !id.is_empty()).then(|| (port.to_string(), id.to_string()))
}

fn check_api_key(headers: &HeaderMap, path: &str) -> Result<(), Reject> {
    if path == "/health" {
        return Ok(());
    }
    match headers.get("x-api-key") {
        None => Err(reject(401, "authorization header is missing")),
        Some(k) if k.as_bytes() == API_KEY.as_bytes() => Ok(()),
        Some(_) => Err(reject(
            401,
            "Invalid API key, please visit https://e2b.dev/docs to get your API key",
        )),
    }
}

/// A refused request: E2B's error body with this status.
struct Reject(u16, String);

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

fn reject(status: u16, message: &str) -> Reject {
    Reject(status, message.to_string())
}

fn error(status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({ "code": status, "message": message })),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Request validation (E2B's OpenAPI schema)

/// A JSON object body; `None` when absent and not `required`.
fn json_body(
    headers: &HeaderMap,
    bytes: &Bytes,
    required: bool,
) -> Result<Option<Map<String, Value>>, Reject> {
    if bytes.is_empty() {
        return if required {
            Err(reject(
                400,
                "request body has an error: value is required but missing",
            ))
        } else {
            Ok(None)
        };
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(reject(
            400,
            &format!("request body has an error: header Content-Type has unexpected value: {ct:?}"),
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(reject(
            400,
            "request body has an error: doesn't match schema: value must be an object",
        )),
        Err(e) => Err(reject(
            400,
            &format!("request body has an error: failed to decode request body: {e}"),
        )),
    }
}

fn schema_error(field: &str, what: &str) -> Reject {
    reject(
        400,
        &format!("request body has an error: doesn't match schema: Error at \"/{field}\": {what}"),
    )
}

fn opt_bool(m: &Map<String, Value>, field: &str) -> Result<Option<bool>, Reject> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(schema_error(field, "value must be a boolean")),
    }
}

fn opt_int(m: &Map<String, Value>, field: &str, min: i64, max: i64) -> Result<Option<i64>, Reject> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            let Some(v) = n.as_i64() else {
                return Err(schema_error(field, "value must be an integer"));
            };
            if v < min {
                Err(schema_error(
                    field,
                    &format!("number must be at least {min}"),
                ))
            } else if v > max {
                Err(schema_error(
                    field,
                    &format!("number must be at most {max}"),
                ))
            } else {
                Ok(Some(v))
            }
        }
        Some(_) => Err(schema_error(field, "value must be an integer")),
    }
}

fn opt_string_map(m: &Map<String, Value>, field: &str) -> Result<BTreeMap<String, String>, Reject> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(schema_error(
                    &format!("{field}/{k}"),
                    "value must be a string",
                )),
            })
            .collect(),
        Some(_) => Err(schema_error(field, "value must be an object")),
    }
}

fn timeout_limit_error(max: i64) -> Response {
    error(
        400,
        &format!("Timeout cannot be greater than {} hours", max / 3600),
    )
}

// ---------------------------------------------------------------------------------------------
// Handlers

async fn create(State(shared): St, headers: HeaderMap, body: Bytes) -> Response {
    let key = match headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_string())
    {
        Some(k)
            if k.is_empty()
                || k.len() > 255
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            return error(
                400,
                "parameter \"Idempotency-Key\" in header has an error: string doesn't match the regular expression \"^[a-z0-9-]{1,255}$\"",
            );
        }
        k => k,
    };
    let m = match json_body(&headers, &body, true) {
        Ok(m) => m.unwrap(),
        Err(r) => return r.into_response(),
    };
    let template = match m.get("templateID") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => {
            return schema_error("templateID", "minimum string length is 1").into_response();
        }
        Some(_) => return schema_error("templateID", "value must be a string").into_response(),
        None => {
            return error(
                400,
                "request body has an error: doesn't match schema: property \"templateID\" is missing",
            );
        }
    };
    let timeout = match opt_int(&m, "timeout", 1, i32::MAX as i64) {
        Ok(t) => t.unwrap_or(300),
        Err(r) => return r.into_response(),
    };
    let checks = (|| {
        let auto_pause = opt_bool(&m, "autoPause")?.unwrap_or(false);
        opt_bool(&m, "autoPauseMemory")?;
        opt_bool(&m, "allow_internet_access")?;
        if let Some(v) = m.get("autoResume") {
            match v {
                Value::Object(o) if matches!(o.get("enabled"), Some(Value::Bool(_))) => {}
                _ => {
                    return Err(schema_error(
                        "autoResume",
                        "property \"enabled\" is missing or not a boolean",
                    ));
                }
            }
        }
        if let Some(v) = m.get("network") {
            let Some(o) = v.as_object() else {
                return Err(schema_error("network", "value must be an object"));
            };
            if o.get("allowPublicTraffic").is_some_and(|v| !v.is_boolean()) {
                return Err(schema_error(
                    "network",
                    "property \"allowPublicTraffic\" must be a boolean",
                ));
            }
            for list in ["allowOut", "denyOut"] {
                if let Some(l) = o.get(list)
                    && !l.as_array().is_some_and(|a| {
                        a.iter().all(|x| x.as_str().is_some_and(|s| !s.is_empty()))
                    })
                {
                    return Err(schema_error(
                        "network",
                        &format!("property \"{list}\" must be an array of non-empty strings"),
                    ));
                }
            }
        }
        let metadata = opt_string_map(&m, "metadata")?;
        let env_vars = opt_string_map(&m, "envVars")?;
        Ok((auto_pause, metadata, env_vars))
    })();
    let private = m
        .get("network")
        .and_then(|n| n.get("allowPublicTraffic"))
        .and_then(Value::as_bool)
        == Some(false);
    let traffic_token = private.then(|| uuid::Uuid::new_v4().simple().to_string());
    let (auto_pause, metadata, env_vars) = match checks {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    if timeout > shared.opts.max_timeout {
        return timeout_limit_error(shared.opts.max_timeout);
    }
    if let Some(k) = &key
        && let Some(previous) = shared.state.lock().unwrap().idempotency.get(k).cloned()
    {
        return (StatusCode::CREATED, axum::Json(previous)).into_response();
    }
    let Some((template_id, alias)) = resolve_template(&shared.opts, &template) else {
        return error(404, &format!("template '{template}' not found"));
    };
    let id = random_id(20);
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let root = match &shared.opts.shared_root {
        Some(r) => r.clone(),
        None => shared.base.join("sandboxes").join(&id),
    };
    std::fs::create_dir_all(root.join("home/user")).unwrap();
    let root = root.canonicalize().unwrap();
    let now = OffsetDateTime::now_utc();
    let lifecycle = Arc::new(tokio::sync::Mutex::new(()));
    let _guard = lifecycle.clone().lock_owned().await;
    shared.state.lock().unwrap().sandboxes.insert(
        id.clone(),
        Sbx {
            id: id.clone(),
            template_id: template_id.clone(),
            alias: alias.clone(),
            started_at: now,
            end_at: now + Duration::from_secs(timeout as u64),
            metadata,
            env_vars: env_vars.clone(),
            auto_pause,
            paused: false,
            paused_with_memory: None,
            token: token.clone(),
            traffic_token: traffic_token.clone(),
            root: root.clone(),
            seen_at: root.clone(),
            in_shared_root: shared.opts.shared_root.is_some(),
            forked_from: None,
            agent: None,
            lifecycle,
        },
    );
    let agent = if shared.opts.agents {
        start_agent(&shared, &id, &root, &root, &token, &env_vars)
            .await
            .map(Some)
    } else {
        Ok(None)
    };
    match agent {
        Ok(agent) => {
            if let Some(s) = shared.state.lock().unwrap().sandboxes.get_mut(&id) {
                s.agent = agent;
            }
        }
        Err(e) => {
            shared.state.lock().unwrap().sandboxes.remove(&id);
            return error(500, &format!("failed to start the sandbox: {e}"));
        }
    }
    let body = sandbox_json(&id, &template_id, &alias, &token, traffic_token.as_deref());
    if let Some(k) = key {
        shared
            .state
            .lock()
            .unwrap()
            .idempotency
            .insert(k, body.clone());
    }
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

fn resolve_template(opts: &FakeOptions, name: &str) -> Option<(String, String)> {
    let name = name.rsplit_once('/').map(|(_, n)| n).unwrap_or(name);
    let (name, tag) = name.split_once(':').unwrap_or((name, "default"));
    if tag != "default" {
        return None;
    }
    opts.templates
        .iter()
        .find(|(id, alias)| id == name || alias == name)
        .cloned()
}

/// What create and connect answer for `s`.
fn sbx_json(s: &Sbx) -> Value {
    sandbox_json(
        &s.id,
        &s.template_id,
        &s.alias,
        &s.token,
        s.traffic_token.as_deref(),
    )
}

fn sandbox_json(
    id: &str,
    template_id: &str,
    alias: &str,
    token: &str,
    traffic_token: Option<&str>,
) -> Value {
    json!({
        "templateID": template_id,
        "sandboxID": id,
        "alias": alias,
        "clientID": "6532622b",
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": token,
        "trafficAccessToken": traffic_token,
        "domain": null,
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn listed_json(s: &Sbx, detail: bool) -> Value {
    let mut v = json!({
        "templateID": s.template_id,
        "alias": s.alias,
        "sandboxID": s.id,
        "clientID": "6532622b",
        "startedAt": rfc3339(s.started_at),
        "endAt": rfc3339(s.end_at),
        "cpuCount": 2,
        "memoryMB": 512,
        "diskSizeMB": 5120,
        "state": if s.paused { "paused" } else { "running" },
        "envdVersion": ENVD_VERSION,
        "metadata": s.metadata,
    });
    if detail {
        let m = v.as_object_mut().unwrap();
        m.insert("envdAccessToken".into(), json!(s.token));
        m.insert("domain".into(), Value::Null);
        m.insert("allowInternetAccess".into(), Value::Null);
        m.insert(
            "lifecycle".into(),
            json!({ "autoResume": false, "onTimeout": if s.auto_pause { "pause" } else { "kill" } }),
        );
    }
    v
}

fn not_found(id: &str) -> Response {
    error(
        404,
        &format!("sandbox \"{id}\" doesn't exist or you don't have access to it"),
    )
}

async fn list(State(shared): St, uri: Uri) -> Response {
    let params: Vec<(String, String)> = match Query::<Vec<(String, String)>>::try_from_uri(&uri) {
        Ok(q) => q.0,
        Err(e) => return error(400, &format!("invalid query: {e}")),
    };
    let mut limit = 100i64;
    let mut states: Option<Vec<String>> = None;
    let mut filter: Vec<(String, String)> = Vec::new();
    let mut next: Option<(i128, String)> = None;
    let mut ascending = false;
    for (k, v) in &params {
        match k.as_str() {
            "limit" => match v.parse::<i64>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                Ok(_) => {
                    return error(
                        400,
                        "parameter \"limit\" in query has an error: number must be between 1 and 100",
                    );
                }
                Err(_) => {
                    return error(
                        400,
                        "parameter \"limit\" in query has an error: value must be an integer",
                    );
                }
            },
            "state" => {
                for s in v.split(',') {
                    if s != "running" && s != "paused" {
                        return error(
                            400,
                            &format!(
                                "parameter \"state\" in query has an error: value {s:?} is not one of the allowed values [\"running\",\"paused\"]"
                            ),
                        );
                    }
                    states.get_or_insert_with(Vec::new).push(s.to_string());
                }
            }
            "metadata" => {
                let inner: Uri = match format!("/?{v}").parse() {
                    Ok(u) => u,
                    Err(_) => return error(400, "error parsing metadata: not a URL-encoded query"),
                };
                match Query::<Vec<(String, String)>>::try_from_uri(&inner) {
                    Ok(q) if q.0.iter().all(|(k, _)| !k.is_empty()) => filter.extend(q.0),
                    _ => return error(400, "error parsing metadata: not a URL-encoded query"),
                }
            }
            "nextToken" => match decode_cursor(v) {
                Some(c) => next = Some(c),
                None => return error(400, "invalid next token"),
            },
            "order" => match v.as_str() {
                "asc" => ascending = true,
                "desc" => ascending = false,
                _ => {
                    return error(
                        400,
                        "parameter \"order\" in query has an error: value is not one of the allowed values [\"asc\",\"desc\"]",
                    );
                }
            },
            _ => {}
        }
    }
    let st = shared.state.lock().unwrap();
    let mut matching: Vec<&Sbx> = st
        .sandboxes
        .values()
        .filter(|s| {
            let state = if s.paused { "paused" } else { "running" };
            states
                .as_ref()
                .is_none_or(|ss| ss.iter().any(|x| x == state))
        })
        .filter(|s| filter.iter().all(|(k, v)| s.metadata.get(k) == Some(v)))
        .collect();
    let key = |s: &Sbx| (s.started_at.unix_timestamp_nanos(), s.id.clone());
    matching.sort_by_key(|s| key(s));
    if !ascending {
        matching.reverse();
    }
    if let Some(cursor) = &next {
        matching.retain(|s| {
            if ascending {
                key(s) > *cursor
            } else {
                key(s) < *cursor
            }
        });
    }
    let page: Vec<&Sbx> = matching.iter().take(limit as usize).copied().collect();
    let body: Vec<Value> = page.iter().map(|s| listed_json(s, false)).collect();
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    if matching.len() > page.len()
        && let Some(last) = page.last()
    {
        let (nanos, id) = key(last);
        resp.headers_mut().insert(
            "x-next-token",
            HeaderValue::from_str(&hex_encode(&format!("{nanos}:{id}"))).unwrap(),
        );
    }
    resp
}

fn hex_encode(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(token: &str) -> Option<(i128, String)> {
    if !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let (nanos, id) = text.split_once(':')?;
    Some((nanos.parse().ok()?, id.to_string()))
}

async fn detail(State(shared): St, UrlPath(id): UrlPath<String>) -> Response {
    let st = shared.state.lock().unwrap();
    match st.sandboxes.get(&id) {
        Some(s) => (StatusCode::OK, axum::Json(listed_json(s, true))).into_response(),
        None => not_found(&id),
    }
}

async fn kill(State(shared): St, UrlPath(id): UrlPath<String>) -> Response {
    let Some(lock) = lifecycle_of(&shared, &id) else {
        return not_found(&id);
    };
    let _guard = lock.lock().await;
    let Some(sbx) = shared.state.lock().unwrap().sandboxes.remove(&id) else {
        return not_found(&id);
    };
    destroy(&shared, sbx).await;
    StatusCode::NO_CONTENT.into_response()
}

async fn pause(
    State(shared): St,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = match json_body(&headers, &body, false) {
        Ok(m) => m.unwrap_or_default(),
        Err(r) => return r.into_response(),
    };
    let memory = match opt_bool(&m, "memory")
        .and_then(|mem| opt_bool(&m, "requireHealthyGuest").map(|_| mem))
    {
        Ok(mem) => mem.unwrap_or(true),
        Err(r) => return r.into_response(),
    };
    let Some(lock) = lifecycle_of(&shared, &id) else {
        return not_found(&id);
    };
    let _guard = lock.lock().await;
    let agent = {
        let mut st = shared.state.lock().unwrap();
        let Some(s) = st.sandboxes.get_mut(&id) else {
            return not_found(&id);
        };
        if s.paused {
            return error(409, &format!("Sandbox \"{id}\" is already paused"));
        }
        s.paused = true;
        s.paused_with_memory = Some(memory);
        s.agent.take()
    };
    if let Some(a) = agent {
        let _ = tokio::task::spawn_blocking(move || stop_agent(a)).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn connect(
    State(shared): St,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = match json_body(&headers, &body, false) {
        Ok(m) => m.unwrap_or_default(),
        Err(r) => return r.into_response(),
    };
    let timeout = match opt_int(&m, "timeout", 0, i32::MAX as i64)
        .and_then(|t| opt_bool(&m, "memory").map(|_| t))
    {
        Ok(t) => t.unwrap_or(300),
        Err(r) => return r.into_response(),
    };
    if timeout > shared.opts.max_timeout {
        return timeout_limit_error(shared.opts.max_timeout);
    }
    let Some(lock) = lifecycle_of(&shared, &id) else {
        return not_found(&id);
    };
    let _guard = lock.lock().await;
    let now = OffsetDateTime::now_utc();
    let wanted_end = now + Duration::from_secs(timeout as u64);
    let start = {
        let mut st = shared.state.lock().unwrap();
        let Some(s) = st.sandboxes.get_mut(&id) else {
            return not_found(&id);
        };
        if !s.paused {
            // Connecting to a running sandbox only ever extends it.
            if wanted_end > s.end_at {
                s.end_at = wanted_end;
            }
            let body = sbx_json(s);
            return (StatusCode::OK, axum::Json(body)).into_response();
        }
        (
            s.root.clone(),
            s.seen_at.clone(),
            s.token.clone(),
            s.env_vars.clone(),
        )
    };
    let (root, seen_at, token, env) = start;
    match start_agent(&shared, &id, &root, &seen_at, &token, &env).await {
        Ok(agent) => {
            let mut st = shared.state.lock().unwrap();
            let Some(s) = st.sandboxes.get_mut(&id) else {
                return not_found(&id);
            };
            s.agent = Some(agent);
            s.paused = false;
            s.end_at = wanted_end;
            let body = sbx_json(s);
            (StatusCode::CREATED, axum::Json(body)).into_response()
        }
        Err(e) => error(500, &format!("failed to resume the sandbox: {e}")),
    }
}

async fn set_timeout(
    State(shared): St,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = match json_body(&headers, &body, true) {
        Ok(m) => m.unwrap(),
        Err(r) => return r.into_response(),
    };
    let timeout = match opt_int(&m, "timeout", 0, i32::MAX as i64) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return error(
                400,
                "request body has an error: doesn't match schema: property \"timeout\" is missing",
            );
        }
        Err(r) => return r.into_response(),
    };
    if timeout > shared.opts.max_timeout {
        return timeout_limit_error(shared.opts.max_timeout);
    }
    let mut st = shared.state.lock().unwrap();
    match st.sandboxes.get_mut(&id) {
        // Like E2B, only running sandboxes have a timeout to set.
        Some(s) if !s.paused => {
            s.end_at = OffsetDateTime::now_utc() + Duration::from_secs(timeout as u64);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => not_found(&id),
    }
}

async fn refresh(
    State(shared): St,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = match json_body(&headers, &body, false) {
        Ok(m) => m.unwrap_or_default(),
        Err(r) => return r.into_response(),
    };
    let duration = match opt_int(&m, "duration", 0, 3600) {
        Ok(d) => d.unwrap_or(0),
        Err(r) => return r.into_response(),
    };
    let mut st = shared.state.lock().unwrap();
    match st.sandboxes.get_mut(&id) {
        Some(s) if !s.paused => {
            let end = OffsetDateTime::now_utc() + Duration::from_secs(duration as u64);
            if end > s.end_at {
                s.end_at = end;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        _ => not_found(&id),
    }
}

/// `POST /sandboxes/{id}/fork` `{"timeout"?, "count"?}`: `count` (1..20) new running sandboxes
/// copied from the source (running or paused; it is left as it was), each answered as
/// `{"sandbox": Sandbox}` or, when it could not be made, `{"error": {"code", "message"}}`.
async fn fork(
    State(shared): St,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let m = match json_body(&headers, &body, false) {
        Ok(m) => m.unwrap_or_default(),
        Err(r) => return r.into_response(),
    };
    let (timeout, count) = match opt_int(&m, "timeout", 0, i32::MAX as i64)
        .and_then(|t| opt_int(&m, "count", 1, 20).map(|c| (t, c)))
    {
        Ok((t, c)) => (t.unwrap_or(300), c.unwrap_or(1)),
        Err(r) => return r.into_response(),
    };
    if timeout > shared.opts.max_timeout {
        return timeout_limit_error(shared.opts.max_timeout);
    }
    let Some(lock) = lifecycle_of(&shared, &id) else {
        return not_found(&id);
    };
    // Held while copying: the source neither pauses, resumes nor goes away meanwhile.
    let _guard = lock.lock().await;
    let source = {
        let st = shared.state.lock().unwrap();
        let Some(s) = st.sandboxes.get(&id) else {
            return not_found(&id);
        };
        (
            s.root.clone(),
            s.seen_at.clone(),
            s.template_id.clone(),
            s.alias.clone(),
            s.metadata.clone(),
            s.env_vars.clone(),
            s.auto_pause,
        )
    };
    let (src_root, seen_at, template_id, alias, metadata, env_vars, auto_pause) = source;
    let mut results = Vec::new();
    for _ in 0..count {
        let new_id = random_id(20);
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let root = shared.base.join("sandboxes").join(&new_id);
        let copied = tokio::process::Command::new("cp")
            .arg("-a")
            .arg("--reflink=auto")
            .arg(&src_root)
            .arg(&root)
            .output()
            .await;
        match copied {
            Ok(out) if out.status.success() => {}
            failed => {
                let why = match failed {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    Err(e) => e.to_string(),
                };
                let root2 = root.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    make_removable(&root2);
                    std::fs::remove_dir_all(&root2)
                })
                .await;
                results.push(json!({ "error": { "code": 500, "message": format!("failed to copy sandbox \"{id}\": {why}") } }));
                continue;
            }
        }
        let now = OffsetDateTime::now_utc();
        let lifecycle = Arc::new(tokio::sync::Mutex::new(()));
        let _new_guard = lifecycle.clone().lock_owned().await;
        shared.state.lock().unwrap().sandboxes.insert(
            new_id.clone(),
            Sbx {
                id: new_id.clone(),
                template_id: template_id.clone(),
                alias: alias.clone(),
                started_at: now,
                end_at: now + Duration::from_secs(timeout as u64),
                metadata: metadata.clone(),
                env_vars: env_vars.clone(),
                auto_pause,
                paused: false,
                paused_with_memory: None,
                token: token.clone(),
                traffic_token: None,
                root: root.clone(),
                seen_at: seen_at.clone(),
                in_shared_root: false,
                forked_from: Some(id.clone()),
                agent: None,
                lifecycle,
            },
        );
        match start_agent(&shared, &new_id, &root, &seen_at, &token, &env_vars).await {
            Ok(agent) => {
                if let Some(s) = shared.state.lock().unwrap().sandboxes.get_mut(&new_id) {
                    s.agent = Some(agent);
                }
                results.push(
                    json!({ "sandbox": sandbox_json(&new_id, &template_id, &alias, &token, None) }),
                );
            }
            Err(e) => {
                let sbx = shared.state.lock().unwrap().sandboxes.remove(&new_id);
                if let Some(sbx) = sbx {
                    destroy(&shared, sbx).await;
                }
                results.push(json!({ "error": { "code": 500, "message": format!("failed to start the fork: {e}") } }));
            }
        }
    }
    (StatusCode::CREATED, axum::Json(Value::Array(results))).into_response()
}

// ---------------------------------------------------------------------------------------------
// Sandboxes: agents, expiry, destruction

fn lifecycle_of(shared: &Shared, id: &str) -> Option<Arc<tokio::sync::Mutex<()>>> {
    shared
        .state
        .lock()
        .unwrap()
        .sandboxes
        .get(id)
        .map(|s| s.lifecycle.clone())
}

/// Apply elapsed timeouts: pause (autoPause) or kill.
async fn reap(shared: &Arc<Shared>) {
    let now = OffsetDateTime::now_utc();
    let due: Vec<(String, Arc<tokio::sync::Mutex<()>>)> = shared
        .state
        .lock()
        .unwrap()
        .sandboxes
        .values()
        .filter(|s| !s.paused && s.end_at <= now)
        .map(|s| (s.id.clone(), s.lifecycle.clone()))
        .collect();
    for (id, lock) in due {
        let _guard = lock.lock().await;
        let action = {
            let mut st = shared.state.lock().unwrap();
            match st.sandboxes.get_mut(&id) {
                Some(s) if !s.paused && s.end_at <= now => {
                    if s.auto_pause {
                        s.paused = true;
                        s.paused_with_memory = Some(true);
                        s.agent.take().map(Ok)
                    } else {
                        st.sandboxes.remove(&id).map(Err)
                    }
                }
                _ => None,
            }
        };
        match action {
            Some(Ok(agent)) => {
                let _ = tokio::task::spawn_blocking(move || stop_agent(agent)).await;
            }
            Some(Err(sbx)) => destroy(shared, sbx).await,
            None => {}
        }
    }
}

/// Stop the agent and delete the sandbox's files. The directory itself stays (emptied) when it
/// is the shared root, or when a fork's processes see their copy mounted there: removing a
/// mount point would detach the fork's mount.
async fn destroy(shared: &Arc<Shared>, mut sbx: Sbx) {
    let agent = sbx.agent.take();
    let root = sbx.root.clone();
    let seen_by_a_fork = shared
        .state
        .lock()
        .unwrap()
        .sandboxes
        .values()
        .any(|s| s.id != sbx.id && s.seen_at == root);
    let is_shared = sbx.in_shared_root || seen_by_a_fork;
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(a) = agent {
            stop_agent(a);
        }
        make_removable(&root);
        if is_shared {
            if let Ok(entries) = std::fs::read_dir(&root) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.is_dir() && !p.is_symlink() {
                        let _ = std::fs::remove_dir_all(&p);
                    } else {
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&root);
        }
    })
    .await;
}

/// Start `rclaude agent` for a sandbox whose files are at `root` and whose processes see them
/// at `seen_at` (the same path, except for a fork), and wait until it answers with the
/// sandbox's token.
async fn start_agent(
    shared: &Shared,
    id: &str,
    root: &Path,
    seen_at: &Path,
    token: &str,
    env: &BTreeMap<String, String>,
) -> Result<AgentProc, String> {
    let dir = shared.base.join("agents").join(id);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let token_file = dir.join("token");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&token_file)
            .map_err(|e| e.to_string())?;
        f.write_all(token.as_bytes()).map_err(|e| e.to_string())?;
    }
    let state_file = dir.join("agent.json");
    let _ = std::fs::remove_file(&state_file);
    std::fs::create_dir_all(root.join("home/user")).map_err(|e| e.to_string())?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))
        .map_err(|e| e.to_string())?;
    let home = seen_at.join("home/user");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rclaude"));
    cmd.arg("agent")
        .args(["--listen", "127.0.0.1:0", "--isolation", "none"])
        .arg("--root")
        .arg(seen_at)
        .arg("--home")
        .arg(&home)
        .arg("--workdir")
        .arg(&home)
        .arg("--token-file")
        .arg(&token_file)
        .arg("--state-file")
        .arg(&state_file)
        .arg("--env")
        .arg("E2B_SANDBOX=true")
        .arg("--env")
        .arg(format!("E2B_SANDBOX_ID={id}"))
        .env_remove("RCLAUDE_AGENT_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    for (k, v) in env {
        cmd.arg("--env").arg(format!("{k}={v}"));
    }
    let remapped = root != seen_at;
    if remapped {
        mount_at(&mut cmd, root, seen_at)?;
    }
    let mut child = cmd.spawn().map_err(|e| {
        if remapped {
            format!(
                "cannot start the agent in a private mount namespace showing {} at {} (the local E2B needs unshare(2) and mount(2), directly or in a user namespace, to fork): {e}",
                root.display(),
                seen_at.display()
            )
        } else {
            format!("cannot start the agent: {e}")
        }
    })?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default();
            return Err(format!("the agent exited ({status}): {log}"));
        }
        if let Ok(bytes) = std::fs::read(&state_file)
            && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
            && let Some(port) = v.get("port").and_then(Value::as_u64)
        {
            let ok = shared
                .http
                .get(format!("http://127.0.0.1:{port}/health"))
                .header("x-access-token", token)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(AgentProc {
                    child,
                    port: port as u16,
                });
            }
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the agent did not start within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Make `cmd` run in a private mount namespace where `root` is bind-mounted at `seen_at`: a
/// fork's processes see its copy where the source's see theirs, as each E2B sandbox has its own
/// disk. Without the privilege to mount, the namespace comes with a user namespace mapping only
/// this process's own uid and gid, so the agent keeps its identity. The mounts stay private:
/// nothing propagates back to the host.
fn mount_at(cmd: &mut std::process::Command, root: &Path, seen_at: &Path) -> Result<(), String> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|e| e.to_string());
    let (src, dst) = (c(root)?, c(seen_at)?);
    // SAFETY: plain getters without side effects.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let uid_map = format!("{uid} {uid} 1");
    let gid_map = format!("{gid} {gid} 1");
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // (unshare, open, write, close, mount) on memory prepared before the fork; it allocates
    // nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Absent on old kernels, where gid_map needs no "deny" first.
                let _ = write_proc(c"/proc/self/setgroups", b"deny");
                write_proc(c"/proc/self/uid_map", uid_map.as_bytes())?;
                write_proc(c"/proc/self/gid_map", gid_map.as_bytes())?;
            }
            let none = std::ptr::null::<libc::c_char>();
            if libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
                || libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    none,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Write `data` to a `/proc` file in one write(2), without allocating (safe after fork).
fn write_proc(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: a NUL-terminated path and a buffer of `data.len()` bytes; the descriptor is closed
    // before returning.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if n != data.len() as isize {
            return Err(err);
        }
    }
    Ok(())
}

/// SIGTERM (the agent kills its processes), SIGKILL after 5 s, and reap.
fn stop_agent(mut a: AgentProc) {
    let pid = a.child.id() as libc::pid_t;
    // SAFETY: kill(2) on a child we spawned and have not reaped yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = a.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = a.child.kill();
    let _ = a.child.wait();
}

fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(meta) = std::fs::symlink_metadata(&d)
            && meta.is_dir()
        {
            let mut perm = meta.permissions();
            if perm.mode() & 0o700 != 0o700 {
                perm.set_mode(perm.mode() | 0o700);
                let _ = std::fs::set_permissions(&d, perm);
            }
            if let Ok(entries) = std::fs::read_dir(&d) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
}

fn random_id(len: usize) -> String {
    let mut s = String::new();
    while s.len() < len {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    // E2B ids are lowercase letters and digits; start with a letter like E2B's do.
    let mut s: String = s.chars().take(len).collect();
    s.replace_range(0..1, "i");
    s
}

// ---------------------------------------------------------------------------------------------
// The envd edge

/// A user port (not envd's) through the edge: a running sandbox's processes share this host's
/// network here, so the port is 127.0.0.1:PORT. A sandbox created with
/// `allowPublicTraffic: false` answers 403 to a request without its traffic token. WebSockets
/// pass through (the same proxy `rclaude port --local` uses, with no headers added).
async fn user_port_proxy(shared: &Arc<Shared>, id: &str, port: u16, mut req: Request) -> Response {
    let wanted = {
        let st = shared.state.lock().unwrap();
        match st.sandboxes.get(id) {
            None => return error(404, &format!("The sandbox {id} was not found")),
            Some(s) if s.paused => return error(502, &format!("The sandbox {id} is paused")),
            Some(s) => s.traffic_token.clone(),
        }
    };
    let given = req
        .headers()
        .get("e2b-traffic-access-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(want) = wanted
        && given.as_deref() != Some(want.as_str())
    {
        return error(
            403,
            "the sandbox's ports are not public: send its traffic access token in e2b-traffic-access-token",
        );
    }
    for h in [
        "e2b-traffic-access-token",
        "e2b-sandbox-id",
        "e2b-sandbox-port",
    ] {
        req.headers_mut().remove(h);
    }
    let access = rclaude_sandbox::provider::PortAccess {
        url: format!("http://127.0.0.1:{port}"),
        headers: Default::default(),
        secret_headers: Vec::new(),
    };
    use tower::ServiceExt;
    match rclaude_sandbox::port_proxy::router(access) {
        Ok(r) => r.oneshot(req).await.into_response(),
        Err(e) => error(500, &e.to_string()),
    }
}

async fn envd_proxy(
    shared: Arc<Shared>,
    id: String,
    port: &str,
    routed_by: &'static str,
    req: Request,
) -> Response {
    reap(&shared).await;
    let path = req.uri().path().to_string();
    let had_access_token = req.headers().contains_key("x-access-token");
    let record = |status: u16| {
        shared
            .state
            .lock()
            .unwrap()
            .envd_requests
            .push(EnvdRecorded {
                sandbox: id.clone(),
                path: path.clone(),
                routed_by,
                had_access_token,
                status,
            });
    };
    match port.parse::<u16>() {
        Ok(ENVD_PORT) => {}
        Ok(user_port) if shared.opts.agents => {
            let status_of = |r: &Response| r.status().as_u16();
            let resp = user_port_proxy(&shared, &id, user_port, req).await;
            record(status_of(&resp));
            return resp;
        }
        _ => {
            record(502);
            return error(
                502,
                &format!("The sandbox {id} is running but port {port} is not open"),
            );
        }
    }
    let target = {
        let st = shared.state.lock().unwrap();
        match st.sandboxes.get(&id) {
            None => Err(format!("The sandbox {id} was not found")),
            Some(s) if s.paused => Err(format!("The sandbox {id} is paused")),
            Some(s) => s
                .agent
                .as_ref()
                .map(|a| a.port)
                .ok_or_else(|| format!("The sandbox {id} is not running")),
        }
    };
    let agent_port = match target {
        Ok(p) => p,
        // Control plane only: the workdir a create makes is "there already"; nothing else runs.
        Err(_) if !shared.opts.agents && req.uri().path() == "/filesystem.Filesystem/MakeDir" => {
            record(409);
            return (
                StatusCode::CONFLICT,
                axum::Json(json!({ "code": "already_exists", "message": "directory exists" })),
            )
                .into_response();
        }
        Err(msg) => {
            record(502);
            return (
                StatusCode::BAD_GATEWAY,
                axum::Json(json!({ "code": 502, "message": msg, "sandboxId": id })),
            )
                .into_response();
        }
    };
    let (parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut rb = shared.http.request(
        parts.method.clone(),
        format!("http://127.0.0.1:{agent_port}{pq}"),
    );
    let has_body = parts.headers.contains_key("content-length")
        || parts.headers.contains_key("transfer-encoding");
    for (k, v) in parts.headers.iter() {
        if k == "host" || HOP_BY_HOP.contains(&k.as_str()) {
            continue;
        }
        rb = rb.header(k.clone(), v.clone());
    }
    if has_body {
        rb = rb.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let upstream = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            record(502);
            return error(502, &format!("The sandbox {id} did not answer: {e}"));
        }
    };
    record(upstream.status().as_u16());
    let mut resp = Response::builder().status(upstream.status().as_u16());
    for (k, v) in upstream.headers() {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            resp = resp.header(k.clone(), v.clone());
        }
    }
    resp.body(Body::from_stream(
        upstream.bytes_stream().map_err(std::io::Error::other),
    ))
    .unwrap()
}
