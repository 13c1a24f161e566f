//! All SQL of the server, behind one type: [`Store`].
//!
//! Queries are runtime-checked (`sqlx::query`), written once with `$N` placeholders, and run
//! unchanged on SQLite and PostgreSQL through `sqlx::Any`. Only `TEXT` and `BIGINT` columns are
//! used, so decoding is `String` / `i64` on both engines.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{Acquire, Row};

use crate::billing::{Interval, Lifetime};
use crate::config::Prices;
use crate::db::{Db, Engine};
use crate::events::{CHANNEL, Hub, LiveEvent, Notice};
use crate::metering::{self, Meter, State, TransitionError};
use crate::model::{self, Account, Event, EventKind, Session, TokenInfo};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidTransition(#[from] TransitionError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Who is calling, as established by a valid token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub account_id: String,
    pub account_name: String,
    pub token_id: String,
    pub token_prefix: String,
    pub last_used_at_ms: Option<i64>,
}

/// How a token to revoke is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKey<'a> {
    /// Its public prefix (`rcl_xxxxxxxx`) or its id.
    PrefixOrId(&'a str),
    /// The SHA-256 of the whole token (someone pasted the secret itself).
    Hash(String),
}

impl TokenKey<'_> {
    /// How to name it in a message (never the secret).
    pub fn describe(&self) -> &str {
        match self {
            TokenKey::PrefixOrId(k) => k,
            TokenKey::Hash(_) => "(the token given)",
        }
    }
}

/// Fields of a new session (validated by the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub id: String,
    pub repository: String,
    pub branch: String,
    pub provider: String,
    pub sandbox_id: Option<String>,
    pub config_hash: Option<String>,
}

/// A new event (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventKind,
    pub idempotency_key: String,
    pub data: Value,
}

/// Filters of `GET /v1/sessions`.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub repository: Option<String>,
    pub state: Option<String>,
    pub provider: Option<String>,
    pub limit: i64,
    /// `(created_at_ms, id)` of the last session of the previous page.
    pub after: Option<(i64, String)>,
}

/// Result of appending an event.
#[derive(Debug, Clone)]
pub struct Appended {
    pub event: Event,
    pub session: Session,
    /// False when the idempotency key had been seen: `event` is the stored one.
    pub created: bool,
}

/// A repository with the number of its sessions (for the dashboard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSummary {
    pub id: String,
    pub name: String,
    pub sessions: i64,
    pub running: i64,
    pub last_created_ms: i64,
}

/// One row of the Stripe meter event outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterEventRow {
    /// Our event id: the Stripe `identifier` and `Idempotency-Key`.
    pub id: String,
    pub source: String,
    pub interval_id: String,
    pub account_id: String,
    pub customer_id: String,
    pub event_name: String,
    pub value: i64,
    pub timestamp_s: i64,
    /// `pending`, `sent` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub sent_at_ms: Option<i64>,
}

/// A closed active interval not yet in the Stripe outbox, with its account's customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportCandidate {
    pub interval_id: String,
    pub account_id: String,
    pub customer_id: String,
    pub start_s: i64,
    pub end_s: i64,
}

/// Counts of the Stripe outbox for `admin stripe-status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StripeCounts {
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
    /// Closed intervals of accounts with a customer that are not in the outbox yet.
    pub unqueued: i64,
    pub oldest_pending: Option<MeterEventRow>,
    /// Most recent failures (newest first).
    pub recent_failed: Vec<MeterEventRow>,
}

/// The idempotency key of the `created` event recorded with every new session.
pub const CREATED_KEY: &str = "rclaude:session-created";

/// Storage for accounts, tokens, sessions, events and metering.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    prices: Prices,
    hub: Hub,
}

macro_rules! session_select {
    () => {
        "SELECT s.id, r.name, s.branch, s.provider, s.sandbox_id, s.config_hash, s.state, \
         s.created_at_ms, s.updated_at_ms, s.last_seen_s, s.active_since_s, s.active_closed_s, \
         s.last_seq, s.account_id \
         FROM sessions s JOIN repositories r ON r.id = s.repository_id "
    };
}

/// The columns of `session_select!` (without the FROM clause).
const SESSION_COLS: &str = "SELECT s.id, r.name, s.branch, s.provider, s.sandbox_id, \
     s.config_hash, s.state, s.created_at_ms, s.updated_at_ms, s.last_seen_s, s.active_since_s, \
     s.active_closed_s, s.last_seq, s.account_id";

const METER_COLS: &str = "id, source, interval_id, account_id, customer_id, event_name, value, \
     timestamp_s, state, attempts, next_attempt_ms, last_error, created_at_ms, sent_at_ms";

const EVENT_COLS: &str = "id, session_id, type, data, created_at_ms, seq";

const TOKEN_COLS: &str =
    "id, prefix, name, created_at_ms, last_used_at_ms, revoked_at_ms, account_id";

impl Store {
    pub fn new(db: Db, prices: Prices, hub: Hub) -> Store {
        Store { db, prices, hub }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn prices(&self) -> &Prices {
        &self.prices
    }

    /// Cheap liveness check of the database.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.db.read).await?;
        Ok(())
    }

    // ---- accounts -------------------------------------------------------------------------

