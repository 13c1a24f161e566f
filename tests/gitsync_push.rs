//! Push: the sandbox ends up with the laptop's HEAD, index and work tree; nothing is lost.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_makes_sandbox_match_laptop() {
    let env = Env::new();
    // staged, unstaged, untracked, deleted, ignored
    env.write("src/lib.rs", "pub fn one() -> u32 {\n    2\n}\n");
    env.lgit(&["add", "src/lib.rs"]);
    env.write("src/lib.rs", "pub fn one() -> u32 {\n    3\n}\n");
    env.write("README.md", "# demo, edited\n");
    env.write("notes/new file.txt", "untracked\n");
    std::fs::remove_file(env.local.join("docs/guide.md")).unwrap();
    env.write("debug.log", "ignored\n");
    env.write("target/debug/app", "binary\n");

    let r = env.push(None).await;
    assert!(!r.skipped_nothing_new);
    assert!(r.sent_bytes > 0);
    assert_eq!(r.prerequisites, 0, "first push is a complete bundle");
    assert!(r.saved.is_empty(), "{:?}", r.saved);
    env.assert_in_sync();
    assert!(!env.sbx.join("debug.log").exists(), "ignored file was sent");
    assert!(!env.sbx.join("target").exists(), "ignored dir was sent");
    assert_eq!(
        git(&env.local, &["log", "--format=%H %s"]),
        git(&env.sbx, &["log", "--format=%H %s"]),
    );
    assert_eq!(env.lgit(&["diff", "--cached"]), env.sgit(&["diff", "--cached"]));
    assert_eq!(env.lgit(&["diff"]), env.sgit(&["diff"]));
    assert_eq!(r.state.identity, std::fs::read_to_string(env.sbx.join(".git/rclaude/identity")).unwrap().trim());
}
