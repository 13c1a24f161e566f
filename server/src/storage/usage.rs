//! Metering (active intervals, storage lifetimes) and the dashboard's usage queries.

use super::*;

impl Store {
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
            "SELECT r.name, s.active_since_s, s.last_seen_s, s.managed FROM sessions s \
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
            if let Some((start_s, end_s)) = metering::effective_end(
                &m,
                now_s,
                grace_s(&self.prices, r.try_get::<i64, _>(3)? != 0),
            ) && end_s > from_s
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

    /// Storage lifetimes of an account that overlap `[from_ms, to_ms)`: its sessions' (creation
    /// to stop) and its stored checkpoints' (upload to deletion).
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
             AND (s.stopped_at_ms IS NULL OR s.stopped_at_ms >= $3) \
             UNION ALL \
             SELECT r.name, c.created_at_ms, c.deleted_at_ms FROM checkpoints c \
             JOIN repositories r ON r.id = c.repository_id \
             WHERE c.account_id = $1 AND c.created_at_ms < $2 \
             AND (c.deleted_at_ms IS NULL OR c.deleted_at_ms >= $3)",
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
            "SELECT repository_id, active_since_s, last_seen_s, managed FROM sessions \
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
        // Stored checkpoints count as storage too: those still kept (one lifetime per
        // repository, from the earliest), and those deleted in or after the range.
        let kept = sqlx::query(
            "SELECT repository_id, MIN(created_at_ms), MAX(deleted_at_ms) FROM checkpoints \
             WHERE account_id = $1 AND deleted_at_ms IS NULL AND created_at_ms < $2 \
             GROUP BY repository_id",
        )
        .bind(account_id)
        .bind(to_s * 1000)
        .fetch_all(db);
        let dropped = sqlx::query(
            "SELECT repository_id, created_at_ms, deleted_at_ms FROM checkpoints \
             WHERE account_id = $1 AND deleted_at_ms >= $2 AND created_at_ms < $3",
        )
        .bind(account_id)
        .bind(from_s * 1000)
        .bind(to_s * 1000)
        .fetch_all(db);
        let (names, summed, others, open, alive, stopped, kept, dropped) = futures::try_join!(
            self.repository_names(account_id),
            async { Ok(summed.await?) },
            async { Ok(others.await?) },
            async { Ok(open.await?) },
            async { Ok(alive.await?) },
            async { Ok(stopped.await?) },
            async { Ok(kept.await?) },
            async { Ok(dropped.await?) },
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
            if let Some((start_s, end_s)) = metering::effective_end(
                &m,
                now_s,
                grace_s(&self.prices, r.try_get::<i64, _>(3)? != 0),
            ) && end_s > from_s
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
        for r in alive.iter().chain(&stopped).chain(&kept).chain(&dropped) {
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
            let rid: String = r.try_get("rid")?;
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
}
