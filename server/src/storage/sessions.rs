//! Sessions and their events: creation, transitions, the event log and live notices.

use super::*;

impl Store {
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
             config_hash, state, created_at_ms, updated_at_ms, last_seen_s, active_closed_s, last_seq, \
             managed, idempotency_key, idle_pause_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'created', $8, $8, $9, 0, 1, $10, $11, $12) \
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
        .bind(i64::from(new.managed))
        .bind(&new.idempotency_key)
        .bind(new.idle_pause_ms)
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

    /// The managed session an account created with this `Idempotency-Key`, if any.
    pub async fn session_by_idempotency_key(
        &self,
        account_id: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<Session>> {
        let row = sqlx::query(concat!(
            session_select!(),
            "WHERE s.account_id = $1 AND s.idempotency_key = $2"
        ))
        .bind(account_id)
        .bind(key)
        .fetch_optional(&self.db.read)
        .await?;
        row.map(|r| self.session_from_row(&r, now_ms.div_euclid(1000)))
            .transpose()
    }

    /// Every running managed session.
    pub async fn running_managed_sessions(&self) -> Result<Vec<RunningManaged>> {
        let rows = sqlx::query(
            "SELECT account_id, id, sandbox_id, updated_at_ms, idle_pause_ms FROM sessions \
             WHERE managed = 1 AND state = 'running' AND sandbox_id IS NOT NULL",
        )
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunningManaged {
                    account_id: r.try_get(0)?,
                    session_id: r.try_get(1)?,
                    sandbox_id: r.try_get(2)?,
                    active_at_ms: r.try_get(3)?,
                    idle_pause_ms: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Sandbox ids of every managed session that is not stopped (the sandboxes this deployment
    /// should have).
    pub async fn live_managed_sandboxes(&self) -> Result<std::collections::HashSet<String>> {
        let rows = sqlx::query(
            "SELECT sandbox_id FROM sessions \
             WHERE managed = 1 AND state <> 'stopped' AND sandbox_id IS NOT NULL",
        )
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// The server saw a running session's sandbox alive at `now_s`: its last sign of life, where
    /// billing stops should the sandbox be lost later.
    pub async fn touch_session(&self, session_id: &str, now_s: i64) -> Result<()> {
        sqlx::query(
            "UPDATE sessions SET last_seen_s = $2 \
             WHERE id = $1 AND state = 'running' AND last_seen_s < $2",
        )
        .bind(session_id)
        .bind(now_s)
        .execute(&self.db.write)
        .await?;
        Ok(())
    }

    /// Running managed sessions whose last event is older than their idle pause (the session's
    /// own, else `default_idle_ms`) at `now_ms`: `(account_id, session_id, sandbox_id)`, oldest
    /// first.
    pub async fn idle_managed_sessions(
        &self,
        now_ms: i64,
        default_idle_ms: i64,
    ) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT account_id, id, sandbox_id FROM sessions \
             WHERE managed = 1 AND state = 'running' \
             AND updated_at_ms < $1 - COALESCE(idle_pause_ms, $2) \
             AND sandbox_id IS NOT NULL ORDER BY updated_at_ms LIMIT 100",
        )
        .bind(now_ms)
        .bind(default_idle_ms)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
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

    pub(super) async fn session_any_account(
        &self,
        id: &str,
        now_s: i64,
    ) -> Result<Option<(String, Session)>> {
        let row = sqlx::query(concat!(session_select!(), "WHERE s.id = $1"))
            .bind(id)
            .fetch_optional(&self.db.read)
            .await?;
        row.map(|r| Ok((r.try_get(13)?, self.session_from_row(&r, now_s)?)))
            .transpose()
    }

    pub(super) async fn session_in(
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
    ///
    /// Concurrent appends are committed together ([`event_batch`](super::event_batch)); the
    /// answer comes after the commit either way.
    pub async fn append_event(
        &self,
        account_id: &str,
        session_id: &str,
        new: &NewEvent,
        now_ms: i64,
    ) -> Result<Appended> {
        if let Some(queue) = self.batcher.queue(&self.db, &self.prices, &self.hub) {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = Job {
                account_id: account_id.to_string(),
                session_id: session_id.to_string(),
                new: new.clone(),
                now_ms,
                reply,
            };
            if queue.send(job).await.is_ok() {
                match answer.await {
                    Ok(Outcome::Created(appended)) => return Ok(*appended),
                    Ok(Outcome::Retried) => {
                        return self.retried(account_id, session_id, new, now_ms).await;
                    }
                    Ok(Outcome::Refused(e)) => return Err(e),
                    // The batch failed as a whole, or its task is gone (runtime shutting down):
                    // on its own, the event is stored once or answered as a retry.
                    Ok(Outcome::Alone) | Err(_) => {}
                }
            }
        }
        self.append_one(account_id, session_id, new, now_ms).await
    }

    /// Appends one event in its own transaction.
    async fn append_one(
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
             last_seen_s, active_since_s, active_closed_s, last_seq, account_id, repository_id, \
             managed, idle_pause_ms",
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

        if sr.managed && !new.by_server && new.kind.changes_state() {
            tx.rollback().await?;
            return Err(managed_refusal(session_id, new));
        }
        // Server time, never before the session's previous event.
        let now_ms = now_ms.max(sr.updated_at_ms);
        let now_s = now_ms.div_euclid(1000);
        // A managed session's interval is never cut at a last sign of life (its grace is
        // unbounded): client reports say it is in use but cannot end or extend its billing.
        let grace = if new.lost {
            0
        } else {
            grace_s(&self.prices, sr.managed)
        };
        let tr = metering::apply(sr.meter(), new.kind, now_s, grace)?;
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
            return self.retried(account_id, session_id, new, now_ms).await;
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

    /// Answers a retried event whose key is committed: the stored one, if it is the same event.
    async fn retried(
        &self,
        account_id: &str,
        session_id: &str,
        new: &NewEvent,
        now_ms: i64,
    ) -> Result<Appended> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLS} FROM session_events WHERE session_id = $1 AND idempotency_key = $2"
        )))
        .bind(session_id)
        .bind(&new.idempotency_key)
        .fetch_one(&self.db.read)
        .await?;
        self.duplicate(account_id, session_id, new, &row, now_ms)
            .await
    }

    /// Answers a retried event: the stored one, if it is the same event.
    pub(super) async fn duplicate(
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
    pub(super) async fn announce(
        &self,
        conn: &mut sqlx::AnyConnection,
        live: LiveEvent,
        event_id: &str,
    ) {
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
}

/// A running managed session, as the reconciler sees it.
#[derive(Debug, Clone)]
pub struct RunningManaged {
    pub account_id: String,
    pub session_id: String,
    pub sandbox_id: String,
    /// Its last activity (what idle auto-pause counts from).
    pub active_at_ms: i64,
    /// Its own idle pause, when it has one.
    pub idle_pause_ms: Option<i64>,
}
