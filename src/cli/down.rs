//! `rclaude down`: destroy the sandbox and its files.

use std::io::{BufRead, IsTerminal, Write};

use super::GlobalArgs;
use super::context::Ctx;
use crate::error::{CliError, CliResult};

/// Destroy this repository's sandbox and everything in it.
///
/// Work in the sandbox that is not on this machine yet (commits, uncommitted edits) is first
/// brought back as a local branch, as `rclaude pull` does, unless `--discard` is given.
/// Asks for confirmation unless `--yes`; in a non-interactive session `--yes` is required.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  rclaude down\n  rclaude down --yes\n  \
    rclaude ls                                  # find a leftover sandbox's id\n  \
    rclaude down --sandbox local-1f2e3d4c5b6a --yes\n  \
    rclaude down --sandbox sbx_abc123 --provider e2b")]
pub struct Args {
    /// Don't ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// Don't bring unpulled sandbox work back first.
    #[arg(long)]
    pub discard: bool,
    /// Destroy this sandbox (an id from `rclaude ls`) instead of this repository's, e.g. one a
    /// crashed `ci` run left behind. Works outside a repository.
    #[arg(long, value_name = "ID")]
    pub sandbox: Option<String>,
    /// With --sandbox: its provider (default: this repository's, else local).
    #[arg(long, value_name = "NAME", requires = "sandbox")]
    pub provider: Option<String>,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    if let Some(id) = &args.sandbox {
        let ctx = Ctx::load(g).ok();
        let is_ours = ctx
            .as_ref()
            .and_then(|c| c.store.load().ok().flatten())
            .is_some_and(|r| &r.sandbox_id == id);
        if !is_ours {
            return destroy_by_id(ctx.as_ref(), id, args.provider.as_deref(), args.yes).await;
        }
    }
    let ctx = Ctx::load(g)?;
    let _lock = ctx.store.lock()?;
    let Some(record) = ctx.store.load()? else {
        ctx.ui.info(format!(
            "No sandbox for {}; nothing to do.",
            ctx.repo.root.display()
        ));
        return Ok(0);
    };
    if !args.yes
        && !confirm(&format!(
            "Destroy sandbox {} ({}) and all its files?",
            record.sandbox_id, record.provider
        ))?
    {
        ctx.ui.info("Kept the sandbox.");
        return Ok(1);
    }
    let provider = ctx.provider_for(&record)?;
    if !args.discard && provider.info(&record.sandbox_id).await?.is_some() {
        super::pull::rescue_before_destroy(&ctx, &record).await?;
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
    ctx.reporter
        .event(&record, "stopped", serde_json::json!({}));
    ctx.reporter.flush().await;
    Ok(0)
}

/// `down --sandbox ID` for a sandbox no session record of this repository names.
async fn destroy_by_id(
    ctx: Option<&Ctx>,
    id: &str,
    provider: Option<&str>,
    yes: bool,
) -> CliResult {
    let name = match (provider, ctx) {
        (Some(p), _) => p.to_string(),
        (None, Some(c)) => c.config.sandbox.provider.as_str().to_string(),
        (None, None) => "local".to_string(),
    };
    let provider = crate::provider::for_name(&name)?;
    if provider.info(id).await?.is_none() {
        return Err(CliError::unavailable(format!(
            "there is no sandbox {id} on provider \"{name}\""
        ))
        .hint("`rclaude ls --provider NAME` lists the sandboxes rclaude made"));
    }
    if !yes
        && !confirm(&format!(
            "Destroy sandbox {id} ({name}) and all its files? Its work cannot be pulled first: \
             no session record on this machine names it."
        ))?
    {
        eprintln!("Kept the sandbox.");
        return Ok(1);
    }
    match provider.kill(id).await {
        Ok(()) | Err(crate::provider::ProviderError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    // A ci run's record that named it is now stale.
    for orphan in crate::session::ci_runs::orphans() {
        if orphan.record.is_some_and(|r| r.sandbox_id == id) {
            let _ = std::fs::remove_dir_all(&orphan.dir);
        }
    }
    eprintln!("Destroyed sandbox {id} ({name}).");
    Ok(0)
}

/// Ask a yes/no question on the terminal; refuse when not interactive.
pub fn confirm(question: &str) -> CliResult<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!(
            "{question} Refusing to answer for you in a non-interactive session"
        ))
        .hint("pass --yes to confirm"));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::io("reading the answer", e))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
