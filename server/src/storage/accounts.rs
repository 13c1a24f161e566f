//! Accounts, API tokens and dashboard sign-in sessions.

use super::*;

impl Store {
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
}

/// An account's limits on managed sessions (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Budget per calendar month, in micro-dollars.
    pub max_month_micros: Option<i64>,
    /// Managed sessions running at once.
    pub max_running: Option<i64>,
}

impl Store {
    /// Set an account's limits on managed sessions.
    pub async fn set_limits(&self, account_id: &str, limits: Limits) -> Result<()> {
        sqlx::query("UPDATE accounts SET max_month_micros = $1, max_running = $2 WHERE id = $3")
            .bind(limits.max_month_micros)
            .bind(limits.max_running)
            .bind(account_id)
            .execute(&self.db.write)
            .await?;
        Ok(())
    }

    /// An account's limits on managed sessions.
    pub async fn limits(&self, account_id: &str) -> Result<Limits> {
        let row = sqlx::query("SELECT max_month_micros, max_running FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_optional(&self.db.read)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(Limits {
            max_month_micros: row.try_get(0)?,
            max_running: row.try_get(1)?,
        })
    }

    /// Accounts with a monthly budget: `(account_id, max_month_micros)`.
    pub async fn budgeted_accounts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT id, max_month_micros FROM accounts WHERE max_month_micros IS NOT NULL",
        )
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Running managed sessions of an account: `(session_id, sandbox_id)`.
    pub async fn running_managed_of(&self, account_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT id, sandbox_id FROM sessions WHERE account_id = $1 AND managed = 1 \
             AND state = 'running' AND sandbox_id IS NOT NULL",
        )
        .bind(account_id)
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}
