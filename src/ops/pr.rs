//! Deliver a session's work as a branch on the upstream and a pull request (`rclaude pr`,
//! `claude --pr`, `ci --pr`).

use serde::Serialize;

use super::context::Ctx;
use crate::deliver::github::{NewPull, PullUpdate};
use crate::deliver::{DeliverError, GitHub, GitHubError, PushRequest, Pushed, Upstream};
use crate::error::{CliError, CliResult};
use crate::gitsync::SyncState;
use crate::provider::{ExecRequest, Sandbox};
use crate::session::SessionRecord;

/// What the user asked of the pull request.
#[derive(Debug, Clone, Default)]
pub struct PrOptions {
    pub title: Option<String>,
    pub body: Option<String>,
    pub draft: bool,
    pub base: Option<String>,
    /// What the work was (a Claude Code run's final message), for the default title and body.
    pub summary: Option<String>,
}

/// What `pr` did.
#[derive(Debug, Clone, Serialize)]
pub struct PrOutcome {
    /// The branch on the upstream (`rclaude/<session>`).
    pub branch: String,
    /// The upstream, without credentials.
    pub upstream: String,
    /// The commit the branch points at.
    pub commit: String,
    /// `pushed`, `forced` (over this session's own earlier push) or `up_to_date`.
    pub push: &'static str,
    /// The pull request, when the upstream has a pull-request API.
    pub pull_request: Option<PullRequestOutcome>,
    /// Why no pull request was opened (no API for this upstream).
    pub no_pull_request: Option<String>,
    /// The sandbox has uncommitted edits, which the branch does not carry.
    pub uncommitted_in_sandbox: bool,
}

/// The pull request opened or updated.
#[derive(Debug, Clone, Serialize)]
pub struct PullRequestOutcome {
    pub number: u64,
    pub url: String,
    /// Opened now (`false`: it was already open and now shows the new commits).
    pub created: bool,
}

/// The upstream branch a session delivers to.
pub fn branch_for(record: &SessionRecord) -> String {
    let id: String = record
        .session_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("rclaude/{id}")
}

/// The upstream of a session: the URL a started session cloned, else the URL of this
/// checkout's `[git] remote` (default `origin`).
pub fn upstream(ctx: &Ctx, record: &SessionRecord) -> CliResult<Upstream> {
    if let Some(o) = &record.origin {
        return Ok(Upstream::parse(&o.url));
    }
    let name = &ctx.config.git.remote;
    let repo = git2::Repository::open(&ctx.repo.root)
        .map_err(|e| CliError::config(format!("cannot open {}: {e}", ctx.repo.root.display())))?;
    let remote = repo.find_remote(name).map_err(|_| {
        CliError::config(format!(
            "this repository has no remote {name:?} to deliver to"
        ))
        .hint(format!(
            "add it (`git remote add {name} URL`), or name another remote in `[git] remote`"
        ))
    })?;
    let url = remote
        .url()
        .map_err(|_| CliError::config(format!("remote {name:?} has no URL git can read")))?;
    Ok(Upstream::parse(url))
}

/// After a run (`claude --pr`, `ci --pr`): commit what the run changed (never the laptop's own
/// uncommitted files, see `deliver::commit`), as the local git identity, then [`deliver`].
pub async fn deliver_run(
    ctx: &Ctx,
    record: &SessionRecord,
    sandbox: &dyn Sandbox,
    opts: &PrOptions,
    message: &str,
) -> CliResult<PrOutcome> {
    let author = git2::Repository::open(&ctx.repo.root)
        .ok()
        .and_then(|r| r.signature().ok())
        .and_then(|s| Some((s.name().ok()?.to_string(), s.email().ok()?.to_string())));
    let committed =
        crate::deliver::commit::commit_run_work(sandbox, &record.workdir, message, author)
            .await
            .map_err(|e| CliError::sync(e.to_string()).caused_by(e))?;
    if let Some(c) = committed {
        ctx.ui.info(format!(
            "Committed the run's changes in the sandbox ({} file{}, {})",
            c.files,
            if c.files == 1 { "" } else { "s" },
            &c.commit[..c.commit.len().min(10)]
        ));
    }
    deliver(ctx, record, sandbox, opts).await
}

