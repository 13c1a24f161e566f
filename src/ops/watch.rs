//! Live sync until Ctrl-C (`watch`, `up --watch`): batches of local edits into the sandbox,
//! a bundle sync when HEAD moves, reconnection with backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::context::Ctx;
use super::progress::{Out, StatusSink};
use super::up::{Live, sync_into};
use crate::error::{CliError, CliResult, ErrorKind};
use crate::format::format_elapsed;
use crate::gitsync::SyncState;
use crate::livesync::watcher::{Batch, Watcher};
use crate::livesync::{Limits, LiveError, LiveSync};
use crate::provider::Sandbox;

/// Quiet period that closes a batch of events.
const QUIET: Duration = Duration::from_millis(3);
/// Longest a batch stays open while events keep coming.
const MAX_DELAY: Duration = Duration::from_millis(40);
/// A batch with deletions stays open until the tree is quiet this long...
const DELETE_QUIET: Duration = Duration::from_millis(50);
/// ...or this long at most.
const DELETE_MAX: Duration = Duration::from_secs(2);
/// Safety rescan of the local tree, for events the OS dropped.
const RESCAN_EVERY: Duration = Duration::from_secs(30);

/// Proof that this process is the one live-syncing the repository.
pub struct WatchGuard {
    _lock: crate::session::RepoLock,
}

/// Refuse to start a second live sync into the same sandbox: two would take each other's
/// uploads for sandbox edits and leave conflict copies of every file both touch.
pub fn only_watch(ctx: &Ctx) -> CliResult<WatchGuard> {
    let path = ctx.store.path().with_extension("watch.lock");
    match crate::session::RepoLock::try_acquire_owned(&path)? {
        Ok(lock) => Ok(WatchGuard { _lock: lock }),
        Err(pid) => Err(CliError::new(
            ErrorKind::Usage,
            format!(
                "another `rclaude watch`{} is already live-syncing {}",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                ctx.repo.root.display()
            ),
        )
        .hint(
            "one live sync per repository: stop the other one (Ctrl-C there, or `kill PID`) first",
        )),
    }
}

/// Live-sync until Ctrl-C (used by `watch` and `up --watch`), while holding `_guard`.
pub async fn watch_loop(ctx: &Ctx, live: Live, _guard: WatchGuard) -> CliResult {
    let Live {
        mut record,
        mut sandbox,
        _alive,
    } = live;
    let limits = Limits {
        max_delete_percent: ctx.config.sync.max_delete_percent,
        max_delete_min_files: ctx.config.sync.max_delete_min_files,
    };
    let mut engine = start_engine(ctx, &record, &*sandbox, limits).await?;
    let mut watcher = Watcher::new(&ctx.repo.root, QUIET, MAX_DELAY).map_err(|e| {
        CliError::new(
            ErrorKind::Io,
            format!("cannot watch {}: {e}", ctx.repo.root.display()),
        )
    })?;
    if watcher.polling {
        ctx.ui.warn("the system ran out of file watches (fs.inotify.max_user_watches); polling every 500 ms instead");
    }
    let status = Status::new(
        &ctx.ui,
        &ctx.repo.root.display().to_string(),
        engine.synced_files(),
    );
    let mut rescan = tokio::time::interval(RESCAN_EVERY);
    rescan.tick().await;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| CliError::internal(format!("cannot handle Ctrl-C: {e}")))?;
    loop {
        let batch = tokio::select! {
            b = watcher.next() => match b {
                Some(b) => b,
                None => return Err(CliError::internal("the file watcher stopped")),
            },
            _ = rescan.tick() => Batch { paths: engine.rescan(), first_event: Some(Instant::now()), ..Batch::default() },
            _ = interrupt.recv() => {
                status.finish();
                return Ok(0);
            }
        };
        let result = handle(
            ctx,
            &mut record,
            &mut sandbox,
            &mut engine,
            &mut watcher,
            batch,
            &status,
            limits,
        )
        .await;
        if let Err(e) = result {
            match e {
                Failure::Fatal(e) => {
                    status.finish();
                    return Err(e);
                }
                Failure::Lost(why) => {
                    status.line(&format!("lost the sandbox ({why}); reconnecting…"));
                    (sandbox, engine) =
                        reconnect(ctx, &mut record, &mut watcher, limits, &status).await?;
                    status.line("reconnected; re-synced by bundle; watching again");
                }
            }
        }
    }
}

