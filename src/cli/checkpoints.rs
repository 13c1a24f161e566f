//! `rclaude checkpoints`: the copies of a session's sandbox work kept on this machine.

use super::GlobalArgs;
use crate::error::{CliError, CliResult};

/// List the checkpoints of the session's work: copies of the sandbox's commits and
/// uncommitted edits taken off the sandbox when it is paused, after `run`, and when an
/// attached Claude Code run ends (only what changed crosses the wire; the newest 20 are kept).
///
/// `rclaude pull` uses the latest one by itself when the sandbox is gone or cannot be reached;
/// `rclaude pull --checkpoint ID` picks one.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude checkpoints\n  rclaude checkpoints --take\n  rclaude checkpoints -s fix-1 --json\n  rclaude pull --checkpoint 20261204T101500Z"
)]
pub struct Args {
    /// Take one now (reason `manual`), then list.
    #[arg(long)]
    pub take: bool,
    /// Print them as JSON (oldest first).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ctx = g.ctx().await?;
    if !ctx.local_checkout {
        return Err(CliError::usage(
            "a session started from a URL keeps no checkpoints on this machine (it has no local checkout)",
        ));
    }
    let record = ctx.require_session()?;
    if args.take {
        let sandbox = ctx.connect(&record).await?;
        use crate::gitsync::checkpoint::Taken;
        match crate::ops::checkpoint::take_now(&ctx, &record, &*sandbox, "manual").await? {
            Taken::New(cp) => ctx.ui.info(format!("Checkpoint {} taken", cp.id)),
            Taken::Unchanged(cp) => ctx
                .ui
                .info(format!("Nothing changed since checkpoint {}", cp.id)),
            Taken::Empty => ctx.ui.info("The sandbox has nothing to keep"),
        }
    }
    let all = crate::ops::checkpoint::list(&ctx, &record)?;
    if args.json {
        let mut text =
            serde_json::to_string_pretty(&all).map_err(|e| CliError::internal(e.to_string()))?;
        text.push('\n');
        return super::output::write_stdout(text.as_bytes());
    }
    if all.is_empty() {
        ctx.ui.info(
            "No checkpoints yet: one is taken at `pause`, after `run` and when an attached Claude Code run ends",
        );
        return Ok(0);
    }
    let mut out = String::from("ID                   TAKEN AT  TIP       CONTENT\n");
    for cp in all.iter().rev() {
        let content = if cp.wip {
            "commits + uncommitted edits"
        } else {
            "commits"
        };
        out.push_str(&format!(
            "{:<20} {:<9} {:<9} {content} on {}\n",
            cp.id,
            cp.reason,
            &cp.tip[..cp.tip.len().min(9)],
            cp.label
        ));
    }
    super::output::write_stdout(out.as_bytes())
}
