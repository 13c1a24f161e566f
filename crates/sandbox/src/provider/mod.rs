//! The provider abstraction: sandbox lifecycle (`Provider`) and work inside one (`Sandbox`).
//!
//! Providers differ only in lifecycle and in how they reach the sandbox; everything after the
//! lifecycle (exec, files, git-bundle sync, live sync) goes through a [`Sandbox`] handle.

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};

pub use entry::{Entry, EntryKind};

/// How a client that holds no provider key reaches one sandbox directly: what a server hands to
/// the clients of a sandbox it manages, so that it stays out of their data path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAccess {
    /// The sandbox's envd (E2B, the local agent).
    Envd(EnvdAccess),
    /// Daytona's toolbox proxy (base URL, without the sandbox id) and the sandbox's preview
    /// token, which reaches that sandbox's toolbox and nothing else.
    DaytonaToolbox {
        toolbox_url: String,
        preview_token: String,
    },
}

/// How this machine reaches a port a sandbox serves through the provider's edge: the URL to
/// send requests to and the headers each must carry (routing, and a traffic token when the
/// sandbox is not public: secret, never shown).
#[derive(Clone, PartialEq, Eq)]
pub struct PortAccess {
    /// Base URL without a trailing slash.
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Header names in `headers` whose values are secret.
    pub secret_headers: Vec<String>,
}

impl std::fmt::Debug for PortAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: BTreeMap<&str, &str> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let v = if self.secret_headers.contains(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("PortAccess")
            .field("url", &self.url)
            .field("headers", &shown)
            .finish()
    }
}

/// How a provider's edge reaches each port of one sandbox (see [`Sandbox::port_access`]).
pub trait PortRouter: Send + Sync + std::fmt::Debug {
    fn access(&self, port: u16) -> PortAccess;
}

/// Where a sandbox's envd listens and the token it requires.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvdAccess {
    pub url: String,
    pub access_token: Option<String>,
    /// Headers every request needs besides the token (E2B's `E2b-Sandbox-Id` and
    /// `E2b-Sandbox-Port` when its sandboxes are addressed through one URL); not secret.
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for EnvdAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvdAccess")
            .field("url", &self.url)
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<redacted>"),
            )
            .field("headers", &self.headers)
            .finish()
    }
}

pub mod daytona;
pub mod download;
pub mod e2b;
mod entry;
pub mod envd_sandbox;
pub mod local;
pub mod northflank;
pub mod retry;
pub mod select;
pub mod shellwrap;
mod subvolume;

/// What a provider's sandboxes can and cannot do; `status` reports these.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Capabilities {
    /// Pause keeps memory, so running processes survive a pause.
    pub pause_keeps_memory: bool,
    /// The file system survives pause/resume.
    pub persistent_disk: bool,
    /// The provider pauses an idle sandbox on its own after `timeout`.
    pub auto_pause: bool,
    /// Interactive terminals (PTY) are available.
    pub pty: bool,
}

/// Everything needed to create a sandbox.
#[derive(Debug, Clone, Default)]
pub struct SandboxSpec {
    /// Human-readable name (the repository's directory name).
    pub name: String,
    /// Image or template; provider-specific meaning.
    pub image: Option<String>,
    pub cpu: Option<u32>,
    pub memory_mb: Option<u32>,
    /// Idle lifetime before the provider pauses (or stops) the sandbox.
    pub timeout: Option<Duration>,
    pub auto_pause: bool,
    /// Pause after this long without client activity: sessions a server manages (it watches
    /// activity); other providers pause on `timeout`.
    pub idle_pause: Option<Duration>,
    /// Where the repository lives inside the sandbox (providers may override, e.g. local).
    pub workdir: String,
    /// Plain environment for every process (not secrets: those are passed per exec).
    pub env: BTreeMap<String, String>,
    /// Labels stored with the sandbox (repository, branch, session id).
    pub metadata: BTreeMap<String, String>,
    /// Local provider: process isolation.
    pub isolation: crate::Isolation,
    /// Local provider: host paths the sandbox sees read-only (`[sandbox] expose`).
    pub expose: Vec<String>,
    /// Where the sandbox's processes may connect to (`[network]`). A provider that cannot
    /// enforce a restricted policy refuses to create the sandbox.
    pub network: crate::network::NetworkPolicy,
    /// Whether its ports are served without a traffic token (E2B's `allowPublicTraffic`, for
    /// the whole sandbox); `None`: the provider's default (public on E2B).
    pub public_ports: Option<bool>,
}

