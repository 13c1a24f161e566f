//! `rclaude wait [RUN]`: block until a Claude Code run in the sandbox ends, exit with its status.

use super::GlobalArgs;
use crate::claude::run::RunEnd;
use crate::error::{CliError, CliResult, ErrorKind};
use crate::ops::claude_run::{Interrupt, Show, follow, resolve_run};

/// Wait until a Claude Code run (default: the session's latest) ends, printing nothing, and
/// exit with its exit code: for scripts, and for "tell me when it is done" (`rclaude wait -s
/// fix-1 && notify-send done`).
///
/// When the run ends, `wait` also records it: the session's server (when logged in) gets its
/// `task_finished` event once, however many waits saw the end, and a checkpoint of the
/// sandbox's work is taken. `--notify` shows a desktop notification too; `claude --detach`
/// starts such a wait in the background when this machine has a graphical session.
///
/// A run that already ended answers at once. A run that stopped without finishing (the sandbox
/// was paused or restarted) exits 69; `--timeout` expiring exits 124 and leaves the run going.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude claude --detach \"port the parser\" && rclaude wait\n  rclaude wait -s fix-1 --timeout 30m\n  rclaude wait 20261124T101500Z-1a2b; echo \"exit $?\"\n  rclaude wait --notify &        # a desktop notification when it is done"
)]
pub struct Args {
    /// The run to wait for (default: the latest one).
    #[arg(value_name = "RUN")]
    pub run: Option<String>,
    /// Give up after this long (e.g. 90s, 30m); exit 124.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Show a desktop notification when the run ends (`notify-send`, or `osascript` on macOS;
    /// nothing without a graphical session, or with RCLAUDE_NOTIFY_DESKTOP=0).
    #[arg(long)]
    pub notify: bool,
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
    if let Some(end) = &followed.end {
        ended(
            &ctx,
            &record,
            &*sandbox,
            &files,
            end,
            followed.exit_code(),
            args.notify,
        )
        .await;
    }
    match followed.end {
        None => Ok(130), // Ctrl-C: detached, the run goes on
        Some(RunEnd::Lost) => Err(CliError::unavailable(format!(
            "Claude Code run {} stopped without finishing",
            files.id
        ))
        .hint("its edits so far are in the sandbox: `rclaude pull`; `rclaude claude --continue \"PROMPT\"` picks the conversation up again")),
        Some(_) => Ok(followed.exit_code()),
    }
}

/// What follows the end of a run nobody was attached to: the server's `task_finished` (keyed by
/// the run, so several waits report it once), a checkpoint, the desktop notification.
async fn ended(
    ctx: &crate::ops::context::Ctx,
    record: &crate::session::SessionRecord,
    sandbox: &dyn crate::provider::Sandbox,
    files: &crate::claude::run::RunFiles,
    end: &RunEnd,
    code: i32,
    notify: bool,
) {
    let id = files.id.as_str();
    let meta = crate::claude::run::meta(sandbox, files)
        .await
        .ok()
        .flatten();
    // Every wait must send the same event: the run's length comes from the sandbox's files
    // (start recorded in its metadata, end = when its exit marker was written), not our clock.
    let duration_ms = run_duration_ms(sandbox, files, meta.as_ref()).await;
    let mut data = serde_json::json!({
        "task": "claude", "run": id, "exit_code": code, "duration_ms": duration_ms, "detached": true,
    });
    if matches!(end, RunEnd::Lost) {
        data["lost"] = true.into();
    }
    ctx.reporter.event_once(
        record,
        "task_finished",
        &format!("claude-run-{id}-finished"),
        data,
    );
    ctx.reporter.flush().await;
    crate::ops::checkpoint::take(ctx, record, sandbox, "claude").await;
    if notify {
        let title = meta.map(|m| m.title).unwrap_or_default();
        let how = match end {
            RunEnd::Exited(_) if code == 0 => "finished".to_string(),
            RunEnd::Exited(_) => format!("ended with exit code {code}"),
            RunEnd::Lost => "stopped without finishing".to_string(),
        };
        let session = ctx.session_name.as_deref().unwrap_or("default session");
        crate::notify::show(
            &format!("Claude Code {how}"),
            &format!(
                "{} ({session}): {title}\nrclaude pull brings its work back",
                ctx.repo.name
            ),
        );
    }
}

/// From the run's recorded start to its exit marker's modification time; 0 when either is
/// unknown (a run that was lost has no marker).
async fn run_duration_ms(
    sandbox: &dyn crate::provider::Sandbox,
    files: &crate::claude::run::RunFiles,
    meta: Option<&crate::claude::run::RunMeta>,
) -> u64 {
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    let Some(start) = meta.and_then(|m| parse(&m.started_at)) else {
        return 0;
    };
    let end = match sandbox.stat(&files.exit()).await {
        Ok(Some(e)) => e.modified_time.as_deref().and_then(parse),
        _ => None,
    };
    end.map(|e| (e - start).whole_milliseconds().max(0) as u64)
        .unwrap_or(0)
}