enum Failure {
    /// Stop watching with this error.
    Fatal(CliError),
    /// The sandbox went away: reconnect and re-sync.
    Lost(String),
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    ctx: &Ctx,
    record: &mut crate::session::SessionRecord,
    sandbox: &mut Arc<dyn Sandbox>,
    engine: &mut LiveSync,
    watcher: &mut Watcher,
    mut batch: Batch,
    status: &Status,
    limits: Limits,
) -> Result<(), Failure> {
    if engine.plan(&batch.paths).deletes() > 0 {
        // Deletions come in bursts (`rm -rf`): take the whole burst before judging it.
        watcher.extend(&mut batch, DELETE_QUIET, DELETE_MAX).await;
    }
    if batch.git_busy || ctx.repo.root.join(".git/index.lock").exists() {
        watcher.settle_git(&mut batch).await;
    }
    if !batch.git_moved && head_moved(ctx, record) {
        batch.git_moved = true;
    }
    if batch.git_moved || batch.rescan {
        // HEAD moved or events were lost: a bundle sync makes the sandbox exact again.
        watcher.drain();
        let started = Instant::now();
        resync(ctx, record, &**sandbox)
            .await
            .map_err(classify_cli)?;
        *engine = start_engine(ctx, record, &**sandbox, limits)
            .await
            .map_err(classify_cli)?;
        watcher.drain();
        status.synced(0, started, "bundle sync (HEAD moved)");
        return Ok(());
    }
    if batch.index_changed {
        engine.reload_index();
    }
    let mut dirty = batch.paths;
    if batch.ignores_changed {
        dirty.extend(engine.reload_ignores().map_err(classify_live)?);
    }
    if dirty.is_empty() {
        return Ok(());
    }
    let t = Instant::now();
    let planned = engine.plan(&dirty);
    tracing::debug!(
        paths = dirty.len(),
        ms = t.elapsed().as_secs_f64() * 1e3,
        "planned"
    );
    if planned.ops.is_empty() {
        return Ok(());
    }
    if let Err(e) = engine.check_deletions(&planned) {
        let msg = e.to_string();
        let ok = status.suspend(|| {
            ctx.ui
                .confirm(&format!("{msg}. Delete them in the sandbox?"))
        });
        match ok {
            Ok(true) => {}
            Ok(false) => {
                return Err(Failure::Fatal(
                    CliError::sync(format!("stopped: {msg}")).hint(
                        "nothing was deleted in the sandbox; run `rclaude watch` again to resume",
                    ),
                ));
            }
            Err(_) => {
                return Err(Failure::Fatal(CliError::sync(format!("stopped: {msg}")).hint(
                    "nothing was deleted; when this is intended, run `rclaude sync` (the sandbox's edits are saved first)",
                )));
            }
        }
    }
    let started = batch.first_event.unwrap_or_else(Instant::now);
    let outcome = engine
        .apply(&**sandbox, planned)
        .await
        .map_err(classify_live)?;
    for m in outcome.conflicts.iter().chain(&outcome.kept) {
        status.warn(m);
    }
    let n = outcome.written + outcome.deleted + outcome.links;
    if n > 0 {
        status.synced(n, started, &describe(&outcome));
    }
    Ok(())
}

/// True when the local HEAD (commit or branch) is no longer what the last bundle sync sent.
fn head_moved(ctx: &Ctx, record: &crate::session::SessionRecord) -> bool {
    let Some(state) = record
        .sync
        .as_ref()
        .and_then(|v| serde_json::from_value::<SyncState>(v.clone()).ok())
    else {
        return false;
    };
    let Ok(repo) = crate::gitsync::open_work_tree(&ctx.repo.root) else {
        return false;
    };
    let head = repo
        .head()
        .ok()
        .and_then(|h| h.target())
        .map(|o| o.to_string());
    let branch = ctx.repo.branch();
    head != state.head || branch != state.branch
}

fn describe(o: &crate::livesync::apply::BatchOutcome) -> String {
    let mut parts = Vec::new();
    if o.written > 0 {
        parts.push(format!("{} written", o.written));
    }
    if o.deleted > 0 {
        parts.push(format!("{} deleted", o.deleted));
    }
    if o.links > 0 {
        parts.push(format!("{} links", o.links));
    }
    parts.join(", ")
}

