//! `rclaude pause`: stop the sandbox's compute, keep its files.

use super::GlobalArgs;
use crate::error::CliResult;

/// Pause the sandbox: processes stop (or are frozen, where the provider keeps memory), files stay.
///
/// Paused time is not billed. `rclaude resume` (or any command that needs the sandbox) resumes it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  rclaude pause\n  rclaude resume")]
pub struct Args {}

pub async fn run(g: &GlobalArgs, _args: Args) -> CliResult {
    let ctx = g.ctx().await?;
    let _lock = ctx.store.lock()?;
    let record = ctx.require_session()?;
    let provider = ctx.provider_for(&record)?;
    // Copy the work off first (a provider that loses files on resume loses nothing of ours);
    // an already paused sandbox is not woken up for it.
    if let Ok(Some(info)) = provider.info(&record.sandbox_id).await
        && info.state == crate::provider::SandboxState::Running
        && let Ok(sandbox) = ctx.connect(&record).await
    {
        crate::ops::checkpoint::take(&ctx, &record, &*sandbox, "pause").await;
    }
    let step = ctx.ui.step("Pausing sandbox");
    match provider.pause(&record.sandbox_id).await {
        Ok(()) => {
            step.done(Some(&record.sandbox_id));
            ctx.reporter.event(&record, "paused", serde_json::json!({}));
            ctx.reporter.flush().await;
        }
        Err(e) => {
            step.fail(None);
            return Err(e.into());
        }
    }
    Ok(0)
}
