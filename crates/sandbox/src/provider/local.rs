//! The local provider (the embedded default): a sandbox is a directory on this machine served by
//! a detached `rclaude agent` on a random loopback port with a random token.
//!
//! Layout of `$XDG_DATA_HOME/rclaude/sandboxes/<id>/`:
//! `sandbox.json` (identity and metadata), `agent.token` (0600), `agent.json` (pid, port and
//! isolation while running), `agent.groups` (the process groups the agent started, so that a
//! crashed agent's leftovers are killed), `agent.log`, and `root/` — the agent's confinement
//! root, holding `home/` and `workspace/` (the repository). Only `root/` is visible to the
//! sandbox's processes under bubblewrap. Pause stops the agent and its processes (files stay),
//! resume starts it again, kill removes the directory, fork copies `root/` under a new id.
//!
//! Length: one provider's whole lifecycle around one on-disk layout; the agent it starts lives
//! in `agent/`, the envd client in `envd/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    Capabilities, Provider, ProviderError, Sandbox, SandboxInfo, SandboxSpec, SandboxState,
};
use crate::Isolation;
use crate::agent::IsolationReport;
use crate::envd::client::EnvdClient;
use crate::provider::envd_sandbox::EnvdSandbox;

/// How long `resume` waits for a freshly started agent.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(15);

/// `sandbox.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SandboxFile {
    id: String,
    name: String,
    created_at: String,
    metadata: BTreeMap<String, String>,
    isolation: Isolation,
    /// `[sandbox] expose` at creation: host paths the sandbox sees read-only.
    #[serde(default)]
    expose: Vec<String>,
    /// Plain environment for every process ([`SandboxSpec::env`]).
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Egress policy at creation ([`SandboxSpec::network`]).
    #[serde(default)]
    network: crate::network::NetworkPolicy,
}

/// Variables the local provider sets itself; the spec's environment does not override them.
const OWN_VARS: &[&str] = &["PATH", "NPM_CONFIG_PREFIX", "RCLAUDE_SANDBOX_ID"];

/// `agent.json`, written by `rclaude agent --state-file` once it listens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentState {
    pub pid: u32,
    pub port: u16,
    /// The isolation the agent runs its processes with.
    #[serde(default)]
    pub isolation: Option<IsolationReport>,
}

/// Sandboxes on this machine.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    base: PathBuf,
    /// The executable that runs `agent` (default: this one, or `RCLAUDE_AGENT_BIN`).
    agent_bin: Option<PathBuf>,
    answered: Answered,
}

/// How long an agent that answered its health check counts as running without asking again.
const RECHECK_AFTER: Duration = Duration::from_secs(2);

/// Agents that answered their health check in this process, and when: one command asks a
/// provider for `info` and then to `connect`, and checking once saves a connection and a round
/// trip on every command.
#[derive(Clone, Default)]
struct Answered(Arc<std::sync::Mutex<std::collections::HashMap<PathBuf, (Instant, EnvdClient)>>>);

impl std::fmt::Debug for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Answered(..)")
    }
}

impl Answered {
    /// The client that answered within [`RECHECK_AFTER`], while the sandbox's state file still
    /// names the agent it reached: another process (a second server replica, another CLI) may
    /// have stopped or restarted the agent since, and that shows in the file (removed, or a new
    /// port) at the cost of one read.
    fn recent(&self, dir: &Path) -> Option<EnvdClient> {
        let (at, client) = {
            let map = self.0.lock().ok()?;
            map.get(dir).cloned()?
        };
        if at.elapsed() >= RECHECK_AFTER {
            return None;
        }
        let state: AgentState =
            serde_json::from_slice(&std::fs::read(dir.join("agent.json")).ok()?).ok()?;
        (client.base_url() == format!("http://127.0.0.1:{}", state.port)).then_some(client)
    }

    fn record(&self, dir: &Path, client: &EnvdClient) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(dir.to_path_buf(), (Instant::now(), client.clone()));
        }
    }

    fn forget(&self, dir: &Path) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(dir);
        }
    }
}

impl Default for LocalProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalProvider {
    /// Sandboxes under `$XDG_DATA_HOME/rclaude/sandboxes`.
    pub fn new() -> Self {
        LocalProvider {
            base: crate::dirs::data_dir().join("sandboxes"),
            agent_bin: None,
            answered: Answered::default(),
        }
    }

