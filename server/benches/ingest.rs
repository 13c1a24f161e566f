//! Ingest benchmark: N concurrent clients post session events to a real `rclaude-server`
//! process for a fixed time, on SQLite and on PostgreSQL; reports events per second, latency
//! percentiles and where the CPU went (server, PostgreSQL, this load generator), then checks in
//! the database that every acknowledged event was stored exactly once (and that a live
//! account-wide WebSocket saw each one once). Several runs per engine; the median is reported.
//!
//! ```text
//! cargo bench -p rclaude-server --bench ingest -- [--engine sqlite|postgres|both] [--clients 64] [--seconds 5] [--runs 5]
//! ```
//!
//! Each client owns one session and posts `heartbeat` events with fresh idempotency keys; every
//! tenth event is immediately retried with the same key (a client retry), which must be answered
//! 200 and not stored again. PostgreSQL: a fresh database on `RCLAUDE_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::{Connection, Row};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

struct Args {
    engines: Vec<&'static str>,
    clients: usize,
    seconds: u64,
    runs: usize,
    /// Sessions for the memory figure (0: skip it).
    memory_sessions: usize,
    bin: PathBuf,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut engines = vec!["sqlite", "postgres"];
    let mut clients = 64;
    let mut seconds = 5;
    let mut runs = 5;
    let mut memory_sessions = 10_000;
    let mut bin = PathBuf::from(env!("CARGO_BIN_EXE_rclaude-server"));
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--engine" => {
                engines = match val()?.as_str() {
                    "sqlite" => vec!["sqlite"],
                    "postgres" => vec!["postgres"],
                    "both" => vec!["sqlite", "postgres"],
                    other => bail!("--engine {other}: use sqlite, postgres or both"),
                }
            }
            "--clients" => clients = val()?.parse().context("--clients")?,
            "--seconds" => seconds = val()?.parse().context("--seconds")?,
            "--runs" => runs = val()?.parse().context("--runs")?,
            "--memory-sessions" => memory_sessions = val()?.parse().context("--memory-sessions")?,
            "--server-bin" => bin = PathBuf::from(val()?),
            // Passed by `cargo bench`.
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    if !(1..=1024).contains(&clients) || !(1..=600).contains(&seconds) || !(1..=50).contains(&runs)
    {
        bail!("--clients must be 1..=1024, --seconds 1..=600 and --runs 1..=50");
    }
    if !bin.exists() {
        bail!("{} not found: pass --server-bin", bin.display());
    }
    Ok(Args {
        engines,
        clients,
        seconds,
        runs,
        memory_sessions,
        bin,
    })
}

#[derive(Default)]
struct ClientStats {
    latencies_us: Vec<u64>,
    stored: u64,
    retried_ok: u64,
    errors: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    println!(
        "ingest: {} clients × {} s, {} runs per engine, server {}; {} CPUs, load average {}",
        args.clients,
        args.seconds,
        args.runs,
        args.bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let mut rows = Vec::new();
    let mut medians = Vec::new();
    let mut memory_rows = Vec::new();
    for engine in &args.engines {
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            runs.push(with_database(engine, async |url| bench(&args, engine, url).await).await?);
        }
        rows.extend(runs.iter().map(|r| r.row.clone()));
        medians.push(Run::median(engine, &runs));
        if args.memory_sessions > 0 {
            memory_rows
                .push(with_database(engine, async |url| memory(&args, engine, url).await).await?);
        }
    }
    println!(
        "\n| engine | clients | seconds | events stored | events/s | p50 ms | p90 ms | p99 ms | max ms | CPU ms per 1k events: server / PostgreSQL / clients | retries answered 200 | errors | DB count check | live WebSocket check |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "\nMedians of {} runs (load average now {}):\n",
        args.runs,
        load_average()
    );
    println!(
        "| engine | events/s | p50 ms | p99 ms | CPU ms per 1k events: server / PostgreSQL / clients |"
    );
    println!("|---|---|---|---|---|");
    for m in medians {
        println!("{m}");
    }
    if !memory_rows.is_empty() {
        println!(
            "\nServer memory with {} sessions (each created and started, then every page of `GET /v1/sessions` and `GET /v1/usage` read):\n",
            args.memory_sessions
        );
        println!("| engine | sessions | resident now | peak resident (VmHWM) |");
        println!("|---|---|---|---|");
        for m in memory_rows {
            println!("{m}");
        }
    }
    Ok(())
}

