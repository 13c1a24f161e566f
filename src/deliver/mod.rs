//! Delivering a session's work upstream: push the sandbox's branch to the repository's remote
//! (`push`), then open or update a pull request where the upstream has an API (`github`).
//! `upstream` says which remote URL that is and which API serves it.

pub mod commit;
pub mod github;
pub mod push;
pub mod upstream;

pub use github::{GitHub, GitHubError, PullRequest};
pub use push::{PushRequest, Pushed};
pub use upstream::Upstream;

use crate::provider::SandboxError;

/// A failed delivery step.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The sandbox's repository has no commit to push.
    #[error("the sandbox has no commits to push")]
    NoCommits,
    /// The branch exists upstream, does not contain the sandbox's work, and is not what this
    /// sandbox pushed last.
    #[error(
        "branch {branch} already exists on {upstream} (at {tip}) and was not pushed there by this session; it is left as it is"
    )]
    ForeignBranch {
        branch: String,
        upstream: String,
        tip: String,
    },
    /// The upstream wants credentials, or refused the ones given.
    #[error("{upstream} refused the push credentials: {detail}")]
    Auth {
        upstream: String,
        detail: String,
        /// A token was handed to git (so it is wrong or lacks rights, rather than missing).
        token_given: bool,
    },
    /// The upstream cannot be reached from the sandbox, or is not a repository.
    #[error("cannot reach {upstream} from the sandbox: {detail}")]
    Unreachable { upstream: String, detail: String },
    /// The upstream refused the push (a hook, branch protection, a moved branch).
    #[error("{upstream} rejected the push to {branch}: {detail}")]
    Rejected {
        branch: String,
        upstream: String,
        detail: String,
    },
    /// The sandbox failed.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// An answer rclaude did not expect.
    #[error("{0}")]
    Protocol(String),
}
