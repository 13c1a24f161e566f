//! Benchmark: the first sync of a whole history into a new local-provider sandbox (no reachable
//! upstream: every object goes in the bundle), against git's own ways of copying a history, all
//! measured in the same run and interleaved run by run:
//!
//! - `rclaude up --no-setup` of the repository (a new sandbox: created, then synced), and of a
//!   one-file, one-commit repository (the cost of creating the sandbox and starting its agent,
//!   with a sync of almost nothing); their difference is the first sync without the creation;
//! - `git bundle create --all` + `git clone` from that bundle;
//! - `git bundle create HEAD` + `git fetch` of it into an empty repository + checkout (the
//!   least the sandbox needs; the baseline of the `sync` bench's first-sync row);
//! - the peak resident memory of the `rclaude` process itself (`VmHWM`, sampled every 10 ms
//!   while it runs), and of the largest process it waited for (`wait4`'s `ru_maxrss`: the
//!   `git pack-objects` it runs for large histories).
//!
//! ```text
//! cargo bench --bench first_sync -- [--repo PATH] [--runs N]
//! ```
//! `--repo` (or `RCLAUDE_BENCH_REPO`) names any git repository (bare or not; e.g. git.git): its
//! `HEAD` is cloned into a work tree with no remote. Without it a repository is generated from
//! the crate sources in `~/.cargo/registry`. Prints a Markdown table of medians and ratios.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::history::{count, git, git_out, run, source};
use support::{load_average, median, ms};

fn main() {
    let runs = support::arg("--runs", 5);
    let rclaude = PathBuf::from(env!("CARGO_BIN_EXE_rclaude"));
    let scratch = tempfile::tempdir().expect("tempdir");
    let base = scratch.path();

    let src = base.join("src");
    let described = source(&src);
    // No upstream to fetch from: the whole history goes in the bundle.
    if !git_out(&src, &["remote"]).is_empty() {
        git(&src, &["remote", "remove", "origin"]);
    }
    let config = "[sandbox]\nprovider = \"local\"\n";
    std::fs::write(src.join(".rclaude.toml"), config).unwrap();
    let files = count(&src, &["ls-files"]);
    let commits = count(&src, &["rev-list", "HEAD"]);
    let objects = git_out(&src, &["count-objects", "-vH"]);
    eprintln!("repository: {described}: {files} files, {commits} commits\n{objects}");

    let tiny = base.join("tiny");
    std::fs::create_dir_all(&tiny).unwrap();
    std::fs::write(tiny.join("README"), "tiny\n").unwrap();
    std::fs::write(tiny.join(".rclaude.toml"), config).unwrap();
    git(&tiny, &["init", "-q", "-b", "main"]);
    git(&tiny, &["add", "-A"]);
    git(&tiny, &["commit", "-qm", "tiny"]);

    let mut up = Vec::new();
    let mut create = Vec::new();
    let mut clone = Vec::new();
    let mut fetch = Vec::new();
    let mut cli_rss = Vec::new();
    let mut child_rss = Vec::new();
    for i in 0..runs {
        let (t, _) = rclaude_up(&rclaude, &tiny, &base.join(format!("home-tiny{i}")));
        create.push(t);
        eprintln!("run {i}: up of the one-file repository {:.0} ms", ms(t));

        let (t, rss) = rclaude_up(&rclaude, &src, &base.join(format!("home{i}")));
        up.push(t);
        cli_rss.push(rss.cli_kib);
        child_rss.push(rss.children_kib);
        eprintln!(
            "run {i}: up {:.0} ms, rclaude peak {} MiB, largest child {} MiB",
            ms(t),
            rss.cli_kib / 1024,
            rss.children_kib / 1024
        );

        let t = bundle_and_clone(&src, &base.join(format!("clone{i}")));
        clone.push(t);
        let t = bundle_and_fetch(&src, &base.join(format!("fetch{i}")));
        fetch.push(t);
        eprintln!(
            "run {i}: bundle --all + clone {:.0} ms, bundle + fetch + checkout {:.0} ms",
            ms(clone[i]),
            ms(fetch[i])
        );
    }
    let up = median(&mut up);
    let create = median(&mut create);
    let clone = median(&mut clone);
    let fetch = median(&mut fetch);
    let synced = up.saturating_sub(create);
    cli_rss.sort();
    child_rss.sort();

    println!(
        "Repository: {described} — {files} files, {commits} commits, no upstream; median of \
         {runs} runs; load average {}.\n",
        load_average()
    );
    println!(
        "| step | median | ÷ bundle --all + clone | ÷ bundle + fetch + checkout |\n|---|---|---|---|"
    );
    let row = |name: &str, d: Duration| {
        println!(
            "| {name} | {:.0} ms | {:.2}× | {:.2}× |",
            ms(d),
            d.as_secs_f64() / clone.as_secs_f64(),
            d.as_secs_f64() / fetch.as_secs_f64()
        )
    };
    row(
        "`rclaude up` (creates the sandbox, then the first sync)",
        up,
    );
    row(
        "`rclaude up` of a one-file repository (creating the sandbox)",
        create,
    );
    row("first sync without the creation (the difference)", synced);
    row("`git bundle create --all` + `git clone` of it", clone);
    row("`git bundle create HEAD` + `git fetch` + checkout", fetch);
    println!(
        "\nPeak resident memory during `rclaude up` (largest of {runs} runs): the rclaude process \
         {} MiB; the largest process it waited for {} MiB.",
        cli_rss.last().unwrap() / 1024,
        child_rss.last().unwrap() / 1024
    );
}