    /// Creates an account; `Conflict` if the name is taken.
    pub async fn create_account(&self, name: &str, now_ms: i64) -> Result<Account> {
        let id = uuid::Uuid::new_v4().to_string();
        let res = sqlx::query(
            "INSERT INTO accounts (id, name, created_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&id)
        .bind(name)
        .bind(now_ms)
        .execute(&self.db.write)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "an account named `{name}` already exists"
            )));
        }
        Ok(Account {
            id,
            name: name.to_string(),
            created_at: model::rfc3339_ms(now_ms),
        })
    }

    /// The account with this id.
    pub async fn account_by_id(&self, id: &str) -> Result<Account> {
        let row = sqlx::query("SELECT id, name, created_at_ms FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db.read)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(Account {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            created_at: model::rfc3339_ms(row.try_get(2)?),
        })
    }

    /// Finds an account by name or id.
    pub async fn find_account(&self, name_or_id: &str) -> Result<Account> {
        let row = sqlx::query(
            "SELECT id, name, created_at_ms FROM accounts WHERE name = $1 OR id = $1 \
             ORDER BY CASE WHEN name = $1 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(name_or_id)
        .fetch_optional(&self.db.read)
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(Account {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            created_at: model::rfc3339_ms(row.try_get(2)?),
        })
    }

    // ---- tokens ---------------------------------------------------------------------------

    /// Stores a token (its hash and public prefix).
    pub async fn insert_token(
        &self,
        account_id: &str,
        prefix: &str,
        hash: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<TokenInfo> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO api_tokens (id, account_id, prefix, token_hash, name, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(account_id)
        .bind(prefix)
        .bind(hash)
        .bind(name)
        .bind(now_ms)
        .execute(&self.db.write)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                StoreError::Conflict("token prefix collision".into())
            }
            _ => StoreError::Db(e),
        })?;
        Ok(TokenInfo {
            id,
            prefix: prefix.to_string(),
            name: name.to_string(),
            created_at: model::rfc3339_ms(now_ms),
            last_used_at: None,
            revoked_at: None,
        })
    }

    /// The tokens of an account, newest first.
    pub async fn list_tokens(&self, account_id: &str) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLS} FROM api_tokens WHERE account_id = $1 \
             ORDER BY created_at_ms DESC, id DESC"
        )))
        .bind(account_id)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes a token (within `account_id` when given). Idempotent.
    pub async fn revoke_token(
        &self,
        account_id: Option<&str>,
        key: TokenKey<'_>,
        now_ms: i64,
    ) -> Result<TokenInfo> {
        let column = match key {
            TokenKey::PrefixOrId(_) => "(prefix = $2 OR id = $2)",
            TokenKey::Hash(_) => "token_hash = $2",
        };
        let value = match &key {
            TokenKey::PrefixOrId(v) => *v,
            TokenKey::Hash(h) => h.as_str(),
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE api_tokens SET revoked_at_ms = COALESCE(revoked_at_ms, $1) \
             WHERE {column} AND ($3 IS NULL OR account_id = $3) \
             RETURNING {TOKEN_COLS}"
        )))
        .bind(now_ms)
        .bind(value)
        .bind(account_id)
        .fetch_optional(&self.db.write)
        .await?
        .ok_or(StoreError::NotFound)?;
        token_from_row(&row)
    }

    /// Looks up a live (not revoked) token by the hash of its secret.
    pub async fn authenticate(&self, hash: &str) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT t.id, t.prefix, t.last_used_at_ms, t.account_id, a.name \
             FROM api_tokens t JOIN accounts a ON a.id = t.account_id \
             WHERE t.token_hash = $1 AND t.revoked_at_ms IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.db.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Principal {
            token_id: row.try_get(0)?,
            token_prefix: row.try_get(1)?,
            last_used_at_ms: row.try_get(2)?,
            account_id: row.try_get(3)?,
            account_name: row.try_get(4)?,
        }))
    }

    /// Records that a token was used.
    pub async fn touch_token(&self, token_id: &str, now_ms: i64) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_used_at_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(token_id)
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    // ---- sessions -------------------------------------------------------------------------

    /// Creates a session (and its repository on first use) and records its `created` event.
    /// With a client-chosen id that already exists in this account with the same fields, returns
    /// the existing session and `false`.
    pub async fn create_session(
        &self,
        account_id: &str,
        new: &NewSession,
        now_ms: i64,
    ) -> Result<(Session, bool)> {
        let now_s = now_ms.div_euclid(1000);
        let mut conn = self.db.write.acquire().await?;
        let mut tx = conn.begin().await?;
        sqlx::query(
            "INSERT INTO repositories (id, account_id, name, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, name) DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(account_id)
        .bind(&new.repository)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        let repo_id: String =
            sqlx::query("SELECT id FROM repositories WHERE account_id = $1 AND name = $2")
                .bind(account_id)
                .bind(&new.repository)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        let inserted = sqlx::query(
            "INSERT INTO sessions (id, account_id, repository_id, branch, provider, sandbox_id, \
             config_hash, state, created_at_ms, updated_at_ms, last_seen_s, active_closed_s, last_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'created', $8, $8, $9, 0, 1) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&new.id)
        .bind(account_id)
        .bind(&repo_id)
        .bind(&new.branch)
        .bind(&new.provider)
        .bind(&new.sandbox_id)
        .bind(&new.config_hash)
        .bind(now_ms)
        .bind(now_s)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            tx.rollback().await?;
            drop(conn);
            let existing = self.session_any_account(&new.id, now_s).await?;
            return match existing {
                Some((owner, s))
                    if owner == account_id
                        && s.repository == new.repository
                        && s.branch == new.branch
                        && s.provider == new.provider
                        && s.sandbox_id == new.sandbox_id
                        && s.config_hash == new.config_hash =>
                {
                    Ok((s, false))
                }
                _ => Err(StoreError::Conflict(format!(
                    "session id {} is already used by a different session",
                    new.id
                ))),
            };
        }
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            session_id: new.id.clone(),
            kind: EventKind::Created.as_str().to_string(),
            data: Value::Object(Default::default()),
            created_at: model::rfc3339_ms(now_ms),
            seq: 1,
        };
        insert_event(&mut tx, &event, account_id, CREATED_KEY, now_ms).await?;
        let session = self
            .session_in(&mut tx, account_id, &new.id, now_s)
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        let live = live_event(account_id, &event, &session);
        self.announce(&mut conn, live, &event.id).await;
        drop(conn);
        Ok((session, true))
    }

    /// One session of an account.
    pub async fn get_session(
        &self,
        account_id: &str,
        id: &str,
        now_s: i64,
    ) -> Result<Option<Session>> {
        let row = sqlx::query(concat!(
            session_select!(),
            "WHERE s.id = $1 AND s.account_id = $2"
        ))
        .bind(id)
        .bind(account_id)
        .fetch_optional(&self.db.read)
        .await?;
        row.map(|r| self.session_from_row(&r, now_s)).transpose()
    }

    async fn session_any_account(&self, id: &str, now_s: i64) -> Result<Option<(String, Session)>> {
        let row = sqlx::query(concat!(session_select!(), "WHERE s.id = $1"))
            .bind(id)
            .fetch_optional(&self.db.read)
            .await?;
        row.map(|r| Ok((r.try_get(13)?, self.session_from_row(&r, now_s)?)))
            .transpose()
    }

    async fn session_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        account_id: &str,
        id: &str,
        now_s: i64,
    ) -> Result<Option<Session>> {
        let row = sqlx::query(concat!(
            session_select!(),
            "WHERE s.id = $1 AND s.account_id = $2"
        ))
        .bind(id)
        .bind(account_id)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|r| self.session_from_row(&r, now_s)).transpose()
    }

    /// Sessions of an account, newest first, one page.
    pub async fn list_sessions(
        &self,
        account_id: &str,
        f: &SessionFilter,
        now_s: i64,
    ) -> Result<(Vec<Session>, Option<(i64, String)>)> {
        let (after_ms, after_id) = match &f.after {
            Some((ms, id)) => (Some(*ms), Some(id.clone())),
            None => (None, None),
        };
        let rows = sqlx::query(concat!(
            session_select!(),
            "WHERE s.account_id = $1 \
             AND ($2 IS NULL OR r.name = $2) \
             AND ($3 IS NULL OR s.state = $3) \
             AND ($4 IS NULL OR s.provider = $4) \
             AND ($5 IS NULL OR s.created_at_ms < $5 OR (s.created_at_ms = $5 AND s.id < $6)) \
             ORDER BY s.created_at_ms DESC, s.id DESC LIMIT $7"
        ))
        .bind(account_id)
        .bind(&f.repository)
        .bind(&f.state)
        .bind(&f.provider)
        .bind(after_ms)
        .bind(after_id)
        .bind(f.limit + 1)
        .fetch_all(&self.db.read)
        .await?;
        let mut sessions = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for r in &rows {
            keys.push((r.try_get::<i64, _>(7)?, r.try_get::<String, _>(0)?));
            sessions.push(self.session_from_row(r, now_s)?);
        }
        let next = if sessions.len() as i64 > f.limit {
            sessions.truncate(f.limit as usize);
            keys.get(f.limit as usize - 1).cloned()
        } else {
            None
        };
        Ok((sessions, next))
    }

    /// `last_seq` of every session of an account that can still receive events (not stopped).
    pub async fn live_session_seqs(&self, account_id: &str) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query(
            "SELECT id, last_seq FROM sessions WHERE account_id = $1 AND state <> 'stopped'",
        )
        .bind(account_id)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Events of a session with `seq > since_seq`, in order, at most `limit`.
    pub async fn list_events(
        &self,
        account_id: &str,
        session_id: &str,
        since_seq: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLS} FROM session_events \
             WHERE session_id = $1 AND account_id = $2 AND seq > $3 ORDER BY seq LIMIT $4"
        )))
        .bind(session_id)
        .bind(account_id)
        .bind(since_seq)
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Appends an event, applying its state transition and metering effect. A retry with the
    /// same idempotency key returns the stored event (`created == false`).
    pub async fn append_event(
        &self,
        account_id: &str,
        session_id: &str,
        new: &NewEvent,
        now_ms: i64,
    ) -> Result<Appended> {
        let mut conn = self.db.write.acquire().await?;
        let mut tx = conn.begin().await?;
        // Write first: takes the session's row lock (PostgreSQL) so events of one session are
        // serialised, reserves the next sequence number, and reads the session.
        let row = sqlx::query(
            "UPDATE sessions SET last_seq = last_seq + 1 WHERE id = $1 AND account_id = $2 \
             RETURNING id, (SELECT r.name FROM repositories r WHERE r.id = sessions.repository_id), \
             branch, provider, sandbox_id, config_hash, state, created_at_ms, updated_at_ms, \
             last_seen_s, active_since_s, active_closed_s, last_seq, account_id, repository_id",
        )
        .bind(session_id)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        let mut sr = SessionRow::from_row(&row)?;
        let repository_id: String = row.try_get(14)?;

        if sr.meter().state == State::Stopped {
            // Nothing more is accepted, but a retry of an earlier event is still answered.
            let existing = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {EVENT_COLS} FROM session_events WHERE session_id = $1 AND idempotency_key = $2"
            )))
            .bind(session_id)
            .bind(&new.idempotency_key)
            .fetch_optional(&mut *tx)
            .await?;
            tx.rollback().await?;
            drop(conn);
            return match existing {
                Some(row) => {
                    self.duplicate(account_id, session_id, new, &row, now_ms)
                        .await
                }
                None => Err(TransitionError::Stopped.into()),
            };
        }

        // Server time, never before the session's previous event.
        let now_ms = now_ms.max(sr.updated_at_ms);
        let now_s = now_ms.div_euclid(1000);
        let tr = metering::apply(sr.meter(), new.kind, now_s, self.prices.heartbeat_grace_s)?;
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            session_id: session_id.to_string(),
            kind: new.kind.as_str().to_string(),
            data: new.data.clone(),
            created_at: model::rfc3339_ms(now_ms),
            seq: sr.last_seq,
        };
        if !insert_event(&mut tx, &event, account_id, &new.idempotency_key, now_ms).await? {
            // The idempotency key is known: answer the stored event, change nothing.
            tx.rollback().await?;
            drop(conn);
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {EVENT_COLS} FROM session_events WHERE session_id = $1 AND idempotency_key = $2"
            )))
            .bind(session_id)
            .bind(&new.idempotency_key)
            .fetch_one(&self.db.read)
            .await?;
            return self
                .duplicate(account_id, session_id, new, &row, now_ms)
                .await;
        }
        let closed_s = match tr.closed {
            Some((start, end)) => {
                sqlx::query(
                    "INSERT INTO active_intervals (id, session_id, account_id, repository_id, \
                     start_s, end_s) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(session_id)
                .bind(account_id)
                .bind(&repository_id)
                .bind(start)
                .bind(end)
                .execute(&mut *tx)
                .await?;
                end - start
            }
            None => 0,
        };
        let stopped_at = (tr.meter.state == State::Stopped).then_some(now_ms);
        sqlx::query(
            "UPDATE sessions SET state = $1, updated_at_ms = $2, last_seen_s = $3, \
             active_since_s = $4, active_closed_s = active_closed_s + $5, \
             stopped_at_ms = COALESCE(stopped_at_ms, $6) WHERE id = $7",
        )
        .bind(tr.meter.state.as_str())
        .bind(now_ms)
        .bind(tr.meter.last_seen_s)
        .bind(tr.meter.active_since_s)
        .bind(closed_s)
        .bind(stopped_at)
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        sr.state = tr.meter.state.as_str().to_string();
        sr.updated_at_ms = now_ms;
        sr.last_seen_s = tr.meter.last_seen_s;
        sr.active_since_s = tr.meter.active_since_s;
        sr.active_closed_s += closed_s;
        let session = sr.to_session(&self.prices, now_s);
        let live = live_event(account_id, &event, &session);
        self.announce(&mut conn, live, &event.id).await;
        drop(conn);
        Ok(Appended {
            event,
            session,
            created: true,
        })
    }

    /// Answers a retried event: the stored one, if it is the same event.
    async fn duplicate(
        &self,
        account_id: &str,
        session_id: &str,
        new: &NewEvent,
        row: &AnyRow,
        now_ms: i64,
    ) -> Result<Appended> {
        let event = event_from_row(row)?;
        if event.kind != new.kind.as_str() || event.data != new.data {
            return Err(StoreError::Conflict(format!(
                "idempotency key `{}` was already used for a different event (seq {}, type {})",
                new.idempotency_key, event.seq, event.kind
            )));
        }
        let session = self
            .get_session(account_id, session_id, now_ms.div_euclid(1000))
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(Appended {
            event,
            session,
            created: false,
        })
    }

    /// Announces a committed event to live subscribers, right after commit, while the writer
    /// connection is still held.
    ///
    /// SQLite: in-process publish; the single writer connection makes the publish order the
    /// commit order. PostgreSQL: `pg_notify` as its own statement after the commit (inside the
    /// transaction it would hold PostgreSQL's global notify lock across the commit's fsync and
    /// serialise every commit in the database). Notifications of concurrent writers to one
    /// session may then arrive out of order; subscribers keep per-session sequence numbers and
    /// fill gaps from the database, so they still deliver every event once, in order. A failed
    /// NOTIFY is logged; subscribers recover the event with the session's next one.
    async fn announce(&self, conn: &mut sqlx::AnyConnection, live: LiveEvent, event_id: &str) {
        match self.db.engine {
            Engine::Sqlite => self.hub.publish(live),
            Engine::Postgres => {
                let r = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(Notice::payload(&live, event_id))
                    .execute(&mut *conn)
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, event_id, "NOTIFY failed; live subscribers catch up on the next event");
                }
            }
        }
    }

    /// The live message of a stored event (used when a NOTIFY carried only its id).
    pub async fn live_message(&self, account_id: &str, event_id: &str) -> Result<Option<String>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLS} FROM session_events WHERE id = $1 AND account_id = $2"
        )))
        .bind(event_id)
        .bind(account_id)
        .fetch_optional(&self.db.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let event = event_from_row(&row)?;
        let now_s = time::OffsetDateTime::now_utc().unix_timestamp();
        let Some(session) = self
            .get_session(account_id, &event.session_id, now_s)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(
            live_event(account_id, &event, &session).message.to_string(),
        ))
    }

    // ---- metering -------------------------------------------------------------------------

    /// Active intervals of an account overlapping `[from_s, to_s)`, the open ones cut at
    /// `min(now, last sign of life + grace)`.
    pub async fn intervals(
        &self,
        account_id: &str,
        from_s: i64,
        to_s: i64,
        now_s: i64,
    ) -> Result<Vec<Interval>> {
        let mut out = Vec::new();
        let rows = sqlx::query(
            "SELECT r.name, i.start_s, i.end_s FROM active_intervals i \
             JOIN repositories r ON r.id = i.repository_id \
             WHERE i.account_id = $1 AND i.end_s > $2 AND i.start_s < $3",
        )
        .bind(account_id)
        .bind(from_s)
        .bind(to_s)
        .fetch_all(&self.db.read)
        .await?;
        for r in rows {
            out.push(Interval {
                repository: r.try_get(0)?,
                start_s: r.try_get(1)?,
                end_s: r.try_get(2)?,
            });
        }
        let rows = sqlx::query(
            "SELECT r.name, s.active_since_s, s.last_seen_s FROM sessions s \
             JOIN repositories r ON r.id = s.repository_id \
             WHERE s.account_id = $1 AND s.active_since_s IS NOT NULL AND s.active_since_s < $2",
        )
        .bind(account_id)
        .bind(to_s)
        .fetch_all(&self.db.read)
        .await?;
        for r in rows {
            let m = Meter {
                state: State::Running,
                active_since_s: r.try_get(1)?,
                last_seen_s: r.try_get(2)?,
            };
            if let Some((start_s, end_s)) =
                metering::effective_end(&m, now_s, self.prices.heartbeat_grace_s)
                && end_s > from_s
                && end_s > start_s
            {
                out.push(Interval {
                    repository: r.try_get(0)?,
                    start_s,
                    end_s,
                });
            }
        }
        Ok(out)
    }

    /// Session lifetimes of an account that overlap `[from_ms, to_ms)`.
    pub async fn lifetimes(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Lifetime>> {
        let rows = sqlx::query(
            "SELECT r.name, s.created_at_ms, s.stopped_at_ms FROM sessions s \
             JOIN repositories r ON r.id = s.repository_id \
             WHERE s.account_id = $1 AND s.created_at_ms < $2 \
             AND (s.stopped_at_ms IS NULL OR s.stopped_at_ms >= $3)",
        )
        .bind(account_id)
        .bind(to_ms)
        .bind(from_ms)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Lifetime {
                    repository: r.try_get(0)?,
                    created_ms: r.try_get(1)?,
                    stopped_ms: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Number of stored events (all accounts); the load benchmark's count check.
    pub async fn count_events(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM session_events")
            .fetch_one(&self.db.read)
            .await?
            .try_get(0)?)
    }

    // ---- dashboard sign-in sessions --------------------------------------------------------

    /// Stores a browser session (by the hash of its cookie secret) and drops expired ones.
    pub async fn create_web_session(
        &self,
        id_hash: &str,
        account_id: &str,
        token_id: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(&self.db.write)
            .await?;
        sqlx::query(
            "INSERT INTO web_sessions (id_hash, account_id, token_id, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id_hash)
        .bind(account_id)
        .bind(token_id)
        .bind(now_ms)
        .bind(expires_at_ms)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// The caller behind a live browser session: not expired, not signed out, and its API token
    /// not revoked.
    pub async fn web_session(&self, id_hash: &str, now_ms: i64) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT w.account_id, a.name, t.id, t.prefix FROM web_sessions w \
             JOIN accounts a ON a.id = w.account_id \
             JOIN api_tokens t ON t.id = w.token_id \
             WHERE w.id_hash = $1 AND w.expires_at_ms > $2 AND t.revoked_at_ms IS NULL",
        )
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(&self.db.read)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Principal {
            account_id: row.try_get(0)?,
            account_name: row.try_get(1)?,
            token_id: row.try_get(2)?,
            token_prefix: row.try_get(3)?,
            // Browser sessions do not refresh the token's `last_used_at`.
            last_used_at_ms: Some(now_ms),
        }))
    }

    /// Ends a browser session (sign-out). Idempotent.
    pub async fn delete_web_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    // ---- dashboard queries ----------------------------------------------------------------

    /// Number of sessions of an account and how many are running.
    pub async fn session_counts(&self, account_id: &str) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*), COUNT(CASE WHEN state = 'running' THEN 1 END) FROM sessions \
             WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_one(&self.db.read)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Every repository of an account with sessions (in `state`, when given), most recently
    /// used first. One grouped pass over the account's sessions (served by the
    /// `sessions_by_account_repository` index), names resolved once.
    pub async fn repository_groups(
        &self,
        account_id: &str,
        state: Option<&str>,
    ) -> Result<Vec<RepoSummary>> {
        let rows = sqlx::query(
            "SELECT repository_id, COUNT(*), COUNT(CASE WHEN state = 'running' THEN 1 END), \
             MAX(created_at_ms) FROM sessions WHERE account_id = $1 AND ($2 IS NULL OR state = $2) \
             GROUP BY repository_id",
        )
        .bind(account_id)
        .bind(state)
        .fetch_all(&self.db.read)
        .await?;
        let names = self.repository_names(account_id).await?;
        let mut out = rows
            .iter()
            .map(|r| {
                let id: String = r.try_get(0)?;
                Ok(RepoSummary {
                    name: names.get(&id).cloned().unwrap_or_default(),
                    id,
                    sessions: r.try_get(1)?,
                    running: r.try_get(2)?,
                    last_created_ms: r.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| {
            b.last_created_ms
                .cmp(&a.last_created_ms)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(out)
    }

    /// Repository id → name, for one account.
    pub async fn repository_names(&self, account_id: &str) -> Result<HashMap<String, String>> {
        let rows = sqlx::query("SELECT id, name FROM repositories WHERE account_id = $1")
            .bind(account_id)
            .fetch_all(&self.db.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Billing input for whole UTC days `[from_s, to_s)`: intervals and lifetimes that give
    /// exactly the figures of [`Store::intervals`] and [`Store::lifetimes`] in `billing::usage`
    /// and `billing::invoice`, with far fewer rows, read concurrently.
    ///
    /// Closed intervals that lie within one day of the range are summed per repository and day
    /// by the database (returned as intervals starting at that midnight, at most a day long
    /// each); the others, and the open intervals, come as they are. Session lifetimes are reduced
    /// to one per repository, creation day and last day (earliest creation, latest stop), which
    /// covers the same days. Every query reads a range of a covering index bounded by the dates,
    /// so the cost follows the month's activity, not the account's history.
    pub async fn usage_inputs(
        &self,
        account_id: &str,
        from_s: i64,
        to_s: i64,
        now_s: i64,
    ) -> Result<(Vec<Interval>, Vec<Lifetime>)> {
        debug_assert!(
            from_s % 86_400 == 0 && to_s % 86_400 == 0,
            "whole days only"
        );
        let db = &self.db.read;
        let summed = sqlx::query(
            "SELECT repository_id, start_s / 86400, CAST(SUM(end_s - start_s) AS BIGINT) \
             FROM active_intervals WHERE account_id = $1 AND end_s > $2 AND end_s <= $3 \
             AND start_s >= $2 AND start_s / 86400 = (end_s - 1) / 86400 \
             GROUP BY repository_id, start_s / 86400",
        )
        .bind(account_id)
        .bind(from_s)
        .bind(to_s)
        .fetch_all(db);
        let others = sqlx::query(
            "SELECT repository_id, start_s, end_s FROM active_intervals \
             WHERE account_id = $1 AND end_s > $2 AND start_s < $3 \
             AND NOT (end_s <= $3 AND start_s >= $2 AND start_s / 86400 = (end_s - 1) / 86400)",
        )
        .bind(account_id)
        .bind(from_s)
        .bind(to_s)
        .fetch_all(db);
        let open = sqlx::query(
            "SELECT repository_id, active_since_s, last_seen_s FROM sessions \
             WHERE account_id = $1 AND active_since_s IS NOT NULL AND active_since_s < $2",
        )
        .bind(account_id)
        .bind(to_s)
        .fetch_all(db);
        // Alive sessions, and sessions stopped in or after the range, separately: each is a
        // range of `sessions_by_stop`.
        let alive = sqlx::query(
            "SELECT repository_id, MIN(created_at_ms), MAX(stopped_at_ms) FROM sessions \
             WHERE account_id = $1 AND stopped_at_ms IS NULL AND created_at_ms < $2 \
             GROUP BY repository_id, created_at_ms / 86400000",
        )
        .bind(account_id)
        .bind(to_s * 1000)
        .fetch_all(db);
        let stopped = sqlx::query(
            "SELECT repository_id, MIN(created_at_ms), MAX(stopped_at_ms) FROM sessions \
             WHERE account_id = $1 AND stopped_at_ms >= $2 AND created_at_ms < $3 \
             GROUP BY repository_id, created_at_ms / 86400000, \
             CASE WHEN stopped_at_ms - 1 > created_at_ms THEN (stopped_at_ms - 1) / 86400000 \
             ELSE created_at_ms / 86400000 END",
        )
        .bind(account_id)
        .bind(from_s * 1000)
        .bind(to_s * 1000)
        .fetch_all(db);
        let (names, summed, others, open, alive, stopped) = futures::try_join!(
            self.repository_names(account_id),
            async { Ok(summed.await?) },
            async { Ok(others.await?) },
            async { Ok(open.await?) },
            async { Ok(alive.await?) },
            async { Ok(stopped.await?) },
        )?;
        let name = |r: &AnyRow| -> Result<String> {
            let id: String = r.try_get(0)?;
            Ok(names.get(&id).cloned().unwrap_or_default())
        };
        let mut intervals = Vec::new();
        for r in &summed {
            let repository = name(r)?;
            let day_start = r.try_get::<i64, _>(1)? * 86_400;
            let mut secs: i64 = r.try_get(2)?;
            // Several sessions of one repository may add up to more than a day.
            while secs > 0 {
                let chunk = secs.min(86_400);
                intervals.push(Interval {
                    repository: repository.clone(),
                    start_s: day_start,
                    end_s: day_start + chunk,
                });
                secs -= chunk;
            }
        }
        for r in &others {
            intervals.push(Interval {
                repository: name(r)?,
                start_s: r.try_get(1)?,
                end_s: r.try_get(2)?,
            });
        }
        for r in &open {
            let m = Meter {
                state: State::Running,
                active_since_s: r.try_get(1)?,
                last_seen_s: r.try_get(2)?,
            };
            if let Some((start_s, end_s)) =
                metering::effective_end(&m, now_s, self.prices.heartbeat_grace_s)
                && end_s > from_s
                && end_s > start_s
            {
                intervals.push(Interval {
                    repository: name(r)?,
                    start_s,
                    end_s,
                });
            }
        }
        let mut lifetimes = Vec::with_capacity(alive.len() + stopped.len());
        for r in alive.iter().chain(&stopped) {
            lifetimes.push(Lifetime {
                repository: name(r)?,
                created_ms: r.try_get(1)?,
                stopped_ms: r.try_get(2)?,
            });
        }
        Ok((intervals, lifetimes))
    }

    /// One repository's summary (sessions in `state`, when given); `None` if it has none.
    pub async fn repository_summary(
        &self,
        account_id: &str,
        name: &str,
        state: Option<&str>,
    ) -> Result<Option<RepoSummary>> {
        let row = sqlx::query(
            "SELECT r.id, r.name, COUNT(*), COUNT(CASE WHEN s.state = 'running' THEN 1 END), \
             MAX(s.created_at_ms) FROM sessions s JOIN repositories r ON r.id = s.repository_id \
             WHERE r.account_id = $1 AND r.name = $2 AND s.account_id = $1 \
             AND ($3 IS NULL OR s.state = $3) GROUP BY r.id, r.name",
        )
        .bind(account_id)
        .bind(name)
        .bind(state)
        .fetch_optional(&self.db.read)
        .await?;
        row.map(|r| {
            Ok(RepoSummary {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                sessions: r.try_get(2)?,
                running: r.try_get(3)?,
                last_created_ms: r.try_get(4)?,
            })
        })
        .transpose()
    }

    /// The newest `per_repo` sessions (in `state`, when given) of each repository in
    /// `repository_ids`, in one query; grouped by repository id, newest first.
    pub async fn newest_sessions_per_repository(
        &self,
        account_id: &str,
        repository_ids: &[String],
        state: Option<&str>,
        per_repo: i64,
        now_s: i64,
    ) -> Result<HashMap<String, Vec<Session>>> {
        let mut out: HashMap<String, Vec<Session>> = HashMap::new();
        if repository_ids.is_empty() {
            return Ok(out);
        }
        let mut sql = String::new();
        for i in 0..repository_ids.len() {
            if i > 0 {
                sql.push_str(" UNION ALL ");
            }
            sql.push_str(&format!(
                "SELECT * FROM ({} , s.repository_id AS rid FROM sessions s \
                 JOIN repositories r ON r.id = s.repository_id \
                 WHERE s.repository_id = ${} AND s.account_id = $1 AND ($2 IS NULL OR s.state = $2) \
                 ORDER BY s.created_at_ms DESC, s.id DESC LIMIT $3) AS t{i}",
                SESSION_COLS,
                i + 4
            ));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(state)
            .bind(per_repo);
        for id in repository_ids {
            q = q.bind(id);
        }
        for r in q.fetch_all(&self.db.read).await? {
            let rid: String = r.try_get(14)?;
            out.entry(rid)
                .or_default()
                .push(self.session_from_row(&r, now_s)?);
        }
        Ok(out)
    }

    /// Events of a session of `kind` (all of them, by seq).
    pub async fn events_of_kind(
        &self,
        account_id: &str,
        session_id: &str,
        kind: &str,
    ) -> Result<Vec<Event>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLS} FROM session_events \
             WHERE session_id = $1 AND account_id = $2 AND type = $3 ORDER BY seq"
        )))
        .bind(session_id)
        .bind(account_id)
        .bind(kind)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    // ---- Stripe export --------------------------------------------------------------------

    /// Sets (or with `None` removes) the Stripe customer of an account.
    pub async fn set_stripe_customer(
        &self,
        account_id: &str,
        customer_id: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        match customer_id {
            Some(c) => {
                sqlx::query(
                    "INSERT INTO stripe_customers (account_id, customer_id, updated_at_ms) \
                     VALUES ($1, $2, $3) ON CONFLICT (account_id) \
                     DO UPDATE SET customer_id = $2, updated_at_ms = $3",
                )
                .bind(account_id)
                .bind(c)
                .bind(now_ms)
                .execute(&self.db.write)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM stripe_customers WHERE account_id = $1")
                    .bind(account_id)
                    .execute(&self.db.write)
                    .await?;
            }
        }
        Ok(())
    }

    /// The Stripe customer id of an account, if set.
    pub async fn stripe_customer(&self, account_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT customer_id FROM stripe_customers WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(&self.db.read)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Closed active intervals ending at or after `since_s` of accounts with a Stripe customer
    /// that are not in the outbox yet, oldest first.
    pub async fn stripe_export_candidates(
        &self,
        since_s: i64,
        limit: i64,
    ) -> Result<Vec<ExportCandidate>> {
        let rows = sqlx::query(
            "SELECT i.id, i.account_id, c.customer_id, i.start_s, i.end_s FROM active_intervals i \
             JOIN stripe_customers c ON c.account_id = i.account_id \
             WHERE i.end_s >= $1 AND NOT EXISTS \
             (SELECT 1 FROM stripe_meter_events m WHERE m.interval_id = i.id) \
             ORDER BY i.end_s, i.id LIMIT $2",
        )
        .bind(since_s)
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ExportCandidate {
                    interval_id: r.try_get(0)?,
                    account_id: r.try_get(1)?,
                    customer_id: r.try_get(2)?,
                    start_s: r.try_get(3)?,
                    end_s: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Adds a meter event to the outbox (state `pending`); false if its `source` is already
    /// there (another replica got there first).
    pub async fn enqueue_meter_event(&self, e: &MeterEventRow) -> Result<bool> {
        let res = sqlx::query(
            "INSERT INTO stripe_meter_events (id, source, interval_id, account_id, customer_id, \
             event_name, value, timestamp_s, state, attempts, next_attempt_ms, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $10) \
             ON CONFLICT (source) DO NOTHING",
        )
        .bind(&e.id)
        .bind(&e.source)
        .bind(&e.interval_id)
        .bind(&e.account_id)
        .bind(&e.customer_id)
        .bind(&e.event_name)
        .bind(e.value)
        .bind(e.timestamp_s)
        .bind(e.next_attempt_ms)
        .bind(e.created_at_ms)
        .execute(&self.db.write)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Pending meter events due at `now_ms`, oldest first.
    pub async fn due_meter_events(&self, now_ms: i64, limit: i64) -> Result<Vec<MeterEventRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {METER_COLS} FROM stripe_meter_events \
             WHERE state = 'pending' AND next_attempt_ms <= $1 \
             ORDER BY next_attempt_ms, created_at_ms, id LIMIT $2"
        )))
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(meter_from_row).collect()
    }

    /// Claims a due meter event for one attempt: counts the attempt and hides the row from other
    /// workers until `lease_until_ms`. False if someone else claimed it first.
    pub async fn claim_meter_event(
        &self,
        id: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE stripe_meter_events SET attempts = attempts + 1, next_attempt_ms = $1 \
             WHERE id = $2 AND state = 'pending' AND next_attempt_ms <= $3",
        )
        .bind(lease_until_ms)
        .bind(id)
        .bind(now_ms)
        .execute(&self.db.write)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Records the outcome of an attempt: `sent`, `failed`, or `pending` again at
    /// `next_attempt_ms`.
    pub async fn finish_meter_event(
        &self,
        id: &str,
        state: &str,
        next_attempt_ms: i64,
        last_error: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE stripe_meter_events SET state = $1, next_attempt_ms = $2, last_error = $3, \
             sent_at_ms = CASE WHEN $1 = 'sent' THEN $4 ELSE sent_at_ms END WHERE id = $5",
        )
        .bind(state)
        .bind(next_attempt_ms)
        .bind(last_error)
        .bind(now_ms)
        .bind(id)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// Puts failed meter events back in the queue (all, or those of one account); returns how
    /// many. Their event name (when given) and customer id (when the account still has one) are
    /// refreshed: Stripe refused those requests without executing them, so a corrected body
    /// under the same idempotency key is accepted.
    pub async fn retry_failed_meter_events(
        &self,
        account_id: Option<&str>,
        event_name: Option<&str>,
        now_ms: i64,
    ) -> Result<u64> {
        let res = sqlx::query(
            "UPDATE stripe_meter_events SET state = 'pending', next_attempt_ms = $1, \
             attempts = 0, event_name = COALESCE($3, event_name), \
             customer_id = COALESCE((SELECT c.customer_id FROM stripe_customers c \
             WHERE c.account_id = stripe_meter_events.account_id), customer_id) \
             WHERE state = 'failed' AND ($2 IS NULL OR account_id = $2)",
        )
        .bind(now_ms)
        .bind(account_id)
        .bind(event_name)
        .execute(&self.db.write)
        .await?;
        Ok(res.rows_affected())
    }

    /// All meter events of an account, oldest first (tests and admin).
    pub async fn meter_events(&self, account_id: &str) -> Result<Vec<MeterEventRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {METER_COLS} FROM stripe_meter_events WHERE account_id = $1 \
             ORDER BY timestamp_s, id"
        )))
        .bind(account_id)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(meter_from_row).collect()
    }

    /// The state of the Stripe outbox; `since_s` is the export window's start (older closed
    /// intervals are never queued, so they are not counted as unqueued).
    pub async fn stripe_counts(&self, since_s: i64) -> Result<StripeCounts> {
        let row = sqlx::query(
            "SELECT COUNT(CASE WHEN state = 'pending' THEN 1 END), \
             COUNT(CASE WHEN state = 'sent' THEN 1 END), \
             COUNT(CASE WHEN state = 'failed' THEN 1 END) FROM stripe_meter_events",
        )
        .fetch_one(&self.db.read)
        .await?;
        let unqueued: i64 = sqlx::query(
            "SELECT COUNT(*) FROM active_intervals i \
             JOIN stripe_customers c ON c.account_id = i.account_id \
             WHERE i.end_s >= $1 AND NOT EXISTS \
             (SELECT 1 FROM stripe_meter_events m WHERE m.interval_id = i.id)",
        )
        .bind(since_s)
        .fetch_one(&self.db.read)
        .await?
        .try_get(0)?;
        let oldest = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {METER_COLS} FROM stripe_meter_events WHERE state = 'pending' \
             ORDER BY created_at_ms, id LIMIT 1"
        )))
        .fetch_optional(&self.db.read)
        .await?;
        let failed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {METER_COLS} FROM stripe_meter_events WHERE state = 'failed' \
             ORDER BY next_attempt_ms DESC, id LIMIT 5"
        )))
        .fetch_all(&self.db.read)
        .await?;
        Ok(StripeCounts {
            pending: row.try_get(0)?,
            sent: row.try_get(1)?,
            failed: row.try_get(2)?,
            unqueued,
            oldest_pending: oldest.as_ref().map(meter_from_row).transpose()?,
            recent_failed: failed.iter().map(meter_from_row).collect::<Result<_>>()?,
        })
    }

    fn session_from_row(&self, r: &AnyRow, now_s: i64) -> Result<Session> {
        Ok(SessionRow::from_row(r)?.to_session(&self.prices, now_s))
    }
}

