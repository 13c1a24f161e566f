//! The CLI's top-level error kinds and their exit codes.
//!
//! Library modules return their own `thiserror` types; commands convert them into a [`CliError`]
//! of one of a few kinds, each with a documented exit code (see `docs/cli.md`). When a remote
//! command fails, `exec`/`run` exit with the remote exit code instead.

use std::fmt;

/// What kind of failure ended the command; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad command-line usage (64).
    Usage,
    /// Sync refused or failed: it would lose work, or a bundle is corrupt (65).
    Sync,
    /// The sandbox, its provider or the agent cannot be reached, or the sandbox is gone (69).
    Unavailable,
    /// A bug or an unexpected state in rclaude (70).
    Internal,
    /// Local file system or I/O failure (74).
    Io,
    /// Authentication failed: a missing or rejected API key or token (77).
    Auth,
    /// Not in a git repository, or `.rclaude.toml` is missing or invalid (78).
    Config,
    /// Interrupted by Ctrl-C (130).
    Interrupted,
}

impl ErrorKind {
    /// The process exit code for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Usage => 64,
            ErrorKind::Sync => 65,
            ErrorKind::Unavailable => 69,
            ErrorKind::Internal => 70,
            ErrorKind::Io => 74,
            ErrorKind::Auth => 77,
            ErrorKind::Config => 78,
            ErrorKind::Interrupted => 130,
        }
    }

    /// Short machine-readable name (used in `--json` output).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage",
            ErrorKind::Sync => "sync",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
            ErrorKind::Io => "io",
            ErrorKind::Auth => "auth",
            ErrorKind::Config => "config",
            ErrorKind::Interrupted => "interrupted",
        }
    }
}

/// A user-facing error: what went wrong, and what to do about it.
#[derive(Debug)]
pub struct CliError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
    /// Exit with this code instead of the kind's (a remote command's own code).
    pub exit_code: Option<i32>,
}

impl CliError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
            hint: None,
            exit_code: None,
        }
    }

    /// A command in the sandbox failed: exit with its code.
    pub fn remote_failure(message: impl Into<String>, code: i32) -> Self {
        CliError {
            kind: ErrorKind::Unavailable,
            message: message.into(),
            hint: None,
            exit_code: Some(code),
        }
    }

    /// The exit code for this error.
    pub fn code(&self) -> i32 {
        self.exit_code.unwrap_or_else(|| self.kind.exit_code())
    }

    /// Add a hint line ("what to do").
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn usage(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, m)
    }
    pub fn config(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, m)
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, m)
    }
    pub fn io(context: impl fmt::Display, e: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{context}: {e}"))
    }
    pub fn sync(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Sync, m)
    }
    pub fn auth(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Auth, m)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CliError {}

/// Result of a command: `Ok(code)` is the exit code to use (0, or a remote command's code).
pub type CliResult<T = i32> = Result<T, CliError>;

impl From<crate::provider::SandboxError> for CliError {
    fn from(e: crate::provider::SandboxError) -> Self {
        use crate::provider::SandboxError as E;
        match &e {
            E::Unreachable { .. } => CliError::unavailable(e.to_string()).hint(
                "check the sandbox with `rclaude status`; `rclaude resume` restarts a paused one",
            ),
            E::Unauthenticated(_) => CliError::auth(e.to_string())
                .hint("the sandbox's access token changed; `rclaude resume` reconnects"),
            E::Io { .. } => CliError::new(ErrorKind::Io, e.to_string()),
            E::Timeout(_) => CliError::unavailable(e.to_string()),
            _ => CliError::new(ErrorKind::Unavailable, e.to_string()),
        }
    }
}

impl From<crate::provider::ProviderError> for CliError {
    fn from(e: crate::provider::ProviderError) -> Self {
        use crate::provider::ProviderError as E;
        match e {
            E::NotFound(id) => CliError::unavailable(format!("sandbox {id} no longer exists"))
                .hint("`rclaude up` creates a new one and syncs your work tree into it"),
            E::Api {
                status: 401 | 403, ..
            } => CliError::auth(e.to_string()),
            E::Api { .. } => CliError::unavailable(e.to_string()),
            E::Config(m) => CliError::config(m),
            E::Sandbox(s) => s.into(),
        }
    }
}

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> Self {
        CliError::config(e.to_string())
    }
}

impl From<crate::gitsync::SyncError> for CliError {
    fn from(e: crate::gitsync::SyncError) -> Self {
        use crate::gitsync::SyncError as E;
        let kind = match &e {
            E::NotARepository { .. } => ErrorKind::Config,
            E::Io { .. } => ErrorKind::Io,
            E::Sandbox { source, .. } => {
                return CliError::from_sandbox_context(e.to_string(), source);
            }
            E::InvalidInput { .. } | E::Unsupported(_) => ErrorKind::Usage,
            E::Internal(_) => ErrorKind::Internal,
            E::Git { .. }
            | E::Remote { .. }
            | E::Protocol { .. }
            | E::BadBundle { .. }
            | E::MissingPrerequisite { .. } => ErrorKind::Sync,
        };
        CliError::new(kind, e.to_string())
    }
}

impl CliError {
    /// A sandbox error with context, keeping the sandbox error's kind and hint.
    fn from_sandbox_context(message: String, source: &crate::provider::SandboxError) -> CliError {
        use crate::provider::SandboxError as S;
        match source {
            S::Unreachable { .. } => CliError::unavailable(message).hint(
                "check the sandbox with `rclaude status`; `rclaude resume` restarts a paused one",
            ),
            S::Unauthenticated(_) => CliError::auth(message),
            S::Io { .. } => CliError::new(ErrorKind::Io, message),
            _ => CliError::unavailable(message),
        }
    }
}
