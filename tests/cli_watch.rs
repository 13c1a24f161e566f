//! `rclaude watch` on real repositories with the local provider: real file operations locally,
//! then the sandbox's work tree must equal the local one (ignored files excluded).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestRepo;

const CONFIG: &str =
    "[sync]\nignore = [\"generated/\"]\nmax_delete_percent = 50\nmax_delete_min_files = 20\n";

/// A running `rclaude watch` with its stderr collected.
struct Watch {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    fn start(t: &TestRepo) -> Watch {
        let mut child = t
            .cmd(&["watch"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let w = Watch { child, log };
        w.wait_for_line("watching", Duration::from_secs(30));
        w
    }

    fn text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn wait_for_line(&self, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no {needle:?} in watch output:\n{}", self.text());
    }

    /// Ctrl-C; returns the exit code.
    fn stop(mut self) -> i32 {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < end,
                "watch did not stop on SIGINT:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace(t: &TestRepo) -> PathBuf {
    let dir = std::fs::read_dir(t.sandboxes_dir())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    dir.join("root/workspace")
}

/// Tracked + untracked non-ignored files, as git sees them in `dir`.
fn listed(dir: &Path) -> Vec<String> {
    let out = common::git_env(
        Command::new("git")
            .args(["ls-files", "-co", "--exclude-standard", "-z"])
            .current_dir(dir),
    )
    .output()
    .unwrap();
    let mut v: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .filter(|p| !p.contains(".rclaude-conflict-") && !p.starts_with("generated/"))
        // Deleted tracked files are still listed by `-c`: keep what exists.
        .filter(|p| std::fs::symlink_metadata(dir.join(p)).is_ok())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn describe(root: &Path, rel: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(rel);
    let m = std::fs::symlink_metadata(&p).unwrap();
    if m.file_type().is_symlink() {
        format!("link->{}", std::fs::read_link(&p).unwrap().display())
    } else {
        let x = m.permissions().mode() & 0o111 != 0;
        format!("x={x} {:?}", std::fs::read(&p).unwrap())
    }
}

/// Wait until the sandbox's work tree equals the local one; panics with the difference.
fn assert_in_sync(t: &TestRepo, w: &Watch) {
    let local = t.path();
    let remote = workspace(t);
    let end = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < end {
        let (l, r) = (listed(local), listed(&remote));
        if l == r && l.iter().all(|p| describe(local, p) == describe(&remote, p)) {
            return;
        }
        let only_l: Vec<_> = l.iter().filter(|p| !r.contains(p)).take(5).collect();
        let only_r: Vec<_> = r.iter().filter(|p| !l.contains(p)).take(5).collect();
        let differ: Vec<_> = l
            .iter()
            .filter(|p| r.contains(p) && describe(local, p) != describe(&remote, p))
            .take(5)
            .collect();
        last = format!("only local: {only_l:?}\nonly sandbox: {only_r:?}\ndiffer: {differ:?}");
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "sandbox never matched the local tree:\n{last}\nwatch output:\n{}",
        w.text()
    );
}

fn repo_with_files(n: usize) -> TestRepo {
    let t = TestRepo::new(CONFIG);
    t.write(".gitignore", "build/\n*.log\nnode_modules/\n");
    for i in 0..n {
        t.write(
            &format!("src/mod{}/file{i}.txt", i % 5),
            &format!("content {i}\n"),
        );
    }
    t.commit_all("initial");
    t
}

#[test]
fn edits_renames_deletes_and_mass_creation_are_mirrored() {
    let t = repo_with_files(30);
    let w = Watch::start(&t);

    // Editor-style save: write a temp file, rename it over the original.
    t.write("src/mod0/.file0.txt.swp", "saved by an editor\n");
    std::fs::rename(
        t.path().join("src/mod0/.file0.txt.swp"),
        t.path().join("src/mod0/file0.txt"),
    )
    .unwrap();
    // Plain create, modify, delete, rename.
    t.write("notes/new.md", "# new\n");
    t.write("src/mod1/file1.txt", "modified\n");
    std::fs::remove_file(t.path().join("src/mod2/file2.txt")).unwrap();
    std::fs::rename(
        t.path().join("src/mod3/file3.txt"),
        t.path().join("src/mod3/renamed.txt"),
    )
    .unwrap();
    assert_in_sync(&t, &w);

    // Ignored files never appear in the sandbox.
    t.write("build/out.o", "binary");
    t.write("debug.log", "log");
    t.write("node_modules/pkg/index.js", "x");
    t.write("generated/code.rs", "fn x() {}");
    t.write("visible.txt", "after the ignored ones\n");
    assert_in_sync(&t, &w);
    let ws = workspace(&t);
    for ignored in [
        "build/out.o",
        "debug.log",
        "node_modules/pkg/index.js",
        "generated/code.rs",
    ] {
        assert!(!ws.join(ignored).exists(), "{ignored} reached the sandbox");
    }

    // A directory removed with rm -rf (6 of ~33 files: below the safety limit).
    std::fs::remove_dir_all(t.path().join("src/mod4")).unwrap();
    assert_in_sync(&t, &w);
    let end = Instant::now() + Duration::from_secs(10);
    while ws.join("src/mod4").exists() {
        assert!(
            Instant::now() < end,
            "the emptied directory stays in the sandbox:\n{}",
            w.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Mass creation: 500 files in one burst.
    for i in 0..500 {
        t.write(&format!("bulk/d{}/f{i}.txt", i % 10), &format!("{i}\n"));
    }
    assert_in_sync(&t, &w);

    // Exec bit and symlinks, including one pointing outside the tree: links are data, synced
    // as links (as bundle sync does).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        t.path().join("visible.txt"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("../visible.txt", t.path().join("notes/link.txt")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", t.path().join("escape")).unwrap();
    let mut tries = 0;
    loop {
        let l: Vec<String> = listed(t.path());
        let r = listed(&ws);
        if l == r && l.iter().all(|p| describe(t.path(), p) == describe(&ws, p)) {
            break;
        }
        tries += 1;
        assert!(
            tries < 600,
            "exec bit / symlink not mirrored:\n{}",
            w.text()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(
        std::fs::read_link(ws.join("escape")).unwrap(),
        Path::new("/etc/hostname")
    );
    let text = w.text();
    assert_eq!(w.stop(), 0, "{text}");
}

#[test]
fn a_checkout_of_another_branch_is_synced_by_bundle() {
    let t = repo_with_files(10);
    t.git(&["checkout", "-q", "-b", "feature"]);
    for i in 0..300 {
        t.write(&format!("feature/f{i}.txt"), &format!("feature {i}\n"));
    }
    t.commit_all("feature files");
    t.git(&["checkout", "-q", "main"]);
    let w = Watch::start(&t);
    t.git(&["checkout", "-q", "feature"]);
    w.wait_for_line("bundle sync", Duration::from_secs(15));
    assert_in_sync(&t, &w);
    // The sandbox's HEAD followed, so `git status` there matches.
    let ws = workspace(&t);
    let head = common::git_env(
        Command::new("git")
            .args(["rev-parse", "--abbrev-ref", "HEAD"])
            .current_dir(&ws),
    )
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), "feature");
    t.git(&["checkout", "-q", "main"]);
    assert_in_sync(&t, &w);
    assert!(!ws.join("feature/f0.txt").exists());
    assert_eq!(w.stop(), 0);
}

#[test]
fn a_sandbox_edit_is_kept_as_a_conflict_copy_when_the_file_changes_here() {
    let t = repo_with_files(5);
    let w = Watch::start(&t);
    let ws = workspace(&t);
    // Let the mtime clock move past the sync epoch, then edit in the sandbox (as an agent would).
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(ws.join("src/mod0/file0.txt"), "edited in the sandbox\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    t.write("src/mod0/file0.txt", "edited locally\n");
    assert_in_sync(&t, &w);
    let copies: Vec<_> = std::fs::read_dir(ws.join("src/mod0"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains(".rclaude-conflict-")
        })
        .collect();
    assert_eq!(copies.len(), 1, "{}", w.text());
    assert_eq!(
        std::fs::read_to_string(copies[0].path()).unwrap(),
        "edited in the sandbox\n"
    );
    w.wait_for_line("kept as", Duration::from_secs(5));

    // A file changed in the sandbox is not deleted when it is deleted here.
    std::fs::write(ws.join("src/mod1/file1.txt"), "sandbox work\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    std::fs::remove_file(t.path().join("src/mod1/file1.txt")).unwrap();
    w.wait_for_line("kept there", Duration::from_secs(10));
    assert_eq!(
        std::fs::read_to_string(ws.join("src/mod1/file1.txt")).unwrap(),
        "sandbox work\n"
    );
    assert_eq!(w.stop(), 0);
}

#[test]
fn mass_deletion_halts_when_not_interactive_and_deletes_nothing() {
    let t = repo_with_files(40);
    let mut w = Watch::start(&t);
    for i in 0..4 {
        std::fs::remove_dir_all(t.path().join(format!("src/mod{i}"))).unwrap();
    }
    let code = w.wait_exit(Duration::from_secs(15));
    assert_eq!(
        code,
        Some(65),
        "watch should stop with the sync exit code:\n{}",
        w.text()
    );
    assert!(w.text().contains("safety limit"), "{}", w.text());
    let ws = workspace(&t);
    assert_eq!(
        std::fs::read_dir(ws.join("src/mod0")).unwrap().count(),
        8,
        "files were deleted in the sandbox"
    );
}

#[test]
fn survives_the_agent_restarting() {
    let t = repo_with_files(5);
    let w = Watch::start(&t);
    let dir = std::fs::read_dir(t.sandboxes_dir())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("agent.json")).unwrap()).unwrap();
    unsafe { libc::kill(state["pid"].as_i64().unwrap() as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
    t.write("after-restart.txt", "still synced\n");
    w.wait_for_line("reconnected", Duration::from_secs(20));
    assert_in_sync(&t, &w);
    assert_eq!(w.stop(), 0);
}

#[test]
fn two_conflicts_on_one_file_within_a_second_keep_both_sandbox_edits() {
    let t = repo_with_files(3);
    let w = Watch::start(&t);
    let ws = workspace(&t);
    let f = "src/mod0/file0.txt";
    for round in 0..2 {
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(ws.join(f), format!("sandbox edit {round}\n")).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        t.write(f, &format!("local edit {round}\n"));
        let end = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(ws.join(f)).unwrap_or_default()
            != format!("local edit {round}\n")
        {
            assert!(Instant::now() < end, "{}", w.text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mut kept: Vec<String> = std::fs::read_dir(ws.join("src/mod0"))
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .contains(".rclaude-conflict-")
        })
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        ["sandbox edit 0\n", "sandbox edit 1\n"],
        "{}",
        w.text()
    );
    assert_eq!(w.stop(), 0);
}

#[test]
fn a_symlinked_directory_replaced_by_a_real_one_is_replaced_there_too() {
    let t = TestRepo::new(CONFIG);
    t.write("real/f.txt", "target\n");
    std::os::unix::fs::symlink("real", t.path().join("link")).unwrap();
    t.commit_all("init");
    let w = Watch::start(&t);
    let ws = workspace(&t);
    std::fs::remove_file(t.path().join("link")).unwrap();
    t.write("link/f.txt", "a real directory now\n");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let is_dir = std::fs::symlink_metadata(ws.join("link")).is_ok_and(|m| m.is_dir());
        if is_dir
            && std::fs::read_to_string(ws.join("link/f.txt"))
                .ok()
                .as_deref()
                == Some("a real directory now\n")
        {
            break;
        }
        assert!(Instant::now() < end, "not mirrored:\n{}", w.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing was written through the old link, and no sandbox edit was invented.
    assert_eq!(
        std::fs::read_to_string(ws.join("real/f.txt")).unwrap(),
        "target\n"
    );
    assert!(!w.text().contains("kept as"), "{}", w.text());
    // The bundle sync agrees afterwards (and after a commit).
    t.commit_all("a directory");
    let out = t.ok(&["sync"]);
    assert!(out.code() == 0, "{}", out.all());
    assert_eq!(w.stop(), 0);
}

#[test]
fn a_second_watch_on_the_same_repository_is_refused() {
    let t = repo_with_files(3);
    let w = Watch::start(&t);
    let second = t.rclaude(&["watch"]);
    assert_eq!(second.code(), 64, "{}", second.all());
    assert!(
        second.stderr().contains("another `rclaude watch` (pid"),
        "{}",
        second.all()
    );
    // Nothing happened to the first one.
    t.write("after.txt", "still syncing\n");
    assert_in_sync(&t, &w);
    assert_eq!(w.stop(), 0);
}
