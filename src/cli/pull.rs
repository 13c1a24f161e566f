//! `rclaude pull`: bring the sandbox's commits and edits back as a local branch.

use super::GlobalArgs;
use crate::error::{CliError, CliResult};
use crate::gitsync::{ApplyOutcome, PullReport};
use crate::ops::context::Ctx;
use crate::ops::pull::pull;

/// Bring the sandbox's commits and uncommitted edits back as local branch `rclaude/<branch>`.
///
/// Your checked-out branch and work tree are not touched unless `--apply`, which only proceeds
/// when it cannot lose local work (fast-forward of an unchanged tree, or a clean merge into a
/// clean tree) and explains otherwise.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude pull\n  rclaude pull --apply\n  rclaude pull --branch review/agent-work\n  rclaude pull --ref refs/rclaude/saved/20261124T101500Z\n  rclaude pull --json | jq -r .branch\n  rclaude pull --checkpoint 20261204T101500Z\n  rclaude pull --transcript && claude --resume   # continue the conversation here"
)]
pub struct Args {
    /// Also bring the result into your checked-out branch and work tree (only when safe).
    #[arg(long)]
    pub apply: bool,
    /// Local branch to write (default from `[sync] pull_branch`, "rclaude/{branch}").
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// Pull a specific sandbox ref instead of its current work (e.g. a saved ref).
    #[arg(long = "ref", value_name = "REF")]
    pub sandbox_ref: Option<String>,
    /// Pull from this checkpoint of the session (`rclaude checkpoints` lists them) instead of
    /// the sandbox. Without it, `pull` falls back to the latest checkpoint by itself when the
    /// sandbox is gone or cannot be reached.
    #[arg(long, value_name = "ID", conflicts_with_all = ["apply", "sandbox_ref"])]
    pub checkpoint: Option<String>,
    /// Also bring the session's latest Claude Code conversation into this machine's Claude Code
    /// projects directory, so `claude --resume ID` run in this checkout continues it.
    #[arg(long, conflicts_with = "checkpoint")]
    pub transcript: bool,
    /// Print what was pulled as JSON on stdout (branch, tip, commits, files changed, ...).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    // A session started from a URL is pulled into the checkout we are in.
    let (ctx, record, elsewhere) = match g.selected().await? {
        super::Selected::Started(_, record) => (
            g.local_ctx().map_err(|e| {
                e.hint("`pull --session ID` brings a started session's work into a clone of its repository: run it inside one")
            })?,
            *record,
            false,
        ),
        // Another machine's session: its checkpoints on the server are all there is to reach.
        super::Selected::Elsewhere(record) => (g.local_ctx()?, *record, true),
        _ => {
            let ctx = g.ctx().await?;
            let record = ctx.require_session()?;
            (ctx, record, false)
        }
    };
    if elsewhere && (args.transcript || args.apply || args.sandbox_ref.is_some()) {
        return Err(CliError::usage(
            "this session's sandbox is on another machine: only its checkpoints can be pulled here (no --transcript, --apply or --ref)",
        ));
    }
    let _lock = ctx.store.lock()?;
    let template = args
        .branch
        .clone()
        .unwrap_or_else(|| ctx.config.sync.pull_branch.clone());
    let report = if args.checkpoint.is_some() || elsewhere {
        let (cp, report) =
            crate::ops::pull::pull_checkpoint(&ctx, &record, template, args.checkpoint.as_deref())
                .await?;
        ctx.ui.info(format!(
            "From checkpoint {} (taken at {}): {}",
            cp.id,
            cp.reason,
            report.summary()
        ));
        report
    } else {
        pull(
            &ctx,
            &record,
            template,
            args.apply,
            args.sandbox_ref.clone(),
            "Pulling sandbox work",
        )
        .await?
    };
    print_report(&ctx, &report);
    let conversation = if args.transcript {
        Some(take_conversation_home(&ctx, &record, &report).await?)
    } else {
        None
    };
    if args.json {
        let mut value = serde_json::to_value(&report)
            .map_err(|e| CliError::internal(format!("cannot encode the pull report: {e}")))?;
        if let (Some(c), Some(obj)) = (&conversation, value.as_object_mut()) {
            obj.insert(
                "transcript".into(),
                serde_json::to_value(c).unwrap_or_default(),
            );
        }
        let mut text = serde_json::to_string_pretty(&value)
            .map_err(|e| CliError::internal(format!("cannot encode the pull report: {e}")))?;
        text.push('\n');
        super::output::write_stdout(text.as_bytes())?;
    }
    // `--apply` that changed nothing because it could lose work is a refusal (exit 65): a
    // script must not go on as if the work were in place. The pulled branch is there regardless.
    if let Some(ApplyOutcome::Refused { reason, .. }) = &report.applied {
        return Err(
            CliError::sync(format!("--apply refused: {reason}")).hint(format!(
                "the sandbox's work is on branch {}; take it with the commands above",
                report.branch.as_deref().unwrap_or("?")
            )),
        );
    }
    Ok(0)
}

/// `--transcript`: the conversation next to the pulled branch, with how to continue it.
async fn take_conversation_home(
    ctx: &Ctx,
    record: &crate::session::SessionRecord,
    report: &crate::gitsync::PullReport,
) -> CliResult<crate::claude::transcript::Stored> {
    let on_branch = |e: CliError| {
        e.hint(format!(
            "the sandbox's work itself was pulled (branch {})",
            report.branch.as_deref().unwrap_or("?")
        ))
    };
    let sandbox = ctx.connect(record).await.map_err(on_branch)?;
    let stored = crate::ops::transcript::take_home(ctx, &sandbox, record, None)
        .await
        .map_err(on_branch)?;
    if let Some(aside) = &stored.kept_aside {
        ctx.ui.warn(format!(
            "this machine's copy of the conversation had gone its own way; it was kept as {}",
            aside.display()
        ));
    }
    ctx.ui.info(format!(
        "Conversation {} saved to {}\n  continue it here: claude --resume {}",
        stored.session_id,
        stored.path.display(),
        stored.session_id
    ));
    Ok(stored)
}

fn print_report(ctx: &Ctx, r: &PullReport) {
    for line in r.hint_lines() {
        ctx.ui.info(line);
    }
}