/// Push the session's sandbox HEAD to the upstream as `rclaude/<session>` and open (or update)
/// its pull request.
pub async fn deliver(
    ctx: &Ctx,
    record: &SessionRecord,
    sandbox: &dyn Sandbox,
    opts: &PrOptions,
) -> CliResult<PrOutcome> {
    let up = upstream(ctx, record)?;
    let shown = up.display();
    let token_var = &ctx.config.git.token_secret;
    let token = std::env::var(token_var).ok().filter(|t| !t.is_empty());
    let github = up.github(std::env::var("GITHUB_API_URL").ok().as_deref());
    if github.is_some() && token.is_none() {
        return Err(CliError::auth(format!(
            "a pull request on {shown} needs a token, and ${token_var} is not set"
        ))
        .hint(format!(
            "export {token_var}=<a token that can push and open pull requests> (`[git] token_secret` names the variable)"
        )));
    }
    let branch = branch_for(record);
    let uncommitted = has_uncommitted(sandbox, &record.workdir).await;
    if uncommitted {
        ctx.ui.warn(
            "the sandbox has uncommitted edits; the branch carries its commits only (commit them \
             in the sandbox first, e.g. `rclaude exec -- git commit -am \"...\"`)",
        );
    }

    let step = ctx.ui.step(format!("Pushing {branch} to {shown}"));
    let pushed = crate::deliver::push::push(
        sandbox,
        &PushRequest {
            workdir: &record.workdir,
            url: &up.url,
            shown_url: &shown,
            branch: &branch,
            token: token.as_deref(),
        },
    )
    .await;
    let pushed = match pushed {
        Ok(p) => {
            step.done(Some(match &p {
                Pushed::UpToDate { .. } => "already there",
                Pushed::Updated { forced: true, .. } => "replaced this session's earlier push",
                Pushed::Updated { .. } => "pushed",
            }));
            p
        }
        Err(e) => {
            step.fail(None);
            return Err(push_error(e, &branch, token_var));
        }
    };
    let mut outcome = PrOutcome {
        branch: branch.clone(),
        upstream: shown.clone(),
        commit: pushed.commit().to_string(),
        push: match &pushed {
            Pushed::UpToDate { .. } => "up_to_date",
            Pushed::Updated { forced: true, .. } => "forced",
            Pushed::Updated { .. } => "pushed",
        },
        pull_request: None,
        no_pull_request: None,
        uncommitted_in_sandbox: uncommitted,
    };
    let (Some(gh), Some(token)) = (github, token) else {
        outcome.no_pull_request = Some(format!(
            "no pull request API is configured for {} (GitHub is detected from github.com URLs; \
             set GITHUB_API_URL for GitHub Enterprise)",
            up.host.as_deref().unwrap_or("a local path")
        ));
        return Ok(outcome);
    };

    let step = ctx.ui.step("Opening the pull request");
    let client = GitHub::new(gh, &token);
    let result = async {
        let commits = commit_subjects(sandbox, record).await;
        if let Some(open) = client.open_pull(&branch).await? {
            let update = PullUpdate {
                title: opts.title.as_deref(),
                body: opts.body.as_deref(),
                base: opts.base.as_deref(),
            };
            let pr = if update.title.is_some() || update.body.is_some() || update.base.is_some() {
                client.update_pull(open.number, &update).await?
            } else {
                open
            };
            return Ok::<_, GitHubError>((pr, false));
        }
        let base = match &opts.base {
            Some(b) => b.clone(),
            None => client.default_branch().await?,
        };
        let title = opts
            .title
            .clone()
            .unwrap_or_else(|| default_title(opts.summary.as_deref(), &commits, record));
        let body = opts
            .body
            .clone()
            .unwrap_or_else(|| default_body(opts.summary.as_deref(), &commits, record));
        let pr = client
            .create_pull(&NewPull {
                title: &title,
                head: &branch,
                base: &base,
                body: &body,
                draft: opts.draft,
            })
            .await?;
        Ok((pr, true))
    }
    .await;
    match result {
        Ok((pr, created)) => {
            step.done(Some(&format!(
                "#{} {}",
                pr.number,
                if created { "opened" } else { "updated" }
            )));
            outcome.pull_request = Some(PullRequestOutcome {
                number: pr.number,
                url: pr.html_url,
                created,
            });
            Ok(outcome)
        }
        Err(e) => {
            step.fail(None);
            Err(github_error(e, &branch, &shown, token_var))
        }
    }
}

fn push_error(e: DeliverError, branch: &str, token_var: &str) -> CliError {
    let err = match &e {
        DeliverError::NoCommits => CliError::usage(e.to_string())
            .hint("commit the work in the sandbox first, e.g. `rclaude exec -- git commit -am \"...\"`"),
        DeliverError::ForeignBranch { .. } => CliError::sync(e.to_string()).hint(format!(
            "someone else's {branch} is there: delete or rename it upstream if it is not needed, \
             or push elsewhere (`rclaude exec -- git push <url> HEAD:<another-branch>`)"
        )),
        DeliverError::Auth { token_given, .. } => {
            let hint = if *token_given {
                format!("the token in ${token_var} cannot push to this repository: give it write access (GitHub: `contents: write`), or use another token")
            } else {
                format!("export {token_var}=<a token with push rights> (`[git] token_secret` names the variable)")
            };
            CliError::auth(e.to_string()).hint(hint)
        }
        DeliverError::Unreachable { .. } => CliError::unavailable(e.to_string()).hint(
            "the sandbox must reach the upstream: check the remote URL (`git remote -v`) and the sandbox's network",
        ),
        DeliverError::Rejected { .. } => CliError::sync(e.to_string()).hint(
            "nothing was overwritten; pull the sandbox's work (`rclaude pull`), resolve it, or ask the repository's admins about the rule that refused it",
        ),
        DeliverError::Sandbox(_) => CliError::unavailable(e.to_string()),
        DeliverError::NotARepository { .. } | DeliverError::UnknownRef { .. } => {
            CliError::usage(e.to_string())
        }
        DeliverError::Protocol(_) => CliError::internal(e.to_string()),
    };
    err.caused_by(e)
}

