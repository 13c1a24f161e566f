//! Rebuild a session's work in a new sandbox from its latest checkpoint: after its sandbox was
//! lost, or when `rclaude up --provider NAME` moves it to another provider.
//!
//! The new sandbox is first synced to the state the old one was last given, then the checkpoint
//! is laid over it ([`crate::gitsync::restore`]): the same files, the same sandbox-side commits
//! and branch. The caller's ordinary sync follows: nothing happens when this machine has no new
//! edits; otherwise the checkpoint's work is saved and brought back before they replace it, as
//! it would have been in the old sandbox.

use super::context::Ctx;
use super::sync::StepProgress;
use crate::error::{CliError, CliResult};
use crate::format::format_bytes;
use crate::gitsync::checkpoint::Checkpoint;
use crate::gitsync::{self, PushOptions};
use crate::provider::Sandbox;
use crate::session::SessionRecord;

/// What [`rebuild`] did.
#[derive(Debug)]
pub enum Rebuilt {
    /// The checkpoint's work is in the new sandbox.
    Restored(Checkpoint),
    /// No checkpoint of the old sandbox's work, here or on the server.
    NoCheckpoint,
    /// The newest checkpoint predates the old sandbox's last sync, which replaced that work
    /// (and brought it back here as a saved ref): nothing of it is missing.
    Superseded(Checkpoint),
}

/// The newest checkpoint of `old`'s session, this machine's or the server's.
async fn latest(ctx: &Ctx, old: &SessionRecord) -> Option<Checkpoint> {
    let here = super::checkpoint::list(ctx, old)
        .ok()
        .and_then(|mut l| l.pop());
    super::checkpoint::newest(ctx, &old.session_id, here).await
}

/// Give the new sandbox of `record` the work of `old`'s sandbox from its newest checkpoint,
/// recording the sync state it leaves in `record`.
pub async fn rebuild(
    ctx: &Ctx,
    old: &SessionRecord,
    record: &mut SessionRecord,
    sandbox: &dyn Sandbox,
) -> CliResult<Rebuilt> {
    let Some(cp) = latest(ctx, old).await else {
        return Ok(Rebuilt::NoCheckpoint);
    };
    let Some(last) = super::sync::sync_state(old) else {
        return Ok(Rebuilt::Superseded(cp));
    };
    let last_pushed = last.snapshot.clone().zip(last.index.clone());
    if cp.pushed.is_none() || cp.pushed != last_pushed {
        return Ok(Rebuilt::Superseded(cp));
    }

    let opts = PushOptions {
        extra_ignores: ctx.config.sync.ignore.clone(),
        ..PushOptions::default()
    };
    let step = ctx
        .ui
        .step("Syncing the state the old sandbox was last given");
    let pushed = gitsync::push_recorded(
        &ctx.repo.root,
        sandbox,
        None,
        &last,
        &opts,
        &StepProgress(&step),
    )
    .await;
    let report = match pushed {
        Ok(r) => {
            step.done(Some(&format_bytes(r.sent_bytes)));
            r
        }
        Err(e) => {
            step.fail(None);
            return Err(e.into());
        }
    };
    record.sync =
        Some(serde_json::to_value(&report.state).map_err(|e| CliError::internal(e.to_string()))?);
    ctx.store.save(record)?;

    let step = ctx.ui.step(format!(
        "Laying checkpoint {} ({}) over it",
        cp.id, cp.reason
    ));
    let restored = gitsync::restore::restore(
        &ctx.repo.root,
        sandbox,
        &report.state,
        &cp,
        &StepProgress(&step),
    )
    .await;
    match restored {
        Ok(r) => {
            step.done(Some(&format_bytes(r.sent_bytes)));
            if !r.matches() {
                ctx.ui.warn(format!(
                    "the rebuilt sandbox's files differ from checkpoint {} (tree {} instead of {}); \
                     the checkpoint is safe on this machine: `rclaude pull --checkpoint {}` brings it back as a branch",
                    cp.id, r.tree, r.expected, cp.id
                ));
            }
        }
        Err(e) => {
            step.fail(None);
            return Err(e.into());
        }
    }
    Ok(Rebuilt::Restored(cp))
}