/// Lifecycle state as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    Running,
    Paused,
    /// Provider-specific state we do not model (shown verbatim).
    Other(String),
}

impl std::fmt::Display for SandboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SandboxState::Running => f.write_str("running"),
            SandboxState::Paused => f.write_str("paused"),
            SandboxState::Other(s) => f.write_str(s),
        }
    }
}

/// A sandbox as listed by its provider.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxInfo {
    pub id: String,
    pub provider: String,
    pub state: SandboxState,
    /// Absolute path of the repository inside the sandbox.
    pub workdir: String,
    pub metadata: BTreeMap<String, String>,
    /// RFC 3339 creation time when known.
    pub started_at: Option<String>,
    /// RFC 3339 time at which the provider will pause/stop it, when known.
    pub end_at: Option<String>,
}

/// How to start a process.
#[derive(Debug, Clone)]
pub enum Command {
    /// A shell command line; the sandbox picks the shell (`bash -c` or `bash -l -c`).
    Shell(String),
    /// A program and its arguments, no shell.
    Argv(Vec<String>),
}

/// A process to run in the sandbox.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub command: Command,
    /// Working directory; `None` = the sandbox's workdir.
    pub cwd: Option<String>,
    pub env: BTreeMap<String, String>,
    /// Bytes written to stdin before it is closed; `None` = stdin closed at start (unless
    /// `stream_stdin`).
    pub stdin: Option<Bytes>,
    /// Keep stdin open: the caller writes it with [`Sandbox::write_stdin`] and closes it with
    /// [`Sandbox::close_stdin`] (only where [`Sandbox::streams_stdin`]).
    pub stream_stdin: bool,
    /// Kill the process after this long.
    pub timeout: Option<Duration>,
    /// A tag to find the process again (detached runs).
    pub tag: Option<String>,
}

impl ExecRequest {
    /// A shell command with no env, cwd = workdir, stdin closed, no timeout.
    pub fn shell(cmd: impl Into<String>) -> Self {
        ExecRequest {
            command: Command::Shell(cmd.into()),
            cwd: None,
            env: BTreeMap::new(),
            stdin: None,
            stream_stdin: false,
            timeout: None,
            tag: None,
        }
    }

    /// A program with arguments, no shell.
    pub fn argv<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecRequest {
            command: Command::Argv(args.into_iter().map(Into::into).collect()),
            ..ExecRequest::shell("")
        }
    }

    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    pub fn env(mut self, env: BTreeMap<String, String>) -> Self {
        self.env.extend(env);
        self
    }

    pub fn stdin(mut self, data: impl Into<Bytes>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn timeout(mut self, t: Option<Duration>) -> Self {
        self.timeout = t;
        self
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitStatus {
    /// Exit code; `-1` when killed by a signal.
    pub code: i32,
    /// Provider's status text, e.g. `exit status 1` or `signal: killed`.
    pub status: String,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Exit code suitable for this process: the remote code, or 128+S when signal S killed
    /// it (`signal: NAME` as envd reports it, for every signal), or 1 when unknown.
    pub fn shell_code(&self) -> i32 {
        if self.code >= 0 {
            return self.code;
        }
        crate::envd::signals::from_status(&self.status)
            .map(|s| 128 + s)
            .unwrap_or(1)
    }
}

/// One event of a running process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEvent {
    Started { pid: u32 },
    Stdout(Bytes),
    Stderr(Bytes),
    Exited(ExitStatus),
}

/// Stream of process events; ends after `Exited` (or an error).
pub type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecEvent, SandboxError>> + Send>>;

/// Collected output of a finished process.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A file to write in the sandbox.
#[derive(Debug, Clone)]
pub struct FileUpload {
    /// Absolute path in the sandbox.
    pub path: String,
    pub contents: Bytes,
}

/// Progress callback: bytes transferred so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// An interactive process on a pseudo-terminal (`rclaude shell`, interactive `rclaude claude`).
#[derive(Debug, Clone)]
pub struct PtyRequest {
    /// What to run; `None` = an interactive login shell (`bash -i -l`).
    pub command: Option<Command>,
    /// Working directory; `None` = the sandbox's workdir.
    pub cwd: Option<String>,
    /// Environment (e.g. `TERM`; `TERM`, `LANG` and `LC_ALL` get defaults when missing).
    pub env: BTreeMap<String, String>,
    /// Initial window size (0 = the provider's default, 80x24).
    pub cols: u16,
    pub rows: u16,
    /// A tag to find the process again.
    pub tag: Option<String>,
}

/// Input side of a running PTY process.
#[async_trait]
pub trait PtyInput: Send + Sync {
    /// Send bytes as if typed (Ctrl-C is `0x03`, Ctrl-D `0x04`).
    async fn write(&self, data: Bytes) -> Result<(), SandboxError>;
    /// Change the terminal size (the process gets `SIGWINCH`).
    async fn resize(&self, cols: u16, rows: u16) -> Result<(), SandboxError>;
}

/// A started PTY process.
pub struct PtySession {
    pub pid: u32,
    /// Terminal output as [`ExecEvent::Stdout`], then [`ExecEvent::Exited`].
    pub events: ExecStream,
    /// Keystrokes and resizes.
    pub input: Arc<dyn PtyInput>,
}

impl std::fmt::Debug for PtySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtySession")
            .field("pid", &self.pid)
            .finish()
    }
}

