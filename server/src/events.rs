//! Live event fan-out.
//!
//! Every committed event becomes one [`LiveEvent`] on an in-process broadcast channel, which the
//! WebSocket handlers filter by account and session. How events reach the channel depends on the
//! engine:
//! - SQLite (one process): the writer publishes right after commit, while still holding the single
//!   writer connection, so the channel order is the commit order.
//! - PostgreSQL (any number of replicas): the writer calls `pg_notify` right after its commit;
//!   every replica (including the writer's) LISTENs and publishes what it hears. Subscribers keep
//!   per-session sequence numbers and fill gaps from the database, so each sees every event
//!   once, in order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// The PostgreSQL notification channel.
pub const CHANNEL: &str = "rclaude_events";

/// NOTIFY payloads must stay under 8000 bytes; bigger messages travel by reference.
const MAX_INLINE_PAYLOAD: usize = 7000;

/// One committed event, ready to send.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub account_id: String,
    pub session_id: String,
    pub seq: i64,
    /// The WebSocket text message: `{"event": Event, "session": Session}`.
    pub message: Arc<str>,
}

/// The in-process broadcast of live events.
#[derive(Debug, Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<LiveEvent>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(8192)
    }
}

impl Hub {
    pub fn new(capacity: usize) -> Hub {
        Hub {
            tx: broadcast::channel(capacity).0,
        }
    }

    pub fn publish(&self, ev: LiveEvent) {
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(Arc::new(ev));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }
}

/// What travels through NOTIFY.
#[derive(Debug, Serialize, Deserialize)]
pub struct Notice {
    /// Account id.
    pub a: String,
    /// Session id.
    pub s: String,
    /// Sequence number.
    pub q: i64,
    /// The message itself, when small enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<String>,
    /// Otherwise the event id, to load it from the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

impl Notice {
    /// The NOTIFY payload for an event.
    pub fn payload(ev: &LiveEvent, event_id: &str) -> String {
        let inline = Notice {
            a: ev.account_id.clone(),
            s: ev.session_id.clone(),
            q: ev.seq,
            m: Some(ev.message.to_string()),
            e: None,
        };
        let text = serde_json::to_string(&inline).expect("serialisable");
        if text.len() <= MAX_INLINE_PAYLOAD {
            return text;
        }
        serde_json::to_string(&Notice {
            m: None,
            e: Some(event_id.to_string()),
            ..inline
        })
        .expect("serialisable")
    }
}
