//! Git-bundle sync between the local repository and its sandbox.
//!
//! * [`push`] snapshots the local work tree and index as commits (through a temporary index,
//!   so nothing of the user's is modified), sends a git bundle holding only what the sandbox
//!   lacks, and makes the sandbox's HEAD, index and work tree match the laptop. Work found in the
//!   sandbox that the laptop does not have (edits, commits) is first committed to
//!   `refs/rclaude/saved/<UTC timestamp>` there and brought back here under the same name.
//! * [`pull`] snapshots the sandbox the same way and stores what comes back as a local branch
//!   (`rclaude/{branch}` by default); `apply` moves the checked-out branch only when nothing can
//!   be lost.
//! * [`init_sandbox`] creates the sandbox repository and its identity.
//!
//! The engine is stateless apart from [`SyncState`], which the caller persists; the sandbox is
//! always asked what it has, the state is only a guard and an optimisation.
//!
//! Rules that keep every byte (details in [`rclaude_sandbox_git`], the sandbox-side steps):
//! * sandbox work = anything the laptop does not have: work-tree content that differs from the
//!   last applied snapshot (and from every commit the laptop has), staged content, commits, an
//!   overwritten branch tip, untracked files (ignored ones too) in the way of incoming files.
//!   It is committed to `refs/rclaude/saved/<stamp>` (a chain HEAD → staged → work tree) and
//!   fetched here under the same name; a sandbox directory holding untracked files where a file
//!   arrives stops the sync instead. Ignored files are otherwise never read, sent or deleted;
//!   embedded repositories (not submodules) are skipped on both sides.
//! * a push with nothing new locally does not touch the sandbox (its own edits stay in place).
//! * an apply writes `.git/rclaude/applying` before touching HEAD, index or files; the next sync
//!   completes it and saves whatever the interrupted apply does not explain.
//! * pull keeps a branch tip it would rewind under `refs/rclaude/replaced/<stamp>`, and
//!   `apply` keeps rewritten local uncommitted work under `refs/rclaude/before-apply/<stamp>`.

mod apply_plan;
pub mod checkpoint;
pub mod checkpoint_bundle;
mod error;
mod local_apply;
mod progress;
mod pull;
mod pull_plan;
mod push;
mod push_plan;
mod push_report;
pub mod restore;
mod saved;

pub mod bundle;
/// The sandbox-side steps (a crate of their own: the server runs them too).
pub use rclaude_sandbox_git as remote;
pub mod snapshot;
mod snapshot_memo;

use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use serde::{Deserialize, Serialize};

pub use error::SyncError;
pub use progress::{NoProgress, SyncProgress};
pub use pull::{ApplyOutcome, PullOptions, PullReport, pull};
pub use push::{PushOptions, PushReport, SavedRef, push, push_recorded};
pub use remote::init_sandbox;

use progress::{ChannelProgress, ProgressEvent};

/// What the laptop believes the sandbox has after the last successful push (or pull).
/// Persist it with the session; it is verified against the sandbox on every sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// The sandbox identity (`.git/rclaude/identity` there).
    pub identity: String,
    /// Last pushed work-tree snapshot commit.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Last pushed index snapshot commit.
    #[serde(default)]
    pub index: Option<String>,
    /// HEAD commit at the last push (`None` when the branch had no commits).
    #[serde(default)]
    pub head: Option<String>,
    /// Branch checked out at the last push (`None` when detached).
    #[serde(default)]
    pub branch: Option<String>,
    /// Saved refs of this sandbox already brought back here (name → oid), so that a saved ref
    /// deleted locally after review is not fetched again.
    #[serde(default)]
    pub fetched_saved: std::collections::BTreeMap<String, String>,
    /// `(change token, ignore rules id)`: the sandbox's change token read just before a query
    /// found it holding exactly this state (with these ignore rules) and no saved work to bring
    /// back. While the sandbox answers the same token, nothing there changed since that query,
    /// so a push of the same work needs none ([`crate::provider::Sandbox::change_token`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<(String, String)>,
}

impl SyncState {
    /// The state's snapshot oid, when it parses.
    pub fn snapshot_oid(&self) -> Option<Oid> {
        self.snapshot.as_deref().and_then(|s| parse_oid(s).ok())
    }

