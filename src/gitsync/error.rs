//! Errors of the git-bundle sync, worded for the person running rclaude.

use std::path::PathBuf;

use crate::provider::SandboxError;

/// Everything that can go wrong while syncing; messages say what, where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The local path is not a (non-bare) git work tree.
    #[error(
        "{path} is not a git work tree: {reason}\n  hint: run rclaude from a git repository (git init creates one)"
    )]
    NotARepository { path: PathBuf, reason: String },
    /// A libgit2 operation on the local repository failed.
    #[error("git failed while {context}: {}", .source.message())]
    Git {
        context: String,
        #[source]
        source: git2::Error,
    },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The sandbox could not be reached or refused a request.
    #[error("sandbox error while {context}: {source}")]
    Sandbox {
        context: String,
        #[source]
        source: SandboxError,
    },
    /// A sync step that runs in the sandbox failed; `message` comes from the step itself.
    #[error("the sandbox's {step} step failed: {message}")]
    Remote {
        step: &'static str,
        code: i32,
        message: String,
    },
    /// A sync step in the sandbox answered something rclaude does not understand.
    #[error("unexpected answer from the sandbox's {step} step: {detail}")]
    Protocol { step: &'static str, detail: String },
    /// A bundle is malformed, truncated or corrupt; nothing from it was applied.
    #[error("invalid bundle {path}: {reason}; nothing was applied")]
    BadBundle { path: PathBuf, reason: String },
    /// A bundle needs a commit this repository lacks; nothing from it was applied.
    #[error(
        "the bundle {path} builds on commit {oid}, which this repository does not have; nothing was applied\n  hint: run the command again; rclaude then asks for a complete bundle"
    )]
    MissingPrerequisite { path: PathBuf, oid: String },
    /// Invalid input from the caller (options, names, templates).
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: String, reason: String },
    /// A requested feature is not supported (yet).
    #[error("{0}")]
    Unsupported(String),
    /// A bug in rclaude (a task panicked, an invariant broke).
    #[error("internal error in the git sync: {0}")]
    Internal(String),
}

impl SyncError {
    pub(crate) fn git(context: impl Into<String>) -> impl FnOnce(git2::Error) -> SyncError {
        let context = context.into();
        move |source| SyncError::Git { context, source }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SyncError {
        let context = context.into();
        move |source| SyncError::Io { context, source }
    }

    pub(crate) fn sandbox(context: impl Into<String>) -> impl FnOnce(SandboxError) -> SyncError {
        let context = context.into();
        move |source| SyncError::Sandbox { context, source }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> SyncError {
        SyncError::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

impl From<rclaude_sandbox_git::StepError> for SyncError {
    fn from(e: rclaude_sandbox_git::StepError) -> SyncError {
        use rclaude_sandbox_git::StepError as S;
        match e {
            S::Sandbox { context, source } => SyncError::Sandbox { context, source },
            S::Remote {
                step,
                code,
                message,
            } => SyncError::Remote {
                step,
                code,
                message,
            },
            S::Protocol { step, detail } => SyncError::Protocol { step, detail },
            S::Invalid { what, reason } => SyncError::InvalidInput { what, reason },
        }
    }
}
