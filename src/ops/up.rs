//! Bring a repository's session up: find, create or resume its sandbox, sync the work tree,
//! run `[setup]` (when it changed) and `[start]`.

use std::sync::Arc;

use super::context::Ctx;
use super::stream::{Sink, run_streamed};
use crate::error::{CliError, CliResult};
use crate::provider::{ExecRequest, Sandbox, SandboxSpec, SandboxState};
use crate::session::SessionRecord;

/// What the caller of [`bring_up`] wants done.
#[derive(Debug, Clone, Copy)]
pub struct UpOptions {
    /// Sync the work tree into the sandbox.
    pub sync: bool,
    /// Run `[setup]` when it changed.
    pub setup: bool,
    /// Create a new sandbox when the recorded one no longer exists (otherwise: error).
    pub create_if_gone: bool,
    /// What to do when the recorded sandbox is on another provider than the config names.
    pub other_provider: OtherProvider,
}

/// What [`bring_up`] does with a session on another provider than the config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherProvider {
    /// Use it where it is (commands that work in the session: `exec`, `run`, ...).
    Use,
    /// Refuse, saying how to move it (`up`: the config may have been edited to move it).
    Refuse,
    /// Move the session to the configured provider (`up --provider NAME`).
    Move,
}

/// A sandbox that is up and synced.
pub struct Live {
    pub record: SessionRecord,
    pub sandbox: Arc<dyn Sandbox>,
    /// Heartbeats and timeout extensions while the command runs.
    pub _alive: crate::ops::alive::AliveGuard,
}

/// Find or create the sandbox, resume it, sync, run setup and start commands.
pub async fn bring_up(ctx: &Ctx, opts: UpOptions) -> CliResult<Live> {
    let _lock = ctx.store.lock()?;
    let mut existing = ctx.store.load()?;
    if existing.is_none() {
        ctx.decide_managed().await;
    }
    let provider_name = ctx.provider_name();
    let managed = crate::report::managed::MANAGED;
    // `up --provider NAME`: the session on another provider, moving to a new sandbox.
    let mut moving = None;
    if let Some(rec) = &existing {
        let mismatch = match (rec.provider == managed, ctx.config.sandbox.managed) {
            (true, Some(false)) | (false, Some(true)) => true,
            (true, _) => false,
            (false, _) => rec.provider != provider_name,
        };
        if mismatch && opts.other_provider == OtherProvider::Refuse {
            let wanted = if ctx.config.sandbox.managed == Some(true) {
                managed
            } else {
                ctx.config.sandbox.provider.as_str()
            };
            return Err(CliError::config(format!(
                "this repository's sandbox {} is on provider \"{}\", but .rclaude.toml now says \"{wanted}\"",
                rec.sandbox_id, rec.provider
            ))
            .hint(format!(
                "`rclaude up --provider {wanted}` moves the session there (its work comes along); `rclaude up --provider {}` keeps it where it is",
                rec.provider
            )));
        }
        if mismatch && opts.other_provider == OtherProvider::Move {
            let old = existing.take().expect("checked");
            checkpoint_before_moving(ctx, &old).await;
            moving = Some(old);
        }
    }
    let provider = match &existing {
        Some(rec) if rec.provider == managed || rec.provider != provider_name => {
            ctx.provider_for(rec)?
        }
        _ => ctx.provider()?,
    };
    if existing.is_none()
        && moving.is_none()
        && provider_name == managed
        && ctx.local_checkout
        && ctx.session_name.is_none()
    {
        // Another clone (another machine) may have started this repository's session.
        existing = adopt_server_session(ctx, &*provider).await?;
    }

    // 1. Find, resume or create.
    let fresh;
    let mut lost = None;
    let (mut record, sandbox) = match existing {
        Some(rec) => {
            let info = provider.info(&rec.sandbox_id).await?;
            match info {
                None if opts.create_if_gone => {
                    ctx.ui.warn(format!(
                        "sandbox {} no longer exists; creating a new one",
                        rec.sandbox_id
                    ));
                    fresh = true;
                    lost = Some(rec);
                    create(ctx, &*provider).await?
                }
                None => {
                    return Err(CliError::unavailable(format!(
                        "sandbox {} no longer exists",
                        rec.sandbox_id
                    ))
                    .hint("`rclaude up` creates a new one and syncs your work tree into it"));
                }
                Some(info) => {
                    let paused = info.state != SandboxState::Running;
                    let step = ctx.ui.step(if paused {
                        "Resuming sandbox"
                    } else {
                        "Connecting to sandbox"
                    });
                    let sandbox = match provider.connect(&rec.sandbox_id).await {
                        Ok(s) => s,
                        Err(e) => {
                            step.fail(None);
                            return Err(e.into());
                        }
                    };
                    step.done(Some(&rec.sandbox_id));
                    if paused {
                        ctx.reporter.event(&rec, "resumed", serde_json::json!({}));
                        // Before anything syncs into it: did the provider keep every file?
                        super::checkpoint::verify_after_resume(ctx, &rec, &*sandbox).await;
                    }
                    fresh = paused;
                    (rec, sandbox)
                }
            }
        }
        None => {
            fresh = true;
            if let Some(old) = &moving {
                ctx.ui.info(format!(
                    "Moving the session from {} sandbox {} to {}",
                    old.provider,
                    old.sandbox_id,
                    provider.name()
                ));
                lost = Some(old.clone());
            }
            create(ctx, &*provider).await?
        }
    };

    // 2. Sync (a session started from a URL has nothing here to sync); a lost sandbox's work
    // first comes back from its checkpoint.
    let mut rebuilt = None;
    if let Some(old) = &lost
        && ctx.local_checkout
    {
        rebuilt = rebuild_from_checkpoint(ctx, old, &mut record, &*sandbox).await;
    }
    if opts.sync && ctx.local_checkout {
        sync_into(ctx, &mut record, &*sandbox).await?;
        say_if_replaced(ctx, &record, rebuilt.as_ref());
    }

    // 3. Setup (when its lines changed) and start (on create/resume).
    if opts.setup {
        run_setup(ctx, &mut record, &*sandbox).await?;
    }
    if fresh {
        run_lines(
            ctx,
            &record,
            &*sandbox,
            "start",
            &ctx.config.start.run.lines(),
        )
        .await?;
    }
    if let Some(old) = &moving {
        retire_after_move(ctx, old, &record).await;
    }
    ctx.reporter.flush().await;
    let alive = crate::ops::alive::keep_alive(ctx, &record);
    Ok(Live {
        record,
        sandbox,
        _alive: alive,
    })
}

