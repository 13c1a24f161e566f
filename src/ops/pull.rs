//! Bring a sandbox's commits and edits back as a local branch (and, before a sandbox is
//! destroyed, anything this machine does not have yet).

use super::context::Ctx;
use super::sync::StepProgress;
use crate::error::{CliError, CliResult, ErrorKind};
use crate::gitsync::{self, PullOptions, PullReport};
use crate::session::SessionRecord;

/// Pull into a local branch (`pull`, `down`, Claude Code runs with `--pull`).
pub async fn pull(
    ctx: &Ctx,
    record: &SessionRecord,
    branch_template: String,
    apply: bool,
    sandbox_ref: Option<String>,
    label: &str,
) -> CliResult<PullReport> {
    let opts = PullOptions {
        extra_ignores: ctx.config.sync.ignore.clone(),
        branch_template,
        session: record.session_id.clone(),
        apply,
        sandbox_ref,
    };
    let sandbox = match ctx.connect(record).await {
        Ok(s) => s,
        // The sandbox is gone or unreachable: its latest checkpoint still has its work.
        Err(e) if e.kind == ErrorKind::Unavailable && opts.sandbox_ref.is_none() => {
            let (cp, report) = match super::checkpoint::pull_from(ctx, record, None, &opts).await {
                Ok(r) => r,
                Err(c) => {
                    tracing::debug!(error = %c.message, "no checkpoint to pull from");
                    return Err(e);
                }
            };
            ctx.ui.warn(format!(
                "the sandbox cannot be reached ({}); its work was pulled from checkpoint {} (taken at {}){}",
                e.message,
                cp.id,
                cp.reason,
                if apply { "; --apply was not done: review the branch first" } else { "" },
            ));
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    let state = super::sync::sync_state(record);
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

/// Make the pull branch from the session's checkpoint `id` (default: the latest) instead of
/// the live sandbox.
pub async fn pull_checkpoint(
    ctx: &Ctx,
    record: &SessionRecord,
    branch_template: String,
    id: Option<&str>,
) -> CliResult<(crate::gitsync::checkpoint::Checkpoint, PullReport)> {
    let opts = PullOptions {
        extra_ignores: ctx.config.sync.ignore.clone(),
        branch_template,
        session: record.session_id.clone(),
        apply: false,
        sandbox_ref: None,
    };
    super::checkpoint::pull_from(ctx, record, id, &opts).await
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