fn github_error(e: GitHubError, branch: &str, shown: &str, token_var: &str) -> CliError {
    let pushed = format!("{branch} is pushed to {shown}");
    let err = match &e {
        GitHubError::Unauthorized { .. } | GitHubError::Forbidden { .. } => {
            CliError::auth(e.to_string()).hint(format!(
                "{pushed}; the token in ${token_var} needs `pull requests: write` on the repository"
            ))
        }
        GitHubError::NotFound { .. } => CliError::config(e.to_string()).hint(format!(
            "{pushed}; check that the remote names a GitHub repository the token can see (GITHUB_API_URL for GitHub Enterprise)"
        )),
        GitHubError::Invalid { .. } => {
            CliError::usage(e.to_string()).hint(format!("{pushed}; check --base"))
        }
        GitHubError::Api { .. } | GitHubError::Unreachable { .. } => {
            CliError::unavailable(e.to_string())
                .hint(format!("{pushed}; run `rclaude pr` again to open the pull request"))
        }
    };
    err.caused_by(e)
}

/// Whether the sandbox's work tree differs from its HEAD.
async fn has_uncommitted(sandbox: &dyn Sandbox, workdir: &str) -> bool {
    let req = ExecRequest::argv(["git", "status", "--porcelain", "--untracked-files=normal"])
        .cwd(workdir);
    match crate::provider::run(sandbox, req).await {
        Ok(o) if o.status.success() => !o.stdout_str().trim().is_empty(),
        _ => false,
    }
}

/// Subjects of the commits the sandbox made on top of what was last synced (newest first).
async fn commit_subjects(sandbox: &dyn Sandbox, record: &SessionRecord) -> Vec<String> {
    let synced = match &record.origin {
        Some(o) => Some(o.commit.clone()),
        None => record
            .sync
            .as_ref()
            .and_then(|v| serde_json::from_value::<SyncState>(v.clone()).ok())
            .and_then(|s| s.head),
    };
    let range = match synced {
        Some(h) => format!("{h}..HEAD"),
        None => "HEAD".to_string(),
    };
    let req = ExecRequest::argv(["git", "log", "--format=%s", "-n", "50", &range])
        .cwd(record.workdir.as_str());
    match crate::provider::run(sandbox, req).await {
        Ok(o) if o.status.success() => o
            .stdout_str()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn first_line(s: &str, max: usize) -> Option<String> {
    let line = s.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.trim_start_matches('#').trim();
    Some(if line.chars().count() > max {
        let cut: String = line.chars().take(max - 1).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    })
}

/// One commit: its subject. Otherwise the run's summary, the newest commit, or the session.
fn default_title(summary: Option<&str>, commits: &[String], record: &SessionRecord) -> String {
    if commits.len() == 1 {
        return commits[0].clone();
    }
    summary
        .and_then(|s| first_line(s, 72))
        .or_else(|| commits.first().cloned())
        .unwrap_or_else(|| format!("Work from rclaude session {}", branch_for(record)))
}

fn default_body(summary: Option<&str>, commits: &[String], record: &SessionRecord) -> String {
    let mut body = String::new();
    if let Some(s) = summary.map(str::trim).filter(|s| !s.is_empty()) {
        body.push_str(s);
        body.push_str("\n\n");
    }
    if !commits.is_empty() {
        body.push_str("Commits:\n");
        for c in commits.iter().rev() {
            body.push_str(&format!("- {c}\n"));
        }
        body.push('\n');
    }
    body.push_str(&format!(
        "Pushed by rclaude from session `{}`.",
        record.session_id
    ));
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SessionRecord {
        serde_json::from_value(serde_json::json!({
            "version": 1, "repo_root": "/r", "provider": "local", "sandbox_id": "sb",
            "session_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "workdir": "/w",
            "created_at": "2026-12-04T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn branch_is_short_and_valid() {
        assert_eq!(branch_for(&record()), "rclaude/1b4e28ba");
    }

    #[test]
    fn titles_and_bodies_say_what_the_work_was() {
        let r = record();
        let one = vec!["Fix the parser".to_string()];
        assert_eq!(default_title(Some("Done."), &one, &r), "Fix the parser");
        let two = vec!["b".to_string(), "a".to_string()];
        assert_eq!(
            default_title(Some("\n## Added retries to the client\nmore"), &two, &r),
            "Added retries to the client"
        );
        assert_eq!(default_title(None, &two, &r), "b");
        assert_eq!(
            default_title(None, &[], &r),
            "Work from rclaude session rclaude/1b4e28ba"
        );
        let long = "x".repeat(100);
        assert_eq!(default_title(Some(&long), &two, &r).chars().count(), 72);
        let body = default_body(Some("Summary."), &two, &r);
        assert!(
            body.starts_with("Summary.\n\nCommits:\n- a\n- b\n"),
            "{body}"
        );
        assert!(body.contains(&r.session_id));
    }
}
