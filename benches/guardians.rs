//! Benchmark: what the server's guardians (idle auto-pause, the reconciler) cost with 1,000
//! idle managed sessions, against the same server with none, in the same run.
//!
//! The server runs as the hosted service would: it holds the E2B account (here the local E2B
//! stand-in, `tests/support/e2b_server.rs`, control plane only: its sandboxes run no agent,
//! so a thousand of them cost this machine nothing) and SQLite, or PostgreSQL with `--pg URL`.
//! 1,000 managed sessions are created through `POST /v1/sessions`, then left alone: every
//! reconciler round asks E2B for each sandbox's state and records that it was seen alive, and
//! the idle job looks for sessions to pause. The server process's CPU time (`/proc/PID/stat`,
//! user + system) over a window, divided by the window, is the figure.
//!
//! ```text
//! cargo bench --bench guardians -- [--sessions N] [--window-secs S] [--runs R] [--reconcile-secs S] [--pg URL]
//! ```
//! Defaults: 1,000 sessions, 30 s windows, 3 runs (medians), the reconciler every 10 s (six
//! times the deployment default of a minute, so each window holds three rounds).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{arg, load_average, server_bin};

#[path = "../tests/support/e2b_server.rs"]
mod e2b_server;

/// The server's CPU time so far (user + system), from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// Share of one core the process used over `window`, measured `runs` times; the median.
fn cpu_share(pid: u32, window: Duration, runs: usize) -> f64 {
    let mut shares: Vec<f64> = (0..runs)
        .map(|_| {
            let (c0, t0) = (cpu_time(pid), Instant::now());
            std::thread::sleep(window);
            let used = cpu_time(pid) - c0;
            used.as_secs_f64() / t0.elapsed().as_secs_f64()
        })
        .collect();
    shares.sort_by(|a, b| a.partial_cmp(b).unwrap());
    shares[shares.len() / 2]
}

fn main() {
    let sessions = arg("--sessions", 1000);
    let window = Duration::from_secs(arg("--window-secs", 30) as u64);
    let runs = arg("--runs", 3);
    let reconcile = arg("--reconcile-secs", 10);
    let args: Vec<String> = std::env::args().collect();
    let pg = args
        .iter()
        .position(|a| a == "--pg")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let rclaude = PathBuf::from(env!("CARGO_BIN_EXE_rclaude"));
    let server_bin = server_bin(&rclaude);
    let scratch = tempfile::tempdir().expect("tempdir");

    let fake = e2b_server::FakeE2b::start_with(e2b_server::FakeOptions {
        agents: false,
        ..e2b_server::FakeOptions::default()
    });
    let (db, engine) = match &pg {
        Some(url) => (url.clone(), "PostgreSQL"),
        None => (
            scratch.path().join("server.db").display().to_string(),
            "SQLite",
        ),
    };
    let mut server = Command::new(&server_bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db])
        .args(["--sandbox-provider", "e2b"])
        .args(["--reconcile-every", &format!("{reconcile}s")])
        .envs(fake.env())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rclaude-server");
    let url = support::server_url(&mut server);
    let token = support::create_account(&server_bin, Path::new(&db));
    let pid = server.id();

    // Settle, then the guardians with nothing to guard.
    std::thread::sleep(Duration::from_secs(2));
    let empty = cpu_share(pid, window, runs);

    let started = Instant::now();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
        let mut tasks = Vec::new();
        for i in 0..sessions {
            let (http, url, token, sem) = (http.clone(), url.clone(), token.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await.unwrap();
                let r = http
                    .post(format!("{url}/v1/sessions"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({
                        "managed": true,
                        "repository": format!("github.com/bench/app{i}"),
                    }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let created = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let state_reads = || {
        fake.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.starts_with("/sandboxes/"))
            .count()
    };
    let reads_before = state_reads();
    let full = cpu_share(pid, window, runs);
    let visits = state_reads() - reads_before;
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into());

    println!(
        "guardians, {engine}, reconciler every {reconcile} s, idle check every 30 s; \
         {runs} windows of {} s, medians; load average {}",
        window.as_secs(),
        load_average()
    );
    println!();
    println!(
        "| managed sessions running, idle | server CPU (share of one core) | E2B state reads in the windows |"
    );
    println!("|---|---|---|");
    println!("| 0 | {:.2} % | — |", empty * 100.0);
    println!(
        "| {sessions} | {:.2} % | {visits} ({:.0} per round) |",
        full * 100.0,
        visits as f64 / (runs as f64 * window.as_secs_f64() / reconcile as f64)
    );
    println!();
    println!(
        "creating the {sessions} sessions took {:.1} s; server RSS afterwards {rss_kib} KiB",
        created.as_secs_f64()
    );
    let _ = server.kill();
    let _ = server.wait();
}