/// A process running in the sandbox, as listed by the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessEntry {
    pub pid: u32,
    /// The tag it was started with.
    pub tag: Option<String>,
}

/// Errors talking to a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot reach the sandbox at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the sandbox rejected the access token ({0})")]
    Unauthenticated(String),
    #[error("not found in the sandbox: {0}")]
    NotFound(String),
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error("already exists in the sandbox: {0}")]
    AlreadyExists(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("sandbox error ({code}): {message}")]
    Remote { code: String, message: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("not supported by this provider: {0}")]
    Unsupported(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl SandboxError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SandboxError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Errors from a provider's lifecycle API.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("sandbox {0} no longer exists")]
    NotFound(String),
    #[error("{provider} API error ({status}): {message}{}", hint.as_deref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Api {
        provider: String,
        status: u16,
        message: String,
        hint: Option<String>,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// A sandbox's lifecycle, behind one trait for every cloud.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short name as written in `.rclaude.toml` (`local`, `e2b`, ...).
    fn name(&self) -> &'static str;
    fn capabilities(&self) -> Capabilities;
    /// Create a new sandbox; it is running when this returns.
    async fn create(&self, spec: &SandboxSpec) -> Result<SandboxInfo, ProviderError>;
    /// Connect to a sandbox, resuming it when paused.
    async fn connect(&self, id: &str) -> Result<Arc<dyn Sandbox>, ProviderError>;
    /// Current state, `None` when the sandbox no longer exists.
    async fn info(&self, id: &str) -> Result<Option<SandboxInfo>, ProviderError>;
    /// Pause: stop compute, keep the files.
    async fn pause(&self, id: &str) -> Result<(), ProviderError>;
    /// Destroy the sandbox and its files.
    async fn kill(&self, id: &str) -> Result<(), ProviderError>;
    /// Sandboxes created by rclaude on this provider/account.
    async fn list(&self) -> Result<Vec<SandboxInfo>, ProviderError>;
    /// Keep a running sandbox from being paused for `lifetime` more (while a session is active).
    async fn keep_alive(&self, _id: &str, _lifetime: Duration) -> Result<(), ProviderError> {
        Ok(())
    }
    /// How a client holding no key of this provider reaches sandbox `id` (connected as
    /// `sandbox`) directly; `None` when this provider offers no such access.
    async fn client_access(
        &self,
        _id: &str,
        sandbox: &dyn Sandbox,
    ) -> Result<Option<ClientAccess>, ProviderError> {
        Ok(sandbox.envd_access().map(ClientAccess::Envd))
    }
    /// Whether [`Provider::fork`] copies sandboxes (otherwise it refuses, and callers build a
    /// copy another way).
    fn can_fork(&self) -> bool {
        false
    }
    /// A new sandbox that starts with everything `source` has (files, installed dependencies,
    /// caches, sandbox-side commits), labelled with `spec`'s metadata; running when this
    /// returns. Providers that cannot copy a sandbox say so.
    async fn fork(&self, source: &str, _spec: &SandboxSpec) -> Result<SandboxInfo, ProviderError> {
        Err(ProviderError::Config(format!(
            "the {} provider cannot fork sandbox {source} yet; `rclaude up -s NAME` makes a fresh session",
            self.name()
        )))
    }
}

