//! Benchmark: `rclaude up`/`sync` (git-bundle sync into a local-provider sandbox) against
//! `git bundle create` + `git fetch` + checkout, and `rsync -a`, on one repository: first sync,
//! a sync with nothing new, after a one-file change, and after committing it.
//!
//! ```text
//! cargo bench --bench sync -- [--repo PATH] [--runs N]
//! ```
//! `--repo` (or `RCLAUDE_BENCH_REPO`) names any git repository to copy; without it a
//! repository is generated from the crate sources in `~/.cargo/registry` (real files, synthetic
//! history). Prints a Markdown table with medians and ratios (rclaude ÷ baseline).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::history::{append, count, git, git_out, pick_file, run, source};

fn main() {
    let runs = support::arg("--runs", 5);
    let rclaude = PathBuf::from(env!("CARGO_BIN_EXE_rclaude"));
    let scratch = tempfile::tempdir().expect("tempdir");
    let base = scratch.path();

    let src = base.join("src");
    let described = source(&src);
    std::fs::write(
        src.join(".rclaude.toml"),
        "[sandbox]\nprovider = \"local\"\n",
    )
    .unwrap();
    let files = count(&src, &["ls-files"]);
    let commits = count(&src, &["rev-list", "HEAD"]);
    let tree = git_out(&src, &["count-objects", "-vH"]);
    eprintln!("repository: {described}: {files} files, {commits} commits\n{tree}");

    // ---- rclaude
    let home = base.join("rclaude-home");
    let rc = |args: &[&str]| {
        let t = Instant::now();
        let out = Command::new(&rclaude)
            .args(args)
            .current_dir(&src)
            .env("RCLAUDE_HOME", &home)
            .env("CI", "true")
            .output()
            .expect("rclaude");
        assert!(
            out.status.success(),
            "rclaude {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    };
    let first = rc(&["up", "--no-setup"]);
    let noop = median((0..runs).map(|_| rc(&["sync"])).collect());
    let mut one_file = Vec::new();
    let mut one_commit = Vec::new();
    let victim = pick_file(&src);
    for i in 0..runs {
        append(&src.join(&victim), &format!("\nbench edit {i}\n"));
        one_file.push(rc(&["sync"]));
        git(&src, &["commit", "-qam", &format!("bench edit {i}")]);
        one_commit.push(rc(&["sync"]));
    }
    let one_file = median(one_file);
    let one_commit = median(one_commit);
    // Checkpoints (`checkpoints --take`): nothing changed, and one file changed in the sandbox;
    // `exec -- true` is the fixed cost of any command (process start, connect) beside them.
    rc(&["checkpoints", "--take"]);
    let cp_noop = median((0..runs).map(|_| rc(&["checkpoints", "--take"])).collect());
    let exec_true = median(
        (0..runs)
            .map(|_| rc(&["exec", "--no-sync", "--", "true"]))
            .collect(),
    );
    let mut cp_file = Vec::new();
    for i in 0..runs {
        rc(&[
            "exec",
            "--no-sync",
            "--",
            "sh",
            "-c",
            &format!("echo 'sandbox edit {i}' >> '{victim}'"),
        ]);
        cp_file.push(rc(&["checkpoints", "--take"]));
    }
    let cp_file = median(cp_file);
    rc(&["down", "--yes", "--discard"]);

    // ---- git bundle + fetch + checkout (what the sandbox would need without rclaude)
    let gsrc = base.join("gsrc");
    run(Command::new("git")
        .args(["clone", "-q"])
        .arg(&src)
        .arg(&gsrc));
    git(&gsrc, &["reset", "-q", "--hard", &format!("HEAD~{runs}")]);
    let gdst = base.join("gdst");
    let g_first = {
        let t = Instant::now();
        let b = base.join("all.bundle");
        git(
            &gsrc,
            &["bundle", "create", "-q", b.to_str().unwrap(), "HEAD"],
        );
        run(Command::new("git").args(["init", "-q"]).arg(&gdst));
        git(
            &gdst,
            &["fetch", "-q", b.to_str().unwrap(), "HEAD:refs/heads/bench"],
        );
        git(&gdst, &["checkout", "-q", "bench"]);
        t.elapsed()
    };
    let mut g_commit = Vec::new();
    for i in 0..runs {
        append(&gsrc.join(&victim), &format!("\nbench edit {i}\n"));
        git(&gsrc, &["commit", "-qam", &format!("bench edit {i}")]);
        let t = Instant::now();
        let b = base.join(format!("inc{i}.bundle"));
        git(
            &gsrc,
            &[
                "bundle",
                "create",
                "-q",
                b.to_str().unwrap(),
                "HEAD",
                "^HEAD~1",
            ],
        );
        git(
            &gdst,
            &[
                "fetch",
                "-q",
                b.to_str().unwrap(),
                "HEAD:refs/remotes/b/main",
            ],
        );
        git(&gdst, &["reset", "-q", "--hard", "refs/remotes/b/main"]);
        g_commit.push(t.elapsed());
    }
    let g_commit = median(g_commit);

    // ---- rsync -a of the work tree (with .git), then after a one-file change
    let rdst = base.join("rdst");
    let rsync = |from: &Path, to: &Path| {
        let t = Instant::now();
        let mut from_s = from.as_os_str().to_owned();
        from_s.push("/");
        run(Command::new("rsync")
            .arg("-a")
            .arg("--delete")
            .arg(from_s)
            .arg(to));
        t.elapsed()
    };
    let have_rsync = Command::new("rsync").arg("--version").output().is_ok();
    let (r_first, r_noop, r_file) = if have_rsync {
        let first = rsync(&src, &rdst);
        let noop = median((0..runs).map(|_| rsync(&src, &rdst)).collect());
        let mut file = Vec::new();
        for i in 0..runs {
            append(&src.join(&victim), &format!("\nrsync edit {i}\n"));
            file.push(rsync(&src, &rdst));
        }
        (Some(first), Some(noop), Some(median(file)))
    } else {
        eprintln!("rsync not installed: skipping that baseline");
        (None, None, None)
    };

    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let opt = |d: Option<Duration>| d.map(ms).unwrap_or_else(|| "—".into());
    let ratio = |a: Duration, b: Option<Duration>| match b {
        Some(b) if b.as_secs_f64() > 0.0 => format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64()),
        _ => "—".into(),
    };
    println!(
        "Repository: {described} — {files} files, {commits} commits; median of {runs} runs.\n"
    );
    println!(
        "| step | rclaude | git bundle + fetch + checkout | rsync -a | rclaude ÷ git | rclaude ÷ rsync |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| first sync (rclaude: `up`, incl. creating the sandbox) | {} | {} | {} | {} | {} |",
        ms(first),
        ms(g_first),
        opt(r_first),
        ratio(first, Some(g_first)),
        ratio(first, r_first)
    );
    println!(
        "| nothing changed | {} | — | {} | — | {} |",
        ms(noop),
        opt(r_noop),
        ratio(noop, r_noop)
    );
    println!(
        "| one file changed, uncommitted | {} | (git cannot) | {} | — | {} |",
        ms(one_file),
        opt(r_file),
        ratio(one_file, r_file)
    );
    println!(
        "| that change committed | {} | {} | — | {} | — |",
        ms(one_commit),
        ms(g_commit),
        ratio(one_commit, Some(g_commit))
    );
    println!(
        "\n| checkpoint (`checkpoints --take`) | rclaude | `exec -- true` (fixed cost of a command) |\n|---|---|---|"
    );
    println!(
        "| nothing changed in the sandbox | {} | {} |",
        ms(cp_noop),
        ms(exec_true)
    );
    println!(
        "| one file changed in the sandbox | {} | {} |",
        ms(cp_file),
        ms(exec_true)
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