/// A session row as stored (columns in `session_select!` order).
struct SessionRow {
    id: String,
    repository: String,
    branch: String,
    provider: String,
    sandbox_id: Option<String>,
    config_hash: Option<String>,
    state: String,
    created_at_ms: i64,
    updated_at_ms: i64,
    last_seen_s: i64,
    active_since_s: Option<i64>,
    active_closed_s: i64,
    last_seq: i64,
}

impl SessionRow {
    fn from_row(r: &AnyRow) -> Result<SessionRow> {
        Ok(SessionRow {
            id: r.try_get(0)?,
            repository: r.try_get(1)?,
            branch: r.try_get(2)?,
            provider: r.try_get(3)?,
            sandbox_id: r.try_get(4)?,
            config_hash: r.try_get(5)?,
            state: r.try_get(6)?,
            created_at_ms: r.try_get(7)?,
            updated_at_ms: r.try_get(8)?,
            last_seen_s: r.try_get(9)?,
            active_since_s: r.try_get(10)?,
            active_closed_s: r.try_get(11)?,
            last_seq: r.try_get(12)?,
        })
    }

    fn meter(&self) -> Meter {
        Meter {
            state: State::parse(&self.state).unwrap_or(State::Stopped),
            last_seen_s: self.last_seen_s,
            active_since_s: self.active_since_s,
        }
    }

