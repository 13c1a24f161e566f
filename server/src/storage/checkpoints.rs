//! Checkpoint records (the bundles themselves are objects in [`crate::checkpoint_store`]).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Result, Store, StoreError};

/// A checkpoint to record once its object is stored.
#[derive(Debug, Clone)]
pub struct NewCheckpoint {
    pub name: String,
    pub base: Option<String>,
    pub anchor: bool,
    pub object_key: String,
    pub size_bytes: i64,
    pub sha256: String,
    /// The client's description (JSON text).
    pub info: String,
}

/// A stored (not deleted) checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub id: String,
    pub session_id: String,
    pub name: String,
    pub base: Option<String>,
    pub anchor: bool,
    pub object_key: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub info: String,
    pub created_at_ms: i64,
}

macro_rules! cols {
    () => {
        "SELECT id, session_id, name, base, anchor, object_key, size_bytes, sha256, info, \
         created_at_ms FROM checkpoints "
    };
}

fn from_row(r: &AnyRow) -> Result<CheckpointRow> {
    Ok(CheckpointRow {
        id: r.try_get(0)?,
        session_id: r.try_get(1)?,
        name: r.try_get(2)?,
        base: r.try_get(3)?,
        anchor: r.try_get::<i64, _>(4)? != 0,
        object_key: r.try_get(5)?,
        size_bytes: r.try_get(6)?,
        sha256: r.try_get(7)?,
        info: r.try_get(8)?,
        created_at_ms: r.try_get(9)?,
    })
}

impl Store {
    /// Record a checkpoint of `session_id` (which must belong to `account_id`). A checkpoint of
    /// the same name already stored is answered instead (`Ok(Err(existing))`), whatever its
    /// content: the caller compares checksums.
    pub async fn insert_checkpoint(
        &self,
        account_id: &str,
        session_id: &str,
        new: &NewCheckpoint,
        now_ms: i64,
    ) -> Result<std::result::Result<CheckpointRow, CheckpointRow>> {
        let id = uuid::Uuid::new_v4().to_string();
        let done = sqlx::query(
            "INSERT INTO checkpoints (id, session_id, account_id, repository_id, name, base, \
             anchor, object_key, size_bytes, sha256, info, created_at_ms) \
             SELECT $1, s.id, s.account_id, s.repository_id, $2, $3, $4, $5, $6, $7, $8, $9 \
             FROM sessions s WHERE s.id = $10 AND s.account_id = $11 \
             ON CONFLICT (session_id, name) DO NOTHING",
        )
        .bind(&id)
        .bind(&new.name)
        .bind(&new.base)
        .bind(i64::from(new.anchor))
        .bind(&new.object_key)
        .bind(new.size_bytes)
        .bind(&new.sha256)
        .bind(&new.info)
        .bind(now_ms)
        .bind(session_id)
        .bind(account_id)
        .execute(&self.db.write)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Ok(CheckpointRow {
                id,
                session_id: session_id.to_string(),
                name: new.name.clone(),
                base: new.base.clone(),
                anchor: new.anchor,
                object_key: new.object_key.clone(),
                size_bytes: new.size_bytes,
                sha256: new.sha256.clone(),
                info: new.info.clone(),
                created_at_ms: now_ms,
            }));
        }
        // The name was taken (possibly by a checkpoint since deleted), or no such session.
        let row = sqlx::query(concat!(
            cols!(),
            "WHERE session_id = $1 AND account_id = $2 AND name = $3"
        ))
        .bind(session_id)
        .bind(account_id)
        .bind(&new.name)
        .fetch_optional(&self.db.write)
        .await?;
        match row {
            Some(r) => Ok(Err(from_row(&r)?)),
            None => Err(StoreError::NotFound),
        }
    }

    /// The stored checkpoints of a session, oldest first.
    pub async fn list_checkpoints(
        &self,
        account_id: &str,
        session_id: &str,
    ) -> Result<Vec<CheckpointRow>> {
        let rows = sqlx::query(concat!(
            cols!(),
            "WHERE session_id = $1 AND account_id = $2 AND deleted_at_ms IS NULL \
             ORDER BY created_at_ms, name"
        ))
        .bind(session_id)
        .bind(account_id)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Mark checkpoints deleted (their objects are deleted next; a crash in between leaves
    /// objects the start-up sweep removes).
    pub async fn mark_checkpoints_deleted(&self, ids: &[String], now_ms: i64) -> Result<()> {
        for id in ids {
            sqlx::query(
                "UPDATE checkpoints SET deleted_at_ms = $1 WHERE id = $2 AND deleted_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(id)
            .execute(&self.db.write)
            .await?;
        }
        Ok(())
    }

    /// Stored checkpoints of sessions stopped before `stopped_before_ms`.
    pub async fn checkpoints_of_stopped(
        &self,
        stopped_before_ms: i64,
    ) -> Result<Vec<CheckpointRow>> {
        let rows = sqlx::query(concat!(
            cols!(),
            "WHERE deleted_at_ms IS NULL AND session_id IN \
             (SELECT id FROM sessions WHERE stopped_at_ms IS NOT NULL AND stopped_at_ms < $1)"
        ))
        .bind(stopped_before_ms)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Object keys of every stored (not deleted) checkpoint.
    pub async fn live_checkpoint_keys(&self) -> Result<std::collections::HashSet<String>> {
        let rows = sqlx::query("SELECT object_key FROM checkpoints WHERE deleted_at_ms IS NULL")
            .fetch_all(&self.db.read)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }
}
