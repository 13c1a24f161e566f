//! Group commit of appended events.
//!
//! Every [`Store::append_event`](super::Store::append_event) queues its event to one writer task
//! per store. The task takes everything queued (up to [`MAX_BATCH`]) and applies it in one
//! transaction of a fixed number of statements, whatever the batch size: read the sessions
//! (locked, in id order, on PostgreSQL) and the idempotency keys already stored, apply the
//! events in memory in arrival order, then one multi-row `INSERT` of events, one of closed
//! intervals and one `UPDATE … FROM (VALUES …)` of the sessions, and commit. Each caller is
//! answered after the commit, so an acknowledged event is durable exactly as before; what
//! changes is that one commit (one fsync on PostgreSQL) and one round trip per statement serve
//! the whole batch instead of one event.
//!
//! An event's own problem (unknown session, stopped session, a managed session's state change, a
//! retried key) is answered to that caller alone and the rest of the batch goes on. Anything
//! else that fails the batch (a database error, a deadlock between replicas, a key inserted by
//! another replica meanwhile) rolls it back and sends each event through the one-event path,
//! which answers it as it always did.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Acquire, Row};
use tokio::sync::{mpsc, oneshot};

use super::{
    Appended, NewEvent, Result, SESSION_COLS, SessionRow, StoreError, grace_s, live_event,
};
use crate::config::Prices;
use crate::db::{Db, Engine};
use crate::events::{CHANNEL, Hub, LiveEvent, Notice};
use crate::metering::{self, State, TransitionError};
use crate::model::{self, Event};

/// Most events in one transaction (8 bound values each in the event insert: far below both
/// engines' parameter limits).
pub(super) const MAX_BATCH: usize = 256;

/// Appends waiting for the writer task; a full queue makes callers wait (back-pressure).
const QUEUE: usize = 4 * MAX_BATCH;

/// One queued append.
pub(super) struct Job {
    pub account_id: String,
    pub session_id: String,
    pub new: NewEvent,
    pub now_ms: i64,
    pub reply: oneshot::Sender<Outcome>,
}

/// What became of a queued append.
pub(super) enum Outcome {
    /// Stored and committed.
    Created(Box<Appended>),
    /// Its idempotency key is stored: answer the stored event.
    Retried,
    /// The event itself was refused; nothing was written for it.
    Refused(StoreError),
    /// The batch failed as a whole: append it on its own.
    Alone,
}

/// The queue to a store's writer task, started on first use inside a tokio runtime.
#[derive(Debug, Default)]
pub(super) struct Batcher {
    queue: std::sync::OnceLock<Option<mpsc::Sender<Job>>>,
    stats: Arc<Counters>,
}

/// What the writer task has done so far.
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    events: AtomicU64,
    fallbacks: AtomicU64,
}

/// Group commit counters of one store (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Transactions committed by the writer task.
    pub commits: u64,
    /// Events they stored.
    pub events: u64,
    /// Batches that failed as a whole and were appended one by one.
    pub fallbacks: u64,
}

impl Batcher {
    /// The queue, starting the writer task the first time (`None` outside a runtime).
    pub fn queue(&self, db: &Db, prices: &Prices, hub: &Hub) -> Option<&mpsc::Sender<Job>> {
        self.queue
            .get_or_init(|| {
                let runtime = tokio::runtime::Handle::try_current().ok()?;
                let (tx, rx) = mpsc::channel(QUEUE);
                let writer = Writer {
                    stats: self.stats.clone(),
                    db: db.clone(),
                    prices: *prices,
                    hub: hub.clone(),
                };
                runtime.spawn(writer.run(rx));
                Some(tx)
            })
            .as_ref()
    }

    pub fn stats(&self) -> CommitStats {
        CommitStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            events: self.stats.events.load(Ordering::Relaxed),
            fallbacks: self.stats.fallbacks.load(Ordering::Relaxed),
        }
    }
}

/// The writer task's state. It holds no [`super::Store`], so the task ends when the last store
/// (and with it the queue's sender) is dropped.
struct Writer {
    stats: Arc<Counters>,
    db: Db,
    prices: Prices,
    hub: Hub,
}

/// A session as read for a batch, with what the batch did to it.
struct Staged {
    row: SessionRow,
    account_id: String,
    repository_id: String,
    /// Value of `stopped_at_ms` to set if it is still empty.
    stopped_at_ms: Option<i64>,
    touched: bool,
}

