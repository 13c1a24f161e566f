//! The shape of `.rclaude.toml`: plain serde types, also the source of the JSON Schema.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::duration::HumanDuration;

/// A whole `.rclaude.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "rclaude configuration (.rclaude.toml)")]
pub struct Config {
    /// The sandbox this repository runs in.
    #[serde(default)]
    pub sandbox: SandboxConfig,
    /// Plain environment variables for every command in the sandbox (committed, not secret).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secrets by name: values are read from the local environment when needed, never stored.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSpec>,
    /// Commands run once per sandbox, and again when these lines change.
    #[serde(default)]
    pub setup: CommandList,
    /// Commands run on every `up` and `resume`.
    #[serde(default)]
    pub start: CommandList,
    /// What the git-bundle and live sync copy.
    #[serde(default)]
    pub sync: SyncConfig,
    /// Named tasks for `rclaude run NAME`.
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskConfig>,
    /// Git hook name → tasks run remotely by that hook (`rclaude hooks install`).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Vec<String>>")]
    pub hooks: BTreeMap<String, Vec<Spanned<String>>>,
    /// Claude Code in the sandbox.
    #[serde(default)]
    pub claude: ClaudeConfig,
}

/// Which cloud runs the sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// A directory on this machine served by `rclaude agent` (the default).
    #[default]
    Local,
    /// E2B cloud sandboxes (`E2B_API_KEY`).
    E2b,
    /// Daytona sandboxes (`DAYTONA_API_KEY`).
    Daytona,
    /// Northflank services (`NORTHFLANK_API_TOKEN`).
    Northflank,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::E2b => "e2b",
            ProviderKind::Daytona => "daytona",
            ProviderKind::Northflank => "northflank",
        }
    }
}

/// Local provider process isolation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// bubblewrap when installed, otherwise none (with a notice).
    #[default]
    Auto,
    /// Require bubblewrap: the host is read-only except the sandbox directory.
    Bwrap,
    /// Plain processes on the host.
    None,
}

/// `[sandbox]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// `local` (default), `e2b`, `daytona` or `northflank`.
    #[serde(default)]
    pub provider: ProviderKind,
    /// Template (E2B) or image (Daytona, Northflank) name.
    #[serde(default)]
    pub image: Option<String>,
    /// vCPUs, where the provider lets you choose.
    #[serde(default)]
    pub cpu: Option<u32>,
    /// Memory in MiB, where the provider lets you choose.
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// Idle lifetime before the sandbox is paused (e.g. "30m", "1h").
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Pause instead of destroying the sandbox when `timeout` elapses.
    #[serde(default = "default_true")]
    pub auto_pause: bool,
    /// Absolute path of the repository inside the sandbox (the local provider uses its own).
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// Local provider: `auto`, `bwrap` or `none`.
    #[serde(default)]
    pub isolation: Isolation,
    /// Northflank project id.
    #[serde(default)]
    pub project: Option<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            provider: ProviderKind::Local,
            image: None,
            cpu: None,
            memory_mb: None,
            timeout: default_timeout(),
            auto_pause: true,
            workdir: default_workdir(),
            isolation: Isolation::Auto,
            project: None,
        }
    }
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(3600)
}
fn default_true() -> bool {
    true
}
fn default_workdir() -> String {
    "/home/user/repo".to_string()
}

/// A secret: `NAME = "LOCAL_VAR"` or `NAME = { from_env = "LOCAL_VAR", required = false }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretSpec {
    /// Local environment variable holding the value.
    pub from_env: String,
    /// Fail when the variable is unset (default true).
    #[serde(default = "default_true")]
    pub required: bool,
}

/// `run = "cmd"` or `run = ["cmd1", "cmd2"]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandList {
    /// Shell command lines, run in order; the first failure stops.
    #[serde(default)]
    pub run: StringOrList,
}

/// One string or a list of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
    #[default]
    #[serde(skip)]
    Empty,
}

impl StringOrList {
    /// The lines as a list.
    pub fn lines(&self) -> Vec<String> {
        match self {
            StringOrList::One(s) => vec![s.clone()],
            StringOrList::Many(v) => v.clone(),
            StringOrList::Empty => Vec::new(),
        }
    }
}

/// `[sync]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// gitignore-style patterns never synced, on top of `.gitignore`.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// `rclaude up` keeps live-syncing (like `up --watch`).
    #[serde(default)]
    pub watch: bool,
    /// Local branch `rclaude pull` writes; `{branch}` and `{session}` are replaced.
    #[serde(default = "default_pull_branch")]
    pub pull_branch: String,
    /// Live sync halts when one cycle would delete more than this share of the files (percent).
    #[serde(default = "default_max_delete_percent")]
    pub max_delete_percent: u8,
    /// ...but only for trees with more than this many files.
    #[serde(default = "default_max_delete_min_files")]
    pub max_delete_min_files: u32,
    /// Sync submodules' work trees too (default: record them only).
    #[serde(default)]
    pub submodules: bool,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            ignore: Vec::new(),
            watch: false,
            pull_branch: default_pull_branch(),
            max_delete_percent: default_max_delete_percent(),
            max_delete_min_files: default_max_delete_min_files(),
            submodules: false,
        }
    }
}

fn default_pull_branch() -> String {
    "rclaude/{branch}".to_string()
}
fn default_max_delete_percent() -> u8 {
    50
}
fn default_max_delete_min_files() -> u32 {
    20
}

/// `[tasks.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    /// Shell command line(s), run in order in the sandbox.
    pub run: StringOrList,
    /// One-line description shown by `rclaude run`.
    #[serde(default)]
    pub description: Option<String>,
    /// Tasks run first (each once per `rclaude run`).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub depends: Vec<Spanned<String>>,
    /// Extra environment for this task.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory relative to the repository root.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Kill the task after this long (e.g. "10m").
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
}

/// `[claude]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaudeConfig {
    /// `@anthropic-ai/claude-code` version installed when `claude` is missing ("latest" by default).
    #[serde(default)]
    pub version: Option<String>,
    /// Claude Code permission mode; the sandbox is the safety boundary.
    #[serde(default = "default_permission_mode")]
    pub permission_mode: String,
    /// Model passed with `--model`.
    #[serde(default)]
    pub model: Option<String>,
    /// Extra arguments for `claude`.
    #[serde(default)]
    pub args: Vec<String>,
}

impl Default for ClaudeConfig {
    fn default() -> Self {
        ClaudeConfig {
            version: None,
            permission_mode: default_permission_mode(),
            model: None,
            args: Vec::new(),
        }
    }
}

fn default_permission_mode() -> String {
    "bypassPermissions".to_string()
}
