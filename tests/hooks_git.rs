//! `rclaude hooks` on real repositories driven by the git CLI: installing over an existing hook,
//! pushes to a local bare remote blocked by a failing sandbox task, `core.hooksPath`,
//! `RCLAUDE_SKIP_HOOKS`, and uninstall restoring what was there.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TestRepo, git_env};

const CONFIG: &str = r#"
[sandbox]
provider = "local"

[tasks.prepare]
run = "echo prepared-in-sandbox"

[tasks.test]
run = "echo tested-in-sandbox; test -f src/ok.txt || { echo remote-check-failed-loudly; exit 5; }"
depends = ["prepare"]

[hooks]
pre-push = ["test"]
"#;

/// A repository with a commit and a bare `origin` next to it.
fn repo_with_remote(config: &str) -> (TestRepo, tempfile::TempDir) {
    let t = TestRepo::new(config);
    t.write("src/ok.txt", "fine\n");
    t.commit_all("initial");
    let remote = tempfile::tempdir().unwrap();
    let out = git_env(
        Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(remote.path()),
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    t.git(&["remote", "add", "origin", remote.path().to_str().unwrap()]);
    (t, remote)
}

/// git in the repository, with the environment the hooks need (the test's rclaude home).
fn git(t: &TestRepo, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("git");
    c.args(args)
        .current_dir(t.path())
        .env("RCLAUDE_HOME", t.home.path())
        .env("CI", "true")
        .env_remove("RCLAUDE_SKIP_HOOKS")
        .env_remove("RCLAUDE_AGENT_BIN")
        .env_remove("RCLAUDE_TOKEN");
    git_env(&mut c);
    for (k, v) in extra_env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The commit `main` points at in the bare remote, if any.
fn remote_main(remote: &Path) -> Option<String> {
    let out = git_env(Command::new("git").arg("--git-dir").arg(remote).args([
        "rev-parse",
        "--verify",
        "-q",
        "refs/heads/main",
    ]))
    .output()
    .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn hooks_dir(t: &TestRepo) -> PathBuf {
    t.path().join(".git/hooks")
}

#[test]
fn install_over_an_existing_hook_chains_it_and_uninstall_restores_it() {
    let (t, remote) = repo_with_remote(CONFIG);
    let hook = hooks_dir(&t).join("pre-push");
    // A hook of the user's own: it reads the refs git sends on stdin and leaves a trace.
    let original = "#!/bin/sh\necho \"own hook: $1\" >&2\ncat > .git/own-hook-saw\n";
    std::fs::write(&hook, original).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o750)).unwrap();

    let r = t.ok(&["hooks", "install"]);
    assert!(r.stderr().contains("pre-push: installed"), "{}", r.all());
    assert!(r.stderr().contains("pre-push.rclaude-orig"), "{}", r.all());
    let installed = std::fs::read(&hook).unwrap();
    assert!(String::from_utf8_lossy(&installed).contains("# rclaude-hook v1"));
    assert_eq!(
        std::fs::read_to_string(hooks_dir(&t).join("pre-push.rclaude-orig")).unwrap(),
        original
    );

    // Installing again changes nothing.
    let r = t.ok(&["hooks", "install"]);
    assert!(r.stderr().contains("already installed"), "{}", r.all());
    assert_eq!(std::fs::read(&hook).unwrap(), installed);
    let s = t.ok(&["hooks", "status"]);
    assert!(
        s.stdout().contains("pre-push  installed; runs test"),
        "{}",
        s.all()
    );

    // The push runs the user's hook (with git's stdin and arguments), then the task remotely.
    let out = git(&t, &["push", "origin", "main"], &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "push failed:\n{err}");
    assert!(err.contains("own hook: origin"), "{err}");
    assert!(
        err.contains("prepared-in-sandbox") && err.contains("tested-in-sandbox"),
        "{err}"
    );
    let saw = t.read(".git/own-hook-saw");
    assert!(
        saw.starts_with("refs/heads/main "),
        "the own hook's stdin: {saw:?}"
    );
    assert_eq!(
        remote_main(remote.path()),
        Some(t.git(&["rev-parse", "HEAD"]).trim().to_string())
    );

    let r = t.ok(&["hooks", "uninstall"]);
    assert!(r.stderr().contains("is back"), "{}", r.all());
    assert_eq!(std::fs::read_to_string(&hook).unwrap(), original);
    assert_eq!(mode(&hook), 0o750);
    assert!(!hooks_dir(&t).join("pre-push.rclaude-orig").exists());
    // Nothing left to do the second time.
    let r = t.ok(&["hooks", "uninstall"]);
    assert!(r.stderr().contains("nothing to do"), "{}", r.all());
}

#[test]
fn a_failing_remote_task_blocks_the_push_and_shows_its_output() {
    let (t, remote) = repo_with_remote(CONFIG);
    t.ok(&["hooks", "install"]);
    let before = remote_main(remote.path());
    assert_eq!(before, None);

    // Uncommitted work is what the hook checks: the sandbox gets the work tree.
    std::fs::remove_file(t.path().join("src/ok.txt")).unwrap();
    let out = git(&t, &["push", "origin", "main"], &[]);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "the push should have been blocked:\n{err}"
    );
    assert!(err.contains("remote-check-failed-loudly"), "{err}");
    assert!(
        err.contains("rclaude pre-push: failed (exit code 5)"),
        "{err}"
    );
    assert!(err.contains("RCLAUDE_SKIP_HOOKS=1"), "{err}");
    assert_eq!(
        remote_main(remote.path()),
        None,
        "the remote must not have been updated"
    );

    // Skipping runs no task and lets the push through.
    let out = git(
        &t,
        &["push", "origin", "main"],
        &[("RCLAUDE_SKIP_HOOKS", "1")],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("skipping"), "{err}");
    assert!(!err.contains("tested-in-sandbox"), "{err}");
    assert!(remote_main(remote.path()).is_some());
}

