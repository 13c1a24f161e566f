//! Push the sandbox's HEAD to the upstream as a branch, from inside the sandbox.
//!
//! Safety: a branch that exists upstream is only moved by a fast-forward, or — when it is
//! exactly what this sandbox pushed last (`refs/rclaude/pushed/<branch>` there) — with
//! `--force-with-lease` on that commit. A branch rclaude did not create is never overwritten.
//!
//! Credentials: the token reaches git only through a credential helper that reads it from the
//! push process's environment (`RCLAUDE_GIT_TOKEN`): it is not in the sandbox's `.git/config`,
//! a credential store (configured helpers are reset for these commands), the command line or
//! any file, and it is removed from any output git prints.

use std::time::Duration;

use super::DeliverError;
use rclaude_sandbox::provider::Sandbox;

/// What the push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// The branch now points at `commit` (`forced`: over rclaude's own earlier push).
    Updated { commit: String, forced: bool },
    /// The upstream branch already was `commit`.
    UpToDate { commit: String },
}

impl Pushed {
    /// The commit the upstream branch points at.
    pub fn commit(&self) -> &str {
        match self {
            Pushed::Updated { commit, .. } | Pushed::UpToDate { commit } => commit,
        }
    }
}

/// What a push needs.
pub struct PushRequest<'a> {
    /// The sandbox's work tree.
    pub workdir: &'a str,
    /// The upstream URL (as git is given it).
    pub url: &'a str,
    /// The URL as shown to people (no credentials).
    pub shown_url: &'a str,
    /// The branch to write (`rclaude/<session>`).
    pub branch: &'a str,
    /// Token for the upstream, when there is one.
    pub token: Option<&'a str>,
}

/// Exit codes of [`SCRIPT`].
const NO_COMMITS: i32 = 10;
const FOREIGN: i32 = 11;
const REJECTED: i32 = 12;
const UNREACHABLE: i32 = 13;

/// Runs in the sandbox's work tree after [`super::GIT_AUTH`]: `$1` URL, `$2` branch.
const SCRIPT: &str = r#"
url=$1 br=$2
head=$(git rev-parse --verify -q 'HEAD^{commit}') || { echo "the sandbox has no commits" >&2; exit 10; }
if ! g ls-remote --heads "$url" "refs/heads/$br" >"$T/ls" 2>"$T/err"; then
  cat "$T/err" >&2; exit 13
fi
tip=$(cut -f1 "$T/ls" | head -n 1)
mine=$(git rev-parse --verify -q "refs/rclaude/pushed/$br" || true)
lease=
if [ -n "$tip" ]; then
  if [ "$tip" = "$head" ]; then
    git update-ref "refs/rclaude/pushed/$br" "$head"
    echo "up-to-date $head"; exit 0
  fi
  if git merge-base --is-ancestor "$tip" "$head" 2>/dev/null; then
    lease=
  elif [ "$tip" = "$mine" ]; then
    lease="--force-with-lease=refs/heads/$br:$tip"
  else
    echo "$tip"; exit 11
  fi
fi
if ! g push --porcelain $lease "$url" "$head:refs/heads/$br" >"$T/out" 2>"$T/err"; then
  cat "$T/out" "$T/err" >&2; exit 12
fi
git update-ref "refs/rclaude/pushed/$br" "$head"
if [ -n "$lease" ]; then echo "forced $head"; else echo "pushed $head"; fi
"#;

/// Push the sandbox's HEAD to `req.branch` on the upstream.
pub async fn push(sandbox: &dyn Sandbox, req: &PushRequest<'_>) -> Result<Pushed, DeliverError> {
    let out = super::run_upstream_script(
        sandbox,
        SCRIPT,
        "rclaude-push",
        &[req.url, req.branch],
        req.workdir,
        req.token,
        (req.url, req.shown_url),
        Duration::from_secs(600),
    )
    .await?;
    let stdout = out.stdout;
    let detail = last_lines(&out.stderr, 6);
    let upstream = req.shown_url.to_string();
    match out.code {
        0 => {
            let mut words = stdout.split_whitespace();
            let (Some(what), Some(commit)) = (words.next(), words.next()) else {
                return Err(DeliverError::Protocol(format!(
                    "the push step answered {stdout:?}"
                )));
            };
            let commit = commit.to_string();
            Ok(match what {
                "up-to-date" => Pushed::UpToDate { commit },
                "forced" => Pushed::Updated {
                    commit,
                    forced: true,
                },
                _ => Pushed::Updated {
                    commit,
                    forced: false,
                },
            })
        }
        NO_COMMITS => Err(DeliverError::NoCommits),
        FOREIGN => Err(DeliverError::ForeignBranch {
            branch: req.branch.to_string(),
            upstream,
            tip: stdout.trim().to_string(),
        }),
        UNREACHABLE if looks_like_auth(&detail, &upstream) => Err(DeliverError::Auth {
            upstream,
            detail,
            token_given: req.token.is_some(),
        }),
        UNREACHABLE => Err(DeliverError::Unreachable { upstream, detail }),
        REJECTED if looks_like_auth(&detail, &upstream) => Err(DeliverError::Auth {
            upstream,
            detail,
            token_given: req.token.is_some(),
        }),
        REJECTED => Err(DeliverError::Rejected {
            branch: req.branch.to_string(),
            upstream,
            detail,
        }),
        _ => Err(DeliverError::Protocol(format!(
            "the push step failed ({}): {detail}",
            out.shell_code
        ))),
    }
}

/// git's messages for missing or refused credentials in `detail`, leaving out every mention of
/// `url` (a port such as `:38401` is not an HTTP status).
pub(crate) fn looks_like_auth(detail: &str, url: &str) -> bool {
    let d = if url.is_empty() {
        detail.to_ascii_lowercase()
    } else {
        detail.replace(url, "").to_ascii_lowercase()
    };
    [
        "authentication failed",
        "could not read username",
        "could not read password",
        "unable to get password",
        "unable to get username",
        "terminal prompts disabled",
        "error: 401",
        "error: 403",
        "http 401",
        "http 403",
        "401 unauthorized",
        "403 forbidden",
        "permission denied",
        "access denied",
        "denied to",
    ]
    .iter()
    .any(|m| d.contains(m))
}

pub(crate) fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_failures_are_told_apart() {
        assert!(looks_like_auth(
            "fatal: Authentication failed for 'http://127.0.0.1/o/r.git/'",
            ""
        ));
        assert!(looks_like_auth(
            "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
            ""
        ));
        assert!(looks_like_auth(
            "error: RPC failed; HTTP 403 curl 22 The requested URL returned error: 403",
            ""
        ));
        assert!(!looks_like_auth(
            "fatal: unable to access 'http://127.0.0.1:9/o/r.git/': Failed to connect",
            ""
        ));
        assert!(!looks_like_auth(
            " ! [rejected]        abc -> rclaude/x (non-fast-forward)",
            ""
        ));
        // A port that looks like a status is not one.
        let url = "http://127.0.0.1:38401/acme/x.git";
        assert!(!looks_like_auth(
            &format!("remote: Repository not found.\nfatal: repository '{url}/' not found"),
            url
        ));
    }

    #[test]
    fn keeps_the_last_lines() {
        assert_eq!(last_lines("a\n\nb\nc\n", 2), "b\nc");
    }
}
