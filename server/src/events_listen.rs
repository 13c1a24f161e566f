//! The PostgreSQL LISTEN loop of a replica: every notice becomes a [`LiveEvent`] on the hub
//! (loaded from the store when it travelled by reference). See [`crate::events`].

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::events::{CHANNEL, Hub, LiveEvent, Notice};
use crate::storage::Store;

/// Runs the PostgreSQL LISTEN loop until `shutdown` turns true. Reconnects on its own; events
/// committed while it was disconnected are not replayed (WebSocket clients resume with
/// `since_seq`).
pub async fn listen_postgres(
    url: String,
    store: Store,
    hub: Hub,
    mut shutdown: watch::Receiver<bool>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        let mut listener = match PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "LISTEN connection failed; retrying in 1s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::error!(error = %e, "LISTEN failed; retrying in 1s");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if let Some(r) = ready.take() {
            let _ = r.send(());
        }
        tracing::info!(channel = CHANNEL, "listening for events from all replicas");
        loop {
            let n = tokio::select! {
                n = listener.try_recv() => n,
                _ = shutdown.changed() => return,
            };
            match n {
                Ok(Some(n)) => match serde_json::from_str::<Notice>(n.payload()) {
                    Ok(notice) => deliver(&store, &hub, notice).await,
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed notification"),
                },
                Ok(None) => {
                    tracing::warn!("LISTEN connection lost; reconnecting (events may be missed)")
                }
                Err(e) => {
                    tracing::error!(error = %e, "LISTEN failed; reconnecting");
                    break;
                }
            }
        }
    }
}

async fn deliver(store: &Store, hub: &Hub, notice: Notice) {
    let message: Arc<str> = match (notice.m, notice.e) {
        (Some(m), _) => m.into(),
        (None, Some(event_id)) => match store.live_message(&notice.a, &event_id).await {
            Ok(Some(m)) => m.into(),
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, event_id, "cannot load a notified event");
                return;
            }
        },
        (None, None) => return,
    };
    hub.publish(LiveEvent {
        account_id: notice.a,
        session_id: notice.s,
        seq: notice.q,
        message,
    });
}