    /// The API view at `now_s` (the open interval cut at last sign of life + grace).
    fn to_session(&self, prices: &Prices, now_s: i64) -> Session {
        let open = metering::effective_end(&self.meter(), now_s, prices.heartbeat_grace_s)
            .map(|(a, b)| b - a)
            .unwrap_or(0);
        let active_seconds = self.active_closed_s + open;
        Session {
            id: self.id.clone(),
            repository: self.repository.clone(),
            branch: self.branch.clone(),
            provider: self.provider.clone(),
            sandbox_id: self.sandbox_id.clone(),
            config_hash: self.config_hash.clone(),
            state: self.state.clone(),
            created_at: model::rfc3339_ms(self.created_at_ms),
            updated_at: model::rfc3339_ms(self.updated_at_ms),
            last_seen_at: model::rfc3339_s(self.last_seen_s),
            active_seconds,
            cost_micros: crate::billing::active_amount(active_seconds, prices.hour_micros),
            last_seq: self.last_seq,
        }
    }
}

/// Inserts an event; false when its idempotency key is already stored for the session.
async fn insert_event(
    conn: &mut sqlx::AnyConnection,
    event: &Event,
    account_id: &str,
    key: &str,
    now_ms: i64,
) -> Result<bool> {
    let res = sqlx::query(
        "INSERT INTO session_events (id, session_id, account_id, seq, type, data, \
         idempotency_key, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (session_id, idempotency_key) DO NOTHING",
    )
    .bind(&event.id)
    .bind(&event.session_id)
    .bind(account_id)
    .bind(event.seq)
    .bind(&event.kind)
    .bind(event.data.to_string())
    .bind(key)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

fn live_event(account_id: &str, event: &Event, session: &Session) -> LiveEvent {
    let message =
        serde_json::to_string(&crate::model::LiveMessageRef { event, session }).unwrap_or_default();
    LiveEvent {
        account_id: account_id.to_string(),
        session_id: event.session_id.clone(),
        seq: event.seq,
        message: Arc::from(message),
    }
}

fn event_from_row(r: &AnyRow) -> Result<Event> {
    let data: String = r.try_get(3)?;
    Ok(Event {
        id: r.try_get(0)?,
        session_id: r.try_get(1)?,
        kind: r.try_get(2)?,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
        created_at: model::rfc3339_ms(r.try_get(4)?),
        seq: r.try_get(5)?,
    })
}

fn meter_from_row(r: &AnyRow) -> Result<MeterEventRow> {
    Ok(MeterEventRow {
        id: r.try_get(0)?,
        source: r.try_get(1)?,
        interval_id: r.try_get(2)?,
        account_id: r.try_get(3)?,
        customer_id: r.try_get(4)?,
        event_name: r.try_get(5)?,
        value: r.try_get(6)?,
        timestamp_s: r.try_get(7)?,
        state: r.try_get(8)?,
        attempts: r.try_get(9)?,
        next_attempt_ms: r.try_get(10)?,
        last_error: r.try_get(11)?,
        created_at_ms: r.try_get(12)?,
        sent_at_ms: r.try_get(13)?,
    })
}

fn token_from_row(r: &AnyRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.try_get(0)?,
        prefix: r.try_get(1)?,
        name: r.try_get(2)?,
        created_at: model::rfc3339_ms(r.try_get(3)?),
        last_used_at: r.try_get::<Option<i64>, _>(4)?.map(model::rfc3339_ms),
        revoked_at: r.try_get::<Option<i64>, _>(5)?.map(model::rfc3339_ms),
    })
}