    /// The state's index-snapshot oid, when it parses.
    pub fn index_oid(&self) -> Option<Oid> {
        self.index.as_deref().and_then(|s| parse_oid(s).ok())
    }
}

/// The empty tree's oid (SHA-1).
pub(crate) const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// Parse a full lowercase/uppercase 40-hex SHA-1 object id.
pub(crate) fn parse_oid(s: &str) -> Result<Oid, SyncError> {
    if s.len() != 40 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SyncError::invalid(
            "object id",
            format!("{s:?} is not a 40-digit hex SHA-1"),
        ));
    }
    Oid::from_str(s).map_err(SyncError::git("parsing an object id"))
}

/// Open the repository whose work tree contains `path`, with git's own answer for where that
/// work tree is: the nearest directory holding `.git` (a directory, or a file naming the git
/// directory). libgit2 answers wrongly for a `.git` file that points to a separate git directory
/// (`git init --separate-git-dir`, some tools' layouts): it takes the git directory's parent.
pub fn open_work_tree(path: &Path) -> Result<Repository, git2::Error> {
    let repo = Repository::discover(path)?;
    if repo.is_bare() {
        return Ok(repo);
    }
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if let Some(top) = abs.ancestors().find(|d| d.join(".git").exists())
        && repo
            .workdir()
            .is_none_or(|w| w.canonicalize().unwrap_or_else(|_| w.to_path_buf()) != top)
        && top.join(".git").is_file()
    {
        repo.set_workdir(top, false)?;
    }
    Ok(repo)
}

/// Open the repository at `path` (its work tree root or any path git2 accepts); bare is refused.
pub(crate) fn open_repo(path: &Path) -> Result<Repository, SyncError> {
    let repo = open_work_tree(path).map_err(|e| SyncError::NotARepository {
        path: path.to_path_buf(),
        reason: e.message().to_string(),
    })?;
    if repo.is_bare() || repo.workdir().is_none() {
        return Err(SyncError::NotARepository {
            path: path.to_path_buf(),
            reason: "it is a bare repository (no work tree to sync)".into(),
        });
    }
    Ok(repo)
}

/// `<gitdir>/rclaude/tmp`, created when missing: rclaude's scratch space next to the repository.
pub(crate) fn local_tmp_dir(repo: &Repository) -> Result<PathBuf, SyncError> {
    let dir = repo.path().join("rclaude").join("tmp");
    std::fs::create_dir_all(&dir).map_err(SyncError::io(format!(
        "creating the scratch directory {}",
        dir.display()
    )))?;
    // Leftovers of killed runs (temporary indexes, bundles) older than a day.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let day = std::time::Duration::from_secs(24 * 3600);
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if old.is_some_and(|age| age > day) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(dir)
}

/// A UTC timestamp usable in ref names, e.g. `20260815T120102Z`.
pub(crate) fn utc_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    now.format(&fmt)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// A free ref name `<prefix><stamp>` (adding `-2`, `-3`, ... when taken).
pub(crate) fn free_ref_name(repo: &Repository, prefix: &str, stamp: &str) -> String {
    let mut name = format!("{prefix}{stamp}");
    let mut n = 2;
    while repo.find_reference(&name).is_ok() {
        name = format!("{prefix}{stamp}-{n}");
        n += 1;
    }
    name
}

/// Run blocking git work on the blocking pool, forwarding its progress to `progress`.
pub(crate) async fn blocking<T, F>(progress: &dyn SyncProgress, f: F) -> Result<T, SyncError>
where
    F: FnOnce(&dyn SyncProgress) -> Result<T, SyncError> + Send + 'static,
    T: Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ProgressEvent>();
    let mut handle = tokio::task::spawn_blocking(move || {
        let reporter = ChannelProgress::new(tx);
        f(&reporter)
    });
    let result = loop {
        tokio::select! {
            biased;
            Some(ev) = rx.recv() => ev.forward(progress),
            res = &mut handle => break res,
        }
    };
    while let Ok(ev) = rx.try_recv() {
        ev.forward(progress);
    }
    match result {
        Ok(r) => r,
        Err(e) => Err(SyncError::Internal(format!("a git task failed: {e}"))),
    }
}

/// Short form of an oid for messages.
pub(crate) fn short(oid: &Oid) -> String {
    oid.to_string()[..10].to_string()
}
