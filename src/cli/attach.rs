//! `rclaude attach [RUN]`: follow a Claude Code run in the sandbox (the transcript so far, then
//! live until it ends).

use super::GlobalArgs;
use crate::error::CliResult;
use crate::ops::claude_run::{Interrupt, Show, describe, finish, follow, resolve_run};

/// Follow a Claude Code run in the sandbox: replay its transcript so far, then live until it ends.
///
/// Runs started with `rclaude claude --detach` (or whose CLI went away) keep working in the
/// sandbox; `attach` picks them up from any machine. Ctrl-C detaches again without stopping the
/// run. Exits with Claude Code's exit code once the run ended.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude attach\n  rclaude attach --pull\n  rclaude attach 20261124T101500Z-1a2b --json"
)]
pub struct Args {
    /// The run to follow (default: the latest one).
    #[arg(value_name = "RUN")]
    pub run: Option<String>,
    /// Print Claude Code's raw stream-json events instead of the transcript.
    #[arg(long)]
    pub json: bool,
    /// When the run ends, bring its edits back as the local branch (like `rclaude pull`).
    #[arg(long)]
    pub pull: bool,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ctx = g.ctx().await?;
    let record = ctx.require_session()?;
    let sandbox = ctx.connect(&record).await?;
    let _alive = crate::ops::alive::keep_alive(&ctx, &record);
    let files = resolve_run(&*sandbox, &record, args.run.as_deref()).await?;
    describe(&ctx, &*sandbox, &files).await;
    let followed = follow(
        &ctx,
        &*sandbox,
        &files,
        Show::json_or_transcript(args.json),
        true,
        Interrupt::Detach,
    )
    .await?;
    finish(&ctx, &files, &followed, args.pull).await
}
