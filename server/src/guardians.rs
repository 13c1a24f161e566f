//! Background jobs that act on managed sessions for the deployment: idle auto-pause (a running
//! managed session no client has shown activity on for `idle_pause` is paused, and stops
//! billing) and the reconciler (the database and the provider agree: a sandbox the provider lost
//! closes its session at its last sign of life; a sandbox no session owns is killed). One replica
//! acts at a time (a PostgreSQL advisory lock per round), so two replicas never pause, or bill,
//! the same session twice.

use std::collections::HashMap;
use std::time::Duration;

use rclaude_sandbox::provider::SandboxState;

use tokio::sync::watch;

use crate::clock::Now;
use crate::model::EventKind;
use crate::safekeeping::Safekeeper;
use crate::sandboxes;
use crate::storage::{RunningManaged, Store, StoreError};

/// The advisory lock key of the idle auto-pause job.
const IDLE_PAUSE_LOCK: i64 = 0x0072_636c_6175_6401;
/// The advisory lock key of the reconciler.
const RECONCILE_LOCK: i64 = 0x0072_636c_6175_6402;
/// The advisory lock key of checkpoint expiry.
const CHECKPOINT_EXPIRY_LOCK: i64 = 0x0072_636c_6175_6403;

/// Pause idle managed sessions until `shutdown` turns true.
pub async fn idle_pause(keeper: Safekeeper, idle: Duration, mut shutdown: watch::Receiver<bool>) {
    let every = (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match idle_round(&keeper, idle).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(paused = n, "paused idle managed sessions"),
            Err(e) => tracing::warn!(error = %e, "idle auto-pause round failed"),
        }
    }
}

/// One round: pause every running managed session idle for longer than its `idle_pause`
/// (`idle` when it has none), each after a checkpoint of its work.
pub async fn idle_round(keeper: &Safekeeper, idle: Duration) -> Result<usize, StoreError> {
    let (store, sandboxes) = (&keeper.store, &keeper.sandboxes);
    let Some(lock) = store.try_job_lock(IDLE_PAUSE_LOCK).await? else {
        return Ok(0); // another replica is on it
    };
    let now = Now::system();
    let mut paused = 0;
    let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
    for (account, session, sandbox) in store.idle_managed_sessions(now.ms(), idle_ms).await? {
        keeper
            .checkpoint(&account, &session, &sandbox, "idle-pause")
            .await;
        if let Err(e) = sandboxes.pause(&sandbox).await {
            tracing::warn!(
                session,
                error = e.message,
                "cannot auto-pause an idle session"
            );
            continue;
        }
        let data = serde_json::json!({ "by": "server", "reason": "idle" });
        match sandboxes::record(store, &account, &session, EventKind::Paused, now, data).await {
            Ok(_) => paused += 1,
            Err(e) => tracing::warn!(session, error = %e, "cannot record an auto-pause"),
        }
    }
    lock.release().await;
    Ok(paused)
}

/// Reconcile the database with the provider every `every` until `shutdown` turns true. A
/// sandbox no session owns is killed once it has been seen so for `3 × every` (a create in
/// flight records its session well within that). With idle auto-pause on (`idle`), each
/// running session's provider timeout is kept beyond the moment the server would pause it, so
/// the server's pause, checkpoint first, comes before the provider's own.
pub async fn reconcile(
    keeper: Safekeeper,
    every: Duration,
    idle: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut rounds = Rounds {
        idle,
        ..Rounds::default()
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if let Err(e) = reconcile_round(&keeper, every * 3, &mut rounds).await {
            tracing::warn!(error = %e, "reconciler round failed");
        }
    }
}

/// What the reconciler remembers between rounds.
#[derive(Debug, Default)]
pub struct Rounds {
    /// The deployment's idle pause (`None`: off).
    pub idle: Option<Duration>,
    /// Sandboxes no session owns, and since when.
    pub orphans: HashMap<String, std::time::Instant>,
    /// Until when (ms) each sandbox's provider timeout was last set.
    pub extended: HashMap<String, i64>,
}

/// How far past the server's own idle pause a provider's timeout is set.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(10 * 60);

