//! Shared helpers for the git-sync tests: real repositories made with the git CLI in temporary
//! directories, and a [`DirSandbox`] standing in for the agent.
#![allow(dead_code)]

pub mod dir_sandbox;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use dir_sandbox::DirSandbox;
use rclaude::gitsync::{
    self, NoProgress, PullOptions, PullReport, PushOptions, PushReport, SyncError, SyncState,
};

/// Run git in `dir` with a fixed identity; panic with its stderr on failure. Returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir, args).output().expect("run git");
    if !out.status.success() {
        panic!(
            "git {:?} in {} failed: {}{}",
            args,
            dir.display(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`git`], trimmed.
pub fn git_t(dir: &Path, args: &[&str]) -> String {
    git(dir, args).trim().to_string()
}

/// Run git; return (success, stdout, stderr).
pub fn git_try(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = git_cmd(dir, args).output().expect("run git");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn git_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
            "-c",
            "core.quotePath=false",
        ])
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    c
}

pub fn write(path: &Path, content: impl AsRef<[u8]>) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

pub fn set_exec(path: &Path) {
    let mut p = std::fs::metadata(path).unwrap().permissions();
    p.set_mode(0o755);
    std::fs::set_permissions(path, p).unwrap();
}

/// A laptop repository and a sandbox directory.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub local: PathBuf,
    pub sbx: PathBuf,
    pub sandbox: DirSandbox,
}

impl Env {
    /// A local repository with two commits and a `.gitignore` (`target/`, `*.log`).
    pub fn new() -> Env {
        let env = Env::empty();
        env.write(".gitignore", "target/\n*.log\nnode_modules/\n");
        env.write("README.md", "# demo\n");
        env.write("src/main.rs", "fn main() {\n    println!(\"hello\");\n}\n");
        env.write("src/lib.rs", "pub fn one() -> u32 {\n    1\n}\n");
        env.lgit(&["add", "-A"]);
        env.lgit(&["commit", "-q", "-m", "first"]);
        env.write("docs/guide.md", "guide\n");
        env.lgit(&["add", "-A"]);
        env.lgit(&["commit", "-q", "-m", "second"]);
        env
    }

    /// `git init` only.
    pub fn empty() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let local = tmp.path().join("lap top");
        let sbx = tmp.path().join("sand box").join("re'po $x");
        std::fs::create_dir_all(&local).unwrap();
        git(&local, &["init", "-q"]);
        let sandbox = DirSandbox::new(&sbx);
        Env {
            tmp,
            local,
            sbx,
            sandbox,
        }
    }

    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        write(&self.local.join(rel), content);
    }

    pub fn swrite(&self, rel: &str, content: impl AsRef<[u8]>) {
        write(&self.sbx.join(rel), content);
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.local.join(rel)).unwrap()
    }

    pub fn sread(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.sbx.join(rel)).unwrap()
    }

    pub fn lgit(&self, args: &[&str]) -> String {
        git(&self.local, args)
    }

    pub fn sgit(&self, args: &[&str]) -> String {
        git(&self.sbx, args)
    }

    pub async fn push_with(
        &self,
        state: Option<&SyncState>,
        opts: &PushOptions,
    ) -> Result<PushReport, SyncError> {
        gitsync::push(&self.local, &self.sandbox, state, opts, &NoProgress).await
    }

    pub async fn push(&self, state: Option<&SyncState>) -> PushReport {
        self.push_with(state, &PushOptions::default())
            .await
            .expect("push")
    }

    pub async fn pull_with(
        &self,
        state: Option<&SyncState>,
        opts: &PullOptions,
    ) -> Result<PullReport, SyncError> {
        gitsync::pull(&self.local, &self.sandbox, state, opts, &NoProgress).await
    }

    /// The sandbox's non-ignored files must equal the laptop's (content, exec bit, symlinks),
    /// and `git status` / HEAD must match.
    pub fn assert_in_sync(&self) {
        let l = worktree_files(&self.local);
        let s = worktree_files(&self.sbx);
        assert_eq!(l, s, "work trees differ");
        assert_eq!(status(&self.local), status(&self.sbx), "git status differs");
        assert_eq!(head_desc(&self.local), head_desc(&self.sbx), "HEAD differs");
    }
}

/// `git status --porcelain` with untracked files listed one by one.
pub fn status(dir: &Path) -> String {
    git(
        dir,
        &[
            "status",
            "--porcelain=v1",
            "--untracked-files=all",
            "--ignored=no",
        ],
    )
}

/// `branch=<name> <oid>` / `detached <oid>` / `unborn <name>`.
pub fn head_desc(dir: &Path) -> String {
    let (sym_ok, sym, _) = git_try(dir, &["symbolic-ref", "-q", "HEAD"]);
    let (oid_ok, oid, _) = git_try(dir, &["rev-parse", "-q", "--verify", "HEAD^{commit}"]);
    match (sym_ok, oid_ok) {
        (true, true) => format!("branch {} {}", sym.trim(), oid.trim()),
        (true, false) => format!("unborn {}", sym.trim()),
        (false, true) => format!("detached {}", oid.trim()),
        (false, false) => "none".into(),
    }
}

/// Non-ignored files (tracked and untracked) with (type, exec bit, content or link target).
pub fn worktree_files(dir: &Path) -> BTreeMap<String, (char, bool, Vec<u8>)> {
    let out = git_cmd(
        dir,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    )
    .output()
    .unwrap();
    let mut map = BTreeMap::new();
    for p in out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let rel = String::from_utf8_lossy(p).into_owned();
        let full = dir.join(&rel);
        let Ok(m) = std::fs::symlink_metadata(&full) else {
            continue;
        };
        let entry = if m.is_symlink() {
            (
                'l',
                false,
                std::fs::read_link(&full)
                    .unwrap()
                    .to_string_lossy()
                    .as_bytes()
                    .to_vec(),
            )
        } else if m.is_dir() {
            ('d', false, Vec::new())
        } else {
            (
                'f',
                m.permissions().mode() & 0o111 != 0,
                std::fs::read(&full).unwrap(),
            )
        };
        map.insert(rel, entry);
    }
    map
}

/// Local refs except rclaude's own.
pub fn user_refs(dir: &Path) -> String {
    git(dir, &["for-each-ref", "--format=%(objectname) %(refname)"])
        .lines()
        .filter(|l| !l.contains(" refs/rclaude/"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every file under `dir` (except `.git`) with its bytes, to prove nothing changed.
pub fn all_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut map = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, map: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().to_path_buf();
            if m.is_symlink() {
                map.insert(
                    rel,
                    std::fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .as_bytes()
                        .to_vec(),
                );
            } else if m.is_dir() {
                walk(base, &p, map);
            } else {
                let mut v = std::fs::read(&p).unwrap();
                v.extend_from_slice(format!("\0mode={:o}", m.permissions().mode()).as_bytes());
                map.insert(rel, v);
            }
        }
    }
    walk(dir, dir, &mut map);
    map
}

/// Refs under `refs/rclaude/saved/` in `dir`.
pub fn saved_refs(dir: &Path) -> Vec<(String, String)> {
    git(
        dir,
        &[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/rclaude/saved/",
        ],
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

/// Content of `path` in commit-ish `rev`.
pub fn show(dir: &Path, rev: &str, path: &str) -> Vec<u8> {
    let out = git_cmd(dir, &["show", &format!("{rev}:{path}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git show {rev}:{path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
