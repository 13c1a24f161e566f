//! What the benchmarks share: a small committed repository, medians, and the machine's load.

#![allow(dead_code)] // each bench uses part of it

pub mod history;

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

/// The first file named `name` under `dir` (depth first; symlinks not followed).
pub fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let kind = entry.file_type().ok()?;
        if kind.is_file() && entry.file_name() == name {
            return Some(path);
        }
        if kind.is_dir()
            && let Some(found) = find(&path, name)
        {
            return Some(found);
        }
    }
    None
}

/// The value of `--NAME N` on the command line, else `default`.
pub fn arg(name: &str, default: usize) -> usize {
    arg_value(name)
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// The value of `--NAME VALUE` on the command line, if given.
pub fn arg_value(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// `rclaude-server` beside `rclaude` (built in the same profile when missing).
pub fn server_bin(rclaude: &Path) -> PathBuf {
    let path = rclaude.with_file_name("rclaude-server");
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile = if rclaude.to_string_lossy().contains("/release/") {
            vec!["--release"]
        } else {
            vec![]
        };
        let ok = Command::new(cargo)
            .args(["build", "-p", "rclaude-server"])
            .args(profile)
            .status()
            .unwrap()
            .success();
        assert!(ok, "building rclaude-server failed");
    }
    path
}

/// The base URL a just-started `rclaude-server` prints on its first line.
pub fn server_url(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .unwrap();
    line.trim().rsplit(' ').next().unwrap().to_string()
}

/// A new account on the server's database `db`; returns its API token.
pub fn create_account(server_bin: &Path, db: &Path) -> String {
    let out = Command::new(server_bin)
        .args(["admin", "create-account", "bench", "--database-url"])
        .arg(db)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
}
