//! `rclaude pull`: bring the sandbox's commits and edits back as a local branch.

use super::GlobalArgs;
use super::context::Ctx;
use super::sync::StepProgress;
use crate::error::{CliError, CliResult};
use crate::gitsync::ApplyOutcome;
use crate::gitsync::{self, PullOptions, PullReport, SyncState};
use crate::session::SessionRecord;

/// Bring the sandbox's commits and uncommitted edits back as local branch `rclaude/<branch>`.
///
/// Your checked-out branch and work tree are not touched unless `--apply`, which only proceeds
/// when it cannot lose local work (fast-forward of an unchanged tree, or a clean merge into a
/// clean tree) and explains otherwise.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  rclaude pull\n  rclaude pull --apply\n  rclaude pull --branch review/agent-work\n  rclaude pull --ref refs/rclaude/saved/20261124T101500Z"
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
}

pub async fn run(g: &GlobalArgs, args: Args) -> CliResult {
    let ctx = Ctx::load(g)?;
    let _lock = ctx.store.lock()?;
    let record = ctx.require_session()?;
    let template = args
        .branch
        .clone()
        .unwrap_or_else(|| ctx.config.sync.pull_branch.clone());
    let report = pull(
        &ctx,
        &record,
        template,
        args.apply,
        args.sandbox_ref.clone(),
        "Pulling sandbox work",
    )
    .await?;
    print_report(&ctx, &report);
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

/// Pull into a local branch; shared by `pull` and `down`.
pub async fn pull(
    ctx: &Ctx,
    record: &SessionRecord,
    branch_template: String,
    apply: bool,
    sandbox_ref: Option<String>,
    label: &str,
) -> CliResult<PullReport> {
    let sandbox = ctx.connect(record).await?;
    let state: Option<SyncState> = record
        .sync
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let opts = PullOptions {
        extra_ignores: ctx.config.sync.ignore.clone(),
        branch_template,
        session: record.session_id.clone(),
        apply,
        sandbox_ref,
    };
    let step = ctx.ui.step(label);
    let progress = StepProgress(&step);
    match gitsync::pull(&ctx.repo.root, &*sandbox, state.as_ref(), &opts, &progress).await {
        Ok(r) => {
            step.done(Some(&r.summary()));
            Ok(r)
        }
        Err(e) => {
            step.fail(None);
            Err(CliError::from(e))
        }
    }
}

fn print_report(ctx: &Ctx, r: &PullReport) {
    for line in r.hint_lines() {
        ctx.ui.info(line);
    }
}

/// Before `down`: bring back anything the sandbox has that this machine does not.
pub async fn rescue_before_destroy(ctx: &Ctx, record: &SessionRecord) -> CliResult<()> {
    let template = ctx.config.sync.pull_branch.clone();
    let known = local_tips(&ctx.repo.root);
    match pull(
        ctx,
        record,
        template,
        false,
        None,
        "Checking the sandbox for unpulled work",
    )
    .await
    {
        Ok(r) if r.is_empty() => Ok(()),
        // Already pulled earlier: the branch held this very commit.
        Ok(r) if r.tip.as_ref().is_some_and(|t| known.contains(t)) => Ok(()),
        Ok(r) => {
            ctx.ui.warn(format!(
                "the sandbox had work not on this machine; it is now branch {}",
                r.branch.as_deref().unwrap_or("?")
            ));
            Ok(())
        }
        Err(e) => Err(CliError::sync(format!(
            "could not bring the sandbox's work back before destroying it: {}",
            e.message
        ))
        .hint("fix the problem and retry, or `rclaude down --discard` to destroy it anyway")),
    }
}

/// Commit ids of every local branch and rclaude ref.
fn local_tips(root: &std::path::Path) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    if let Ok(repo) = crate::gitsync::open_work_tree(root)
        && let Ok(refs) = repo.references()
    {
        for r in refs.flatten() {
            if let Some(oid) = r.target() {
                out.insert(oid.to_string());
            }
        }
    }
    out
}