/// The rows a batch writes.
#[derive(Default)]
struct Writes {
    events: Vec<(Event, String, String, i64)>,
    intervals: Vec<(String, String, String, String, i64, i64)>,
    live: Vec<(LiveEvent, String)>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            let batch = std::mem::take(&mut jobs);
            self.commit(batch).await;
        }
    }

    /// Applies a batch and answers every job in it.
    async fn commit(&self, batch: Vec<Job>) {
        match self.apply(&batch).await {
            Ok(outcomes) => {
                let stored = outcomes
                    .iter()
                    .filter(|o| matches!(o, Outcome::Created(_)))
                    .count();
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .events
                    .fetch_add(stored as u64, Ordering::Relaxed);
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, events = batch.len(), "group commit failed; appending one by one");
                for job in batch {
                    let _ = job.reply.send(Outcome::Alone);
                }
            }
        }
    }

    async fn apply(&self, batch: &[Job]) -> Result<Vec<Outcome>> {
        let mut conn = self.db.write.acquire().await?;
        let mut tx = conn.begin().await?;
        let mut sessions = self.read_sessions(&mut tx, batch).await?;
        let mut known = read_keys(&mut tx, batch).await?;

        let mut writes = Writes::default();
        let mut outcomes = Vec::with_capacity(batch.len());
        for job in batch {
            outcomes.push(self.stage(job, &mut sessions, &mut known, &mut writes));
        }

        if !writes.events.is_empty() {
            insert_events(&mut tx, &writes.events).await?;
        }
        if !writes.intervals.is_empty() {
            insert_intervals(&mut tx, &writes.intervals).await?;
        }
        let touched: Vec<&Staged> = sessions.values().filter(|s| s.touched).collect();
        if !touched.is_empty() {
            update_sessions(&mut tx, &touched).await?;
        }
        tx.commit().await?;
        self.announce(&mut conn, writes.live).await;
        Ok(outcomes)
    }

    /// Reads the batch's sessions; on PostgreSQL their rows stay locked (in id order, so two
    /// replicas' batches cannot deadlock) until the commit.
    async fn read_sessions(
        &self,
        conn: &mut sqlx::AnyConnection,
        batch: &[Job],
    ) -> Result<HashMap<String, Staged>> {
        let ids: Vec<&str> = unique(batch.iter().map(|j| j.session_id.as_str()));
        let lock = match self.db.engine {
            Engine::Postgres => " FOR UPDATE OF s",
            Engine::Sqlite => "",
        };
        let sql = format!(
            "{SESSION_COLS}, s.repository_id FROM sessions s \
             JOIN repositories r ON r.id = s.repository_id \
             WHERE s.id IN ({}) ORDER BY s.id{lock}",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &ids {
            q = q.bind(*id);
        }
        let mut out = HashMap::with_capacity(ids.len());
        for r in q.fetch_all(&mut *conn).await? {
            let row = SessionRow::from_row(&r)?;
            out.insert(
                row.id.clone(),
                Staged {
                    account_id: r.try_get(13)?,
                    repository_id: r.try_get("repository_id")?,
                    row,
                    stopped_at_ms: None,
                    touched: false,
                },
            );
        }
        Ok(out)
    }

    /// Applies one job to the staged sessions, recording what to write.
    fn stage(
        &self,
        job: &Job,
        sessions: &mut HashMap<String, Staged>,
        known: &mut HashSet<(String, String)>,
        writes: &mut Writes,
    ) -> Outcome {
        let Some(s) = sessions
            .get_mut(&job.session_id)
            .filter(|s| s.account_id == job.account_id)
        else {
            return Outcome::Refused(StoreError::NotFound);
        };
        let new = &job.new;
        let key = (job.session_id.clone(), new.idempotency_key.clone());
        if known.contains(&key) {
            return Outcome::Retried;
        }
        let sr = &mut s.row;
        if sr.meter().state == State::Stopped {
            return Outcome::Refused(TransitionError::Stopped.into());
        }
        if sr.managed && !new.by_server && new.kind.changes_state() {
            return Outcome::Refused(super::managed_refusal(&job.session_id, new));
        }
        let now_ms = job.now_ms.max(sr.updated_at_ms);
        let now_s = now_ms.div_euclid(1000);
        let grace = if new.lost {
            0
        } else {
            grace_s(&self.prices, sr.managed)
        };
        let tr = match metering::apply(sr.meter(), new.kind, now_s, grace) {
            Ok(tr) => tr,
            Err(e) => return Outcome::Refused(e.into()),
        };
        sr.last_seq += 1;
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            session_id: job.session_id.clone(),
            kind: new.kind.as_str().to_string(),
            data: new.data.clone(),
            created_at: model::rfc3339_ms(now_ms),
            seq: sr.last_seq,
        };
        if let Some((start, end)) = tr.closed {
            writes.intervals.push((
                uuid::Uuid::new_v4().to_string(),
                job.session_id.clone(),
                job.account_id.clone(),
                s.repository_id.clone(),
                start,
                end,
            ));
            sr.active_closed_s += end - start;
        }
        if tr.meter.state == State::Stopped {
            s.stopped_at_ms = Some(now_ms);
        }
        sr.state = tr.meter.state.as_str().to_string();
        sr.updated_at_ms = now_ms;
        sr.last_seen_s = tr.meter.last_seen_s;
        sr.active_since_s = tr.meter.active_since_s;
        s.touched = true;
        known.insert(key);

        let session = sr.to_session(&self.prices, now_s);
        writes.live.push((
            live_event(&job.account_id, &event, &session),
            event.id.clone(),
        ));
        writes.events.push((
            event.clone(),
            job.account_id.clone(),
            new.idempotency_key.clone(),
            now_ms,
        ));
        Outcome::Created(Box::new(Appended {
            event,
            session,
            created: true,
        }))
    }

    /// Announces the committed events, in batch order (see
    /// [`Store::announce`](super::Store::announce) for why and how per engine); on PostgreSQL
    /// in one statement.
    async fn announce(&self, conn: &mut sqlx::AnyConnection, live: Vec<(LiveEvent, String)>) {
        if live.is_empty() {
            return;
        }
        match self.db.engine {
            Engine::Sqlite => {
                for (ev, _) in live {
                    self.hub.publish(ev);
                }
            }
            Engine::Postgres => {
                let calls: Vec<String> = (0..live.len())
                    .map(|i| format!("pg_notify($1, ${})", i + 2))
                    .collect();
                let sql = format!("SELECT {}", calls.join(", "));
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(CHANNEL);
                for (ev, id) in &live {
                    q = q.bind(Notice::payload(ev, id));
                }
                if let Err(e) = q.execute(&mut *conn).await {
                    tracing::error!(error = %e, events = live.len(), "NOTIFY failed; live subscribers catch up on the next events");
                }
            }
        }
    }
}

