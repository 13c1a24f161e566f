//! Benchmark: traffic through `rclaude port --local` against the same traffic straight to the
//! sandbox's port on loopback, in the same run (local provider; the sandbox shares this
//! machine's network, so "direct" is the baseline the forwarder adds to).
//!
//! - HTTP request latency: `GET` of a small file from `python3 -m http.server` in the
//!   sandbox, a new connection per request (p50 and p99 of `--requests` requests);
//! - throughput: 1 GiB from a TCP source in the sandbox (median of `--runs` transfers).
//!
//! ```text
//! cargo bench --bench ports -- [--runs N] [--requests N]
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::arg;

const GIB: u64 = 1 << 30;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rclaude(repo: &Path, home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rclaude"));
    c.args(args)
        .current_dir(repo)
        .env("RCLAUDE_HOME", home)
        .env("CI", "true")
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@x")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@x");
    c
}

fn git(repo: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@x")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@x")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

fn get(port: u16) -> Duration {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"GET /small.txt HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(out.starts_with(b"HTTP/1.0 200"), "bad reply");
    t.elapsed()
}

fn drain(port: u16) -> Duration {
    let t = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert_eq!(total, GIB, "short transfer");
    t.elapsed()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let runs = arg("--runs", 5);
    let requests = arg("--requests", 300);
    let scratch = tempfile::tempdir().unwrap();
    let (repo, home) = (scratch.path().join("repo"), scratch.path().join("home"));
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(
        repo.join(".rclaude.toml"),
        "[sandbox]\nprovider = \"local\"\n",
    )
    .unwrap();
    std::fs::write(repo.join("small.txt"), "x".repeat(512)).unwrap();
    std::fs::write(
        repo.join("source.py"),
        "import socket, sys\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\nbuf = b'x' * (1 << 20)\n\
         while True:\n    c, _ = s.accept()\n    try:\n        for _ in range(1024): c.sendall(buf)\n    except OSError:\n        pass\n    c.close()\n",
    )
    .unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "bench"]);
    assert!(
        rclaude(&repo, &home, &["up", "--quiet"])
            .status()
            .unwrap()
            .success()
    );
    let (web, src) = (free_port(), free_port());
    let start = format!(
        "nohup python3 -m http.server {web} --bind 127.0.0.1 >/dev/null 2>&1 & \
         nohup python3 source.py {src} >/dev/null 2>&1 &"
    );
    assert!(
        rclaude(
            &repo,
            &home,
            &["exec", "--no-sync", "--", "sh", "-c", &start]
        )
        .status()
        .unwrap()
        .success()
    );
    wait_for(web);
    wait_for(src);
    let (l_web, l_src) = (free_port(), free_port());
    let mut fwd = Vec::new();
    for (p, l) in [(web, l_web), (src, l_src)] {
        fwd.push(
            rclaude(
                &repo,
                &home,
                &["port", &p.to_string(), "--local", &l.to_string()],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        );
        wait_for(l);
    }

    // Interleaved, so that load changes hit both alike.
    let (mut direct, mut via) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        get(web);
        get(l_web);
    }
    for _ in 0..requests {
        direct.push(get(web));
        via.push(get(l_web));
    }
    let (mut d_tp, mut v_tp) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        d_tp.push(drain(src));
        v_tp.push(drain(l_src));
    }
    for mut f in fwd {
        let _ = f.kill();
        let _ = f.wait();
    }
    let _ = rclaude(&repo, &home, &["down", "--yes", "--discard"]).status();

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let gbps = |d: Duration| GIB as f64 / d.as_secs_f64() / 1e9;
    let (d50, v50) = (pct(&mut direct, 0.5), pct(&mut via, 0.5));
    let (d99, v99) = (pct(&mut direct, 0.99), pct(&mut via, 0.99));
    let (dt, vt) = (pct(&mut d_tp, 0.5), pct(&mut v_tp, 0.5));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {} cores, load {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| figure | direct loopback | through `rclaude port` | difference |");
    println!("|---|---|---|---|");
    println!(
        "| HTTP GET p50 ({requests} requests) | {:.2} ms | {:.2} ms | +{:.2} ms |",
        ms(d50),
        ms(v50),
        ms(v50) - ms(d50)
    );
    println!(
        "| HTTP GET p99 | {:.2} ms | {:.2} ms | +{:.2} ms |",
        ms(d99),
        ms(v99),
        ms(v99) - ms(d99)
    );
    println!(
        "| 1 GiB transfer, median of {runs} | {:.2} GB/s | {:.2} GB/s | {:.2}× |",
        gbps(dt),
        gbps(vt),
        gbps(vt) / gbps(dt)
    );
}
