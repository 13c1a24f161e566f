//! Fork a warm session (`rclaude fork NAME [--from SESSION]`): a new named session whose sandbox
//! starts as a copy of the source's (files, installed dependencies, build caches, sandbox-side
//! commits and edits), without running `[setup]` again.

use super::context::Ctx;
use crate::error::{CliError, CliResult};
use crate::provider::SandboxSpec;
use crate::session::{SessionRecord, SessionStore};

/// Fork `source`'s session (`ctx`: the source) into the repository's new named session `name`
/// (`target`: its context). With `fresh`, or where the provider cannot copy a sandbox, the
/// source's work is checkpointed and rebuilt in a new sandbox, and `[setup]` runs there.
pub async fn fork(ctx: &Ctx, target: &Ctx, name: &str, fresh: bool) -> CliResult<SessionRecord> {
    crate::session::validate_session_name(name).map_err(CliError::usage)?;
    let store = SessionStore::for_named(&ctx.repo, name);
    // Held for the whole fork: a second `fork` to the same name waits, then finds it taken.
    let _target_lock = store.lock()?;
    if store.load()?.is_some() {
        return Err(
            CliError::usage(format!("session \"{name}\" already exists")).hint(format!(
                "pick another name, or `rclaude down -s {name}` first"
            )),
        );
    }
    let source = {
        let _lock = ctx.store.lock()?;
        ctx.require_session()?
    };
    let provider = ctx.provider_for(&source)?;
    if provider.info(&source.sandbox_id).await?.is_none() {
        return Err(CliError::unavailable(format!(
            "the source's sandbox {} no longer exists",
            source.sandbox_id
        )));
    }
    if fresh || !provider.can_fork() {
        return by_rebuild(ctx, target, &source).await;
    }
    let session_id = uuid::Uuid::new_v4().to_string();
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("rclaude.session".to_string(), session_id.clone());
    metadata.insert("rclaude.session_name".to_string(), name.to_string());
    metadata.insert("rclaude.forked_from".to_string(), source.session_id.clone());
    let spec = SandboxSpec {
        name: ctx.repo.name.clone(),
        metadata,
        ..SandboxSpec::default()
    };
    let step = ctx.ui.step(format!(
        "Forking sandbox {} into session \"{name}\"",
        source.sandbox_id
    ));
    let info = match provider.fork(&source.sandbox_id, &spec).await {
        Ok(i) => i,
        Err(e) => {
            step.fail(None);
            return Err(e.into());
        }
    };
    step.done(Some(&info.id));
    // The copy holds what the source's record describes: its sync state (the sandbox identity
    // is copied too) and its setup hash, so nothing is re-sent or re-run.
    let record = SessionRecord {
        sandbox_id: info.id.clone(),
        session_id,
        workdir: info.workdir.clone(),
        created_at: crate::time::now_rfc3339(),
        ..source
    };
    store.save(&record)?;
    ctx.reporter.session_created(&record, &ctx.session_facts());
    ctx.reporter
        .event(&record, "started", serde_json::json!({}));
    ctx.reporter.flush().await;
    Ok(record)
}

/// The fork of a provider that cannot copy sandboxes: the source's work checkpointed now and
/// rebuilt in a new sandbox (files, sandbox-side commits and edits; what `[setup]` installs is
/// installed again).
async fn by_rebuild(ctx: &Ctx, target: &Ctx, source: &SessionRecord) -> CliResult<SessionRecord> {
    if !ctx.local_checkout {
        return Err(CliError::usage(format!(
            "the {} provider cannot copy sandboxes, and a session without a checkout here cannot be rebuilt from one",
            source.provider
        )));
    }
    if !ctx.provider_for(source)?.can_fork() {
        ctx.ui.info(format!(
            "The {} provider cannot copy sandboxes: the new session gets the source's work through a checkpoint, and [setup] runs in it",
            source.provider
        ));
    }
    let sandbox = ctx.connect(source).await?;
    let step = ctx.ui.step("Checkpointing the source's work");
    match super::checkpoint::take_now(ctx, source, &*sandbox, "fork").await {
        Ok(_) => step.done(None),
        Err(e) => {
            step.fail(None);
            return Err(e);
        }
    }
    super::up::rebuild_as_new(target, source).await
}
