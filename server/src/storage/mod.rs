//! All SQL of the server, behind one type: [`Store`], its methods split by concern:
//! `accounts` (accounts, tokens, dashboard sign-in), `sessions` (sessions and events), `usage`
//! (metering and usage queries), `stripe_export` (the meter-event export queue).
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
    /// A client tried to change the state of a session the server manages.
    #[error("{0}")]
    Managed(String),
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
    /// The server created the sandbox and owns its lifecycle (and billing).
    pub managed: bool,
    /// The create request's `Idempotency-Key` (managed sessions).
    pub idempotency_key: Option<String>,
    /// Pause after this long without client activity (managed sessions; `None`: the
    /// deployment's default).
    pub idle_pause_ms: Option<i64>,
}

/// A new event (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventKind,
    pub idempotency_key: String,
    pub data: Value,
    /// Recorded by the server itself (a managed session's transitions), not sent by a client.
    pub by_server: bool,
    /// The server found the sandbox lost: a running interval closes at the session's last sign
    /// of life, not now.
    pub lost: bool,
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
    batcher: Arc<event_batch::Batcher>,
}

macro_rules! session_select {
    () => {
        "SELECT s.id, r.name, s.branch, s.provider, s.sandbox_id, s.config_hash, s.state, \
         s.created_at_ms, s.updated_at_ms, s.last_seen_s, s.active_since_s, s.active_closed_s, \
         s.last_seq, s.account_id, s.managed, s.idle_pause_ms \
         FROM sessions s JOIN repositories r ON r.id = s.repository_id "
    };
}

/// The columns of `session_select!` (without the FROM clause).
const SESSION_COLS: &str = "SELECT s.id, r.name, s.branch, s.provider, s.sandbox_id, \
     s.config_hash, s.state, s.created_at_ms, s.updated_at_ms, s.last_seen_s, s.active_since_s, \
     s.active_closed_s, s.last_seq, s.account_id, s.managed, s.idle_pause_ms";

const METER_COLS: &str = "id, source, interval_id, account_id, customer_id, event_name, value, \
     timestamp_s, state, attempts, next_attempt_ms, last_error, created_at_ms, sent_at_ms";

const EVENT_COLS: &str = "id, session_id, type, data, created_at_ms, seq";

const TOKEN_COLS: &str =
    "id, prefix, name, created_at_ms, last_used_at_ms, revoked_at_ms, account_id";

mod accounts;
pub use accounts::Limits;
mod event_batch;
pub use event_batch::CommitStats;
use event_batch::{Job, Outcome};
mod checkpoints;
pub use checkpoints::{CheckpointRow, NewCheckpoint};
mod sessions;
pub use sessions::RunningManaged;
mod stripe_export;
mod usage;

impl Store {
    pub fn new(db: Db, prices: Prices, hub: Hub) -> Store {
        Store {
            db,
            prices,
            hub,
            batcher: Arc::default(),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn prices(&self) -> &Prices {
        &self.prices
    }

    /// What group commit of events has done in this process.
    pub fn commit_stats(&self) -> CommitStats {
        self.batcher.stats()
    }

    /// Take the deployment-wide lock of a background job (`key`) if no other replica holds it:
    /// a PostgreSQL transaction-scoped advisory lock, held by the guard's open transaction (so
    /// it is released however the guard goes away). SQLite serves one server: always granted.
    pub async fn try_job_lock(&self, key: i64) -> Result<Option<JobLock>> {
        if self.db.engine != Engine::Postgres {
            return Ok(Some(JobLock(None)));
        }
        let mut tx = self.db.write.begin().await?;
        let got: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1)")
            .bind(key)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        Ok(got.then_some(JobLock(Some(tx))))
    }

    /// Cheap liveness check of the database.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.db.read).await?;
        Ok(())
    }

    fn session_from_row(&self, r: &AnyRow, now_s: i64) -> Result<Session> {
        Ok(SessionRow::from_row(r)?.to_session(&self.prices, now_s))
    }
}

/// A held job lock ([`Store::try_job_lock`]); [`JobLock::release`] gives it back (dropping
/// it does too, once its transaction is rolled back).
pub struct JobLock(Option<sqlx::Transaction<'static, sqlx::Any>>);

impl JobLock {
    pub async fn release(self) {
        if let Some(tx) = self.0 {
            let _ = tx.commit().await;
        }
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
    managed: bool,
    idle_pause_ms: Option<i64>,
}

/// How long after its last sign of life a session stays billable: the configured grace for
/// sessions clients report on, unbounded for managed ones (the server itself closes their
/// intervals when it pauses, stops or loses the sandbox).
pub(crate) fn grace_s(prices: &Prices, managed: bool) -> i64 {
    if managed {
        i64::MAX / 4
    } else {
        prices.heartbeat_grace_s
    }
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
            managed: r.try_get::<i64, _>("managed")? != 0,
            idle_pause_ms: r.try_get("idle_pause_ms")?,
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
        let open = metering::effective_end(&self.meter(), now_s, grace_s(prices, self.managed))
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
            managed: self.managed,
            idle_pause_seconds: self.idle_pause_ms.map(|ms| ms / 1000),
        }
    }
}

/// Why a client's event may not change a managed session's state.
fn managed_refusal(session_id: &str, new: &NewEvent) -> StoreError {
    StoreError::Managed(format!(
        "session {session_id} is managed by the server: its state changes through \
         POST /v1/sessions/{{id}}/pause, /resume and DELETE /v1/sessions/{{id}}, not \
         through `{}` events",
        new.kind.as_str()
    ))
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