/// The export step's work-tree mode, asked of a sandbox that does it itself
/// ([`Sandbox::export_worktree`]; `POST /rclaude/export` on rclaude's agent). Paths as the
/// sandbox names them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WorktreeExportRequest {
    pub workdir: String,
    /// Where the bundle goes.
    pub out: String,
    /// Commits the receiver has.
    pub bases: Vec<String>,
    /// Ref prefixes (`refs/...`) whose commits the receiver has too.
    #[serde(default)]
    pub base_refs: Vec<String>,
}

/// The sync's apply step done by the sandbox itself ([`Sandbox::apply_sync`]; `POST
/// /rclaude/apply` on rclaude's agent). Object ids in hex, paths as the sandbox names them; the
/// fields are the apply script's inputs (a shallow repository is left to the script).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApplySyncRequest {
    pub workdir: String,
    /// The sandbox identity the client expects.
    pub identity: String,
    /// The uploaded bundle, when objects were sent.
    pub bundle: Option<String>,
    pub snapshot: String,
    pub index: String,
    /// The laptop's HEAD commit; `None` when it has none.
    pub head: Option<String>,
    /// Branch to check out (short name); `None`: detached at `head`.
    pub branch: Option<String>,
    /// Commits the laptop has.
    pub known: Vec<String>,
    /// Content of the sandbox's `.git/info/exclude`, and its id.
    pub excludes: String,
    pub excludes_id: String,
}

/// The sync's query step done by the sandbox itself ([`Sandbox::query_sync`]; `POST
/// /rclaude/query` on rclaude's agent).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct QuerySyncRequest {
    pub workdir: String,
}

