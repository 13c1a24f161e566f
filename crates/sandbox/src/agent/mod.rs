//! `rclaude agent`: the sandbox side. An HTTP/1.1 server that speaks the subset of E2B's envd
//! protocol rclaude needs (and that E2B's own SDK accepts): `/health`, `/files`, and the
//! `process.Process` and `filesystem.Filesystem` Connect services, confined to one directory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rclaude_sandbox::agent::AgentError> {
//! use rclaude_sandbox::agent::{AgentOptions, bind};
//! let mut opts = AgentOptions::new("/srv/sandbox".into());
//! opts.token = Some("secret".into());
//! let agent = bind(opts).await?;
//! println!("listening on {}", agent.local_addr());
//! agent.serve(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod apply;
mod auth;
mod bwrap;
mod changes;
use changes::ChangedPaths;
mod egress;
pub mod export;
mod fdio;
mod files;
mod filesystem;
#[doc(hidden)]
pub mod fuzzing;
pub mod helper;
mod isolation;
mod leader;
mod netns;
mod npmrc;
pub mod paths;
mod process;
mod pty;
pub mod query;
mod reaper;
mod rpc;
mod watch;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use auth::sign as sign_file_url;
pub use isolation::{IsolationReport, Launcher};

/// Set in the environment of rclaude's own sync steps (the scripts that init, query and apply
/// the sandbox's repository): they do not wait for the sandbox's preparation (the npm
/// settings a new local sandbox's agent copies in), which they do not use.
pub const SYNC_STEP_VAR: &str = "RCLAUDE_SYNC_STEP";

use crate::Isolation;
use crate::envd::ENVD_PORT;
use crate::envd::proto::HttpError;

/// How the agent is run.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Address to listen on (default `127.0.0.1:49983`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// The sandbox root: every path is confined to it; it must exist.
    pub root: PathBuf,
    /// Access token required in `X-Access-Token`. `None` = no authentication (debug only).
    pub token: Option<String>,
    /// `HOME` of processes and target of `~` (default: the root). Must be inside the root.
    pub home: Option<PathBuf>,
    /// Default cwd of processes and base of relative paths (default: home). Inside the root.
    pub workdir: Option<PathBuf>,
    /// Environment added to every process (after PATH/HOME/USER/LOGNAME/E2B_SANDBOX).
    pub env: BTreeMap<String, String>,
    /// Process isolation (bubblewrap).
    pub isolation: Isolation,
    /// Host paths a bubblewrapped sandbox sees read-only, besides the system directories.
    pub expose: Vec<PathBuf>,
    /// Where the agent records the process groups it starts; those a previous agent left
    /// running are killed at start (see `reap_leftovers`).
    pub groups_file: Option<PathBuf>,
    /// Keepalive interval on process streams when the client does not ask for one.
    pub keepalive_default: Duration,
    /// Where the sandbox's processes may connect to. Restricted policies need bubblewrap (the
    /// sandbox's own network namespace).
    pub network: crate::network::NetworkPolicy,
    /// Serve `POST /rclaude/export` and `POST /rclaude/apply` by running this executable as
    /// the step helper ([`helper::HELPER`]); only for an executable that implements it
    /// (`rclaude agent`).
    pub step_helper: bool,
    /// Copy this machine's npm network settings (registry, CA file, proxies; never
    /// credentials) into the sandbox's `~/.npmrc` unless it has one. Asking npm takes a few
    /// hundred milliseconds, so it runs beside everything else; commands wait for it.
    pub copy_npm_settings: bool,
}

impl AgentOptions {
    /// Defaults for a root directory: loopback on envd's port, no token, no isolation choice.
    pub fn new(root: PathBuf) -> Self {
        AgentOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], ENVD_PORT)),
            root,
            token: None,
            home: None,
            workdir: None,
            env: BTreeMap::new(),
            isolation: Isolation::Auto,
            expose: Vec::new(),
            groups_file: None,
            keepalive_default: Duration::from_secs(90),
            network: crate::network::NetworkPolicy::Open,
            step_helper: false,
            copy_npm_settings: false,
        }
    }
}

