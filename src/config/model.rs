//! The shape of `.rclaude.toml`: plain serde types, also the source of the JSON Schema.

use std::collections::BTreeMap;

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
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
    #[schemars(schema_with = "crate::config::schema::env_map_schema")]
    pub env: BTreeMap<String, String>,
    /// Secrets by name: values are read from the local environment when needed, never stored.
    #[serde(default)]
    #[schemars(schema_with = "crate::config::schema::secrets_schema")]
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
    /// Named tasks for `rclaude run NAME` (names: letters, digits, `_`, `.`, `-`).
    #[serde(default)]
    #[schemars(schema_with = "crate::config::schema::tasks_schema")]
    pub tasks: BTreeMap<String, TaskConfig>,
    /// Git hook name → tasks run remotely by that hook (`rclaude hooks install`).
    #[serde(default)]
    #[schemars(schema_with = "crate::config::schema::hooks_schema")]
    pub hooks: BTreeMap<String, Vec<Spanned<String>>>,
    /// Claude Code in the sandbox.
    #[serde(default)]
    pub claude: ClaudeConfig,
    /// The upstream repository work is delivered to (`rclaude pr`).
    #[serde(default)]
    pub git: GitConfig,
    /// Ports the sandbox serves (`rclaude port`, `rclaude open`): port number → label, or
    /// `{ label = "web", public = false }`.
    #[serde(default)]
    #[schemars(schema_with = "crate::config::schema::ports_schema")]
    pub ports: BTreeMap<String, PortSpec>,
    /// Where the sandbox may connect to. Enforced, never advisory: a provider that cannot
    /// enforce it refuses to create the sandbox.
    #[serde(default)]
    pub network: NetworkConfig,
    /// Checkpoints of the sandbox's work (taken at `pause`, after `run` and Claude Code runs).
    #[serde(default)]
    pub checkpoints: CheckpointsConfig,
}

/// `[checkpoints]`: how many copies of a session's work are kept.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointsConfig {
    /// Checkpoints kept per session, on this machine and on the server (1 to 1000; a server
    /// may keep fewer).
    #[serde(
        default = "default_checkpoints_keep",
        deserialize_with = "deserialize_keep"
    )]
    #[schemars(range(min = 1, max = 1000))]
    pub keep: u32,
}

impl Default for CheckpointsConfig {
    fn default() -> Self {
        CheckpointsConfig {
            keep: default_checkpoints_keep(),
        }
    }
}

fn default_checkpoints_keep() -> u32 {
    crate::gitsync::checkpoint::KEEP as u32
}

fn deserialize_keep<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number of checkpoints from 1 to 1000")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            match u32::try_from(v) {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err(E::custom(format!(
                    "{v} is out of range: keep from 1 to 1000 checkpoints"
                ))),
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
        }
    }
    d.deserialize_u32(V)
}

/// `[network]`: the sandbox's egress policy.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// The only destinations the sandbox may connect to: host names (`registry.npmjs.org`),
    /// subdomains (`*.github.com`), IP addresses, CIDR blocks. Empty (the default): anywhere.
    /// Claude Code's API host is added for Claude Code runs.
    #[serde(default)]
    pub allow: Vec<String>,
    /// No connection leaves the sandbox at all.
    #[serde(default)]
    pub deny_all: bool,
}

impl NetworkConfig {
    /// The policy this table asks for (after validation, every rule parses).
    pub fn policy(&self) -> crate::network::NetworkPolicy {
        use crate::network::{NetworkPolicy, Rule};
        if self.deny_all {
            return NetworkPolicy::deny_all();
        }
        if self.allow.is_empty() {
            return NetworkPolicy::Open;
        }
        NetworkPolicy::Restricted {
            allow: self
                .allow
                .iter()
                .filter_map(|r| Rule::parse(r).ok())
                .collect(),
        }
    }
}

/// A port in `[ports]`: `3000 = "web"` or `3000 = { label = "web", public = true }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum PortSpec {
    /// Just a label.
    Label(String),
    /// A label and whether the provider may serve it without the sandbox's access token.
    Full {
        #[serde(default)]
        label: Option<String>,
        #[serde(default)]
        public: bool,
    },
}

impl PortSpec {
    /// The port's label, if any.
    pub fn label(&self) -> Option<&str> {
        match self {
            PortSpec::Label(l) => Some(l),
            PortSpec::Full { label, .. } => label.as_deref(),
        }
    }

    /// Served without the sandbox's traffic token (providers that have one).
    pub fn public(&self) -> bool {
        matches!(self, PortSpec::Full { public: true, .. })
    }
}

/// `[git]`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    /// The local repository's remote that is the upstream (its URL is where `rclaude pr`
    /// pushes from the sandbox).
    #[serde(default = "default_git_remote")]
    pub remote: String,
    /// Name of the local environment variable holding the token for the upstream (push, and
    /// the pull-request API). Handed to git in the sandbox through a credential helper's
    /// environment, never written to a file there.
    #[serde(default = "default_token_secret")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub token_secret: String,
    /// On the first sync into a new sandbox, let the sandbox fetch the history the upstream
    /// already has from the upstream itself, so only what it lacks is sent from here (falls
    /// back to sending everything when the sandbox cannot reach it within a few seconds).
    #[serde(default = "default_true")]
    pub fetch_upstream: bool,
}

