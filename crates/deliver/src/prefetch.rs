//! Origin-aware first sync: before the first bundle, the sandbox fetches the history the
//! upstream already has, straight from the upstream, so the laptop then sends only what the
//! upstream lacks (local commits, the snapshot of uncommitted and untracked files). Reachability
//! is probed first with a short time limit; when the sandbox cannot reach the upstream, nothing
//! is fetched and the bundle carries everything, as before.

use std::time::Duration;

use super::DeliverError;
use rclaude_sandbox::provider::Sandbox;

/// Where the fetched upstream branches live in the sandbox (listed by the sync's query step,
/// so the laptop leaves their history out of the bundle).
pub const UPSTREAM_REFS: &str = "refs/rclaude/upstream/";

/// What the prefetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prefetch {
    /// The sandbox fetched `branches` upstream branches (one: the checkout's upstream branch,
    /// or the default branch).
    Fetched { branches: usize },
    /// The sandbox cannot reach the upstream (why, in git's words): full bundle.
    Unreachable(String),
}

/// After [`super::GIT_AUTH`]: `$1` work tree, `$2` URL, `$3` probe seconds, `$4` the upstream
/// branch to fetch (empty: the upstream's default branch). One branch carries the history the
/// checkout builds on; fetching every branch of a busy repository would cost more than it saves.
const SCRIPT: &str = r#"
W=$1 url=$2 probe=$3 br=$4
mkdir -p "$W" && cd "$W" || exit 4
if [ ! -d .git ]; then git -c init.defaultBranch=main init -q . || exit 4; fi
if command -v timeout >/dev/null 2>&1; then to="timeout $probe"; else to=; fi
if [ -n "${RCLAUDE_GIT_TOKEN:-}" ]; then set -- -c credential.helper= -c "credential.helper=$helper"; else set -- -c credential.helper=; fi
if ! $to git "$@" -c credential.interactive=false ls-remote --heads "$url" >"$T/ls" 2>"$T/err"; then
  [ -s "$T/err" ] || echo "no answer within ${probe}s" >"$T/err"
  tail -n 3 "$T/err" >&2; exit 13
fi
if [ -n "$br" ] && grep -q "	refs/heads/$br\$" "$T/ls"; then
  spec="+refs/heads/$br:refs/rclaude/upstream/heads/$br"
else
  spec="+HEAD:refs/rclaude/upstream/default"
fi
if ! g fetch --quiet --no-tags --no-write-fetch-head "$url" "$spec" 2>"$T/err"; then
  tail -n 3 "$T/err" >&2; exit 12
fi
git for-each-ref refs/rclaude/upstream | wc -l
"#;

/// Have the sandbox fetch `branch` of `url` (else its default branch) into its repository at
/// `workdir` (created if missing), when it can reach `url` within `probe`.
pub async fn prefetch(
    sandbox: &dyn Sandbox,
    workdir: &str,
    url: &str,
    shown_url: &str,
    branch: Option<&str>,
    token: Option<&str>,
    probe: Duration,
) -> Result<Prefetch, DeliverError> {
    let secs = probe.as_secs().max(1).to_string();
    // The work tree may not exist yet; its parent does (a provider's home or root).
    let cwd = std::path::Path::new(workdir)
        .parent()
        .and_then(|p| p.to_str())
        .filter(|p| !p.is_empty())
        .unwrap_or(workdir);
    let out = super::run_upstream_script(
        sandbox,
        SCRIPT,
        "rclaude-prefetch",
        &[workdir, url, &secs, branch.unwrap_or("")],
        cwd,
        token,
        (url, shown_url),
        Duration::from_secs(3600),
    )
    .await?;
    let detail = super::push::last_lines(&out.stderr, 3);
    match out.code {
        0 => Ok(Prefetch::Fetched {
            branches: out.stdout.trim().parse().unwrap_or(0),
        }),
        13 => Ok(Prefetch::Unreachable(detail)),
        _ => Err(DeliverError::Unreachable {
            upstream: shown_url.to_string(),
            detail,
        }),
    }
}
