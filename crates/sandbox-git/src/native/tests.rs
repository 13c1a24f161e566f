//! The native export against the script it replaces, on a real repository: after every kind of
//! change, both must export the same commit (same tree, parent, author and message), whether
//! the native export updates its index from the changed paths or rebuilds it.

use std::path::PathBuf;
use std::process::Command;

use rclaude_sandbox::agent::export::{ChangedPaths, ExportJob};

use super::{Made, export};
use crate::scripts::{EXPORT, PRELUDE};

struct Sandbox {
    _dir: tempfile::TempDir,
    work: PathBuf,
    home: PathBuf,
    /// The change token of the native export's last run.
    token: u64,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let s = Sandbox {
            _dir: dir,
            work,
            home,
            token: 0,
        };
        s.git(&["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(s.work.join(".git/rclaude")).unwrap();
        std::fs::write(s.work.join(".git/rclaude/identity"), "test-identity\n").unwrap();
        s
    }

    /// Run git in the work tree (another repository with `-C DIR`); its stdout.
    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(args)
            .current_dir(&self.work)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn write(&self, p: &str, text: &str) {
        let f = self.work.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, text).unwrap();
    }

    /// The script's answer, the receiver having `bases` (space-separated).
    fn script_answer(&self, bases: &str) -> String {
        let out = Command::new("sh")
            .args(["-c", &format!("{PRELUDE}{EXPORT}")])
            .env("RC_WORKDIR", &self.work)
            .env("RC_MODE", "worktree")
            .env("RC_REFS", "")
            .env("RC_BASES", bases)
            .env("RC_BASE_REFS", "")
            .env("RC_OUT", self.work.join(".git/rclaude/tmp/script.bundle"))
            .env("HOME", &self.home)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "script: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// The script's (tip, wip).
    fn script(&self) -> (String, String) {
        let text = self.script_answer("");
        (field(&text, "tip"), field(&text, "wip"))
    }

    /// A native export job, the receiver having `bases`.
    fn job(&self, bases: &[&str], changed: Option<ChangedPaths>) -> ExportJob {
        ExportJob {
            work: self.work.clone(),
            out: self.work.join(".git/rclaude/tmp/native.bundle"),
            out_name: "native.bundle".into(),
            bases: bases.iter().map(|b| b.to_string()).collect(),
            base_refs: Vec::new(),
            home: self.home.clone(),
            changed,
        }
    }

    /// The native answer after `paths` changed ((tip, wip), how the tree was made); `None`
    /// paths: the agent cannot say.
    fn native(&mut self, paths: Option<&[&str]>) -> ((String, String), Made) {
        let since = format!("w.{}", self.token);
        self.token += 1;
        let changed = ChangedPaths {
            since,
            now: format!("w.{}", self.token),
            paths: paths.map(|p| p.iter().map(PathBuf::from).collect()),
        };
        let (text, made) = export(&self.job(&[], Some(changed))).unwrap();
        ((field(&text, "tip"), field(&text, "wip")), made)
    }

    /// Both exports agree after `paths` changed, the native one by updating its index.
    fn check(&mut self, what: &str, paths: &[&str]) {
        let script = self.script();
        let (native, made) = self.native(Some(paths));
        assert_eq!(
            native, script,
            "{what}: native export (updated) differs from the script"
        );
        assert_eq!(made, Made::Updated, "{what}");
        let (again, made) = self.native(None);
        assert_eq!(
            again, script,
            "{what}: native export (rebuilt) differs from the script"
        );
        assert_eq!(made, Made::Rebuilt, "{what}");
        // The rebuild leaves an index the next update starts from.
        let (after, made) = self.native(Some(&[]));
        assert_eq!((after, made), (script, Made::Updated), "{what}");
    }

    fn tree_has(&self, tip: &str, path: &str) -> bool {
        Command::new("git")
            .args(["cat-file", "-e", &format!("{tip}:{path}")])
            .current_dir(&self.work)
            .status()
            .unwrap()
            .success()
    }
}

fn field(text: &str, key: &str) -> String {
    crate::step::Answer::parse(text.as_bytes())
        .get(key)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_native_export_makes_the_scripts_commit_after_every_kind_of_change() {
    let mut s = Sandbox::new();
    s.write(".gitignore", "*.log\nbuild/\n");
    s.write("src/a.rs", "a\n");
    s.write("src/deep/b.rs", "b\n");
    s.write("keep.log", "tracked though ignored\n");
    s.write("README", "r\n");
    s.git(&["add", "."]);
    s.git(&["add", "-f", "keep.log"]);
    s.git(&["commit", "-q", "-m", "one"]);
    // The first export rebuilds (no stamp yet); nothing changed: HEAD itself.
    let script = s.script();
    assert_eq!(script.1, "0");
    let (native, made) = s.native(Some(&[]));
    assert_eq!((native, made), (script, Made::Rebuilt));

    s.write("src/a.rs", "a2\n");
    s.check("an edit", &["src/a.rs"]);

    s.write("new.txt", "n\n");
    s.write("x.log", "ignored\n");
    s.write("keep.log", "tracked, edited\n");
    s.check(
        "new, ignored and tracked-ignored files",
        &["new.txt", "x.log", "keep.log"],
    );
    let (tip, _) = s.script();
    assert!(s.tree_has(&tip, "keep.log") && s.tree_has(&tip, "new.txt"));
    assert!(!s.tree_has(&tip, "x.log"));

    std::fs::remove_file(s.work.join("README")).unwrap();
    s.check("a deletion", &["README"]);

    s.write("t/a/b/c/f.txt", "deep\n");
    s.write("build/out.o", "ignored dir\n");
    s.check("new trees", &["t", "build"]);
    assert!(!s.tree_has(&s.script().0, "build/out.o"));

    std::os::unix::fs::symlink("src/a.rs", s.work.join("link")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        s.work.join("src/deep/b.rs"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    s.check(
        "a symlink and an executable bit",
        &["link", "src/deep/b.rs"],
    );

    s.write("nested/inner.txt", "x\n");
    for args in [&["init", "-q"][..], &["add", "."], &["commit", "-qm", "n"]] {
        s.git(&[&["-C", "nested"][..], args].concat());
    }
    s.write("nested/more.txt", "y\n");
    s.check("an embedded repository", &["nested", "nested/more.txt"]);
    assert!(!s.tree_has(&s.script().0, "nested"));
    std::fs::remove_dir_all(s.work.join("nested")).unwrap();
    s.check("an embedded repository removed", &["nested"]);
    // One without a commit stops `git add -A`; left out all the same.
    s.write("fresh/f.txt", "f\n");
    s.git(&["-C", "fresh", "init", "-q"]);
    s.check("an embedded repository without a commit", &["fresh"]);
    assert!(!s.tree_has(&s.script().0, "fresh"));
    std::fs::remove_dir_all(s.work.join("fresh")).unwrap();
    s.check("that one removed", &["fresh"]);

    std::fs::rename(s.work.join("src/deep"), s.work.join("src/moved")).unwrap();
    s.check("a moved directory", &["src/deep", "src/moved"]);

    std::fs::remove_dir_all(s.work.join("t")).unwrap();
    s.write("t", "now a file\n");
    s.check("a directory replaced by a file", &["t"]);

    s.git(&["rm", "-q", "--cached", "keep.log"]);
    s.check("an ignored file no longer tracked", &[".git/index"]);
    assert!(!s.tree_has(&s.script().0, "keep.log"));
    s.git(&["add", "-f", "x.log"]);
    s.check("an ignored file tracked", &[".git/index"]);
    assert!(s.tree_has(&s.script().0, "x.log"));

    s.git(&["add", "-A"]);
    s.git(&["commit", "-q", "-m", "two"]);
    let (tip, wip) = s.script();
    assert_eq!(wip, "0", "everything committed");
    let ((native, _), _) = (s.native(Some(&[".git/index", ".git/HEAD"])), ());
    assert_eq!(native, (tip, wip));

    // A rule of what is included changes: rebuilt, whatever the change set says.
    s.write(".gitignore", "build/\n");
    s.write("y.log", "no longer ignored\n");
    let script = s.script();
    let (native, made) = s.native(Some(&[".gitignore", "y.log"]));
    assert_eq!((native, made), (script.clone(), Made::Rebuilt));
    assert!(s.tree_has(&script.0, "y.log"));

    // A stamp from another watcher (a restarted agent) is not trusted.
    s.write("z.txt", "z\n");
    s.token += 10;
    let (native, made) = s.native(Some(&["z.txt"]));
    assert_eq!((native, made), (s.script(), Made::Rebuilt));
}

#[test]
fn unsupported_states_are_left_to_the_script() {
    let s = Sandbox::new();
    s.write("a", "1\n");
    s.git(&["add", "a"]);
    s.git(&["commit", "-q", "-m", "one"]);
    s.git(&["config", "filter.lfs.clean", "git-lfs clean -- %f"]);
    let job = s.job(&[], None);
    assert!(export(&job).unwrap_err().contains("filter"));
    s.git(&["config", "--unset", "filter.lfs.clean"]);
    assert!(export(&job).is_ok());
    // A sync holding the lock: the script waits for it, the native export does not.
    let lock = std::fs::File::create(s.work.join(".git/rclaude/lock")).unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    assert!(export(&job).unwrap_err().contains("lock"));
    drop(lock);
}

#[test]
fn the_bundle_leaves_out_what_the_receiver_has_and_git_reads_it() {
    let s = Sandbox::new();
    s.write("a", "1\n");
    s.git(&["add", "a"]);
    s.git(&["commit", "-q", "-m", "one"]);
    let one = s.git(&["rev-parse", "HEAD"]).trim().to_string();
    s.write("a", "2\n");
    s.git(&["commit", "-q", "-am", "two"]);
    s.write("b", "uncommitted\n");
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let script = s.script_answer(&format!("{one} {missing}"));
    let (native, _) = export(&s.job(&[&one, missing], None)).unwrap();
    for key in ["bases", "tip", "wip", "head", "branch", "identity"] {
        assert_eq!(
            field(&native, key).trim(),
            field(&script, key).trim(),
            "{key}"
        );
    }
    assert_eq!(
        field(&native, "bases").trim(),
        one,
        "a missing base is left out"
    );
    // A repository that has only the base takes the bundle: two commits, the WIP one on top.
    let other = tempfile::tempdir().unwrap();
    let other = other.path().to_str().unwrap();
    s.git(&["-C", other, "init", "-q"]);
    let work = s.work.to_str().unwrap();
    s.git(&[
        "-C",
        other,
        "fetch",
        "-q",
        work,
        &format!("{one}:refs/heads/base"),
    ]);
    let bundle = s.work.join(".git/rclaude/tmp/native.bundle");
    let bundle = bundle.to_str().unwrap();
    s.git(&["-C", other, "bundle", "verify", bundle]);
    s.git(&[
        "-C",
        other,
        "fetch",
        "-q",
        bundle,
        "refs/rclaude/pull/tip:refs/heads/got",
    ]);
    assert_eq!(s.git(&["-C", other, "show", "got:b"]), "uncommitted\n");
    assert_eq!(
        s.git(&["-C", other, "rev-list", "--count", "base..got"])
            .trim(),
        "2"
    );
}
