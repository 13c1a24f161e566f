//! Benchmark (not a test): does a crowd of slow-header clients ("slow loris") slow a normal
//! client down? Starts a real `rclaude-server` on SQLite, measures the latency of `GET /v1/me`
//! on a fresh connection (median and p99 of `--requests`), then opens `--loris` connections
//! that each send a partial request line and then one header byte per second, measures again
//! while they are open, and prints both with their ratio. `curl` timing the same request is the
//! outside baseline when it is installed.
//!
//! ```text
//! cargo bench -p rclaude-server --bench slow_clients -- [--loris 1000] [--requests 200]
//! ```
//! The server runs with its default header-read timeout (see `--header-read-timeout`); the
//! target is a ratio of at most 2×.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rclaude-server");

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let loris = arg("--loris", 1000);
    let requests = arg("--requests", 200).max(10);
    raise_fd_limit(loris as u64 + 256);

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let out = Command::new(BIN)
        .args(["--database-url", &url, "admin", "create-account", "bench"])
        .output()
        .await
        .expect("run rclaude-server admin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .expect("a token line")
        .trim()
        .to_string();

    let mut server = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start rclaude-server");
    let first = BufReader::new(server.stdout.take().unwrap())
        .lines()
        .next_line()
        .await
        .expect("server output")
        .expect("a listening line");
    let addr = first
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_start_matches("http://")
        .to_string();

    let quiet = latencies(&addr, &token, requests).await;
    let curl = curl_latencies(&addr, &token, requests.min(50));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut crowd = Vec::new();
    let mut opened = 0;
    for _ in 0..loris {
        let Ok(mut s) = TcpStream::connect(&addr).await else {
            continue;
        };
        if s.write_all(b"GET /v1/me HTTP/1.1\r\nX").await.is_ok() {
            opened += 1;
        }
        let stop = stop.clone();
        crowd.push(tokio::spawn(async move {
            // One byte a second, for as long as the server keeps the connection.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if s.write_all(b"-").await.is_err() {
                    return;
                }
            }
        }));
    }
    let crowded = latencies(&addr, &token, requests).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in crowd {
        c.abort();
    }
    let _ = server.kill().await;

    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    println!(
        "GET /v1/me on a fresh connection, {requests} requests; {opened} slow-header connections.\n"
    );
    println!("| client | p50 | p99 | p50 ÷ quiet |");
    println!("|---|---|---|---|");
    let row = |name: &str, s: &[Duration]| {
        println!(
            "| {name} | {} | {} | {:.2}× |",
            ms(pct(s, 50)),
            ms(pct(s, 99)),
            pct(s, 50).as_secs_f64() / pct(&quiet, 50).as_secs_f64()
        );
    };
    row("rclaude-server, quiet", &quiet);
    row(&format!("rclaude-server, {opened} slow clients"), &crowded);
    if let Some(c) = &curl {
        row("curl, quiet (outside baseline)", c);
    }
}

/// Latency of `GET /v1/me` on a fresh connection, `n` times in a row.
async fn latencies(addr: &str, token: &str, n: usize) -> Vec<Duration> {
    let req = format!(
        "GET /v1/me HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(req.as_bytes()).await.expect("send");
        let mut body = Vec::new();
        s.read_to_end(&mut body).await.expect("read");
        assert!(
            body.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        out.push(start.elapsed());
    }
    out.sort();
    out
}

/// The same request timed by curl (`time_total`), when curl is installed.
fn curl_latencies(addr: &str, token: &str, n: usize) -> Option<Vec<Duration>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let o = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{time_total}", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("http://{addr}/v1/me"))
            .output()
            .ok()?;
        let secs: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().ok()?;
        out.push(Duration::from_secs_f64(secs));
    }
    out.sort();
    Some(out)
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn raise_fd_limit(want: u64) {
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < want {
            l.rlim_cur = want.min(l.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}
