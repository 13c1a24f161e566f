//! Withdrawn credentials reach the WebSockets opened with them.
//!
//! A socket outlives the request that authenticated it, so revoking its token or signing out of
//! the dashboard must end it too. On this replica the revoke and sign-out paths publish a
//! [`Revoked`] notice and every matching socket closes at once with 1008 (policy violation).
//! A revocation made elsewhere (another replica, `rclaude-server admin revoke-token`) is caught
//! by the check every socket makes at each ping ([`Credential::still_valid`]), so no socket keeps
//! a withdrawn credential for longer than the ping interval.

use tokio::sync::broadcast;

use crate::clock::Now;
use crate::storage::{Principal, Store, StoreError};

/// What authenticated a request: kept by a WebSocket to check again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API token, by the SHA-256 of its secret.
    Token { hash: String },
    /// A dashboard sign-in, by the SHA-256 of its cookie secret.
    WebSession { hash: String },
}

impl Credential {
    /// Whether the credential still authenticates (not revoked, not signed out, not expired).
    pub async fn still_valid(&self, store: &Store) -> Result<bool, StoreError> {
        Ok(match self {
            Credential::Token { hash } => store.authenticate(hash).await?.is_some(),
            Credential::WebSession { hash } => {
                store.web_session(hash, Now::system().ms()).await?.is_some()
            }
        })
    }
}

/// A credential withdrawn on this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// A token, by id: its own sockets and those of dashboard sign-ins made with it.
    Token(String),
    /// One dashboard sign-in, by the hash of its cookie secret.
    WebSession(String),
}

impl Revoked {
    /// Whether a socket authenticated as `p` with `cred` must close.
    pub fn applies_to(&self, p: &Principal, cred: &Credential) -> bool {
        match (self, cred) {
            (Revoked::Token(id), _) => *id == p.token_id,
            (Revoked::WebSession(h), Credential::WebSession { hash }) => h == hash,
            (Revoked::WebSession(_), Credential::Token { .. }) => false,
        }
    }
}

/// The in-process channel of [`Revoked`] notices.
#[derive(Debug, Clone)]
pub struct Revocations {
    tx: broadcast::Sender<Revoked>,
}

impl Default for Revocations {
    fn default() -> Self {
        Revocations {
            tx: broadcast::channel(256).0,
        }
    }
}

impl Revocations {
    pub fn token_revoked(&self, token_id: &str) {
        let _ = self.tx.send(Revoked::Token(token_id.to_string()));
    }

    pub fn signed_out(&self, session_hash: &str) {
        let _ = self.tx.send(Revoked::WebSession(session_hash.to_string()));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Revoked> {
        self.tx.subscribe()
    }
}
