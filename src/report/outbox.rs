//! Events waiting for the server, one JSON file each, delivered in order.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ServerClient, ServerError};

/// One queued call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pending {
    CreateSession {
        server: String,
        body: Value,
    },
    Event {
        server: String,
        session: String,
        event: String,
        idempotency_key: String,
        data: Value,
    },
}

impl Pending {
    pub fn create_session(server: &str, body: Value) -> Pending {
        Pending::CreateSession {
            server: server.to_string(),
            body,
        }
    }

    /// An event with a fresh idempotency key.
    pub fn event(server: &str, session: &str, event: &str, data: Value) -> Pending {
        Pending::Event {
            server: server.to_string(),
            session: session.to_string(),
            event: event.to_string(),
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            data,
        }
    }

    /// Use `key` instead of a fresh one (an event several processes may send).
    pub fn set_idempotency_key(&mut self, key: &str) {
        if let Pending::Event {
            idempotency_key, ..
        } = self
        {
            *idempotency_key = key.to_string();
        }
    }

    fn server(&self) -> &str {
        match self {
            Pending::CreateSession { server, .. } | Pending::Event { server, .. } => server,
        }
    }

    async fn deliver(&self, client: &ServerClient) -> Result<(), ServerError> {
        match self {
            Pending::CreateSession { body, .. } => client.create_session(body).await.map(|_| ()),
            Pending::Event {
                session,
                event,
                idempotency_key,
                data,
                ..
            } => client
                .post_event(session, event, idempotency_key, data)
                .await
                .map(|_| ()),
        }
    }
}

/// The on-disk queue.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn new(dir: PathBuf) -> Outbox {
        Outbox { dir }
    }

    /// Queue a call (durably: written and renamed before this returns).
    pub fn push(&self, p: &Pending) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!("{nanos:024}-{}.json", uuid::Uuid::new_v4().simple());
        let path = self.dir.join(name);
        let bytes = serde_json::to_vec(p).map_err(std::io::Error::other)?;
        crate::session::write_atomic(&path, &bytes)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(path)
    }

    /// Queued files in delivery order.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Number of queued calls.
    pub fn len(&self) -> usize {
        self.files().len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deliver queued calls for `server` in order; stop at the first transient failure.
    /// Calls the server refuses for good are moved to `dead/`. Returns how many remain.
    pub async fn deliver(&self, client: &ServerClient, server: &str) -> usize {
        for path in self.files() {
            let Some(p) = read(&path) else {
                self.bury(&path);
                continue;
            };
            if p.server() != server {
                continue;
            }
            match p.deliver(client).await {
                Ok(()) => {
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) if e.is_transient() => break,
                Err(e) => {
                    tracing::warn!(
                        "the server refused a queued event for good ({e}); kept in {}",
                        self.dir.join("dead").display()
                    );
                    self.bury(&path);
                }
            }
        }
        self.len()
    }

    fn bury(&self, path: &Path) {
        let dead = self.dir.join("dead");
        let _ = std::fs::create_dir_all(&dead);
        if let Some(name) = path.file_name() {
            let _ = std::fs::rename(path, dead.join(name));
        }
    }
}

fn read(path: &Path) -> Option<Pending> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
