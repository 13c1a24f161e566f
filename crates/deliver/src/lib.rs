//! `rclaude-deliver`: the upstream repository, from inside the sandbox (used by the CLI and,
//! for sessions started from a URL, by the server): clone it (`clone`, for `rclaude start`),
//! and deliver a session's work to it: commit a run's changes (`commit`), push the sandbox's
//! branch (`push`), then open or update a pull request where the upstream has an API
//! (`github`). `upstream` says which URL that is and which API serves it.

pub mod clone;
pub mod commit;
pub mod github;
pub mod prefetch;
pub mod push;
pub mod upstream;

pub use github::{GitHub, GitHubError, PullRequest};
pub use push::{PushRequest, Pushed};
pub use upstream::Upstream;

use std::collections::BTreeMap;
use std::time::Duration;

use rclaude_sandbox::provider::{ExecRequest, Sandbox, SandboxError};

/// Shell prelude of every sandbox script that talks to the upstream: `g` runs git with the
/// token (from `RCLAUDE_GIT_TOKEN` in the process's environment, when set) offered by a
/// credential helper that only echoes it, configured helpers (a credential store that would
/// write it down) reset, and never a prompt; `$T` is a scratch directory removed at exit.
pub(crate) const GIT_AUTH: &str = r#"
T=$(mktemp -d) || exit 70
trap 'rm -rf "$T"' EXIT
export GIT_TERMINAL_PROMPT=0 GCM_INTERACTIVE=never
helper='!f() { test "$1" = get || exit 0; echo username=x-access-token; echo "password=$RCLAUDE_GIT_TOKEN"; }; f'
g() {
  if [ -n "${RCLAUDE_GIT_TOKEN:-}" ]; then
    git -c credential.helper= -c "credential.helper=$helper" -c credential.interactive=false "$@"
  else
    git -c credential.helper= -c credential.interactive=false "$@"
  fi
}
"#;

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
    #[error("{upstream} wants credentials, or refused the ones given: {detail}")]
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
    /// The URL answers, but there is no repository there.
    #[error("{upstream} is not a git repository: {detail}")]
    NotARepository { upstream: String, detail: String },
    /// The REF asked for is not a branch, tag or commit of the repository.
    #[error("{upstream} has no branch, tag or commit {git_ref:?}")]
    UnknownRef { git_ref: String, upstream: String },
    /// An answer rclaude did not expect.
    #[error("{0}")]
    Protocol(String),
}

/// What a script that talks to the upstream answered, the token taken out of its output.
pub(crate) struct UpstreamRun {
    /// Its exit code (`-1` when a signal ended it).
    pub code: i32,
    /// The exit code as a shell reports it (128+S for signal S).
    pub shell_code: i32,
    pub stdout: String,
    /// Standard error with the token replaced by `***` and `url` by `shown_url`.
    pub stderr: String,
}

/// Run `script` after [`GIT_AUTH`] in the sandbox as `sh -c SCRIPT NAME ARGS…` in `cwd`, with
/// `token` in the process's environment only (`RCLAUDE_GIT_TOKEN`), and take the token out of
/// whatever it printed.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_upstream_script(
    sandbox: &dyn Sandbox,
    script: &str,
    name: &str,
    args: &[&str],
    cwd: &str,
    token: Option<&str>,
    (url, shown_url): (&str, &str),
    timeout: Duration,
) -> Result<UpstreamRun, DeliverError> {
    let mut env = BTreeMap::new();
    if let Some(t) = token {
        env.insert("RCLAUDE_GIT_TOKEN".to_string(), t.to_string());
    }
    let script = format!("{GIT_AUTH}{script}");
    let mut argv = vec!["sh", "-c", script.as_str(), name];
    argv.extend_from_slice(args);
    let req = ExecRequest::argv(argv)
        .cwd(cwd)
        .env(env)
        .timeout(Some(timeout));
    let out = rclaude_sandbox::provider::run(sandbox, req).await?;
    let redact = |s: String| match token {
        Some(t) if !t.is_empty() => s.replace(t, "***"),
        _ => s,
    };
    Ok(UpstreamRun {
        code: out.status.code,
        shell_code: out.status.shell_code(),
        stdout: redact(out.stdout_str()),
        stderr: redact(out.stderr_str()).replace(url, shown_url),
    })
}
