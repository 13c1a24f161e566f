//! Clone the upstream into a new sandbox's work tree (`rclaude start URL[@REF]`), from inside
//! the sandbox, with the same credential rules as a push (see [`super::GIT_AUTH`]).

use std::time::Duration;

use super::DeliverError;
use rclaude_sandbox::provider::Sandbox;

/// Written by the clone, relative to the work tree: `url=`, `ref=` and `commit=` lines saying
/// what was cloned (the URL without credentials).
pub const ORIGIN_FILE: &str = ".git/rclaude/origin";

/// What the clone checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloned {
    pub commit: String,
    /// `None`: detached (a tag or a commit was asked for).
    pub branch: Option<String>,
}

/// Exit codes of [`SCRIPT`].
const NOT_EMPTY: i32 = 20;
const CLONE_FAILED: i32 = 13;
const UNKNOWN_REF: i32 = 14;

/// Runs in the (empty) work tree after [`super::GIT_AUTH`]: `$1` URL, `$2` REF or empty, `$3`
/// the URL as shown (no credentials).
const SCRIPT: &str = r#"
url=$1 ref=$2 shown=$3
if [ -n "$(ls -A . 2>/dev/null)" ]; then echo "the sandbox's work tree is not empty" >&2; exit 20; fi
if ! g clone -q "$url" . 2>"$T/err"; then cat "$T/err" >&2; exit 13; fi
if [ -n "$ref" ]; then
  if git rev-parse -q --verify "refs/remotes/origin/$ref^{commit}" >/dev/null; then
    git checkout -q -B "$ref" "refs/remotes/origin/$ref" || exit 15
    git branch -q --set-upstream-to="origin/$ref" >/dev/null 2>&1
  elif c=$(git rev-parse -q --verify "$ref^{commit}"); then
    git checkout -q --detach "$c" || exit 15
  elif g fetch -q origin "$ref" 2>/dev/null && c=$(git rev-parse -q --verify 'FETCH_HEAD^{commit}'); then
    git checkout -q --detach "$c" || exit 15
  else
    echo "no branch, tag or commit $ref" >&2; exit 14
  fi
fi
# The sandbox repository's identity, as bundle sync records it (pull and export need one).
mkdir -p .git/rclaude && { cat /proc/sys/kernel/random/uuid 2>/dev/null || date +%s%N; } > .git/rclaude/identity
# Credentials given in the URL itself are not kept in the clone's config.
[ "$url" = "$shown" ] || git remote set-url origin "$shown"
# Where this clone came from, for clients that join the session later (`ORIGIN_FILE`).
c0=$(git rev-parse --verify -q 'HEAD^{commit}') || c0=
printf 'url=%s\nref=%s\ncommit=%s\n' "$shown" "$ref" "$c0" > .git/rclaude/origin
c=$(git rev-parse --verify -q 'HEAD^{commit}') || c=
b=$(git symbolic-ref -q --short HEAD) || b=
echo "$c $b"
"#;

/// Clone `url` (at `git_ref`) into `workdir`, which must be empty.
pub async fn clone(
    sandbox: &dyn Sandbox,
    workdir: &str,
    url: &str,
    shown_url: &str,
    git_ref: Option<&str>,
    token: Option<&str>,
) -> Result<Cloned, DeliverError> {
    let out = super::run_upstream_script(
        sandbox,
        SCRIPT,
        "rclaude-clone",
        &[url, git_ref.unwrap_or(""), shown_url],
        workdir,
        token,
        (url, shown_url),
        Duration::from_secs(3600),
    )
    .await?;
    let detail = super::push::last_lines(&out.stderr, 6);
    let upstream = shown_url.to_string();
    match out.code {
        0 => {
            let mut words = out.stdout.split_whitespace();
            Ok(Cloned {
                commit: words.next().unwrap_or_default().to_string(),
                branch: words.next().map(str::to_string),
            })
        }
        NOT_EMPTY => Err(DeliverError::Protocol(detail)),
        UNKNOWN_REF => Err(DeliverError::UnknownRef {
            git_ref: git_ref.unwrap_or_default().to_string(),
            upstream,
        }),
        CLONE_FAILED if super::push::looks_like_auth(&detail, shown_url) => {
            Err(DeliverError::Auth {
                upstream,
                detail,
                token_given: token.is_some(),
            })
        }
        CLONE_FAILED if looks_missing(&detail, shown_url) => {
            Err(DeliverError::NotARepository { upstream, detail })
        }
        CLONE_FAILED => Err(DeliverError::Unreachable { upstream, detail }),
        _ => Err(DeliverError::Protocol(format!(
            "cloning {upstream} failed ({}): {detail}",
            out.shell_code
        ))),
    }
}

/// git's messages for a URL that answers but is not a repository, leaving out every mention of
/// `url` (a port such as `:40404` is not an HTTP status).
fn looks_missing(detail: &str, url: &str) -> bool {
    let d = detail.replace(url, "").to_ascii_lowercase();
    [
        "not found",
        "does not appear to be a git repository",
        "not a git repository",
        "error: 404",
        "does not exist",
    ]
    .iter()
    .any(|m| d.contains(m))
}

#[cfg(test)]
mod tests {
    use super::looks_missing;

    #[test]
    fn a_missing_repository_is_told_from_a_port_number() {
        let url = "http://127.0.0.1:40404/acme/x.git";
        assert!(looks_missing(
            &format!("fatal: repository '{url}/' not found"),
            url
        ));
        assert!(looks_missing(
            "fatal: unable to access 'h': The requested URL returned error: 404",
            url
        ));
        assert!(!looks_missing(
            &format!("fatal: unable to access '{url}/': Failed to connect to 127.0.0.1 port 40404"),
            url
        ));
    }
}