/// Errors starting or running the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid sandbox directories: {0}")]
    Root(#[from] paths::PathError),
    #[error("process isolation unavailable: {0} (use isolation = \"none\" to run without it)")]
    Isolation(String),
    #[error("the access token is empty; set a token or run without authentication explicitly")]
    EmptyToken,
    #[error("the sandbox's [network] policy cannot be enforced here: {0}")]
    Network(String),
    #[error("agent server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Shared state of the request handlers.
pub(crate) struct AgentState {
    auth: auth::Auth,
    conf: Arc<paths::Confinement>,
    processes: Arc<process::Processes>,
    watchers: Arc<watch::Watchers>,
    changes: changes::Changes,
    step_helper: bool,
    launcher: Launcher,
    env: BTreeMap<String, String>,
}

impl AgentState {
    /// The paths changed under `work` since the last step asked (see `changes::Changes`).
    async fn changed_under(self: &Arc<Self>, work: &std::path::Path) -> Option<ChangedPaths> {
        let state = self.clone();
        let dir = work.to_path_buf();
        tokio::task::spawn_blocking(move || state.changes.take_changed(&dir))
            .await
            .ok()
            .flatten()
    }
}

/// A bound, not yet serving agent.
pub struct Agent {
    listener: tokio::net::TcpListener,
    local_addr: SocketAddr,
    state: Arc<AgentState>,
    launcher: Launcher,
    isolation: IsolationReport,
}

/// Kill the processes a dead agent left running, from its record of process groups (`path`,
/// the agent's `groups_file`). Returns how many processes were killed.
pub fn reap_leftovers(path: &std::path::Path) -> usize {
    reaper::reap(path)
}

/// The isolation `isolation` gives on this machine now (bubblewrap found and working, or not).
pub fn isolation_report(isolation: Isolation) -> IsolationReport {
    isolation::report_for(isolation)
}

/// Validate options, pick the process launcher and bind the listener.
pub async fn bind(opts: AgentOptions) -> Result<Agent, AgentError> {
    if opts.token.as_deref() == Some("") {
        return Err(AgentError::EmptyToken);
    }
    let conf = Arc::new(paths::Confinement::new(
        &opts.root,
        opts.home.as_deref(),
        opts.workdir.as_deref(),
    )?);
    let isolation = opts.isolation;
    let restricted = !opts.network.is_open();
    if restricted && isolation == Isolation::None {
        return Err(AgentError::Network(
            "it needs isolation = \"bwrap\" (the sandbox's own network namespace)".into(),
        ));
    }
    let view = isolation::View {
        network: opts.network.clone(),
        expose: opts.expose.clone(),
        // rclaude's own files: other sandboxes' tokens, session records, the server token.
        hide: vec![
            crate::dirs::data_dir(),
            crate::dirs::state_dir(),
            crate::dirs::config_dir(),
        ],
    };
    let (launcher, report) =
        tokio::task::spawn_blocking(move || isolation::select(isolation, view))
            .await
            .map_err(|e| AgentError::Isolation(e.to_string()))?
            .map_err(AgentError::Isolation)?;
    if restricted && !launcher.is_isolated() {
        launcher.shutdown();
        return Err(AgentError::Network(format!(
            "it needs bubblewrap, which is not available ({})",
            report.missing.as_deref().unwrap_or("unknown reason")
        )));
    }
    let mut opts = opts;
    if restricted {
        opts.env.extend(egress::proxy_env());
    }
    let group_log = match &opts.groups_file {
        Some(f) => {
            let killed = reaper::reap(f);
            if killed > 0 {
                tracing::warn!("killed {killed} process(es) a previous agent left running");
            }
            Some(reaper::GroupLog::create(f, conf.root()).map_err(|e| {
                AgentError::Root(paths::PathError::Io {
                    path: f.display().to_string(),
                    source: e,
                })
            })?)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: opts.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| AgentError::Bind {
        addr: opts.listen,
        source,
    })?;
    if opts.token.is_none() {
        tracing::warn!(
            "agent on {local_addr} accepts requests without an access token (no-auth mode)"
        );
    }
    let ready = if opts.copy_npm_settings {
        npmrc::copy_in_background(conf.home().to_path_buf())
    } else {
        tokio::sync::watch::channel(true).1
    };
    let processes = Arc::new(process::Processes::new(
        conf.clone(),
        launcher.clone(),
        &opts.env,
        opts.keepalive_default,
        group_log,
        ready,
    ));
    let watchers = watch::Watchers::new(conf.clone(), opts.keepalive_default);
    let state = Arc::new(AgentState {
        auth: auth::Auth::new(opts.token),
        conf,
        processes,
        watchers,
        changes: changes::Changes::default(),
        step_helper: opts.step_helper,
        launcher: launcher.clone(),
        env: opts.env,
    });
    Ok(Agent {
        listener,
        local_addr,
        state,
        launcher,
        isolation: report,
    })
}

/// How long in-flight requests may take to finish after shutdown before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl Agent {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The canonical sandbox root.
    pub fn root(&self) -> &std::path::Path {
        self.state.conf.root()
    }

    /// How processes are launched (bubblewrap or plain).
    pub fn launcher(&self) -> &Launcher {
        &self.launcher
    }

    /// The isolation in effect, and what is missing when there is none.
    pub fn isolation(&self) -> &IsolationReport {
        &self.isolation
    }

    /// Serve until `shutdown` resolves; then kill every process group still running, let
    /// in-flight requests finish (for at most a few seconds) and return.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AgentError> {
        let state = self.state.clone();
        let app = router(self.state);
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        // Without TCP_NODELAY a streamed response's second small write (a process's end event
        // after its start event) waits for the client's delayed ACK: 40 ms per command.
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await });
        let mut server = std::pin::pin!(server.into_future());
        tokio::select! {
            r = &mut server => return r.map_err(AgentError::Serve),
            _ = shutdown => {}
        }
        tracing::info!(
            "agent shutting down; killing {} running process(es)",
            state.processes.running()
        );
        state.processes.kill_all();
        stop.cancel();
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(r) => r.map_err(AgentError::Serve),
            Err(_) => Ok(()),
        }
    }
}

