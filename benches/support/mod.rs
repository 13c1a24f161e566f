//! What the benchmarks share: a small committed repository, medians, and the machine's load.

#![allow(dead_code)] // each bench uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `git init -b main`, add everything, commit, with a fixed identity and no user config.
pub fn commit_all(repo: &Path) {
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &["commit", "-qm", "init"],
    ] {
        git(repo, args);
    }
}

/// Runs `git ARGS` in `repo` with a fixed identity and no user config; panics on failure.
pub fn git(repo: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@example.com")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// `dir/repo`: 20 small files under `src/` and `config` as its `.rclaude.toml`, not committed.
pub fn small_tree(dir: &Path, config: &str) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    for i in 0..20 {
        std::fs::write(repo.join(format!("src/f{i}.txt")), format!("file {i}\n")).unwrap();
    }
    std::fs::write(repo.join(".rclaude.toml"), config).unwrap();
    repo
}

pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The 1-minute load average, for the table's header.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
