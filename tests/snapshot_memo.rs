//! The snapshot memo (src/gitsync/snapshot_memo.rs) answers only when a full walk would give
//! the same snapshot: every step below compares `create` (memo allowed) with `create_fresh`
//! (always a walk), and checks that the memo did answer when nothing had changed. The memo
//! trusts only stat data older than two seconds, hence the pauses.

mod support;

use std::path::Path;
use std::time::Duration;

use rclaude::gitsync::snapshot::{self, Snapshot, TreeSource};
use support::git;

/// `text` at `rel` under `dir`, directories made as needed.
fn write(dir: &Path, rel: &str, text: &str) {
    support::write(&dir.join(rel), text);
}

/// Let the racy window pass: what exists now is older than two seconds.
fn settle() {
    std::thread::sleep(Duration::from_millis(2_100));
}

/// The memo's answer (or walk) and a fresh walk agree; returns where the tree came from.
fn check(dir: &Path, ignores: &[String], what: &str) -> (Snapshot, TreeSource) {
    let repo = git2::Repository::open(dir).unwrap();
    let (memo, source) = snapshot::create_traced(&repo, ignores).unwrap();
    let fresh = snapshot::create_fresh(&repo, ignores).unwrap();
    assert_eq!(
        memo, fresh,
        "{what}: the memo's snapshot differs from a walk's"
    );
    (memo, source)
}

/// Record a memo of the current state, and see it answer.
fn remember(dir: &Path, ignores: &[String], what: &str) -> Snapshot {
    settle();
    check(dir, ignores, &format!("{what} (recording)"));
    let (snap, source) = check(dir, ignores, what);
    assert_eq!(
        source,
        TreeSource::Memo,
        "{what}: nothing changed, the memo should answer"
    );
    snap
}

fn files_of(dir: &Path, snap: &Snapshot) -> Vec<String> {
    let repo = git2::Repository::open(dir).unwrap();
    let tree = repo.find_tree(snap.tree).unwrap();
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |root, e| {
        if e.kind() != Some(git2::ObjectType::Tree) {
            out.push(format!("{root}{}", e.name().unwrap()));
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

#[test]
fn the_memo_answers_only_for_an_unchanged_work_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git(dir, &["init", "-q", "-b", "main"]);
    write(dir, "a.txt", "aaaa\n");
    write(dir, "src/b.txt", "bbbb\n");
    write(dir, ".gitignore", "build/\n*.log\n");
    write(dir, "build/out.o", "object\n");
    write(dir, "logs/x.log", "log\n");
    std::os::unix::fs::symlink("a.txt", dir.join("link")).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "first"]);
    let none: Vec<String> = Vec::new();

    let first = remember(dir, &none, "a committed tree");
    assert!(!files_of(dir, &first).contains(&"build/out.o".to_string()));

    // A file in a directory that holds only ignored files: its directory changed.
    write(dir, "logs/new.txt", "new\n");
    let (snap, _) = check(dir, &none, "a new file beside ignored ones");
    assert!(files_of(dir, &snap).contains(&"logs/new.txt".to_string()));

    // An edit of the same size, and a new untracked directory.
    remember(dir, &none, "after the new file");
    write(dir, "a.txt", "AAAA\n");
    write(dir, "fresh/dir/c.txt", "c\n");
    let (snap, source) = check(dir, &none, "an edit and a new directory");
    assert_eq!(source, TreeSource::Walked);
    assert!(files_of(dir, &snap).contains(&"fresh/dir/c.txt".to_string()));

    // The tracked set changes while the work tree does not: an ignored file added by force,
    // then a file removed from the index only.
    remember(dir, &none, "after the edit");
    git(dir, &["add", "-f", "build/out.o"]);
    let (snap, _) = check(dir, &none, "an ignored file tracked by force");
    assert!(files_of(dir, &snap).contains(&"build/out.o".to_string()));
    remember(dir, &none, "after git add -f");
    git(dir, &["rm", "-q", "--cached", "build/out.o"]);
    let (snap, _) = check(dir, &none, "an ignored file no longer tracked");
    assert!(!files_of(dir, &snap).contains(&"build/out.o".to_string()));

    // A commit changes the index but not the tracked set or the work tree: the memo answers,
    // with the new index's tree.
    git(dir, &["add", "-A"]);
    remember(dir, &none, "after git add -A");
    git(dir, &["commit", "-qm", "second"]);
    let (_, source) = check(dir, &none, "a commit");
    assert_eq!(
        source,
        TreeSource::Memo,
        "a commit leaves the work tree as it was"
    );

    // The executable bit, a symlink's target, a deletion.
    remember(dir, &none, "after the commit");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("a.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();
    check(dir, &none, "chmod +x");
    remember(dir, &none, "after chmod");
    std::fs::remove_file(dir.join("link")).unwrap();
    std::os::unix::fs::symlink("src/b.txt", dir.join("link")).unwrap();
    check(dir, &none, "a symlink pointed elsewhere");
    remember(dir, &none, "after the symlink");
    std::fs::remove_file(dir.join("src/b.txt")).unwrap();
    let (snap, _) = check(dir, &none, "a deleted file");
    assert!(!files_of(dir, &snap).contains(&"src/b.txt".to_string()));

    // Ignore rules that live outside the work tree, and the [sync] ignore patterns (untracked
    // files only: neither hides a tracked file).
    write(dir, "later/d.txt", "d\n");
    write(dir, "other/e.txt", "e\n");
    let snap = remember(dir, &none, "after the deletion");
    assert!(files_of(dir, &snap).contains(&"later/d.txt".to_string()));
    write(dir, ".git/info/exclude", "later/\n");
    let (snap, _) = check(dir, &none, "a new rule in .git/info/exclude");
    assert!(!files_of(dir, &snap).contains(&"later/d.txt".to_string()));
    remember(dir, &none, "after info/exclude");
    let ignores = vec!["other/".to_string()];
    let (snap, source) = check(dir, &ignores, "[sync] ignore patterns");
    assert_eq!(source, TreeSource::Walked);
    assert!(!files_of(dir, &snap).contains(&"other/e.txt".to_string()));
}

#[test]
fn edits_in_the_same_clock_tick_as_the_snapshot_are_seen() {
    // Edits that keep a file's size, right after a snapshot: on a coarse file-system clock
    // some land in the same tick and leave the same stat data; the memo checks such (racy)
    // files by content, so every snapshot must still match a walk.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    git(dir, &["init", "-q", "-b", "main"]);
    for i in 0..20 {
        write(dir, &format!("f{i}.txt"), "0000\n");
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "first"]);
    let none: Vec<String> = Vec::new();
    remember(dir, &none, "a committed tree");
    let repo = git2::Repository::open(dir).unwrap();
    for round in 0..200 {
        std::fs::write(dir.join("f3.txt"), format!("{:04}\n", round % 10_000)).unwrap();
        let (snap, _) = snapshot::create_traced(&repo, &none).unwrap();
        let blob = repo
            .find_tree(snap.tree)
            .unwrap()
            .get_path(Path::new("f3.txt"))
            .unwrap()
            .id();
        let want = git2::Oid::hash_object(
            git2::ObjectType::Blob,
            format!("{:04}\n", round % 10_000).as_bytes(),
        )
        .unwrap();
        assert_eq!(
            blob, want,
            "round {round}: the snapshot holds an older f3.txt"
        );
    }
}