#[test]
fn an_existing_hook_that_fails_still_blocks_and_the_tasks_do_not_run() {
    let (t, remote) = repo_with_remote(CONFIG);
    let hook = hooks_dir(&t).join("pre-push");
    std::fs::write(&hook, "#!/bin/sh\necho own-hook-says-no >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    t.ok(&["hooks", "install"]);
    let out = git(&t, &["push", "origin", "main"], &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("own-hook-says-no"), "{err}");
    assert!(!err.contains("tested-in-sandbox"), "{err}");
    assert_eq!(remote_main(remote.path()), None);
}

#[test]
fn core_hooks_path_is_respected_and_reinstall_follows_the_config() {
    let config = r#"
[sandbox]
provider = "local"

[tasks.check]
run = "echo checked-in-sandbox; echo \"hook=$RCLAUDE_HOOK\""

[hooks]
pre-commit = ["check"]
post-commit = ["check"]
"#;
    let t = TestRepo::new(config);
    t.commit_all("initial");
    t.git(&["config", "core.hooksPath", ".githooks"]);
    let r = t.ok(&["hooks", "install"]);
    assert!(r.stderr().contains("Hooks are in .githooks"), "{}", r.all());
    assert!(t.path().join(".githooks/pre-commit").exists());
    assert!(t.path().join(".githooks/post-commit").exists());
    assert!(!hooks_dir(&t).join("pre-commit").exists());

    t.write("new.txt", "x\n");
    t.git(&["add", "new.txt"]);
    let out = git(&t, &["commit", "-q", "-m", "with hooks"], &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("hook=pre-commit") && err.contains("hook=post-commit"),
        "{err}"
    );

    // Dropping post-commit from [hooks] removes it on the next install; pre-commit stays.
    t.write(
        ".rclaude.toml",
        &config.replace("post-commit = [\"check\"]\n", ""),
    );
    let r = t.ok(&["hooks", "install"]);
    assert!(r.stderr().contains("post-commit: removed"), "{}", r.all());
    assert!(!t.path().join(".githooks/post-commit").exists());
    assert!(t.path().join(".githooks/pre-commit").exists());

    // Relative to the work tree top, like git: a linked worktree has its own .githooks.
    let wt = tempfile::tempdir().unwrap();
    let wt_path = wt.path().join("wt");
    t.git(&["worktree", "add", "-q", wt_path.to_str().unwrap()]);
    let s = t.ok(&["-C", wt_path.to_str().unwrap(), "hooks", "status"]);
    assert!(s.stdout().contains("not installed"), "{}", s.all());

    t.ok(&["hooks", "uninstall"]);
    assert!(!t.path().join(".githooks/pre-commit").exists());
}

#[test]
fn hooks_run_does_nothing_where_rclaude_is_not_configured() {
    let t = TestRepo::new("[sandbox]\nprovider = \"local\"\n");
    std::fs::remove_file(t.path().join(".rclaude.toml")).unwrap();
    let r = t.rclaude(&["hooks", "run", "pre-push", "origin", "/x"]);
    assert_eq!(r.code(), 0, "{}", r.all());
    let r = t.rclaude(&["hooks", "run", "not-a-hook"]);
    assert_eq!(r.code(), 64, "{}", r.all());
    assert!(
        !t.sandboxes_dir().exists()
            || std::fs::read_dir(t.sandboxes_dir())
                .unwrap()
                .next()
                .is_none()
    );
}

#[test]
fn linked_worktrees_share_the_default_hooks_directory() {
    let t = TestRepo::new(CONFIG);
    t.commit_all("initial");
    let wt = tempfile::tempdir().unwrap();
    let wt_path = wt.path().join("wt");
    t.git(&["worktree", "add", "-q", wt_path.to_str().unwrap()]);
    let r = t.ok(&["-C", wt_path.to_str().unwrap(), "hooks", "install"]);
    assert!(r.stderr().contains("pre-push: installed"), "{}", r.all());
    assert!(
        hooks_dir(&t).join("pre-push").exists(),
        "installed into the common git dir"
    );
    let s = t.ok(&["hooks", "status"]);
    assert!(s.stdout().contains("pre-push  installed"), "{}", s.all());
    t.ok(&["hooks", "uninstall"]);
    assert!(!hooks_dir(&t).join("pre-push").exists());
}

#[test]
fn a_moved_binary_is_found_on_path_and_a_missing_one_blocks_with_a_hint() {
    let (t, remote) = repo_with_remote(CONFIG);
    t.ok(&["hooks", "install"]);
    let hook = hooks_dir(&t).join("pre-push");
    let script = std::fs::read_to_string(&hook).unwrap();
    let gone = "/nonexistent/rclaude-moved-away";
    let line = script
        .lines()
        .find(|l| l.starts_with("installed="))
        .unwrap();
    std::fs::write(&hook, script.replace(line, &format!("installed='{gone}'"))).unwrap();
    let system_path = "/usr/local/bin:/usr/bin:/bin";

    // Not at the recorded path and not on PATH: the push is blocked, with what to do.
    let out = git(&t, &["push", "origin", "main"], &[("PATH", system_path)]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(gone) && err.contains("RCLAUDE_SKIP_HOOKS=1"),
        "{err}"
    );
    assert_eq!(remote_main(remote.path()), None);

    // On PATH: that one runs the tasks.
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(common::bin(), bin_dir.path().join("rclaude")).unwrap();
    let path = format!("{}:{system_path}", bin_dir.path().display());
    let out = git(&t, &["push", "origin", "main"], &[("PATH", &path)]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("tested-in-sandbox"), "{err}");
}