/// Work inside one sandbox: processes and files.
#[async_trait]
pub trait Sandbox: Send + Sync {
    fn id(&self) -> &str;
    /// Absolute path of the repository inside the sandbox.
    fn workdir(&self) -> &str;
    /// How a client reaches this sandbox's envd directly (URL and access token), when it speaks
    /// envd: what a server hands to the clients of a sandbox it manages.
    fn envd_access(&self) -> Option<EnvdAccess> {
        None
    }
    /// How this machine reaches `port` of this sandbox through the provider's edge (E2B:
    /// `https://PORT-<id>.<domain>`, with the traffic token of a sandbox that is not public);
    /// `None` when the provider serves no ports that way.
    fn port_access(&self, _port: u16) -> Option<PortAccess> {
        None
    }
    /// A token for the state of the tree at `dir` now: two equal tokens mean nothing under it
    /// changed in between (so a checkpoint need not be taken again). `None` (the default, and
    /// whenever the sandbox cannot tell): look at the tree itself.
    async fn change_token(&self, _dir: &str) -> Result<Option<String>, SandboxError> {
        Ok(None)
    }
    /// The sync's export step in work-tree mode done by the sandbox itself (rclaude's own
    /// agent): the `RCLAUDE:key=value` answer its script would print. `None` (the default, and
    /// whenever the sandbox declines): run the script.
    async fn export_worktree(
        &self,
        _req: &WorktreeExportRequest,
    ) -> Result<Option<String>, SandboxError> {
        Ok(None)
    }
    /// The sync's apply step done by the sandbox itself (rclaude's own agent): the
    /// `RCLAUDE:key=value` answer its script would print. `None` (the default, and whenever the
    /// sandbox declines): run the script.
    async fn apply_sync(&self, _req: &ApplySyncRequest) -> Result<Option<String>, SandboxError> {
        Ok(None)
    }
    /// The sync's query step done by the sandbox itself (rclaude's own agent): the
    /// `RCLAUDE:key=value` answer its script would print. `None` (the default, and whenever the
    /// sandbox declines): run the script.
    async fn query_sync(&self, _req: &QuerySyncRequest) -> Result<Option<String>, SandboxError> {
        Ok(None)
    }
    /// Start a process and stream its events.
    async fn exec(&self, req: ExecRequest) -> Result<ExecStream, SandboxError>;
    /// Send a signal (`SIGTERM` or `SIGKILL`) to a process.
    async fn kill_process(&self, pid: u32, force: bool) -> Result<(), SandboxError>;
    /// Whether a process's stdin can be streamed ([`ExecRequest::stream_stdin`]); otherwise
    /// stdin can only be given whole at start.
    fn streams_stdin(&self) -> bool {
        false
    }
    /// Write to the stdin of a process started with [`ExecRequest::stream_stdin`].
    async fn write_stdin(&self, _pid: u32, _data: Bytes) -> Result<(), SandboxError> {
        Err(SandboxError::Unsupported("streaming stdin".into()))
    }
    /// Close the stdin of a process started with [`ExecRequest::stream_stdin`] (EOF).
    async fn close_stdin(&self, _pid: u32) -> Result<(), SandboxError> {
        Err(SandboxError::Unsupported("streaming stdin".into()))
    }
    /// Write several small files in one request (atomically each).
    async fn write_files(&self, files: Vec<FileUpload>) -> Result<(), SandboxError>;
    /// Stream a local file to `remote_path`.
    async fn upload(
        &self,
        local: &Path,
        remote_path: &str,
        progress: Option<Progress>,
    ) -> Result<u64, SandboxError>;
    /// Stream `remote_path` into a local file.
    async fn download(
        &self,
        remote_path: &str,
        local: &Path,
        progress: Option<Progress>,
    ) -> Result<u64, SandboxError>;
    /// Read a whole (small) file.
    async fn read_file(&self, path: &str) -> Result<Bytes, SandboxError>;
    /// Remove a file or directory (recursively); a missing path is not an error.
    async fn remove(&self, path: &str) -> Result<(), SandboxError>;
    /// File metadata, `None` when missing.
    async fn stat(&self, path: &str) -> Result<Option<Entry>, SandboxError>;
    /// Create a directory and its parents; `false` when it already existed.
    async fn make_dir(&self, path: &str) -> Result<bool, SandboxError>;
    /// Rename a file or directory.
    async fn rename(&self, from: &str, to: &str) -> Result<(), SandboxError>;
    /// Bytes of `path` from `offset` to its current end (empty when `offset` is at or past the
    /// end): follows a file that grows, e.g. a detached run's transcript.
    async fn read_file_from(&self, path: &str, offset: u64) -> Result<Bytes, SandboxError> {
        let all = self.read_file(path).await?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        Ok(all.slice(start..))
    }
    /// Entries of a directory (one level): metadata for many paths in one request.
    async fn list_dir(&self, _path: &str) -> Result<Vec<Entry>, SandboxError> {
        Err(SandboxError::Unsupported("listing directories".into()))
    }
    /// Processes still running (with their tags).
    async fn processes(&self) -> Result<Vec<ProcessEntry>, SandboxError> {
        Err(SandboxError::Unsupported("listing processes".into()))
    }
    /// Start a process on a pseudo-terminal.
    async fn pty(&self, _req: PtyRequest) -> Result<PtySession, SandboxError> {
        Err(SandboxError::Unsupported(
            "interactive terminals (PTY)".into(),
        ))
    }
}

/// Run a process to completion and collect its output.
pub async fn run(sandbox: &dyn Sandbox, req: ExecRequest) -> Result<Output, SandboxError> {
    use futures::StreamExt;
    let mut stream = sandbox.exec(req).await?;
    let mut out = Output {
        stdout: Vec::new(),
        stderr: Vec::new(),
        status: ExitStatus {
            code: -1,
            status: String::new(),
        },
    };
    let mut exited = false;
    while let Some(ev) = stream.next().await {
        match ev? {
            ExecEvent::Started { .. } => {}
            ExecEvent::Stdout(b) => out.stdout.extend_from_slice(&b),
            ExecEvent::Stderr(b) => out.stderr.extend_from_slice(&b),
            ExecEvent::Exited(s) => {
                out.status = s;
                exited = true;
            }
        }
    }
    if !exited {
        return Err(SandboxError::Protocol(
            "process stream ended without an exit status".into(),
        ));
    }
    Ok(out)
}
