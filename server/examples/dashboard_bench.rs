//! Dashboard render benchmark (not a test): seeds one account with N sessions (default 10,000,
//! with ~5 events each, over 20 repositories and the last 30 days) on SQLite and PostgreSQL,
//! serves the real router in-process on a loopback port, signs in with a cookie session, and
//! measures the latency of each dashboard page over many sequential requests (p50/p90/p99/max).
//! Latency is measured by the client over loopback, so it includes HTTP and is an upper bound of
//! the server-side render time.
//!
//! ```text
//! cargo run --release -p rclaude-server --example dashboard_bench -- \
//!     [--engine sqlite|postgres|both] [--sessions 10000] [--requests 200]
//! ```
//!
//! PostgreSQL: a fresh database on `RCLAUDE_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) with `synchronous_commit = off` (seeding speed
//! only; reads are unaffected), dropped afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rclaude_server::app::router;
use rclaude_server::config::ServerConfig;
use rclaude_server::dashboard::auth::{new_secret, session_hash};
use rclaude_server::events::Hub;
use rclaude_server::metrics::Metrics;
use rclaude_server::model::EventKind;
use rclaude_server::state::{AppState, SocketTracker};
use rclaude_server::storage::{NewEvent, NewSession, Store};
use serde_json::json;
use sqlx::Connection;

struct Args {
    engines: Vec<&'static str>,
    sessions: usize,
    requests: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        engines: vec!["sqlite", "postgres"],
        sessions: 10_000,
        requests: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--engine" => {
                a.engines = match v()?.as_str() {
                    "sqlite" => vec!["sqlite"],
                    "postgres" => vec!["postgres"],
                    "both" => vec!["sqlite", "postgres"],
                    o => bail!("--engine {o}: use sqlite, postgres or both"),
                }
            }
            "--sessions" => a.sessions = v()?.parse()?,
            "--requests" => a.requests = v()?.parse()?,
            o => bail!("unknown argument {o}"),
        }
    }
    Ok(a)
}

