//! Snapshot the local work tree and index as commits without touching the user's state.
//!
//! The work tree goes through a *copy* of `.git/index` (its stat cache spares re-hashing
//! unchanged files) owned by a second repository handle, which also carries the extra ignore
//! rules; the user's index file, refs, stash and files are never written. Commits are
//! deterministic (fixed author, committer and message, time taken from HEAD), so the same
//! tree on the same parent always gives the same oid and "nothing new" is an oid comparison.

use std::path::Path;

use git2::{ErrorCode, Index, IndexAddOption, Oid, Repository, Signature, Time};

use super::snapshot_memo as memo;
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
    /// Submodules in the work tree (paths): synced as the commit they are at, not their files.
    pub submodules: Vec<String>,
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

/// The snapshot an earlier push sent, rebuilt from the commits `state` records (they must be
/// in `repo`): how a sandbox rebuilt from a checkpoint is first given what the lost one had.
pub fn from_recorded(repo: &Repository, state: &super::SyncState) -> Result<Snapshot, SyncError> {
    let missing = |what: &str| {
        SyncError::invalid(
            "sync state",
            format!("the {what} commit of the last sync is not in this repository"),
        )
    };
    let tree_of = |oid: Option<Oid>, what: &str| -> Result<(Oid, Oid), SyncError> {
        let oid = oid.ok_or_else(|| missing(what))?;
        let tree = repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(|_| missing(what))?
            .id();
        Ok((oid, tree))
    };
    let (commit, tree) = tree_of(state.snapshot_oid(), "snapshot")?;
    let (index_commit, index_tree) = tree_of(state.index_oid(), "index")?;
    let head_oid = match state.head.as_deref() {
        Some(h) => Some(super::parse_oid(h)?),
        None => None,
    };
    let head = match (head_oid, state.branch.clone()) {
        (Some(oid), Some(name)) => HeadState::Branch { name, oid },
        (Some(oid), None) => HeadState::Detached { oid },
        (None, name) => HeadState::Unborn {
            name: name.unwrap_or_else(|| "main".into()),
        },
    };
    Ok(Snapshot {
        commit,
        tree,
        index_commit,
        index_tree,
        head,
        index_conflicts: false,
        skipped_nested: Vec::new(),
        submodules: gitlinks(repo, tree)?,
    })
}

/// Snapshot the work tree and index of `repo` (see the module docs). `extra_ignores` are
/// gitignore patterns applied on top of `.gitignore` and `.git/info/exclude`; like those, they do
/// not hide files that are tracked.
pub fn create(repo: &Repository, extra_ignores: &[String]) -> Result<Snapshot, SyncError> {
    create_with(repo, extra_ignores, true).map(|(snap, _)| snap)
}

/// Where a snapshot's work-tree tree came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeSource {
    /// A walk of the work tree (libgit2's `add_all` on a copy of the index).
    Walked,
    /// The memo of the last snapshot: nothing it was computed from had changed (one `lstat`
    /// per path, see `snapshot_memo`).
    Memo,
}

/// [`create`], also telling where the work tree's tree came from.
pub fn create_traced(
    repo: &Repository,
    extra_ignores: &[String],
) -> Result<(Snapshot, TreeSource), SyncError> {
    create_with(repo, extra_ignores, true)
}

/// [`create`] without the memo of the last snapshot: the work tree is always walked, and no
/// memo is read or written. What the memo's answers are checked against.
pub fn create_fresh(repo: &Repository, extra_ignores: &[String]) -> Result<Snapshot, SyncError> {
    create_with(repo, extra_ignores, false).map(|(snap, _)| snap)
}

