//! While a command works in the sandbox: heartbeats to the server and, where the provider pauses
//! idle sandboxes on its own (E2B), timeout extensions.

use std::time::Duration;

use super::context::Ctx;
use crate::report::HeartbeatGuard;
use crate::session::SessionRecord;

/// Stops the background keep-alive work when dropped.
pub struct AliveGuard {
    _heartbeats: Option<HeartbeatGuard>,
    extender: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for AliveGuard {
    fn drop(&mut self) {
        if let Some(h) = self.extender.take() {
            h.abort();
        }
    }
}

/// Start heartbeats and timeout extensions for `record`'s sandbox.
pub fn keep_alive(ctx: &Ctx, record: &SessionRecord) -> AliveGuard {
    let heartbeats = ctx.reporter.heartbeats(record);
    let lifetime = ctx.config.sandbox.timeout.0;
    let extender = ctx
        .provider_for(record)
        .ok()
        .filter(|p| p.capabilities().auto_pause)
        .map(|provider| {
            let id = record.sandbox_id.clone();
            // Extend well before the idle timeout can elapse.
            let every = (lifetime / 2).clamp(Duration::from_secs(5), Duration::from_secs(300));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = provider.keep_alive(&id, lifetime).await {
                        tracing::warn!("could not extend the sandbox's timeout: {e}");
                    }
                }
            })
        });
    AliveGuard {
        _heartbeats: heartbeats,
        extender,
    }
}