fn classify_live(e: LiveError) -> Failure {
    match e {
        LiveError::Sandbox(s) => classify_sandbox(s),
        other => Failure::Fatal(CliError::sync(other.to_string())),
    }
}

fn classify_sandbox(e: crate::provider::SandboxError) -> Failure {
    use crate::provider::SandboxError as S;
    match e {
        S::Unreachable { .. } | S::Timeout(_) | S::Protocol(_) => Failure::Lost(e.to_string()),
        other => Failure::Fatal(other.into()),
    }
}

fn classify_cli(e: CliError) -> Failure {
    if e.kind == ErrorKind::Unavailable && e.exit_code.is_none() {
        Failure::Lost(e.message)
    } else {
        Failure::Fatal(e)
    }
}

async fn resync(
    ctx: &Ctx,
    record: &mut crate::session::SessionRecord,
    sandbox: &dyn Sandbox,
) -> CliResult<()> {
    let _lock = ctx.store.lock()?;
    sync_into(ctx, record, sandbox).await
}

async fn start_engine(
    ctx: &Ctx,
    record: &crate::session::SessionRecord,
    sandbox: &dyn Sandbox,
    limits: Limits,
) -> CliResult<LiveSync> {
    let state: SyncState = super::sync::sync_state(record)
        .ok_or_else(|| CliError::internal("no sync state after the bundle sync"))?;
    let snapshot = state
        .snapshot_oid()
        .ok_or_else(|| CliError::internal("the sync state has no snapshot"))?;
    LiveSync::start(
        &ctx.repo.root,
        sandbox,
        snapshot,
        &ctx.config.sync.ignore,
        limits,
    )
    .await
    .map_err(|e| match e {
        LiveError::Sandbox(s) => CliError::from(s),
        other => CliError::sync(other.to_string()),
    })
}

/// Reconnect with backoff, re-sync by bundle, restart the engine.
async fn reconnect(
    ctx: &Ctx,
    record: &mut crate::session::SessionRecord,
    watcher: &mut Watcher,
    limits: Limits,
    status: &Status,
) -> CliResult<(Arc<dyn Sandbox>, LiveSync)> {
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            let sandbox = ctx.connect(record).await?;
            resync(ctx, record, &*sandbox).await?;
            let engine = start_engine(ctx, record, &*sandbox, limits).await?;
            Ok::<_, CliError>((sandbox, engine))
        };
        match attempt.await {
            Ok(ok) => {
                watcher.drain();
                return Ok(ok);
            }
            Err(e) if e.kind == ErrorKind::Unavailable && e.exit_code.is_none() => {
                status.line(&format!(
                    "still unreachable ({}); retrying in {}",
                    e.message,
                    format_elapsed(delay)
                ));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = tokio::signal::ctrl_c() => return Err(CliError::new(ErrorKind::Interrupted, "interrupted")),
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The live status line: what is watched and what was synced, shown through the progress
/// sink's status line.
struct Status {
    sink: Box<dyn StatusSink>,
    root: String,
    synced: std::sync::atomic::AtomicUsize,
}

impl Status {
    fn new(out: &Out, root: &str, files: usize) -> Status {
        let line = format!("watching {root} · {files} files in sync · Ctrl-C stops");
        let sink = out.status(line.clone());
        sink.set(
            &line,
            Some(&format!(
                "watching {root} ({files} files in sync); Ctrl-C stops"
            )),
        );
        Status {
            sink,
            root: root.to_string(),
            synced: 0.into(),
        }
    }

    fn synced(&self, n: usize, started: Instant, what: &str) {
        let total = self
            .synced
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed)
            + n;
        let latency = format_elapsed(started.elapsed());
        self.sink.set(
            &format!(
                "watching {} · {total} changes synced · last {latency} ({what})",
                self.root
            ),
            Some(&format!("synced: {what} ({latency})")),
        );
    }

    fn line(&self, msg: &str) {
        self.sink.line(msg);
    }

    fn warn(&self, msg: &str) {
        self.sink.warn(msg);
    }

    fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        let mut f = Some(f);
        let mut out = None;
        self.sink.suspend(&mut || out = f.take().map(|f| f()));
        out.expect("suspend runs its closure")
    }

    fn finish(&self) {
        self.sink.finish();
    }
}
