//! Commit what a run changed in the sandbox (`claude --pr`, `ci --pr`), and only that.
//!
//! The sandbox's work tree also holds what the laptop had uncommitted or untracked when it was
//! synced (the snapshot, `refs/rclaude/snapshot`); those files are the user's, and may be
//! private, so they are never committed here. Only paths that differ from the snapshot are
//! committed, on top of the sandbox HEAD, through a temporary index; the real index keeps the
//! laptop's staged state for every other path.

use std::collections::BTreeMap;

use super::DeliverError;
use rclaude_sandbox::provider::{ExecRequest, Sandbox};

/// Runs in the work tree: `$1` message. Prints `none` or `committed <oid> <paths>`.
const SCRIPT: &str = r#"
msg=$1
T=$(mktemp -d) || exit 70
trap 'rm -rf "$T"' EXIT
head=$(git rev-parse -q --verify 'HEAD^{commit}') || { echo "the sandbox has no commits" >&2; exit 10; }
snap=$(git rev-parse -q --verify 'refs/rclaude/snapshot^{commit}') || snap=$head
GIT_INDEX_FILE="$T/seen" git read-tree "$snap" || exit 71
GIT_INDEX_FILE="$T/seen" git add -A . >/dev/null 2>"$T/err" || { cat "$T/err" >&2; exit 72; }
GIT_INDEX_FILE="$T/seen" git diff --cached --no-renames --name-only -z "$snap" >"$T/paths" || exit 73
if [ ! -s "$T/paths" ]; then echo none; exit 0; fi
GIT_INDEX_FILE="$T/commit" git read-tree "$head" || exit 74
GIT_INDEX_FILE="$T/commit" git update-index --add --remove -z --stdin <"$T/paths" 2>"$T/err" || { cat "$T/err" >&2; exit 75; }
tree=$(GIT_INDEX_FILE="$T/commit" git write-tree) || exit 76
if [ "$tree" = "$(git rev-parse "$head^{tree}")" ]; then echo none; exit 0; fi
c=$(printf '%s\n' "$msg" | git commit-tree "$tree" -p "$head") || exit 77
git update-ref -m "rclaude: commit the run's work" HEAD "$c" "$head" || exit 78
tr '\0' '\n' <"$T/paths" | git reset -q --pathspec-from-file=- -- 2>/dev/null || true
n=$(tr -cd '\0' <"$T/paths" | wc -c)
echo "committed $c $n"
"#;

/// A commit of the run's work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub commit: String,
    /// Paths it changed.
    pub files: usize,
}

/// Commit what changed since the last sync (see the module docs) as `author`
/// (`(name, email)`, else git's configuration in the sandbox). `None`: nothing to commit.
pub async fn commit_run_work(
    sandbox: &dyn Sandbox,
    workdir: &str,
    message: &str,
    author: Option<(String, String)>,
) -> Result<Option<Committed>, DeliverError> {
    let mut env = BTreeMap::new();
    let (name, email) = author.unwrap_or_else(|| ("rclaude".into(), "rclaude@localhost".into()));
    for who in ["AUTHOR", "COMMITTER"] {
        env.insert(format!("GIT_{who}_NAME"), name.clone());
        env.insert(format!("GIT_{who}_EMAIL"), email.clone());
    }
    let req = ExecRequest::argv(["sh", "-c", SCRIPT, "rclaude-commit", message])
        .cwd(workdir)
        .env(env);
    let out = rclaude_sandbox::provider::run(sandbox, req).await?;
    let stdout = out.stdout_str();
    if out.status.code == 10 {
        return Err(DeliverError::NoCommits);
    }
    if !out.status.success() {
        return Err(DeliverError::Protocol(format!(
            "committing the run's work in the sandbox failed ({}): {}",
            out.status.shell_code(),
            out.stderr_str().trim()
        )));
    }
    let mut words = stdout.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("none"), _, _) => Ok(None),
        (Some("committed"), Some(c), Some(n)) => Ok(Some(Committed {
            commit: c.to_string(),
            files: n.parse().unwrap_or(0),
        })),
        _ => Err(DeliverError::Protocol(format!(
            "the commit step answered {stdout:?}"
        ))),
    }
}
