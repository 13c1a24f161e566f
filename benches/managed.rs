//! Benchmark: managed mode against direct mode on the local provider, in the same run.
//!
//! - `up` to first `exec`: `rclaude up` of a fresh repository followed by `rclaude exec -- true`,
//!   with the sandbox created by the rclaude server (managed) or by the CLI (direct, logged in
//!   to the same server and reporting to it);
//! - `exec` round trip: `rclaude exec -- true` on a running session (the server is not in the
//!   data path, so this should be the same).
//!
//! ```text
//! cargo bench --bench managed -- [--runs N]
//! ```
//! Starts a real `rclaude-server` (SQLite, built when missing) and prints a Markdown table of
//! medians and ratios (managed ÷ direct). Each `up` run uses a fresh repository and home.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{median, ms, server_bin};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let rclaude = PathBuf::from(env!("CARGO_BIN_EXE_rclaude"));
    let server_bin = server_bin(&rclaude);
    let scratch = tempfile::tempdir().expect("tempdir");
    let base = scratch.path();

    // The server: SQLite, local provider, its agents run by our binary.
    let db = base.join("server.db");
    let mut server = Command::new(&server_bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
        .arg(&db)
        .arg("--sandboxes-dir")
        .arg(base.join("server-sandboxes"))
        .arg("--agent-bin")
        .arg(&rclaude)
        .args(["--idle-pause", "off"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rclaude-server");
    let url = support::server_url(&mut server);
    let token = support::create_account(&server_bin, &db);

    let mut up = [Vec::new(), Vec::new()];
    let mut exec = [Vec::new(), Vec::new()];
    for i in 0..runs {
        // Alternate which mode goes first, so neither always gets the warmer machine.
        let order: [usize; 2] = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for mode in order {
            let dir = base.join(format!("run-{i}-{mode}"));
            let repo = make_repo(&dir);
            let home = dir.join("home");
            let rc = |args: &[&str]| {
                let mut c = Command::new(&rclaude);
                c.args(args)
                    .current_dir(&repo)
                    .env("RCLAUDE_HOME", &home)
                    .env("CI", "true");
                if mode == 0 {
                    c.env("RCLAUDE_DIRECT", "1");
                }
                let t = Instant::now();
                let out = c.output().expect("rclaude");
                assert!(
                    out.status.success(),
                    "rclaude {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                t.elapsed()
            };
            // Both modes logged in to the same server (direct mode then reports to it), so the
            // difference is who runs the sandbox.
            {
                let out = Command::new(&rclaude)
                    .args(["login", "--server", &url])
                    .current_dir(&repo)
                    .env("RCLAUDE_HOME", &home)
                    .env("RCLAUDE_TOKEN", &token)
                    .output()
                    .unwrap();
                assert!(out.status.success());
            }
            up[mode].push(rc(&["up", "--quiet"]) + rc(&["exec", "--", "true"]));
            for _ in 0..3 {
                exec[mode].push(rc(&["exec", "--", "true"]));
            }
            rc(&["down", "--yes", "--discard"]);
        }
    }
    let _ = server.kill();
    let _ = server.wait();

    let row = |what: &str, d: &mut Vec<Duration>, m: &mut Vec<Duration>| {
        let (d, m) = (median(d), median(m));
        println!(
            "| {what} | {:.1} ms | {:.1} ms | {:.2}× |",
            ms(d),
            ms(m),
            m.as_secs_f64() / d.as_secs_f64()
        );
    };
    println!(
        "\nmanaged vs direct, local provider, {runs} runs ({} exec samples each), medians\n",
        exec[0].len()
    );
    println!("| operation | direct | managed | managed ÷ direct |");
    println!("|---|---|---|---|");
    let [up_d, up_m] = &mut up;
    row("`up` + first `exec`", up_d, up_m);
    let [ex_d, ex_m] = &mut exec;
    row("`exec -- true` round trip", ex_d, ex_m);
}

fn make_repo(dir: &Path) -> PathBuf {
    let repo = support::small_tree(dir, "[sandbox]\nprovider = \"local\"\n");
    support::commit_all(&repo);
    let git = |args: &[&str]| support::git(&repo, args);
    git(&[
        "remote",
        "add",
        "origin",
        &format!(
            "https://example.com/bench/{}.git",
            dir.file_name().unwrap().to_string_lossy()
        ),
    ]);
    repo
}
