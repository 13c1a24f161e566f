//! The Stripe meter-event export queue.

use super::*;

impl Store {
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
}