/// The `(session, idempotency key)` pairs of the batch already stored: one index probe per pair
/// (a join with `VALUES`; `IN (…) AND IN (…)` would probe every combination).
async fn read_keys(
    conn: &mut sqlx::AnyConnection,
    batch: &[Job],
) -> Result<HashSet<(String, String)>> {
    let sql = format!(
        "SELECT e.session_id, e.idempotency_key FROM (VALUES {}) AS v \
         JOIN session_events e ON e.session_id = v.column1 AND e.idempotency_key = v.column2",
        tuples(batch.len(), 2)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for job in batch {
        q = q.bind(&job.session_id).bind(&job.new.idempotency_key);
    }
    let mut out = HashSet::new();
    for r in q.fetch_all(&mut *conn).await? {
        out.insert((r.try_get(0)?, r.try_get(1)?));
    }
    Ok(out)
}

async fn insert_events(
    conn: &mut sqlx::AnyConnection,
    rows: &[(Event, String, String, i64)],
) -> Result<()> {
    let sql = format!(
        "INSERT INTO session_events (id, session_id, account_id, seq, type, data, \
         idempotency_key, created_at_ms) VALUES {} \
         ON CONFLICT (session_id, idempotency_key) DO NOTHING",
        tuples(rows.len(), 8)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (event, account_id, key, now_ms) in rows {
        q = q
            .bind(&event.id)
            .bind(&event.session_id)
            .bind(account_id)
            .bind(event.seq)
            .bind(&event.kind)
            .bind(event.data.to_string())
            .bind(key)
            .bind(*now_ms);
    }
    let done = q.execute(&mut *conn).await?;
    if done.rows_affected() != rows.len() as u64 {
        // Another replica stored one of these keys after we read them: start over one by one.
        return Err(StoreError::Conflict(
            "an idempotency key was stored concurrently".into(),
        ));
    }
    Ok(())
}

async fn insert_intervals(
    conn: &mut sqlx::AnyConnection,
    rows: &[(String, String, String, String, i64, i64)],
) -> Result<()> {
    let sql = format!(
        "INSERT INTO active_intervals (id, session_id, account_id, repository_id, start_s, end_s) \
         VALUES {}",
        tuples(rows.len(), 6)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (id, session_id, account_id, repository_id, start, end) in rows {
        q = q
            .bind(id)
            .bind(session_id)
            .bind(account_id)
            .bind(repository_id)
            .bind(*start)
            .bind(*end);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// One statement for every touched session. `VALUES` columns are `column1…` on both engines.
async fn update_sessions(conn: &mut sqlx::AnyConnection, rows: &[&Staged]) -> Result<()> {
    let sql = format!(
        "UPDATE sessions SET last_seq = v.column2, state = v.column3, updated_at_ms = v.column4, \
         last_seen_s = v.column5, active_since_s = v.column6, active_closed_s = v.column7, \
         stopped_at_ms = COALESCE(sessions.stopped_at_ms, v.column8) \
         FROM (VALUES {}) AS v WHERE sessions.id = v.column1",
        tuples(rows.len(), 8)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for s in rows {
        let r = &s.row;
        q = q
            .bind(&r.id)
            .bind(r.last_seq)
            .bind(&r.state)
            .bind(r.updated_at_ms)
            .bind(r.last_seen_s)
            .bind(r.active_since_s)
            .bind(r.active_closed_s)
            .bind(s.stopped_at_ms);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// The distinct values, in first-seen order.
fn unique<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    it.filter(|v| seen.insert(*v)).collect()
}

/// `$from, $from+1, …` (`n` of them).
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, …, $w), ($w+1, …), …`: `rows` tuples of `width` placeholders.
fn tuples(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(1 + r * width, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_across_tuples() {
        assert_eq!(placeholders(3, 2), "$3, $4");
        assert_eq!(tuples(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(unique(["a", "b", "a"].into_iter()), vec!["a", "b"]);
    }
}
