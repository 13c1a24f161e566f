//! Benchmark: sessions side by side on the local provider, in the same run.
//!
//! - `fork` of a warm session whose sandbox holds 20,000 small files and a 500 MB dependency
//!   directory, until the fork answers `exec -- true`, against a fresh `up` of the same
//!   repository that runs `[setup]` to build that directory, until it answers `exec -- true`;
//! - 8 sessions of one repository each running a CPU-light task (`sleep 1`) at once, against one
//!   session running it alone (wall time until every `rclaude run` returned).
//!
//! ```text
//! cargo bench --bench sessions -- [--runs N]
//! ```
//! Prints Markdown tables of medians and ratios. Needs about 5 GB free under the temporary
//! directory (every fork and fresh session holds its own 500 MB).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::{median, ms};

/// Builds what a dependency install leaves: 200 packages of 100 small files, and 10 × 50 MB of
/// binaries (random, so no file system can store them as holes).
const HEAVY_SETUP: &str = "mkdir -p deps && cd deps && \
    for p in $(seq 1 200); do mkdir -p p$p; for f in $(seq 1 100); do echo \"module $p $f\" > p$p/f$f.js; done; done && \
    for b in $(seq 1 10); do head -c 50000000 /dev/urandom > blob$b.bin; done";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let rclaude = PathBuf::from(env!("CARGO_BIN_EXE_rclaude"));
    let scratch = tempfile::tempdir().expect("tempdir");
    let base = scratch.path();

    // Fork against fresh up + setup.
    let repo = make_repo(
        &base.join("heavy"),
        &format!(
            "[sandbox]\nprovider = \"local\"\n\n[setup]\nrun = '{HEAVY_SETUP}'\n\n[sync]\nignore = [\"deps/\"]\n"
        ),
    );
    let home = base.join("heavy/home");
    let rc = |args: &[&str]| timed(&rclaude, &repo, &home, args);
    rc(&["up", "--quiet"]);
    let (mut fresh, mut fork) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let f = format!("fresh-{i}");
        let k = format!("fork-{i}");
        // Alternate which goes first, so neither always gets the warmer page cache.
        let mut pair = [
            (
                &mut fresh,
                vec![
                    vec!["up", "--quiet", "-s", f.as_str()],
                    vec!["exec", "-s", f.as_str(), "--no-sync", "--", "true"],
                ],
                f.clone(),
            ),
            (
                &mut fork,
                vec![
                    vec!["fork", k.as_str()],
                    vec!["exec", "-s", k.as_str(), "--no-sync", "--", "true"],
                ],
                k.clone(),
            ),
        ];
        if i % 2 == 1 {
            pair.reverse();
        }
        for (samples, steps, name) in pair {
            let t: Duration = steps.iter().map(|s| rc(s)).sum();
            samples.push(t);
            let check = Command::new(&rclaude)
                .args([
                    "exec",
                    "-s",
                    &name,
                    "--no-sync",
                    "--",
                    "sh",
                    "-c",
                    "ls deps | wc -l; du -sm deps | cut -f1",
                ])
                .current_dir(&repo)
                .env("RCLAUDE_HOME", &home)
                .env("CI", "true")
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&check.stdout).to_string();
            let mut lines = out.lines();
            assert_eq!(lines.next(), Some("210"), "{name}: deps incomplete: {out}");
            let mb: u64 = lines.next().unwrap_or("0").trim().parse().unwrap_or(0);
            assert!(mb >= 470, "{name}: deps hold {mb} MB");
            rc(&["down", "--yes", "--discard", "-s", &name]);
        }
    }
    rc(&["down", "--yes", "--discard"]);
    let (fresh, fork) = (median(&mut fresh), median(&mut fork));
    println!(
        "\nfork vs fresh up, local provider, 20,000 files + 500 MB of dependencies, {runs} runs, medians\n"
    );
    println!("| operation | time | ÷ fresh `up` + setup |");
    println!("|---|---|---|");
    println!(
        "| fresh `up` (runs `[setup]`) + first `exec` | {:.0} ms | 1.00× |",
        ms(fresh)
    );
    println!(
        "| `fork` + first `exec` | {:.0} ms | {:.2}× |",
        ms(fork),
        fork.as_secs_f64() / fresh.as_secs_f64()
    );

    // Eight sessions at once against one alone.
    let repo = make_repo(
        &base.join("light"),
        "[sandbox]\nprovider = \"local\"\n\n[tasks.light]\nrun = \"sleep 1\"\n",
    );
    let home = base.join("light/home");
    let names: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    for n in &names {
        timed(&rclaude, &repo, &home, &["up", "--quiet", "-s", n]);
    }
    let (mut alone, mut eight) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        alone.push(timed(&rclaude, &repo, &home, &["run", "light", "-s", "s0"]));
        let t = Instant::now();
        let children: Vec<_> = names
            .iter()
            .map(|n| {
                Command::new(&rclaude)
                    .args(["run", "light", "-s", n])
                    .current_dir(&repo)
                    .env("RCLAUDE_HOME", &home)
                    .env("CI", "true")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success(), "a session's task failed");
        }
        eight.push(t.elapsed());
    }
    for n in &names {
        timed(
            &rclaude,
            &repo,
            &home,
            &["down", "--yes", "--discard", "-s", n],
        );
    }
    let (alone, eight) = (median(&mut alone), median(&mut eight));
    println!(
        "\n8 sessions of one repository running `sleep 1` as a task at once, {runs} runs, medians\n"
    );
    println!("| sessions | wall time until all returned | ÷ one alone |");
    println!("|---|---|---|");
    println!("| 1 | {:.0} ms | 1.00× |", ms(alone));
    println!(
        "| 8 at once | {:.0} ms | {:.2}× |",
        ms(eight),
        eight.as_secs_f64() / alone.as_secs_f64()
    );
}

/// Run `rclaude ARGS` in `repo`, asserting success; how long it took.
fn timed(rclaude: &Path, repo: &Path, home: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = Command::new(rclaude)
        .args(args)
        .current_dir(repo)
        .env("RCLAUDE_HOME", home)
        .env("CI", "true")
        .output()
        .expect("rclaude");
    assert!(
        out.status.success(),
        "rclaude {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

/// A small committed repository with `config` as its `.rclaude.toml`.
fn make_repo(dir: &Path, config: &str) -> PathBuf {
    let repo = support::small_tree(dir, config);
    std::fs::write(repo.join(".gitignore"), "deps/\n").unwrap();
    support::commit_all(&repo);
    repo
}
