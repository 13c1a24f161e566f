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
    assert_eq!(
        env.lgit(&["diff", "--cached"]),
        env.sgit(&["diff", "--cached"])
    );
    assert_eq!(env.lgit(&["diff"]), env.sgit(&["diff"]));
    assert_eq!(
        r.state.identity,
        std::fs::read_to_string(env.sbx.join(".git/rclaude/identity"))
            .unwrap()
            .trim()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_leaves_user_index_stash_refs_and_files_untouched() {
    let env = Env::new();
    env.write("README.md", "stash me\n");
    env.lgit(&["stash", "push", "-q", "-m", "kept"]);
    env.write("src/lib.rs", "staged\n");
    env.lgit(&["add", "src/lib.rs"]);
    env.write("src/main.rs", "unstaged\n");
    env.write("untracked.txt", "u\n");
    env.write("a.log", "ignored\n");
    let status_before = status(&env.local);
    let index_before = std::fs::read(env.local.join(".git/index")).unwrap();
    let index_mtime = std::fs::metadata(env.local.join(".git/index"))
        .unwrap()
        .modified()
        .unwrap();
    let stash_before = env.lgit(&["stash", "list", "--format=%H %gs"]);
    let refs_before = user_refs(&env.local);
    let files_before = all_files(&env.local);

    let r = env.push(None).await;
    let r2 = env.push(Some(&r.state)).await;
    assert!(r2.skipped_nothing_new);

    assert_eq!(
        std::fs::read(env.local.join(".git/index")).unwrap(),
        index_before,
        "index bytes changed"
    );
    assert_eq!(
        std::fs::metadata(env.local.join(".git/index"))
            .unwrap()
            .modified()
            .unwrap(),
        index_mtime
    );
    assert_eq!(
        env.lgit(&["stash", "list", "--format=%H %gs"]),
        stash_before
    );
    assert_eq!(user_refs(&env.local), refs_before);
    assert_eq!(all_files(&env.local), files_before);
    assert_eq!(status(&env.local), status_before);
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_new_sends_nothing_and_applies_nothing() {
    let env = Env::new();
    env.write("wip.txt", "x\n");
    let r1 = env.push(None).await;
    let uploads = env
        .sandbox
        .uploads
        .load(std::sync::atomic::Ordering::SeqCst);
    let applies = env.sandbox.execs_with("RC_SNAPSHOT");
    assert_eq!((uploads, applies), (1, 1));

    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.skipped_nothing_new);
    assert_eq!(r2.sent_bytes, 0);
    assert_eq!(
        env.sandbox
            .uploads
            .load(std::sync::atomic::Ordering::SeqCst),
        uploads
    );
    assert_eq!(env.sandbox.execs_with("RC_SNAPSHOT"), applies);
    assert_eq!(r2.state, r1.state);

    // Without state (lost session file) the sandbox's own record still says "nothing new".
    let r3 = env.push(None).await;
    assert!(r3.skipped_nothing_new);
    assert_eq!(
        env.sandbox
            .uploads
            .load(std::sync::atomic::Ordering::SeqCst),
        uploads
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_propagate_and_sandbox_ignored_files_are_untouched() {
    let env = Env::new();
    env.write("scratch.txt", "untracked, to be deleted\n");
    let r1 = env.push(None).await;
    assert!(env.sbx.join("scratch.txt").exists());
    // Build output in the sandbox (ignored on both sides).
    env.swrite("target/release/app", "built in the sandbox\n");
    env.swrite("node_modules/x/index.js", "dep\n");
    env.swrite("server.log", "log\n");

    std::fs::remove_file(env.local.join("scratch.txt")).unwrap();
    std::fs::remove_file(env.local.join("docs/guide.md")).unwrap();
    env.lgit(&["rm", "-q", "--cached", "src/lib.rs"]);
    std::fs::remove_file(env.local.join("src/lib.rs")).unwrap();
    let r2 = env.push(Some(&r1.state)).await;
    assert!(
        r2.saved.is_empty(),
        "ignored files must not be saved: {:?}",
        r2.saved
    );
    assert!(!env.sbx.join("scratch.txt").exists());
    assert!(!env.sbx.join("docs/guide.md").exists());
    assert!(!env.sbx.join("src/lib.rs").exists());
    assert_eq!(env.sread("target/release/app"), b"built in the sandbox\n");
    assert_eq!(env.sread("node_modules/x/index.js"), b"dep\n");
    assert_eq!(env.sread("server.log"), b"log\n");
    assert!(r2.files_changed >= 3, "{}", r2.files_changed);
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_edits_survive_a_push_in_both_places() {
    let env = Env::new();
    let r1 = env.push(None).await;
    // The agent edits, creates and deletes files in the sandbox...
    env.swrite("src/main.rs", "fn main() { agent(); }\n");
    env.swrite("src/agent.rs", "pub fn agent() {}\n");
    std::fs::remove_file(env.sbx.join("README.md")).unwrap();
    // ...while the user edits another file here.
    env.write("src/lib.rs", "pub fn one() -> u32 { 11 }\n");
    let r2 = env.push(Some(&r1.state)).await;

    assert_eq!(r2.saved.len(), 1, "{}", r2.summary());
    let saved = &r2.saved[0];
    assert!(
        saved.name.starts_with("refs/rclaude/saved/"),
        "{}",
        saved.name
    );
    assert!(saved.local);
    assert_eq!(saved.kinds, vec!["uncommitted edits".to_string()]);
    assert!(r2.summary().contains(&saved.name));
    // The same commit exists in the sandbox and here, with exactly the sandbox's content.
    assert_eq!(
        saved_refs(&env.sbx),
        vec![(saved.sandbox_name.clone(), saved.oid.clone())]
    );
    assert_eq!(
        saved_refs(&env.local),
        vec![(saved.name.clone(), saved.oid.clone())]
    );
    assert_eq!(
        show(&env.local, &saved.name, "src/main.rs"),
        b"fn main() { agent(); }\n"
    );
    assert_eq!(
        show(&env.local, &saved.name, "src/agent.rs"),
        b"pub fn agent() {}\n"
    );
    assert!(
        !git_try(
            &env.local,
            &["cat-file", "-e", &format!("{}:README.md", saved.name)]
        )
        .0
    );
    assert_eq!(
        show(&env.local, &saved.name, "src/lib.rs"),
        b"pub fn one() -> u32 {\n    1\n}\n"
    );
    assert_eq!(
        git_t(&env.local, &["rev-parse", &format!("{}^", saved.name)]),
        git_t(&env.local, &["rev-parse", "HEAD"])
    );
    // And the sandbox now matches the laptop.
    env.assert_in_sync();
    assert!(!env.sbx.join("src/agent.rs").exists());

    // The next push does not save anything again.
    let r3 = env.push(Some(&r2.state)).await;
    assert!(r3.skipped_nothing_new);
    assert!(r3.saved.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_commits_survive_a_push() {
    let env = Env::new();
    let r1 = env.push(None).await;
    env.swrite("feature.txt", "from the agent\n");
    env.sgit(&["add", "feature.txt"]);
    env.sgit(&["commit", "-q", "-m", "agent commit"]);
    let agent_commit = env.sgit(&["rev-parse", "HEAD"]).trim().to_string();
    env.write("local.txt", "local\n");
    let r2 = env.push(Some(&r1.state)).await;
    assert_eq!(r2.saved.len(), 1, "{}", r2.summary());
    assert_eq!(
        r2.saved[0].oid, agent_commit,
        "a commit-only save is the commit itself"
    );
    assert_eq!(
        r2.saved[0].kinds,
        vec!["commits made in the sandbox".to_string()]
    );
    assert_eq!(
        git_t(&env.local, &["log", "-1", "--format=%s", &r2.saved[0].name]),
        "agent commit"
    );
    assert_eq!(
        show(&env.local, &r2.saved[0].name, "feature.txt"),
        b"from the agent\n"
    );
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_commits_and_edits_and_staging_are_saved_as_one_chain() {
    let env = Env::new();
    let r1 = env.push(None).await;
    env.swrite("a.txt", "committed\n");
    env.sgit(&["add", "a.txt"]);
    env.sgit(&["commit", "-q", "-m", "agent a"]);
    env.swrite("a.txt", "staged\n");
    env.sgit(&["add", "a.txt"]);
    env.swrite("a.txt", "in work tree\n");
    env.write("README.md", "local change\n");
    let r2 = env.push(Some(&r1.state)).await;
    assert_eq!(r2.saved.len(), 1);
    let s = &r2.saved[0].name;
    assert_eq!(show(&env.local, s, "a.txt"), b"in work tree\n");
    assert_eq!(show(&env.local, &format!("{s}~1"), "a.txt"), b"staged\n");
    assert_eq!(show(&env.local, &format!("{s}~2"), "a.txt"), b"committed\n");
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_history_force_updates_the_sandbox() {
    let env = Env::new();
    let r1 = env.push(None).await;
    env.write("README.md", "amended\n");
    env.lgit(&["commit", "-q", "-a", "--amend", "-m", "second, amended"]);
    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    env.assert_in_sync();
    assert!(r2.prerequisites > 0, "incremental after amend");
    env.lgit(&["reset", "-q", "--hard", "HEAD~1"]);
    let r3 = env.push(Some(&r2.state)).await;
    assert!(r3.saved.is_empty());
    assert!(r3.sent_bytes > 0);
    env.assert_in_sync();
    // rebase onto a new root-side commit
    env.lgit(&["checkout", "-q", "-b", "topic"]);
    env.write("t.txt", "topic\n");
    env.lgit(&["add", "t.txt"]);
    env.lgit(&["commit", "-q", "-m", "topic"]);
    env.lgit(&["checkout", "-q", "main"]);
    env.write("m.txt", "main\n");
    env.lgit(&["add", "m.txt"]);
    env.lgit(&["commit", "-q", "-m", "main moves"]);
    env.lgit(&["checkout", "-q", "topic"]);
    let r4 = env.push(Some(&r3.state)).await;
    env.assert_in_sync();
    env.lgit(&["rebase", "-q", "main"]);
    let r5 = env.push(Some(&r4.state)).await;
    assert!(r5.saved.is_empty(), "{}", r5.summary());
    env.assert_in_sync();
    assert_eq!(
        env.sgit(&["log", "--format=%H"]),
        env.lgit(&["log", "--format=%H"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_sandbox_gets_a_complete_bundle_and_nothing_local_changes() {
    let env = Env::new();
    env.write("wip.txt", "wip\n");
    let r1 = env.push(None).await;
    std::fs::remove_dir_all(env.sbx.parent().unwrap()).unwrap();
    let refs = user_refs(&env.local);
    let files = all_files(&env.local);
    let index = std::fs::read(env.local.join(".git/index")).unwrap();
    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.sandbox_recreated);
    assert_eq!(r2.prerequisites, 0);
    assert_ne!(r2.state.identity, r1.state.identity);
    assert!(r2.saved.is_empty());
    env.assert_in_sync();
    assert_eq!(user_refs(&env.local), refs);
    assert_eq!(all_files(&env.local), files);
    assert_eq!(std::fs::read(env.local.join(".git/index")).unwrap(), index);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_change_alone_means_a_complete_bundle() {
    let env = Env::new();
    let r1 = env.push(None).await;
    let mut stale = r1.state.clone();
    stale.identity = "00000000-0000-0000-0000-000000000000".into();
    env.write("x.txt", "x\n");
    let r2 = env.push(Some(&stale)).await;
    assert!(r2.sandbox_recreated);
    assert_eq!(r2.prerequisites, 0);
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unborn_repository() {
    let env = Env::empty();
    env.write("a.txt", "staged\n");
    env.lgit(&["add", "a.txt"]);
    env.write("b.txt", "untracked\n");
    let r1 = env.push(None).await;
    assert_eq!(head_desc(&env.sbx), "unborn refs/heads/main");
    assert!(r1.head_desc.contains("no commits"), "{}", r1.head_desc);
    env.assert_in_sync();
    // First commit afterwards.
    env.lgit(&["add", "-A"]);
    env.lgit(&["commit", "-q", "-m", "root"]);
    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    env.assert_in_sync();
    // Empty repository, nothing at all.
    let e2 = Env::empty();
    e2.push(None).await;
    e2.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_head_and_branch_switches() {
    let env = Env::new();
    env.lgit(&["checkout", "-q", "--detach", "HEAD~1"]);
    env.write("d.txt", "detached work\n");
    let r1 = env.push(None).await;
    assert!(head_desc(&env.sbx).starts_with("detached "));
    env.assert_in_sync();
    std::fs::remove_file(env.local.join("d.txt")).unwrap();
    env.lgit(&["checkout", "-q", "-b", "feature"]);
    let r2 = env.push(Some(&r1.state)).await;
    assert!(head_desc(&env.sbx).starts_with("branch refs/heads/feature "));
    env.assert_in_sync();
    env.lgit(&["checkout", "-q", "main"]);
    env.push(Some(&r2.state)).await;
    env.assert_in_sync();
    assert_eq!(
        env.sgit(&["rev-parse", "feature"]),
        env.lgit(&["rev-parse", "feature"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_file_names_exec_bits_and_symlinks() {
    let env = Env::new();
    let names = [
        "with space.txt",
        "ünïcødé ✓.txt",
        "-leading-dash",
        "--double",
        "new\nline",
        "tab\there",
        "quote\"s'.txt",
        "back\\slash",
    ];
    for n in names {
        env.write(n, format!("content of {n:?}\n"));
    }
    env.write("bin/run.sh", "#!/bin/sh\necho hi\n");
    set_exec(&env.local.join("bin/run.sh"));
    std::os::unix::fs::symlink("../README.md", env.local.join("docs/readme-link")).unwrap();
    std::os::unix::fs::symlink("missing-target", env.local.join("dangling")).unwrap();
    env.lgit(&["add", "-A"]);
    env.lgit(&["commit", "-q", "-m", "odd names"]);
    env.write("untracked -dash", "u\n");
    env.write("bin/tool", "#!/bin/sh\n");
    set_exec(&env.local.join("bin/tool"));
    let r1 = env.push(None).await;
    env.assert_in_sync();
    assert_eq!(env.lgit(&["ls-files", "-s"]), env.sgit(&["ls-files", "-s"]));
    let link = std::fs::read_link(env.sbx.join("docs/readme-link")).unwrap();
    assert_eq!(link.to_str(), Some("../README.md"));
    // Mode-only change and removal of odd names propagate.
    let mut p = std::fs::metadata(env.local.join("bin/run.sh"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o644);
    std::fs::set_permissions(env.local.join("bin/run.sh"), p).unwrap();
    std::fs::remove_file(env.local.join("new\nline")).unwrap();
    std::fs::remove_file(env.local.join("-leading-dash")).unwrap();
    env.push(Some(&r1.state)).await;
    env.assert_in_sync();
    assert!(!env.sbx.join("new\nline").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submodules_are_recorded_as_gitlinks() {
    let env = Env::new();
    let sub = env.tmp.path().join("subrepo");
    std::fs::create_dir_all(&sub).unwrap();
    git(&sub, &["init", "-q"]);
    write(&sub.join("lib.txt"), "sub\n");
    git(&sub, &["add", "-A"]);
    git(&sub, &["commit", "-q", "-m", "sub"]);
    let sub_head = git_t(&sub, &["rev-parse", "HEAD"]);
    env.lgit(&[
        "submodule",
        "add",
        "-q",
        sub.to_str().unwrap(),
        "vendor/sub",
    ]);
    env.lgit(&["commit", "-q", "-m", "add submodule"]);
    let r = env.push(None).await;
    assert!(r.saved.is_empty());
    let tree = env.sgit(&["ls-tree", "HEAD", "vendor/sub"]);
    assert!(
        tree.starts_with(&format!("160000 commit {sub_head}")),
        "{tree}"
    );
    assert_eq!(
        env.sgit(&["ls-files", "-s", "vendor/sub"]),
        env.lgit(&["ls-files", "-s", "vendor/sub"])
    );
    assert!(env.sbx.join(".gitmodules").exists());
    assert!(
        !env.sbx.join("vendor/sub/lib.txt").exists(),
        "submodule contents are not sent"
    );
    // A new commit checked out in the submodule shows up as a gitlink change.
    let subdir = env.local.join("vendor/sub");
    write(&subdir.join("lib.txt"), "sub 2\n");
    git(&subdir, &["commit", "-q", "-a", "-m", "sub 2"]);
    let sub2 = git_t(&subdir, &["rev-parse", "HEAD"]);
    let r2 = env.push(Some(&r.state)).await;
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    let idx = env.sgit(&["ls-files", "-s", "vendor/sub"]);
    assert!(
        env.sgit(&["ls-tree", "refs/rclaude/snapshot", "vendor/sub"])
            .contains(&sub2),
        "{idx}"
    );
    // The submodule's own objects never travel; nothing else is disturbed.
    let r3 = env.push(Some(&r2.state)).await;
    assert!(r3.skipped_nothing_new);
    assert!(
        rclaude::gitsync::push(
            &env.local,
            &env.sandbox,
            Some(&r3.state),
            &rclaude::gitsync::PushOptions {
                submodules: true,
                ..Default::default()
            },
            &rclaude::gitsync::NoProgress
        )
        .await
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_ignores_apply_on_both_sides() {
    let env = Env::new();
    env.write("secrets/key.pem", "local secret\n");
    env.write("data/big.bin", "big\n");
    let opts = rclaude::gitsync::PushOptions {
        extra_ignores: vec!["secrets/".into(), "/data/*.bin".into()],
        ..Default::default()
    };
    let r1 = env.push_with(None, &opts).await.unwrap();
    assert!(!env.sbx.join("secrets").exists());
    assert!(!env.sbx.join("data").exists());
    // Files the sandbox creates under the same patterns are neither saved nor deleted.
    env.swrite("secrets/sandbox.pem", "sandbox secret\n");
    env.write("README.md", "changed\n");
    let r2 = env.push_with(Some(&r1.state), &opts).await.unwrap();
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    assert_eq!(env.sread("secrets/sandbox.pem"), b"sandbox secret\n");
    assert_eq!(env.sread("README.md"), b"changed\n");
    // Changing the patterns alone is a change to push.
    let r3 = env
        .push_with(Some(&r2.state), &Default::default())
        .await
        .unwrap();
    assert!(!r3.skipped_nothing_new);
    assert_eq!(env.sread("secrets/key.pem"), b"local secret\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_second_same_size_edit_is_seen() {
    let env = Env::new();
    let r1 = env.push(None).await;
    for i in 0..5 {
        env.write("src/lib.rs", format!("version {i}\n"));
        env.lgit(&["add", "src/lib.rs"]);
        env.write("src/lib.rs", format!("VERSION {i}\n"));
        let r = env.push(Some(&r1.state)).await;
        assert_eq!(
            env.sread("src/lib.rs"),
            format!("VERSION {i}\n").as_bytes(),
            "iteration {i}: {}",
            r.summary()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_change_in_a_long_history_sends_a_few_kib() {
    let env = Env::empty();
    // 1,200 commits touching 300 files, written with fast-import.
    let mut script = String::new();
    for i in 0..1200u32 {
        script.push_str(&format!(
            "commit refs/heads/main\ncommitter T <t@e> {} +0000\ndata <<EOF\ncommit {i}\nEOF\n",
            1_600_000_000 + i
        ));
        let f = i % 300;
        let body: String = (0..40)
            .map(|l| format!("file {f} line {l} rev {i}\n"))
            .collect();
        script.push_str(&format!(
            "M 100644 inline src/mod{f}/file{f}.txt\ndata {}\n{body}\n",
            body.len()
        ));
    }
    let mut child = git_cmd(&env.local, &["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    env.lgit(&["reset", "-q", "--hard", "main"]);
    assert_eq!(env.lgit(&["rev-list", "--count", "HEAD"]).trim(), "1200");

    let r1 = env.push(None).await;
    env.assert_in_sync();
    let path = env.local.join("src/mod7/file7.txt");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replacen("line 3 ", "line three ", 1);
    std::fs::write(&path, text).unwrap();
    let r2 = env.push(Some(&r1.state)).await;
    eprintln!(
        "full bundle: {} bytes, {} objects; one-line change: {} bytes, {} objects",
        r1.sent_bytes, r1.objects, r2.sent_bytes, r2.objects
    );
    assert!(
        r2.sent_bytes < 16 * 1024,
        "one-line change sent {} bytes",
        r2.sent_bytes
    );
    assert!(r2.objects <= 8, "{} objects", r2.objects);
    env.assert_in_sync();
    // And a commit of it: still small.
    env.lgit(&["commit", "-q", "-a", "-m", "one line"]);
    let r3 = env.push(Some(&r2.state)).await;
    eprintln!(
        "commit of it: {} bytes, {} objects",
        r3.sent_bytes, r3.objects
    );
    assert!(r3.sent_bytes < 16 * 1024, "{}", r3.sent_bytes);
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_repositories_do_not_break_a_sync() {
    let env = Env::new();
    // An unregistered clone inside the work tree, here...
    let nested = env.local.join("third_party/dep");
    std::fs::create_dir_all(&nested).unwrap();
    git(&nested, &["init", "-q"]);
    write(&nested.join("dep.txt"), "dep\n");
    git(&nested, &["add", "-A"]);
    git(&nested, &["commit", "-q", "-m", "dep"]);
    let r1 = env.push(None).await;
    assert_eq!(r1.skipped_nested, vec!["third_party/dep".to_string()]);
    assert!(r1.summary().contains("third_party/dep"), "{}", r1.summary());
    assert!(!env.sbx.join("third_party").exists());
    // ...and one the agent makes in the sandbox.
    let snested = env.sbx.join("tools/x");
    std::fs::create_dir_all(&snested).unwrap();
    git(&snested, &["init", "-q"]);
    write(&snested.join("x.txt"), "x\n");
    git(&snested, &["add", "-A"]);
    git(&snested, &["commit", "-q", "-m", "x"]);
    env.write("README.md", "changed\n");
    let r2 = env.push(Some(&r1.state)).await;
    assert_eq!(env.sread("README.md"), b"changed\n");
    // The nested repository in the sandbox is left alone (its files are its own repository's).
    assert_eq!(std::fs::read(snested.join("x.txt")).unwrap(), b"x\n");
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    // Pull does not pick it up either.
    let p = env
        .pull_with(Some(&r2.state), &Default::default())
        .await
        .unwrap();
    assert_eq!((p.commits, p.files_changed), (0, 0), "{}", p.summary());
    assert!(p.summary().contains("nothing new"), "{}", p.summary());
    assert!(p.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newly_ignored_sandbox_files_are_left_alone() {
    let env = Env::new();
    let r1 = env.push(None).await;
    env.swrite("dist/bundle.js", "built in the sandbox\n");
    env.write(".gitignore", "target/\n*.log\nnode_modules/\ndist/\n");
    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    assert_eq!(env.sread("dist/bundle.js"), b"built in the sandbox\n");
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_into_a_non_empty_directory_saves_what_was_there() {
    let env = Env::new();
    env.write(".gitignore", "target/\n.env\n");
    env.lgit(&["commit", "-q", "-am", "ignore .env"]);
    env.swrite(".env", "SECRET=sandbox\n");
    env.swrite("notes.txt", "notes made before the first sync\n");
    env.swrite("README.md", "pre-existing readme\n");
    let r = env.push(None).await;
    assert_eq!(r.saved.len(), 1, "{}", r.summary());
    let s = &r.saved[0].name;
    assert_eq!(
        show(&env.local, s, "notes.txt"),
        b"notes made before the first sync\n"
    );
    assert_eq!(show(&env.local, s, "README.md"), b"pre-existing readme\n");
    assert!(
        !git_try(&env.local, &["cat-file", "-e", &format!("{s}:.env")]).0,
        "ignored files are not saved"
    );
    assert_eq!(
        env.sread(".env"),
        b"SECRET=sandbox\n",
        "ignored files are untouched"
    );
    env.assert_in_sync();
}

/// Records progress calls.
#[derive(Default)]
struct Recorder {
    stages: std::sync::Mutex<Vec<String>>,
    max_bytes: std::sync::atomic::AtomicU64,
    objects_total: std::sync::atomic::AtomicU64,
}

impl rclaude::gitsync::SyncProgress for Recorder {
    fn stage(&self, name: &str) {
        self.stages.lock().unwrap().push(name.to_string());
    }
    fn objects(&self, _done: u64, total: u64) {
        self.objects_total
            .fetch_max(total, std::sync::atomic::Ordering::SeqCst);
    }
    fn bytes(&self, done: u64, _total: Option<u64>) {
        self.max_bytes
            .fetch_max(done, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reports_stages_objects_and_bytes() {
    let env = Env::new();
    let rec = Recorder::default();
    let r = rclaude::gitsync::push(&env.local, &env.sandbox, None, &Default::default(), &rec)
        .await
        .unwrap();
    let stages = rec.stages.lock().unwrap().clone();
    for s in ["snapshot", "query", "bundle", "upload", "apply"] {
        assert!(stages.iter().any(|x| x == s), "{s} missing from {stages:?}");
    }
    assert_eq!(
        rec.max_bytes.load(std::sync::atomic::Ordering::SeqCst),
        r.sent_bytes
    );
    assert_eq!(
        rec.objects_total.load(std::sync::atomic::Ordering::SeqCst),
        r.objects
    );

    env.swrite("x.txt", "x".repeat(10_000));
    env.sgit(&["add", "-A"]);
    env.sgit(&["commit", "-q", "-m", "x"]);
    let rec = Recorder::default();
    let p = rclaude::gitsync::pull(
        &env.local,
        &env.sandbox,
        Some(&r.state),
        &Default::default(),
        &rec,
    )
    .await
    .unwrap();
    let stages = rec.stages.lock().unwrap().clone();
    for s in ["export", "download", "index"] {
        assert!(stages.iter().any(|x| x == s), "{s} missing from {stages:?}");
    }
    assert_eq!(
        rec.max_bytes.load(std::sync::atomic::Ordering::SeqCst),
        p.received_bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicted_index_and_linked_worktree() {
    let env = Env::new();
    env.lgit(&["checkout", "-q", "-b", "other"]);
    env.write("README.md", "other\n");
    env.lgit(&["commit", "-q", "-am", "other"]);
    env.lgit(&["checkout", "-q", "main"]);
    env.write("README.md", "main\n");
    env.lgit(&["commit", "-q", "-am", "main"]);
    assert!(
        !git_try(&env.local, &["merge", "-q", "other"]).0,
        "a conflict"
    );
    let r = env.push(None).await;
    assert!(r.index_conflicts);
    assert!(r.summary().contains("conflicts"), "{}", r.summary());
    assert_eq!(
        env.sread("README.md"),
        env.read("README.md"),
        "conflict markers travel as they are"
    );
    env.lgit(&["merge", "--abort"]);

    // A linked worktree syncs its own HEAD, index and files.
    let wt = env.tmp.path().join("linked wt");
    env.lgit(&["worktree", "add", "-q", wt.to_str().unwrap(), "other"]);
    write(&wt.join("wt-only.txt"), "from the linked worktree\n");
    let sbx2 = env.tmp.path().join("sandbox2");
    let sandbox2 = DirSandbox::new(&sbx2);
    let r2 = rclaude::gitsync::push(
        &wt,
        &sandbox2,
        None,
        &Default::default(),
        &rclaude::gitsync::NoProgress,
    )
    .await
    .unwrap();
    assert!(r2.head_desc.starts_with("other at "), "{}", r2.head_desc);
    assert_eq!(worktree_files(&wt), worktree_files(&sbx2));
    assert_eq!(status(&wt), status(&sbx2));
    assert_eq!(head_desc(&wt), head_desc(&sbx2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_sandbox_is_pulled_as_rclaude_detached() {
    let env = Env::new();
    let r = env.push(None).await;
    env.sgit(&["checkout", "-q", "--detach"]);
    env.swrite("d.txt", "detached\n");
    env.sgit(&["add", "-A"]);
    env.sgit(&["commit", "-q", "-m", "on a detached head"]);
    let p = env
        .pull_with(Some(&r.state), &Default::default())
        .await
        .unwrap();
    assert_eq!(p.branch.as_deref(), Some("rclaude/detached"));
    assert_eq!(p.sandbox_branch, None);
    assert_eq!(p.commits, 1);
    // And a push saves that detached commit before re-attaching the sandbox to main.
    env.write("README.md", "local\n");
    let r2 = env.push(Some(&r.state)).await;
    assert!(
        r2.saved.is_empty(),
        "the laptop already has it (pulled): {}",
        r2.summary()
    );
    assert!(head_desc(&env.sbx).starts_with("branch refs/heads/main "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_tips_gone_here_mean_a_complete_bundle() {
    let env = Env::new();
    let r1 = env.push(None).await;
    env.write("README.md", "amended\n");
    env.lgit(&["commit", "-q", "-a", "--amend", "-m", "amended"]);
    // Everything the sandbox holds disappears from this repository.
    env.lgit(&["reflog", "expire", "--expire=now", "--all"]);
    env.lgit(&["gc", "-q", "--prune=now"]);
    let old = r1.state.snapshot.clone().unwrap();
    assert!(
        !git_try(&env.local, &["cat-file", "-e", &old]).0,
        "old snapshot pruned"
    );
    let r2 = env.push(Some(&r1.state)).await;
    assert!(r2.saved.is_empty(), "{}", r2.summary());
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shallow_clone() {
    let env = Env::new();
    let shallow = env.tmp.path().join("shallow");
    git(
        env.tmp.path(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &format!("file://{}", env.local.display()),
            shallow.to_str().unwrap(),
        ],
    );
    write(&shallow.join("x.txt"), "x\n");
    let sbx = env.tmp.path().join("sandbox-shallow");
    let sandbox = DirSandbox::new(&sbx);
    let res = rclaude::gitsync::push(
        &shallow,
        &sandbox,
        None,
        &Default::default(),
        &rclaude::gitsync::NoProgress,
    )
    .await;
    let r = res.unwrap();
    assert_eq!(worktree_files(&shallow), worktree_files(&sbx));
    assert_eq!(head_desc(&shallow), head_desc(&sbx));
    assert_eq!(status(&shallow), status(&sbx));
    // Both ways, incrementally.
    write(&sbx.join("y.txt"), "from the sandbox\n");
    git(&sbx, &["add", "-A"]);
    git(
        &sbx,
        &["commit", "-q", "-m", "sandbox on a shallow history"],
    );
    let p = rclaude::gitsync::pull(
        &shallow,
        &sandbox,
        Some(&r.state),
        &Default::default(),
        &rclaude::gitsync::NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(
        show(&shallow, p.branch.as_deref().unwrap(), "y.txt"),
        b"from the sandbox\n"
    );
    std::fs::remove_file(shallow.join("x.txt")).unwrap();
    git(&shallow, &["merge", "-q", "--ff-only", "rclaude/main"]);
    let r2 = rclaude::gitsync::push(
        &shallow,
        &sandbox,
        Some(&r.state),
        &Default::default(),
        &rclaude::gitsync::NoProgress,
    )
    .await
    .unwrap();
    assert!(r2.saved.is_empty());
    assert_eq!(worktree_files(&shallow), worktree_files(&sbx));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_sandbox_file_in_the_way_is_saved_before_being_replaced() {
    let env = Env::new();
    let r1 = env.push(None).await;
    // The sandbox has its own (ignored) config.log; the laptop then force-adds one.
    env.swrite("config.log", "sandbox's own log config\n");
    env.write("config.log", "laptop's tracked config\n");
    env.lgit(&["add", "-f", "config.log"]);
    let r2 = env.push(Some(&r1.state)).await;
    assert_eq!(r2.saved.len(), 1, "{}", r2.summary());
    assert_eq!(
        show(&env.local, &r2.saved[0].name, "config.log"),
        b"sandbox's own log config\n"
    );
    assert_eq!(env.sread("config.log"), b"laptop's tracked config\n");
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_and_directory_swaps() {
    let env = Env::new();
    let r1 = env.push(None).await;
    // The agent turns a file into a directory...
    std::fs::remove_file(env.sbx.join("docs/guide.md")).unwrap();
    env.swrite("docs/guide.md/part1.md", "agent part 1\n");
    // ...while the laptop turns a directory into a file.
    std::fs::remove_dir_all(env.local.join("src")).unwrap();
    env.write("src", "now a file\n");
    let r2 = env.push(Some(&r1.state)).await;
    assert_eq!(r2.saved.len(), 1, "{}", r2.summary());
    assert_eq!(
        show(&env.local, &r2.saved[0].name, "docs/guide.md/part1.md"),
        b"agent part 1\n"
    );
    env.assert_in_sync();
    assert_eq!(env.sread("src"), b"now a file\n");
    assert_eq!(env.sread("docs/guide.md"), b"guide\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_sandbox_directory_in_the_way_stops_the_sync_without_loss() {
    let env = Env::new();
    let r1 = env.push(None).await;
    env.swrite("node_modules/dep/index.js", "installed in the sandbox\n");
    env.write("node_modules", "the laptop tracks a file with that name\n");
    env.lgit(&["add", "-f", "node_modules"]);
    let err = env
        .push_with(Some(&r1.state), &Default::default())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("node_modules"), "{err}");
    assert!(err.to_string().contains("nothing was lost"), "{err}");
    assert_eq!(
        env.sread("node_modules/dep/index.js"),
        b"installed in the sandbox\n"
    );
    // Once the directory is gone, the next sync completes.
    std::fs::remove_dir_all(env.sbx.join("node_modules")).unwrap();
    let r2 = env.push(Some(&r1.state)).await;
    assert!(
        !r2.recovered_interrupted_apply,
        "refused before touching anything"
    );
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_sandbox_file_in_the_way_of_a_new_directory_is_saved() {
    let env = Env::new();
    let r1 = env.push(None).await;
    env.swrite("build.log", "sandbox's ignored file\n");
    env.write("build.log/report.txt", "laptop's tracked directory\n");
    env.lgit(&["add", "-f", "build.log/report.txt"]);
    let r2 = env.push(Some(&r1.state)).await;
    assert_eq!(r2.saved.len(), 1, "{}", r2.summary());
    assert_eq!(
        show(&env.local, &r2.saved[0].name, "build.log"),
        b"sandbox's ignored file\n"
    );
    assert_eq!(
        env.sread("build.log/report.txt"),
        b"laptop's tracked directory\n"
    );
    env.assert_in_sync();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracked_sandbox_directory_replaced_by_a_file() {
    let env = Env::new();
    let r1 = env.push(None).await;
    // The agent's directory holds only non-ignored files: saved, then replaced.
    env.swrite("tools/a.sh", "a\n");
    env.swrite("tools/b.sh", "b\n");
    env.write("tools", "a file on the laptop\n");
    let r2 = env.push(Some(&r1.state)).await;
    assert_eq!(r2.saved.len(), 1, "{}", r2.summary());
    assert_eq!(show(&env.local, &r2.saved[0].name, "tools/b.sh"), b"b\n");
    env.assert_in_sync();
}
