//! Benchmark: working from the upstream, against `git clone` of the same upstream in the same
//! run. The upstream is a real git smart-HTTP server on this machine (`git http-backend`,
//! tests/support/git_http.rs) serving one branch of a large repository.
//!
//! - `start` to first `exec`: `rclaude start URL` then `rclaude exec --session ID -- true` (the
//!   sandbox clones the repository itself), against `git clone URL`;
//! - origin-aware first `up`: a local clone with one local commit and a few uncommitted and
//!   untracked files, `rclaude up` into a new sandbox (which fetches the history from the
//!   upstream, then gets a bundle of the rest), against `git clone URL`; also the same `up` with
//!   `[git] fetch_upstream = false` (the whole history in the bundle), for scale;
//! - `pr`: `rclaude pr` after a new sandbox commit (push to the upstream; no pull-request API).
//!
//! ```text
//! RCLAUDE_BENCH_REPO=/path/to/git.git cargo bench --bench upstream -- [--runs N] [--branch B]
//! ```
//! `RCLAUDE_BENCH_REPO` is any git repository (bare or not); its branch (default `master`) is
//! copied into the served upstream once. Prints a Markdown table of medians and ratios.

#[path = "../tests/support/git_http.rs"]
mod git_http;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The upstream's push token (public repository: reads need none).
const TOKEN: &str = "bench-push-token";

