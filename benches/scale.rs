//! Benchmark: does `rclaude sync` cost grow with what changed or with the tree? Generated trees
//! of 1k, 10k and 100k files (100 small files per directory, one commit), each synced once with
//! `rclaude up` into a local sandbox; then, interleaved run by run, `rclaude sync` with nothing
//! changed and after a one-file edit (uncommitted: sent as a snapshot), against `git status` on
//! the same tree and `rsync -a --delete` of the work tree into a mirror (nothing changed, and
//! the same one-file edit).
//!
//! ```text
//! cargo bench --bench scale -- [--sizes 1000,10000,100000] [--runs 5]
//! ```
//! Prints a Markdown table of medians and ratios.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{load_average, median, ms};

fn main() {
    let runs = support::arg("--runs", 5).max(1);
    let sizes: Vec<usize> = support::arg_value("--sizes")
        .unwrap_or_else(|| "1000,10000,100000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("--sizes: comma-separated file counts")
        })
        .collect();
    let rclaude = PathBuf::from(env!("CARGO_BIN_EXE_rclaude"));

    let mut rows = Vec::new();
    for &files in &sizes {
        let scratch = tempfile::tempdir().expect("tempdir");
        let repo = scratch.path().join("repo");
        let mirror = scratch.path().join("mirror");
        let home = scratch.path().join("home");
        generate(&repo, files);
        let rc = |args: &[&str]| {
            let out = Command::new(&rclaude)
                .args(args)
                .current_dir(&repo)
                .env("RCLAUDE_HOME", &home)
                .env("CI", "true")
                .stdout(Stdio::null())
                .output()
                .expect("rclaude");
            assert!(
                out.status.success(),
                "rclaude {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let rsync = || {
            let ok = Command::new("rsync")
                .args(["-a", "--delete", "--exclude=.git"])
                .arg(format!("{}/", repo.display()))
                .arg(&mirror)
                .status()
                .expect("rsync (install it for the baseline)")
                .success();
            assert!(ok, "rsync");
        };
        let git_status = || {
            let out = Command::new("git")
                .args(["status", "--porcelain"])
                .current_dir(&repo)
                .output()
                .expect("git");
            assert!(out.status.success());
        };
        let first = time(|| rc(&["up", "--quiet"]));
        rsync();
        git_status();
        let edited = repo.join("d0/f0.txt");
        let mut t: [Vec<Duration>; 6] = Default::default();
        for run in 0..runs {
            t[0].push(time(|| rc(&["sync", "--quiet"])));
            t[1].push(time(git_status));
            t[2].push(time(rsync));
            std::fs::write(&edited, format!("edit {run}\n")).unwrap();
            t[3].push(time(|| rc(&["sync", "--quiet"])));
            t[4].push(time(rsync));
            // The same edit seen by git status (the index needs refreshing for one file).
            t[5].push(time(git_status));
        }
        rc(&["down", "--yes", "--discard"]);
        let m: Vec<Duration> = t.iter_mut().map(|v| median(v)).collect();
        rows.push(format!(
            "| {files} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.2}× | {:.2}× | {:.0} ms | {:.0} ms | {:.2}× | {:.0} s |",
            ms(m[0]),
            ms(m[1]),
            ms(m[2]),
            ms(m[3]),
            ratio(m[0], m[1]),
            ratio(m[0], m[2]),
            ms(m[4]),
            ms(m[5]),
            ratio(m[3], m[4]),
            first.as_secs_f64()
        ));
    }
    println!(
        "\nsync cost by tree size, local provider, {runs} runs each, medians; {} CPUs, load average {}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!(
        "| files | sync, nothing changed | `git status` | `rsync -a`, nothing changed | sync, one file edited | nothing: ÷ git status | nothing: ÷ rsync | `rsync -a`, one file | `git status`, one file | one file: ÷ rsync | first `up` |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

/// `files` small files in directories of 100, committed.
fn generate(repo: &Path, files: usize) {
    std::fs::create_dir_all(repo).unwrap();
    for i in 0..files {
        let dir = repo.join(format!("d{}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        std::fs::write(dir.join(format!("f{}.txt", i % 100)), format!("file {i}\n")).unwrap();
    }
    std::fs::write(
        repo.join(".rclaude.toml"),
        "[sandbox]\nprovider = \"local\"\n",
    )
    .unwrap();
    support::commit_all(repo);
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