    /// Sandboxes under `base`, their agents run by `agent_bin agent ...` (an `rclaude`
    /// executable): how a server that is not itself `rclaude` hosts local sandboxes.
    pub fn at(base: PathBuf, agent_bin: PathBuf) -> Self {
        LocalProvider {
            base,
            agent_bin: Some(agent_bin),
            answered: Answered::default(),
        }
    }

    fn dir(&self, id: &str) -> Result<PathBuf, ProviderError> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(ProviderError::Config(format!(
                "invalid local sandbox id {id:?}"
            )));
        }
        Ok(self.base.join(id))
    }

    fn read_sandbox(&self, id: &str) -> Result<Option<(PathBuf, SandboxFile)>, ProviderError> {
        let dir = self.dir(id)?;
        match std::fs::read(dir.join("sandbox.json")) {
            Ok(b) => {
                let f = serde_json::from_slice(&b).map_err(|e| {
                    ProviderError::Config(format!("{}: {e}", dir.join("sandbox.json").display()))
                })?;
                Ok(Some((dir, f)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("reading {}", dir.display()), e)),
        }
    }

    /// The running agent of a sandbox, if it answers with our token.
    async fn running_agent(&self, dir: &Path) -> Option<(AgentState, EnvdClient)> {
        let state: AgentState =
            serde_json::from_slice(&std::fs::read(dir.join("agent.json")).ok()?).ok()?;
        let token = std::fs::read_to_string(dir.join("agent.token")).ok()?;
        let client = EnvdClient::new(
            format!("http://127.0.0.1:{}", state.port),
            Some(token.trim().to_string()),
            Default::default(),
        )
        .ok()?;
        client.health().await.ok()?;
        Some((state, client))
    }

    /// A client of the sandbox's running agent: one that answered within [`RECHECK_AFTER`] in
    /// this process, or one that answers now. (Stopping an agent asks it afresh: see
    /// `stop_running_agent`.)
    async fn live_client(&self, dir: &Path) -> Option<EnvdClient> {
        if let Some(client) = self.answered.recent(dir) {
            return Some(client);
        }
        let (_, client) = self.running_agent(dir).await?;
        self.answered.record(dir, &client);
        Some(client)
    }

    /// Start the sandbox's agent as a detached process and wait until it answers.
    async fn start_agent(
        &self,
        dir: &Path,
        file: &SandboxFile,
        copy_npm_settings: bool,
    ) -> Result<EnvdClient, ProviderError> {
        let root = dir.join("root");
        let home = root.join("home");
        let workspace = root.join("workspace");
        let token = std::fs::read_to_string(dir.join("agent.token"))
            .map_err(|e| io_err(format!("reading {}", dir.join("agent.token").display()), e))?;
        let state_file = dir.join("agent.json");
        let _ = std::fs::remove_file(&state_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .map_err(|e| io_err(format!("opening {}", dir.join("agent.log").display()), e))?;
        let exe = match &self.agent_bin {
            Some(p) => p.clone(),
            None => agent_binary()?,
        };
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        let local_bin = home.join(".local/bin");
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("agent")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--root")
            .arg(&root)
            .arg("--home")
            .arg(&home)
            .arg("--workdir")
            .arg(&workspace)
            .arg("--token-file")
            .arg(dir.join("agent.token"))
            .arg("--state-file")
            .arg(&state_file)
            .arg("--groups-file")
            .arg(dir.join("agent.groups"))
            .arg("--isolation")
            .arg(isolation_arg(file.isolation))
            .args(
                (!file.network.is_open())
                    .then(|| {
                        [
                            "--network".to_string(),
                            serde_json::to_string(&file.network).unwrap_or_default(),
                        ]
                    })
                    .into_iter()
                    .flatten(),
            )
            .args(
                file.env
                    .iter()
                    .filter(|(k, _)| !OWN_VARS.contains(&k.as_str()))
                    .flat_map(|(k, v)| ["--env".to_string(), format!("{k}={v}")]),
            )
            .arg("--env")
            .arg(format!("PATH={}:{path}", local_bin.display()))
            .arg("--env")
            .arg(format!(
                "NPM_CONFIG_PREFIX={}",
                home.join(".local").display()
            ))
            .arg("--env")
            .arg(format!("RCLAUDE_SANDBOX_ID={}", file.id))
            .args(toolchain_args(&file.expose))
            .args(copy_npm_settings.then_some("--copy-npm-settings"))
            .env_remove("RCLAUDE_AGENT_TOKEN")
            .stdin(std::process::Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| io_err("duplicating log handle", e))?,
            )
            .stderr(log);
        crate::host::detach(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| io_err(format!("starting {} agent", exe.display()), e))?;
        let deadline = Instant::now() + AGENT_START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let tail = log_tail(&dir.join("agent.log"));
                return Err(ProviderError::Sandbox(
                    crate::provider::SandboxError::Unreachable {
                        url: format!("local sandbox {}", file.id),
                        reason: format!(
                            "the agent exited at start ({status}); its log ends with:\n{tail}"
                        ),
                    },
                ));
            }
            if let Ok(bytes) = std::fs::read(&state_file)
                && let Ok(state) = serde_json::from_slice::<AgentState>(&bytes)
            {
                let client = EnvdClient::new(
                    format!("http://127.0.0.1:{}", state.port),
                    Some(token.trim().to_string()),
                    Default::default(),
                )?;
                if client.health().await.is_ok() {
                    // The agent is detached: let it outlive us without leaving a zombie behind.
                    std::thread::spawn(move || {
                        let _ = child.wait();
                    });
                    return Ok(client);
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(ProviderError::Sandbox(
                    crate::provider::SandboxError::Timeout(format!(
                        "the local agent for sandbox {} did not start within {}s (log: {})",
                        file.id,
                        AGENT_START_TIMEOUT.as_secs(),
                        dir.join("agent.log").display()
                    )),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The isolation of a sandbox's processes: what its running agent reports, or what its
    /// agent would get on this machine when it starts.
    pub async fn isolation(&self, id: &str) -> Result<Option<IsolationReport>, ProviderError> {
        let Some((dir, file)) = self.read_sandbox(id)? else {
            return Ok(None);
        };
        if let Some((state, _)) = self.running_agent(&dir).await
            && let Some(report) = state.isolation
        {
            return Ok(Some(report));
        }
        let isolation = file.isolation;
        Ok(
            tokio::task::spawn_blocking(move || crate::agent::isolation_report(isolation))
                .await
                .ok(),
        )
    }

    fn info_from(&self, dir: &Path, file: &SandboxFile, running: bool) -> SandboxInfo {
        SandboxInfo {
            id: file.id.clone(),
            provider: "local".into(),
            state: if running {
                SandboxState::Running
            } else {
                SandboxState::Paused
            },
            workdir: dir.join("root/workspace").to_string_lossy().into_owned(),
            metadata: file.metadata.clone(),
            started_at: Some(file.created_at.clone()),
            end_at: None,
        }
    }

    /// Stop the agent (it kills its processes on SIGTERM); SIGKILL after a grace period. Then
    /// kill whatever a crashed (or SIGKILLed) agent left running.
    async fn stop_agent(&self, dir: &Path) {
        self.answered.forget(dir);
        self.stop_running_agent(dir).await;
        let killed = crate::agent::reap_leftovers(&dir.join("agent.groups"));
        if killed > 0 {
            tracing::info!(
                "killed {killed} process(es) left running by the stopped agent of {}",
                dir.display()
            );
        }
    }

    async fn stop_running_agent(&self, dir: &Path) {
        let Ok(bytes) = std::fs::read(dir.join("agent.json")) else {
            return;
        };
        let Ok(state) = serde_json::from_slice::<AgentState>(&bytes) else {
            return;
        };
        if self.running_agent(dir).await.is_none() {
            let _ = std::fs::remove_file(dir.join("agent.json"));
            return;
        }
        let pid = state.pid as libc::pid_t;
        // The agent answered just now, so `pid` is still it: hold it by a pidfd from here on, so
        // that no signal can reach another process should the number be reused (pid_max may be
        // as low as 32768, and busy machines wrap it in seconds).
        let Some(agent) = PidFd::open(pid) else {
            return;
        };
        agent.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && agent.alive() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if agent.alive() {
            agent.signal(libc::SIGKILL);
        }
        let _ = std::fs::remove_file(dir.join("agent.json"));
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
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
        check_network(spec)?;
        let id = format!("local-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let dir = self.dir(&id)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| io_err(format!("creating {}", dir.display()), e))?;
        // On btrfs the root is a subvolume, so that forking it is a snapshot.
        super::subvolume::create(&dir.join("root")).await;
        for sub in ["root/home", "root/workspace"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| io_err(format!("creating {}", dir.join(sub).display()), e))?;
        }
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        write_private(&dir.join("agent.token"), token.as_bytes())?;
        let file = SandboxFile {
            id: id.clone(),
            name: spec.name.clone(),
            created_at: crate::time::now_rfc3339(),
            metadata: spec.metadata.clone(),
            isolation: spec.isolation,
            expose: spec.expose.clone(),
            env: spec.env.clone(),
            network: spec.network.clone(),
        };
        let json =
            serde_json::to_vec_pretty(&file).map_err(|e| ProviderError::Config(e.to_string()))?;
        std::fs::write(dir.join("sandbox.json"), json)
            .map_err(|e| io_err(format!("writing {}", dir.display()), e))?;
        // The new sandbox's agent copies the host's npm settings in while the first sync runs.
        if let Err(e) = self.start_agent(&dir, &file, true).await {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(self.info_from(&dir, &file, true))
    }

    fn can_fork(&self) -> bool {
        true
    }

    /// A copy of the source's `root/` (a btrfs snapshot when it is a subvolume, else `cp
    /// --reflink=auto`: copy-on-write where the file system can), under a new id, with its own agent and token. The copy lives at another
    /// host path, so absolute paths inside it (a Python venv's, say) still name the source's.
    async fn fork(&self, source: &str, spec: &SandboxSpec) -> Result<SandboxInfo, ProviderError> {
        let (src_dir, src_file) = self
            .read_sandbox(source)?
            .ok_or_else(|| ProviderError::NotFound(source.to_string()))?;
        let id = format!("local-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let dir = self.dir(&id)?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| io_err(format!("creating {}", dir.display()), e))?;
        let from = src_dir.join("root");
        let to = dir.join("root");
        if !super::subvolume::snapshot(&from, &to).await {
            copy_root(&from, &to, &dir).await?;
        }
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        write_private(&dir.join("agent.token"), token.as_bytes())?;
        let mut metadata = src_file.metadata.clone();
        metadata.extend(spec.metadata.clone());
        let file = SandboxFile {
            id: id.clone(),
            name: spec.name.clone(),
            created_at: crate::time::now_rfc3339(),
            metadata,
            ..src_file
        };
        let json =
            serde_json::to_vec_pretty(&file).map_err(|e| ProviderError::Config(e.to_string()))?;
        std::fs::write(dir.join("sandbox.json"), json)
            .map_err(|e| io_err(format!("writing {}", dir.display()), e))?;
        if let Err(e) = self.start_agent(&dir, &file, false).await {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(self.info_from(&dir, &file, true))
    }

    async fn connect(&self, id: &str) -> Result<Arc<dyn Sandbox>, ProviderError> {
        let (dir, file) = self
            .read_sandbox(id)?
            .ok_or_else(|| ProviderError::NotFound(id.to_string()))?;
        let client = match self.live_client(&dir).await {
            Some(client) => client,
            None => {
                let client = self.start_agent(&dir, &file, false).await?;
                self.answered.record(&dir, &client);
                client
            }
        };
        let workdir = dir.join("root/workspace").to_string_lossy().into_owned();
        Ok(Arc::new(
            EnvdSandbox::new(client, id.to_string(), workdir, false).rclaude_agent(),
        ))
    }

    async fn info(&self, id: &str) -> Result<Option<SandboxInfo>, ProviderError> {
        let Some((dir, file)) = self.read_sandbox(id)? else {
            return Ok(None);
        };
        let running = self.live_client(&dir).await.is_some();
        Ok(Some(self.info_from(&dir, &file, running)))
    }

    async fn pause(&self, id: &str) -> Result<(), ProviderError> {
        let (dir, _) = self
            .read_sandbox(id)?
            .ok_or_else(|| ProviderError::NotFound(id.to_string()))?;
        self.stop_agent(&dir).await;
        Ok(())
    }

    async fn kill(&self, id: &str) -> Result<(), ProviderError> {
        let Some((dir, _)) = self.read_sandbox(id)? else {
            return Err(ProviderError::NotFound(id.to_string()));
        };
        self.stop_agent(&dir).await;
        make_removable(&dir);
        std::fs::remove_dir_all(&dir)
            .map_err(|e| io_err(format!("removing {}", dir.display()), e))?;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<SandboxInfo>, ProviderError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.base) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(format!("listing {}", self.base.display()), e)),
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if let Ok(Some(info)) = self.info(&id).await {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        Ok(out)
    }
}

/// `--expose` and `--env` arguments for the agent: the paths of `[sandbox] expose` (`~/`
/// expanded), and the Rust toolchain when rustup is installed in the user's home — toolchains
/// only (`~/.rustup`, `~/.cargo/bin`), never `~/.cargo` itself, which holds registry tokens.
fn toolchain_args(expose: &[String]) -> Vec<String> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let expand = |p: &str| -> Option<PathBuf> {
        match p.strip_prefix("~/") {
            Some(rest) => home.as_ref().map(|h| h.join(rest)),
            None => Some(PathBuf::from(p)),
        }
    };
    let mut args = Vec::new();
    let mut push = |p: &Path| {
        args.push("--expose".to_string());
        args.push(p.display().to_string());
    };
    let rustup = std::env::var_os("RUSTUP_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".rustup")));
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".cargo")))
        .map(|c| c.join("bin"));
    let mut rustup_env = None;
    if let Some(r) = rustup.filter(|r| r.is_dir()) {
        push(&r);
        rustup_env = Some(format!("RUSTUP_HOME={}", r.display()));
    }
    if let Some(b) = cargo_bin.filter(|b| b.is_dir()) {
        push(&b);
    }
    for p in expose.iter().filter_map(|p| expand(p)) {
        push(&p);
    }
    if let Some(e) = rustup_env {
        args.push("--env".into());
        args.push(e);
    }
    args
}

fn isolation_arg(i: Isolation) -> &'static str {
    match i {
        Isolation::Auto => "auto",
        Isolation::Bwrap => "bwrap",
        Isolation::None => "none",
    }
}

/// The binary that runs `agent`: this executable, or `RCLAUDE_AGENT_BIN`.
fn agent_binary() -> Result<PathBuf, ProviderError> {
    if let Some(p) = std::env::var_os("RCLAUDE_AGENT_BIN") {
        return Ok(PathBuf::from(p));
    }
    std::env::current_exe().map_err(|e| io_err("locating the rclaude executable", e))
}

/// A restricted `[network]` needs the sandbox's own network namespace: bubblewrap. Refused here
/// rather than run open.
fn check_network(spec: &SandboxSpec) -> Result<(), ProviderError> {
    if spec.network.is_open() {
        return Ok(());
    }
    if spec.isolation == Isolation::None {
        return Err(ProviderError::Config(
            "[network] restrictions need isolation = \"bwrap\" on the local provider (the sandbox gets its own network namespace): set [sandbox] isolation, or remove [network]".into(),
        ));
    }
    Ok(())
}

/// Whether `pid` is a zombie (exited, not yet reaped by its parent).
fn is_zombie(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ProviderError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .map_err(|e| io_err(format!("writing {}", path.display()), e))
}

/// Read-only directories (e.g. Go's module cache) would stop `remove_dir_all`.
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

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

fn io_err(context: impl Into<String>, e: std::io::Error) -> ProviderError {
    ProviderError::Sandbox(crate::provider::SandboxError::io(context, e))
}

/// A process held by a pidfd: signals reach it or nobody, never a process that reused its id.
struct PidFd(std::os::fd::OwnedFd, libc::pid_t);

impl PidFd {
    fn open(pid: libc::pid_t) -> Option<PidFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a non-negative result is a descriptor we now own.
        (fd >= 0).then(|| PidFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }, pid))
    }

    /// Send `sig` (0: only check); whether it was delivered (false once the process is gone).
    fn signal(&self, sig: libc::c_int) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: pidfd_send_signal(2) on our descriptor, with no siginfo.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            ) == 0
        }
    }

    /// Running (a zombie counts as gone). While a signal still reaches it, the process has not
    /// been reaped, so its id still names it and `/proc/PID` is its own.
    fn alive(&self) -> bool {
        self.signal(0) && !is_zombie(self.1)
    }
}

/// Copy a sandbox's `root/` for a fork (`cp -a --reflink=auto`); on failure `dir` (the new
/// sandbox's) is removed.
async fn copy_root(from: &Path, to: &Path, dir: &Path) -> Result<(), ProviderError> {
    let copied = tokio::process::Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(from)
        .arg(to)
        .output()
        .await
        .map_err(|e| io_err("running cp".to_string(), e))?;
    if !copied.status.success() {
        let _ = std::fs::remove_dir_all(dir);
        return Err(ProviderError::Config(format!(
            "copying {} to {} failed: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&copied.stderr).trim()
        )));
    }
    Ok(())
}