fn router(state: Arc<AgentState>) -> Router {
    Router::new()
        .route("/health", get(|| async { StatusCode::NO_CONTENT }))
        .route("/envs", get(envs))
        .route("/files", get(files::download).post(files::upload))
        .route("/process.Process/{method}", post(process_rpc))
        .route("/filesystem.Filesystem/{method}", post(filesystem_rpc))
        .route("/rclaude/changes", post(change_token))
        .route("/rclaude/export", post(export::handle))
        .route("/rclaude/apply", post(apply::handle))
        .route("/rclaude/query", post(query::handle))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// `GET /envs`: the default environment added to every process (the options' `env`).
async fn envs(State(state): State<Arc<AgentState>>) -> Response {
    axum::Json(state.env.clone()).into_response()
}

/// `POST /rclaude/changes` `{"path": DIR}`: `{"token": T}`, where two equal tokens mean nothing
/// under DIR changed between the two requests (rclaude's own bookkeeping under `.git` aside);
/// `{"token": null}` when that cannot be told (see [`changes`]). An rclaude extension to the
/// envd protocol.
async fn change_token(
    State(state): State<Arc<AgentState>>,
    axum::Json(req): axum::Json<ChangesRequest>,
) -> Response {
    let dir = match state.conf.resolve(&req.path, paths::Follow::Yes) {
        Ok(d) => d,
        Err(e) => return files::bad(e.to_string()).into_response(),
    };
    let token = tokio::task::spawn_blocking(move || state.changes.token(&dir))
        .await
        .ok()
        .flatten();
    axum::Json(serde_json::json!({ "token": token })).into_response()
}

#[derive(serde::Deserialize)]
struct ChangesRequest {
    path: String,
}

async fn process_rpc(
    State(state): State<Arc<AgentState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    state.processes.clone().handle(&method, headers, body).await
}

async fn filesystem_rpc(
    State(state): State<Arc<AgentState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match method.as_str() {
        "WatchDir" | "CreateWatcher" | "GetWatcherEvents" | "RemoveWatcher" => {
            state.watchers.clone().handle(&method, headers, body).await
        }
        _ => filesystem::handle(state.conf.clone(), &method, headers, body).await,
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    let body = HttpError {
        code: 404,
        message: format!("no such endpoint: {}", uri.path()),
    };
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}