/// One run's figures.
struct Run {
    row: String,
    per_s: f64,
    p50: f64,
    p99: f64,
    cpu: [f64; 3],
}

impl Run {
    fn median(engine: &str, runs: &[Run]) -> String {
        let med = |f: &dyn Fn(&Run) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        format!(
            "| {engine} | {:.0} | {:.2} | {:.2} | {:.0} / {:.0} / {:.0} |",
            med(&|r| r.per_s),
            med(&|r| r.p50),
            med(&|r| r.p99),
            med(&|r| r.cpu[0]),
            med(&|r| r.cpu[1]),
            med(&|r| r.cpu[2])
        )
    }
}

/// The 1-minute load average.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// CPU seconds used so far by every `postgres` process (the database's share of the run).
fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| cpu_seconds(&pid))
        .sum()
}

/// Runs `f` on a fresh database of `engine` (SQLite file or PostgreSQL database, dropped after).
async fn with_database<T>(
    engine: &str,
    f: impl AsyncFnOnce(&str) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dir = tempfile::tempdir()?;
    let (url, pg) = match engine {
        "sqlite" => (dir.path().join("bench.db").display().to_string(), None),
        _ => {
            let admin = std::env::var("RCLAUDE_TEST_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let name = format!("rclaude_bench_{}", uuid::Uuid::new_v4().simple());
            let mut c = sqlx::PgConnection::connect(&admin)
                .await
                .with_context(|| format!("PostgreSQL at {admin}"))?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await?;
            let mut u = url::Url::parse(&admin)?;
            u.set_path(&format!("/{name}"));
            (u.to_string(), Some((admin, name)))
        }
    };
    let result = f(&url).await;
    if let Some((admin, name)) = pg {
        let mut c = sqlx::PgConnection::connect(&admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut c)
        .await?;
    }
    result
}

/// A running server on a fresh account.
struct Serving {
    server: tokio::process::Child,
    base: String,
    token: String,
}

impl Serving {
    async fn start(args: &Args, url: &str) -> anyhow::Result<Serving> {
        let out = Command::new(&args.bin)
            .args(["--database-url", url, "admin", "create-account", "bench"])
            .output()
            .await?;
        if !out.status.success() {
            bail!("create-account: {}", String::from_utf8_lossy(&out.stderr));
        }
        let token = String::from_utf8(out.stdout)?
            .lines()
            .last()
            .context("token line")?
            .trim()
            .to_string();
        let mut server = Command::new(&args.bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", url])
            .args(["--db-max-connections", "16"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let mut lines = BufReader::new(server.stdout.take().context("stdout")?).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await??
            .context("server did not start")?;
        let base = first.rsplit(' ').next().context("address")?.to_string();
        Ok(Serving {
            server,
            base,
            token,
        })
    }

    fn pid(&self) -> anyhow::Result<String> {
        Ok(self.server.id().context("pid")?.to_string())
    }

    async fn stop(mut self) {
        if let Ok(pid) = self.pid() {
            let _ = Command::new("kill").args(["-TERM", &pid]).status().await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.server.wait()).await;
    }
}

/// `VmRSS` and `VmHWM` of a process, in MiB.
fn resident_mib(pid: &str) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The server's memory after it has taken `--memory-sessions` sessions and served every page
/// of their list and the usage summary.
async fn memory(args: &Args, engine: &str, url: &str) -> anyhow::Result<String> {
    let serving = Serving::start(args, url).await?;
    let (base, token) = (serving.base.clone(), serving.token.clone());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let workers = args.clients.min(args.memory_sessions);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        let n = (args.memory_sessions - w).div_ceil(workers);
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                let v: Value = http
                    .post(format!("{base}/v1/sessions"))
                    .bearer_auth(&token)
                    .json(&json!({"repository": format!("bench/repo-{}", (w + i) % 20), "branch": "main", "provider": "local"}))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let id = v["session"]["id"].as_str().context("id")?.to_string();
                http.post(format!("{base}/v1/sessions/{id}/events"))
                    .bearer_auth(&token)
                    .json(&json!({"type": "started", "idempotency_key": "started"}))
                    .send()
                    .await?
                    .error_for_status()?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut cursor: Option<String> = None;
    let mut listed = 0;
    loop {
        let mut req = http
            .get(format!("{base}/v1/sessions"))
            .bearer_auth(&token)
            .query(&[("limit", "200")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c.as_str())]);
        }
        let v: Value = req.send().await?.error_for_status()?.json().await?;
        listed += v["sessions"].as_array().map_or(0, Vec::len);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    http.get(format!("{base}/v1/usage"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?;
    if listed != args.memory_sessions {
        bail!("listed {listed} sessions, created {}", args.memory_sessions);
    }
    let (now, peak) = resident_mib(&serving.pid()?);
    serving.stop().await;
    Ok(format!(
        "| {engine} | {listed} | {now:.1} MiB | {peak:.1} MiB |"
    ))
}

async fn bench(args: &Args, engine: &str, url: &str) -> anyhow::Result<Run> {
    let serving = Serving::start(args, url).await?;
    let (base, token) = (serving.base.clone(), serving.token.clone());
    let addr = base.trim_start_matches("http://").to_string();

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let mut sessions = Vec::new();
    for i in 0..args.clients {
        let v: Value = http
            .post(format!("{base}/v1/sessions"))
            .bearer_auth(&token)
            .json(&json!({"repository": format!("bench/repo-{}", i % 8), "branch": "main", "provider": "local"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        sessions.push(v["session"]["id"].as_str().context("id")?.to_string());
    }

    // A live consumer of the account stream, counting events per session.
    let mut req = format!("ws://{addr}/v1/events").into_client_request()?;
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let stop_ws = Arc::new(AtomicBool::new(false));
    let ws_task = {
        let stop = stop_ws.clone();
        tokio::spawn(async move {
            let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
            let mut error = None;
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                        if let Some(e) = v.get("error") {
                            error = Some(e.to_string());
                            break;
                        }
                        let sid = v["event"]["session_id"].as_str().unwrap_or("").to_string();
                        seen.entry(sid)
                            .or_default()
                            .push(v["event"]["seq"].as_i64().unwrap_or(-1));
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(_) => break,
                    Err(_) => {}
                }
            }
            (seen, error)
        })
    };

    let server_pid = serving.pid()?;
    let cpu_before = [
        cpu_seconds(&server_pid),
        postgres_cpu_seconds(),
        cpu_seconds("self"),
    ];
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sid in sessions.clone() {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut st = ClientStats::default();
            let url = format!("{base}/v1/sessions/{sid}/events");
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let body = json!({"type": "heartbeat", "idempotency_key": uuid::Uuid::new_v4().to_string()});
                let attempts = if n.is_multiple_of(10) { 2 } else { 1 };
                for attempt in 0..attempts {
                    let t0 = Instant::now();
                    let r = http.post(&url).bearer_auth(&token).json(&body).send().await;
                    let status = match r {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.bytes().await;
                            s
                        }
                        Err(_) => 0,
                    };
                    st.latencies_us.push(t0.elapsed().as_micros() as u64);
                    match (status, attempt) {
                        (201, 0) => st.stored += 1,
                        (200, 1) => st.retried_ok += 1,
                        _ => st.errors += 1,
                    }
                }
            }
            st
        }));
    }
    let mut all = ClientStats::default();
    for t in tasks {
        let st = t.await?;
        all.latencies_us.extend(st.latencies_us);
        all.stored += st.stored;
        all.retried_ok += st.retried_ok;
        all.errors += st.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = [
        cpu_seconds(&server_pid),
        postgres_cpu_seconds(),
        cpu_seconds("self"),
    ];
    let per_1k = |i: usize| (cpu_after[i] - cpu_before[i]) * 1e6 / all.stored.max(1) as f64;
    let cpu = [per_1k(0), per_1k(1), per_1k(2)];

    // Count check in the database: created events + acknowledged ones, per-session seq 1..=n.
    sqlx::any::install_default_drivers();
    let db_url = if engine == "sqlite" {
        format!("sqlite://{url}")
    } else {
        url.to_string()
    };
    let mut conn = sqlx::AnyConnection::connect(&db_url).await?;
    let rows = sqlx::query(
        "SELECT session_id, COUNT(*), MIN(seq), MAX(seq), COUNT(DISTINCT seq) FROM session_events GROUP BY session_id",
    )
    .fetch_all(&mut conn)
    .await?;
    let mut db_total = 0i64;
    let mut contiguous = true;
    let mut db_counts: HashMap<String, i64> = HashMap::new();
    for r in &rows {
        let (sid, n, lo, hi, distinct): (String, i64, i64, i64, i64) = (
            r.try_get(0)?,
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
        );
        db_total += n;
        contiguous &= lo == 1 && hi == n && distinct == n;
        db_counts.insert(sid, n);
    }
    let expected = all.stored as i64 + sessions.len() as i64;
    let db_ok = db_total == expected && contiguous;
    let db_check = format!(
        "{} ({} stored = {} acknowledged + {} created{})",
        if db_ok { "ok" } else { "MISMATCH" },
        db_total,
        all.stored,
        sessions.len(),
        if contiguous {
            ", seq contiguous"
        } else {
            ", seq GAPS"
        }
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_ws.store(true, Ordering::Relaxed);
    let (seen, ws_error) = ws_task.await?;
    let mut ws_total = 0usize;
    let mut ws_ok = ws_error.is_none();
    for sid in &sessions {
        let got = seen.get(sid).cloned().unwrap_or_default();
        ws_total += got.len();
        let want = (db_counts.get(sid).copied().unwrap_or(1) - 1) as usize; // minus `created`
        let in_order = got.windows(2).all(|w| w[1] == w[0] + 1);
        ws_ok &= got.len() == want && in_order;
    }
    let ws_check = match ws_error {
        Some(e) => format!("closed: {e}"),
        None => format!(
            "{} ({ws_total} received, each once, in order per session)",
            if ws_ok { "ok" } else { "MISMATCH" }
        ),
    };

    serving.stop().await;

    let mut lat = all.latencies_us;
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
        lat[i] as f64 / 1000.0
    };
    let stored_per_s = all.stored as f64 / elapsed;
    println!(
        "{engine}: {} events stored in {elapsed:.1}s = {stored_per_s:.0}/s (requests incl. retries: {}), p50 {:.2} ms, p99 {:.2} ms, errors {}; db: {db_check}; ws: {ws_check}",
        all.stored,
        lat.len(),
        pct(0.5),
        pct(0.99),
        all.errors
    );
    if !db_ok || !ws_ok || all.errors > 0 {
        bail!(
            "{engine}: events lost, duplicated or refused: db {db_check}; ws {ws_check}; errors {}",
            all.errors
        );
    }
    let row = format!(
        "| {engine} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} / {:.0} / {:.0} | {} | {} | {db_check} | {ws_check} |",
        args.clients,
        args.seconds,
        all.stored,
        stored_per_s,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        cpu[0],
        cpu[1],
        cpu[2],
        all.retried_ok,
        all.errors
    );
    Ok(Run {
        row,
        per_s: stored_per_s,
        p50: pct(0.5),
        p99: pct(0.99),
        cpu,
    })
}
