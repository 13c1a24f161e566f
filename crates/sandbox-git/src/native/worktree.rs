//! The sandbox's work tree as a tree object, as the export script's `rc_worktree_tree` makes it
//! (tracked and untracked files, ignored ones left out unless tracked, embedded repositories
//! left out), kept in a persistent index (`.git/rclaude/export/index`) that the next export
//! updates only where the agent saw changes.
//!
//! The index is trusted only while its stamp names the change token the agent's change set
//! starts from: a restarted agent, a lost event queue, a failed export, or a change to the
//! rules that decide what is included (`.gitignore`, `.gitattributes`, `.git/info/exclude`,
//! `.git/config`, the sandbox's own git configuration) rebuilds it from the whole tree.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use git2::{Index, IndexAddOption, Oid, Repository};
use rclaude_sandbox::agent::export::ChangedPaths;

/// `.git/rclaude/export`: what the native export keeps between runs.
pub(crate) const STATE_DIR: &str = "rclaude/export";

/// Git's file mode of a gitlink (a commit in the tree: a submodule or embedded repository).
const GITLINK: u32 = 0o160000;
/// Index entry flags (extended) this export does not reproduce: intent-to-add, skip-worktree.
const INTENT_TO_ADD: u16 = 1 << 13;
const SKIP_WORKTREE: u16 = 1 << 14;

/// Changed paths past which rebuilding is as cheap as updating.
const MAX_PATHS: usize = 2000;

/// How the tree was made (reported in the debug log and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// From the whole tree.
    Rebuilt,
    /// From the paths that changed.
    Updated,
}

/// The repository's own index (`.git/index`; empty when there is none).
pub(crate) fn real_index(repo: &Repository) -> Result<Index, String> {
    let path = repo.path().join("index");
    if path.exists() {
        Index::open(&path).map_err(|e| format!("reading the index: {e}"))
    } else {
        Index::new().map_err(|e| e.to_string())
    }
}

/// The tree of the work tree of `repo` (opened on `work`; `real` its index), how it was made, and the index it
/// was made from (its entries' stat data say what each file was when it was read).
/// `fingerprint` names the state of the configuration outside the tree. `Err`: a reason to
/// leave it to the script.
pub(crate) fn tree(
    repo: &Repository,
    real: &Index,
    work: &Path,
    changed: Option<&ChangedPaths>,
    fingerprint: &str,
) -> Result<(Oid, Made, Index), String> {
    let git_dir = repo.path().to_path_buf();
    if real.has_conflicts() {
        return Err("the index has conflicts".into());
    }
    if real
        .iter()
        .any(|e| e.mode == GITLINK || e.flags_extended & (INTENT_TO_ADD | SKIP_WORKTREE) != 0)
    {
        return Err("the index has submodules, intent-to-add or skip-worktree entries".into());
    }
    let state = git_dir.join(STATE_DIR);
    std::fs::create_dir_all(&state).map_err(|e| format!("creating {}: {e}", state.display()))?;
    let (index_file, stamp_file) = (state.join("index"), state.join("stamp"));
    let stamp = std::fs::read_to_string(&stamp_file).unwrap_or_default();
    let plan = changed.and_then(|c| {
        let paths = c.paths.as_ref()?;
        (stamp == stamp_line(&c.since, fingerprint) && index_file.exists())
            .then(|| plan_update(paths))
            .flatten()
    });
    // Until the index is written and its tree known, no stamp vouches for it.
    match std::fs::remove_file(&stamp_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {}: {e}", stamp_file.display())),
    }
    let made = match &plan {
        Some(_) => Made::Updated,
        None => Made::Rebuilt,
    };
    if plan.is_none() {
        if git_dir.join("index").exists() {
            std::fs::copy(git_dir.join("index"), &index_file)
        } else {
            std::fs::remove_file(&index_file)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })
                .map(|()| 0)
        }
        .map_err(|e| format!("preparing {}: {e}", index_file.display()))?;
    }
    let mut idx = Index::open(&index_file).map_err(|e| format!("reading the export index: {e}"))?;
    repo.set_index(&mut idx).map_err(|e| e.to_string())?;
    let git = |e: git2::Error| e.message().to_string();
    match plan {
        Some(update) => {
            let u = Updater { repo, work, real };
            for p in &update.paths {
                u.apply(&mut idx, p).map_err(git)?;
            }
            if update.index_changed {
                u.reconcile(&mut idx).map_err(git)?;
            }
        }
        None => {
            // Embedded repositories (clones made in the work tree) are not part of this one.
            let mut skip_repos = |p: &Path, _: &[u8]| i32::from(work.join(p).join(".git").exists());
            idx.add_all(["*"], IndexAddOption::DEFAULT, Some(&mut skip_repos))
                .map_err(git)?;
            // New gitlinks are embedded repositories (clones made in the work tree): not part
            // of this repository (the real index has none, checked above).
            let links: Vec<PathBuf> = idx
                .iter()
                .filter(|e| e.mode == GITLINK)
                .map(|e| path_of(&e.path))
                .collect();
            for l in links {
                idx.remove_path(&l).map_err(git)?;
            }
        }
    }
    idx.write().map_err(git)?;
    let tree = idx.write_tree_to(repo).map_err(git)?;
    if let Some(c) = changed {
        std::fs::write(&stamp_file, stamp_line(&c.now, fingerprint))
            .map_err(|e| format!("writing {}: {e}", stamp_file.display()))?;
    }
    Ok((tree, made, idx))
}

