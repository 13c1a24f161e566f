//! Reporting sessions to rclaude-server: credentials, the HTTP client, and an on-disk outbox so
//! that a server that is down or unreachable never breaks the user's work.
//!
//! Every event gets a client idempotency key when it is queued; delivery is retried on later
//! commands until the server accepts it, and a redelivered event is accepted once.

pub mod client;
pub mod credentials;
pub mod managed;
pub mod outbox;

use std::time::Duration;

use serde_json::{Value, json};

pub use client::{ServerClient, ServerError};
pub use credentials::Credentials;
pub use outbox::{Outbox, Pending};

use crate::session::SessionRecord;

/// How long a command waits for the server at its end before leaving events queued.
const FLUSH_BUDGET: Duration = Duration::from_secs(3);
/// Interval of heartbeats while a command runs in the foreground.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);

/// Session facts the server records at creation.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    pub repository: String,
    pub branch: String,
    pub config_hash: String,
}

/// Queues and delivers session events; a no-op when not logged in.
#[derive(Debug, Clone)]
pub struct Reporter {
    creds: Option<Credentials>,
    outbox: Outbox,
}

impl Reporter {
    /// A reporter for the stored (or environment) credentials.
    pub fn from_env() -> Reporter {
        Reporter {
            creds: Credentials::load().ok().flatten(),
            outbox: Outbox::new(crate::dirs::state_dir().join("outbox")),
        }
    }

    /// True when a server is configured.
    pub fn enabled(&self) -> bool {
        self.creds.is_some()
    }

    /// A client of the configured server, when there is one.
    pub fn client(&self) -> Option<Result<ServerClient, ServerError>> {
        self.creds.as_ref().map(ServerClient::new)
    }

    /// Queue the creation of a session (idempotent on the server by its id).
    pub fn session_created(&self, record: &SessionRecord, facts: &SessionFacts) {
        let Some(c) = &self.creds else { return };
        if record.provider == managed::MANAGED {
            return; // the server created it
        }
        let body = json!({
            "id": record.session_id,
            "repository": facts.repository,
            "branch": facts.branch,
            "provider": record.provider,
            "sandbox_id": record.sandbox_id,
            "config_hash": facts.config_hash,
        });
        self.queue(Pending::create_session(&c.server, body));
    }

    /// Queue an event (`started`, `paused`, `resumed`, `stopped`, `task_started`, ...). A
    /// managed session's state changes are the server's own record: they are not reported.
    pub fn event(&self, record: &SessionRecord, kind: &str, data: Value) {
        let Some(c) = &self.creds else { return };
        if record.provider == managed::MANAGED
            && matches!(kind, "started" | "paused" | "resumed" | "stopped")
        {
            return;
        }
        // Nothing with a secret value in it is written to the outbox or sent.
        let data = redact_value(data);
        self.queue(Pending::event(&c.server, &record.session_id, kind, data));
    }

    /// Queue an event that several processes may report (the end of a detached run): `key`
    /// makes the server accept it once.
    pub fn event_once(&self, record: &SessionRecord, kind: &str, key: &str, data: Value) {
        let Some(c) = &self.creds else { return };
        let data = redact_value(data);
        let mut p = Pending::event(&c.server, &record.session_id, kind, data);
        p.set_idempotency_key(key);
        self.queue(p);
    }

    fn queue(&self, p: Pending) {
        if let Err(e) = self.outbox.push(&p) {
            tracing::warn!("could not queue a server event: {e}");
        }
    }

    /// Deliver queued events within a short budget; returns how many are still queued.
    pub async fn flush(&self) -> usize {
        let Some(c) = &self.creds else { return 0 };
        let client = match ServerClient::new(c) {
            Ok(cl) => cl,
            Err(_) => return self.outbox.len(),
        };
        match tokio::time::timeout(FLUSH_BUDGET, self.outbox.deliver(&client, &c.server)).await {
            Ok(left) => left,
            Err(_) => self.outbox.len(),
        }
    }

    /// Send heartbeats for `record` until the returned guard is dropped.
    pub fn heartbeats(&self, record: &SessionRecord) -> Option<HeartbeatGuard> {
        let c = self.creds.clone()?;
        let session = record.session_id.clone();
        let handle = tokio::spawn(async move {
            let Ok(client) = ServerClient::new(&c) else {
                return;
            };
            let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let key = uuid::Uuid::new_v4().to_string();
                // Heartbeats are not queued: a late heartbeat is worthless.
                let _ = client
                    .post_event(&session, "heartbeat", &key, &json!({}))
                    .await;
            }
        });
        Some(HeartbeatGuard(handle))
    }
}

/// Stops the heartbeat task when dropped.
pub struct HeartbeatGuard(tokio::task::JoinHandle<()>);

impl Drop for HeartbeatGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `v` with secret values taken out of every string in it (see [`crate::redact`]).
fn redact_value(v: Value) -> Value {
    match v {
        Value::String(s) => match crate::redact::text(&s) {
            std::borrow::Cow::Borrowed(_) => Value::String(s),
            std::borrow::Cow::Owned(o) => Value::String(o),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(redact_value).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, redact_value(v))).collect())
        }
        other => other,
    }
}
