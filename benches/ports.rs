//! Benchmark: traffic through `rclaude port --local` against the same traffic straight to the
//! sandbox's port, in the same run.
//!
//! - local provider (default): the sandbox shares this machine's network, so "direct" is its
//!   port on loopback, the baseline the TCP forwarder adds to;
//! - `--provider e2b`: the E2B stand-in (`tests/support/e2b_server.rs`) with a private sandbox;
//!   "direct" is a request to the edge carrying the traffic token itself, so the difference is
//!   what `rclaude port`'s HTTP proxy adds (the edge is the same in both).
//!
//! Figures: HTTP request latency (`GET` of a small file from `python3 -m http.server` in the
//! sandbox, a new connection per request, p50 and p99 of `--requests` requests) and throughput
//! (1 GiB from a source in the sandbox, median of `--runs` transfers; over HTTP on E2B).
//!
//! ```text
//! cargo bench --bench ports -- [--runs N] [--requests N] [--provider e2b]
//! ```

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::arg;

#[path = "../tests/support/e2b_server.rs"]
mod e2b_server;

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

/// A target: a local port, and the request head's extra lines (the E2B edge's routing and
/// token headers; empty for a plain port).
#[derive(Clone)]
struct Target {
    port: u16,
    headers: String,
}

fn get(t: &Target) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", t.port)).unwrap();
    s.set_nodelay(true).unwrap();
    write!(s, "GET /small.txt HTTP/1.0\r\nHost: x\r\n{}\r\n", t.headers).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(out.starts_with(b"HTTP/1.0 200"), "bad reply");
    start.elapsed()
}

/// Read 1 GiB from the source: raw TCP, or (`http`) the body of one GET.
fn drain(t: &Target, http: bool) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", t.port)).unwrap();
    if http {
        write!(
            s,
            "GET /gib HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n",
            t.headers
        )
        .unwrap();
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut head: Option<Vec<u8>> = http.then(Vec::new);
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        match &mut head {
            Some(h) => {
                h.extend_from_slice(&buf[..n]);
                if let Some(end) = h.windows(4).position(|w| w == b"\r\n\r\n") {
                    assert!(h.starts_with(b"HTTP/1.1 200"), "bad reply");
                    total += (h.len() - end - 4) as u64;
                    head = None;
                }
            }
            None => total += n as u64,
        }
    }
    assert_eq!(total, GIB, "short transfer");
    start.elapsed()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let runs = arg("--runs", 5);
    let requests = arg("--requests", 300);
    let e2b = std::env::args().any(|a| a == "e2b");
    let scratch = tempfile::tempdir().unwrap();
    let (repo, home) = (scratch.path().join("repo"), scratch.path().join("home"));
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let (web, src) = (free_port(), free_port());
    // E2B: the stand-in, its sandboxes' files under `vm`; a private sandbox ([ports] without
    // `public = true`).
    let vm = scratch.path().join("vm");
    std::fs::create_dir_all(&vm).unwrap();
    let fake = e2b.then(|| {
        e2b_server::FakeE2b::start_with(e2b_server::FakeOptions {
            shared_root: Some(vm.canonicalize().unwrap()),
            ..e2b_server::FakeOptions::default()
        })
    });
    let config = match &fake {
        None => "[sandbox]\nprovider = \"local\"\n".to_string(),
        Some(_) => format!(
            "[sandbox]\nprovider = \"e2b\"\nimage = \"base\"\nworkdir = \"{}/home/user/repo\"\n[ports]\n{web} = \"web\"\n{src} = \"source\"\n",
            vm.canonicalize().unwrap().display()
        ),
    };
    let envs: Vec<(&'static str, String)> = fake.as_ref().map(|f| f.env()).unwrap_or_default();
    let rclaude = |repo: &Path, home: &Path, args: &[&str]| {
        let mut c = rclaude(repo, home, args);
        c.envs(envs.iter().cloned());
        c
    };
    std::fs::write(repo.join(".rclaude.toml"), config).unwrap();
    std::fs::write(repo.join("small.txt"), "x".repeat(512)).unwrap();
    std::fs::write(
        repo.join("source.py"),
        "import socket, sys\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\nbuf = b'x' * (1 << 20)\n\
         http = len(sys.argv) > 2\n\
         while True:\n    c, _ = s.accept()\n    try:\n        if http:\n            c.recv(65536); c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n' % (1 << 30))\n        for _ in range(1024): c.sendall(buf)\n    except OSError:\n        pass\n    c.close()\n",
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
    let start = format!(
        "nohup python3 -m http.server {web} --bind 127.0.0.1 >/dev/null 2>&1 & \
         nohup python3 source.py {src} {} >/dev/null 2>&1 &",
        if e2b { "http" } else { "" }
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

    // Direct: the port itself (local), or the edge with the headers the proxy would add (E2B).
    let direct_to = |port: u16| match &fake {
        None => Target {
            port,
            headers: String::new(),
        },
        Some(f) => {
            let sbx = &f.sandboxes()[0];
            Target {
                port: f.addr.port(),
                headers: format!(
                    "e2b-sandbox-id: {}\r\ne2b-sandbox-port: {port}\r\ne2b-traffic-access-token: {}\r\n",
                    sbx.id,
                    sbx.traffic_token.clone().expect("a private sandbox")
                ),
            }
        }
    };
    let plain = |port: u16| Target {
        port,
        headers: String::new(),
    };
    let (d_web, v_web) = (direct_to(web), plain(l_web));
    let (d_src, v_src) = (direct_to(src), plain(l_src));
    // Interleaved, so that load changes hit both alike.
    let (mut direct, mut via) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        get(&d_web);
        get(&v_web);
    }
    for _ in 0..requests {
        direct.push(get(&d_web));
        via.push(get(&v_web));
    }
    let (mut d_tp, mut v_tp) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        d_tp.push(drain(&d_src, e2b));
        v_tp.push(drain(&v_src, e2b));
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
    let direct_name = if e2b {
        "direct to the edge (token sent by hand)"
    } else {
        "direct loopback"
    };
    println!("provider: {}", if e2b { "e2b (stand-in)" } else { "local" });
    println!("| figure | {direct_name} | through `rclaude port` | difference |");
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