fn stamp_line(token: &str, fingerprint: &str) -> String {
    format!("{token}\n{fingerprint}\n")
}

fn path_of(bytes: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// The work paths to update, and whether the real index changed (what is tracked).
struct Update {
    paths: Vec<PathBuf>,
    index_changed: bool,
}

/// `None` when the change set calls for a rebuild: the rules of what is included changed, or
/// there are too many paths.
fn plan_update(changed: &[PathBuf]) -> Option<Update> {
    if changed.len() > MAX_PATHS {
        return None;
    }
    let mut u = Update {
        paths: Vec::new(),
        index_changed: false,
    };
    for p in changed {
        let name = p.file_name().and_then(OsStr::to_str).unwrap_or("");
        if matches!(name, ".gitignore" | ".gitattributes") {
            return None;
        }
        match p.strip_prefix(".git") {
            Ok(in_git) => {
                if in_git == Path::new("index") {
                    u.index_changed = true;
                } else if in_git.as_os_str().is_empty()
                    || in_git == Path::new("config")
                    || in_git.starts_with("info")
                {
                    return None;
                }
            }
            Err(_) => u.paths.push(p.clone()),
        }
    }
    Some(u)
}

struct Updater<'a> {
    repo: &'a Repository,
    work: &'a Path,
    real: &'a Index,
}

impl Updater<'_> {
    fn tracked(&self, p: &Path) -> bool {
        self.real.get_path(p, 0).is_some()
    }

    fn ignored(&self, p: &Path) -> Result<bool, git2::Error> {
        self.repo.is_path_ignored(p)
    }

    /// Inside a repository of its own (a directory on the way holds `.git`), or `.git` itself.
    fn embedded(&self, p: &Path) -> bool {
        let mut dir = self.work.to_path_buf();
        let mut parts = p.components().peekable();
        while let Some(c) = parts.next() {
            if c.as_os_str() == ".git" {
                return true;
            }
            if parts.peek().is_none() {
                break;
            }
            dir.push(c);
            if dir.join(".git").exists() {
                return true;
            }
        }
        false
    }

    /// Bring the entries at and under `p` in line with the work tree.
    fn apply(&self, idx: &mut Index, p: &Path) -> Result<(), git2::Error> {
        if self.embedded(p) {
            return Ok(());
        }
        idx.remove_dir(p, 0)?;
        let Ok(meta) = std::fs::symlink_metadata(self.work.join(p)) else {
            return idx.remove_path(p);
        };
        if meta.is_dir() {
            // It may have been a file before.
            if idx.get_path(p, 0).is_some() {
                idx.remove(p, 0)?;
            }
            return self.add_dir(idx, p);
        }
        self.add_file(idx, p)
    }

    fn add_file(&self, idx: &mut Index, p: &Path) -> Result<(), git2::Error> {
        if self.tracked(p) || !self.ignored(p)? {
            idx.add_path(p)
        } else {
            idx.remove_path(p)
        }
    }

    /// Add what `git add -A` would under directory `d`.
    fn add_dir(&self, idx: &mut Index, d: &Path) -> Result<(), git2::Error> {
        let abs = self.work.join(d);
        if abs.join(".git").exists() {
            return Ok(());
        }
        let has_tracked = || {
            let mut prefix = d.as_os_str().as_encoded_bytes().to_vec();
            prefix.push(b'/');
            self.real.find_prefix(prefix).is_ok()
        };
        if self.ignored(d)? && !has_tracked() {
            return Ok(());
        }
        let Ok(entries) = std::fs::read_dir(&abs) else {
            return Ok(());
        };
        for e in entries.flatten() {
            if e.file_name() == ".git" {
                continue;
            }
            let p = d.join(e.file_name());
            match e.file_type() {
                Ok(t) if t.is_dir() => self.add_dir(idx, &p)?,
                Ok(_) => self.add_file(idx, &p)?,
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// The real index changed (a commit, `git add`, `git rm --cached`): files it tracks now are
    /// included even when ignored, and ignored files it no longer tracks leave.
    fn reconcile(&self, idx: &mut Index) -> Result<(), git2::Error> {
        let real: HashSet<Vec<u8>> = self.real.iter().map(|e| e.path).collect();
        let mut add = Vec::new();
        for p in &real {
            let p = path_of(p);
            if idx.get_path(&p, 0).is_none()
                && std::fs::symlink_metadata(self.work.join(&p)).is_ok_and(|m| !m.is_dir())
            {
                add.push(p);
            }
        }
        let mut drop = Vec::new();
        for e in idx.iter() {
            if !real.contains(&e.path) {
                let p = path_of(&e.path);
                if self.ignored(&p)? {
                    drop.push(p);
                }
            }
        }
        for p in add {
            idx.add_path(&p)?;
        }
        for p in drop {
            idx.remove_path(&p)?;
        }
        Ok(())
    }
}
