//! The tools' inputs: JSON Schemas for clients, checked at the boundary (unknown fields,
//! empty strings, ranges) before anything runs.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

/// Longest wait a call may ask for (a day).
const MAX_TIMEOUT_SECS: u64 = 86_400;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSessions {
    /// The repository checkout whose provider is listed (default: the server's directory).
    pub repo: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// The repository checkout (absolute, or relative to the directory `rclaude mcp` runs in;
    /// default: that directory).
    pub repo: Option<String>,
    /// A named session of the repository, or a session id from `start_session` with a `url`.
    /// Default: the repository's own session.
    pub session: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSession {
    /// The repository checkout to bring up (default: the server's directory). Ignored with `url`.
    pub repo: Option<String>,
    /// Start from a repository URL instead (`github.com/owner/repo`, https or ssh; `@REF` picks
    /// a branch, tag or commit): the sandbox clones it itself.
    pub url: Option<String>,
    /// Session name: a named session of `repo` (created if new), or the name shown for a `url`.
    pub session: Option<String>,
    /// Skip the `[setup]` commands (only for an existing checkout).
    #[serde(default)]
    pub no_setup: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunTask {
    /// The repository checkout (absolute, or relative to the directory `rclaude mcp` runs in;
    /// default: that directory).
    pub repo: Option<String>,
    /// A named session of the repository (several run side by side), or a session id from
    /// `start_session` with a `url`. Default: the repository's own session.
    pub session: Option<String>,
    /// The task from `.rclaude.toml` (its dependencies run first).
    pub task: String,
    /// Extra arguments appended to the task's command.
    #[serde(default)]
    pub args: Vec<String>,
    /// Sync the work tree first (default true).
    #[serde(default = "yes")]
    pub sync: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// The repository checkout (absolute, or relative to the directory `rclaude mcp` runs in;
    /// default: that directory).
    pub repo: Option<String>,
    /// A named session of the repository (several run side by side), or a session id from
    /// `start_session` with a `url`. Default: the repository's own session.
    pub session: Option<String>,
    /// The command and its arguments, run without a shell (use `["sh", "-c", "..."]` for one).
    pub command: Vec<String>,
    /// Working directory in the sandbox (default: the repository's root there).
    pub cwd: Option<String>,
    /// Extra environment variables for this command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Stop the command after this many seconds (exit code 124).
    pub timeout_secs: Option<u64>,
    /// Sync the work tree first (default true).
    #[serde(default = "yes")]
    pub sync: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaudeRun {
    /// The repository checkout (absolute, or relative to the directory `rclaude mcp` runs in;
    /// default: that directory).
    pub repo: Option<String>,
    /// A named session of the repository (several run side by side), or a session id from
    /// `start_session` with a `url`. Default: the repository's own session.
    pub session: Option<String>,
    /// What Claude Code should do.
    pub prompt: String,
    /// Wait for the run to end and return its result (default true); false returns the run id
    /// at once (`wait_run` later).
    #[serde(default = "yes")]
    pub wait: bool,
    /// With `wait`: give up waiting after this many seconds (the run goes on).
    pub timeout_secs: Option<u64>,
    /// Continue the session's last Claude Code conversation.
    #[serde(default)]
    pub continue_conversation: bool,
    /// Model for this run (default: `[claude] model`).
    pub model: Option<String>,
    /// Sync the work tree first (default true).
    #[serde(default = "yes")]
    pub sync: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitRun {
    /// The repository checkout (absolute, or relative to the directory `rclaude mcp` runs in;
    /// default: that directory).
    pub repo: Option<String>,
    /// A named session of the repository (several run side by side), or a session id from
    /// `start_session` with a `url`. Default: the repository's own session.
    pub session: Option<String>,
    /// The run id (default: the session's latest run).
    pub run: Option<String>,
    /// Give up waiting after this many seconds (the run goes on).
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pull {
    /// The repository checkout (absolute, or relative to the directory `rclaude mcp` runs in;
    /// default: that directory).
    pub repo: Option<String>,
    /// A named session of the repository (several run side by side), or a session id from
    /// `start_session` with a `url`. Default: the repository's own session.
    pub session: Option<String>,
    /// Local branch to write (default `[sync] pull_branch`, `rclaude/<branch>`). Your checked-out
    /// branch and work tree are never touched.
    pub branch: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopSession {
    /// The repository checkout (absolute, or relative to the directory `rclaude mcp` runs in;
    /// default: that directory).
    pub repo: Option<String>,
    /// A named session of the repository (several run side by side), or a session id from
    /// `start_session` with a `url`. Default: the repository's own session.
    pub session: Option<String>,
    /// `pause` (files kept, no compute billed) or `destroy` (the sandbox is deleted).
    pub action: StopAction,
    /// Required `true` for `destroy`: this deletes the sandbox.
    #[serde(default)]
    pub confirm_destroy: bool,
    /// With `destroy`: do not bring unpulled sandbox work back first (it is lost). Needs
    /// `confirm_destroy` too.
    #[serde(default)]
    pub discard_unpulled_work: bool,
}

/// What `stop_session` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopAction {
    Pause,
    Destroy,
}

fn yes() -> bool {
    true
}

/// `value` trimmed, refusing an empty one; `what` names the field.
pub fn required(what: &str, value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(format!("`{what}` is empty"));
    }
    Ok(v.to_string())
}

/// A timeout in seconds within 1..=a day, as rclaude's DURATION (`90s`).
pub fn timeout(what: &str, secs: Option<u64>) -> Result<Option<String>, String> {
    match secs {
        None => Ok(None),
        Some(s) if (1..=MAX_TIMEOUT_SECS).contains(&s) => Ok(Some(format!("{s}s"))),
        Some(s) => Err(format!(
            "`{what}` is {s}: give 1 to {MAX_TIMEOUT_SECS} seconds"
        )),
    }
}

/// An environment variable name as a shell accepts it.
pub fn env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`env` key {name:?} is not a variable name (letters, digits, _; not starting with a digit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_mistyped_fields_are_refused() {
        let e = serde_json::from_value::<Exec>(serde_json::json!({"command": "ls"})).unwrap_err();
        assert!(e.to_string().contains("sequence"), "{e}");
        let e = serde_json::from_value::<Exec>(serde_json::json!({"command": ["ls"], "comand": 1}))
            .unwrap_err();
        assert!(e.to_string().contains("comand"), "{e}");
        let ok: Exec =
            serde_json::from_value(serde_json::json!({"command": ["ls"], "session": "a"})).unwrap();
        assert!(ok.sync);
        assert_eq!(ok.session.as_deref(), Some("a"));
    }

    #[test]
    fn bounds_are_checked() {
        assert_eq!(timeout("t", Some(90)).unwrap().as_deref(), Some("90s"));
        assert!(timeout("t", Some(0)).is_err());
        assert!(timeout("t", Some(MAX_TIMEOUT_SECS + 1)).is_err());
        assert!(required("prompt", "  ").is_err());
        assert!(env_name("A_1").is_ok());
        assert!(env_name("1A").is_err());
        assert!(env_name("A=B").is_err());
    }
}
