//! `rclaude pr`: push the session's work to the upstream as a branch and open a pull request.

use super::GlobalArgs;
use crate::error::{CliError, CliResult};
use crate::ops::pr::{PrOptions, PrOutcome, deliver};

/// Push the sandbox's commits to the upstream as branch `rclaude/<session>` and open a pull
/// request for it (or update the one already open), then print its URL.
///
/// The upstream is the URL of `[git] remote` (default `origin`); the push runs in the sandbox,
/// with the token from the variable `[git] token_secret` names (default `GITHUB_TOKEN`) handed
/// to git through a credential helper's environment, never written to a file. A branch that
/// exists upstream and was not pushed by this session is never overwritten. Pull requests go
/// through GitHub's REST API for github.com remotes, or `GITHUB_API_URL` (GitHub Enterprise);
/// other upstreams get the branch only.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude pr\n  rclaude pr --title \"Retry failed uploads\" --draft\n  rclaude pr --base release-2.x --body-file notes.md\n  GITHUB_API_URL=https://ghe.example/api/v3 rclaude pr --json"
)]
pub struct Args {
    /// Pull request title (default: the only commit's subject, or the last Claude Code run's
    /// summary).
    #[arg(long, value_name = "TITLE")]
    pub title: Option<String>,
    /// Read the pull request's description from FILE (`-` for standard input).
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<std::path::PathBuf>,
    /// Open it as a draft.
    #[arg(long)]
    pub draft: bool,
    /// Branch to merge into (default: the repository's default branch).
    #[arg(long, value_name = "BRANCH")]
    pub base: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// The options these arguments ask for.
    pub fn options(&self) -> CliResult<PrOptions> {
        let body = match &self.body_file {
            None => None,
            Some(p) if p.as_os_str() == "-" => {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .map_err(|e| CliError::io("reading the description from standard input", e))?;
                Some(s)
            }
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                CliError::io(format!("reading the description from {}", p.display()), e)
            })?),
        };
        if let Some(t) = &self.title
            && t.trim().is_empty()
        {
            return Err(CliError::usage("--title is empty"));
        }
        if let Some(b) = &self.base
            && !git2::Branch::name_is_valid(b).unwrap_or(false)
        {
            return Err(CliError::usage(format!(
                "--base {b:?} is not a branch name"
            )));
        }
        Ok(PrOptions {
            title: self.title.clone(),
            body,
            draft: self.draft,
            base: self.base.clone(),
            summary: None,
        })
    }
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let opts = args.options()?;
    let ctx = g.ctx().await?;
    let _lock = ctx.store.lock()?;
    let record = ctx.require_session()?;
    let sandbox = ctx.connect(&record).await?;
    let outcome = deliver(&ctx, &record, &*sandbox, &opts).await?;
    print(&ctx.ui, &outcome, args.json)?;
    Ok(0)
}

/// The outcome: JSON, or the pull request's URL on stdout and a line on stderr.
pub fn print(ui: &crate::ops::progress::Out, o: &PrOutcome, json: bool) -> CliResult<()> {
    if json {
        let mut s = serde_json::to_string_pretty(o).unwrap_or_default();
        s.push('\n');
        super::output::write_stdout(s.as_bytes())?;
        return Ok(());
    }
    match &o.pull_request {
        Some(pr) => {
            ui.info(format!(
                "{} pull request #{} for {} ({})",
                if pr.created { "Opened" } else { "Updated" },
                pr.number,
                o.branch,
                &o.commit[..o.commit.len().min(10)]
            ));
            super::output::write_stdout(format!("{}\n", pr.url).as_bytes())?;
        }
        None => {
            ui.info(format!(
                "Pushed {} to {} ({}); {}",
                o.branch,
                o.upstream,
                &o.commit[..o.commit.len().min(10)],
                o.no_pull_request
                    .as_deref()
                    .unwrap_or("no pull request opened")
            ));
            super::output::write_stdout(format!("{}\n", o.branch).as_bytes())?;
        }
    }
    Ok(())
}
