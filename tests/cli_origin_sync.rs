//! Origin-aware first sync: when the sandbox can reach the checkout's upstream (a real git
//! smart-HTTP server here), it fetches the history from there and the laptop's bundle carries
//! only the local commit and the snapshot; when it cannot, the bundle carries everything. The
//! sandbox ends up with the exact same HEAD and files either way.

mod common;
#[path = "support/git_http.rs"]
mod git_http;

use common::TestRepo;
use git_http::GitHttp;

const CONFIG: &str = "[sandbox]\nprovider = \"local\"\n";

/// Objects the sync step reported sending (`✓ Syncing work tree: N objects, …`).
fn objects_sent(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("Syncing work tree:"))
        .unwrap_or_else(|| panic!("no sync line in:\n{stderr}"));
    line.split("Syncing work tree:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no object count in {line:?}"))
}

/// A checkout of an upstream with 80 commits, plus one local commit, an uncommitted edit and
/// an untracked file.
fn setup() -> (GitHttp, TestRepo) {
    let git = GitHttp::start_temp();
    git.create_repo("acme", "big", false);
    let t = TestRepo::new(CONFIG);
    for i in 0..80 {
        t.write(
            &format!("src/f{}.txt", i % 20),
            &format!("version {i}\n{}\n", "x".repeat(i * 50)),
        );
        t.commit_all(&format!("commit {i}"));
    }
    git.seed_from("acme", "big", t.path());
    t.git(&["remote", "add", "origin", &git.repo_url("acme", "big")]);
    t.git(&["fetch", "-q", "origin"]);
    t.write("local.txt", "only here\n");
    t.commit_all("local commit");
    t.write("src/f1.txt", "uncommitted\n");
    t.write("untracked.txt", "untracked\n");
    git.clear_requests();
    (git, t)
}

fn assert_same_tree(t: &TestRepo) {
    let head = t.git(&["rev-parse", "HEAD"]);
    assert_eq!(
        t.ok(&["exec", "--no-sync", "--", "git", "rev-parse", "HEAD"])
            .stdout(),
        head
    );
    for f in ["local.txt", "src/f1.txt", "untracked.txt", "src/f7.txt"] {
        let there = t.ok(&["exec", "--no-sync", "--", "cat", f]).stdout();
        assert_eq!(there, t.read(f), "{f}");
    }
}

#[test]
fn a_reachable_upstream_serves_the_history_and_the_bundle_carries_the_rest() {
    let (git, t) = setup();
    let r = t.ok(&["up"]);
    let err = r.stderr();
    assert!(err.contains("Fetching history from"), "{err}");
    assert!(err.contains("only what it lacks is sent"), "{err}");
    let sent = objects_sent(&err);
    // The local commit (commit, tree, blob) and the snapshot (commits, trees, two blobs).
    assert!(sent < 20, "sent {sent} objects:\n{err}");
    assert!(
        git.requests()
            .iter()
            .any(|q| q.path.ends_with("git-upload-pack"))
    );
    // One branch was fetched: the one the checkout builds on.
    let refs = t
        .ok(&[
            "exec",
            "--no-sync",
            "--",
            "git",
            "for-each-ref",
            "--format=%(refname)",
            "refs/rclaude/upstream",
        ])
        .stdout();
    assert_eq!(refs, "refs/rclaude/upstream/heads/main\n");
    assert_same_tree(&t);
    // The sandbox's own clone of the history is complete: its log walks all 81 commits.
    let n = t
        .ok(&[
            "exec",
            "--no-sync",
            "--",
            "git",
            "rev-list",
            "--count",
            "HEAD",
        ])
        .stdout();
    assert_eq!(n.trim(), "81");
}

#[test]
fn an_unreachable_upstream_falls_back_to_the_full_bundle() {
    let (_git, t) = setup();
    t.git(&[
        "remote",
        "set-url",
        "origin",
        "http://127.0.0.1:9/acme/big.git",
    ]);
    let r = t.ok(&["up"]);
    let err = r.stderr();
    assert!(err.contains("not reachable from the sandbox"), "{err}");
    let sent = objects_sent(&err);
    assert!(sent > 150, "sent only {sent} objects:\n{err}");
    assert_same_tree(&t);
}

#[test]
fn fetch_upstream_false_sends_everything_without_asking() {
    let (git, t) = setup();
    t.write(
        ".rclaude.toml",
        &format!("{CONFIG}[git]\nfetch_upstream = false\n"),
    );
    let r = t.ok(&["up"]);
    assert!(!r.stderr().contains("Fetching history"), "{}", r.all());
    assert!(objects_sent(&r.stderr()) > 150);
    assert!(git.requests().is_empty());
    assert_same_tree(&t);
}