fn create_with(
    repo: &Repository,
    extra_ignores: &[String],
    use_memo: bool,
) -> Result<(Snapshot, TreeSource), SyncError> {
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

    let worktree = worktree_tree(repo, workdir, extra_ignores, head_tree, use_memo)?;
    // The user's index as a tree: taken from the same copy of the index file, read once.
    let (index_tree, index_conflicts) = match worktree.index_tree {
        Some(read) => read,
        None => user_index_tree(repo, head_tree)?,
    };
    let (tree, skipped_nested) = (worktree.tree, worktree.nested);

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
    let submodules = worktree.gitlinks;
    let index_commit = commit_of(index_tree, "rclaude: snapshot of the index\n")?;
    let commit = commit_of(tree, "rclaude: snapshot of the work tree\n")?;
    let snap = Snapshot {
        commit,
        tree,
        index_commit,
        index_tree,
        head,
        index_conflicts,
        skipped_nested,
        submodules,
    };
    Ok((snap, worktree.source))
}

/// The user's index as a tree, read through the repository (when no copy of its file could be
/// read): `(tree, conflicts)`, HEAD's tree when it has conflicts or cannot be read. Read only:
/// `write_tree` writes objects, never the index file.
fn user_index_tree(repo: &Repository, head_tree: Oid) -> Result<(Oid, bool), SyncError> {
    Ok(match repo.index() {
        Ok(mut idx) if !idx.has_conflicts() => (
            idx.write_tree()
                .map_err(SyncError::git("writing the index as a tree"))?,
            false,
        ),
        Ok(_) => (head_tree, true),
        Err(_) => (head_tree, false),
    })
}

/// What one pass over the temporary index gives.
struct WorktreeTree {
    /// The work tree's tree.
    tree: Oid,
    /// The user's index as a tree and whether it has conflicts, from the same copy (`None` when
    /// the index file could not be copied and read).
    index_tree: Option<(Oid, bool)>,
    /// Embedded repositories left out.
    nested: Vec<String>,
    /// Submodule paths (gitlinks) in `tree`.
    gitlinks: Vec<String>,
    source: TreeSource,
}

/// Paths of the submodules (gitlink entries) in `tree`.
fn gitlinks(repo: &Repository, tree: Oid) -> Result<Vec<String>, SyncError> {
    let tree = repo
        .find_tree(tree)
        .map_err(SyncError::git("reading the snapshot tree"))?;
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.filemode() == 0o160000 {
            out.push(format!("{dir}{}", entry.name().unwrap_or("?")));
        }
        git2::TreeWalkResult::Ok
    })
    .map_err(SyncError::git("listing submodules"))?;
    Ok(out)
}