impl Default for GitConfig {
    fn default() -> Self {
        GitConfig {
            remote: default_git_remote(),
            token_secret: default_token_secret(),
            fetch_upstream: true,
        }
    }
}

fn default_git_remote() -> String {
    "origin".to_string()
}

fn default_token_secret() -> String {
    "GITHUB_TOKEN".to_string()
}

pub use rclaude_sandbox::{Isolation, ProviderKind};

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
    #[schemars(range(min = 1))]
    pub cpu: Option<u32>,
    /// Memory in MiB, where the provider lets you choose.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub memory_mb: Option<u32>,
    /// Idle lifetime before the sandbox is paused (e.g. "30m", "1h").
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Pause instead of destroying the sandbox when `timeout` elapses.
    #[serde(default = "default_true")]
    pub auto_pause: bool,
    /// Sessions the server manages: pause after this long without activity (sync, exec, a
    /// task, an open shell, a Claude Code run), 1m to 7d (default: the server's, 15 minutes
    /// unless its operator changed it).
    #[serde(default)]
    pub idle_pause: Option<HumanDuration>,
    /// Absolute path of the repository inside the sandbox (the local provider uses its own).
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// Local provider: `auto`, `bwrap` or `none`.
    #[serde(default)]
    pub isolation: Isolation,
    /// Local provider with bubblewrap: host paths the sandbox sees read-only besides the system
    /// directories (absolute, or `~/...` in your home), e.g. a toolchain such as `~/.nvm`.
    /// Read when the sandbox is created.
    #[serde(default)]
    pub expose: Vec<String>,
    /// Northflank project id. May be left out here and given as `NORTHFLANK_PROJECT_ID` instead:
    /// the Northflank provider checks that one of the two is set.
    #[serde(default)]
    pub project: Option<String>,
    /// Let the rclaude server you are logged in to create and run the sandbox (its provider,
    /// its account: no provider key here); `provider` and its settings are then the server's.
    /// Unset: managed when you are logged in to a server that offers it (`rclaude up --direct`
    /// or `RCLAUDE_DIRECT=1` opts out once); `false`: always your own provider.
    #[serde(default)]
    pub managed: Option<bool>,
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
            idle_pause: None,
            workdir: default_workdir(),
            isolation: Isolation::Auto,
            expose: Vec::new(),
            project: None,
            managed: None,
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

/// A secret: `NAME = "LOCAL_VAR"` or
/// `NAME = { from_env = "LOCAL_VAR", required = false, phase = "setup" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretSpec {
    /// Local environment variable holding the value.
    pub from_env: String,
    /// Fail when the variable is unset (default true).
    pub required: bool,
    /// Which sandbox processes get it (default: all).
    pub phase: SecretPhase,
}

/// Which sandbox processes a secret reaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretPhase {
    /// `[setup]` commands only (e.g. a registry token to install dependencies).
    Setup,
    /// Tasks, `exec`, `shell`, `[start]` and Claude Code, never `[setup]`.
    Run,
    /// Every process.
    #[default]
    All,
}

impl SecretPhase {
    /// Whether a secret of this phase goes to processes of phase `to` (`Setup` or `Run`).
    pub fn reaches(self, to: SecretPhase) -> bool {
        self == SecretPhase::All || self == to
    }
}

