//! Checkpoints on lifecycle edges (pause, the end of an attached Claude Code run, `run`), and
//! pulling from one when the sandbox is gone. See [`crate::gitsync::checkpoint`].

use super::context::Ctx;
use crate::error::CliResult;
use crate::gitsync::checkpoint::{self, Checkpoint, Taken};
use crate::gitsync::{PullOptions, PullReport};
use crate::provider::Sandbox;
use crate::session::SessionRecord;

/// Copy the sandbox's work off it, best effort: a failure is a warning, never the command's
/// failure (the work is still in the sandbox). Sessions without a local checkout are skipped.
pub async fn take(ctx: &Ctx, record: &SessionRecord, sandbox: &dyn Sandbox, reason: &str) {
    if !ctx.local_checkout {
        return;
    }
    // Quiet when it works: it runs at the end of other commands.
    match take_now(ctx, record, sandbox, reason).await {
        Ok(Taken::New(cp)) => tracing::debug!(id = %cp.id, reason, "checkpoint taken"),
        Ok(Taken::Unchanged(_)) => {}
        Ok(Taken::Empty) => return,
        Err(e) => {
            ctx.ui.warn(format!(
                "could not checkpoint the sandbox's work ({e}); it is still in the sandbox: `rclaude pull` brings it back"
            ));
            return;
        }
    }
    let _ = keep_on_server(ctx, record).await;
}

/// Copy the newest checkpoint to the server when one is configured, best effort: a failure
/// is a warning (the checkpoint is on this machine; the next one tries again). Returns the
/// server's checkpoints of the session when it read them and nothing was uploaded, so that a
/// caller listing them need not ask again.
pub async fn keep_on_server(ctx: &Ctx, record: &SessionRecord) -> Option<Vec<Checkpoint>> {
    use super::checkpoint_server::Kept;
    match super::checkpoint_server::upload_latest(ctx, record).await {
        Ok(Kept::Uploaded { name, bytes, base }) => {
            tracing::debug!(%name, bytes, ?base, "checkpoint kept on the server");
            None
        }
        Ok(Kept::Already { server, .. }) => Some(server),
        Ok(Kept::Nothing) => None,
        Err(e) => {
            ctx.ui.warn(format!(
                "the checkpoint is on this machine but not on the server: {}{}",
                e.message,
                e.hint
                    .as_deref()
                    .map(|h| format!("\n  hint: {h}"))
                    .unwrap_or_default()
            ));
            None
        }
    }
}

/// Take a checkpoint now (`rclaude checkpoints --take`).
pub async fn take_now(
    ctx: &Ctx,
    record: &SessionRecord,
    sandbox: &dyn Sandbox,
    reason: &str,
) -> CliResult<Taken> {
    let state = super::sync::sync_state(record);
    Ok(checkpoint::take(
        &ctx.repo.root,
        sandbox,
        state.as_ref(),
        &record.session_id,
        reason,
        ctx.config.sync.ignore.clone(),
        ctx.config.checkpoints.keep as usize,
        &crate::gitsync::NoProgress,
    )
    .await?)
}

/// The checkpoints of the session, oldest first.
pub fn list(ctx: &Ctx, record: &SessionRecord) -> CliResult<Vec<Checkpoint>> {
    Ok(checkpoint::list(&ctx.repo.root, &record.session_id)?)
}

/// The session's newest checkpoint: `here` (this machine's newest), unless the server keeps a
/// newer one (one the server took before pausing the session, or another machine's), which is
/// then taken back. `None`: neither has one.
pub async fn newest(ctx: &Ctx, session_id: &str, here: Option<Checkpoint>) -> Option<Checkpoint> {
    let on_server = match super::checkpoint_server::list(ctx, session_id).await {
        Ok(Some(list)) => list.into_iter().last(),
        Ok(None) => None,
        Err(e) => {
            tracing::debug!("cannot list the server's checkpoints: {}", e.message);
            None
        }
    };
    let newer = match (&here, &on_server) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(h), Some(s)) => checkpoint::id_order(&s.id, &h.id).is_gt(),
    };
    if !newer {
        return here;
    }
    match super::checkpoint_server::recover(ctx, session_id, None).await {
        Ok(cp) => {
            ctx.ui.info(format!(
                "Took checkpoint {} (taken at {}) back from the server",
                cp.id, cp.reason
            ));
            Some(cp)
        }
        Err(e) => {
            tracing::debug!("no checkpoint from the server: {}", e.message);
            here
        }
    }
}

