//! The native apply against the script it replaces, on real repositories: twin sandboxes get
//! the same bundle and the same sandbox-side edits, one applies with the script, the other with
//! the helper's code; after every step both must hold the same HEAD, branches, sync refs, work
//! tree (files, modes, symlinks, nothing left over), index, and saved work; and the native
//! query must answer what the query script does.

use std::path::{Path, PathBuf};
use std::process::Command;

use rclaude_sandbox::agent::apply::ApplyJob;
use rclaude_sandbox::agent::query::QueryJob;
use rclaude_sandbox::provider::ApplySyncRequest;

use crate::scripts::{APPLY, PRELUDE, QUERY};

fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[])
}

fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn write(dir: &Path, p: &str, text: &str) {
    let f = dir.join(p);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(f, text).unwrap();
}

struct Twins {
    dir: tempfile::TempDir,
    laptop: PathBuf,
    /// (script's sandbox, native's sandbox)
    sandboxes: [PathBuf; 2],
    known: Vec<String>,
    /// The commits the sandboxes had before the last [`Twins::send`] (its bundle's bases).
    known_before: String,
    round: usize,
}

/// The apply's parameters for one round.
struct Round {
    snapshot: String,
    index: String,
    head: String,
    branch: String,
    known: Vec<String>,
}

impl Twins {
    fn new() -> Twins {
        let dir = tempfile::tempdir().unwrap();
        let laptop = dir.path().join("laptop");
        std::fs::create_dir_all(&laptop).unwrap();
        git(&laptop, &["init", "-q", "-b", "main"]);
        let sandboxes = ["script", "native"].map(|n| {
            let s = dir.path().join(n);
            std::fs::create_dir_all(&s).unwrap();
            git(&s, &["init", "-q", "-b", "main"]);
            std::fs::create_dir_all(s.join(".git/rclaude/tmp")).unwrap();
            std::fs::write(s.join(".git/rclaude/identity"), "twin\n").unwrap();
            s
        });
        Twins {
            dir,
            laptop,
            sandboxes,
            known: Vec::new(),
            known_before: String::new(),
            round: 0,
        }
    }

    /// The same edit in both sandboxes.
    fn both(&self, f: impl Fn(&Path)) {
        for s in &self.sandboxes {
            f(s);
        }
    }

