//! Pull: sandbox commits and uncommitted edits come back as a local branch; `apply` only when
//! nothing local can be lost.

mod support;

use rclaude::gitsync::{ApplyOutcome, PullOptions};
use support::*;

fn pull_opts() -> PullOptions {
    PullOptions::default()
}

fn apply_opts() -> PullOptions {
    PullOptions {
        apply: true,
        ..PullOptions::default()
    }
}

/// Commit `files` in the sandbox.
fn sandbox_commit(env: &Env, files: &[(&str, &str)], msg: &str) -> String {
    for (p, c) in files {
        env.swrite(p, c);
    }
    env.sgit(&["add", "-A"]);
    env.sgit(&["commit", "-q", "-m", msg]);
    env.sgit(&["rev-parse", "HEAD"]).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_brings_back_commits_and_uncommitted_edits() {
    let env = Env::new();
    let r = env.push(None).await;
    sandbox_commit(&env, &[("src/a.rs", "a\n")], "agent one");
    let c2 = sandbox_commit(&env, &[("src/b.rs", "b\n")], "agent two");
    env.swrite("src/main.rs", "edited, not committed\n");
    env.swrite("new-untracked.txt", "new\n");
    std::fs::remove_file(env.sbx.join("README.md")).unwrap();
    env.swrite("target/out", "ignored build output\n");
    let head_before = env.lgit(&["rev-parse", "HEAD"]);
    let files_before = all_files(&env.local);

    let p = env.pull_with(Some(&r.state), &pull_opts()).await.unwrap();
    assert_eq!(p.branch.as_deref(), Some("rclaude/main"));
    assert_eq!(p.commits, 2);
    assert!(p.has_uncommitted);
    assert_eq!(p.files_changed, 5, "{}", p.summary());
    assert!(
        p.summary().contains("2 commits, 5 files changed"),
        "{}",
        p.summary()
    );
    assert!(
        p.hint_commands
            .iter()
            .any(|c| c.contains("git cherry-pick --no-commit rclaude/main"))
    );
    // WIP commit on top of the sandbox HEAD, with the sandbox's work tree exactly.
    assert_eq!(git_t(&env.local, &["rev-parse", "rclaude/main~1"]), c2);
    assert_eq!(
        show(&env.local, "rclaude/main", "src/main.rs"),
        b"edited, not committed\n"
    );
    assert_eq!(
        show(&env.local, "rclaude/main", "new-untracked.txt"),
        b"new\n"
    );
    assert!(!git_try(&env.local, &["cat-file", "-e", "rclaude/main:README.md"]).0);
    assert!(!git_try(&env.local, &["cat-file", "-e", "rclaude/main:target/out"]).0);
    // The user's branch and files are untouched.
    assert_eq!(env.lgit(&["rev-parse", "HEAD"]), head_before);
    assert_eq!(all_files(&env.local), files_before);
    // The sandbox is untouched too.
    assert_eq!(env.sread("src/main.rs"), b"edited, not committed\n");
    assert_eq!(env.sgit(&["rev-parse", "HEAD"]).trim(), c2);

    // Pulling again gives the same tip (deterministic WIP commit) and transfers nothing.
    let p2 = env.pull_with(Some(&r.state), &pull_opts()).await.unwrap();
    assert_eq!(p2.tip, p.tip);
    assert_eq!(p2.received_bytes, 0);
    assert!(p2.replaced.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_push_commit_pull() {
    let env = Env::new();
    env.write("wip.txt", "uncommitted here\n");
    let r = env.push(None).await;
    env.sgit(&["add", "-A"]);
    env.sgit(&["commit", "-q", "-m", "agent commits the pushed wip"]);
    let p = env.pull_with(Some(&r.state), &pull_opts()).await.unwrap();
    assert!(!p.has_uncommitted);
    assert_eq!(p.commits, 1);
    assert_eq!(
        git_t(&env.local, &["rev-parse", "rclaude/main^{tree}"]),
        git_t(&env.sbx, &["rev-parse", "HEAD^{tree}"])
    );
    assert_eq!(
        git_t(&env.local, &["rev-parse", "rclaude/main"]),
        git_t(&env.sbx, &["rev-parse", "HEAD"])
    );
    // The pulled bundle was thin (the sandbox's real `git bundle create`) and read fine.
    assert!(
        p.received_bytes > 0 && p.received_bytes < 4096,
        "{}",
        p.received_bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_to_pull_from_an_empty_sandbox() {
    let env = Env::empty();
    env.push(None).await;
    let p = env.pull_with(None, &pull_opts()).await.unwrap();
    assert!(p.nothing_to_pull);
    assert!(p.branch.is_none());
    assert!(
        !git_try(
            &env.local,
            &["rev-parse", "--verify", "-q", "refs/heads/rclaude/main"]
        )
        .0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_template_and_session() {
    let env = Env::new();
    let r = env.push(None).await;
    sandbox_commit(&env, &[("x", "x\n")], "x");
    let opts = PullOptions {
        branch_template: "sandbox/{session}/{branch}".into(),
        session: "s42".into(),
        ..PullOptions::default()
    };
    let p = env.pull_with(Some(&r.state), &opts).await.unwrap();
    assert_eq!(p.branch.as_deref(), Some("sandbox/s42/main"));
    let bad = PullOptions {
        branch_template: "bad..name/{branch}".into(),
        ..PullOptions::default()
    };
    assert!(env.pull_with(Some(&r.state), &bad).await.is_err());
    let no_session = PullOptions {
        branch_template: "x/{session}".into(),
        ..PullOptions::default()
    };
    assert!(env.pull_with(Some(&r.state), &no_session).await.is_err());
    // Pulling into the checked-out branch is refused.
    let onto_head = PullOptions {
        branch_template: "{branch}".into(),
        ..PullOptions::default()
    };
    let err = env.pull_with(Some(&r.state), &onto_head).await.unwrap_err();
    assert!(err.to_string().contains("checked out"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_branch_tip_is_kept() {
    let env = Env::new();
    let r = env.push(None).await;
    let first = sandbox_commit(&env, &[("x", "one\n")], "one");
    env.pull_with(Some(&r.state), &pull_opts()).await.unwrap();
    // The sandbox rewrites its history.
    env.sgit(&["reset", "-q", "--hard", "HEAD~1"]);
    let second = sandbox_commit(&env, &[("y", "two\n")], "two");
    let p = env.pull_with(Some(&r.state), &pull_opts()).await.unwrap();
    let kept = p.replaced.clone().expect("old tip kept");
    assert!(kept.starts_with("refs/rclaude/replaced/"), "{kept}");
    assert_eq!(git_t(&env.local, &["rev-parse", &kept]), first);
    assert_eq!(git_t(&env.local, &["rev-parse", "rclaude/main"]), second);
    // A fast-forward does not keep anything.
    sandbox_commit(&env, &[("z", "three\n")], "three");
    let p2 = env.pull_with(Some(&r.state), &pull_opts()).await.unwrap();
    assert!(p2.replaced.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_a_saved_ref() {
    let env = Env::new();
    let r1 = env.push(None).await;
    env.swrite("agent.txt", "agent work\n");
    env.write("README.md", "local\n");
    let r2 = env.push(Some(&r1.state)).await;
    let saved = r2.saved[0].sandbox_name.clone();
    // Delete it locally, then pull it explicitly.
    env.lgit(&["update-ref", "-d", &saved]);
    let opts = PullOptions {
        sandbox_ref: Some(saved.clone()),
        ..PullOptions::default()
    };
    let p = env.pull_with(Some(&r2.state), &opts).await.unwrap();
    let stamp = saved.strip_prefix("refs/rclaude/saved/").unwrap();
    assert_eq!(
        p.branch.as_deref(),
        Some(format!("rclaude/saved/{stamp}").as_str())
    );
    assert_eq!(
        show(&env.local, p.branch.as_deref().unwrap(), "agent.txt"),
        b"agent work\n"
    );
    let bad = PullOptions {
        sandbox_ref: Some("refs/rclaude/saved/nope".into()),
        ..PullOptions::default()
    };
    assert!(env.pull_with(Some(&r2.state), &bad).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_fast_forwards_when_nothing_changed_here() {
    let env = Env::new();
    env.write("src/lib.rs", "local uncommitted, pushed\n");
    env.write("pushed-untracked.txt", "u\n");
    let r = env.push(None).await;
    let c = sandbox_commit(&env, &[("src/agent.rs", "agent\n")], "agent");
    env.swrite("src/main.rs", "sandbox uncommitted\n");
    std::fs::remove_file(env.sbx.join("pushed-untracked.txt")).unwrap();
    env.swrite("target/cache", "ignored in the sandbox\n");
    env.write("target/local-build", "ignored here\n");

    let p = env.pull_with(Some(&r.state), &apply_opts()).await.unwrap();
    match &p.applied {
        Some(ApplyOutcome::FastForward {
            to,
            uncommitted_edits: true,
            ..
        }) => assert_eq!(to.as_deref(), Some(c.as_str())),
        other => panic!("expected a fast-forward, got {other:?}"),
    }
    assert_eq!(git_t(&env.local, &["rev-parse", "HEAD"]), c);
    assert_eq!(
        git_t(&env.local, &["symbolic-ref", "HEAD"]),
        "refs/heads/main"
    );
    // The local work tree now equals the sandbox's, with the same uncommitted changes.
    assert_eq!(worktree_files(&env.local), worktree_files(&env.sbx));
    assert_eq!(status(&env.local), status(&env.sbx));
    assert_eq!(env.read("target/local-build"), b"ignored here\n");
    assert!(!env.local.join("pushed-untracked.txt").exists());
    // Applying again is a no-op.
    let files = all_files(&env.local);
    let p2 = env.pull_with(Some(&r.state), &apply_opts()).await.unwrap();
    assert_eq!(p2.applied, Some(ApplyOutcome::UpToDate));
    assert_eq!(all_files(&env.local), files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_merges_when_clean_here() {
    let env = Env::new();
    let r = env.push(None).await;
    let sc = sandbox_commit(&env, &[("src/agent.rs", "agent\n")], "agent");
    env.write("docs/local.md", "local commit\n");
    env.lgit(&["add", "-A"]);
    env.lgit(&["commit", "-q", "-m", "local work"]);
    let lc = git_t(&env.local, &["rev-parse", "HEAD"]);
    let p = env.pull_with(Some(&r.state), &apply_opts()).await.unwrap();
    let merge = match &p.applied {
        Some(ApplyOutcome::Merge {
            commit,
            uncommitted_edits: false,
        }) => commit.clone(),
        other => panic!("expected a merge, got {other:?}"),
    };
    assert_eq!(git_t(&env.local, &["rev-parse", "HEAD"]), merge);
    assert_eq!(git_t(&env.local, &["rev-parse", "HEAD^1"]), lc);
    assert_eq!(git_t(&env.local, &["rev-parse", "HEAD^2"]), sc);
    assert_eq!(env.read("src/agent.rs"), b"agent\n");
    assert_eq!(env.read("docs/local.md"), b"local commit\n");
    assert_eq!(status(&env.local), "");

    // Then sandbox uncommitted edits on top of a clean, moved-on local branch: applied uncommitted.
    let r2 = env.push(None).await;
    env.swrite("README.md", "sandbox edit\n");
    env.write("other.txt", "local commit 2\n");
    env.lgit(&["add", "-A"]);
    env.lgit(&["commit", "-q", "-m", "local 2"]);
    let head = git_t(&env.local, &["rev-parse", "HEAD"]);
    let p2 = env.pull_with(Some(&r2.state), &apply_opts()).await.unwrap();
    assert!(
        matches!(
            p2.applied,
            Some(ApplyOutcome::FastForward {
                uncommitted_edits: true,
                ..
            })
        ),
        "{:?}",
        p2.applied
    );
    assert_eq!(git_t(&env.local, &["rev-parse", "HEAD"]), head);
    assert_eq!(env.read("README.md"), b"sandbox edit\n");
    assert_eq!(status(&env.local), " M README.md\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_with_local_changes_and_touches_nothing() {
    let env = Env::new();
    let r = env.push(None).await;
    sandbox_commit(&env, &[("src/main.rs", "agent version\n")], "agent");
    env.swrite("README.md", "sandbox uncommitted\n");
    env.write("src/main.rs", "local unpushed edit\n");
    env.write("new-local.txt", "new\n");
    env.lgit(&["add", "new-local.txt"]);
    let files = all_files(&env.local);
    let index = std::fs::read(env.local.join(".git/index")).unwrap();
    let head = env.lgit(&["rev-parse", "HEAD"]);
    let p = env.pull_with(Some(&r.state), &apply_opts()).await.unwrap();
    match &p.applied {
        Some(ApplyOutcome::Refused { reason, commands }) => {
            assert!(reason.contains("uncommitted changes"), "{reason}");
            assert!(commands.iter().any(|c| c.contains("git stash")));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        p.hint_lines().iter().any(|l| l.contains("Not applied")),
        "{:?}",
        p.hint_lines()
    );
    assert!(
        p.hint_lines()
            .iter()
            .any(|l| l.contains("git merge rclaude/main")),
        "{:?}",
        p.hint_lines()
    );
    assert!(!p.is_empty());
    assert_eq!(all_files(&env.local), files, "local files changed");
    assert_eq!(std::fs::read(env.local.join(".git/index")).unwrap(), index);
    assert_eq!(env.lgit(&["rev-parse", "HEAD"]), head);
    // The work is still available on the pulled branch.
    assert_eq!(
        show(&env.local, "rclaude/main", "src/main.rs"),
        b"agent version\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_conflicting_commits() {
    let env = Env::new();
    let r = env.push(None).await;
    sandbox_commit(&env, &[("README.md", "sandbox readme\n")], "agent");
    env.write("README.md", "local readme\n");
    env.lgit(&["commit", "-q", "-a", "-m", "local"]);
    let files = all_files(&env.local);
    let head = env.lgit(&["rev-parse", "HEAD"]);
    let p = env.pull_with(Some(&r.state), &apply_opts()).await.unwrap();
    match &p.applied {
        Some(ApplyOutcome::Refused { reason, .. }) => {
            assert!(reason.contains("README.md"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(all_files(&env.local), files);
    assert_eq!(env.lgit(&["rev-parse", "HEAD"]), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_up_to_date() {
    let env = Env::new();
    let r = env.push(None).await;
    let p = env.pull_with(Some(&r.state), &apply_opts()).await.unwrap();
    assert_eq!(p.applied, Some(ApplyOutcome::UpToDate));
    assert_eq!(p.commits, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_after_taking_the_sandbox_work_saves_nothing() {
    let env = Env::new();
    let r = env.push(None).await;
    env.swrite("src/main.rs", "sandbox edit\n");
    env.swrite("agent-new.txt", "new\n");
    // Take it with apply...
    let p = env.pull_with(Some(&r.state), &apply_opts()).await.unwrap();
    assert!(
        matches!(p.applied, Some(ApplyOutcome::FastForward { .. })),
        "{:?}",
        p.applied
    );
    let r2 = env.push(Some(&r.state)).await;
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    env.assert_in_sync();
    // ...or by hand (cherry-pick -n) on a committed tree.
    env.lgit(&["add", "-A"]);
    env.lgit(&["commit", "-q", "-m", "took the sandbox work"]);
    let r2 = env.push(Some(&r2.state)).await;
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    env.swrite("README.md", "sandbox readme\n");
    env.pull_with(Some(&r2.state), &pull_opts()).await.unwrap();
    env.lgit(&["cherry-pick", "--no-commit", "rclaude/main"]);
    env.lgit(&["reset", "-q"]);
    let r3 = env.push(Some(&r2.state)).await;
    assert!(r3.saved.is_empty(), "{}", r3.summary());
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_never_replaces_ignored_local_files() {
    for case in ["file", "parent", "dir"] {
        let env = Env::new();
        let r = env.push(None).await;
        match case {
            // The sandbox adds a file where an ignored local file is.
            "file" => {
                env.write("debug.log", "local ignored\n");
                env.swrite("debug.log", "sandbox\n");
                env.sgit(&["add", "-f", "debug.log"]);
            }
            // ...a directory where an ignored local file is.
            "parent" => {
                env.write("out.log", "local ignored\n");
                env.swrite("out.log/x", "sandbox\n");
                env.sgit(&["add", "-f", "out.log/x"]);
            }
            // ...a file where an ignored local directory is.
            _ => {
                env.write("node_modules/dep/i.js", "local ignored\n");
                env.swrite("node_modules", "sandbox\n");
                env.sgit(&["add", "-f", "node_modules"]);
            }
        }
        env.sgit(&["commit", "-q", "-m", "agent"]);
        let files = all_files(&env.local);
        let p = env.pull_with(Some(&r.state), &apply_opts()).await.unwrap();
        match &p.applied {
            Some(ApplyOutcome::Refused { reason, .. }) => {
                assert!(reason.contains("would replace"), "{case}: {reason}")
            }
            other => panic!("{case}: {other:?}"),
        }
        assert_eq!(all_files(&env.local), files, "{case}");
    }
}
