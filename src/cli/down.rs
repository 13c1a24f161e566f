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
#[command(after_help = "Examples:\n  rclaude down\n  rclaude down --yes")]
pub struct Args {
    /// Don't ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// Don't bring unpulled sandbox work back first.
    #[arg(long)]
    pub discard: bool,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
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
