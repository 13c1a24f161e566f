//! Database connection: URL normalisation, pools per engine, migrations.
//!
//! One `sqlx::Any` code path serves both engines (see docs/server.md, "Why sqlx::Any"). SQLite gets
//! a single-connection writer pool (SQLite has one writer anyway; queueing in the pool avoids
//! `SQLITE_BUSY`) plus a reader pool, in WAL mode. PostgreSQL uses one pool for both.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor};

/// The two supported engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// A database that could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "database URL `{0}` is not understood: use a SQLite file path, `sqlite://PATH`, or `postgres://USER@HOST/DB`"
    )]
    BadUrl(String),
    #[error("cannot create the directory {dir} for the SQLite database: {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to the {engine} database at {url}: {source}")]
    Connect {
        engine: &'static str,
        url: String,
        source: sqlx::Error,
    },
    #[error("cannot apply the schema migrations to {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
}

/// Pools for one database.
#[derive(Debug, Clone)]
pub struct Db {
    pub engine: Engine,
    /// Pool for statements that write (a single connection on SQLite).
    pub write: AnyPool,
    /// Pool for reads.
    pub read: AnyPool,
    /// The normalised URL (PostgreSQL LISTEN connects to it).
    pub url: String,
    /// The URL without password, for messages and logs.
    pub display_url: String,
}

/// The migrations in `schema/migrations`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../schema/migrations");

/// Turns what the user gave into an engine and a URL sqlx accepts; creates the SQLite directory.
pub fn normalise_url(raw: &str) -> Result<(Engine, String), DbError> {
    let raw = raw.trim();
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        url_parse_ok(raw)?;
        return Ok((Engine::Postgres, raw.to_string()));
    }
    let (path, params) = if let Some(rest) = raw
        .strip_prefix("sqlite://")
        .or_else(|| raw.strip_prefix("sqlite:"))
    {
        match rest.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (rest.to_string(), None),
        }
    } else if raw.contains("://") || raw.is_empty() {
        return Err(DbError::BadUrl(raw.to_string()));
    } else {
        (raw.to_string(), None)
    };
    if path.is_empty() {
        return Err(DbError::BadUrl(raw.to_string()));
    }
    if path == ":memory:" {
        return Ok((Engine::Sqlite, "sqlite::memory:".to_string()));
    }
    let path = absolute(Path::new(&path));
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    let mut opts = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    if let Some(q) = params
        && q.contains("mode=ro")
    {
        opts = opts.read_only(true).create_if_missing(false);
    }
    Ok((Engine::Sqlite, opts.to_url_lossy().to_string()))
}

fn url_parse_ok(raw: &str) -> Result<(), DbError> {
    AnyConnectOptions::from_str(raw)
        .map(|_| ())
        .map_err(|_| DbError::BadUrl(redact(raw)))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// The URL with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Opens the database, creating the SQLite file (WAL mode) if needed, and applies migrations.
pub async fn open(raw_url: &str, max_connections: u32) -> Result<Db, DbError> {
    sqlx::any::install_default_drivers();
    let (engine, url) = normalise_url(raw_url)?;
    let display_url = redact(&url);
    let connect_err = |source| DbError::Connect {
        engine: engine.as_str(),
        url: display_url.clone(),
        source,
    };
    let opts = AnyConnectOptions::from_str(&url).map_err(connect_err)?;
    let db = match engine {
        Engine::Sqlite => {
            let pragmas = sqlite_pragmas;
            let write = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(60))
                .after_connect(pragmas)
                .connect_with(opts.clone())
                .await
                .map_err(connect_err)?;
            // WAL is a property of the file: set once, then every connection uses it.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&write)
                .await
                .map_err(connect_err)?;
            let read = AnyPoolOptions::new()
                .max_connections(max_connections.clamp(1, 8))
                .acquire_timeout(Duration::from_secs(60))
                .after_connect(pragmas)
                .connect_with(opts)
                .await
                .map_err(connect_err)?;
            Db {
                engine,
                write,
                read,
                url,
                display_url,
            }
        }
        Engine::Postgres => {
            let pool = AnyPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await
                .map_err(connect_err)?;
            Db {
                engine,
                write: pool.clone(),
                read: pool,
                url,
                display_url,
            }
        }
    };
    MIGRATOR
        .run(&db.write)
        .await
        .map_err(|source| DbError::Migrate {
            url: db.display_url.clone(),
            source,
        })?;
    Ok(db)
}

fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, Result<(), sqlx::Error>> {
    Box::pin(async move {
        conn.execute("PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 30000;")
            .await?;
        Ok(())
    })
}

impl Db {
    /// Closes both pools.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_normalise() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.db");
        let (e, u) = normalise_url(p.to_str().unwrap()).unwrap();
        assert_eq!(e, Engine::Sqlite);
        assert!(u.starts_with("sqlite://") && u.contains("mode=rwc"), "{u}");
        assert!(dir.path().join("sub").is_dir());
        let (e, _) = normalise_url("postgres://postgres@127.0.0.1/x").unwrap();
        assert_eq!(e, Engine::Postgres);
        assert!(normalise_url("mysql://x").is_err());
        assert!(normalise_url("").is_err());
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
    }
}
