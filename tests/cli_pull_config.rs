//! `pull` and `.rclaude.toml` at their edges: a refused `--apply` is an error exit, files the
//! laptop had untracked are not "sandbox edits", hints that work in a repository without
//! commits, and configuration files that are not UTF-8 or are far too large.

mod common;

use common::TestRepo;

const CONFIG: &str = "[sandbox]\nprovider = \"local\"\n";

#[test]
fn a_refused_apply_exits_65_and_leaves_everything_as_it_was() {
    let t = TestRepo::new(CONFIG);
    t.write("a.txt", "base\n");
    t.commit_all("init");
    t.ok(&["up", "--quiet"]);
    t.ok(&["exec", "--", "sh", "-c", "echo sandbox > a.txt"]);
    // A local edit to the same file: applying would lose it.
    t.write("a.txt", "local\n");
    let r = t.rclaude(&["pull", "--apply"]);
    assert_eq!(r.code(), 65, "{}", r.all());
    assert!(r.stderr().contains("--apply refused"), "{}", r.all());
    assert_eq!(t.read("a.txt"), "local\n");
    // The sandbox's work is on the branch all the same.
    assert_eq!(t.git(&["show", "rclaude/main:a.txt"]), "sandbox\n");
}

#[test]
fn files_the_laptop_has_untracked_are_not_sandbox_edits() {
    let t = TestRepo::new(CONFIG);
    t.write("a.txt", "base\n");
    t.commit_all("init");
    t.write("notes.txt", "my untracked notes\n");
    t.ok(&["up", "--quiet"]);
    // Nothing done in the sandbox: nothing to pull.
    let r = t.ok(&["pull"]);
    assert!(r.stderr().contains("nothing new"), "{}", r.all());
    // One real edit there: the branch carries that edit only, and the suggested cherry-pick works.
    t.ok(&["exec", "--", "sh", "-c", "echo edited >> a.txt"]);
    let r = t.ok(&["pull"]);
    assert!(
        r.stderr().contains("cherry-pick --no-commit"),
        "{}",
        r.all()
    );
    let changed = t.git(&["diff", "--name-only", "HEAD", "rclaude/main"]);
    assert_eq!(changed, "a.txt\n");
    t.git(&["cherry-pick", "--no-commit", "rclaude/main"]);
    assert_eq!(t.read("a.txt"), "base\nedited\n");
    assert_eq!(t.read("notes.txt"), "my untracked notes\n");
}

#[test]
fn hints_work_in_a_repository_without_commits() {
    let t = TestRepo::new(CONFIG);
    t.ok(&["up", "--quiet"]);
    t.ok(&["exec", "--", "sh", "-c", "echo made > made.txt"]);
    let r = t.ok(&["pull"]);
    let text = r.all();
    assert!(!text.contains("HEAD"), "{text}");
    assert!(text.contains("git merge rclaude/main"), "{text}");
    // The hint does what it says.
    t.git(&["merge", "-q", "rclaude/main"]);
    assert_eq!(t.read("made.txt"), "made\n");
}

#[test]
fn a_config_that_is_not_utf8_or_is_huge_is_refused_with_where_and_why() {
    let t = TestRepo::new(CONFIG);
    std::fs::write(
        t.path().join(".rclaude.toml"),
        b"[sandbox]\nprovider = \"lo\xffcal\"\n",
    )
    .unwrap();
    let r = t.rclaude(&["status"]);
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(
        r.stderr().contains(".rclaude.toml:2:") && r.stderr().contains("UTF-8"),
        "{}",
        r.all()
    );

    let mut big = String::from("[env]\n");
    while big.len() < 2 * 1024 * 1024 {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(t.path().join(".rclaude.toml"), big).unwrap();
    let r = t.rclaude(&["status"]);
    assert_eq!(r.code(), 78, "{}", r.all());
    assert!(r.stderr().contains("over 1024 KiB"), "{}", r.all());
}
