//! Interruptions (agent killed mid-upload, CLI killed mid-sync, apply killed before and after the
//! work-tree update) and corrupt transfers: both sides stay consistent, nothing is lost, and the
//! next sync completes.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rclaude::gitsync::{self, NoProgress, PullOptions, PushOptions, SyncError};
use support::*;
use tokio::sync::Notify;

/// A `git` wrapper put first on the sandbox's PATH: when the flag file exists, the git call
/// matching `RC_TEST_KILL_AT` kills its whole process group (the step's script) with SIGKILL,
/// once, before or after running.
fn install_kill_shim(env: &Env, at: &str) -> PathBuf {
    let dir = env.tmp.path().join("shim");
    std::fs::create_dir_all(&dir).unwrap();
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let flag = env.tmp.path().join("kill-armed");
    let script = format!(
        r#"#!/bin/sh
if [ -e "{flag}" ]; then
  case "$RC_TEST_KILL_AT" in
    before-read-tree) case " $* " in *" read-tree -m -u "*) rm -f "{flag}"; kill -9 0;; esac;;
    after-read-tree) case " $* " in *" read-tree -m -u "*) "{real}" "$@"; rm -f "{flag}"; kill -9 0;; esac;;
    before-index) case " $* " in *" read-tree --reset "*) rm -f "{flag}"; kill -9 0;; esac;;
    after-fetch) case " $* " in *" fetch "*) "{real}" "$@"; rm -f "{flag}"; kill -9 0;; esac;;
    hang-read-tree) case " $* " in *" read-tree -m -u "*) rm -f "{flag}"; touch "{flag}.reached"; sleep 3;; esac;;
  esac
fi
exec "{real}" "$@"
"#,
        flag = flag.display(),
        real = real
    );
    write(&dir.join("git"), script);
    set_exec(&dir.join("git"));
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    env.sandbox.set_env("PATH", &path);
    env.sandbox.set_env("RC_TEST_KILL_AT", at);
    write(&flag, "armed");
    flag
}

/// Incompressible bytes.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A sync from the laptop as a task of its own, to abort as a killed CLI would end.
fn spawn_push(
    env: &Arc<Env>,
    state: &gitsync::SyncState,
) -> tokio::task::JoinHandle<Result<gitsync::PushReport, SyncError>> {
    let env = env.clone();
    let state = state.clone();
    tokio::spawn(async move {
        gitsync::push(
            &env.local,
            &env.sandbox,
            Some(&state),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
    })
}

fn marker(env: &Env) -> PathBuf {
    env.sbx.join(".git/rclaude/applying")
}

fn tmp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join(".git/rclaude/tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_upload_then_next_sync_completes() {
    let env = Env::new();
    let r1 = env.push(None).await;
    let sandbox_head = head_desc(&env.sbx);
    let sandbox_files = worktree_files(&env.sbx);
    env.write("big.bin", noise(300_000));
    env.write("README.md", "new readme\n");
    env.sandbox.faults.lock().unwrap().fail_upload_after = Some(100_000);
    let err = env
        .push_with(Some(&r1.state), &PushOptions::default())
        .await;
    let err = err.expect_err("the upload fails");
    assert!(err.to_string().contains("nothing was applied"), "{err}");
    // The sandbox is as before: no apply happened.
    assert_eq!(head_desc(&env.sbx), sandbox_head);
    assert_eq!(worktree_files(&env.sbx), sandbox_files);
    assert!(!marker(&env).exists());
    assert!(
        tmp_files(&env.sbx).iter().all(|f| !f.ends_with(".bundle")),
        "{:?}",
        tmp_files(&env.sbx)
    );
    // Next sync completes.
    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.saved.is_empty());
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_killed_mid_upload_then_next_sync_completes() {
    let env = Env::new();
    let r1 = env.push(None).await;
    env.write("big.bin", noise(400_000));
    let reached = Arc::new(Notify::new());
    env.sandbox.faults.lock().unwrap().stall_upload = Some(reached.clone());
    let local = env.local.clone();
    let state = r1.state.clone();
    let env = Arc::new(env);
    let env2 = env.clone();
    let task = tokio::spawn(async move {
        gitsync::push(
            &local,
            &env2.sandbox,
            Some(&state),
            &PushOptions::default(),
            &NoProgress,
        )
        .await
    });
    reached.notified().await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(!marker(&env).exists());
    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.saved.is_empty());
    env.assert_in_sync();
}

