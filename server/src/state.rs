//! The state every handler shares ([`AppState`]), defined below the routes that use it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::FromRef;
use tokio::sync::{Notify, watch};

use crate::config::ServerConfig;
use crate::events::Hub;
use crate::metrics::Metrics;
use crate::storage::Store;

/// Shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
    /// Turns true when the server is shutting down (WebSockets close with 1001).
    pub shutdown: watch::Receiver<bool>,
    pub sockets: Arc<SocketTracker>,
    /// Credentials withdrawn on this replica (closes their WebSockets).
    pub revocations: crate::revocations::Revocations,
    /// The provider of managed sessions' sandboxes (`None`: this deployment manages none).
    pub sandboxes: Option<crate::sandboxes::Sandboxes>,
    /// Where checkpoint bundles are stored.
    pub checkpoints: crate::checkpoint_store::BlobStore,
}

impl AppState {
    /// What checkpoints managed sessions before the server pauses or stops them (`None`: this
    /// deployment manages no sandboxes).
    pub fn safekeeper(&self) -> Option<crate::safekeeping::Safekeeper> {
        self.sandboxes
            .clone()
            .map(|sandboxes| crate::safekeeping::Safekeeper {
                store: self.store.clone(),
                sandboxes,
                blobs: self.checkpoints.clone(),
                settings: self.config.checkpoints.clone(),
            })
    }
}

impl FromRef<AppState> for Arc<ServerConfig> {
    fn from_ref(state: &AppState) -> Self {
        state.config.clone()
    }
}

/// Counts open WebSockets so shutdown can wait for them to say goodbye.
#[derive(Debug, Default)]
pub struct SocketTracker {
    open: AtomicUsize,
    idle: Notify,
}

impl SocketTracker {
    pub fn enter(self: &Arc<Self>) -> SocketGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        SocketGuard(self.clone())
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until no socket is open or `limit` passes.
    pub async fn wait_idle(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            while self.open() > 0 {
                let n = self.idle.notified();
                if self.open() == 0 {
                    break;
                }
                n.await;
            }
        })
        .await;
    }
}

/// Held by a WebSocket task while it runs.
pub struct SocketGuard(Arc<SocketTracker>);

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
