//! Claude Code in the sandbox: installing it ([`install`]), starting headless runs that outlive
//! the CLI and finding them again ([`run`]), and turning their `stream-json` output into a
//! readable transcript ([`render`]).
//!
//! A headless run is a tagged process in the sandbox whose output goes to files under
//! `<workdir>/.git/rclaude/claude/` (transcript, stderr, exit code), so any rclaude on any
//! machine can replay and follow it; the process does not depend on a client stream.

pub mod install;
pub mod render;
pub mod run;
pub mod transcript;

use crate::provider::SandboxError;

/// The npm package of Claude Code.
pub const PACKAGE: &str = "@anthropic-ai/claude-code";

/// The version installed when `[claude] version` is not set: the one rclaude is tested with.
pub const DEFAULT_VERSION: &str = "2.1.197";

/// Permission modes Claude Code 2.x accepts for `--permission-mode`.
pub const PERMISSION_MODES: [&str; 6] = [
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "default",
    "dontAsk",
    "plan",
];

/// Environment every Claude Code process in the sandbox gets (overridable with `[env]`): no
/// telemetry, error reports or self-updates (the version is pinned), no non-essential traffic.
pub const QUIET_ENV: [(&str, &str); 4] = [
    ("DISABLE_TELEMETRY", "1"),
    ("DISABLE_AUTOUPDATER", "1"),
    ("DISABLE_ERROR_REPORTING", "1"),
    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
];

/// Credentials taken from the local environment and passed to Claude Code per process (never
/// written to disk, never printed).
pub const CREDENTIAL_VARS: [&str; 3] = [
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
];

/// What went wrong running Claude Code in the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum ClaudeError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("`claude` is not installed in the sandbox and npm is not available to install it")]
    NpmMissing,
    #[error("installing {PACKAGE}@{version} with npm failed (exit code {code}):\n{output}")]
    InstallFailed {
        version: String,
        code: i32,
        output: String,
    },
    #[error("{PACKAGE}@{version} was installed, but `claude --version` still fails:\n{output}")]
    BrokenInstall { version: String, output: String },
    #[error(
        "invalid [claude] version {0:?}: use a version like \"2.1.197\" or a dist-tag like \"latest\""
    )]
    InvalidVersion(String),
    #[error(
        "invalid [claude] permission_mode {0:?}: use one of acceptEdits, auto, bypassPermissions, default, dontAsk, plan"
    )]
    InvalidPermissionMode(String),
    #[error("invalid run id {0:?}: run ids look like 20261124T101500Z-1a2b")]
    InvalidRunId(String),
    #[error("no Claude Code run in this sandbox yet")]
    NoRun,
    #[error("Claude Code run {0} is not in this sandbox")]
    UnknownRun(String),
    #[error("Claude Code is already working in this sandbox (run {0})")]
    Busy(String),
    #[error("unreadable run file {path}: {reason}")]
    Corrupt { path: String, reason: String },
}

/// The host Claude Code talks to: `ANTHROPIC_BASE_URL`'s when set here, else Anthropic's API.
pub fn api_host() -> String {
    std::env::var("ANTHROPIC_BASE_URL")
        .ok()
        .and_then(|u| reqwest::Url::parse(&u).ok())
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "api.anthropic.com".to_string())
}

/// Check a `[claude] permission_mode` value.
pub fn validate_permission_mode(mode: &str) -> Result<(), ClaudeError> {
    if PERMISSION_MODES.contains(&mode) {
        Ok(())
    } else {
        Err(ClaudeError::InvalidPermissionMode(mode.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_modes_are_checked() {
        assert!(validate_permission_mode("bypassPermissions").is_ok());
        assert!(validate_permission_mode("acceptEdits").is_ok());
        assert!(validate_permission_mode("yolo").is_err());
        assert!(validate_permission_mode("").is_err());
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(crate::shell::quote("it's"), r"'it'\''s'");
        assert_eq!(crate::shell::quote(""), "''");
    }
}
