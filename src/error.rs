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
    /// The library error this one was made from, kept for its chain of causes.
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// How library errors that predate [`CliError::hint`] append their hint to the message.
const EMBEDDED_HINT: &str = "\n  hint: ";

impl CliError {
    /// An error of `kind`. A hint embedded in `message` the way [`Display`](fmt::Display) writes
    /// one (`"\n  hint: ..."`) is taken out of the message into [`CliError::hint`].
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message = message.into();
        let (message, hint) = match message.split_once(EMBEDDED_HINT) {
            Some((m, h)) => (m.to_string(), Some(h.trim().to_string())),
            None => (message, None),
        };
        CliError {
            kind,
            message,
            hint,
            exit_code: None,
            source: None,
        }
    }

    /// Keep `source` as the cause of this error (its own causes are printed too).
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The causes not already said in the message, outermost first.
    pub fn causes(&self) -> Vec<String> {
        let mut said = self.message.clone();
        let mut out = Vec::new();
        let mut next: Option<&(dyn std::error::Error + 'static)> = self
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = next {
            let text = e.to_string();
            let text = text.split(EMBEDDED_HINT).next().unwrap_or_default().trim();
            if !text.is_empty() && !said.contains(text) {
                out.push(text.to_string());
                said.push_str(text);
            }
            next = e.source();
        }
        out
    }

    /// The error as printed on stderr: `error: ...`, `  caused by: ...` lines, `  hint: ...`.
    pub fn render(&self) -> String {
        let mut s = format!("error: {}\n", self.message);
        for c in self.causes() {
            s.push_str(&format!("  caused by: {c}\n"));
        }
        if let Some(h) = &self.hint {
            s.push_str(&format!("  hint: {h}\n"));
        }
        s
    }

    /// A command in the sandbox failed: exit with its code.
    pub fn remote_failure(message: impl Into<String>, code: i32) -> Self {
        CliError {
            kind: ErrorKind::Unavailable,
            message: message.into(),
            hint: None,
            exit_code: Some(code),
            source: None,
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

impl std::error::Error for CliError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

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
        .caused_by(e)
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
        CliError::config(e.to_string()).caused_by(e)
    }
}

impl From<crate::gitsync::SyncError> for CliError {
    fn from(e: crate::gitsync::SyncError) -> Self {
        use crate::gitsync::SyncError as E;
        let kind = match &e {
            E::NotARepository { .. } => ErrorKind::Config,
            E::Io { .. } => ErrorKind::Io,
            E::Sandbox { source, .. } => {
                let err = CliError::from_sandbox_context(e.to_string(), source);
                return err.caused_by(e);
            }
            E::InvalidInput { .. } | E::Unsupported(_) => ErrorKind::Usage,
            E::Internal(_) => ErrorKind::Internal,
            E::Git { .. }
            | E::Remote { .. }
            | E::Protocol { .. }
            | E::BadBundle { .. }
            | E::MissingPrerequisite { .. } => ErrorKind::Sync,
        };
        CliError::new(kind, e.to_string()).caused_by(e)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose cause is not part of its message.
    #[derive(Debug, thiserror::Error)]
    #[error("could not open the session store")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn embedded_hints_become_data() {
        let e = CliError::from(crate::gitsync::SyncError::NotARepository {
            path: "/x".into(),
            reason: "no .git".into(),
        });
        assert_eq!(e.message, "/x is not a git work tree: no .git");
        assert_eq!(
            e.hint.as_deref(),
            Some("run rclaude from a git repository (git init creates one)")
        );
        // Printed exactly once.
        assert_eq!(e.render().matches("hint:").count(), 1, "{}", e.render());
        assert_eq!(e.kind, ErrorKind::Config);
    }

    #[test]
    fn causes_are_kept_and_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "disk says no");
        let e = CliError::internal("syncing failed").caused_by(Outer(io));
        assert_eq!(
            e.causes(),
            ["could not open the session store", "disk says no"]
        );
        let text = e.render();
        assert!(text.contains("  caused by: disk says no\n"), "{text}");
        assert!(std::error::Error::source(&e).is_some());

        // A cause the message already quotes is not repeated.
        let e = CliError::from(crate::gitsync::SyncError::Io {
            context: "reading the index".into(),
            source: std::io::Error::other("bad header"),
        });
        assert_eq!(e.message, "reading the index: bad header");
        assert!(e.causes().is_empty(), "{:?}", e.causes());
    }
}
