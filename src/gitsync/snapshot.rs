//! Snapshot the local work tree and index as commits without touching the user's state.
//!
//! The work tree goes through a *copy* of `.git/index` (its stat cache spares re-hashing
//! unchanged files) owned by a second repository handle, which also carries the extra ignore
//! rules; the user's index file, refs, stash and files are never written. Commits are
//! deterministic (fixed author, committer and message, time taken from HEAD), so the same
//! tree on the same parent always gives the same oid and "nothing new" is an oid comparison.

use std::path::Path;

use git2::{ErrorCode, Index, IndexAddOption, Oid, Repository, Signature, Time};

use super::{EMPTY_TREE, SyncError, local_tmp_dir};

/// Where HEAD is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadState {
    /// On branch `name` (short name, e.g. `main`) at `oid`.
    Branch { name: String, oid: Oid },
    /// Detached at `oid`.
    Detached { oid: Oid },
    /// On branch `name` that has no commits yet.
    Unborn { name: String },
}

impl HeadState {
    /// The commit HEAD points at, if any.
    pub fn oid(&self) -> Option<Oid> {
        match self {
            HeadState::Branch { oid, .. } | HeadState::Detached { oid } => Some(*oid),
            HeadState::Unborn { .. } => None,
        }
    }

    /// The branch HEAD is on (short name), if any.
    pub fn branch(&self) -> Option<&str> {
        match self {
            HeadState::Branch { name, .. } | HeadState::Unborn { name } => Some(name),
            HeadState::Detached { .. } => None,
        }
    }

    /// For messages: `main at 1a2b3c4d5e`, `detached HEAD at ...`, `main (no commits yet)`.
    pub fn describe(&self) -> String {
        match self {
            HeadState::Branch { name, oid } => format!("{name} at {}", super::short(oid)),
            HeadState::Detached { oid } => format!("detached HEAD at {}", super::short(oid)),
            HeadState::Unborn { name } => format!("{name} (no commits yet)"),
        }
    }
}

/// The local state captured as commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Work-tree snapshot commit: tracked, modified, deleted and untracked non-ignored files;
    /// parent = HEAD (none when unborn).
    pub commit: Oid,
    pub tree: Oid,
    /// Index snapshot commit: tree = the user's index, parent = HEAD.
    pub index_commit: Oid,
    pub index_tree: Oid,
    pub head: HeadState,
    /// The index had unmerged entries; the index commit then records HEAD's tree.
    pub index_conflicts: bool,
    /// Untracked directories holding another git repository (not submodules): not synced,
    /// like `git add` they cannot be tracked as plain files.
    pub skipped_nested: Vec<String>,
}

/// Read HEAD without resolving anything else.
pub fn head_state(repo: &Repository) -> Result<HeadState, SyncError> {
    match repo.head() {
        Ok(r) => {
            let oid = r
                .peel_to_commit()
                .map_err(SyncError::git("reading the commit HEAD points at"))?
                .id();
            if repo.head_detached().unwrap_or(false) || !r.is_branch() {
                Ok(HeadState::Detached { oid })
            } else {
                let name = r.shorthand().unwrap_or("HEAD").to_string();
                Ok(HeadState::Branch { name, oid })
            }
        }
        Err(e) if e.code() == ErrorCode::UnbornBranch || e.code() == ErrorCode::NotFound => {
            let head = repo
                .find_reference("HEAD")
                .map_err(SyncError::git("reading HEAD"))?;
            let target = head
                .symbolic_target()
                .ok()
                .flatten()
                .unwrap_or("refs/heads/main");
            let name = target
                .strip_prefix("refs/heads/")
                .unwrap_or(target)
                .to_string();
            Ok(HeadState::Unborn { name })
        }
        Err(e) => Err(SyncError::Git {
            context: "reading HEAD".into(),
            source: e,
        }),
    }
}

/// Validate `[sync] ignore` patterns (gitignore syntax, one pattern per entry).
pub fn validate_ignores(patterns: &[String]) -> Result<(), SyncError> {
    for p in patterns {
        if p.contains('\n') || p.contains('\r') || p.contains('\0') {
            return Err(SyncError::invalid(
                "[sync] ignore pattern",
                format!("{p:?} contains a line break or NUL; give one pattern per entry"),
            ));
        }
    }
    Ok(())
}

/// The fixed signature of snapshot commits, timed at HEAD's commit time (or the epoch).
fn snapshot_signature(
    repo: &Repository,
    head: Option<Oid>,
) -> Result<Signature<'static>, SyncError> {
    let secs = match head {
        Some(oid) => repo
            .find_commit(oid)
            .map_err(SyncError::git("reading HEAD's commit"))?
            .committer()
            .when()
            .seconds(),
        None => 0,
    };
    Signature::new("rclaude", "rclaude@localhost", &Time::new(secs, 0))
        .map_err(SyncError::git("making the snapshot signature"))
}