/// The tree of the work tree (tracked + untracked non-ignored files), through a temporary copy
/// of the index on a second repository handle; also the user's index as a tree (from the same
/// copy, so the index file is read once), the embedded repositories left out and the gitlinks.
/// With `use_memo`, the memo of the last snapshot answers when nothing it depends on changed.
fn worktree_tree(
    repo: &Repository,
    workdir: &Path,
    extra_ignores: &[String],
    head_tree: Oid,
    use_memo: bool,
) -> Result<WorktreeTree, SyncError> {
    let walk_ns = memo::now_ns();
    let index_id = memo::IndexId::of(repo);
    let last = if use_memo {
        memo::load(repo, extra_ignores)
    } else {
        None
    };
    let mut work_tree_unchanged = None;
    if let Some(m) = &last
        && m.same_index(index_id.as_ref())
    {
        if m.work_tree_unchanged(workdir) {
            tracing::debug!("snapshot: the work tree and index are as the memo has them");
            return Ok(WorktreeTree {
                tree: m.tree,
                index_tree: Some((m.index_tree, false)),
                nested: m.nested.clone(),
                gitlinks: Vec::new(),
                source: TreeSource::Memo,
            });
        }
        work_tree_unchanged = Some(false);
    }
    let handle = super::open_work_tree(workdir)
        .map_err(SyncError::git("opening a second repository handle"))?;
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

    let (mut index, is_copy) = match Index::open(tmp.path()) {
        Ok(i) if copied => (i, true),
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
            (i, false)
        }
    };
    handle
        .set_index(&mut index)
        .map_err(SyncError::git("attaching the temporary index"))?;
    // Before the work tree goes in, the copy is the user's index: its tree (its cached trees
    // make this cheap) is the index snapshot.
    let index_tree = match (is_copy, index.has_conflicts()) {
        (false, _) => None,
        (true, true) => Some((head_tree, true)),
        (true, false) => Some((
            index
                .write_tree()
                .map_err(SyncError::git("writing the index as a tree"))?,
            false,
        )),
    };
    let tracked = memo::tracked_hash(&index);
    if let (Some(mut m), Some((index_tree, false))) = (last, index_tree)
        && m.same_tracked(tracked)
        && *work_tree_unchanged.get_or_insert_with(|| m.work_tree_unchanged(workdir))
    {
        tracing::debug!("snapshot: the work tree and tracked set are as the memo has them");
        m.renew_index(repo, extra_ignores, index_id, index_tree);
        return Ok(WorktreeTree {
            tree: m.tree,
            index_tree: Some((index_tree, false)),
            nested: m.nested,
            gitlinks: Vec::new(),
            source: TreeSource::Memo,
        });
    }
    // Untracked directories reach the callback only when they hold another repository (an
    // embedded clone that is not a submodule): its files belong to that repository, skip it.
    // Sparse checkout: files outside the cone are absent from the work tree on purpose
    // (skip-worktree); they keep their index version rather than being taken as deleted.
    let sparse: std::collections::HashSet<Vec<u8>> = index
        .iter()
        .filter(|e| e.flags_extended & SKIP_WORKTREE != 0)
        .map(|e| e.path)
        .collect();
    // Files a clean filter (git-lfs, git-crypt...) rewrites: their index versions, to reuse
    // while the file is unchanged.
    let filtered = FilteredPaths::new(&handle, &index);
    let mut nested = Vec::new();
    let mut skip_nested = |path: &Path, _spec: &[u8]| -> i32 {
        if sparse.contains(path.as_os_str().as_encoded_bytes()) {
            1
        } else if path.as_os_str().as_encoded_bytes().ends_with(b"/") {
            nested.push(path.to_string_lossy().trim_end_matches('/').to_string());
            1
        } else {
            0
        }
    };
    // One walk of the work tree: libgit2's add_all applies a diff of the index against it, so
    // files gone from the work tree leave the index too (as `git add -A` does; an
    // `update_all` after it would walk the tree a second time to find nothing new).
    index
        .add_all(["*"], IndexAddOption::DEFAULT, Some(&mut skip_nested))
        .map_err(SyncError::git(
            "adding work-tree files to the temporary index",
        ))?;
    if let Some(filtered) = &filtered {
        filtered.apply(&handle, workdir, &mut index)?;
    }
    let tree = index
        .write_tree()
        .map_err(SyncError::git("writing the work tree as a tree"))?;
    tracing::debug!(entries = index.len(), "snapshot: work tree walked");
    // The tree's gitlinks are the index's (in the same order as a walk of the tree).
    let gitlinks: Vec<String> = index
        .iter()
        .filter(|e| e.mode == 0o160000)
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    match index_tree {
        // The memo itself refuses what it cannot check (submodules, sparse entries...);
        // clean filters it cannot see.
        Some((index_tree, false)) if use_memo && filtered.is_none() => {
            let taken = memo::Taken {
                walk_ns,
                index_id,
                tracked,
                ignores: extra_ignores,
                tree,
                index_tree,
                nested: &nested,
                index: &index,
                handle: &handle,
            };
            memo::record(repo, workdir, taken);
            tracing::debug!("snapshot: memo recorded");
        }
        _ if use_memo => memo::forget(repo),
        _ => {}
    }
    drop(index);
    drop(handle);
    drop(tmp);
    Ok(WorktreeTree {
        tree,
        index_tree,
        nested,
        gitlinks,
        source: TreeSource::Walked,
    })
}

/// `GIT_INDEX_ENTRY_SKIP_WORKTREE`, in an index entry's extended flags.
const SKIP_WORKTREE: u16 = 1 << 14;

