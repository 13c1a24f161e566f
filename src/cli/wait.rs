//! `rclaude wait [RUN]`: block until a Claude Code run in the sandbox ends, exit with its status.

use super::GlobalArgs;
use crate::error::{CliError, CliResult, ErrorKind};
use crate::ops::claude_run::{Interrupt, Show, follow, resolve_run};

/// Wait until a Claude Code run (default: the session's latest) ends, printing nothing, and
/// exit with its exit code: for scripts, and for "tell me when it is done" (`rclaude wait -s
/// fix-1 && notify-send done`).
///
/// A run that already ended answers at once. A run that stopped without finishing (the sandbox
/// was paused or restarted) exits 69; `--timeout` expiring exits 124 and leaves the run going.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude claude --detach \"port the parser\" && rclaude wait\n  rclaude wait -s fix-1 --timeout 30m\n  rclaude wait 20261124T101500Z-1a2b; echo \"exit $?\""
)]
pub struct Args {
    /// The run to wait for (default: the latest one).
    #[arg(value_name = "RUN")]
    pub run: Option<String>,
    /// Give up after this long (e.g. 90s, 30m); exit 124.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let timeout = args
        .timeout
        .as_deref()
        .map(super::args::parse_duration)
        .transpose()?;
    let ctx = g.ctx().await?;
    let record = ctx.require_session()?;
    let sandbox = ctx.connect(&record).await?;
    let _alive = crate::ops::alive::keep_alive(&ctx, &record);
    let files = resolve_run(&*sandbox, &record, args.run.as_deref()).await?;
    let waiting = follow(
        &ctx,
        &*sandbox,
        &files,
        Show::Nothing,
        true,
        Interrupt::Detach,
    );
    let followed = match timeout {
        Some(t) => tokio::time::timeout(t, waiting).await.map_err(|_| {
            CliError {
                exit_code: Some(124),
                ..CliError::new(
                    ErrorKind::Unavailable,
                    format!("Claude Code run {} is still running", files.id),
                )
            }
            .hint("it keeps going in the sandbox; `rclaude wait` again, or `rclaude attach` to follow it")
        })??,
        None => waiting.await?,
    };
    match followed.end {
        None => Ok(130), // Ctrl-C: detached, the run goes on
        Some(crate::claude::run::RunEnd::Lost) => Err(CliError::unavailable(format!(
            "Claude Code run {} stopped without finishing",
            files.id
        ))
        .hint("its edits so far are in the sandbox: `rclaude pull`; `rclaude claude --continue \"PROMPT\"` picks the conversation up again")),
        Some(_) => Ok(followed.exit_code()),
    }
}
