//! Background jobs that act on managed sessions for the deployment: idle auto-pause (a running
//! managed session no client has shown activity on for `idle_pause` is paused, and stops
//! billing). One replica acts at a time (a PostgreSQL advisory lock per round), so two replicas
//! never pause, or bill, the same session twice.

use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Now;
use crate::model::EventKind;
use crate::sandboxes::{self, Sandboxes};
use crate::storage::{Store, StoreError};

/// The advisory lock key of the idle auto-pause job.
const IDLE_PAUSE_LOCK: i64 = 0x0072_636c_6175_6401;

/// Pause idle managed sessions until `shutdown` turns true.
pub async fn idle_pause(
    store: Store,
    sandboxes: Sandboxes,
    idle: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        match idle_round(&store, &sandboxes, idle).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(paused = n, "paused idle managed sessions"),
            Err(e) => tracing::warn!(error = %e, "idle auto-pause round failed"),
        }
    }
}

/// One round: pause every running managed session idle for longer than `idle`.
pub async fn idle_round(
    store: &Store,
    sandboxes: &Sandboxes,
    idle: Duration,
) -> Result<usize, StoreError> {
    let Some(lock) = store.try_job_lock(IDLE_PAUSE_LOCK).await? else {
        return Ok(0); // another replica is on it
    };
    let now = Now::system();
    let before = now.ms() - idle.as_millis() as i64;
    let mut paused = 0;
    for (account, session, sandbox) in store.idle_managed_sessions(before).await? {
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
