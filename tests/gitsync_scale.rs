//! Scale checks (ignored by default; run with `--ignored --nocapture`): timings are printed,
//! never asserted.

mod support;

use std::time::Instant;

use rclaude::gitsync::{self, PushOptions, SyncProgress};
use support::*;

/// Prints the time each stage started.
struct StageTimer(Instant);

impl SyncProgress for StageTimer {
    fn stage(&self, name: &str) {
        eprintln!("    {:>8.1?} {name}", self.0.elapsed());
    }
    fn objects(&self, _: u64, _: u64) {}
    fn bytes(&self, _: u64, _: Option<u64>) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn large_work_tree_timings() {
    let n: usize = std::env::var("RC_SCALE_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let env = Env::empty();
    for i in 0..n {
        env.write(
            &format!("d{}/e{}/f{i}.txt", i % 50, i % 7),
            format!("file {i}\n{}\n", "x".repeat(i % 200)),
        );
    }
    env.write(".gitignore", "target/\n");
    env.lgit(&["add", "-A"]);
    env.lgit(&["commit", "-q", "-m", "big"]);
    let t = Instant::now();
    env.lgit(&["status", "--porcelain"]);
    eprintln!("git status: {:?}", t.elapsed());

    let t = Instant::now();
    let r1 = env.push(None).await;
    eprintln!(
        "first push: {:?} ({} bytes, {} objects)",
        t.elapsed(),
        r1.sent_bytes,
        r1.objects
    );
    let t = Instant::now();
    let r2 = env.push(Some(&r1.state)).await;
    eprintln!(
        "no-op push: {:?} (nothing new: {})",
        t.elapsed(),
        r2.skipped_nothing_new
    );
    env.write("d3/e3/f3.txt", "changed\n");
    if let Ok(f) = std::env::var("RC_SCALE_BASH_ENV") {
        env.sandbox.set_env("BASH_ENV", &f);
    }
    let t = Instant::now();
    let r3 = gitsync::push(
        &env.local,
        &env.sandbox,
        Some(&r2.state),
        &PushOptions::default(),
        &StageTimer(t),
    )
    .await
    .unwrap();
    eprintln!(
        "one-file push: {:?} ({} bytes, {} objects)",
        t.elapsed(),
        r3.sent_bytes,
        r3.objects
    );
    let t = Instant::now();
    let p = env
        .pull_with(Some(&r3.state), &Default::default())
        .await
        .unwrap();
    eprintln!(
        "pull: {:?} ({} files changed)",
        t.elapsed(),
        p.files_changed
    );
    env.assert_in_sync();
}
