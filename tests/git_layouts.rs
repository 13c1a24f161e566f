//! Git setups the snapshot must model: a `.git` file pointing elsewhere (separate git dir,
//! `git worktree`), sparse checkout, clean/smudge filters, submodules. Real git, real agents.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{TestRepo, git_env};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_env(Command::new("git").args(args).current_dir(dir))
        .env("GIT_ALLOW_PROTOCOL", "file")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rclaude(dir: &Path, home: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(common::bin());
    c.args(args)
        .current_dir(dir)
        .env("RCLAUDE_HOME", home)
        .env("CI", "true");
    git_env(&mut c);
    c.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const CONFIG: &str = "[sandbox]\nprovider = \"local\"\n";

#[test]
fn a_git_file_pointing_elsewhere_is_a_work_tree_at_its_own_place() {
    let top = tempfile::tempdir().unwrap();
    let home = top.path().join("home");
    let work = top.path().join("work");
    git(
        top.path(),
        &[
            "init",
            "-q",
            "-b",
            "main",
            "--separate-git-dir",
            "store.git",
            "work",
        ],
    );
    assert!(work.join(".git").is_file());
    std::fs::write(work.join(".rclaude.toml"), CONFIG).unwrap();
    std::fs::write(work.join("a.txt"), "committed\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "init"]);
    std::fs::write(work.join("b.txt"), "untracked\n").unwrap();
    ok(rclaude(&work, &home, &["up", "--quiet"]));
    let out = ok(rclaude(
        &work,
        &home,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "cat a.txt b.txt; git status --short",
        ],
    ));
    assert_eq!(out, "committed\nuntracked\n?? b.txt\n");

    // A linked worktree of the same repository: its own work tree, its own sandbox.
    git(&work, &["worktree", "add", "-q", "-b", "feature", "../wt"]);
    let wt = top.path().join("wt");
    std::fs::write(wt.join("c.txt"), "in the worktree\n").unwrap();
    ok(rclaude(&wt, &home, &["up", "--quiet"]));
    let out = ok(rclaude(
        &wt,
        &home,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            "cat c.txt; git branch --show-current",
        ],
    ));
    assert_eq!(out, "in the worktree\nfeature\n");
    ok(rclaude(&wt, &home, &["down", "--yes", "--discard"]));
    ok(rclaude(&work, &home, &["down", "--yes", "--discard"]));
}

#[test]
fn files_outside_a_sparse_checkout_are_not_synced_as_deletions() {
    let t = TestRepo::new(CONFIG);
    t.write("keep/in.txt", "in the cone\n");
    t.write("away/out.txt", "outside the cone\n");
    t.commit_all("init");
    t.git(&["sparse-checkout", "set", "keep"]);
    assert!(!t.path().join("away/out.txt").exists());
    t.ok(&["up", "--quiet"]);
    // The sandbox sees the whole tree, unchanged: nothing to commit.
    let out = t.ok(&[
        "exec",
        "--",
        "sh",
        "-c",
        "cat away/out.txt; git status --porcelain",
    ]);
    assert_eq!(out.stdout(), "outside the cone\n");
    // An agent's `git add -A && git commit` there commits no deletion…
    t.ok(&[
        "exec",
        "--",
        "sh",
        "-c",
        "echo more >> keep/in.txt && git add -A && git -c user.email=a@b -c user.name=a commit -qm work",
    ]);
    // …so the pulled branch still has the files outside the cone.
    t.ok(&["pull"]);
    let files = t.git(&["ls-tree", "-r", "--name-only", "rclaude/main"]);
    assert!(files.contains("away/out.txt"), "{files}");
    assert_eq!(
        t.git(&["show", "rclaude/main:keep/in.txt"]),
        "in the cone\nmore\n"
    );
}

#[test]
fn clean_filters_run_so_the_sandbox_gets_the_stored_form() {
    let t = TestRepo::new(CONFIG);
    // A rot13 "encryption" filter, configured like git-crypt or git-lfs would be.
    t.git(&["config", "filter.rot13.clean", "tr A-Za-z N-ZA-Mn-za-m"]);
    t.git(&["config", "filter.rot13.smudge", "tr A-Za-z N-ZA-Mn-za-m"]);
    t.write(".gitattributes", "*.secret filter=rot13\n");
    t.write("a.secret", "Hello\n");
    t.commit_all("init");
    assert_eq!(t.git(&["cat-file", "-p", "HEAD:a.secret"]), "Uryyb\n");
    t.ok(&["up", "--quiet"]);
    // The sandbox has no filter: it holds the stored (clean) form and sees no change.
    let out = t.ok(&[
        "exec",
        "--",
        "sh",
        "-c",
        "cat a.secret; git status --porcelain",
    ]);
    assert_eq!(out.stdout(), "Uryyb\n");
    // An edit travels cleaned too.
    t.write("a.secret", "Hello again\n");
    t.ok(&["sync"]);
    let out = t.ok(&["exec", "--", "cat", "a.secret"]);
    assert_eq!(out.stdout(), "Uryyb ntnva\n");
}

#[test]
fn every_sync_says_which_submodules_are_not_synced() {
    let top = tempfile::tempdir().unwrap();
    let lib = top.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    git(&lib, &["init", "-q", "-b", "main"]);
    std::fs::write(lib.join("lib.txt"), "library\n").unwrap();
    git(&lib, &["add", "-A"]);
    git(&lib, &["commit", "-q", "-m", "lib"]);
    let t = TestRepo::new(CONFIG);
    t.write("README", "app\n");
    t.commit_all("init");
    let out = git_env(Command::new("git").args([
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        lib.to_str().unwrap(),
        "vendor/lib",
    ]))
    .current_dir(t.path())
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.commit_all("add lib");
    for args in [&["up"][..], &["sync"][..]] {
        let r = t.ok(args);
        assert!(
            r.stderr().contains("vendor/lib") && r.stderr().contains("submodule update --init"),
            "{args:?}: {}",
            r.all()
        );
    }
}

#[test]
fn a_symlinked_directory_replaced_by_a_real_one_syncs() {
    let t = TestRepo::new(CONFIG);
    t.write("real/f.txt", "target\n");
    std::os::unix::fs::symlink("real", t.path().join("link")).unwrap();
    t.commit_all("init");
    t.ok(&["up", "--quiet"]);
    std::fs::remove_file(t.path().join("link")).unwrap();
    t.write("link/f.txt", "a real directory now\n");
    t.ok(&["sync"]);
    t.commit_all("a directory");
    for args in [&["sync"][..], &["exec", "--", "true"][..], &["up"][..]] {
        t.ok(args);
    }
    let out = t.ok(&[
        "exec",
        "--",
        "sh",
        "-c",
        "cat link/f.txt real/f.txt; test -L link || echo dir",
    ]);
    assert_eq!(out.stdout(), "a real directory now\ntarget\ndir\n");
}
