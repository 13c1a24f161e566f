//! `rclaude down`: destroy the sandbox and its files (this repository's, or any by id).

use super::GlobalArgs;
use crate::config::{Config, ProviderKind};
use crate::error::{CliError, CliResult};
use crate::provider::ProviderError;
use crate::session::{Repo, SessionStore};

/// Destroy this repository's sandbox and everything in it.
///
/// Work in the sandbox that is not on this machine yet (commits, uncommitted edits) is first
/// brought back as a local branch, as `rclaude pull` does, unless `--discard` is given.
/// Asks for confirmation unless `--yes`; in a non-interactive session `--yes` is required.
///
/// `--sandbox ID` destroys any sandbox rclaude made, by id (as `rclaude ls` lists them), e.g.
/// one left behind by a `rclaude ci` run that was killed; its work is not pulled back unless it
/// is this repository's sandbox.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude down\n  rclaude down --yes\n  rclaude ls && rclaude down --sandbox local-3f2a9c0d1e4b --yes"
)]
pub struct Args {
    /// Don't ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// Don't bring unpulled sandbox work back first.
    #[arg(long)]
    pub discard: bool,
    /// Destroy this sandbox (an id from `rclaude ls`) instead of this repository's.
    #[arg(long, value_name = "ID")]
    pub sandbox: Option<String>,
    /// With --sandbox: its provider (default: the one of a ci run that made it, else
    /// .rclaude.toml's, else local).
    #[arg(long, value_name = "NAME", value_parser = super::args::parse_kind, requires = "sandbox")]
    pub provider: Option<ProviderKind>,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    if let Some(id) = args.sandbox.clone() {
        let repo = Repo::discover(&g.start_dir()?).ok();
        let own = match &repo {
            Some(r) => SessionStore::for_repo(r).load()?,
            None => None,
        };
        if own.is_none_or(|rec| rec.sandbox_id != id) {
            return down_by_id(g, &args, &id, repo.as_ref()).await;
        }
    }
    let ctx = g.ctx().await?;
    let _lock = ctx.store.lock()?;
    let Some(record) = ctx.store.load()? else {
        ctx.ui.info(format!(
            "No sandbox for {}; nothing to do.",
            ctx.repo.root.display()
        ));
        return Ok(0);
    };
    if !args.yes
        && !crate::ui::confirm(&format!(
            "Destroy sandbox {} ({}) and all its files?",
            record.sandbox_id, record.provider
        ))?
    {
        ctx.ui.info("Kept the sandbox.");
        return Ok(1);
    }
    let provider = ctx.provider_for(&record)?;
    if !args.discard && provider.info(&record.sandbox_id).await?.is_some() {
        if ctx.local_checkout {
            crate::ops::pull::rescue_before_destroy(&ctx, &record).await?;
            // The last state, also kept on the server (when one is configured) for as long as
            // it keeps a stopped session's checkpoints.
            if let Ok(sandbox) = ctx.connect(&record).await {
                crate::ops::checkpoint::take(&ctx, &record, &*sandbox, "down").await;
            }
        } else {
            refuse_unsaved_work(&ctx, &record).await?;
        }
    }
    let step = ctx.ui.step("Destroying sandbox");
    match provider.kill(&record.sandbox_id).await {
        Ok(()) | Err(crate::provider::ProviderError::NotFound(_)) => {
            step.done(Some(&record.sandbox_id))
        }
        Err(e) => {
            step.fail(None);
            return Err(e.into());
        }
    }
    ctx.store.remove()?;
    if !ctx.local_checkout {
        let _ = std::fs::remove_dir_all(&ctx.repo.root);
    }
    ctx.reporter
        .event(&record, "stopped", serde_json::json!({}));
    ctx.reporter.flush().await;
    Ok(0)
}

/// A session started from a URL has no checkout to pull into before it is destroyed: refuse
/// while its sandbox holds commits that were never pushed, or uncommitted edits.
async fn refuse_unsaved_work(
    ctx: &crate::ops::context::Ctx,
    record: &crate::session::SessionRecord,
) -> CliResult<()> {
    let sandbox = ctx.connect(record).await?;
    let script = "git status --porcelain --untracked-files=normal | head -n 1 | sed 's/^/dirty /'; \
        git rev-list -n 1 HEAD --not --remotes --glob='refs/rclaude/pushed/*' 2>/dev/null | sed 's/^/commit /'";
    let out = crate::provider::run(
        &*sandbox,
        crate::provider::ExecRequest::argv(["sh", "-c", script]).cwd(record.workdir.as_str()),
    )
    .await?;
    let text = out.stdout_str();
    let what = match (text.contains("dirty "), text.contains("commit ")) {
        (false, false) => return Ok(()),
        (true, false) => "uncommitted edits",
        (false, true) => "commits that were never pushed",
        (true, true) => "commits that were never pushed and uncommitted edits",
    };
    let short: String = record.session_id.chars().take(8).collect();
    Err(CliError::sync(format!(
        "the sandbox of session {short} has {what}, and this session has no local checkout to bring them back to"
    ))
    .hint(format!(
        "`rclaude pr --session {short}` delivers them (or `rclaude pull --session {short}` inside a clone of the repository); `--discard` destroys them"
    )))
}

/// `down --sandbox ID` for a sandbox that is not this repository's.
async fn down_by_id(g: &GlobalArgs, args: &Args, id: &str, repo: Option<&Repo>) -> CliResult {
    let ci_run = crate::ops::leftovers::run_of(id);
    let config = match repo {
        Some(r) if r.config_path().exists() => Some(Config::load(&r.config_path())?),
        _ => None,
    };
    let kind = args
        .provider
        .or_else(|| {
            let name = ci_run.as_ref()?.record.as_ref()?.provider.clone();
            ProviderKind::from_name(&name)
        })
        .or(config.as_ref().map(|c| c.sandbox.provider))
        .unwrap_or_default();
    if let Some(run) = ci_run.as_ref().filter(|r| r.alive) {
        return Err(CliError::usage(format!(
            "sandbox {id} belongs to a `rclaude ci` run that is still running (pid {})",
            run.pid
        ))
        .hint("stop that run instead (it destroys its sandbox when it ends)"));
    }
    if !args.yes
        && !crate::ui::confirm(&format!(
            "Destroy sandbox {id} ({}) and all its files?",
            kind.as_str()
        ))?
    {
        eprintln!("Kept the sandbox.");
        return Ok(1);
    }
    let provider = match &config {
        Some(c) if c.sandbox.provider == kind => {
            crate::provider::select::for_settings(c.sandbox.provider, c.sandbox.project.as_deref())?
        }
        _ => crate::provider::select::for_kind(kind)?,
    };
    match provider.kill(id).await {
        Ok(()) => {}
        Err(ProviderError::NotFound(_)) => {
            crate::ops::leftovers::forget(id);
            return Err(CliError::unavailable(format!(
                "there is no sandbox {id} on provider \"{}\"",
                kind.as_str()
            ))
            .hint("`rclaude ls` lists the sandboxes (`--provider NAME` for another provider)"));
        }
        Err(e) => return Err(e.into()),
    }
    crate::ops::leftovers::forget(id);
    if !g.quiet {
        eprintln!("Destroyed sandbox {id} ({}).", kind.as_str());
    }
    Ok(0)
}