async fn kill_apply_then_recover(at: &str) -> (Env, gitsync::PushReport) {
    let env = Env::new();
    env.write("keep.txt", "pushed first\n");
    let r1 = env.push(None).await;
    env.write("README.md", "second push\n");
    env.write("added.txt", "added\n");
    std::fs::remove_file(env.local.join("keep.txt")).unwrap();
    env.lgit(&["rm", "-q", "docs/guide.md"]);
    let flag = install_kill_shim(&env, at);
    let err = env
        .push_with(Some(&r1.state), &PushOptions::default())
        .await
        .expect_err("the apply is killed");
    assert!(!flag.exists(), "the kill point was reached");
    assert!(matches!(err, SyncError::Remote { .. }), "{err}");
    assert!(err.to_string().contains("interrupted"), "{err}");
    env.sandbox.remove_env("RC_TEST_KILL_AT");
    (env, r1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_killed_before_the_work_tree_update() {
    let (env, r1) = kill_apply_then_recover("before-read-tree").await;
    assert!(marker(&env).exists());
    assert_eq!(
        env.sread("README.md"),
        b"# demo\n",
        "work tree not touched yet"
    );
    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.recovered_interrupted_apply);
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    assert!(!marker(&env).exists());
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_killed_after_the_work_tree_update() {
    let (env, r1) = kill_apply_then_recover("after-read-tree").await;
    assert!(marker(&env).exists());
    assert_eq!(
        env.sread("README.md"),
        b"second push\n",
        "work tree already updated"
    );
    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.recovered_interrupted_apply);
    assert!(
        r2.saved.is_empty(),
        "explained by the interrupted apply: {}",
        r2.summary()
    );
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_killed_before_the_index_update() {
    let (env, r1) = kill_apply_then_recover("before-index").await;
    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.recovered_interrupted_apply);
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_killed_after_fetch() {
    let (env, r1) = kill_apply_then_recover("after-fetch").await;
    assert!(!marker(&env).exists(), "killed before the marker");
    let r2 = env.push(Some(&r1.state)).await;
    assert!(!r2.recovered_interrupted_apply);
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_made_after_an_interrupted_apply_are_saved() {
    let (env, r1) = kill_apply_then_recover("after-read-tree").await;
    // A half-done checkout (one file back at its old content) is explained...
    env.swrite("README.md", "# demo\n");
    // ...but an edit by hand in between is not: it must be saved.
    env.swrite("src/main.rs", "edited while the sync was broken\n");
    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.recovered_interrupted_apply);
    assert_eq!(r2.saved.len(), 1, "{}", r2.summary());
    assert_eq!(
        show(&env.local, &r2.saved[0].name, "src/main.rs"),
        b"edited while the sync was broken\n"
    );
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_killed_during_apply_then_next_sync_waits_and_completes() {
    let env = Env::new();
    let r1 = env.push(None).await;
    env.write("README.md", "changed\n");
    let flag = install_kill_shim(&env, "hang-read-tree");
    let reached = PathBuf::from(format!("{}.reached", flag.display()));
    let env = Arc::new(env);
    let task = spawn_push(&env, &r1.state);
    while !reached.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The CLI dies; the apply keeps running in the sandbox, holding the lock.
    task.abort();
    let _ = task.await;
    env.write("src/lib.rs", "and more\n");
    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_truncated_push_bundle_is_rejected_and_nothing_applied() {
    for fault in ["corrupt", "truncate"] {
        let env = Env::new();
        let r1 = env.push(None).await;
        let before = (
            head_desc(&env.sbx),
            worktree_files(&env.sbx),
            status(&env.sbx),
        );
        env.write("README.md", "x".repeat(5000));
        env.write("more.txt", "more\n");
        {
            let mut f = env.sandbox.faults.lock().unwrap();
            if fault == "corrupt" {
                f.corrupt_upload_at = Some(400);
            } else {
                f.truncate_upload_to = Some(200);
            }
        }
        let err = env
            .push_with(Some(&r1.state), &PushOptions::default())
            .await
            .expect_err("rejected");
        let msg = err.to_string();
        assert!(msg.contains("nothing was applied"), "{fault}: {msg}");
        assert_eq!(
            (
                head_desc(&env.sbx),
                worktree_files(&env.sbx),
                status(&env.sbx)
            ),
            before,
            "{fault}"
        );
        assert!(!marker(&env).exists());
        let r2 = env.push(Some(&r1.state)).await;
        assert!(r2.saved.is_empty());
        env.assert_in_sync();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_pull_bundle_is_rejected_and_nothing_applied() {
    let env = Env::new();
    let r = env.push(None).await;
    env.swrite("a.txt", "x".repeat(3000));
    env.sgit(&["add", "-A"]);
    env.sgit(&["commit", "-q", "-m", "agent"]);
    env.sandbox.faults.lock().unwrap().corrupt_download_at = Some(300);
    let refs = user_refs(&env.local);
    let opts = PullOptions {
        apply: true,
        ..PullOptions::default()
    };
    let err = env
        .pull_with(Some(&r.state), &opts)
        .await
        .expect_err("rejected");
    assert!(matches!(err, SyncError::BadBundle { .. }), "{err}");
    assert!(err.to_string().contains("nothing was applied"));
    assert_eq!(user_refs(&env.local), refs);
    let p = env.pull_with(Some(&r.state), &opts).await.unwrap();
    assert_eq!(p.commits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_work_not_brought_back_is_fetched_by_the_next_sync() {
    let env = Env::new();
    let r1 = env.push(None).await;
    env.swrite("agent.txt", "agent\n");
    env.write("README.md", "local\n");
    let r2 = env.push(Some(&r1.state)).await;
    let name = r2.saved[0].name.clone();
    // Simulate a sync that died before bringing it back: drop it here and from the state.
    env.lgit(&["update-ref", "-d", &name]);
    let mut state = r2.state.clone();
    state.fetched_saved.clear();
    let r3 = env.push(Some(&state)).await;
    assert!(r3.skipped_nothing_new);
    assert_eq!(r3.saved.len(), 1);
    assert!(r3.saved[0].earlier);
    assert_eq!(show(&env.local, &name, "agent.txt"), b"agent\n");
    // Once brought back it is not fetched again, even if deleted here after review.
    env.lgit(&["update-ref", "-d", &name]);
    let r4 = env.push(Some(&r3.state)).await;
    assert!(r4.saved.is_empty());
}

/// The one-process apply (the step helper rclaude's agent runs) killed while it writes the
/// work tree, the CLI gone with it: the apply's marker is left, the next sync recovers, the
/// sandbox work it saved first comes back, and both sides end in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_step_helper_killed_mid_apply_with_the_cli_loses_nothing() {
    const FILES: usize = 6000;
    let env = Env::new();
    env.sandbox
        .always_helper
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r1 = env.push(None).await;
    // Sandbox work the laptop lacks...
    env.swrite("src/main.rs", "edited in the sandbox\n");
    // ...and enough new files on the laptop that writing them takes a while.
    for n in 0..FILES {
        env.write(&format!("many/{n:05}.txt"), format!("{n}\n").repeat(300));
    }
    let env = Arc::new(env);
    let task = spawn_push(&env, &r1.state);
    while !marker(&env).exists() {
        assert!(
            !task.is_finished(),
            "the apply ended before its marker was seen: {:?}",
            task.await
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let helper = env
        .sandbox
        .helper_pid
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_ne!(helper, 0, "the apply ran in the step helper");
    // SAFETY: signalling a child process of this test.
    unsafe { libc::kill(helper as i32, libc::SIGKILL) };
    task.abort();
    let _ = task.await;
    let written = std::fs::read_dir(env.sbx.join("many"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(written < FILES, "the apply was cut short ({written} files)");
    assert!(marker(&env).exists(), "the marker stays");

    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.recovered_interrupted_apply, "{}", r2.summary());
    let edit = r2
        .saved
        .iter()
        .find(|s| show(&env.local, &s.name, "src/main.rs") == b"edited in the sandbox\n");
    assert!(
        edit.is_some(),
        "the sandbox edit came back: {}",
        r2.summary()
    );
    env.assert_in_sync();
    assert!(!marker(&env).exists());
}
