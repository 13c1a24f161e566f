//! Progress reporting for long sync stages (pack building, transfers, indexing).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

/// Receives progress of a sync. Implementations must be cheap: calls can be frequent.
pub trait SyncProgress: Send + Sync {
    /// A new stage starts (`snapshot`, `query`, `bundle`, `upload`, `apply`, `download`, `index`, ...).
    fn stage(&self, name: &str);
    /// Objects processed so far out of `total`.
    fn objects(&self, done: u64, total: u64);
    /// Bytes processed so far, out of `total` when known.
    fn bytes(&self, done: u64, total: Option<u64>);
}

/// Ignores all progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl SyncProgress for NoProgress {
    fn stage(&self, _name: &str) {}
    fn objects(&self, _done: u64, _total: u64) {}
    fn bytes(&self, _done: u64, _total: Option<u64>) {}
}

/// One progress call, carried from a blocking task to the caller's reporter.
#[derive(Debug)]
pub(crate) enum ProgressEvent {
    Stage(String),
    Objects(u64, u64),
    Bytes(u64, Option<u64>),
}

impl ProgressEvent {
    pub(crate) fn forward(self, to: &dyn SyncProgress) {
        match self {
            ProgressEvent::Stage(s) => to.stage(&s),
            ProgressEvent::Objects(d, t) => to.objects(d, t),
            ProgressEvent::Bytes(d, t) => to.bytes(d, t),
        }
    }
}

/// Forwards progress over a channel, throttled to about 20 updates a second per kind
/// (final values always pass).
pub(crate) struct ChannelProgress {
    tx: UnboundedSender<ProgressEvent>,
    last: Mutex<(Option<Instant>, Option<Instant>)>,
}

const EVERY: Duration = Duration::from_millis(50);

impl ChannelProgress {
    pub(crate) fn new(tx: UnboundedSender<ProgressEvent>) -> Self {
        ChannelProgress {
            tx,
            last: Mutex::new((None, None)),
        }
    }

    fn due(slot: &mut Option<Instant>, last_value: bool) -> bool {
        let now = Instant::now();
        if last_value || slot.is_none_or(|t| now.duration_since(t) >= EVERY) {
            *slot = Some(now);
            true
        } else {
            false
        }
    }
}

impl SyncProgress for ChannelProgress {
    fn stage(&self, name: &str) {
        let _ = self.tx.send(ProgressEvent::Stage(name.to_string()));
    }

    fn objects(&self, done: u64, total: u64) {
        let send = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            Self::due(&mut last.0, done >= total)
        };
        if send {
            let _ = self.tx.send(ProgressEvent::Objects(done, total));
        }
    }

    fn bytes(&self, done: u64, total: Option<u64>) {
        let send = {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            Self::due(&mut last.1, total.is_some_and(|t| done >= t))
        };
        if send {
            let _ = self.tx.send(ProgressEvent::Bytes(done, total));
        }
    }
}