/// Snapshot the work tree and index of `repo` (see the module docs). `extra_ignores` are
/// gitignore patterns applied on top of `.gitignore` and `.git/info/exclude`; like those, they do
/// not hide files that are tracked.
pub fn create(repo: &Repository, extra_ignores: &[String]) -> Result<Snapshot, SyncError> {
    validate_ignores(extra_ignores)?;
    let workdir = repo.workdir().ok_or_else(|| SyncError::NotARepository {
        path: repo.path().to_path_buf(),
        reason: "it is a bare repository".into(),
    })?;
    let head = head_state(repo)?;
    let head_oid = head.oid();
    let head_tree = match head_oid {
        Some(oid) => repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(SyncError::git("reading HEAD's tree"))?
            .id(),
        None => Oid::from_str(EMPTY_TREE).expect("valid oid"),
    };

    // The user's index as a tree (read only; write_tree writes objects, never the index file).
    let (index_tree, index_conflicts) = match repo.index() {
        Ok(mut idx) if !idx.has_conflicts() => (
            idx.write_tree()
                .map_err(SyncError::git("writing the index as a tree"))?,
            false,
        ),
        Ok(_) => (head_tree, true),
        Err(_) => (head_tree, false),
    };

    let (tree, skipped_nested) = worktree_tree(repo, workdir, extra_ignores, head_tree)?;

    let sig = snapshot_signature(repo, head_oid)?;
    let parent = match head_oid {
        Some(oid) => Some(
            repo.find_commit(oid)
                .map_err(SyncError::git("reading HEAD's commit"))?,
        ),
        None => None,
    };
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    let commit_of = |tree_id: Oid, msg: &str| -> Result<Oid, SyncError> {
        let t = repo
            .find_tree(tree_id)
            .map_err(SyncError::git("reading a snapshot tree"))?;
        repo.commit(None, &sig, &sig, msg, &t, &parents)
            .map_err(SyncError::git("writing a snapshot commit"))
    };
    let index_commit = commit_of(index_tree, "rclaude: snapshot of the index\n")?;
    let commit = commit_of(tree, "rclaude: snapshot of the work tree\n")?;
    Ok(Snapshot {
        commit,
        tree,
        index_commit,
        index_tree,
        head,
        index_conflicts,
        skipped_nested,
    })
}

/// The tree of the work tree (tracked + untracked non-ignored files), through a temporary copy
/// of the index on a second repository handle; also the embedded repositories left out.
fn worktree_tree(
    repo: &Repository,
    workdir: &Path,
    extra_ignores: &[String],
    head_tree: Oid,
) -> Result<(Oid, Vec<String>), SyncError> {
    let handle =
        Repository::open(workdir).map_err(SyncError::git("opening a second repository handle"))?;
    if !extra_ignores.is_empty() {
        handle
            .add_ignore_rule(&extra_ignores.join("\n"))
            .map_err(SyncError::git("adding the [sync] ignore patterns"))?;
    }
    let tmp_dir = local_tmp_dir(repo)?;
    let tmp = tempfile::Builder::new()
        .prefix("index-")
        .tempfile_in(&tmp_dir)
        .map_err(SyncError::io(format!(
            "creating a temporary index in {}",
            tmp_dir.display()
        )))?;
    let user_index = repo.path().join("index");
    let copied = copy_preserving_mtime(&user_index, tmp.path()).unwrap_or(false);

    let mut index = match Index::open(tmp.path()) {
        Ok(i) if copied => i,
        _ => {
            // No usable index (none yet, or a format libgit2 cannot read): start from HEAD's tree
            // so tracked files stay tracked even when ignored; everything is hashed afresh.
            let _ = std::fs::remove_file(tmp.path());
            let mut i =
                Index::open(tmp.path()).map_err(SyncError::git("creating a temporary index"))?;
            let t = repo
                .find_tree(head_tree)
                .map_err(SyncError::git("reading HEAD's tree"))?;
            i.read_tree(&t)
                .map_err(SyncError::git("filling the temporary index"))?;
            i
        }
    };
    handle
        .set_index(&mut index)
        .map_err(SyncError::git("attaching the temporary index"))?;
    // Untracked directories reach the callback only when they hold another repository (an
    // embedded clone that is not a submodule): its files belong to that repository, skip it.
    let mut nested = Vec::new();
    let mut skip_nested = |path: &Path, _spec: &[u8]| -> i32 {
        if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
            nested.push(path.to_string_lossy().trim_end_matches('/').to_string());
            1
        } else {
            0
        }
    };
    index
        .add_all(["*"], IndexAddOption::DEFAULT, Some(&mut skip_nested))
        .map_err(SyncError::git(
            "adding work-tree files to the temporary index",
        ))?;
    index.update_all(["*"], None).map_err(SyncError::git(
        "recording deleted files in the temporary index",
    ))?;
    let tree = index
        .write_tree()
        .map_err(SyncError::git("writing the work tree as a tree"))?;
    drop(index);
    drop(handle);
    drop(tmp);
    Ok((tree, nested))
}

/// Copy `from` to `to` keeping the modification time (racy-git detection compares file times
/// with the index file's own time, so a fresh mtime would hide same-second edits).
fn copy_preserving_mtime(from: &Path, to: &Path) -> std::io::Result<bool> {
    let meta = match std::fs::metadata(from) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    std::fs::copy(from, to)?;
    let f = std::fs::OpenOptions::new().write(true).open(to)?;
    f.set_modified(meta.modified()?)?;
    Ok(true)
}