/// Peak resident memory of a finished `rclaude` process, in KiB.
struct Rss {
    /// The process itself (its last `VmHWM` sample).
    cli_kib: u64,
    /// The largest process it waited for, itself included (`wait4`'s `ru_maxrss`).
    children_kib: u64,
}

/// Times `rclaude up --no-setup` in `repo` with a fresh `RCLAUDE_HOME`, then destroys the sandbox.
#[allow(clippy::zombie_processes)] // reaped by `wait4` below, which also gives its `rusage`
fn rclaude_up(rclaude: &Path, repo: &Path, home: &Path) -> (Duration, Rss) {
    let t = Instant::now();
    let child = Command::new(rclaude)
        .args(["up", "--no-setup", "--quiet"])
        .current_dir(repo)
        .env("RCLAUDE_HOME", home)
        .env("CI", "true")
        .spawn()
        .expect("rclaude");
    let pid = child.id() as libc::pid_t;
    let status_path = format!("/proc/{pid}/status");
    let mut cli_kib = 0;
    let (status, usage) = loop {
        if let Some(kib) = std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|s| vm_hwm(&s))
        {
            cli_kib = cli_kib.max(kib);
        }
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 on our own child, without blocking.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break (status, usage);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = t.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "rclaude up failed in {}",
        repo.display()
    );
    let down = Command::new(rclaude)
        .args(["down", "--yes", "--discard", "--quiet"])
        .current_dir(repo)
        .env("RCLAUDE_HOME", home)
        .env("CI", "true")
        .status()
        .expect("rclaude down");
    assert!(down.success(), "rclaude down failed in {}", repo.display());
    let rss = Rss {
        cli_kib,
        children_kib: usage.ru_maxrss as u64,
    };
    (elapsed, rss)
}

/// `VmHWM` of a `/proc/PID/status` text, in KiB.
fn vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `git bundle create --all`, then `git clone` from it (with its checkout) into `dst`.
fn bundle_and_clone(src: &Path, dst: &Path) -> Duration {
    let bundle = dst.with_extension("bundle");
    let t = Instant::now();
    git(
        src,
        &["bundle", "create", "-q", bundle.to_str().unwrap(), "--all"],
    );
    run(Command::new("git")
        .args(["clone", "-q"])
        .arg(&bundle)
        .arg(dst));
    let d = t.elapsed();
    remove(&[&bundle, dst]);
    d
}

/// `git bundle create HEAD`, then `git fetch` of it into a new repository and a checkout.
fn bundle_and_fetch(src: &Path, dst: &Path) -> Duration {
    let bundle = dst.with_extension("bundle");
    let t = Instant::now();
    git(
        src,
        &["bundle", "create", "-q", bundle.to_str().unwrap(), "HEAD"],
    );
    run(Command::new("git").args(["init", "-q"]).arg(dst));
    git(
        dst,
        &[
            "fetch",
            "-q",
            bundle.to_str().unwrap(),
            "HEAD:refs/heads/bench",
        ],
    );
    git(dst, &["checkout", "-q", "bench"]);
    let d = t.elapsed();
    remove(&[&bundle, dst]);
    d
}

fn remove(paths: &[&Path]) {
    for p in paths {
        let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
    }
}