impl<'de> Deserialize<'de> for SecretSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const FIELDS: &[&str] = &["from_env", "required", "phase"];
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = SecretSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a local environment variable name (\"LOCAL_VAR\") or a table \
                     { from_env = \"LOCAL_VAR\", required = false }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretSpec, E> {
                Ok(SecretSpec {
                    from_env: v.to_string(),
                    required: true,
                    phase: SecretPhase::All,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<SecretSpec, A::Error> {
                let mut from_env: Option<String> = None;
                let mut required: Option<bool> = None;
                let mut phase: Option<SecretPhase> = None;
                while let Some(key) = map.next_key::<SecretField>()? {
                    match key {
                        SecretField::FromEnv if from_env.is_none() => {
                            from_env = Some(map.next_value()?)
                        }
                        SecretField::Required if required.is_none() => {
                            required = Some(map.next_value()?)
                        }
                        SecretField::Phase if phase.is_none() => phase = Some(map.next_value()?),
                        SecretField::Phase => return Err(de::Error::duplicate_field("phase")),
                        SecretField::FromEnv => return Err(de::Error::duplicate_field("from_env")),
                        SecretField::Required => {
                            return Err(de::Error::duplicate_field("required"));
                        }
                    }
                }
                Ok(SecretSpec {
                    from_env: from_env.ok_or_else(|| de::Error::missing_field("from_env"))?,
                    required: required.unwrap_or(true),
                    phase: phase.unwrap_or_default(),
                })
            }
        }
        enum SecretField {
            FromEnv,
            Required,
            Phase,
        }
        impl<'de> Deserialize<'de> for SecretField {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct K;
                impl de::Visitor<'_> for K {
                    type Value = SecretField;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("`from_env`, `required` or `phase`")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretField, E> {
                        match v {
                            "from_env" => Ok(SecretField::FromEnv),
                            "required" => Ok(SecretField::Required),
                            "phase" => Ok(SecretField::Phase),
                            _ => Err(E::unknown_field(v, FIELDS)),
                        }
                    }
                }
                d.deserialize_identifier(K)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for SecretSpec {
    fn schema_name() -> Cow<'static, str> {
        "SecretSpec".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A secret: the name of the local environment variable holding its value (\"LOCAL_VAR\"), or a table { from_env = \"LOCAL_VAR\", required = false, phase = \"setup\" }. Values are read when needed, never stored, and redacted from everything rclaude shows or sends.",
            "anyOf": [
                { "type": "string", "pattern": ENV_NAME_PATTERN },
                {
                    "type": "object",
                    "properties": {
                        "from_env": {
                            "description": "Local environment variable holding the value.",
                            "type": "string",
                            "pattern": ENV_NAME_PATTERN
                        },
                        "required": {
                            "description": "Fail when the variable is unset (default true); when false a missing variable is skipped.",
                            "type": "boolean",
                            "default": true
                        },
                        "phase": {
                            "description": "Which sandbox processes get it: \"setup\" ([setup] commands only), \"run\" (tasks, exec, shell, [start], Claude Code; never [setup]) or \"all\" (default).",
                            "enum": ["setup", "run", "all"],
                            "default": "all"
                        }
                    },
                    "required": ["from_env"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// Environment variable names: `[A-Za-z_][A-Za-z0-9_]*`.
pub const ENV_NAME_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]*$";
/// Task names: `[A-Za-z0-9_.-]+`.
pub const TASK_NAME_PATTERN: &str = "^[A-Za-z0-9_.-]+$";

/// `run = "cmd"` or `run = ["cmd1", "cmd2"]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandList {
    /// Shell command lines, run in order; the first failure stops.
    #[serde(default)]
    pub run: StringOrList,
}

/// One string or a list of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StringOrList {
    /// `run = "cmd"`.
    One(String),
    /// `run = ["cmd1", "cmd2"]`.
    Many(Vec<String>),
    /// Not given.
    #[default]
    Empty,
}

impl Serialize for StringOrList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            StringOrList::One(v) => s.serialize_str(v),
            StringOrList::Many(v) => v.serialize(s),
            StringOrList::Empty => s.collect_seq(std::iter::empty::<&str>()),
        }
    }
}

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = StringOrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string or an array of command strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringOrList, E> {
                Ok(StringOrList::One(v.to_string()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StringOrList, A::Error> {
                let mut out = Vec::new();
                while let Some(line) = seq.next_element::<CommandLine>()? {
                    out.push(line.0);
                }
                Ok(StringOrList::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One element of a command array (only for its error message).
struct CommandLine(String);

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = CommandLine;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CommandLine, E> {
                Ok(CommandLine(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

impl JsonSchema for StringOrList {
    fn schema_name() -> Cow<'static, str> {
        "StringOrList".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A shell command line, or an array of them run in order (the first failure stops).",
            "anyOf": [
                { "type": "string" },
                { "type": "array", "items": { "type": "string" } }
            ]
        })
    }
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
    /// Live sync halts when one cycle would delete more than this share of the files (percent,
    /// 1 to 100).
    #[serde(
        default = "default_max_delete_percent",
        deserialize_with = "deserialize_percent"
    )]
    #[schemars(with = "u8", range(min = 1, max = 100))]
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
/// A percentage from 1 to 100 (a plain `u8` would accept 0..=255 with a confusing message).
fn deserialize_percent<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = u8;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a percentage from 1 to 100")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u8, E> {
            match u8::try_from(v) {
                Ok(p) if (1..=100).contains(&p) => Ok(p),
                _ => Err(E::custom(format!(
                    "{v} is out of range: use a percentage from 1 to 100"
                ))),
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u8, E> {
            self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
        }
    }
    d.deserialize_u8(V)
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
    /// Shell command line(s), run in order in the sandbox (required, not empty).
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
    #[schemars(schema_with = "crate::config::schema::env_map_schema")]
    pub env: BTreeMap<String, String>,
    /// Working directory relative to the repository root (no `..`, not absolute).
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
    /// `@anthropic-ai/claude-code` version to install (default: the pinned, tested 2.1.197; "latest" follows npm).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_or_list_serializes_every_form() {
        let v = |s: StringOrList| serde_json::to_value(s).unwrap();
        assert_eq!(v(StringOrList::One("a".into())), "a");
        assert_eq!(
            v(StringOrList::Many(vec!["a".into()])),
            serde_json::json!(["a"])
        );
        assert_eq!(v(StringOrList::Empty), serde_json::json!([]));
    }
}
