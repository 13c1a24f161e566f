//! `rclaude checkpoints`: the copies of a session's sandbox work kept on this machine and on
//! the server.

use super::GlobalArgs;
use crate::error::{CliError, CliResult};
use crate::gitsync::checkpoint::Checkpoint;

/// List the checkpoints of the session's work: copies of the sandbox's commits and
/// uncommitted edits taken off the sandbox when it is paused, after `run`, before `down`
/// destroys it, and when an attached Claude Code run ends (only what changed crosses the
/// wire; the newest `[checkpoints] keep`, default 20, are kept).
///
/// With a server configured (`rclaude login`), the newest is also kept there, so the work
/// survives this machine too: `rclaude pull --session ID` in another clone takes it back.
///
/// `rclaude pull` uses the latest one by itself when the sandbox is gone or cannot be reached;
/// `rclaude pull --checkpoint ID` picks one.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude checkpoints\n  rclaude checkpoints --take\n  rclaude checkpoints -s fix-1 --json\n  rclaude pull --checkpoint 20261204T101500Z\n  rclaude pull --session 6f1c…   # on another machine: the work kept on the server"
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
    let (ctx, record) = match g.selected().await? {
        super::Selected::Elsewhere(record) if !args.take => (g.local_ctx()?, *record),
        _ => {
            let ctx = g.ctx().await?;
            if !ctx.local_checkout {
                return Err(CliError::usage(
                    "a session started from a URL keeps no checkpoints on this machine (it has no local checkout)",
                ));
            }
            let record = ctx.require_session()?;
            (ctx, record)
        }
    };
    // The server's checkpoints, when keeping the newest there just read them.
    let mut server_listed = None;
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
        server_listed = crate::ops::checkpoint::keep_on_server(&ctx, &record).await;
    }
    let here = crate::ops::checkpoint::list(&ctx, &record)?;
    let listed = match server_listed {
        Some(list) => Ok(Some(list)),
        None => crate::ops::checkpoint_server::list(&ctx, &record.session_id).await,
    };
    let server = match listed {
        Ok(s) => s.unwrap_or_default(),
        Err(e) => {
            ctx.ui.warn(format!(
                "cannot list the checkpoints kept on the server: {}",
                e.message
            ));
            Vec::new()
        }
    };
    // Every checkpoint once, oldest first, with where it is kept.
    let mut all: Vec<(Checkpoint, bool, bool)> =
        here.into_iter().map(|c| (c, true, false)).collect();
    for cp in server {
        match all.iter_mut().find(|(c, _, _)| c.id == cp.id) {
            Some(e) => e.2 = true,
            None => all.push((cp, false, true)),
        }
    }
    all.sort_by(|a, b| crate::gitsync::checkpoint::id_order(&a.0.id, &b.0.id));
    if args.json {
        let list: Vec<serde_json::Value> = all
            .iter()
            .map(|(cp, here, server)| {
                let mut v = serde_json::to_value(cp).unwrap_or_default();
                v["here"] = (*here).into();
                v["on_server"] = (*server).into();
                v
            })
            .collect();
        let mut text =
            serde_json::to_string_pretty(&list).map_err(|e| CliError::internal(e.to_string()))?;
        text.push('\n');
        return super::output::write_stdout(text.as_bytes());
    }
    if all.is_empty() {
        ctx.ui.info(
            "No checkpoints yet: one is taken at `pause`, after `run` and when an attached Claude Code run ends",
        );
        return Ok(0);
    }
    let mut out = String::from("ID                   TAKEN AT  KEPT         TIP       CONTENT\n");
    for (cp, here, server) in all.iter().rev() {
        let content = if cp.wip {
            "commits + uncommitted edits"
        } else {
            "commits"
        };
        let kept = match (here, server) {
            (true, true) => "here+server",
            (true, false) => "here",
            _ => "server",
        };
        out.push_str(&format!(
            "{:<20} {:<9} {:<12} {:<9} {content} on {}\n",
            cp.id,
            cp.reason,
            kept,
            &cp.tip[..cp.tip.len().min(9)],
            cp.label
        ));
    }
    super::output::write_stdout(out.as_bytes())
}