/// Before `up --provider NAME` moves a session: checkpoint its sandbox when it can be reached
/// (otherwise the rebuild uses its newest checkpoint, and says so).
async fn checkpoint_before_moving(ctx: &Ctx, old: &SessionRecord) {
    let moving_from = format!("{} sandbox {}", old.provider, old.sandbox_id);
    if ctx.local_checkout {
        let reached = async {
            let provider = ctx.provider_for(old)?;
            match provider.info(&old.sandbox_id).await? {
                None => Ok(None),
                Some(_) => Ok::<_, CliError>(Some(provider.connect(&old.sandbox_id).await?)),
            }
        }
        .await;
        match reached {
            Ok(Some(sandbox)) => {
                super::checkpoint::take(ctx, old, &*sandbox, "move").await;
            }
            Ok(None) => ctx.ui.warn(format!(
                "{moving_from} no longer exists; its work comes from its latest checkpoint"
            )),
            Err(e) => ctx.ui.warn(format!(
                "cannot reach {moving_from} ({}); its work comes from its latest checkpoint",
                e.message
            )),
        }
    }
}

/// After a move: destroy the old sandbox (its work is in the new one and in its checkpoints)
/// and record its session as stopped.
async fn retire_after_move(ctx: &Ctx, old: &SessionRecord, record: &SessionRecord) {
    let moving_from = format!("{} sandbox {}", old.provider, old.sandbox_id);
    let destroyed = match ctx.provider_for(old) {
        Ok(p) => match p.kill(&old.sandbox_id).await {
            Ok(()) | Err(crate::provider::ProviderError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.message),
    };
    match destroyed {
        Ok(()) => ctx.ui.info(format!("Destroyed {moving_from}")),
        Err(e) => ctx.ui.warn(format!(
            "could not destroy {moving_from} ({e}); `rclaude down --sandbox {} --provider {}` removes it",
            old.sandbox_id, old.provider
        )),
    }
    ctx.reporter.event(
        old,
        "stopped",
        serde_json::json!({ "moved_to": record.session_id }),
    );
}

/// A new sandbox for `ctx`'s session (on `source`'s provider) holding `source`'s work from its
/// newest checkpoint (take one first), with `[setup]` and `[start]` run: a fork where the
/// provider cannot copy sandboxes. Without a checkpoint it gets this work tree instead.
pub async fn rebuild_as_new(ctx: &Ctx, source: &SessionRecord) -> CliResult<SessionRecord> {
    let provider = ctx.provider_for(source)?;
    let (mut record, sandbox) = create(ctx, &*provider).await?;
    if rebuild_from_checkpoint(ctx, source, &mut record, &*sandbox)
        .await
        .is_none()
    {
        sync_into(ctx, &mut record, &*sandbox).await?;
    }
    run_setup(ctx, &mut record, &*sandbox).await?;
    run_lines(
        ctx,
        &record,
        &*sandbox,
        "start",
        &ctx.config.start.run.lines(),
    )
    .await?;
    ctx.reporter.flush().await;
    Ok(record)
}

/// After the sync that follows a rebuild: when this machine had edits the old sandbox was never
/// given, the sync replaced the rebuilt work (as it would have in the old sandbox); say where
/// that work is kept.
fn say_if_replaced(
    ctx: &Ctx,
    record: &SessionRecord,
    rebuilt: Option<&crate::gitsync::checkpoint::Checkpoint>,
) {
    let Some(cp) = rebuilt else { return };
    let now = super::sync::sync_state(record);
    let pushed = now.and_then(|s| s.snapshot.zip(s.index));
    if pushed != cp.pushed {
        ctx.ui.warn(format!(
            "this work tree had edits the old sandbox was never given, so the sync replaced the rebuilt work with them; \
             the sandbox's work is kept as checkpoint {}: `rclaude pull --checkpoint {}` brings it back as a branch",
            cp.id, cp.id
        ));
    }
}

/// Bring a lost (or left) sandbox's work into the new one from its newest checkpoint, saying
/// what happened; a failure is a warning (the checkpoint stays on this machine). The checkpoint
/// when its work was rebuilt.
async fn rebuild_from_checkpoint(
    ctx: &Ctx,
    old: &SessionRecord,
    record: &mut SessionRecord,
    sandbox: &dyn Sandbox,
) -> Option<crate::gitsync::checkpoint::Checkpoint> {
    use super::rebuild::Rebuilt;
    match super::rebuild::rebuild(ctx, old, record, sandbox).await {
        Ok(Rebuilt::Restored(cp)) => {
            ctx.ui.info(format!(
                "Rebuilt the work of sandbox {} from checkpoint {} ({}): the same files, commits and branch",
                old.sandbox_id, cp.id, cp.reason
            ));
            return Some(cp);
        }
        Ok(Rebuilt::NoCheckpoint) => ctx.ui.warn(format!(
            "no checkpoint of sandbox {}'s work was kept; the new sandbox starts from this work tree",
            old.sandbox_id
        )),
        Ok(Rebuilt::Superseded(cp)) => ctx.ui.info(format!(
            "checkpoint {} of sandbox {} predates its last sync, which replaced that work (brought back here then); the new sandbox starts from this work tree",
            cp.id, old.sandbox_id
        )),
        Err(e) => ctx.ui.warn(format!(
            "could not rebuild sandbox {}'s work from its checkpoint: {}; it is safe on this machine: `rclaude pull --checkpoint` brings it back as a branch",
            old.sandbox_id, e.message
        )),
    }
    None
}

/// The server's newest live managed session of this repository and branch, recorded here.
async fn adopt_server_session(
    ctx: &Ctx,
    provider: &dyn crate::provider::Provider,
) -> CliResult<Option<SessionRecord>> {
    let branch = ctx.repo.branch().unwrap_or_else(|| "HEAD".into());
    let found = provider
        .list()
        .await?
        .into_iter()
        .find(|s| s.metadata.get("rclaude.branch") == Some(&branch));
    let Some(info) = found else {
        return Ok(None);
    };
    ctx.ui.info(format!(
        "Joining session {} (started from another clone of this repository)",
        info.id
    ));
    let record = SessionRecord {
        version: crate::session::RECORD_VERSION,
        repo_root: ctx.repo.root.clone(),
        provider: crate::report::managed::MANAGED.to_string(),
        sandbox_id: info.id.clone(),
        session_id: info.id.clone(),
        workdir: provider.connect(&info.id).await?.workdir().to_string(),
        created_at: info
            .started_at
            .clone()
            .unwrap_or_else(crate::time::now_rfc3339),
        setup_hash: None,
        sync: None,
        claude_session: None,
        origin: None,
    };
    ctx.store.save(&record)?;
    Ok(Some(record))
}

async fn create(
    ctx: &Ctx,
    provider: &dyn crate::provider::Provider,
) -> CliResult<(SessionRecord, Arc<dyn Sandbox>)> {
    let cfg = &ctx.config.sandbox;
    let session_id = uuid::Uuid::new_v4().to_string();
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("rclaude.repo".to_string(), ctx.repo.name.clone());
    metadata.insert(
        "rclaude.branch".to_string(),
        ctx.repo.branch().unwrap_or_default(),
    );
    metadata.insert("rclaude.session".to_string(), session_id.clone());
    if let Some(n) = &ctx.session_name {
        metadata.insert("rclaude.session_name".to_string(), n.clone());
    }
    let spec = SandboxSpec {
        name: ctx.repo.name.clone(),
        image: cfg.image.clone(),
        cpu: cfg.cpu,
        memory_mb: cfg.memory_mb,
        timeout: Some(cfg.timeout.0),
        auto_pause: cfg.auto_pause,
        idle_pause: cfg.idle_pause.map(|d| d.0),
        workdir: cfg.workdir.clone(),
        env: ctx.config.env.clone(),
        metadata,
        isolation: cfg.isolation,
        expose: cfg.expose.clone(),
        // Claude Code runs need their API: its host joins an allow list.
        network: ctx
            .config
            .network
            .policy()
            .also_allowing(&crate::claude::api_host()),
        public_ports: super::ports::public_ports(&ctx.config),
    };
    let step = ctx.ui.step(format!("Creating {} sandbox", provider.name()));
    let info = match provider.create(&spec).await {
        Ok(i) => i,
        Err(e) => {
            step.fail(None);
            return Err(e.into());
        }
    };
    step.done(Some(&info.id));
    // A managed session's id is the server's (the sandbox id it answers is that session).
    let session_id = if provider.name() == crate::report::managed::MANAGED {
        info.id.clone()
    } else {
        session_id
    };
    let record = SessionRecord {
        version: crate::session::RECORD_VERSION,
        repo_root: ctx.repo.root.clone(),
        provider: provider.name().to_string(),
        sandbox_id: info.id.clone(),
        session_id,
        workdir: info.workdir.clone(),
        created_at: crate::time::now_rfc3339(),
        setup_hash: None,
        sync: None,
        claude_session: None,
        origin: None,
    };
    // Record it at once: a failure later must not orphan the sandbox.
    ctx.store.save(&record)?;
    ctx.reporter.session_created(&record, &ctx.session_facts());
    ctx.reporter
        .event(&record, "started", serde_json::json!({}));
    let sandbox = provider.connect(&info.id).await?;
    Ok((record, sandbox))
}

/// Push the work tree into the sandbox and record the new sync state.
pub async fn sync_into(
    ctx: &Ctx,
    record: &mut SessionRecord,
    sandbox: &dyn Sandbox,
) -> CliResult<()> {
    let report = super::sync::push(ctx, record, sandbox).await?;
    record.sync =
        Some(serde_json::to_value(&report.state).map_err(|e| CliError::internal(e.to_string()))?);
    ctx.store.save(record)?;
    Ok(())
}

/// Run `[setup]` when its hash differs from the one recorded in the sandbox.
async fn run_setup(ctx: &Ctx, record: &mut SessionRecord, sandbox: &dyn Sandbox) -> CliResult<()> {
    let lines = ctx.config.setup.run.lines();
    let hash = ctx.config.setup_hash();
    let marker = format!("{}/.git/rclaude/setup-hash", record.workdir);
    let recorded = match sandbox.read_file(&marker).await {
        Ok(b) => Some(String::from_utf8_lossy(&b).trim().to_string()),
        Err(crate::provider::SandboxError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if recorded.as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    if !lines.is_empty() {
        if recorded.is_some() {
            ctx.ui
                .info("[setup] changed since it last ran in this sandbox; running it again");
        }
        run_lines(ctx, record, sandbox, "setup", &lines).await?;
    }
    sandbox
        .write_files(vec![crate::provider::FileUpload {
            path: marker,
            contents: hash.clone().into(),
        }])
        .await?;
    record.setup_hash = Some(hash);
    ctx.store.save(record)?;
    Ok(())
}

/// Run `[setup]`/`[start]` lines in order, streaming output; the first failure stops.
pub(crate) async fn run_lines(
    ctx: &Ctx,
    record: &SessionRecord,
    sandbox: &dyn Sandbox,
    section: &str,
    lines: &[String],
) -> CliResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    // Secrets with `phase = "setup"` reach `[setup]` only; `[start]` runs as the session does.
    let phase = if section == "setup" {
        crate::config::SecretPhase::Setup
    } else {
        crate::config::SecretPhase::Run
    };
    let env = ctx.exec_env(record, phase)?;
    for (i, line) in lines.iter().enumerate() {
        let step = ctx.ui.streaming_step(format!("[{section}] {line}"));
        let req = ExecRequest::shell(line.clone())
            .cwd(record.workdir.clone())
            .env(env.clone());
        let result = run_streamed(sandbox, req, Sink::Terminal).await;
        match result {
            Ok(s) if s.success() => step.done(None),
            Ok(s) => {
                step.fail(Some(&s.status));
                return Err(CliError::remote_failure(
                    format!(
                        "[{section}] line {} failed with exit code {}: {line}",
                        i + 1,
                        s.shell_code()
                    ),
                    s.shell_code(),
                )
                .hint(format!(
                    "fix the command in .rclaude.toml [{section}], then run `rclaude up` again"
                )));
            }
            Err(e) => {
                step.fail(None);
                return Err(e);
            }
        }
    }
    Ok(())
}