/// One round of [`reconcile`].
pub async fn reconcile_round(
    keeper: &Safekeeper,
    orphan_grace: Duration,
    rounds: &mut Rounds,
) -> Result<(), StoreError> {
    let orphans = &mut rounds.orphans;
    let (store, sandboxes) = (&keeper.store, &keeper.sandboxes);
    let Some(lock) = store.try_job_lock(RECONCILE_LOCK).await? else {
        return Ok(());
    };
    let now = Now::system();
    let running = store.running_managed_sessions().await?;
    let live: std::collections::HashSet<&str> =
        running.iter().map(|r| r.sandbox_id.as_str()).collect();
    rounds.extended.retain(|id, _| live.contains(id.as_str()));
    for r in &running {
        let (account, session, sandbox) = (&r.account_id, &r.session_id, &r.sandbox_id);
        let (kind, reason) = match sandboxes.state(sandbox).await {
            Ok(Some(SandboxState::Running)) => {
                store.touch_session(session, now.s()).await?;
                outlast_idle_pause(sandboxes, r, rounds.idle, &mut rounds.extended, now).await;
                continue;
            }
            Ok(Some(_)) => (EventKind::Paused, "lost"),
            Ok(None) => (EventKind::Stopped, "gone"),
            Err(e) => {
                tracing::warn!(session, error = e.message, "cannot ask the provider");
                continue;
            }
        };
        tracing::warn!(
            session,
            sandbox,
            reason,
            "the provider no longer runs this session's sandbox"
        );
        let data = serde_json::json!({ "by": "server", "reason": reason });
        if let Err(e) = sandboxes::record(store, account, session, kind, now, data).await {
            tracing::warn!(session, error = %e, "cannot record a lost sandbox");
        }
    }
    // Accounts at their monthly budget: their running sessions pause.
    for (account, max) in store.budgeted_accounts().await? {
        if crate::limits::month_cost(store, &account, now).await? < max {
            continue;
        }
        for (session, sandbox) in store.running_managed_of(&account).await? {
            keeper
                .checkpoint(&account, &session, &sandbox, "budget-pause")
                .await;
            if let Err(e) = sandboxes.pause(&sandbox).await {
                tracing::warn!(session, error = e.message, "cannot pause at the budget cap");
                continue;
            }
            let data = serde_json::json!({ "by": "server", "reason": "budget" });
            if let Err(e) =
                sandboxes::record(store, &account, &session, EventKind::Paused, now, data).await
            {
                tracing::warn!(session, error = %e, "cannot record a budget pause");
            }
        }
    }
    let known = store.live_managed_sandboxes().await?;
    match sandboxes.server_made().await {
        Ok(ids) => {
            let seen: std::collections::HashSet<&String> = ids.iter().collect();
            orphans.retain(|id, _| seen.contains(id) && !known.contains(id));
            for id in ids.iter().filter(|id| !known.contains(*id)) {
                let since = *orphans
                    .entry(id.clone())
                    .or_insert_with(std::time::Instant::now);
                if since.elapsed() >= orphan_grace {
                    tracing::warn!(sandbox = id, "killing a sandbox no session owns");
                    match sandboxes.kill(id).await {
                        Ok(()) => {
                            orphans.remove(id);
                        }
                        Err(e) => tracing::warn!(sandbox = id, error = e.message, "cannot kill"),
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = e.message, "cannot list the provider's sandboxes"),
    }
    lock.release().await;
    Ok(())
}

/// Keep `r`'s provider timeout [`TIMEOUT_MARGIN`] past the moment the idle job pauses it
/// (its last activity plus its idle pause), so a provider never pauses an idle sandbox before
/// the server has checkpointed it. Only asks the provider when that moment moved by more than
/// half the margin: an idle session costs one call, an active one one every few minutes.
async fn outlast_idle_pause(
    sandboxes: &sandboxes::Sandboxes,
    r: &RunningManaged,
    idle: Option<Duration>,
    extended: &mut HashMap<String, i64>,
    now: Now,
) {
    let Some(idle_ms) = r.idle_pause_ms.or(idle.map(|d| d.as_millis() as i64)) else {
        return; // the provider's own timeout is the only pause
    };
    let margin = TIMEOUT_MARGIN.as_millis() as i64;
    // Past due, the idle job pauses it within a round: the margin covers that.
    let want = r.active_at_ms.saturating_add(idle_ms).max(now.ms()) + margin;
    if extended
        .get(&r.sandbox_id)
        .is_some_and(|until| *until >= want - margin / 2)
    {
        return;
    }
    let lifetime = Duration::from_millis((want - now.ms()) as u64);
    match sandboxes.keep_alive(&r.sandbox_id, lifetime).await {
        Ok(()) => {
            extended.insert(r.sandbox_id.clone(), want);
        }
        Err(e) => tracing::warn!(
            session = r.session_id,
            error = e.message,
            "cannot extend the sandbox's provider timeout"
        ),
    }
}

/// Delete the checkpoints of sessions stopped longer than `after` ago (they would otherwise be
/// billed as storage for ever), now and then every hour, until `shutdown` turns true.
pub async fn checkpoint_expiry(
    store: Store,
    blobs: crate::checkpoint_store::BlobStore,
    after: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        match expire_round(&store, &blobs, Now::system().ms(), after).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "deleted checkpoints of stopped sessions"),
            Err(e) => tracing::warn!(error = %e, "checkpoint expiry round failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// One round of [`checkpoint_expiry`] as of `now_ms`: records first, then their objects (a
/// crash between leaves objects the start-up sweep removes). Returns how many were deleted.
pub async fn expire_round(
    store: &Store,
    blobs: &crate::checkpoint_store::BlobStore,
    now_ms: i64,
    after: Duration,
) -> Result<usize, StoreError> {
    let Some(lock) = store.try_job_lock(CHECKPOINT_EXPIRY_LOCK).await? else {
        return Ok(0); // another replica is on it
    };
    let stale = store
        .checkpoints_of_stopped(now_ms - after.as_millis() as i64)
        .await;
    let result = async {
        let stale = stale?;
        let ids: Vec<String> = stale.iter().map(|c| c.id.clone()).collect();
        store.mark_checkpoints_deleted(&ids, now_ms).await?;
        for c in &stale {
            if let Err(e) = blobs.delete(&c.object_key).await {
                tracing::warn!(key = %c.object_key, error = %e, "deleting an expired checkpoint failed");
            }
        }
        Ok(stale.len())
    }
    .await;
    lock.release().await;
    result
}