/// Make the pull branch from checkpoint `id` (default: the latest). One this machine does not
/// have is taken back from the server, when one is configured.
pub async fn pull_from(
    ctx: &Ctx,
    record: &SessionRecord,
    id: Option<&str>,
    opts: &PullOptions,
) -> CliResult<(Checkpoint, PullReport)> {
    let all = list(ctx, record)?;
    let here = match id {
        Some(id) => all.into_iter().find(|c| c.id == id),
        None => newest(ctx, &record.session_id, all.into_iter().last()).await,
    };
    let cp = match here {
        Some(cp) => cp,
        None => {
            let cp = super::checkpoint_server::recover(ctx, &record.session_id, id).await?;
            ctx.ui.info(format!(
                "Took checkpoint {} (taken at {}) back from the server",
                cp.id, cp.reason
            ));
            cp
        }
    };
    let report = checkpoint::pull_from(&ctx.repo.root, &cp, opts)?;
    Ok((cp, report))
}

/// When the server paused the session itself (idle, budget, the dashboard) after this
/// machine's last checkpoint, the checkpoint it took first is what the resume is compared with:
/// take it back and mark it as the state at pause.
async fn adopt_server_pause(ctx: &Ctx, record: &SessionRecord) {
    let Ok(Some(on_server)) = super::checkpoint_server::list(ctx, &record.session_id).await else {
        return;
    };
    let Some(last) = on_server.last() else {
        return;
    };
    // The server names its own `<stamp>-server…`, and takes one only before a pause or a stop.
    let server_pause = last.id.contains("-server") && last.reason.ends_with("pause");
    let here = list(ctx, record).unwrap_or_default();
    if !server_pause
        || here
            .last()
            .is_some_and(|h| checkpoint::id_order(&h.id, &last.id).is_ge())
    {
        return;
    }
    let id = last.id.clone();
    if !here.iter().any(|h| h.id == id)
        && let Err(e) = super::checkpoint_server::recover(ctx, &record.session_id, Some(&id)).await
    {
        tracing::debug!(
            "cannot take the server's pause checkpoint back: {}",
            e.message
        );
        return;
    }
    if let Err(e) = checkpoint::mark_paused(&ctx.repo.root, &record.session_id, &id) {
        tracing::debug!("cannot mark the server's pause checkpoint: {e}");
    }
}

/// Right after a resume: compare the sandbox's files with the checkpoint taken at pause and
/// say loudly when they differ (a provider that lost files), offering the checkpoint back.
pub async fn verify_after_resume(ctx: &Ctx, record: &SessionRecord, sandbox: &dyn Sandbox) {
    if !ctx.local_checkout {
        return;
    }
    adopt_server_pause(ctx, record).await;
    let state = super::sync::sync_state(record);
    let drift = checkpoint::verify(
        &ctx.repo.root,
        sandbox,
        state.as_ref(),
        &record.session_id,
        ctx.config.sync.ignore.clone(),
        &crate::gitsync::NoProgress,
    )
    .await;
    match drift {
        Ok(checkpoint::Drift::Differs {
            checkpoint,
            paths,
            total,
            head_moved,
        }) => {
            let mut msg = format!(
                "THE SANDBOX CHANGED WHILE IT WAS PAUSED: {total} file(s) differ from checkpoint {} taken at pause{}:",
                checkpoint.id,
                if head_moved {
                    " (and its HEAD moved)"
                } else {
                    ""
                }
            );
            for p in &paths {
                msg.push_str(&format!("\n    {p}"));
            }
            if total > paths.len() {
                msg.push_str(&format!("\n    ... and {} more", total - paths.len()));
            }
            msg.push_str(&format!(
                "\n  the paused state is safe on this machine: `rclaude pull --checkpoint {}` brings it back as a branch",
                checkpoint.id
            ));
            ctx.ui.warn(msg);
        }
        Ok(_) => {}
        Err(e) => ctx.ui.warn(format!(
            "could not compare the resumed sandbox with its checkpoint: {e}"
        )),
    }
}