    /// The laptop's state as the sync sends it: index and snapshot commits, the bundle of what
    /// the sandboxes lack, copied into each.
    fn send(&mut self) -> Round {
        let l = &self.laptop;
        let head = git(l, &["rev-parse", "HEAD"]);
        let branch = git(l, &["symbolic-ref", "--short", "HEAD"]);
        let index_tree = git(l, &["write-tree"]);
        let index = git(l, &["commit-tree", &index_tree, "-p", &head, "-m", "index"]);
        let tmp_index = self.dir.path().join("snapshot.index");
        std::fs::copy(l.join(".git/index"), &tmp_index).unwrap();
        let env = [("GIT_INDEX_FILE", tmp_index.to_str().unwrap())];
        git_env(l, &["add", "-A"], &env);
        let tree = git_env(l, &["write-tree"], &env);
        let snapshot = git(l, &["commit-tree", &tree, "-p", &index, "-m", "snapshot"]);
        for (name, oid) in [("snapshot", &snapshot), ("index", &index), ("head", &head)] {
            git(
                l,
                &["update-ref", &format!("refs/rclaude/push/{name}"), oid],
            );
        }
        let bundle = self.dir.path().join(format!("round{}.bundle", self.round));
        let mut args = vec![
            "bundle".to_string(),
            "create".into(),
            "-q".into(),
            bundle.to_str().unwrap().into(),
            "refs/rclaude/push/snapshot".into(),
            "refs/rclaude/push/index".into(),
            "refs/rclaude/push/head".into(),
        ];
        self.known_before = self.known.join(" ");
        if !self.known.is_empty() {
            args.push("--not".into());
            args.extend(self.known.iter().cloned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        git(l, &args);
        for s in &self.sandboxes {
            std::fs::copy(&bundle, s.join(".git/rclaude/tmp/in.bundle")).unwrap();
        }
        self.round += 1;
        let known = self.known.clone();
        self.known = vec![head.clone(), snapshot.clone()];
        Round {
            known: [known, vec![head.clone()]].concat(),
            snapshot,
            index,
            head,
            branch,
        }
    }

    /// The helper's job for `r` in the second sandbox.
    fn job(&self, r: &Round) -> ApplyJob {
        let native = &self.sandboxes[1];
        ApplyJob {
            work: native.clone(),
            bundle: Some(native.join(".git/rclaude/tmp/in.bundle")),
            home: self.dir.path().to_path_buf(),
            changed: None,
            request: ApplySyncRequest {
                workdir: native.to_str().unwrap().into(),
                identity: "twin".into(),
                bundle: None,
                snapshot: r.snapshot.clone(),
                index: r.index.clone(),
                head: Some(r.head.clone()),
                branch: Some(r.branch.clone()),
                known: r.known.clone(),
                excludes: String::new(),
                excludes_id: "none".into(),
            },
        }
    }

    /// Apply `r` to both sandboxes; the saved kinds each reported.
    fn apply(&self, r: &Round) -> [Vec<String>; 2] {
        let bundle = |s: &Path| s.join(".git/rclaude/tmp/in.bundle");
        let script = &self.sandboxes[0];
        let out = Command::new("sh")
            .args(["-c", &format!("{PRELUDE}{APPLY}")])
            .env("RC_WORKDIR", script)
            .env("RC_IDENTITY", "twin")
            .env("RC_BUNDLE", bundle(script))
            .env("RC_SNAPSHOT", &r.snapshot)
            .env("RC_INDEX", &r.index)
            .env("RC_HEAD", &r.head)
            .env("RC_BRANCH", &r.branch)
            .env("RC_KNOWN", r.known.join(" "))
            .env("RC_EXCLUDES", "")
            .env("RC_EXCLUDES_ID", "none")
            .env("RC_SHALLOW", "")
            .env("HOME", self.dir.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        let script_answer = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "script: {script_answer} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let job = self.job(r);
        let (native_answer, _) = super::apply::apply(&job).expect("the helper applies");
        [script_answer, native_answer].map(|a| {
            a.lines()
                .filter_map(|l| l.strip_prefix("RCLAUDE:saved="))
                .map(|l| l.split(' ').nth(2).unwrap_or("").to_string())
                .collect()
        })
    }

    /// Everything the two must agree on, per sandbox.
    fn state(s: &Path) -> String {
        let refs = git(
            s,
            &[
                "for-each-ref",
                "--format=%(refname) %(objectname)",
                "refs/heads",
                "refs/rclaude/snapshot",
                "refs/rclaude/index",
                "refs/rclaude/head",
            ],
        );
        let saved: Vec<String> = git(
            s,
            &[
                "for-each-ref",
                "--format=%(objectname)",
                "refs/rclaude/saved",
            ],
        )
        .lines()
        .map(|c| {
            // Trees and subjects along the chain, stamps left out.
            git(s, &["log", "--format=%T %s", c])
                .lines()
                .map(|l| l.split(" (").next().unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
        let tmp_index = s.join(".git/rclaude/compare.index");
        let _ = std::fs::remove_file(&tmp_index);
        let env = [("GIT_INDEX_FILE", tmp_index.to_str().unwrap())];
        git_env(s, &["add", "-A"], &env);
        let work = git_env(s, &["write-tree"], &env);
        std::fs::remove_file(&tmp_index).unwrap();
        let mut files = Vec::new();
        list(s, Path::new(""), &mut files);
        format!(
            "HEAD {}\n{refs}\nsaved {saved:?}\nwork {work}\nindex {}\nfiles {files:?}\nsynced {}\napplying {}",
            git(s, &["symbolic-ref", "-q", "HEAD"]),
            git(s, &["write-tree"]),
            std::fs::read_to_string(s.join(".git/rclaude/synced")).unwrap_or_default(),
            s.join(".git/rclaude/applying").exists(),
        )
    }

    fn assert_same(&self, what: &str) {
        let [a, b] = &self.sandboxes;
        assert_eq!(Twins::state(a), Twins::state(b), "{what}");
        // The native query answers what the script does, line for line.
        let out = Command::new("sh")
            .args(["-c", &format!("{PRELUDE}{QUERY}")])
            .env("RC_WORKDIR", b)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        let script: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("RCLAUDE:git_version="))
            .map(str::to_string)
            .collect();
        let job = QueryJob {
            work: b.clone(),
            home: self.dir.path().to_path_buf(),
        };
        let native: Vec<String> = super::query::query(&job)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(native, script, "{what}: query");
        let status = |d: &Path| git(d, &["status", "--porcelain"]);
        assert_eq!(status(b), status(a), "{what}: status");
        assert_eq!(status(b), status(&self.laptop), "{what}: status");
    }
}

/// Every path under `dir` (but `.git`) with its kind, mode and, for links, target.
fn list(root: &Path, dir: &Path, out: &mut Vec<String>) {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = std::fs::read_dir(root.join(dir))
        .unwrap()
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel = dir.join(e.file_name());
        if rel == Path::new(".git") {
            continue;
        }
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        if m.is_symlink() {
            let target = std::fs::read_link(e.path()).unwrap();
            out.push(format!("{} -> {}", rel.display(), target.display()));
        } else if m.is_dir() {
            out.push(format!("{}/", rel.display()));
            list(root, &rel, out);
        } else {
            let exec = m.permissions().mode() & 0o111 != 0;
            out.push(format!(
                "{} {}",
                rel.display(),
                if exec { "x" } else { "-" }
            ));
        }
    }
}

#[test]
fn the_native_apply_leaves_what_the_script_leaves() {
    let mut t = Twins::new();
    let l = t.laptop.clone();
    write(&l, ".gitignore", "*.log\n");
    write(&l, "a.txt", "a\n");
    write(&l, "src/lib.rs", "pub fn f() {}\n");
    write(&l, "docs/deep/x.md", "x\n");
    write(&l, "bin/run.sh", "#!/bin/sh\n");
    std::os::unix::fs::symlink("a.txt", l.join("link")).unwrap();
    git(&l, &["update-index", "--add", "--chmod=+x", "bin/run.sh"]);
    git(&l, &["add", "-A"]);
    git(&l, &["commit", "-q", "-m", "one"]);
    git(&l, &["update-index", "--chmod=+x", "bin/run.sh"]);
    std::fs::set_permissions(
        l.join("bin/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    // 1. The first sync: the whole history.
    let r = t.send();
    let saved = t.apply(&r);
    assert_eq!(saved[0], saved[1]);
    t.assert_same("first sync");

    // 2. Uncommitted edits, a new untracked tree, a deletion that empties two directories, an
    //    exec bit dropped, a symlink pointed elsewhere, something staged.
    write(&l, "a.txt", "a, edited\n");
    write(&l, "new/dir/file.txt", "new\n");
    std::fs::remove_file(l.join("docs/deep/x.md")).unwrap();
    git(&l, &["update-index", "--chmod=-x", "bin/run.sh"]);
    std::fs::remove_file(l.join("link")).unwrap();
    std::os::unix::fs::symlink("src/lib.rs", l.join("link")).unwrap();
    write(&l, "src/lib.rs", "pub fn f() { staged }\n");
    git(&l, &["add", "src/lib.rs"]);
    let r = t.send();
    // An ignored file in the sandbox stays.
    t.both(|s| write(s, "sandbox.log", "log\n"));
    let saved = t.apply(&r);
    assert_eq!(saved[0], saved[1]);
    assert!(saved[1].is_empty(), "{saved:?}");
    t.assert_same("uncommitted edits");
    assert!(t.sandboxes[1].join("sandbox.log").exists());

    // 3. Work in the sandbox the laptop lacks (a commit, something staged, an edit, a new
    //    file), and a commit on the laptop: saved first, then replaced.
    git(&l, &["add", "-A"]);
    git(&l, &["commit", "-q", "-m", "two"]);
    let r = t.send();
    t.both(|s| {
        write(s, "made-there.txt", "sandbox commit\n");
        git(s, &["add", "made-there.txt"]);
        git(s, &["commit", "-q", "-m", "sandbox"]);
        write(s, "a.txt", "staged in the sandbox\n");
        git(s, &["add", "a.txt"]);
        write(s, "a.txt", "edited in the sandbox\n");
        write(s, "untracked-there.txt", "u\n");
    });
    let saved = t.apply(&r);
    assert_eq!(saved[0], saved[1]);
    assert_eq!(saved[1], ["worktree,commits,index"]);
    t.assert_same("sandbox work saved");

    // 4. The laptop on another branch; the sandbox's branch of that name has commits of its
    //    own: kept too.
    t.both(|s| {
        git(s, &["branch", "-q", "feature"]);
        git(s, &["checkout", "-q", "feature"]);
        write(s, "feature.txt", "sandbox feature\n");
        git(s, &["add", "feature.txt"]);
        git(s, &["commit", "-q", "-m", "sandbox feature"]);
        git(s, &["checkout", "-q", "main"]);
    });
    git(&l, &["checkout", "-q", "-b", "feature"]);
    write(&l, "a.txt", "on feature\n");
    git(&l, &["commit", "-q", "-am", "feature"]);
    let r = t.send();
    let saved = t.apply(&r);
    assert_eq!(saved[0], saved[1]);
    assert_eq!(saved[1], ["branch"]);
    t.assert_same("branch switch");
}

/// A file the sandbox changes after the apply read the work tree is not overwritten (nor a
/// file deleted): the apply stops, as `git read-tree -u` does on a file that is not up to date,
/// and leaves the edit where it was for the script's recovery to save. A file only touched
/// (same content, new stat) is replaced.
#[test]
fn a_file_changed_after_the_apply_read_it_is_left_alone() {
    let t = Twins::new();
    let s = &t.sandboxes[1];
    write(s, "a.txt", "a\n");
    write(s, "b.txt", "b\n");
    write(s, "c.txt", "c\n");
    git(s, &["add", "-A"]);
    git(s, &["commit", "-q", "-m", "one"]);
    let repo = git2::Repository::open(s).unwrap();
    // What the apply reads of the work tree before it writes.
    let read_now = || {
        let real = super::worktree::real_index(&repo).unwrap();
        super::worktree::tree(&repo, &real, s, None, "").unwrap().2
    };
    let read = read_now();
    let blob = repo.blob(b"from the laptop\n").unwrap();
    let tmp = s.join(".git/rclaude/tmp");
    let write_a = [super::apply::Change::Write(
        PathBuf::from("a.txt"),
        blob,
        git2::FileMode::Blob,
    )];
    let remove_b = [super::apply::Change::Remove(PathBuf::from("b.txt"))];

    // Touched only: replaced.
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(s.join("a.txt"), "a\n").unwrap();
    super::apply::checkout(&repo, s, &tmp, &write_a, &read).unwrap();
    assert_eq!(
        std::fs::read(s.join("a.txt")).unwrap(),
        b"from the laptop\n"
    );

    // Edited since it was read: kept, for both a write and a removal.
    let read = read_now();
    std::fs::write(s.join("a.txt"), "edited in the sandbox\n").unwrap();
    std::fs::write(s.join("b.txt"), "edited too\n").unwrap();
    let err = super::apply::checkout(&repo, s, &tmp, &write_a, &read).unwrap_err();
    assert!(err.contains("a.txt changed"), "{err}");
    let err = super::apply::checkout(&repo, s, &tmp, &remove_b, &read).unwrap_err();
    assert!(err.contains("b.txt changed"), "{err}");
    assert_eq!(
        std::fs::read(s.join("a.txt")).unwrap(),
        b"edited in the sandbox\n"
    );
    assert_eq!(std::fs::read(s.join("b.txt")).unwrap(), b"edited too\n");
}

/// A bundle whose pack lacks an object its new commit names (a blob) is not applied: the
/// indexer accepts such a pack (every object in it is sound), and the apply's own check of what
/// the new commits bring turns it down before anything changes.
#[test]
fn a_bundle_missing_an_object_is_turned_down_before_anything_changes() {
    let mut t = Twins::new();
    let l = t.laptop.clone();
    write(&l, "a.txt", "a\n");
    git(&l, &["add", "-A"]);
    git(&l, &["commit", "-q", "-m", "one"]);
    let r = t.send();
    t.apply(&r);
    let before = Twins::state(&t.sandboxes[1]);

    write(&l, "b.txt", "a blob the pack leaves out\n");
    git(&l, &["add", "-A"]);
    git(&l, &["commit", "-q", "-m", "two"]);
    let r = t.send();
    // The same bundle's header over a pack of everything new but the blob.
    let blob = git(&l, &["rev-parse", "HEAD:b.txt"]);
    let mut args = vec![
        "rev-list",
        "--objects",
        "refs/rclaude/push/snapshot",
        "refs/rclaude/push/index",
        "refs/rclaude/push/head",
        "--not",
    ];
    args.extend(t.known_before.split(' '));
    let objects = git(&l, &args);
    let list: String = objects
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .filter(|o| *o != blob)
        .map(|o| format!("{o}\n"))
        .collect();
    let mut pack = Command::new("git")
        .args(["pack-objects", "--stdout"])
        .current_dir(&l)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    pack.stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .unwrap();
    let pack = pack.wait_with_output().unwrap().stdout;
    let path = t.sandboxes[1].join(".git/rclaude/tmp/in.bundle");
    let full = std::fs::read(&path).unwrap();
    let header_len = full.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    let mut bundle = full[..header_len].to_vec();
    bundle.extend_from_slice(&pack);
    std::fs::write(&path, bundle).unwrap();

    let err = super::apply::apply(&t.job(&r)).unwrap_err();
    assert!(err.contains(&blob), "{err}");
    assert_eq!(Twins::state(&t.sandboxes[1]), before, "nothing changed");
}