fn pg_admin() -> String {
    std::env::var("RCLAUDE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn event(
    store: &Store,
    acct: &str,
    sid: &str,
    kind: EventKind,
    data: serde_json::Value,
    ms: i64,
) -> anyhow::Result<()> {
    let new = NewEvent {
        kind,
        idempotency_key: uuid::Uuid::new_v4().to_string(),
        data,
        by_server: false,
        lost: false,
    };
    store.append_event(acct, sid, &new, ms).await?;
    Ok(())
}

/// Seeds `n` sessions; returns (account id, a typical session id, a long session id, a repo).
async fn seed(store: &Store, n: usize) -> anyhow::Result<(String, String, String, String)> {
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let acct = store
        .create_account("bench", now_ms - 40 * 86_400_000)
        .await?
        .id;
    let other = store
        .create_account("other", now_ms - 40 * 86_400_000)
        .await?
        .id;
    let span_ms = 29 * 86_400_000i64;
    let started = Instant::now();
    let mut typical = String::new();
    let extra = n / 10;
    for i in 0..(n + extra) {
        let t = now_ms - span_ms + ((i % n) as i64 * span_ms / n as i64);
        let repo = format!("github.com/acme/repo-{:02}", i % 20);
        let sid = uuid::Uuid::new_v4().to_string();
        let owner = if i >= n { &other } else { &acct };
        store
            .create_session(
                owner,
                &NewSession {
                    id: sid.clone(),
                    repository: repo,
                    branch: format!("feature-{}", i % 7),
                    provider: "local".into(),
                    sandbox_id: Some(format!("sbx-{i}")),
                    config_hash: Some("abc123".into()),
                    managed: false,
                    idempotency_key: None,
                    idle_pause_ms: None,
                },
                t,
            )
            .await?;
        event(
            store,
            owner,
            &sid,
            EventKind::Started,
            json!({}),
            t + 30_000,
        )
        .await?;
        event(
            store,
            owner,
            &sid,
            EventKind::TaskFinished,
            json!({"task": "test", "exit_code": i % 5, "duration_ms": 4000}),
            t + 90_000,
        )
        .await?;
        match i % 10 {
            0 => {} // still running (cut at last sign of life + grace)
            1..=6 => {
                event(
                    store,
                    owner,
                    &sid,
                    EventKind::Paused,
                    json!({}),
                    t + 600_000,
                )
                .await?
            }
            _ => {
                event(
                    store,
                    owner,
                    &sid,
                    EventKind::Stopped,
                    json!({}),
                    t + 900_000,
                )
                .await?
            }
        }
        if i == n / 2 {
            typical = sid;
        }
        if (i + 1) % 2000 == 0 {
            eprintln!(
                "  seeded {} sessions ({:.0}/s)",
                i + 1,
                (i + 1) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    // One long session: 2,000 heartbeats.
    let long = uuid::Uuid::new_v4().to_string();
    let t = now_ms - 86_400_000;
    store
        .create_session(
            &acct,
            &NewSession {
                id: long.clone(),
                repository: "github.com/acme/repo-00".into(),
                branch: "main".into(),
                provider: "local".into(),
                sandbox_id: None,
                config_hash: None,
                managed: false,
                idempotency_key: None,
                idle_pause_ms: None,
            },
            t,
        )
        .await?;
    event(store, &acct, &long, EventKind::Started, json!({}), t + 1000).await?;
    for k in 0..2000 {
        event(
            store,
            &acct,
            &long,
            EventKind::Heartbeat,
            json!({}),
            t + 2000 + k * 30_000,
        )
        .await?;
    }
    eprintln!("  seeding took {:.1}s", started.elapsed().as_secs_f64());
    Ok((acct, typical, long, "github.com/acme/repo-03".into()))
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn run(engine: &str, args: &Args) -> anyhow::Result<()> {
    let keep = std::env::var("RCLAUDE_BENCH_KEEP_DB").as_deref() == Ok("1");
    let dir = tempfile::tempdir()?;
    let (url, pg) = if engine == "sqlite" {
        (dir.path().join("bench.db").display().to_string(), None)
    } else {
        let admin = pg_admin();
        let name = format!("rclaude_bench_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::PgConnection::connect(&admin)
            .await
            .with_context(|| format!("PostgreSQL at {admin}"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        )))
        .execute(&mut c)
        .await?;
        let mut u = url::Url::parse(&admin)?;
        u.set_path(&format!("/{name}"));
        (u.to_string(), Some((admin, name)))
    };
    let result = async {
        let cfg = ServerConfig { database_url: url.clone(), ..Default::default() };
        let db = rclaude_server::db::open(&url, cfg.db_max_connections).await?;
        let hub = Hub::default();
        let store = Store::new(db.clone(), cfg.prices, hub.clone());
        eprintln!("{engine}: seeding {} sessions", args.sessions);
        let (acct, typical, long, repo) = seed(&store, args.sessions).await?;
        // Fresh planner statistics and visibility map, as autovacuum keeps them in production
        // (PostgreSQL's planner and index-only scans depend on them; SQLite ignores this).
        if engine == "postgres" {
            sqlx::query("VACUUM ANALYZE").execute(&db.write).await?;
        } else {
            sqlx::query("ANALYZE").execute(&db.write).await?;
        }
        let token = rclaude_server::auth::issue(&store, &acct, "bench", 0).await?.0;
        let secret = new_secret();
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        store.create_web_session(&session_hash(&secret), &acct, &token.id, now_ms, now_ms + 86_400_000).await?;
        // Where the usage page's time goes (median of 20 runs of each step).
        {
            let now = time::OffsetDateTime::now_utc();
            let m = rclaude_server::billing::Month::of(now.date());
            let (from_s, to_s) = (m.start_s(), m.end_s());
            let now_s = now.unix_timestamp();
            let mut t = [Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new()];
            for _ in 0..20 {
                let t0 = Instant::now();
                let (iv, lt) = store.usage_inputs(&acct, from_s, to_s, now_s).await?;
                let t1 = Instant::now();
                let t2 = Instant::now();
                t[4].push(t1 - t0);
                t[5].push(t2 - t1);
                if t[4].len() == 1 {
                    // The reduced inputs must bill exactly like the raw ones.
                    let raw_iv = store.intervals(&acct, from_s, to_s, now_s).await?;
                    let raw_lt = store.lifetimes(&acct, from_s * 1000, to_s * 1000).await?;
                    let last = m.next().first_day().previous_day().unwrap();
                    let p = store.prices();
                    let a = rclaude_server::billing::usage(m.first_day(), last, p, &iv, &lt, now_s * 1000);
                    let b = rclaude_server::billing::usage(m.first_day(), last, p, &raw_iv, &raw_lt, now_s * 1000);
                    anyhow::ensure!(a == b, "reduced usage inputs bill differently");
                    let a = rclaude_server::billing::invoice(m, p, &iv, &lt, now_s * 1000);
                    let b = rclaude_server::billing::invoice(m, p, &raw_iv, &raw_lt, now_s * 1000);
                    anyhow::ensure!(a == b, "reduced usage inputs invoice differently");
                    eprintln!("  reduced usage inputs: {} intervals, {} lifetimes (same usage and invoice: ok)", iv.len(), lt.len());
                }
            }
            for _ in 0..20 {
                let t0 = Instant::now();
                let iv = store.intervals(&acct, from_s, to_s, now_s).await?;
                let t1 = Instant::now();
                let lt = store.lifetimes(&acct, from_s * 1000, to_s * 1000).await?;
                let t2 = Instant::now();
                let last = m.next().first_day().previous_day().unwrap();
                let _u = rclaude_server::billing::usage(m.first_day(), last, store.prices(), &iv, &lt, now_s * 1000);
                let t3 = Instant::now();
                let _i = rclaude_server::billing::invoice(m, store.prices(), &iv, &lt, now_s * 1000);
                let t4 = Instant::now();
                for (k, d) in [t1 - t0, t2 - t1, t3 - t2, t4 - t3].into_iter().enumerate() {
                    t[k].push(d);
                }
                if t[0].len() == 1 {
                    eprintln!("  usage inputs: {} intervals, {} lifetimes", iv.len(), lt.len());
                }
            }
            for v in t.iter_mut() {
                v.sort();
            }
            eprintln!(
                "  usage breakdown (median ms): raw intervals query {:.1}, raw lifetimes query {:.1}, billing::usage {:.1}, billing::invoice {:.1}; reduced inputs (concurrent queries) {:.1}",
                pct(&t[0], 0.5), pct(&t[1], 0.5), pct(&t[2], 0.5), pct(&t[3], 0.5), pct(&t[4], 0.5)
            );
        }
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let state = AppState {
            store,
            config: Arc::new(cfg),
            hub,
            metrics: Arc::new(Metrics::default()),
            shutdown: rx,
            sockets: Arc::new(SocketTracker::default()),
            revocations: Default::default(),
            sandboxes: None,
            checkpoints: rclaude_server::checkpoint_store::BlobStore::open(
                &std::env::temp_dir().join("rclaude-dashboard-bench-checkpoints").display().to_string(),
            )?,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });
        let http = reqwest::Client::new();
        let cookie = format!("rclaude_session={secret}");
        let month = &time::OffsetDateTime::now_utc().date().to_string()[..7];
        let pages = [
            ("sessions (20 repositories × 10)", "/sessions".to_string()),
            ("one repository, first 50", format!("/sessions?repository={}", repo.replace('/', "%2F"))),
            ("session page (4 events)", format!("/sessions/{typical}")),
            ("session page (2,002 events)", format!("/sessions/{long}")),
            ("usage page (month)", format!("/usage?month={month}")),
            ("usage CSV", format!("/usage.csv?month={month}")),
        ];
        println!("\n{engine}: {} sessions of the account (+{} of another account), {} requests per page", args.sessions + 1, args.sessions / 10, args.requests);
        println!("| page | bytes | p50 ms | p90 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|---|");
        for (name, path) in pages {
            let mut lat = Vec::with_capacity(args.requests);
            let mut bytes = 0;
            for i in 0..(args.requests + 10) {
                let t0 = Instant::now();
                let r = http.get(format!("{base}{path}")).header("cookie", &cookie).send().await?;
                let status = r.status();
                let body = r.bytes().await?;
                let dt = t0.elapsed();
                if !status.is_success() {
                    bail!("{path}: HTTP {status}");
                }
                bytes = body.len();
                if i >= 10 {
                    lat.push(dt);
                }
            }
            lat.sort();
            println!("| {name} | {bytes} | {:.1} | {:.1} | {:.1} | {:.1} |", pct(&lat, 0.5), pct(&lat, 0.9), pct(&lat, 0.99), lat.last().unwrap().as_secs_f64() * 1000.0);
        }
        server.abort();
        db.close().await;
        anyhow::Ok(())
    }
    .await;
    if keep && pg.is_none() {
        eprintln!("kept database {url}");
        let _ = dir.keep();
    }
    if let Some((admin, name)) = pg {
        if keep {
            eprintln!("kept database {name}");
            return result;
        }
        if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut c)
            .await;
        }
    }
    result
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    for engine in args.engines.clone() {
        run(engine, &args).await?;
    }
    Ok(())
}