fn main() {
    let runs = support::arg("--runs", 3);
    let branch = support::arg_value("--branch").unwrap_or_else(|| "master".into());
    let Ok(source) = std::env::var("RCLAUDE_BENCH_REPO") else {
        eprintln!(
            "set RCLAUDE_BENCH_REPO to a git repository to serve (e.g. a clone of git.git); \
             its branch {branch} becomes the upstream"
        );
        return;
    };
    let rclaude = PathBuf::from(env!("CARGO_BIN_EXE_rclaude"));
    let scratch = tempfile::tempdir_in(std::env::var("RCLAUDE_BENCH_DIR").unwrap_or("/tmp".into()))
        .expect("tempdir");
    let base = scratch.path();

    let git = git_http::GitHttp::start(&base.join("served"));
    let bare = git.create_repo("bench", "repo", false);
    git.add_token(TOKEN, true);
    run(Command::new("git").args(["--git-dir"]).arg(&bare).args([
        "fetch",
        "-q",
        "--no-tags",
        &source,
        &format!("+refs/heads/{branch}:refs/heads/main"),
    ]));
    run(Command::new("git")
        .args(["--git-dir"])
        .arg(&bare)
        .args(["repack", "-a", "-d", "-q"]));
    let url = git.repo_url("bench", "repo");
    let commits = out(Command::new("git")
        .args(["--git-dir"])
        .arg(&bare)
        .args(["rev-list", "--count", "main"]));
    let files = out(Command::new("git").args(["--git-dir"]).arg(&bare).args([
        "ls-tree",
        "-r",
        "--name-only",
        "main",
    ]))
    .lines()
    .count();
    eprintln!(
        "upstream: {url} ({} commits, {files} files)",
        commits.trim()
    );

    // One local clone for the origin-aware `up`, with local work on top.
    let local = base.join("local");
    run(Command::new("git").args(["clone", "-q", &url]).arg(&local));
    std::fs::write(local.join("rclaude-bench-local.txt"), "local commit\n").unwrap();
    git_in(&local, &["add", "rclaude-bench-local.txt"]);
    git_in(
        &local,
        &[
            "-c",
            "user.name=Bench",
            "-c",
            "user.email=bench@example.com",
            "commit",
            "-qm",
            "local work",
        ],
    );
    std::fs::write(local.join("README.md"), "edited, uncommitted\n").unwrap();
    for i in 0..3 {
        std::fs::write(local.join(format!("untracked-{i}.txt")), "new\n").unwrap();
    }
    std::fs::write(
        local.join(".rclaude.toml"),
        "[sandbox]\nprovider = \"local\"\n",
    )
    .unwrap();

    let mut clone_t = Vec::new();
    let mut start_t = Vec::new();
    let mut up_t = Vec::new();
    let mut up_full_t = Vec::new();
    let mut pr_t = Vec::new();
    for i in 0..runs {
        let dir = base.join(format!("run-{i}"));
        std::fs::create_dir_all(&dir).unwrap();

        let t = Instant::now();
        run(Command::new("git")
            .args(["clone", "-q", &url])
            .arg(dir.join("clone")));
        clone_t.push(t.elapsed());
        let _ = std::fs::remove_dir_all(dir.join("clone"));

        // start → first exec
        let home = dir.join("home-start");
        let rc = |args: &[&str], cwd: &Path| {
            let mut c = Command::new(&rclaude);
            c.args(args)
                .current_dir(cwd)
                .env("RCLAUDE_HOME", &home)
                .env("CI", "true")
                .env("GITHUB_TOKEN", TOKEN)
                .env_remove("RCLAUDE_SERVER")
                .env_remove("RCLAUDE_TOKEN")
                .env_remove("GITHUB_API_URL");
            c
        };
        let t = Instant::now();
        let id = out(&mut rc(&["start", "--quiet", &url], &dir));
        let id = id.trim().to_string();
        run(&mut rc(&["exec", "--session", &id, "--", "true"], &dir));
        start_t.push(t.elapsed());

        // pr: a sandbox commit, pushed to the upstream.
        run(&mut rc(
            &[
                "exec",
                "--session",
                &id,
                "--",
                "sh",
                "-c",
                "echo bench > rclaude-bench-pr.txt && git add rclaude-bench-pr.txt && \
                 git -c user.name=Bench -c user.email=b@example.com commit -qm bench",
            ],
            &dir,
        ));
        let t = Instant::now();
        run(&mut rc(&["pr", "--quiet", "--session", &id], &dir));
        pr_t.push(t.elapsed());
        run(&mut rc(
            &["down", "--yes", "--discard", "--session", &id],
            &dir,
        ));

        // origin-aware `up` and the full-bundle `up`, each into a new sandbox.
        for (fetch, times) in [(true, &mut up_t), (false, &mut up_full_t)] {
            let home = dir.join(format!("home-up-{fetch}"));
            let up = |args: &[&str]| {
                let mut c = Command::new(&rclaude);
                c.args(args)
                    .current_dir(&local)
                    .env("RCLAUDE_HOME", &home)
                    .env("CI", "true")
                    .env_remove("RCLAUDE_SERVER")
                    .env_remove("RCLAUDE_TOKEN");
                c
            };
            let config = if fetch {
                "[sandbox]\nprovider = \"local\"\n"
            } else {
                "[sandbox]\nprovider = \"local\"\n[git]\nfetch_upstream = false\n"
            };
            std::fs::write(local.join(".rclaude.toml"), config).unwrap();
            let t = Instant::now();
            run(&mut up(&["up", "--quiet"]));
            run(&mut up(&["exec", "--no-sync", "--", "true"]));
            times.push(t.elapsed());
            run(&mut up(&["down", "--yes", "--discard"]));
        }
        let _ = std::fs::remove_dir_all(&dir);
        eprintln!("run {} of {runs} done", i + 1);
    }

    let (c, s, u, f, p) = (
        median(&clone_t),
        median(&start_t),
        median(&up_t),
        median(&up_full_t),
        median(&pr_t),
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nupstream: {} commits, {files} files, served over HTTP on this machine; {runs} runs; load {}\n",
        commits.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("| what | median | vs `git clone` |");
    println!("|---|---|---|");
    println!("| `git clone URL` | {} | 1.00× |", secs(c));
    println!(
        "| `rclaude start URL` + first `exec` | {} | {:.2}× |",
        secs(s),
        ratio(s, c)
    );
    println!(
        "| origin-aware first `up` + `exec` (1 local commit, 4 local files) | {} | {:.2}× |",
        secs(u),
        ratio(u, c)
    );
    println!(
        "| the same `up` with `fetch_upstream = false` (whole history in the bundle) | {} | {:.2}× |",
        secs(f),
        ratio(f, c)
    );
    println!("| `rclaude pr` (push of one new commit) | {} | |", secs(p));
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn git_in(dir: &Path, args: &[&str]) {
    run(Command::new("git").args(args).current_dir(dir));
}

fn run(c: &mut Command) {
    let o = c.output().expect("spawn");
    assert!(
        o.status.success(),
        "{c:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn out(c: &mut Command) -> String {
    let o = c.output().expect("spawn");
    assert!(
        o.status.success(),
        "{c:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}