/// Paths with a configured clean filter (`filter=NAME` in `.gitattributes` and
/// `filter.NAME.clean` or `.process` in the config). libgit2 runs no external filter drivers, so
/// it would store the smudged content (the real LFS file, git-crypt's plaintext): those blobs
/// come from git itself instead, or from the index while the file is unchanged.
struct FilteredPaths {
    /// The user's index entries of such paths, before the work tree was added.
    before: std::collections::HashMap<Vec<u8>, git2::IndexEntry>,
}

impl FilteredPaths {
    /// `None` when the repository configures no clean filter (the common, free case).
    fn new(repo: &Repository, index: &Index) -> Option<FilteredPaths> {
        let drivers = configured_filters(repo);
        if drivers.is_empty() {
            return None;
        }
        let before = index
            .iter()
            .filter(|e| filter_of(repo, &e.path).is_some_and(|f| drivers.contains(&f)))
            .map(|e| (e.path.clone(), e))
            .collect();
        Some(FilteredPaths { before })
    }

    /// Replace the blobs libgit2 hashed for filtered paths with cleaned ones.
    fn apply(&self, repo: &Repository, workdir: &Path, index: &mut Index) -> Result<(), SyncError> {
        let drivers = configured_filters(repo);
        let entries: Vec<git2::IndexEntry> = index
            .iter()
            .filter(|e| e.mode != 0o160000)
            .filter(|e| filter_of(repo, &e.path).is_some_and(|f| drivers.contains(&f)))
            .collect();
        for mut entry in entries {
            let unchanged = self.before.get(&entry.path).filter(|old| {
                old.mtime == entry.mtime
                    && old.file_size == entry.file_size
                    && old.ino == entry.ino
                    && old.mode == entry.mode
            });
            entry.id = match unchanged {
                Some(old) => old.id,
                None => clean_blob(workdir, &entry.path)?,
            };
            index.add(&entry).map_err(SyncError::git(
                "recording a cleaned blob in the temporary index",
            ))?;
        }
        Ok(())
    }
}

/// Names of the filters with a clean command (or a long-running process) configured.
fn configured_filters(repo: &Repository) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    if let Ok(cfg) = repo.config()
        && let Ok(mut entries) = cfg.entries(Some(r"^filter\..*\.(clean|process)$"))
    {
        while let Some(Ok(e)) = entries.next() {
            if let Ok(name) = e.name()
                && let Some(mid) = name
                    .strip_prefix("filter.")
                    .and_then(|r| r.rsplit_once('.').map(|(n, _)| n))
            {
                out.insert(mid.to_string());
            }
        }
    }
    out
}

/// The `filter` attribute of `path`, when set to a name.
fn filter_of(repo: &Repository, path: &[u8]) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let p = Path::new(std::ffi::OsStr::from_bytes(path));
    match repo.get_attr(p, "filter", git2::AttrCheckFlags::FILE_THEN_INDEX) {
        Ok(Some(v)) if git2::AttrValue::from_string(Some(v)) == git2::AttrValue::String(v) => {
            Some(v.to_string())
        }
        _ => None,
    }
}

/// The blob git stores for the work-tree file `path`: `git hash-object -w --path` runs the
/// file's clean filter, as `git add` would.
fn clean_blob(workdir: &Path, path: &[u8]) -> Result<Oid, SyncError> {
    let rel = String::from_utf8_lossy(path).into_owned();
    let out = std::process::Command::new("git")
        .current_dir(workdir)
        .args(["hash-object", "-w", "--path"])
        .arg(&rel)
        .arg("--")
        .arg(&rel)
        .output()
        .map_err(|e| {
            SyncError::invalid(
                "clean filter",
                format!("{rel} has a clean filter (.gitattributes), which needs git to run: {e}"),
            )
        })?;
    if !out.status.success() {
        return Err(SyncError::invalid(
            "clean filter",
            format!(
                "the clean filter of {rel} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Oid::from_str(String::from_utf8_lossy(&out.stdout).trim())
        .map_err(SyncError::git("reading git hash-object's answer"))
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
