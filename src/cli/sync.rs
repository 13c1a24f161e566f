//! `rclaude sync`: push the work tree into the sandbox now.

use super::GlobalArgs;
use crate::error::{CliError, CliResult};
use crate::ops::sync::push_with;

/// Sync your work tree into the sandbox (what `up` does, without setup).
///
/// Your commits travel as a git bundle holding only what the sandbox lacks; uncommitted and
/// untracked (not ignored) files travel as a snapshot commit made through a temporary index, so
/// your index, stash, refs and work tree are never touched. Edits made in the sandbox since the
/// last sync are never discarded: they are committed to `refs/rclaude/saved/<time>` on both sides
/// first, and rclaude tells you how to look at them.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude sync\n  rclaude sync --full     # resend everything, e.g. after a history rewrite"
)]
pub struct Args {
    /// Send a full bundle instead of only what the sandbox lacks.
    #[arg(long)]
    pub full: bool,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ctx = g.ctx().await?;
    let _lock = ctx.store.lock()?;
    let mut record = ctx.require_session()?;
    let sandbox = ctx.connect(&record).await?;
    let report = push_with(&ctx, &record, &*sandbox, args.full).await?;
    record.sync =
        Some(serde_json::to_value(&report.state).map_err(|e| CliError::internal(e.to_string()))?);
    ctx.store.save(&record)?;
    Ok(0)
}
